//! 6.5840's goroutines as state machines in simulated time: each client says when it next wants
//! to run, and the driver advances the simulation to that moment, lets it act, and repeats.
//! Clients therefore interleave with each other and with Raft at millisecond granularity, as
//! the course's concurrent clients do, but deterministically.

use crate::harness::Cluster;
use crate::tester::{TestRng, command, value_of};
use flotilla_raft::LogIndex;

/// One concurrent activity of a test.
pub(crate) trait Client {
    /// The simulated time (ms) at which it next wants to run; `None` once it has finished.
    fn wake_ms(&self) -> Option<u64>;
    /// Acts at the cluster's current time, and sets a later wake time or finishes.
    fn poll(&mut self, cluster: &mut Cluster);
}

/// Runs the simulation for `duration_ms`, letting every client act when it wakes.
pub(crate) fn run_with_clients<C: Client>(
    cluster: &mut Cluster,
    clients: &mut [C],
    duration_ms: u64,
) {
    let until = cluster.now_ms + duration_ms;
    while cluster.now_ms < until {
        step(cluster, clients, until);
    }
}

/// Runs the simulation, with the clients, until `done` holds; panics after `limit_ms`.
pub(crate) fn run_clients_until<C: Client>(
    cluster: &mut Cluster,
    clients: &mut [C],
    limit_ms: u64,
    done: impl Fn(&[C]) -> bool,
) {
    let until = cluster.now_ms + limit_ms;
    while !done(clients) {
        assert!(
            cluster.now_ms < until,
            "clients did not finish within {limit_ms} ms"
        );
        step(cluster, clients, until);
    }
}

fn step<C: Client>(cluster: &mut Cluster, clients: &mut [C], until: u64) {
    for client in clients.iter_mut() {
        if client.wake_ms().is_some_and(|wake| wake <= cluster.now_ms) {
            client.poll(cluster);
        }
    }
    let next = clients
        .iter()
        .filter_map(Client::wake_ms)
        .min()
        .unwrap_or(until)
        .clamp(cluster.now_ms, until);
    cluster.run_for(next - cluster.now_ms);
}

/// 6.5840 `one(cmd, expectedServers, retry)` running in its own goroutine: submit to a
/// connected replica that accepts, wait up to 2 s for `expected_servers` to apply it, retry
/// for up to 10 s.
pub(crate) struct OneClient {
    command: Vec<u8>,
    expected_servers: usize,
    retry: bool,
    started_ms: u64,
    /// The index the command was accepted at, and when.
    attempt: Option<(LogIndex, u64)>,
    next_server: usize,
    wake_ms: u64,
    /// Where it committed, once it did.
    pub(crate) committed: Option<LogIndex>,
}

impl OneClient {
    pub(crate) fn new(cluster: &Cluster, value: u64, expected_servers: usize, retry: bool) -> Self {
        Self {
            command: command(value),
            expected_servers,
            retry,
            started_ms: cluster.now_ms,
            attempt: None,
            next_server: 0,
            wake_ms: cluster.now_ms,
            committed: None,
        }
    }

    fn check_attempt(&mut self, cluster: &Cluster, index: LogIndex, since_ms: u64) -> bool {
        let (count, value) = cluster.n_committed(index);
        if count > 0 && count >= self.expected_servers && value.as_ref() == Some(&self.command) {
            self.committed = Some(index);
            return true;
        }
        if cluster.now_ms - since_ms < 2_000 {
            self.wake_ms = cluster.now_ms + 20;
            return true;
        }
        assert!(
            self.retry,
            "one({}) failed to reach agreement",
            value_of(&self.command)
        );
        self.attempt = None;
        false
    }

    fn submit(&mut self, cluster: &mut Cluster) {
        assert!(
            cluster.now_ms - self.started_ms < 10_000,
            "one({}) failed to reach agreement in 10 s",
            value_of(&self.command)
        );
        let ids = cluster.ids();
        for _ in 0..ids.len() {
            self.next_server = (self.next_server + 1) % ids.len();
            let id = ids[self.next_server];
            if !cluster.is_up(id) || !cluster.network.is_connected(id) {
                continue;
            }
            if let Ok(index) = cluster.propose(id, self.command.clone()) {
                self.attempt = Some((index, cluster.now_ms));
                self.wake_ms = cluster.now_ms + 20;
                return;
            }
        }
        self.wake_ms = cluster.now_ms + 50;
    }
}

impl Client for OneClient {
    fn wake_ms(&self) -> Option<u64> {
        self.committed.is_none().then_some(self.wake_ms)
    }

    fn poll(&mut self, cluster: &mut Cluster) {
        if let Some((index, since_ms)) = self.attempt
            && self.check_attempt(cluster, index, since_ms)
        {
            return;
        }
        self.submit(cluster);
    }
}

/// How long a churn client waits between polls of a submitted command (6.5840 `cfn`).
const CHURN_BACKOFF_MS: [u64; 5] = [10, 20, 50, 100, 200];

/// A client of 6.5840's churn tests (`cfn`): submits random values to every up replica, and
/// remembers each value it saw committed where it was submitted.
pub(crate) struct ChurnClient {
    me: u64,
    rng: TestRng,
    /// The value in flight, its index, and how many backoff sleeps it has done.
    waiting: Option<(u64, LogIndex, usize)>,
    wake_ms: u64,
    /// Set by the test: finish after the current submission.
    pub(crate) stop: bool,
    finished: bool,
    /// Every value this client saw committed.
    pub(crate) values: Vec<u64>,
}

impl ChurnClient {
    pub(crate) fn new(cluster: &Cluster, me: u64, seed: u64) -> Self {
        Self {
            me,
            rng: TestRng::new(seed.wrapping_add(1000 + me)),
            waiting: None,
            wake_ms: cluster.now_ms,
            stop: false,
            finished: false,
            values: Vec::new(),
        }
    }

    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// The top of `cfn`'s loop: try every up replica, maybe one of them is a leader.
    fn submit(&mut self, cluster: &mut Cluster) {
        let value = self.rng.int();
        let mut accepted = None;
        for id in cluster.ids() {
            if let Some(index) = cluster.start(id, value) {
                accepted = Some(index);
            }
        }
        match accepted {
            Some(index) => self.waiting = Some((value, index, 0)),
            None => self.wake_ms = cluster.now_ms + 79 + self.me * 17,
        }
    }

    /// One poll of a submitted value; returns whether the client goes back to the loop top.
    fn check(&mut self, cluster: &Cluster, value: u64, index: LogIndex, sleeps: usize) -> bool {
        let Some(&backoff_ms) = CHURN_BACKOFF_MS.get(sleeps) else {
            // Gave up waiting: maybe the leader will commit the value, maybe not.
            self.waiting = None;
            return true;
        };
        let (count, committed) = cluster.n_committed(index);
        if count > 0 {
            if committed.as_deref().map(value_of) == Some(value) {
                self.values.push(value);
            }
            self.waiting = None;
            return true;
        }
        self.waiting = Some((value, index, sleeps + 1));
        self.wake_ms = cluster.now_ms + backoff_ms;
        false
    }
}

impl Client for ChurnClient {
    fn wake_ms(&self) -> Option<u64> {
        (!self.finished).then_some(self.wake_ms)
    }

    fn poll(&mut self, cluster: &mut Cluster) {
        loop {
            match self.waiting {
                Some((value, index, sleeps)) => {
                    if !self.check(cluster, value, index, sleeps) {
                        return;
                    }
                }
                None if self.stop => {
                    self.finished = true;
                    return;
                }
                None => {
                    self.submit(cluster);
                    if self.waiting.is_none() {
                        return;
                    }
                }
            }
        }
    }
}

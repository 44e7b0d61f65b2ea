//! The 6.5840 tester's vocabulary on top of the shared harness: `Start`, `crash1`, `start1`,
//! peer arithmetic, the tester's own randomness, RPC and log-size accounting, and seeds.
//!
//! Mapping decisions that every part relies on:
//!
//! * **Commands** are 6.5840's `int`s, encoded as 8 little-endian bytes.
//! * **Indices.** Our leaders append a blank entry when elected (Raft §8); 6.5840's Raft has no
//!   such entry, so its index `k` is our `k`-th *command* (normal entry). Tests that check an
//!   exact index compare [`Cluster::command_position`], never the raw log index.
//! * **Server numbers.** 6.5840 numbers servers `0..n`, we number them `1..=n`; [`peer`] is
//!   its `(leader + k) % servers`.
//! * **RPCs.** See [`Cluster::rpc_count`].

use crate::harness::Cluster;
use flotilla_raft::{EntryPayload, HardState, LogIndex, NodeId, Term};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 6.5840's `RaftElectionTimeout`.
pub(crate) const ELECTION_TIMEOUT_MS: u64 = crate::harness::mit::ELECTION_TIMEOUT_MS;

/// A 6.5840 command (`int`) as entry payload.
pub(crate) fn command(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// The command an entry payload carries.
pub(crate) fn value_of(data: &[u8]) -> u64 {
    let bytes: [u8; 8] = data
        .try_into()
        .expect("every command this suite proposes is 8 bytes");
    u64::from_le_bytes(bytes)
}

/// 6.5840's `(server + offset) % servers` for our 1-based node ids.
pub(crate) fn peer(server: NodeId, offset: u64, servers: u64) -> NodeId {
    NodeId((server.0 - 1 + offset) % servers + 1)
}

/// The tester's own randomness (6.5840's `math/rand`): separate from the cluster's, so the
/// test's choices do not perturb the simulated network's.
pub(crate) struct TestRng(ChaCha8Rng);

impl TestRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed ^ 0x6584_0000_5a5a_0001))
    }

    /// `rand.Int()`: a command value.
    pub(crate) fn int(&mut self) -> u64 {
        self.0.random_range(0..u64::from(u32::MAX))
    }

    /// `rand.Int() % bound`.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.0.random_range(0..bound)
    }

    /// A random server of `servers` (`rand.Int() % servers`).
    pub(crate) fn server(&mut self, servers: u64) -> NodeId {
        NodeId(self.below(servers) + 1)
    }

    /// `randstring(n)`.
    pub(crate) fn bytes(&mut self, length: usize) -> Vec<u8> {
        (0..length)
            .map(|_| self.0.random_range(b'a'..=b'z'))
            .collect()
    }
}

impl Cluster {
    /// 6.5840 `rf.Start(cmd)`: the index if `id` is up and accepted it as leader.
    pub(crate) fn start(&mut self, id: NodeId, value: u64) -> Option<LogIndex> {
        self.propose(id, command(value)).ok()
    }

    /// 6.5840 `one(cmd, n, retry)` with an integer command.
    pub(crate) fn one_value(
        &mut self,
        value: u64,
        expected_servers: usize,
        retry: bool,
    ) -> LogIndex {
        self.one(&command(value), expected_servers, retry)
    }

    /// 6.5840 `crash1`: takes `id` off the network and kills it; its disk survives.
    pub(crate) fn crash1(&mut self, id: NodeId) {
        self.network.disconnect(id);
        self.crash(id);
    }

    /// 6.5840 `start1`: `crash1`, then a new instance from the disk. Like the course's, it stays
    /// disconnected until the test connects it.
    pub(crate) fn start1(&mut self, id: NodeId) {
        self.crash1(id);
        self.restart(id);
    }

    /// 6.5840 `GetState().term` of an up replica.
    pub(crate) fn term_of(&self, id: NodeId) -> Option<Term> {
        self.raft(id).map(|raft| raft.term())
    }

    /// Terms of every up replica, connected or not (6.5840's `for _, r := range cfg.rafts`).
    pub(crate) fn up_terms(&self) -> Vec<Term> {
        self.ids()
            .into_iter()
            .filter_map(|id| self.term_of(id))
            .collect()
    }

    /// The 6.5840 index of the entry at `index` in `id`'s (uncompacted) log: how many commands
    /// the log holds up to and including it. Blank and membership entries do not count.
    pub(crate) fn command_position(&self, id: NodeId, index: LogIndex) -> u64 {
        let raft = self.raft(id).expect("the replica is up");
        let log = raft.log();
        assert_eq!(
            log.first_index(),
            LogIndex(1),
            "command positions need an uncompacted log"
        );
        let entries = log
            .entries(LogIndex(1), index.next(), u64::MAX)
            .expect("read the log");
        assert_eq!(entries.len() as u64, index.0, "the log holds {index}");
        entries
            .iter()
            .filter(|entry| matches!(entry.payload, EntryPayload::Normal(_)))
            .count() as u64
    }

    /// The same for an index some replica applied (what `one` returns): every replica applies
    /// from index 1 in order, and only commands are recorded, so count what precedes it.
    pub(crate) fn applied_position(&self, index: LogIndex) -> u64 {
        let log = self
            .applied_logs
            .values()
            .find(|log| log.contains_key(&index))
            .expect("some replica applied the index");
        log.range(..=index).count() as u64
    }

    /// Whether `index` holds a command (not a blank or membership entry) in `id`'s log.
    pub(crate) fn holds_command(&self, id: NodeId, index: LogIndex) -> bool {
        let raft = self.raft(id).expect("the replica is up");
        let entries = raft
            .log()
            .entries(index, index.next(), u64::MAX)
            .expect("read the log");
        entries
            .first()
            .is_some_and(|entry| matches!(entry.payload, EntryPayload::Normal(_)))
    }

    /// Whether any replica ever applied `value`, at any index.
    pub(crate) fn ever_applied(&self, value: u64) -> bool {
        let wanted = command(value);
        self.applied_logs
            .values()
            .any(|log| log.values().any(|data| *data == wanted))
    }

    /// 6.5840 `rpcCount` summed over servers. The course counts RPCs, a request and its reply
    /// together; our network counts every message, requests and answers alike. On the
    /// connected, reliable network where the course counts (TestCount) every request our core
    /// sends is delivered and answered exactly once: AppendEntries, heartbeats, snapshot chunks
    /// and votes all reply, and only a vote request that is ignored (from a stale term, or
    /// inside a leader lease) goes unanswered. So RPCs = messages / 2, rounded up: a bound of
    /// B RPCs is a bound of 2B messages, and never looser than counting requests alone by more
    /// than those ignored votes.
    pub(crate) fn rpc_count(&self) -> u64 {
        self.network.counters.messages.div_ceil(2)
    }

    /// 6.5840 `LogSize()`: the largest persisted Raft state of any replica, up or crashed. Ours
    /// is the postcard encoding of the hard state and the log entries the replica's MemLog
    /// holds (what `persister.raftstate` holds in the course: term, vote and log), snapshot
    /// excluded as in the course.
    pub(crate) fn log_size_bytes(&self) -> usize {
        self.replicas
            .values()
            .filter_map(|replica| {
                let store = match &replica.raft {
                    Some(raft) => raft.log().store(),
                    None => replica.disk.as_ref()?,
                };
                let state: (HardState, &[flotilla_raft::Entry]) =
                    (store.hard_state(), store.all_entries());
                Some(postcard::to_allocvec(&state).expect("encode").len())
            })
            .max()
            .unwrap_or(0)
    }

    /// Lets `duration_ms` of simulated time pass (6.5840's `time.Sleep`).
    pub(crate) fn sleep(&mut self, duration_ms: u64) {
        self.run_for(duration_ms);
    }
}

/// Runs `test` with its fixed seed; `FLOTILLA_MIT_SEEDS=N` reruns it over `N` consecutive seeds
/// from there (6.5840 advises many runs), `FLOTILLA_MIT_SEED=s` runs seed `s` alone. A failure
/// prints the seed to reproduce it.
pub(crate) fn for_each_seed(base_seed: u64, test: fn(u64)) {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse::<u64>().ok())
    };
    let seeds: Vec<u64> = match (env("FLOTILLA_MIT_SEED"), env("FLOTILLA_MIT_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, Some(count)) => (base_seed..base_seed + count.max(1)).collect(),
        (None, None) => vec![base_seed],
    };
    for seed in seeds {
        let _report = ReportSeedOnPanic(seed);
        test(seed);
    }
}

struct ReportSeedOnPanic(u64);

impl Drop for ReportSeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("reproduce: FLOTILLA_MIT_SEED={}", self.0);
        }
    }
}

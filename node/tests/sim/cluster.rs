//! The whole cluster in one thread and virtual time: N nodes, each the production node core over
//! its log on `CrashFs`; the simulated network between them and the clients; and every event
//! in one seeded queue. A node takes its inputs at once unless it is busy writing (a sync takes
//! `fsync_ms`) or paused; what arrives meanwhile waits and is taken in one turn, as the real
//! driver takes what queued during a write.

use crate::client::{ATTEMPT_TIMEOUT_MS, Action, Intent, SimClient};
use crate::events::EventQueue;
use crate::history::Recorder;
use crate::network::{Network, WireFaults};
use crate::node::{Answers, Input, Setup, SimNode, SimResponder};
use flotilla_node::api::{AdminCommand, Request};
use flotilla_node::core::Now;
use flotilla_raft::{Batch, GroupId, MessageBody, NodeId, Role, Term};
use flotilla_storage::Response;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Milliseconds of simulated time per tick of every node.
pub const TICK_MS: u64 = 10;
/// The client number of the operator's requests, whose answers nobody awaits.
pub const OPERATOR: usize = usize::MAX;
/// The client number of joining nodes' requests: their answers go to the join.
pub const JOINER: usize = usize::MAX - 1;
/// The client number of an operator's splits: their answers go to the splitter.
pub const SPLITTER: usize = usize::MAX - 2;
/// Attempts of one split before the operator gives it up.
const SPLIT_TRIES_MAX: u32 = 30;

/// An operator splitting a range as `flotilla range split` does: it asks the meta leader to
/// reserve the right half's id, then the range's leader to split at `at`, each request sent to
/// every node that is up (only the leader takes it) and again after the attempt timeout. The
/// request names the range as a node's map shows it then (a client's cached map). The meta
/// group's record follows from the range's leader, not from the operator.
#[derive(Debug)]
pub struct Splitter {
    at: Vec<u8>,
    /// A merge of the range holding `at` with its right neighbour, as `flotilla range merge`
    /// does (one request to the range's leader), instead of a split.
    merge: bool,
    /// The reserved id, once the meta leader answered.
    right: Option<GroupId>,
    request_id: u64,
    tries: u32,
}

/// What the operator's splits came to in one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SplitCounts {
    /// Splits a range's leader answered as applied.
    pub done: u64,
    /// Splits refused (the key was already a range's first key) or given up.
    pub refused: u64,
    /// Merges a range's leader answered as prepared.
    pub merges_prepared: u64,
    /// Merges refused (the last range, a neighbour changing or too big) or given up.
    pub merges_refused: u64,
}

/// A node joining the running cluster as `flotilla server --join` does: it asks the meta
/// leader to record it under its never-used id, then fetches the meta snapshot its meta replica
/// starts from, and starts. Each request goes to every node that is up (only the meta leader
/// takes it) and is sent again after the attempt timeout until it is answered.
pub struct Joiner {
    node: SimNode,
    fetching: bool,
    request_id: u64,
}

/// What happens at a point in virtual time.
#[derive(Debug)]
pub enum Event {
    /// A node's clock ticks.
    Tick { node: NodeId, incarnation: u64 },
    /// A node may take what waited while it was busy or paused.
    Wake { node: NodeId },
    /// A batch reaches its node.
    Deliver(Batch),
    /// A client's request reaches a node.
    Request {
        node: NodeId,
        client: usize,
        request_id: u64,
        request: Request,
    },
    /// A node's answer reaches a client.
    Answer {
        client: usize,
        request_id: u64,
        result: Result<flotilla_node::api::Reply, flotilla_node::api::ApiError>,
    },
    /// A client's attempt got no answer in time.
    Timeout { client: usize, request_id: u64 },
    /// A client goes on (after a pause, or with its next operation).
    Resume { client: usize },
}

impl Event {
    /// The node this event runs a turn of, if any.
    fn node(&self) -> Option<NodeId> {
        match self {
            Event::Tick { node, .. } | Event::Wake { node } | Event::Request { node, .. } => {
                Some(*node)
            }
            Event::Deliver(batch) => Some(batch.to),
            Event::Answer { .. } | Event::Timeout { .. } | Event::Resume { .. } => None,
        }
    }
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, SimNode>,
    pub setup: Setup,
    pub network: Network,
    pub clients: Vec<SimClient>,
    pub recorder: Recorder,
    events: EventQueue<Event>,
    pub now_ms: u64,
    pub rng: ChaCha8Rng,
    answers: Answers,
    /// The leader of each group in each term, as seen (election safety, checked every event).
    leaders: BTreeMap<(GroupId, Term), NodeId>,
    pub trace_hash: u64,
    pub trace: bool,
    next_value: u64,
    /// Nodes that stopped on their own (a failed write, a refused log).
    pub stops: u64,
    /// Mutation: a node that lost its disk starts again empty under its old id.
    pub amnesiac_restarts: bool,
    /// Clients back up a range now and then.
    pub backups: bool,
    /// Damages a byte of some snapshot chunks on the wire (its own stream of draws, so a
    /// seed without it runs as before).
    pub corrupt_snapshots: Option<ChaCha8Rng>,
    /// Nodes joining, not started yet.
    pub joiners: BTreeMap<NodeId, Joiner>,
    next_join_request: u64,
    /// The operator's split in flight.
    splitter: Option<Splitter>,
    next_split_request: u64,
    pub splits: SplitCounts,
    /// Every group any node's map showed, and the epoch each node's map was at when last
    /// looked at: a group that leaves every map was merged away.
    pub groups_seen: std::collections::BTreeSet<GroupId>,
    epochs_seen: BTreeMap<NodeId, flotilla_shard_manager::Epoch>,
}

impl Cluster {
    pub fn new(
        nodes: BTreeMap<NodeId, SimNode>,
        setup: Setup,
        faults: WireFaults,
        rng: ChaCha8Rng,
    ) -> Self {
        Self {
            nodes,
            setup,
            network: Network::new(faults),
            clients: Vec::new(),
            recorder: Recorder::default(),
            events: EventQueue::default(),
            now_ms: 0,
            rng,
            answers: Answers::default(),
            leaders: BTreeMap::new(),
            trace_hash: 0,
            trace: std::env::var("FLOTILLA_SIM_TRACE").is_ok_and(|value| value == "1"),
            next_value: 1,
            stops: 0,
            amnesiac_restarts: false,
            backups: false,
            corrupt_snapshots: None,
            joiners: BTreeMap::new(),
            next_join_request: 0,
            splitter: None,
            next_split_request: 0,
            splits: SplitCounts::default(),
            groups_seen: std::collections::BTreeSet::new(),
            epochs_seen: BTreeMap::new(),
        }
    }

    pub fn now(&self) -> Now {
        Now {
            monotonic_ms: self.now_ms,
            wall_ms: 1_700_000_000_000 + self.now_ms,
        }
    }

    pub fn note(&self, line: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>7} {}", self.now_ms, line());
        }
    }

    /// Bootstraps and starts every node.
    pub fn start_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let now = self.now();
            let node = self.nodes.get_mut(&id).expect("node");
            node.bootstrap(&self.setup);
            node.start(&self.setup, now).expect("a new node starts");
            self.schedule_tick(id);
        }
    }

    fn schedule_tick(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let period = (TICK_MS * 100 / node.clock_rate_percent.max(1)).max(1);
        let incarnation = node.incarnation;
        self.events.schedule(
            self.now_ms + period,
            Event::Tick {
                node: id,
                incarnation,
            },
        );
    }

    /// Runs events until `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some((at, event)) = self.events.pop_due(until_ms) {
            self.now_ms = at;
            self.hash(&event);
            let node = event.node();
            self.handle(event);
            if let Some(node) = node {
                self.check_leaders(node);
                self.check_tiling(node);
            }
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    /// Folds the event into the trace hash (what happened, not its payload): two runs of a seed
    /// must hash alike.
    fn hash(&mut self, event: &Event) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.trace_hash.hash(&mut hasher);
        self.now_ms.hash(&mut hasher);
        match event {
            Event::Tick { node, .. } => ('t', node.0).hash(&mut hasher),
            Event::Wake { node } => ('w', node.0).hash(&mut hasher),
            Event::Deliver(batch) => {
                ('d', batch.from.0, batch.to.0, batch.messages.len()).hash(&mut hasher);
            }
            Event::Request {
                node,
                client,
                request_id,
                ..
            } => ('q', *client, node.0, *request_id).hash(&mut hasher),
            Event::Answer {
                client,
                request_id,
                result,
            } => ('a', *client, *request_id, result.is_ok()).hash(&mut hasher),
            Event::Timeout { client, request_id } => ('o', *client, *request_id).hash(&mut hasher),
            Event::Resume { client } => ('r', *client).hash(&mut hasher),
        }
        self.trace_hash = hasher.finish();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => self.tick(node, incarnation),
            Event::Wake { node } => self.turn(node, Vec::new()),
            Event::Deliver(batch) => {
                let to = batch.to;
                self.turn(to, vec![Input::Batch(batch)]);
            }
            Event::Request {
                node,
                client,
                request_id,
                request,
            } => {
                let responder = SimResponder {
                    client,
                    request: request_id,
                    answers: self.answers.clone(),
                };
                self.turn(node, vec![Input::Request(request, responder)]);
            }
            Event::Answer {
                client: JOINER,
                request_id,
                result,
            } => self.join_answered(request_id, result),
            Event::Answer {
                client: SPLITTER,
                request_id,
                result,
            } => self.split_answered(request_id, result),
            Event::Timeout {
                client: SPLITTER,
                request_id,
            } => {
                if self
                    .splitter
                    .as_ref()
                    .is_some_and(|split| split.request_id == request_id)
                {
                    self.send_split();
                }
            }
            Event::Timeout {
                client: JOINER,
                request_id,
            } => {
                if let Some(id) = self.joiner_of(request_id) {
                    self.send_join(id);
                }
            }
            Event::Answer {
                client,
                request_id,
                result,
            } => {
                let now = self.now_ms;
                let action = self.clients[client].answered(request_id, result, now, &self.recorder);
                if let Some(action) = action {
                    self.act(client, action);
                }
            }
            Event::Timeout { client, request_id } => {
                let now = self.now_ms;
                let action = self.clients[client].timed_out(request_id, now, &self.recorder);
                if let Some(action) = action {
                    self.act(client, action);
                }
            }
            Event::Resume { client } => self.resume(client),
        }
    }

    fn tick(&mut self, id: NodeId, incarnation: u64) {
        let node = &self.nodes[&id];
        if node.incarnation != incarnation || !node.is_up() {
            return;
        }
        self.schedule_tick(id);
        self.turn(id, Vec::new());
    }

    /// One turn of a node: unless busy or paused, the time, every waiting input, the ready
    /// cycles; a write keeps it busy for `fsync_ms`.
    fn turn(&mut self, id: NodeId, inputs: Vec<Input>) {
        let now = self.now();
        // A node that has not joined yet hears nothing.
        let Some(node) = self.nodes.get_mut(&id).filter(|node| node.is_up()) else {
            return;
        };
        node.inbox.extend(inputs);
        let blocked_until = node.busy_until_ms.max(node.paused_until_ms);
        if now.monotonic_ms < blocked_until {
            self.events
                .schedule(blocked_until, Event::Wake { node: id });
            return;
        }
        node.core.as_mut().expect("up").on_time(now);
        let mut outcome = Ok(false);
        for input in std::mem::take(&mut node.inbox) {
            if let Err(error) = node.take(input) {
                outcome = Err(error);
                break;
            }
        }
        if outcome.is_ok() {
            outcome = node.run();
        }
        match outcome {
            Ok(wrote) => {
                if wrote {
                    node.busy_until_ms = now.monotonic_ms + node.fsync_ms;
                }
            }
            Err(error) => {
                // A snapshot that passed the check must restore: one that does not means the
                // check let damaged data replace a log.
                assert!(
                    !error.contains("cannot restore its snapshot"),
                    "{id} stopped on a snapshot it had installed: {error}"
                );
                // The node stops, as the driver does: a failed write, a store that failed.
                node.crash();
                self.stops += 1;
                self.note(|| format!("{id} STOPS: {error}"));
            }
        }
        self.flush(id);
    }

    /// With `corrupt_snapshots`, one chunk in three of a range's snapshot gets one byte
    /// changed: the follower must refuse the whole snapshot (its check), never install it or
    /// stop on it.
    fn corrupt_snapshot_chunks(&mut self, batch: &mut Batch) {
        let Some(mut rng) = self.corrupt_snapshots.take() else {
            return;
        };
        for message in &mut batch.messages {
            // A range's snapshot and the meta group's both carry a checksum.
            if let MessageBody::InstallSnapshot { data, offset, .. } = &mut message.message.body
                && !data.is_empty()
                && rng.random_range(0..3) == 0
            {
                let at = rng.random_range(0..data.len());
                data[at] ^= rng.random_range(1..=255u8);
                let (group, to, offset) = (message.group, batch.to, *offset);
                self.note(|| format!("CORRUPT snapshot chunk of {group} to {to} at {offset}"));
            }
        }
        self.corrupt_snapshots = Some(rng);
    }

    /// Puts what a node sent on the wire and what it answered on the clients' links.
    fn flush(&mut self, id: NodeId) {
        let batches = std::mem::take(&mut *self.nodes[&id].outbox.borrow_mut());
        for mut batch in batches {
            self.corrupt_snapshot_chunks(&mut batch);
            for delay in self
                .network
                .delays(Some(batch.from), Some(batch.to), &mut self.rng)
            {
                self.events
                    .schedule(self.now_ms + delay, Event::Deliver(batch.clone()));
            }
        }
        let answers = std::mem::take(&mut *self.answers.borrow_mut());
        for (client, request_id, result) in answers {
            if client == OPERATOR {
                continue;
            }
            for delay in self.network.delays(Some(id), None, &mut self.rng) {
                let answer = Event::Answer {
                    client,
                    request_id,
                    result: result.clone(),
                };
                self.events.schedule(self.now_ms + delay, answer);
            }
        }
    }

    /// Carries out what a client asked for.
    pub fn act(&mut self, client: usize, action: Action) {
        match action {
            Action::Send {
                node,
                request,
                request_id,
            } => {
                for delay in self.network.delays(None, Some(node), &mut self.rng) {
                    let event = Event::Request {
                        node,
                        client,
                        request_id,
                        request: request.clone(),
                    };
                    self.events.schedule(self.now_ms + delay, event);
                }
                let timeout = Event::Timeout { client, request_id };
                self.events
                    .schedule(self.now_ms + ATTEMPT_TIMEOUT_MS, timeout);
            }
            Action::Wait { until_ms } => {
                self.events.schedule(until_ms, Event::Resume { client });
            }
            Action::Finished => {
                let pause = self.rng.random_range(0..20);
                self.events
                    .schedule(self.now_ms + pause, Event::Resume { client });
            }
        }
    }

    /// A client continues its operation, or starts the next one.
    fn resume(&mut self, client: usize) {
        let now = self.now_ms;
        if !self.clients[client].is_idle() {
            let action = self.clients[client].resume(now, &self.recorder);
            return self.act(client, action);
        }
        if self.clients[client].ops_left == 0 {
            return;
        }
        self.clients[client].ops_left -= 1;
        let key_count = self.setup.keys.len();
        let key = self.rng.random_range(0..key_count);
        self.next_value += 1;
        let intent = SimClient::random_intent(&mut self.rng, self.next_value, self.backups);
        let action = self.clients[client].start(key, intent, now, &self.recorder);
        self.act(client, action);
    }

    /// Starts a client's operation now (the final reads).
    pub fn start_op(&mut self, client: usize, key: usize, intent: Intent) {
        let now = self.now_ms;
        let action = self.clients[client].start(key, intent, now, &self.recorder);
        self.act(client, action);
    }

    /// Election safety across the cluster: one leader per group and term.
    /// Election safety, checked on the node an event just ran (only it can have changed role):
    /// at most one leader per range and term, ever.
    fn check_leaders(&mut self, id: NodeId) {
        let Some(core) = self.nodes.get(&id).and_then(|node| node.core.as_ref()) else {
            return;
        };
        let multi = core.multi();
        for group in multi.group_ids() {
            let raft = multi.group(group).expect("hosted");
            if raft.role() != Role::Leader {
                continue;
            }
            let known = *self.leaders.entry((group, raft.term())).or_insert(id);
            assert_eq!(
                known,
                id,
                "election safety violated: {group} has leaders {known} and {id} in {:?}",
                raft.term()
            );
        }
    }

    /// The range map tiles the key space on the node an event just ran (a split changes it):
    /// ranges start where the one before ends, from the empty key to an unbounded last one.
    fn check_tiling(&mut self, id: NodeId) {
        let Some(core) = self.nodes.get(&id).and_then(|node| node.core.as_ref()) else {
            return;
        };
        let map = &core.meta().map;
        if self.epochs_seen.insert(id, map.epoch()) != Some(map.epoch()) {
            self.groups_seen
                .extend(map.ranges().map(|range| range.group));
        }
        let mut next_start: Option<&[u8]> = Some(&[]);
        for range in map.ranges() {
            assert_eq!(
                next_start,
                Some(range.keys.start.as_slice()),
                "{id}'s range map does not tile the key space at {range:?}"
            );
            next_start = range.keys.end.as_deref();
        }
        assert_eq!(next_start, None, "{id}'s last range is bounded");
    }

    /// An operator splits the range holding `at` there, unless a split is in flight.
    pub fn split(&mut self, at: Vec<u8>) {
        if self.splitter.is_some() {
            return;
        }
        self.note(|| format!("SPLIT AT {at:02x?}"));
        self.splitter = Some(Splitter {
            at,
            merge: false,
            right: None,
            request_id: 0,
            tries: 0,
        });
        self.send_split();
    }

    /// An operator merges the range holding `key` with its right neighbour, unless a split or
    /// merge is in flight.
    pub fn merge(&mut self, key: Vec<u8>) {
        if self.splitter.is_some() {
            return;
        }
        self.note(|| format!("MERGE AT {key:02x?}"));
        self.splitter = Some(Splitter {
            at: key,
            merge: true,
            right: None,
            request_id: 0,
            tries: 0,
        });
        self.send_split();
    }

    /// Sends the splitter's current request (again) to every node that is up: the reservation,
    /// or the split of the range that a node's map shows holding the key.
    fn send_split(&mut self) {
        self.next_split_request += 1;
        let request_id = self.next_split_request;
        let up = self.up_nodes();
        let Some(split) = self.splitter.as_mut() else {
            return;
        };
        split.tries += 1;
        if split.tries > SPLIT_TRIES_MAX || up.is_empty() {
            let merge = split.merge;
            self.note(|| "SPLIT OR MERGE GIVEN UP".to_string());
            if merge {
                self.splits.merges_refused += 1;
            } else {
                self.splits.refused += 1;
            }
            self.splitter = None;
            return;
        }
        split.request_id = request_id;
        let request = match split.right {
            _ if split.merge => {
                let seen = up[request_id as usize % up.len()];
                let core = self.nodes[&seen].core.as_ref().expect("up");
                let map = &core.meta().map;
                Request::Merge {
                    group: map.lookup(&split.at).group,
                    epoch: map.lookup(&split.at).epoch,
                }
            }
            None => Request::Admin(AdminCommand::ReserveRange),
            Some(right) => {
                // The map of a node that is up, as a client would have cached it.
                let seen = up[request_id as usize % up.len()];
                let core = self.nodes[&seen].core.as_ref().expect("up");
                let map = &core.meta().map;
                Request::Split {
                    group: map.lookup(&split.at).group,
                    epoch: map.lookup(&split.at).epoch,
                    at: split.at.clone(),
                    right,
                }
            }
        };
        for node in up {
            for delay in self.network.delays(None, Some(node), &mut self.rng) {
                let event = Event::Request {
                    node,
                    client: SPLITTER,
                    request_id,
                    request: request.clone(),
                };
                self.events.schedule(self.now_ms + delay, event);
            }
        }
        let timeout = Event::Timeout {
            client: SPLITTER,
            request_id,
        };
        self.events
            .schedule(self.now_ms + ATTEMPT_TIMEOUT_MS, timeout);
    }

    /// The splitter's answer: the reserved id -> the split; the split applied, or refused ->
    /// done. Other nodes' refusals (not leaders) change nothing: the timeout sends again.
    fn split_answered(
        &mut self,
        request_id: u64,
        result: Result<flotilla_node::api::Reply, flotilla_node::api::ApiError>,
    ) {
        use flotilla_node::api::{ApiError, Reply};
        let Some(split) = self.splitter.as_mut() else {
            return;
        };
        if split.request_id != request_id {
            return;
        }
        match result {
            Ok(Reply::Kv(Response::Reserved { id })) if split.right.is_none() => {
                split.right = Some(GroupId(id));
                self.note(|| format!("SPLIT RESERVED g{id}"));
                self.send_split();
            }
            Ok(Reply::Kv(Response::Split { right, version })) => {
                self.note(|| format!("SPLIT DONE: {right} at version {version}"));
                self.splitter = None;
                self.splits.done += 1;
            }
            Ok(Reply::Kv(Response::Merge { right, version, .. })) => {
                self.note(|| format!("MERGE PREPARED: {right} at version {version}"));
                self.splitter = None;
                self.splits.merges_prepared += 1;
                // Half the time the operator goes on at once with the neighbour that is to
                // freeze (merging it with its own right neighbour): the two merges race, and
                // one freeze is refused, so its merge is given up.
                if right.0 % 2 == 0 {
                    let start = self.nodes.values().find_map(|node| {
                        let map = &node.core.as_ref()?.meta().map;
                        map.ranges()
                            .find(|range| range.group == right)
                            .map(|range| range.keys.start.clone())
                    });
                    if let Some(start) = start {
                        self.merge(start);
                    }
                }
            }
            Ok(Reply::Kv(Response::Invalid(reason))) | Err(ApiError::AdminRefused(reason)) => {
                let merge = split.merge;
                self.note(|| format!("SPLIT OR MERGE REFUSED: {reason}"));
                if merge {
                    self.splits.merges_refused += 1;
                } else {
                    self.splits.refused += 1;
                }
                self.splitter = None;
            }
            other => self.note(|| format!("SPLIT OR MERGE ANSWER {other:?}")),
        }
    }

    /// Schedules a client's first operation.
    pub fn kick(&mut self, client: usize) {
        self.events
            .schedule(self.now_ms + 1, Event::Resume { client });
    }

    /// The nodes that are up, in id order.
    pub fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|node| node.is_up())
            .map(|node| node.id)
            .collect()
    }

    /// An operator's command, sent to every node that is up (only the meta leader takes it).
    pub fn admin(&mut self, command: flotilla_node::api::AdminCommand) {
        for node in self.up_nodes() {
            let request = flotilla_node::api::Request::Admin(command.clone());
            self.events.schedule(
                self.now_ms + 1,
                Event::Request {
                    node,
                    client: OPERATOR,
                    request_id: 0,
                    request,
                },
            );
        }
    }

    /// A new node joins under its never-used id.
    pub fn join(&mut self, node: SimNode) {
        let id = node.id;
        self.note(|| format!("{id} JOINS"));
        let joiner = Joiner {
            node,
            fetching: false,
            request_id: 0,
        };
        self.joiners.insert(id, joiner);
        self.send_join(id);
    }

    fn joiner_of(&self, request_id: u64) -> Option<NodeId> {
        self.joiners
            .iter()
            .find(|(_, joiner)| joiner.request_id == request_id)
            .map(|(&id, _)| id)
    }

    /// Sends a joiner's current request (again) to every node that is up.
    fn send_join(&mut self, id: NodeId) {
        self.next_join_request += 1;
        let request_id = self.next_join_request;
        let Some(joiner) = self.joiners.get_mut(&id) else {
            return;
        };
        joiner.request_id = request_id;
        let request = if joiner.fetching {
            Request::MetaSnapshot
        } else {
            Request::Join {
                node: id,
                address: format!("127.0.0.1:{}", 7000 + id.0),
            }
        };
        for node in self.up_nodes() {
            for delay in self.network.delays(None, Some(node), &mut self.rng) {
                let event = Event::Request {
                    node,
                    client: JOINER,
                    request_id,
                    request: request.clone(),
                };
                self.events.schedule(self.now_ms + delay, event);
            }
        }
        let timeout = Event::Timeout {
            client: JOINER,
            request_id,
        };
        self.events
            .schedule(self.now_ms + ATTEMPT_TIMEOUT_MS, timeout);
    }

    /// A joiner's answer: recorded -> fetch the meta snapshot; the snapshot -> start. Other
    /// nodes' refusals (not the meta leader) change nothing.
    fn join_answered(
        &mut self,
        request_id: u64,
        result: Result<flotilla_node::api::Reply, flotilla_node::api::ApiError>,
    ) {
        use flotilla_node::api::{ApiError, Reply};
        let Some(id) = self.joiner_of(request_id) else {
            return;
        };
        let fetching = self.joiners[&id].fetching;
        match result {
            Ok(Reply::Applied) if !fetching => {
                self.note(|| format!("{id} IS RECORDED"));
                self.joiners.get_mut(&id).expect("joiner").fetching = true;
                self.send_join(id);
            }
            Ok(Reply::MetaSnapshot {
                snapshot,
                directory,
            }) if fetching => {
                let mut node = self.joiners.remove(&id).expect("joiner").node;
                node.bootstrap_joined(&self.setup, snapshot);
                let now = self.now();
                if let Err(error) = node.start(&self.setup, now) {
                    panic!("{id} could not start on the meta snapshot it joined with: {error}");
                }
                let core = node.core.as_mut().expect("started");
                for peer in directory.nodes().filter(|&peer| peer != id) {
                    core.add_peer(peer);
                }
                self.nodes.insert(id, node);
                self.schedule_tick(id);
                self.note(|| format!("{id} JOINED"));
            }
            Err(ApiError::AdminRefused(reason)) => {
                panic!("{id} was refused joining under a new id: {reason}")
            }
            other => self.note(|| format!("{id} JOIN ANSWER {other:?}")),
        }
    }

    /// Makes a node take what waits for it (after a pause ends).
    pub fn wake(&mut self, id: NodeId, at_ms: u64) {
        self.events.schedule(at_ms, Event::Wake { node: id });
    }

    /// A crashed node's disk is lost. Production refuses to start it again under its id (its
    /// data directory is gone and the peers know the id): it stays down for good. Mutation
    /// `amnesiac_restarts`: it bootstraps an empty log again and restarts as before.
    pub fn lose_disk(&mut self, id: NodeId) {
        let amnesiac = self.amnesiac_restarts;
        let node = self.nodes.get_mut(&id).expect("node");
        node.crash();
        node.fs = flotilla_storage::CrashFs::new(node.directory as u64 ^ 0xa3e5);
        node.engine = flotilla_storage::EngineModel::new();
        if amnesiac {
            node.bootstrap(&self.setup);
        } else {
            node.refused = true;
        }
        self.note(|| format!("{id} LOSES ITS DISK (amnesiac restart: {amnesiac})"));
    }

    /// Restarts a stopped node on its disk; a refused log leaves it down for good.
    pub fn restart(&mut self, id: NodeId) {
        let now = self.now();
        let node = self.nodes.get_mut(&id).expect("node");
        if node.is_up() || node.refused {
            return;
        }
        match node.start(&self.setup, now) {
            Ok(()) => {
                self.note(|| format!("{id} RESTARTS"));
                self.schedule_tick(id);
            }
            Err(error) => {
                self.note(|| format!("{id} REFUSES TO START: {error}"));
                panic!("{id} refused to restart on its own log: {error}");
            }
        }
    }
}

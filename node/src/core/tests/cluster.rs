//! A few node cores on an in-memory network, in lockstep simulated time: every core ticks on
//! one clock, a batch is delivered at once unless its link is cut, and each core's log lives
//! on a `CrashFs` that never crashes. What a test of one multi-node rule needs and no more:
//! the whole-cluster simulator (`node/tests/sim`) adds faults, clients and checkers.

use crate::api::{AdminCommand, ApiError, Reply, Request};
use crate::config::{Endpoint, Limits};
use crate::core::{BatchSink, CoreConfig, CoreIdentity, CoreTuning, NodeCore, Now, Respond, boot};
use flotilla_raft::{Batch, GroupId, Incarnation, MessageBody, MultiConfig, NodeId, Role, Term};
use flotilla_shard_manager::placement::{NodeState, PlacementConfig};
use flotilla_shard_manager::{META_GROUP, MetaState, RangeId};
use flotilla_storage::kv::SessionLimits;
use flotilla_storage::{
    Command, CrashFs, Engine, EngineConfig, EngineModel, LogConfig, LogEngine, SnapshotLoading,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

/// One tick of every group's logical clock.
pub(super) const TICK_MS: u64 = 10;

/// A peer silent this long is no longer among a node's live peers (`node_timeout_ticks`).
pub(super) const NODE_TIMEOUT_MS: u64 = 15 * TICK_MS;

/// A node silent this long is no longer live in the placement driver's view.
pub(super) const HEARTBEAT_STALE_MS: u64 = 2_000;

/// The group of the cluster's one range.
pub(super) const RANGE_GROUP: GroupId = GroupId(1);

/// Ticks between two placement rounds: shorter than the default, so a round comes before a
/// cut-off leader's check-quorum steps it down (after 15 to 30 ticks).
const PLACEMENT_INTERVAL_TICKS: u64 = 10;

/// The most rounds of deliveries one tick may take before the cluster is called stuck.
const DELIVERY_WAVES_MAX: usize = 100;

/// How the cluster's nodes keep their ranges and how often they compact.
#[derive(Clone, Copy, Debug)]
pub(super) struct Setup {
    /// Ranges in a disk engine per node (on the engine model), else in memory.
    pub(super) disk_engine: bool,
    /// Entries a group applies between two snapshots.
    pub(super) snapshot_entries: u64,
    /// Log segments before the groups keeping older ones are compacted.
    pub(super) compact_beyond_segments: usize,
    /// The largest value a client may put.
    pub(super) value_bytes_max: usize,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            disk_engine: false,
            snapshot_entries: 10_000,
            compact_beyond_segments: CoreTuning::default().compact_beyond_segments,
            value_bytes_max: Limits::small_for_tests().value_bytes_max,
        }
    }
}

/// The answers given so far, by request id.
type Answers = Rc<RefCell<BTreeMap<u64, Result<Reply, ApiError>>>>;

/// Where the answer to one request goes.
pub(super) struct Responder {
    id: u64,
    answers: Answers,
}

impl Respond for Responder {
    fn answer(self, result: Result<Reply, ApiError>) {
        self.answers.borrow_mut().insert(self.id, result);
    }
}

/// Every core sends into one queue (a batch names its sender and receiver).
pub(super) struct Sink(Rc<RefCell<Vec<Batch>>>);

impl BatchSink for Sink {
    fn send_batch(&self, batch: Batch) {
        self.0.borrow_mut().push(batch);
    }

    fn is_connected(&self, _peer: NodeId) -> bool {
        true
    }

    fn peer_address(&self, _peer: NodeId, _address: &str) {}
}

pub(super) type Core = NodeCore<Responder, Sink>;

/// Nodes 1..=n with one range, driven tick by tick.
pub(super) struct TestCluster {
    now_ms: u64,
    cores: BTreeMap<NodeId, Core>,
    in_flight: Rc<RefCell<Vec<Batch>>>,
    /// Links that drop every batch, as (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Senders whose entries for a group are lost, as (from, group): appends that carry
    /// entries are dropped, everything else of theirs arrives.
    entries_lost: BTreeSet<(NodeId, GroupId)>,
    notes_lost: BTreeSet<NodeId>,
    answers: Answers,
    requests: u64,
}

impl TestCluster {
    /// Nodes 1..=`node_count`, every one a meta voter, and one range on `replicas` of them
    /// (the placement driver keeps it at `replicas`). Nothing has ticked yet.
    pub(super) fn new(node_count: u64, replicas: usize) -> Self {
        Self::with_setup(node_count, replicas, Setup::default())
    }

    /// As `new`, the nodes set up as `setup` says.
    pub(super) fn with_setup(node_count: u64, replicas: usize, setup: Setup) -> Self {
        let endpoints: Vec<Endpoint> = (1..=node_count)
            .map(|id| Endpoint {
                node: NodeId(id),
                address: format!("127.0.0.1:{}", 7000 + id)
                    .parse()
                    .expect("an address"),
            })
            .collect();
        let meta = boot::initial_meta(&endpoints, 1, replicas);
        let in_flight = Rc::new(RefCell::new(Vec::new()));
        let mut cores = BTreeMap::new();
        for endpoint in &endpoints {
            let sink = Sink(Rc::clone(&in_flight));
            let core = start(endpoint.node, &meta, replicas, sink, setup);
            cores.insert(endpoint.node, core);
        }
        let ids: Vec<NodeId> = cores.keys().copied().collect();
        for (&node, core) in &mut cores {
            for &peer in ids.iter().filter(|&&peer| peer != node) {
                core.add_peer(peer);
            }
        }
        Self {
            now_ms: 0,
            cores,
            in_flight,
            cut: BTreeSet::new(),
            entries_lost: BTreeSet::new(),
            notes_lost: BTreeSet::new(),
            answers: Answers::default(),
            requests: 0,
        }
    }

    /// Runs until both groups have a leader, the meta leader registered every data directory
    /// and has no operator in flight, and the leaders have reported to it.
    pub(super) fn settle(&mut self) {
        let settled = self.run_until(10_000, |cluster| {
            let (Some(meta_leader), Some(_)) = (
                cluster.leader_of(META_GROUP),
                cluster.leader_of(RANGE_GROUP),
            ) else {
                return false;
            };
            let meta = cluster.core(meta_leader).meta();
            meta.data_directories.len() == cluster.cores.len()
                && meta.cluster.operators().next().is_none()
                && meta
                    .cluster
                    .range_of_group(RANGE_GROUP)
                    .is_some_and(|range| range.leader.is_some())
        });
        assert!(settled, "the cluster did not settle in 10 s");
        // Every node's meta replica catches up, and the driver has had its first rounds.
        self.run_for(4 * round_ms());
    }

    /// One tick on every node, then every batch delivered.
    pub(super) fn tick(&mut self) {
        self.now_ms += TICK_MS;
        let now = Now {
            monotonic_ms: self.now_ms,
            wall_ms: self.now_ms,
        };
        for core in self.cores.values_mut() {
            core.on_time(now);
            run(core);
        }
        self.deliver();
    }

    /// Ticks for `duration_ms`.
    pub(super) fn run_for(&mut self, duration_ms: u64) {
        let until_ms = self.now_ms + duration_ms;
        while self.now_ms < until_ms {
            self.tick();
        }
    }

    /// Ticks until `done` holds, for at most `limit_ms`; whether it held.
    pub(super) fn run_until(&mut self, limit_ms: u64, done: impl Fn(&Self) -> bool) -> bool {
        let deadline_ms = self.now_ms + limit_ms;
        while !done(self) {
            if self.now_ms >= deadline_ms {
                return false;
            }
            self.tick();
        }
        true
    }

    /// Every batch in flight, and what answering it sends, until nothing is left.
    fn deliver(&mut self) {
        for _ in 0..DELIVERY_WAVES_MAX {
            let batches = std::mem::take(&mut *self.in_flight.borrow_mut());
            if batches.is_empty() {
                return;
            }
            for mut batch in batches {
                if self.cut.contains(&(batch.from, batch.to)) {
                    continue;
                }
                let from = batch.from;
                if self.notes_lost.contains(&from) {
                    batch.notes.clear();
                }
                batch.messages.retain(|message| {
                    let lost = self.entries_lost.contains(&(from, message.group));
                    !(lost && carries_entries(&message.message.body))
                });
                let core = self
                    .cores
                    .get_mut(&batch.to)
                    .expect("a node of the cluster");
                core.on_batch(batch).expect("the batch is stepped");
                run(core);
            }
        }
        panic!("the cluster still sends after {DELIVERY_WAVES_MAX} rounds of deliveries");
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub(super) fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Cuts every link of `node`.
    pub(super) fn isolate(&mut self, node: NodeId) {
        for peer in self.node_ids() {
            if peer != node {
                self.cut(node, peer);
            }
        }
    }

    /// From now on, the entries `from` sends for `group` are lost on the way.
    pub(super) fn lose_entries(&mut self, from: NodeId, group: GroupId) {
        self.entries_lost.insert((from, group));
    }

    /// From now on, the node-to-node notes `from` sends (its placement reports) are lost.
    pub(super) fn lose_notes(&mut self, from: NodeId) {
        self.notes_lost.insert(from);
    }

    /// Every link works again and nothing is lost.
    pub(super) fn heal(&mut self) {
        self.cut.clear();
        self.entries_lost.clear();
        self.notes_lost.clear();
    }

    /// Hands `request` to `node`; the id its answer is kept under.
    pub(super) fn request(&mut self, node: NodeId, request: Request) -> u64 {
        self.requests += 1;
        let responder = Responder {
            id: self.requests,
            answers: Rc::clone(&self.answers),
        };
        let core = self.cores.get_mut(&node).expect("a node of the cluster");
        core.on_request(request, responder);
        run(core);
        self.deliver();
        self.requests
    }

    /// An operator's command to `node`.
    pub(super) fn admin(&mut self, node: NodeId, command: AdminCommand) -> u64 {
        self.request(node, Request::Admin(command))
    }

    /// An operator sets `node`'s state, through the meta leader `meta_leader`; runs until it
    /// is applied there.
    pub(super) fn set_node_state(&mut self, meta_leader: NodeId, node: NodeId, state: NodeState) {
        let asked = self.admin(meta_leader, AdminCommand::SetNodeState { node, state });
        self.run_until(1_000, |cluster| cluster.answer(asked).is_some());
        let answer = self.answer(asked);
        assert!(
            matches!(answer, Some(Ok(Reply::Applied))),
            "setting {node} {state}: {answer:?}"
        );
    }

    /// A put of `key` to `node`, without a session.
    pub(super) fn put(&mut self, node: NodeId, key: &[u8]) -> u64 {
        self.put_value(node, key, b"value")
    }

    /// A put of `key` with `value` to `node`, without a session.
    pub(super) fn put_value(&mut self, node: NodeId, key: &[u8], value: &[u8]) -> u64 {
        let epoch = self
            .core(node)
            .meta()
            .map
            .range_of_group(RANGE_GROUP)
            .map(|range| range.epoch)
            .unwrap_or_default();
        let command = Command::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let request = Request::Kv {
            group: RANGE_GROUP,
            epoch,
            command,
        };
        self.request(node, request)
    }

    /// The answer to request `id`, once given.
    pub(super) fn answer(&self, id: u64) -> Option<Result<Reply, ApiError>> {
        self.answers.borrow().get(&id).cloned()
    }

    pub(super) fn core(&self, node: NodeId) -> &Core {
        self.cores.get(&node).expect("a node of the cluster")
    }

    /// For a test that acts on a node's Raft groups directly.
    pub(super) fn core_mut(&mut self, node: NodeId) -> &mut Core {
        self.cores.get_mut(&node).expect("a node of the cluster")
    }

    /// Lets `node` take what a direct call on its core queued, and delivers it.
    pub(super) fn flush(&mut self, node: NodeId) {
        run(self.core_mut(node));
        self.deliver();
    }

    pub(super) fn node_ids(&self) -> Vec<NodeId> {
        self.cores.keys().copied().collect()
    }

    /// The leader of `group` in the highest term any replica leads in (a leader cut off
    /// from the others may still think it leads, in an older term).
    pub(super) fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.cores
            .iter()
            .filter_map(|(&node, core)| {
                let raft = core.multi().group(group)?;
                (raft.role() == Role::Leader).then_some((raft.term(), node))
            })
            .max()
            .map(|(_, node)| node)
    }

    /// `node`'s term in `group`.
    pub(super) fn term(&self, node: NodeId, group: GroupId) -> Term {
        self.core(node)
            .multi()
            .group(group)
            .map_or(Term(0), flotilla_raft::RaftNode::term)
    }

    /// The cluster's one range.
    pub(super) fn range(&self) -> RangeId {
        let core = self.cores.values().next().expect("a node");
        let range = core.meta().map.ranges().next().expect("a range");
        range.id
    }

    /// The simulated time, in milliseconds since the start.
    pub(super) fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// One placement round, in milliseconds.
pub(super) fn round_ms() -> u64 {
    TICK_MS * PLACEMENT_INTERVAL_TICKS
}

/// The placement driver of every node of a test cluster.
pub(super) fn placement_config(replicas: usize) -> PlacementConfig {
    PlacementConfig {
        replicas_per_range: replicas,
        meta_voters: 3,
        down_after_ms: 60_000,
        heartbeat_stale_ms: HEARTBEAT_STALE_MS,
        step_timeout_ms: 10_000,
        ..PlacementConfig::default()
    }
}

/// Whether `body` is an AppendEntries that carries entries.
fn carries_entries(body: &MessageBody) -> bool {
    matches!(body, MessageBody::AppendEntries { entries, .. } if !entries.is_empty())
}

/// The driver's part after inputs: pins (nothing restarts here, so none is kept), then every
/// ready cycle.
fn run(core: &mut Core) {
    let _ = core.take_pins();
    core.run().expect("the core runs");
}

/// `node` bootstrapped from `meta` on an empty log, and started.
fn start(node: NodeId, meta: &MetaState, replicas: usize, sink: Sink, setup: Setup) -> Core {
    let fs = Arc::new(CrashFs::new(node.0));
    let directory = format!("/node-{}/log", node.0);
    let (engine, _) = LogEngine::open_with(fs, directory, log_config()).expect("a new log opens");
    boot::bootstrap_log(&engine, node, meta).expect("the bootstrap write");
    let data_directory = 0xd1_u128 << 64 | u128::from(node.0);
    let identity = CoreIdentity {
        directory: data_directory,
        incarnation: 1,
        pins: BTreeMap::new(),
    };
    let mut config = CoreConfig {
        snapshot_entries: setup.snapshot_entries,
        ..core_config(node, replicas)
    };
    config.tuning.compact_beyond_segments = setup.compact_beyond_segments;
    config.limits.value_bytes_max = setup.value_bytes_max;
    let multi = multi_config(node, data_directory);
    let store = if setup.disk_engine {
        let ranges = Engine::open_model(&EngineModel::new(), EngineConfig::small_for_tests())
            .expect("an engine opens on the model");
        super::super::RangeStore::Engine(ranges)
    } else {
        super::super::RangeStore::Memory
    };
    boot::start(
        config,
        multi,
        Arc::new(engine),
        sink,
        meta.clone(),
        identity,
        store,
    )
    .expect("the core starts")
}

fn core_config(node: NodeId, replicas: usize) -> CoreConfig {
    CoreConfig {
        node,
        tick_ms: TICK_MS,
        snapshot_entries: 10_000,
        limits: Limits::small_for_tests(),
        session_limits: SessionLimits::default(),
        tuning: CoreTuning {
            placement_interval_ticks: PLACEMENT_INTERVAL_TICKS,
            ..CoreTuning::default()
        },
        placement: placement_config(replicas),
        #[cfg(feature = "mutations")]
        mutation: crate::core::CoreMutation::None,
    }
}

/// The simulator's timing: elections in 15-30 ticks, heartbeats every 3, a peer down after 15.
fn multi_config(node: NodeId, data_directory: u128) -> MultiConfig {
    let mut multi = MultiConfig::new(node);
    multi.raft.id = node;
    multi.raft.rng_seed = node.0;
    multi.raft.election_timeout_ticks_min = 15;
    multi.raft.election_timeout_ticks_max = 30;
    multi.raft.heartbeat_interval_ticks = 3;
    multi.heartbeat_interval_ticks = 3;
    multi.node_timeout_ticks = NODE_TIMEOUT_MS / TICK_MS;
    multi.liveness_every_heartbeats = 2;
    multi.incarnation = Incarnation {
        directory: data_directory,
        start: 1,
    };
    multi
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 256 << 10,
        record_bytes_max: 32 << 10,
        sync_bytes_max: 128 << 10,
        pending_writes_max: 16,
        preallocate: false,
        recent_entries_per_group: 64,
        recent_bytes_per_group: 1 << 20,
        snapshot_loading: SnapshotLoading::NextAsk,
        snapshot_inline_bytes_max: 0,
        snapshot_loads_max: 4,
        snapshot_sends_max: 8,
    }
}

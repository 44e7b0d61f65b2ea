//! One simulated node: the production node core over the real write-ahead log on a
//! crash-simulating file system, what survives it (the disk, the data directory's identity and
//! the peers it pinned), and its state in the simulation (up, paused, busy writing).

use flotilla_node::api::{ApiError, Reply, Request};
use flotilla_node::core::{
    BatchSink, CoreConfig, CoreIdentity, NodeCore, Now, RangeStore, Respond, boot,
};
use flotilla_raft::{Batch, Incarnation, MultiConfig, NodeId};
use flotilla_shard_manager::MetaState;
use flotilla_storage::{CrashFs, Engine, EngineConfig, EngineModel, LogConfig, LogEngine};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// Batches a node sent, drained by the cluster after each of its turns.
pub type Outbox = Rc<RefCell<Vec<Batch>>>;

/// An answer to a client request: (client, request id, result).
pub type Answer = (usize, u64, Result<Reply, ApiError>);

/// Answers given, drained by the cluster after each turn of any node.
pub type Answers = Rc<RefCell<Vec<Answer>>>;

/// The simulated network's end of a node: what the core sends lands in the outbox.
pub struct SimSink(pub Outbox);

impl BatchSink for SimSink {
    fn send_batch(&self, batch: Batch) {
        self.0.borrow_mut().push(batch);
    }

    fn is_connected(&self, _peer: NodeId) -> bool {
        true
    }

    fn peer_address(&self, _peer: NodeId, _address: &str) {}
}

/// Where a client request's answer goes.
pub struct SimResponder {
    pub client: usize,
    pub request: u64,
    pub answers: Answers,
}

impl Respond for SimResponder {
    fn answer(self, result: Result<Reply, ApiError>) {
        self.answers
            .borrow_mut()
            .push((self.client, self.request, result));
    }
}

pub type Core = NodeCore<SimResponder, SimSink>;

/// An input waiting for the node to take it.
pub enum Input {
    Batch(Batch),
    Request(Request, SimResponder),
}

/// What a node is, across crashes.
pub struct SimNode {
    pub id: NodeId,
    pub fs: CrashFs,
    /// The disk of the node's state machine engine (used when the run's ranges live in it):
    /// a power loss keeps what the engine synced and a prefix of the rest.
    pub engine: EngineModel,
    pub core: Option<Core>,
    /// The data directory's id and how many times it started: what a restart keeps.
    pub directory: u128,
    pub incarnation: u64,
    /// The peers' data directories, made durable as the driver would.
    pub pins: BTreeMap<NodeId, u128>,
    /// Inputs that arrived while the node was busy or paused.
    pub inbox: Vec<Input>,
    /// The node is writing (a sync takes time) or frozen until then.
    pub busy_until_ms: u64,
    pub paused_until_ms: u64,
    /// How long one log write takes, and the clock's rate in percent of real time.
    pub fsync_ms: u64,
    pub clock_rate_percent: u64,
    pub outbox: Outbox,
    /// Refused to start for good (its directory is not its own, or it lost its data).
    pub refused: bool,
    /// Snapshots its replicas refused (their data failed the check), over every start.
    pub snapshots_refused: u64,
    /// What the running core had counted of them at the last turn.
    refused_seen: u64,
}

/// What every node of a run shares.
pub struct Setup {
    /// The keys clients use.
    pub keys: Vec<Vec<u8>>,
    pub log: LogConfig,
    pub core: CoreConfig,
    pub multi: MultiConfig,
    pub meta: MetaState,
    pub seed: u64,
    /// Whether the ranges' applied data lives in each node's engine (else in memory).
    pub disk_engine: bool,
}

impl SimNode {
    pub fn new(id: NodeId, directory: u128, fsync_ms: u64, clock_rate_percent: u64) -> Self {
        Self {
            id,
            fs: CrashFs::new(directory as u64),
            engine: EngineModel::new(),
            core: None,
            directory,
            incarnation: 0,
            pins: BTreeMap::new(),
            inbox: Vec::new(),
            busy_until_ms: 0,
            paused_until_ms: 0,
            fsync_ms,
            clock_rate_percent,
            outbox: Outbox::default(),
            refused: false,
            snapshots_refused: 0,
            refused_seen: 0,
        }
    }

    fn log_directory(&self) -> String {
        format!("/node-{}/log", self.id.0)
    }

    /// First start: the initial state of every group this node hosts, written once.
    pub fn bootstrap(&mut self, setup: &Setup) {
        let fs = Arc::new(self.fs.clone());
        let (engine, _) = LogEngine::open_with(fs, self.log_directory(), setup.log.clone())
            .expect("a new log opens");
        boot::bootstrap_log(&engine, self.id, &setup.meta).expect("the bootstrap write");
    }

    /// First start of a node that joined: its meta replica begins at the meta leader's
    /// snapshot.
    pub fn bootstrap_joined(&mut self, setup: &Setup, meta: flotilla_raft::Snapshot) {
        let fs = Arc::new(self.fs.clone());
        let (engine, _) = LogEngine::open_with(fs, self.log_directory(), setup.log.clone())
            .expect("a new log opens");
        boot::bootstrap_joined(&engine, meta).expect("the bootstrap write");
    }

    /// Starts (or restarts) the node from its log; `Err` when recovery refuses the log.
    pub fn start(&mut self, setup: &Setup, now: Now) -> Result<(), String> {
        let fs = Arc::new(self.fs.clone());
        let (engine, _) = LogEngine::open_with(fs, self.log_directory(), setup.log.clone())
            .map_err(|error| error.to_string())?;
        self.incarnation += 1;
        let mut multi = setup.multi.clone();
        multi.node = self.id;
        multi.raft.id = self.id;
        multi.raft.rng_seed = setup.seed ^ (self.id.0 << 32) ^ self.incarnation;
        multi.incarnation = Incarnation {
            directory: self.directory,
            start: self.incarnation,
        };
        let identity = CoreIdentity {
            directory: self.directory,
            incarnation: self.incarnation,
            pins: self.pins.clone(),
        };
        let config = CoreConfig {
            node: self.id,
            ..setup.core.clone()
        };
        let store = if setup.disk_engine {
            let engine = Engine::open_model(&self.engine, EngineConfig::small_for_tests())
                .map_err(|error| error.to_string())?;
            RangeStore::Engine(engine)
        } else {
            RangeStore::Memory
        };
        let sink = SimSink(Rc::clone(&self.outbox));
        let mut core: Core = boot::start(
            config,
            multi,
            Arc::new(engine),
            sink,
            setup.meta.clone(),
            identity,
            store,
        )
        .map_err(|error| error.to_string())?;
        let peers: Vec<NodeId> = core.meta().directory.nodes().collect();
        for peer in peers.into_iter().filter(|&peer| peer != self.id) {
            core.add_peer(peer);
        }
        core.on_time(now);
        self.core = Some(core);
        self.busy_until_ms = 0;
        self.paused_until_ms = 0;
        self.refused_seen = 0;
        Ok(())
    }

    /// Power loss: the core is gone, the disk keeps what it synced and a torn part of the rest;
    /// the engine keeps what it synced and a prefix of its later batches, drawn from the
    /// node's directory and start.
    pub fn crash(&mut self) {
        self.core = None;
        self.inbox.clear();
        self.outbox.borrow_mut().clear();
        self.fs.crash();
        let unsynced = self.engine.unsynced_batch_count() as u64;
        let draw =
            flotilla_node::workload::mix(self.directory as u64 ^ self.incarnation.rotate_left(32));
        self.engine.crash((draw % (unsynced + 1)) as usize);
    }

    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Hands the core one input.
    pub fn take(&mut self, input: Input) -> Result<(), String> {
        let Some(core) = self.core.as_mut() else {
            return Ok(());
        };
        match input {
            Input::Batch(batch) => core.on_batch(batch).map_err(|error| error.to_string()),
            Input::Request(request, responder) => {
                core.on_request(request, responder);
                Ok(())
            }
        }
    }

    /// The driver's turn after inputs: pins made durable, then every ready cycle. Returns
    /// whether it wrote the log.
    pub fn run(&mut self) -> Result<bool, String> {
        let Some(core) = self.core.as_mut() else {
            return Ok(false);
        };
        if let Some(pins) = core.take_pins() {
            self.pins = pins;
        }
        let fsyncs = core.counters().fsyncs;
        let ran = core.run().map_err(|error| error.to_string());
        let refused = core.counters().snapshots_refused;
        self.snapshots_refused += refused - self.refused_seen;
        self.refused_seen = refused;
        ran?;
        if let Some(pins) = core.take_pins() {
            self.pins = pins;
        }
        Ok(core.counters().fsyncs > fsyncs)
    }
}

//! An in-memory cluster of Raft replicas in simulated time, for the paper tests, the 6.5840
//! suite and the simulator. Time is milliseconds of simulated clock; replicas tick every
//! `TICK_MS` (scaled by their clock rate); the network delays, drops and duplicates messages
//! as its `Faults` say. Every random choice comes from one seed.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub, missing_docs)]

pub mod checker;
pub mod disk;
pub mod events;
pub mod mit;
pub mod network;

use checker::Checker;
use flotilla_raft::{
    Config, Entry, EntryPayload, LogIndex, LogReader, MemLog, Membership, Message, NodeId, Persist,
    ProposeError, RaftNode, Ready, Role, Term,
};
use network::{Faults, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Milliseconds of simulated time per tick.
pub const TICK_MS: u64 = 10;

/// The replica configuration the tests use: heartbeats every 100 ms (the 6.5840 lab asks
/// for at most ten per second), elections after 300-600 ms.
pub fn test_config(id: NodeId, seed: u64) -> Config {
    Config {
        election_timeout_ticks_min: 30,
        election_timeout_ticks_max: 60,
        heartbeat_interval_ticks: 10,
        snapshot_chunk_bytes: 1024,
        rng_seed: seed.wrapping_mul(1_000_003).wrapping_add(id.0),
        ..Config::new(id)
    }
}

/// The application state machine of a test replica: every normal entry it applied.
#[derive(Clone, Debug, Default)]
pub struct App {
    pub applied: LogIndex,
    pub values: BTreeMap<LogIndex, Vec<u8>>,
}

impl App {
    fn restore(data: &[u8], index: LogIndex) -> Self {
        let values = if data.is_empty() {
            BTreeMap::new()
        } else {
            postcard::from_bytes(data).expect("a snapshot this harness wrote")
        };
        Self {
            applied: index,
            values,
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.values).expect("encode")
    }
}

/// Where in a ready cycle a crash comes (the steps of `Ready`'s order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the early messages left, before anything was applied or written.
    AfterEarlySends,
    /// In the middle of the write: a prefix of it survives (`torn_prefix`).
    MidWrite,
    /// After the write was durable, before the persisted messages left.
    AfterWrite,
    /// Halfway through applying the entries the write made durable.
    MidApply,
}

/// One replica: up (a RaftNode) or crashed (only its disk).
pub struct Replica {
    pub id: NodeId,
    pub raft: Option<RaftNode<MemLog>>,
    pub disk: Option<MemLog>,
    pub app: App,
    /// Clock rate in percent of real time (100 = exact).
    pub clock_rate_percent: u64,
    /// Bumped on every restart so stale tick events are ignored.
    incarnation: u64,
}

#[derive(Debug)]
enum Event {
    Tick(NodeId, u64),
    Deliver(Message),
}

/// A proposal the leader saw committed and applied: a client would have been answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub index: LogIndex,
    pub data: Vec<u8>,
}

/// An in-memory cluster.
pub struct Cluster {
    pub replicas: BTreeMap<NodeId, Replica>,
    pub network: Network,
    pub checker: Checker,
    pub rng: ChaCha8Rng,
    pub now_ms: u64,
    pub seed: u64,
    /// Snapshot after this many applied entries since the last one (6.5840 SnapShotInterval).
    pub snapshot_interval: Option<u64>,
    /// What each replica ever applied, kept across crashes (the 6.5840 tester's `logs`).
    pub applied_logs: BTreeMap<NodeId, BTreeMap<LogIndex, Vec<u8>>>,
    /// Proposals acknowledged to a client: applied on the leader that accepted them.
    pub acks: Vec<Ack>,
    /// Proposals in flight: (node, index) -> data.
    proposals: HashMap<(NodeId, LogIndex), Vec<u8>>,
    /// Replicas that crash during their next ready cycle, and where in it.
    crash_mid_ready: BTreeMap<NodeId, CrashPoint>,
    /// Replicas that crash during the next ready cycle in which they grant a vote.
    crash_on_vote: BTreeMap<NodeId, CrashPoint>,
    config_of: fn(NodeId, u64) -> Config,
    events: events::EventQueue<Event>,
    /// Reads in flight: (node, context) -> the highest acknowledged write when it was issued.
    reads: HashMap<(NodeId, u64), LogIndex>,
    /// Reads answered: (node, context, read index).
    pub reads_served: Vec<(NodeId, u64, LogIndex)>,
    /// Events processed, for determinism checks.
    pub trace_hash: u64,
    /// Torn writes in which the write order dropped a hard state or compaction that the
    /// random draws kept (see `torn_prefix`).
    pub torn_writes_cut_in_order: u64,
    /// `FLOTILLA_SIM_TRACE=1`: print every event, crash, restart and ready cycle to stderr
    /// (to read what a failing seed did).
    verbose: bool,
    /// How a replica whose disk lost synced data restarts (`disk.rs`).
    pub disk_rule: disk::DiskRule,
    /// Replicas that refused to start on a damaged disk: down for good.
    refused: BTreeSet<NodeId>,
    /// The voters the cluster was bootstrapped with (what an amnesiac rejoins as).
    initial_membership: Membership,
}

impl Cluster {
    /// A cluster of `size` voters (ids 1..=size) on a reliable network.
    pub fn new(size: u64, seed: u64) -> Self {
        Self::with_config(size, seed, test_config)
    }

    /// The same with a custom replica configuration.
    pub fn with_config(size: u64, seed: u64, config_of: fn(NodeId, u64) -> Config) -> Self {
        let ids: Vec<NodeId> = (1..=size).map(NodeId).collect();
        let mut cluster = Self {
            replicas: BTreeMap::new(),
            network: Network::new(Faults::reliable()),
            checker: Checker::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            now_ms: 0,
            seed,
            snapshot_interval: None,
            applied_logs: BTreeMap::new(),
            acks: Vec::new(),
            proposals: HashMap::new(),
            crash_mid_ready: BTreeMap::new(),
            crash_on_vote: BTreeMap::new(),
            config_of,
            events: events::EventQueue::default(),
            reads: HashMap::new(),
            reads_served: Vec::new(),
            trace_hash: 0,
            torn_writes_cut_in_order: 0,
            verbose: std::env::var("FLOTILLA_SIM_TRACE").is_ok_and(|value| value == "1"),
            disk_rule: disk::DiskRule::default(),
            refused: BTreeSet::new(),
            initial_membership: Membership::with_voters(ids.iter().copied()),
        };
        let membership = cluster.initial_membership.clone();
        for &id in &ids {
            let mut disk = MemLog::new();
            disk.persist(&Persist::bootstrap(membership.clone()));
            cluster.add_replica(id, disk);
        }
        cluster
    }

    /// Adds a replica (new, or restarting from `disk`) and starts its clock.
    pub fn add_replica(&mut self, id: NodeId, disk: MemLog) {
        let incarnation = self
            .replicas
            .get(&id)
            .map_or(0, |replica| replica.incarnation + 1);
        let clock_rate_percent = self
            .replicas
            .get(&id)
            .map_or(100, |replica| replica.clock_rate_percent);
        let snapshot = disk.snapshot().expect("mem snapshot");
        let app = App::restore(&snapshot.data, snapshot.meta.last.index);
        self.checker.on_state_restored(id, app.applied);
        self.ingest_snapshot(id, &app);
        let raft =
            RaftNode::new((self.config_of)(id, self.seed + incarnation), disk).expect("start");
        self.replicas.insert(
            id,
            Replica {
                id,
                raft: Some(raft),
                disk: None,
                app,
                clock_rate_percent,
                incarnation,
            },
        );
        self.applied_logs.entry(id).or_default();
        let offset = self.rng.random_range(0..TICK_MS);
        self.schedule(offset, Event::Tick(id, incarnation));
    }

    /// Adds an empty replica that waits for a leader to contact it (for membership changes).
    pub fn add_empty_replica(&mut self, id: NodeId) {
        self.add_replica(id, MemLog::new());
    }

    fn schedule(&mut self, after_ms: u64, event: Event) {
        self.events.schedule_at(self.now_ms + after_ms, event);
    }

    fn tick_period_ms(&self, id: NodeId) -> u64 {
        let rate = self.replicas[&id].clock_rate_percent.max(1);
        (TICK_MS * 100 / rate).max(1)
    }

    /// Runs the simulation for `duration_ms` of simulated time.
    pub fn run_for(&mut self, duration_ms: u64) {
        let until = self.now_ms + duration_ms;
        while let Some((at, event)) = self.events.pop_due(until) {
            self.now_ms = at;
            self.handle(event);
        }
        self.now_ms = until;
    }

    /// Runs until `done` holds (checked every tick) or `limit_ms` passes; returns whether it held.
    pub fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let until = self.now_ms + limit_ms;
        while self.now_ms < until {
            if done(self) {
                return true;
            }
            self.run_for(TICK_MS);
        }
        done(self)
    }

    /// Prints `line` with the simulated time when tracing.
    pub fn note(&self, line: impl FnOnce() -> String) {
        if self.verbose {
            eprintln!("{:>7} {}", self.now_ms, line());
        }
    }

    fn handle(&mut self, event: Event) {
        self.trace(&event);
        if !matches!(event, Event::Tick(..)) {
            self.note(|| format!("{event:?}"));
        }
        match event {
            Event::Tick(id, incarnation) => self.handle_tick(id, incarnation),
            Event::Deliver(message) => self.handle_delivery(message),
        }
        self.check();
    }

    fn trace(&mut self, event: &Event) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.trace_hash.hash(&mut hasher);
        self.now_ms.hash(&mut hasher);
        format!("{event:?}").hash(&mut hasher);
        self.trace_hash = hasher.finish();
    }

    fn handle_tick(&mut self, id: NodeId, incarnation: u64) {
        let Some(replica) = self.replicas.get_mut(&id) else {
            return;
        };
        if replica.incarnation != incarnation {
            return;
        }
        let Some(raft) = replica.raft.as_mut() else {
            return;
        };
        raft.tick();
        let period = self.tick_period_ms(id);
        self.schedule(period, Event::Tick(id, incarnation));
        self.drive(id);
    }

    fn handle_delivery(&mut self, message: Message) {
        if !self.network.can_deliver(message.from, message.to) {
            return;
        }
        let to = message.to;
        let Some(raft) = self.raft_mut(to) else {
            return;
        };
        // Errors are messages Raft chose to ignore (e.g. from a removed replica).
        let _ = raft.step(message);
        self.drive(to);
    }

    fn check(&mut self) {
        let up: BTreeMap<NodeId, &RaftNode<MemLog>> = self
            .replicas
            .iter()
            .filter_map(|(&id, replica)| replica.raft.as_ref().map(|raft| (id, raft)))
            .collect();
        for raft in up.values() {
            raft.check_invariants_always();
        }
        self.checker.after_event(&up);
    }

    /// The replica's Raft node, if it is up.
    pub fn raft(&self, id: NodeId) -> Option<&RaftNode<MemLog>> {
        self.replicas
            .get(&id)
            .and_then(|replica| replica.raft.as_ref())
    }

    pub fn raft_mut(&mut self, id: NodeId) -> Option<&mut RaftNode<MemLog>> {
        self.replicas
            .get_mut(&id)
            .and_then(|replica| replica.raft.as_mut())
    }

    /// Processes every ready cycle of `id` until it has nothing more to do.
    pub fn drive(&mut self, id: NodeId) {
        while self.raft(id).is_some_and(RaftNode::has_ready) {
            let raft = self.raft_mut(id).expect("up");
            let ready = raft.ready();
            self.note(|| {
                let raft = self.raft(id).expect("up");
                format!(
                    "{id} ready: term {} role {:?} commit {} | persist snapshot {:?} entries {:?} hard {:?} compaction {:?} | committed {:?} | sends {}",
                    raft.term(),
                    raft.role(),
                    raft.log().committed(),
                    ready.persist.snapshot.as_ref().map(|s| s.meta.last),
                    ready.persist.entries.iter().map(|e| e.log_id()).collect::<Vec<_>>(),
                    ready.persist.hard_state,
                    ready.persist.compaction.as_ref().map(|s| s.meta.last),
                    ready.committed.iter().map(|e| e.log_id()).collect::<Vec<_>>(),
                    ready.messages.len()
                )
            });
            self.run_ready(id, ready);
        }
    }

    /// One ready cycle in the order `Ready` documents (the order production runs), with the
    /// crash `crash_in_next_ready_at` asked for at its point.
    fn run_ready(&mut self, id: NodeId, ready: Ready) {
        let mut crash = self.crash_mid_ready.remove(&id);
        if grants_a_vote(&ready) {
            crash = crash.or(self.crash_on_vote.remove(&id));
        }
        for message in &ready.messages {
            self.transmit(message.clone());
        }
        if crash == Some(CrashPoint::AfterEarlySends) {
            return self.crash_before_write(id, ready);
        }
        let (durable, rest) = ready.committed.split_at(ready.committed_before_persist);
        self.apply_durable(id, durable);
        if crash == Some(CrashPoint::MidWrite) {
            return self.crash_during(id, ready);
        }
        self.persist(id, &ready.persist);
        if crash == Some(CrashPoint::AfterWrite) {
            return self.crash(id);
        }
        for message in &ready.persisted_messages {
            self.transmit(message.clone());
        }
        self.install(id, &ready);
        let rest = rest.to_vec();
        if crash == Some(CrashPoint::MidApply) {
            for entry in &rest[..rest.len() / 2] {
                self.apply_entry(id, entry);
            }
            return self.crash(id);
        }
        for entry in &rest {
            self.apply_entry(id, entry);
        }
        self.answer_reads(id, &ready);
        self.raft_mut(id).expect("up").advance(ready);
        self.maybe_snapshot(id);
    }

    /// Applies entries `Ready` says are durable here already. The rule they rest on, checked:
    /// a replica never applies an entry its own disk does not hold (a state machine that
    /// persists what it applied would otherwise run ahead of its log after a crash).
    fn apply_durable(&mut self, id: NodeId, entries: &[Entry]) {
        let durable = self.raft(id).expect("up").log().store().last_index();
        for entry in entries {
            assert!(
                entry.index <= durable,
                "apply before persist: {id} applied {} before its disk held it (durable to {durable})",
                entry.index
            );
            self.apply_entry(id, entry);
        }
    }

    fn persist(&mut self, id: NodeId, persist: &Persist) {
        let raft = self.raft(id).expect("up");
        if let Some(first) = persist.entries.first() {
            let prev_term = if persist.snapshot.is_some() {
                persist
                    .snapshot
                    .as_ref()
                    .map(|snapshot| snapshot.meta.last.term)
            } else {
                raft.log().store().term(first.index.prev()).ok()
            };
            self.checker
                .on_entries_persisted(&persist.entries, prev_term);
        }
        self.raft_mut(id).expect("up").store_mut().persist(persist);
    }

    fn transmit(&mut self, message: Message) {
        let delays = self.network.transmit(&message, &mut self.rng);
        for delay in delays {
            self.schedule(delay, Event::Deliver(message.clone()));
        }
    }

    /// Restores the state machine from the snapshot `ready` persisted, if any.
    fn install(&mut self, id: NodeId, ready: &Ready) {
        if let Some(snapshot) = &ready.persist.snapshot {
            let index = snapshot.meta.last.index;
            let app = App::restore(&snapshot.data, index);
            self.ingest_snapshot(id, &app);
            self.replicas.get_mut(&id).expect("replica").app = app;
            self.checker.on_state_restored(id, index);
        }
    }

    fn answer_reads(&mut self, id: NodeId, ready: &Ready) {
        for read in &ready.reads {
            self.serve_read(id, read.context, read.index);
        }
        for context in &ready.aborted_reads {
            self.reads.remove(&(id, *context));
        }
    }

    /// Linearizable reads: a read index must cover every write acknowledged before the read
    /// was issued, or the read could miss it (a stale read).
    fn serve_read(&mut self, id: NodeId, context: u64, index: LogIndex) {
        let Some(required) = self.reads.remove(&(id, context)) else {
            return;
        };
        assert!(
            index >= required,
            "stale read on {id}: read index {index} misses the acknowledged write at {required}"
        );
        self.reads_served.push((id, context, index));
    }

    /// Issues a linearizable read at `id` (6.5840 has none; etcd's ReadIndex).
    pub fn read(&mut self, id: NodeId, context: u64) -> Result<(), ProposeError> {
        let required = self
            .acks
            .iter()
            .map(|ack| ack.index)
            .max()
            .unwrap_or_default();
        let raft = self
            .raft_mut(id)
            .ok_or(ProposeError::NotLeader { leader_hint: None })?;
        raft.read_index(context)?;
        self.reads.insert((id, context), required);
        self.drive(id);
        Ok(())
    }

    /// The tester learns what a replica's state machine holds after loading a snapshot
    /// (6.5840 `ingestSnap`), checking it against what was applied before.
    fn ingest_snapshot(&mut self, id: NodeId, app: &App) {
        let log = self.applied_logs.entry(id).or_default();
        for (&index, value) in &app.values {
            if let Some(previous) = log.get(&index) {
                assert_eq!(
                    previous, value,
                    "{id}'s snapshot disagrees with what it applied at {index}"
                );
            }
            log.insert(index, value.clone());
        }
    }

    fn apply_entry(&mut self, id: NodeId, entry: &Entry) {
        self.checker.on_applied(id, entry);
        let replica = self.replicas.get_mut(&id).expect("replica");
        replica.app.applied = entry.index;
        if let EntryPayload::Normal(data) = &entry.payload {
            let data = data.to_vec();
            replica.app.values.insert(entry.index, data.clone());
            let log = self.applied_logs.entry(id).or_default();
            if let Some(previous) = log.get(&entry.index) {
                assert_eq!(
                    previous, &data,
                    "{id} re-applied a different value at {}",
                    entry.index
                );
            }
            log.insert(entry.index, data.clone());
            if self.proposals.get(&(id, entry.index)) == Some(&data) {
                self.proposals.remove(&(id, entry.index));
                self.acks.push(Ack {
                    index: entry.index,
                    data,
                });
            }
        }
    }

    fn maybe_snapshot(&mut self, id: NodeId) {
        let Some(interval) = self.snapshot_interval else {
            return;
        };
        let replica = self.replicas.get_mut(&id).expect("replica");
        let raft = replica.raft.as_mut().expect("up");
        let applied = raft.log().applied();
        let snapshot_index = raft.log().first_index().prev();
        if applied.0 >= snapshot_index.0 + interval {
            let data = replica.app.snapshot();
            raft.compact(applied, data)
                .expect("compact at the applied index");
            self.drive(id);
        }
    }

    /// Crashes `id` after this cycle's early sends, before its write: nothing of it persists.
    fn crash_before_write(&mut self, id: NodeId, ready: Ready) {
        self.note(|| format!("{id} CRASHES after its early sends, before its write"));
        let replica = self.replicas.get_mut(&id).expect("replica");
        let raft = replica.raft.take().expect("up");
        replica.disk = Some(raft_into_disk(raft, ready));
        self.forget_volatile(id);
    }

    fn crash_during(&mut self, id: NodeId, ready: Ready) {
        // Before the sync returns any prefix of the write may be on disk. The caller writes a
        // `Persist` in the order `Ready` documents (snapshot, entries, hard state, compaction),
        // as the WAL's records do, and recovery keeps a prefix of those records. Only the
        // early messages were sent, and only durable entries applied.
        let mut persist = ready.persist.clone();
        if torn_prefix(&mut persist, &mut self.rng, true) {
            self.torn_writes_cut_in_order += 1;
        }
        self.note(|| {
            format!(
                "{id} CRASHES mid-ready, keeping entries {:?} hard {:?} compaction {:?}",
                persist
                    .entries
                    .iter()
                    .map(|e| e.log_id())
                    .collect::<Vec<_>>(),
                persist.hard_state,
                persist.compaction.as_ref().map(|s| s.meta.last)
            )
        });
        self.persist(id, &persist);
        let replica = self.replicas.get_mut(&id).expect("replica");
        let raft = replica.raft.take().expect("up");
        let disk = raft_into_disk(raft, ready);
        replica.disk = Some(disk);
        self.forget_volatile(id);
    }

    /// Crashes `id`: it keeps only what it persisted.
    pub fn crash(&mut self, id: NodeId) {
        self.note(|| format!("{id} CRASHES"));
        let replica = self.replicas.get_mut(&id).expect("replica");
        if let Some(raft) = replica.raft.take() {
            replica.disk = Some(raft.into_store());
        }
        self.forget_volatile(id);
    }

    /// A crashed replica's clients get no answer: its pending proposals and reads are gone.
    fn forget_volatile(&mut self, id: NodeId) {
        self.proposals.retain(|(node, _), _| *node != id);
        self.reads.retain(|(node, _), _| *node != id);
        self.checker.on_crash(id);
    }

    /// Crashes `id` in the middle of its next ready cycle's write (losing what it did not sync).
    pub fn crash_in_next_ready(&mut self, id: NodeId) {
        self.crash_in_next_ready_at(id, CrashPoint::MidWrite);
    }

    /// Crashes `id` at `point` of its next ready cycle.
    pub fn crash_in_next_ready_at(&mut self, id: NodeId, point: CrashPoint) {
        self.crash_mid_ready.insert(id, point);
    }

    /// Crashes `id` at `point` of the next ready cycle in which it grants a vote.
    pub fn crash_in_next_vote_at(&mut self, id: NodeId, point: CrashPoint) {
        self.crash_on_vote.insert(id, point);
    }

    /// Cancels every crash scheduled with `crash_in_next_ready` or `crash_in_next_vote_at`.
    pub fn cancel_pending_crashes(&mut self) {
        self.crash_mid_ready.clear();
        self.crash_on_vote.clear();
    }

    /// The disk of crashed `id` lost synced data (`fault`): under `DiskRule::Refuse` it never
    /// starts again; under `StartAnyway` its next restart starts on what is left.
    pub fn damage_disk(&mut self, id: NodeId, fault: disk::DiskFault) {
        match self.disk_rule {
            disk::DiskRule::Refuse => {
                self.note(|| format!("{id} LOSES SYNCED DATA ({fault:?}) and refuses to start"));
                self.refused.insert(id);
            }
            disk::DiskRule::StartAnyway => {
                self.note(|| format!("{id} LOSES SYNCED DATA ({fault:?}) and will start anyway"));
                let replica = self.replicas.get_mut(&id).expect("replica");
                if let Some(old) = replica.disk.as_ref() {
                    let initial = &self.initial_membership;
                    replica.disk = Some(disk::damaged(old, fault, initial, &mut self.rng));
                }
            }
        }
    }

    /// Whether `id` refused to start on a damaged disk (it is down for good).
    pub fn is_refused(&self, id: NodeId) -> bool {
        self.refused.contains(&id)
    }

    /// Restarts a crashed `id` from its disk (unless it refused to start on a damaged one).
    pub fn restart(&mut self, id: NodeId) {
        if self.refused.contains(&id) {
            return;
        }
        let disk = self
            .replicas
            .get_mut(&id)
            .and_then(|replica| replica.disk.take());
        if let Some(disk) = disk {
            self.note(|| format!("{id} RESTARTS"));
            self.add_replica(id, disk);
        }
    }

    /// Whether `id` is up.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.raft(id).is_some()
    }

    /// Proposes `data` at `id` (6.5840 `Start`).
    pub fn propose(&mut self, id: NodeId, data: Vec<u8>) -> Result<LogIndex, ProposeError> {
        let raft = self
            .raft_mut(id)
            .ok_or(ProposeError::NotLeader { leader_hint: None })?;
        let index = raft.propose(data.clone())?;
        self.proposals.insert((id, index), data);
        self.drive(id);
        Ok(index)
    }

    /// Ids of every replica.
    pub fn ids(&self) -> Vec<NodeId> {
        self.replicas.keys().copied().collect()
    }

    /// Replicas that are up and connected.
    pub fn live(&self) -> Vec<NodeId> {
        self.ids()
            .into_iter()
            .filter(|&id| self.is_up(id) && self.network.is_connected(id))
            .collect()
    }

    /// The leaders among live replicas, by term.
    pub fn leaders(&self) -> BTreeMap<Term, Vec<NodeId>> {
        let mut leaders: BTreeMap<Term, Vec<NodeId>> = BTreeMap::new();
        for id in self.live() {
            let raft = self.raft(id).expect("up");
            if raft.role() == Role::Leader {
                leaders.entry(raft.term()).or_default().push(id);
            }
        }
        leaders
    }

    /// The leader of the highest term among live replicas, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.leaders()
            .into_iter()
            .next_back()
            .map(|(_, ids)| ids[0])
    }

    /// How many replicas applied `index`, and the value (6.5840 `nCommitted`).
    pub fn n_committed(&self, index: LogIndex) -> (usize, Option<Vec<u8>>) {
        let mut count = 0;
        let mut value = None;
        for log in self.applied_logs.values() {
            if let Some(found) = log.get(&index) {
                if let Some(previous) = &value {
                    assert_eq!(previous, found, "committed values differ at {index}");
                }
                count += 1;
                value = Some(found.clone());
            }
        }
        (count, value)
    }

    /// The highest index any replica applied.
    pub fn max_applied_index(&self) -> LogIndex {
        self.applied_logs
            .values()
            .filter_map(|log| log.keys().next_back().copied())
            .max()
            .unwrap_or_default()
    }
}

/// Whether `ready` sends a granted vote (not a pre-vote), in either of its message lists.
fn grants_a_vote(ready: &Ready) -> bool {
    ready
        .messages
        .iter()
        .chain(&ready.persisted_messages)
        .any(|message| {
            matches!(
                message.body,
                flotilla_raft::MessageBody::VoteResponse {
                    pre_vote: false,
                    granted: true,
                    ..
                }
            )
        })
}

fn raft_into_disk(raft: RaftNode<MemLog>, ready: Ready) -> MemLog {
    // The ready is dropped unacknowledged: the process died before it could finish.
    drop(ready);
    raft.into_store()
}

/// Cuts `persist` to what a write torn by a crash may leave: a random prefix of its parts in
/// write order (snapshot, entries, hard state, compaction; the snapshot is always kept).
/// Regression: the crash model once kept the hard state while dropping entries before it, a
/// state no prefix of the write can produce, and seeds 2016640 and 2028603 then "found" a
/// follower that restarted with a commit index covering its own stale, overwritten entry.
/// The random draws are the ones the model always made (`draw_compaction`: whether it drew
/// for the compaction), so every other seed of the single-group simulator replays unchanged;
/// the multi-node model, which always kept a compaction, now drops one written after a lost
/// part. Returns whether the write order cut a part that the draws kept.
pub fn torn_prefix(persist: &mut Persist, rng: &mut ChaCha8Rng, draw_compaction: bool) -> bool {
    let keep = rng.random_range(0..=persist.entries.len());
    let all_entries = keep == persist.entries.len();
    persist.entries.truncate(keep);
    let hard_state_drawn = !rng.random_bool(0.5);
    let compaction_drawn = !(draw_compaction && rng.random_bool(0.5));
    // A part survives only if the draw keeps it and everything written before it survived.
    let hard_state_kept = all_entries && hard_state_drawn;
    let reached_compaction = all_entries && (persist.hard_state.is_none() || hard_state_kept);
    let cut = (hard_state_drawn && !hard_state_kept && persist.hard_state.is_some())
        || (compaction_drawn && !reached_compaction && persist.compaction.is_some());
    if !hard_state_kept {
        persist.hard_state = None;
    }
    if !(compaction_drawn && reached_compaction) {
        persist.compaction = None;
    }
    cut
}

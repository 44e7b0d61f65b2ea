//! A cluster of nodes, each one `MultiRaft` hosting many groups, in simulated time: batches
//! travel a wire that loses, duplicates and delays them, over links that reconnect as the
//! transport does (`links.rs`); nodes crash (keeping their stores) and restart; partitions cut
//! node pairs. Every group's safety is checked after every ready that touched it, with the
//! single-group checker.

use crate::harness::checker::Checker;
use crate::harness::events::EventQueue;
use crate::links::{LinkPolicy, Links};
use flotilla_raft::{
    Batch, Config, EntryPayload, GroupId, LogIndex, MemLog, Membership, MultiConfig, MultiRaft,
    Mutation, NodeId, Persist, RaftNode, Role,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Simulated milliseconds per tick of the tests' timing.
pub const TICK_MS: u64 = 10;

/// The clocks of a cluster: the tick and the timeouts counted in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub tick_ms: u64,
    pub election_ticks_min: u64,
    pub election_ticks_max: u64,
    pub heartbeat_ticks: u64,
    /// An idle peer's liveness batch goes every this many heartbeats.
    pub liveness_every_heartbeats: u64,
    pub node_timeout_ticks: u64,
}

impl Timing {
    /// The tests' timing: node heartbeat every 100 ms, elections after 300-600 ms, a peer
    /// node is down after 500 ms of silence.
    pub const TESTS: Self = Self {
        tick_ms: TICK_MS,
        election_ticks_min: 30,
        election_ticks_max: 60,
        heartbeat_ticks: 10,
        liveness_every_heartbeats: 1,
        node_timeout_ticks: 50,
    };

    /// The `flotilla` node's defaults (`node/src/default.toml`): 20 ms ticks, heartbeats
    /// every 40 ms (80 ms to an idle peer), elections after 200-400 ms, a peer node is down
    /// after 200 ms.
    pub const NODE_DEFAULT: Self = Self {
        tick_ms: 20,
        election_ticks_min: 10,
        election_ticks_max: 20,
        heartbeat_ticks: 2,
        liveness_every_heartbeats: 2,
        node_timeout_ticks: 10,
    };

    /// The longest election timeout, in milliseconds.
    pub fn election_ms_max(&self) -> u64 {
        self.election_ticks_max * self.tick_ms
    }

    /// The node timeout, in milliseconds.
    pub fn node_timeout_ms(&self) -> u64 {
        self.node_timeout_ticks * self.tick_ms
    }
}

/// The MultiRaft configuration of node `node` in `layout`, its replicas' seeds from `seed`.
pub fn multi_config(node: NodeId, seed: u64, layout: &Layout) -> MultiConfig {
    let timing = layout.timing;
    MultiConfig {
        raft: Config {
            election_timeout_ticks_min: timing.election_ticks_min,
            election_timeout_ticks_max: timing.election_ticks_max,
            heartbeat_interval_ticks: timing.heartbeat_ticks,
            rng_seed: seed.wrapping_mul(31).wrapping_add(node.0),
            mutation: layout.mutation,
            ..Config::new(node)
        },
        heartbeat_interval_ticks: timing.heartbeat_ticks,
        liveness_every_heartbeats: timing.liveness_every_heartbeats,
        node_timeout_ticks: timing.node_timeout_ticks,
        quiesce: layout.quiesce,
        // Half the runs hand out a few entries per ready, so replicas far behind (restarts,
        // partitions healed) apply their backlog over many readies.
        apply_bytes_per_ready: if seed.is_multiple_of(2) {
            64
        } else {
            MultiConfig::new(node).apply_bytes_per_ready
        },
        ..MultiConfig::new(node)
    }
}

/// The shape of a cluster: nodes, groups, replicas per group, clocks and links.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub nodes: u64,
    pub groups: u64,
    /// Replicas per group, placed on consecutive nodes starting at a rotating one (as the
    /// node's initial placement does); `nodes` puts a replica of every group on every node.
    pub replicas: u64,
    pub seed: u64,
    pub quiesce: bool,
    pub timing: Timing,
    pub links: LinkPolicy,
    /// A deliberately broken rule (regression seeds re-enact their bug with it).
    pub mutation: Mutation,
}

impl Layout {
    /// Every group on every node, the tests' timing, today's transport.
    pub fn full(nodes: u64, groups: u64, seed: u64, quiesce: bool) -> Self {
        Self {
            nodes,
            groups,
            replicas: nodes,
            seed,
            quiesce,
            timing: Timing::TESTS,
            links: LinkPolicy::NOW,
            mutation: Mutation::None,
        }
    }

    /// The replicas of `group`: `replicas` consecutive nodes from a rotating first one.
    pub fn replicas_of(&self, group: GroupId) -> Vec<NodeId> {
        (0..self.replicas.min(self.nodes))
            .map(|offset| NodeId((group.0 - 1 + offset) % self.nodes + 1))
            .collect()
    }
}

enum Event {
    Tick(NodeId, u64),
    Deliver(Batch),
}

/// One node: up (a MultiRaft) or crashed (its stores).
pub struct SimNode {
    pub multi: Option<MultiRaft<MemLog>>,
    crashed_stores: BTreeMap<GroupId, MemLog>,
    incarnation: u64,
    /// Clock rate in percent of real time.
    pub clock_rate_percent: u64,
    /// Crash in the middle of the next ready cycle, keeping only part of its writes.
    pub crash_in_next_ready: bool,
}

/// Wire counters, per direction.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    /// Batches sent (before loss), per (source, target).
    pub batches: BTreeMap<(NodeId, NodeId), u64>,
    /// Per-group messages (not heartbeat entries) carried.
    pub group_messages: u64,
    /// Coalesced heartbeat entries carried.
    pub heartbeat_entries: u64,
}

/// The cluster.
pub struct MultiCluster {
    pub nodes: BTreeMap<NodeId, SimNode>,
    pub groups: Vec<GroupId>,
    pub rng: ChaCha8Rng,
    pub now_ms: u64,
    pub drop_percent: u32,
    pub duplicate_percent: u32,
    pub delay_ms_max: u64,
    /// 6.5840-style long reordering: two of three batches wait 200-2200 ms.
    pub long_reordering: bool,
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Reads in flight: (node, group, context) -> highest acknowledged write when issued.
    reads: HashMap<(NodeId, GroupId, u64), LogIndex>,
    /// Reads answered with a read index that covers every earlier acknowledged write.
    pub reads_served: u64,
    /// Each replica's state machine (lost on a crash, rebuilt from its snapshot).
    apps: HashMap<(NodeId, GroupId), BTreeMap<LogIndex, Vec<u8>>>,
    /// Snapshot a group after this many applied entries since its last snapshot.
    pub snapshot_interval: Option<u64>,
    /// Snapshots taken.
    pub compactions: u64,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: u64,
    pub wire: Wire,
    pub checkers: HashMap<GroupId, Checker>,
    /// (group, index) -> data of proposals acknowledged (applied on the proposing leader).
    pub acks: BTreeMap<(GroupId, LogIndex), Vec<u8>>,
    proposals: HashMap<(NodeId, GroupId, LogIndex), Vec<u8>>,
    /// What each node applied, per group (kept across crashes).
    pub applied: HashMap<(NodeId, GroupId), BTreeMap<LogIndex, Vec<u8>>>,
    pub layout: Layout,
    /// Each node pair's link, reconnecting as the transport does.
    pub links: Links,
    /// `FLOTILLA_SIM_TRACE_GROUP`: print this group's messages and replica states.
    trace_group: Option<GroupId>,
    events: EventQueue<Event>,
}

impl MultiCluster {
    /// `node_count` nodes, `group_count` groups each with a replica on every node.
    pub fn new(node_count: u64, group_count: u64, seed: u64, quiesce: bool) -> Self {
        Self::build(Layout::full(node_count, group_count, seed, quiesce))
    }

    /// A cluster of `layout`'s shape, every group bootstrapped on its replicas.
    pub fn build(layout: Layout) -> Self {
        let mut cluster = Self {
            nodes: BTreeMap::new(),
            groups: (1..=layout.groups).map(GroupId).collect(),
            rng: ChaCha8Rng::seed_from_u64(layout.seed),
            now_ms: 0,
            drop_percent: 0,
            duplicate_percent: 0,
            delay_ms_max: 5,
            long_reordering: false,
            cut: BTreeSet::new(),
            reads: HashMap::new(),
            reads_served: 0,
            apps: HashMap::new(),
            snapshot_interval: None,
            compactions: 0,
            snapshots_installed: 0,
            wire: Wire::default(),
            checkers: HashMap::new(),
            acks: BTreeMap::new(),
            proposals: HashMap::new(),
            applied: HashMap::new(),
            layout,
            links: Links::new(layout.links),
            trace_group: crate::trace::group_from_env(),
            events: EventQueue::default(),
        };
        for id in (1..=layout.nodes).map(NodeId) {
            let mut stores = BTreeMap::new();
            for &group in &cluster.groups {
                let replicas = layout.replicas_of(group);
                if replicas.contains(&id) {
                    let mut store = MemLog::new();
                    store.persist(&Persist::bootstrap(Membership::with_voters(replicas)));
                    stores.insert(group, store);
                }
            }
            cluster.start_node(id, stores, 0);
        }
        cluster
    }

    fn start_node(&mut self, id: NodeId, stores: BTreeMap<GroupId, MemLog>, incarnation: u64) {
        let layout = self.layout;
        let config = multi_config(id, layout.seed + incarnation, &layout);
        let mut multi = MultiRaft::new(config);
        for (group, store) in stores {
            multi.create_group(group, store).expect("create group");
        }
        let clock_rate_percent = self
            .nodes
            .get(&id)
            .map_or(100, |node| node.clock_rate_percent);
        let node = SimNode {
            multi: Some(multi),
            crashed_stores: BTreeMap::new(),
            incarnation,
            clock_rate_percent,
            crash_in_next_ready: false,
        };
        self.nodes.insert(id, node);
        let offset = self.rng.random_range(0..self.layout.timing.tick_ms);
        self.schedule(offset, Event::Tick(id, incarnation));
    }

    fn schedule(&mut self, after_ms: u64, event: Event) {
        self.events.schedule_at(self.now_ms + after_ms, event);
    }

    /// Runs for `duration_ms` of simulated time.
    pub fn run_for(&mut self, duration_ms: u64) {
        let until = self.now_ms + duration_ms;
        while let Some((at, event)) = self.events.pop_due(until) {
            self.now_ms = at;
            match event {
                Event::Tick(id, incarnation) => self.tick(id, incarnation),
                Event::Deliver(batch) => self.deliver(batch),
            }
        }
        self.now_ms = until;
    }

    /// Runs until `done` holds (checked every tick) or `limit_ms` passes.
    pub fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        let until = self.now_ms + limit_ms;
        while self.now_ms < until {
            if done(self) {
                return true;
            }
            self.run_for(self.layout.timing.tick_ms);
        }
        done(self)
    }

    fn tick(&mut self, id: NodeId, incarnation: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.incarnation != incarnation {
            return;
        }
        let Some(multi) = node.multi.as_mut() else {
            return;
        };
        multi.tick();
        let period = (self.layout.timing.tick_ms * 100 / node.clock_rate_percent.max(1)).max(1);
        self.schedule(period, Event::Tick(id, incarnation));
        self.drive(id);
    }

    fn deliver(&mut self, batch: Batch) {
        let dropped = self.cut.contains(&(batch.from, batch.to))
            || !self.links.usable(batch.from, batch.to, self.now_ms);
        if let Some(group) = self.trace_group {
            crate::trace::batch(self.now_ms, &batch, group, dropped);
        }
        if dropped {
            return;
        }
        let to = batch.to;
        let Some(multi) = self.multi_mut(to) else {
            return;
        };
        let _ = multi.step_batch(batch);
        self.drive(to);
    }

    pub fn multi(&self, id: NodeId) -> Option<&MultiRaft<MemLog>> {
        self.nodes.get(&id).and_then(|node| node.multi.as_ref())
    }

    pub fn multi_mut(&mut self, id: NodeId) -> Option<&mut MultiRaft<MemLog>> {
        self.nodes.get_mut(&id).and_then(|node| node.multi.as_mut())
    }

    /// Processes every ready of node `id`: persist, send, apply, check, advance.
    pub fn drive(&mut self, id: NodeId) {
        while self.multi(id).is_some_and(MultiRaft::has_ready) {
            let multi = self
                .nodes
                .get_mut(&id)
                .and_then(|node| node.multi.as_mut())
                .expect("up");
            let ready = multi.ready();
            self.run_ready(id, ready);
        }
    }

    /// One ready cycle in the order `MultiReady` documents, the order production runs: early
    /// sends, the durable prefix applied, the write (where a scheduled crash tears it), the
    /// persisted sends, the rest applied.
    fn run_ready(&mut self, id: NodeId, ready: flotilla_raft::MultiReady) {
        for batch in &ready.batches {
            self.send(batch.clone());
        }
        for (group, group_ready) in &ready.groups {
            let durable = &group_ready.committed[..group_ready.committed_before_persist];
            for entry in durable {
                self.apply(id, *group, entry);
            }
        }
        if self.nodes[&id].crash_in_next_ready {
            return self.crash_during(id, ready);
        }
        for (group, group_ready) in &ready.groups {
            self.persist(id, *group, &group_ready.persist);
        }
        for batch in &ready.persisted_batches {
            self.send(batch.clone());
        }
        let touched: Vec<GroupId> = ready.groups.iter().map(|(group, _)| *group).collect();
        for (group, group_ready) in &ready.groups {
            if let Some(snapshot) = &group_ready.persist.snapshot {
                self.restore(id, *group, &snapshot.data, snapshot.meta.last.index);
                self.snapshots_installed += 1;
            }
            let rest = &group_ready.committed[group_ready.committed_before_persist..];
            for entry in rest {
                self.apply(id, *group, entry);
            }
            for read in &group_ready.reads {
                self.serve_read(id, *group, read.context, read.index);
            }
        }
        self.multi_mut(id).expect("up").advance(ready);
        if let Some(group) = self.trace_group.filter(|group| touched.contains(group)) {
            crate::trace::replica(self.now_ms, id, self.multi(id).expect("up"), group);
        }
        for &group in &touched {
            self.maybe_snapshot(id, group);
        }
        for group in touched {
            self.check(group);
        }
    }

    /// A read index must cover every write acknowledged before the read was issued.
    fn serve_read(&mut self, id: NodeId, group: GroupId, context: u64, index: LogIndex) {
        let Some(required) = self.reads.remove(&(id, group, context)) else {
            return;
        };
        assert!(
            index >= required,
            "stale read on {id} in {group}: read index {index} misses the acknowledged write at {required}"
        );
        self.reads_served += 1;
    }

    /// Issues a linearizable read of `group` at its leader.
    pub fn read(&mut self, group: GroupId, context: u64) -> bool {
        let Some(leader) = self.leader_of(group) else {
            return false;
        };
        let required = self
            .acks
            .range((group, LogIndex(0))..=(group, LogIndex(u64::MAX)))
            .map(|(&(_, index), _)| index)
            .max()
            .unwrap_or_default();
        let multi = self.multi_mut(leader).expect("up");
        if multi.read_index(group, context).is_err() {
            return false;
        }
        self.reads.insert((leader, group, context), required);
        self.drive(leader);
        true
    }

    /// Cuts the link from `source` to `target` only.
    pub fn cut_one_way(&mut self, source: NodeId, target: NodeId) {
        self.cut.insert((source, target));
        self.refresh_links();
    }

    /// Whether the network drops everything from `source` to `target`.
    pub fn is_cut(&self, source: NodeId, target: NodeId) -> bool {
        self.cut.contains(&(source, target))
    }

    /// Whether `a` and `b` are up and the network carries packets both ways between them
    /// (their link may still be waiting for its next attempt: that is the transport's part).
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.is_up(a) && self.is_up(b) && !self.is_cut(a, b) && !self.is_cut(b, a)
    }

    /// Tells every link whether its pair can talk now.
    fn refresh_links(&mut self) {
        let ids = self.node_ids();
        for (position, &a) in ids.iter().enumerate() {
            for &b in &ids[position + 1..] {
                let healthy = self.connected(a, b);
                self.links.set_healthy(a, b, healthy, self.now_ms);
            }
        }
    }

    /// The replica's state machine becomes the snapshot's; the tester learns what it holds.
    fn restore(&mut self, id: NodeId, group: GroupId, data: &[u8], index: LogIndex) {
        let values: BTreeMap<LogIndex, Vec<u8>> = if data.is_empty() {
            BTreeMap::new()
        } else {
            postcard::from_bytes(data).expect("a snapshot this harness wrote")
        };
        let seen = self.applied.entry((id, group)).or_default();
        for (index, value) in &values {
            if let Some(previous) = seen.get(index) {
                assert_eq!(
                    previous, value,
                    "{id}'s snapshot of {group} disagrees at {index}"
                );
            }
            seen.insert(*index, value.clone());
        }
        self.apps.insert((id, group), values);
        self.checkers
            .entry(group)
            .or_default()
            .on_state_restored(id, index);
    }

    fn maybe_snapshot(&mut self, id: NodeId, group: GroupId) {
        let Some(interval) = self.snapshot_interval else {
            return;
        };
        let data = postcard::to_allocvec(self.apps.get(&(id, group)).unwrap_or(&BTreeMap::new()))
            .expect("encode");
        let multi = self.multi_mut(id).expect("up");
        let raft = multi.group(group).expect("hosted");
        let applied = raft.log().applied();
        if applied.0 >= raft.log().first_index().0 - 1 + interval {
            multi
                .compact(group, applied, data)
                .expect("compact at the applied index");
            self.compactions += 1;
        }
    }

    fn apply(&mut self, id: NodeId, group: GroupId, entry: &flotilla_raft::Entry) {
        self.checkers
            .entry(group)
            .or_default()
            .on_applied(id, entry);
        if let EntryPayload::Normal(data) = &entry.payload {
            let data = data.to_vec();
            self.apps
                .entry((id, group))
                .or_default()
                .insert(entry.index, data.clone());
            self.applied
                .entry((id, group))
                .or_default()
                .insert(entry.index, data.clone());
            if self.proposals.remove(&(id, group, entry.index)).as_ref() == Some(&data) {
                self.acks.insert((group, entry.index), data);
            }
        }
    }

    fn check(&mut self, group: GroupId) {
        let replicas: BTreeMap<NodeId, &RaftNode<MemLog>> = self
            .nodes
            .iter()
            .filter_map(|(&id, node)| {
                node.multi
                    .as_ref()
                    .and_then(|multi| multi.group(group))
                    .map(|raft| (id, raft))
            })
            .collect();
        for raft in replicas.values() {
            raft.check_invariants_always();
        }
        self.checkers
            .entry(group)
            .or_default()
            .after_event(&replicas);
    }

    fn send(&mut self, batch: Batch) {
        *self.wire.batches.entry((batch.from, batch.to)).or_default() += 1;
        self.wire.group_messages += batch.messages.len() as u64;
        self.wire.heartbeat_entries += batch.heartbeats.len() as u64;
        if self.rng.random_range(0..100) < self.drop_percent {
            return;
        }
        let copies = if self.rng.random_range(0..100) < self.duplicate_percent {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.long_reordering && self.rng.random_range(0..900) < 600 {
                200 + self.rng.random_range(0..2000)
            } else {
                self.rng.random_range(1..=self.delay_ms_max.max(1))
            };
            self.schedule(delay, Event::Deliver(batch.clone()));
        }
    }

    /// Makes `persist` durable in `group`'s store on node `id`, and shows the checker the
    /// entries written (with the term before them, for Log Matching).
    fn persist(&mut self, id: NodeId, group: GroupId, persist: &flotilla_raft::Persist) {
        let multi = self
            .nodes
            .get_mut(&id)
            .and_then(|node| node.multi.as_mut())
            .expect("up");
        let store = multi.store_mut(group).expect("hosted");
        let prev_term = persist
            .entries
            .first()
            .and_then(|first| flotilla_raft::LogReader::term(store, first.index.prev()).ok());
        store.persist(persist);
        let checker = self.checkers.entry(group).or_default();
        checker.on_entries_persisted(&persist.entries, prev_term);
    }

    /// The node dies before its sync returns: each group keeps a random prefix of its write
    /// (snapshot, entries, hard state, compaction; see `torn_prefix`); nothing was sent.
    fn crash_during(&mut self, id: NodeId, ready: flotilla_raft::MultiReady) {
        for (group, group_ready) in &ready.groups {
            let mut persist = group_ready.persist.clone();
            let _ = crate::harness::torn_prefix(&mut persist, &mut self.rng, false);
            self.persist(id, *group, &persist);
        }
        drop(ready);
        self.nodes.get_mut(&id).expect("node").crash_in_next_ready = false;
        self.crash(id);
    }

    /// Crashes node `id`: it keeps only its stores.
    pub fn crash(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if let Some(multi) = node.multi.take() {
            node.crashed_stores = multi.into_stores();
        }
        self.proposals.retain(|(node, _, _), _| *node != id);
        self.reads.retain(|(node, _, _), _| *node != id);
        self.apps.retain(|(node, _), _| *node != id);
        for checker in self.checkers.values_mut() {
            checker.on_crash(id);
        }
        self.refresh_links();
    }

    /// Restarts a crashed node from its stores.
    pub fn restart(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.multi.is_some() {
            return;
        }
        let stores = std::mem::take(&mut node.crashed_stores);
        let incarnation = node.incarnation + 1;
        for (group, store) in &stores {
            let snapshot = flotilla_raft::LogReader::snapshot(store).expect("mem snapshot");
            self.restore(id, *group, &snapshot.data, snapshot.meta.last.index);
        }
        self.start_node(id, stores, incarnation);
        self.refresh_links();
        for peer in self.node_ids() {
            self.links.dialed_at_start(id, peer);
        }
    }

    /// Gives `node` an empty replica of `group` (waiting for its leader), as a node does when
    /// a membership change adds it. False if the node is down.
    pub fn ensure_replica(&mut self, node: NodeId, group: GroupId) -> bool {
        let Some(multi) = self.multi_mut(node) else {
            return false;
        };
        if multi.group(group).is_none() {
            multi
                .create_group(group, MemLog::new())
                .expect("create an empty replica");
        }
        true
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.multi(id).is_some()
    }

    /// Cuts every link between the two sides.
    pub fn partition(&mut self, left: &[NodeId], right: &[NodeId]) {
        for &a in left {
            for &b in right {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
        self.refresh_links();
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.refresh_links();
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The leader of `group` in the highest term among up nodes.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(&id, node)| {
                node.multi
                    .as_ref()
                    .and_then(|multi| multi.group(group))
                    .map(|raft| (id, raft))
            })
            .filter(|(_, raft)| raft.role() == Role::Leader)
            .max_by_key(|(_, raft)| raft.term())
            .map(|(id, _)| id)
    }

    /// Whether every group has a leader.
    pub fn all_groups_led(&self) -> bool {
        self.groups
            .iter()
            .all(|&group| self.leader_of(group).is_some())
    }

    /// Proposes `data` to `group` at its leader.
    pub fn propose(&mut self, group: GroupId, data: Vec<u8>) -> bool {
        let Some(leader) = self.leader_of(group) else {
            return false;
        };
        let multi = self.multi_mut(leader).expect("up");
        let Ok(index) = multi.propose(group, data.clone()) else {
            return false;
        };
        self.proposals.insert((leader, group, index), data);
        self.drive(leader);
        true
    }

    /// Moves leadership of `group` to `target` and waits for it.
    pub fn transfer(&mut self, group: GroupId, target: NodeId) {
        if let Some(leader) = self.leader_of(group)
            && leader != target
        {
            let _ = self
                .multi_mut(leader)
                .expect("up")
                .transfer_leader(group, target);
            self.drive(leader);
        }
    }

    /// Whether every up node applied every acknowledged write of every group.
    pub fn acks_applied_everywhere(&self) -> Result<(), String> {
        for (&(group, index), data) in &self.acks {
            let leader = self
                .leader_of(group)
                .ok_or(format!("{group} has no leader"))?;
            let members: Vec<NodeId> = self
                .multi(leader)
                .expect("up")
                .group(group)
                .expect("hosted")
                .membership()
                .replicas()
                .collect();
            for id in members {
                let applied = self
                    .applied
                    .get(&(id, group))
                    .and_then(|log| log.get(&index));
                if applied != Some(data) {
                    return Err(format!("{id} lacks acknowledged {group} {index}"));
                }
            }
        }
        Ok(())
    }

    /// The highest term of `group` among up nodes.
    pub fn term_of(&self, group: GroupId) -> u64 {
        self.nodes
            .values()
            .filter_map(|node| node.multi.as_ref().and_then(|multi| multi.group(group)))
            .map(|raft| raft.term().0)
            .max()
            .unwrap_or(0)
    }
}

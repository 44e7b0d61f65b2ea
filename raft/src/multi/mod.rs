//! MultiRaft: every group replica of one node in one value, still pure (no IO, clock or async).
//!
//! Inputs: [`MultiRaft::step_batch`] (a batch from a peer node), [`MultiRaft::tick`],
//! [`MultiRaft::propose`] and the other per-group calls. Output: [`MultiRaft::ready`], a
//! [`MultiReady`] holding at most one [`Batch`] per peer node and every group's work, so the
//! caller writes all groups' entries with one sync; then [`MultiRaft::advance`].
//!
//! Liveness costs O(peer nodes), not O(groups): groups' heartbeats leave coalesced, one batch
//! per peer per heartbeat tick (`heartbeat.rs`), and idle groups stop ticking (`quiesce.rs`)
//! until something wakes them, including the loss of their leader's node (`liveness.rs`).

mod config;
mod error;
mod heartbeat;
mod incarnation;
mod liveness;
mod quiesce;

pub use config::MultiConfig;
pub use error::MultiError;
pub use incarnation::Refusal;

use crate::entry::{Bytes, ChangeStep, Entry, EntryPayload, SnapshotMeta};
use crate::error::StepError;
use crate::log::LogReader;
use crate::message::{Batch, GroupMessage};
use crate::node::RaftNode;
use crate::ready::Ready;
use crate::types::{GroupId, LogIndex, NodeId, Term};
use incarnation::PeerPins;
use liveness::Liveness;
use std::collections::{BTreeMap, BTreeSet};

/// One hosted group replica.
#[derive(Debug)]
struct Hosted<L> {
    raft: RaftNode<L>,
    /// Not ticking: idle leader, or follower of an idle leader.
    quiescent: bool,
}

/// The largest group list `advance` keeps for reuse (about 400 KB).
const SPARE_GROUPS_MAX: usize = 1024;

/// Everything a node must do in one cycle, in `Ready`'s order for all groups at once: send
/// `batches`; apply each group's `committed[..committed_before_persist]`; persist every group's
/// `persist` with one sync; send `persisted_batches`; install snapshots and apply the rest;
/// then `advance`.
#[must_use = "a MultiReady must be acted on and passed back to advance()"]
#[derive(Debug, Default)]
pub struct MultiReady {
    /// What may leave now, before the write: at most one batch per peer node, never empty.
    pub batches: Vec<Batch>,
    /// What may leave only once the write is durable: at most one batch per peer node, and one
    /// (maybe empty: the node-level liveness heartbeat) to each peer every liveness interval
    /// (`MultiConfig::liveness_every_heartbeats`).
    pub persisted_batches: Vec<Batch>,
    /// Each group's work; its messages are empty (they are in the batches).
    pub groups: Vec<(GroupId, Ready)>,
}

/// All group replicas of one node.
#[derive(Debug)]
pub struct MultiRaft<L> {
    config: MultiConfig,
    groups: BTreeMap<GroupId, Hosted<L>>,
    /// Groups that tick (not quiescent).
    active: BTreeSet<GroupId>,
    /// Groups touched since the last ready (only these can have work).
    dirty: BTreeSet<GroupId>,
    /// Groups this node leads, as their last `Ready` reported it: the host's per-round work
    /// on led groups walks these, not every group.
    led: BTreeSet<GroupId>,
    /// Groups whose leader or membership may have changed since the host last took them.
    news: BTreeSet<GroupId>,
    /// Per peer node reported down, the quiescent followers its silence woke, with their
    /// term: those still waiting quietly on it sleep again when it is heard (`quiesce.rs`).
    woken_by_silence: BTreeMap<NodeId, Vec<(GroupId, Term)>>,
    /// Coalesced heartbeat entries and responses waiting for the next ready.
    outbox: BTreeMap<NodeId, Batch>,
    liveness: Liveness,
    /// The data directory each peer is known by.
    pins: PeerPins,
    now_ticks: u64,
    /// The last `MultiReady`'s group list, emptied by `advance`: its allocation (a few hundred
    /// bytes per group) is reused by the next `ready`.
    spare_groups: Vec<(GroupId, Ready)>,
    /// Snapshots a group refused since the caller last took them (at most
    /// `SNAPSHOT_REFUSALS_KEPT`; older ones are only counted).
    snapshot_refusals: Vec<(GroupId, StepError)>,
    /// Every snapshot refused since the node started.
    snapshot_refusal_count: u64,
    /// What every group's snapshot sending did since the node started (taken from each group
    /// at its `ready`, its tick and its removal).
    snapshot_sends: crate::SnapshotSendCounters,
}

/// The most refused snapshots kept for the caller between two `take_snapshot_refusals`.
const SNAPSHOT_REFUSALS_KEPT: usize = 64;

/// Records what `ready` tells the host's per-round work: whether this node now leads `group`,
/// and whether its leader or membership (or the index it is known by) may change with it.
fn note_news(
    node: NodeId,
    group: GroupId,
    ready: &Ready,
    led: &mut BTreeSet<GroupId>,
    news: &mut BTreeSet<GroupId>,
) {
    if let Some(leader) = ready.leader_changed {
        if leader == Some(node) {
            led.insert(group);
        } else {
            led.remove(&group);
        }
        news.insert(group);
    }
    let persist = &ready.persist;
    let membership_entry = ready
        .committed
        .iter()
        .any(|entry| matches!(entry.payload, EntryPayload::Membership(_)));
    if membership_entry || persist.snapshot.is_some() || persist.compaction.is_some() {
        news.insert(group);
    }
}

impl<L: LogReader> MultiRaft<L> {
    /// A node hosting no group yet.
    ///
    /// # Panics
    /// If `config` does not validate: configurations are checked when they are built.
    #[must_use]
    pub fn new(config: MultiConfig) -> Self {
        if let Err(error) = config.validate() {
            panic!("{error}");
        }
        Self {
            liveness: Liveness::new(config.node_timeout_ticks),
            config,
            groups: BTreeMap::new(),
            active: BTreeSet::new(),
            dirty: BTreeSet::new(),
            led: BTreeSet::new(),
            news: BTreeSet::new(),
            woken_by_silence: BTreeMap::new(),
            outbox: BTreeMap::new(),
            pins: PeerPins::default(),
            now_ticks: 0,
            spare_groups: Vec::new(),
            snapshot_refusals: Vec::new(),
            snapshot_refusal_count: 0,
            snapshot_sends: crate::SnapshotSendCounters::default(),
        }
    }

    /// What the snapshot sending of every group this node hosts or hosted did since it
    /// started (chunks and bytes sent, transfers started, resumed and given up).
    #[must_use]
    pub fn snapshot_send_counters(&self) -> crate::SnapshotSendCounters {
        self.snapshot_sends
    }

    /// The snapshots refused by `SnapshotCheck` since the last call (for the log), and how
    /// many were refused since the node started (for metrics).
    pub fn take_snapshot_refusals(&mut self) -> (Vec<(GroupId, StepError)>, u64) {
        (
            std::mem::take(&mut self.snapshot_refusals),
            self.snapshot_refusal_count,
        )
    }

    /// Hosts a replica of `group` over `store` (bootstrapped, restarting, or empty and waiting
    /// for its leader).
    ///
    /// # Errors
    /// `GroupExists`, `TooManyGroups`, or the store's error.
    pub fn create_group(&mut self, group: GroupId, store: L) -> Result<(), MultiError> {
        if self.groups.contains_key(&group) {
            return Err(MultiError::GroupExists(group));
        }
        if self.groups.len() >= self.config.groups_max {
            return Err(MultiError::TooManyGroups(self.config.groups_max));
        }
        let raft = RaftNode::new(self.config.group_config(group), store)?;
        let replicas: Vec<NodeId> = raft.membership().replicas().collect();
        for replica in replicas {
            self.add_peer(replica);
        }
        self.groups.insert(
            group,
            Hosted {
                raft,
                quiescent: false,
            },
        );
        self.active.insert(group);
        self.dirty.insert(group);
        self.news.insert(group);
        Ok(())
    }

    /// Watches `peer` for liveness and sends it the node heartbeat.
    pub fn add_peer(&mut self, peer: NodeId) {
        if peer != self.config.node {
            self.liveness.watch(peer, self.now_ticks);
        }
    }

    /// Stops hosting `group`; returns its store.
    pub fn remove_group(&mut self, group: GroupId) -> Option<L> {
        self.dirty.remove(&group);
        self.active.remove(&group);
        self.led.remove(&group);
        self.news.insert(group);
        let mut hosted = self.groups.remove(&group)?;
        let sends = hosted.raft.take_snapshot_send_counters();
        self.snapshot_sends.add(&sends);
        Some(hosted.raft.into_store())
    }

    /// A batch of the host's own `notes` to `peer`, stamped as this node's batches are (the
    /// receiver's `step_batch` checks it like any other before its host reads the notes).
    #[must_use]
    pub fn note_batch(&self, peer: NodeId, notes: Vec<crate::message::Note>) -> Batch {
        Batch {
            incarnation: self.config.incarnation,
            notes,
            ..Batch::new(self.config.node, peer)
        }
    }

    /// Handles a batch from a peer node: every message and coalesced heartbeat in it.
    /// Notes are the host's: it takes them out first, and reads them only if this accepts the
    /// batch.
    /// Messages for unknown groups are skipped and counted in the error.
    ///
    /// # Errors
    /// `WrongNode` if the batch is not addressed to this node; `Refused` if it comes from
    /// another data directory than the one its sender is pinned to, or from an older process
    /// (nothing of it was stepped); `UnknownGroups` if some messages named groups this node
    /// does not host (the rest were stepped); `Log` if a store failed (the node must stop).
    pub fn step_batch(&mut self, batch: Batch) -> Result<(), MultiError> {
        if batch.to != self.config.node {
            return Err(MultiError::WrongNode { to: batch.to });
        }
        let from = batch.from;
        self.pins
            .check(from, batch.incarnation)
            .map_err(|refusal| MultiError::Refused { from, refusal })?;
        if self.liveness.heard_from(from, self.now_ticks) {
            self.requiesce_groups_woken_by(from);
        }
        let mut unknown = 0;
        for GroupMessage { group, message } in batch.messages {
            if message.from != from {
                continue;
            }
            unknown += self.step_group(group, message)?;
        }
        unknown += self.step_heartbeats(from, batch.heartbeats)?;
        unknown += self.step_heartbeat_responses(from, batch.heartbeat_responses)?;
        if unknown > 0 {
            return Err(MultiError::UnknownGroups {
                from,
                count: unknown,
            });
        }
        Ok(())
    }

    /// Steps one message into its group, waking it. Returns 1 if the group is unknown.
    fn step_group(
        &mut self,
        group: GroupId,
        message: crate::message::Message,
    ) -> Result<usize, MultiError> {
        if !self.groups.contains_key(&group) {
            return Ok(1);
        }
        if !self.is_campaign_against_live_leader(group, &message) {
            self.wake_group(group);
        }
        self.step_quietly(group, message)?;
        Ok(0)
    }

    /// Advances logical time: active groups tick; every heartbeat interval the coalesced
    /// heartbeat goes out and idle groups quiesce; dead peer nodes wake their groups.
    pub fn tick(&mut self) {
        self.now_ticks += 1;
        // Only a tick that left work (a timer fired) makes its group dirty: while 100,000
        // groups elect at once, most ticks of most groups only count, and marking every one
        // made each `ready` walk them all again.
        for &group in &self.active {
            if let Some(hosted) = self.groups.get_mut(&group) {
                hosted.raft.tick();
                // A tick gives up the transfers of silent followers, and may send nothing.
                let sends = hosted.raft.take_snapshot_send_counters();
                self.snapshot_sends.add(&sends);
                if hosted.raft.has_ready() {
                    self.dirty.insert(group);
                }
            }
        }
        if self
            .now_ticks
            .is_multiple_of(self.config.heartbeat_interval_ticks)
        {
            self.heartbeat_tick();
        }
        self.wake_groups_of_dead_peers();
    }

    /// Proposes `data` to `group`, waking it.
    ///
    /// # Errors
    /// `UnknownGroup`, or the group's refusal.
    pub fn propose(
        &mut self,
        group: GroupId,
        data: impl Into<Bytes>,
    ) -> Result<LogIndex, MultiError> {
        Ok(self.awake(group)?.propose(data)?)
    }

    /// Proposes a membership change to `group`.
    ///
    /// # Errors
    /// `UnknownGroup`, or the group's refusal.
    pub fn propose_conf_change(
        &mut self,
        group: GroupId,
        steps: Vec<ChangeStep>,
    ) -> Result<LogIndex, MultiError> {
        Ok(self.awake(group)?.propose_conf_change(steps)?)
    }

    /// Asks `group` for a linearizable read.
    ///
    /// # Errors
    /// `UnknownGroup`, or the group's refusal.
    pub fn read_index(&mut self, group: GroupId, context: u64) -> Result<(), MultiError> {
        Ok(self.awake(group)?.read_index(context)?)
    }

    /// Transfers leadership of `group` to `target`.
    ///
    /// # Errors
    /// `UnknownGroup`, or the group's refusal.
    pub fn transfer_leader(&mut self, group: GroupId, target: NodeId) -> Result<(), MultiError> {
        Ok(self.awake(group)?.transfer_leader(target)?)
    }

    /// Hands `group` a snapshot of its state machine at `index`.
    ///
    /// # Errors
    /// `UnknownGroup`, or the group's refusal.
    pub fn compact(
        &mut self,
        group: GroupId,
        index: LogIndex,
        data: Vec<u8>,
    ) -> Result<(), MultiError> {
        Ok(self.awake(group)?.compact(index, data)?)
    }

    /// Installs the snapshot `group` received and the caller staged and checked
    /// (`RaftNode::install_staged`); false if it is no longer wanted.
    ///
    /// # Errors
    /// `UnknownGroup`.
    pub fn install_staged(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<bool, MultiError> {
        Ok(self.awake(group)?.install_staged(meta, data))
    }

    /// Drops the snapshot `group` received and the caller refused (`RaftNode::refuse_staged`).
    ///
    /// # Errors
    /// `UnknownGroup`.
    pub fn refuse_staged(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
    ) -> Result<bool, MultiError> {
        Ok(self.awake(group)?.refuse_staged(meta))
    }

    /// The group, woken up and marked as having work.
    fn awake(&mut self, group: GroupId) -> Result<&mut RaftNode<L>, MultiError> {
        if !self.groups.contains_key(&group) {
            return Err(MultiError::UnknownGroup(group));
        }
        self.wake_group(group);
        self.dirty.insert(group);
        let hosted = self
            .groups
            .get_mut(&group)
            .ok_or(MultiError::UnknownGroup(group))?;
        Ok(&mut hosted.raft)
    }

    /// Whether `ready()` has anything to hand out.
    #[must_use]
    pub fn has_ready(&self) -> bool {
        !self.outbox.is_empty()
            || self.dirty.iter().any(|group| {
                self.groups
                    .get(group)
                    .is_some_and(|hosted| hosted.raft.has_ready())
            })
    }

    /// Everything to do now, for every group, with outbound traffic batched per peer node.
    pub fn ready(&mut self) -> MultiReady {
        // The node heartbeat left empty batches in the outbox: they go out even if still empty.
        let mut outbox = std::mem::take(&mut self.outbox);
        let mut early = BTreeMap::new();
        let mut groups = std::mem::take(&mut self.spare_groups);
        groups.reserve(self.dirty.len());
        let mut apply_budget = self.config.apply_bytes_per_ready;
        for group in std::mem::take(&mut self.dirty) {
            let Some(hosted) = self.groups.get_mut(&group) else {
                continue;
            };
            if !hosted.raft.has_ready() {
                continue;
            }
            let mut ready = hosted.raft.ready_within(apply_budget);
            let handed: u64 = ready.committed.iter().map(Entry::payload_bytes).sum();
            apply_budget = apply_budget.saturating_sub(handed);
            let sends = hosted.raft.take_snapshot_send_counters();
            self.snapshot_sends.add(&sends);
            let quiesce = hosted.quiescent;
            let node = self.config.node;
            note_news(node, group, &ready, &mut self.led, &mut self.news);
            heartbeat::route_messages(node, group, quiesce, &mut ready, &mut early, &mut outbox);
            groups.push((group, ready));
        }
        let incarnation = self.config.incarnation;
        let stamp = |batch: Batch| Batch {
            incarnation,
            ..batch
        };
        // An early batch to a peer is its liveness signal: the empty heartbeat batch goes only
        // where nothing else does.
        outbox.retain(|peer, batch| !batch.is_empty() || !early.contains_key(peer));
        MultiReady {
            batches: early.into_values().map(stamp).collect(),
            persisted_batches: outbox.into_values().map(stamp).collect(),
            groups,
        }
    }

    /// Acknowledges that `ready` was persisted, sent and applied.
    pub fn advance(&mut self, ready: MultiReady) {
        let mut groups = ready.groups;
        for (group, group_ready) in groups.drain(..) {
            if let Some(hosted) = self.groups.get_mut(&group) {
                hosted.raft.advance(group_ready);
                if hosted.quiescent {
                    hosted.raft.release_spare_memory();
                }
                if hosted.raft.has_ready() {
                    self.dirty.insert(group);
                }
            }
        }
        // A burst of thousands of groups (a restart) does not pin its list's memory.
        if groups.capacity() <= SPARE_GROUPS_MAX {
            self.spare_groups = groups;
        }
    }

    /// The replica of `group`, if hosted.
    #[must_use]
    pub fn group(&self, group: GroupId) -> Option<&RaftNode<L>> {
        self.groups.get(&group).map(|hosted| &hosted.raft)
    }

    /// The store of `group`, for the caller to write what `Ready` asks.
    pub fn store_mut(&mut self, group: GroupId) -> Option<&mut L> {
        self.groups
            .get_mut(&group)
            .map(|hosted| hosted.raft.store_mut())
    }

    /// Every hosted group.
    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// Every hosted group from `first` on, in id order (to walk the groups a slice at a time).
    pub fn group_ids_from(&self, first: GroupId) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.range(first..).map(|(&group, _)| group)
    }

    /// The groups this node leads, as of the last `ready`.
    pub fn led_groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.led.iter().copied()
    }

    /// How many groups this node leads, as of the last `ready`.
    #[must_use]
    pub fn led_count(&self) -> usize {
        self.led.len()
    }

    /// Whether this node leads `group`, as of the last `ready`.
    #[must_use]
    pub fn is_led(&self, group: GroupId) -> bool {
        self.led.contains(&group)
    }

    /// The groups whose leader or membership may have changed since the last call (a leader
    /// change, a membership entry applied, a snapshot installed or taken, the group created
    /// or removed): what the host's per-round work looks at instead of every group.
    pub fn take_news(&mut self) -> BTreeSet<GroupId> {
        std::mem::take(&mut self.news)
    }

    /// How many groups this node hosts.
    #[must_use]
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// How many groups are quiescent (not ticking).
    #[must_use]
    pub fn quiescent_count(&self) -> usize {
        self.groups.len() - self.active.len()
    }

    /// The groups a host's look at every group need visit, lowest id first, with their
    /// replica and whether it is quiescent: those awake (ticking) and those with work for the
    /// next `ready`. Every other group is quiescent and has no work, so it leads or follows a
    /// known leader (`may_wait_quietly`), has applied all it committed, and leads exactly when
    /// it is among `led_groups`: what it would show is known without looking at it.
    pub fn awake_groups(&self) -> impl Iterator<Item = (GroupId, &RaftNode<L>, bool)> + '_ {
        let mut active = self.active.iter().copied().peekable();
        let mut dirty = self.dirty.iter().copied().peekable();
        let ids = std::iter::from_fn(move || match (active.peek(), dirty.peek()) {
            (Some(&a), Some(&d)) if a == d => {
                dirty.next();
                active.next()
            }
            (Some(&a), Some(&d)) if d < a => dirty.next(),
            (Some(_), _) => active.next(),
            (None, _) => dirty.next(),
        });
        ids.filter_map(|group| {
            let hosted = self.groups.get(&group)?;
            Some((group, &hosted.raft, hosted.quiescent))
        })
    }

    /// At most how many groups `awake_groups` visits.
    #[must_use]
    pub fn awake_count_max(&self) -> usize {
        self.active.len() + self.dirty.len()
    }

    /// Whether `group` is quiescent (not ticking).
    #[must_use]
    pub fn is_quiescent(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|hosted| hosted.quiescent)
    }

    /// Pins `directory` as the data directory of `peer` (a pin persisted by an earlier run):
    /// batches from any other directory under that id are refused.
    pub fn pin_peer(&mut self, peer: NodeId, directory: u128) {
        self.pins.pin(peer, directory);
    }

    /// The data directory `peer` is pinned to, if this node has met it.
    #[must_use]
    pub fn pinned_directory(&self, peer: NodeId) -> Option<u128> {
        self.pins.directory_of(peer)
    }

    /// The pins learned from first batches since the last call: persist them before anything
    /// answering those batches leaves, so a restart does not forget them.
    pub fn take_learned_pins(&mut self) -> Vec<(NodeId, u128)> {
        self.pins.take_learned()
    }

    /// The peer nodes heard from within the node timeout.
    pub fn live_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.liveness.live(self.now_ticks)
    }

    /// Every peer node this node watches, with the ticks since a batch last came from it (or
    /// since it was first watched); live peers are those under `node_timeout_ticks`.
    pub fn peer_silences(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.liveness.silences(self.now_ticks)
    }

    /// This node's id.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.config.node
    }

    /// The configuration this node was built with.
    #[must_use]
    pub fn config(&self) -> &MultiConfig {
        &self.config
    }

    /// Gives every store back (what a crash keeps).
    pub fn into_stores(self) -> BTreeMap<GroupId, L> {
        self.groups
            .into_iter()
            .map(|(group, hosted)| (group, hosted.raft.into_store()))
            .collect()
    }
}

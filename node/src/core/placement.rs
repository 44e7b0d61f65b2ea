//! Placement in the node core: every node reports the ranges it leads to the meta group's
//! leader; there the placement driver turns the cluster view into operators, written to the
//! meta group; the leader of each range carries out its range's operator step by step as Raft
//! membership changes and leadership transfers; a node creates a replica when the meta group
//! says it belongs to a group, and destroys it, leaving a tombstone, once the meta group
//! records it removed. All of it once per placement interval, sans IO
//! (`docs/protocol/placement.md`).

mod digest;

use super::merge::MergeNote;
use super::split::{Load, Reservation, SplitNote, SplitRecord};
use super::{BatchSink, CoreError, NodeCore, Respond};
use flotilla_raft::{
    ChangeStep, GroupId, HardState, LogIndex, Membership, NodeId, Note, Role, Snapshot, Term,
};
use flotilla_shard_manager::placement::{
    ClusterView, Liveness, NodeState, NodeView, PlacementConfig, PlacementDriver, RangeView,
    Replica, ReplicaRole, Step, liveness, same_replicas,
};
use flotilla_shard_manager::{META_GROUP, MetaCommand, RangeId};
use flotilla_storage::WriteBatch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A learner counts as caught up (it may be promoted) once it holds all but at most this many
/// of the entries its group committed: under a steady load it is never exactly level.
const CATCH_UP_LAG_ENTRIES: u64 = 64;

/// A digest of the ranges reported goes out this often, in placement rounds, so a meta leader
/// that missed a report asks for a full one (`digest.rs`).
const REPORT_DIGEST_EVERY_ROUNDS: u64 = 8;

/// A full report (every range led, not only the changed ones) goes out at least this often,
/// in placement rounds, whatever the digests say: it brings the sizes of ranges up to date, and
/// a membership record the meta leader proposed and lost is proposed again (less often on a
/// node leading many ranges: see `full_report_every_rounds`).
const FULL_REPORT_EVERY_ROUNDS: u64 = 80;

/// The most hosted groups one placement round looks at for replicas to destroy: a pass over
/// 100,000 groups in one round held the driver for up to 200 ms on a busy machine, long
/// enough for its peers to count the node as down and wake every group it led.
const DESTROY_CHECK_GROUPS_PER_ROUND: usize = 10_000;

/// The most suspects (`DestroyWalk::suspects`) one placement round looks at: a restart that
/// installs many snapshots leaves the rest for the next rounds.
const DESTROY_SUSPECTS_PER_ROUND: usize = 2_000;

/// A pass looking for replicas to destroy starts at least this often, in placement rounds
/// (10 minutes at the default 500 ms), even when the meta state announced no removal: a
/// removal and an addition of this node in one round leave its replica count as it was. The
/// replicas that become destroyable on their own (a tombstone given a membership by a
/// snapshot, a removed replica whose record catches up with its log) are looked at each
/// round instead (`DestroyWalk::suspects`): this net's pass over every group was an eighth
/// of an idle node's CPU at 100,000 groups when it ran every minute.
const DESTROY_CHECK_EVERY_ROUNDS_MAX: u64 = 1_200;

/// A node-to-node note, carried beside Raft's messages in a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum NodeNote {
    /// What a node tells the meta leader each placement round.
    Report(Report),
    // Appended: a note is encoded by its position.
    /// A split the parent's leader applied that the meta group does not show yet.
    Split(SplitRecord),
    /// A range grown past `ranges.split_bytes`: its leader asks, the meta leader reserves.
    SizeSplit(SplitNote),
    /// The report after it in the batch is full: what the node reported before counts no
    /// more.
    FullReportFollows,
    /// The digest of every range the node reported to this meta leader (`digest.rs`).
    Digest(digest::ReportDigest),
    /// The meta leader asks for a full report: its digest of what it took differs.
    FullReportWanted,
    /// A step of a merge's exchange.
    Merge(MergeNote),
}

/// One node's report: its liveness heartbeat, its load and size, and the ranges it leads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Report {
    /// Requests per second this node served since its last report.
    load_requests_per_second: u64,
    /// Key and value bytes of every range it holds.
    size_bytes: u64,
    /// The ranges it leads whose membership changed since the last report (all of them in a
    /// full report).
    led: Vec<LedRange>,
}

/// A range this node leads, as its Raft group has applied it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LedRange {
    group: GroupId,
    replicas: Vec<Replica>,
    membership_index: u64,
    size_bytes: u64,
}

/// The core's placement state.
#[derive(Debug)]
pub(super) struct Placement {
    driver: PlacementDriver,
    /// Since when (wall ms) this node leads the meta group, while it does.
    leading_since_ms: Option<u64>,
    /// The meta term and index of this leader's last placement proposal: the driver ticks
    /// again only once it is applied, so it never decides twice on the same view. A proposal
    /// of an earlier term no longer holds it back: a leadership lost and won back between two
    /// rounds may have cut that entry, and nothing else might ever fill the log up to it.
    proposed_up_to: (Term, LogIndex),
    /// Per range, the newest membership index this leader proposed to record.
    memberships_proposed: BTreeMap<RangeId, u64>,
    /// Per group led, the membership index last reported, and to which meta leader.
    reported: BTreeMap<GroupId, u64>,
    reported_to: Option<NodeId>,
    /// The meta leader asked for a full report.
    full_report_wanted: bool,
    /// On the meta leader: what it took from every node's reports, to compare with their
    /// digests.
    taken: digest::TakenReports,
    /// Groups whose leader or membership changed since the last report (MultiRaft's news),
    /// or that could not be reported yet (a joint or uncommitted membership).
    unreported: BTreeSet<GroupId>,
    /// The walk that looks for replicas to destroy, a slice of the groups each round.
    destroy: DestroyWalk,
    rounds: u64,
    /// The address each peer was last dialed at.
    addresses: BTreeMap<NodeId, String>,
    /// Client requests counted at the last report, and when (wall ms).
    requests_at_report: (u64, u64),
    /// Per parent group, the split this node applied that the meta group does not show yet
    /// (reported while this node leads the parent).
    pub(super) splits_unrecorded: BTreeMap<GroupId, SplitRecord>,
    /// Right halves this cycle carved, hosted once its ready is done.
    pub(super) splits_to_host: Vec<(SplitRecord, Box<dyn flotilla_storage::StateMachine>)>,
    /// Groups this process created empty that this node never hosted before (no tombstone).
    pub(super) never_hosted: std::collections::BTreeSet<GroupId>,
    /// Ranges hosted here past `ranges.split_bytes` (split by their leader).
    pub(super) oversized: std::collections::BTreeSet<GroupId>,
    /// When this node, leading a range, last asked for its split (monotonic ms).
    pub(super) splits_asked: BTreeMap<GroupId, u64>,
    /// On the meta leader: reservations for size splits, by their entry's index.
    pub(super) reservations: BTreeMap<LogIndex, Reservation>,
    /// Reservations applied this cycle, for their askers.
    pub(super) reserved: Vec<(NodeId, SplitNote)>,
    /// Per range, the requests since `load_window_ms` (monotonic) and a sample of their keys.
    pub(super) loads: BTreeMap<GroupId, Load>,
    /// The requests per second each range this node led served over the last load window
    /// (a range not listed served none here).
    pub(super) last_rps: BTreeMap<GroupId, u64>,
    pub(super) load_window_ms: u64,
    /// Where the last load window began (monotonic ms).
    pub(super) last_window_start_ms: u64,
    /// When this node last became the leader of each range it leads (monotonic ms): a range
    /// it did not lead for the whole last window has no count here, and is not judged cold.
    pub(super) led_since_ms: BTreeMap<GroupId, u64>,
}

/// Where the search for replicas to destroy stands: a pass starts when the meta state may have
/// removed a replica from this node (the ranges it places here, or the operators adding this
/// node, changed in number) and looks at `DESTROY_CHECK_GROUPS_PER_ROUND` groups a round until
/// it has seen them all. Leadership moves, which the placement driver makes all the time, start
/// none.
#[derive(Debug, Default)]
struct DestroyWalk {
    /// The first group the current pass has not looked at yet; `None` between passes.
    next: Option<GroupId>,
    /// When the last pass started: the ranges the meta state placed on this node, and the
    /// operators adding this node to a range.
    placed: (usize, usize),
    /// Rounds since the last pass started.
    rounds_since_pass: u64,
    /// Groups looked at next round whether a pass runs or not: those that installed a
    /// snapshot (it may give a tombstone a membership), and removed replicas kept because
    /// they hold entries past their recorded removal.
    suspects: BTreeSet<GroupId>,
}

impl Placement {
    /// `group` installed a snapshot: the destroy walk looks at it next round (a tombstone may
    /// have been given a membership the meta group no longer places here).
    pub(super) fn snapshot_installed(&mut self, group: GroupId) {
        self.destroy.suspects.insert(group);
    }

    pub(super) fn new(config: &PlacementConfig) -> Self {
        // The node's configuration was validated before the core was built.
        let driver = PlacementDriver::new(config.clone())
            .unwrap_or_else(|error| panic!("the placement configuration is invalid: {error}"));
        Self {
            driver,
            leading_since_ms: None,
            proposed_up_to: (Term(0), LogIndex(0)),
            memberships_proposed: BTreeMap::new(),
            splits_unrecorded: BTreeMap::new(),
            splits_to_host: Vec::new(),
            never_hosted: std::collections::BTreeSet::new(),
            oversized: std::collections::BTreeSet::new(),
            splits_asked: BTreeMap::new(),
            reservations: BTreeMap::new(),
            reserved: Vec::new(),
            loads: BTreeMap::new(),
            last_rps: BTreeMap::new(),
            load_window_ms: 0,
            last_window_start_ms: 0,
            led_since_ms: BTreeMap::new(),
            reported: BTreeMap::new(),
            reported_to: None,
            full_report_wanted: false,
            taken: digest::TakenReports::default(),
            unreported: BTreeSet::new(),
            destroy: DestroyWalk::default(),
            rounds: 0,
            addresses: BTreeMap::new(),
            requests_at_report: (0, 0),
        }
    }
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// One round of placement work: report, drive (on the meta leader), carry out operators,
    /// and destroy replicas the meta group says this node no longer holds.
    pub(super) fn placement_round(&mut self) {
        self.placement.rounds += 1;
        let news = self.multi.take_news();
        for &group in &news {
            if self.leads(group) {
                self.note_unrecorded_merge(group);
                self.note_unrecorded_split(group);
            }
        }
        self.placement.unreported.extend(news);
        self.follow_directory();
        self.report();
        self.report_splits();
        self.split_big_ranges();
        self.split_hot_ranges();
        self.drive_merges();
        self.drive_placement();
        self.place_meta_replicas();
        self.carry_out_operators();
        if let Err(error) = self.destroy_removed_replicas() {
            // The next write fails the same way and stops the node; nothing was destroyed.
            tracing::error!(%error, "destroying removed replicas failed");
        }
    }

    /// Peers that joined (or moved) since the last round: dialed at their recorded address
    /// and watched by the node heartbeat.
    fn follow_directory(&mut self) {
        let node = self.config.node;
        let meta = self.machines.meta();
        let changed: Vec<(NodeId, String)> = meta
            .directory
            .nodes()
            .filter(|&peer| peer != node)
            .filter_map(|peer| {
                let address = meta.directory.address(peer)?;
                let known = self.placement.addresses.get(&peer);
                (known.map(String::as_str) != Some(address)).then(|| (peer, address.to_owned()))
            })
            .collect();
        for (peer, address) in changed {
            tracing::info!(peer = peer.0, %address, "a peer's address");
            self.sink.peer_address(peer, &address);
            self.multi.add_peer(peer);
            self.placement.addresses.insert(peer, address);
        }
    }

    /// On the meta leader: every node that is up or draining holds a replica of the meta group
    /// (a learner, unless it is one of its voters), so it knows the range map, the operators
    /// and its own replicas; a removed node's replica is removed. The meta group keeps
    /// `placement.meta_voters` voters on nodes that are up and live: a voter on a removed,
    /// draining or dead node is replaced by a caught-up learner in one joint change, a voter
    /// too many (an initial cluster larger than that) becomes a learner, and a caught-up
    /// learner is promoted while voters are missing. One change at a time, never one that
    /// would leave the voters without a live majority.
    fn place_meta_replicas(&mut self) {
        if !self.leads(META_GROUP) {
            return;
        }
        let Some(raft) = self.multi.group(META_GROUP) else {
            return;
        };
        let membership = raft.membership().clone();
        if membership.is_joint() {
            return;
        }
        let caught_up = |node: NodeId| caught_up(raft, node);
        let cluster = &self.machines.meta().cluster;
        let now_ms = self.clock.now_ms;
        let config = self.placement.driver.config();
        let usable = |node: &NodeView| {
            node.state == NodeState::Up && liveness(node, now_ms, config) == Liveness::Live
        };
        let mut changes: Option<Vec<ChangeStep>> = None;
        // A node without a meta replica gets a learner; a removed node's learner goes.
        for node in cluster.nodes() {
            let removed = node.state == NodeState::Removed;
            if !membership.contains(node.id) && !removed {
                changes = Some(vec![ChangeStep::AddLearner(node.id)]);
                break;
            }
            if removed && membership.learners.contains(&node.id) {
                changes = Some(vec![ChangeStep::Remove(node.id)]);
                break;
            }
        }
        if changes.is_none() {
            let wanted = config.meta_voters;
            let spare = cluster.nodes().find(|node| {
                membership.learners.contains(&node.id) && usable(node) && caught_up(node.id)
            });
            let others = || {
                membership
                    .voters
                    .iter()
                    .copied()
                    .filter(|&voter| voter != self.config.node)
            };
            let unfit =
                others().find(|&voter| cluster.node(voter).is_none_or(|node| !usable(node)));
            let own_unfit = cluster
                .node(self.config.node)
                .is_none_or(|node| !usable(node));
            if own_unfit {
                // A leader on a draining (or removed) node hands the meta group to a caught-up
                // voter that is usable and that this node hears now (the driver's liveness
                // lags by `heartbeat_stale_ms`; a transfer to a node out of reach holds meta
                // writes until it times out); that one then replaces this node's vote.
                let heard = |voter: NodeId| self.multi.live_peers().any(|peer| peer == voter);
                let heir = others().find(|&voter| {
                    cluster.node(voter).is_some_and(usable) && caught_up(voter) && heard(voter)
                });
                if let Some(heir) = heir {
                    tracing::info!(to = heir.0, "the meta leadership leaves this node");
                    if let Err(error) = self.multi.transfer_leader(META_GROUP, heir) {
                        tracing::debug!(%error, "a meta-group leadership transfer was refused");
                    }
                    return;
                }
            }
            changes = if membership.voters.len() > wanted {
                // One voter too many: an unfit one, else the highest id, becomes a learner.
                unfit
                    .or_else(|| others().max())
                    .map(|voter| vec![ChangeStep::AddLearner(voter)])
            } else {
                match (spare, unfit) {
                    (Some(spare), Some(unfit)) => Some(vec![
                        ChangeStep::AddVoter(spare.id),
                        ChangeStep::Remove(unfit),
                    ]),
                    (Some(spare), None) if membership.voters.len() < wanted => {
                        Some(vec![ChangeStep::AddVoter(spare.id)])
                    }
                    _ => None,
                }
            };
        }
        let Some(changes) = changes else {
            return;
        };
        if !self.keeps_a_live_quorum(&membership, &changes) {
            return;
        }
        tracing::info!(?changes, "meta-group membership");
        if let Err(error) = self.multi.propose_conf_change(META_GROUP, changes) {
            tracing::debug!(%error, "a meta-group membership change was refused");
        }
    }

    fn meta_leader(&self) -> Option<NodeId> {
        self.multi.group(META_GROUP).and_then(|raft| raft.leader())
    }

    pub(super) fn leads(&self, group: GroupId) -> bool {
        self.multi
            .group(group)
            .is_some_and(|raft| raft.role() == Role::Leader)
    }

    /// Sends this round's report to the meta leader (or takes it, on the meta leader): the
    /// led groups with news since the last one, or every led group in a full report; every
    /// few rounds with a digest of all it reported.
    fn report(&mut self) {
        let Some(meta_leader) = self.meta_leader() else {
            return;
        };
        let rounds = self.placement.rounds;
        let full = self.placement.reported_to != Some(meta_leader)
            || std::mem::take(&mut self.placement.full_report_wanted)
            || rounds.is_multiple_of(full_report_every_rounds(self.multi.led_count()));
        let digest_due = !full && rounds.is_multiple_of(REPORT_DIGEST_EVERY_ROUNDS);
        if full || digest_due {
            // A proposal that never applied (its entry lost with a leader) is made again.
            self.placement.memberships_proposed.clear();
        }
        let candidates: Vec<GroupId> = if full {
            self.placement.reported.clear();
            self.placement.unreported.clear();
            self.multi.led_groups().collect()
        } else {
            std::mem::take(&mut self.placement.unreported)
                .into_iter()
                .collect()
        };
        let led = self.led_ranges(candidates);
        self.placement.reported_to = Some(meta_leader);
        let now_ms = self.clock.now_ms;
        let (requests_then, then_ms) = self.placement.requests_at_report;
        let elapsed_ms = now_ms.saturating_sub(then_ms).max(1);
        let requests = self.counters.requests;
        let load_requests_per_second = requests.saturating_sub(requests_then) * 1000 / elapsed_ms;
        self.placement.requests_at_report = (requests, now_ms);
        let report = Report {
            load_requests_per_second,
            size_bytes: self.machines.stored_bytes(),
            led,
        };
        if meta_leader == self.config.node {
            if full {
                self.placement.taken.forget(meta_leader);
            }
            self.take_report(self.config.node, report);
            return;
        }
        let full_follows = full.then_some(NodeNote::FullReportFollows);
        let digest = digest_due
            .then(|| NodeNote::Digest(digest::ReportDigest::of(&self.placement.reported)));
        let notes = [full_follows, Some(NodeNote::Report(report)), digest];
        self.send_notes(meta_leader, notes.into_iter().flatten());
    }

    /// Sends `notes` to `to` in one batch.
    fn send_notes(&self, to: NodeId, notes: impl IntoIterator<Item = NodeNote>) {
        let notes = notes
            .into_iter()
            .map(|note| {
                Note(postcard::to_allocvec(&note).expect("encoding into a Vec cannot fail"))
            })
            .collect();
        self.sink.send_batch(self.multi.note_batch(to, notes));
    }

    /// Sends `note` to `to` (the meta leader when `None`), or takes it when that is this
    /// node.
    pub(super) fn send_note(&mut self, note: NodeNote, to: Option<NodeId>) {
        let Some(to) = to.or_else(|| self.meta_leader()) else {
            return;
        };
        if to == self.config.node {
            return self.take_note(to, note);
        }
        self.send_notes(to, [note]);
    }

    /// The ranges among `groups` this node leads whose membership the meta leader has not
    /// heard of yet; `reported` and `unreported` follow.
    fn led_ranges(&mut self, groups: Vec<GroupId>) -> Vec<LedRange> {
        let mut led = Vec::new();
        for group in groups {
            if group == META_GROUP {
                continue;
            }
            let Some(raft) = self.multi.group(group) else {
                self.placement.reported.remove(&group);
                continue;
            };
            if raft.role() != Role::Leader {
                self.placement.reported.remove(&group);
                continue;
            }
            let membership = raft.membership();
            // Only a committed membership: one still in the log's uncommitted tail may be cut
            // by the next leader, and a record of it, ahead of every later report's index,
            // would never be corrected (a learner recorded that no replica has, removed by
            // cleanup forever: simulator seed 198). Tried again next round.
            let committed = raft.membership_index() <= raft.log().committed();
            if membership.is_joint() || !committed {
                self.placement.unreported.insert(group);
                continue;
            }
            let index = raft.membership_index().0;
            if self.placement.reported.insert(group, index) == Some(index) {
                continue;
            }
            let size_bytes = self
                .machines
                .kv(group)
                .map_or(0, |machine| machine.stored_bytes());
            led.push(LedRange {
                group,
                replicas: replicas_of(membership),
                membership_index: index,
                size_bytes,
            });
        }
        led
    }

    /// Reads the notes of a batch MultiRaft accepted.
    pub(super) fn on_notes(&mut self, from: NodeId, notes: Vec<Note>) {
        for Note(bytes) in notes {
            match postcard::from_bytes::<NodeNote>(&bytes) {
                Ok(note) => self.take_note(from, note),
                Err(error) => tracing::debug!(peer = from.0, %error, "a note did not decode"),
            }
        }
    }

    /// Takes one note from `from` (this node, for a note it sent itself).
    fn take_note(&mut self, from: NodeId, note: NodeNote) {
        match note {
            NodeNote::Report(report) => self.take_report(from, report),
            NodeNote::Split(split) => self.take_split_note(split),
            NodeNote::SizeSplit(note) => self.take_split_size_note(from, note),
            NodeNote::FullReportFollows => {
                if self.leads(META_GROUP) {
                    self.placement.taken.forget(from);
                }
            }
            NodeNote::Digest(digest) => self.take_report_digest(from, digest),
            NodeNote::FullReportWanted => {
                self.placement.full_report_wanted |= self.meta_leader() == Some(from);
            }
            NodeNote::Merge(note) => self.take_merge_note(from, note),
        }
    }

    /// On the meta leader: a node's report is its heartbeat; a membership newer than the one
    /// recorded is proposed to the meta group; the leader, size and load are noted.
    fn take_report(&mut self, from: NodeId, report: Report) {
        if !self.leads(META_GROUP) {
            return;
        }
        let now_ms = self.clock.now_ms;
        let cluster = &mut self.machines.meta_mut().cluster;
        if cluster
            .heartbeat(
                from,
                now_ms,
                report.load_requests_per_second,
                report.size_bytes,
            )
            .is_err()
        {
            return;
        }
        let mut proposals = Vec::new();
        for led in report.led {
            self.placement
                .taken
                .take(from, led.group, led.membership_index);
            // The id and index only, not a copy of the range's view: a full report names tens
            // of thousands of ranges.
            let Some((range, recorded_index)) = cluster
                .range_of_group(led.group)
                .map(|range| (range.id, range.membership_index))
            else {
                continue;
            };
            // Not taken while the record is behind (the leader may not vote in it yet).
            let _ = cluster.report_range(range, from, led.size_bytes, 0);
            let proposed = self.placement.memberships_proposed.get(&range);
            if led.membership_index > recorded_index
                && proposed.is_none_or(|&index| index < led.membership_index)
            {
                proposals.push((
                    range,
                    led.membership_index,
                    MetaCommand::RangeMembership {
                        range,
                        replicas: led.replicas,
                        index: led.membership_index,
                    },
                ));
            }
        }
        for (range, index, command) in proposals {
            match self.multi.propose(META_GROUP, command.encode()) {
                Ok(_) => {
                    self.placement.memberships_proposed.insert(range, index);
                }
                Err(error) => tracing::debug!(%error, "recording a range's membership was refused"),
            }
        }
    }

    /// On the meta leader: a node's digest of what it reported; a full report is asked for
    /// when it keeps differing from what was taken.
    fn take_report_digest(&mut self, from: NodeId, digest: digest::ReportDigest) {
        if !self.leads(META_GROUP) || !self.placement.taken.wants_full_report(from, digest) {
            return;
        }
        tracing::debug!(
            peer = from.0,
            "a report digest differs: a full report is asked for"
        );
        self.send_notes(from, [NodeNote::FullReportWanted]);
    }

    /// This node's term in the meta group.
    fn meta_term(&self) -> Term {
        self.multi
            .group(META_GROUP)
            .map_or(Term(0), flotilla_raft::RaftNode::term)
    }

    /// On the meta leader, once it has heard every node for a round: the driver's decisions,
    /// proposed to the meta group.
    fn drive_placement(&mut self) {
        if !self.leads(META_GROUP) {
            self.placement.leading_since_ms = None;
            self.placement.memberships_proposed.clear();
            return;
        }
        let now_ms = self.clock.now_ms;
        let Some(since_ms) = self.placement.leading_since_ms else {
            // A new leader knows no heartbeat: every node gets a full grace period, and the
            // driver waits for a round of reports (leaders, memberships) before it decides.
            self.placement.leading_since_ms = Some(now_ms);
            self.machines.meta_mut().cluster.heard_from_all(now_ms);
            return;
        };
        let round_ms = self.config.tick_ms * self.config.tuning.placement_interval_ticks;
        if now_ms < since_ms + 2 * round_ms {
            return;
        }
        let (term, index) = self.placement.proposed_up_to;
        if self.meta_term() == term && self.machines.applied(META_GROUP) < index {
            return;
        }
        let ready = self
            .placement
            .driver
            .tick(&self.machines.meta().cluster, now_ms);
        for decision in ready.decisions {
            tracing::debug!(%decision, "placement");
            let command = MetaCommand::Placement(decision);
            match self.multi.propose(META_GROUP, command.encode()) {
                Ok(index) => self.placement.proposed_up_to = (self.meta_term(), index),
                Err(error) => {
                    tracing::debug!(%error, "a placement decision was refused");
                    break;
                }
            }
        }
    }

    /// On every node: the operators whose range this node leads advance by one Raft change.
    fn carry_out_operators(&mut self) {
        let node = self.config.node;
        let mut work: Vec<(GroupId, Step, Vec<Replica>)> = Vec::new();
        let cluster = &self.machines.meta().cluster;
        for operator in cluster.operators() {
            let (Some(range), Some(step)) = (cluster.range(operator.range), operator.step()) else {
                continue;
            };
            if self.leads(range.group) {
                work.push((range.group, *step, operator.decided_on.clone()));
            }
        }
        for (group, step, decided_on) in work {
            let Some(raft) = self.multi.group(group) else {
                continue;
            };
            match step {
                Step::TransferLeader { from, to } => {
                    // Only to a peer this node hears now: the driver's view of a node lags by
                    // up to `heartbeat_stale_ms`, and a transfer to a dead or cut-off node
                    // refuses every write for an election timeout, again each round, until
                    // the operator times out. Not carried out, it times out the same way.
                    if from == node
                        && self.multi.live_peers().any(|peer| peer == to)
                        && let Err(error) = self.multi.transfer_leader(group, to)
                    {
                        tracing::debug!(%group, %error, "leadership transfer refused");
                    }
                }
                Step::AddLearner { .. } | Step::Promote { .. } | Step::Remove { .. } => {
                    let membership = raft.membership();
                    // Only on the membership the step was decided on (see
                    // `Operator::decided_on`); otherwise the driver gives it up.
                    if membership.is_joint()
                        || !same_replicas(&replicas_of(membership), &decided_on)
                    {
                        continue;
                    }
                    let actual = RangeView {
                        replicas: replicas_of(membership),
                        ..RangeView::voters(RangeId(0), group, &[])
                    };
                    let changes = step.change_steps(&actual);
                    if changes.is_empty() {
                        continue;
                    }
                    if let Step::Promote { node: learner, .. } = step
                        && !caught_up(raft, learner)
                    {
                        continue;
                    }
                    if !self.keeps_a_live_quorum(membership, &changes) {
                        // Joint consensus needs a majority of the new voters too: never enter
                        // a configuration whose voters could not commit (a dead node counted).
                        continue;
                    }
                    if let Err(error) = self.multi.propose_conf_change(group, changes) {
                        tracing::debug!(%group, %error, "a membership change was refused");
                    }
                }
            }
        }
    }

    /// Whether the voters after `changes` have a live majority (this node and the peers the
    /// node heartbeat hears), so the joint configuration can commit its way out.
    fn keeps_a_live_quorum(&self, membership: &Membership, changes: &[ChangeStep]) -> bool {
        let mut voters = membership.voters.clone();
        for change in changes {
            match *change {
                ChangeStep::AddVoter(node) => {
                    voters.insert(node);
                }
                ChangeStep::AddLearner(node) | ChangeStep::Remove(node) => {
                    voters.remove(&node);
                }
            }
        }
        let live: Vec<NodeId> = self.multi.live_peers().collect();
        let alive = voters
            .iter()
            .filter(|&&voter| voter == self.config.node || live.contains(&voter))
            .count();
        alive > voters.len() / 2
    }

    /// A replica with no membership and no entry (created empty to receive a snapshot, or a
    /// tombstone) never votes: it may stand for a destroyed replica whose vote and log it no
    /// longer has, and its empty log would let a stale candidate of an old configuration win
    /// without the entries a majority committed. This node adds replicas as learners that
    /// catch up first, so such a replica is never needed for a quorum. (Raft itself lets a new
    /// server vote, thesis §4.3; the rule is this node's.)
    ///
    /// The exception is a replica this process created empty for a group this node never
    /// hosted (no tombstone): a voter of a split's right half whose parent here took a
    /// snapshot past the split, so it never carved its state. It never acknowledged an entry,
    /// so no commit counted on it and its vote cannot elect a candidate without one; it never
    /// campaigns (it knows no membership). Without its vote, a right half with one voter down
    /// and one like this could never elect a leader to send it the state.
    ///
    /// After a restart, such a replica is known by the vote it made durable: a tombstone
    /// keeps a term and never a vote (`voted_while_empty`; simulator seed 504: a right half
    /// whose empty voter restarted could never elect the leader that would send it the
    /// state).
    pub(super) fn drop_votes_for_empty_replicas(&self, batch: &mut flotilla_raft::Batch) {
        let empty = |group: GroupId| {
            !self.placement.never_hosted.contains(&group)
                && self.multi.group(group).is_some_and(is_empty_replica)
        };
        batch.messages.retain(|message| {
            !matches!(
                message.message.body,
                flotilla_raft::MessageBody::RequestVote { .. }
            ) || !empty(message.group)
        });
    }

    /// Before a batch is stepped: a message for a group this node does not host creates an
    /// empty replica when the meta group places one here (a member, or an operator's target).
    /// The replica cannot vote until a leader gave it a membership, and starts from its
    /// tombstone's term if it was destroyed before.
    pub(super) fn create_placed_replicas(&mut self, batch: &flotilla_raft::Batch) {
        let mut groups: Vec<GroupId> = batch
            .messages
            .iter()
            .map(|message| message.group)
            .chain(batch.heartbeats.iter().map(|entry| entry.group))
            .filter(|&group| group != META_GROUP && self.multi.group(group).is_none())
            .collect();
        if groups.is_empty() {
            return;
        }
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            if !placed_here(&self.machines.meta().cluster, group, self.config.node) {
                continue;
            }
            let store = self.engine.group(group);
            if let Err(error) = self.multi.create_group(group, store) {
                tracing::warn!(%group, %error, "could not create a placed replica");
                continue;
            }
            if let Err(reason) = self.machines.restore(group, &Snapshot::default()) {
                tracing::warn!(%group, %reason, "could not start a placed replica's state");
            }
            // No tombstone: this node never hosted the group (`drop_votes_for_empty_replicas`).
            if self
                .multi
                .group(group)
                .is_some_and(|raft| raft.term() == Term(0))
            {
                self.placement.never_hosted.insert(group);
            }
            tracing::info!(%group, "created a replica placed here");
        }
    }

    /// Destroys the replicas the meta group records without this node (and no operator
    /// brings back): data dropped, a tombstone with the last term kept. A replica that never
    /// had a membership (a tombstone itself) is left alone.
    fn destroy_removed_replicas(&mut self) -> Result<(), CoreError> {
        let suspects = &mut self.placement.destroy.suspects;
        let first_later = suspects.iter().nth(DESTROY_SUSPECTS_PER_ROUND).copied();
        let later = first_later.map_or_else(BTreeSet::new, |first| suspects.split_off(&first));
        let mut groups = std::mem::replace(suspects, later);
        if let Some(first) = self.destroy_slice_start() {
            let slice: Vec<GroupId> = self
                .multi
                .group_ids_from(first)
                .take(DESTROY_CHECK_GROUPS_PER_ROUND + 1)
                .collect();
            self.placement.destroy.next = slice.get(DESTROY_CHECK_GROUPS_PER_ROUND).copied();
            groups.extend(slice.into_iter().take(DESTROY_CHECK_GROUPS_PER_ROUND));
        }
        let mut doomed: Vec<GroupId> = Vec::new();
        for group in groups {
            match self.removal_of(group) {
                Removal::None => {}
                Removal::Later => {
                    self.placement.destroy.suspects.insert(group);
                }
                Removal::Now => doomed.push(group),
            }
        }
        self.destroy_replicas(doomed)
    }

    /// Destroys the replicas of `groups`: data dropped, each tombstone (the replica's last
    /// term, no vote) written in one log write, then the group kept as a tombstone so its stale
    /// messages are refused.
    pub(super) fn destroy_replicas(&mut self, groups: Vec<GroupId>) -> Result<(), CoreError> {
        let doomed: Vec<(GroupId, HardState)> = groups
            .into_iter()
            .filter_map(|group| {
                let tombstone = HardState {
                    term: self.multi.group(group)?.term(),
                    vote: None,
                    commit: LogIndex(0),
                };
                Some((group, tombstone))
            })
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for &(group, tombstone) in &doomed {
            batch.destroy(group, tombstone);
        }
        self.engine.write(batch)?;
        for (group, _) in doomed {
            self.placement.never_hosted.remove(&group);
            self.multi.remove_group(group);
            self.machines.destroy(group)?;
            self.deferred.remove(&group);
            self.waiting.snapshot_installed(group, LogIndex(u64::MAX));
            let store = self.engine.group(group);
            if let Err(error) = self.multi.create_group(group, store) {
                tracing::warn!(%group, %error, "could not keep a destroyed replica's tombstone");
            }
            tracing::info!(%group, "destroyed a replica");
        }
        Ok(())
    }
}

/// Whether a replica hosted here is to be destroyed.
enum Removal {
    /// No: the meta group places it here (or it is the meta group's, or a tombstone).
    None,
    /// Not yet: removed, but it holds entries past the recorded removal.
    Later,
    /// Yes (leaving a tombstone).
    Now,
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// Whether the meta group removed this node's replica of `group`, and whether it may go.
    fn removal_of(&self, group: GroupId) -> Removal {
        let node = self.config.node;
        let cluster = &self.machines.meta().cluster;
        let (Some(raft), Some(range)) = (self.multi.group(group), cluster.range_of_group(group))
        else {
            return Removal::None;
        };
        let removed = group != META_GROUP
            && range.role_of(node).is_none()
            && cluster
                .operator_for(range.id)
                .is_none_or(|operator| !operator.adds(node))
            && !raft.membership().voters.is_empty();
        if !removed {
            return Removal::None;
        }
        // Only a removal newer than everything this replica holds: the group committed a
        // membership without it at `membership_index`, so whatever it acknowledged is held by
        // that membership's majority and no leader counts it again. A replica holding later
        // entries may have been added back (or promoted) meanwhile: its acknowledgements may
        // still count, and it stays (looked at again next round).
        if raft.log().last_index().0 > range.membership_index {
            return Removal::Later;
        }
        Removal::Now
    }

    /// The first group this round's slice of the destroy walk looks at: where the current pass
    /// stands, or the first group when a new pass is due (see `DestroyWalk`, and the safety
    /// net's `DESTROY_CHECK_EVERY_ROUNDS_MAX`); `None` when there is nothing to look at.
    fn destroy_slice_start(&mut self) -> Option<GroupId> {
        let node = self.config.node;
        let cluster = &self.machines.meta().cluster;
        let placed = (
            cluster.replica_count(node),
            cluster
                .operators()
                .filter(|operator| operator.adds(node))
                .count(),
        );
        let walk = &mut self.placement.destroy;
        walk.rounds_since_pass += 1;
        if walk.next.is_some() {
            return walk.next;
        }
        let due = placed != walk.placed || walk.rounds_since_pass >= DESTROY_CHECK_EVERY_ROUNDS_MAX;
        if !due {
            return None;
        }
        walk.placed = placed;
        walk.rounds_since_pass = 0;
        Some(GroupId(0))
    }
}

/// How many placement rounds apart full reports go out: every `FULL_REPORT_EVERY_ROUNDS` up to
/// 10,000 ranges led, then that many more per 10,000 (a full report of 40,000 ranges is about
/// 2 MB, and the meta leader looks up every range in it; a lost report is asked for again
/// by the digests, which cost a walk over the ranges reported on the reporter alone).
fn full_report_every_rounds(led_count: usize) -> u64 {
    FULL_REPORT_EVERY_ROUNDS * (led_count / 10_000).max(1) as u64
}

/// Whether the meta group places a replica of `group` on `node`.
/// Whether the learner `node` of the group `raft` leads may vote: it holds the membership in
/// force (so it knows it is a member, and took a snapshot or the log up to there) and all but
/// `CATCH_UP_LAG_ENTRIES` of what the group committed. Within the lag alone, a learner that
/// holds nothing passes in a young group: simulator seed 202 (with joins) found a new node
/// promoted before its replica existed, which then crashed empty and left the group's joint
/// configuration without a majority for good.
fn caught_up<L: flotilla_raft::LogReader>(raft: &flotilla_raft::RaftNode<L>, node: NodeId) -> bool {
    let committed = raft.log().committed();
    raft.matched(node).is_some_and(|matched| {
        matched >= raft.membership_index() && matched.0 + CATCH_UP_LAG_ENTRIES >= committed.0
    })
}

fn placed_here(cluster: &ClusterView, group: GroupId, node: NodeId) -> bool {
    let Some(range) = cluster.range_of_group(group) else {
        return false;
    };
    range.role_of(node).is_some()
        || cluster
            .operator_for(range.id)
            .is_some_and(|operator| operator.target() == Some(node))
}

/// A simple membership as the view's replicas: voters, then learners.
fn replicas_of(membership: &Membership) -> Vec<Replica> {
    let voters = membership.voters.iter().map(|&node| Replica {
        node,
        role: ReplicaRole::Voter,
    });
    let learners = membership.learners.iter().map(|&node| Replica {
        node,
        role: ReplicaRole::Learner,
    });
    voters.chain(learners).collect()
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// An operator's command: checked against the meta state, proposed to the meta group on
    /// its leader, answered once applied.
    pub(super) fn admin(&mut self, command: crate::api::AdminCommand, responder: R) {
        use crate::api::{AdminCommand, ApiError};
        use flotilla_shard_manager::placement::NodeState;
        let meta = match command {
            AdminCommand::Manual(request) => return self.manual_operator(request, responder),
            AdminCommand::ReserveRange => MetaCommand::ReserveRange,
            AdminCommand::SetNodeState { node, state } => {
                let refusal = match self.machines.meta().cluster.node(node) {
                    None => Some(format!("no node {node} is known")),
                    Some(known) if known.state == NodeState::Removed => Some(format!(
                        "{node} was removed, and a removed node stays removed"
                    )),
                    Some(_) => match state {
                        NodeState::Up | NodeState::Draining | NodeState::Removed => None,
                        NodeState::Suspect | NodeState::Down { .. } => Some(format!(
                            "a node's state can be set to up, draining or removed, not {state:?}"
                        )),
                    },
                };
                if let Some(reason) = refusal {
                    return responder.answer(Err(ApiError::AdminRefused(reason)));
                }
                MetaCommand::SetNodeState { node, state }
            }
        };
        if !self.leads(META_GROUP) {
            return responder.answer(Err(self.not_meta_leader()));
        }
        self.propose_admin(meta, responder);
    }

    /// A person's move or leadership transfer, on the meta leader: checked against its view
    /// (only the leader hears heartbeats and leaders), proposed as the driver's own decisions
    /// are, answered once applied. The driver ticks again only after it is applied, so it
    /// never starts a rival operator on a view without it; a decision of the driver's already
    /// proposed may still win the range, and then the meta group's refusal is the answer.
    fn manual_operator(
        &mut self,
        request: flotilla_shard_manager::placement::ManualRequest,
        responder: R,
    ) {
        use crate::api::ApiError;
        if !self.leads(META_GROUP) {
            return responder.answer(Err(self.not_meta_leader()));
        }
        let cluster = &self.machines.meta().cluster;
        let decision = match self
            .placement
            .driver
            .manual(cluster, request, self.clock.now_ms)
        {
            Ok(decision) => decision,
            Err(error) => return responder.answer(Err(ApiError::AdminRefused(error.to_string()))),
        };
        tracing::info!(%request, %decision, "a manual operator");
        if let Some(index) = self.propose_admin(MetaCommand::Placement(decision), responder) {
            self.placement.proposed_up_to =
                self.placement.proposed_up_to.max((self.meta_term(), index));
        }
    }

    /// The refusal of a request only the meta leader takes, with the leader this node knows.
    fn not_meta_leader(&self) -> crate::api::ApiError {
        let leader = self.meta_leader();
        let address = leader.and_then(|leader| {
            self.machines
                .meta()
                .directory
                .address(leader)
                .map(str::to_owned)
        });
        crate::api::ApiError::NotLeader {
            group: META_GROUP,
            leader,
            address,
        }
    }

    /// A new node joins: recorded in the meta group under an id never used, answered once
    /// applied. A node already recorded at that address is answered at once (a retry).
    pub(super) fn join(&mut self, node: NodeId, address: String, responder: R) {
        use crate::api::{ApiError, Reply};
        if !self.leads(META_GROUP) {
            return responder.answer(Err(self.not_meta_leader()));
        }
        let meta = self.machines.meta();
        if meta.cluster.node(node).is_some() {
            let retry = meta.directory.address(node) == Some(address.as_str())
                && meta.cluster.node(node).is_some_and(|known| {
                    known.state != flotilla_shard_manager::placement::NodeState::Removed
                });
            let answer = if retry {
                Ok(Reply::Applied)
            } else {
                Err(ApiError::AdminRefused(format!(
                    "{node} was used before in this cluster: a node joins under an id never \
                     used (one that lost its data joins under a new id)"
                )))
            };
            return responder.answer(answer);
        }
        tracing::info!(node = node.0, %address, "a node joins");
        self.propose_admin(MetaCommand::AddNode { node, address }, responder);
    }

    /// A node that moved (same id, same data directory) is recorded at its new address; the
    /// directory then leads every peer to dial it there. Answered once applied.
    pub(super) fn set_address(
        &mut self,
        node: NodeId,
        address: String,
        data_directory: u128,
        responder: R,
    ) {
        use crate::api::{ApiError, Reply};
        if !self.leads(META_GROUP) {
            return responder.answer(Err(self.not_meta_leader()));
        }
        let meta = self.machines.meta();
        let registered = meta.data_directories.get(&node).copied();
        let refusal = match meta.cluster.node(node) {
            None => Some(format!(
                "no node {node} is known: a new node joins with --join"
            )),
            Some(known) if known.state == flotilla_shard_manager::placement::NodeState::Removed => {
                Some(format!(
                    "{node} was removed, and a removed node stays removed"
                ))
            }
            Some(_) => registered.filter(|&dir| dir != data_directory).map(|dir| {
                format!(
                    "{node} is registered with data directory {dir:032x}, not \
                     {data_directory:032x}: a node that lost its data joins under a new id"
                )
            }),
        };
        if let Some(reason) = refusal {
            return responder.answer(Err(ApiError::AdminRefused(reason)));
        }
        if meta.directory.address(node) == Some(address.as_str()) {
            return responder.answer(Ok(Reply::Applied));
        }
        tracing::info!(node = node.0, %address, "a node moved");
        self.propose_admin(MetaCommand::SetAddress { node, address }, responder);
    }

    /// The meta group's snapshot as this leader's log stores it, read whole (a joining node
    /// starts from it; `snapshot()` would give the reference a leader streams it by).
    pub(super) fn meta_snapshot(&mut self, responder: R) {
        use crate::api::{ApiError, Reply};
        if !self.leads(META_GROUP) {
            return responder.answer(Err(self.not_meta_leader()));
        }
        let answer = match self.engine.group(META_GROUP).load_snapshot() {
            Ok(snapshot) => Ok(Reply::MetaSnapshot {
                snapshot,
                directory: self.machines.meta().directory.clone(),
            }),
            Err(error) => Err(ApiError::Unavailable(error.to_string())),
        };
        responder.answer(answer);
    }

    /// Proposes an operator's meta command; the client is answered once it is applied (with
    /// the meta group's refusal, if it refused it). The index proposed at, if it was.
    fn propose_admin(&mut self, command: MetaCommand, responder: R) -> Option<LogIndex> {
        match self.multi.propose(META_GROUP, command.encode()) {
            Ok(index) => {
                let term = self
                    .multi
                    .group(META_GROUP)
                    .map(|raft| raft.term())
                    .unwrap_or_default();
                self.waiting
                    .add_proposal(META_GROUP, index, term, responder);
                Some(index)
            }
            Err(error) => {
                responder.answer(Err(self.refusal(META_GROUP, error)));
                None
            }
        }
    }

    /// The placement driver's view, from the meta leader (others refuse with a hint).
    pub(super) fn placement_status(&mut self, responder: R) {
        use crate::api::{PlacementStatus, Reply};
        if !self.leads(META_GROUP) {
            return responder.answer(Err(self.not_meta_leader()));
        }
        let cluster = &self.machines.meta().cluster;
        responder.answer(Ok(Reply::Placement(PlacementStatus {
            nodes: cluster.nodes().cloned().collect(),
            ranges: cluster.ranges().cloned().collect(),
            operators: cluster.operators().cloned().collect(),
        })));
    }
}

/// Whether `raft` is an empty replica: no entry and no membership (created empty to receive a
/// snapshot, or a destroyed replica's tombstone).
pub(super) fn is_empty_replica<L: flotilla_raft::LogReader>(
    raft: &flotilla_raft::RaftNode<L>,
) -> bool {
    raft.membership().voters.is_empty() && raft.log().last_index().0 == 0
}

/// The groups recovered empty (no entry, no membership) that hold a vote: replicas created
/// empty for a group this node never hosted, which voted before the restart. A destroyed
/// replica's tombstone keeps its last term and no vote, so it is never among them.
pub(super) fn voted_while_empty(
    multi: &flotilla_raft::MultiRaft<flotilla_storage::GroupLog>,
) -> std::collections::BTreeSet<GroupId> {
    multi
        .group_ids()
        .filter(|&group| group != META_GROUP)
        .filter(|&group| {
            multi
                .group(group)
                .is_some_and(|raft| raft.vote().is_some() && is_empty_replica(raft))
        })
        .collect()
}

#[cfg(test)]
mod pacing_tests {
    use super::full_report_every_rounds;

    #[test]
    fn full_reports_thin_out_past_ten_thousand_led_ranges() {
        assert_eq!(full_report_every_rounds(0), 80);
        assert_eq!(full_report_every_rounds(19_999), 80);
        assert_eq!(full_report_every_rounds(40_000), 320);
    }
}

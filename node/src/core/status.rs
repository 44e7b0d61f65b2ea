//! The node's status as clients and `flotilla status` see it: every group's role, term,
//! leader and indexes, and what the node counted; and the lighter `Observation` the driver
//! publishes for the metrics and the readiness probe.

use super::{BatchSink, Counters, NodeCore, Respond};
use crate::api::{GroupStatus, NodeStatus, PeerState, PeerStatus};
use flotilla_raft::{GroupId, NodeId, Role};
use std::sync::Arc;

/// What the node is and has done, at one moment: the counters and a summary of its groups,
/// for `/metrics`, `/ready` and the summary log line.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// The core's counters.
    pub counters: Counters,
    /// Client requests waiting for their entry to apply or their read to be confirmed.
    pub waiting: u64,
    /// Key and value bytes this node's ranges hold.
    pub stored_bytes: u64,
    /// Every watched peer and how it is heard.
    pub peers: Vec<PeerStatus>,
    /// Segment files the log uses.
    pub log_segments: u64,
    /// The groups as the last scan of every hosted group found them (the driver scans less
    /// often than it publishes when a node hosts many groups).
    pub groups: Arc<GroupsObservation>,
}

/// What one pass over every hosted group found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupsObservation {
    /// Groups this node hosts a replica of (the meta group included).
    pub hosted: u64,
    /// Groups this node leads.
    pub led: u64,
    /// Groups that are quiescent (idle: no ticks, no heartbeats of their own).
    pub quiescent: u64,
    /// Groups whose replica here knows no leader, lowest id first.
    pub without_leader: Vec<GroupId>,
    /// Groups whose replica here has not applied all it knows committed, lowest id first.
    pub behind: Vec<GroupId>,
    /// Every hosted group with the leader its replica here knows, lowest id first (for the
    /// status page: which node leads what; walked only while the page is viewed).
    pub leaders: Arc<Vec<(GroupId, Option<NodeId>)>>,
}

/// `observe_groups` looks at the awake groups alone while fewer than one in this many are
/// awake (each costs lookups; a walk over all goes in order). Either way `leaders` stays
/// empty: see `group_leaders`.
const AWAKE_SHARE_INVERSE: usize = 8;

impl GroupsObservation {
    /// Counts a member group with `status`.
    fn count(&mut self, group: GroupId, status: &flotilla_raft::Status, quiescent: bool) {
        self.hosted += 1;
        self.led += u64::from(status.role == Role::Leader);
        self.quiescent += u64::from(quiescent);
        if status.leader.is_none() {
            self.without_leader.push(group);
        }
        if status.applied < status.committed {
            self.behind.push(group);
        }
    }
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// The node at this moment, for the metrics and the readiness probe (the driver publishes
    /// it every `tuning.metrics_publish_interval_ms`), with `groups` from the last scan.
    #[must_use]
    pub fn observe(&self, groups: Arc<GroupsObservation>) -> Observation {
        Observation {
            counters: self.counters,
            waiting: self.waiting.len() as u64,
            stored_bytes: self.machines.stored_bytes(),
            peers: self.peer_statuses(),
            log_segments: self.engine.segment_sequences().len() as u64,
            groups,
        }
    }

    /// The groups as a walk over every hosted group finds them: at 100,000 idle groups that
    /// walk took tens of milliseconds and, paced, still a quarter of an idle node's CPU, so
    /// while few groups are awake only those are looked at (`observe_awake_groups`).
    #[must_use]
    pub fn observe_groups(&self) -> GroupsObservation {
        let awake = self.multi.awake_count_max();
        if awake.saturating_mul(AWAKE_SHARE_INVERSE) < self.multi.group_count() {
            self.observe_awake_groups()
        } else {
            self.observe_every_group()
        }
    }

    /// The groups, from a look at the awake ones (`MultiRaft::awake_groups`). A group not
    /// visited is quiescent without work, so it counts as hosted, quiescent, led when among
    /// MultiRaft's led groups, with a leader and applied. (Its own removal, applied while
    /// quiescent, would count it as hosted until the destroy walk removes it.)
    pub(super) fn observe_awake_groups(&self) -> GroupsObservation {
        let mut observation = GroupsObservation::default();
        let (mut quiescent_seen, mut led_seen) = (0, 0);
        for (group, raft, quiescent) in self.multi.awake_groups() {
            quiescent_seen += u64::from(quiescent);
            led_seen += u64::from(self.multi.is_led(group));
            if raft.membership().contains(self.config.node) {
                observation.count(group, &raft.status(), quiescent);
            }
        }
        let unseen = self.multi.quiescent_count() as u64 - quiescent_seen;
        observation.hosted += unseen;
        observation.quiescent += unseen;
        observation.led += self.multi.led_count() as u64 - led_seen;
        observation
    }

    /// The groups, from a walk over every one (cheaper than looking up each awake group
    /// when most are awake: at a start, in an election storm).
    pub(super) fn observe_every_group(&self) -> GroupsObservation {
        let mut observation = GroupsObservation::default();
        for group in self.multi.group_ids() {
            let Some(raft) = self.multi.group(group) else {
                continue;
            };
            if raft.membership().contains(self.config.node) {
                let quiescent = self.multi.is_quiescent(group);
                observation.count(group, &raft.status(), quiescent);
            }
        }
        observation
    }

    /// Every hosted group with the leader its replica here knows, lowest id first (for the
    /// status page: a walk over every group, made only while the page is viewed).
    #[must_use]
    pub fn group_leaders(&self) -> Vec<(GroupId, Option<NodeId>)> {
        self.multi
            .group_ids()
            .filter(|&group| self.is_member(group))
            .filter_map(|group| Some((group, self.multi.group(group)?.leader())))
            .collect()
    }

    pub(super) fn status(&self) -> NodeStatus {
        let groups = self
            .multi
            .group_ids()
            .filter(|&group| self.is_member(group))
            .filter_map(|group| {
                let raft = self.multi.group(group)?;
                let status = raft.status();
                Some(GroupStatus {
                    group,
                    role: format!("{:?}", status.role),
                    term: status.term.0,
                    leader: status.leader,
                    committed: status.committed.0,
                    applied: status.applied.0,
                    snapshot_index: self.snapshot_index(group).0,
                    quiescent: self.multi.is_quiescent(group),
                    stored_bytes: self
                        .machines
                        .kv(group)
                        .map_or(0, |machine| machine.stored_bytes()),
                })
            })
            .collect();
        let meta = self.machines.meta();
        NodeStatus {
            node: self.config.node,
            epoch: meta.map.epoch(),
            groups,
            fsyncs: self.counters.fsyncs,
            entries_persisted: self.counters.entries_persisted,
            write_micros: self.counters.write_micros,
            busy_micros: self.counters.busy_micros,
            uptime_micros: self.counters.uptime_micros,
            requests: self.counters.requests,
            batches_refused: self.counters.batches_refused,
            waiting: self.waiting.len() as u64,
            leader_changes: self.counters.leader_changes,
            live_peers: self.multi.live_peers().collect(),
            incarnation: self.registry.incarnation,
            registered_directories: meta.data_directories.keys().copied().collect(),
            peers: self.peer_statuses(),
        }
    }

    /// Each watched peer as Raft hears it, told apart by whether a connection to it is open: a
    /// connected but quiet peer is a stalled connection or a stuck peer, an unreachable one is
    /// down or cut off.
    fn peer_statuses(&self) -> Vec<PeerStatus> {
        let node_timeout_ticks = self.multi.config().node_timeout_ticks;
        self.multi
            .peer_silences()
            .map(|(node, silent_ticks)| PeerStatus {
                node,
                state: PeerState::of(
                    silent_ticks,
                    node_timeout_ticks,
                    self.sink.is_connected(node),
                ),
                silent_ms: silent_ticks * self.config.tick_ms,
            })
            .collect()
    }
}

//! Quiescence: a group whose leader has nothing in flight stops ticking on every replica and
//! sends nothing. Its last heartbeat carries `quiesce`; a follower that holds and has committed
//! everything then stops too. Wake rules: a proposal, read, transfer, membership change or
//! compaction; any inbound message other than a quiescing heartbeat; the loss of the
//! leader's node (seen by node liveness); and any message that leaves the replica neither
//! leading nor following a known leader. A follower woken only by its leader node's silence
//! sleeps again when that node is heard, if nothing else changed. Waking restarts the group's
//! timers from scratch, so woken followers campaign only after a fresh random election
//! timeout, with pre-vote: many groups waking at once do not all campaign at once.

use super::MultiRaft;
use crate::error::StepError;
use crate::log::LogReader;
use crate::message::Message;
use crate::node::Role;
use crate::types::{GroupId, LogIndex, NodeId, Term};

impl<L: LogReader> MultiRaft<L> {
    pub(super) fn set_quiescent(&mut self, group: GroupId) {
        if let Some(hosted) = self.groups.get_mut(&group) {
            hosted.quiescent = true;
            self.active.remove(&group);
        }
    }

    /// Makes `group` tick again if it was quiescent.
    pub(super) fn wake_group(&mut self, group: GroupId) {
        let Some(hosted) = self.groups.get_mut(&group) else {
            return;
        };
        if hosted.quiescent {
            hosted.quiescent = false;
            hosted.raft.wake();
            self.active.insert(group);
        }
    }

    /// Whether `message` is a vote request to a quiescent follower of `group` from someone other
    /// than its leader, while the leader's node is live. Such a request must not wake the
    /// follower: stepped while quiescent, it meets the follower's leader lease and is ignored,
    /// so a restarted or partitioned node cannot depose healthy quiescent leaders. (A quiescent
    /// leader does wake on it, heartbeats, and so teaches the campaigner who leads.)
    pub(super) fn is_campaign_against_live_leader(
        &self,
        group: GroupId,
        message: &Message,
    ) -> bool {
        let Some(hosted) = self.groups.get(&group) else {
            return false;
        };
        // A candidate whose log is ahead of ours saw entries this replica never got: the
        // leader it knew may lead no more (simulator seed 899: a promoted learner, quiescent
        // under a leader since removed from the group, ignored the only candidate that could
        // win, for good).
        let vote_request_not_ahead = match &message.body {
            crate::message::MessageBody::RequestVote { last_log, .. } => {
                let own = hosted.raft.log().last_log_id();
                !(last_log.is_up_to_date_with(&own) && *last_log != own)
            }
            _ => false,
        };
        let leader = hosted.raft.leader();
        hosted.quiescent
            && self.config.raft.check_quorum
            && vote_request_not_ahead
            && hosted.raft.role() != crate::node::Role::Leader
            && leader.is_some_and(|leader| {
                leader != message.from && self.liveness.is_live(leader, self.now_ticks)
            })
    }

    /// A follower that received the leader's last heartbeat stops ticking if it is caught up.
    pub(super) fn quiesce_follower_if_caught_up(
        &mut self,
        group: GroupId,
        leader: NodeId,
        commit: LogIndex,
    ) {
        let Some(hosted) = self.groups.get(&group) else {
            return;
        };
        let raft = &hosted.raft;
        let caught_up = raft.leader() == Some(leader)
            && raft.log().last_index() == commit
            && raft.log().committed() == commit;
        if caught_up && self.config.quiesce {
            self.set_quiescent(group);
        }
    }

    /// Steps a message into `group` without waking it, unless the message leaves the replica
    /// unable to wait quietly (see `may_wait_quietly`).
    pub(super) fn step_quietly(
        &mut self,
        group: GroupId,
        message: Message,
    ) -> Result<(), super::MultiError> {
        let Some(hosted) = self.groups.get_mut(&group) else {
            return Ok(());
        };
        self.dirty.insert(group);
        let stepped = hosted.raft.step(message);
        let stranded = hosted.quiescent && !may_wait_quietly(&hosted.raft);
        #[cfg(feature = "mutations")]
        let stranded = stranded
            && self.config.raft.mutation != crate::config::Mutation::StrandQuiescentReplicas;
        if stranded {
            self.wake_group(group);
        }
        match stepped {
            Err(StepError::Log(error)) => Err(super::MultiError::Log(error)),
            Err(refused @ StepError::SnapshotRefused { .. }) => {
                self.snapshot_refusal_count += 1;
                if self.snapshot_refusals.len() < super::SNAPSHOT_REFUSALS_KEPT {
                    self.snapshot_refusals.push((group, refused));
                }
                Ok(())
            }
            // Other refusals are messages Raft ignores by design (stale, unknown sender...).
            _ => Ok(()),
        }
    }

    /// Peers that just went silent: every quiescent group they led wakes up and, after a
    /// fresh election timeout, elects a new leader.
    pub(super) fn wake_groups_of_dead_peers(&mut self) {
        let down = self.liveness.newly_down(self.now_ticks);
        if down.is_empty() {
            return;
        }
        let orphans: Vec<(NodeId, GroupId, Term)> = self
            .groups
            .iter()
            .filter(|(_, hosted)| hosted.quiescent)
            .filter_map(|(&group, hosted)| {
                let leader = hosted.raft.leader()?;
                down.contains(&leader)
                    .then(|| (leader, group, hosted.raft.term()))
            })
            .collect();
        for &peer in &down {
            self.woken_by_silence.insert(peer, Vec::new());
        }
        for (leader, group, term) in orphans {
            self.wake_group(group);
            self.woken_by_silence
                .entry(leader)
                .or_default()
                .push((group, term));
        }
    }

    /// `peer`, reported down, is heard again: the followers its silence woke that still follow
    /// it in the same term, hold everything committed and have not campaigned go back to sleep,
    /// counting their leader as heard now. Nothing happened to them but the silence: their
    /// leader is quiescent and sends nothing, so awake they would time out and depose it,
    /// and a node whose loop stalled past the node timeout (a long write, a busy machine)
    /// cost every group it led an election.
    pub(super) fn requiesce_groups_woken_by(&mut self, peer: NodeId) {
        #[cfg(feature = "mutations")]
        if self.config.raft.mutation == crate::config::Mutation::StayAwakeAfterASilence {
            return;
        }
        let Some(woken) = self.woken_by_silence.remove(&peer) else {
            return;
        };
        for (group, term) in woken {
            let Some(hosted) = self.groups.get_mut(&group) else {
                continue;
            };
            let raft = &hosted.raft;
            let still_waiting = !hosted.quiescent
                && raft.role() == Role::Follower
                && raft.leader() == Some(peer)
                && raft.term() == term
                && raft.log().last_index() == raft.log().committed();
            if still_waiting && self.config.quiesce {
                hosted.raft.heard_leader_node();
                self.set_quiescent(group);
            }
        }
    }
}

/// Whether a replica may stop ticking: a leader (it answers whatever comes), or a follower of a
/// known leader (that leader's silence wakes it). A replica that knows no leader must tick, or
/// it never campaigns. Messages stepped without waking the group (heartbeat responses,
/// quiescing heartbeats, a campaign against a live leader) can still change that: a quiescent
/// leader that learns of a higher term from a heartbeat response steps down knowing no leader,
/// and its followers, which still hear its node, would vote for no one else, forever (the
/// multi-node simulator found it: issue 25's "ranges would have stayed down").
fn may_wait_quietly<L: LogReader>(raft: &crate::node::RaftNode<L>) -> bool {
    match raft.role() {
        Role::Leader => true,
        Role::Follower => raft.leader().is_some(),
        Role::PreCandidate | Role::Candidate => false,
    }
}

//! Membership changes by joint consensus (Raft §6, thesis §4.3), with learners. A change that
//! touches voters enters the joint configuration C_old,new first; once that is applied the
//! leader proposes C_new. Each configuration takes effect when its entry is applied, and only
//! one change may be pending at a time.

use crate::entry::{ChangeStep, Entry, EntryPayload, Membership};
use crate::error::ProposeError;
use crate::log::{LogError, LogReader};
use crate::node::{RaftNode, Role};
use crate::types::{LogIndex, NodeId};

/// The configuration that results from applying `steps` to the simple configuration `current`.
///
/// # Errors
/// If a step is a no-op or the result would have no voter.
pub fn plan_membership(
    current: &Membership,
    steps: &[ChangeStep],
) -> Result<Membership, ProposeError> {
    let invalid = ProposeError::InvalidMembershipChange;
    let mut voters = current.voters.clone();
    let mut learners = current.learners.clone();
    for step in steps {
        let changed = match *step {
            ChangeStep::AddVoter(node) => learners.remove(&node) | voters.insert(node),
            ChangeStep::AddLearner(node) => voters.remove(&node) | learners.insert(node),
            ChangeStep::Remove(node) => voters.remove(&node) | learners.remove(&node),
        };
        if !changed {
            return Err(invalid("a step changes nothing"));
        }
    }
    if voters.is_empty() {
        return Err(invalid("the group would have no voter"));
    }
    if steps.is_empty() {
        return Err(invalid("the change has no step"));
    }
    let outgoing = if voters == current.voters {
        Default::default()
    } else {
        current.voters.clone()
    };
    Ok(Membership {
        voters,
        outgoing,
        learners,
    })
}

impl<L: LogReader> RaftNode<L> {
    /// Proposes a membership change. Changes to voters go through a joint configuration, which
    /// the leader leaves on its own once it is applied. Returns the entry's index.
    ///
    /// # Errors
    /// `NotLeader`, `TransferInProgress`, `MembershipChangePending` or an invalid change.
    pub fn propose_conf_change(
        &mut self,
        steps: Vec<ChangeStep>,
    ) -> Result<LogIndex, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer_target.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        if self.membership_change_pending() || self.membership.is_joint() {
            return Err(ProposeError::MembershipChangePending);
        }
        let next = plan_membership(&self.membership, &steps)?;
        let index = self.append_as_leader(EntryPayload::Membership(next));
        self.pending_membership_index = index;
        self.check_invariants();
        Ok(index)
    }

    fn membership_change_pending(&self) -> bool {
        self.pending_membership_index > self.log.applied()
    }

    /// After `advance`: the state machine applied `entry`; a membership takes effect now.
    pub(crate) fn apply_entry(&mut self, entry: &Entry) {
        self.log.applied_to(entry.index);
        if let EntryPayload::Membership(membership) = &entry.payload {
            self.adopt_membership(entry.index, membership.clone());
        }
        self.maybe_leave_joint();
    }

    fn adopt_membership(&mut self, index: LogIndex, membership: Membership) {
        self.membership_history.push((index, membership.clone()));
        self.membership = membership;
        if self.role != Role::Leader {
            if self.role != Role::Follower && !self.promotable() {
                // A campaign begun under the old configuration ends (a vote answer may have
                // taught the commit that removed us mid-campaign): no voter, no leader.
                self.become_follower(self.term, None);
            }
            return;
        }
        self.sync_progress();
        if !self.membership.is_voter(self.id_()) {
            // A leader removed from the voters hands over by stepping down; the remaining
            // voters elect a new leader after their election timeout.
            self.become_follower(self.term, None);
        }
    }

    /// Leader: progress for every replica of the new membership, and none for removed ones.
    fn sync_progress(&mut self) {
        let replicas: Vec<NodeId> = self.membership.replicas().collect();
        self.progress.retain(|node, _| replicas.contains(node));
        self.given_up_snapshots
            .retain(|node, _| replicas.contains(node));
        let gone: Vec<NodeId> = self
            .outgoing_snapshots
            .keys()
            .filter(|node| !replicas.contains(node))
            .copied()
            .collect();
        for node in gone {
            self.drop_outgoing_snapshot(node);
        }
        for replica in replicas {
            if !self.progress.contains_key(&replica) {
                self.add_progress(replica);
                self.send_append(replica);
            }
        }
    }

    /// Leader: once the joint configuration is applied, propose the new one alone.
    fn maybe_leave_joint(&mut self) {
        if self.role != Role::Leader || !self.membership.is_joint() {
            return;
        }
        if self.membership_change_pending() {
            return;
        }
        let leave = Membership {
            voters: self.membership.voters.clone(),
            outgoing: Default::default(),
            learners: self.membership.learners.clone(),
        };
        let index = self.append_as_leader(EntryPayload::Membership(leave));
        self.pending_membership_index = index;
    }

    /// On restart: the membership of the newest committed membership entry is in force (it was
    /// applied before the crash, or will be re-applied identically).
    pub(crate) fn load_committed_membership(&mut self) -> Result<(), LogError> {
        let low = self.log.first_index();
        let high = self.log.committed().next();
        for entry in self.log.entries(low, high, u64::MAX)? {
            if let EntryPayload::Membership(membership) = entry.payload {
                self.membership_history
                    .push((entry.index, membership.clone()));
                self.membership = membership;
            }
        }
        Ok(())
    }
}

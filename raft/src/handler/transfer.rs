//! Leadership transfer (thesis §3.10): the leader stops accepting proposals, catches the
//! target up, then tells it to campaign at once with TimeoutNow.

use crate::error::ProposeError;
use crate::handler::election::Campaign;
use crate::log::LogReader;
use crate::message::MessageBody;
use crate::node::{RaftNode, Role};
use crate::timers::Timer;
use crate::types::NodeId;

impl<L: LogReader> RaftNode<L> {
    /// Hands leadership to `target`. It gives up after an election timeout.
    ///
    /// # Errors
    /// `NotLeader`, or `NotAVoter` if `target` cannot lead.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if !self.membership.is_voter(target) {
            return Err(ProposeError::NotAVoter(target));
        }
        if target == self.id_() || self.transfer_target == Some(target) {
            return Ok(());
        }
        self.transfer_target = Some(target);
        self.timers
            .set(Timer::Transfer, self.config.election_timeout_ticks_min);
        if self.is_caught_up(target) {
            self.send_timeout_now(target);
        } else {
            self.send_append(target);
        }
        Ok(())
    }

    fn is_caught_up(&self, node: NodeId) -> bool {
        self.progress
            .get(&node)
            .is_some_and(|progress| progress.matched == self.log.last_index())
    }

    /// Leader: `from` matched more of the log; if it is the transfer target and caught up,
    /// tell it to campaign.
    pub(crate) fn on_transfer_progress(&mut self, from: NodeId) {
        if self.transfer_target == Some(from) && self.is_caught_up(from) {
            self.send_timeout_now(from);
        }
    }

    /// Tells `target` to campaign at once. Voters grant that campaign even while they hear us,
    /// so from now on our lease proves nothing (TiKV suspects its lease here too).
    fn send_timeout_now(&mut self, target: NodeId) {
        self.reads.suspend_lease();
        self.send(target, MessageBody::TimeoutNow);
    }

    pub(crate) fn abort_transfer(&mut self) {
        self.transfer_target = None;
        self.timers.stop(Timer::Transfer);
    }

    /// Follower: the leader asks us to campaign now, skipping pre-vote and the voters' lease.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        // Only the leader of our term may order an election that skips the voters' lease.
        if self.role == Role::Leader || !self.promotable() || self.leader != Some(from) {
            return;
        }
        self.campaign(Campaign::Transfer);
    }
}

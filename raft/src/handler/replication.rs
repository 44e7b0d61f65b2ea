//! Log replication (Raft §5.3): AppendEntries out and in, pipelining within the in-flight
//! window, fast backtracking on conflict, and heartbeats.

use crate::entry::Entry;
use crate::error::StepError;
use crate::log::{LogError, LogReader};
use crate::message::{AppendOutcome, MessageBody};
use crate::node::{RaftNode, Role};
use crate::progress::{Progress, ReplicationState};
use crate::quorum::quorum_of;
use crate::timers::Timer;
use crate::types::{LogId, LogIndex, NodeId};

/// How many entries one AppendEntries may carry.
#[derive(Clone, Copy)]
enum Within {
    /// Up to `append_bytes_max` of them.
    Bytes,
    /// One at most (a probe sent again).
    OneEntry,
}

impl<L: LogReader> RaftNode<L> {
    /// Leader: every replica of the membership gets a fresh progress, probing from our tail.
    pub(crate) fn reset_progress(&mut self) {
        self.progress.clear();
        let replicas: Vec<NodeId> = self.membership.replicas().collect();
        for replica in replicas {
            self.add_progress(replica);
        }
    }

    pub(crate) fn add_progress(&mut self, replica: NodeId) {
        let mut progress = Progress::new(
            self.log.last_index().next(),
            (
                self.config.inflight_count_max,
                self.config.inflight_bytes_max,
            ),
            self.timers.now(),
        );
        if replica == self.id_() {
            progress.matched = self.log.persisted_index();
            progress.state = ReplicationState::Replicate;
        }
        self.progress.insert(replica, progress);
    }

    /// Leader: send whatever each follower is missing, as far as its window allows.
    pub(crate) fn broadcast_append(&mut self) {
        // By position, not a collected list: this runs on every commit, and sending changes
        // only the progress values, never the set of replicas.
        let id = self.id_();
        let mut position = 0;
        while let Some(node) = self.progress.node_at(position) {
            if node != id {
                self.send_append(node);
            }
            position += 1;
        }
    }

    pub(crate) fn followers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let id = self.id_();
        self.progress
            .keys()
            .copied()
            .filter(move |&node| node != id)
    }

    /// Leader: one AppendEntries to `to` if it is not paused; a snapshot if its next entry
    /// was compacted. Returns whether something was sent.
    pub(crate) fn send_append(&mut self, to: NodeId) -> bool {
        self.send_append_within(to, Within::Bytes)
    }

    /// `send_append`, carrying entries within `within`.
    fn send_append_within(&mut self, to: NodeId, within: Within) -> bool {
        let Some(progress) = self.progress.get(&to) else {
            return false;
        };
        if progress.is_paused() {
            return false;
        }
        let next = progress.next;
        let last = self.log.last_index();
        let has_more = next <= last;
        let probing = progress.state == ReplicationState::Probe;
        if !has_more && !probing {
            return false;
        }
        let prev_index = next.prev();
        let read_to = match within {
            Within::Bytes => last,
            // `[next, next + 1)`, or nothing past the log's end.
            Within::OneEntry => next.min(last),
        };
        let entries = match self.read_for_append(prev_index, next, read_to) {
            Ok(found) => found,
            Err(LogError::Compacted(_)) => return self.send_snapshot(to),
            Err(error) => {
                self.fail(error);
                return false;
            }
        };
        self.send_entries(to, entries)
    }

    fn read_for_append(
        &self,
        prev_index: LogIndex,
        next: LogIndex,
        last: LogIndex,
    ) -> Result<(LogId, Vec<Entry>), LogError> {
        let prev_term = self.log.term(prev_index)?;
        let entries = self
            .log
            .entries(next, last.next(), self.config.append_bytes_max)?;
        Ok((LogId::new(prev_term, prev_index), entries))
    }

    fn send_entries(&mut self, to: NodeId, (prev, entries): (LogId, Vec<Entry>)) -> bool {
        let bytes: u64 = entries.iter().map(Entry::payload_bytes).sum();
        let last_sent = entries.last().map_or(prev.index, |entry| entry.index);
        let commit = self.log.committed();
        if let Some(progress) = self.progress.get_mut(&to) {
            if entries.is_empty() {
                progress.probe_sent = true;
            } else {
                progress.sent_entries(last_sent, bytes);
            }
        }
        let body = MessageBody::AppendEntries {
            prev,
            entries,
            commit,
        };
        self.send(to, body);
        true
    }

    /// Follower: AppendEntries from the leader of our term (Raft §5.3, receiver rules 2-5).
    pub(crate) fn handle_append_entries(
        &mut self,
        from: NodeId,
        prev: LogId,
        entries: &[Entry],
        leader_commit: LogIndex,
    ) -> Result<(), StepError> {
        if prev.index < self.log.committed() {
            let last = self.log.committed();
            self.send(
                from,
                MessageBody::AppendResponse(AppendOutcome::Accepted { last }),
            );
            return Ok(());
        }
        let overwrites_committed = self.log.matches(prev)
            && self
                .log
                .find_conflict(entries)
                .is_some_and(|index| index <= self.log.committed());
        if overwrites_committed {
            let reason = "entries would overwrite a committed entry";
            return Err(StepError::Malformed { from, reason });
        }
        let outcome = match self.log.try_append(prev, entries) {
            Some(last_new) => {
                self.log.commit_to(leader_commit.min(last_new));
                AppendOutcome::Accepted { last: last_new }
            }
            None => AppendOutcome::Rejected {
                rejected: prev.index,
                hint: self.log.find_conflict_by_term(prev.index, prev.term),
            },
        };
        self.send(from, MessageBody::AppendResponse(outcome));
        Ok(())
    }

    /// Leader: a follower's answer to AppendEntries.
    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        outcome: AppendOutcome,
    ) -> Result<(), StepError> {
        match outcome {
            AppendOutcome::Accepted { last } if last > self.log.last_index() => {
                return Err(StepError::Malformed {
                    from,
                    reason: "acknowledges entries past the leader's last index",
                });
            }
            AppendOutcome::Accepted { last } => self.on_append_accepted(from, last),
            AppendOutcome::Rejected { rejected, hint } => {
                self.on_append_rejected(from, rejected, hint)
            }
        }
        Ok(())
    }

    fn on_append_accepted(&mut self, from: NodeId, last: LogIndex) {
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        if !progress.update_matched(last) {
            return;
        }
        match progress.state {
            ReplicationState::Probe => progress.become_replicate(),
            ReplicationState::Snapshot { index } if progress.matched >= index => {
                progress.become_probe();
                self.drop_outgoing_snapshot(from);
            }
            _ => {}
        }
        if self.maybe_commit() {
            self.broadcast_append();
        }
        // The ack may have opened the window by several messages (probe to replicate, or
        // several freed at once): fill it, whether or not the commit index moved.
        while self.send_append(from) {}
        self.on_transfer_progress(from);
    }

    fn on_append_rejected(&mut self, from: NodeId, rejected: LogIndex, hint: LogId) {
        let Some(progress) = self.progress.get(&from) else {
            return;
        };
        let stale = match progress.state {
            ReplicationState::Replicate => rejected <= progress.matched,
            ReplicationState::Probe => rejected != progress.next.prev(),
            ReplicationState::Snapshot { .. } => true,
        };
        if stale {
            return;
        }
        // Fast backtracking: skip every entry of a term the follower cannot match.
        let conflict = self.log.find_conflict_by_term(hint.index, hint.term);
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        let next = conflict.index.next().max(progress.matched.next());
        let moved = next != progress.next;
        progress.become_probe();
        progress.next = next;
        if moved {
            self.send_append(from);
        } else {
            // The follower refused the entry after what it acknowledged: it lost data it
            // promised (never in a correct run). Probed again on the next heartbeat, not at
            // once: an immediate resend would echo forever, and every duplicated answer would
            // double the echo (an amnesiac node in the simulator flooded it).
            progress.probe_sent = true;
        }
    }

    /// Leader, every tick: heartbeats, check-quorum and the transfer deadline.
    pub(crate) fn tick_leader(&mut self) {
        if self.timers.expired(Timer::Heartbeat) {
            self.timers
                .set(Timer::Heartbeat, self.config.heartbeat_interval_ticks);
            self.broadcast_heartbeat();
        }
        if self.timers.expired(Timer::CheckQuorum) {
            self.timers
                .set(Timer::CheckQuorum, self.config.election_timeout_ticks_min);
            self.check_quorum();
        }
        if self.role == Role::Leader && self.timers.expired(Timer::Transfer) {
            self.abort_transfer();
        }
    }

    /// Check-quorum (thesis §6.2): step down unless a quorum answered since the last check.
    /// Snapshot transfers to followers silent for `snapshot_give_up_ticks` are given up.
    fn check_quorum(&mut self) {
        self.give_up_silent_snapshot_transfers();
        let id = self.id_();
        let active = quorum_of(&self.membership).is_active(|node| {
            node == id
                || self
                    .progress
                    .get(&node)
                    .is_some_and(|progress| progress.recent_active)
        });
        for progress in self.progress.values_mut() {
            progress.recent_active = false;
        }
        if active {
            self.leader_heard_at = Some(self.timers.now());
        } else if self.config.check_quorum {
            self.become_follower(self.term, None);
        }
    }

    /// Leader: the paper's empty AppendEntries to every follower, carrying the commit index
    /// capped at what each follower is known to hold, and the current read round.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let lease = self.config.read_mode == crate::config::ReadMode::Lease;
        let round = self.reads.start_round(self.timers.now(), lease);
        let committed = self.log.committed();
        let targets: Vec<(NodeId, LogIndex)> = self
            .followers()
            .map(|node| (node, self.progress[&node].matched.min(committed)))
            .collect();
        for (node, commit) in targets {
            if let Some(progress) = self.progress.get_mut(&node) {
                progress.heartbeat_sent = Some((round, commit));
            }
            let body = MessageBody::Heartbeat {
                commit,
                read_round: round,
            };
            self.send(node, body);
        }
    }

    /// Follower: a heartbeat from the leader of our term.
    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_round: u64) {
        self.log.commit_to(commit.min(self.log.last_index()));
        self.send(from, MessageBody::HeartbeatResponse { read_round });
    }

    /// Leader: a heartbeat answer. It proves the follower is alive, confirms a read round, and
    /// unpauses a probe (or a snapshot transfer stalled past `snapshot_resend_ticks`) so lost
    /// messages are resent.
    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        read_round: u64,
    ) -> Result<(), StepError> {
        self.reads.acknowledge(from, read_round);
        self.release_confirmed_reads();
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        if let Some((round, commit)) = progress.heartbeat_sent
            && round == read_round
        {
            progress.commit_known = progress.commit_known.max(commit);
        }
        let unanswered = std::mem::take(&mut progress.probe_sent);
        let lagging = progress.matched < self.log.last_index();
        match progress.state {
            ReplicationState::Snapshot { .. } => self.on_snapshot_heartbeat_answer(from),
            ReplicationState::Replicate if lagging => self.send_position_check(from),
            ReplicationState::Probe if lagging && unanswered => self.send_short_probe(from),
            ReplicationState::Probe if lagging => {
                self.send_append(from);
            }
            _ => {}
        }
        Ok(())
    }

    /// Leader: the probe sent to `to` is still unanswered (lost, or not yet handled by a slow
    /// follower): probe again with one entry at most. Resending a full probe at every
    /// heartbeat read up to `append_bytes_max` per lagging group from the log each time, and
    /// queued each copy behind the last on a follower already slow to answer: after a
    /// partition healed, the leader's loop spent whole seconds rereading its log and its peers
    /// gave it up as silent. One entry (none at the log's end) still acknowledges past
    /// `matched`, so an accepted probe moves the follower to pipelined replication.
    fn send_short_probe(&mut self, to: NodeId) {
        self.send_append_within(to, Within::OneEntry);
    }

    /// Leader: an empty AppendEntries at the follower's `next`. If pipelined messages were
    /// lost the follower lacks `next - 1` and rejects it, which sends the leader back to
    /// probing from where the follower really is; otherwise it is a no-op.
    fn send_position_check(&mut self, to: NodeId) {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::NoPositionCheck {
            return;
        }
        let next = self.progress[&to].next;
        let prev_index = next.prev();
        match self.log.term(prev_index) {
            Ok(term) => {
                let commit = self.log.committed();
                let prev = LogId::new(term, prev_index);
                let body = MessageBody::AppendEntries {
                    prev,
                    entries: Vec::new(),
                    commit,
                };
                self.send(to, body);
            }
            Err(LogError::Compacted(_)) => {
                self.send_snapshot(to);
            }
            Err(error) => self.fail(error),
        }
    }
}

//! What a leader knows about each follower's log, and how it paces replication to it.

mod inflights;
mod map;

pub(crate) use inflights::Inflights;
pub(crate) use map::ProgressMap;

use crate::types::LogIndex;

/// How the leader replicates to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplicationState {
    /// The follower's log position is unknown: one AppendEntries at a time until one matches.
    Probe,
    /// The follower matches: pipeline AppendEntries up to the in-flight window.
    Replicate,
    /// The follower is behind the compacted log: a snapshot at `index` is being sent.
    Snapshot {
        /// The snapshot's last index.
        index: LogIndex,
    },
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log.
    pub(crate) matched: LogIndex,
    /// The next index to send.
    pub(crate) next: LogIndex,
    pub(crate) state: ReplicationState,
    /// In `Probe`: a probe is outstanding, wait for its answer or the next heartbeat.
    pub(crate) probe_sent: bool,
    /// Whether the follower answered since the last check-quorum.
    pub(crate) recent_active: bool,
    /// When the follower last answered (or its progress was made), in the leader's ticks.
    pub(crate) heard_at_tick: u64,
    pub(crate) inflights: Inflights,
    /// The round and commit index of the last heartbeat sent to the follower.
    pub(crate) heartbeat_sent: Option<(u64, LogIndex)>,
    /// The highest commit index the follower acknowledged receiving (in a heartbeat): what it
    /// has committed at least, as far as its log goes.
    pub(crate) commit_known: LogIndex,
}

impl Progress {
    /// A follower about which nothing is known, probing from `next`.
    pub(crate) fn new(
        next: LogIndex,
        (inflight_count_max, inflight_bytes_max): (usize, u64),
        now_ticks: u64,
    ) -> Self {
        Self {
            matched: LogIndex::ZERO,
            next,
            state: ReplicationState::Probe,
            probe_sent: false,
            recent_active: true,
            heard_at_tick: now_ticks,
            inflights: Inflights::new(inflight_count_max, inflight_bytes_max),
            heartbeat_sent: None,
            commit_known: LogIndex::ZERO,
        }
    }

    /// The follower answered (or counts as heard: the leader woke from quiescence) at
    /// `now_ticks`.
    pub(crate) fn heard(&mut self, now_ticks: u64) {
        self.recent_active = true;
        self.heard_at_tick = now_ticks;
    }

    /// Whether the follower has said nothing for at least `ticks` before `now_ticks`.
    pub(crate) fn silent_for(&self, ticks: u64, now_ticks: u64) -> bool {
        now_ticks.saturating_sub(self.heard_at_tick) >= ticks
    }

    /// Whether the leader must wait before sending more entries.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ReplicationState::Probe => self.probe_sent,
            ReplicationState::Replicate => self.inflights.is_full(),
            ReplicationState::Snapshot { .. } => true,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        if let ReplicationState::Snapshot { index } = self.state {
            self.next = (self.matched.max(index)).next();
        } else {
            self.next = self.matched.next();
        }
        self.state = ReplicationState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// The snapshot being sent could not be read further, or its follower went silent: probe
    /// again from what the follower holds, so the next append finds the entries compacted and
    /// sends the newest snapshot (or resumes this one, if it still is).
    pub(crate) fn snapshot_given_up(&mut self) {
        self.state = ReplicationState::Probe;
        self.next = self.matched.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next = self.matched.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ReplicationState::Snapshot { index };
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Records that the follower holds everything up to `last`; false if that is old news.
    pub(crate) fn update_matched(&mut self, last: LogIndex) -> bool {
        self.inflights.free_to(last);
        if last <= self.matched {
            return false;
        }
        self.matched = last;
        self.next = self.next.max(last.next());
        self.probe_sent = false;
        true
    }

    /// Records that entries up to `last` (with `bytes` of payload) were sent.
    pub(crate) fn sent_entries(&mut self, last: LogIndex, bytes: u64) {
        match self.state {
            ReplicationState::Replicate => {
                self.next = last.next();
                self.inflights.add(last, bytes);
            }
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Snapshot { .. } => unreachable!("entries sent during a snapshot"),
        }
    }
}

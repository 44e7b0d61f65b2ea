//! Group commit: concurrent `write` calls queue their encoded batches; the first caller to find
//! no commit in progress becomes the leader, takes every queued batch, writes them with one
//! write and one sync, and hands each follower its result. The queue is bounded.

use super::batch::EncodedBatch;
use crate::error::WriteError;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};

/// What one `write` call learns about how its batch was made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Records this batch added.
    pub record_count: u64,
    /// Bytes this batch added, headers included.
    pub frame_bytes: u64,
    /// Write calls whose batches shared the sync (1 when nobody else was writing).
    pub batch_count_in_sync: u64,
    /// `fdatasync` calls the shared commit made (more than one when it crossed a segment).
    pub sync_count: u64,
    /// Microseconds the shared commit spent writing and syncing.
    pub write_micros: u64,
}

/// The result of one commit, for every batch in it.
pub(crate) type CommitResult = Result<Vec<WriteStats>, WriteError>;

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<(u64, EncodedBatch)>,
    leader_active: bool,
    next_ticket: u64,
    results: HashMap<u64, Result<WriteStats, WriteError>>,
}

/// The queue of batches waiting for the next commit.
#[derive(Default)]
pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

impl CommitQueue {
    /// Queues `batch` and returns once a commit that includes it has finished; `commit` is run
    /// by whichever caller leads that commit, on every batch taken from the queue.
    pub(crate) fn submit(
        &self,
        batch: EncodedBatch,
        waiting_max: usize,
        commit: impl Fn(&mut [EncodedBatch]) -> CommitResult,
    ) -> Result<WriteStats, WriteError> {
        let mut state = self.state.lock();
        while state.waiting.len() >= waiting_max {
            self.changed.wait(&mut state);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back((ticket, batch));
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.leader_active {
                self.changed.wait(&mut state);
                continue;
            }
            state.leader_active = true;
            let taken: Vec<(u64, EncodedBatch)> = state.waiting.drain(..).collect();
            drop(state);
            let (tickets, mut batches): (Vec<u64>, Vec<EncodedBatch>) = taken.into_iter().unzip();
            let result = commit(&mut batches);
            state = self.state.lock();
            hand_out(&mut state.results, &tickets, result);
            state.leader_active = false;
            self.changed.notify_all();
        }
    }
}

/// Gives each ticket its own stats, or the shared error.
fn hand_out(
    results: &mut HashMap<u64, Result<WriteStats, WriteError>>,
    tickets: &[u64],
    result: CommitResult,
) {
    match result {
        Ok(stats) => {
            assert_eq!(stats.len(), tickets.len(), "one result per batch");
            results.extend(tickets.iter().copied().zip(stats.into_iter().map(Ok)));
        }
        Err(error) => {
            results.extend(tickets.iter().map(|ticket| (*ticket, Err(error.clone()))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn concurrent_writers_share_commits() {
        let queue = Arc::new(CommitQueue::default());
        let commit_count = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let queue = queue.clone();
                let commit_count = commit_count.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let commit = |batches: &mut [EncodedBatch]| {
                            commit_count.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            Ok(vec![WriteStats::default(); batches.len()])
                        };
                        queue.submit(EncodedBatch::default(), 4, commit).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let commits = commit_count.load(Ordering::SeqCst);
        assert!(
            commits < 400,
            "{commits} commits for 400 writes: nothing was shared"
        );
    }

    #[test]
    fn an_error_reaches_every_batch_of_the_commit() {
        let queue = CommitQueue::default();
        let commit = |_: &mut [EncodedBatch]| Err(WriteError::EngineFailed);
        let result = queue.submit(EncodedBatch::default(), 4, commit);
        assert!(matches!(result, Err(WriteError::EngineFailed)));
    }
}

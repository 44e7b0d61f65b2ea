//! The bounded outbound queue of one peer's stream class: `send` appends batches under a short
//! lock, and the writer task takes every queued batch at once (a swap of two vectors), so a
//! burst of sends costs one lock per batch and one hand-off per burst, not a channel slot each.
//!
//! The bound counts both the batches queued and those the writer has taken and not yet written,
//! so a slow or unreachable peer pins at most `batches_max` batches. The writer is woken only
//! when the queue goes from empty to not empty.

use flotilla_raft::Batch;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// `batches_max` batches are queued or being written.
    Full,
    /// The writer is gone (the link is closed).
    Closed,
}

/// Batches waiting for one writer task, and the writer's wake-up.
#[derive(Debug)]
pub(crate) struct OutboundQueue {
    queued: Mutex<Queued>,
    ready: Notify,
    batches_max: usize,
}

#[derive(Debug, Default)]
struct Queued {
    /// Oldest first.
    batches: Vec<Batch>,
    /// Batches the writer has taken and not yet written; they count against the bound.
    writing_count: usize,
    closed: bool,
}

impl OutboundQueue {
    /// A queue of at most `batches_max` batches.
    pub(crate) fn new(batches_max: usize) -> Self {
        assert!(
            batches_max > 0,
            "an outbound queue needs room for one batch"
        );
        Self {
            queued: Mutex::new(Queued::default()),
            ready: Notify::new(),
            batches_max,
        }
    }

    /// Appends `batch` without blocking, and wakes the writer if the queue was empty. On an
    /// error the batch is dropped.
    pub(crate) fn push(&self, batch: Batch) -> Result<(), PushError> {
        let mut queued = self.queued.lock();
        if queued.closed {
            return Err(PushError::Closed);
        }
        if queued.batches.len() + queued.writing_count >= self.batches_max {
            return Err(PushError::Full);
        }
        queued.batches.push(batch);
        let was_empty = queued.batches.len() == 1;
        drop(queued);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Waits for queued batches and moves them all, in order, into `taken` (which must be empty;
    /// its capacity goes to the queue); returns how many. Returns 0 once the queue is closed and
    /// empty. Cancel-safe. Call `written` once what it took is written (or lost).
    pub(crate) async fn take(&self, taken: &mut Vec<Batch>) -> usize {
        assert!(taken.is_empty(), "the writer still holds batches");
        loop {
            {
                let mut queued = self.queued.lock();
                assert_eq!(queued.writing_count, 0, "taken twice without `written`");
                if !queued.batches.is_empty() {
                    std::mem::swap(&mut queued.batches, taken);
                    queued.writing_count = taken.len();
                    return taken.len();
                }
                if queued.closed {
                    return 0;
                }
            }
            // A push after the check above leaves a permit, so this returns at once.
            self.ready.notified().await;
        }
    }

    /// Moves whatever is queued now to the end of `taken`, without waiting; returns how many.
    /// Only between `take` and `written`.
    pub(crate) fn take_more(&self, taken: &mut Vec<Batch>) -> usize {
        let mut queued = self.queued.lock();
        let count = queued.batches.len();
        taken.append(&mut queued.batches);
        queued.writing_count += count;
        count
    }

    /// The batches last taken are written (or lost): they leave the bound.
    pub(crate) fn written(&self) {
        self.queued.lock().writing_count = 0;
    }

    /// Refuses further pushes and wakes the writer, which writes what is queued and stops.
    pub(crate) fn close(&self) {
        self.queued.lock().closed = true;
        self.ready.notify_one();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::NodeId;
    use std::sync::Arc;

    fn numbered(number: u64) -> Batch {
        Batch::new(NodeId(number), NodeId(0))
    }

    #[tokio::test]
    async fn the_writer_takes_every_queued_batch_in_order() {
        let queue = OutboundQueue::new(8);
        for number in 0..3 {
            queue.push(numbered(number)).unwrap();
        }
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken).await, 3);
        assert_eq!(taken, vec![numbered(0), numbered(1), numbered(2)]);
    }

    #[tokio::test]
    async fn the_bound_counts_batches_being_written() {
        let queue = OutboundQueue::new(2);
        queue.push(numbered(0)).unwrap();
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken).await, 1);
        queue.push(numbered(1)).unwrap();
        assert_eq!(queue.push(numbered(2)), Err(PushError::Full));
        queue.written();
        queue.push(numbered(2)).unwrap();
    }

    #[tokio::test]
    async fn a_closed_queue_hands_out_what_it_holds_then_ends() {
        let queue = OutboundQueue::new(4);
        queue.push(numbered(0)).unwrap();
        queue.close();
        assert_eq!(queue.push(numbered(1)), Err(PushError::Closed));
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken).await, 1);
        queue.written();
        assert_eq!(queue.take(&mut Vec::new()).await, 0);
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiting_writer() {
        let queue = Arc::new(OutboundQueue::new(4));
        let writer = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                let mut taken = Vec::new();
                queue.take(&mut taken).await;
                taken
            })
        };
        tokio::task::yield_now().await;
        queue.push(numbered(5)).unwrap();
        assert_eq!(writer.await.unwrap(), vec![numbered(5)]);
    }
}

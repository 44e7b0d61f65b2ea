//! The bounded outbound queue of one peer's stream class: `send` appends batches under a short
//! lock, and the writer task takes every queued batch at once (a swap of two vectors), so a
//! burst of sends costs one lock per batch and one hand-off per burst, not a channel slot each.
//!
//! The bound counts both the batches queued and those the writer has taken and not yet written,
//! so a slow or unreachable peer pins at most `batches_max` batches, and at most `bytes_max`
//! snapshot chunk bytes (a queue holding nothing takes one batch whatever its size). The
//! writer is woken only when the queue goes from empty to not empty.

use flotilla_raft::{Batch, MessageBody};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// `batches_max` batches, or `bytes_max` bytes, are queued or being written.
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
    bytes_max: u64,
}

#[derive(Debug, Default)]
struct Queued {
    /// Oldest first.
    batches: Vec<Batch>,
    /// Batches the writer has taken and not yet written; they count against the bound.
    writing_count: usize,
    /// Snapshot chunk bytes of the batches queued and being written.
    bytes: u64,
    /// Of those, the bytes of the batches being written.
    writing_bytes: u64,
    closed: bool,
}

impl OutboundQueue {
    /// A queue of at most `batches_max` batches and `bytes_max` snapshot chunk bytes.
    pub(crate) fn new(batches_max: usize, bytes_max: u64) -> Self {
        assert!(
            batches_max > 0,
            "an outbound queue needs room for one batch"
        );
        Self {
            queued: Mutex::new(Queued::default()),
            ready: Notify::new(),
            batches_max,
            bytes_max,
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
        let bytes = chunk_bytes(&batch);
        if queued.bytes > 0 && queued.bytes.saturating_add(bytes) > self.bytes_max {
            return Err(PushError::Full);
        }
        queued.bytes += bytes;
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
                    queued.writing_bytes = queued.bytes;
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
        queued.writing_bytes = queued.bytes;
        count
    }

    /// The batches last taken are written (or lost): they leave the bound.
    pub(crate) fn written(&self) {
        let mut queued = self.queued.lock();
        queued.writing_count = 0;
        queued.bytes -= queued.writing_bytes;
        queued.writing_bytes = 0;
    }

    /// Refuses further pushes and wakes the writer, which writes what is queued and stops.
    pub(crate) fn close(&self) {
        self.queued.lock().closed = true;
        self.ready.notify_one();
    }
}

/// The snapshot chunk bytes `batch` carries: what makes a batch large (the rest of a batch is
/// a few bytes per message).
fn chunk_bytes(batch: &Batch) -> u64 {
    batch
        .messages
        .iter()
        .map(|message| match &message.message.body {
            MessageBody::InstallSnapshot { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum()
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
        let queue = OutboundQueue::new(8, u64::MAX);
        for number in 0..3 {
            queue.push(numbered(number)).unwrap();
        }
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken).await, 3);
        assert_eq!(taken, vec![numbered(0), numbered(1), numbered(2)]);
    }

    #[tokio::test]
    async fn the_bound_counts_batches_being_written() {
        let queue = OutboundQueue::new(2, u64::MAX);
        queue.push(numbered(0)).unwrap();
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken).await, 1);
        queue.push(numbered(1)).unwrap();
        assert_eq!(queue.push(numbered(2)), Err(PushError::Full));
        queue.written();
        queue.push(numbered(2)).unwrap();
    }

    fn chunk_batch(data_bytes: usize) -> Batch {
        let body = MessageBody::InstallSnapshot {
            meta: flotilla_raft::SnapshotMeta::default(),
            transfer: 1,
            offset: 0,
            data: vec![0; data_bytes],
            done: false,
        };
        let message = flotilla_raft::Message {
            from: NodeId(1),
            to: NodeId(2),
            term: flotilla_raft::Term(1),
            body,
        };
        Batch {
            messages: vec![flotilla_raft::GroupMessage {
                group: flotilla_raft::GroupId(1),
                message,
            }],
            ..Batch::new(NodeId(1), NodeId(2))
        }
    }

    #[tokio::test]
    async fn the_bound_counts_chunk_bytes_queued_and_being_written() {
        let queue = OutboundQueue::new(100, 10);
        queue.push(chunk_batch(6)).unwrap();
        queue.push(chunk_batch(4)).unwrap();
        assert_eq!(queue.push(chunk_batch(1)), Err(PushError::Full));
        queue.push(numbered(0)).unwrap();
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken).await, 3);
        assert_eq!(queue.push(chunk_batch(1)), Err(PushError::Full));
        queue.written();
        // An empty queue takes one batch whatever its size.
        queue.push(chunk_batch(20)).unwrap();
        assert_eq!(queue.push(chunk_batch(1)), Err(PushError::Full));
    }

    /// Batches the writer adds to a write (`take_more`) leave the bound with it.
    #[tokio::test]
    async fn chunk_bytes_taken_more_leave_the_bound_once_written() {
        let queue = OutboundQueue::new(100, 10);
        queue.push(chunk_batch(6)).unwrap();
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken).await, 1);
        queue.push(chunk_batch(4)).unwrap();
        assert_eq!(queue.take_more(&mut taken), 1);
        assert_eq!(queue.push(chunk_batch(1)), Err(PushError::Full));
        queue.written();
        taken.clear();
        queue.push(chunk_batch(10)).unwrap();
        assert_eq!(queue.push(chunk_batch(1)), Err(PushError::Full));
    }

    #[tokio::test]
    async fn a_closed_queue_hands_out_what_it_holds_then_ends() {
        let queue = OutboundQueue::new(4, u64::MAX);
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
        let queue = Arc::new(OutboundQueue::new(4, u64::MAX));
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

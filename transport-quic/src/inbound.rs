//! The bounded queue of received batches that the node's Raft loop drains, usable from a
//! synchronous thread (`try_recv`, `blocking_recv`) and from tokio tasks (`recv().await`).
//!
//! The loop takes batches off the channel a burst at a time (one channel synchronisation per
//! burst, not per batch) and hands them out one by one. The bound counts the burst: of the
//! `capacity` batches, the channel holds `capacity - burst` and the taken burst at most `burst`.

use flotilla_raft::Batch;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

/// The most batches taken off the channel at once.
const BURST_BATCHES_MAX: usize = 64;

/// The receiving half: one per transport.
#[derive(Debug)]
pub struct Inbound {
    /// Batches taken off the channel and not yet handed out, oldest first. Only a holder of
    /// `receiver` refills it, and only when it is empty, so order is kept.
    taken: Mutex<VecDeque<Batch>>,
    receiver: tokio::sync::Mutex<Drain>,
}

#[derive(Debug)]
struct Drain {
    receiver: mpsc::Receiver<Batch>,
    burst: usize,
    scratch: Vec<Batch>,
}

/// A bounded inbound queue of `capacity` batches: the sending half (cloned into every stream
/// reader) and the receiver.
#[must_use]
pub fn inbound_queue(capacity: usize) -> (mpsc::Sender<Batch>, Inbound) {
    let burst = burst_batches(capacity);
    let (sender, receiver) = mpsc::channel(capacity - burst);
    let drain = Drain {
        receiver,
        burst,
        scratch: Vec::with_capacity(burst),
    };
    let inbound = Inbound {
        taken: Mutex::new(VecDeque::with_capacity(burst)),
        receiver: tokio::sync::Mutex::new(drain),
    };
    (sender, inbound)
}

/// The part of `capacity` the Raft loop may hold as one burst: a quarter, at most 64, and none
/// for a queue under four batches (the channel keeps at least one slot).
fn burst_batches(capacity: usize) -> usize {
    assert!(capacity > 0, "an inbound queue needs room for one batch");
    (capacity / 4).min(BURST_BATCHES_MAX)
}

impl Inbound {
    /// Waits for the next batch; `None` once every sender is gone. Cancel-safe.
    pub async fn recv(&self) -> Option<Batch> {
        if let Some(batch) = self.pop() {
            return Some(batch);
        }
        let mut drain = self.receiver.lock().await;
        if let Some(batch) = self.pop() {
            return Some(batch);
        }
        if drain.burst == 0 {
            return drain.receiver.recv().await;
        }
        let Drain {
            receiver,
            burst,
            scratch,
        } = &mut *drain;
        receiver.recv_many(scratch, *burst).await;
        self.hand_out(scratch)
    }

    /// Takes the next batch if one is waiting, without blocking.
    pub fn try_recv(&self) -> Option<Batch> {
        if let Some(batch) = self.pop() {
            return Some(batch);
        }
        let mut drain = self.receiver.try_lock().ok()?;
        if let Some(batch) = self.pop() {
            return Some(batch);
        }
        drain.take_ready();
        self.hand_out(&mut drain.scratch)
    }

    /// Blocks the calling thread until a batch arrives; must not run on an async runtime thread.
    pub fn blocking_recv(&self) -> Option<Batch> {
        if let Some(batch) = self.pop() {
            return Some(batch);
        }
        let mut drain = self.receiver.blocking_lock();
        if let Some(batch) = self.pop() {
            return Some(batch);
        }
        let first = drain.receiver.blocking_recv()?;
        drain.take_ready();
        let mut taken = self.taken.lock();
        taken.extend(drain.scratch.drain(..));
        Some(first)
    }

    fn pop(&self) -> Option<Batch> {
        self.taken.lock().pop_front()
    }

    /// Returns the first of a burst just taken and keeps the rest, in order.
    fn hand_out(&self, burst: &mut Vec<Batch>) -> Option<Batch> {
        let mut batches = burst.drain(..);
        let first = batches.next();
        self.taken.lock().extend(batches);
        first
    }
}

impl Drain {
    /// Moves up to a burst of the batches already waiting into `scratch`, without waiting.
    fn take_ready(&mut self) {
        if self.burst == 0 {
            self.scratch.extend(self.receiver.try_recv().ok());
            return;
        }
        // `recv_many` takes the burst with one synchronisation; polled once, it never waits.
        // Unconstrained: with the task's budget spent it would report nothing while batches wait.
        let taking = tokio::task::coop::unconstrained(
            self.receiver.recv_many(&mut self.scratch, self.burst),
        );
        // Ready(n): n batches moved; Pending: none waiting (the no-op waker is replaced by the
        // next `recv().await`).
        let _moved: Poll<usize> =
            std::pin::pin!(taking).poll(&mut Context::from_waker(Waker::noop()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::NodeId;

    #[test]
    fn a_plain_thread_can_drain_and_block_without_a_runtime() {
        let (sender, inbound) = inbound_queue(2);
        assert_eq!(inbound.try_recv(), None);
        sender.try_send(Batch::new(NodeId(1), NodeId(2))).unwrap();
        assert_eq!(inbound.try_recv().unwrap().from, NodeId(1));
        let producer = std::thread::spawn(move || {
            sender
                .blocking_send(Batch::new(NodeId(3), NodeId(2)))
                .unwrap()
        });
        assert_eq!(inbound.blocking_recv().unwrap().from, NodeId(3));
        producer.join().unwrap();
        assert_eq!(inbound.blocking_recv(), None);
    }

    fn numbered(number: u64) -> Batch {
        Batch::new(NodeId(number), NodeId(0))
    }

    #[test]
    fn batches_come_out_in_order_across_bursts() {
        let (sender, inbound) = inbound_queue(64);
        let mut next = 0;
        let mut expected = 0;
        for round in 1..=5 {
            for _ in 0..round * 3 {
                sender.try_send(numbered(next)).unwrap();
                next += 1;
            }
            for _ in 0..round * 2 {
                assert_eq!(inbound.try_recv().unwrap().from, NodeId(expected));
                expected += 1;
            }
        }
        while let Some(batch) = inbound.try_recv() {
            assert_eq!(batch.from, NodeId(expected));
            expected += 1;
        }
        assert_eq!(expected, next);
    }

    #[test]
    fn the_bound_counts_the_burst_the_loop_holds() {
        let capacity = 8;
        let (sender, inbound) = inbound_queue(capacity);
        let mut queued = 0;
        while sender.try_send(numbered(queued)).is_ok() {
            queued += 1;
        }
        assert!(queued <= capacity as u64);
        assert_eq!(inbound.try_recv().unwrap().from, NodeId(0));
        // Room freed by taking the burst; what the loop still holds counts against the bound.
        while sender.try_send(numbered(queued)).is_ok() {
            queued += 1;
        }
        assert!(
            queued - 1 <= capacity as u64,
            "{queued} queued, one handed out"
        );
        let mut expected = 1;
        while let Some(batch) = inbound.try_recv() {
            assert_eq!(batch.from, NodeId(expected));
            expected += 1;
        }
        assert_eq!(expected, queued);
    }

    #[tokio::test]
    async fn recv_takes_a_burst_and_ends_when_the_senders_are_gone() {
        let (sender, inbound) = inbound_queue(64);
        for number in 0..10 {
            sender.try_send(numbered(number)).unwrap();
        }
        drop(sender);
        for number in 0..10 {
            assert_eq!(inbound.recv().await.unwrap().from, NodeId(number));
        }
        assert_eq!(inbound.recv().await, None);
        assert_eq!(inbound.try_recv(), None);
    }

    #[test]
    fn the_queue_is_bounded() {
        let (sender, _inbound) = inbound_queue(1);
        sender.try_send(Batch::default()).unwrap();
        assert!(sender.try_send(Batch::default()).is_err());
    }
}

//! The bounded queue of received batches that the node drains, usable from a
//! synchronous thread (`try_recv`, `blocking_recv`) and from tokio tasks (`recv().await`).
//!
//! A stream reader hands over a whole burst of batches under one lock, and the receiver is woken
//! only when the queue goes from empty to not empty: one wake-up per burst, however fast the
//! receiver drains it (with a channel, a receiver that keeps up with a burst handed over batch by
//! batch is woken once per batch). The bound is `capacity` batches; a full queue makes readers
//! wait (back-pressure on peers through QUIC flow control) or, with `try_send`, refuses.

use flotilla_raft::Batch;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// The sending half, cloned into every stream reader; the queue ends once all are dropped.
#[derive(Debug)]
pub struct InboundSender {
    shared: Arc<Shared>,
}

/// The receiving half: one per transport.
#[derive(Debug)]
pub struct Inbound {
    shared: Arc<Shared>,
}

/// Why `try_send` refused a batch (it was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendError {
    /// `capacity` batches are waiting.
    Full,
    /// The receiver is gone.
    Closed,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes receivers waiting in `recv`.
    arrived: Notify,
    /// Wakes a receiver blocked in `blocking_recv`.
    arrived_blocking: Condvar,
    /// Wakes senders waiting for room.
    room: Notify,
    capacity: usize,
}

#[derive(Debug)]
struct State {
    /// Oldest first; at most `capacity`.
    batches: VecDeque<Batch>,
    sender_count: usize,
    /// The largest hand-over waiting for room (0: none); the receiver wakes the waiting senders
    /// once that much is free, not at every batch it takes.
    room_wanted: usize,
    receiver_gone: bool,
}

/// A bounded inbound queue of `capacity` batches: the sending half (cloned into every stream
/// reader) and the receiver.
#[must_use]
pub fn inbound_queue(capacity: usize) -> (InboundSender, Inbound) {
    assert!(capacity > 0, "an inbound queue needs room for one batch");
    let state = State {
        batches: VecDeque::new(),
        sender_count: 1,
        room_wanted: 0,
        receiver_gone: false,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        arrived: Notify::new(),
        arrived_blocking: Condvar::new(),
        room: Notify::new(),
        capacity,
    });
    let sender = InboundSender {
        shared: Arc::clone(&shared),
    };
    (sender, Inbound { shared })
}

impl Shared {
    /// Wakes every receiver; called when the queue stops being empty or the senders are gone.
    fn wake_receivers(&self) {
        self.arrived.notify_waiters();
        self.arrived_blocking.notify_all();
    }
}

impl InboundSender {
    /// The most batches the queue holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Queues `batch` if there is room, without waiting; `accepted` runs just before it becomes
    /// visible to the receiver (to count it first). On an error the batch is dropped.
    pub fn try_send(&self, batch: Batch, accepted: impl FnOnce()) -> Result<(), TrySendError> {
        let mut state = self.shared.state.lock();
        if state.receiver_gone {
            return Err(TrySendError::Closed);
        }
        if state.batches.len() >= self.shared.capacity {
            return Err(TrySendError::Full);
        }
        accepted();
        let was_empty = state.batches.is_empty();
        state.batches.push_back(batch);
        drop(state);
        if was_empty {
            self.shared.wake_receivers();
        }
        Ok(())
    }

    /// Moves all of `batches` (at most `capacity`) to the queue in order, as one hand-over,
    /// waiting until there is room for all; `accepted` runs with their count just before they
    /// become visible. Returns false (and leaves `batches` as they were) once the receiver is
    /// gone. Cancel-safe: nothing moves unless it returns true.
    pub async fn send_all(&self, batches: &mut Vec<Batch>, accepted: impl FnOnce(usize)) -> bool {
        assert!(
            batches.len() <= self.shared.capacity,
            "a hand-over larger than the queue"
        );
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = self.shared.state.lock();
                if state.receiver_gone {
                    return false;
                }
                if state.batches.len() + batches.len() <= self.shared.capacity {
                    accepted(batches.len());
                    let was_empty = state.batches.is_empty();
                    state.batches.extend(batches.drain(..));
                    drop(state);
                    if was_empty {
                        self.shared.wake_receivers();
                    }
                    return true;
                }
                // The receiver wakes waiting senders once this much room is free.
                state.room_wanted = state.room_wanted.max(batches.len());
            }
            room.await;
        }
    }
}

impl Clone for InboundSender {
    fn clone(&self) -> Self {
        self.shared.state.lock().sender_count += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for InboundSender {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.sender_count -= 1;
        let last = state.sender_count == 0;
        drop(state);
        if last {
            self.shared.wake_receivers();
        }
    }
}

/// What a receiver found: a batch, nothing yet, or nothing ever again.
enum Taken {
    Batch(Batch),
    Empty,
    Ended,
}

impl Inbound {
    /// Waits for the next batch; `None` once every sender is gone and the queue is empty.
    /// Cancel-safe.
    pub async fn recv(&self) -> Option<Batch> {
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            match self.take() {
                Taken::Batch(batch) => return Some(batch),
                Taken::Ended => return None,
                Taken::Empty => arrived.await,
            }
        }
    }

    /// Takes the next batch if one is waiting, without blocking.
    pub fn try_recv(&self) -> Option<Batch> {
        match self.take() {
            Taken::Batch(batch) => Some(batch),
            Taken::Empty | Taken::Ended => None,
        }
    }

    /// Blocks the calling thread until a batch arrives; must not run on an async runtime thread.
    pub fn blocking_recv(&self) -> Option<Batch> {
        let mut state = self.shared.state.lock();
        loop {
            if let Some(batch) = self.pop(&mut state) {
                return Some(batch);
            }
            if state.sender_count == 0 {
                return None;
            }
            self.shared.arrived_blocking.wait(&mut state);
        }
    }

    fn take(&self) -> Taken {
        let mut state = self.shared.state.lock();
        match self.pop(&mut state) {
            Some(batch) => Taken::Batch(batch),
            None if state.sender_count == 0 => Taken::Ended,
            None => Taken::Empty,
        }
    }

    /// Pops the oldest batch; wakes waiting senders once the room they want is free.
    fn pop(&self, state: &mut State) -> Option<Batch> {
        let batch = state.batches.pop_front()?;
        let free = self.shared.capacity - state.batches.len();
        if state.room_wanted > 0 && free >= state.room_wanted {
            state.room_wanted = 0;
            self.shared.room.notify_waiters();
        }
        Some(batch)
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.shared.state.lock().receiver_gone = true;
        self.shared.room.notify_waiters();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::NodeId;

    fn numbered(number: u64) -> Batch {
        Batch::new(NodeId(number), NodeId(0))
    }

    #[test]
    fn a_plain_thread_can_drain_and_block_without_a_runtime() {
        let (sender, inbound) = inbound_queue(2);
        assert_eq!(inbound.try_recv(), None);
        sender.try_send(numbered(1), || ()).unwrap();
        assert_eq!(inbound.try_recv().unwrap().from, NodeId(1));
        let producer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            sender.try_send(numbered(3), || ()).unwrap();
        });
        assert_eq!(inbound.blocking_recv().unwrap().from, NodeId(3));
        producer.join().unwrap();
        assert_eq!(inbound.blocking_recv(), None);
    }

    #[test]
    fn batches_come_out_in_order_across_hand_overs() {
        let (sender, inbound) = inbound_queue(64);
        let mut next = 0;
        let mut expected = 0;
        for round in 1..=5 {
            for _ in 0..round * 3 {
                sender.try_send(numbered(next), || ()).unwrap();
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
    fn the_queue_is_bounded_and_try_send_counts_only_what_it_queues() {
        let (sender, _inbound) = inbound_queue(2);
        let mut counted = 0;
        for number in 0..3 {
            let _ = sender.try_send(numbered(number), || counted += 1);
        }
        assert_eq!(counted, 2);
        assert_eq!(sender.try_send(numbered(3), || ()), Err(TrySendError::Full));
    }

    #[tokio::test]
    async fn a_hand_over_waits_for_room_for_all_of_it() {
        let (sender, inbound) = inbound_queue(4);
        let mut first = vec![numbered(0), numbered(1), numbered(2)];
        assert!(sender.send_all(&mut first, |_| ()).await);
        assert!(first.is_empty());
        let mut second = vec![numbered(3), numbered(4)];
        let waiting = sender.send_all(&mut second, |count| assert_eq!(count, 2));
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        assert_eq!(inbound.recv().await.unwrap().from, NodeId(0));
        assert!(waiting.await);
        for number in 1..5 {
            assert_eq!(inbound.recv().await.unwrap().from, NodeId(number));
        }
    }

    #[tokio::test]
    async fn recv_ends_when_the_senders_are_gone_and_send_all_when_the_receiver_is() {
        let (sender, inbound) = inbound_queue(64);
        let other = sender.clone();
        for number in 0..10 {
            sender.try_send(numbered(number), || ()).unwrap();
        }
        drop(sender);
        drop(other);
        for number in 0..10 {
            assert_eq!(inbound.recv().await.unwrap().from, NodeId(number));
        }
        assert_eq!(inbound.recv().await, None);
        assert_eq!(inbound.try_recv(), None);

        let (sender, inbound) = inbound_queue(1);
        drop(inbound);
        let mut batches = vec![numbered(0)];
        assert!(!sender.send_all(&mut batches, |_| ()).await);
        assert_eq!(batches.len(), 1);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_hand_over() {
        let (sender, inbound) = inbound_queue(8);
        let inbound = Arc::new(inbound);
        let receiver = {
            let inbound = Arc::clone(&inbound);
            tokio::spawn(async move { inbound.recv().await })
        };
        tokio::task::yield_now().await;
        let mut batches = vec![numbered(7), numbered(8)];
        assert!(sender.send_all(&mut batches, |_| ()).await);
        assert_eq!(receiver.await.unwrap().unwrap().from, NodeId(7));
        assert_eq!(inbound.try_recv().unwrap().from, NodeId(8));
    }

    /// Polls `future` once: `Some` if it finished.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|context| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(context) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}

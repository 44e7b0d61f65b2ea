//! The bounded queue of received batches that the node's Raft loop drains, usable from a
//! synchronous thread (`try_recv`, `blocking_recv`) and from tokio tasks (`recv().await`).

use flotilla_raft::Batch;
use tokio::sync::{Mutex, mpsc};

/// The receiving half: one per transport.
#[derive(Debug)]
pub struct Inbound {
    receiver: Mutex<mpsc::Receiver<Batch>>,
}

/// A bounded inbound queue: the sending half (cloned into every stream reader) and the receiver.
#[must_use]
pub fn inbound_queue(capacity: usize) -> (mpsc::Sender<Batch>, Inbound) {
    let (sender, receiver) = mpsc::channel(capacity);
    (
        sender,
        Inbound {
            receiver: Mutex::new(receiver),
        },
    )
}

impl Inbound {
    /// Waits for the next batch; `None` once every sender is gone. Cancel-safe.
    pub async fn recv(&self) -> Option<Batch> {
        self.receiver.lock().await.recv().await
    }

    /// Takes the next batch if one is waiting, without blocking.
    pub fn try_recv(&self) -> Option<Batch> {
        self.receiver.try_lock().ok()?.try_recv().ok()
    }

    /// Blocks the calling thread until a batch arrives; must not run on an async runtime thread.
    pub fn blocking_recv(&self) -> Option<Batch> {
        self.receiver.blocking_lock().blocking_recv()
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

    #[test]
    fn the_queue_is_bounded() {
        let (sender, _inbound) = inbound_queue(1);
        sender.try_send(Batch::default()).unwrap();
        assert!(sender.try_send(Batch::default()).is_err());
    }
}

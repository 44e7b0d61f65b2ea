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
    (sender, Inbound { receiver: Mutex::new(receiver) })
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

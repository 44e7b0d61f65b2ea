//! One client connection to one node: a persistent QUIC stream on which requests are
//! pipelined. A writer task sends queued requests several per write; a reader task matches
//! each response to its request by id.

use crate::api::{ApiError, Reply, Request, RequestFrame, ResponseFrame};
use flotilla_raft::NodeId;
use flotilla_transport_quic::{
    ClientSession, MessageReceiver, MessageSender, TlsSetup, TransportConfig,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Reply, ApiError>>>>>;

/// Why one attempt got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The node could not be reached; the request was never sent.
    #[error("cannot connect to node {node}: {reason}")]
    Connect {
        /// The node.
        node: u64,
        /// Why.
        reason: String,
    },
    /// Sent, but no answer in time: it may or may not have been applied.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Sent, but the connection closed before the answer: it may or may not have been applied.
    #[error("the connection closed before the answer")]
    Lost,
}

/// A pipelined connection to one node.
#[derive(Debug)]
pub(crate) struct NodeConnection {
    session: ClientSession,
    requests: mpsc::UnboundedSender<RequestFrame>,
    waiters: Waiters,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

impl NodeConnection {
    pub(crate) async fn connect(
        tls: &TlsSetup,
        config: &TransportConfig,
        node: NodeId,
        address: SocketAddr,
    ) -> Result<Self, CallError> {
        let connect_error = |reason: String| CallError::Connect {
            node: node.0,
            reason,
        };
        let session = ClientSession::connect(tls, config, node, address)
            .await
            .map_err(|error| connect_error(error.to_string()))?;
        let (send, recv) = session
            .open_stream()
            .await
            .map_err(|error| connect_error(error.to_string()))?;
        let (requests, queued) = mpsc::unbounded_channel();
        let waiters = Waiters::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_requests(send, queued, Arc::clone(&closed)));
        tokio::spawn(read_responses(
            recv,
            Arc::clone(&waiters),
            Arc::clone(&closed),
        ));
        Ok(Self {
            session,
            requests,
            waiters,
            next_id: AtomicU64::new(1),
            closed,
        })
    }

    /// Whether the connection has failed (a new one is needed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.session.is_closed()
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    pub(crate) async fn call(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Result<Reply, ApiError>, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        lock(&self.waiters).insert(id, answer);
        if self.closed.load(Ordering::Acquire) {
            // The reader may have cleared the waiters before this one was added.
            lock(&self.waiters).remove(&id);
            return Err(CallError::Lost);
        }
        if self.requests.send(RequestFrame { id, request }).is_err() {
            lock(&self.waiters).remove(&id);
            return Err(CallError::Lost);
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(CallError::Lost),
            Err(_) => {
                lock(&self.waiters).remove(&id);
                Err(CallError::Timeout(timeout))
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn write_requests(
    send: MessageSender<RequestFrame>,
    queued: mpsc::UnboundedReceiver<RequestFrame>,
    closed: Arc<AtomicBool>,
) {
    // Its caller times out; the frame limit is far above the key and value limits.
    let refuse = |_: &RequestFrame, error| {
        tracing::warn!(%error, "request does not fit in a frame");
        None
    };
    if let Err(error) = send.write_bursts(queued, refuse).await {
        tracing::debug!(%error, "request stream failed");
        closed.store(true, Ordering::Release);
    }
}

async fn read_responses(
    mut recv: MessageReceiver<ResponseFrame>,
    waiters: Waiters,
    closed: Arc<AtomicBool>,
) {
    while let Ok(Some(response)) = recv.recv().await {
        if let Some(waiter) = lock(&waiters).remove(&response.id) {
            let _ = waiter.send(response.result);
        }
    }
    closed.store(true, Ordering::Release);
    // Dropping the senders wakes every caller still waiting with `Lost`.
    lock(&waiters).clear();
}

//! One client connection to one node: a persistent QUIC stream on which requests are
//! pipelined. A writer task sends queued requests several per write; a reader task matches
//! each response to its request by id.

use flotilla_api::{ApiError, Reply, Request, RequestFrame, ResponseFrame};
use flotilla_raft::NodeId;
use flotilla_transport_quic::frame;
use flotilla_transport_quic::{
    AlertSender, ClientSession, ConnectError, FrameError, MessageReceiver, MessageSender, TlsAlert,
    TlsSetup, TransportConfig,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Reply, ApiError>>>>>;

/// Why one attempt got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The node could not be reached; the request was never sent.
    #[error("cannot connect to node {node}: {reason}")]
    Connect {
        /// The node.
        node: u64,
        /// Why.
        reason: String,
    },
    /// An endpoint given without a node id could not be resolved or reached; nothing was
    /// sent.
    #[error("cannot connect to {address}: {reason}")]
    Dial {
        /// The endpoint's `host:port`.
        address: String,
        /// Why.
        reason: String,
    },
    /// The node at an endpoint given without a node id refused this client's certificate
    /// during the handshake: nothing sent on the connection reached it.
    #[error("the node at {address} refused this client's connection: {alert}")]
    RefusedAt {
        /// The endpoint's `host:port`.
        address: String,
        /// The alert it closed the connection with.
        alert: TlsAlert,
    },
    /// Sent, but no answer in time: it may or may not have been applied.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Sent, but the connection closed before the answer: it may or may not have been applied.
    #[error("the connection closed before the answer")]
    Lost,
    /// The request does not fit in a request frame, so it was never sent (and is never
    /// retried): a node would end the stream on its header.
    #[error(
        "the request is {request_bytes} bytes, larger than the largest request a node reads ({frame_bytes_max} bytes): it was not sent"
    )]
    TooLarge {
        /// The bytes its frame would take, header included.
        request_bytes: u64,
        /// The transport's `client_request_bytes_max`.
        frame_bytes_max: u32,
    },
    /// The request could not be encoded, so it was never sent.
    #[error("the request could not be encoded ({0}): it was not sent")]
    Unencodable(FrameError),
    /// The node refused this client's certificate during the handshake (a TLS alert closed
    /// the connection): nothing sent on it reached the node.
    #[error("node {node} refused this client's connection, so the request was not sent: {alert}")]
    Refused {
        /// The node.
        node: u64,
        /// The alert it closed the connection with.
        alert: TlsAlert,
    },
}

impl CallError {
    /// Whether the request was certainly not applied and sending it again cannot help: too
    /// large, not encodable, or refused for this client's certificate.
    #[must_use]
    pub fn is_final_and_not_sent(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. }
                | Self::Unencodable(_)
                | Self::Refused { .. }
                | Self::RefusedAt { .. }
        )
    }

    fn not_sent(error: FrameError) -> Self {
        match error {
            FrameError::TooLarge {
                frame_bytes,
                frame_bytes_max,
            } => Self::TooLarge {
                request_bytes: frame_bytes,
                frame_bytes_max,
            },
            other => Self::Unencodable(other),
        }
    }
}

/// A pipelined connection to one node (the [`Client`](crate::Client) keeps one per node;
/// a node uses one to ask a peer directly, without routing).
#[derive(Debug)]
pub struct NodeConnection {
    node: NodeId,
    frame_bytes_max: u32,
    session: ClientSession,
    requests: mpsc::UnboundedSender<RequestFrame>,
    waiters: Waiters,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

impl NodeConnection {
    /// Dials node `node` at `address`; its certificate must name that node.
    ///
    /// # Errors
    /// The node could not be reached, or refused this client's certificate.
    pub async fn connect(
        tls: &TlsSetup,
        config: &TransportConfig,
        node: NodeId,
        address: SocketAddr,
    ) -> Result<Self, CallError> {
        // The node refuses a certificate with a TLS alert, which reaches the client in the
        // dial, or (TLS 1.3: the client's handshake ends first) when it opens its stream.
        let failed = |alert: Option<TlsAlert>, reason: String| match alert {
            Some(alert) if alert.sender == AlertSender::Peer => CallError::Refused {
                node: node.0,
                alert,
            },
            _ => CallError::Connect {
                node: node.0,
                reason,
            },
        };
        let session = ClientSession::connect(tls, config, node, address)
            .await
            .map_err(|error| dial_failed(&failed, error))?;
        Self::open(session, config, node, failed).await
    }

    /// Dials whichever node listens at `address` (`host:port`, resolved as `resolved`), and
    /// gives its id as its certificate proves it: any node certificate of the client's cluster
    /// is accepted.
    ///
    /// # Errors
    /// The node could not be reached, or refused this client's certificate, or its certificate
    /// names no node of the client's cluster.
    pub async fn connect_to_any_node(
        tls: &TlsSetup,
        config: &TransportConfig,
        address: &str,
        resolved: SocketAddr,
    ) -> Result<(Self, NodeId), CallError> {
        let failed = |alert: Option<TlsAlert>, reason: String| match alert {
            Some(alert) if alert.sender == AlertSender::Peer => CallError::RefusedAt {
                address: address.to_owned(),
                alert,
            },
            _ => CallError::Dial {
                address: address.to_owned(),
                reason,
            },
        };
        let (session, node) = ClientSession::connect_to_any_node(tls, config, resolved)
            .await
            .map_err(|error| dial_failed(&failed, error))?;
        Ok((Self::open(session, config, node, failed).await?, node))
    }

    /// Opens the pipelined stream on a new session and starts its writer and reader tasks.
    async fn open(
        session: ClientSession,
        config: &TransportConfig,
        node: NodeId,
        failed: impl Fn(Option<TlsAlert>, String) -> CallError,
    ) -> Result<Self, CallError> {
        let (send, recv) = session
            .open_stream()
            .await
            .map_err(|error| failed(session.alert(), error.to_string()))?;
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
            node,
            frame_bytes_max: config.client_request_bytes_max,
            session,
            requests,
            waiters,
            next_id: AtomicU64::new(1),
            closed,
        })
    }

    /// Whether the connection has failed (a new one is needed).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.session.is_closed()
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    ///
    /// # Errors
    /// The request was not sent, or no answer came in time.
    pub async fn call(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Result<Reply, ApiError>, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = RequestFrame { id, request };
        // Measured, not encoded: the writer task encodes it once it is queued.
        frame::check_fits(&frame, self.frame_bytes_max).map_err(CallError::not_sent)?;
        let (answer, answered) = oneshot::channel();
        lock(&self.waiters).insert(id, answer);
        if self.closed.load(Ordering::Acquire) {
            // The reader may have cleared the waiters before this one was added.
            lock(&self.waiters).remove(&id);
            return Err(self.lost());
        }
        if self.requests.send(frame).is_err() {
            lock(&self.waiters).remove(&id);
            return Err(self.lost());
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(self.lost()),
            Err(_) => {
                lock(&self.waiters).remove(&id);
                Err(CallError::Timeout(timeout))
            }
        }
    }

    /// Why the connection ended under a request: a TLS alert (the node refused this
    /// client's certificate, which it judges after the client's handshake is done) is named;
    /// anything else is a lost answer.
    fn lost(&self) -> CallError {
        match self.session.alert() {
            Some(alert) => CallError::Refused {
                node: self.node.0,
                alert,
            },
            None => CallError::Lost,
        }
    }
}

/// A failed dial as `failed` words it: with the alert, if the node sent one.
fn dial_failed(
    failed: &impl Fn(Option<TlsAlert>, String) -> CallError,
    error: ConnectError,
) -> CallError {
    match error {
        ConnectError::Alert(alert) => failed(Some(alert), error.to_string()),
        error => failed(None, error.to_string()),
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
    // Never happens: `call` measured the request against the same limit before queueing it.
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

//! One QUIC endpoint per node: Raft batches between nodes over mutual TLS, one connection per
//! peer node, length-prefixed versioned frames, and a client protocol on the same endpoint.
//! Identity comes from certificates; loss is tolerated (Raft retries), so full queues drop.
//!
//! The node calls [`Transport::send`] with each outbound [`Batch`] and drains inbound batches
//! with [`Transport::try_recv`] (a synchronous loop) or [`Transport::recv`] (a tokio task).
//! [`QuicTransport`] is the real implementation, `mem::MemNetwork` (feature `testing`) the
//! in-memory one.
#![forbid(unsafe_code)]

pub mod alert;
pub mod backoff;
pub mod certs;
pub mod client;
pub mod config;
mod connection_id;
pub mod counters;
pub mod der;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod identity;
pub mod inbound;
#[cfg(any(test, feature = "testing"))]
pub mod mem;
mod outbound;
pub mod peer;
pub mod pipeline;
pub mod reader;
pub mod refusals;
mod silence;
pub mod streams;
pub mod tls;
pub mod verifier;

pub use alert::{AlertSender, TlsAlert};
pub use backoff::{BackoffPolicy, JitterSequence};
pub use certs::{
    ClientCertFiles, ClusterCa, DevCertFiles, Identity, add_client_certs, add_node_certs, load_ca,
    write_dev_certs,
};
pub use client::{ClientConnection, ClientSession};
pub use config::TransportConfig;
pub use counters::{CounterSnapshot, Counters, NamedCounter};
pub use endpoint::QuicTransport;
pub use error::{
    CertError, ConfigError, ConnectError, FrameError, SendError, StreamError, TlsError,
};
pub use identity::{ClusterId, PeerIdentity};
pub use pipeline::{MessageReceiver, MessageSender};
pub use tls::{ALPN_CLIENT, ALPN_RAFT, TlsSetup};
pub use verifier::Revocations;

use flotilla_raft::{Batch, NodeId};
use std::future::Future;

/// Carries Raft batches between nodes. Sending never blocks and may drop (and count); receiving
/// yields batches from any peer, each already checked to come from the node it names.
pub trait Transport: Send + Sync {
    /// This node's id: the `from` of every batch it sends.
    fn node_id(&self) -> NodeId;

    /// Queues `batch` for `batch.to` without blocking; when the peer is unknown, down or its
    /// bounded queue is full, the batch is dropped, counted, and the reason returned. A batch
    /// whose `from` is not this node is a caller bug: refused with `NotFromThisNode`. An empty
    /// batch is delivered like any other: it is the node-level liveness heartbeat.
    fn send(&self, batch: Batch) -> Result<(), SendError>;

    /// Takes the next received batch if one is waiting; never blocks (for a synchronous loop).
    fn try_recv(&self) -> Option<Batch>;

    /// Waits for the next received batch; `None` once the transport has shut down. Cancel-safe.
    fn recv(&self) -> impl Future<Output = Option<Batch>> + Send;

    /// The counters at this moment.
    fn counters(&self) -> CounterSnapshot;
}

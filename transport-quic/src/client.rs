//! The client protocol (`flotilla-client/1`) on a node's endpoint: a client keeps one
//! bidirectional stream per node and pipelines requests on it; the node answers on the same
//! stream in whatever order the answers complete. Ids that match them up are the application's.
//!
//! [`ClientConnection`] is what the node accepts, [`ClientSession`] what a client dials; each
//! gives a stream as a [`MessageSender`] and a [`MessageReceiver`]. Message types are the
//! application's (any serde type).

use crate::config::TransportConfig;
use crate::error::{ConnectError, StreamError};
use crate::identity::{PeerIdentity, node_san};
use crate::pipeline::{self, MessageReceiver, MessageSender};
use crate::tls::TlsSetup;
use flotilla_raft::NodeId;
use quinn::{Connection, Endpoint};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// A client connection a node accepted, with the identity its certificate proves.
#[derive(Debug)]
pub struct ClientConnection {
    connection: Connection,
    identity: PeerIdentity,
    frame_bytes_max: u32,
}

impl ClientConnection {
    pub(crate) fn new(
        connection: Connection,
        identity: PeerIdentity,
        frame_bytes_max: u32,
    ) -> Self {
        Self {
            connection,
            identity,
            frame_bytes_max,
        }
    }

    /// Who the client is (a `client-<name>` or, for forwarded requests, a `node-<id>`).
    #[must_use]
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The serial number of the client's certificate (what a deny-list may name).
    #[must_use]
    pub fn serial(&self) -> Option<Vec<u8>> {
        crate::tls::peer_serial(&self.connection)
    }

    /// The underlying QUIC connection, for baselines that measure plain quinn on the same path;
    /// the client protocol itself needs none of it.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Waits for the client's next pipelined stream and gives its two halves: requests of `Q`
    /// in, responses of `R` out. Fails once the connection is closed.
    pub async fn accept_stream<Q, R>(
        &self,
    ) -> Result<(MessageSender<R>, MessageReceiver<Q>), StreamError> {
        let (send, recv) = self.connection.accept_bi().await?;
        Ok(pipeline::halves(send, recv, self.frame_bytes_max))
    }
}

/// A client's connection to one node.
#[derive(Debug)]
pub struct ClientSession {
    endpoint: Endpoint,
    connection: Connection,
    frame_bytes_max: u32,
}

impl ClientSession {
    /// Dials node `node` at `address` with the client protocol; the node's certificate must
    /// name that node of the client's cluster.
    pub async fn connect(
        tls: &TlsSetup,
        config: &TransportConfig,
        node: NodeId,
        address: SocketAddr,
    ) -> Result<Self, ConnectError> {
        config.validate()?;
        let unspecified = if address.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let mut endpoint = Endpoint::client(SocketAddr::new(unspecified, 0))?;
        endpoint.set_default_client_config(tls.client_client_config(config)?);
        let connecting = endpoint.connect(address, &node_san(node, &tls.cluster))?;
        let timeout = Duration::from_millis(config.handshake_timeout_ms);
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout {
                timeout_ms: config.handshake_timeout_ms,
            })??;
        Ok(Self {
            endpoint,
            connection,
            frame_bytes_max: config.frame_bytes_max,
        })
    }

    /// Opens the pipelined stream and gives its two halves: requests of `Q` out, responses of
    /// `R` in. A client opens one per node and tells its answers apart by ids of its own.
    pub async fn open_stream<Q, R>(
        &self,
    ) -> Result<(MessageSender<Q>, MessageReceiver<R>), StreamError> {
        let (send, recv) = self.connection.open_bi().await?;
        Ok(pipeline::halves(send, recv, self.frame_bytes_max))
    }

    /// Whether the connection is closed (by either side, or by a timeout): a new one is needed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }

    /// The serial number of the client's certificate (what a deny-list may name).
    #[must_use]
    pub fn serial(&self) -> Option<Vec<u8>> {
        crate::tls::peer_serial(&self.connection)
    }

    /// The underlying QUIC connection, for baselines that measure plain quinn on the same path;
    /// the client protocol itself needs none of it.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Closes the connection and waits briefly for the node to be told.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

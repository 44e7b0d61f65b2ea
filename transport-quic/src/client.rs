//! The client protocol (`flotilla-client/1`) on a node's endpoint: one bidirectional stream per
//! request, a request frame from the client and one response frame back.
//!
//! The node's client API rides on it: [`ClientConnection`] is what the node accepts,
//! [`ClientSession`] what a client dials. Message types are the application's (any serde type).

use crate::config::TransportConfig;
use crate::error::{ConnectError, StreamError};
use crate::frame::FrameKind;
use crate::identity::{PeerIdentity, node_san};
use crate::streams::{read_frame, write_frame};
use crate::tls::TlsSetup;
use flotilla_raft::NodeId;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
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

    /// The underlying QUIC connection.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Waits for the client's next request stream; `None` once the connection is closed.
    pub async fn accept_request(&self) -> Option<RequestStream> {
        let (send, recv) = self.connection.accept_bi().await.ok()?;
        Some(RequestStream {
            send,
            recv,
            frame_bytes_max: self.frame_bytes_max,
        })
    }
}

/// One request in flight on the server side: read the request, then answer once.
#[derive(Debug)]
pub struct RequestStream {
    send: SendStream,
    recv: RecvStream,
    frame_bytes_max: u32,
}

impl RequestStream {
    /// Reads the request frame.
    pub async fn read_request<T: DeserializeOwned>(&mut self) -> Result<T, StreamError> {
        let mut buf = Vec::new();
        read_frame(
            &mut self.recv,
            FrameKind::ClientMessage,
            self.frame_bytes_max,
            &mut buf,
        )
        .await?
        .ok_or(StreamError::Ended)
    }

    /// Writes the response frame and finishes the stream.
    pub async fn respond<T: Serialize>(mut self, response: &T) -> Result<(), StreamError> {
        let mut buf = Vec::new();
        write_frame(
            &mut self.send,
            FrameKind::ClientMessage,
            response,
            self.frame_bytes_max,
            &mut buf,
        )
        .await?;
        let _ = self.send.finish();
        Ok(())
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

    /// Sends one request on a new stream and waits for its response.
    pub async fn request<Q: Serialize, R: DeserializeOwned>(
        &self,
        request: &Q,
    ) -> Result<R, StreamError> {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        let mut buf = Vec::new();
        write_frame(
            &mut send,
            FrameKind::ClientMessage,
            request,
            self.frame_bytes_max,
            &mut buf,
        )
        .await?;
        let _ = send.finish();
        read_frame(
            &mut recv,
            FrameKind::ClientMessage,
            self.frame_bytes_max,
            &mut buf,
        )
        .await?
        .ok_or(StreamError::Ended)
    }

    /// The underlying QUIC connection.
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

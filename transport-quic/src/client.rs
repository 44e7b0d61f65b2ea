//! The client protocol (`flotilla-client/1`) on a node's endpoint: a client keeps one
//! bidirectional stream per node and pipelines requests on it; the node answers on the same
//! stream in whatever order the answers complete. Ids that match them up are the application's.
//!
//! [`ClientConnection`] is what the node accepts, [`ClientSession`] what a client dials; each
//! gives a stream as a [`MessageSender`] and a [`MessageReceiver`]. Message types are the
//! application's (any serde type).

use crate::alert::TlsAlert;
use crate::config::TransportConfig;
use crate::error::{ConnectError, StreamError};
use crate::identity::{PeerIdentity, node_san};
use crate::pipeline::{self, MessageReceiver, MessageSender, StreamLimits};
use crate::tls::TlsSetup;
use flotilla_raft::NodeId;
use parking_lot::Mutex;
use quinn::{Connection, Endpoint};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A client connection a node accepted, with the identity its certificate proves.
#[derive(Debug)]
pub struct ClientConnection {
    connection: Connection,
    identity: PeerIdentity,
    limits: StreamLimits,
    /// Held while the connection is served: it counts against the node's and the identity's
    /// connection limits until dropped.
    _slot: Option<ConnectionSlot>,
}

/// The client connections a node serves, in all and per identity, against their limits.
#[derive(Debug, Default)]
pub(crate) struct ClientSlots {
    total: usize,
    per_identity: HashMap<String, usize>,
}

/// Why a client connection found no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// The node serves `client_connections_max` already.
    NodeFull,
    /// This identity holds `client_connections_per_identity_max` already.
    IdentityFull,
}

impl ClientSlots {
    /// Takes a place for a connection of `identity`, unless a limit is reached.
    pub(crate) fn take(
        slots: &Arc<Mutex<Self>>,
        identity: &PeerIdentity,
        config: &TransportConfig,
    ) -> Result<ConnectionSlot, NoSlot> {
        let name = identity.san();
        let mut this = slots.lock();
        if this.total >= config.client_connections_max {
            return Err(NoSlot::NodeFull);
        }
        let held = this.per_identity.entry(name.clone()).or_default();
        if *held >= config.client_connections_per_identity_max {
            return Err(NoSlot::IdentityFull);
        }
        *held += 1;
        this.total += 1;
        Ok(ConnectionSlot {
            slots: Arc::clone(slots),
            identity: name,
        })
    }
}

/// A place among the client connections a node serves; given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    slots: Arc<Mutex<ClientSlots>>,
    identity: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut slots = self.slots.lock();
        slots.total -= 1;
        if let Some(held) = slots.per_identity.get_mut(&self.identity) {
            *held -= 1;
            if *held == 0 {
                slots.per_identity.remove(&self.identity);
            }
        }
    }
}

impl ClientConnection {
    pub(crate) fn new(
        connection: Connection,
        identity: PeerIdentity,
        config: &TransportConfig,
        slot: Option<ConnectionSlot>,
    ) -> Self {
        Self {
            connection,
            identity,
            limits: StreamLimits {
                send_bytes_max: config.frame_bytes_max,
                receive_bytes_max: config.client_request_bytes_max,
                frame_read_timeout: Duration::from_millis(config.frame_read_timeout_ms),
            },
            _slot: slot,
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
        Ok(pipeline::halves(send, recv, self.limits))
    }
}

/// A client's connection to one node.
#[derive(Debug)]
pub struct ClientSession {
    endpoint: Endpoint,
    connection: Connection,
    limits: StreamLimits,
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
        let client_config = tls.client_client_config(config)?;
        Self::dial(
            client_config,
            config,
            address,
            &node_san(node, &tls.cluster),
        )
        .await
    }

    /// Dials whichever node listens at `address` with the client protocol, and gives the
    /// node's id as its certificate proves it: the certificate must chain to the cluster CA
    /// and name a node of the client's cluster (any node).
    pub async fn connect_to_any_node(
        tls: &TlsSetup,
        config: &TransportConfig,
        address: SocketAddr,
    ) -> Result<(Self, NodeId), ConnectError> {
        config.validate()?;
        let client_config = tls.client_client_config_any_node(config)?;
        // The name is sent (SNI) but not checked: the verifier checks the certificate's own.
        let server_name = format!("node.{}", tls.cluster);
        let session = Self::dial(client_config, config, address, &server_name).await?;
        match crate::tls::peer_identity(&session.connection)? {
            PeerIdentity::Node { node, .. } => Ok((session, node)),
            // The verifier accepted only node certificates: unreachable unless it is wrong.
            client @ PeerIdentity::Client { .. } => Err(ConnectError::NotANode {
                found: client.san(),
            }),
        }
    }

    async fn dial(
        client_config: quinn::ClientConfig,
        config: &TransportConfig,
        address: SocketAddr,
        server_name: &str,
    ) -> Result<Self, ConnectError> {
        let unspecified = if address.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let mut endpoint = Endpoint::client(SocketAddr::new(unspecified, 0))?;
        endpoint.set_default_client_config(client_config);
        let connecting = endpoint.connect(address, server_name)?;
        let timeout = Duration::from_millis(config.handshake_timeout_ms);
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout {
                timeout_ms: config.handshake_timeout_ms,
            })??;
        Ok(Self {
            endpoint,
            connection,
            limits: StreamLimits {
                // What a node reads on a client stream: a larger request never leaves.
                send_bytes_max: config.client_request_bytes_max,
                receive_bytes_max: config.frame_bytes_max,
                frame_read_timeout: Duration::from_millis(config.frame_read_timeout_ms),
            },
        })
    }

    /// Opens the pipelined stream and gives its two halves: requests of `Q` out, responses of
    /// `R` in. A client opens one per node and tells its answers apart by ids of its own.
    pub async fn open_stream<Q, R>(
        &self,
    ) -> Result<(MessageSender<Q>, MessageReceiver<R>), StreamError> {
        let (send, recv) = self.connection.open_bi().await?;
        Ok(pipeline::halves(send, recv, self.limits))
    }

    /// Whether the connection is closed (by either side, or by a timeout): a new one is needed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }

    /// The TLS alert the connection was closed with, if one was: in TLS 1.3 the node judges
    /// the client's certificate after the client's handshake is done, so a refused client
    /// learns of it here, once its first stream fails. Nothing sent on such a connection
    /// reached the node's application.
    #[must_use]
    pub fn alert(&self) -> Option<TlsAlert> {
        self.connection
            .close_reason()
            .and_then(|reason| TlsAlert::of(&reason))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::ClusterId;

    fn client(name: &str) -> PeerIdentity {
        PeerIdentity::Client {
            name: name.to_owned(),
            cluster: ClusterId::new("c").unwrap(),
        }
    }

    #[test]
    fn connections_are_limited_per_identity_and_in_all_and_given_back() {
        let config = TransportConfig {
            client_connections_max: 3,
            client_connections_per_identity_max: 2,
            ..TransportConfig::default()
        };
        let slots = Arc::new(Mutex::new(ClientSlots::default()));
        let take = |name| ClientSlots::take(&slots, &client(name), &config);
        let a1 = take("a").unwrap();
        let _a2 = take("a").unwrap();
        assert_eq!(take("a").unwrap_err(), NoSlot::IdentityFull);
        let _b1 = take("b").unwrap();
        assert_eq!(take("c").unwrap_err(), NoSlot::NodeFull);
        drop(a1);
        let _a3 = take("a").unwrap();
        assert_eq!(slots.lock().total, 3);
        assert_eq!(slots.lock().per_identity.get("client-a.c"), Some(&2));
    }
}

//! The QUIC transport of one node: one quinn endpoint (server and client), the accept loop that
//! sorts incoming connections into peers and clients, and the `Transport` implementation.

use crate::Transport;
use crate::alert::TlsAlert;
use crate::client::{ClientConnection, ClientSlots, NoSlot};
use crate::config::TransportConfig;
use crate::counters::{CounterSnapshot, Counters};
use crate::error::{ConnectError, SendError};
use crate::identity::PeerIdentity;
use crate::inbound::{Inbound, inbound_queue};
use crate::peer::{LinkContext, PeerLink};
use crate::refusals::{Refusal, RefusalLog};
use crate::streams::{self, InboundContext};
use crate::tls::{self, ALPN_CLIENT, ALPN_RAFT, TlsSetup};
use crate::verifier::Revocations;
use flotilla_raft::{Batch, NodeId};
use parking_lot::Mutex;
use quinn::{Connection, Endpoint, Incoming};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The application error code of a refused connection.
pub const CLOSE_REFUSED: u32 = 0x46_02;
/// The application error code of an orderly shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0x46_00;
/// The application error code of a peer connection given up because nothing arrived on it
/// for `peer_silence_ms_max`.
pub const CLOSE_SILENT: u32 = 0x46_03;
/// The application error code of an accepted peer connection replaced by a newer one from the
/// same peer.
pub const CLOSE_SUPERSEDED: u32 = 0x46_04;

/// The peer links, and the last connection each lower-id peer dialed in: a peer may dial before
/// `add_peer` names it, and its link must still find that connection. One lock guards both.
#[derive(Debug, Default)]
struct Links {
    peers: HashMap<NodeId, PeerLink>,
    accepted: HashMap<NodeId, Connection>,
}

#[derive(Debug)]
struct Shared {
    tls: TlsSetup,
    config: TransportConfig,
    links: Mutex<Links>,
    link_context: LinkContext,
    clients: mpsc::Sender<ClientConnection>,
    client_slots: Arc<Mutex<ClientSlots>>,
    /// Incoming handshakes in progress.
    handshakes: AtomicUsize,
    /// Which refusals get a log line (at most one per reason per interval).
    refusal_log: Mutex<RefusalLog>,
}

/// A node's QUIC transport. Start it inside a tokio runtime with [`QuicTransport::bind`], tell
/// it the peers with [`QuicTransport::add_peer`], then `send`/`recv` batches; client
/// connections arrive through [`QuicTransport::accept_client`].
#[derive(Debug)]
pub struct QuicTransport {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    inbound: Inbound,
    clients: tokio::sync::Mutex<mpsc::Receiver<ClientConnection>>,
    shutdown: watch::Sender<bool>,
}

impl QuicTransport {
    /// Binds the endpoint of node `local` on `address` (port 0 picks one) and starts accepting.
    pub async fn bind(
        local: NodeId,
        address: SocketAddr,
        tls: TlsSetup,
        config: TransportConfig,
    ) -> Result<Self, ConnectError> {
        Self::bind_revoking(local, address, tls, config, Arc::default()).await
    }

    /// `bind`, refusing in the handshake every certificate `revoked` names.
    pub async fn bind_revoking(
        local: NodeId,
        address: SocketAddr,
        tls: TlsSetup,
        config: TransportConfig,
        revoked: Arc<Revocations>,
    ) -> Result<Self, ConnectError> {
        config.validate()?;
        check_own_identity(local, &tls)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("QuicTransport::bind needs a tokio runtime"))?;
        let endpoint = Endpoint::new(
            tls.endpoint_config(),
            Some(tls.server_config_revoking(&config, revoked)?),
            std::net::UdpSocket::bind(address)?,
            runtime,
        )?;
        let (queue, inbound) = inbound_queue(config.inbound_queue_batches);
        let (clients_tx, clients_rx) = mpsc::channel(config.client_queue_connections);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let inbound_context = InboundContext {
            local,
            frame_bytes_max: config.frame_bytes_max,
            counters,
            queue,
            peer_silence: Duration::from_millis(config.peer_silence_ms_max),
        };
        let link_context = LinkContext {
            endpoint: endpoint.clone(),
            client_config: tls.peer_client_config(&config)?,
            cluster: tls.cluster.clone(),
            inbound: inbound_context,
            queue_batches: config.outbound_queue_batches,
            snapshot_queue_bytes: config.outbound_snapshot_queue_bytes,
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
            answer_timeout: Duration::from_millis(config.dial_answer_timeout_ms),
            backoff: config.backoff(),
            jitter_seed: config.reconnect_jitter_seed,
            shutdown: shutdown_rx,
        };
        let refusal_interval = Duration::from_millis(config.refusal_log_interval_ms);
        let shared = Arc::new(Shared {
            refusal_log: Mutex::new(RefusalLog::new(refusal_interval)),
            tls,
            config,
            links: Mutex::new(Links::default()),
            link_context,
            clients: clients_tx,
            client_slots: Arc::default(),
            handshakes: AtomicUsize::new(0),
        });
        tokio::spawn(accept_loop(Arc::clone(&shared), endpoint.clone()));
        let clients = tokio::sync::Mutex::new(clients_rx);
        Ok(Self {
            shared,
            endpoint,
            inbound,
            clients,
            shutdown,
        })
    }

    /// Serves new connections with `tls` (certificate files read again) and refuses in their
    /// handshake every certificate `revoked` names; connections already open keep going. The
    /// certificate must still name this node of this cluster. Outbound peer connections keep
    /// the certificate they were built with.
    pub fn reload_server_tls(
        &self,
        tls: &TlsSetup,
        revoked: Arc<Revocations>,
    ) -> Result<(), ConnectError> {
        if tls.cluster != self.shared.tls.cluster {
            return Err(ConnectError::NotThisNode {
                local: self.node_id(),
                found: format!("cluster {}", tls.cluster),
            });
        }
        check_own_identity(self.node_id(), tls)?;
        let server = tls.server_config_revoking(&self.shared.config, revoked)?;
        self.endpoint.set_server_config(Some(server));
        Ok(())
    }

    /// The address the endpoint listens on.
    pub fn local_address(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Adds peer `node` at `address`, or moves it there; must run inside the tokio runtime.
    pub fn add_peer(&self, node: NodeId, address: SocketAddr) {
        let mut links = self.shared.links.lock();
        if let Some(link) = links.peers.get(&node) {
            return link.set_address(address);
        }
        let link = PeerLink::start(&self.shared.link_context, node, address);
        if let Some(connection) = links
            .accepted
            .get(&node)
            .filter(|c| c.close_reason().is_none())
        {
            link.offer(connection.clone());
        }
        links.peers.insert(node, link);
    }

    /// The known peers, each with whether an open connection to it exists (one this node
    /// dialed, or the one it accepted from a lower id), in node order.
    #[must_use]
    pub fn connected_peers(&self) -> Vec<(NodeId, bool)> {
        let links = self.shared.links.lock();
        let mut peers: Vec<(NodeId, bool)> = links
            .peers
            .iter()
            .map(|(&node, link)| (node, link.is_connected()))
            .collect();
        peers.sort_unstable();
        peers
    }

    /// Waits for the next accepted client connection (`flotilla-client/1`); `None` after shutdown.
    pub async fn accept_client(&self) -> Option<ClientConnection> {
        self.clients.lock().await.recv().await
    }

    /// Closes every connection, stops every task and waits (briefly) for the peers to be told.
    pub async fn shutdown(self) {
        self.stop();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }

    fn stop(&self) {
        self.shutdown.send_replace(true);
        *self.shared.links.lock() = Links::default();
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Transport for QuicTransport {
    fn node_id(&self) -> NodeId {
        self.shared.link_context.inbound.local
    }

    fn send(&self, batch: Batch) -> Result<(), SendError> {
        let local = self.node_id();
        if batch.from != local {
            return Err(SendError::NotFromThisNode {
                from: batch.from,
                local,
            });
        }
        let to = batch.to;
        let outcome = match self.shared.links.lock().peers.get(&to) {
            Some(link) => link.enqueue(batch),
            None => Err(SendError::UnknownPeer { to }),
        };
        let counters = &self.shared.link_context.inbound.counters;
        match outcome {
            Err(SendError::QueueFull { .. }) => Counters::bump(&counters.dropped_queue_full),
            Err(_) => Counters::bump(&counters.dropped_unreachable),
            Ok(()) => {}
        }
        outcome
    }

    fn try_recv(&self) -> Option<Batch> {
        self.inbound.try_recv()
    }

    async fn recv(&self) -> Option<Batch> {
        self.inbound.recv().await
    }

    fn counters(&self) -> CounterSnapshot {
        self.shared.link_context.inbound.counters.snapshot()
    }
}

fn check_own_identity(local: NodeId, tls: &TlsSetup) -> Result<(), ConnectError> {
    let expected = PeerIdentity::Node {
        node: local,
        cluster: tls.cluster.clone(),
    };
    let certificate = tls
        .identity
        .cert_chain
        .first()
        .ok_or(crate::error::TlsError::NoCertificate)?;
    let found = PeerIdentity::from_certificate(certificate)?;
    if found == expected {
        Ok(())
    } else {
        Err(ConnectError::NotThisNode {
            local,
            found: found.to_string(),
        })
    }
}

async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        // Past the limit, refuse before any cryptography: a flood of handshakes costs a
        // packet each, not a key exchange and a task each.
        let busy = shared.handshakes.load(Ordering::Relaxed) >= shared.config.handshakes_max;
        if busy {
            let detail = "too many handshakes in progress";
            shared.refused(incoming.remote_address(), Refusal::HandshakesBusy, detail);
            incoming.refuse();
            continue;
        }
        shared.handshakes.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(handle_incoming(Arc::clone(&shared), incoming));
    }
}

/// Runs the handshake of one incoming connection and hands it to the peer or client side.
async fn handle_incoming(shared: Arc<Shared>, incoming: Incoming) {
    let remote = incoming.remote_address();
    let timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
    let handshake = tokio::time::timeout(timeout, incoming).await;
    shared.handshakes.fetch_sub(1, Ordering::Relaxed);
    let connection = match handshake {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            let reason = Refusal::of_handshake(TlsAlert::of(&error));
            return shared.refused(remote, reason, &error.to_string());
        }
        Err(_) => {
            let detail = "the handshake timed out";
            return shared.refused(remote, Refusal::HandshakeTimeout, detail);
        }
    };
    let wrong_identity = Refusal::WrongIdentity;
    let identity = match tls::peer_identity(&connection) {
        Ok(identity) if identity.cluster() == &shared.tls.cluster => identity,
        Ok(identity) => {
            let detail = format!("{identity} is of another cluster");
            return shared.refuse(&connection, wrong_identity, &detail);
        }
        Err(error) => return shared.refuse(&connection, wrong_identity, &error.to_string()),
    };
    let wrong_protocol = Refusal::WrongProtocol;
    match (tls::negotiated_alpn(&connection).as_deref(), identity) {
        (Some(ALPN_RAFT), PeerIdentity::Node { node, .. }) => shared.serve_peer(connection, node),
        (Some(ALPN_RAFT), client) => {
            shared.refuse(
                &connection,
                wrong_protocol,
                &format!("{client} is not a node"),
            );
        }
        (Some(ALPN_CLIENT), identity) => shared.queue_client(connection, identity),
        (_, identity) => {
            let detail = format!("{identity} spoke no known protocol");
            shared.refuse(&connection, wrong_protocol, &detail);
        }
    }
}

impl Shared {
    fn counters(&self) -> &Counters {
        &self.link_context.inbound.counters
    }

    /// Counts a refusal under its reason and logs it, unless a line for that reason was
    /// logged within `refusal_log_interval_ms` (then the next line counts it as unlogged).
    fn refused(&self, remote: SocketAddr, reason: Refusal, detail: &str) {
        Counters::bump(&self.counters().connections_refused);
        Counters::bump(reason.counter(self.counters()));
        let admitted = self.refusal_log.lock().admit(reason, Instant::now());
        if let Some(unlogged) = admitted {
            tracing::warn!(
                %remote,
                ?reason,
                detail,
                unlogged,
                "refused a connection ({unlogged} more refused for this reason since the last such line went unlogged)"
            );
        }
    }

    fn refuse(&self, connection: &Connection, reason: Refusal, detail: &str) {
        self.refused(connection.remote_address(), reason, detail);
        connection.close(CLOSE_REFUSED.into(), b"refused");
    }

    /// Reads the peer's streams and, when the peer is the dialing side, sends on this connection
    /// (a peer without a link gets one, at the address it dialed from).
    fn serve_peer(&self, connection: Connection, node: NodeId) {
        Counters::bump(&self.counters().connections_established);
        tracing::info!(peer = %node, "accepted a peer connection");
        if node < self.link_context.inbound.local {
            let mut links = self.links.lock();
            links.accepted.retain(|_, c| c.close_reason().is_none());
            // The dialer gave the older connection up when it dialed this one.
            if let Some(older) = links.accepted.insert(node, connection.clone()) {
                older.close(CLOSE_SUPERSEDED.into(), b"superseded");
            }
            match links.peers.get(&node) {
                Some(link) => link.offer(connection.clone()),
                None => {
                    // A node this one has no address for yet (one that joined after this
                    // node's directory was read): it dials from the endpoint it listens on,
                    // so it is reachable there. `add_peer` moves the link if the directory says
                    // otherwise.
                    let link =
                        PeerLink::start(&self.link_context, node, connection.remote_address());
                    link.offer(connection.clone());
                    links.peers.insert(node, link);
                }
            }
        }
        tokio::spawn(streams::serve_inbound(
            self.link_context.inbound.clone(),
            connection,
            node,
        ));
    }

    fn queue_client(&self, connection: Connection, identity: PeerIdentity) {
        let slot = match ClientSlots::take(&self.client_slots, &identity, &self.config) {
            Ok(slot) => slot,
            Err(full) => {
                let detail = match full {
                    NoSlot::NodeFull => "the node serves client_connections_max clients",
                    NoSlot::IdentityFull => {
                        "the client holds client_connections_per_identity_max connections"
                    }
                };
                return self.refuse(&connection, Refusal::ClientsFull, detail);
            }
        };
        let client = ClientConnection::new(connection.clone(), identity, &self.config, Some(slot));
        if self.clients.try_send(client).is_err() {
            self.refuse(
                &connection,
                Refusal::ClientQueueFull,
                "the client queue is full",
            );
        }
    }
}

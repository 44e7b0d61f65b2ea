//! One link per peer node: its two bounded outbound queues, the slot holding the one QUIC
//! connection to it, and, on the dialing side, the task that connects and reconnects with backoff.
//!
//! Of two nodes, the one with the lower id dials; the other uses the connection it accepts. Both
//! send on that one connection, so each pair of nodes shares exactly one connection, reused by
//! every group.

use crate::backoff::{BackoffPolicy, JitterSequence};
use crate::counters::Counters;
use crate::error::{ConnectError, SendError};
use crate::identity::{ClusterId, PeerIdentity, node_san};
use crate::outbound::{OutboundQueue, PushError};
use crate::streams::{self, InboundContext, split_batch};
use crate::tls;
use flotilla_raft::{Batch, NodeId};
use parking_lot::Mutex;
use quinn::Connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The sending side of one peer: queues drained by one writer task per stream class.
#[derive(Debug)]
pub(crate) struct PeerLink {
    raft_queue: Arc<OutboundQueue>,
    snapshot_queue: Arc<OutboundQueue>,
    slot: Arc<watch::Sender<Option<Connection>>>,
    address: Arc<Mutex<SocketAddr>>,
}

/// What the tasks of a link need from the endpoint.
#[derive(Debug, Clone)]
pub(crate) struct LinkContext {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) cluster: ClusterId,
    pub(crate) inbound: InboundContext,
    pub(crate) queue_batches: usize,
    pub(crate) snapshot_queue_bytes: u64,
    pub(crate) handshake_timeout: Duration,
    pub(crate) answer_timeout: Duration,
    pub(crate) backoff: BackoffPolicy,
    pub(crate) jitter_seed: u64,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl PeerLink {
    /// Starts the writer tasks and, if this node dials `peer`, the connector task.
    pub(crate) fn start(context: &LinkContext, peer: NodeId, address: SocketAddr) -> Self {
        let raft_queue = Arc::new(OutboundQueue::new(context.queue_batches, u64::MAX));
        let snapshot_queue = Arc::new(OutboundQueue::new(
            context.queue_batches,
            context.snapshot_queue_bytes,
        ));
        let slot = Arc::new(watch::Sender::new(None));
        let counters = &context.inbound.counters;
        let frame_bytes_max = context.inbound.frame_bytes_max;
        for queue in [&raft_queue, &snapshot_queue] {
            tokio::spawn(streams::run_writer(
                Arc::clone(counters),
                frame_bytes_max,
                Arc::clone(queue),
                slot.subscribe(),
            ));
        }
        let address = Arc::new(Mutex::new(address));
        if context.inbound.local < peer {
            let dialer = Dialer {
                context: context.clone(),
                peer,
                address: Arc::clone(&address),
            };
            tokio::spawn(dialer.run(Arc::clone(&slot)));
        }
        Self {
            raft_queue,
            snapshot_queue,
            slot,
            address,
        }
    }

    /// Whether the link holds an open connection to send on (it may still be stalled: only
    /// traffic arriving from the peer proves the path works).
    pub(crate) fn is_connected(&self) -> bool {
        self.slot
            .borrow()
            .as_ref()
            .is_some_and(|connection| connection.close_reason().is_none())
    }

    /// Points the link at a new address; the next (re)connect uses it.
    pub(crate) fn set_address(&self, address: SocketAddr) {
        *self.address.lock() = address;
    }

    /// Queues the batch's Raft part and snapshot part on their streams, without blocking.
    pub(crate) fn enqueue(&self, batch: Batch) -> Result<(), SendError> {
        let to = batch.to;
        let (raft, snapshot) = split_batch(batch);
        let refused = |error| match error {
            PushError::Full => SendError::QueueFull { to },
            PushError::Closed => SendError::Unreachable { to },
        };
        if let Some(raft) = raft {
            self.raft_queue.push(raft).map_err(refused)?;
        }
        if let Some(snapshot) = snapshot {
            self.snapshot_queue.push(snapshot).map_err(refused)?;
        }
        Ok(())
    }

    /// Uses a connection the peer dialed (this node has the higher id) for sending.
    pub(crate) fn offer(&self, connection: Connection) {
        self.slot.send_replace(Some(connection.clone()));
        tokio::spawn(clear_when_closed(Arc::clone(&self.slot), connection));
    }
}

impl Drop for PeerLink {
    /// Stops the writers once they have written what is queued.
    fn drop(&mut self) {
        self.raft_queue.close();
        self.snapshot_queue.close();
    }
}

/// Empties the slot when `connection` closes, unless a newer connection replaced it.
async fn clear_when_closed(slot: Arc<watch::Sender<Option<Connection>>>, connection: Connection) {
    connection.closed().await;
    slot.send_if_modified(|current| {
        let same = current
            .as_ref()
            .is_some_and(|c| c.stable_id() == connection.stable_id());
        if same {
            *current = None;
        }
        same
    });
}

struct Dialer {
    context: LinkContext,
    peer: NodeId,
    address: Arc<Mutex<SocketAddr>>,
}

impl Dialer {
    /// Keeps one connection to the peer open: connect, serve until closed, back off, repeat.
    async fn run(self, slot: Arc<watch::Sender<Option<Connection>>>) {
        let mut shutdown = self.context.shutdown.clone();
        let mut jitter = JitterSequence::new(self.context.jitter_seed ^ self.peer.0);
        let mut attempt = 0u32;
        while !*shutdown.borrow() && !slot.is_closed() {
            match self.connect().await {
                Ok(connection) => {
                    attempt = 0;
                    self.serve(&slot, connection, &mut shutdown).await;
                }
                Err(error) => self.connect_failed(&error),
            }
            let delay = self.context.backoff.delay(attempt, jitter.next_sample());
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
                () = slot.closed() => return,
            }
        }
    }

    async fn serve(
        &self,
        slot: &Arc<watch::Sender<Option<Connection>>>,
        connection: Connection,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        Counters::bump(&self.context.inbound.counters.connections_established);
        tracing::info!(peer = %self.peer, "connected to peer");
        tokio::spawn(streams::serve_inbound(
            self.context.inbound.clone(),
            connection.clone(),
            self.peer,
        ));
        slot.send_replace(Some(connection.clone()));
        tokio::select! {
            reason = connection.closed() => tracing::info!(peer = %self.peer, %reason, "connection to peer closed"),
            _ = shutdown.changed() => {}
        }
        slot.send_replace(None);
    }

    fn connect_failed(&self, error: &ConnectError) {
        Counters::bump(&self.context.inbound.counters.connect_failures);
        tracing::debug!(peer = %self.peer, %error, "could not connect to peer");
    }

    /// Dials the peer and checks its certificate names exactly that node of this cluster. A
    /// peer that does not answer within the answer timeout is given up early: the dial's
    /// first packet is resent only after about a second (quinn's initial probe timeout), so
    /// a dial started while the path was down would otherwise wait that long after it is back.
    async fn connect(&self) -> Result<Connection, ConnectError> {
        let address = *self.address.lock();
        let server_name = node_san(self.peer, &self.context.cluster);
        let mut connecting = self.context.endpoint.connect_with(
            self.context.client_config.clone(),
            address,
            &server_name,
        )?;
        let answer_ms = self.context.answer_timeout.as_millis() as u64;
        tokio::time::timeout(self.context.answer_timeout, connecting.handshake_data())
            .await
            .map_err(|_| ConnectError::NoAnswer {
                timeout_ms: answer_ms,
            })??;
        let timeout_ms = self.context.handshake_timeout.as_millis() as u64;
        let connection = tokio::time::timeout(self.context.handshake_timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout { timeout_ms })??;
        let expected = PeerIdentity::Node {
            node: self.peer,
            cluster: self.context.cluster.clone(),
        };
        match tls::peer_identity(&connection) {
            Ok(identity) if identity == expected => Ok(connection),
            found => {
                connection.close(0u32.into(), b"wrong peer");
                let found =
                    found.map_or_else(|error| error.to_string(), |identity| identity.to_string());
                Err(ConnectError::WrongPeer {
                    expected: self.peer,
                    found,
                })
            }
        }
    }
}

//! The in-memory `Transport`: a shared map of nodes, bounded inbound queues, no sockets.
//!
//! Delivery is immediate and ordered per pair; a down or unknown node makes `send` drop and
//! count, like a full queue on the QUIC transport. Used by conformance tests and by other
//! crates' tests (feature `testing`).

use crate::Transport;
use crate::config::TransportConfig;
use crate::counters::{CounterSnapshot, Counters};
use crate::error::SendError;
use crate::inbound::{Inbound, InboundSender, inbound_queue};
use flotilla_raft::{Batch, NodeId};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
struct Member {
    inbound: InboundSender,
    counters: Arc<Counters>,
    up: bool,
}

/// The shared in-memory network that `MemTransport`s join.
#[derive(Debug, Clone, Default)]
pub struct MemNetwork {
    members: Arc<Mutex<HashMap<NodeId, Member>>>,
}

impl MemNetwork {
    /// An empty network.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds node `node` (replacing any earlier one with that id) and returns its transport.
    #[must_use]
    pub fn join(&self, node: NodeId, config: &TransportConfig) -> MemTransport {
        let (sender, inbound) = inbound_queue(config.inbound_queue_batches);
        let counters = Arc::new(Counters::default());
        let member = Member {
            inbound: sender,
            counters: Arc::clone(&counters),
            up: true,
        };
        self.members.lock().insert(node, member);
        MemTransport {
            node,
            network: self.clone(),
            inbound,
            counters,
        }
    }

    /// Marks a node down (batches to it are dropped) or up again.
    pub fn set_up(&self, node: NodeId, up: bool) {
        if let Some(member) = self.members.lock().get_mut(&node) {
            member.up = up;
        }
    }

    fn deliver(&self, batch: Batch) -> Result<(), SendError> {
        let to = batch.to;
        let members = self.members.lock();
        let member = members
            .get(&to)
            .filter(|member| member.up)
            .ok_or(SendError::Unreachable { to })?;
        // Counted before it is visible, so a reader of the batch always sees it counted.
        let received = || Counters::bump(&member.counters.batches_received);
        member
            .inbound
            .try_send(batch, received)
            .map_err(|_| SendError::QueueFull { to })
    }
}

/// One node's handle on a `MemNetwork`.
#[derive(Debug)]
pub struct MemTransport {
    node: NodeId,
    network: MemNetwork,
    inbound: Inbound,
    counters: Arc<Counters>,
}

impl Transport for MemTransport {
    fn node_id(&self) -> NodeId {
        self.node
    }

    fn send(&self, batch: Batch) -> Result<(), SendError> {
        if batch.from != self.node {
            return Err(SendError::NotFromThisNode {
                from: batch.from,
                local: self.node,
            });
        }
        let outcome = self.network.deliver(batch);
        let counter = match outcome {
            Ok(()) => &self.counters.batches_sent,
            Err(SendError::QueueFull { .. }) => &self.counters.dropped_queue_full,
            Err(_) => &self.counters.dropped_unreachable,
        };
        Counters::bump(counter);
        outcome
    }

    fn try_recv(&self) -> Option<Batch> {
        self.inbound.try_recv()
    }

    async fn recv(&self) -> Option<Batch> {
        self.inbound.recv().await
    }

    fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }
}

//! One node id, one data directory. Peers' directories are pinned when first met (MultiRaft
//! refuses batches from any other under that id) and registered in the meta group by its
//! leader, so every node learns each id's directory, also of peers it never met itself. A
//! process whose own id is registered with another directory stops. Pins are handed to the
//! driver to make durable before anything answering the batch that taught them leaves.

use super::{BatchSink, CoreError, CoreIdentity, NodeCore, Respond};
use flotilla_raft::{MultiError, NodeId, Role};
use flotilla_shard_manager::{META_GROUP, MetaCommand};
use std::collections::BTreeMap;

/// Refusals of one peer's batches are logged at most this often.
const REFUSAL_LOG_INTERVAL_MS: u64 = 60_000;

/// This node's data directory, its peers' pins and what was reported of them.
#[derive(Debug)]
pub(super) struct Registry {
    node: NodeId,
    pub(super) directory: u128,
    pub(super) incarnation: u64,
    pins: BTreeMap<NodeId, u128>,
    /// The pins changed since the driver last took them.
    pins_changed: bool,
    /// How many registered directories were taken up.
    adopted: usize,
    /// When a refused batch from each peer was last logged (driver clock, ms).
    refusals_logged: BTreeMap<NodeId, u64>,
}

impl Registry {
    pub(super) fn new(node: NodeId, identity: CoreIdentity) -> Self {
        Self {
            node,
            directory: identity.directory,
            incarnation: identity.incarnation,
            pins: identity.pins,
            pins_changed: false,
            adopted: 0,
            refusals_logged: BTreeMap::new(),
        }
    }

    /// All pins, if they changed since the last call.
    pub(super) fn take_changed_pins(&mut self) -> Option<BTreeMap<NodeId, u128>> {
        std::mem::take(&mut self.pins_changed).then(|| self.pins.clone())
    }

    /// A batch from a process this node must not accept for its sender's id: an error an
    /// operator must see, logged at most once per peer a minute.
    pub(super) fn warn_refused(&mut self, error: &MultiError, now_ms: u64) {
        let MultiError::Refused { from, .. } = error else {
            return;
        };
        let last = self.refusals_logged.get(from).copied();
        if last.is_none_or(|last| now_ms.saturating_sub(last) >= REFUSAL_LOG_INTERVAL_MS) {
            self.refusals_logged.insert(*from, now_ms);
            tracing::error!(%error, "refused a batch");
        }
    }
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// Takes the pins MultiRaft learned from first batches.
    pub(super) fn learn_pins(&mut self) {
        let learned = self.multi.take_learned_pins();
        if learned.is_empty() {
            return;
        }
        for (peer, directory) in learned {
            let directory_hex = format!("{directory:032x}");
            tracing::info!(peer = peer.0, directory = %directory_hex, "met a peer's data directory");
            self.registry.pins.insert(peer, directory);
        }
        self.registry.pins_changed = true;
        self.register_data_directories();
    }

    /// The meta leader registers, in the meta group, the data directory of every node it has
    /// met (and its own). Proposed again each balance interval until applied.
    pub(super) fn register_data_directories(&mut self) {
        let leads_meta = self
            .multi
            .group(META_GROUP)
            .is_some_and(|raft| raft.role() == Role::Leader);
        if !leads_meta {
            return;
        }
        let own = (self.config.node, self.registry.directory);
        let known = self.registry.pins.iter().map(|(node, dir)| (*node, *dir));
        let registered = &self.machines.meta().data_directories;
        let missing: Vec<(NodeId, u128)> = std::iter::once(own)
            .chain(known)
            .filter(|(node, _)| !registered.contains_key(node))
            .collect();
        for (node, directory) in missing {
            let command = MetaCommand::RegisterDataDirectory { node, directory };
            if let Err(error) = self.multi.propose(META_GROUP, command.encode()) {
                tracing::debug!(%error, "registering a data directory was refused");
            }
        }
    }

    /// Takes up the data directories the meta group registered: a peer's becomes its pin
    /// unless this node met another directory under that id (kept, and reported: the first is
    /// the one it promised things to); this node's own must be this directory, or this process
    /// is an impostor and stops.
    pub(super) fn adopt_registered_directories(&mut self) -> Result<(), CoreError> {
        let registered = &self.machines.meta().data_directories;
        if registered.len() == self.registry.adopted {
            return Ok(());
        }
        self.registry.adopted = registered.len();
        let (node, own) = (self.registry.node, self.registry.directory);
        if let Some(&registered) = registered.get(&node).filter(|&&dir| dir != own) {
            return Err(CoreError::NotOwnDirectory {
                node,
                registered,
                own,
            });
        }
        for (&peer, &directory) in registered.iter().filter(|(peer, _)| **peer != node) {
            match self.registry.pins.get(&peer) {
                None => {
                    self.registry.pins.insert(peer, directory);
                    self.multi.pin_peer(peer, directory);
                    self.registry.pins_changed = true;
                }
                Some(&pinned) if pinned != directory => tracing::error!(
                    peer = peer.0,
                    pinned = %format!("{pinned:032x}"),
                    registered = %format!("{directory:032x}"),
                    "this node met another data directory under this id than the one \
                     registered; it keeps refusing the registered one"
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

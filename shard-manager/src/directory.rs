//! The node directory: where each node listens. Replicated in the meta group in a running
//! cluster; a client starts from a configured list of endpoints.

use flotilla_raft::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Node id -> address (`host:port`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    addresses: BTreeMap<NodeId, String>,
}

impl Directory {
    /// A directory of the given nodes.
    pub fn new(entries: impl IntoIterator<Item = (NodeId, String)>) -> Self {
        Self {
            addresses: entries.into_iter().collect(),
        }
    }

    /// Where `node` listens, if known.
    #[must_use]
    pub fn address(&self, node: NodeId) -> Option<&str> {
        self.addresses.get(&node).map(String::as_str)
    }

    /// Records (or replaces) where `node` listens.
    pub fn insert(&mut self, node: NodeId, address: String) {
        self.addresses.insert(node, address);
    }

    /// Every known node.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.addresses.keys().copied()
    }
}

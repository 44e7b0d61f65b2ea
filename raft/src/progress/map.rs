//! The leader's progress of each replica, in a small vector sorted by node id: a group has a
//! handful of replicas, and a node hosts thousands of groups, so a map's node allocation per
//! group would cost more than the progress itself.

use super::Progress;
use crate::types::NodeId;
use std::ops::Index;

/// Progress by replica.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgressMap {
    entries: Vec<(NodeId, Progress)>,
}

impl ProgressMap {
    fn position(&self, node: NodeId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&node, |(id, _)| *id)
    }

    pub(crate) fn get(&self, node: &NodeId) -> Option<&Progress> {
        let position = self.position(*node).ok()?;
        self.entries.get(position).map(|(_, progress)| progress)
    }

    pub(crate) fn get_mut(&mut self, node: &NodeId) -> Option<&mut Progress> {
        let position = self.position(*node).ok()?;
        self.entries.get_mut(position).map(|(_, progress)| progress)
    }

    pub(crate) fn contains_key(&self, node: &NodeId) -> bool {
        self.position(*node).is_ok()
    }

    pub(crate) fn insert(&mut self, node: NodeId, progress: Progress) {
        match self.position(node) {
            Ok(position) => self.entries[position].1 = progress,
            Err(position) => self.entries.insert(position, (node, progress)),
        }
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&NodeId, &mut Progress) -> bool) {
        self.entries
            .retain_mut(|(node, progress)| keep(node, progress));
    }

    pub(crate) fn clear(&mut self) {
        self.entries = Vec::new();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The replica at `position` in node-id order (to walk the map while mutating the node).
    pub(crate) fn node_at(&self, position: usize) -> Option<NodeId> {
        self.entries.get(position).map(|(node, _)| *node)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.entries.iter().map(|(node, _)| node)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Progress> {
        self.entries.iter().map(|(_, progress)| progress)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Progress> {
        self.entries.iter_mut().map(|(_, progress)| progress)
    }
}

impl Index<&NodeId> for ProgressMap {
    type Output = Progress;

    fn index(&self, node: &NodeId) -> &Progress {
        match self.get(node) {
            Some(progress) => progress,
            None => panic!("no progress for {node}"),
        }
    }
}

//! One node id, one data directory, one live process. Every batch names the data directory and
//! the start (incarnation) of the process that sent it; a node pins the directory it first met
//! for each peer and from then on refuses batches from any other directory under that id (a
//! node restarted empty, a copy of its certificate on another machine), and from processes
//! older than the newest it heard from. A node that lost its data must join under a new id.
//!
//! Pins learned here are handed to the node (`MultiRaft::take_learned_pins`) to persist before
//! anything that answers the batch leaves, so a restart does not forget them.

use crate::types::{Incarnation, NodeId};
use std::collections::BTreeMap;

/// Why a batch was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The batch comes from another data directory than the one this node knows the peer by.
    #[error(
        "it comes from data directory {found:032x}, but this node knows {node} by directory \
         {pinned:032x}: a node that lost its data must join under a new id"
    )]
    ForeignDirectory {
        /// The sender's id.
        node: NodeId,
        /// The directory the batch names.
        found: u128,
        /// The directory this node pinned for it.
        pinned: u128,
    },
    /// The batch comes from an older process of the right directory than one already heard.
    #[error("it comes from start {found} of {node}, older than start {newest} already heard from")]
    OlderProcess {
        /// The sender's id.
        node: NodeId,
        /// The start the batch names.
        found: u64,
        /// The newest start heard from.
        newest: u64,
    },
}

/// The directory pinned for each peer, and the newest start heard from each.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerPins {
    pinned: BTreeMap<NodeId, Incarnation>,
    learned: Vec<(NodeId, u128)>,
}

impl PeerPins {
    /// Pins `directory` for `node` (a pin persisted by an earlier run).
    pub(super) fn pin(&mut self, node: NodeId, directory: u128) {
        self.pinned.insert(
            node,
            Incarnation {
                directory,
                start: 0,
            },
        );
    }

    /// Accepts a batch from `node` that names `incarnation`, or says why not. The first batch
    /// from a peer with no pin pins it (and is handed out as learned).
    pub(super) fn check(&mut self, node: NodeId, incarnation: Incarnation) -> Result<(), Refusal> {
        let Some(known) = self.pinned.get_mut(&node) else {
            self.pinned.insert(node, incarnation);
            self.learned.push((node, incarnation.directory));
            return Ok(());
        };
        if known.directory != incarnation.directory {
            return Err(Refusal::ForeignDirectory {
                node,
                found: incarnation.directory,
                pinned: known.directory,
            });
        }
        if incarnation.start < known.start {
            return Err(Refusal::OlderProcess {
                node,
                found: incarnation.start,
                newest: known.start,
            });
        }
        known.start = incarnation.start;
        Ok(())
    }

    /// The directory pinned for `node`, if any.
    pub(super) fn directory_of(&self, node: NodeId) -> Option<u128> {
        self.pinned.get(&node).map(|known| known.directory)
    }

    /// The pins learned since the last call, to persist.
    pub(super) fn take_learned(&mut self) -> Vec<(NodeId, u128)> {
        std::mem::take(&mut self.learned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incarnation(directory: u128, start: u64) -> Incarnation {
        Incarnation { directory, start }
    }

    #[test]
    fn the_first_directory_is_pinned_and_learned_once() {
        let mut pins = PeerPins::default();
        assert_eq!(pins.check(NodeId(2), incarnation(7, 1)), Ok(()));
        assert_eq!(pins.check(NodeId(2), incarnation(7, 1)), Ok(()));
        assert_eq!(pins.take_learned(), vec![(NodeId(2), 7)]);
        assert!(pins.take_learned().is_empty());
        assert_eq!(pins.directory_of(NodeId(2)), Some(7));
    }

    #[test]
    fn another_directory_under_a_pinned_id_is_refused() {
        let mut pins = PeerPins::default();
        pins.pin(NodeId(2), 7);
        let refusal = pins
            .check(NodeId(2), incarnation(8, 1))
            .expect_err("another directory");
        assert!(matches!(
            refusal,
            Refusal::ForeignDirectory {
                pinned: 7,
                found: 8,
                ..
            }
        ));
        assert!(pins.take_learned().is_empty());
    }

    #[test]
    fn a_restart_is_accepted_and_then_the_older_process_is_refused() {
        let mut pins = PeerPins::default();
        pins.pin(NodeId(2), 7);
        assert_eq!(pins.check(NodeId(2), incarnation(7, 3)), Ok(()));
        assert_eq!(pins.check(NodeId(2), incarnation(7, 4)), Ok(()));
        let refusal = pins
            .check(NodeId(2), incarnation(7, 3))
            .expect_err("an older process");
        assert!(matches!(
            refusal,
            Refusal::OlderProcess {
                found: 3,
                newest: 4,
                ..
            }
        ));
    }
}

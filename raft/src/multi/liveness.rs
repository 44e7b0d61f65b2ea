//! Node-level liveness: every batch from a peer node proves it is up; a peer silent for the
//! node timeout is down. Each node sends every peer at least a (possibly empty) coalesced
//! heartbeat every heartbeat interval, so silence means a crash or a partition.

use crate::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// When each peer node was last heard from.
#[derive(Clone, Debug)]
pub(super) struct Liveness {
    timeout_ticks: u64,
    last_heard: BTreeMap<NodeId, u64>,
    reported_down: BTreeSet<NodeId>,
}

impl Liveness {
    pub(super) fn new(timeout_ticks: u64) -> Self {
        Self {
            timeout_ticks,
            last_heard: BTreeMap::new(),
            reported_down: BTreeSet::new(),
        }
    }

    /// Starts watching `peer` as if just heard from.
    pub(super) fn watch(&mut self, peer: NodeId, now: u64) {
        self.last_heard.entry(peer).or_insert(now);
    }

    pub(super) fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.last_heard.keys().copied()
    }

    /// Records a batch from `peer`; true if `peer` was reported down (it is back).
    pub(super) fn heard_from(&mut self, peer: NodeId, now: u64) -> bool {
        self.last_heard.insert(peer, now);
        self.reported_down.remove(&peer)
    }

    /// Whether `peer` was heard from within the timeout (unknown peers are not live).
    pub(super) fn is_live(&self, peer: NodeId, now: u64) -> bool {
        self.last_heard
            .get(&peer)
            .is_some_and(|&heard| now.saturating_sub(heard) < self.timeout_ticks)
    }

    pub(super) fn live(&self, now: u64) -> impl Iterator<Item = NodeId> + '_ {
        self.last_heard
            .iter()
            .filter(move |&(_, &heard)| now.saturating_sub(heard) < self.timeout_ticks)
            .map(|(&peer, _)| peer)
    }

    /// Every watched peer with the ticks since it was last heard from (or watched).
    pub(super) fn silences(&self, now: u64) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.last_heard
            .iter()
            .map(move |(&peer, &heard)| (peer, now.saturating_sub(heard)))
    }

    /// Peers that went silent since the last call; each is reported once per silence.
    pub(super) fn newly_down(&mut self, now: u64) -> Vec<NodeId> {
        let down: Vec<NodeId> = self
            .last_heard
            .iter()
            .filter(|&(peer, &heard)| {
                now.saturating_sub(heard) >= self.timeout_ticks
                    && !self.reported_down.contains(peer)
            })
            .map(|(&peer, _)| peer)
            .collect();
        self.reported_down.extend(down.iter().copied());
        down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_reported_down_once_and_up_again_when_heard() {
        let mut liveness = Liveness::new(5);
        liveness.watch(NodeId(2), 0);
        assert!(liveness.newly_down(4).is_empty());
        assert_eq!(liveness.newly_down(5), vec![NodeId(2)]);
        assert!(liveness.newly_down(6).is_empty(), "reported once");
        assert!(liveness.heard_from(NodeId(2), 7), "back after a silence");
        assert!(!liveness.heard_from(NodeId(2), 7), "back once");
        assert_eq!(liveness.live(8).collect::<Vec<_>>(), vec![NodeId(2)]);
        assert_eq!(liveness.newly_down(12), vec![NodeId(2)]);
    }

    #[test]
    fn silences_count_the_ticks_since_each_peer_was_heard() {
        let mut liveness = Liveness::new(5);
        liveness.watch(NodeId(2), 0);
        liveness.watch(NodeId(3), 0);
        let _ = liveness.heard_from(NodeId(3), 6);
        let silences: Vec<(NodeId, u64)> = liveness.silences(9).collect();
        assert_eq!(silences, vec![(NodeId(2), 9), (NodeId(3), 3)]);
    }
}

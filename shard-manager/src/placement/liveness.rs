//! Whether a node counts as live, suspect or gone at a given time: its recorded state combined
//! with the age of its last heartbeat. A pure function of the view and `now_ms`.

use super::config::PlacementConfig;
use super::view::{NodeState, NodeView};

/// How the driver treats a node at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Liveness {
    /// Heard from recently and not down: its replicas count, it may be given more.
    Live,
    /// Silent for a while, or recorded suspect or down: its replicas still count (it may come
    /// back), but it is given nothing new.
    Suspect,
    /// Removed, or down or silent for `down_after_ms`: its replicas are re-placed.
    Dead,
}

/// The liveness of `node` at `now_ms`.
#[must_use]
pub fn liveness(node: &NodeView, now_ms: u64, config: &PlacementConfig) -> Liveness {
    let silent_ms = now_ms.saturating_sub(node.last_heartbeat_ms);
    match node.state {
        NodeState::Removed => Liveness::Dead,
        _ if silent_ms >= config.down_after_ms => Liveness::Dead,
        NodeState::Down { since_ms } if now_ms.saturating_sub(since_ms) >= config.down_after_ms => {
            Liveness::Dead
        }
        NodeState::Down { .. } | NodeState::Suspect => Liveness::Suspect,
        _ if silent_ms > config.heartbeat_stale_ms => Liveness::Suspect,
        NodeState::Up | NodeState::Draining => Liveness::Live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::NodeId;

    fn config() -> PlacementConfig {
        PlacementConfig {
            down_after_ms: 1000,
            heartbeat_stale_ms: 100,
            ..PlacementConfig::default()
        }
    }

    fn node(state: NodeState, last_heartbeat_ms: u64) -> NodeView {
        NodeView {
            state,
            last_heartbeat_ms,
            ..NodeView::up(NodeId(1), 0)
        }
    }

    #[test]
    fn a_node_heard_from_recently_is_live() {
        assert_eq!(
            liveness(&node(NodeState::Up, 950), 1000, &config()),
            Liveness::Live
        );
        let draining = node(NodeState::Draining, 1000);
        assert_eq!(liveness(&draining, 1000, &config()), Liveness::Live);
    }

    #[test]
    fn a_silent_node_is_suspect_then_dead() {
        assert_eq!(
            liveness(&node(NodeState::Up, 0), 101, &config()),
            Liveness::Suspect
        );
        assert_eq!(
            liveness(&node(NodeState::Up, 0), 999, &config()),
            Liveness::Suspect
        );
        assert_eq!(
            liveness(&node(NodeState::Up, 0), 1000, &config()),
            Liveness::Dead
        );
    }

    #[test]
    fn a_down_node_is_dead_only_after_down_after() {
        let down = node(NodeState::Down { since_ms: 500 }, 2000);
        assert_eq!(liveness(&down, 2000, &config()), Liveness::Dead);
        let down = node(NodeState::Down { since_ms: 1500 }, 2000);
        assert_eq!(liveness(&down, 2000, &config()), Liveness::Suspect);
    }

    #[test]
    fn a_removed_node_is_dead_at_once() {
        let removed = node(NodeState::Removed, 1000);
        assert_eq!(liveness(&removed, 1000, &config()), Liveness::Dead);
    }
}

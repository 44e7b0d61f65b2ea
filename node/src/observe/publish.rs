//! The driver's side: every publish interval, a copy of the node's counters for the HTTP
//! listener, and the log lines that follow from comparing it with the last one (peers declared
//! down or up at info; at most one summary line per summary interval, and none while nothing
//! changed).

use super::{Published, Snapshot};
use crate::api::{PeerState, PeerStatus};
use crate::core::Observation;
use flotilla_raft::NodeId;
use flotilla_transport_quic::CounterSnapshot;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Publishes the driver's observations and logs what changed between them.
#[derive(Debug)]
pub(crate) struct Publisher {
    published: Arc<Published>,
    publish_interval: Duration,
    summary_interval: Duration,
    published_at: Option<Instant>,
    peers: BTreeMap<NodeId, PeerState>,
    summary: Summary,
}

/// What the last summary line said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Summary {
    at: Option<Instant>,
    ranges_hosted: u64,
    ranges_led: u64,
    leader_changes: u64,
    requests: u64,
    proposals: u64,
}

impl Publisher {
    pub(crate) fn new(
        published: Arc<Published>,
        publish_interval: Duration,
        summary_interval: Duration,
    ) -> Self {
        Self {
            published,
            publish_interval,
            summary_interval,
            published_at: None,
            peers: BTreeMap::new(),
            summary: Summary::default(),
        }
    }

    /// Whether a publish interval has passed since the last publication.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.published_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.publish_interval)
    }

    /// Publishes `observation` (unless a scrape holds the last one: then at the next turn) and
    /// logs what changed.
    pub(crate) fn publish(
        &mut self,
        observation: Observation,
        (transport, queued): (CounterSnapshot, (usize, usize)),
        now: Instant,
    ) {
        self.log_peers(&observation.peers);
        self.log_summary(&observation, now);
        let snapshot = Snapshot {
            observation,
            transport,
            queued,
            at: now,
        };
        if self.published.try_publish(snapshot) {
            self.published_at = Some(now);
        }
    }

    fn log_peers(&mut self, peers: &[PeerStatus]) {
        for (node, before, after) in peer_changes(&self.peers, peers) {
            match after {
                PeerState::Live => tracing::info!(peer = node.0, was = ?before, "peer up"),
                state => tracing::info!(peer = node.0, ?state, "peer declared down"),
            }
        }
        self.peers = peers.iter().map(|peer| (peer.node, peer.state)).collect();
    }

    fn log_summary(&mut self, observation: &Observation, now: Instant) {
        let counters = &observation.counters;
        let next = Summary {
            at: Some(now),
            ranges_hosted: observation.groups_hosted,
            ranges_led: observation.groups_led,
            leader_changes: counters.leader_changes,
            requests: counters.requests,
            proposals: counters.proposals,
        };
        let last = self.summary;
        let Some(at) = last.at else {
            self.summary = next;
            return;
        };
        if now.saturating_duration_since(at) < self.summary_interval {
            return;
        }
        self.summary = Summary {
            at: Some(now),
            ..next
        };
        let unchanged = Summary { at: None, ..next } == Summary { at: None, ..last };
        if unchanged {
            return;
        }
        tracing::info!(
            ranges_hosted = next.ranges_hosted,
            ranges_led = next.ranges_led,
            ranges_without_leader = observation.groups_without_leader.len(),
            leader_changes = next.leader_changes - last.leader_changes,
            requests = next.requests - last.requests,
            proposals = next.proposals - last.proposals,
            waiting = observation.waiting,
            seconds = now.saturating_duration_since(at).as_secs(),
            "summary"
        );
    }
}

/// The peers whose state turned to or from live since `before` (a peer seen for the first
/// time is not a change), with the state they had and have.
fn peer_changes(
    before: &BTreeMap<NodeId, PeerState>,
    now: &[PeerStatus],
) -> Vec<(NodeId, PeerState, PeerState)> {
    now.iter()
        .filter_map(|peer| {
            let &was = before.get(&peer.node)?;
            let changed = (was == PeerState::Live) != (peer.state == PeerState::Live);
            changed.then_some((peer.node, was, peer.state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(node: u64, state: PeerState) -> PeerStatus {
        PeerStatus {
            node: NodeId(node),
            state,
            silent_ms: 0,
        }
    }

    #[test]
    fn a_peer_changes_when_it_stops_or_starts_being_live() {
        let before: BTreeMap<_, _> = [
            (NodeId(2), PeerState::Live),
            (NodeId(3), PeerState::Unreachable),
            (NodeId(4), PeerState::Quiet),
        ]
        .into();
        let now = [
            peer(2, PeerState::Quiet),
            peer(3, PeerState::Live),
            peer(4, PeerState::Unreachable),
            peer(5, PeerState::Unreachable),
        ];
        assert_eq!(
            peer_changes(&before, &now),
            vec![
                (NodeId(2), PeerState::Live, PeerState::Quiet),
                (NodeId(3), PeerState::Unreachable, PeerState::Live),
            ]
        );
    }

    #[test]
    fn publishing_waits_for_its_interval_and_fills_the_snapshot() {
        let published = Arc::new(Published::default());
        let mut publisher = Publisher::new(
            Arc::clone(&published),
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let start = Instant::now();
        assert!(publisher.due(start));
        let counters = (CounterSnapshot::default(), (0, 0));
        publisher.publish(Observation::default(), counters, start);
        assert!(!publisher.due(start + Duration::from_millis(50)));
        assert!(publisher.due(start + Duration::from_millis(100)));
        assert_eq!(published.latest().map(|snapshot| snapshot.at), Some(start));
    }
}

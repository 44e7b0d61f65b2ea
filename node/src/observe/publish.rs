//! The driver's side: every publish interval, a copy of the node's counters for the HTTP
//! listener (with, once a second, a sample of the request counters and a copy of the range
//! map for the status page), and the log lines that follow from comparing it with the last one (peers declared
//! down or up at info; at most one summary line per summary interval, and none while nothing
//! changed).

use super::{Published, Sample, Snapshot};
use crate::api::{PeerState, PeerStatus};
use crate::core::{GroupsObservation, Observation};
use flotilla_raft::NodeId;
use flotilla_shard_manager::MetaState;
use flotilla_transport_quic::CounterSnapshot;
use std::collections::{BTreeMap, VecDeque};
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
    /// The range map and directory last copied, and when (none before the page's first view).
    meta: Option<(Arc<MetaState>, Instant)>,
    /// One sample a second, oldest first, at most `samples_max`.
    samples: VecDeque<Sample>,
    samples_max: usize,
    /// The last scan of the groups, when it was made and what it cost the driver.
    groups: Arc<GroupsObservation>,
    groups_scanned: Option<(Instant, Duration)>,
    /// When the groups' leaders were last walked for the status page, and what it cost.
    leaders_walked: Option<(Instant, Duration)>,
}

/// A scan of the groups (the awake ones; every one for the status page's leaders) costs the
/// driver thread at most one part in this many of its time: at 100,000 groups a walk over all
/// takes tens of milliseconds, and one every publish interval (100 ms) kept a whole idle
/// node's core a quarter busy. Small or idle nodes still scan every interval.
const GROUP_SCAN_SHARE_INVERSE: u32 = 100;

/// The status page's resolution: its rates are per second, and the range map it shows is at
/// most this old when it is viewed (or one epoch behind).
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

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
    /// A publisher into `published` every `publish_interval`, with a summary log line at most
    /// every `summary_interval`, keeping `history_seconds` of request samples.
    pub(crate) fn new(
        published: Arc<Published>,
        (publish_interval, summary_interval): (Duration, Duration),
        history_seconds: u64,
    ) -> Self {
        // One more sample than seconds: n seconds of rates take n + 1 readings.
        let samples_max = usize::try_from(history_seconds)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        Self {
            published,
            publish_interval,
            summary_interval,
            published_at: None,
            peers: BTreeMap::new(),
            summary: Summary::default(),
            meta: None,
            samples: VecDeque::with_capacity(samples_max),
            samples_max,
            groups: Arc::default(),
            groups_scanned: None,
            leaders_walked: None,
        }
    }

    /// Whether the groups are due for a scan: never scanned, or a publish interval and a
    /// hundred times the last scan's cost passed since it.
    pub(crate) fn groups_due(&self, now: Instant) -> bool {
        paced(self.groups_scanned, self.publish_interval, now)
    }

    /// Keeps a scan of the groups made at `now` that took `cost` (with the leaders last
    /// walked).
    pub(crate) fn groups_scanned(
        &mut self,
        mut groups: GroupsObservation,
        cost: Duration,
        now: Instant,
    ) {
        groups.leaders = Arc::clone(&self.groups.leaders);
        self.groups = Arc::new(groups);
        self.groups_scanned = Some((now, cost));
    }

    /// Whether the groups' leaders are due for a walk over every group: only while the status
    /// page is viewed (it wants the range map they go with), at most once a second and a
    /// hundred times the last walk's cost.
    pub(crate) fn leaders_due(&self, now: Instant) -> bool {
        self.published.map_wanted() && paced(self.leaders_walked, SAMPLE_INTERVAL, now)
    }

    /// Keeps a walk of the groups' leaders made at `now` that took `cost`.
    pub(crate) fn leaders_walked(
        &mut self,
        leaders: Vec<(flotilla_raft::GroupId, Option<NodeId>)>,
        cost: Duration,
        now: Instant,
    ) {
        let mut groups = GroupsObservation::clone(&self.groups);
        groups.leaders = Arc::new(leaders);
        self.groups = Arc::new(groups);
        self.leaders_walked = Some((now, cost));
    }

    /// The last scan of the groups.
    pub(crate) fn groups(&self) -> Arc<GroupsObservation> {
        Arc::clone(&self.groups)
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
        (observation, meta): (Observation, &MetaState),
        (transport, queued): (CounterSnapshot, (usize, usize)),
        now: Instant,
    ) {
        self.log_peers(&observation.peers);
        self.log_summary(&observation, now);
        let meta = self.copy_meta(meta, now);
        self.sample(&observation, now);
        let snapshot = Snapshot {
            observation,
            transport,
            queued,
            at: now,
            meta,
            samples: self.samples.iter().copied().collect(),
        };
        if self.published.try_publish(snapshot) {
            self.published_at = Some(now);
        }
    }

    /// The range map and directory, copied again when the status page was served since the
    /// last copy and that copy is a second old or of another epoch; else the last copy.
    fn copy_meta(&mut self, meta: &MetaState, now: Instant) -> Option<Arc<MetaState>> {
        let fresh = self.meta.as_ref().is_some_and(|(copied, at)| {
            now.saturating_duration_since(*at) < SAMPLE_INTERVAL
                && copied.map.epoch() == meta.map.epoch()
        });
        if !fresh && self.published.take_map_wanted() {
            self.meta = Some((Arc::new(meta.clone()), now));
        }
        self.meta.as_ref().map(|(copied, _)| Arc::clone(copied))
    }

    /// Once a second, a sample of the request counters.
    fn sample(&mut self, observation: &Observation, now: Instant) {
        let due = self
            .samples
            .back()
            .is_none_or(|last| now.saturating_duration_since(last.at) >= SAMPLE_INTERVAL);
        if due {
            if self.samples.len() == self.samples_max {
                self.samples.pop_front();
            }
            self.samples.push_back(Sample {
                at: now,
                requests: observation.counters.requests,
                proposals: observation.counters.proposals,
            });
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
            ranges_hosted: observation.groups.hosted,
            ranges_led: observation.groups.led,
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
            ranges_without_leader = observation.groups.without_leader.len(),
            leader_changes = next.leader_changes - last.leader_changes,
            requests = next.requests - last.requests,
            proposals = next.proposals - last.proposals,
            waiting = observation.waiting,
            seconds = now.saturating_duration_since(at).as_secs(),
            "summary"
        );
    }
}

/// Whether a scan last made `last` (when, and what it cost) may run again at `now`: never
/// made, or `interval` and `GROUP_SCAN_SHARE_INVERSE` times its cost passed since.
fn paced(last: Option<(Instant, Duration)>, interval: Duration, now: Instant) -> bool {
    last.is_none_or(|(at, cost)| {
        now.saturating_duration_since(at)
            >= interval.max(cost.saturating_mul(GROUP_SCAN_SHARE_INVERSE))
    })
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
    use super::super::one_node_meta as meta;
    use super::*;

    fn peer(node: u64, state: PeerState) -> PeerStatus {
        PeerStatus {
            node: NodeId(node),
            state,
            silent_ms: 0,
        }
    }

    /// A cheap scan of the groups runs every publish interval; one that took 30 ms waits
    /// 3 s (a hundred times its cost), so it never takes more than 1 % of the driver thread.
    #[test]
    fn the_groups_are_scanned_at_most_a_hundredth_of_the_time() {
        let interval = Duration::from_millis(100);
        let mut publisher = Publisher::new(
            Arc::new(Published::default()),
            (interval, Duration::from_secs(60)),
            60,
        );
        let start = Instant::now();
        assert!(publisher.groups_due(start));
        publisher.groups_scanned(
            GroupsObservation::default(),
            Duration::from_micros(50),
            start,
        );
        assert!(!publisher.groups_due(start + Duration::from_millis(99)));
        assert!(publisher.groups_due(start + interval));
        let hosted = GroupsObservation {
            hosted: 100_000,
            ..GroupsObservation::default()
        };
        publisher.groups_scanned(hosted, Duration::from_millis(30), start);
        assert!(!publisher.groups_due(start + Duration::from_millis(2_999)));
        assert!(publisher.groups_due(start + Duration::from_secs(3)));
        assert_eq!(publisher.groups().hosted, 100_000);
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
            (Duration::from_millis(100), Duration::from_secs(60)),
            60,
        );
        let start = Instant::now();
        assert!(publisher.due(start));
        let counters = (CounterSnapshot::default(), (0, 0));
        let meta = meta();
        publisher.publish((Observation::default(), &meta), counters, start);
        assert!(!publisher.due(start + Duration::from_millis(50)));
        assert!(publisher.due(start + Duration::from_millis(100)));
        assert_eq!(published.latest().map(|snapshot| snapshot.at), Some(start));
    }

    #[test]
    fn samples_are_a_second_apart_and_bounded() {
        let published = Arc::new(Published::default());
        let intervals = (Duration::from_millis(100), Duration::from_secs(60));
        let mut publisher = Publisher::new(Arc::clone(&published), intervals, 3);
        let meta = meta();
        let start = Instant::now();
        // Ten publications a second for six seconds, one request more each time.
        for tenth in 0..60_u64 {
            let mut observation = Observation::default();
            observation.counters.requests = tenth;
            let now = start + Duration::from_millis(100 * tenth);
            publisher.publish(
                (observation, &meta),
                (CounterSnapshot::default(), (0, 0)),
                now,
            );
        }
        let samples = published.latest().expect("published").samples;
        let requests: Vec<u64> = samples.iter().map(|sample| sample.requests).collect();
        assert_eq!(requests, vec![20, 30, 40, 50]);
        assert_eq!(samples[0].at, start + Duration::from_secs(2));
    }

    #[test]
    fn the_map_is_copied_only_for_a_reader_and_at_most_once_a_second() {
        let published = Arc::new(Published::default());
        let intervals = (Duration::from_millis(100), Duration::from_secs(60));
        let mut publisher = Publisher::new(Arc::clone(&published), intervals, 3);
        let meta = meta();
        let start = Instant::now();
        let mut publish_at = |millis: u64| {
            let now = start + Duration::from_millis(millis);
            let counters = (CounterSnapshot::default(), (0, 0));
            publisher.publish((Observation::default(), &meta), counters, now);
            published.latest().expect("published").meta
        };
        assert!(publish_at(0).is_none(), "no reader, no copy");
        published.want_map();
        let first = publish_at(100).expect("copied for the reader");
        published.want_map();
        let again = publish_at(200).expect("the last copy");
        assert!(Arc::ptr_eq(&first, &again), "a copy is kept for a second");
        // The wish of 200 ms waits for the copy to age.
        let fresh = publish_at(1_200).expect("copied again");
        assert!(!Arc::ptr_eq(&first, &fresh));
        let unread = publish_at(2_300).expect("the last copy");
        assert!(Arc::ptr_eq(&fresh, &unread), "no reader since: no copy");
    }
}

//! The status page from hand-made snapshots: what it marks, what it escapes, where it stops.

use super::*;
use crate::api::{PeerState, PeerStatus};
use crate::core::Observation;
use flotilla_shard_manager::{Directory, Epoch, KeyRange, RangeEpoch, RangeId, RangeMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ranges split at `boundaries`, range `i` in group `i` on `replicas`.
fn map(boundaries: &[&[u8]], replicas: &[u64]) -> RangeMap {
    let starts: Vec<Vec<u8>> = std::iter::once(Vec::new())
        .chain(boundaries.iter().map(|key| key.to_vec()))
        .collect();
    let descriptors = starts
        .iter()
        .enumerate()
        .map(|(index, start)| RangeDescriptor {
            id: RangeId(index as u64 + 1),
            keys: KeyRange {
                start: start.clone(),
                end: starts.get(index + 1).cloned(),
            },
            group: GroupId(index as u64 + 1),
            replicas: replicas.iter().copied().map(NodeId).collect(),
            epoch: RangeEpoch::default(),
        })
        .collect();
    RangeMap::new(descriptors, Epoch(7)).expect("a tiling")
}

fn snapshot(map: RangeMap, leaders: &[(u64, Option<u64>)]) -> Snapshot {
    let at = Instant::now();
    let observation = Observation {
        groups: std::sync::Arc::new(crate::core::GroupsObservation {
            leaders: Arc::new(
                leaders
                    .iter()
                    .map(|&(group, leader)| (GroupId(group), leader.map(NodeId)))
                    .collect(),
            ),
            ..crate::core::GroupsObservation::default()
        }),
        peers: vec![PeerStatus {
            node: NodeId(2),
            state: PeerState::Unreachable,
            silent_ms: 9_000,
        }],
        ..Observation::default()
    };
    let directory = Directory::new([
        (NodeId(1), "127.0.0.1:7001".to_string()),
        (NodeId(2), "<b>evil</b>".to_string()),
    ]);
    Snapshot {
        observation,
        transport: flotilla_transport_quic::CounterSnapshot::default(),
        queued: (0, 0),
        at,
        meta: Some(Arc::new(MetaState::new(map, directory))),
        samples: [(0, 0), (1, 10), (2, 30)]
            .iter()
            .map(|&(second, requests)| Sample {
                at: at + Duration::from_secs(second),
                requests,
                proposals: requests / 2,
            })
            .collect(),
    }
}

fn render_page(snapshot: Option<&Snapshot>, rows_max: usize) -> String {
    render(&Page {
        node: NodeId(1),
        snapshot,
        readiness: Err("2 of 5 ranges <have> no leader & more".into()),
        rows_max,
    })
}

#[test]
fn the_page_marks_each_leader_it_knows_and_says_what_it_does_not() {
    let snapshot = snapshot(map(&[b"k", b"t"], &[1, 2]), &[(1, Some(2)), (2, None)]);
    let html = render_page(Some(&snapshot), 10);
    assert_eq!(
        html.matches("<b class=leader title=leader>").count(),
        1,
        "{html}"
    );
    assert!(
        html.contains("<b class=leader title=leader>n2★</b>"),
        "{html}"
    );
    assert!(html.contains("<td>none known</td>"), "{html}");
    assert!(html.contains("<td>not hosted here</td>"), "{html}");
    assert!(
        html.contains("<span id=range-count>3</span> ranges"),
        "{html}"
    );
    // n2 holds 3 replicas and leads 1; n1 holds 3 and leads none; n2 is heard as unreachable.
    assert!(
        html.contains(
            "<td>n2</td><td>&lt;b&gt;evil&lt;/b&gt;</td><td>unreachable</td><td>3</td><td>1</td>"
        ),
        "{html}"
    );
    assert!(
        html.contains("<td>n1</td><td>127.0.0.1:7001</td><td>this node</td><td>3</td><td>0</td>"),
        "{html}"
    );
    assert!(html.contains("<p id=moves>none</p>"), "{html}");
}

#[test]
fn text_from_the_node_is_escaped() {
    let snapshot = snapshot(map(&[b"<script>"], &[1]), &[]);
    let html = render_page(Some(&snapshot), 10);
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<b>evil"), "{html}");
    assert!(html.contains("[, &lt;script&gt;)"), "{html}");
    assert!(
        html.contains("Not ready: 2 of 5 ranges &lt;have&gt; no leader &amp; more"),
        "{html}"
    );
}

#[test]
fn tables_stop_at_the_row_limit_and_count_the_rest() {
    let boundaries: Vec<Vec<u8>> = (1..10_u8).map(|byte| vec![byte]).collect();
    let boundaries: Vec<&[u8]> = boundaries.iter().map(Vec::as_slice).collect();
    let snapshot = snapshot(map(&boundaries, &[1]), &[]);
    let html = render_page(Some(&snapshot), 4);
    assert_eq!(html.matches("<tr><td>r").count(), 4, "{html}");
    assert!(html.contains("… and 6 more ranges"), "{html}");
    let meta = snapshot.meta.as_ref().expect("a map");
    assert_eq!(meta.map.ranges().count(), 10);
}

#[test]
fn long_keys_are_cut() {
    let long = [b'a'; 100];
    let snapshot = snapshot(map(&[&long], &[1]), &[]);
    let html = render_page(Some(&snapshot), 10);
    assert!(
        html.contains(&format!("{}…", "a".repeat(KEY_BYTES_SHOWN))),
        "{html}"
    );
    assert!(!html.contains(&"a".repeat(KEY_BYTES_SHOWN + 1)), "{html}");
}

#[test]
fn rates_come_from_consecutive_samples() {
    let snapshot = snapshot(map(&[], &[1]), &[]);
    assert_eq!(rates(&snapshot.samples), vec![(10.0, 5.0), (20.0, 10.0)]);
    let html = render_page(Some(&snapshot), 10);
    assert!(html.contains("<b id=requests-per-second>20</b>"), "{html}");
    assert!(html.contains("<polyline"), "{html}");
    let one = &snapshot.samples[..1];
    assert!(rates(one).is_empty());
}

#[test]
fn before_the_map_is_copied_the_page_says_it_comes_next() {
    let mut snapshot = snapshot(map(&[], &[1]), &[]);
    snapshot.meta = None;
    let html = render_page(Some(&snapshot), 10);
    assert!(html.contains("<p id=map-pending>"), "{html}");
    assert!(!html.contains("<table id=ranges>"), "{html}");
    assert!(html.contains("<b id=requests-per-second>20</b>"), "{html}");
    assert!(
        html.contains("<p id=moves>They come with the range map.</p>"),
        "{html}"
    );
}

#[test]
fn before_the_first_publication_the_page_says_it_is_starting() {
    let html = render_page(None, 10);
    assert!(
        html.contains("Starting: the node has not published"),
        "{html}"
    );
    assert!(
        html.contains("<meta http-equiv=refresh content=3>"),
        "{html}"
    );
    assert!(html.ends_with("</html>\n"));
}

#[test]
fn the_moves_in_flight_are_listed_from_the_meta_state() {
    use flotilla_shard_manager::placement::{Decision, NodeView, OperatorKind, RangeView, Step};
    let mut snapshot = snapshot(map(&[], &[1, 2]), &[(0, Some(1))]);
    let mut meta = MetaState::clone(snapshot.meta.as_deref().expect("a map"));
    for node in 1..=3 {
        meta.cluster
            .upsert_node(NodeView::up(NodeId(node), 0))
            .expect("a node");
    }
    let range = RangeView::voters(RangeId(1), GroupId(1), &[NodeId(1), NodeId(2)]);
    meta.cluster.upsert_range(range).expect("a range");
    let start = Decision::Start {
        range: RangeId(1),
        kind: OperatorKind::Manual,
        steps: vec![
            Step::AddLearner { node: NodeId(3) },
            Step::Promote {
                node: NodeId(3),
                demote: Some(NodeId(2)),
            },
            Step::Remove { node: NodeId(2) },
        ],
        now_ms: 0,
        decided_on: None,
    };
    meta.cluster.apply(&start).expect("started");
    snapshot.meta = Some(Arc::new(meta));
    let html = render_page(Some(&snapshot), 10);
    assert!(html.contains("<table id=moves>"), "{html}");
    assert!(
        html.contains(
            "<tr><td>op0</td><td>r1</td><td>manual</td><td>1 of 3: add-learner n3</td>\
             <td>add-learner n3, promote n3 demote n2, remove n2</td></tr>"
        ),
        "{html}"
    );
    assert!(
        html.contains("the meta leader's view (this node)"),
        "{html}"
    );
    assert!(!html.contains("<p id=moves>none</p>"), "{html}");
}

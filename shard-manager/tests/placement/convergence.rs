//! Property: from a random cluster (one node lost for good, one draining, empty nodes added,
//! ranges short of a voter, stray learners, random limits), repeatedly applying the driver's
//! operators with instantly completed steps reaches a state that is fully replicated and
//! balanced, and no range is ever below a majority of live voters on the way.

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::RangeId;
use flotilla_shard_manager::placement::model::Model;
use flotilla_shard_manager::placement::{
    Liveness, NodeState, NodeView, PlacementConfig, RangeView, Replica, ReplicaRole, liveness,
};
use proptest::prelude::*;

const NOW_MS: u64 = 10_000;

#[derive(Clone, Debug)]
struct Cluster {
    node_count: u64,
    empty_count: u64,
    /// (first node, two offsets, short, stray learner offset, leader index) per range.
    ranges: Vec<(u64, u64, u64, bool, Option<u64>, usize)>,
    lost: Option<(u64, bool)>,
    draining: Option<u64>,
    moves_per_node: usize,
    moves: usize,
    transfers_per_node: usize,
    transfers: usize,
    scan: usize,
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (3u64..9, 0u64..4).prop_flat_map(|(node_count, empty_count)| {
        let range = (
            0..node_count,
            1..node_count,
            1..node_count,
            prop::bool::weighted(0.1),
            prop::option::weighted(0.1, 0..node_count + empty_count),
            0usize..3,
        );
        (
            Just(node_count),
            Just(empty_count),
            prop::collection::vec(range, 1..40),
            prop::option::of((0..node_count, any::<bool>())),
            prop::option::of(0..node_count + empty_count),
            (1usize..4, 0usize..12, 1usize..4, 0usize..8, 8usize..200),
        )
            .prop_map(
                |(node_count, empty_count, ranges, lost, draining, limits)| Cluster {
                    node_count,
                    empty_count,
                    ranges,
                    lost,
                    draining,
                    moves_per_node: limits.0,
                    moves: limits.0 + limits.1,
                    transfers_per_node: limits.2,
                    transfers: limits.2 + limits.3,
                    scan: limits.4,
                },
            )
    })
}

fn build(cluster: &Cluster) -> Option<Model> {
    let config = PlacementConfig {
        down_after_ms: 1000,
        heartbeat_stale_ms: 100,
        moves_per_node_max: cluster.moves_per_node,
        moves_in_flight_max: cluster.moves,
        leader_transfers_per_node_max: cluster.transfers_per_node,
        leader_transfers_in_flight_max: cluster.transfers,
        ranges_scanned_per_tick_max: cluster.scan,
        ..PlacementConfig::default()
    };
    let mut model = Model::new(config).unwrap();
    model.now_ms = NOW_MS;
    let total = cluster.node_count + cluster.empty_count;
    let lost = cluster.lost.map(|(node, _)| NodeId(node + 1));
    let draining = cluster
        .draining
        .map(|node| NodeId(node + 1))
        .filter(|node| Some(*node) != lost);
    let receiving = total - u64::from(lost.is_some()) - u64::from(draining.is_some());
    if receiving < 3 {
        return None;
    }
    for id in (1..=total).map(NodeId) {
        model.view.upsert_node(NodeView::up(id, NOW_MS)).unwrap();
    }
    for (index, spec) in cluster.ranges.iter().enumerate() {
        let range = range(cluster, index as u64 + 1, spec, lost)?;
        model.view.upsert_range(range).unwrap();
    }
    if let Some((node, removed)) = cluster.lost {
        let state = if removed {
            NodeState::Removed
        } else {
            NodeState::Down { since_ms: 0 }
        };
        model.view.set_node_state(NodeId(node + 1), state).unwrap();
    }
    if let Some(node) = draining {
        model
            .view
            .set_node_state(node, NodeState::Draining)
            .unwrap();
    }
    Some(model)
}

/// A range on three distinct nodes among the first `node_count` (two if short, avoiding the
/// lost node so it keeps a majority), maybe with a learner.
fn range(
    cluster: &Cluster,
    id: u64,
    &(first, a, b, short, learner, leader): &(u64, u64, u64, bool, Option<u64>, usize),
    lost: Option<NodeId>,
) -> Option<RangeView> {
    let n = cluster.node_count;
    let mut voters: Vec<NodeId> = vec![NodeId(first + 1)];
    for offset in [a, b, 1, 2] {
        let node = NodeId((first + offset) % n + 1);
        if !voters.contains(&node) && voters.len() < 3 {
            voters.push(node);
        }
    }
    if short {
        voters.retain(|node| Some(*node) != lost);
        voters.truncate(2);
    }
    if voters.len() < 2 {
        return None;
    }
    let mut range = RangeView::voters(RangeId(id), GroupId(id), &voters);
    range.leader = Some(voters[leader % voters.len()]).filter(|node| Some(*node) != lost);
    if let Some(node) = learner
        .map(|node| NodeId(node + 1))
        .filter(|node| !voters.contains(node))
    {
        range.replicas.push(Replica {
            node,
            role: ReplicaRole::Learner,
        });
    }
    Some(range)
}

fn alive(model: &Model, node: NodeId) -> bool {
    let view = model.view.node(node).unwrap();
    liveness(view, model.now_ms, model.driver.config()) != Liveness::Dead
}

fn receives(model: &Model, node: NodeId) -> bool {
    let view = model.view.node(node).unwrap();
    view.state == NodeState::Up && alive(model, node)
}

fn check_majorities(model: &Model) {
    for range in model.view.ranges() {
        let voters = range.voter_nodes().count();
        let live = range
            .voter_nodes()
            .filter(|&node| alive(model, node))
            .count();
        assert!(
            live * 2 > voters,
            "r{} below a live majority: {range:?}",
            range.id.0
        );
    }
}

fn spread(counts: impl Iterator<Item = usize>) -> usize {
    let counts: Vec<usize> = counts.collect();
    counts.iter().max().unwrap() - counts.iter().min().unwrap()
}

fn check_converged(model: &Model) {
    let receiving: Vec<NodeId> = model
        .view
        .nodes()
        .map(|node| node.id)
        .filter(|&node| receives(model, node))
        .collect();
    for range in model.view.ranges() {
        assert_eq!(
            range.voter_nodes().count(),
            3,
            "r{} not fully replicated",
            range.id.0
        );
        assert_eq!(
            range.learner_nodes().count(),
            0,
            "r{} keeps a learner",
            range.id.0
        );
        assert!(
            range.voter_nodes().all(|node| receiving.contains(&node)),
            "{range:?}"
        );
        assert!(
            range
                .leader
                .is_some_and(|leader| receiving.contains(&leader)),
            "{range:?}"
        );
    }
    for node in model
        .view
        .nodes()
        .filter(|node| !receiving.contains(&node.id))
    {
        assert_eq!(
            model.view.replica_count(node.id),
            0,
            "{} still holds replicas",
            node.id
        );
    }
    let replicas = spread(receiving.iter().map(|&node| model.view.replica_count(node)));
    assert!(replicas <= 1, "replica counts differ by {replicas}");
    let leaders = spread(receiving.iter().map(|&node| model.view.leader_count(node)));
    assert!(leaders <= 1, "leader counts differ by {leaders}");
}

proptest! {
    // 256 cases by default; `PROPTEST_CASES=20000` for a longer search.

    #[test]
    fn random_clusters_converge_without_losing_a_majority(cluster in cluster()) {
        let Some(mut model) = build(&cluster) else {
            return Ok(());
        };
        check_majorities(&model);
        let rounds = model.run_until_idle(5_000, check_majorities).unwrap();
        prop_assert!(rounds.is_some(), "did not settle");
        check_converged(&model);
    }
}

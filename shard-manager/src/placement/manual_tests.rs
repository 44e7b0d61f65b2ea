//! Manual operators: what a request is checked against, the steps it becomes, and that it runs
//! to the end through `ClusterView::apply` and the progress rule like the driver's own.
#![allow(clippy::unwrap_used)]

use super::model::Model;
use super::*;
use crate::range::RangeId;
use flotilla_raft::{GroupId, NodeId};

/// `nodes` nodes up at time 0 and range r1 on voters n1, n2, n3, led by n1.
fn model(config: PlacementConfig, nodes: u64) -> Model {
    let mut model = Model::new(config).unwrap();
    for id in 1..=nodes {
        model.view.upsert_node(NodeView::up(NodeId(id), 0)).unwrap();
    }
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    model
        .view
        .upsert_range(RangeView::voters(RangeId(1), GroupId(1), &voters))
        .unwrap();
    model
}

fn move_replica(from: u64, to: u64) -> ManualRequest {
    ManualRequest::MoveReplica {
        range: RangeId(1),
        from: NodeId(from),
        to: NodeId(to),
    }
}

fn transfer(to: u64) -> ManualRequest {
    ManualRequest::TransferLeader {
        range: RangeId(1),
        to: NodeId(to),
    }
}

fn ask(model: &Model, request: ManualRequest) -> Result<String, ManualError> {
    let decision = model.driver.manual(&model.view, request, model.now_ms)?;
    Ok(decision.to_string())
}

/// Starts `request` and runs the model until nothing is in flight; the rounds it took.
fn run(model: &mut Model, request: ManualRequest) -> usize {
    let decision = model
        .driver
        .manual(&model.view, request, model.now_ms)
        .unwrap();
    model.view.apply(&decision).unwrap();
    model.run_until_idle(20, |_| {}).unwrap().unwrap()
}

fn voters(model: &Model) -> Vec<u64> {
    let range = model.view.range(RangeId(1)).unwrap();
    let mut voters: Vec<u64> = range.voter_nodes().map(|node| node.0).collect();
    voters.sort_unstable();
    voters
}

#[test]
fn a_move_uses_the_rules_steps_and_runs_to_the_end() {
    let mut model = model(PlacementConfig::default(), 4);
    assert_eq!(
        ask(&model, move_replica(3, 4)).unwrap(),
        "start r1 manual: add-learner n4, promote n4 demote n3, remove n3"
    );
    run(&mut model, move_replica(3, 4));
    assert_eq!(voters(&model), [1, 2, 4]);
    let range = model.view.range(RangeId(1)).unwrap();
    assert_eq!(range.replicas.len(), 3, "the source's replica is gone");
    assert_eq!(model.view.operators().count(), 0);
    assert_eq!(model.view.moves_in_flight, 0, "the limits are given back");
}

#[test]
fn a_move_off_the_leader_hands_leadership_over_first() {
    let mut model = model(PlacementConfig::default(), 4);
    assert_eq!(
        ask(&model, move_replica(1, 4)).unwrap(),
        "start r1 manual: transfer-leader n1->n2, add-learner n4, promote n4 demote n1, \
         remove n1"
    );
    run(&mut model, move_replica(1, 4));
    assert_eq!(voters(&model), [2, 3, 4]);
    let leader = model.view.range(RangeId(1)).unwrap().leader;
    assert!(
        leader.is_some_and(|leader| leader != NodeId(1)),
        "{leader:?}"
    );
}

#[test]
fn a_transfer_moves_the_leadership_and_counts_as_a_transfer() {
    let mut model = model(PlacementConfig::default(), 3);
    let decision = model.driver.manual(&model.view, transfer(3), 0).unwrap();
    assert_eq!(
        decision.to_string(),
        "start r1 manual: transfer-leader n1->n3"
    );
    model.view.apply(&decision).unwrap();
    assert_eq!(
        (model.view.transfers_in_flight, model.view.moves_in_flight),
        (1, 0)
    );
    model.carry_out_steps().unwrap();
    assert_eq!(
        started(&model.tick().unwrap()),
        ["finish op0"],
        "the progress rule finishes it"
    );
    let range = model.view.range(RangeId(1)).unwrap();
    assert_eq!(range.leader, Some(NodeId(3)));
}

fn started(decisions: &[Decision]) -> Vec<String> {
    decisions.iter().map(ToString::to_string).collect()
}

#[test]
fn requests_that_do_not_fit_are_refused_with_the_reason() {
    let mut model = model(PlacementConfig::default(), 6);
    let learner = Replica {
        node: NodeId(5),
        role: ReplicaRole::Learner,
    };
    let mut range = model.view.range(RangeId(1)).unwrap().clone();
    range.replicas.push(learner);
    model.view.upsert_range(range).unwrap();
    model
        .view
        .set_node_state(NodeId(6), NodeState::Draining)
        .unwrap();
    let unknown_range = ManualRequest::TransferLeader {
        range: RangeId(9),
        to: NodeId(2),
    };
    let cases = [
        (unknown_range, "no range r9 is known"),
        (move_replica(4, 6), "n4 holds no replica of range r1"),
        (
            move_replica(5, 4),
            "n5 holds only a learner of range r1: only a voter can be moved",
        ),
        (
            move_replica(2, 3),
            "n3 already holds a replica of range r1: two replicas of a range never share a node",
        ),
        (move_replica(2, 7), "no node n7 is known"),
        (
            move_replica(2, 6),
            "n6 is draining, and only a node that is up receives replicas and leaders",
        ),
        (
            transfer(4),
            "n4 holds no voter of range r1: only a voter can lead",
        ),
        (
            transfer(5),
            "n5 holds no voter of range r1: only a voter can lead",
        ),
        (transfer(1), "n1 already leads range r1"),
    ];
    for (request, expected) in cases {
        let refused = ask(&model, request).map_err(|error| error.to_string());
        assert_eq!(refused, Err(expected.to_string()), "{request}");
    }
}

#[test]
fn a_target_that_is_down_removed_or_silent_is_refused() {
    let config = PlacementConfig {
        heartbeat_stale_ms: 100,
        ..PlacementConfig::default()
    };
    let mut model = model(config, 6);
    let down = NodeState::Down { since_ms: 0 };
    model.view.set_node_state(NodeId(4), down).unwrap();
    model
        .view
        .set_node_state(NodeId(5), NodeState::Removed)
        .unwrap();
    model.now_ms = 1000;
    for node in 1..=3 {
        model.view.heartbeat(NodeId(node), 1000, 0, 0).unwrap();
    }
    assert_eq!(
        ask(&model, move_replica(1, 4)),
        Err(ManualError::TargetNotUp {
            node: NodeId(4),
            state: down
        })
    );
    assert!(matches!(
        ask(&model, move_replica(1, 5)),
        Err(ManualError::TargetNotUp { .. })
    ));
    assert_eq!(
        ask(&model, move_replica(1, 6)),
        Err(ManualError::TargetNotLive(NodeId(6)))
    );
    model.view.heartbeat(NodeId(6), 1000, 0, 0).unwrap();
    assert!(ask(&model, move_replica(1, 6)).is_ok());
}

#[test]
fn one_operator_per_range_but_the_limits_are_bypassed() {
    let config = PlacementConfig {
        moves_per_node_max: 1,
        moves_in_flight_max: 1,
        ..PlacementConfig::default()
    };
    let mut model = model(config, 5);
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    model
        .view
        .upsert_range(RangeView::voters(RangeId(2), GroupId(2), &voters))
        .unwrap();
    let decision = model
        .driver
        .manual(&model.view, move_replica(3, 4), 0)
        .unwrap();
    let id = model.view.apply(&decision).unwrap().unwrap();
    assert_eq!(
        ask(&model, transfer(2)),
        Err(ManualError::RangeBusy {
            range: RangeId(1),
            operator: id
        })
    );
    // The cluster-wide move limit is spent, yet a person's move on another range starts.
    let other = ManualRequest::MoveReplica {
        range: RangeId(2),
        from: NodeId(3),
        to: NodeId(4),
    };
    let decision = model.driver.manual(&model.view, other, 0).unwrap();
    model.view.apply(&decision).unwrap();
    assert_eq!(model.view.moves_in_flight, 2, "both count while in flight");
}

#[test]
fn a_manual_move_is_abandoned_like_the_rules_moves() {
    let config = PlacementConfig {
        step_timeout_ms: 100,
        ..PlacementConfig::default()
    };
    let mut model = model(config, 5);
    let decision = model
        .driver
        .manual(&model.view, move_replica(3, 4), 0)
        .unwrap();
    model.view.apply(&decision).unwrap();
    model
        .view
        .set_node_state(NodeId(4), NodeState::Draining)
        .unwrap();
    assert_eq!(
        started(&model.tick().unwrap())[..1],
        ["abandon op0: the target n4 is no longer available".to_string()]
    );
    let decision = model
        .driver
        .manual(&model.view, move_replica(3, 5), 0)
        .unwrap();
    model.view.apply(&decision).unwrap();
    model.now_ms = 100;
    for node in 1..=5 {
        model.view.heartbeat(NodeId(node), 100, 0, 0).unwrap();
    }
    assert_eq!(
        started(&model.tick().unwrap())[..1],
        ["abandon op1: step 0 timed out".to_string()]
    );
}

#[test]
fn the_manual_kind_is_encoded_after_the_older_kinds() {
    // The meta log encodes a kind by its position: the older ones keep theirs.
    let encoded = |kind| postcard::to_allocvec(&kind).unwrap();
    assert_eq!(encoded(OperatorKind::LeaderBalance), [4]);
    assert_eq!(encoded(OperatorKind::Manual), [5]);
}

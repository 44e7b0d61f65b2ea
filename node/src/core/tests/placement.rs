//! The placement rules of the node core that only the whole-cluster simulator exercised:
//! leaderships go only to peers heard from, reports carry only committed memberships, and
//! the driver's wait on its own meta proposal holds only within that proposal's term.

#![allow(clippy::unwrap_used)]

use super::cluster::{
    HEARTBEAT_STALE_MS, NODE_TIMEOUT_MS, RANGE_GROUP, TICK_MS, TestCluster, placement_config,
    round_ms,
};
use crate::api::{AdminCommand, Reply};
use flotilla_raft::{ChangeStep, EntryPayload, LogIndex, NodeId, Role};
use flotilla_shard_manager::placement::{
    Decision, Liveness, ManualRequest, NodeState, ReplicaRole, liveness,
};
use flotilla_shard_manager::{META_GROUP, MetaCommand};

/// A node of the cluster that is none of `nodes`.
fn other_than(cluster: &TestCluster, nodes: &[NodeId]) -> NodeId {
    cluster
        .node_ids()
        .into_iter()
        .find(|node| !nodes.contains(node))
        .expect("a node left")
}

/// Commit ca7cf9a: the driver's view of a node lags by up to `heartbeat_stale_ms`, so it may
/// ask for a transfer to a node the range leader no longer hears; a transfer to it would
/// refuse every write for an election timeout, again each round. The leader leaves such a
/// step alone (the operator times out instead) and keeps taking writes.
#[test]
fn a_range_leader_hands_its_leadership_only_to_a_peer_it_hears() {
    let mut cluster = TestCluster::new(3, 3);
    cluster.settle();
    let meta_leader = cluster.leader_of(META_GROUP).unwrap();
    let leader = cluster.leader_of(RANGE_GROUP).unwrap();
    let target = other_than(&cluster, &[leader, meta_leader]);
    cluster.cut(leader, target);
    cluster.run_for(2 * NODE_TIMEOUT_MS);
    assert!(
        !cluster
            .core(leader)
            .multi()
            .live_peers()
            .any(|peer| peer == target),
        "the leader no longer hears {target}"
    );
    let range = cluster.range();
    let transfer = ManualRequest::TransferLeader { range, to: target };
    let asked = cluster.admin(meta_leader, AdminCommand::Manual(transfer));
    cluster.run_until(1_000, |cluster| cluster.answer(asked).is_some());
    let answer = cluster.answer(asked);
    assert!(
        matches!(answer, Some(Ok(Reply::Applied))),
        "the driver's view still has {target} live, and records the transfer: {answer:?}"
    );
    // Three rounds, a write each tick: the leader had the step to carry out every round.
    let mut puts = Vec::new();
    for tick in 0..3 * round_ms() / TICK_MS {
        puts.push(cluster.put(leader, format!("key-{tick}").as_bytes()));
        cluster.tick();
    }
    cluster.run_for(round_ms());
    for put in puts {
        let answer = cluster.answer(put).unwrap();
        assert!(
            matches!(answer, Ok(Reply::Kv(_))),
            "a write to the leader of a range whose transfer to an unheard node is pending: \
             {answer:?}"
        );
    }
    assert_eq!(cluster.leader_of(RANGE_GROUP), Some(leader));
    let operator = cluster
        .core(leader)
        .meta()
        .cluster
        .operator_for(range)
        .cloned();
    assert!(
        operator.is_some_and(|operator| operator.transfer() == Some((leader, target))),
        "the transfer is still in flight (not given up): the leader had it to carry out"
    );
}

/// The meta group's leadership leaves a draining leader only for a voter the driver's view
/// has heard from within `heartbeat_stale_ms` (`place_meta_replicas`, "usable"): the other,
/// silent voter comes first by id and is as caught up as it can be, but is passed over.
#[test]
fn a_draining_meta_leader_hands_the_meta_group_only_to_a_voter_heard_from() {
    drain_the_meta_leader_with_a_silent_voter(HEARTBEAT_STALE_MS + 2 * round_ms(), false);
}

/// A voter cut off for less than the driver's staleness limit still looks live to the driver,
/// but the node heartbeat already says it is out of reach: the draining meta leader hands the
/// meta group to the voter it hears, not to that one (which would hold meta writes until the
/// transfer timed out).
#[test]
fn a_draining_meta_leader_skips_a_voter_it_stopped_hearing_moments_ago() {
    drain_the_meta_leader_with_a_silent_voter(2 * NODE_TIMEOUT_MS, true);
}

/// Three voters; the one first by id among the meta leader's peers is cut off for
/// `silent_ms` (the driver still counting it live or not, as `driver_counts_it_live` says),
/// then the meta leader is drained: it must hand the meta group to the other voter.
fn drain_the_meta_leader_with_a_silent_voter(silent_ms: u64, driver_counts_it_live: bool) {
    let mut cluster = TestCluster::new(3, 3);
    cluster.settle();
    let meta_leader = cluster.leader_of(META_GROUP).unwrap();
    let silent = other_than(&cluster, &[meta_leader]);
    let heard = other_than(&cluster, &[meta_leader, silent]);
    assert!(
        silent < heard,
        "the silent voter is the first candidate heir"
    );
    cluster.isolate(silent);
    cluster.run_for(silent_ms);
    let now_ms = cluster.now_ms();
    let view = &cluster.core(meta_leader).meta().cluster;
    let live = liveness(view.node(silent).unwrap(), now_ms, &placement_config(3));
    assert_eq!(live == Liveness::Live, driver_counts_it_live, "{live:?}");
    let heard_now = cluster
        .core(meta_leader)
        .multi()
        .live_peers()
        .any(|peer| peer == silent);
    assert!(
        !heard_now,
        "the node heartbeat no longer hears the cut voter"
    );
    cluster.set_node_state(meta_leader, meta_leader, NodeState::Draining);
    let handed_over = cluster.run_until(5 * round_ms(), |cluster| {
        cluster.leader_of(META_GROUP) == Some(heard)
    });
    assert!(
        handed_over,
        "the draining meta leader hands the meta group to {heard}, the voter it hears; \
         leader now: {:?}",
        cluster.leader_of(META_GROUP)
    );
}

/// Commit 8b80e39: a membership still in the range log's uncommitted tail may be cut by the
/// next leader, and a record of it would stand ahead of every later report. A leader reports
/// a membership change only once it is committed; then the record takes it.
///
/// Raft puts a membership in force only once its entry is applied, so the report's own check
/// (`membership_index <= committed`) guards against a Raft that puts it in force on append,
/// as the thesis does (§4.1). The test fails when a report carries an uncommitted membership,
/// whatever let it through.
#[test]
fn a_range_leader_reports_a_membership_change_only_once_it_is_committed() {
    let mut cluster = TestCluster::new(3, 2);
    cluster.settle();
    let leader = cluster.leader_of(RANGE_GROUP).unwrap();
    let range = cluster.range();
    let outsider = {
        let raft = cluster.core(leader).multi().group(RANGE_GROUP).unwrap();
        let members: Vec<NodeId> = raft.membership().replicas().collect();
        other_than(&cluster, &members)
    };
    let recorded = |cluster: &TestCluster| {
        let meta_leader = cluster.leader_of(META_GROUP).unwrap();
        let record = cluster
            .core(meta_leader)
            .meta()
            .cluster
            .range(range)
            .unwrap();
        (record.membership_index, record.role_of(outsider))
    };
    let (recorded_before, _) = recorded(&cluster);
    // The change reaches no follower: it stays in the leader's uncommitted tail.
    cluster.lose_entries(leader, RANGE_GROUP);
    let change = cluster
        .core_mut(leader)
        .multi
        .propose_conf_change(RANGE_GROUP, vec![ChangeStep::AddLearner(outsider)])
        .unwrap();
    cluster.flush(leader);
    // More than a full report's period (every 80 rounds), the leader leading throughout.
    for _ in 0..82 {
        cluster.run_for(round_ms());
        let raft = cluster.core(leader).multi().group(RANGE_GROUP).unwrap();
        assert_eq!(raft.role(), Role::Leader, "{leader} leads throughout");
        assert!(
            raft.log().committed() < change,
            "the change is not committed"
        );
        assert_eq!(
            recorded(&cluster),
            (recorded_before, None),
            "the meta group records no membership the range has not committed"
        );
    }
    cluster.heal();
    let taken = cluster.run_until(10 * round_ms(), |cluster| {
        recorded(cluster) == (change.0, Some(ReplicaRole::Learner))
    });
    assert!(
        taken,
        "once committed, the change is reported and recorded: {:?}",
        recorded(&cluster)
    );
}

/// Commit e761ed2: the driver decides again only once its last meta proposal is applied, but
/// a meta leadership lost and won back can cut that proposal, and the log may never reach its
/// index again. A proposal of an earlier meta term never holds the driver: here the meta
/// leader's driver proposes to finish an operator while it is cut off, the meta group is led
/// by another node for a while and comes back with a log short of that proposal, and the
/// driver still finishes the operator.
#[test]
fn a_meta_proposal_of_an_earlier_term_never_holds_the_placement_driver() {
    let mut cluster = TestCluster::new(3, 3);
    cluster.settle();
    let meta_leader = cluster.leader_of(META_GROUP).unwrap();
    let range_leader = cluster.leader_of(RANGE_GROUP).unwrap();
    let to = other_than(&cluster, &[meta_leader, range_leader]);
    let range = cluster.range();
    let transfer = ManualRequest::TransferLeader { range, to };
    let asked = cluster.admin(meta_leader, AdminCommand::Manual(transfer));
    // The range leader hands over, and `to` reports it leads; the meta leader's driver
    // finishes the operator at its next round (it did not run since the report arrived).
    assert!(cluster.run_until(1_000, |cluster| {
        let view = &cluster.core(meta_leader).meta().cluster;
        view.range(range).unwrap().leader == Some(to)
    }));
    assert!(matches!(cluster.answer(asked), Some(Ok(Reply::Applied))));
    let first_term = cluster.term(meta_leader, META_GROUP);

    // Cut off before that round, the meta leader takes other writes (none commits), then its
    // driver proposes the finish behind them.
    cluster.isolate(meta_leader);
    for _ in 0..4 {
        let state = AdminCommand::SetNodeState {
            node: meta_leader,
            state: NodeState::Up,
        };
        let asked = cluster.admin(meta_leader, state);
        assert!(cluster.answer(asked).is_none(), "proposed, not refused");
    }
    cluster.run_for(round_ms());
    let proposed = meta_last_index(&cluster, meta_leader);
    assert!(
        matches!(
            meta_command_at(&cluster, meta_leader, proposed),
            MetaCommand::Placement(Decision::Finish { .. })
        ),
        "the driver's last proposal is the finish, in term {first_term}"
    );

    // The others elect a leader; once healed, it hands the meta group back at once.
    assert!(cluster.run_until(5_000, |cluster| {
        cluster
            .leader_of(META_GROUP)
            .is_some_and(|leader| leader != meta_leader)
    }));
    let interim = cluster.leader_of(META_GROUP).unwrap();
    cluster.heal();
    cluster
        .core_mut(interim)
        .multi
        .transfer_leader(META_GROUP, meta_leader)
        .unwrap();
    cluster.flush(interim);
    assert!(cluster.run_until(1_000, |cluster| {
        cluster.leader_of(META_GROUP) == Some(meta_leader)
    }));
    assert!(cluster.term(meta_leader, META_GROUP) > first_term);
    let in_flight = |cluster: &TestCluster| {
        let view = &cluster.core(meta_leader).meta().cluster;
        view.operator_for(range).is_some()
    };
    assert!(
        in_flight(&cluster),
        "the finish was cut, and no one else finished it"
    );
    let applied = cluster.core(meta_leader).machines.applied(META_GROUP);
    assert!(
        applied < proposed,
        "the log ({applied}) is short of the cut proposal ({proposed})"
    );

    let finished = cluster.run_until(10 * round_ms(), |cluster| !in_flight(cluster));
    assert!(
        finished,
        "the driver finishes the operator (applied {}, the cut proposal at {proposed})",
        cluster.core(meta_leader).machines.applied(META_GROUP)
    );
}

/// The meta command at `index` of `node`'s meta log.
fn meta_command_at(cluster: &TestCluster, node: NodeId, index: LogIndex) -> MetaCommand {
    let raft = cluster.core(node).multi().group(META_GROUP).unwrap();
    let entries = raft.log().entries(index, index.next(), u64::MAX).unwrap();
    let EntryPayload::Normal(bytes) = &entries[0].payload else {
        panic!("not a command: {:?}", entries[0]);
    };
    MetaCommand::decode(bytes).unwrap()
}

fn meta_last_index(cluster: &TestCluster, node: NodeId) -> LogIndex {
    let raft = cluster.core(node).multi().group(META_GROUP).unwrap();
    raft.log().last_index()
}

/// A report lost on the way is not waited for until the next full report (every 80 rounds):
/// the reporter's digest of what it reported differs from the meta leader's of what it took,
/// twice, and the meta leader asks for a full report. Here the range's new leader's report,
/// naming it, is lost: the meta leader learns who leads it within a few digests.
#[test]
fn a_lost_report_is_made_good_by_a_full_one_the_digests_ask_for() {
    let mut cluster = TestCluster::new(3, 3);
    cluster.settle();
    let meta_leader = cluster.leader_of(META_GROUP).unwrap();
    let leader = cluster.leader_of(RANGE_GROUP).unwrap();
    let target = other_than(&cluster, &[leader, meta_leader]);
    let range = cluster.range();
    let recorded_leader = |cluster: &TestCluster| {
        let meta = cluster.core(meta_leader).meta();
        meta.cluster.range(range).unwrap().leader
    };
    assert_eq!(recorded_leader(&cluster), Some(leader));
    cluster.lose_notes(target);
    cluster
        .core_mut(leader)
        .multi
        .transfer_leader(RANGE_GROUP, target)
        .unwrap();
    cluster.flush(leader);
    let led = cluster.run_until(round_ms(), |cluster| {
        cluster.leader_of(RANGE_GROUP) == Some(target)
    });
    assert!(led, "{target} leads the range");
    cluster.run_for(2 * round_ms());
    assert_eq!(
        recorded_leader(&cluster),
        Some(leader),
        "the report is lost"
    );
    cluster.heal();
    // Two digests apart (8 rounds each) and the full report asked for.
    let learned = cluster.run_until(20 * round_ms(), |cluster| {
        recorded_leader(cluster) == Some(target)
    });
    assert!(learned, "the meta leader learns who leads the range");
}

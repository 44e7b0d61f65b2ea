//! Deterministic counts of what idleness costs on the wire: coalescing makes it O(peer nodes),
//! quiescence makes it zero per group.

use crate::cluster::MultiCluster;
use crate::{leader, settle_evenly};
use flotilla_raft::{GroupId, NodeId};

/// Batches from `source` to `target` during `ticks` node ticks of an idle cluster.
fn batches_between(cluster: &mut MultiCluster, source: NodeId, target: NodeId, ticks: u64) -> u64 {
    let before = cluster
        .wire
        .batches
        .get(&(source, target))
        .copied()
        .unwrap_or(0);
    cluster.run_for(ticks * crate::cluster::TICK_MS);
    cluster
        .wire
        .batches
        .get(&(source, target))
        .copied()
        .unwrap_or(0)
        - before
}

fn heartbeat_batches_per_interval(group_count: u64) -> (u64, u64) {
    let mut cluster = MultiCluster::new(3, group_count, 11, false);
    settle_evenly(&mut cluster);
    cluster.run_for(2_000);
    let intervals = 20;
    let (messages, entries) = (cluster.wire.group_messages, cluster.wire.heartbeat_entries);
    let forward = batches_between(&mut cluster, NodeId(1), NodeId(2), 10 * intervals);
    let backward = batches_between(&mut cluster, NodeId(2), NodeId(1), 10 * intervals);
    assert_eq!(
        cluster.wire.group_messages, messages,
        "an idle group sent a per-group message"
    );
    // Over both windows (2 x 20 intervals) every group heartbeats its two followers once per
    // interval, inside the coalesced batches (allow one interval of phase at each end).
    let heartbeat_entries = cluster.wire.heartbeat_entries - entries;
    let expected = 2 * group_count * 2 * intervals;
    let slack = 2 * group_count * 2;
    assert!(
        heartbeat_entries.abs_diff(expected) <= slack,
        "{heartbeat_entries} heartbeat entries, expected about {expected}"
    );
    (forward / intervals, backward / intervals)
}

/// The largest group count of the coalescing test (`FLOTILLA_MULTI_GROUPS_MAX`, default 3,000;
/// 10,000 gives the same counts and takes a few minutes in a debug build).
fn groups_max() -> u64 {
    std::env::var("FLOTILLA_MULTI_GROUPS_MAX")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3_000)
}

#[test]
fn heartbeat_messages_per_node_pair_do_not_grow_with_the_group_count() {
    let one = heartbeat_batches_per_interval(1);
    let hundred = heartbeat_batches_per_interval(100);
    let many = heartbeat_batches_per_interval(groups_max());
    println!(
        "batches per heartbeat interval, n1->n2 and n2->n1: G=1 {one:?}, G=100 {hundred:?}, G={} {many:?}",
        groups_max()
    );
    // Led evenly, each node sends each peer one coalesced heartbeat and one coalesced response
    // per interval, whatever the group count.
    assert_eq!(hundred, (2, 2));
    assert_eq!(many, hundred);
    // With one group only n1 leads: n1 sends its heartbeat, n2 its response and its (empty)
    // node heartbeat.
    assert_eq!(one, (1, 2));
}

#[test]
fn quiescent_groups_send_no_per_group_message() {
    let mut cluster = quiescent_cluster(300, 5);
    let (messages, heartbeats) = (cluster.wire.group_messages, cluster.wire.heartbeat_entries);
    let pings = cluster.wire.batches.values().sum::<u64>();
    cluster.run_for(100 * crate::cluster::TICK_MS);
    assert_eq!(
        cluster.wire.group_messages, messages,
        "a quiescent group sent a message"
    );
    assert_eq!(
        cluster.wire.heartbeat_entries, heartbeats,
        "a quiescent group sent a heartbeat"
    );
    assert!(
        cluster.wire.batches.values().sum::<u64>() > pings,
        "node liveness pings continue"
    );
}

#[test]
fn a_proposal_wakes_only_its_group() {
    let mut cluster = quiescent_cluster(100, 6);
    let target = GroupId(42);
    assert!(cluster.propose(target, b"wake".to_vec()));
    cluster.run_for(30);
    for id in cluster.node_ids() {
        let multi = cluster.multi(id).unwrap();
        for &group in &cluster.groups {
            if group != target {
                assert!(multi.is_quiescent(group), "{group} woke on {id}");
            }
        }
    }
    assert!(
        !cluster
            .multi(crate::leader(&cluster, target))
            .unwrap()
            .is_quiescent(target)
    );
    assert!(
        cluster.run_until(10_000, |cluster| cluster.acks_applied_everywhere().is_ok()
            && all_quiescent(cluster))
    );
}

/// Three nodes, `group_count` groups led evenly, every group quiescent.
fn quiescent_cluster(group_count: u64, seed: u64) -> MultiCluster {
    let mut cluster = MultiCluster::new(3, group_count, seed, true);
    settle_evenly(&mut cluster);
    let quiet = cluster.run_until(10_000, all_quiescent);
    assert!(quiet, "idle groups did not all quiesce");
    cluster
}

fn all_quiescent(cluster: &MultiCluster) -> bool {
    cluster.node_ids().iter().all(|&id| {
        let multi = cluster.multi(id).unwrap();
        cluster
            .groups
            .iter()
            .all(|&group| multi.is_quiescent(group))
    })
}

#[test]
fn a_leader_node_crash_re_elects_every_quiescent_group_in_few_rounds() {
    let group_count = 1_000;
    let mut cluster = MultiCluster::new(3, group_count, 9, true);
    assert!(cluster.run_until(20_000, MultiCluster::all_groups_led));
    for group in cluster.groups.clone() {
        cluster.transfer(group, NodeId(1));
    }
    let on_one = cluster.run_until(20_000, |cluster| {
        cluster
            .groups
            .iter()
            .all(|&group| cluster.leader_of(group) == Some(NodeId(1)))
    });
    assert!(on_one, "leadership did not move to n1");
    assert!(cluster.run_until(10_000, all_quiescent));
    let terms_before: Vec<u64> = cluster
        .groups
        .iter()
        .map(|&group| cluster.term_of(group))
        .collect();
    cluster.crash(NodeId(1));
    let crashed_at = cluster.now_ms;
    let recovered = cluster.run_until(30_000, MultiCluster::all_groups_led);
    assert!(recovered, "not every group elected a new leader");
    let rounds: Vec<u64> = cluster
        .groups
        .iter()
        .zip(&terms_before)
        .map(|(&group, before)| cluster.term_of(group) - before)
        .collect();
    let max_rounds = *rounds.iter().max().unwrap();
    let mean_rounds = rounds.iter().sum::<u64>() as f64 / rounds.len() as f64;
    println!(
        "{group_count} groups re-elected {} ms after the leader node crashed: election rounds per group mean {mean_rounds:.2}, max {max_rounds}",
        cluster.now_ms - crashed_at
    );
    assert!(
        max_rounds <= 5,
        "an election storm: {max_rounds} rounds for one group"
    );
}

/// A follower node that restarts comes back with its replicas active and leaderless: they
/// pre-vote. Quiescent followers elsewhere must not wake and grant while the leaders' nodes
/// are live, so no group led by another node changes leader or term.
#[test]
fn a_restarted_follower_node_does_not_depose_quiescent_leaders() {
    let mut cluster = quiescent_cluster(60, 12);
    let before: Vec<(GroupId, Option<NodeId>, u64)> = cluster
        .groups
        .iter()
        .map(|&group| (group, cluster.leader_of(group), cluster.term_of(group)))
        .filter(|(_, leader, _)| *leader != Some(NodeId(3)))
        .collect();
    cluster.crash(NodeId(3));
    cluster.run_for(100);
    cluster.restart(NodeId(3));
    cluster.run_for(5_000);
    for (group, leader, term) in before {
        assert_eq!(cluster.leader_of(group), leader, "{group} changed leader");
        assert_eq!(cluster.term_of(group), term, "{group} changed term");
    }
    assert!(
        cluster.run_until(10_000, all_quiescent),
        "the groups quiesce again"
    );
}

/// The led groups MultiRaft keeps are exactly those its node leads, and a leadership transfer
/// is news on both nodes: the host's per-round work walks these instead of every group.
#[test]
fn led_groups_and_news_follow_leadership() {
    let mut cluster = quiescent_cluster(30, 13);
    let led_by = |cluster: &MultiCluster, node: NodeId| -> Vec<GroupId> {
        let multi = cluster.multi(node).unwrap();
        multi.led_groups().collect()
    };
    for node in cluster.node_ids() {
        let expected: Vec<GroupId> = cluster
            .groups
            .iter()
            .copied()
            .filter(|&group| cluster.leader_of(group) == Some(node))
            .collect();
        assert_eq!(
            led_by(&cluster, node),
            expected,
            "{node} leads other groups"
        );
        assert_eq!(cluster.multi(node).unwrap().led_count(), expected.len());
    }
    for node in cluster.node_ids() {
        let _ = cluster.multi_mut(node).unwrap().take_news();
    }
    let group = cluster.groups[0];
    let from = leader(&cluster, group);
    let to = cluster
        .node_ids()
        .into_iter()
        .find(|&node| node != from)
        .unwrap();
    cluster.transfer(group, to);
    assert!(cluster.run_until(10_000, |cluster| cluster.leader_of(group) == Some(to)));
    assert!(!led_by(&cluster, from).contains(&group));
    assert!(led_by(&cluster, to).contains(&group));
    for node in [from, to] {
        let news = cluster.multi_mut(node).unwrap().take_news();
        assert!(news.contains(&group), "{node} was not told of the transfer");
        assert!(
            !news.contains(&cluster.groups[1]),
            "{node} was told of a group that did not change"
        );
    }
}

//! The node's look at its groups for `/metrics` and `/ready`: it visits only the awake ones,
//! and must find what a walk over every group finds.

use super::cluster::{RANGE_GROUP, TestCluster, round_ms};

/// Runs `ticks` ticks, comparing every node's look at its groups with a walk over all of them
/// after each; returns how many looks found quiescent groups.
fn compare_for(cluster: &mut TestCluster, ticks: u64) -> u64 {
    let mut quiescent_seen = 0;
    for _ in 0..ticks {
        cluster.tick();
        for node in cluster.node_ids() {
            let core = cluster.core(node);
            let observed = core.observe_awake_groups();
            assert_eq!(observed, core.observe_every_group(), "node {node:?}");
            quiescent_seen += u64::from(observed.quiescent > 0);
        }
    }
    quiescent_seen
}

#[test]
fn a_look_at_the_awake_groups_finds_what_a_walk_over_all_finds() {
    let mut cluster = TestCluster::new(3, 3);
    cluster.settle();
    assert!(compare_for(&mut cluster, 40) > 0, "no group ever quiesced");
    let leader = cluster.leader_of(RANGE_GROUP).expect("a range leader");
    cluster.put(leader, b"key");
    compare_for(&mut cluster, 20);
    // Its groups' leader lost: followers wake, know no leader for a while, elect.
    cluster.isolate(leader);
    compare_for(&mut cluster, 4 * round_ms() / super::cluster::TICK_MS);
    cluster.heal();
    compare_for(&mut cluster, 4 * round_ms() / super::cluster::TICK_MS);
}

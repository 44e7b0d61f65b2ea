//! MultiRaft: many groups per node, one coalesced heartbeat per node pair, quiescence, and the
//! simulator over whole nodes. Counting tests count messages, never time.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub, dead_code)]

#[path = "../harness/mod.rs"]
mod harness;

mod apply;
mod cluster;
mod counting;
mod failover;
mod links;
mod liveness;
mod sim;
mod trace;

use cluster::MultiCluster;
use flotilla_raft::{GroupId, NodeId};

/// Elects a leader in every group, then spreads leadership evenly over the nodes.
pub fn settle_evenly(cluster: &mut MultiCluster) {
    assert!(
        cluster.run_until(20_000, MultiCluster::all_groups_led),
        "not every group elected a leader"
    );
    let nodes = cluster.node_ids();
    let groups = cluster.groups.clone();
    for (position, &group) in groups.iter().enumerate() {
        cluster.transfer(group, nodes[position % nodes.len()]);
    }
    let balanced = cluster.run_until(20_000, |cluster| {
        groups.iter().enumerate().all(|(position, &group)| {
            cluster.leader_of(group) == Some(nodes[position % nodes.len()])
        })
    });
    assert!(balanced, "leadership did not balance");
}

/// The node that leads `group`.
pub fn leader(cluster: &MultiCluster, group: GroupId) -> NodeId {
    cluster.leader_of(group).expect("a leader")
}

/// The text of a caught panic.
pub fn harness_panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

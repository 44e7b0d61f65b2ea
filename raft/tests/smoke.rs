//! A first check that the harness and the core work together.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::Cluster;

#[test]
fn three_replicas_elect_a_leader_and_agree() {
    let mut cluster = Cluster::new(3, 1);
    let leader = cluster.check_one_leader();
    assert!(cluster.raft(leader).is_some());
    let index = cluster.one(b"hello", 3, false);
    assert_eq!(cluster.n_committed(index).0, 3);
    assert!(cluster.checker.checks > 0);
}

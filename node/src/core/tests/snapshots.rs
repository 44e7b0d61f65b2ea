//! A follower restores a range from its leader's snapshot without the work landing on its Raft
//! loop: a range in memory is decoded, a range in the disk engine ingested into a space of its
//! own, both by the staged check off the loop; at install the node swaps or switches.

#![allow(clippy::unwrap_used)]

use super::cluster::{RANGE_GROUP, Setup, TestCluster};
use crate::api::{AdminCommand, Reply};
use flotilla_raft::NodeId;
use flotilla_shard_manager::META_GROUP;
use flotilla_storage::{Command, Response};

/// Writes `count` keys through `leader`, each answered before the next.
fn write_keys(cluster: &mut TestCluster, leader: NodeId, count: u32) {
    for key in 0..count {
        let asked = cluster.put(leader, &key.to_be_bytes());
        let answered = cluster.run_until(1_000, |cluster| cluster.answer(asked).is_some());
        assert!(answered, "put {key} was not answered");
    }
}

/// A follower cut off while its leader compacts is sent a snapshot. With the ranges in the
/// disk engine, every snapshot of the range it installs was ingested off the loop and switched
/// to at install (`snapshots_restored_off_loop`), and the follower holds every key.
fn a_lagging_follower_restores_the_range_off_the_loop(disk_engine: bool) {
    let setup = Setup {
        disk_engine,
        snapshot_entries: 16,
        ..Setup::default()
    };
    let mut cluster = TestCluster::with_setup(3, 3, setup);
    cluster.settle();
    let leader = cluster.leader_of(RANGE_GROUP).unwrap();
    let meta_leader = cluster.leader_of(META_GROUP).unwrap();
    let follower = cluster
        .node_ids()
        .into_iter()
        .find(|node| *node != leader && *node != meta_leader)
        .expect("three nodes: one neither leads");
    let before = cluster.core(follower).counters();
    cluster.cut(leader, follower);
    write_keys(&mut cluster, leader, 64);
    cluster.heal();
    let leader_applied = cluster
        .core(leader)
        .state_machine(RANGE_GROUP)
        .unwrap()
        .applied();
    let caught_up = cluster.run_until(5_000, |cluster| {
        cluster
            .core(follower)
            .state_machine(RANGE_GROUP)
            .is_some_and(|machine| machine.applied().index >= leader_applied.index)
    });
    assert!(caught_up, "the follower did not catch up");
    let after = cluster.core(follower).counters();
    let restored = after.snapshots_restored_off_loop - before.snapshots_restored_off_loop;
    assert!(
        restored >= 1,
        "no snapshot of the range was restored off the loop"
    );
    // The meta group's log stayed whole on the follower (it was cut from the range's leader
    // only): every snapshot it installed was the range's.
    let installed = after.snapshots_installed - before.snapshots_installed;
    assert_eq!(restored, installed, "a snapshot was restored on the loop");
    let machine = cluster.core(follower).state_machine(RANGE_GROUP).unwrap();
    for key in 0..64_u32 {
        let get = Command::Get {
            key: key.to_be_bytes().to_vec(),
        };
        let answer = machine.read_bounded(&get, 1 << 20).unwrap();
        assert_eq!(answer, Some(Response::Value(Some(b"value".to_vec()))));
    }
}

#[test]
fn a_lagging_follower_restores_a_range_in_the_disk_engine_off_the_loop() {
    a_lagging_follower_restores_the_range_off_the_loop(true);
}

#[test]
fn a_lagging_follower_restores_a_range_in_memory_off_the_loop() {
    a_lagging_follower_restores_the_range_off_the_loop(false);
}

/// The meta group's state is snapshotted off the loop too: its leader compacts its log with a
/// file written from a copy that shares the state's ranges, and a follower cut off meanwhile
/// installs it from a state decoded by the staged check, ending with the leader's state.
#[test]
fn the_meta_group_is_snapshotted_and_restored_off_the_loop() {
    let setup = Setup {
        disk_engine: false,
        snapshot_entries: 16,
        ..Setup::default()
    };
    let mut cluster = TestCluster::with_setup(3, 3, setup);
    cluster.settle();
    let meta_leader = cluster.leader_of(META_GROUP).unwrap();
    let follower = cluster
        .node_ids()
        .into_iter()
        .find(|node| *node != meta_leader)
        .unwrap();
    let (leader_before, follower_before) = (
        cluster.core(meta_leader).counters(),
        cluster.core(follower).counters(),
    );
    cluster.cut(meta_leader, follower);
    for _ in 0..200 {
        let asked = cluster.admin(meta_leader, AdminCommand::ReserveRange);
        let answered = cluster.run_until(1_000, |cluster| cluster.answer(asked).is_some());
        assert!(answered, "a range id was not reserved");
    }
    let leader_after = cluster.core(meta_leader).counters();
    let written = leader_after.meta_snapshots_written - leader_before.meta_snapshots_written;
    let taken = leader_after.snapshots_taken - leader_before.snapshots_taken;
    assert!(
        written >= 1,
        "the meta leader wrote no snapshot off the loop"
    );
    // The range stayed idle: every snapshot taken was the meta group's, written off the loop.
    assert_eq!(written, taken, "a snapshot was encoded on the loop");
    cluster.heal();
    let caught_up = cluster.run_until(5_000, |cluster| {
        cluster.core(follower).meta().encode() == cluster.core(meta_leader).meta().encode()
    });
    assert!(
        caught_up,
        "the follower's meta state never matched its leader's"
    );
    let follower_after = cluster.core(follower).counters();
    let installed = follower_after.snapshots_installed - follower_before.snapshots_installed;
    let meta_installed =
        follower_after.meta_snapshots_installed - follower_before.meta_snapshots_installed;
    let restored =
        follower_after.snapshots_restored_off_loop - follower_before.snapshots_restored_off_loop;
    assert!(
        meta_installed >= 1,
        "the follower caught up without a meta snapshot"
    );
    assert_eq!(
        installed, meta_installed,
        "the idle range installed a snapshot"
    );
    assert_eq!(
        restored, installed,
        "a meta snapshot was decoded on the loop"
    );
}

/// A range that applies fewer entries than `snapshot_entries`, beside a meta group that barely
/// writes, kept every segment since their first entries. Past `compact_beyond_segments`
/// segments both are compacted and the old segments go, on every node, and every key still
/// reads.
fn old_segments_go_though_no_group_reached_its_snapshot_entries(disk_engine: bool) {
    const KEEP: usize = 3;
    let setup = Setup {
        disk_engine,
        snapshot_entries: 1_000_000,
        compact_beyond_segments: KEEP,
        value_bytes_max: 16 << 10,
    };
    let mut cluster = TestCluster::with_setup(3, 3, setup);
    cluster.settle();
    let leader = cluster.leader_of(RANGE_GROUP).unwrap();
    let value = vec![7_u8; 16 << 10];
    // 2.5 MiB of values: about ten of the test log's 256 KiB segments.
    let keys = 160_u32;
    for key in 0..keys {
        let asked = cluster.put_value(leader, &key.to_be_bytes(), &value);
        let answered = cluster.run_until(1_000, |cluster| cluster.answer(asked).is_some());
        assert!(answered, "put {key} was not answered");
        let answer = cluster.answer(asked);
        assert!(
            matches!(answer, Some(Ok(Reply::Kv(Response::Written { .. })))),
            "put {key}: {answer:?}"
        );
    }
    cluster.run_for(1_000);
    for node in cluster.node_ids() {
        let core = cluster.core(node);
        let segments = core.engine.segment_count();
        assert!(
            segments <= KEEP + 2,
            "{node} holds {segments} log segments, past {KEEP} and the one being written"
        );
        assert!(
            core.counters().compactions_forced >= 1,
            "{node} forced no compaction"
        );
        let machine = core.state_machine(RANGE_GROUP).unwrap();
        for key in 0..keys {
            let get = Command::Get {
                key: key.to_be_bytes().to_vec(),
            };
            let answer = machine.read_bounded(&get, 1 << 20).unwrap();
            assert_eq!(
                answer,
                Some(Response::Value(Some(value.clone()))),
                "{node}: key {key}"
            );
        }
    }
}

#[test]
fn old_segments_go_though_no_range_in_memory_reached_its_snapshot_entries() {
    old_segments_go_though_no_group_reached_its_snapshot_entries(false);
}

#[test]
fn old_segments_go_though_no_range_on_disk_reached_its_snapshot_entries() {
    old_segments_go_though_no_group_reached_its_snapshot_entries(true);
}

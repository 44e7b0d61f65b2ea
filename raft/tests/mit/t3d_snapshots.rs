//! 6.5840 part 3D: log compaction. Replicas snapshot every 10 applied entries (the course's
//! `SnapShotInterval`, our `snapshot_interval`).

use crate::harness::Cluster;
use crate::harness::network::Faults;
use crate::tester::{TestRng, for_each_seed, peer};

/// 6.5840 `SnapShotInterval`.
const SNAPSHOT_INTERVAL: u64 = 10;

/// 6.5840 `MAXLOGSIZE`: the persisted Raft state must stay below it
/// ([`Cluster::log_size_bytes`]: postcard-encoded hard state and entries).
const LOG_SIZE_BYTES_MAX: usize = 2000;

fn snapshot_cluster(servers: u64, seed: u64, reliable: bool) -> Cluster {
    let mut cluster = Cluster::new(servers, seed);
    cluster.snapshot_interval = Some(SNAPSHOT_INTERVAL);
    if !reliable {
        cluster.network.faults = Faults::unreliable();
    }
    cluster
}

/// How the victim of each `snapcommon` round is taken away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Victim {
    Stays,
    Disconnected,
    Crashed,
}

/// 6.5840 `snapcommon`: 30 rounds on three servers; each round maybe takes a victim away,
/// proposes 5-14 commands (enough for a snapshot), checks that the persisted log stays under
/// 2000 bytes, and brings the victim back, which may need InstallSnapshot to catch up.
fn snapcommon(seed: u64, victim_kind: Victim, reliable: bool) {
    let servers = 3;
    let mut cluster = snapshot_cluster(servers, seed, reliable);
    let mut rng = TestRng::new(seed);
    cluster.one_value(rng.int(), 3, true);
    let mut leader1 = cluster.check_one_leader();
    for round in 0..30 {
        let (sender, victim) = if round % 3 == 1 {
            (peer(leader1, 1, servers), leader1)
        } else {
            (leader1, peer(leader1, 1, servers))
        };
        match victim_kind {
            Victim::Stays => {}
            Victim::Disconnected => {
                cluster.network.disconnect(victim);
                cluster.one_value(rng.int(), 2, true);
            }
            Victim::Crashed => {
                cluster.crash1(victim);
                cluster.one_value(rng.int(), 2, true);
            }
        }
        // Perhaps send enough to get a snapshot.
        let count = SNAPSHOT_INTERVAL / 2 + rng.below(SNAPSHOT_INTERVAL);
        for _ in 0..count {
            cluster.start(sender, rng.int());
        }
        // Let the appliers catch up with the Starts. With nobody away, make sure every
        // follower caught up, so that SnapshotBasic needs no InstallSnapshot.
        let expected = if victim_kind == Victim::Stays { 3 } else { 2 };
        cluster.one_value(rng.int(), expected, true);
        let size = cluster.log_size_bytes();
        assert!(
            size < LOG_SIZE_BYTES_MAX,
            "Log size too large: {size} bytes"
        );

        if victim_kind != Victim::Stays {
            // Bring back a follower that may be behind and need a snapshot to catch up.
            if victim_kind == Victim::Crashed {
                cluster.start1(victim);
            }
            cluster.network.connect(victim);
            cluster.one_value(rng.int(), 3, true);
            leader1 = cluster.check_one_leader();
        }
    }
}

/// 6.5840 TestSnapshotBasic3D: snapshots trim the log: the persisted Raft state stays under
/// 2000 bytes over 30 rounds of 5-14 commands.
#[test]
fn snapshots_keep_the_persisted_log_small() {
    for_each_seed(3_301, |seed| snapcommon(seed, Victim::Stays, true));
}

/// 6.5840 TestSnapshotInstall3D: a disconnected follower catches up through InstallSnapshot.
#[test]
fn a_lagging_follower_catches_up_through_a_snapshot() {
    for_each_seed(3_302, |seed| snapcommon(seed, Victim::Disconnected, true));
}

/// 6.5840 TestSnapshotInstallUnreliable3D: the same on an unreliable network.
#[test]
fn a_lagging_follower_catches_up_through_a_snapshot_on_an_unreliable_network() {
    for_each_seed(3_303, |seed| snapcommon(seed, Victim::Disconnected, false));
}

/// 6.5840 TestSnapshotInstallCrash3D: a crashed follower catches up through a snapshot.
#[test]
fn a_restarted_follower_catches_up_through_a_snapshot() {
    for_each_seed(3_304, |seed| snapcommon(seed, Victim::Crashed, true));
}

/// 6.5840 TestSnapshotInstallUnCrash3D: the same on an unreliable network.
#[test]
fn a_restarted_follower_catches_up_through_a_snapshot_on_an_unreliable_network() {
    for_each_seed(3_305, |seed| snapcommon(seed, Victim::Crashed, false));
}

/// 6.5840 TestSnapshotAllCrash3D: every server crashes and restarts from its snapshot plus
/// log tail, twice; the next command's index never goes back.
#[test]
fn all_servers_restart_from_snapshots_and_the_index_never_decreases() {
    for_each_seed(3_306, |seed| {
        let servers = 3;
        let mut cluster = snapshot_cluster(servers, seed, true);
        let mut rng = TestRng::new(seed);
        cluster.one_value(rng.int(), 3, true);
        for _ in 0..2 {
            // Perhaps enough to get a snapshot.
            let count = SNAPSHOT_INTERVAL / 2 + rng.below(SNAPSHOT_INTERVAL);
            for _ in 0..count {
                cluster.one_value(rng.int(), 3, true);
            }
            let index1 = cluster.one_value(rng.int(), 3, true);
            crash_and_restart_all(&mut cluster);
            let index2 = cluster.one_value(rng.int(), 3, true);
            assert!(index2 > index1, "index decreased from {index1} to {index2}");
        }
    });
}

/// 6.5840 TestSnapshotInit3D: a restarted server initializes its in-memory snapshot state, so
/// later persists do not lose it. TESTING.md lists three crashes of all servers; the course's
/// test has two, after which a single command must still commit. We run three.
#[test]
fn a_restarted_server_keeps_its_snapshot_across_later_persists() {
    for_each_seed(3_307, |seed| {
        let servers = 3;
        let mut cluster = snapshot_cluster(servers, seed, true);
        let mut rng = TestRng::new(seed);
        cluster.one_value(rng.int(), 3, true);
        // Enough commands to make a snapshot.
        for _ in 0..=SNAPSHOT_INTERVAL {
            cluster.one_value(rng.int(), 3, true);
        }
        for id in cluster.ids() {
            let first = cluster.raft(id).expect("up").log().first_index();
            assert!(
                first.0 > 1,
                "{id} took no snapshot, so the test would test nothing"
            );
        }
        for _ in 0..3 {
            crash_and_restart_all(&mut cluster);
            // A single command, to get something written back to persistent storage.
            cluster.one_value(rng.int(), 3, true);
        }
    });
}

fn crash_and_restart_all(cluster: &mut Cluster) {
    for id in cluster.ids() {
        cluster.crash1(id);
    }
    for id in cluster.ids() {
        cluster.start1(id);
        cluster.network.connect(id);
    }
}

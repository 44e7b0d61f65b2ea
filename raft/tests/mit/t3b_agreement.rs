//! 6.5840 part 3B: log agreement.

use crate::harness::Cluster;
use crate::tester::{ELECTION_TIMEOUT_MS, TestRng, for_each_seed, peer, value_of};
use flotilla_raft::NodeId;

/// 6.5840 TestBasicAgree3B: nothing is committed before `Start`; commands 1..3 commit on all
/// three servers at command indices 1, 2, 3.
#[test]
fn three_commands_commit_in_order_on_every_server() {
    for_each_seed(3_101, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        for position in 1..=3_u64 {
            // `nCommitted(index) > 0` before `Start`: some server applied a command at this
            // command index already.
            let committed_before = cluster
                .applied_logs
                .values()
                .any(|log| log.len() as u64 >= position);
            assert!(!committed_before, "some have committed before Start()");
            let index = cluster.one_value(position * 100, servers as usize, false);
            let got = cluster.applied_position(index);
            assert_eq!(got, position, "got index {got} but expected {position}");
        }
    });
}

/// 6.5840 TestRPCBytes3B: each command is sent to each peer about once: ten 5000-byte commands
/// cost at most 3 × 50,000 + 50,000 bytes. The course measures gob-encoded RPC bytes; we
/// measure the payload bytes of the entries AppendEntries carried (`counters.entry_bytes`),
/// which is what the bound is about.
#[test]
fn each_command_is_sent_to_each_peer_about_once() {
    for_each_seed(3_102, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        let mut rng = TestRng::new(seed);
        cluster.one_value(99, servers as usize, false);
        let bytes0 = cluster.network.counters.entry_bytes;
        let mut sent = 0;
        for position in 2..12_u64 {
            let data = rng.bytes(5000);
            let index = cluster.one(&data, servers as usize, false);
            let got = cluster.applied_position(index);
            assert_eq!(got, position, "got index {got} but expected {position}");
            sent += data.len() as u64;
        }
        let got = cluster.network.counters.entry_bytes - bytes0;
        let expected = servers * sent;
        assert!(
            got <= expected + 50_000,
            "too many RPC bytes; got {got}, expected {expected}"
        );
    });
}

/// 6.5840 TestFollowerFailure3B: progress with one follower down; with both followers down
/// the leader still accepts command 4 but it does not commit within 2 s.
#[test]
fn the_leader_commits_without_one_follower_but_not_without_both() {
    for_each_seed(3_103, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        cluster.one_value(101, 3, false);
        let leader1 = cluster.check_one_leader();
        cluster.network.disconnect(peer(leader1, 1, servers));
        cluster.one_value(102, 2, false);
        cluster.sleep(ELECTION_TIMEOUT_MS);
        cluster.one_value(103, 2, false);

        let leader2 = cluster.check_one_leader();
        cluster.network.disconnect(peer(leader2, 1, servers));
        cluster.network.disconnect(peer(leader2, 2, servers));
        let index = cluster
            .start(leader2, 104)
            .expect("leader rejected Start()");
        let position = cluster.command_position(leader2, index);
        assert_eq!(position, 4, "expected index 4, got {position}");
        cluster.sleep(2 * ELECTION_TIMEOUT_MS);
        let (count, _) = cluster.n_committed(index);
        assert_eq!(count, 0, "{count} committed but no majority");
    });
}

/// 6.5840 TestLeaderFailure3B: a new leader follows the leader's loss; with only one of three
/// up, a command submitted to every server commits nowhere within 2 s.
#[test]
fn a_new_leader_takes_over_and_nothing_commits_with_one_of_three() {
    for_each_seed(3_104, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        cluster.one_value(101, 3, false);
        let leader1 = cluster.check_one_leader();
        cluster.network.disconnect(leader1);
        cluster.one_value(102, 2, false);
        cluster.sleep(ELECTION_TIMEOUT_MS);
        cluster.one_value(103, 2, false);

        let leader2 = cluster.check_one_leader();
        cluster.network.disconnect(leader2);
        for id in cluster.ids() {
            cluster.start(id, 104);
        }
        cluster.sleep(2 * ELECTION_TIMEOUT_MS);
        // The course checks index 4, where 104 would land; with blank entries in our log its
        // index varies, so we check that no server applied 104 anywhere.
        assert!(!cluster.ever_applied(104), "104 committed but no majority");
    });
}

/// 6.5840 TestFailAgree3B: a disconnected follower catches up on reconnection (commands
/// 101-107).
#[test]
fn a_reconnected_follower_catches_up() {
    for_each_seed(3_105, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        cluster.one_value(101, 3, false);
        let leader = cluster.check_one_leader();
        cluster.network.disconnect(peer(leader, 1, servers));
        cluster.one_value(102, 2, false);
        cluster.one_value(103, 2, false);
        cluster.sleep(ELECTION_TIMEOUT_MS);
        cluster.one_value(104, 2, false);
        cluster.one_value(105, 2, false);

        cluster.network.connect(peer(leader, 1, servers));
        cluster.one_value(106, 3, true);
        cluster.sleep(ELECTION_TIMEOUT_MS);
        cluster.one_value(107, 3, true);
    });
}

/// 6.5840 TestFailNoAgree3B: with 3 of 5 disconnected the leader accepts command 2 but it does
/// not commit within 2 s; after healing, the next command lands at index 2 or 3.
#[test]
fn no_commit_without_a_majority_of_five_then_recovery() {
    for_each_seed(3_106, |seed| {
        let servers = 5;
        let mut cluster = Cluster::new(servers, seed);
        cluster.one_value(10, 5, false);
        let leader = cluster.check_one_leader();
        for offset in 1..=3 {
            cluster.network.disconnect(peer(leader, offset, servers));
        }
        let index = cluster.start(leader, 20).expect("leader rejected Start()");
        let position = cluster.command_position(leader, index);
        assert_eq!(position, 2, "expected index 2, got {position}");
        cluster.sleep(2 * ELECTION_TIMEOUT_MS);
        let (count, _) = cluster.n_committed(index);
        assert_eq!(count, 0, "{count} committed but no majority");

        for offset in 1..=3 {
            cluster.network.connect(peer(leader, offset, servers));
        }
        // The disconnected majority may have chosen a leader of its own, forgetting index 2.
        let leader2 = cluster.check_one_leader();
        let index2 = cluster
            .start(leader2, 30)
            .expect("leader2 rejected Start()");
        let position2 = cluster.command_position(leader2, index2);
        assert!((2..=3).contains(&position2), "unexpected index {position2}");
        cluster.one_value(1000, 5, true);
    });
}

/// 6.5840 TestConcurrentStarts3B: five `Start`s issued together in one term all commit (up to
/// five attempts, 3 s apart). Goroutines become five proposals in the same simulated instant.
#[test]
fn concurrent_starts_in_one_term_all_commit() {
    for_each_seed(3_107, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        let success = (0..5).any(|attempt| {
            if attempt > 0 {
                cluster.sleep(3_000);
            }
            concurrent_starts_attempt(&mut cluster)
        });
        assert!(success, "term changed too often");
    });
}

/// One try of ConcurrentStarts; false means "the term moved, try again".
fn concurrent_starts_attempt(cluster: &mut Cluster) -> bool {
    let leader = cluster.check_one_leader();
    if cluster.start(leader, 1).is_none() {
        return false;
    }
    let term = cluster.term_of(leader).expect("up");
    let mut indices = Vec::new();
    for i in 0..5 {
        let accepted = cluster.start(leader, 100 + i);
        if cluster.term_of(leader) == Some(term) {
            indices.extend(accepted);
        }
    }
    if cluster.up_terms().iter().any(|&other| other != term) {
        // The term changed: RPC counts and commits cannot be expected.
        return false;
    }
    let mut committed = Vec::new();
    for index in indices {
        match cluster.wait(index, servers_of(cluster), Some(term)) {
            Some(data) => committed.push(value_of(&data)),
            None => return false,
        }
    }
    for value in 100..105 {
        assert!(
            committed.contains(&value),
            "cmd {value} missing in {committed:?}"
        );
    }
    true
}

fn servers_of(cluster: &Cluster) -> usize {
    cluster.ids().len()
}

/// 6.5840 TestRejoin3B: a partitioned leader that accepted commands nobody else saw rejoins
/// and has its log overwritten correctly.
#[test]
fn a_partitioned_leader_rejoins_and_its_divergent_entries_are_replaced() {
    for_each_seed(3_108, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        cluster.one_value(101, 3, true);

        // The leader is partitioned and accepts commands that will never commit.
        let leader1 = cluster.check_one_leader();
        cluster.network.disconnect(leader1);
        for value in [102, 103, 104] {
            cluster.start(leader1, value);
        }
        // The new leader commits 103 at (command) index 2.
        cluster.one_value(103, 2, true);

        // The new leader is partitioned; the old one comes back.
        let leader2 = cluster.check_one_leader();
        cluster.network.disconnect(leader2);
        cluster.network.connect(leader1);
        cluster.one_value(104, 2, true);

        cluster.network.connect(leader2);
        cluster.one_value(105, 3, true);
    });
}

/// 6.5840 TestBackup3B: a leader backs up quickly over long divergent follower logs (fast
/// `nextIndex` backtracking): 5 servers, 50 uncommitted entries twice, 50 committed twice.
#[test]
fn a_leader_backs_up_quickly_over_long_divergent_logs() {
    for_each_seed(3_109, |seed| {
        let servers = 5;
        let mut cluster = Cluster::new(servers, seed);
        let mut rng = TestRng::new(seed);
        cluster.one_value(rng.int(), 5, true);

        // The leader and one follower in a partition.
        let leader1 = cluster.check_one_leader();
        for offset in 2..=4 {
            cluster.network.disconnect(peer(leader1, offset, servers));
        }
        // Lots of commands that won't commit.
        for _ in 0..50 {
            cluster.start(leader1, rng.int());
        }
        cluster.sleep(ELECTION_TIMEOUT_MS / 2);
        cluster.network.disconnect(peer(leader1, 0, servers));
        cluster.network.disconnect(peer(leader1, 1, servers));

        // The other partition recovers and commits lots of commands.
        for offset in 2..=4 {
            cluster.network.connect(peer(leader1, offset, servers));
        }
        for _ in 0..50 {
            cluster.one_value(rng.int(), 3, true);
        }

        // Now another partitioned leader and one follower.
        let leader2 = cluster.check_one_leader();
        let mut other = peer(leader1, 2, servers);
        if leader2 == other {
            other = peer(leader2, 1, servers);
        }
        cluster.network.disconnect(other);
        // Lots more commands that won't commit.
        for _ in 0..50 {
            cluster.start(leader2, rng.int());
        }
        cluster.sleep(ELECTION_TIMEOUT_MS / 2);

        // The original leader and its follower come back, with `other`.
        for id in cluster.ids() {
            cluster.network.disconnect(id);
        }
        cluster.network.connect(peer(leader1, 0, servers));
        cluster.network.connect(peer(leader1, 1, servers));
        cluster.network.connect(other);
        for _ in 0..50 {
            cluster.one_value(rng.int(), 3, true);
        }

        // Now everyone.
        for id in cluster.ids() {
            cluster.network.connect(id);
        }
        cluster.one_value(rng.int(), 5, true);
    });
}

/// 6.5840 TestCount3B: RPC economy on three servers: an election costs at most 30 RPCs, ten
/// entries at most (10 + 1 + 3) × 3 = 42, one idle second at most 60. RPCs are counted as
/// [`Cluster::rpc_count`] explains (messages / 2).
#[test]
fn elections_agreement_and_idleness_cost_few_rpcs() {
    for_each_seed(3_110, |seed| {
        let mut cluster = Cluster::new(3, seed);
        let mut rng = TestRng::new(seed);
        cluster.check_one_leader();
        let total1 = cluster.rpc_count();
        assert!(
            (1..=30).contains(&total1),
            "too many or few RPCs ({total1}) to elect initial leader"
        );

        let mut total2 = None;
        for attempt in 0..5 {
            if attempt > 0 {
                cluster.sleep(3_000);
            }
            total2 = count_agreement_attempt(&mut cluster, &mut rng);
            if total2.is_some() {
                break;
            }
        }
        let total2 = total2.expect("term changed too often");

        cluster.sleep(ELECTION_TIMEOUT_MS);
        let total3 = cluster.rpc_count();
        assert!(
            total3 - total2 <= 3 * 20,
            "too many RPCs ({}) for 1 second of idleness",
            total3 - total2
        );
    });
}

/// One try of TestCount's agreement phase; returns the RPC count after it, or `None` if the
/// term moved.
fn count_agreement_attempt(cluster: &mut Cluster, rng: &mut TestRng) -> Option<u64> {
    const ITERS: u64 = 10;
    let leader = cluster.check_one_leader();
    let total1 = cluster.rpc_count();
    let start_index = cluster.start(leader, 1)?;
    let term = cluster.term_of(leader)?;
    let mut values = Vec::new();
    for i in 1..ITERS + 2 {
        let value = rng.int();
        values.push(value);
        let index = cluster.start(leader, value);
        if cluster.term_of(leader) != Some(term) {
            return None;
        }
        let index = index?;
        assert_eq!(index, start_index.plus(i), "Start() failed");
    }
    for i in 1..=ITERS {
        let index = start_index.plus(i);
        let data = cluster.wait(index, 3, Some(term))?;
        let expected = values[(i - 1) as usize];
        assert_eq!(
            value_of(&data),
            expected,
            "wrong value committed for index {index}; expected {values:?}"
        );
    }
    let ids: Vec<NodeId> = cluster.ids();
    if ids.iter().any(|&id| cluster.term_of(id) != Some(term)) {
        return None;
    }
    let total2 = cluster.rpc_count();
    let bound = (ITERS + 1 + 3) * 3;
    assert!(
        total2 - total1 <= bound,
        "too many RPCs ({}) for {ITERS} entries",
        total2 - total1
    );
    Some(total2)
}

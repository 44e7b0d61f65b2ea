//! 6.5840 part 3A: leader election.

use crate::harness::Cluster;
use crate::tester::{ELECTION_TIMEOUT_MS, TestRng, for_each_seed, peer};
use flotilla_raft::Term;

/// 6.5840 TestInitialElection3A: three servers elect a leader, agree on a term of at least 1,
/// and with no failures keep both (a changed term is only a warning, as in the course).
#[test]
fn three_servers_elect_one_leader_and_keep_it_without_failures() {
    for_each_seed(3_001, |seed| {
        let mut cluster = Cluster::new(3, seed);
        cluster.check_one_leader();
        // Let followers learn of the election before comparing terms.
        cluster.sleep(50);
        let term1 = cluster.check_terms();
        assert!(
            term1 >= Term(1),
            "term is {term1}, but should be at least 1"
        );
        cluster.sleep(2 * ELECTION_TIMEOUT_MS);
        let term2 = cluster.check_terms();
        if term1 != term2 {
            eprintln!("warning: term changed even though there were no failures");
        }
        cluster.check_one_leader();
    });
}

/// 6.5840 TestReElection3A: a new leader follows the leader's disconnection; the old leader
/// rejoining does not disturb it; no leader without a quorum (2 s); a leader again once a
/// quorum returns.
#[test]
fn a_new_leader_is_elected_when_the_leader_goes_and_none_without_quorum() {
    for_each_seed(3_002, |seed| {
        let servers = 3;
        let mut cluster = Cluster::new(servers, seed);
        let leader1 = cluster.check_one_leader();

        cluster.network.disconnect(leader1);
        cluster.check_one_leader();

        cluster.network.connect(leader1);
        let leader2 = cluster.check_one_leader();

        cluster.network.disconnect(leader2);
        cluster.network.disconnect(peer(leader2, 1, servers));
        cluster.sleep(2 * ELECTION_TIMEOUT_MS);
        cluster.check_no_leader();

        cluster.network.connect(peer(leader2, 1, servers));
        cluster.check_one_leader();

        cluster.network.connect(leader2);
        cluster.check_one_leader();
    });
}

/// 6.5840 TestManyElections3A: seven servers, ten times three random servers leave; the rest
/// keep or elect a leader within about 5 s each time. (The course's loop runs `1..iters`; we
/// run the ten iterations TESTING.md lists.)
#[test]
fn seven_servers_keep_electing_leaders_while_three_come_and_go() {
    for_each_seed(3_003, |seed| {
        let servers = 7;
        let mut cluster = Cluster::new(servers, seed);
        let mut rng = TestRng::new(seed);
        cluster.check_one_leader();
        for _ in 0..10 {
            let gone = [
                rng.server(servers),
                rng.server(servers),
                rng.server(servers),
            ];
            for &id in &gone {
                cluster.network.disconnect(id);
            }
            // Either the current leader is still alive, or the remaining four elect one.
            cluster.check_one_leader();
            for &id in &gone {
                cluster.network.connect(id);
            }
        }
        cluster.check_one_leader();
    });
}

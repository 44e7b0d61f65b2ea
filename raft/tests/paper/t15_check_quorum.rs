//! Keeping elections quiet: check-quorum (thesis §6.2), the voters' lease against disruptive
//! servers (thesis §4.2.3), and pre-vote across a partition (thesis §9.6).

use crate::harness::Cluster;
use crate::util::*;
use flotilla_raft::{Config, NodeId, Ready, Role, Term};

/// Thesis §6.2: a leader that does not hear from a majority for an election timeout steps down.
/// The first check passes on the followers' initial credit; the second, with no answer since,
/// deposes it.
#[test]
fn a_leader_that_hears_from_no_quorum_for_an_election_timeout_steps_down() {
    let mut leader = new_leader(1, &[1, 2, 3]);
    leader.ticks(10);
    assert_eq!(leader.role(), Role::Leader);
    for _ in 0..9 {
        leader.tick();
        let _ = leader.take();
    }
    leader.tick();
    let ready = leader.take();
    assert_eq!(ready.leader_changed, Some(None));
    assert_eq!((leader.role(), leader.term()), (Role::Follower, Term(1)));
}

/// Thesis §6.2: a leader that keeps hearing from a majority stays leader indefinitely.
#[test]
fn a_leader_that_hears_from_a_quorum_stays_leader() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    for _ in 0..50 {
        leader.tick();
        let ready = leader.take();
        for request in to(&ready, 2) {
            leader.deliver(heartbeat_response(2, 1, 1, round_of(&request)));
        }
        let _ = leader.take();
    }
    assert_eq!(leader.role(), Role::Leader);
}

fn round_of(message: &flotilla_raft::Message) -> u64 {
    match message.body {
        flotilla_raft::MessageBody::Heartbeat { read_round, .. } => read_round,
        _ => 0,
    }
}

/// Thesis §4.2.3: "if a server receives a RequestVote request within the minimum election
/// timeout of hearing from a current leader, it does not update its term or grant its vote."
#[test]
fn a_voter_that_hears_the_leader_ignores_higher_term_campaigns() {
    let mut follower = follower_of(1, &[1, 2, 3], 2, 1);
    follower.deliver(request_vote(3, 1, 2, (0, 0)));
    assert_eq!(
        follower.take(),
        Ready::default(),
        "ignored while the leader is heard"
    );
    assert_eq!(follower.term(), Term(1));
    assert_eq!(follower.take().persist.hard_state, None, "nor its vote");
}

/// Thesis §4.2.3: the lease expires with time: a voter that has not heard the leader for the
/// minimum election timeout grants the vote (same replica, no restart).
#[test]
fn a_voter_grants_a_higher_term_vote_once_the_leader_went_silent() {
    let config = Config {
        pre_vote: false,
        election_timeout_ticks_min: 10,
        election_timeout_ticks_max: 1000,
        ..config(1)
    };
    let mut follower = node_over(config, bootstrapped(voters(&[1, 2, 3])));
    follower.deliver(heartbeat(2, 1, 1, 0, 0));
    let _ = follower.take();
    follower.ticks(9);
    follower.deliver(request_vote(3, 1, 2, (0, 0)));
    assert_eq!(follower.take(), Ready::default(), "still within the lease");
    follower.ticks(1);
    assert_eq!(
        follower.role(),
        Role::Follower,
        "its own timeout is far away"
    );
    follower.deliver(request_vote(3, 1, 2, (0, 0)));
    assert_eq!(
        follower.take().persisted_messages,
        vec![vote(1, 3, 2, true)]
    );
}

/// A follower woken from quiescence (MultiRaft stops idle groups' ticks) counts nothing it heard
/// before as recent, so it grants a campaign at once. Its clock runs only while it ticks:
/// "heard at tick 0" used to read as recent in a replica that quiesced before ticking an
/// election timeout, and it ignored campaigns for that long after waking.
#[test]
fn a_woken_follower_holds_no_lease_even_if_it_barely_ticked_before() {
    let mut follower = follower_of(1, &[1, 2, 3], 2, 1);
    follower.deliver(request_pre_vote(3, 1, 2, (0, 0)));
    assert_eq!(follower.take(), Ready::default(), "within the lease");
    follower.wake();
    follower.deliver(request_pre_vote(3, 1, 2, (0, 0)));
    assert_eq!(
        follower.take().persisted_messages,
        vec![pre_vote(1, 3, 2, true)]
    );
}

/// Thesis §9.6: a partitioned replica that keeps timing out does not raise its term, so when it
/// comes back the leader is undisturbed.
#[test]
fn a_partitioned_replica_rejoining_does_not_bump_the_term_with_pre_vote() {
    let mut net = Net::new(&[1, 2, 3]);
    net.campaign(1);
    assert_eq!(net.leader(), Some(1));
    net.isolate(3);
    for _ in 0..100 {
        net.tick(3);
    }
    assert_eq!(
        net.node(3).term(),
        Term(1),
        "pre-votes do not raise the term"
    );
    net.recover();
    net.tick_all(5);
    assert_eq!(net.leader(), Some(1));
    assert!(
        net.terms().values().all(|&term| term == Term(1)),
        "{:?}",
        net.terms()
    );
}

/// The same without pre-vote: the partitioned replica's term climbs and, when it rejoins, the
/// leader learns the higher term and steps down (what pre-vote prevents).
#[test]
fn without_pre_vote_a_rejoining_replica_deposes_the_leader() {
    let mut net = Net::with_config(&[1, 2, 3], |id| Config {
        pre_vote: false,
        ..config(id)
    });
    net.campaign(1);
    net.isolate(3);
    for _ in 0..100 {
        net.tick(3);
    }
    assert!(net.node(3).term() > Term(2));
    net.recover();
    net.tick_all(3);
    assert!(
        net.node(1).term() > Term(2),
        "the old leader saw the higher term"
    );
    assert_ne!(net.node(1).leader(), Some(NodeId(1)));
}

/// Thesis §9.6 in simulated time: a follower cut off for five seconds (many election timeouts)
/// rejoins without changing the term or the leader, across seeds.
#[test]
fn a_rejoining_follower_leaves_term_and_leader_alone_in_the_cluster() {
    for seed in 0..10 {
        let mut cluster = Cluster::new(5, seed);
        let leader = cluster.check_one_leader();
        let term = cluster.check_terms();
        let follower = NodeId(if leader == NodeId(1) { 2 } else { 1 });
        cluster.network.disconnect(follower);
        cluster.run_for(5_000);
        cluster.network.connect(follower);
        cluster.run_for(2_000);
        assert_eq!(cluster.check_terms(), term, "seed {seed}");
        assert_eq!(cluster.leader(), Some(leader), "seed {seed}");
    }
}

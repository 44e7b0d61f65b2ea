//! Terms and leader election: Raft §5.1, §5.2, and pre-vote (thesis §9.6).

use crate::harness::{Cluster, test_config};
use crate::util::*;
use flotilla_raft::{Config, NodeId, Persist, Ready, Role, Term};
use std::collections::BTreeSet;

fn without_pre_vote(id: u64) -> Config {
    Config {
        pre_vote: false,
        ..config(id)
    }
}

/// A candidate of `voter_ids` in term 1 (no pre-vote), its RequestVotes taken.
fn candidate(id: u64, voter_ids: &[u64]) -> Node {
    let mut node = node_over(without_pre_vote(id), bootstrapped(voters(voter_ids)));
    node.tick_until_campaign();
    let _ = node.take();
    node
}

/// Raft §5.2: "When servers start up, they begin as followers."
#[test]
fn servers_start_as_followers_with_nothing_to_do() {
    let mut node = node(1, &[1, 2, 3]);
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.term(), Term(0));
    assert_eq!(node.leader(), None);
    assert!(!node.has_ready());
    assert_eq!(node.take(), Ready::default());
}

/// Raft §5.1: "If a server receives a request with a higher term, it updates its term and
/// reverts to follower state", whatever role it plays.
#[test]
fn a_higher_term_makes_every_role_a_follower() {
    let follower = node(1, &[1, 2, 3]);
    let mut pre_candidate = node(1, &[1, 2, 3]);
    pre_candidate.tick_until_campaign();
    let mut candidate = node_over(without_pre_vote(1), bootstrapped(voters(&[1, 2, 3])));
    candidate.tick_until_campaign();
    let leader = new_leader(1, &[1, 2, 3]);
    let expected = Ready {
        persisted_messages: vec![heartbeat_response(1, 2, 5, 0)],
        persist: Persist {
            hard_state: Some(hard_state(5, None, 0)),
            ..Persist::default()
        },
        leader_changed: Some(Some(NodeId(2))),
        ..Ready::default()
    };
    for mut node in [follower, pre_candidate, candidate, leader] {
        let role = node.role();
        let _ = node.take();
        node.deliver(heartbeat(2, 1, 5, 0, 0));
        assert_eq!(node.take(), expected, "from {role:?}");
        assert_eq!(
            (node.role(), node.term()),
            (Role::Follower, Term(5)),
            "from {role:?}"
        );
    }
}

/// Raft §5.1: a candidate that learns of a higher term from a vote refusal reverts to follower,
/// with no leader known.
#[test]
fn a_higher_term_in_a_vote_refusal_makes_a_candidate_a_follower() {
    let mut candidate = candidate(1, &[1, 2, 3]);
    candidate.deliver(vote(2, 1, 4, false));
    let expected = Ready {
        persist: Persist {
            hard_state: Some(hard_state(4, None, 0)),
            ..Persist::default()
        },
        ..Ready::default()
    };
    assert_eq!(candidate.take(), expected);
    assert_eq!(
        (candidate.role(), candidate.leader()),
        (Role::Follower, None)
    );
}

/// Raft §5.1: "If a server receives a request with a stale term number, it rejects the
/// request." A stale leader's AppendEntries is answered in the current term so it steps down; a
/// stale pre-vote is refused with the current term; a stale RequestVote changes nothing.
#[test]
fn a_stale_term_request_is_rejected_and_answered_with_the_current_term() {
    let mut follower = follower_of(1, &[1, 2, 3], 2, 3);
    follower.deliver(append(3, 1, 2, (0, 0), vec![entry(2, 1)], 0));
    let answer = Ready {
        persisted_messages: vec![heartbeat_response(1, 3, 3, 0)],
        ..Ready::default()
    };
    assert_eq!(follower.take(), answer);
    assert_eq!(
        follower.log().last_index().0,
        0,
        "a stale leader's entries are not appended"
    );

    follower.deliver(request_pre_vote(3, 1, 2, (2, 1)));
    let refusal = Ready {
        persisted_messages: vec![pre_vote(1, 3, 3, false)],
        ..Ready::default()
    };
    assert_eq!(follower.take(), refusal);

    follower.deliver(request_vote(3, 1, 2, (2, 1)));
    assert_eq!(follower.take(), Ready::default());
    assert_eq!(follower.term(), Term(3));
}

/// Raft §5.1: responses from an older term are ignored; a stale grant does not count.
#[test]
fn a_stale_vote_grant_is_not_counted() {
    let store = store_with_log(voters(&[1, 2, 3]), &[], 1, 0);
    let mut candidate = node_over(without_pre_vote(1), store);
    candidate.tick_until_campaign();
    let _ = candidate.take();
    assert_eq!(candidate.term(), Term(2));
    candidate.deliver(vote(2, 1, 1, true));
    candidate.deliver(vote(3, 1, 1, true));
    assert_eq!(candidate.take(), Ready::default());
    assert_eq!(candidate.role(), Role::Candidate);
}

/// Raft §5.2: "Raft uses randomized election timeouts ... chosen randomly from a fixed
/// interval". Every timeout lies in [min, max), different seeds give different ones, and a
/// pre-candidate that hears nothing draws a fresh one (etcd
/// `TestFollowerElectionTimeoutRandomized`, `TestCandidateElectionTimeoutRandomized`).
#[test]
fn election_timeouts_are_random_within_the_configured_range() {
    let mut follower_timeouts = BTreeSet::new();
    let mut candidate_timeouts = BTreeSet::new();
    for seed in 0..100 {
        let config = Config {
            rng_seed: seed,
            ..config(1)
        };
        let mut node = node_over(config, bootstrapped(voters(&[1, 2, 3])));
        follower_timeouts.insert(node.tick_until_campaign());
        let _ = node.take();
        candidate_timeouts.insert(ticks_until_vote_requests(&mut node));
    }
    for timeouts in [&follower_timeouts, &candidate_timeouts] {
        assert!(
            timeouts.iter().all(|ticks| (10..20).contains(ticks)),
            "{timeouts:?}"
        );
        assert!(
            timeouts.len() >= 5,
            "too few distinct timeouts: {timeouts:?}"
        );
    }
}

/// A group size, the votes a candidate receives, and the role it ends in.
type VoteCase = (u64, &'static [(u64, bool)], Role);

fn ticks_until_vote_requests(node: &mut Node) -> u64 {
    for ticks in 1..=100 {
        node.tick();
        if node.take().persisted_messages.iter().any(is_vote_request) {
            return ticks;
        }
    }
    panic!("never campaigned again");
}

/// Raft §5.2 and thesis §9.6: a follower that hears nothing for an election timeout asks for
/// pre-votes for the next term, without changing its own term or vote.
#[test]
fn a_follower_that_hears_nothing_asks_for_pre_votes_without_changing_its_term() {
    let mut node = node(1, &[1, 2, 3]);
    node.tick_until_campaign();
    let expected = Ready {
        persisted_messages: vec![
            request_pre_vote(1, 2, 1, (0, 0)),
            request_pre_vote(1, 3, 1, (0, 0)),
        ],
        ..Ready::default()
    };
    assert_eq!(node.take(), expected);
    assert_eq!((node.role(), node.term()), (Role::PreCandidate, Term(0)));
}

/// Thesis §9.6: once a majority grants the pre-vote, the real election starts in the next term;
/// the candidate's own vote is in the same Ready as its RequestVotes (it must be durable first).
#[test]
fn a_won_pre_vote_starts_the_election_and_persists_the_self_vote_with_the_requests() {
    let mut node = node(1, &[1, 2, 3]);
    node.tick_until_campaign();
    let _ = node.take();
    node.deliver(pre_vote(2, 1, 1, true));
    let expected = Ready {
        persisted_messages: vec![request_vote(1, 2, 1, (0, 0)), request_vote(1, 3, 1, (0, 0))],
        persist: Persist {
            hard_state: Some(hard_state(1, Some(1), 0)),
            ..Persist::default()
        },
        ..Ready::default()
    };
    assert_eq!(node.take(), expected);
    assert_eq!((node.role(), node.term()), (Role::Candidate, Term(1)));
}

/// Thesis §9.6: a pre-vote refused by a majority leaves the term untouched.
#[test]
fn a_lost_pre_vote_leaves_the_term_unchanged() {
    let mut node = node(1, &[1, 2, 3]);
    node.tick_until_campaign();
    let _ = node.take();
    node.deliver(pre_vote(2, 1, 0, false));
    node.deliver(pre_vote(3, 1, 0, false));
    assert_eq!(node.take(), Ready::default());
    assert_eq!((node.role(), node.term()), (Role::Follower, Term(0)));
}

/// Raft §5.2: without pre-vote, a follower that times out increments its term, votes for itself
/// and asks every other voter, in one Ready.
#[test]
fn without_pre_vote_a_follower_campaigns_in_a_new_term() {
    let mut node = node_over(without_pre_vote(1), bootstrapped(voters(&[1, 2, 3])));
    node.tick_until_campaign();
    let expected = Ready {
        persisted_messages: vec![request_vote(1, 2, 1, (0, 0)), request_vote(1, 3, 1, (0, 0))],
        persist: Persist {
            hard_state: Some(hard_state(1, Some(1), 0)),
            ..Persist::default()
        },
        ..Ready::default()
    };
    assert_eq!(node.take(), expected);
    assert_eq!(node.role(), Role::Candidate);
}

/// Raft §5.2: "A candidate wins an election if it receives votes from a majority"; it returns
/// to follower once a majority refused (etcd `TestLeaderElectionInOneRoundRPC`).
#[test]
fn a_candidate_wins_with_a_majority_and_loses_on_a_majority_of_refusals() {
    use Role::{Candidate, Follower, Leader};
    let cases: &[VoteCase] = &[
        (1, &[], Leader),
        (3, &[(2, true), (3, true)], Leader),
        (3, &[(2, true)], Leader),
        (5, &[(2, true), (3, true), (4, true), (5, true)], Leader),
        (5, &[(2, true), (3, true)], Leader),
        (3, &[], Candidate),
        (3, &[(2, false)], Candidate),
        (5, &[(2, true)], Candidate),
        (3, &[(2, false), (3, false)], Follower),
        (5, &[(2, false), (3, false), (4, false)], Follower),
        (
            5,
            &[(2, true), (3, false), (4, false), (5, false)],
            Follower,
        ),
    ];
    for &(size, votes, role) in cases {
        let ids: Vec<u64> = (1..=size).collect();
        let mut node = candidate(1, &ids);
        for &(from, granted) in votes {
            node.deliver(vote(from, 1, 1, granted));
        }
        assert_eq!(
            (node.role(), node.term()),
            (role, Term(1)),
            "size {size} votes {votes:?}"
        );
    }
}

/// Raft §5.2: "Each server will vote for at most one candidate in a given term", and Figure 2:
/// votedFor is persisted before the vote is answered, in the same Ready, so a restart cannot
/// grant a second vote.
#[test]
fn a_voter_grants_one_vote_per_term_and_persists_it_with_the_answer() {
    let mut voter = node(1, &[1, 2, 3]);
    voter.deliver(request_vote(2, 1, 1, (0, 0)));
    let granted = Ready {
        persisted_messages: vec![vote(1, 2, 1, true)],
        persist: Persist {
            hard_state: Some(hard_state(1, Some(2), 0)),
            ..Persist::default()
        },
        ..Ready::default()
    };
    assert_eq!(voter.take(), granted);

    voter.deliver(request_vote(3, 1, 1, (0, 0)));
    let refused = Ready {
        persisted_messages: vec![vote(1, 3, 1, false)],
        ..Ready::default()
    };
    assert_eq!(voter.take(), refused);

    voter.deliver(request_vote(2, 1, 1, (0, 0)));
    assert_eq!(
        voter.take().persisted_messages,
        vec![vote(1, 2, 1, true)],
        "a retry gets the same vote"
    );

    let mut restarted = node_over(config(1), voter.into_store());
    restarted.deliver(request_vote(3, 1, 1, (0, 0)));
    assert_eq!(
        restarted.take().persisted_messages,
        vec![vote(1, 3, 1, false)],
        "the vote survived"
    );
}

/// Raft §5.2: "If the AppendEntries RPC is from a leader whose term is at least as large as the
/// candidate's current term, then the candidate ... returns to follower state."
#[test]
fn a_candidate_that_hears_the_leader_of_its_term_becomes_its_follower() {
    let mut candidate = candidate(1, &[1, 2, 3]);
    candidate.deliver(heartbeat(2, 1, 1, 0, 0));
    let expected = Ready {
        persisted_messages: vec![heartbeat_response(1, 2, 1, 0)],
        leader_changed: Some(Some(NodeId(2))),
        ..Ready::default()
    };
    assert_eq!(candidate.take(), expected);
    assert_eq!(
        (candidate.role(), candidate.leader()),
        (Role::Follower, Some(NodeId(2)))
    );
}

/// Raft §5.2: "A server remains in follower state as long as it receives valid RPCs from a
/// leader."
#[test]
fn a_follower_that_hears_the_leader_never_campaigns() {
    let mut follower = follower_of(1, &[1, 2, 3], 2, 1);
    for _ in 0..20 {
        follower.ticks(8);
        follower.deliver(heartbeat(2, 1, 1, 0, 0));
        let _ = follower.take();
    }
    assert_eq!(
        (follower.role(), follower.term()),
        (Role::Follower, Term(1))
    );
}

/// Raft §5.2: split votes. Two candidates of term 1 each get half the votes of four voters, so
/// no one wins; the randomized timeouts then let one of them win a later term
/// (etcd `TestDuelingCandidates`).
#[test]
fn a_split_vote_is_resolved_by_a_later_election() {
    let mut net = Net::with_config(&[1, 2, 3, 4], without_pre_vote);
    net.cut(1, 4);
    net.cut(2, 3);
    net.node_mut(1).tick_until_campaign();
    net.node_mut(2).tick_until_campaign();
    net.stabilize();
    assert_eq!(net.leader(), None, "two votes of four elect no one");
    assert_eq!(net.node(1).role(), Role::Candidate);
    assert_eq!(net.node(2).role(), Role::Candidate);

    net.recover();
    for _ in 0..100 {
        if net.leader().is_some() {
            break;
        }
        net.tick_all(1);
    }
    let leader = net.leader().expect("a later election resolves the split");
    let term = net.node(leader).term();
    assert!(term >= Term(2), "the split term 1 elects no one");
    let leaders = net
        .nodes
        .values()
        .filter(|node| node.role() == Role::Leader)
        .count();
    assert_eq!(leaders, 1);
}

fn narrow_timeouts(id: NodeId, seed: u64) -> Config {
    Config {
        election_timeout_ticks_min: 30,
        election_timeout_ticks_max: 32,
        pre_vote: false,
        ..test_config(id, seed)
    }
}

/// Raft §5.2 in simulated time: with timeouts so close that candidates often split the vote,
/// every seed still elects exactly one leader per term within the 6.5840 bound, and some seeds
/// needed more than one term to do it.
#[test]
fn split_votes_resolve_in_the_cluster_across_seeds() {
    let mut needed_more_terms = 0;
    for seed in 0..30 {
        let mut cluster = Cluster::with_config(5, seed, narrow_timeouts);
        let leader = cluster.check_one_leader();
        if cluster.raft(leader).unwrap().term() > Term(1) {
            needed_more_terms += 1;
        }
    }
    assert!(
        needed_more_terms > 0,
        "no seed split a vote; the test proves nothing"
    );
}

/// Raft §5.2: a candidate "continues in this state until ... a period of time goes by with no
/// winner"; it then times out and starts a new election in the next term.
#[test]
fn a_candidate_that_hears_nothing_starts_a_new_election_in_the_next_term() {
    let mut candidate = candidate(1, &[1, 2, 3]);
    let mut sent = Vec::new();
    for _ in 0..20 {
        candidate.tick();
        sent = candidate.take().persisted_messages;
        if !sent.is_empty() {
            break;
        }
    }
    assert_eq!(
        sent,
        vec![request_vote(1, 2, 2, (0, 0)), request_vote(1, 3, 2, (0, 0))]
    );
    assert_eq!(
        (candidate.role(), candidate.term()),
        (Role::Candidate, Term(2))
    );
}

/// Raft §5.2: votes are counted per voter; the same grant delivered twice (the network may
/// duplicate it) counts once.
#[test]
fn a_duplicated_vote_grant_counts_once() {
    let mut candidate = candidate(1, &[1, 2, 3, 4, 5]);
    candidate.deliver(vote(2, 1, 1, true));
    candidate.deliver(vote(2, 1, 1, true));
    assert_eq!(
        candidate.role(),
        Role::Candidate,
        "two distinct votes of five"
    );
    candidate.deliver(vote(3, 1, 1, true));
    assert_eq!(candidate.role(), Role::Leader);
}

/// Raft §5.2: the majority is of the configuration's voters; grants from replicas outside it
/// count for nothing.
#[test]
fn a_vote_grant_from_outside_the_configuration_counts_for_nothing() {
    let mut candidate = candidate(1, &[1, 2, 3]);
    candidate.deliver(vote(8, 1, 1, true));
    candidate.deliver(vote(9, 1, 1, true));
    assert_eq!(candidate.role(), Role::Candidate);
}

/// Raft §5.1 for responses: a leader that learns a higher term from a follower's answer steps
/// down, knowing no leader yet.
#[test]
fn a_leader_answered_in_a_higher_term_steps_down() {
    for answer in [heartbeat_response(2, 1, 5, 1), accepted(2, 1, 5, 1)] {
        let mut leader = settled_leader(1, &[1, 2, 3]);
        leader.deliver(answer.clone());
        let expected = Ready {
            persist: Persist {
                hard_state: Some(hard_state(5, None, 1)),
                ..Persist::default()
            },
            leader_changed: Some(None),
            ..Ready::default()
        };
        assert_eq!(leader.take(), expected, "{answer:?}");
        assert_eq!(leader.role(), Role::Follower);
    }
}

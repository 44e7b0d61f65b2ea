//! The checkers bite: with a deliberately broken rule, some seed of a small budget fails
//! with the property that rule protects.

use crate::harness::{Cluster, test_config};
use crate::run::run_seed_with;
use flotilla_raft::{Config, Mutation, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};

type Scenario = fn(u64, fn(NodeId, u64) -> Config);

/// Runs up to `budget` seeds; returns the first failure message.
fn first_failure(
    budget: u64,
    scenario: Scenario,
    config_of: fn(NodeId, u64) -> Config,
) -> Option<(u64, String)> {
    for seed in 1..=budget {
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(seed, config_of)));
        if let Err(panic) = outcome {
            return Some((seed, crate::panic_message(&panic)));
        }
    }
    None
}

fn swarm(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    run_seed_with(seed, config_of);
}

/// 6.5840's Figure 8 schedule: propose at whoever leads, wait a little (sometimes long),
/// crash that leader half the time, keep at least three of five up.
fn figure8(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cluster = Cluster::with_config(5, seed, config_of);
    cluster.network.faults = crate::harness::network::Faults::unreliable();
    for iteration in 0..1000_u64 {
        let leader = cluster.leader();
        if let Some(leader) = leader {
            let _ = cluster.propose(leader, iteration.to_le_bytes().to_vec());
        }
        let wait_ms = if rng.random_ratio(1, 10) {
            rng.random_range(0..500)
        } else {
            rng.random_range(0..13)
        };
        cluster.run_for(wait_ms);
        if let Some(leader) = leader.filter(|_| rng.random_bool(0.5)) {
            cluster.crash(leader);
        }
        let down: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|&id| !cluster.is_up(id))
            .collect();
        if down.len() > 2 {
            cluster.restart(down[rng.random_range(0..down.len())]);
        }
    }
    if std::env::var("FIG8_DEBUG").is_ok() {
        let terms: Vec<u64> = cluster
            .ids()
            .iter()
            .filter_map(|&id| cluster.raft(id))
            .map(|r| r.term().0)
            .collect();
        println!(
            "seed {seed}: terms {terms:?} acks {} max applied {}",
            cluster.acks.len(),
            cluster.max_applied_index()
        );
    }
}

fn assert_caught(
    budget: u64,
    scenario: Scenario,
    config_of: fn(NodeId, u64) -> Config,
    expected: &[&str],
) {
    let failure = first_failure(budget, scenario, config_of);
    let Some((seed, message)) = failure else {
        panic!("no seed in 1..={budget} caught the broken rule");
    };
    assert!(
        expected.iter().any(|needle| message.contains(needle)),
        "seed {seed} failed, but not for the expected reason: {message}"
    );
}

fn grant_every_vote(id: NodeId, seed: u64) -> Config {
    Config {
        mutation: Mutation::GrantEveryVote,
        ..test_config(id, seed)
    }
}

fn commit_previous_term(id: NodeId, seed: u64) -> Config {
    Config {
        mutation: Mutation::CommitPreviousTermByCounting,
        ..test_config(id, seed)
    }
}

/// Without check-quorum a deposed leader keeps its role until it hears a higher term, which is
/// exactly when an unconfirmed read goes stale.
fn forget_vote(id: NodeId, seed: u64) -> Config {
    Config {
        mutation: Mutation::ForgetVoteOnRestart,
        ..test_config(id, seed)
    }
}

fn read_without_quorum(id: NodeId, seed: u64) -> Config {
    Config {
        mutation: Mutation::ReadWithoutQuorum,
        check_quorum: false,
        ..test_config(id, seed)
    }
}

#[test]
fn the_scripted_schedules_pass_with_the_correct_rules() {
    for seed in 1..=20 {
        crate::scripted::figure8_scripted(seed, test_config);
        crate::scripted::forgotten_vote_scripted(seed, test_config);
    }
}

#[test]
fn granting_two_votes_in_a_term_is_caught() {
    assert_caught(
        60,
        swarm,
        grant_every_vote,
        &["election safety", "two leaders"],
    );
}

#[test]
fn committing_a_previous_term_entry_by_counting_is_caught() {
    assert_caught(
        20,
        crate::scripted::figure8_scripted,
        commit_previous_term,
        &[
            "state machine safety",
            "leader completeness",
            "log matching",
            "conflicts with committed",
        ],
    );
}

#[test]
fn forgetting_the_vote_on_restart_is_caught() {
    assert_caught(
        20,
        crate::scripted::forgotten_vote_scripted,
        forget_vote,
        &["election safety", "two leaders"],
    );
}

#[test]
fn reading_without_a_quorum_round_is_caught() {
    assert_caught(60, swarm, read_without_quorum, &["stale read"]);
}

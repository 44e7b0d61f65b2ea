//! The checkers bite: with a deliberately broken rule, some seed of a small budget fails
//! with the property that rule protects.

use crate::harness::test_config;
use crate::run::run_seed_with;
use flotilla_raft::{Config, Mutation, NodeId};
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

fn vote_before_persist(id: NodeId, seed: u64) -> Config {
    Config {
        mutation: Mutation::VoteBeforePersist,
        ..test_config(id, seed)
    }
}

fn apply_before_persist(id: NodeId, seed: u64) -> Config {
    Config {
        mutation: Mutation::ApplyBeforePersist,
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
        crate::scripted::amnesia_scripted(seed, test_config);
        crate::scripted::vote_crash_scripted(seed, test_config);
        crate::scripted::synced_flip_scripted(seed, test_config);
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
            "commit safety",
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

/// What the checkers say when a replica forgot what it acknowledged: a leader lacking an
/// acknowledged write, or (amnesia, usually first) a replica whose term went back.
const LOST_WRITE: &[&str] = &[
    "went back",
    "leader completeness",
    "lacks the acknowledged",
    "state machine safety",
    "lacks X",
    "applied index",
];

#[test]
fn starting_on_an_empty_directory_under_the_old_id_is_caught() {
    assert_caught(
        20,
        crate::scripted::amnesia_started_scripted,
        test_config,
        LOST_WRITE,
    );
}

#[test]
fn taking_a_flipped_synced_bit_for_a_torn_tail_is_caught() {
    assert_caught(
        20,
        crate::scripted::synced_flip_started_scripted,
        test_config,
        LOST_WRITE,
    );
}

#[test]
fn sending_a_vote_before_its_write_is_caught() {
    assert_caught(
        20,
        crate::scripted::vote_crash_scripted,
        vote_before_persist,
        &["election safety", "two leaders"],
    );
}

#[test]
fn applying_past_the_durable_prefix_is_caught() {
    assert_caught(20, swarm, apply_before_persist, &["apply before persist"]);
}

//! The whole-cluster simulator (issue 18): N nodes, each the production node core over its real
//! write-ahead log on a crash-simulating file system, the meta group, simulated clients built on
//! the real router and session book, a simulated network, all in one thread and virtual time,
//! from one seed. Crashes with torn writes, disks that fail mid-write, pauses, partitions, loss,
//! duplication and delay spikes; election safety after every event, convergence after healing,
//! and every key's history checked for linearizability (exactly-once writes included).
//!
//! `FLOTILLA_SIM_SEEDS=N` runs N seeds (default: the CI budget) from `FLOTILLA_SIM_FIRST`
//! (default 1); `FLOTILLA_SIM_SEED=S` replays one, and `FLOTILLA_SIM_TRACE=1` with it prints its
//! faults and stops. A failure prints the command that reproduces it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod client;
mod cluster;
mod events;
mod faults;
#[path = "../linearizable/history.rs"]
mod history;
mod network;
mod node;
mod run;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// Seeds per `cargo test` run unless `FLOTILLA_SIM_SEEDS` says otherwise.
const CI_SEED_COUNT: u64 = 200;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else {
        "unknown panic".to_string()
    }
}

fn try_seed(seed: u64) -> Result<run::Report, String> {
    catch_unwind(AssertUnwindSafe(|| run::run_seed(seed))).map_err(|panic| {
        format!(
            "whole-cluster simulator seed {seed} failed: {}\nreproduce: FLOTILLA_SIM_SEED={seed} cargo test -p flotilla-node --test sim -- simulate_seeds",
            panic_message(&panic)
        )
    })
}

#[test]
fn simulate_seeds() {
    let first = env_u64("FLOTILLA_SIM_FIRST").unwrap_or(1);
    let seeds: Vec<u64> = match env_u64("FLOTILLA_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (first..first + env_u64("FLOTILLA_SIM_SEEDS").unwrap_or(CI_SEED_COUNT)).collect(),
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    let (mut operations, mut crashes, mut failed_writes, mut pauses, mut partitions) =
        (0, 0, 0, 0, 0);
    let (mut lost_disks, mut slow_disks) = (0, 0);
    let (mut drains, mut removals, mut joins, mut backup_reads) = (0, 0, 0, 0);
    let mut snapshots_refused = 0;
    let (mut splits_done, mut splits_refused) = (0, 0);
    let (mut merges_prepared, mut merges_refused, mut merged) = (0, 0, 0);
    let (mut merge_entries, mut merges_given_up, mut merges_asked) = (0, 0, 0);
    let (mut ranges_at_start, mut ranges_at_end) = (0, 0);
    let (mut asked_by_size, mut asked_by_load) = (0, 0);
    let mut on_disk = 0;
    let (mut replayed, mut produced, mut adopted) = (0, 0, 0);
    let (mut installed, mut off_loop, mut meta_installed) = (0, 0, 0);
    let (mut taken, mut written, mut meta_written, mut forced) = (0, 0, 0, 0);
    for &seed in &seeds {
        match try_seed(seed) {
            Ok(report) => {
                operations += report.operations;
                crashes += report.faults.crashes;
                failed_writes += report.faults.failed_writes;
                pauses += report.faults.pauses;
                partitions += report.faults.partitions;
                lost_disks += report.faults.lost_disks;
                slow_disks += report.faults.slow_disks;
                drains += report.faults.drains;
                removals += report.faults.removals;
                joins += report.faults.joins;
                backup_reads += report.backup_reads;
                snapshots_refused += report.snapshots_refused;
                splits_done += report.splits.done;
                splits_refused += report.splits.refused;
                merges_prepared += report.splits.merges_prepared;
                merges_refused += report.splits.merges_refused;
                merged += report.merged;
                merge_entries += report.merge_entries.0;
                merges_given_up += report.merge_entries.1;
                merges_asked += report.merges_asked;
                ranges_at_start += report.ranges.0;
                ranges_at_end += report.ranges.1;
                asked_by_size += report.splits_asked.0;
                asked_by_load += report.splits_asked.1;
                on_disk += usize::from(report.disk_engine);
                replayed += report.engine_work.0;
                produced += report.engine_work.1;
                adopted += report.engine_work.2;
                installed += report.snapshots_installed.0;
                off_loop += report.snapshots_installed.1;
                meta_installed += report.snapshots_installed.2;
                taken += report.snapshots_taken.0;
                written += report.snapshots_taken.1;
                meta_written += report.snapshots_taken.2;
                forced += report.compactions_forced;
            }
            Err(message) => failures.push(message),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} seeds in {seconds:.1} s ({:.0} seeds/min): {operations} client operations, {crashes} crashes, {failed_writes} failed writes, {pauses} pauses, {partitions} partitions, {slow_disks} slow disks, {lost_disks} disks lost (the node then refusing to start), {drains} drains, {removals} removals, {joins} joins, {backup_reads} keys read by backup views, {installed} snapshots installed ({off_loop} restored off the loop: decoded in memory, or ingested into the disk engine; {meta_installed} of the meta group), {taken} snapshots taken ({written} written off the loop; {meta_written} of the meta group; {forced} groups compacted early as they kept old log segments), {snapshots_refused} damaged snapshots refused, {splits_done} operator splits ({splits_refused} refused or given up), {merges_prepared} operator merges prepared ({merges_refused} refused or given up) and {merged} ranges merged away ({merge_entries} merge entries applied and {merges_given_up} merges given up by replicas; {merges_asked} merges asked by size), {ranges_at_start} ranges at the start and {ranges_at_end} at the end, splits asked by size {asked_by_size} and by load {asked_by_load}; {on_disk} seeds with the ranges in the disk engine ({replayed} entries applied by an engine before a start, {produced} snapshots produced by engines, {adopted} split halves hosted from an engine at start)",
        seeds.len(),
        seeds.len() as f64 * 60.0 / seconds.max(0.001),
    );
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
    assert!(operations > 0, "the simulator ran no operation");
    assert!(
        seeds.len() < 20 || splits_done > 0,
        "no split took effect in {} seeds",
        seeds.len()
    );
    assert!(
        seeds.len() < 20 || merged > 0,
        "no merge took effect in {} seeds",
        seeds.len()
    );
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let first = run::run_seed(3);
    let second = run::run_seed(3);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.operations, second.operations);
}

/// Seeds that failed once, replayed as they are. A change to what a seed draws moves them; the
/// rule each one found is pinned elsewhere too, named here.
#[test]
fn regression_seeds() {
    // 142: a node whose disk failure was armed just before the liveness phase had a read fail,
    // stopped after every node had been restarted, and stayed down (a harness bug: the
    // liveness phase now crashes such a node before restarting everything).
    // 202 (with joins): a new node's learner was promoted before its replica held anything (a
    // lag of 64 entries alone passed in a young group); it crashed empty, and the range's
    // joint configuration had no majority left. A learner now votes only once it holds the
    // membership in force (`caught_up` in node/src/core/placement.rs). 71 stalled the same way.
    // 198 (once clients fetched the map): a drain was given up while its promotion was on its
    // way; the cleanup decided on the older record (a learner) removed the voter it had become,
    // and a record of an uncommitted membership was never corrected. Steps now carry out only
    // on the membership they were decided on (`Operator::membership_index`), and leaders report
    // committed memberships only.
    // Each replayed as it first ran: without the backups later runs draw for half the seeds,
    // and with the ranges in memory (half the seeds keep them in the disk engine since).
    let in_memory = run::Options {
        disk_engine: Some(false),
        ..run::Options::default()
    };
    let as_found = run::Options {
        backups: Some(false),
        corrupt_snapshots: Some(false),
        splits: Some(false),
        ..in_memory
    };
    // 12 (with backups): a copy of a backup chunk request (the network duplicates) advanced
    // the view twice, and the chunk whose answer the client took skipped the other's pairs.
    // Chunks are numbered now, and a view serves its last one again.
    let with_backups = run::Options {
        backups: Some(true),
        corrupt_snapshots: Some(false),
        splits: Some(false),
        ..in_memory
    };
    // 911 (with backups and damaged snapshots): the meta leader decided "remove n7" on a
    // record that still showed n7 a learner, but the report of n7's promotion (a step of a
    // move given up, carried out late) was ordered before the decision in the meta log, and
    // the operator took the newer record as the one it was decided on: the range's leader
    // removed the voter n7, two voters were left, and one of them lost its disk for good. A
    // decision now names the record it was made on, and the view refuses it on another
    // (`ApplyError::RangeChanged`; shard-manager `a_decision_made_on_an_older_record_is_refused`).
    let with_backups_and_damage = run::Options {
        backups: Some(true),
        corrupt_snapshots: Some(true),
        splits: Some(false),
        ..in_memory
    };
    // With splits (the other options drawn as they were when found):
    // 31 and 133: a backup view opened on a range that had split since the client read its
    //   map, and the client took the right half's keys for absent. A view now opens only for
    //   a client whose epoch is still current when it opens and on a range whose own bounds
    //   are the map's (`split::keys_as_mapped`); the simulated backup ends if its range's keys
    //   changed (377).
    // 10: a write retried at the right half in a session opened at the parent after the split
    //   was answered `SessionExpired`; the simulated client now does what the production one
    //   does (again in a new session unless an attempt may have applied).
    // 248 and 266: a voter of a right half whose parent took a snapshot past the split had an
    //   empty replica that could not vote, and with another voter down the half never elected
    //   a leader. A replica this node never hosted may vote while empty.
    // With merges (which run in the split seeds):
    // 74: a range that merged its neighbour split again, before the merge was recorded, at
    //   the old boundary; the meta group could record neither. A range splits and merges only
    //   while its keys are the map's (`split::keys_as_mapped`).
    // 93: a late copy of a split's record brought back a range merged away since; the meta
    //   group keeps the merged groups and such a record changes nothing.
    // 482: a replica voted in a term, was destroyed (moved away), came back after a restart
    //   with the state its parent's replayed split carved, and voted again in that term: two
    //   leaders. A split's right half is carved only over an empty replica this node never
    //   hosted, keeping its term and vote (`split::host_splits`).
    // 504: such an empty replica of a right half voted, restarted, and then counted as a
    //   tombstone, which never votes: with another voter down the half never elected a leader
    //   again. A replica recovered empty with a vote is known never hosted
    //   (`placement::voted_while_empty`).
    // 858: a backup view opened on a range frozen for a merge while the range that took its
    //   keys (routed to at once with the descriptors of range epochs) had written since; it
    //   read an old value. A frozen range opens no view.
    // 899 (as drawn today): a learner promoted by a joint change it never received slept
    //   (quiescent) under a leader whose node was live but which no longer led the range, and
    //   ignored the only candidate that could win. A vote request whose log is ahead of a
    //   quiescent follower's wakes it (`is_campaign_against_live_leader` in flotilla-raft).
    let with_splits = run::Options {
        splits: Some(true),
        ..in_memory
    };
    for (seed, options) in [
        (142, as_found),
        (202, as_found),
        (71, as_found),
        (198, as_found),
        (12, with_backups),
        (911, with_backups_and_damage),
        (31, with_splits),
        (133, with_splits),
        (377, with_splits),
        (10, with_splits),
        (248, with_splits),
        (266, with_splits),
        (74, with_splits),
        (93, with_splits),
        (482, with_splits),
        (504, with_splits),
        (858, with_splits),
        (899, in_memory),
    ] {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run::run_seed_with(seed, options))) {
            panic!("regression seed {seed} failed: {}", panic_message(&panic));
        }
    }
}

/// A range's snapshot damaged on the wire is refused whole by the follower's check (never
/// installed, never stopping it) and sent again; the histories stay linearizable.
#[test]
fn damaged_snapshots_are_refused_and_sent_again() {
    let options = run::Options {
        backups: Some(false),
        corrupt_snapshots: Some(true),
        splits: Some(false),
        ..run::Options::default()
    };
    let mut refused = 0;
    for seed in 1..=DAMAGED_SNAPSHOT_SEEDS {
        match catch_unwind(AssertUnwindSafe(|| run::run_seed_with(seed, options))) {
            Ok(report) => refused += report.snapshots_refused,
            Err(panic) => panic!(
                "seed {seed} with damaged snapshots failed: {}",
                panic_message(&panic)
            ),
        }
    }
    assert!(
        refused > 0,
        "no damaged snapshot reached a follower in {DAMAGED_SNAPSHOT_SEEDS} seeds"
    );
}

/// With every range in the nodes' engines (on model disks that lose their unsynced batches at
/// every crash), the runs pass every check, and they exercise what only the engine does: logs
/// compacted with a note that the engine holds the state, starts that find the engine past
/// the log's snapshot (the entries it applied are not applied again), snapshots the engine
/// produces for followers, snapshots followers ingest off the loop, splits and merges.
#[test]
fn ranges_in_the_disk_engine_survive_every_fault() {
    let (mut crashes, mut splits, mut merged) = (0, 0, 0);
    let (mut replayed, mut produced, mut ingested) = (0, 0, 0);
    for seed in 1..=DISK_ENGINE_SEEDS {
        let options = run::Options {
            disk_engine: Some(true),
            ..run::Options::default()
        };
        let report = match catch_unwind(AssertUnwindSafe(|| run::run_seed_with(seed, options))) {
            Ok(report) => report,
            Err(panic) => panic!(
                "seed {seed} with the disk engine failed: {}",
                panic_message(&panic)
            ),
        };
        assert!(report.disk_engine);
        crashes += report.faults.crashes;
        splits += report.splits.done;
        merged += report.merged;
        replayed += report.engine_work.0;
        produced += report.engine_work.1;
        ingested += report.snapshots_installed.1;
    }
    assert!(
        crashes > 0 && splits > 0 && merged > 0 && replayed > 0 && produced > 0 && ingested > 0,
        "{DISK_ENGINE_SEEDS} seeds had {crashes} crashes, {splits} splits, {merged} merges, \
         {replayed} entries the engine had applied before a start, {produced} snapshots \
         produced by the engine and {ingested} ingested off the loop"
    );
}

/// Seeds of `ranges_in_the_disk_engine_survive_every_fault`.
const DISK_ENGINE_SEEDS: u64 = 16;

/// Seeds of `damaged_snapshots_are_refused_and_sent_again`.
const DAMAGED_SNAPSHOT_SEEDS: u64 = 20;

/// The checkers bite: with one rule broken, some seed of a small budget fails for the reason
/// that rule protects.
mod mutations {
    use super::*;
    use flotilla_node::core::CoreMutation;

    fn first_failure(budget: u64, options: run::Options) -> Option<(u64, String)> {
        (1..=budget).find_map(|seed| {
            catch_unwind(AssertUnwindSafe(|| run::run_seed_with(seed, options)))
                .err()
                .map(|panic| (seed, panic_message(&panic)))
        })
    }

    fn assert_caught(budget: u64, options: run::Options, expected: &[&str]) {
        let Some((seed, message)) = first_failure(budget, options) else {
            panic!("no seed in 1..={budget} caught {options:?}");
        };
        assert!(
            expected.iter().any(|needle| message.contains(needle)),
            "seed {seed} failed, but not for the expected reason: {message}"
        );
    }

    #[test]
    fn answering_a_put_before_a_majority_holds_it_is_caught() {
        let options = run::Options {
            mutation: CoreMutation::AnswerBeforeCommit,
            ..run::Options::default()
        };
        assert_caught(30, options, &["not linearizable"]);
    }

    #[test]
    fn serving_a_get_without_read_index_is_caught() {
        let options = run::Options {
            mutation: CoreMutation::ReadWithoutReadIndex,
            ..run::Options::default()
        };
        assert_caught(30, options, &["not linearizable"]);
    }

    #[test]
    fn installing_a_snapshot_without_checking_it_is_caught() {
        let options = run::Options {
            mutation: CoreMutation::InstallUncheckedSnapshots,
            corrupt_snapshots: Some(true),
            ..run::Options::default()
        };
        assert_caught(20, options, &["stopped on a snapshot it had installed"]);
    }

    #[test]
    fn compacting_onto_an_engine_that_did_not_sync_is_caught() {
        let options = run::Options {
            mutation: CoreMutation::CompactWithoutEngineSync,
            disk_engine: Some(true),
            ..run::Options::default()
        };
        assert_caught(30, options, &["the engine lost synced writes"]);
    }

    #[test]
    fn an_amnesiac_restart_under_the_old_id_is_caught() {
        let options = run::Options {
            amnesiac_restarts: true,
            ..run::Options::default()
        };
        assert_caught(
            60,
            options,
            &["not linearizable", "election safety", "liveness", "differ"],
        );
    }
}

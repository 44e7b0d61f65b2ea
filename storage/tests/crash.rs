//! Crash consistency with the crash-simulating file system: seeded random sequences of appends
//! (some overwriting a suffix), hard states, compactions, snapshot installs, crashes between
//! writes and power losses in the middle of a write, across several groups. After every crash
//! and reopen, every acknowledged write is there, and an unacknowledged write shows up at most
//! as a prefix of its records (never as garbage, never reordered). Reproduce with `SEED=<n>`.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{
    Entry, EntryPayload, GroupId, HardState, LogIndex, LogReader, MemLog, NodeId, Persist, Term,
};
use flotilla_storage::{CrashFs, LogConfig, LogEngine, WriteBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

mod common;
use common::{Observed, observe, snapshot};

const GROUP_COUNT: u64 = 4;
const STEP_COUNT: usize = 120;
const SEED_COUNT: u64 = 100;

struct Harness {
    seed: u64,
    rng: ChaCha8Rng,
    fs: CrashFs,
    engine: Option<LogEngine>,
    /// What was acknowledged, per group.
    model: BTreeMap<GroupId, MemLog>,
    term: u64,
    crash_count: u64,
    torn_count: u64,
    highest_segment: u64,
    config: LogConfig,
}

impl Harness {
    /// `preallocate` also turns on the background spare segment, whose thread shares the IO
    /// budget of `fail_after`; power losses mid-write are only simulated without it, so that a
    /// seed replays exactly.
    fn new(seed: u64, preallocate: bool) -> Self {
        let fs = CrashFs::new(seed);
        let mut harness = Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            fs,
            engine: None,
            model: (1..=GROUP_COUNT)
                .map(|g| (GroupId(g), MemLog::new()))
                .collect(),
            term: 1,
            crash_count: 0,
            torn_count: 0,
            highest_segment: 0,
            config: LogConfig {
                preallocate,
                ..LogConfig::small_for_tests()
            },
        };
        harness.reopen();
        harness
    }

    fn engine(&self) -> &LogEngine {
        self.engine.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        let config = self.config.clone();
        let opened = LogEngine::open_with(Arc::new(self.fs.clone()), "/wal", config);
        let (engine, report) =
            opened.unwrap_or_else(|e| panic!("reproduce: SEED={}: {e}", self.seed));
        self.torn_count += u64::from(report.torn_tail.is_some());
        self.engine = Some(engine);
    }

    /// One group's random persist: an append (maybe overwriting), a hard state, a compaction
    /// or a snapshot install.
    fn random_persist(&mut self, group: GroupId) -> Persist {
        let log = &self.model[&group];
        let (first, last) = (log.first_index().0, log.last_index().0);
        match self.rng.random_range(0..10) {
            0 if last >= first => {
                let index = self.rng.random_range(first..=last);
                let term = log.term(LogIndex(index)).unwrap().0;
                let data = vec![group.0 as u8; self.rng.random_range(0..600)];
                Persist {
                    compaction: Some(snapshot(term, index, &data)),
                    ..Persist::default()
                }
            }
            1 => {
                let index = last + self.rng.random_range(0..20);
                self.term += 1;
                let install = snapshot(self.term, index, b"installed");
                Persist {
                    snapshot: Some(install),
                    ..Persist::default()
                }
            }
            _ => self.random_append(first, last),
        }
    }

    fn random_append(&mut self, first: u64, last: u64) -> Persist {
        let overwrite = last >= first && self.rng.random_bool(0.2);
        let start = if overwrite {
            self.rng.random_range(first..=last)
        } else {
            last + 1
        };
        if overwrite {
            self.term += 1;
        }
        let count = self.rng.random_range(1..12);
        let entries = (start..start + count)
            .map(|index| Entry {
                term: Term(self.term),
                index: LogIndex(index),
                payload: EntryPayload::Normal(
                    vec![index as u8; self.rng.random_range(0..300)].into(),
                ),
            })
            .collect();
        let hard_state = self.rng.random_bool(0.5).then_some(HardState {
            term: Term(self.term),
            vote: Some(NodeId(self.rng.random_range(1..4))),
            commit: LogIndex(start.saturating_sub(1)),
        });
        Persist {
            entries,
            hard_state,
            ..Persist::default()
        }
    }

    fn random_batch(&mut self) -> Vec<(GroupId, Persist)> {
        let group_count = self.rng.random_range(1..=GROUP_COUNT);
        let mut groups: Vec<u64> = (1..=GROUP_COUNT).collect();
        for index in (1..groups.len()).rev() {
            groups.swap(index, self.rng.random_range(0..=index));
        }
        groups.truncate(group_count as usize);
        groups
            .into_iter()
            .map(|g| (GroupId(g), self.random_persist(GroupId(g))))
            .collect()
    }

    fn write(&self, persists: &[(GroupId, Persist)]) -> bool {
        let mut batch = WriteBatch::new();
        for (group, persist) in persists {
            batch.persist(*group, persist);
        }
        match self.engine().write(batch) {
            Ok(_) => true,
            Err(error) => {
                eprintln!("SEED={}: write failed: {error}", self.seed);
                false
            }
        }
    }

    fn acknowledge(&mut self, persists: &[(GroupId, Persist)]) {
        for (group, persist) in persists {
            self.model.get_mut(group).unwrap().persist(persist);
        }
    }

    fn step(&mut self) {
        match self.rng.random_range(0..20) {
            0 => self.crash_between_writes(),
            1 | 2 if !self.config.preallocate => self.crash_during_write(),
            3 => {
                self.engine().gc().unwrap();
            }
            _ => {
                let persists = self.random_batch();
                assert!(
                    self.write(&persists),
                    "reproduce: SEED={}: write failed",
                    self.seed
                );
                self.acknowledge(&persists);
            }
        }
        let newest = self
            .engine()
            .segment_sequences()
            .last()
            .copied()
            .unwrap_or(0);
        self.highest_segment = self.highest_segment.max(newest);
    }

    fn crash_between_writes(&mut self) {
        self.engine = None;
        self.fs.crash();
        self.crash_count += 1;
        self.reopen();
        for (group, log) in &self.model {
            let expected = observe(log);
            let found = observe(&self.engine().group(*group));
            assert_eq!(
                found, expected,
                "reproduce: SEED={}: {group} after a clean crash",
                self.seed
            );
        }
    }

    fn crash_during_write(&mut self) {
        let persists = self.random_batch();
        self.fs.fail_after(self.rng.random_range(0..8));
        if self.write(&persists) {
            self.fs.restore_power();
            self.acknowledge(&persists);
            return;
        }
        self.engine = None;
        self.fs.crash();
        self.crash_count += 1;
        self.reopen();
        for (group, persist) in &persists {
            self.check_prefix_survived(*group, persist);
        }
        self.resync_model();
    }

    /// The group holds its acknowledged log plus a prefix of the lost write's records.
    fn check_prefix_survived(&self, group: GroupId, persist: &Persist) {
        let found = observe(&self.engine().group(group));
        let candidates = prefixes(&self.model[&group], persist);
        assert!(
            candidates.contains(&found),
            "reproduce: SEED={}: {group} holds something no prefix of the lost write explains:\n{found:#?}",
            self.seed
        );
    }

    /// After a lost write, the surviving prefix becomes what is acknowledged.
    fn resync_model(&mut self) {
        let groups: Vec<GroupId> = self.model.keys().copied().collect();
        for group in groups {
            let reader = self.engine().group(group);
            let mut log = MemLog::new();
            let snapshot = reader.snapshot().unwrap();
            if snapshot != Default::default() {
                log.install_snapshot(snapshot);
            }
            let (first, last) = (reader.first_index(), reader.last_index());
            log.append(
                &reader
                    .entries(first, last.next(), u64::MAX)
                    .unwrap_or_default(),
            );
            let hard_state = reader.initial_state().unwrap().hard_state;
            log.persist(&Persist {
                hard_state: Some(hard_state),
                ..Persist::default()
            });
            assert_eq!(
                observe(&log),
                observe(&reader),
                "reproduce: SEED={}",
                self.seed
            );
            self.model.insert(group, log);
        }
    }
}

/// Every state `model` can reach by applying a prefix of `persist`'s records.
fn prefixes(model: &MemLog, persist: &Persist) -> Vec<Observed> {
    let mut steps: Vec<Persist> = Vec::new();
    if let Some(snapshot) = &persist.snapshot {
        steps.push(Persist {
            snapshot: Some(snapshot.clone()),
            ..Persist::default()
        });
    }
    for entry in &persist.entries {
        steps.push(Persist {
            entries: vec![entry.clone()],
            ..Persist::default()
        });
    }
    if persist.hard_state.is_some() {
        steps.push(Persist {
            hard_state: persist.hard_state,
            ..Persist::default()
        });
    }
    if let Some(snapshot) = &persist.compaction {
        steps.push(Persist {
            compaction: Some(snapshot.clone()),
            ..Persist::default()
        });
    }
    let mut log = model.clone();
    let mut candidates = vec![observe(&log)];
    for step in steps {
        log.persist(&step);
        candidates.push(observe(&log));
    }
    candidates
}

/// `SEED=<n>` replays one seed; `SEEDS=<n>` runs that many instead of the default.
fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("SEED") {
        return vec![seed.parse().unwrap()];
    }
    let count = std::env::var("SEEDS").map_or(SEED_COUNT, |count| count.parse().unwrap());
    (0..count).collect()
}

/// Runs every seed; returns (crashes, torn tails, highest segment number).
fn run_seeds(preallocate: bool) -> (u64, u64, u64) {
    let (mut crashes, mut torn, mut highest_segment) = (0, 0, 0);
    for seed in seeds() {
        let mut harness = Harness::new(seed, preallocate);
        for _ in 0..STEP_COUNT {
            harness.step();
        }
        harness.crash_between_writes();
        crashes += harness.crash_count;
        torn += harness.torn_count;
        highest_segment = highest_segment.max(harness.highest_segment);
    }
    (crashes, torn, highest_segment)
}

#[test]
fn acknowledged_writes_survive_random_crashes() {
    let (crashes, torn, highest_segment) = run_seeds(false);
    eprintln!("{crashes} crashes, {torn} torn tails, segments up to {highest_segment}");
    assert!(crashes > 0 && torn > 0, "the test never tore a write");
    assert!(highest_segment > 5, "the test never rolled over segments");
}

#[test]
fn acknowledged_writes_survive_crashes_with_spare_segments() {
    let (crashes, torn, highest_segment) = run_seeds(true);
    eprintln!("{crashes} crashes, {torn} torn tails, segments up to {highest_segment}");
    assert_eq!(torn, 0, "crashes between acknowledged writes tear nothing");
    assert!(crashes > 0 && highest_segment > 5);
}

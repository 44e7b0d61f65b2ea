//! Power losses between the WAL and the engine it feeds: the WAL on the crash-simulating file
//! system, each range's `DiskStateMachine` on the engine model, a node's cycle of "write the
//! committed entries to the WAL (synced: acknowledged), then apply them, one unsynced engine
//! batch per range, syncing the engine now and then". At every cycle boundary the disks are
//! forked and lose power every way they can: between WAL writes or in the middle of the next
//! one (`fail_after`), crossed with every prefix of the unsynced engine batches that survives.
//! After each, the WAL holds everything acknowledged, every range reopens exactly at the last
//! of its batches that survived (state equal to the in-memory reference at that entry), and
//! replaying the WAL from the next entry gives the reference's answers and state: nothing
//! lost, nothing applied twice. A property test then runs random schedules of cycles, syncs
//! and power losses on one node, recovering and going on after each. Reproduce with `SEED=<n>`.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{Entry, GroupId, LogIndex, LogReader};
use flotilla_storage::snapshot::encode_view;
use flotilla_storage::{
    CrashFs, DiskStateMachine, Engine, EngineConfig, EngineModel, KvStateMachine, LogConfig,
    LogEngine, Response, StateMachine, WriteBatch,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

mod common;
use common::history::random_entries_of;

const GROUPS: [GroupId; 3] = [GroupId(1), GroupId(2), GroupId(3)];
/// The most entries one cycle appends to one range.
const CYCLE_ENTRIES_MAX: u64 = 5;
const CYCLE_COUNT: u64 = 24;
/// Every range's history is this long: enough for any schedule the tests run.
const HISTORY_ENTRIES: u64 = 400;
/// A power loss in the middle of a WAL write strikes after this many file operations at most.
const WAL_FAIL_POINTS: u64 = 4;
const SEED_COUNT: u64 = 8;

/// The entries one cycle commits: the next few of some ranges.
type Cycle = Vec<(GroupId, Vec<Entry>)>;

/// One range's whole history and the in-memory reference at every applied entry.
struct Reference {
    entries: Vec<Entry>,
    /// `snapshots[k]`: the reference's snapshot after entry `k`.
    snapshots: Vec<Vec<u8>>,
    /// `answers[i]`: the reference's answer to entry `i + 1`.
    answers: Vec<Option<Response>>,
}

impl Reference {
    fn new(group: GroupId) -> Self {
        let entries = random_entries_of(group, group.0, HISTORY_ENTRIES);
        let mut machine = KvStateMachine::new(group);
        let mut snapshots = vec![snapshot_of(&machine)];
        let mut answers = Vec::new();
        for entry in &entries {
            answers.push(machine.apply_entry(entry));
            snapshots.push(snapshot_of(&machine));
        }
        Self {
            entries,
            snapshots,
            answers,
        }
    }

    /// Entries `first..=last`.
    fn entries(&self, first: u64, last: u64) -> &[Entry] {
        &self.entries[first as usize - 1..last as usize]
    }
}

/// The references of every range, built once for all tests.
fn references() -> &'static BTreeMap<GroupId, Reference> {
    static REFERENCES: OnceLock<BTreeMap<GroupId, Reference>> = OnceLock::new();
    REFERENCES.get_or_init(|| GROUPS.map(|g| (g, Reference::new(g))).into_iter().collect())
}

fn snapshot_of(machine: &dyn StateMachine) -> Vec<u8> {
    let mut view = machine.snapshot_view().unwrap();
    encode_view(view.as_mut(), 1 << 16).unwrap()
}

/// No spare segment: its background thread would share the IO budget of `fail_after`, and a
/// seed would not replay exactly.
fn log_config() -> LogConfig {
    LogConfig {
        preallocate: false,
        ..LogConfig::small_for_tests()
    }
}

/// What the node knows of its disks, to say what a power loss must leave.
#[derive(Clone, Debug, Default)]
struct Book {
    /// Per range, the last entry the WAL acknowledged.
    acked: BTreeMap<GroupId, u64>,
    /// Per range, its applied entry when the engine last synced.
    durable_applied: BTreeMap<GroupId, u64>,
    /// The engine batches since its last sync, in commit order: the range and its applied
    /// entry after the batch.
    unsynced: Vec<(GroupId, u64)>,
}

impl Book {
    /// Where `group` must reopen when the first `keep` unsynced batches survive.
    fn applied_after(&self, group: GroupId, keep: usize) -> u64 {
        let durable = self.durable_applied.get(&group).copied().unwrap_or(0);
        let kept = &self.unsynced[..keep.min(self.unsynced.len())];
        let last = kept.iter().rev().find(|(g, _)| *g == group);
        last.map_or(durable, |&(_, applied)| applied)
    }
}

/// One node: the WAL on `fs`, every range's machine on an engine on `model`.
struct Node {
    context: String,
    fs: CrashFs,
    model: EngineModel,
    log: Option<LogEngine>,
    engine: Option<Engine>,
    machines: BTreeMap<GroupId, DiskStateMachine>,
    book: Book,
}

impl Node {
    fn new(seed: u64) -> Self {
        let mut node = Self::closed(
            format!("SEED={seed}"),
            CrashFs::new(seed),
            EngineModel::new(),
            Book::default(),
        );
        node.open_log();
        node.open_engine();
        node
    }

    fn closed(context: String, fs: CrashFs, model: EngineModel, book: Book) -> Self {
        Self {
            context,
            fs,
            model,
            log: None,
            engine: None,
            machines: BTreeMap::new(),
            book,
        }
    }

    /// Copies of both disks as they stand, with nothing open on them: `fs` keeps its durable
    /// image (every WAL write was synced), `model` its unsynced batches too.
    fn fork(&self, seed: u64, context: String) -> Self {
        Self::closed(
            context,
            self.fs.fork(seed),
            self.model.fork(),
            self.book.clone(),
        )
    }

    fn log(&self) -> &LogEngine {
        self.log.as_ref().unwrap()
    }

    fn open_log(&mut self) {
        let fs = Arc::new(self.fs.clone());
        let opened = LogEngine::open_with(fs, "/wal", log_config());
        let (log, _) = opened.unwrap_or_else(|e| panic!("reproduce: {}: {e}", self.context));
        self.log = Some(log);
    }

    fn open_engine(&mut self) {
        let engine = Engine::open_model(&self.model, EngineConfig::small_for_tests()).unwrap();
        for group in GROUPS {
            self.machines
                .insert(group, engine.open_range(group).unwrap());
        }
        self.engine = Some(engine);
    }

    /// The next cycle: the next 1..=`CYCLE_ENTRIES_MAX` entries of some ranges.
    fn random_cycle(&self, rng: &mut impl Rng) -> Cycle {
        let mut cycle = Cycle::new();
        for group in GROUPS {
            if cycle.is_empty() && group == GROUPS[GROUPS.len() - 1] || rng.random_bool(0.6) {
                let first = self.book.acked.get(&group).copied().unwrap_or(0) + 1;
                let last = first + rng.random_range(0..CYCLE_ENTRIES_MAX);
                let entries = references()[&group].entries(first, last).to_vec();
                cycle.push((group, entries));
            }
        }
        cycle
    }

    /// Writes `cycle` to the WAL; whether it was acknowledged.
    fn write(&mut self, cycle: &Cycle) -> bool {
        let mut batch = WriteBatch::new();
        for (group, entries) in cycle {
            batch.append(*group, entries.clone());
        }
        if self.log().write(batch).is_err() {
            return false;
        }
        for (group, entries) in cycle {
            self.book
                .acked
                .insert(*group, entries.last().unwrap().index.0);
        }
        true
    }

    /// A node's cycle: the WAL write, then each range's entries applied in one engine batch.
    fn run_cycle(&mut self, cycle: &Cycle) {
        assert!(
            self.write(cycle),
            "reproduce: {}: a write failed",
            self.context
        );
        for (group, entries) in cycle {
            self.apply(*group, entries);
        }
    }

    /// Applies `entries` in one engine batch; checks the answers against the reference.
    fn apply(&mut self, group: GroupId, entries: &[Entry]) {
        let Some(last) = entries.last() else {
            return;
        };
        let first = entries[0].index.0 as usize;
        let before = self.model.unsynced_batch_count();
        let machine = self.machines.get_mut(&group).unwrap();
        let answers = machine.apply_entries(entries).unwrap();
        let expected = &references()[&group].answers[first - 1..last.index.0 as usize];
        assert!(
            answers == expected,
            "{}: {group} answered differently",
            self.context
        );
        let after = self.model.unsynced_batch_count();
        assert_eq!(after, before + 1, "one engine batch per applied batch");
        self.book.unsynced.push((group, last.index.0));
    }

    fn sync_engine(&mut self) {
        self.engine.as_ref().unwrap().sync().unwrap();
        for &(group, applied) in &self.book.unsynced {
            self.book.durable_applied.insert(group, applied);
        }
        self.book.unsynced.clear();
        assert_eq!(self.model.unsynced_batch_count(), 0);
    }

    /// Cuts the power, during a write of `during` after `operation_count` file operations
    /// if given, keeping `keep` unsynced engine batches; recovers and checks. Whether the WAL
    /// kept part of a write it never acknowledged.
    fn power_loss(&mut self, keep: usize, during: Option<(u64, &Cycle)>) -> bool {
        self.machines.clear();
        self.engine = None;
        if let Some((operation_count, cycle)) = during {
            if self.log.is_none() {
                self.open_log();
            }
            self.fs.fail_after(operation_count);
            self.write(cycle);
        }
        self.log = None;
        self.fs.crash();
        self.model.crash(keep);
        self.recover(keep)
    }

    /// Reopens both disks after a power loss that kept `keep` unsynced engine batches, checks
    /// every range and replays the WAL into it. Whether the WAL kept unacknowledged entries.
    fn recover(&mut self, keep: usize) -> bool {
        self.open_log();
        let kept_unacknowledged = self.check_wal();
        let expected: BTreeMap<GroupId, u64> = GROUPS
            .map(|g| (g, self.book.applied_after(g, keep)))
            .into_iter()
            .collect();
        self.book.unsynced.clear();
        self.book.durable_applied.clone_from(&expected);
        self.open_engine();
        for group in GROUPS {
            self.check_range(group, expected[&group]);
        }
        kept_unacknowledged
    }

    /// The WAL holds every acknowledged entry, and nothing but a prefix of each history; what
    /// survived of a lost write counts as acknowledged from now on. Whether anything did.
    fn check_wal(&mut self) -> bool {
        let mut kept_unacknowledged = false;
        for group in GROUPS {
            let wal = self.log().group(group);
            let last = wal.last_index().0;
            let acked = self.book.acked.get(&group).copied().unwrap_or(0);
            assert!(
                last >= acked,
                "reproduce: {}: {group} lost acknowledged entries {}..={acked}",
                self.context,
                last + 1
            );
            let entries = wal
                .entries(LogIndex(1), LogIndex(last + 1), u64::MAX)
                .unwrap();
            assert!(
                entries == references()[&group].entries(1, last),
                "reproduce: {}: {group}'s WAL is not a prefix of its history",
                self.context
            );
            kept_unacknowledged |= last > acked;
            self.book.acked.insert(group, last);
        }
        kept_unacknowledged
    }

    /// `group` reopened at exactly `expected`, as the reference there; the WAL replayed from
    /// the next entry gives the reference's answers and state.
    fn check_range(&mut self, group: GroupId, expected: u64) {
        let reference = &references()[&group];
        let last = self.book.acked[&group];
        let machine = &self.machines[&group];
        let applied = machine.applied().index.0;
        assert_eq!(
            applied, expected,
            "reproduce: {}: {group} reopened at the wrong entry",
            self.context
        );
        assert!(
            applied <= last,
            "{}: the engine is ahead of the WAL",
            self.context
        );
        assert!(
            snapshot_of(machine) == reference.snapshots[applied as usize],
            "reproduce: {}: {group} reopened at {applied} is not the reference there",
            self.context
        );
        let replay =
            self.log()
                .group(group)
                .entries(LogIndex(applied + 1), LogIndex(last + 1), u64::MAX);
        self.apply(group, &replay.unwrap());
        let machine = &self.machines[&group];
        assert!(
            snapshot_of(machine) == reference.snapshots[last as usize],
            "reproduce: {}: {group} replayed to {last} differs from the reference",
            self.context
        );
    }

    /// Every power loss this moment allows, each on a fork: between WAL writes or during the
    /// write of `next`, crossed with every prefix of the unsynced engine batches.
    fn lose_power_every_way(&self, seed: u64, next: &Cycle, stats: &mut Stats) {
        let fail_points = (0..WAL_FAIL_POINTS).map(Some);
        for fail_point in std::iter::once(None).chain(fail_points) {
            for keep in 0..=self.book.unsynced.len() {
                let context = format!("{}, fail point {fail_point:?}, keep {keep}", self.context);
                let mut fork = self.fork(seed ^ stats.power_losses, context);
                let during = fail_point.map(|point| (point, next));
                stats.kept_unacknowledged += u64::from(fork.power_loss(keep, during));
                stats.power_losses += 1;
            }
        }
        stats.unsynced_batches_max = stats.unsynced_batches_max.max(self.book.unsynced.len());
    }
}

/// What the exhaustive test went through.
#[derive(Debug, Default)]
struct Stats {
    power_losses: u64,
    /// Power losses after which the WAL held part of a write it never acknowledged.
    kept_unacknowledged: u64,
    unsynced_batches_max: usize,
}

/// `SEED=<n>` replays one seed; `SEEDS=<n>` runs that many instead of the default.
fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("SEED") {
        return vec![seed.parse().unwrap()];
    }
    let count = std::env::var("SEEDS").map_or(SEED_COUNT, |count| count.parse().unwrap());
    (0..count).collect()
}

#[test]
fn every_power_loss_between_the_wal_and_the_engine_recovers_exactly() {
    let mut stats = Stats::default();
    for seed in seeds() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut node = Node::new(seed);
        for cycle_index in 0..CYCLE_COUNT {
            let next = node.random_cycle(&mut rng);
            node.context = format!("SEED={seed}, before cycle {cycle_index}");
            node.lose_power_every_way(seed, &next, &mut stats);
            node.run_cycle(&next);
            if rng.random_bool(0.15) {
                node.sync_engine();
            }
        }
    }
    eprintln!("{stats:?}");
    assert!(
        stats.unsynced_batches_max >= 5,
        "the engine never lagged far behind the WAL"
    );
    assert!(
        stats.kept_unacknowledged > 0,
        "no power loss tore a WAL write"
    );
}

/// One step of a random schedule.
#[derive(Clone, Debug)]
enum Step {
    Cycle,
    SyncEngine,
    /// Power loss keeping `keep` (modulo the unsynced batches + 1) engine batches, during the
    /// next WAL write after that many file operations if given.
    PowerLoss {
        keep: usize,
        during_write: Option<u64>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => Just(Step::Cycle),
        1 => Just(Step::SyncEngine),
        2 => (any::<usize>(), proptest::option::of(0..WAL_FAIL_POINTS))
            .prop_map(|(keep, during_write)| Step::PowerLoss { keep, during_write }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random schedules on one node, which recovers and goes on after every power loss: the
    /// same checks after each, and losses strike a node that already recovered from some.
    #[test]
    fn random_schedules_of_cycles_syncs_and_power_losses_recover_exactly(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut node = Node::new(seed);
        for (index, step) in steps.into_iter().enumerate() {
            node.context = format!("SEED={seed}, step {index}: {step:?}");
            match step {
                Step::Cycle => {
                    let cycle = node.random_cycle(&mut rng);
                    node.run_cycle(&cycle);
                }
                Step::SyncEngine => node.sync_engine(),
                Step::PowerLoss { keep, during_write } => {
                    let keep = keep % (node.book.unsynced.len() + 1);
                    let cycle = node.random_cycle(&mut rng);
                    node.power_loss(keep, during_write.map(|point| (point, &cycle)));
                }
            }
        }
    }
}

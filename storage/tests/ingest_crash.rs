//! Power losses around a snapshot ingested off the Raft loop, on the engine model: the snapshot
//! written into a fresh space of the engine (several batches), the range switched to it (one
//! batch), the old space deleted (several batches), none of them synced. At every prefix of
//! those batches a power loss can keep, the range reopens at exactly its old state or exactly
//! the new one, never a mix; once the open's deletions ran, the engine holds that state's
//! records and nothing else (as many bytes as an engine that only ever held it). A second
//! power loss in the middle of those deletions changes neither.
#![allow(clippy::unwrap_used)]

use flotilla_raft::GroupId;
use flotilla_storage::snapshot::encode_view;
use flotilla_storage::{
    DiskStateMachine, Engine, EngineConfig, EngineModel, KvStateMachine, StateMachine,
};

mod common;
use common::history::random_entries_of;

const GROUP: GroupId = GroupId(4);

fn snapshot_of(machine: &dyn StateMachine) -> Vec<u8> {
    let mut view = machine.snapshot_view().unwrap();
    encode_view(view.as_mut(), 1 << 16).unwrap()
}

/// Batches of a few records, so the ingest and the deletions take several.
fn open(model: &EngineModel) -> Engine {
    let config = EngineConfig {
        batch_bytes_max: 16,
        ..EngineConfig::small_for_tests()
    };
    Engine::open_model(model, config).unwrap()
}

/// A state the range may recover to: its snapshot, and the bytes an engine holds once it holds
/// that state alone.
struct State {
    snapshot: Vec<u8>,
    engine_bytes: u64,
}

/// The range after the entries of history `seed` up to `entry_count`, applied into its group's
/// own space.
fn applied_state(seed: u64, entry_count: u64) -> State {
    let model = EngineModel::new();
    let engine = open(&model);
    let mut machine = engine.open_range(GROUP).unwrap();
    machine
        .apply_entries(&random_entries_of(GROUP, seed, entry_count))
        .unwrap();
    let mut reference = KvStateMachine::new(GROUP);
    for entry in random_entries_of(GROUP, seed, entry_count) {
        reference.apply_entry(&entry);
    }
    assert_eq!(snapshot_of(&machine), snapshot_of(&reference));
    State {
        snapshot: snapshot_of(&machine),
        engine_bytes: engine.disk_bytes().unwrap(),
    }
}

/// The range restored from `snapshot` (into a drawn space), its old space gone.
fn restored_state(snapshot: &[u8]) -> State {
    let model = EngineModel::new();
    let engine = open(&model);
    let mut machine = engine.open_range(GROUP).unwrap();
    machine.restore(snapshot).unwrap();
    engine.wait_for_deletions().unwrap();
    assert_eq!(snapshot_of(&machine), snapshot);
    State {
        snapshot: snapshot.to_vec(),
        engine_bytes: engine.disk_bytes().unwrap(),
    }
}

/// Opens what `disk` kept: the range is at `expected` exactly, and after the open's deletions
/// the engine holds nothing else.
fn check_recovered(disk: &EngineModel, expected: &State, context: &str) {
    let engine = open(disk);
    let machine = engine.open_range(GROUP).unwrap();
    assert!(
        snapshot_of(&machine) == expected.snapshot,
        "{context}: the range is not at the state expected"
    );
    engine.wait_for_deletions().unwrap();
    assert_eq!(
        engine.disk_bytes().unwrap(),
        expected.engine_bytes,
        "{context}: the engine holds more than the range"
    );
}

/// The range at the old state (history 1 up to entry 80) on `model`, synced: the state a power
/// loss falls back to before the switch.
fn synced_old_range(model: &EngineModel) -> (Engine, DiskStateMachine) {
    let engine = open(model);
    let mut machine = engine.open_range(GROUP).unwrap();
    machine
        .apply_entries(&random_entries_of(GROUP, 1, 80))
        .unwrap();
    engine.sync().unwrap();
    (engine, machine)
}

/// Every power loss after the range at `old` (synced) ran `work` (unsynced batches): the
/// first `new_from` batches leave it at `old`, the rest at `new`; and every power loss during
/// the deletions of the open after each of those. How many recoveries it checked.
fn lose_power_everywhere(
    model: &EngineModel,
    new_from: usize,
    old: &State,
    new: &State,
    work: &str,
) -> usize {
    let mut recoveries = 0;
    let total = model.unsynced_batch_count();
    for keep in 0..=total {
        let disk = model.fork();
        disk.crash(keep);
        let expected = if keep >= new_from { new } else { old };
        let context = format!("{work}, {keep} of {total} batches kept");
        check_recovered(&disk, expected, &context);
        recoveries += 1;
        // The deletions that open ran are unsynced too: lose power among them.
        let deletions = disk.unsynced_batch_count();
        for again in 0..deletions {
            let twice = disk.fork();
            twice.crash(again);
            let context = format!("{context}, then {again} of {deletions} deletion batches");
            check_recovered(&twice, expected, &context);
            recoveries += 1;
        }
    }
    recoveries
}

#[test]
fn a_power_loss_around_an_ingest_a_switch_and_a_deletion_loses_nothing_and_leaks_nothing() {
    let old = applied_state(1, 80);
    let new_snapshot = applied_state(2, 160).snapshot;
    let new = restored_state(&new_snapshot);
    let model = EngineModel::new();
    let (engine, mut machine) = synced_old_range(&model);
    let ingested = engine.ingest_snapshot(GROUP, &new_snapshot, None).unwrap();
    let ingest_batches = model.unsynced_batch_count();
    machine.restore_ingested(ingested).unwrap();
    assert_eq!(
        model.unsynced_batch_count(),
        ingest_batches + 1,
        "one switch"
    );
    engine.wait_for_deletions().unwrap();
    let total = model.unsynced_batch_count();
    assert!(
        ingest_batches > 2 && total > ingest_batches + 3,
        "{ingest_batches} ingest batches and {} deletion batches: too few to cut between",
        total - ingest_batches - 1
    );
    assert_eq!(engine.disk_bytes().unwrap(), new.engine_bytes);
    drop(machine);
    let recoveries = lose_power_everywhere(&model, ingest_batches + 1, &old, &new, "switched");
    // Each power loss among the ingest's batches leaves an orphan space to delete at the open,
    // and each after the switch the old space: most recoveries lose power a second time.
    assert!(
        recoveries > 2 * total,
        "{recoveries} recoveries of {total} batches"
    );
}

#[test]
fn a_power_loss_around_an_ingest_never_switched_to_leaks_nothing() {
    let old = applied_state(1, 80);
    let new_snapshot = applied_state(2, 160).snapshot;
    let model = EngineModel::new();
    let (engine, machine) = synced_old_range(&model);
    let ingested = engine.ingest_snapshot(GROUP, &new_snapshot, None).unwrap();
    drop(ingested);
    engine.wait_for_deletions().unwrap();
    assert_eq!(engine.disk_bytes().unwrap(), old.engine_bytes);
    drop(machine);
    let total = model.unsynced_batch_count();
    let recoveries = lose_power_everywhere(&model, total + 1, &old, &old, "dropped");
    assert!(
        recoveries > 2 * total,
        "{recoveries} recoveries of {total} batches"
    );
}

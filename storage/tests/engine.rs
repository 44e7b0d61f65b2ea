//! Engine behaviour beyond the `LogReader` contract: concurrent writers share syncs (group
//! commit), and segments and snapshot files are deleted once no group needs them.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{GroupId, LogIndex, LogReader, Persist};
use flotilla_storage::{LogConfig, LogEngine, WriteBatch};
use std::path::Path;

mod common;
use common::{entries, observe, snapshot};

fn count_files(directory: &Path, extension: &str) -> usize {
    std::fs::read_dir(directory)
        .unwrap()
        .filter(|entry| {
            let path = entry.as_ref().unwrap().path();
            path.extension().is_some_and(|ext| ext == extension)
        })
        .count()
}

#[test]
fn concurrent_writers_share_syncs_and_lose_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    let threads: Vec<_> = (1..=8)
        .map(|group| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut shared_max = 0;
                for start in (1..=400).step_by(4) {
                    let mut batch = WriteBatch::new();
                    batch.append(GroupId(group), entries(1, start..=start + 3));
                    let stats = engine.write(batch).unwrap();
                    assert_eq!(stats.record_count, 4);
                    shared_max = shared_max.max(stats.batch_count_in_sync);
                }
                shared_max
            })
        })
        .collect();
    let shared_max = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    assert!(shared_max > 1, "no two writers ever shared a sync");
    drop(engine);
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    for group in 1..=8 {
        let log = engine.group(GroupId(group));
        let read = log.entries(LogIndex(1), LogIndex(401), u64::MAX).unwrap();
        assert_eq!(read, entries(1, 1..=400));
    }
}

#[test]
fn segments_and_snapshot_files_are_deleted_once_compacted() {
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    for start in (1..=2000).step_by(50) {
        let mut batch = WriteBatch::new();
        batch.append(GroupId(1), entries(1, start..=start + 49));
        if start % 500 == 1 && start > 1 {
            let compaction = snapshot(1, start - 1, &[7; 100]);
            batch.compact(GroupId(1), compaction);
        }
        engine.write(batch).unwrap();
    }
    let newest_before_gc = *engine.segment_sequences().last().unwrap();
    let mut batch = WriteBatch::new();
    let compaction = snapshot(1, 2000, b"everything");
    batch.compact(GroupId(1), compaction);
    engine.write(batch).unwrap();
    engine.gc().unwrap();
    let after_gc = engine.segment_sequences().len();
    assert!(newest_before_gc > 3, "the log never rolled over");
    assert_eq!(after_gc, 1, "segments left after compacting everything");
    assert_eq!(count_files(directory.path(), "wal"), 1);
    assert_eq!(count_files(directory.path(), "snap"), 1);
    let before = observe(&engine.group(GroupId(1)));
    drop(engine);
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    assert_eq!(observe(&engine.group(GroupId(1))), before);
    assert_eq!(engine.group(GroupId(1)).first_index(), LogIndex(2001));
}

/// A quiet group's one old entry keeps every newer segment: the log names it (and only
/// groups with an entry older than the newest segments kept), and once it compacts the
/// segments go.
#[test]
fn the_groups_that_keep_old_segments_are_named() {
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    let (busy, quiet, newer) = (GroupId(1), GroupId(2), GroupId(3));
    let mut first = WriteBatch::new();
    first.append(quiet, entries(1, 1..=1));
    engine.write(first).unwrap();
    let mut start = 1;
    while engine.segment_count() < 6 {
        let mut batch = WriteBatch::new();
        batch.append(busy, entries(1, start..=start + 49));
        batch.compact(busy, snapshot(1, start + 49, b"busy"));
        engine.write(batch).unwrap();
        start += 50;
    }
    let mut last = WriteBatch::new();
    last.append(newer, entries(1, 1..=1));
    engine.write(last).unwrap();
    engine.gc().unwrap();
    let count = engine.segment_count();
    assert!(
        count >= 6,
        "the quiet group's entry let segments go: {count} left"
    );
    assert_eq!(engine.groups_pinning_segments(count), vec![]);
    // The quiet entry is in the oldest segment: keeping one fewer than all names it.
    let named = vec![(quiet, LogIndex(1))];
    assert_eq!(engine.groups_pinning_segments(count - 1), named);
    assert_eq!(engine.groups_pinning_segments(2), named);
    // The newer group's entry is in the newest segment, which even a keep of one keeps.
    assert_eq!(engine.groups_pinning_segments(1), named);
    let mut compaction = WriteBatch::new();
    compaction.compact(quiet, snapshot(1, 1, b"quiet"));
    engine.write(compaction).unwrap();
    engine.gc().unwrap();
    assert_eq!(engine.groups_pinning_segments(2), vec![]);
    assert!(
        engine.segment_count() <= 2,
        "{} segments left once nothing old was live",
        engine.segment_count()
    );
}

#[test]
fn a_record_over_the_limit_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    let mut big = entries(1, 1..=1);
    big[0].payload = flotilla_raft::EntryPayload::Normal(vec![0; 8 << 10].into());
    let mut batch = WriteBatch::new();
    batch.append(GroupId(1), big);
    assert!(engine.write(batch).is_err());
    assert_eq!(engine.group(GroupId(1)).last_index(), LogIndex(0));
}

#[test]
fn restarts_without_writes_do_not_pile_up_segments() {
    let directory = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
        let mut batch = WriteBatch::new();
        batch.set_hard_state(GroupId(1), flotilla_raft::HardState::default());
        engine.write(batch).unwrap();
    }
    assert!(count_files(directory.path(), "wal") <= 2);
}

/// The most recently written entries are served from memory: with every segment file zeroed
/// on disk, the cached tail still reads back while older entries fail with a storage error.
#[test]
fn recent_entries_are_read_from_memory() {
    let directory = tempfile::tempdir().unwrap();
    let config = LogConfig {
        recent_entries_per_group: 4,
        recent_bytes_per_group: 1 << 20,
        preallocate: false,
        ..LogConfig::default()
    };
    let (engine, _) = LogEngine::open(directory.path(), config).unwrap();
    let group = GroupId(1);
    let mut batch = WriteBatch::new();
    batch.persist(
        group,
        &Persist {
            entries: entries(1, 1..=10),
            ..Persist::default()
        },
    );
    engine.write(batch).unwrap();
    let log = engine.group(group);
    assert_eq!(log.recent_entry_count(), 4);
    for file in std::fs::read_dir(directory.path()).unwrap() {
        let path = file.unwrap().path();
        let length = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, vec![0u8; length as usize]).unwrap();
    }
    let tail = log.entries(LogIndex(7), LogIndex(11), u64::MAX).unwrap();
    assert_eq!(
        tail,
        entries(1, 7..=10),
        "the cached tail reads back from memory"
    );
    let first = entries(1, 7..=7);
    let limited = log.entries(LogIndex(7), LogIndex(11), first[0].payload_bytes());
    assert_eq!(
        limited.unwrap(),
        first,
        "the byte limit holds in memory too"
    );
    let old = log.entries(LogIndex(1), LogIndex(2), u64::MAX);
    assert!(
        matches!(old, Err(flotilla_raft::LogError::Storage(_))),
        "{old:?}"
    );
}

/// A truncation drops the cached entries it overrides, so the cache never serves an entry
/// the log no longer holds.
#[test]
fn a_truncation_drops_the_overridden_recent_entries() {
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    let group = GroupId(1);
    for (term, range) in [(1, 1..=6), (2, 4..=5)] {
        let mut batch = WriteBatch::new();
        let persist = Persist {
            entries: entries(term, range),
            ..Persist::default()
        };
        batch.persist(group, &persist);
        engine.write(batch).unwrap();
    }
    let log = engine.group(group);
    assert_eq!(log.last_index(), LogIndex(5));
    let read = log.entries(LogIndex(1), LogIndex(6), u64::MAX).unwrap();
    let mut expected = entries(1, 1..=3);
    expected.extend(entries(2, 4..=5));
    assert_eq!(read, expected);
}

/// Regression: an idle group's bootstrap snapshot (index 0, holding its initial membership)
/// lived on only as a checkpoint compaction once the segment with the original install was
/// deleted, and replaying a compaction at index 0 was ignored, so a restart forgot it (a crash
/// test seed, 2321 of 3,000, found it).
#[test]
fn an_idle_groups_bootstrap_snapshot_outlives_the_segment_that_installed_it() {
    let directory = tempfile::tempdir().unwrap();
    let config = LogConfig::small_for_tests();
    let (engine, _) = LogEngine::open(directory.path(), config.clone()).unwrap();
    let idle = GroupId(2);
    let mut bootstrap = WriteBatch::new();
    bootstrap.persist(
        idle,
        &Persist {
            snapshot: Some(snapshot(0, 0, b"initial membership")),
            ..Persist::default()
        },
    );
    engine.write(bootstrap).unwrap();
    let before = observe(&engine.group(idle));
    for start in (1..=1000).step_by(50) {
        let mut batch = WriteBatch::new();
        batch.append(GroupId(1), entries(1, start..=start + 49));
        let compaction = snapshot(1, start + 49, b"busy");
        batch.compact(GroupId(1), compaction);
        engine.write(batch).unwrap();
    }
    engine.gc().unwrap();
    assert!(
        engine.segment_sequences()[0] > 1,
        "the segment with the install was deleted"
    );
    drop(engine);
    let (engine, _) = LogEngine::open(directory.path(), config).unwrap();
    assert_eq!(observe(&engine.group(idle)), before);
}

#[test]
fn a_destroyed_group_keeps_only_its_tombstone_across_restarts() {
    use flotilla_raft::{HardState, NodeId, Term};
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    let mut batch = WriteBatch::new();
    batch.append(GroupId(1), entries(3, 1..=40));
    batch.append(GroupId(2), entries(1, 1..=5));
    batch.compact(GroupId(1), snapshot(3, 20, b"state"));
    engine.write(batch).unwrap();
    assert_eq!(count_files(directory.path(), "snap"), 1);
    let tombstone = HardState {
        term: Term(7),
        vote: None,
        commit: LogIndex::ZERO,
    };
    let mut batch = WriteBatch::new();
    batch.set_hard_state(
        GroupId(1),
        HardState {
            term: Term(7),
            vote: Some(NodeId(2)),
            commit: LogIndex(40),
        },
    );
    batch.destroy(GroupId(1), tombstone);
    engine.write(batch).unwrap();
    let check = |engine: &LogEngine| {
        let log = engine.group(GroupId(1));
        assert_eq!(log.hard_state(), tombstone);
        assert_eq!(log.last_index(), LogIndex::ZERO);
        assert_eq!(log.snapshot().unwrap().data, Vec::<u8>::new());
        assert_eq!(engine.group_ids(), vec![GroupId(1), GroupId(2)]);
        let other = engine.group(GroupId(2));
        assert_eq!(
            other.entries(LogIndex(1), LogIndex(6), u64::MAX).unwrap(),
            entries(1, 1..=5)
        );
    };
    check(&engine);
    assert_eq!(
        count_files(directory.path(), "snap"),
        0,
        "the snapshot file stays"
    );
    drop(engine);
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    check(&engine);
    // A replica created again starts its log over from the first index.
    let mut batch = WriteBatch::new();
    batch.append(GroupId(1), entries(8, 1..=3));
    engine.write(batch).unwrap();
    drop(engine);
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    let log = engine.group(GroupId(1));
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(4), u64::MAX).unwrap(),
        entries(8, 1..=3)
    );
    assert_eq!(log.hard_state().term, Term(7));
}

//! Damage at rest against torn writes. A flipped byte anywhere in what the log synced stops
//! recovery with an error naming the file, the offset and why it cannot be a tear; only the last
//! write, never synced, may be cut (and is reported). The position classes: a sealed segment, the
//! newest segment far from and near its end, the last synced batch (with and without the sync
//! mark that confirms it), and an unsynced tail. Also a missing segment, a damaged segment
//! header, a missing snapshot file, a missing log and another log's segment.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{Entry, EntryPayload, GroupId, LogIndex, LogReader, Persist, Term};
use flotilla_storage::{
    Corruption, CrashFs, LogBinding, LogConfig, LogEngine, NotTorn, RecoveryError, WriteBatch,
};
use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;
use common::segments::{FRAME_BYTES, Span, batches, flip_byte, last_batch, segment_paths, zero};
use common::{entries, observe, snapshot};

const G1: GroupId = GroupId(1);

fn config() -> LogConfig {
    LogConfig::small_for_tests()
}

/// Writes `count` entries in writes of ten and closes the engine.
fn write_entries(directory: &Path, count: u64) {
    let (engine, _) = LogEngine::open(directory, config()).unwrap();
    for start in (1..=count).step_by(10) {
        let mut batch = WriteBatch::new();
        batch.append(G1, entries(1, start..=(start + 9).min(count)));
        engine.write(batch).unwrap();
    }
}

/// Writes entries `first..first + count`, each with a payload of `payload`, as one write.
fn write_one_batch(directory: &Path, first: u64, count: u64, payload: &[u8]) {
    let (engine, _) = LogEngine::open(directory, config()).unwrap();
    let entries = (first..first + count)
        .map(|index| Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Normal(payload.to_vec().into()),
        })
        .collect();
    let mut batch = WriteBatch::new();
    batch.append(G1, entries);
    engine.write(batch).unwrap();
}

/// Opens and expects `Corrupt` in `file` at `offset`; returns the problem.
fn corruption(directory: &Path, file: &Path, offset: u64) -> Corruption {
    match LogEngine::open(directory, config()).unwrap_err() {
        RecoveryError::Corrupt {
            file: found,
            offset: at,
            problem,
        } => {
            assert_eq!((found.as_path(), at), (file, offset), "{problem}");
            problem
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn why(problem: &Corruption) -> NotTorn {
    match problem {
        Corruption::BadRecord { why, .. }
        | Corruption::BadPadding { why, .. }
        | Corruption::LostHeader { why } => *why,
        other => panic!("no verdict in {other:?}"),
    }
}

fn the_first_entries_survive(directory: &Path, count: u64) {
    let (engine, _) = LogEngine::open(directory, config()).unwrap();
    let log = engine.group(G1);
    assert_eq!(log.last_index(), LogIndex(count));
    let found = log.entries(LogIndex(1), LogIndex(count + 1), u64::MAX);
    assert_eq!(found.unwrap(), entries(1, 1..=count));
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_names_file_offset_and_reason() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 1000);
    let first = segment_paths(directory.path())[0].clone();
    let batch = batches(&first)[1];
    flip_byte(&first, batch.offset + FRAME_BYTES + 20);
    let problem = corruption(directory.path(), &first, batch.offset);
    assert_eq!(why(&problem), NotTorn::NotNewest);
    let message = LogEngine::open(directory.path(), config())
        .unwrap_err()
        .to_string();
    let expected_offset = format!("offset {}", batch.offset);
    assert!(
        message.contains(&first.display().to_string()) && message.contains(&expected_offset),
        "{message}"
    );
}

#[test]
fn a_flipped_byte_far_from_the_end_of_the_newest_segment_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 1000);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let spans = batches(&newest);
    assert!(spans.len() >= 3, "too few batches in the newest segment");
    flip_byte(&newest, spans[0].offset + FRAME_BYTES + 3);
    let problem = corruption(directory.path(), &newest, spans[0].offset);
    assert_eq!(why(&problem), NotTorn::WrittenAfter);
}

#[test]
fn a_flipped_byte_in_the_last_synced_batch_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 100);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let last = last_batch(&newest);
    assert!(
        last.marked,
        "the last batch of a commit carries a sync mark"
    );
    flip_byte(&newest, last.end - 40);
    let problem = corruption(directory.path(), &newest, last.offset);
    assert_eq!(
        why(&problem),
        NotTorn::WrittenAfter,
        "the mark proves the sync"
    );
}

#[test]
fn a_flipped_byte_in_a_last_batch_whose_mark_was_lost_is_still_corruption() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 100);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let last = last_batch(&newest);
    zero(&newest, last.end, FRAME_BYTES);
    flip_byte(&newest, last.offset + FRAME_BYTES + 5);
    let problem = corruption(directory.path(), &newest, last.offset);
    assert_eq!(
        why(&problem),
        NotTorn::NoSectorMissing,
        "every sector is there, so a crash cannot explain it"
    );
}

#[test]
fn a_flipped_byte_in_the_padding_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 95);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let last = last_batch(&newest);
    let padding = last.offset + FRAME_BYTES + last.body_bytes;
    assert!(padding < last.end, "this batch has padding");
    flip_byte(&newest, padding);
    let problem = corruption(directory.path(), &newest, last.offset);
    assert!(
        matches!(problem, Corruption::BadPadding { .. }),
        "{problem}"
    );
}

#[test]
fn an_unsynced_batch_with_a_lost_sector_is_cut_and_reported() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 100);
    write_one_batch(directory.path(), 101, 10, &[0xa5; 300]);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let last = last_batch(&newest);
    // A crash before the sync: no mark, and one sector of the write never reached the disk.
    zero(&newest, last.end, FRAME_BYTES);
    let sector = (last.offset / 512 + 2) * 512;
    assert!(sector + 512 <= last.end, "the batch spans a whole sector");
    zero(&newest, sector, 512);

    let (engine, report) = LogEngine::open(directory.path(), config()).unwrap();
    let torn = report.torn_tail.expect("the torn tail is reported");
    assert_eq!((torn.file, torn.offset), (newest, last.offset));
    assert_eq!(engine.group(G1).last_index(), LogIndex(100));
    drop(engine);
    let (_, report) = LogEngine::open(directory.path(), config()).unwrap();
    assert_eq!(report.torn_tail, None, "the torn bytes were zeroed");
    the_first_entries_survive(directory.path(), 100);
}

#[test]
fn a_lost_header_with_nothing_after_its_write_is_cut() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 100);
    write_one_batch(directory.path(), 101, 10, &[0xa5; 300]);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let last = last_batch(&newest);
    zero(&newest, last.end, FRAME_BYTES);
    zero(&newest, last.offset, FRAME_BYTES);
    let (_, report) = LogEngine::open(directory.path(), config()).unwrap();
    assert_eq!(report.torn_tail.unwrap().offset, last.offset);
    the_first_entries_survive(directory.path(), 100);
}

#[test]
fn a_lost_header_with_a_later_write_after_it_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 100);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let spans = batches(&newest);
    let victim = spans[spans.len() - 2];
    zero(&newest, victim.offset, FRAME_BYTES);
    let problem = corruption(directory.path(), &newest, victim.offset);
    assert_eq!(why(&problem), NotTorn::WrittenAfter);
}

/// Writes, after ten entries, a batch of one entry whose 2,000-byte payload is zeros but for
/// one byte in the second whole sector of the batch (after its header, the record header and
/// the entry's postcard fields), so that sector holds one non-zero byte: one changed byte
/// could zero it as well as a crash could. Removes the batch's mark, as a crash before it
/// would. Returns the segment, the batch and the fragile sector's offset.
fn batch_with_a_fragile_sector(directory: &Path) -> (PathBuf, Span, u64) {
    let (engine, _) = LogEngine::open(directory, config()).unwrap();
    let mut batch = WriteBatch::new();
    batch.append(G1, entries(1, 1..=10));
    engine.write(batch).unwrap();
    let newest = segment_paths(directory).pop().unwrap();
    let start = last_batch(&newest).end + FRAME_BYTES;
    let sector = (start / 512 + 2) * 512;
    let mut payload = vec![0; 2000];
    payload[(sector + 100 - start - FRAME_BYTES - 17 - 8) as usize] = 0x01;
    let entry = Entry {
        term: Term(1),
        index: LogIndex(11),
        payload: EntryPayload::Normal(payload.into()),
    };
    let mut batch = WriteBatch::new();
    batch.append(G1, vec![entry]);
    engine.write(batch).unwrap();
    drop(engine);
    let last = last_batch(&newest);
    assert_eq!(last.offset, start);
    zero(&newest, last.end, FRAME_BYTES);
    let file = fs::read(&newest).unwrap();
    let part = &file[sector as usize..sector as usize + 512];
    let non_zero = part.iter().filter(|&&b| b != 0).count();
    assert_eq!(non_zero, 1, "a fragile sector");
    (newest, last, sector)
}

#[test]
fn one_zeroed_fragile_sector_is_ambiguous_and_not_cut() {
    let directory = tempfile::tempdir().unwrap();
    let (newest, last, fragile) = batch_with_a_fragile_sector(directory.path());
    zero(&newest, fragile, 512);
    let problem = corruption(directory.path(), &newest, last.offset);
    assert_eq!(why(&problem), NotTorn::Ambiguous);
}

/// The header numbers the batch's fragile sector: a crash that lost another one is a tear.
#[test]
fn a_lost_sector_other_than_the_fragile_one_is_a_tear() {
    let directory = tempfile::tempdir().unwrap();
    let (newest, last, fragile) = batch_with_a_fragile_sector(directory.path());
    // The sector of the batch's last bytes: the end of the payload and the filler.
    let other = (last.end - 1) / 512 * 512;
    assert!(other > fragile, "another sector than the fragile one");
    zero(&newest, other, last.end - other);
    let (engine, report) = LogEngine::open(directory.path(), config()).unwrap();
    assert_eq!(report.torn_tail.unwrap().offset, last.offset);
    assert_eq!(engine.group(G1).last_index(), LogIndex(10));
}

#[test]
fn a_missing_segment_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 2000);
    let paths = segment_paths(directory.path());
    assert!(paths.len() >= 3);
    fs::remove_file(&paths[1]).unwrap();
    let error = LogEngine::open(directory.path(), config()).unwrap_err();
    assert!(
        matches!(
            error,
            RecoveryError::MissingSegment {
                missing_sequence: 2,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_damaged_segment_header_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 1000);
    let first = segment_paths(directory.path())[0].clone();
    flip_byte(&first, 12);
    let error = LogEngine::open(directory.path(), config()).unwrap_err();
    assert!(matches!(&error, RecoveryError::BadSegmentHeader { file, .. } if *file == first));
}

#[test]
fn a_missing_snapshot_file_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 20);
    let (engine, _) = LogEngine::open(directory.path(), config()).unwrap();
    let mut batch = WriteBatch::new();
    let compaction = Persist {
        compaction: Some(snapshot(1, 10, b"ten")),
        ..Persist::default()
    };
    batch.persist(G1, &compaction);
    engine.write(batch).unwrap();
    let before = observe(&engine.group(G1));
    drop(engine);
    let (engine, _) = LogEngine::open(directory.path(), config()).unwrap();
    assert_eq!(observe(&engine.group(G1)), before);
    drop(engine);

    let snapshot_file = fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "snap"))
        .unwrap();
    fs::remove_file(&snapshot_file).unwrap();
    let error = LogEngine::open(directory.path(), config()).unwrap_err();
    assert!(
        matches!(error, RecoveryError::SnapshotMissing { group: G1, .. }),
        "{error:?}"
    );
}

fn open_bound(directory: &Path, binding: LogBinding) -> Result<LogEngine, RecoveryError> {
    let fs = Arc::new(flotilla_storage::RealFs);
    LogEngine::open_bound(fs, directory, config(), binding).map(|(engine, _)| engine)
}

#[test]
fn a_log_that_must_exist_and_is_gone_is_an_error_not_a_new_log() {
    let directory = tempfile::tempdir().unwrap();
    let binding = LogBinding {
        log_id: Some(7),
        must_exist: true,
    };
    let error = open_bound(directory.path(), binding).unwrap_err();
    assert!(
        matches!(error, RecoveryError::LogMissing { .. }),
        "{error:?}"
    );
    assert!(
        segment_paths(directory.path()).is_empty(),
        "nothing created"
    );
    write_entries(directory.path(), 10);
    for path in segment_paths(directory.path()) {
        fs::remove_file(path).unwrap();
    }
    let error = open_bound(directory.path(), binding).unwrap_err();
    assert!(
        matches!(error, RecoveryError::LogMissing { .. }),
        "{error:?}"
    );
}

#[test]
fn a_segment_of_another_log_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let mine = LogBinding {
        log_id: Some(7),
        must_exist: false,
    };
    open_bound(directory.path(), mine).unwrap();
    let engine = open_bound(
        directory.path(),
        LogBinding {
            must_exist: true,
            ..mine
        },
    )
    .unwrap();
    drop(engine);
    let theirs = LogBinding {
        log_id: Some(8),
        must_exist: true,
    };
    let error = open_bound(directory.path(), theirs).unwrap_err();
    assert!(
        matches!(
            error,
            RecoveryError::ForeignSegment {
                found: 7,
                expected: 8,
                ..
            }
        ),
        "{error:?}"
    );
}

/// A log on the crash simulator with `write_count` acknowledged writes of several entries of
/// varied payloads, and maybe one more write torn by a power loss.
fn crash_log(seed: u64, write_count: u64, torn_last: bool) -> (CrashFs, Vec<Entry>) {
    let fs = CrashFs::new(seed);
    let config = LogConfig {
        preallocate: false,
        ..config()
    };
    let (engine, _) = LogEngine::open_with(Arc::new(fs.clone()), "/wal", config.clone()).unwrap();
    let mut acknowledged = Vec::new();
    let mut next = 1;
    for write in 0..=write_count {
        let count = 1 + (seed + write) % 7;
        let batch_entries: Vec<Entry> = (next..next + count)
            .map(|index| Entry {
                term: Term(1),
                index: LogIndex(index),
                payload: EntryPayload::Normal(
                    vec![(index % 251) as u8 + 1; (index * 37 % 700) as usize].into(),
                ),
            })
            .collect();
        let mut batch = WriteBatch::new();
        batch.append(G1, batch_entries.clone());
        if write == write_count {
            if torn_last {
                fs.fail_after(1);
                assert!(engine.write(batch).is_err());
            }
            break;
        }
        engine.write(batch).unwrap();
        acknowledged.extend(batch_entries);
        next += count;
    }
    drop(engine);
    fs.crash();
    (fs, acknowledged)
}

fn reopen(fs: &CrashFs) -> Result<LogEngine, RecoveryError> {
    let config = LogConfig {
        preallocate: false,
        ..config()
    };
    LogEngine::open_with(Arc::new(fs.clone()), "/wal", config).map(|(engine, _)| engine)
}

fn holds_everything_acknowledged(engine: &LogEngine, acknowledged: &[Entry]) -> bool {
    let log = engine.group(G1);
    let last = acknowledged.last().map_or(LogIndex(0), |entry| entry.index);
    log.last_index() >= last
        && log
            .entries(LogIndex(1), last.next(), u64::MAX)
            .ok()
            .as_deref()
            == Some(acknowledged)
}

/// The segment files of a crashed log and their sizes, as recovery will first see them.
fn segment_files(fs: &CrashFs) -> Vec<(PathBuf, u64)> {
    (1..)
        .map(|sequence| PathBuf::from(format!("/wal/{sequence:020}.wal")))
        .map_while(|path| fs.durable_bytes(&path).map(|bytes| (path, bytes)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A byte flipped anywhere in any segment of a crashed log, before recovery: recovery
    /// refuses, or it opens with every acknowledged entry intact. It never opens with fewer.
    #[test]
    fn a_flipped_byte_anywhere_never_loses_an_acknowledged_entry(
        seed in 0u64..1000,
        write_count in 1u64..60,
        torn_last: bool,
        segment_pick in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (fs, acknowledged) = crash_log(seed, write_count, torn_last);
        let files = segment_files(&fs);
        let (path, file_bytes) = files[segment_pick.index(files.len())].clone();
        prop_assume!(file_bytes > 0);
        let offset = position.index(file_bytes as usize) as u64;
        fs.flip_byte_with(&path, offset, mask);
        if let Ok(engine) = reopen(&fs) {
            prop_assert!(
                holds_everything_acknowledged(&engine, &acknowledged),
                "seed {seed}: opened after a flip at {offset} of {} and lost entries",
                path.display()
            );
        }
    }

    /// A byte flipped inside an acknowledged record of a crashed log is always refused.
    #[test]
    fn a_flipped_byte_in_an_acknowledged_record_is_refused(
        seed in 0u64..1000,
        write_count in 1u64..60,
        torn_last: bool,
        entry_pick in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (fs, acknowledged) = crash_log(seed, write_count, torn_last);
        let entry = &acknowledged[entry_pick.index(acknowledged.len())];
        let probe = reopen(&fs.fork(seed)).unwrap();
        let location = probe.group(G1).record_location(entry.index).unwrap();
        drop(probe);
        let path = PathBuf::from(format!("/wal/{:020}.wal", location.segment));
        let at = location.offset + position.index(location.frame_bytes as usize) as u64;
        fs.flip_byte_with(&path, at, mask);
        prop_assert!(reopen(&fs).is_err(), "seed {seed}: a damaged record was accepted");
    }
}

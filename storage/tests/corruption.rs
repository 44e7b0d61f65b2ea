//! Corruption at rest: a flipped byte before the tail stops recovery with an error naming the
//! file and offset; a torn record at the very tail is cut off, reported, and open succeeds; a
//! missing segment, a damaged header and a missing snapshot file are errors too.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{GroupId, LogIndex, LogReader, Persist};
use flotilla_storage::{LogConfig, LogEngine, RecordError, RecoveryError, WriteBatch};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod common;
use common::{entries, observe, snapshot};

const G1: GroupId = GroupId(1);
const HEADER_BYTES: u64 = 32;

fn config() -> LogConfig {
    LogConfig::small_for_tests()
}

/// Writes `count` entries in batches of ten and closes the engine.
fn write_entries(directory: &Path, count: u64) {
    let (engine, _) = LogEngine::open(directory, config()).unwrap();
    for start in (1..=count).step_by(10) {
        let mut batch = WriteBatch::new();
        batch.append(G1, entries(1, start..=(start + 9).min(count)));
        engine.write(batch).unwrap();
    }
}

fn segment_paths(directory: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    paths.sort();
    paths
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
}

/// The offset just past the last non-zero byte: where the written records end.
fn data_end(path: &Path) -> u64 {
    let bytes = fs::read(path).unwrap();
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last as u64 + 1)
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_names_file_and_offset() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 1000);
    let first = segment_paths(directory.path())[0].clone();
    flip_byte(&first, HEADER_BYTES + 20);
    let error = LogEngine::open(directory.path(), config()).unwrap_err();
    match &error {
        RecoveryError::Corrupt {
            file,
            offset,
            source,
        } => {
            assert_eq!(file, &first);
            assert_eq!(*offset, HEADER_BYTES);
            assert!(matches!(source, RecordError::ChecksumMismatch { .. }));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&first.display().to_string()) && message.contains("offset 32"));
}

#[test]
fn a_flipped_byte_far_from_the_tail_of_the_newest_segment_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 1000);
    let newest = segment_paths(directory.path()).pop().unwrap();
    assert!(
        data_end(&newest) - HEADER_BYTES > config().sync_bytes_max,
        "too little data"
    );
    flip_byte(&newest, HEADER_BYTES + 1);
    let error = LogEngine::open(directory.path(), config()).unwrap_err();
    assert!(
        matches!(&error, RecoveryError::Corrupt { file, offset: 32, .. } if *file == newest),
        "{error:?}"
    );
}

#[test]
fn a_torn_record_at_the_tail_is_cut_off_and_reported() {
    let directory = tempfile::tempdir().unwrap();
    write_entries(directory.path(), 1000);
    let newest = segment_paths(directory.path()).pop().unwrap();
    let end = data_end(&newest);
    let file = OpenOptions::new().write(true).open(&newest).unwrap();
    file.write_all_at(&[0x30, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 0, 7], end)
        .unwrap();
    drop(file);

    let (engine, report) = LogEngine::open(directory.path(), config()).unwrap();
    let torn = report.torn_tail.expect("the torn tail is reported");
    assert_eq!(
        (torn.file, torn.offset, torn.discarded_bytes),
        (newest, end, 11)
    );
    let log = engine.group(G1);
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(1001), u64::MAX).unwrap(),
        entries(1, 1..=1000)
    );
    drop(engine);

    let (_, report) = LogEngine::open(directory.path(), config()).unwrap();
    assert_eq!(report.torn_tail, None, "the torn bytes were zeroed");
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

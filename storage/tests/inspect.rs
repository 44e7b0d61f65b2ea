//! `inspect_log`: a log written through `LogEngine` and read back without a byte changed. The
//! counts match what was written, damage is a finding naming the file and offset (never a
//! panic), a snapshot file that lost bytes or changed is found, and what recovery would repair
//! (a torn tail, an orphaned snapshot file) is reported as a notice, not repaired.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{GroupId, HardState, LogIndex, NodeId, Term};
use flotilla_storage::inspect::{InspectOptions, LogInspection, Severity, inspect_log};
use flotilla_storage::{LogConfig, LogEngine, WriteBatch};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

mod common;
use common::segments::{
    FRAME_BYTES, batches, flip_byte, last_batch, paths_ending, segment_paths, zero,
};
use common::{entries, snapshot};

const G1: GroupId = GroupId(1);
const G2: GroupId = GroupId(2);

fn config() -> LogConfig {
    LogConfig::small_for_tests()
}

fn inspect(directory: &Path, verify_snapshots: bool) -> LogInspection {
    let options = InspectOptions {
        verify_snapshots,
        ..InspectOptions::default()
    };
    inspect_log(directory, &config(), options).unwrap()
}

/// G1: entries 1..=60 of term 2, compacted at 5 into a snapshot, commit 50, a vote for node 3.
/// G2: a received snapshot at 10, then entries 11..=15 of term 4.
/// Returns the segment count and the G1 snapshot file's path.
fn write_two_groups(directory: &Path) -> (usize, PathBuf) {
    let (engine, _) = LogEngine::open(directory, config()).unwrap();
    for start in (1..=60).step_by(10) {
        let mut batch = WriteBatch::new();
        batch.append(G1, entries(2, start..=start + 9));
        engine.write(batch).unwrap();
    }
    let mut batch = WriteBatch::new();
    let hard_state = HardState {
        term: Term(2),
        vote: Some(NodeId(3)),
        commit: LogIndex(50),
    };
    batch.set_hard_state(G1, hard_state);
    batch.compact(G1, snapshot(2, 5, b"the first five entries"));
    batch.install_snapshot(G2, snapshot(4, 10, b"group two at ten"));
    engine.write(batch).unwrap();
    let mut batch = WriteBatch::new();
    batch.append(G2, entries(4, 11..=15));
    engine.write(batch).unwrap();
    let segment_count = engine.segment_sequences().len();
    drop(engine);
    let snapshot_file = paths_ending(directory, "snap").into_iter().next().unwrap();
    (segment_count, snapshot_file)
}

/// Every file below `directory` with its bytes and permissions.
fn contents(directory: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    fs::read_dir(directory)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            (path.clone(), (fs::read(&path).unwrap(), mode))
        })
        .collect()
}

#[test]
fn a_written_log_is_counted_right() {
    let directory = tempfile::tempdir().unwrap();
    let (segment_count, _) = write_two_groups(directory.path());
    let inspection = inspect(directory.path(), true);
    assert!(inspection.is_healthy(), "{:?}", inspection.findings);
    assert!(inspection.findings.is_empty(), "{:?}", inspection.findings);
    assert_eq!(inspection.segments.len(), segment_count);
    assert_eq!(inspection.totals.segment_count, segment_count as u64);
    // 60 entries, a hard state and a marker in G1; a marker and 5 entries in G2.
    assert_eq!(inspection.totals.record_count, 60 + 2 + 1 + 5);
    assert_eq!(inspection.totals.group_count, 2);
    assert_eq!(inspection.totals.snapshot_count, 2);

    let g1 = &inspection.groups[0];
    assert_eq!(g1.group, G1);
    assert_eq!(g1.first_index, Some(LogIndex(6)));
    assert_eq!((g1.last_index, g1.last_term), (LogIndex(60), Term(2)));
    assert_eq!(g1.entry_count, 55);
    assert_eq!(g1.hard_state.vote, Some(NodeId(3)));
    assert_eq!(g1.hard_state.commit, LogIndex(50));
    assert_eq!(g1.applied_index, LogIndex(50), "the committed entries");
    let g1_snapshot = g1.snapshot.as_ref().unwrap();
    assert_eq!(g1_snapshot.index, LogIndex(5));
    assert_eq!(g1_snapshot.file_bytes, Some(g1_snapshot.data_bytes));
    assert!(g1_snapshot.verified);

    let g2 = &inspection.groups[1];
    assert_eq!(g2.group, G2);
    assert_eq!(
        (g2.first_index, g2.last_index),
        (Some(LogIndex(11)), LogIndex(15))
    );
    assert_eq!(g2.last_term, Term(4));
    // Installing the snapshot moved the commit index to it; nothing after it is committed.
    assert_eq!(g2.applied_index, LogIndex(10));
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_with_file_and_offset() {
    let directory = tempfile::tempdir().unwrap();
    let (segment_count, _) = write_two_groups(directory.path());
    let oldest = segment_paths(directory.path()).remove(0);
    let spans = batches(&oldest);
    let middle = spans[spans.len() / 2];
    flip_byte(&oldest, middle.offset + FRAME_BYTES + middle.body_bytes / 2);

    let inspection = inspect(directory.path(), false);
    assert!(!inspection.is_healthy());
    let damage: Vec<_> = inspection
        .findings
        .iter()
        .filter(|finding| finding.severity == Severity::Damage)
        .collect();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].file.as_deref(), Some(oldest.as_path()));
    assert_eq!(damage[0].offset, Some(middle.offset));
    assert!(
        damage[0].problem.contains("corrupt"),
        "{}",
        damage[0].problem
    );
    assert_eq!(
        inspection.segments.len(),
        segment_count,
        "the later segments are still checked"
    );
    assert_eq!(inspection.segments[0].valid_bytes, None);
}

#[test]
fn a_truncated_snapshot_file_is_reported() {
    let directory = tempfile::tempdir().unwrap();
    let (_, snapshot_file) = write_two_groups(directory.path());
    let file_bytes = fs::metadata(&snapshot_file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&snapshot_file)
        .unwrap()
        .set_len(file_bytes / 2)
        .unwrap();

    let inspection = inspect(directory.path(), false);
    assert!(!inspection.is_healthy());
    let finding = &inspection.findings[0];
    assert_eq!(finding.file.as_deref(), Some(snapshot_file.as_path()));
    assert!(
        finding
            .problem
            .contains(&format!("{} bytes", file_bytes / 2)),
        "{}",
        finding.problem
    );
}

#[test]
fn a_changed_snapshot_byte_is_found_only_by_verifying() {
    let directory = tempfile::tempdir().unwrap();
    let (_, snapshot_file) = write_two_groups(directory.path());
    flip_byte(&snapshot_file, 3);
    assert!(inspect(directory.path(), false).is_healthy());
    let inspection = inspect(directory.path(), true);
    assert!(!inspection.is_healthy());
    assert!(
        inspection.findings[0].problem.contains("crc32c"),
        "{:?}",
        inspection.findings
    );
}

#[test]
fn inspection_reports_the_repairs_a_start_makes_and_changes_no_byte() {
    let directory = tempfile::tempdir().unwrap();
    write_two_groups(directory.path());
    {
        let (engine, _) = LogEngine::open(directory.path(), config()).unwrap();
        let mut batch = WriteBatch::new();
        batch.append(G2, entries(4, 16..=40));
        engine.write(batch).unwrap();
    }
    // A crash before the last sync: no mark, one sector lost.
    let newest = segment_paths(directory.path()).pop().unwrap();
    let last = last_batch(&newest);
    zero(&newest, last.end, FRAME_BYTES);
    zero(&newest, (last.offset / 512 + 1) * 512, 512);
    let orphan = directory
        .path()
        .join(format!("snap-{:020}-{:020}-{:020}.snap.tmp", 9, 1, 1));
    fs::write(&orphan, b"an interrupted snapshot").unwrap();
    let before = contents(directory.path());

    let inspection = inspect(directory.path(), true);
    assert_eq!(contents(directory.path()), before, "not a byte changed");
    assert!(inspection.is_healthy(), "{:?}", inspection.findings);
    let torn = inspection.segments.last().unwrap().torn_tail.unwrap();
    assert_eq!(torn.offset, last.offset);
    let notices: Vec<_> = inspection.findings.iter().map(|f| f.file.clone()).collect();
    assert_eq!(notices, vec![Some(newest.clone()), Some(orphan)]);

    let (_, report) = LogEngine::open(directory.path(), config()).unwrap();
    let cut = report.torn_tail.unwrap();
    assert_eq!(
        (cut.file, cut.offset),
        (newest, torn.offset),
        "what a start cuts"
    );
    assert_eq!(report.removed_snapshot_file_count, 1);
}

#[test]
fn a_missing_directory_is_an_error_and_is_not_created() {
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("log");
    let error = inspect_log(&missing, &config(), InspectOptions::default()).unwrap_err();
    assert!(error.to_string().contains("log"), "{error}");
    assert!(!missing.exists());
}

//! Offline inspection of a log: what recovery would find and rebuild, read without changing a
//! byte. It runs recovery's own scan (`log/recovery.rs`, `examine`) in read-only mode on a file
//! system that refuses every change (`read_only.rs`), so it verifies exactly what a start
//! verifies: every segment header, batch, sync mark and record checksum, and the shape of each
//! group's log. Damage is reported as findings (file, offset, what is wrong), never as a panic;
//! the repairs a start would make (cutting a torn tail, deleting orphaned snapshot files) are
//! reported as notices and not made.
//!
//! Run it on a directory no node holds (`DirPeek`): a live node's newest segment may end in a
//! write still in flight, which would read as a torn tail.

mod read_only;
mod report;
mod snapshots;

pub use report::{
    Finding, GroupReport, HardStateReport, LogInspection, SegmentReport, Severity, SnapshotReport,
    TornReport, Totals,
};

use crate::config::LogConfig;
use crate::error::RecoveryError;
use crate::file::FileSystem;
use crate::log::LogBinding;
use crate::log::index::GroupState;
use crate::log::recovery::{Recovered, ScannedSegment, examine};
use crate::log::snapfile;
use flotilla_raft::{GroupId, LogIndex};
use read_only::ReadOnlyFs;
use std::collections::HashSet;
use std::path::Path;

/// What to check besides what a start checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InspectOptions {
    /// Read every snapshot file whole and verify its checksum (the marker's crc32c, and a KV
    /// snapshot's own); otherwise only its presence and length are checked, as a start does.
    pub verify_snapshots: bool,
    /// What the log must be: the data directory's log id, and whether it must exist.
    pub binding: LogBinding,
}

/// Inspects the log in `directory` without changing anything in it.
///
/// # Errors
/// `Config` when `config` is invalid, `Io` when the directory cannot be listed (it is missing,
/// say). Everything wrong with the files themselves is a finding instead.
pub fn inspect_log(
    directory: &Path,
    config: &LogConfig,
    options: InspectOptions,
) -> Result<LogInspection, RecoveryError> {
    config.validate()?;
    let fs = ReadOnlyFs;
    let names = fs.list(directory).map_err(|source| RecoveryError::Io {
        file: directory.to_path_buf(),
        source,
    })?;
    let (recovered, errors) = examine(&fs, directory, &names, config, options.binding);
    let mut findings: Vec<Finding> = errors.iter().map(finding_of).collect();
    let segments: Vec<SegmentReport> = recovered.scanned.iter().map(segment_report).collect();
    findings.extend(segments.iter().filter_map(torn_notice));
    let groups = group_reports(&recovered, directory, options, &mut findings);
    findings.extend(orphan_notices(directory, &names, &groups));
    let totals = totals(&segments, &groups);
    Ok(LogInspection {
        directory: directory.to_path_buf(),
        segments,
        groups,
        findings,
        totals,
    })
}

fn segment_report(scanned: &ScannedSegment) -> SegmentReport {
    let torn_tail = scanned
        .valid_end
        .zip(scanned.torn_until)
        .map(|(offset, until)| TornReport {
            offset,
            discarded_bytes: until - offset,
        });
    SegmentReport {
        file: scanned.path.clone(),
        sequence: scanned.sequence,
        file_bytes: scanned.file_bytes,
        valid_bytes: scanned.valid_end,
        record_count: scanned.record_count,
        torn_tail,
    }
}

fn torn_notice(segment: &SegmentReport) -> Option<Finding> {
    let torn = segment.torn_tail?;
    Some(Finding {
        severity: Severity::Notice,
        file: Some(segment.file.clone()),
        offset: Some(torn.offset),
        problem: format!(
            "the segment ends in a write that never completed its sync (a crash): the next \
             start cuts {} bytes here",
            torn.discarded_bytes
        ),
    })
}

fn group_reports(
    recovered: &Recovered,
    directory: &Path,
    options: InspectOptions,
    findings: &mut Vec<Finding>,
) -> Vec<GroupReport> {
    let mut groups: Vec<(&GroupId, &GroupState)> = recovered.groups.iter().collect();
    groups.sort_by_key(|(group, _)| **group);
    groups
        .into_iter()
        .map(|(group, state)| {
            let snapshot = state.snapshot.as_ref().map(|marker| {
                snapshots::check(
                    directory,
                    *group,
                    marker,
                    options.verify_snapshots,
                    findings,
                )
            });
            group_report(*group, state, snapshot)
        })
        .collect()
}

fn group_report(
    group: GroupId,
    state: &GroupState,
    snapshot: Option<SnapshotReport>,
) -> GroupReport {
    let entries = &state.entries;
    let last_index = state.last_index();
    let last_term = entries
        .get(last_index)
        .map_or_else(|| state.snapshot_term(), |location| location.term);
    let hard_state = state.hard_state;
    let applied_index = state
        .snapshot_index()
        .max(hard_state.commit.min(last_index));
    GroupReport {
        group,
        first_index: entries.first().map(|(index, _)| index),
        last_index,
        last_term,
        entry_count: entries.range(LogIndex::ZERO, LogIndex(u64::MAX)).count() as u64,
        hard_state: HardStateReport {
            term: hard_state.term,
            vote: hard_state.vote,
            commit: hard_state.commit,
        },
        applied_index,
        snapshot,
    }
}

/// Snapshot files no marker in force names: the next start deletes them.
fn orphan_notices(directory: &Path, names: &[String], groups: &[GroupReport]) -> Vec<Finding> {
    let in_force: HashSet<&str> = groups
        .iter()
        .filter_map(|group| group.snapshot.as_ref())
        .map(|snapshot| snapshot.file.as_str())
        .collect();
    names
        .iter()
        .filter(|name| snapfile::is_snapshot_file(name) && !in_force.contains(name.as_str()))
        .map(|name| Finding {
            severity: Severity::Notice,
            file: Some(directory.join(name)),
            offset: None,
            problem: "no snapshot marker in force names this file (an interrupted or replaced \
                      snapshot): the next start deletes it"
                .to_owned(),
        })
        .collect()
}

fn totals(segments: &[SegmentReport], groups: &[GroupReport]) -> Totals {
    let snapshots = groups.iter().filter_map(|group| group.snapshot.as_ref());
    Totals {
        segment_count: segments.len() as u64,
        segment_bytes: segments.iter().map(|segment| segment.file_bytes).sum(),
        record_count: segments.iter().map(|segment| segment.record_count).sum(),
        group_count: groups.len() as u64,
        snapshot_count: snapshots.clone().count() as u64,
        snapshot_bytes: snapshots.map(|snapshot| snapshot.data_bytes).sum(),
    }
}

/// The finding a recovery error stands for: damage, with the file and offset it names.
fn finding_of(error: &RecoveryError) -> Finding {
    let (file, offset) = match error {
        RecoveryError::Corrupt { file, offset, .. }
        | RecoveryError::ImpossibleSequence { file, offset, .. } => (Some(file), Some(*offset)),
        RecoveryError::Io { file, .. }
        | RecoveryError::ForeignSegment { file, .. }
        | RecoveryError::BadSegmentHeader { file, .. }
        | RecoveryError::SnapshotMissing { file, .. } => (Some(file), None),
        RecoveryError::LogMissing { directory }
        | RecoveryError::MissingSegment { directory, .. } => (Some(directory), None),
        RecoveryError::Config(_) => (None, None),
    };
    Finding {
        severity: Severity::Damage,
        file: file.cloned(),
        offset,
        problem: error.to_string(),
    }
}

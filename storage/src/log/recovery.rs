//! Recovery: scans every segment in order, verifies every header, batch, sync mark and record
//! checksum, and rebuilds the per-group index (`scan.rs` reads one segment). Only the last write
//! of the newest segment may be torn, and only on evidence that it never synced (`tail.rs`): it
//! is cut off, logged and reported. Anything else that is wrong (damage anywhere else, a missing
//! segment, a segment of another log, an impossible sequence) is an error naming the file and
//! offset; nothing is ever dropped silently.
//!
//! `examine` runs the same scan in `Mode::ReadOnly` for `flotilla inspect`: it repairs nothing
//! (no cut, no lost mark written back, no orphan deleted, no sync), keeps a summary of each
//! segment, and goes on past damage to report every damaged segment.

use super::active::{GroupMeta, SegmentIdentity, WritePosition, Writer, create_segment};
use super::batch_frame::SyncMark;
use super::body::Body;
use super::index::{GroupState, Location};
use super::record::Frame;
use super::scan::{LastBatch, ScanEnd, SegmentScan, data_end};
use super::segment::{self, Segment};
use super::snapfile;
use super::spare::write_zeros;
use crate::config::{LogConfig, SEGMENT_HEADER_BYTES};
use crate::error::{Corruption, RecoveryError};
use crate::file::{FileSystem, SegmentFile, read_whole};
use flotilla_raft::{GroupId, HardState};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A torn write cut off the end of the newest segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the valid records end; everything from here on was discarded.
    pub offset: u64,
    /// How many bytes (up to the last non-zero byte) were discarded.
    pub discarded_bytes: u64,
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files scanned.
    pub segment_count: u64,
    /// Valid records replayed.
    pub record_count: u64,
    /// Groups with persisted state.
    pub group_count: u64,
    /// The torn write cut off the tail, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Snapshot files no marker refers to (left by an interrupted write), deleted.
    pub removed_snapshot_file_count: u64,
}

/// What a log must be to be opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogBinding {
    /// The id every segment must carry (its data directory's); `None` accepts the id the
    /// segments carry, and gives a new log the id 0.
    pub log_id: Option<u64>,
    /// Whether a log without segments is an error (`LogMissing`) rather than a new log: set for
    /// a data directory that was bootstrapped.
    pub must_exist: bool,
}

/// Whether recovery may repair the directory (to open the log) or only reads it (to inspect it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Cut the torn tail, write back lost sync marks, delete orphaned snapshot files.
    Repair,
    /// Change nothing: report what `Repair` would do.
    ReadOnly,
}

/// What the scan of one segment found, kept for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScannedSegment {
    pub(crate) sequence: u64,
    pub(crate) path: PathBuf,
    pub(crate) file_bytes: u64,
    /// Records read (in whole batches that checked out).
    pub(crate) record_count: u64,
    /// Where the valid batches end; `None` when the scan stopped at damage.
    pub(crate) valid_end: Option<u64>,
    /// A torn tail recovery would cut: from `valid_end` to this offset.
    pub(crate) torn_until: Option<u64>,
}

/// The state rebuilt from disk.
pub(crate) struct Recovered {
    pub(crate) groups: FxHashMap<GroupId, GroupState>,
    pub(crate) report: RecoveryReport,
    segments: BTreeMap<u64, Arc<Segment>>,
    newest_end: u64,
    last_batch: Option<LastBatch>,
    log_id: Option<u64>,
    /// Whether the writer must start a new segment (always, unless the log was empty).
    pub(crate) needs_roll_over: bool,
    mode: Mode,
    /// Whether valid records still go into `groups` (a read-only scan stops at damage).
    replaying: bool,
    /// Every segment scanned, in order.
    pub(crate) scanned: Vec<ScannedSegment>,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        file: path.to_path_buf(),
        source,
    }
}

/// Scans `directory` and rebuilds the index.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    directory: &Path,
    config: &LogConfig,
    binding: LogBinding,
) -> Result<Recovered, RecoveryError> {
    let names = fs.list(directory).map_err(io_error(directory))?;
    let sequences = segment_sequences(&names);
    check_no_hole(directory, &sequences)?;
    if sequences.is_empty() && binding.must_exist {
        let directory = directory.to_path_buf();
        return Err(RecoveryError::LogMissing { directory });
    }
    let mut recovered = Recovered::new(binding, Mode::Repair);
    for (position, sequence) in sequences.iter().enumerate() {
        let is_newest = position + 1 == sequences.len();
        recovered.scan_file(fs, directory, *sequence, is_newest, config)?;
    }
    if recovered.segments.is_empty() && binding.must_exist {
        let directory = directory.to_path_buf();
        return Err(RecoveryError::LogMissing { directory });
    }
    if let Some(error) = recovered.contiguity_errors(directory).into_iter().next() {
        return Err(error);
    }
    recovered.check_snapshots(fs, directory)?;
    recovered.remove_orphans(fs, directory, &names)?;
    fs.sync_directory(directory).map_err(io_error(directory))?;
    recovered.report.segment_count = recovered.segments.len() as u64;
    recovered.report.group_count = recovered.groups.len() as u64;
    Ok(recovered)
}

/// Scans the log in `directory` (whose file names are `names`) as `recover` does, but changes
/// nothing and goes on past damage: returns the state rebuilt from the records before the first
/// damage, and every error found (the first one stops the replay; later segments are still
/// checked, record by record). Snapshot files are left to the caller to check.
pub(crate) fn examine(
    fs: &dyn FileSystem,
    directory: &Path,
    names: &[String],
    config: &LogConfig,
    binding: LogBinding,
) -> (Recovered, Vec<RecoveryError>) {
    let sequences = segment_sequences(names);
    let mut errors: Vec<RecoveryError> = check_no_hole(directory, &sequences)
        .err()
        .into_iter()
        .collect();
    let mut recovered = Recovered::new(binding, Mode::ReadOnly);
    for (position, sequence) in sequences.iter().enumerate() {
        let is_newest = position + 1 == sequences.len();
        if let Err(error) = recovered.scan_file(fs, directory, *sequence, is_newest, config) {
            errors.push(error);
            recovered.replaying = false;
            recovered.last_batch = None;
        }
    }
    if sequences.is_empty() && binding.must_exist {
        let directory = directory.to_path_buf();
        errors.push(RecoveryError::LogMissing { directory });
    }
    if errors.is_empty() {
        errors.extend(recovered.contiguity_errors(directory));
    }
    recovered.report.segment_count = recovered.scanned.len() as u64;
    recovered.report.group_count = recovered.groups.len() as u64;
    (recovered, errors)
}

/// The segment sequence numbers among the directory's file names, in order.
fn segment_sequences(names: &[String]) -> Vec<u64> {
    let mut sequences: Vec<u64> = names
        .iter()
        .filter_map(|name| segment::parse_file_name(name))
        .collect();
    sequences.sort_unstable();
    sequences
}

/// Fails at the first sequence number missing between the oldest and the newest segment.
fn check_no_hole(directory: &Path, sequences: &[u64]) -> Result<(), RecoveryError> {
    for pair in sequences.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(RecoveryError::MissingSegment {
                directory: directory.to_path_buf(),
                missing_sequence: pair[0] + 1,
            });
        }
    }
    Ok(())
}

impl Recovered {
    fn new(binding: LogBinding, mode: Mode) -> Self {
        Recovered {
            groups: FxHashMap::default(),
            report: RecoveryReport::default(),
            segments: BTreeMap::new(),
            newest_end: SEGMENT_HEADER_BYTES,
            last_batch: None,
            log_id: binding.log_id,
            needs_roll_over: false,
            mode,
            replaying: true,
            scanned: Vec::new(),
        }
    }

    fn scan_file(
        &mut self,
        fs: &dyn FileSystem,
        directory: &Path,
        sequence: u64,
        is_newest: bool,
        config: &LogConfig,
    ) -> Result<(), RecoveryError> {
        let path = directory.join(segment::file_name(sequence));
        let file = fs.open(&path, false).map_err(io_error(&path))?;
        let bytes = read_whole(file.as_ref()).map_err(io_error(&path))?;
        let mut scanned = ScannedSegment {
            sequence,
            path: path.clone(),
            file_bytes: bytes.len() as u64,
            record_count: 0,
            valid_end: None,
            torn_until: None,
        };
        let header = segment::check_header(&bytes, sequence);
        // A crash between creating the newest segment and syncing its header leaves zeros.
        if header.is_err() && is_newest && data_end(&bytes, 0) == 0 {
            return self.unsynced_header(fs, scanned);
        }
        let checked = header
            .map_err(|reason| RecoveryError::BadSegmentHeader {
                file: path.clone(),
                reason,
            })
            .and_then(|log_id| self.check_log_id(&path, log_id));
        if let Err(error) = checked {
            self.scanned.push(scanned);
            return Err(error);
        }
        let scan = SegmentScan {
            path: &path,
            bytes: &bytes,
            is_newest,
            config,
        };
        let mut last = self.last_batch;
        let record_count = &mut scanned.record_count;
        let end = scan.run(&mut last, &mut |frames| {
            *record_count += frames.len() as u64;
            self.replay_batch(&path, sequence, frames)
        });
        scanned.valid_end = end.as_ref().ok().map(|end| end.offset);
        scanned.torn_until = end.as_ref().ok().and_then(|end| end.torn_until);
        self.scanned.push(scanned);
        let end = end?;
        self.last_batch = last;
        drop(bytes);
        if self.mode == Mode::ReadOnly {
            if let Some(torn_until) = end.torn_until {
                self.note_torn(&path, end.offset, torn_until);
            }
            return Ok(());
        }
        if is_newest {
            make_durable(file.as_ref(), &end, config).map_err(io_error(&path))?;
        }
        self.finish_segment(&path, file, sequence, end)
    }

    /// The newest segment is all zeros, its header never synced: it is removed (in `Repair`).
    fn unsynced_header(
        &mut self,
        fs: &dyn FileSystem,
        scanned: ScannedSegment,
    ) -> Result<(), RecoveryError> {
        let path = scanned.path.clone();
        self.note_torn(&path, 0, 0);
        self.scanned.push(ScannedSegment {
            valid_end: Some(0),
            torn_until: Some(0),
            ..scanned
        });
        match self.mode {
            Mode::Repair => fs.remove(&path).map_err(io_error(&path)),
            Mode::ReadOnly => Ok(()),
        }
    }

    fn check_log_id(&mut self, path: &Path, found: u64) -> Result<(), RecoveryError> {
        match self.log_id {
            Some(expected) if expected != found => Err(RecoveryError::ForeignSegment {
                file: path.to_path_buf(),
                found,
                expected,
            }),
            _ => {
                self.log_id = Some(found);
                Ok(())
            }
        }
    }

    fn finish_segment(
        &mut self,
        path: &Path,
        file: Box<dyn SegmentFile>,
        sequence: u64,
        end: ScanEnd,
    ) -> Result<(), RecoveryError> {
        if let Some(torn_until) = end.torn_until {
            self.note_torn(path, end.offset, torn_until);
        }
        let segment = Arc::new(Segment::new(sequence, path, file));
        segment.seal().map_err(io_error(path))?;
        self.segments.insert(sequence, segment);
        self.newest_end = end.offset;
        Ok(())
    }

    /// Replays the records of one whole batch into the index.
    fn replay_batch(
        &mut self,
        path: &Path,
        sequence: u64,
        frames: &[(u64, Frame<'_>)],
    ) -> Result<(), RecoveryError> {
        for (offset, frame) in frames {
            let body = Body::decode(frame).map_err(|source| RecoveryError::Corrupt {
                file: path.to_path_buf(),
                offset: *offset,
                problem: Corruption::Undecodable {
                    record_offset: *offset,
                    source,
                },
            })?;
            if !self.replaying {
                continue;
            }
            let frame_bytes = frame.frame_bytes() as u64;
            self.replay(path, sequence, *offset, frame_bytes, frame.group, body)?;
        }
        Ok(())
    }

    fn replay(
        &mut self,
        path: &Path,
        sequence: u64,
        offset: u64,
        frame_bytes: u64,
        group: GroupId,
        body: Body,
    ) -> Result<(), RecoveryError> {
        let effect = body.effect();
        let location = Location {
            segment: sequence,
            offset,
            frame_bytes: u32::try_from(frame_bytes).unwrap_or(u32::MAX),
            term: match &body {
                Body::Entry(entry) => entry.term,
                _ => flotilla_raft::Term::ZERO,
            },
        };
        let state = self.groups.entry(group).or_default();
        state
            .apply(effect, location)
            .map_err(|reason| impossible(path, offset, group, &reason))?;
        self.report.record_count += 1;
        Ok(())
    }

    fn note_torn(&mut self, path: &Path, offset: u64, end: u64) {
        let discarded_bytes = end - offset;
        if self.mode == Mode::Repair {
            tracing::warn!(
            file = %path.display(),
            offset,
            discarded_bytes,
            "cut a write that never completed its sync off the end of the log"
            );
        }
        self.report.torn_tail = Some(TornTail {
            file: path.to_path_buf(),
            offset,
            discarded_bytes,
        });
    }

    /// One error for each group whose entries do not follow its snapshot without a gap.
    fn contiguity_errors(&self, directory: &Path) -> Vec<RecoveryError> {
        let mut groups: Vec<_> = self.groups.iter().collect();
        groups.sort_by_key(|(group, _)| **group);
        groups
            .into_iter()
            .filter_map(|(group, state)| {
                let (reason, location) = state.check_contiguous().err()?;
                let path = directory.join(segment::file_name(location.segment));
                Some(impossible(&path, location.offset, *group, &reason))
            })
            .collect()
    }

    /// Every snapshot file a marker names exists with the recorded length.
    fn check_snapshots(&self, fs: &dyn FileSystem, directory: &Path) -> Result<(), RecoveryError> {
        for (group, state) in &self.groups {
            if let Some(marker) = &state.snapshot
                && !snapfile::is_present(fs, directory, marker)
            {
                let file = directory.join(&marker.file_name);
                return Err(RecoveryError::SnapshotMissing {
                    group: *group,
                    file,
                });
            }
        }
        Ok(())
    }

    /// Deletes snapshot files that no marker in force names.
    fn remove_orphans(
        &mut self,
        fs: &dyn FileSystem,
        directory: &Path,
        names: &[String],
    ) -> Result<(), RecoveryError> {
        let in_force: HashSet<&str> = self
            .groups
            .values()
            .filter_map(|state| state.snapshot.as_ref())
            .map(|marker| marker.file_name.as_str())
            .collect();
        for name in names {
            if snapfile::is_snapshot_file(name) && !in_force.contains(name.as_str()) {
                let path = directory.join(name);
                fs.remove(&path).map_err(io_error(&path))?;
                self.report.removed_snapshot_file_count += 1;
            }
        }
        Ok(())
    }

    /// The writer and segment map to continue from: a new first segment for an empty log,
    /// otherwise the newest segment (the engine then rolls over to a fresh one).
    pub(crate) fn writer(
        &mut self,
        fs: &dyn FileSystem,
        directory: &Path,
        config: &LogConfig,
    ) -> io::Result<(Writer, BTreeMap<u64, Arc<Segment>>)> {
        let metadata = self.metadata();
        let segments = std::mem::take(&mut self.segments);
        let log_id = self.log_id.unwrap_or(0);
        let next_batch_sequence = self.last_batch.map_or(1, |last| last.sequence + 1);
        if let Some(newest) = segments.values().next_back().cloned() {
            self.needs_roll_over = true;
            let position = WritePosition {
                offset: self.newest_end,
                next_batch_sequence,
                log_id,
            };
            return Ok((Writer::new(newest, position, metadata), segments));
        }
        let identity = SegmentIdentity {
            sequence: 1,
            log_id,
        };
        let first = create_segment(fs, directory, config, identity)?;
        let segments = BTreeMap::from([(1, first.clone())]);
        let position = WritePosition {
            offset: SEGMENT_HEADER_BYTES,
            next_batch_sequence,
            log_id,
        };
        Ok((Writer::new(first, position, metadata), segments))
    }

    fn metadata(&self) -> BTreeMap<GroupId, GroupMeta> {
        self.groups
            .iter()
            .map(|(group, state)| {
                let hard_state = Some(state.hard_state).filter(|hs| *hs != HardState::default());
                let snapshot = state.snapshot.clone();
                (
                    *group,
                    GroupMeta {
                        hard_state,
                        snapshot,
                    },
                )
            })
            .collect()
    }
}

/// Makes the newest segment as recovery accepted it durable before anything is built on it:
/// cuts the torn tail (zeros over `[offset, end)` when preallocating, so the blocks stay
/// allocated; a shorter file otherwise), writes back the sync marks the crash lost, and syncs.
/// The sync matters even when nothing changed: after a process crash (not a power loss) the
/// page cache still shows writes that never synced, and recovery just accepted them.
fn make_durable(file: &dyn SegmentFile, end: &ScanEnd, config: &LogConfig) -> io::Result<()> {
    if let Some(torn_until) = end.torn_until {
        if config.preallocate {
            write_zeros(file, end.offset, torn_until)?;
        } else {
            file.set_len(end.offset)?;
        }
    }
    for &(offset, sequence) in &end.lost_marks {
        file.write_at(offset, &SyncMark { sequence }.encode())?;
    }
    file.sync_data()
}

fn impossible(path: &Path, offset: u64, group: GroupId, reason: &str) -> RecoveryError {
    RecoveryError::ImpossibleSequence {
        file: path.to_path_buf(),
        offset,
        reason: format!("group {group}: {reason}"),
    }
}

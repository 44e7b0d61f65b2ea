//! Recovery: scans every segment in order, verifies every header and record checksum, and
//! rebuilds the per-group index. A bad record within one sync window of the end of the newest
//! segment is a torn write: it is cut off, logged and reported. Anything else that is wrong (a
//! bad checksum earlier, a missing segment, an impossible sequence) is an error naming the file
//! and offset; nothing is ever dropped silently.

use super::active::{GroupMeta, Writer, create_segment};
use super::body::Body;
use super::index::{GroupState, Location};
use super::record::{HEADER_BYTES, decode, is_zero_header};
use super::segment::{self, Segment};
use super::snapfile;
use super::spare::write_zeros;
use crate::config::{LogConfig, SEGMENT_HEADER_BYTES};
use crate::error::{RecordError, RecoveryError};
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

/// The state rebuilt from disk.
pub(crate) struct Recovered {
    pub(crate) groups: FxHashMap<GroupId, GroupState>,
    pub(crate) report: RecoveryReport,
    segments: BTreeMap<u64, Arc<Segment>>,
    newest_end: u64,
    /// Whether the writer must start a new segment (always, unless the log was empty).
    pub(crate) needs_roll_over: bool,
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
) -> Result<Recovered, RecoveryError> {
    let names = fs.list(directory).map_err(io_error(directory))?;
    let sequences = segment_sequences(directory, &names)?;
    let mut recovered = Recovered {
        groups: FxHashMap::default(),
        report: RecoveryReport::default(),
        segments: BTreeMap::new(),
        newest_end: SEGMENT_HEADER_BYTES,
        needs_roll_over: false,
    };
    for (position, sequence) in sequences.iter().enumerate() {
        let is_newest = position + 1 == sequences.len();
        recovered.scan_file(fs, directory, *sequence, is_newest, config)?;
    }
    recovered.check_groups(fs, directory)?;
    recovered.remove_orphans(fs, directory, &names)?;
    fs.sync_directory(directory).map_err(io_error(directory))?;
    recovered.report.segment_count = recovered.segments.len() as u64;
    recovered.report.group_count = recovered.groups.len() as u64;
    Ok(recovered)
}

/// The segment sequence numbers in the directory, checked for holes.
fn segment_sequences(directory: &Path, names: &[String]) -> Result<Vec<u64>, RecoveryError> {
    let mut sequences: Vec<u64> = names
        .iter()
        .filter_map(|name| segment::parse_file_name(name))
        .collect();
    sequences.sort_unstable();
    for pair in sequences.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(RecoveryError::MissingSegment {
                directory: directory.to_path_buf(),
                missing_sequence: pair[0] + 1,
            });
        }
    }
    Ok(sequences)
}

/// The offset just past the last non-zero byte at or after `from`, or `from` when none.
fn data_end(bytes: &[u8], from: u64) -> u64 {
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    bytes[start..]
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(from, |last| (start + last + 1) as u64)
}

impl Recovered {
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
        let window_bytes = if is_newest { config.sync_bytes_max } else { 0 };
        if let Err(reason) = segment::check_header(&bytes, sequence) {
            if data_end(&bytes, 0) > SEGMENT_HEADER_BYTES + window_bytes || !is_newest {
                return Err(RecoveryError::BadSegmentHeader { file: path, reason });
            }
            self.note_torn(&path, 0, data_end(&bytes, 0));
            return fs.remove(&path).map_err(io_error(&path));
        }
        let end = self.scan_records(&path, sequence, &bytes, window_bytes, config)?;
        if end.torn {
            drop(bytes);
            truncate(file.as_ref(), end.offset, end.data_end, config).map_err(io_error(&path))?;
        }
        let segment = Arc::new(Segment::new(sequence, &path, file));
        segment.seal().map_err(io_error(&path))?;
        self.segments.insert(sequence, segment);
        self.newest_end = end.offset;
        Ok(())
    }

    /// Replays the records of one segment; returns where the valid records end.
    fn scan_records(
        &mut self,
        path: &Path,
        sequence: u64,
        bytes: &[u8],
        window_bytes: u64,
        config: &LogConfig,
    ) -> Result<ScanEnd, RecoveryError> {
        let mut offset = SEGMENT_HEADER_BYTES;
        loop {
            let rest = bytes.get(offset as usize..).unwrap_or_default();
            let problem = if rest.len() < HEADER_BYTES || is_zero_header(rest) {
                if data_end(bytes, offset) == offset {
                    return Ok(ScanEnd {
                        offset,
                        torn: false,
                        data_end: offset,
                    });
                }
                RecordError::Truncated {
                    needed_bytes: HEADER_BYTES as u64,
                    available_bytes: 0,
                }
            } else {
                match decode(rest, config.record_bytes_max) {
                    Ok(frame) => {
                        let body =
                            Body::decode(&frame).map_err(|source| corrupt(path, offset, source))?;
                        let frame_bytes = frame.frame_bytes() as u64;
                        self.replay(path, sequence, offset, frame_bytes, frame.group, body)?;
                        offset += frame_bytes;
                        continue;
                    }
                    Err(error) => error,
                }
            };
            let end = data_end(bytes, offset);
            if end - offset > window_bytes {
                return Err(corrupt(path, offset, problem));
            }
            self.note_torn(path, offset, end);
            let (torn, data_end) = (true, end);
            return Ok(ScanEnd {
                offset,
                torn,
                data_end,
            });
        }
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
        tracing::warn!(
            file = %path.display(),
            offset,
            discarded_bytes,
            "cut a torn write off the end of the log"
        );
        self.report.torn_tail = Some(TornTail {
            file: path.to_path_buf(),
            offset,
            discarded_bytes,
        });
    }

    /// Every group's entries follow its snapshot without a gap; every snapshot file exists.
    fn check_groups(&self, fs: &dyn FileSystem, directory: &Path) -> Result<(), RecoveryError> {
        for (group, state) in &self.groups {
            if let Err((reason, location)) = state.check_contiguous() {
                let path = directory.join(segment::file_name(location.segment));
                return Err(impossible(&path, location.offset, *group, &reason));
            }
            if let Some(marker) = &state.snapshot {
                if !snapfile::is_present(fs, directory, marker) {
                    let file = directory.join(&marker.file_name);
                    return Err(RecoveryError::SnapshotMissing {
                        group: *group,
                        file,
                    });
                }
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
        if let Some(newest) = segments.values().next_back().cloned() {
            self.needs_roll_over = true;
            return Ok((Writer::new(newest, self.newest_end, metadata), segments));
        }
        let first = create_segment(fs, directory, config, 1)?;
        let segments = BTreeMap::from([(1, first.clone())]);
        Ok((Writer::new(first, SEGMENT_HEADER_BYTES, metadata), segments))
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

/// Where the valid records of a segment end.
struct ScanEnd {
    offset: u64,
    torn: bool,
    /// Just past the last non-zero byte.
    data_end: u64,
}

/// Cuts the file at `offset` and syncs: zeros over the torn bytes `[offset, end)` when
/// preallocating (the blocks stay allocated), a shorter file otherwise.
fn truncate(file: &dyn SegmentFile, offset: u64, end: u64, config: &LogConfig) -> io::Result<()> {
    if config.preallocate {
        write_zeros(file, offset, end)?;
    } else {
        file.set_len(offset)?;
    }
    file.sync_data()
}

fn corrupt(path: &Path, offset: u64, source: RecordError) -> RecoveryError {
    RecoveryError::Corrupt {
        file: path.to_path_buf(),
        offset,
        source,
    }
}

fn impossible(path: &Path, offset: u64, group: GroupId, reason: &str) -> RecoveryError {
    RecoveryError::ImpossibleSequence {
        file: path.to_path_buf(),
        offset,
        reason: format!("group {group}: {reason}"),
    }
}

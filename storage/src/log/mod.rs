//! `LogEngine`: one write-ahead log for every Raft group of a node. Callers on any thread
//! `write` batches (one write and one `fdatasync` shared by everyone writing at that moment);
//! each group reads its log through a `GroupLog`, which implements `flotilla_raft::LogReader`.
//!
//! Calling order: `open` (recovery) once; then `write` and `group(..)` reads from any thread;
//! `gc` whenever convenient to delete segments no group needs.

mod active;
mod batch;
pub(crate) mod batch_frame;
pub mod body;
mod commit;
mod gc;
pub(crate) mod index;
mod reader;
pub(crate) mod recent;
pub mod record;
pub(crate) mod recovery;
mod run;
mod scan;
mod segment;
pub(crate) mod snapfile;
mod snapshot_loads;
mod spare;
mod spool;
mod staging;
mod tail;
mod validate;

pub use batch::WriteBatch;
pub use commit::WriteStats;
pub use gc::GcStats;
pub use reader::{GroupLog, RecordLocation};
pub use recovery::{LogBinding, RecoveryReport, TornTail};
pub use snapshot_loads::SnapshotLoading;
pub use staging::{CheckedSnapshot, Prepared, StagedCheck, WrittenSnapshot};

use crate::config::LogConfig;
use crate::error::{RecoveryError, WriteError};
use crate::file::{FileSystem, RealFs};
use active::Writer;
use batch::{EncodedBatch, Operation};
use body::{Body, SnapshotMarker};
use commit::{CommitQueue, CommitResult};
use flotilla_raft::{GroupId, LogIndex};
use index::GroupState;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use segment::Segment;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The state every handle of one engine shares.
pub(crate) struct Shared {
    fs: Arc<dyn FileSystem>,
    directory: PathBuf,
    config: LogConfig,
    groups: RwLock<FxHashMap<GroupId, GroupState>>,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    writer: Mutex<Writer>,
    queue: CommitQueue,
    failed: AtomicBool,
    snapshot_loads: snapshot_loads::SnapshotLoads,
    /// The files snapshots are sent from, and the references Raft holds to them.
    spools: spool::Spools,
    /// The snapshots followers receive, staged in files and checked off the loop.
    stagings: staging::Stagings,
    /// What produces the snapshot to send of a range whose state is in the engine.
    engine_snapshots: RwLock<Option<EngineSnapshots>>,
}

/// Streams the snapshot of a group whose state is in the node's state machine engine, at the
/// engine's applied entry, into the file it is given (from offset 0), and says what it covers
/// and its length (`Engine::write_range_snapshot`); called off the Raft loop.
pub type EngineSnapshots = Arc<
    dyn Fn(
            GroupId,
            &dyn crate::file::SegmentFile,
        ) -> Result<(flotilla_raft::SnapshotMeta, u64), flotilla_raft::LogError>
        + Send
        + Sync,
>;

/// A stored snapshot's bytes: its data as Raft handed it, or its file, mapped or read.
pub enum SnapshotBytes<'a> {
    /// The snapshot's own data.
    Inline(&'a [u8]),
    /// Its file, mapped.
    Mapped(memmap2::Mmap),
    /// Its file, read (a file system that cannot map).
    Read(Vec<u8>),
}

impl std::ops::Deref for SnapshotBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SnapshotBytes::Inline(bytes) => bytes,
            SnapshotBytes::Mapped(mapped) => mapped,
            SnapshotBytes::Read(bytes) => bytes,
        }
    }
}

/// The node's write-ahead log. Cheap to clone: clones share one engine.
#[derive(Clone)]
pub struct LogEngine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LogEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEngine")
            .field("directory", &self.shared.directory)
            .finish_non_exhaustive()
    }
}

impl LogEngine {
    /// Opens (recovering) or creates the log in `directory` on the real file system.
    ///
    /// # Errors
    /// The configuration is invalid, the directory cannot be read, or the log is corrupt
    /// anywhere but at the very tail of the newest segment.
    pub fn open(
        directory: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<(LogEngine, RecoveryReport), RecoveryError> {
        Self::open_with(Arc::new(RealFs), directory, config)
    }

    /// Opens the log on any file system, such as the crash simulator.
    ///
    /// # Errors
    /// As `open`.
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        directory: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<(LogEngine, RecoveryReport), RecoveryError> {
        Self::open_bound(fs, directory, config, LogBinding::default())
    }

    /// Opens the log of a data directory: every segment must carry `binding.log_id`, and with
    /// `binding.must_exist` a log without segments is `LogMissing` instead of a new log.
    ///
    /// # Errors
    /// As `open`, and `LogMissing` or `ForeignSegment`.
    pub fn open_bound(
        fs: Arc<dyn FileSystem>,
        directory: impl AsRef<Path>,
        config: LogConfig,
        binding: LogBinding,
    ) -> Result<(LogEngine, RecoveryReport), RecoveryError> {
        config.validate()?;
        let directory = directory.as_ref().to_path_buf();
        let mut recovered = recovery::recover(fs.as_ref(), &directory, &config, binding)?;
        let io_error = |source| RecoveryError::Io {
            file: directory.clone(),
            source,
        };
        let (writer, segments) = recovered
            .writer(fs.as_ref(), &directory, &config)
            .map_err(io_error)?;
        let snapshot_loads =
            snapshot_loads::SnapshotLoads::new(config.snapshot_loading, config.snapshot_loads_max);
        let spools = spool::Spools::new(config.snapshot_sends_max);
        let stagings = staging::Stagings::new(
            spools.token(),
            config.snapshot_loading,
            Arc::clone(&fs),
            directory.clone(),
        );
        let shared = Arc::new(Shared {
            fs,
            directory: directory.clone(),
            config,
            groups: RwLock::new(recovered.groups),
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            queue: CommitQueue::default(),
            failed: AtomicBool::new(false),
            snapshot_loads,
            spools,
            stagings,
            engine_snapshots: RwLock::new(None),
        });
        spool::remove_leftovers(shared.fs.as_ref(), &directory).map_err(io_error)?;
        let mut writer = shared.writer.lock();
        if recovered.needs_roll_over {
            writer.roll_over(&shared).map_err(io_error)?;
            // The checkpoint is durable before anything else is written: the new segment is
            // the newest, and only its unsynced tail may ever be cut.
            writer.sync_now().map_err(io_error)?;
            gc::collect(&shared, writer.active_sequence()).map_err(io_error)?;
        }
        writer.start_spare(&shared);
        drop(writer);
        Ok((LogEngine { shared }, recovered.report))
    }

    /// Makes `batch` durable: one write and one `fdatasync`, shared with every other caller
    /// writing at the same time. Returns once the batch is durable and visible to readers.
    ///
    /// # Errors
    /// A record is too large, or the disk failed (after which every write fails).
    ///
    /// # Panics
    /// If the batch breaks the log's shape (an append that leaves a gap or overwrites the
    /// snapshot, a compaction past the last entry): a bug in the caller.
    pub fn write(&self, batch: WriteBatch) -> Result<WriteStats, WriteError> {
        if batch.is_empty() {
            return Ok(WriteStats::default());
        }
        self.check_alive()?;
        validate::check_batch(&self.shared.groups.read(), &batch);
        let encoded = self.encode(batch)?;
        let waiting_max = self.shared.config.pending_writes_max;
        self.shared
            .queue
            .submit(encoded, waiting_max, |batches| self.commit(batches))
    }

    /// Sets what produces the snapshot sent to a follower of a group whose log was compacted
    /// with `machine::ENGINE_STATE` (its state is in the node's engine). Without it, such a
    /// group's snapshot cannot be sent (`LogError::Storage`).
    pub fn set_engine_snapshots(&self, produce: EngineSnapshots) {
        *self.shared.engine_snapshots.write() = Some(produce);
    }

    /// Stages `piece` of the snapshot `group` is receiving (`Ready::snapshot_chunks`), in a
    /// file (see `staging`). A write that fails only makes the snapshot's check refuse it.
    pub fn stage_snapshot_chunk(&self, group: GroupId, piece: &flotilla_raft::SnapshotPiece) {
        self.shared.stagings.stage(group, piece);
    }

    /// Asks for the snapshot `group` staged for `meta` (`Ready::snapshot_received`) to be
    /// synced and checked with `check`, off the caller's thread; `take_checked_snapshots`
    /// hands out the result.
    pub fn check_staged_snapshot(
        &self,
        group: GroupId,
        meta: flotilla_raft::SnapshotMeta,
        check: StagedCheck,
    ) {
        self.shared.stagings.check(group, meta, check);
    }

    /// The staged snapshots checked since the last call.
    #[must_use]
    pub fn take_checked_snapshots(&self) -> Vec<CheckedSnapshot> {
        self.shared.stagings.take_checked()
    }

    /// Whether `stage` (`CheckedSnapshot::stage`) is still `group`'s staging: a check of an
    /// older one is ignored (the snapshot it checked was staged anew since).
    #[must_use]
    pub fn is_current_staging(&self, group: GroupId, stage: u64) -> bool {
        self.shared.stagings.is_current(group, stage)
    }

    /// Drops `group`'s staging `stage` (`CheckedSnapshot::stage`: its snapshot was refused,
    /// or is no longer wanted); a newer staging since is kept.
    pub fn discard_staged_snapshot(&self, group: GroupId, stage: u64) {
        self.shared.stagings.discard_stage(group, stage);
    }

    /// Asks for `view`, a snapshot of the node's own range `group` (kept in memory), to be
    /// written to a file and synced off the caller's thread, its pairs pulled
    /// `chunk_bytes_max` bytes at a time; `take_written_snapshots` hands out the staged
    /// reference to compact the group's log with (storing it renames the file into the
    /// snapshot file, so the Raft loop never encodes a range).
    pub fn write_snapshot(
        &self,
        group: GroupId,
        view: Box<dyn crate::machine::SnapshotView>,
        chunk_bytes_max: usize,
    ) {
        self.shared.stagings.write(group, view, chunk_bytes_max);
    }

    /// As `write_snapshot`, for a snapshot of `group` at `last` whose bytes `encode` makes, on
    /// the writing thread (the meta group's state, copied on the loop in O(1)).
    pub fn write_encoded_snapshot(
        &self,
        group: GroupId,
        last: flotilla_raft::LogId,
        encode: Box<dyn FnOnce() -> Vec<u8> + Send>,
    ) {
        self.shared.stagings.write_encoded(group, last, encode);
    }

    /// Drops `value` on the log's snapshot thread, not the caller's: a replaced state whose
    /// drop would stall the Raft loop (the meta group's, at install).
    pub fn drop_off_loop(&self, value: Box<dyn Send>) {
        self.shared.stagings.drop_elsewhere(value);
    }

    /// The snapshots written since the last call.
    #[must_use]
    pub fn take_written_snapshots(&self) -> Vec<WrittenSnapshot> {
        self.shared.stagings.take_written()
    }

    /// Removes the written snapshot `reference` (`WrittenSnapshot::outcome`) refers to, never
    /// stored: the group compacted past it or is gone.
    pub fn discard_written_snapshot(&self, group: GroupId, reference: &[u8]) {
        self.shared.stagings.discard_written(group, reference);
    }

    /// Drops whatever `group` staged (Raft gave the snapshot up:
    /// `Ready::snapshot_staging_dropped`).
    pub fn drop_staged_snapshot(&self, group: GroupId) {
        self.shared.stagings.discard(group);
    }

    /// The bytes of a snapshot `Ready::persist.snapshot` stored for `group`: its data, or,
    /// for a staged reference, the snapshot file it became, mapped where the file system
    /// allows (read whole in the simulator).
    ///
    /// # Errors
    /// The file cannot be opened, mapped or read.
    pub fn installed_snapshot_bytes<'a>(
        &self,
        group: GroupId,
        snapshot: &'a flotilla_raft::Snapshot,
    ) -> Result<SnapshotBytes<'a>, flotilla_raft::LogError> {
        let shared = &self.shared;
        let Some(staged) = shared.stagings.resolve(&snapshot.data) else {
            return Ok(SnapshotBytes::Inline(&snapshot.data));
        };
        let path = shared.directory.join(snapfile::file_name(group, snapshot));
        let failed = |error: std::io::Error| {
            flotilla_raft::LogError::Storage(format!("reading {} failed: {error}", path.display()))
        };
        let file = shared.fs.open(&path, false).map_err(failed)?;
        if let Some(mapped) = file.map_immutable().map_err(failed)? {
            return Ok(SnapshotBytes::Mapped(mapped));
        }
        let length = usize::try_from(staged.data_bytes).map_err(|_| {
            flotilla_raft::LogError::Storage(format!("{} is too large", path.display()))
        })?;
        let mut bytes = vec![0; length];
        file.read_at(0, &mut bytes).map_err(failed)?;
        Ok(SnapshotBytes::Read(bytes))
    }

    /// The read handle of one group (empty if the group never wrote).
    #[must_use]
    pub fn group(&self, group: GroupId) -> GroupLog {
        GroupLog::new(self.shared.clone(), group)
    }

    /// Every group with persisted state.
    #[must_use]
    pub fn group_ids(&self) -> Vec<GroupId> {
        let mut groups: Vec<GroupId> = self.shared.groups.read().keys().copied().collect();
        groups.sort();
        groups
    }

    /// The sequence numbers of the segment files in use, oldest first.
    #[must_use]
    pub fn segment_sequences(&self) -> Vec<u64> {
        self.shared.segments.read().keys().copied().collect()
    }

    /// How many segment files are in use.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.shared.segments.read().len()
    }

    /// The groups holding a live entry in a segment older than the `keep` newest ones (none
    /// while `keep` or fewer are in use), each with the last such entry: what keeps those
    /// segments on disk, and how far each group must compact to let them go. A quiet group's
    /// first entry would otherwise keep every newer segment until it compacts.
    #[must_use]
    pub fn groups_pinning_segments(&self, keep: usize) -> Vec<(GroupId, LogIndex)> {
        let oldest_kept = {
            let segments = self.shared.segments.read();
            if segments.len() <= keep {
                return Vec::new();
            }
            segments.keys().rev().nth(keep.saturating_sub(1)).copied()
        };
        let Some(oldest_kept) = oldest_kept else {
            return Vec::new();
        };
        let mut groups: Vec<(GroupId, LogIndex)> = self
            .shared
            .groups
            .read()
            .iter()
            .filter(|(_, state)| state.oldest_segment().is_some_and(|s| s < oldest_kept))
            .filter_map(|(&group, state)| {
                Some((group, state.last_index_before_segment(oldest_kept)?))
            })
            .collect();
        groups.sort_unstable();
        groups
    }

    /// Deletes the segments, oldest first, that no group needs any more.
    ///
    /// # Errors
    /// Deleting a file failed.
    pub fn gc(&self) -> Result<GcStats, WriteError> {
        let shared = &self.shared;
        shared.spools.sweep(shared.fs.as_ref(), &shared.directory);
        let writer = self.shared.writer.lock();
        gc::collect(&self.shared, writer.active_sequence()).map_err(WriteError::from)
    }

    fn check_alive(&self) -> Result<(), WriteError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(WriteError::EngineFailed);
        }
        Ok(())
    }

    /// Stores snapshot data in files, then frames every operation as records.
    fn encode(&self, batch: WriteBatch) -> Result<EncodedBatch, WriteError> {
        let limit = self.shared.config.record_bytes_max;
        let mut encoded = EncodedBatch::default();
        for (group, operation) in batch.operations {
            match operation {
                Operation::Install(snapshot) => {
                    let marker = self.store_snapshot(group, &snapshot)?;
                    encoded.push_marker(group, marker, true, limit)?;
                }
                Operation::Append(entries) => {
                    for entry in entries {
                        encoded.push(group, Body::Entry(entry), limit)?;
                    }
                }
                Operation::HardState(hard_state) => {
                    encoded.push(group, Body::HardState(hard_state), limit)?;
                }
                Operation::Compact(snapshot) => {
                    let marker = self.store_snapshot(group, &snapshot)?;
                    encoded.push_marker(group, marker, false, limit)?;
                }
                Operation::Destroy(tombstone) => {
                    let shared = &self.shared;
                    let (fs, directory) = (shared.fs.as_ref(), &shared.directory);
                    shared.spools.forget(fs, directory, group);
                    shared.stagings.discard(group);
                    shared.stagings.discard_written_of(group);
                    encoded.push(group, Body::Destroy(tombstone), limit)?;
                }
            }
        }
        Ok(encoded)
    }

    fn store_snapshot(
        &self,
        group: GroupId,
        snapshot: &flotilla_raft::Snapshot,
    ) -> Result<SnapshotMarker, WriteError> {
        let shared = &self.shared;
        if let Some(staged) = shared.stagings.resolve(&snapshot.data) {
            if staged.last != snapshot.meta.last {
                return Err(std::io::Error::other(format!(
                    "the staged snapshot {} of {group} holds entry {} but is stored as entry {}",
                    staged.name, staged.last.index, snapshot.meta.last.index
                ))
                .into());
            }
            // A received snapshot staged, synced and checked: its file becomes the snapshot.
            let path = shared
                .stagings
                .take_for_store(group, &staged)
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "the staged snapshot {} of {group} is no longer staged",
                        staged.name
                    ))
                })?;
            let file_name = snapfile::file_name(group, snapshot);
            shared
                .fs
                .rename(&path, &shared.directory.join(&file_name))?;
            shared.fs.sync_directory(&shared.directory)?;
            return Ok(SnapshotMarker {
                meta: snapshot.meta.clone(),
                file_name,
                data_bytes: staged.data_bytes,
                data_checksum: staged.checksum,
            });
        }
        Ok(snapfile::store(
            shared.fs.as_ref(),
            &shared.directory,
            group,
            snapshot,
        )?)
    }

    /// The leader's half of a group commit: write, sync, then publish to the index.
    fn commit(&self, batches: &mut [EncodedBatch]) -> CommitResult {
        self.check_alive()?;
        let mut writer = self.shared.writer.lock();
        let active_before = writer.active_sequence();
        let started = std::time::Instant::now();
        let placed = writer.place_all(&self.shared, batches);
        let write_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let (locations, sync_count) = match placed {
            Ok(placed) => placed,
            Err(error) => {
                self.shared.failed.store(true, Ordering::Release);
                return Err(error.into());
            }
        };
        let unused = self.publish(batches, &locations);
        self.delete_snapshot_files(&unused);
        if writer.active_sequence() != active_before {
            // The batches are durable whatever happens here: a failed deletion is only logged.
            if let Err(error) = gc::collect(&self.shared, writer.active_sequence()) {
                tracing::warn!(%error, "could not delete old segments");
            }
        }
        Ok(stats_of(batches, sync_count, write_micros))
    }

    /// Applies durable records to the index, moving each entry into the recent-entries cache;
    /// returns the snapshot markers no longer in force.
    fn publish(
        &self,
        batches: &mut [EncodedBatch],
        locations: &[index::Location],
    ) -> Vec<SnapshotMarker> {
        let mut groups = self.shared.groups.write();
        let records = batches.iter_mut().flat_map(|batch| &mut batch.records);
        let mut unused = Vec::new();
        for (record, location) in records.zip(locations) {
            let state = groups.entry(record.group).or_default();
            let replaced = state.apply(record.effect.clone(), *location);
            let replaced = replaced.expect("a validated batch applies");
            if let Some(entry) = record.entry.take() {
                state.remember(entry, self.shared.config.recent_limits());
            }
            unused.extend(replaced.filter(|old| !is_in_force(state, old)));
        }
        unused
    }

    fn delete_snapshot_files(&self, unused: &[SnapshotMarker]) {
        for marker in unused.iter().filter(|marker| marker.has_file()) {
            let path = self.shared.directory.join(&marker.file_name);
            if let Err(error) = self.shared.fs.remove(&path) {
                tracing::warn!(file = %path.display(), %error, "could not delete an old snapshot file");
            }
        }
    }
}

fn is_in_force(state: &GroupState, marker: &SnapshotMarker) -> bool {
    state
        .snapshot
        .as_ref()
        .is_some_and(|current| current.file_name == marker.file_name)
}

fn stats_of(batches: &[EncodedBatch], sync_count: u64, write_micros: u64) -> Vec<WriteStats> {
    let batch_count_in_sync = batches.len() as u64;
    batches
        .iter()
        .map(|batch| WriteStats {
            record_count: batch.records.len() as u64,
            frame_bytes: batch.bytes.len() as u64,
            batch_count_in_sync,
            sync_count,
            write_micros,
        })
        .collect()
}

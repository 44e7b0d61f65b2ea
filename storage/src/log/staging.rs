//! Snapshots a follower receives, staged in a file a chunk at a time and checked off the Raft
//! loop, so a follower never gathers a whole range in memory.
//!
//! With `Config::snapshot_staging`, Raft hands each chunk it receives to the caller
//! (`Ready::snapshot_chunks`), and the node appends it to the group's staging file
//! (`incoming-<group>-<index>-<term>-<stage>.part`; a chunk at offset 0 starts a new one, under
//! a name never used before, so a check never reads a file being rewritten). Once the last
//! chunk arrived (`Ready::snapshot_received`), the node asks for the staged snapshot to be
//! checked: the file is synced, its crc32c computed and the node's check (`SnapshotCheck`, the
//! same one Raft runs on a snapshot it gathered itself) run over it, mapped rather than read
//! where the file system allows. Checks run one at a time on a thread of the log's, or, in the
//! simulator, when the node next asks for the results, so runs replay.
//!
//! A snapshot that passes is handed to Raft (`install_staged`) as a *staged reference*: this
//! log's token, the snapshot's last entry, length and crc32c, and the file's name. Storing it
//! (`Ready::persist.snapshot`) renames the staged file into the group's snapshot file, the
//! data already synced, so installing a received snapshot writes nothing again. A snapshot
//! that fails is refused; Raft drops it and the leader sends it again from its start.
//!
//! A staging file is never state: Raft's `snapshot_staging_dropped` removes one it gave up, a
//! destroyed replica's is removed, and the log deletes every one it finds when it opens (a
//! crash leaves them unreferenced). No file stays open between chunks.
//!
//! The node's own snapshots of ranges kept in memory take the same way in: `write` streams a
//! snapshot view (an O(1) copy of a persistent map) into `written-<group>-<index>-<term>-
//! <stage>.part` on the same thread as the checks, syncs it and hands back a staged reference;
//! the node compacts the group's log with that reference, and storing it renames the file into
//! the snapshot file. A range is never encoded on the Raft loop. At most one written file per
//! group waits to be stored: a newer one, the group's destruction or the next open removes it.

use crate::file::FileSystem;
use flotilla_raft::{GroupId, LogId, LogIndex, SnapshotMeta, SnapshotPiece, Term};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use super::SnapshotLoading;

const MAGIC: &[u8; 8] = b"FLOTSTGD";
const PREFIX: &str = "incoming-";
const WRITTEN_PREFIX: &str = "written-";
const SUFFIX: &str = ".part";

/// Checks a staged snapshot's bytes (the node's `SnapshotCheck`), and may prepare what the
/// node restores from them off the loop (a range in memory, decoded): run on the checks'
/// thread.
pub type StagedCheck =
    Arc<dyn Fn(GroupId, &SnapshotMeta, &[u8]) -> Result<Option<Prepared>, String> + Send + Sync>;

/// What a check prepared from a staged snapshot for its restore (the node knows its type).
pub struct Prepared(pub Box<dyn std::any::Any + Send>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

/// A staged snapshot checked: the reference to install it with, or why it was refused.
#[derive(Debug)]
pub struct CheckedSnapshot {
    /// The group that received it.
    pub group: GroupId,
    /// What it covers.
    pub meta: SnapshotMeta,
    /// Which staging of the group it checked (`LogEngine::discard_staged_snapshot`).
    pub stage: u64,
    /// The staged reference to hand `install_staged` and what the check prepared, or the
    /// reason it was refused.
    pub outcome: Result<(Vec<u8>, Option<Prepared>), String>,
}

/// A snapshot of the node's own range written off the loop (`LogEngine::write_snapshot`).
#[derive(Debug)]
pub struct WrittenSnapshot {
    /// The group.
    pub group: GroupId,
    /// The last entry it covers (the view's applied entry).
    pub last: LogId,
    /// The staged reference to compact the group's log with and the snapshot's length in
    /// bytes, or why it could not be written (the file is gone then).
    pub outcome: Result<(Vec<u8>, u64), String>,
}

/// A staged reference, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StagedRef {
    pub(crate) last: LogId,
    pub(crate) data_bytes: u64,
    pub(crate) checksum: u32,
    pub(crate) name: String,
}

/// One group's staging file.
struct Staged {
    /// This staging's number (unique in the log's life, in the file's name).
    stage: u64,
    last: LogId,
    name: String,
    length: u64,
    /// Why the file does not hold the whole snapshot (a failed or out-of-order write).
    broken: Option<String>,
}

/// A written snapshot waiting to be stored: `length` is `None` while it is being written.
struct Written {
    stage: u64,
    name: String,
    length: Option<u64>,
}

/// The written snapshots of a log by group (shared with the thread that writes them).
type WrittenByGroup = Arc<Mutex<FxHashMap<GroupId, Written>>>;

/// A snapshot to write.
struct WriteJob {
    group: GroupId,
    stage: u64,
    name: String,
    last: LogId,
    source: WriteSource,
}

/// What a written snapshot is made from.
enum WriteSource {
    /// A range's view, its pairs pulled `chunk_bytes_max` bytes at a time.
    View {
        view: Box<dyn crate::machine::SnapshotView>,
        chunk_bytes_max: usize,
    },
    /// A state that encodes itself whole (the meta group's).
    Encode(Box<dyn FnOnce() -> Vec<u8> + Send>),
}

/// What the checks' thread does next.
enum Work {
    Check(Job),
    Write(WriteJob),
    /// A value to drop (`drop_elsewhere`).
    Drop(Box<dyn Send>),
}

/// A check to run.
struct Job {
    group: GroupId,
    meta: SnapshotMeta,
    stage: u64,
    check: StagedCheck,
    /// The file and its length, or why there is nothing to check.
    file: Result<(PathBuf, u64, String), String>,
}

/// The staging files of one log, and the checks of staged snapshots.
pub(crate) struct Stagings {
    token: [u8; 16],
    loading: SnapshotLoading,
    fs: Arc<dyn FileSystem>,
    directory: PathBuf,
    by_group: Mutex<FxHashMap<GroupId, Staged>>,
    next_stage: std::sync::atomic::AtomicU64,
    /// Checks asked for and not yet run (`SnapshotLoading::NextAsk`).
    pending: Mutex<Vec<Job>>,
    /// Writes asked for and not yet run (`SnapshotLoading::NextAsk`).
    pending_writes: Mutex<Vec<WriteJob>>,
    /// The worker that runs checks and writes one at a time (`SnapshotLoading::Background`),
    /// started at the first.
    worker: Mutex<Option<mpsc::Sender<Work>>>,
    /// Checks done and not yet taken.
    done: Arc<Mutex<Vec<CheckedSnapshot>>>,
    /// The node's own snapshots being written or waiting to be stored, one per group at most.
    written: WrittenByGroup,
    /// Writes done and not yet taken.
    written_done: Arc<Mutex<Vec<WrittenSnapshot>>>,
}

impl Stagings {
    pub(crate) fn new(
        token: [u8; 16],
        loading: SnapshotLoading,
        fs: Arc<dyn FileSystem>,
        directory: PathBuf,
    ) -> Self {
        Self {
            token,
            loading,
            fs,
            directory,
            by_group: Mutex::default(),
            next_stage: std::sync::atomic::AtomicU64::new(1),
            pending: Mutex::default(),
            pending_writes: Mutex::default(),
            worker: Mutex::default(),
            done: Arc::default(),
            written: Arc::default(),
            written_done: Arc::default(),
        }
    }

    /// Writes `piece` into `group`'s staging file (a piece at offset 0 starts a new file). A
    /// write that fails marks the file broken: its check refuses it, and nothing else fails.
    pub(crate) fn stage(&self, group: GroupId, piece: &SnapshotPiece) {
        let mut by_group = self.by_group.lock();
        if piece.offset == 0 {
            if let Some(old) = by_group.remove(&group) {
                self.remove_quietly(&old.name);
            }
            let stage = self
                .next_stage
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = file_name(group, piece.last, stage);
            by_group.insert(
                group,
                Staged {
                    stage,
                    last: piece.last,
                    name,
                    length: 0,
                    broken: None,
                },
            );
        }
        let Some(staged) = by_group
            .get_mut(&group)
            .filter(|staged| staged.broken.is_none())
        else {
            return;
        };
        if staged.last != piece.last || staged.length != piece.offset {
            staged.broken = Some(format!(
                "a chunk at offset {} of the snapshot at {} came after {} bytes of the one at {}",
                piece.offset, piece.last.index, staged.length, staged.last.index
            ));
            return;
        }
        let path = self.directory.join(&staged.name);
        let written = self
            .fs
            .open(&path, piece.offset == 0)
            .and_then(|file| file.write_at(piece.offset, &piece.data));
        match written {
            Ok(()) => staged.length += piece.data.len() as u64,
            Err(error) => staged.broken = Some(format!("{}: {error}", path.display())),
        }
    }

    /// Asks for `group`'s staged snapshot of `meta` to be checked with `check`, off the
    /// caller's thread (or at the next `take_checked`, deterministically).
    pub(crate) fn check(&self, group: GroupId, meta: SnapshotMeta, check: StagedCheck) {
        let job = self.job(group, meta, check);
        if self.loading == SnapshotLoading::NextAsk {
            self.pending.lock().push(job);
            return;
        }
        if let Some(Work::Check(job)) = self.hand_over(Work::Check(job)) {
            self.done.lock().push(CheckedSnapshot {
                group: job.group,
                meta: job.meta,
                stage: job.stage,
                outcome: Err("no thread to check the snapshot".to_owned()),
            });
        }
    }

    /// Asks for `view`, a snapshot of the node's own `group`, to be written to a new file and
    /// synced, off the caller's thread (or at the next `take_written`, deterministically),
    /// its pairs pulled `chunk_bytes_max` bytes at a time. A file of the group written before
    /// and never stored is removed.
    pub(crate) fn write(
        &self,
        group: GroupId,
        view: Box<dyn crate::machine::SnapshotView>,
        chunk_bytes_max: usize,
    ) {
        let last = view.applied();
        let source = WriteSource::View {
            view,
            chunk_bytes_max,
        };
        self.write_from(group, last, source);
    }

    /// As `write`, for a snapshot of `group` at `last` whose bytes `encode` makes (on the
    /// writing thread).
    pub(crate) fn write_encoded(
        &self,
        group: GroupId,
        last: LogId,
        encode: Box<dyn FnOnce() -> Vec<u8> + Send>,
    ) {
        self.write_from(group, last, WriteSource::Encode(encode));
    }

    fn write_from(&self, group: GroupId, last: LogId, source: WriteSource) {
        let stage = self
            .next_stage
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = written_file_name(group, last, stage);
        let replaced = self.written.lock().insert(
            group,
            Written {
                stage,
                name: name.clone(),
                length: None,
            },
        );
        if let Some(Written {
            name,
            length: Some(_),
            ..
        }) = replaced
        {
            self.remove_quietly(&name);
        }
        let job = WriteJob {
            group,
            stage,
            name,
            last,
            source,
        };
        if self.loading == SnapshotLoading::NextAsk {
            self.pending_writes.lock().push(job);
            return;
        }
        if let Some(Work::Write(job)) = self.hand_over(Work::Write(job)) {
            let last = job.last;
            self.written.lock().remove(&group);
            self.written_done.lock().push(WrittenSnapshot {
                group,
                last,
                outcome: Err("no thread to write the snapshot".to_owned()),
            });
        }
    }

    /// Drops `value` on the worker's thread: a state replaced on the caller's loop whose drop
    /// would stall it (the meta group's at 100,000 ranges, 55 ms). In the simulator's mode, or
    /// without a thread, here.
    pub(crate) fn drop_elsewhere(&self, value: Box<dyn Send>) {
        if self.loading == SnapshotLoading::NextAsk {
            return;
        }
        // Given back when no thread could be started: dropped here, on return.
        let _ = self.hand_over(Work::Drop(value));
    }

    /// Hands `work` to the worker, started at the first; gives it back if no thread could be
    /// started.
    fn hand_over(&self, work: Work) -> Option<Work> {
        let mut worker = self.worker.lock();
        let work = match worker.as_ref() {
            Some(sender) => match sender.send(work) {
                Ok(()) => return None,
                Err(mpsc::SendError(work)) => work,
            },
            None => work,
        };
        let (sender, receiver) = mpsc::channel::<Work>();
        let (done, token, fs) = (Arc::clone(&self.done), self.token, Arc::clone(&self.fs));
        let (written, written_done) = (Arc::clone(&self.written), Arc::clone(&self.written_done));
        let directory = self.directory.clone();
        let spawned = std::thread::Builder::new()
            .name("flotilla-snapshot-check".to_owned())
            .spawn(move || {
                for work in receiver {
                    match work {
                        Work::Check(job) => {
                            let checked = run_check(fs.as_ref(), token, job);
                            done.lock().push(checked);
                        }
                        Work::Write(job) => {
                            let outcome = run_write(fs.as_ref(), &directory, token, &written, job);
                            written_done.lock().push(outcome);
                        }
                        Work::Drop(value) => drop(value),
                    }
                }
            });
        match spawned {
            Ok(_) => {
                // A new channel's receiver is alive: the send cannot fail.
                let _ = sender.send(work);
                *worker = Some(sender);
                None
            }
            Err(error) => {
                tracing::warn!(%error, "no thread to check or write snapshots");
                Some(work)
            }
        }
    }

    /// The writes done since the last call (running those still pending first, in the
    /// simulator's mode).
    pub(crate) fn take_written(&self) -> Vec<WrittenSnapshot> {
        let pending = std::mem::take(&mut *self.pending_writes.lock());
        let mut written = std::mem::take(&mut *self.written_done.lock());
        written.extend(pending.into_iter().map(|job| {
            run_write(
                self.fs.as_ref(),
                &self.directory,
                self.token,
                &self.written,
                job,
            )
        }));
        written
    }

    /// Removes the written snapshot `reference` refers to, if it was never stored (the group
    /// compacted past it, or is gone).
    pub(crate) fn discard_written(&self, group: GroupId, reference: &[u8]) {
        let Some(staged) = self.resolve(reference) else {
            return;
        };
        let mut written = self.written.lock();
        if written
            .get(&group)
            .is_some_and(|file| file.name == staged.name)
            && let Some(file) = written.remove(&group)
        {
            self.remove_quietly(&file.name);
        }
    }

    /// The checks done since the last call (running those still pending first, in the
    /// simulator's mode).
    pub(crate) fn take_checked(&self) -> Vec<CheckedSnapshot> {
        let pending = std::mem::take(&mut *self.pending.lock());
        let mut checked = std::mem::take(&mut *self.done.lock());
        checked.extend(
            pending
                .into_iter()
                .map(|job| run_check(self.fs.as_ref(), self.token, job)),
        );
        checked
    }

    /// The check of `group`'s staged snapshot of `meta`.
    fn job(&self, group: GroupId, meta: SnapshotMeta, check: StagedCheck) -> Job {
        let by_group = self.by_group.lock();
        let staged = by_group
            .get(&group)
            .filter(|staged| staged.last == meta.last);
        let (stage, file) = match staged {
            None => (
                0,
                Err(format!("no snapshot at {} is staged", meta.last.index)),
            ),
            Some(staged) => match &staged.broken {
                Some(broken) => (
                    staged.stage,
                    Err(format!("the staged snapshot is incomplete: {broken}")),
                ),
                None => (
                    staged.stage,
                    Ok((
                        self.directory.join(&staged.name),
                        staged.length,
                        staged.name.clone(),
                    )),
                ),
            },
        };
        Job {
            group,
            meta,
            stage,
            check,
            file,
        }
    }

    /// The staged reference `data` holds, if it is one of this log's.
    pub(crate) fn resolve(&self, data: &[u8]) -> Option<StagedRef> {
        let rest = data.strip_prefix(MAGIC)?.strip_prefix(&self.token[..])?;
        let (index, rest) = rest.split_first_chunk::<8>()?;
        let (term, rest) = rest.split_first_chunk::<8>()?;
        let (length, rest) = rest.split_first_chunk::<8>()?;
        let (checksum, name) = rest.split_first_chunk::<4>()?;
        Some(StagedRef {
            last: LogId::new(
                Term(u64::from_le_bytes(*term)),
                LogIndex(u64::from_le_bytes(*index)),
            ),
            data_bytes: u64::from_le_bytes(*length),
            checksum: u32::from_le_bytes(*checksum),
            name: std::str::from_utf8(name).ok()?.to_owned(),
        })
    }

    /// Takes `group`'s staging of `staged` for storing: the path its file is at, if it is
    /// still the group's staging, whole as checked.
    pub(crate) fn take_for_store(&self, group: GroupId, staged: &StagedRef) -> Option<PathBuf> {
        if staged.name.starts_with(WRITTEN_PREFIX) {
            let mut written = self.written.lock();
            let current = written.get(&group)?;
            if current.name != staged.name || current.length != Some(staged.data_bytes) {
                return None;
            }
            written.remove(&group);
            return Some(self.directory.join(&staged.name));
        }
        let mut by_group = self.by_group.lock();
        let current = by_group.get(&group)?;
        if current.name != staged.name
            || current.length != staged.data_bytes
            || current.broken.is_some()
        {
            return None;
        }
        by_group.remove(&group);
        Some(self.directory.join(&staged.name))
    }

    /// Whether `stage` is `group`'s staging still (a check of an older one is of no use: its
    /// file is gone, and the snapshot being received is staged anew).
    pub(crate) fn is_current(&self, group: GroupId, stage: u64) -> bool {
        self.by_group
            .lock()
            .get(&group)
            .is_some_and(|staged| staged.stage == stage)
    }

    /// Removes `group`'s staging `stage` (refused, or no longer wanted); a newer staging is
    /// kept.
    pub(crate) fn discard_stage(&self, group: GroupId, stage: u64) {
        let mut by_group = self.by_group.lock();
        if by_group
            .get(&group)
            .is_some_and(|staged| staged.stage == stage)
            && let Some(staged) = by_group.remove(&group)
        {
            self.remove_quietly(&staged.name);
        }
    }

    /// Removes `group`'s staging file, whichever it is (Raft gave it up, or the replica is
    /// destroyed).
    pub(crate) fn discard(&self, group: GroupId) {
        if let Some(staged) = self.by_group.lock().remove(&group) {
            self.remove_quietly(&staged.name);
        }
    }

    /// Removes `group`'s written snapshot (the replica is destroyed); one being written is
    /// removed by its writer when it finds itself forgotten.
    pub(crate) fn discard_written_of(&self, group: GroupId) {
        if let Some(Written {
            name,
            length: Some(_),
            ..
        }) = self.written.lock().remove(&group)
        {
            self.remove_quietly(&name);
        }
    }

    fn remove_quietly(&self, name: &str) {
        super::spool::remove_quietly(self.fs.as_ref(), &self.directory.join(name));
    }
}

/// Syncs the staged file, computes its crc32c and runs the job's check over it; a check that
/// panics refuses the snapshot (the follower would otherwise wait for its result forever).
fn run_check(fs: &dyn FileSystem, token: [u8; 16], job: Job) -> CheckedSnapshot {
    let Job {
        group,
        meta,
        stage,
        check,
        file,
    } = job;
    let outcome = file.and_then(|(path, length, name)| {
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_file(fs, &path, length, |bytes| check(group, &meta, bytes))
        }));
        let (checksum, prepared) =
            checked.unwrap_or_else(|_| Err("checking it panicked".to_owned()))?;
        let reference = staged_reference(token, meta.last, length, checksum, &name);
        Ok((reference, prepared))
    });
    CheckedSnapshot {
        group,
        meta,
        stage,
        outcome,
    }
}

/// The staged reference to the file `name` holding the snapshot at `last`, `length` bytes of
/// crc32c `checksum`.
fn staged_reference(
    token: [u8; 16],
    last: LogId,
    length: u64,
    checksum: u32,
    name: &str,
) -> Vec<u8> {
    let mut reference = Vec::with_capacity(MAGIC.len() + 16 + 28 + name.len());
    reference.extend_from_slice(MAGIC);
    reference.extend_from_slice(&token);
    reference.extend_from_slice(&last.index.0.to_le_bytes());
    reference.extend_from_slice(&last.term.0.to_le_bytes());
    reference.extend_from_slice(&length.to_le_bytes());
    reference.extend_from_slice(&checksum.to_le_bytes());
    reference.extend_from_slice(name.as_bytes());
    reference
}

/// Streams the job's view into its file, syncs it and computes its crc32c; then, if the
/// group still waits for this write (`written`), records its length and returns the staged
/// reference. A failed write, a panicking view or a write no longer waited for leaves no
/// file.
fn run_write(
    fs: &dyn FileSystem,
    directory: &Path,
    token: [u8; 16],
    written: &Mutex<FxHashMap<GroupId, Written>>,
    job: WriteJob,
) -> WrittenSnapshot {
    let WriteJob {
        group,
        stage,
        name,
        last,
        source,
    } = job;
    let path = directory.join(&name);
    let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let failed = |error: io::Error| format!("{}: {error}", path.display());
        let file = fs.open(&path, true).map_err(failed)?;
        file.set_len(0).map_err(failed)?;
        let length = match source {
            WriteSource::View {
                mut view,
                chunk_bytes_max,
            } => {
                match crate::snapshot::write_view_at(file.as_ref(), view.as_mut(), chunk_bytes_max)
                {
                    Ok(Ok(length)) => length,
                    Ok(Err(error)) => return Err(failed(error)),
                    Err(error) => return Err(format!("the range could not be read: {error}")),
                }
            }
            WriteSource::Encode(encode) => {
                let bytes = encode();
                file.write_at(0, &bytes).map_err(failed)?;
                bytes.len() as u64
            }
        };
        drop(file);
        let (checksum, _) = check_file(fs, &path, length, |_| Ok(None))?;
        Ok((length, checksum))
    }))
    .unwrap_or_else(|_| Err("writing it panicked".to_owned()));
    let mut by_group = written.lock();
    let waited = by_group.get_mut(&group).filter(|file| file.stage == stage);
    let outcome = match (made, waited) {
        (Ok((length, checksum)), Some(file)) => {
            file.length = Some(length);
            Ok((
                staged_reference(token, last, length, checksum, &name),
                length,
            ))
        }
        (Ok(_), None) => Err("the group no longer waits for it".to_owned()),
        (Err(reason), waited) => {
            if waited.is_some() {
                by_group.remove(&group);
            }
            Err(reason)
        }
    };
    drop(by_group);
    if outcome.is_err() {
        super::spool::remove_quietly(fs, &path);
    }
    WrittenSnapshot {
        group,
        last,
        outcome,
    }
}

/// Syncs the file at `path`, runs `check` over its `length` bytes (mapped, or read) and
/// returns their crc32c and what the check prepared.
fn check_file(
    fs: &dyn FileSystem,
    path: &Path,
    length: u64,
    check: impl FnOnce(&[u8]) -> Result<Option<Prepared>, String>,
) -> Result<(u32, Option<Prepared>), String> {
    let failed = |doing: &str, error: io::Error| {
        format!("the staged snapshot could not be {doing}: {error}")
    };
    let file = fs
        .open(path, false)
        .map_err(|error| failed("opened", error))?;
    file.sync_data().map_err(|error| failed("synced", error))?;
    if file
        .len_bytes()
        .map_err(|error| failed("measured", error))?
        != length
    {
        return Err("the staged snapshot's file is not as long as what was staged".to_owned());
    }
    let mapped = file
        .map_immutable()
        .map_err(|error| failed("mapped", error))?;
    let read;
    let bytes: &[u8] = match &mapped {
        Some(mapped) => mapped,
        None => {
            let length = usize::try_from(length)
                .map_err(|_| "the staged snapshot is too large to read".to_owned())?;
            let mut buffer = vec![0; length];
            file.read_at(0, &mut buffer)
                .map_err(|error| failed("read", error))?;
            read = buffer;
            &read
        }
    };
    let prepared = check(bytes)?;
    Ok((crc32c::crc32c(bytes), prepared))
}

/// The file of `group`'s staging `stage`, of the snapshot at `last`.
fn file_name(group: GroupId, last: LogId, stage: u64) -> String {
    format!(
        "{PREFIX}{:020}-{:020}-{:020}-{stage:020}{SUFFIX}",
        group.0, last.index.0, last.term.0
    )
}

/// The file of `group`'s own snapshot at `last`, written as `stage`.
fn written_file_name(group: GroupId, last: LogId, stage: u64) -> String {
    format!(
        "{WRITTEN_PREFIX}{:020}-{:020}-{:020}-{stage:020}{SUFFIX}",
        group.0, last.index.0, last.term.0
    )
}

/// Whether `name` is a staging file or a written snapshot not yet stored.
pub(crate) fn is_staging_file(name: &str) -> bool {
    (name.starts_with(PREFIX) || name.starts_with(WRITTEN_PREFIX)) && name.ends_with(SUFFIX)
}

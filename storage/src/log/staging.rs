//! Snapshots a follower receives, staged in a file a chunk at a time and checked off the Raft
//! loop, so a follower never gathers a whole range in memory.
//!
//! With `Config::snapshot_staging`, Raft hands each chunk it receives to the caller
//! (`Ready::snapshot_chunks`), and the node appends it to the group's staging file
//! (`incoming-<group>-<index>-<term>.part`; a chunk at offset 0 starts a new one). Once the last
//! chunk arrived (`Ready::snapshot_received`), the node asks for the staged snapshot to be
//! checked: the file is synced, its crc32c computed and the node's check
//! (`SnapshotCheck`, the same one Raft runs on a snapshot it gathered itself) run over it,
//! mapped rather than read where the file system allows. That runs on a thread of its own,
//! or, in the simulator, when the node next asks for the results, so runs replay.
//!
//! A snapshot that passes is handed to Raft (`install_staged`) as a *staged reference*: this
//! log's token, the snapshot's last entry, length and crc32c, and the file's name. Storing it
//! (`Ready::persist.snapshot`) renames the staged file into the group's snapshot file, the
//! data already synced, so installing a received snapshot writes nothing again. A snapshot
//! that fails is refused; Raft drops it and the leader sends it again from its start.
//!
//! A staging file is never state: a crash leaves it unreferenced, and the log deletes every
//! one it finds when it opens.

use crate::file::{FileSystem, SegmentFile};
use flotilla_raft::{GroupId, LogId, LogIndex, SnapshotMeta, SnapshotPiece, Term};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SnapshotLoading;

const MAGIC: &[u8; 8] = b"FLOTSTGD";
const PREFIX: &str = "incoming-";
const SUFFIX: &str = ".part";

/// Checks a staged snapshot's bytes: the node's `SnapshotCheck`.
pub type StagedCheck = fn(GroupId, &SnapshotMeta, &[u8]) -> Result<(), String>;

/// A staged snapshot checked: the reference to install it with, or why it was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedSnapshot {
    /// The group that received it.
    pub group: GroupId,
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The staged reference to hand `install_staged`, or the reason it was refused.
    pub outcome: Result<Vec<u8>, String>,
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
    last: LogId,
    name: String,
    /// The file (none if it could not be created: then `broken` says why).
    file: Option<Arc<dyn SegmentFile>>,
    length: u64,
    /// Why the file does not hold the whole snapshot (a failed or out-of-order write).
    broken: Option<String>,
}

/// The staging files of one log, and the checks of staged snapshots.
pub(crate) struct Stagings {
    token: [u8; 16],
    loading: SnapshotLoading,
    by_group: Mutex<FxHashMap<GroupId, Staged>>,
    /// Checks asked for and not yet run (`SnapshotLoading::NextAsk`).
    pending: Mutex<Vec<(GroupId, SnapshotMeta, StagedCheck)>>,
    /// Checks done and not yet taken.
    done: Arc<Mutex<Vec<CheckedSnapshot>>>,
}

impl Stagings {
    pub(crate) fn new(token: [u8; 16], loading: SnapshotLoading) -> Self {
        Self {
            token,
            loading,
            by_group: Mutex::default(),
            pending: Mutex::default(),
            done: Arc::default(),
        }
    }

    /// Writes `piece` into `group`'s staging file (a piece at offset 0 starts a new file). A
    /// write that fails marks the file broken: its check refuses it, and nothing else fails.
    pub(crate) fn stage(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        group: GroupId,
        piece: &SnapshotPiece,
    ) {
        let mut by_group = self.by_group.lock();
        if piece.offset == 0 {
            if let Some(old) = by_group.remove(&group) {
                remove_quietly(fs, &directory.join(&old.name));
            }
            let name = file_name(group, piece.last);
            let path = directory.join(&name);
            let opened = fs
                .open(&path, true)
                .and_then(|file| file.set_len(0).map(|()| file));
            let (file, broken) = match opened {
                Ok(file) => (Some(Arc::from(file)), None),
                Err(error) => (None, Some(format!("{}: {error}", path.display()))),
            };
            by_group.insert(
                group,
                Staged {
                    last: piece.last,
                    name,
                    file,
                    length: 0,
                    broken,
                },
            );
        }
        let Some(staged) = by_group.get_mut(&group) else {
            return;
        };
        let Some(file) = staged.file.clone().filter(|_| staged.broken.is_none()) else {
            return;
        };
        if staged.last != piece.last || staged.length != piece.offset {
            staged.broken = Some(format!(
                "a chunk at offset {} of the snapshot at {} came after {} bytes of the one at {}",
                piece.offset, piece.last.index, staged.length, staged.last.index
            ));
            return;
        }
        match file.write_at(piece.offset, &piece.data) {
            Ok(()) => staged.length += piece.data.len() as u64,
            Err(error) => staged.broken = Some(format!("{}: {error}", staged.name)),
        }
    }

    /// Asks for `group`'s staged snapshot of `meta` to be checked with `check`, off the
    /// caller's thread (or at the next `take_checked`, deterministically).
    pub(crate) fn check(&self, group: GroupId, meta: SnapshotMeta, check: StagedCheck) {
        match self.loading {
            SnapshotLoading::NextAsk => self.pending.lock().push((group, meta, check)),
            SnapshotLoading::Background => {
                let job = self.job(group, &meta);
                let done = Arc::clone(&self.done);
                let spawned = std::thread::Builder::new()
                    .name("flotilla-snapshot-check".to_owned())
                    .spawn({
                        let meta = meta.clone();
                        move || {
                            let checked = run_check(job, group, meta, check);
                            done.lock().push(checked);
                        }
                    });
                if let Err(error) = spawned {
                    self.done.lock().push(CheckedSnapshot {
                        group,
                        meta,
                        outcome: Err(format!("no thread to check the snapshot: {error}")),
                    });
                }
            }
        }
    }

    /// The checks done since the last call (running those still pending first, in the
    /// simulator's mode).
    pub(crate) fn take_checked(&self) -> Vec<CheckedSnapshot> {
        let pending = std::mem::take(&mut *self.pending.lock());
        let mut checked: Vec<CheckedSnapshot> = pending
            .into_iter()
            .map(|(group, meta, check)| {
                let job = self.job(group, &meta);
                run_check(job, group, meta, check)
            })
            .collect();
        let mut done = self.done.lock();
        if checked.is_empty() {
            return std::mem::take(&mut *done);
        }
        checked.splice(0..0, done.drain(..));
        checked
    }

    /// What a check of `group`'s staged snapshot of `meta` reads.
    fn job(&self, group: GroupId, meta: &SnapshotMeta) -> Result<Job, String> {
        let by_group = self.by_group.lock();
        let staged = by_group
            .get(&group)
            .filter(|staged| staged.last == meta.last)
            .ok_or_else(|| format!("no snapshot at {} is staged", meta.last.index))?;
        let file = match (&staged.broken, &staged.file) {
            (None, Some(file)) => Arc::clone(file),
            (Some(broken), _) => {
                return Err(format!("the staged snapshot is incomplete: {broken}"));
            }
            (None, None) => return Err("the staged snapshot has no file".to_owned()),
        };
        Ok(Job {
            file,
            length: staged.length,
            name: staged.name.clone(),
            token: self.token,
        })
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

    /// Takes `group`'s staged file of `staged` for storing: the path it is at, if it is
    /// still the group's staging file.
    pub(crate) fn take_for_store(
        &self,
        directory: &Path,
        group: GroupId,
        staged: &StagedRef,
    ) -> Option<PathBuf> {
        let mut by_group = self.by_group.lock();
        let current = by_group.get(&group)?;
        if current.name != staged.name || current.length != staged.data_bytes {
            return None;
        }
        by_group.remove(&group);
        Some(directory.join(&staged.name))
    }

    /// Removes `group`'s staging file if it holds the snapshot at `last`.
    pub(crate) fn discard_at(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        group: GroupId,
        last: LogId,
    ) {
        let mut by_group = self.by_group.lock();
        if by_group
            .get(&group)
            .is_some_and(|staged| staged.last == last)
            && let Some(staged) = by_group.remove(&group)
        {
            remove_quietly(fs, &directory.join(&staged.name));
        }
    }

    /// Removes `group`'s staging file (its replica is destroyed).
    pub(crate) fn discard(&self, fs: &dyn FileSystem, directory: &Path, group: GroupId) {
        if let Some(staged) = self.by_group.lock().remove(&group) {
            remove_quietly(fs, &directory.join(&staged.name));
        }
    }
}

/// What one check reads: the staged file, its length and name.
struct Job {
    file: Arc<dyn SegmentFile>,
    length: u64,
    name: String,
    token: [u8; 16],
}

/// Syncs the staged file, computes its crc32c and runs `check` over it.
fn run_check(
    job: Result<Job, String>,
    group: GroupId,
    meta: SnapshotMeta,
    check: StagedCheck,
) -> CheckedSnapshot {
    let outcome = job.and_then(|job| {
        job.file
            .sync_data()
            .map_err(|error| format!("the staged snapshot could not be synced: {error}"))?;
        let mapped = job
            .file
            .map_immutable()
            .map_err(|error| format!("the staged snapshot could not be mapped: {error}"))?;
        let read;
        let bytes: &[u8] = match &mapped {
            Some(mapped) if mapped.len() as u64 == job.length => mapped,
            _ => {
                let length = usize::try_from(job.length)
                    .map_err(|_| "the staged snapshot is too large to read".to_owned())?;
                let mut buffer = vec![0; length];
                job.file
                    .read_at(0, &mut buffer)
                    .map_err(|error| format!("the staged snapshot could not be read: {error}"))?;
                read = buffer;
                &read
            }
        };
        check(group, &meta, bytes)?;
        let mut reference = Vec::with_capacity(MAGIC.len() + 16 + 28 + job.name.len());
        reference.extend_from_slice(MAGIC);
        reference.extend_from_slice(&job.token);
        reference.extend_from_slice(&meta.last.index.0.to_le_bytes());
        reference.extend_from_slice(&meta.last.term.0.to_le_bytes());
        reference.extend_from_slice(&job.length.to_le_bytes());
        reference.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
        reference.extend_from_slice(job.name.as_bytes());
        Ok(reference)
    });
    CheckedSnapshot {
        group,
        meta,
        outcome,
    }
}

/// The staging file of `group`'s snapshot at `last`.
fn file_name(group: GroupId, last: LogId) -> String {
    format!(
        "{PREFIX}{:020}-{:020}-{:020}{SUFFIX}",
        group.0, last.index.0, last.term.0
    )
}

/// Whether `name` is a staging file.
pub(crate) fn is_staging_file(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

fn remove_quietly(fs: &dyn FileSystem, path: &Path) {
    if let Err(error) = fs.remove(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "could not remove a staged snapshot");
    }
}

//! Snapshots a leader sends from a file, one chunk at a time, so neither a range's snapshot nor
//! a snapshot file is ever held whole in the leader's memory.
//!
//! `GroupLog::snapshot()` hands Raft a `Snapshot` whose data is a *reference*: this log's
//! token, the file's length and its name. Raft keeps it while it sends and asks
//! `GroupLog::snapshot_chunk` for each chunk, which reads that chunk from the file. A reference
//! never leaves the leader: followers receive the file's bytes. The token is drawn when the log
//! opens, so no snapshot's own bytes can pass for a reference.
//!
//! Two kinds of file are sent this way:
//! - a snapshot file of the log (`snap-…`, a range kept in memory) larger than
//!   `snapshot_inline_bytes_max`, sent as it lies;
//! - a *spool* (`spool-…`): a range whose state is in the engine has no snapshot file (its
//!   log holds the `ENGINE_STATE` note), so its snapshot is streamed from one engine read view
//!   into a spool file off the Raft loop (`snapshot_loads`), then sent from it. A group keeps
//!   its newest spool while it still covers the log's note, so followers that fall behind
//!   together share it. A spool is a copy to send, never state: it is not synced, a newer one
//!   replaces it, its group's destruction removes it, and the log deletes every spool it
//!   finds when it opens.
//!
//! Each group has one file being sent, held open: its chunks are read through that handle, so
//! a snapshot file the log deletes at its next compaction can still be sent to the end (a busy
//! range compacts far more often than a large snapshot takes to send). Only a newer snapshot
//! asked for while the group's file no longer covers the log's snapshot replaces it; a
//! follower still receiving the old one then fails its next chunk read, and Raft gives that
//! transfer up and sends the newest snapshot from its start.

use crate::file::{FileSystem, SegmentFile};
use flotilla_raft::{GroupId, LogError, LogIndex, Snapshot, SnapshotChunk, SnapshotMeta};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"FLOTSREF";
const TOKEN_BYTES: usize = 16;
const SPOOL_PREFIX: &str = "spool-";
const SPOOL_SUFFIX: &str = ".snap";

/// A file a reference names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileRef {
    /// The file's name in the log directory.
    pub(crate) name: String,
    /// The snapshot's length: the file's length.
    pub(crate) data_bytes: u64,
}

/// The file a group's snapshots are being sent from.
struct Spooled {
    meta: SnapshotMeta,
    file: FileRef,
    /// The open file: it stays readable after the log deletes it.
    handle: Arc<dyn SegmentFile>,
    /// Whether the file is a spool, removed with its slot (else the log's own file).
    spool: bool,
    /// When a chunk was last read from it (a count of reads), to close the least recent.
    used: u64,
}

/// The references and spools of one log.
pub(crate) struct Spools {
    token: [u8; TOKEN_BYTES],
    newest: Mutex<Sending>,
    next_sequence: AtomicU64,
    /// The most groups sending at once (`LogConfig::snapshot_sends_max`).
    sends_max: usize,
}

/// The file each group sends from, and the read count.
#[derive(Default)]
struct Sending {
    by_group: FxHashMap<GroupId, Spooled>,
    reads: u64,
}

impl Spools {
    /// Spools of a log just opened, with a token of its own, for at most `sends_max` groups
    /// sending at once.
    pub(crate) fn new(sends_max: usize) -> Self {
        let mut token = [0; TOKEN_BYTES];
        for half in token.chunks_exact_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_usize(half.as_ptr() as usize);
            half.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        Self {
            token,
            newest: Mutex::default(),
            next_sequence: AtomicU64::new(0),
            sends_max: sends_max.max(1),
        }
    }

    /// The log's token (staged references carry it too).
    pub(crate) fn token(&self) -> [u8; TOKEN_BYTES] {
        self.token
    }

    /// A snapshot covering `meta` whose data is a reference to `file`.
    pub(crate) fn reference(&self, meta: SnapshotMeta, file: &FileRef) -> Snapshot {
        let mut data = Vec::with_capacity(MAGIC.len() + TOKEN_BYTES + 8 + file.name.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&self.token);
        data.extend_from_slice(&file.data_bytes.to_le_bytes());
        data.extend_from_slice(file.name.as_bytes());
        Snapshot { meta, data }
    }

    /// The file `data` refers to, if it is one of this log's references.
    pub(crate) fn resolve(&self, data: &[u8]) -> Option<FileRef> {
        let rest = data.strip_prefix(MAGIC)?.strip_prefix(&self.token[..])?;
        let (length, name) = rest.split_first_chunk::<8>()?;
        Some(FileRef {
            name: std::str::from_utf8(name).ok()?.to_owned(),
            data_bytes: u64::from_le_bytes(*length),
        })
    }

    /// `group`'s newest spool as a snapshot to send, if it covers entry `index` (the log's
    /// note): a follower sent it goes on from the log after it.
    pub(crate) fn covering(&self, group: GroupId, index: LogIndex) -> Option<Snapshot> {
        let newest = self.newest.lock();
        let spooled = newest.by_group.get(&group)?;
        (spooled.meta.last.index >= index)
            .then(|| self.reference(spooled.meta.clone(), &spooled.file))
    }

    /// The log's snapshot file `file`, covering `meta`, as a snapshot to send: the group's
    /// file being sent, unless that one already covers `meta`.
    ///
    /// # Errors
    /// `Storage` if the file cannot be opened.
    pub(crate) fn send_file(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        group: GroupId,
        meta: SnapshotMeta,
        file: FileRef,
    ) -> Result<Snapshot, LogError> {
        if let Some(sending) = self.covering(group, meta.last.index) {
            return Ok(sending);
        }
        let path = directory.join(&file.name);
        let handle = fs
            .open(&path, false)
            .map_err(|error| storage_error(&path, "open", &error))?;
        let spooled = Spooled {
            meta,
            file,
            handle: Arc::from(handle),
            spool: false,
            used: 0,
        };
        Ok(self.replace(fs, directory, group, spooled))
    }

    /// Makes `spooled` the file `group` sends from, removing the spool it replaces; returns
    /// it as a snapshot to send.
    fn replace(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        group: GroupId,
        spooled: Spooled,
    ) -> Snapshot {
        let snapshot = self.reference(spooled.meta.clone(), &spooled.file);
        let mut newest = self.newest.lock();
        let mut closed = Vec::new();
        if !newest.by_group.contains_key(&group) && newest.by_group.len() >= self.sends_max {
            let least_recent = newest
                .by_group
                .iter()
                .min_by_key(|(_, sending)| sending.used)
                .map(|(&least_recent, _)| least_recent);
            closed.extend(least_recent.and_then(|group| newest.by_group.remove(&group)));
        }
        let used = newest.reads;
        closed.extend(newest.by_group.insert(group, Spooled { used, ..spooled }));
        drop(newest);
        for replaced in closed.iter().filter(|replaced| replaced.spool) {
            remove_quietly(fs, &directory.join(&replaced.file.name));
        }
        snapshot
    }

    /// Streams `group`'s snapshot into a new spool with `produce` (which writes it from offset
    /// 0 and says what it covers and its length), makes it the group's newest and removes the
    /// one it replaces; returns it as a snapshot to send. Runs off the Raft loop.
    ///
    /// # Errors
    /// `Storage` if the file could not be made or `produce` failed (its error is kept).
    pub(crate) fn spool(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        group: GroupId,
        produce: impl FnOnce(&dyn crate::file::SegmentFile) -> Result<(SnapshotMeta, u64), LogError>,
    ) -> Result<Snapshot, LogError> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("{SPOOL_PREFIX}{:020}-{sequence:020}{SPOOL_SUFFIX}", group.0);
        let path = directory.join(&name);
        let produced = fs
            .open(&path, true)
            .and_then(|file| file.set_len(0).map(|()| file))
            .map_err(|error| storage_error(&path, "create", &error))
            .and_then(|file| Ok((produce(file.as_ref())?, file)));
        let ((meta, data_bytes), handle) = match produced {
            Ok(produced) => produced,
            Err(error) => {
                remove_quietly(fs, &path);
                return Err(error);
            }
        };
        let spooled = Spooled {
            meta,
            file: FileRef { name, data_bytes },
            handle: Arc::from(handle),
            spool: true,
            used: 0,
        };
        Ok(self.replace(fs, directory, group, spooled))
    }

    /// The chunk from `offset`, at most `bytes_max` long, of `file`, which `group` sends from.
    ///
    /// # Errors
    /// `Storage` if `group` no longer sends from `file` (a newer snapshot replaced it: the
    /// transfer is given up and started afresh), or the file is shorter than its reference
    /// says or unreadable.
    pub(crate) fn read_chunk(
        &self,
        group: GroupId,
        file: &FileRef,
        offset: u64,
        bytes_max: u64,
    ) -> Result<SnapshotChunk, LogError> {
        let mut newest = self.newest.lock();
        newest.reads += 1;
        let reads = newest.reads;
        let handle = match newest.by_group.get_mut(&group) {
            Some(sending) if sending.file == *file => {
                sending.used = reads;
                Arc::clone(&sending.handle)
            }
            _ => {
                return Err(LogError::Storage(format!(
                    "snapshot file {} of {group} was replaced by a newer snapshot",
                    file.name
                )));
            }
        };
        drop(newest);
        let start = offset.min(file.data_bytes);
        let end = start.saturating_add(bytes_max).min(file.data_bytes);
        let length = usize::try_from(end - start).map_err(|_| {
            LogError::Storage(format!(
                "a chunk of snapshot file {} is too large",
                file.name
            ))
        })?;
        let mut data = vec![0; length];
        handle
            .read_at(start, &mut data)
            .map_err(|error| storage_error(Path::new(&file.name), "read a chunk of", &error))?;
        Ok(SnapshotChunk {
            data,
            done: end == file.data_bytes,
        })
    }

    /// Removes `group`'s spool (its replica is destroyed).
    pub(crate) fn forget(&self, fs: &dyn FileSystem, directory: &Path, group: GroupId) {
        let removed = self.newest.lock().by_group.remove(&group);
        if let Some(spooled) = removed.filter(|spooled| spooled.spool) {
            remove_quietly(fs, &directory.join(&spooled.file.name));
        }
    }
}

/// Whether `name` is a spool file.
pub(crate) fn is_spool_file(name: &str) -> bool {
    name.starts_with(SPOOL_PREFIX) && name.ends_with(SPOOL_SUFFIX)
}

/// Deletes the spools and staged snapshots a log left when it last ran: copies to send and
/// snapshots never installed, never state.
///
/// # Errors
/// The directory could not be listed or a file could not be removed.
pub(crate) fn remove_leftovers(fs: &dyn FileSystem, directory: &Path) -> io::Result<()> {
    for name in fs.list(directory)? {
        if is_spool_file(&name) || super::staging::is_staging_file(&name) {
            fs.remove(&directory.join(name))?;
        }
    }
    Ok(())
}

fn remove_quietly(fs: &dyn FileSystem, path: &Path) {
    if let Err(error) = fs.remove(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "could not remove a snapshot spool");
    }
}

fn storage_error(path: &Path, doing: &str, error: &io::Error) -> LogError {
    LogError::Storage(format!(
        "could not {doing} snapshot file {}: {error}",
        path.display()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_this_logs_references_resolve() {
        let (ours, theirs) = (Spools::new(4), Spools::new(4));
        let file = FileRef {
            name: "snap-1".into(),
            data_bytes: 77,
        };
        let snapshot = ours.reference(SnapshotMeta::default(), &file);
        assert_eq!(ours.resolve(&snapshot.data), Some(file));
        assert_eq!(theirs.resolve(&snapshot.data), None, "another log's token");
        assert_eq!(ours.resolve(b"FLOTSNP1 a snapshot's own bytes"), None);
        assert_eq!(ours.resolve(&snapshot.data[..20]), None, "cut short");
    }
}

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
//!   `snapshot_inline_bytes_max`, sent as it lies, its crc32c checked against the log's
//!   marker as its chunks are read in order (a damaged file fails its last chunk, which stops
//!   the node as any damaged read of its log does; the follower never receives it whole, and
//!   its own check refuses the damage anyway);
//! - a *spool* (`spool-…`): a range whose state is in the engine has no snapshot file (its
//!   log holds the `ENGINE_STATE` note), so its snapshot is streamed from one engine read view
//!   into a spool file off the Raft loop (`snapshot_loads`), then sent from it. A spool is a
//!   copy to send, never state: it is not synced, and it is deleted once no transfer reads it,
//!   when its group is destroyed, and (any left by a crash) when the log opens.
//!
//! Every file being sent is held open, and counted: each reference `snapshot()` hands out is
//! one user, and Raft says when a transfer no longer reads it (`snapshot_released`: received,
//! given up, or leadership lost). A file's chunks are read through its handle, so a snapshot
//! file the log deletes at its next compaction is still sent to the end: a busy range compacts
//! far more often than a large snapshot takes to send, and a newer snapshot for another
//! follower never cuts a transfer short. A group's newest file is shared by a follower that
//! asks while it still covers the log's snapshot. At most `snapshot_sends_max` files are open;
//! past that a new ask is answered "temporarily unavailable" (Raft asks again at the
//! follower's next heartbeat answer) rather than closing a file a transfer reads. Raft gives up
//! a transfer whose follower went silent for a check-quorum interval, so a file is not held
//! for a dead node. A spool no ask took (leadership moved, the follower left) is closed by the
//! log's garbage collection once it was found unused at two passes in a row.

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

/// A file being sent.
struct OpenFile {
    group: GroupId,
    meta: SnapshotMeta,
    data_bytes: u64,
    /// The open file: it stays readable after the log deletes it.
    handle: Arc<dyn SegmentFile>,
    /// Whether the file is a spool, deleted once closed (else the log's own file).
    spool: bool,
    /// References handed out and not yet released.
    users: u32,
    /// Garbage-collection passes in a row that found it with no user.
    idle_sweeps: u32,
    /// The crc32c the whole file must have (a log snapshot file's marker), and how far it has
    /// been checked: the crc32c of the bytes before `checked_to`.
    expected_crc: Option<u32>,
    checked_to: u64,
    crc: u32,
}

/// The files being sent, and each group's newest.
#[derive(Default)]
struct Open {
    by_name: FxHashMap<String, OpenFile>,
    newest: FxHashMap<GroupId, String>,
}

/// The files one log sends snapshots from.
pub(crate) struct Spools {
    token: [u8; TOKEN_BYTES],
    open: Mutex<Open>,
    next_sequence: AtomicU64,
    /// The most files open at once (`LogConfig::snapshot_sends_max`).
    sends_max: usize,
}

impl Spools {
    /// The files of a log just opened, with a token of its own, at most `sends_max` open.
    pub(crate) fn new(sends_max: usize) -> Self {
        let mut token = [0; TOKEN_BYTES];
        for half in token.chunks_exact_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_usize(half.as_ptr() as usize);
            half.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        Self {
            token,
            open: Mutex::default(),
            next_sequence: AtomicU64::new(0),
            sends_max: sends_max.max(1),
        }
    }

    /// The log's token (staged references carry it too).
    pub(crate) fn token(&self) -> [u8; TOKEN_BYTES] {
        self.token
    }

    /// A snapshot covering `meta` whose data is a reference to `file`.
    fn reference(&self, meta: SnapshotMeta, file: &FileRef) -> Snapshot {
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

    /// `group`'s newest file, as a snapshot to send (one more user), if it covers entry
    /// `index` (the log's snapshot): a follower sent it goes on from the log after it.
    pub(crate) fn share(&self, group: GroupId, index: LogIndex) -> Option<Snapshot> {
        let mut open = self.open.lock();
        let name = open.newest.get(&group)?.clone();
        let file = open.by_name.get_mut(&name)?;
        if file.meta.last.index < index {
            return None;
        }
        file.users += 1;
        let file_ref = FileRef {
            name,
            data_bytes: file.data_bytes,
        };
        Some(self.reference(file.meta.clone(), &file_ref))
    }

    /// Whether one more file may be opened: fewer than `sends_max` are, once a file no
    /// transfer took since the last garbage collection (a spool whose follower never asked
    /// again) is closed. A spool just made, waiting for the ask it answers, is kept.
    pub(crate) fn has_room(&self, fs: &dyn FileSystem, directory: &Path) -> bool {
        let mut open = self.open.lock();
        if open.by_name.len() < self.sends_max {
            return true;
        }
        let unused = open
            .by_name
            .iter()
            .find(|(_, file)| file.users == 0 && file.idle_sweeps > 0)
            .map(|(name, _)| name.clone());
        match unused {
            Some(name) => {
                close(&mut open, &name, fs, directory);
                true
            }
            None => false,
        }
    }

    /// The log's snapshot file `file` (of `group`, covering `meta`, with crc32c `checksum`)
    /// as a snapshot to send, opened and counted as one user.
    ///
    /// # Errors
    /// `SnapshotTemporarilyUnavailable` (logged) if it cannot be opened now.
    pub(crate) fn send_file(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        (group, meta): (GroupId, SnapshotMeta),
        file: FileRef,
        checksum: u32,
    ) -> Result<Snapshot, LogError> {
        let path = directory.join(&file.name);
        let handle = fs
            .open(&path, false)
            .map_err(|error| unavailable(&path, &error))?;
        let opened = OpenFile {
            group,
            meta: meta.clone(),
            data_bytes: file.data_bytes,
            handle: Arc::from(handle),
            spool: false,
            users: 1,
            idle_sweeps: 0,
            expected_crc: Some(checksum),
            checked_to: 0,
            crc: 0,
        };
        self.register(fs, directory, file.name.clone(), opened);
        Ok(self.reference(meta, &file))
    }

    /// Streams `group`'s snapshot into a new spool with `produce` (which writes it from offset
    /// 0 and says what it covers and its length) and makes it the group's newest file, with
    /// no user until the ask it answers takes it (`acquire`). Runs off the Raft loop.
    ///
    /// # Errors
    /// `SnapshotTemporarilyUnavailable` (logged) if the file could not be made, or what
    /// `produce` failed with.
    pub(crate) fn spool(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        group: GroupId,
        produce: impl FnOnce(&dyn SegmentFile) -> Result<(SnapshotMeta, u64), LogError>,
    ) -> Result<Snapshot, LogError> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("{SPOOL_PREFIX}{:020}-{sequence:020}{SPOOL_SUFFIX}", group.0);
        let path = directory.join(&name);
        let produced = fs
            .open(&path, true)
            .and_then(|file| file.set_len(0).map(|()| file))
            .map_err(|error| unavailable(&path, &error))
            .and_then(|file| Ok((produce(file.as_ref())?, file)));
        let ((meta, data_bytes), handle) = match produced {
            Ok(produced) => produced,
            Err(error) => {
                remove_quietly(fs, &path);
                return Err(error);
            }
        };
        let opened = OpenFile {
            group,
            meta: meta.clone(),
            data_bytes,
            handle: Arc::from(handle),
            spool: true,
            users: 0,
            idle_sweeps: 0,
            expected_crc: None,
            checked_to: 0,
            crc: 0,
        };
        self.register(fs, directory, name.clone(), opened);
        Ok(self.reference(meta, &FileRef { name, data_bytes }))
    }

    /// Counts one more user of the file `snapshot` refers to (a produced spool taken by the
    /// ask it answers); false if it was closed meanwhile.
    pub(crate) fn acquire(&self, snapshot: &Snapshot) -> bool {
        let Some(file) = self.resolve(&snapshot.data) else {
            return true;
        };
        let mut open = self.open.lock();
        match open.by_name.get_mut(&file.name) {
            Some(opened) => {
                opened.users += 1;
                true
            }
            None => false,
        }
    }

    /// A transfer no longer reads the file `snapshot` refers to: closed once none does.
    pub(crate) fn release(&self, fs: &dyn FileSystem, directory: &Path, snapshot: &Snapshot) {
        let Some(file) = self.resolve(&snapshot.data) else {
            return;
        };
        let mut open = self.open.lock();
        let Some(opened) = open.by_name.get_mut(&file.name) else {
            return;
        };
        opened.users = opened.users.saturating_sub(1);
        if opened.users == 0 {
            close(&mut open, &file.name, fs, directory);
        }
    }

    /// Opens `file` as `name`, `group`'s newest unless that one is newer (a load that ended
    /// late); the newest it replaces is closed if unused.
    fn register(&self, fs: &dyn FileSystem, directory: &Path, name: String, file: OpenFile) {
        let mut open = self.open.lock();
        let (group, index) = (file.group, file.meta.last.index);
        let previous = open.by_name.insert(name.clone(), file);
        debug_assert!(previous.is_none(), "{name} opened twice");
        let newer_open = open
            .newest
            .get(&group)
            .and_then(|newest| open.by_name.get(newest))
            .is_some_and(|newest| newest.meta.last.index > index);
        if newer_open {
            return;
        }
        if let Some(previous) = open.newest.insert(group, name)
            && open
                .by_name
                .get(&previous)
                .is_some_and(|file| file.users == 0)
        {
            close(&mut open, &previous, fs, directory);
        }
    }

    /// A garbage-collection pass: closes every file found with no user at this pass and the
    /// one before (a spool no ask took: leadership moved, the follower left, a newer load
    /// replaced it, or its replica was destroyed while it was made).
    pub(crate) fn sweep(&self, fs: &dyn FileSystem, directory: &Path) {
        let mut open = self.open.lock();
        let mut idle = Vec::new();
        for (name, file) in &mut open.by_name {
            if file.users > 0 {
                file.idle_sweeps = 0;
                continue;
            }
            file.idle_sweeps += 1;
            if file.idle_sweeps >= 2 {
                idle.push(name.clone());
            }
        }
        for name in idle {
            close(&mut open, &name, fs, directory);
        }
    }

    /// Closes every file of `group` (its replica is destroyed): a transfer still reading one
    /// is given up.
    pub(crate) fn forget(&self, fs: &dyn FileSystem, directory: &Path, group: GroupId) {
        let mut open = self.open.lock();
        let names: Vec<String> = open
            .by_name
            .iter()
            .filter(|(_, file)| file.group == group)
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            close(&mut open, &name, fs, directory);
        }
    }

    /// The chunk from `offset`, at most `bytes_max` long, of `file`.
    ///
    /// # Errors
    /// `Compacted` if the file is no longer open (its group was destroyed: the transfer is
    /// given up); `Storage` if it cannot be read, or its bytes do not match the crc32c of the
    /// log's marker.
    pub(crate) fn read_chunk(
        &self,
        file: &FileRef,
        offset: u64,
        bytes_max: u64,
    ) -> Result<SnapshotChunk, LogError> {
        let (handle, index) = {
            let open = self.open.lock();
            let opened = open
                .by_name
                .get(&file.name)
                .ok_or(LogError::Compacted(LogIndex(0)))?;
            (Arc::clone(&opened.handle), opened.meta.last.index)
        };
        let start = offset.min(file.data_bytes);
        let end = start.saturating_add(bytes_max).min(file.data_bytes);
        let length = usize::try_from(end - start).map_err(|_| {
            LogError::Storage(format!(
                "a chunk of snapshot file {} is too large",
                file.name
            ))
        })?;
        let mut data = vec![0; length];
        handle.read_at(start, &mut data).map_err(|error| {
            LogError::Storage(format!(
                "could not read a chunk of snapshot file {}: {error}",
                file.name
            ))
        })?;
        let mut open = self.open.lock();
        if let Some(opened) = open.by_name.get_mut(&file.name)
            && let Some(expected) = opened.expected_crc
            && opened.checked_to == start
        {
            opened.crc = crc32c::crc32c_append(opened.crc, &data);
            opened.checked_to = end;
            if end == file.data_bytes && opened.crc != expected {
                return Err(LogError::Storage(format!(
                    "snapshot file {} of entry {index} does not match its marker's checksum",
                    file.name
                )));
            }
        }
        Ok(SnapshotChunk {
            data,
            done: end == file.data_bytes,
        })
    }
}

/// Closes the open file `name`: forgotten as its group's newest, deleted if a spool.
fn close(open: &mut Open, name: &str, fs: &dyn FileSystem, directory: &Path) {
    let Some(file) = open.by_name.remove(name) else {
        return;
    };
    if open
        .newest
        .get(&file.group)
        .is_some_and(|newest| newest == name)
    {
        open.newest.remove(&file.group);
    }
    if file.spool {
        remove_quietly(fs, &directory.join(name));
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

/// Removes a copy of a snapshot (a spool, a staged snapshot): a failure is only logged, and
/// the log deletes what is left when it next opens.
pub(crate) fn remove_quietly(fs: &dyn FileSystem, path: &Path) {
    if let Err(error) = fs.remove(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "could not remove a copy of a snapshot");
    }
}

/// A file that cannot be opened or made now: logged, and the follower waits (Raft asks again
/// at its next heartbeat answer) rather than the node stopping.
fn unavailable(path: &Path, error: &io::Error) -> LogError {
    tracing::warn!(path = %path.display(), %error, "a snapshot to send cannot be opened now");
    LogError::SnapshotTemporarilyUnavailable
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

    /// A spool made for an ask that never takes it (leadership moved, the follower left) is
    /// closed and deleted by garbage collection once found unused at two passes; a spool a
    /// transfer reads is kept, and closed when it is released.
    #[test]
    fn a_spool_no_transfer_took_is_swept_and_a_released_one_closed() {
        let fs = crate::CrashFs::new(3);
        let directory = Path::new("/log");
        let spools = Spools::new(4);
        let produce = |file: &dyn SegmentFile| {
            file.write_at(0, b"state").unwrap();
            Ok((SnapshotMeta::default(), 5))
        };
        let untaken = spools.spool(&fs, directory, GroupId(1), produce).unwrap();
        let taken = spools.spool(&fs, directory, GroupId(2), produce).unwrap();
        assert!(spools.acquire(&taken));
        let names = |fs: &crate::CrashFs| fs.list(directory).unwrap();
        assert_eq!(names(&fs).len(), 2);
        spools.sweep(&fs, directory);
        assert_eq!(
            names(&fs).len(),
            2,
            "one pass: a spool may still be waiting for its ask"
        );
        spools.sweep(&fs, directory);
        let untaken_name = spools.resolve(&untaken.data).unwrap().name;
        assert!(!names(&fs).contains(&untaken_name), "swept");
        assert_eq!(names(&fs).len(), 1, "the one a transfer reads is kept");
        assert!(
            spools
                .read_chunk(&spools.resolve(&taken.data).unwrap(), 0, 3)
                .is_ok()
        );
        spools.release(&fs, directory, &taken);
        assert_eq!(
            names(&fs),
            Vec::<String>::new(),
            "closed with its last transfer"
        );
    }
}

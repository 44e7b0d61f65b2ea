//! The engine's snapshot files: each snapshot's data in its own immutable file in the data
//! directory, named after the group and the snapshot's last log id, while the WAL records only a
//! marker (metadata, file name, length, checksum).

use super::body::SnapshotMarker;
use crate::file::{FileSystem, read_whole};
use flotilla_raft::{GroupId, LogError, Snapshot};
use std::io;
use std::path::Path;

const PREFIX: &str = "snap-";
const SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".tmp";

/// The file name for `group`'s snapshot `snapshot`.
#[must_use]
pub(crate) fn file_name(group: GroupId, snapshot: &Snapshot) -> String {
    let last = snapshot.meta.last;
    format!(
        "{PREFIX}{:020}-{:020}-{:020}{SUFFIX}",
        group.0, last.index.0, last.term.0
    )
}

/// Whether `name` is a snapshot file or a snapshot file being written.
#[must_use]
pub(crate) fn is_snapshot_file(name: &str) -> bool {
    name.starts_with(PREFIX) && (name.ends_with(SUFFIX) || name.ends_with(TEMPORARY_SUFFIX))
}

/// Writes `snapshot.data` durably (temporary file, sync, rename, directory sync) and returns
/// the marker the WAL records for it. A snapshot without data gets no file (a new cluster's
/// every range starts from one: two syncs each made a bootstrap of 100,000 ranges take
/// minutes).
///
/// # Errors
/// The file system failed.
pub(crate) fn store(
    fs: &dyn FileSystem,
    directory: &Path,
    group: GroupId,
    snapshot: &Snapshot,
) -> io::Result<SnapshotMarker> {
    if crate::machine::is_engine_state(&snapshot.data) {
        return Ok(SnapshotMarker {
            meta: snapshot.meta.clone(),
            file_name: String::new(),
            data_bytes: snapshot.data.len() as u64,
            data_checksum: crc32c::crc32c(&snapshot.data),
        });
    }
    if snapshot.data.is_empty() {
        return Ok(SnapshotMarker {
            meta: snapshot.meta.clone(),
            file_name: String::new(),
            data_bytes: 0,
            data_checksum: crc32c::crc32c(&[]),
        });
    }
    let name = file_name(group, snapshot);
    let temporary = directory.join(format!("{name}{TEMPORARY_SUFFIX}"));
    let file = fs.open(&temporary, true)?;
    file.set_len(0)?;
    file.write_at(0, &snapshot.data)?;
    file.sync_data()?;
    drop(file);
    fs.rename(&temporary, &directory.join(&name))?;
    fs.sync_directory(directory)?;
    Ok(SnapshotMarker {
        meta: snapshot.meta.clone(),
        file_name: name,
        data_bytes: snapshot.data.len() as u64,
        data_checksum: crc32c::crc32c(&snapshot.data),
    })
}

/// Whether the file a marker names exists with the recorded length.
#[must_use]
pub(crate) fn is_present(fs: &dyn FileSystem, directory: &Path, marker: &SnapshotMarker) -> bool {
    if !marker.has_file() {
        return marker.data_bytes == 0 || marker.is_engine_state();
    }
    fs.open(&directory.join(&marker.file_name), false)
        .and_then(|file| file.len_bytes())
        .is_ok_and(|file_bytes| file_bytes == marker.data_bytes)
}

/// Reads and verifies the snapshot a marker names.
///
/// # Errors
/// `SnapshotTemporarilyUnavailable` when the file was just replaced by a newer snapshot;
/// `Storage` when it cannot be read or fails its checksum.
pub(crate) fn load(
    fs: &dyn FileSystem,
    directory: &Path,
    marker: &SnapshotMarker,
) -> Result<Snapshot, LogError> {
    if !marker.has_file() {
        let data = if marker.is_engine_state() {
            crate::machine::ENGINE_STATE.to_vec()
        } else {
            Vec::new()
        };
        return Ok(Snapshot {
            meta: marker.meta.clone(),
            data,
        });
    }
    let path = directory.join(&marker.file_name);
    let file = match fs.open(&path, false) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(LogError::SnapshotTemporarilyUnavailable);
        }
        Err(error) => return Err(storage_error(&path, &error)),
    };
    let data = read_whole(file.as_ref()).map_err(|error| storage_error(&path, &error))?;
    let checksum = crc32c::crc32c(&data);
    if data.len() as u64 != marker.data_bytes || checksum != marker.data_checksum {
        return Err(LogError::Storage(format!(
            "snapshot file {} does not match its marker (length or checksum)",
            path.display()
        )));
    }
    Ok(Snapshot {
        meta: marker.meta.clone(),
        data,
    })
}

fn storage_error(path: &Path, error: &io::Error) -> LogError {
    LogError::Storage(format!("reading {} failed: {error}", path.display()))
}

//! The check of one group's snapshot file against the marker the WAL holds for it: present, of
//! the recorded length, and (when asked) of the recorded crc32c, plus, for a KV snapshot, the
//! format's own header and checksum (`SnapshotFile::open`).

use super::report::{Finding, Severity, SnapshotReport};
use crate::log::body::SnapshotMarker;
use crate::snapshot::SnapshotFile;
use flotilla_raft::GroupId;
use std::fs;
use std::path::Path;

/// The first bytes of a KV snapshot file (`snapshot/format.rs`); the meta group's snapshot is
/// another encoding, checked by the marker's crc32c alone.
const KV_SNAPSHOT_MAGIC: &[u8] = b"FLOTSNP1";

/// Reports `group`'s snapshot and adds a finding for each thing wrong with its file.
pub(super) fn check(
    directory: &Path,
    group: GroupId,
    marker: &SnapshotMarker,
    verify: bool,
    findings: &mut Vec<Finding>,
) -> SnapshotReport {
    if !marker.has_file() {
        // No data, no file: nothing can be damaged.
        return SnapshotReport {
            index: marker.index(),
            term: marker.meta.last.term,
            file: String::new(),
            data_bytes: marker.data_bytes,
            data_checksum: marker.data_checksum,
            file_bytes: None,
            verified: verify,
        };
    }
    let path = directory.join(&marker.file_name);
    let mut damage = |problem: String| {
        findings.push(Finding {
            severity: Severity::Damage,
            file: Some(path.clone()),
            offset: None,
            problem: format!("group {group}'s snapshot: {problem}"),
        });
    };
    let file_bytes = fs::metadata(&path).map(|metadata| metadata.len()).ok();
    match file_bytes {
        None => damage("the file is missing or unreadable; the node would not start".to_owned()),
        Some(found) if found != marker.data_bytes => damage(format!(
            "the file has {found} bytes and its marker records {}; the node would not start",
            marker.data_bytes
        )),
        Some(_) => {}
    }
    let verified = verify && file_bytes == Some(marker.data_bytes) && {
        let problem = verify_contents(&path, marker);
        problem.map(&mut damage).is_none()
    };
    SnapshotReport {
        index: marker.index(),
        term: marker.meta.last.term,
        file: marker.file_name.clone(),
        data_bytes: marker.data_bytes,
        data_checksum: marker.data_checksum,
        file_bytes,
        verified,
    }
}

/// Reads the file whole: `None` when it matches the marker's checksum (and its own format's),
/// otherwise what is wrong.
fn verify_contents(path: &Path, marker: &SnapshotMarker) -> Option<String> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(error) => return Some(format!("the file cannot be read: {error}")),
    };
    let computed = crc32c::crc32c(&data);
    if computed != marker.data_checksum {
        return Some(format!(
            "the file's crc32c {computed:#010x} does not match the {:#010x} its marker records",
            marker.data_checksum
        ));
    }
    if data.starts_with(KV_SNAPSHOT_MAGIC)
        && let Err(error) = SnapshotFile::open(path)
    {
        return Some(format!("the KV snapshot fails its own check: {error}"));
    }
    None
}

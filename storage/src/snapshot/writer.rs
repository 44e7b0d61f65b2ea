//! Writing a snapshot file: streams the pairs of a `KvSnapshotSource` to a temporary file while
//! computing the checksum, then its session table, syncs it, and renames it into place. Runs
//! on any thread.

use super::format::{HEADER_BYTES, SnapshotHeader};
use super::reader::SnapshotFile;
use crate::error::SnapshotError;
use crate::kv::KvSnapshotSource;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The header of `source`, given its encoded session table.
fn header_of(source: &KvSnapshotSource, sessions: &[u8]) -> SnapshotHeader {
    let body_bytes = source
        .map
        .iter()
        .map(|(key, value)| 8 + key.len() as u64 + value.len() as u64)
        .sum();
    SnapshotHeader {
        group: source.group,
        applied: source.applied,
        pair_count: source.map.len() as u64,
        body_bytes,
        session_bytes: sessions.len() as u64,
    }
}

/// The session table's section: small next to the pairs (bounded by the session limits), so
/// it is encoded whole before the header that states its size.
fn encode_sessions(source: &KvSnapshotSource) -> Vec<u8> {
    postcard::to_allocvec(&*source.sessions).expect("encoding into a Vec cannot fail")
}

/// Streams the pairs and then `sessions` to `out`; returns the crc32c over `fields` and both.
fn write_body(
    source: &KvSnapshotSource,
    fields: &[u8],
    sessions: &[u8],
    out: &mut impl Write,
) -> io::Result<u32> {
    let mut checksum = crc32c::crc32c(fields);
    for (key, value) in source.map.iter() {
        for field in [key, value] {
            let length = u32::try_from(field.len())
                .map_err(io::Error::other)?
                .to_le_bytes();
            out.write_all(&length)?;
            out.write_all(field)?;
            checksum = crc32c::crc32c_append(checksum, &length);
            checksum = crc32c::crc32c_append(checksum, field);
        }
    }
    out.write_all(sessions)?;
    Ok(crc32c::crc32c_append(checksum, sessions))
}

/// The whole snapshot in memory (what a small group sends as `Snapshot::data`).
#[must_use]
pub fn encode_snapshot(source: &KvSnapshotSource) -> Vec<u8> {
    let sessions = encode_sessions(source);
    let header = header_of(source, &sessions);
    let mut body = Vec::new();
    let checksum =
        write_body(source, &header.fields(), &sessions, &mut body).expect("writing to a Vec");
    let mut bytes = header.encode(checksum);
    bytes.extend_from_slice(&body);
    bytes
}

/// Writes the snapshot of `source` to `path` durably and opens it.
///
/// # Errors
/// The file system failed, or a key or value is longer than 4 GiB.
pub fn write_snapshot(
    path: &Path,
    source: &KvSnapshotSource,
) -> Result<SnapshotFile, SnapshotError> {
    let io_error = |source| SnapshotError::Io {
        file: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("tmp");
    write_file(&temporary, source).map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)?;
    if let Some(directory) = path.parent() {
        File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(io_error)?;
    }
    SnapshotFile::open(path)
}

fn write_file(path: &Path, source: &KvSnapshotSource) -> io::Result<()> {
    let sessions = encode_sessions(source);
    let header = header_of(source, &sessions);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut out = BufWriter::new(file);
    out.write_all(&[0; HEADER_BYTES])?;
    let checksum = write_body(source, &header.fields(), &sessions, &mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.write_all_at(&header.encode(checksum), 0)?;
    file.sync_all()
}

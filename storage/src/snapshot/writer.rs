//! Writing a snapshot: streams the pairs of a `KvSnapshotSource` or of a `SnapshotView` (pulled
//! in chunks) to a temporary file while computing the checksum, then the session table, syncs
//! it, and renames it into place. Runs on any thread.

use super::format::{HEADER_BYTES, SnapshotHeader};
use super::reader::SnapshotFile;
use crate::error::{EngineError, MachineError, SnapshotError};
use crate::kv::KvSnapshotSource;
use crate::machine::SnapshotView;
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

/// What streaming a view can fail with: its engine, or the file written to.
enum StreamError {
    Engine(EngineError),
    Io(io::Error),
}

/// Streams the pairs of `view`, pulled in chunks of `chunk_bytes_max` bytes, then its session
/// table to `out`; returns the header and the checksum over its fields and everything written.
///
/// # Panics
/// If the view hands out other pairs than it counts: a bug in the view.
fn stream_view(
    view: &mut dyn SnapshotView,
    chunk_bytes_max: usize,
    out: &mut impl Write,
) -> Result<(SnapshotHeader, u32), StreamError> {
    let sessions = postcard::to_allocvec(view.sessions()).expect("encoding into a Vec cannot fail");
    let header = SnapshotHeader {
        group: view.group(),
        applied: view.applied(),
        pair_count: view.pair_count(),
        body_bytes: view.pair_count() * 8 + view.stored_bytes(),
        session_bytes: sessions.len() as u64,
    };
    let mut checksum = crc32c::crc32c(&header.fields());
    let mut pairs = Vec::new();
    let (mut pair_count, mut body_bytes) = (0u64, 0u64);
    while view
        .next_chunk(chunk_bytes_max, &mut pairs)
        .map_err(StreamError::Engine)?
    {
        pair_count += pairs.len() as u64;
        for (key, value) in pairs.drain(..) {
            for field in [key, value] {
                let length = u32::try_from(field.len())
                    .map_err(|error| StreamError::Io(io::Error::other(error)))?
                    .to_le_bytes();
                out.write_all(&length).map_err(StreamError::Io)?;
                out.write_all(&field).map_err(StreamError::Io)?;
                checksum = crc32c::crc32c_append(checksum, &length);
                checksum = crc32c::crc32c_append(checksum, &field);
                body_bytes += 4 + field.len() as u64;
            }
        }
    }
    assert_eq!(pair_count, header.pair_count, "the view counts its pairs");
    assert_eq!(body_bytes, header.body_bytes, "the view counts its bytes");
    out.write_all(&sessions).map_err(StreamError::Io)?;
    Ok((header, crc32c::crc32c_append(checksum, &sessions)))
}

/// The whole snapshot of `view` in the snapshot format, its pairs pulled in chunks of
/// `chunk_bytes_max` bytes: the same bytes `encode_snapshot` gives for the same state. For a
/// small range or a test; `write_view` streams a large one to a file instead.
///
/// # Errors
/// The engine behind the view failed.
pub fn encode_view(
    view: &mut dyn SnapshotView,
    chunk_bytes_max: usize,
) -> Result<Vec<u8>, EngineError> {
    let mut body = Vec::new();
    let (header, checksum) = match stream_view(view, chunk_bytes_max, &mut body) {
        Ok(done) => done,
        Err(StreamError::Engine(error)) => return Err(error),
        Err(StreamError::Io(error)) => panic!("a key or value over 4 GiB: {error}"),
    };
    let mut bytes = header.encode(checksum);
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Streams the snapshot of `view` to `path` durably, its pairs pulled in chunks of
/// `chunk_bytes_max` bytes (memory holds one chunk, never the range), and opens it. Runs on
/// any thread while the range goes on applying.
///
/// # Errors
/// The engine behind the view or the file system failed, or a key or value is over 4 GiB.
pub fn write_view(
    path: &Path,
    view: &mut dyn SnapshotView,
    chunk_bytes_max: usize,
) -> Result<SnapshotFile, MachineError> {
    let io_error = |source| SnapshotError::Io {
        file: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(io_error)?;
    let mut out = BufWriter::new(file);
    out.write_all(&[0; HEADER_BYTES]).map_err(io_error)?;
    let (header, checksum) =
        stream_view(view, chunk_bytes_max, &mut out).map_err(|error| match error {
            StreamError::Engine(error) => MachineError::Engine(error),
            StreamError::Io(source) => MachineError::Snapshot(io_error(source)),
        })?;
    let file = out
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .map_err(io_error)?;
    file.write_all_at(&header.encode(checksum), 0)
        .and_then(|()| file.sync_all())
        .map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)?;
    if let Some(directory) = path.parent() {
        File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(io_error)?;
    }
    Ok(SnapshotFile::open(path)?)
}

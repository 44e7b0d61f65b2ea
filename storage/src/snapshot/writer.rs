//! Writing a snapshot: streams the pairs of a `KvSnapshotSource`, of a `SnapshotView` (pulled
//! in chunks) or handed to a `SnapshotWriter` one by one to a temporary file while computing
//! the checksum, then the session table and the range's bounds, syncs it, and renames it into place. Runs on any
//! thread.

use super::format::{HEADER_BYTES, MergePart, SnapshotHeader, encode_trailer};
use super::reader::SnapshotFile;
use crate::error::{EngineError, MachineError, SnapshotError};
use crate::file::SegmentFile;
use crate::kv::{KvSnapshotSource, RangeBounds, SessionTable};
use crate::machine::SnapshotView;
use flotilla_raft::{GroupId, LogId};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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

/// The trailer of `source` (its session table and bounds).
fn encode_sessions(source: &KvSnapshotSource) -> Vec<u8> {
    encode_trailer(
        &source.sessions,
        &source.bounds,
        &(source.merge.clone(), source.declined.clone()),
    )
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

/// The pairs section as it is written: each pair checked to come after the one before, its
/// length-prefixed key and value written to `out` and added to the checksum.
struct BodyEncoder<W> {
    out: W,
    checksum: u32,
    pair_count: u64,
    body_bytes: u64,
    /// The last key written (its buffer is reused).
    last_key: Option<Vec<u8>>,
}

impl<W: Write> BodyEncoder<W> {
    /// An encoder whose checksum starts over the header `fields`.
    fn new(out: W, fields: &[u8]) -> Self {
        Self {
            out,
            checksum: crc32c::crc32c(fields),
            pair_count: 0,
            body_bytes: 0,
            last_key: None,
        }
    }

    /// Writes one pair; refused (the rule, as a sentence) unless its key comes after the
    /// last one, or when a key or value is 4 GiB or longer.
    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), PushError> {
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(PushError::Rule(
                "the pairs are not in strictly ascending key order".into(),
            ));
        }
        for field in [key, value] {
            let length = u32::try_from(field.len())
                .map_err(|_| PushError::Rule("a key or value is 4 GiB or longer".into()))?
                .to_le_bytes();
            self.out.write_all(&length).map_err(PushError::Io)?;
            self.out.write_all(field).map_err(PushError::Io)?;
            self.checksum = crc32c::crc32c_append(self.checksum, &length);
            self.checksum = crc32c::crc32c_append(self.checksum, field);
            self.body_bytes += 4 + field.len() as u64;
        }
        self.pair_count += 1;
        let last = self.last_key.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(key);
        Ok(())
    }

    /// Writes the session section after the pairs, once they are as many as `header` says;
    /// returns the output and the checksum over everything.
    fn finish(mut self, header: &SnapshotHeader, sessions: &[u8]) -> Result<(W, u32), PushError> {
        if (self.pair_count, self.body_bytes) != (header.pair_count, header.body_bytes) {
            return Err(PushError::Rule(format!(
                "{} pairs of {} bytes were written where the header says {} pairs of {} bytes",
                self.pair_count, self.body_bytes, header.pair_count, header.body_bytes
            )));
        }
        self.out.write_all(sessions).map_err(PushError::Io)?;
        Ok((self.out, crc32c::crc32c_append(self.checksum, sessions)))
    }
}

/// Why a pair or the end of the pairs could not be written.
enum PushError {
    /// A rule of the format (the rule, as a sentence).
    Rule(String),
    /// The output failed.
    Io(io::Error),
}

/// A snapshot file written from pairs handed over in ascending key order (from a remote read
/// view, say), with memory for one pair: a temporary file, then the header once the pairs and
/// the session table are in, synced and renamed into place by [`SnapshotWriter::finish`]. The
/// header's counts are given up front and checked at the end.
pub struct SnapshotWriter {
    path: PathBuf,
    temporary: PathBuf,
    header: SnapshotHeader,
    sessions: Vec<u8>,
    body: BodyEncoder<BufWriter<File>>,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SnapshotWriter")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("pairs_written", &self.body.pair_count)
            .finish_non_exhaustive()
    }
}

impl SnapshotWriter {
    /// Starts the snapshot of `group` at `applied` in `path` (written as `path` with the
    /// extension `tmp` until [`SnapshotWriter::finish`]): `pair_count` pairs of `stored_bytes`
    /// key and value bytes in all, then the session table and the range's bounds.
    ///
    /// # Errors
    /// The temporary file could not be created.
    pub fn create(
        path: &Path,
        (group, applied): (GroupId, LogId),
        (pair_count, stored_bytes): (u64, u64),
        (sessions, bounds): (&SessionTable, &RangeBounds),
    ) -> Result<Self, SnapshotError> {
        Self::create_in_merge(
            path,
            (group, applied),
            (pair_count, stored_bytes),
            (sessions, bounds, &MergePart::default()),
        )
    }

    /// As [`SnapshotWriter::create`], for a range in a merge (`merge`: its part in it and the
    /// attempts it refused).
    fn create_in_merge(
        path: &Path,
        (group, applied): (GroupId, LogId),
        (pair_count, stored_bytes): (u64, u64),
        (sessions, bounds, merge): (&SessionTable, &RangeBounds, &MergePart),
    ) -> Result<Self, SnapshotError> {
        let sessions = encode_trailer(sessions, bounds, merge);
        let header = SnapshotHeader {
            group,
            applied,
            pair_count,
            body_bytes: pair_count * 8 + stored_bytes,
            session_bytes: sessions.len() as u64,
        };
        let temporary = path.with_extension("tmp");
        let io_error = |source| SnapshotError::Io {
            file: temporary.clone(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)
            .map_err(io_error)?;
        let mut out = BufWriter::new(file);
        out.write_all(&[0; HEADER_BYTES]).map_err(io_error)?;
        Ok(Self {
            path: path.to_path_buf(),
            temporary: temporary.clone(),
            body: BodyEncoder::new(out, &header.fields()),
            header,
            sessions,
        })
    }

    /// Appends one pair; its key must come after the last one's.
    ///
    /// # Errors
    /// The key is out of order, a key or value is 4 GiB or longer, or the file failed.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        let error = self.push_error();
        self.body.push(key, value).map_err(error)
    }

    /// Ends the file: checks the pairs against the counts given to `create`, writes the
    /// session table and the header, syncs the file, renames it to its path, syncs the
    /// directory, and opens it (verifying its checksum).
    ///
    /// # Errors
    /// The counts differ, or the file system failed.
    pub fn finish(self) -> Result<SnapshotFile, SnapshotError> {
        let error = self.push_error();
        let (out, checksum) = self
            .body
            .finish(&self.header, &self.sessions)
            .map_err(error)?;
        let io_error = |source| SnapshotError::Io {
            file: self.temporary.clone(),
            source,
        };
        let file = out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .map_err(io_error)?;
        file.write_all_at(&self.header.encode(checksum), 0)
            .and_then(|()| file.sync_all())
            .map_err(io_error)?;
        std::fs::rename(&self.temporary, &self.path).map_err(io_error)?;
        if let Some(directory) = self.path.parent() {
            File::open(directory)
                .and_then(|d| d.sync_all())
                .map_err(io_error)?;
        }
        SnapshotFile::open(&self.path)
    }

    /// How a failed push or finish is reported.
    fn push_error(&self) -> impl Fn(PushError) -> SnapshotError + use<> {
        let (path, temporary) = (self.path.clone(), self.temporary.clone());
        move |error| match error {
            PushError::Rule(reason) => SnapshotError::Unwritable {
                file: path.clone(),
                reason,
            },
            PushError::Io(source) => SnapshotError::Io {
                file: temporary.clone(),
                source,
            },
        }
    }
}

/// The whole snapshot of `view` in the snapshot format, its pairs pulled in chunks of
/// `chunk_bytes_max` bytes: the same bytes `encode_snapshot` gives for the same state. For a
/// small range or a test; `write_view_at` streams a large one to a file instead.
///
/// # Errors
/// The engine behind the view failed.
///
/// # Panics
/// If the view hands out pairs out of order or other pairs than it counts, or a key or value
/// of 4 GiB: a bug in the view.
pub fn encode_view(
    view: &mut dyn SnapshotView,
    chunk_bytes_max: usize,
) -> Result<Vec<u8>, EngineError> {
    let (body, header, checksum) = match encode_view_body(view, chunk_bytes_max, Vec::new())? {
        Ok(encoded) => encoded,
        Err(error) => panic!("writing to a Vec failed: {error}"),
    };
    let mut bytes = header.encode(checksum);
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Streams the snapshot of `view` into `file` from offset 0 (the body, then the header with
/// its checksum), its pairs pulled in chunks of `chunk_bytes_max` bytes, so memory holds one
/// chunk, never the range; returns the snapshot's length. Nothing is synced: the file is a
/// copy to send (a leader's spool), not state.
///
/// # Errors
/// The engine behind the view failed (`Ok(Err)` is the file's error).
///
/// # Panics
/// As `encode_view`.
pub fn write_view_at(
    file: &dyn SegmentFile,
    view: &mut dyn SnapshotView,
    chunk_bytes_max: usize,
) -> Result<io::Result<u64>, EngineError> {
    let out = BufWriter::with_capacity(
        chunk_bytes_max.clamp(4096, 1 << 20),
        AtOffset {
            file,
            offset: HEADER_BYTES as u64,
        },
    );
    let (out, header, checksum) = match encode_view_body(view, chunk_bytes_max, out)? {
        Ok(encoded) => encoded,
        Err(error) => return Ok(Err(error)),
    };
    let written = out
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(|out| {
            file.write_at(0, &header.encode(checksum))?;
            file.set_len(out.offset)?;
            Ok(out.offset)
        });
    Ok(written)
}

/// Writes the body of `view`'s snapshot (pairs, then the trailer) to `out`; returns `out`, the
/// header and the checksum over header fields and body (`Ok(Err)`: `out` failed).
fn encode_view_body<W: Write>(
    view: &mut dyn SnapshotView,
    chunk_bytes_max: usize,
    out: W,
) -> Result<io::Result<(W, SnapshotHeader, u32)>, EngineError> {
    let merge = (view.merge_state().clone(), view.declined().clone());
    let sessions = encode_trailer(view.sessions(), view.bounds(), &merge);
    let header = SnapshotHeader {
        group: view.group(),
        applied: view.applied(),
        pair_count: view.pair_count(),
        body_bytes: view.pair_count() * 8 + view.stored_bytes(),
        session_bytes: sessions.len() as u64,
    };
    let mut body = BodyEncoder::new(out, &header.fields());
    let mut pairs = Vec::new();
    let broken = |reason: String| -> ! { panic!("the view broke the snapshot format: {reason}") };
    while view.next_chunk(chunk_bytes_max, &mut pairs)? {
        for (key, value) in pairs.drain(..) {
            match body.push(&key, &value) {
                Ok(()) => {}
                Err(PushError::Rule(reason)) => broken(reason),
                Err(PushError::Io(error)) => return Ok(Err(error)),
            }
        }
    }
    match body.finish(&header, &sessions) {
        Ok((out, checksum)) => Ok(Ok((out, header, checksum))),
        Err(PushError::Rule(reason)) => broken(reason),
        Err(PushError::Io(error)) => Ok(Err(error)),
    }
}

/// `io::Write` over a `SegmentFile`, writing on from `offset`.
struct AtOffset<'a> {
    file: &'a dyn SegmentFile,
    offset: u64,
}

impl Write for AtOffset<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.file.write_at(self.offset, bytes)?;
        self.offset += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Streams the snapshot of `view` to `path` durably, its pairs pulled in chunks of
/// `chunk_bytes_max` bytes (memory holds one chunk, never the range), and opens it. Runs on
/// any thread while the range goes on applying.
///
/// # Errors
/// The engine behind the view or the file system failed, the view handed out pairs out of
/// order or other pairs than it counts, or a key or value is over 4 GiB.
pub fn write_view(
    path: &Path,
    view: &mut dyn SnapshotView,
    chunk_bytes_max: usize,
) -> Result<SnapshotFile, MachineError> {
    let merge = (view.merge_state().clone(), view.declined().clone());
    let mut writer = SnapshotWriter::create_in_merge(
        path,
        (view.group(), view.applied()),
        (view.pair_count(), view.stored_bytes()),
        (view.sessions(), view.bounds(), &merge),
    )?;
    let mut pairs = Vec::new();
    while view.next_chunk(chunk_bytes_max, &mut pairs)? {
        for (key, value) in pairs.drain(..) {
            writer.push(&key, &value)?;
        }
    }
    Ok(writer.finish()?)
}

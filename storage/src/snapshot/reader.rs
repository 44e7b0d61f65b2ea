//! Reading a snapshot file: mapped with memmap2 and verified once on open, then served whole
//! (for `Snapshot::data`), in chunks (to stream to a follower), or decoded into a state machine.

use super::format::{SnapshotHeader, check, decode_snapshot};
use crate::error::SnapshotError;
use crate::kv::KvStateMachine;
use crate::mmap::map_immutable;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// An open, verified snapshot file.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    map: Mmap,
    header: SnapshotHeader,
}

impl SnapshotFile {
    /// Maps `path` and verifies its header and checksum.
    ///
    /// # Errors
    /// The file cannot be read, or it is truncated or corrupt.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let io_error = |source| SnapshotError::Io {
            file: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        let map = map_immutable(&file).map_err(io_error)?;
        let (header, _) = check(&map)?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            header,
        })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header: group, applied entry, pair count.
    #[must_use]
    pub fn header(&self) -> SnapshotHeader {
        self.header
    }

    /// The size of the file.
    #[must_use]
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The whole file: what goes into `flotilla_raft::Snapshot::data`.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Up to `length` bytes from `offset` (shorter at the end of the file), to stream the
    /// snapshot to a follower chunk by chunk.
    ///
    /// # Errors
    /// `offset` is past the end of the file.
    pub fn read_chunk(&self, offset: u64, length: usize) -> Result<&[u8], SnapshotError> {
        let out_of_range = SnapshotError::ChunkOutOfRange {
            offset,
            file_bytes: self.file_bytes(),
        };
        let start = usize::try_from(offset).map_err(|_| out_of_range)?;
        let rest = self
            .map
            .get(start..)
            .ok_or(SnapshotError::ChunkOutOfRange {
                offset,
                file_bytes: self.file_bytes(),
            })?;
        Ok(rest.get(..length).unwrap_or(rest))
    }

    /// Decodes the state machine the file holds (on restart, before replaying the log tail).
    ///
    /// # Errors
    /// The pairs are malformed (the checksum was verified on open).
    pub fn restore(&self) -> Result<KvStateMachine, SnapshotError> {
        decode_snapshot(&self.map)
    }
}

//! One segment file: its name, its 32-byte header, and reads of its records, through memmap2
//! once the segment is sealed and through `read_at` while it is still being appended.
#![deny(clippy::indexing_slicing)]

use crate::config::SEGMENT_HEADER_BYTES;
use crate::file::SegmentFile;
use crate::le::{read_u32, read_u64};
use memmap2::Mmap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const MAGIC: &[u8; 8] = b"FLOTWAL1";
/// Version 2 frames every sync as a batch (`batch_frame.rs`) and binds segments to a log id.
const FORMAT_VERSION: u32 = 2;
const SUFFIX: &str = ".wal";

/// The file name of segment `sequence`: zero-padded so names sort in sequence order.
#[must_use]
pub(crate) fn file_name(sequence: u64) -> String {
    format!("{sequence:020}{SUFFIX}")
}

/// The sequence number in a segment file name, or `None` for other files.
#[must_use]
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// The header written at offset 0 of segment `sequence` of the log `log_id`.
#[must_use]
pub(crate) fn encode_header(sequence: u64, log_id: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&sequence.to_le_bytes());
    header.extend_from_slice(&log_id.to_le_bytes());
    let checksum = crc32c::crc32c(&header);
    header.extend_from_slice(&checksum.to_le_bytes());
    debug_assert_eq!(header.len() as u64, SEGMENT_HEADER_BYTES);
    header
}

/// Checks the header at the start of `bytes` against the expected sequence number; returns the
/// id of the log it belongs to.
///
/// # Errors
/// A sentence saying what is wrong.
pub(crate) fn check_header(bytes: &[u8], sequence: u64) -> Result<u64, String> {
    let found = bytes
        .get(..SEGMENT_HEADER_BYTES as usize)
        .ok_or_else(|| format!("the file has only {} bytes", bytes.len()))?;
    if found.get(..8) != Some(MAGIC.as_slice()) {
        return Err("the magic bytes are not FLOTWAL1".to_owned());
    }
    let stored = read_u32(found, 28);
    if stored != crc32c::crc32c(found.get(..28).unwrap_or_default()) {
        return Err("the header fails its checksum".to_owned());
    }
    let version = read_u32(found, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "it was written in format version {version}, and this build reads only version \
             {FORMAT_VERSION}"
        ));
    }
    let found_sequence = read_u64(found, 12);
    if found_sequence != sequence {
        return Err(format!(
            "it is the header of segment {found_sequence}, not of segment {sequence}"
        ));
    }
    Ok(read_u64(found, 20))
}

/// An open segment file.
pub(crate) struct Segment {
    /// The sequence number.
    pub(crate) sequence: u64,
    /// The file's path, for errors.
    pub(crate) path: PathBuf,
    file: Box<dyn SegmentFile>,
    map: OnceLock<Mmap>,
}

impl Segment {
    /// Wraps an open file.
    #[must_use]
    pub(crate) fn new(sequence: u64, path: &Path, file: Box<dyn SegmentFile>) -> Self {
        Self {
            sequence,
            path: path.to_path_buf(),
            file,
            map: OnceLock::new(),
        }
    }

    /// The file, for the writer.
    #[must_use]
    pub(crate) fn file(&self) -> &dyn SegmentFile {
        self.file.as_ref()
    }

    /// Marks the segment immutable and maps it for reads when the file system allows.
    ///
    /// # Errors
    /// The map failed.
    pub(crate) fn seal(&self) -> io::Result<()> {
        if let Some(map) = self.file.map_immutable()? {
            let _ = self.map.set(map);
        }
        Ok(())
    }

    /// Whether reads go through the memory map.
    #[must_use]
    pub(crate) fn is_mapped(&self) -> bool {
        self.map.get().is_some()
    }

    /// Calls `read` with the `length` bytes at `offset`.
    ///
    /// # Errors
    /// The range is outside the file, or reading failed.
    pub(crate) fn with_bytes<R>(
        &self,
        offset: u64,
        length: usize,
        read: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<R> {
        if let Some(map) = self.map.get() {
            let bytes = usize::try_from(offset)
                .ok()
                .and_then(|start| map.get(start..start.checked_add(length)?))
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            return Ok(read(bytes));
        }
        let mut buf = vec![0; length];
        self.file.read_at(offset, &mut buf)?;
        Ok(read(&buf))
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("sequence", &self.sequence)
            .field("path", &self.path)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse_back() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_file_name("snap-1.snap"), None);
    }

    #[test]
    fn a_header_names_its_sequence_and_log() {
        let header = encode_header(7, 99);
        assert_eq!(check_header(&header, 7), Ok(99));
        assert!(check_header(&header, 8).is_err());
        assert!(check_header(&header[..10], 7).is_err());
    }

    #[test]
    fn a_version_1_header_is_refused_by_name() {
        let mut header = encode_header(7, 0);
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        let checksum = crc32c::crc32c(&header[..28]);
        header[28..].copy_from_slice(&checksum.to_le_bytes());
        let error = check_header(&header, 7).unwrap_err();
        assert!(error.contains("format version 1"), "{error}");
    }
}

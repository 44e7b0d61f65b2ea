//! The frame of every record in a segment: `len | crc32c | group | kind | payload`, all
//! little-endian. The decoder never panics and never indexes out of bounds; it is fuzzed
//! (`storage/fuzz/`) and property-tested.
#![deny(clippy::indexing_slicing)]

use crate::error::RecordError;
use crate::le::{read_u32, read_u64};
use flotilla_raft::GroupId;

/// Bytes before the payload: length (4), checksum (4), group (8), kind (1).
pub const HEADER_BYTES: usize = 17;

/// What a record's payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// One log entry; it replaces every entry of its group at or after its index.
    Entry = 1,
    /// The group's hard state.
    HardState = 2,
    /// A snapshot received from a leader: it replaces the group's whole log.
    Snapshot = 3,
    /// A snapshot taken locally: the group's entries up to it are dropped.
    Compaction = 4,
    /// The group's replica was destroyed: its log and snapshot are dropped, and only the hard
    /// state in the record (the last term it knew, no vote) is kept, as its tombstone.
    Destroy = 5,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Result<Self, RecordError> {
        match byte {
            1 => Ok(RecordKind::Entry),
            2 => Ok(RecordKind::HardState),
            3 => Ok(RecordKind::Snapshot),
            4 => Ok(RecordKind::Compaction),
            5 => Ok(RecordKind::Destroy),
            other => Err(RecordError::UnknownKind(other)),
        }
    }
}

/// A decoded frame borrowing its payload from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The group the record belongs to.
    pub group: GroupId,
    /// What the payload holds.
    pub kind: RecordKind,
    /// The payload bytes (postcard-encoded).
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// The bytes the frame occupies on disk.
    #[must_use]
    pub fn frame_bytes(&self) -> usize {
        HEADER_BYTES + self.payload.len()
    }
}

/// Appends the frame of `frame` to `out`.
///
/// # Panics
/// If the payload is longer than `u32::MAX`: the caller checks `record_bytes_max` first.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let payload_bytes = u32::try_from(frame.payload.len()).expect("payload fits u32");
    let length = payload_bytes.to_le_bytes();
    let group = frame.group.0.to_le_bytes();
    let kind = [frame.kind as u8];
    let mut checksum = crc32c::crc32c(&length);
    for part in [group.as_slice(), &kind, frame.payload] {
        checksum = crc32c::crc32c_append(checksum, part);
    }
    let start = out.len();
    out.extend_from_slice(&length);
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(&group);
    out.extend_from_slice(&kind);
    out.extend_from_slice(frame.payload);
    debug_assert_eq!(
        out.get(start..)
            .map(|bytes| decode(bytes, u64::MAX).map(|f| f.payload)),
        Some(Ok(frame.payload))
    );
}

/// The checksum of an encoded frame: crc32c over length, group, kind and payload.
fn checksum_of(frame_bytes: &[u8]) -> u32 {
    let length = frame_bytes.get(..4).unwrap_or_default();
    let rest = frame_bytes.get(8..).unwrap_or_default();
    crc32c::crc32c_append(crc32c::crc32c(length), rest)
}

/// Whether `bytes` starts with an all-zero header: the end of the written part of a
/// preallocated segment.
#[must_use]
pub fn is_zero_header(bytes: &[u8]) -> bool {
    bytes.iter().take(HEADER_BYTES).all(|&byte| byte == 0)
}

/// Decodes the frame at the start of `bytes`, refusing payloads over `payload_bytes_max`.
///
/// # Errors
/// The frame is truncated, too large, fails its checksum or names an unknown kind.
pub fn decode(bytes: &[u8], payload_bytes_max: u64) -> Result<Frame<'_>, RecordError> {
    let header = bytes.get(..HEADER_BYTES).ok_or(RecordError::Truncated {
        needed_bytes: HEADER_BYTES as u64,
        available_bytes: bytes.len() as u64,
    })?;
    let payload_bytes = u64::from(read_u32(header, 0));
    if payload_bytes > payload_bytes_max {
        return Err(RecordError::TooLarge {
            payload_bytes,
            payload_bytes_max,
        });
    }
    let frame_bytes = HEADER_BYTES as u64 + payload_bytes;
    let whole = usize::try_from(frame_bytes)
        .ok()
        .and_then(|end| bytes.get(..end))
        .ok_or(RecordError::Truncated {
            needed_bytes: frame_bytes,
            available_bytes: bytes.len() as u64,
        })?;
    let stored = read_u32(header, 4);
    let computed = checksum_of(whole);
    if stored != computed {
        return Err(RecordError::ChecksumMismatch { stored, computed });
    }
    let kind = RecordKind::from_byte(header.get(16).copied().unwrap_or_default())?;
    let group = GroupId(read_u64(header, 8));
    let payload = whole.get(HEADER_BYTES..).unwrap_or_default();
    Ok(Frame {
        group,
        kind,
        payload,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn encoded(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let frame = Frame {
            group: GroupId(7),
            kind: RecordKind::HardState,
            payload,
        };
        encode(&frame, &mut out);
        out
    }

    #[test]
    fn a_frame_roundtrips() {
        let bytes = encoded(b"abc");
        let frame = decode(&bytes, 16).unwrap();
        assert_eq!(frame.group, GroupId(7));
        assert_eq!(frame.kind, RecordKind::HardState);
        assert_eq!(frame.payload, b"abc");
        assert_eq!(frame.frame_bytes(), bytes.len());
    }

    #[test]
    fn a_flipped_length_is_detected() {
        let mut bytes = encoded(b"abcdef");
        bytes[0] = 3;
        assert!(matches!(
            decode(&bytes, 16),
            Err(RecordError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading() {
        let bytes = encoded(&[1; 32]);
        assert!(matches!(
            decode(&bytes, 16),
            Err(RecordError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_zero_header_is_not_a_record() {
        let zeros = [0; HEADER_BYTES];
        assert!(is_zero_header(&zeros));
        assert!(decode(&zeros, 16).is_err());
    }
}

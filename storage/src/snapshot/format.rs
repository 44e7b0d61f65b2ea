//! The byte layout of a KV snapshot file, and its decoder: a 56-byte header, then the pairs in
//! strictly ascending key order. All integers little-endian.
//!
//! ```text
//! 0   magic "FLOTSNP1"          8 bytes
//! 8   format version (1)        u32
//! 12  crc32c of bytes 16..end   u32
//! 16  group                     u64
//! 24  applied index             u64
//! 32  applied term              u64
//! 40  pair count                u64
//! 48  body bytes                u64
//! 56  pairs: key length u32 | key | value length u32 | value, ...
//! ```
#![deny(clippy::indexing_slicing)]

use crate::error::SnapshotError;
use crate::kv::{KvMap, KvStateMachine};
use crate::le::{read_u32, read_u64};
use flotilla_raft::{GroupId, LogId, LogIndex, Term};

/// The size of the header.
pub const HEADER_BYTES: usize = 56;
pub(crate) const MAGIC: &[u8; 8] = b"FLOTSNP1";
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The fields of a snapshot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The group the snapshot belongs to.
    pub group: GroupId,
    /// The last entry the snapshot includes.
    pub applied: LogId,
    /// How many pairs follow.
    pub pair_count: u64,
    /// How many bytes the pairs take.
    pub body_bytes: u64,
}

impl SnapshotHeader {
    /// Header bytes 16..56 (the checksummed fields), to which the checksum and magic are added.
    pub(crate) fn fields(&self) -> [u8; HEADER_BYTES - 16] {
        let mut fields = [0; HEADER_BYTES - 16];
        let values = [
            self.group.0,
            self.applied.index.0,
            self.applied.term.0,
            self.pair_count,
            self.body_bytes,
        ];
        for (slot, value) in fields.chunks_exact_mut(8).zip(values) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        fields
    }

    /// The full header given the checksum over fields and body.
    pub(crate) fn encode(&self, checksum: u32) -> Vec<u8> {
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&checksum.to_le_bytes());
        header.extend_from_slice(&self.fields());
        header
    }
}

/// Checks magic, version, length and checksum; returns the header.
///
/// # Errors
/// `BadHeader`, `Truncated` or `ChecksumMismatch`.
pub(crate) fn check(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotError> {
    let header = bytes.get(..HEADER_BYTES).ok_or(SnapshotError::Truncated {
        needed_bytes: HEADER_BYTES as u64,
        available_bytes: bytes.len() as u64,
    })?;
    if header.get(..8) != Some(MAGIC.as_slice()) || read_u32(header, 8) != FORMAT_VERSION {
        return Err(SnapshotError::BadHeader);
    }
    let parsed = SnapshotHeader {
        group: GroupId(read_u64(header, 16)),
        applied: LogId::new(Term(read_u64(header, 32)), LogIndex(read_u64(header, 24))),
        pair_count: read_u64(header, 40),
        body_bytes: read_u64(header, 48),
    };
    let needed_bytes = (HEADER_BYTES as u64).saturating_add(parsed.body_bytes);
    if needed_bytes != bytes.len() as u64 {
        return Err(SnapshotError::Truncated {
            needed_bytes,
            available_bytes: bytes.len() as u64,
        });
    }
    let stored = read_u32(header, 12);
    let computed = crc32c::crc32c(bytes.get(16..).unwrap_or_default());
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    Ok(parsed)
}

/// Decodes and verifies a whole snapshot (a file's bytes, or `Snapshot::data` received from a
/// leader) into a state machine.
///
/// # Errors
/// The header or checksum is bad, or the pairs are malformed or out of order.
pub fn decode_snapshot(bytes: &[u8]) -> Result<KvStateMachine, SnapshotError> {
    let header = check(bytes)?;
    let mut body = bytes.get(HEADER_BYTES..).unwrap_or_default();
    let mut map = KvMap::new();
    for _ in 0..header.pair_count {
        let key = take_field(&mut body)?;
        let value = take_field(&mut body)?;
        if map
            .last_key_value()
            .is_some_and(|(last, _)| last.as_slice() >= key)
        {
            return Err(SnapshotError::Decode(
                "keys are not in ascending order".to_owned(),
            ));
        }
        map.insert(key.to_vec(), value.to_vec());
    }
    if !body.is_empty() {
        return Err(SnapshotError::Decode(format!(
            "{} bytes follow the pairs",
            body.len()
        )));
    }
    Ok(KvStateMachine::from_parts(
        header.group,
        header.applied,
        map,
    ))
}

/// Splits one length-prefixed field off the front of `body`.
fn take_field<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], SnapshotError> {
    let field_bytes = read_u32(body, 0) as usize;
    let field = body
        .get(4..)
        .and_then(|rest| rest.get(..field_bytes))
        .ok_or_else(|| SnapshotError::Decode("a pair runs past the end".to_owned()))?;
    *body = body.get(4 + field_bytes..).unwrap_or_default();
    Ok(field)
}

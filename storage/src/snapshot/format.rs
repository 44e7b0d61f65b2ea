//! The byte layout of a KV snapshot file, and its decoder: a 64-byte header, the pairs in
//! strictly ascending key order, then the range's session table. All integers little-endian.
//!
//! ```text
//! 0   magic "FLOTSNP1"          8 bytes
//! 8   format version (3)        u32
//! 12  crc32c of bytes 16..end   u32
//! 16  group                     u64
//! 24  applied index             u64
//! 32  applied term              u64
//! 40  pair count                u64
//! 48  pair bytes                u64
//! 56  session bytes             u64
//! 64  pairs: key length u32 | key | value length u32 | value, ...
//! ..  trailer (session bytes long): the `SessionTable`, then (from version 3) the range's
//!     `RangeBounds`, then (from version 4) its `MergeState` and the merge attempts it
//!     refused to freeze for, each postcard-encoded
//! ```
//!
//! Version 1 files (before sessions) have no session fields: a 56-byte header, then the
//! pairs. They still decode, with an empty session table. Version 1 and 2 files (before
//! splits) decode with the bounds of a range that never split (the whole key space, version
//! 0). Files before version 4 (before merges) decode as taking part in no merge.
#![deny(clippy::indexing_slicing)]

use crate::error::SnapshotError;
use crate::kv::{KvMap, KvStateMachine, MergeState, RangeBounds, SessionTable};
use crate::le::{read_u32, read_u64};
use flotilla_raft::{GroupId, LogId, LogIndex, Term};
use std::collections::BTreeMap;

/// The size of the header this build writes.
pub const HEADER_BYTES: usize = 64;
/// The size of a version 1 header.
const HEADER_BYTES_V1: usize = 56;
pub(crate) const MAGIC: &[u8; 8] = b"FLOTSNP1";
pub(crate) const FORMAT_VERSION: u32 = 4;
/// The first version whose trailer holds the range's bounds.
const BOUNDS_VERSION: u32 = 3;
/// The first version whose trailer holds the range's part in a merge.
const MERGE_VERSION: u32 = 4;

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
    /// How many bytes the trailer takes: the session table and the bounds (0 in a version 1
    /// file).
    pub session_bytes: u64,
}

impl SnapshotHeader {
    /// Header bytes 16..64 (the checksummed fields), to which the checksum and magic are added.
    pub(crate) fn fields(&self) -> [u8; HEADER_BYTES - 16] {
        let mut fields = [0; HEADER_BYTES - 16];
        let values = [
            self.group.0,
            self.applied.index.0,
            self.applied.term.0,
            self.pair_count,
            self.body_bytes,
            self.session_bytes,
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

    /// Where the pairs start: after the header of the file's version.
    fn pairs_offset(&self, version: u32) -> usize {
        if version == 1 {
            HEADER_BYTES_V1
        } else {
            HEADER_BYTES
        }
    }
}

/// Checks magic, version, length and checksum; returns the header and the format version.
///
/// # Errors
/// `BadHeader`, `Truncated` or `ChecksumMismatch`.
pub(crate) fn check(bytes: &[u8]) -> Result<(SnapshotHeader, u32), SnapshotError> {
    let truncated = |needed_bytes: usize| SnapshotError::Truncated {
        needed_bytes: needed_bytes as u64,
        available_bytes: bytes.len() as u64,
    };
    let start = bytes
        .get(..HEADER_BYTES_V1)
        .ok_or(truncated(HEADER_BYTES_V1))?;
    let version = read_u32(start, 8);
    if start.get(..8) != Some(MAGIC.as_slice()) || !(1..=FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::BadHeader);
    }
    let header_bytes = if version == 1 {
        HEADER_BYTES_V1
    } else {
        HEADER_BYTES
    };
    let header = bytes.get(..header_bytes).ok_or(truncated(header_bytes))?;
    let parsed = SnapshotHeader {
        group: GroupId(read_u64(header, 16)),
        applied: LogId::new(Term(read_u64(header, 32)), LogIndex(read_u64(header, 24))),
        pair_count: read_u64(header, 40),
        body_bytes: read_u64(header, 48),
        session_bytes: if version == 1 {
            0
        } else {
            read_u64(header, 56)
        },
    };
    let needed_bytes = (header_bytes as u64)
        .saturating_add(parsed.body_bytes)
        .saturating_add(parsed.session_bytes);
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
    Ok((parsed, version))
}

/// Decodes and verifies a whole snapshot (a file's bytes, or `Snapshot::data` received from a
/// leader) into a state machine.
///
/// # Errors
/// The header or checksum is bad, or the pairs are malformed or out of order.
pub fn decode_snapshot(bytes: &[u8]) -> Result<KvStateMachine, SnapshotError> {
    let (header, version) = check(bytes)?;
    let pairs_start = header.pairs_offset(version);
    // `check` proved the lengths add up to the file's.
    let pairs_end = pairs_start + header.body_bytes as usize;
    let mut body = bytes.get(pairs_start..pairs_end).unwrap_or_default();
    let mut map = KvMap::new();
    let mut last: Option<&[u8]> = None;
    for _ in 0..header.pair_count {
        let key = take_field(&mut body)?;
        let value = take_field(&mut body)?;
        if last.is_some_and(|last| last >= key) {
            return Err(SnapshotError::Decode(
                "keys are not in ascending order".to_owned(),
            ));
        }
        last = Some(key);
        map.insert(key.to_vec(), value.to_vec());
    }
    if !body.is_empty() {
        return Err(SnapshotError::Decode(format!(
            "{} bytes follow the pairs",
            body.len()
        )));
    }
    let (sessions, bounds, (merge, declined)) =
        decode_trailer(bytes.get(pairs_end..).unwrap_or_default(), version)?;
    Ok(
        KvStateMachine::from_parts(header.group, header.applied, map)
            .with_sessions(sessions)
            .with_bounds(bounds)
            .with_merge(merge)
            .with_declined(declined),
    )
}

/// Verifies a whole snapshot without building its state (the check a follower makes before
/// it installs a snapshot a leader sent): header, checksum, every pair well framed and in
/// ascending key order, and the session table. Returns the header.
///
/// # Errors
/// What `decode_snapshot` would refuse.
pub fn verify_snapshot(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotError> {
    let mut parts = snapshot_parts(bytes)?;
    for pair in &mut parts {
        pair?;
    }
    Ok(parts.header)
}

/// The trailer of a snapshot: its session table, then its bounds, then its part in a merge.
pub(crate) fn encode_trailer(
    sessions: &SessionTable,
    bounds: &RangeBounds,
    merge: &MergePart,
) -> Vec<u8> {
    let trailer = postcard::to_allocvec(sessions).expect("encoding into a Vec cannot fail");
    let trailer = postcard::to_extend(bounds, trailer).expect("encoding into a Vec cannot fail");
    postcard::to_extend(merge, trailer).expect("encoding into a Vec cannot fail")
}

/// A range's part in a merge as a snapshot holds it: its state, and per left neighbour the
/// latest merge attempt it refused to freeze for.
pub(crate) type MergePart = (MergeState, BTreeMap<GroupId, u64>);

/// The trailer of a file of `version`: its session table (empty in a version 1 file) and its
/// bounds (those of a range that never split before version 3) and its part in a merge (none
/// before version 4).
fn decode_trailer(
    bytes: &[u8],
    version: u32,
) -> Result<(SessionTable, RangeBounds, MergePart), SnapshotError> {
    if bytes.is_empty() && version < BOUNDS_VERSION {
        return Ok((
            SessionTable::default(),
            RangeBounds::default(),
            MergePart::default(),
        ));
    }
    let (table, rest) = postcard::take_from_bytes(bytes)
        .map_err(|error| SnapshotError::Decode(format!("the session table: {error}")))?;
    let (bounds, rest) = if version >= BOUNDS_VERSION {
        postcard::take_from_bytes(rest)
            .map_err(|error| SnapshotError::Decode(format!("the range's bounds: {error}")))?
    } else {
        (RangeBounds::default(), rest)
    };
    let (merge, rest) = if version >= MERGE_VERSION {
        postcard::take_from_bytes(rest)
            .map_err(|error| SnapshotError::Decode(format!("the range's merge state: {error}")))?
    } else {
        (MergePart::default(), rest)
    };
    if !rest.is_empty() {
        return Err(SnapshotError::Decode(format!(
            "{} bytes follow the trailer",
            rest.len()
        )));
    }
    Ok((table, bounds, merge))
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

/// A verified snapshot taken apart without copying its pairs: what a state machine restores
/// from in batches.
pub(crate) struct SnapshotParts<'a> {
    /// The header.
    pub(crate) header: SnapshotHeader,
    /// The session table.
    pub(crate) sessions: SessionTable,
    /// The range's bounds.
    pub(crate) bounds: RangeBounds,
    /// The range's part in a merge, and the merge attempts it refused to freeze for.
    pub(crate) merge: MergePart,
    /// The encoded pairs.
    body: &'a [u8],
    /// Pairs still to hand out.
    pairs_left: u64,
    /// The last key handed out, to check the order.
    last_key: Option<&'a [u8]>,
}

/// Checks `bytes` (header, checksum, sessions) and returns its parts, the pairs still encoded.
///
/// # Errors
/// The header, checksum or session table is bad.
pub(crate) fn snapshot_parts(bytes: &[u8]) -> Result<SnapshotParts<'_>, SnapshotError> {
    let (header, version) = check(bytes)?;
    let pairs_start = header.pairs_offset(version);
    // `check` proved the lengths add up to the file's.
    let pairs_end = pairs_start + header.body_bytes as usize;
    let (sessions, bounds, merge) =
        decode_trailer(bytes.get(pairs_end..).unwrap_or_default(), version)?;
    Ok(SnapshotParts {
        header,
        sessions,
        bounds,
        merge,
        body: bytes.get(pairs_start..pairs_end).unwrap_or_default(),
        pairs_left: header.pair_count,
        last_key: None,
    })
}

impl<'a> Iterator for SnapshotParts<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pairs_left == 0 {
            return (!self.body.is_empty()).then(|| {
                Err(SnapshotError::Decode(format!(
                    "{} bytes follow the pairs",
                    self.body.len()
                )))
            });
        }
        self.pairs_left -= 1;
        let pair =
            take_field(&mut self.body).and_then(|key| Ok((key, take_field(&mut self.body)?)));
        let pair = pair.and_then(|(key, value)| {
            if self.last_key.is_some_and(|last| last >= key) {
                return Err(SnapshotError::Decode(
                    "keys are not in ascending order".to_owned(),
                ));
            }
            self.last_key = Some(key);
            Ok((key, value))
        });
        if pair.is_err() {
            // One error ends the walk.
            self.pairs_left = 0;
            self.body = &[];
        }
        Some(pair)
    }
}

//! The frame around each sync: every write the log syncs is one batch, opened by a 32-byte
//! batch header and padded with 0xFF filler (at least two bytes) to a multiple of 32 bytes;
//! after the sync a 32-byte sync mark may follow it. The filler keeps the batch's last sector
//! part from ever holding a single non-zero byte, which one flipped byte could zero. Recovery
//! uses them as evidence: a damaged batch that a later write follows (a mark or the next batch)
//! was synced before it broke, so it is corruption, never a torn write.
//!
//! Both structures are 32 bytes at 32-byte aligned offsets, so neither ever straddles a 512-byte
//! sector: a crash leaves each one whole or all zeros, and a non-zero structure that fails its
//! checksum can only be damage at rest.
#![deny(clippy::indexing_slicing)]

use crate::le::{read_u16, read_u32, read_u64};

/// The size of a batch header and of a sync mark; batches start at multiples of it.
pub(crate) const FRAME_BYTES: u64 = 32;

/// The sector size a crash is assumed to keep or lose whole (the smallest in use).
pub(crate) const SECTOR_BYTES: u64 = 512;

const _: () = assert!(
    SECTOR_BYTES.is_multiple_of(FRAME_BYTES),
    "frames never straddle sectors"
);

const BATCH_MAGIC: &[u8; 4] = b"FBAT";
const MARK_MAGIC: &[u8; 4] = b"FSYN";

/// The header that opens a batch.
///
/// ```text
/// offset  size  field
/// 0       4     magic "FBAT"
/// 4       4     crc32c of bytes 8..32
/// 8       8     batch sequence number: consecutive across the whole log
/// 16      4     body bytes: the record frames that follow (padding not included)
/// 20      4     zero sectors: sector parts of body + padding that were all zeros as written
/// 24      4     fragile sectors: sector parts of body + padding with exactly one non-zero byte
/// 28      2     the first fragile part's number (0xFFFF: none), counted from the body's first
/// 30      2     the last fragile part's number (0xFFFF: none)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) sequence: u64,
    pub(crate) body_bytes: u32,
    pub(crate) sectors: SectorCounts,
}

/// The sync mark written after a batch once its sync returned.
///
/// ```text
/// offset  size  field
/// 0       4     magic "FSYN"
/// 4       4     crc32c of bytes 8..32
/// 8       8     the sequence number of the batch it confirms
/// 16      16    reserved, zero
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyncMark {
    pub(crate) sequence: u64,
}

/// How the sector parts of a region looked: the evidence recovery weighs against a tear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SectorCounts {
    /// Parts whose bytes are all zero.
    pub(crate) zero: u32,
    /// Parts with exactly one non-zero byte: one changed byte could make them all zero.
    pub(crate) fragile: u32,
    /// The numbers of the first and last fragile parts (`NO_PART`: none).
    pub(crate) first_fragile: u16,
    pub(crate) last_fragile: u16,
}

/// No sector part.
pub(crate) const NO_PART: u16 = u16::MAX;

impl Default for SectorCounts {
    fn default() -> Self {
        Self {
            zero: 0,
            fragile: 0,
            first_fragile: NO_PART,
            last_fragile: NO_PART,
        }
    }
}

/// The byte the padding after a batch's records is made of.
pub(crate) const FILLER: u8 = 0xFF;

/// What 32 aligned bytes of a segment hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// All zeros: nothing was written here (or a crash lost the sector).
    Zero,
    /// A valid batch header.
    Batch(BatchHeader),
    /// A valid sync mark.
    Mark(SyncMark),
    /// Something else: only damage at rest can leave it.
    Damaged,
}

impl BatchHeader {
    /// The 32 bytes of this header.
    pub(crate) fn encode(&self) -> [u8; FRAME_BYTES as usize] {
        let mut fields = [0; 24];
        fields[..8].copy_from_slice(&self.sequence.to_le_bytes());
        fields[8..12].copy_from_slice(&self.body_bytes.to_le_bytes());
        fields[12..16].copy_from_slice(&self.sectors.zero.to_le_bytes());
        fields[16..20].copy_from_slice(&self.sectors.fragile.to_le_bytes());
        fields[20..22].copy_from_slice(&self.sectors.first_fragile.to_le_bytes());
        fields[22..24].copy_from_slice(&self.sectors.last_fragile.to_le_bytes());
        seal(BATCH_MAGIC, &fields)
    }

    /// The padded size of the batch: header, body and padding.
    pub(crate) fn padded_bytes(&self) -> u64 {
        FRAME_BYTES + padded(u64::from(self.body_bytes))
    }
}

impl SyncMark {
    /// The 32 bytes of this mark.
    pub(crate) fn encode(&self) -> [u8; FRAME_BYTES as usize] {
        let mut fields = [0; 24];
        fields[..8].copy_from_slice(&self.sequence.to_le_bytes());
        seal(MARK_MAGIC, &fields)
    }
}

/// `magic | crc32c(fields) | fields`.
fn seal(magic: &[u8; 4], fields: &[u8; 24]) -> [u8; FRAME_BYTES as usize] {
    let mut bytes = [0; FRAME_BYTES as usize];
    bytes[..4].copy_from_slice(magic);
    bytes[4..8].copy_from_slice(&crc32c::crc32c(fields).to_le_bytes());
    bytes[8..].copy_from_slice(fields);
    bytes
}

/// Reads the 32 bytes at the start of `bytes` (missing bytes read as zeros: a short file).
pub(crate) fn read_slot(bytes: &[u8]) -> Slot {
    let mut slot = [0; FRAME_BYTES as usize];
    let available = bytes.len().min(slot.len());
    if let (Some(target), Some(source)) = (slot.get_mut(..available), bytes.get(..available)) {
        target.copy_from_slice(source);
    }
    if slot.iter().all(|&byte| byte == 0) {
        return Slot::Zero;
    }
    let fields = slot.get(8..).unwrap_or_default();
    if read_u32(&slot, 4) != crc32c::crc32c(fields) {
        return Slot::Damaged;
    }
    match slot.get(..4) {
        Some(magic) if magic == BATCH_MAGIC => Slot::Batch(BatchHeader {
            sequence: read_u64(fields, 0),
            body_bytes: read_u32(fields, 8),
            sectors: SectorCounts {
                zero: read_u32(fields, 12),
                fragile: read_u32(fields, 16),
                first_fragile: read_u16(fields, 20),
                last_fragile: read_u16(fields, 22),
            },
        }),
        Some(magic) if magic == MARK_MAGIC => Slot::Mark(SyncMark {
            sequence: read_u64(fields, 0),
        }),
        _ => Slot::Damaged,
    }
}

/// A body of `bytes` and its filler: a multiple of `FRAME_BYTES`, with at least two filler
/// bytes (so the last sector part holds at least two non-zero bytes).
pub(crate) fn padded(bytes: u64) -> u64 {
    let filler = (FRAME_BYTES - bytes % FRAME_BYTES) % FRAME_BYTES;
    bytes
        + if filler < 2 {
            filler + FRAME_BYTES
        } else {
            filler
        }
}

/// Counts the sector parts of `region`, which starts at file offset `region_offset`: the pieces
/// of it that fall into each 512-byte sector of the file.
pub(crate) fn count_sectors(region: &[u8], region_offset: u64) -> SectorCounts {
    let mut counts = SectorCounts::default();
    for (number, part) in sector_parts(region, region_offset).enumerate() {
        match non_zero_at_most_two(part) {
            0 => counts.zero += 1,
            1 => {
                counts.fragile += 1;
                let number = u16::try_from(number).unwrap_or(NO_PART - 1);
                if counts.first_fragile == NO_PART {
                    counts.first_fragile = number;
                }
                counts.last_fragile = number;
            }
            _ => {}
        }
    }
    counts
}

/// Whether sector part `number` of `region` (at file offset `region_offset`) is all zeros.
pub(crate) fn part_is_zero(region: &[u8], region_offset: u64, number: u16) -> bool {
    sector_parts(region, region_offset)
        .nth(usize::from(number))
        .is_some_and(|part| part.iter().all(|&byte| byte == 0))
}

/// The pieces of `region` inside each 512-byte sector of the file, in order.
fn sector_parts(region: &[u8], region_offset: u64) -> impl Iterator<Item = &[u8]> {
    let mut start = 0usize;
    std::iter::from_fn(move || {
        if start >= region.len() {
            return None;
        }
        let offset = region_offset + start as u64;
        let to_boundary = SECTOR_BYTES - offset % SECTOR_BYTES;
        let end = region.len().min(start + to_boundary as usize);
        let part = region.get(start..end).unwrap_or_default();
        start = end;
        Some(part)
    })
}

/// How many bytes of `part` are non-zero, counting no further than two. Written data rarely has
/// a zero byte first, so this usually looks at two bytes.
fn non_zero_at_most_two(part: &[u8]) -> u32 {
    let mut found = 0;
    for &byte in part {
        if byte != 0 {
            found += 1;
            if found == 2 {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_header_and_a_mark_roundtrip() {
        let header = BatchHeader {
            sequence: 7,
            body_bytes: 100,
            sectors: SectorCounts {
                zero: 2,
                fragile: 1,
                first_fragile: 3,
                last_fragile: 3,
            },
        };
        assert_eq!(read_slot(&header.encode()), Slot::Batch(header));
        let mark = SyncMark { sequence: 7 };
        assert_eq!(read_slot(&mark.encode()), Slot::Mark(mark));
        assert_eq!(header.padded_bytes(), 32 + 128);
    }

    #[test]
    fn padding_leaves_at_least_two_filler_bytes() {
        assert_eq!(padded(100), 128);
        assert_eq!(padded(96), 128, "no filler would fit: one more frame");
        assert_eq!(padded(95), 128, "one byte of filler is too few");
        assert_eq!(padded(94), 96);
    }

    #[test]
    fn zeros_are_an_empty_slot_and_any_flipped_bit_is_damage() {
        assert_eq!(read_slot(&[0; 32]), Slot::Zero);
        assert_eq!(read_slot(&[]), Slot::Zero);
        let encoded = SyncMark { sequence: 3 }.encode();
        for byte in 0..32 {
            for bit in 0..8 {
                let mut flipped = encoded;
                flipped[byte] ^= 1 << bit;
                assert_eq!(read_slot(&flipped), Slot::Damaged, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn sector_parts_follow_the_file_grid() {
        // 600 bytes from offset 480: parts [480, 512), [512, 1024), [1024, 1080).
        let mut region = vec![7u8; 600];
        region[32..544].fill(0);
        let counts = count_sectors(&region, 480);
        assert_eq!((counts.zero, counts.fragile), (1, 0));
        assert!(part_is_zero(&region, 480, 1));
        region[100] = 1;
        let counts = count_sectors(&region, 480);
        assert_eq!((counts.zero, counts.fragile), (0, 1));
        assert_eq!((counts.first_fragile, counts.last_fragile), (1, 1));
    }
}

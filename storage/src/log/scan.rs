//! Reads the batches of one segment during recovery: checks every batch header, sync mark and
//! record, hands whole batches to be replayed, and at the first damage decides with `tail.rs`
//! whether it is the torn end of the log (cut there) or corruption (an error naming the file,
//! the offset and why it cannot be a tear). A batch is replayed only once all of it checks out,
//! so a torn batch leaves nothing behind in the index.
#![deny(clippy::indexing_slicing)]

use super::batch_frame::{
    BatchHeader, FILLER, FRAME_BYTES, NO_PART, Slot, count_sectors, part_is_zero, read_slot,
};
use super::record::{Frame, HEADER_BYTES, decode, is_zero_header};
use super::tail::{self, Verdict};
use crate::config::{LogConfig, SEGMENT_HEADER_BYTES};
use crate::error::{Corruption, NotTorn, RecordError, RecoveryError};
use std::path::Path;

/// The last batch read, carried from segment to segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LastBatch {
    pub(crate) sequence: u64,
    /// Whether it lies in the segment being scanned (a mark must follow its batch there).
    in_this_segment: bool,
    marked: bool,
}

/// The frames of one whole batch, each with its file offset.
pub(crate) type BatchFrames<'a> = [(u64, Frame<'a>)];

/// How a segment's scan ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Where the valid batches end: the writer may continue here.
    pub(crate) offset: u64,
    /// When the tail was torn: just past its last non-zero byte (everything from `offset`
    /// to here is cut).
    pub(crate) torn_until: Option<u64>,
    /// Sync marks the crash lost before a batch that survived it whole: (offset, the batch
    /// they confirm). Recovery writes them back, so the segment reads as valid once it is no
    /// longer the newest.
    pub(crate) lost_marks: Vec<(u64, u64)>,
}

/// One segment being scanned.
pub(crate) struct SegmentScan<'a> {
    pub(crate) path: &'a Path,
    pub(crate) bytes: &'a [u8],
    pub(crate) is_newest: bool,
    pub(crate) config: &'a LogConfig,
}

/// Where a batch is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Damage {
    Record {
        record_offset: u64,
        source: RecordError,
    },
    Padding {
        padding_offset: u64,
    },
}

impl SegmentScan<'_> {
    /// Walks the segment from its header on, calling `replay` with each whole batch's frames
    /// (file offset and frame) in order.
    pub(crate) fn run(
        &self,
        last: &mut Option<LastBatch>,
        replay: &mut dyn FnMut(&BatchFrames<'_>) -> Result<(), RecoveryError>,
    ) -> Result<ScanEnd, RecoveryError> {
        if let Some(last) = last.as_mut() {
            last.in_this_segment = false;
        }
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut lost_marks = Vec::new();
        loop {
            match read_slot(self.from(offset)) {
                Slot::Batch(header) => {
                    self.check_sequence(offset, header, *last)?;
                    let frames = match self.frames(offset, header) {
                        Ok(frames) => frames,
                        Err(damage) => {
                            let end = self.damaged_batch(offset, header, damage)?;
                            return Ok(ScanEnd { lost_marks, ..end });
                        }
                    };
                    replay(&frames)?;
                    *last = Some(LastBatch {
                        sequence: header.sequence,
                        in_this_segment: true,
                        marked: false,
                    });
                    offset += header.padded_bytes();
                }
                Slot::Mark(mark) => {
                    match last {
                        Some(batch)
                            if batch.in_this_segment
                                && !batch.marked
                                && batch.sequence == mark.sequence =>
                        {
                            batch.marked = true;
                        }
                        _ => {
                            let confirms = mark.sequence;
                            return Err(self.corrupt(offset, Corruption::StrayMark { confirms }));
                        }
                    }
                    offset += FRAME_BYTES;
                }
                Slot::Zero => {
                    if data_end(self.bytes, offset) == offset {
                        return Ok(ScanEnd {
                            offset,
                            torn_until: None,
                            lost_marks,
                        });
                    }
                    if let Some(sequence) = self.mark_lost_in_the_tear(offset, *last) {
                        lost_marks.push((offset, sequence));
                        offset += FRAME_BYTES;
                        continue;
                    }
                    return self
                        .lost_header(offset)
                        .map(|end| ScanEnd { lost_marks, ..end });
                }
                Slot::Damaged => return Err(self.corrupt(offset, Corruption::DamagedFrame)),
            }
        }
    }

    fn from(&self, offset: u64) -> &[u8] {
        usize::try_from(offset)
            .ok()
            .and_then(|start| self.bytes.get(start..))
            .unwrap_or_default()
    }

    fn corrupt(&self, offset: u64, problem: Corruption) -> RecoveryError {
        RecoveryError::Corrupt {
            file: self.path.to_path_buf(),
            offset,
            problem,
        }
    }

    fn check_sequence(
        &self,
        offset: u64,
        header: BatchHeader,
        last: Option<LastBatch>,
    ) -> Result<(), RecoveryError> {
        match last {
            Some(last) if last.sequence + 1 != header.sequence => Err(self.corrupt(
                offset,
                Corruption::OutOfSequence {
                    previous: last.sequence,
                    found: header.sequence,
                },
            )),
            _ => Ok(()),
        }
    }

    /// The frames of the batch at `offset`, all checked, or where it is damaged first.
    fn frames(&self, offset: u64, header: BatchHeader) -> Result<Vec<(u64, Frame<'_>)>, Damage> {
        let body_start = offset + FRAME_BYTES;
        let body_end = body_start + u64::from(header.body_bytes);
        let mut frames = Vec::new();
        let mut at = body_start;
        while at < body_end {
            let rest = self.between(at, body_end);
            let record_damage = |source| Damage::Record {
                record_offset: at,
                source,
            };
            if rest.len() < HEADER_BYTES || is_zero_header(rest) {
                let needed_bytes = (body_end - at).min(HEADER_BYTES as u64);
                let available_bytes = rest.len() as u64;
                let truncated = RecordError::Truncated {
                    needed_bytes,
                    available_bytes,
                };
                return Err(record_damage(truncated));
            }
            let frame = decode(rest, self.config.record_bytes_max).map_err(record_damage)?;
            frames.push((at, frame));
            at += frame.frame_bytes() as u64;
        }
        let padding_end = offset + header.padded_bytes();
        let padding = self.between(body_end, padding_end);
        let short = padding.len() as u64 != padding_end - body_end;
        if short || padding.iter().any(|&byte| byte != FILLER) {
            let padding_offset = body_end;
            return Err(Damage::Padding { padding_offset });
        }
        Ok(frames)
    }

    /// The bytes of `[start, end)` that the file holds (fewer when it is shorter).
    fn between(&self, start: u64, end: u64) -> &[u8] {
        let length = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        let rest = self.from(start);
        rest.get(..length.min(rest.len())).unwrap_or_default()
    }

    /// A batch with a valid header and damaged contents: torn or corrupt, by the evidence.
    fn damaged_batch(
        &self,
        offset: u64,
        header: BatchHeader,
        damage: Damage,
    ) -> Result<ScanEnd, RecoveryError> {
        let end = offset + header.padded_bytes();
        let written_after = data_end(self.bytes, end) > end;
        let evidence = self.evidence(offset, header);
        let verdict = tail::judge_batch(self.is_newest, written_after, evidence);
        match verdict {
            Verdict::Torn => Ok(self.torn(offset)),
            Verdict::Corrupt(why) => Err(self.corrupt(offset, damage.into_corruption(why))),
        }
    }

    /// What the batch's body and padding show now against what its header recorded; bytes past
    /// the end of the file count as zeros (a shorter file lost them).
    fn evidence(&self, offset: u64, header: BatchHeader) -> tail::Evidence {
        let start = offset + FRAME_BYTES;
        let end = offset + header.padded_bytes();
        let mut region = self.between(start, end).to_vec();
        region.resize(usize::try_from(end - start).unwrap_or(0), 0);
        let written = header.sectors;
        let zeroed = |number| number != NO_PART && part_is_zero(&region, start, number);
        tail::Evidence {
            written,
            observed_zero: count_sectors(&region, start).zero,
            known_fragile_zeroed: zeroed(written.first_fragile) || zeroed(written.last_fragile),
        }
    }

    /// Zeros where a batch header belongs, with data after them.
    fn lost_header(&self, offset: u64) -> Result<ScanEnd, RecoveryError> {
        let data_end = data_end(self.bytes, offset);
        let later_write = self.later_frame(offset + FRAME_BYTES, data_end);
        // The unsynced tail is at most a mark and one batch: header, window, padding.
        let one_write_bytes_max = self.config.sync_bytes_max + 3 * FRAME_BYTES;
        let data_bytes = data_end - offset;
        let verdict =
            tail::judge_lost_header(self.is_newest, later_write, data_bytes, one_write_bytes_max);
        match verdict {
            Verdict::Torn => Ok(self.torn(offset)),
            Verdict::Corrupt(why) => Err(self.corrupt(offset, Corruption::LostHeader { why })),
        }
    }

    /// Whether a valid batch header or sync mark sits at an aligned offset in `[from, to)`: a
    /// write after the one whose header was lost, so that one had synced.
    fn later_frame(&self, from: u64, to: u64) -> bool {
        (from..to)
            .step_by(FRAME_BYTES as usize)
            .any(|offset| matches!(read_slot(self.from(offset)), Slot::Batch(_) | Slot::Mark(_)))
    }

    /// Whether the zeros at `offset` are the sync mark of the last batch, lost by the same crash
    /// that tore the batch after it: in the newest segment, right after an unmarked batch of
    /// this segment, and followed by that next batch's header. (Elsewhere the next batch's
    /// sync would have made the mark durable.)
    /// Returns the sequence number of the batch the lost mark confirms.
    fn mark_lost_in_the_tear(&self, offset: u64, last: Option<LastBatch>) -> Option<u64> {
        let last = last.filter(|last| last.in_this_segment && !last.marked)?;
        let next = read_slot(self.from(offset + FRAME_BYTES));
        let followed = matches!(next, Slot::Batch(header) if header.sequence == last.sequence + 1);
        (self.is_newest && followed).then_some(last.sequence)
    }

    fn torn(&self, offset: u64) -> ScanEnd {
        ScanEnd {
            offset,
            torn_until: Some(data_end(self.bytes, offset)),
            lost_marks: Vec::new(),
        }
    }
}

impl Damage {
    fn into_corruption(self, why: NotTorn) -> Corruption {
        match self {
            Damage::Record {
                record_offset,
                source,
            } => Corruption::BadRecord {
                record_offset,
                source,
                why,
            },
            Damage::Padding { padding_offset } => Corruption::BadPadding {
                padding_offset,
                why,
            },
        }
    }
}

/// The offset just past the last non-zero byte at or after `from`, or `from` when none.
pub(crate) fn data_end(bytes: &[u8], from: u64) -> u64 {
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    bytes
        .get(start..)
        .unwrap_or_default()
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(from, |last| (start + last + 1) as u64)
}

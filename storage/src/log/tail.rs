//! Torn or corrupt: the one decision recovery may not guess. Only the last write before a crash
//! can be torn, and only if it never completed its sync; everything else that is damaged is
//! corruption and stops the node. The evidence is in `batch_frame.rs`: the batch header's
//! sector counts, the sync mark or later batch that proves a sync, and the header a crash can
//! only lose whole.
//!
//! The crash model (docs/data/wal-format.md): a crash keeps each 512-byte sector written since
//! the last sync or loses it whole (it then reads as the zeros the segment was filled with), and
//! never changes synced bytes. A flipped bit at rest changes one byte.

use super::batch_frame::SectorCounts;
use crate::error::NotTorn;

/// What recovery may do with a damaged stretch at the end of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A write that never synced: cut it, report it.
    Torn,
    /// Damage at rest: refuse to start.
    Corrupt(NotTorn),
}

/// A batch whose header is intact but whose records or padding are damaged.
///
/// `written` are the sector counts its header recorded, `observed` the same counts now. A tear
/// zeroes at least one sector that was not zeros; one flipped bit can zero at most one sector,
/// and only one that held a single non-zero byte (a fragile one).
pub(crate) fn judge_batch(
    is_newest: bool,
    written_after: bool,
    written: SectorCounts,
    observed: SectorCounts,
) -> Verdict {
    if !is_newest {
        return Verdict::Corrupt(NotTorn::NotNewest);
    }
    if written_after {
        return Verdict::Corrupt(NotTorn::WrittenAfter);
    }
    match observed.zero.saturating_sub(written.zero) {
        0 => Verdict::Corrupt(NotTorn::NoSectorMissing),
        1 if written.fragile > 0 => Verdict::Corrupt(NotTorn::Ambiguous),
        _ => Verdict::Torn,
    }
}

/// A batch header that reads as zeros with data after it: a crash lost the header's sector (a
/// flipped bit cannot zero 32 bytes of which at least five are not zero). It is torn only if it
/// is the last write: in the newest segment, no longer than one write, and followed by no valid
/// header or mark.
pub(crate) fn judge_lost_header(
    is_newest: bool,
    later_write: bool,
    data_bytes: u64,
    one_write_bytes_max: u64,
) -> Verdict {
    if !is_newest {
        return Verdict::Corrupt(NotTorn::NotNewest);
    }
    if later_write {
        return Verdict::Corrupt(NotTorn::WrittenAfter);
    }
    if data_bytes > one_write_bytes_max {
        return Verdict::Corrupt(NotTorn::LongerThanOneWrite);
    }
    Verdict::Torn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(zero: u32, fragile: u32) -> SectorCounts {
        SectorCounts { zero, fragile }
    }

    /// newest, written after, written (zero, fragile), observed zero -> verdict.
    #[test]
    fn damaged_batches() {
        use NotTorn::*;
        use Verdict::*;
        let table = [
            (false, false, (0, 0), 3, Corrupt(NotNewest)),
            (true, true, (0, 0), 3, Corrupt(WrittenAfter)),
            (true, false, (0, 0), 0, Corrupt(NoSectorMissing)),
            (true, false, (2, 0), 2, Corrupt(NoSectorMissing)),
            (true, false, (2, 0), 1, Corrupt(NoSectorMissing)),
            (true, false, (0, 0), 1, Torn),
            (true, false, (0, 1), 1, Corrupt(Ambiguous)),
            (true, false, (0, 1), 2, Torn),
            (true, false, (1, 3), 4, Torn),
        ];
        for (newest, after, (zero, fragile), observed, expected) in table {
            let verdict = judge_batch(newest, after, counts(zero, fragile), counts(observed, 0));
            assert_eq!(
                verdict, expected,
                "newest {newest} after {after} written ({zero}, {fragile}) observed {observed}"
            );
        }
    }

    #[test]
    fn lost_headers() {
        assert_eq!(judge_lost_header(true, false, 100, 100), Verdict::Torn);
        assert_eq!(
            judge_lost_header(true, false, 101, 100),
            Verdict::Corrupt(NotTorn::LongerThanOneWrite)
        );
        assert_eq!(
            judge_lost_header(true, true, 10, 100),
            Verdict::Corrupt(NotTorn::WrittenAfter)
        );
        assert_eq!(
            judge_lost_header(false, false, 10, 100),
            Verdict::Corrupt(NotTorn::NotNewest)
        );
    }
}

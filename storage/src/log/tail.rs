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

/// What a damaged batch shows against what its header recorded as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// The header's sector counts (and fragile part numbers).
    pub(crate) written: SectorCounts,
    /// How many sector parts are all zeros now.
    pub(crate) observed_zero: u32,
    /// Whether one of the fragile parts the header numbers is all zeros now.
    pub(crate) known_fragile_zeroed: bool,
}

/// A batch whose header is intact but whose records or padding are damaged.
///
/// A tear zeroes at least one sector that was not zeros; one changed byte can zero at most one
/// sector part, and only one that held a single non-zero byte (a fragile one). So two or more
/// new zero parts, or one when no part was fragile, are a tear. One new zero part in a batch
/// with fragile parts is a tear too when it is none of them: the header numbers the first and
/// last fragile part, so with at most two it is known not to be one. Otherwise it cannot be
/// told apart.
pub(crate) fn judge_batch(is_newest: bool, written_after: bool, evidence: Evidence) -> Verdict {
    if !is_newest {
        return Verdict::Corrupt(NotTorn::NotNewest);
    }
    if written_after {
        return Verdict::Corrupt(NotTorn::WrittenAfter);
    }
    let written = evidence.written;
    let fragile_all_known = written.fragile <= 2;
    match evidence.observed_zero.saturating_sub(written.zero) {
        0 => Verdict::Corrupt(NotTorn::NoSectorMissing),
        1 if written.fragile > 0 && (evidence.known_fragile_zeroed || !fragile_all_known) => {
            Verdict::Corrupt(NotTorn::Ambiguous)
        }
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

    fn evidence(written: (u32, u32), observed_zero: u32, known_zeroed: bool) -> Evidence {
        let (zero, fragile) = written;
        Evidence {
            written: SectorCounts {
                zero,
                fragile,
                ..SectorCounts::default()
            },
            observed_zero,
            known_fragile_zeroed: known_zeroed,
        }
    }

    /// newest, written after, written (zero, fragile), observed zero, a known fragile part
    /// zeroed -> verdict.
    #[test]
    fn damaged_batches() {
        use NotTorn::*;
        use Verdict::*;
        let table = [
            (false, false, (0, 0), 3, false, Corrupt(NotNewest)),
            (true, true, (0, 0), 3, false, Corrupt(WrittenAfter)),
            (true, false, (0, 0), 0, false, Corrupt(NoSectorMissing)),
            (true, false, (2, 0), 2, false, Corrupt(NoSectorMissing)),
            (true, false, (2, 0), 1, false, Corrupt(NoSectorMissing)),
            (true, false, (0, 0), 1, false, Torn),
            (true, false, (0, 1), 1, true, Corrupt(Ambiguous)),
            (true, false, (0, 1), 1, false, Torn),
            (true, false, (0, 2), 1, false, Torn),
            (true, false, (0, 3), 1, false, Corrupt(Ambiguous)),
            (true, false, (0, 1), 2, true, Torn),
            (true, false, (1, 3), 4, false, Torn),
        ];
        for (newest, after, written, observed, known, expected) in table {
            let verdict = judge_batch(newest, after, evidence(written, observed, known));
            assert_eq!(
                verdict, expected,
                "newest {newest} after {after} written {written:?} observed {observed} known {known}"
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

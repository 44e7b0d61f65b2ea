//! Segment garbage collection: deletes, oldest first, the sealed segments that hold no live
//! entry of any group. Metadata never pins a segment, because every segment opens with a
//! checkpoint of all groups' hard states and snapshot markers.

use super::Shared;
use std::io;

/// What one collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Segment files deleted.
    pub deleted_segment_count: u64,
}

/// Deletes the segments older than both `active_sequence` and the oldest segment any group
/// still reads. The caller holds the writer lock, so no commit is placing records meanwhile.
pub(crate) fn collect(shared: &Shared, active_sequence: u64) -> io::Result<GcStats> {
    let oldest_needed = shared
        .groups
        .read()
        .values()
        .filter_map(|state| state.oldest_segment())
        .min()
        .unwrap_or(active_sequence);
    let keep_from = oldest_needed.min(active_sequence);
    let doomed: Vec<_> = {
        let mut segments = shared.segments.write();
        let kept = segments.split_off(&keep_from);
        std::mem::replace(&mut *segments, kept)
            .into_values()
            .collect()
    };
    for segment in &doomed {
        shared.fs.remove(&segment.path)?;
    }
    if !doomed.is_empty() {
        shared.fs.sync_directory(&shared.directory)?;
        tracing::debug!(deleted = doomed.len(), keep_from, "deleted old segments");
    }
    Ok(GcStats {
        deleted_segment_count: doomed.len() as u64,
    })
}

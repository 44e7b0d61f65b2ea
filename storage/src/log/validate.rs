//! Checks a batch against the groups' current shape before it joins a commit: the paired
//! assert of the one in `GroupState::apply`, failing in the caller's thread rather than in the
//! commit leader's.

use super::batch::{Operation, WriteBatch};
use super::index::GroupState;
use flotilla_raft::{Entry, GroupId, LogIndex};
use rustc_hash::FxHashMap;

/// The shape of one group's log as the batch changes it.
#[derive(Clone, Copy, Debug)]
struct Shape {
    snapshot_index: LogIndex,
    last_index: LogIndex,
}

/// Asserts that every operation of `batch` fits the log it is applied to.
///
/// # Panics
/// On an append that leaves a gap, overwrites the snapshot or is not consecutive, or a
/// compaction past the last entry: bugs in the caller, as in `flotilla_raft::MemLog`.
pub(crate) fn check_batch(groups: &FxHashMap<GroupId, GroupState>, batch: &WriteBatch) {
    let mut shapes: FxHashMap<GroupId, Shape> = FxHashMap::default();
    for (group, operation) in &batch.operations {
        let shape = shapes.entry(*group).or_insert_with(|| {
            let state = groups.get(group);
            Shape {
                snapshot_index: state.map_or(LogIndex::ZERO, GroupState::snapshot_index),
                last_index: state.map_or(LogIndex::ZERO, GroupState::last_index),
            }
        });
        check_operation(shape, operation);
    }
}

fn check_operation(shape: &mut Shape, operation: &Operation) {
    match operation {
        Operation::Install(snapshot) => {
            shape.snapshot_index = snapshot.meta.last.index;
            shape.last_index = snapshot.meta.last.index;
        }
        Operation::Append(entries) => check_append(shape, entries),
        Operation::HardState(_) => {}
        Operation::Destroy(_) => {
            shape.snapshot_index = LogIndex::ZERO;
            shape.last_index = LogIndex::ZERO;
        }
        Operation::Compact(snapshot) => {
            let index = snapshot.meta.last.index;
            assert!(index <= shape.last_index, "compaction past the last entry");
            shape.snapshot_index = shape.snapshot_index.max(index);
        }
    }
}

fn check_append(shape: &mut Shape, entries: &[Entry]) {
    let Some(first) = entries.first() else { return };
    assert!(
        first.index > shape.snapshot_index,
        "append over the snapshot"
    );
    assert!(
        first.index <= shape.last_index.next(),
        "append leaves a gap"
    );
    for pair in entries.windows(2) {
        assert_eq!(
            pair[0].index.next(),
            pair[1].index,
            "appended entries are not consecutive"
        );
    }
    shape.last_index = entries.last().map_or(shape.last_index, |entry| entry.index);
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{EntryPayload, Term};

    fn entries(indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                term: Term(1),
                index: LogIndex(index),
                payload: EntryPayload::Blank,
            })
            .collect()
    }

    fn batch_of(appends: &[std::ops::RangeInclusive<u64>]) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for range in appends {
            batch.append(GroupId(1), entries(range.clone()));
        }
        batch
    }

    #[test]
    fn consecutive_appends_and_overwrites_pass() {
        check_batch(&FxHashMap::default(), &batch_of(&[1..=3, 4..=5, 2..=2]));
    }

    #[test]
    #[should_panic(expected = "append leaves a gap")]
    fn a_gap_panics() {
        check_batch(&FxHashMap::default(), &batch_of(&[1..=3, 5..=5]));
    }

    #[test]
    #[should_panic(expected = "not consecutive")]
    fn non_consecutive_entries_panic() {
        let mut batch = WriteBatch::new();
        let mut list = entries(1..=2);
        list.extend(entries(4..=4));
        batch.append(GroupId(1), list);
        check_batch(&FxHashMap::default(), &batch);
    }
}

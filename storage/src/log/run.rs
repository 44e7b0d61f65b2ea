//! Values kept per log index over consecutive indices, in one flat ring buffer instead of a
//! tree. A group's log is contiguous, so look-up, append and trimming at either end are O(1)
//! and touch one cache line; a B-tree of 20,000 locations per group cost a cache miss per level
//! on every `last_index` and `term` once 64 groups shared the node.

use flotilla_raft::LogIndex;
use std::collections::VecDeque;

/// Room for this many values survives a compaction whatever the run's length.
const KEPT_ROOM: usize = 16;

/// Values at the consecutive indices `first .. first + len`.
#[derive(Clone, Debug)]
pub(crate) struct IndexRun<T> {
    first: LogIndex,
    values: VecDeque<T>,
}

impl<T> Default for IndexRun<T> {
    fn default() -> Self {
        Self {
            first: LogIndex::ZERO,
            values: VecDeque::new(),
        }
    }
}

/// Two runs are equal when they hold the same values at the same indices (an empty run has no
/// meaningful start).
impl<T: PartialEq> PartialEq for IndexRun<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values && (self.values.is_empty() || self.first == other.first)
    }
}

impl<T: Eq> Eq for IndexRun<T> {}

impl<T> IndexRun<T> {
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// The first index and its value.
    pub(crate) fn first(&self) -> Option<(LogIndex, &T)> {
        self.values.front().map(|value| (self.first, value))
    }

    /// The last index held.
    pub(crate) fn last_index(&self) -> Option<LogIndex> {
        let len = self.values.len() as u64;
        (len > 0).then(|| self.first.plus(len - 1))
    }

    fn offset(&self, index: LogIndex) -> Option<usize> {
        let offset = index.0.checked_sub(self.first.0)?;
        usize::try_from(offset)
            .ok()
            .filter(|&offset| offset < self.values.len())
    }

    pub(crate) fn get(&self, index: LogIndex) -> Option<&T> {
        self.offset(index).map(|offset| &self.values[offset])
    }

    /// Appends `value` at `index` if that continues the run (or starts an empty one); gives the
    /// value back otherwise.
    pub(crate) fn push(&mut self, index: LogIndex, value: T) -> Result<(), T> {
        match self.last_index() {
            None => self.first = index,
            Some(last) if last.next() == index => {}
            Some(_) => return Err(value),
        }
        self.values.push_back(value);
        Ok(())
    }

    /// Drops every index from `index` on.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        let keep = index.0.saturating_sub(self.first.0);
        self.values
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Drops every index below `index` (a compaction), and gives back the memory a long run
    /// left behind: a group that grew to thousands of entries before its snapshot does not keep
    /// their room while it is short.
    pub(crate) fn keep_from(&mut self, index: LogIndex) {
        if index <= self.first {
            return;
        }
        let drop = usize::try_from(index.0 - self.first.0).unwrap_or(usize::MAX);
        if drop >= self.values.len() {
            self.values.clear();
        } else {
            self.values.drain(..drop);
            self.first = index;
        }
        if self.values.capacity() > 4 * self.values.len().max(KEPT_ROOM) {
            self.values.shrink_to(2 * self.values.len().max(KEPT_ROOM));
        }
    }

    pub(crate) fn pop_first(&mut self) {
        if self.values.pop_front().is_some() {
            self.first = self.first.next();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.values.clear();
    }

    /// The indices in `[low, high)` this run holds, in order.
    pub(crate) fn range(
        &self,
        low: LogIndex,
        high: LogIndex,
    ) -> impl Iterator<Item = (LogIndex, &T)> {
        let clamp = |index: LogIndex| {
            let offset = index.0.saturating_sub(self.first.0);
            usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(self.values.len())
        };
        let (start, end) = (clamp(low), clamp(high).max(clamp(low)));
        self.values
            .range(start..end)
            .enumerate()
            .map(move |(position, value)| (self.first.plus((start + position) as u64), value))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (LogIndex, &T)> {
        self.values
            .iter()
            .enumerate()
            .map(|(position, value)| (self.first.plus(position as u64), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: u64, count: u64) -> IndexRun<u64> {
        let mut run = IndexRun::default();
        for index in first..first + count {
            run.push(LogIndex(index), index).unwrap();
        }
        run
    }

    fn indices(run: &IndexRun<u64>) -> Vec<u64> {
        run.iter()
            .map(|(index, &value)| {
                assert_eq!(index.0, value);
                value
            })
            .collect()
    }

    #[test]
    fn appends_only_continue_the_run() {
        let mut run = run(5, 3);
        assert_eq!(run.last_index(), Some(LogIndex(7)));
        assert_eq!(run.push(LogIndex(9), 9), Err(9));
        assert_eq!(run.push(LogIndex(7), 7), Err(7));
        run.push(LogIndex(8), 8).unwrap();
        assert_eq!(indices(&run), vec![5, 6, 7, 8]);
        assert_eq!(run.get(LogIndex(4)), None);
        assert_eq!(run.get(LogIndex(6)), Some(&6));
        assert_eq!(run.get(LogIndex(9)), None);
    }

    #[test]
    fn trims_at_both_ends() {
        let mut run = run(5, 6);
        run.truncate_from(LogIndex(9));
        assert_eq!(indices(&run), vec![5, 6, 7, 8]);
        run.keep_from(LogIndex(7));
        assert_eq!(indices(&run), vec![7, 8]);
        run.keep_from(LogIndex(2));
        assert_eq!(indices(&run), vec![7, 8], "below the run: nothing to drop");
        assert_eq!(run.first(), Some((LogIndex(7), &7)));
        run.pop_first();
        assert_eq!(indices(&run), vec![8]);
        run.truncate_from(LogIndex(3));
        assert_eq!(run.len(), 0);
        run.push(LogIndex(20), 20).unwrap();
        run.keep_from(LogIndex(30));
        assert!(run.len() == 0 && run.last_index().is_none());
    }

    #[test]
    fn a_compaction_gives_back_the_room_of_a_long_run() {
        let mut run = run(1, 10_000);
        run.keep_from(LogIndex(9_990));
        assert_eq!(run.len(), 11);
        assert!(
            run.values.capacity() <= 4 * KEPT_ROOM,
            "{}",
            run.values.capacity()
        );
        assert_eq!(run.get(LogIndex(10_000)), Some(&10_000));
    }

    #[test]
    fn ranges_are_clamped_to_the_run() {
        let run = run(5, 5);
        let range = |low, high| -> Vec<u64> {
            run.range(LogIndex(low), LogIndex(high))
                .map(|(index, _)| index.0)
                .collect()
        };
        assert_eq!(range(6, 8), vec![6, 7]);
        assert_eq!(range(1, 7), vec![5, 6]);
        assert_eq!(range(8, 100), vec![8, 9]);
        assert_eq!(range(12, 20), Vec::<u64>::new());
        assert_eq!(range(8, 6), Vec::<u64>::new());
    }
}

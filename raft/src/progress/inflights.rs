//! A bounded window of AppendEntries in flight to one follower, by count and by bytes.

use crate::types::LogIndex;
use std::collections::VecDeque;

/// The messages sent to a follower and not yet acknowledged, oldest first.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    sent: VecDeque<(LogIndex, u64)>,
    bytes_total: u64,
    count_max: usize,
    bytes_max: u64,
}

impl Inflights {
    pub(crate) fn new(count_max: usize, bytes_max: u64) -> Self {
        assert!(
            count_max > 0,
            "an in-flight window of zero messages never sends"
        );
        Self {
            sent: VecDeque::new(),
            bytes_total: 0,
            count_max,
            bytes_max,
        }
    }

    /// Whether no more messages may be sent.
    pub(crate) fn is_full(&self) -> bool {
        self.sent.len() >= self.count_max || self.bytes_total >= self.bytes_max
    }

    /// Records a message whose last entry is `last`.
    pub(crate) fn add(&mut self, last: LogIndex, bytes: u64) {
        assert!(!self.is_full(), "sent past a full in-flight window");
        debug_assert!(
            self.sent
                .back()
                .is_none_or(|&(previous, _)| previous < last)
        );
        self.sent.push_back((last, bytes));
        self.bytes_total += bytes;
    }

    /// Forgets every message whose last entry is at or before `index`.
    pub(crate) fn free_to(&mut self, index: LogIndex) {
        while let Some(&(last, bytes)) = self.sent.front() {
            if last > index {
                break;
            }
            self.sent.pop_front();
            self.bytes_total -= bytes;
        }
    }

    pub(crate) fn reset(&mut self) {
        self.sent.clear();
        self.bytes_total = 0;
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_fills_by_count_and_frees_in_order() {
        let mut inflights = Inflights::new(2, 1000);
        inflights.add(LogIndex(3), 10);
        inflights.add(LogIndex(5), 10);
        assert!(inflights.is_full());
        inflights.free_to(LogIndex(4));
        assert_eq!(inflights.count(), 1);
        assert!(!inflights.is_full());
    }

    #[test]
    fn the_window_fills_by_bytes() {
        let mut inflights = Inflights::new(100, 50);
        inflights.add(LogIndex(1), 30);
        assert!(!inflights.is_full());
        inflights.add(LogIndex(2), 30);
        assert!(inflights.is_full());
        inflights.free_to(LogIndex(2));
        assert!(!inflights.is_full());
    }
}

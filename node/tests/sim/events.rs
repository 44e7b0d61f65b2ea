//! The simulator's clock: events in virtual time, popped in time order, ties in the order they
//! were scheduled, so a seed replays exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A time-ordered queue of `E`.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, Slot<E>)>>,
    next_sequence: u64,
}

/// An event, compared by nothing (time and sequence order the heap).
#[derive(Debug)]
struct Slot<E>(E);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_sequence: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at `at_ms`.
    pub fn schedule(&mut self, at_ms: u64, event: E) {
        self.next_sequence += 1;
        self.heap
            .push(Reverse((at_ms, self.next_sequence, Slot(event))));
    }

    /// The earliest event due at or before `until_ms`, with its time.
    pub fn pop_due(&mut self, until_ms: u64) -> Option<(u64, E)> {
        let Reverse((at, _, _)) = self.heap.peek()?;
        if *at > until_ms {
            return None;
        }
        let Reverse((at, _, Slot(event))) = self.heap.pop()?;
        Some((at, event))
    }
}

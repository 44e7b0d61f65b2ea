//! The simulated clock's agenda: events due at a time in simulated milliseconds, popped in
//! time order (ties in scheduling order, so runs are deterministic).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Pending events of type `E`.
#[derive(Debug)]
pub struct EventQueue<E> {
    due: BinaryHeap<Reverse<(u64, u64)>>,
    bodies: HashMap<u64, E>,
    next_key: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            due: BinaryHeap::new(),
            bodies: HashMap::new(),
            next_key: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at `at_ms`.
    pub fn schedule_at(&mut self, at_ms: u64, event: E) {
        let key = self.next_key;
        self.next_key += 1;
        self.due.push(Reverse((at_ms, key)));
        self.bodies.insert(key, event);
    }

    /// The earliest event due at or before `until_ms`, with its time.
    pub fn pop_due(&mut self, until_ms: u64) -> Option<(u64, E)> {
        let &Reverse((at_ms, key)) = self.due.peek()?;
        if at_ms > until_ms {
            return None;
        }
        self.due.pop();
        let event = self.bodies.remove(&key).expect("every key has a body");
        Some((at_ms, event))
    }
}

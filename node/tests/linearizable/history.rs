//! The model the histories are checked against: one key is a register, each operation's
//! response says what it saw and did, and the events of all clients become one history per
//! key for the Wing-Gong-Lowe checker of `todc-utils`.
//!
//! An acknowledged write took effect exactly once, between its call and its answer. Only a
//! write whose outcome the client reports as unknown (`ClientError::OutcomeUnknown`) may take
//! effect later, once, or never: its response goes at the end of the history.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use todc_utils::{Action, History, Specification, WGLChecker};

/// A register holding one key's value: `None` is absent, a value is the writer's unique id.
pub(crate) struct KeySpec;

/// What one operation did, as the checker sees it (responses carry the results).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A get that returned this.
    Read(Option<u64>),
    /// A put (`Some`) or delete (`None`) that reported the value it replaced.
    Swap {
        new: Option<u64>,
        previous: Option<u64>,
    },
    /// A put or delete whose outcome the client reports as unknown: applied once at some point
    /// after its call, or never.
    MaybeWrite(Option<u64>),
    /// A compare-and-swap with its reported outcome.
    Cas {
        expected: Option<u64>,
        new: Option<u64>,
        swapped: bool,
        current: Option<u64>,
    },
    /// A compare-and-swap whose outcome is unknown: it swaps if it matches wherever it lands.
    MaybeCas {
        expected: Option<u64>,
        new: Option<u64>,
    },
}

impl Specification for KeySpec {
    type State = Option<u64>;
    type Operation = Op;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &Op, state: &Option<u64>) -> (bool, Option<u64>) {
        match op {
            Op::Read(value) => (value == state, *state),
            Op::Swap { new, previous } => (
                previous == state,
                if previous == state { *new } else { *state },
            ),
            Op::MaybeWrite(new) => (true, *new),
            Op::Cas {
                expected,
                new,
                swapped,
                current,
            } => {
                let valid = current == state && (expected == state) == *swapped;
                (valid, if valid && *swapped { *new } else { *state })
            }
            Op::MaybeCas { expected, new } => (true, if expected == state { *new } else { *state }),
        }
    }
}

/// One event of the history, in the order they happened.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// Operation `id` on key `key` was called.
    Call { id: usize, key: usize },
    /// Operation `id` finished with this result.
    Return { id: usize, op: Op },
    /// Operation `id` may have taken effect at any time after its call: it ends with the
    /// history.
    Unknown { id: usize, op: Op },
    /// Operation `id` certainly had no effect: it leaves the history.
    Failed { id: usize },
    /// Operation `id` (a read) took effect by now; what it saw comes later, in `Resolve`. A
    /// backup view: it was taken before its open was answered, and is drained afterwards.
    #[allow(dead_code)] // only the simulator's clients back up
    Deferred { id: usize },
    /// What the deferred operation `id` saw; without one, it leaves the history.
    #[allow(dead_code)]
    Resolve { id: usize, op: Op },
}

/// The shared record of every client's operations.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) events: Mutex<Vec<Event>>,
    next_id: AtomicUsize,
}

impl Recorder {
    pub(crate) fn call(&self, key: usize) -> usize {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.push(Event::Call { id, key });
        id
    }

    pub(crate) fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    /// Operations answered so far.
    pub(crate) fn completed(&self) -> usize {
        completed(&self.events.lock().unwrap())
    }
}

/// Each key's history for the checker: calls and responses in real-time order, then the
/// responses of operations with an unknown outcome. Failed operations are left out.
pub(crate) fn histories(events: &[Event]) -> BTreeMap<usize, Vec<(usize, Action<Op>)>> {
    let mut key_of = BTreeMap::new();
    let mut failed = std::collections::BTreeSet::new();
    let mut resolved = BTreeMap::new();
    let mut deferred = Vec::new();
    for event in events {
        match event {
            Event::Call { id, key } => {
                key_of.insert(*id, *key);
            }
            Event::Failed { id } => {
                failed.insert(*id);
            }
            Event::Deferred { id } => deferred.push(*id),
            Event::Resolve { id, op } => {
                resolved.insert(*id, op.clone());
            }
            Event::Return { .. } | Event::Unknown { .. } => {}
        }
    }
    // A deferred read never resolved saw nothing the checker could use: like a failed one.
    failed.extend(deferred.into_iter().filter(|id| !resolved.contains_key(id)));
    let mut histories: BTreeMap<usize, Vec<(usize, Action<Op>)>> = BTreeMap::new();
    let mut unknown: BTreeMap<usize, Vec<(usize, Action<Op>)>> = BTreeMap::new();
    // An operation with an unknown outcome needs a call of its own op kind; the call's
    // payload is not used by the checker (it applies the response).
    let placeholder = Op::Read(None);
    for event in events {
        match event {
            Event::Call { id, key } if !failed.contains(id) => histories
                .entry(*key)
                .or_default()
                .push((*id, Action::Call(placeholder.clone()))),
            Event::Return { id, op } if !failed.contains(id) => histories
                .entry(key_of[id])
                .or_default()
                .push((*id, Action::Response(op.clone()))),
            Event::Unknown { id, op } => unknown
                .entry(key_of[id])
                .or_default()
                .push((*id, Action::Response(op.clone()))),
            Event::Deferred { id } if !failed.contains(id) => histories
                .entry(key_of[id])
                .or_default()
                .push((*id, Action::Response(resolved[id].clone()))),
            _ => {}
        }
    }
    for (key, tail) in unknown {
        histories.entry(key).or_default().extend(tail);
    }
    // The checker sizes its tables by the largest process id: number them per key.
    for history in histories.values_mut() {
        let mut renumber = BTreeMap::new();
        for (id, _) in history.iter_mut() {
            let next = renumber.len();
            *id = *renumber.entry(*id).or_insert(next);
        }
    }
    histories
}

pub(crate) fn linearizable(history: &[(usize, Action<Op>)]) -> bool {
    history.is_empty()
        || WGLChecker::<KeySpec>::is_linearizable(History::from_actions(history.to_vec()))
}

pub(crate) fn completed(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|event| matches!(event, Event::Return { .. }))
        .count()
}

/// The checker and this file's modelling bite: histories built from events the way the test
/// records them, with the anomalies a broken store would show.
mod the_checker {
    use super::*;

    /// Events of sequential operations on key 0: each op called, then answered.
    fn sequential(ops: &[Op]) -> Vec<Event> {
        ops.iter()
            .enumerate()
            .flat_map(|(id, op)| {
                [
                    Event::Call { id, key: 0 },
                    Event::Return { id, op: op.clone() },
                ]
            })
            .collect()
    }

    fn check(events: &[Event]) -> bool {
        histories(events)
            .values()
            .all(|history| linearizable(history))
    }

    fn put(new: u64, previous: Option<u64>) -> Op {
        Op::Swap {
            new: Some(new),
            previous,
        }
    }

    #[test]
    fn accepts_reads_of_the_latest_write() {
        assert!(check(&sequential(&[
            Op::Read(None),
            put(1, None),
            Op::Read(Some(1)),
            put(2, Some(1)),
            Op::Read(Some(2)),
        ])));
    }

    #[test]
    fn rejects_a_stale_read() {
        assert!(!check(&sequential(&[
            put(1, None),
            put(2, Some(1)),
            Op::Read(Some(1)),
        ])));
    }

    #[test]
    fn rejects_a_lost_acknowledged_write() {
        assert!(!check(&sequential(&[put(1, None), Op::Read(None)])));
    }

    #[test]
    fn rejects_a_write_that_reports_the_wrong_previous_value() {
        assert!(!check(&sequential(&[put(1, None), put(2, None)])));
    }

    #[test]
    fn rejects_a_swap_that_reports_the_wrong_outcome() {
        let swapped_on_a_mismatch = Op::Cas {
            expected: Some(7),
            new: Some(2),
            swapped: true,
            current: Some(1),
        };
        assert!(!check(&sequential(&[put(1, None), swapped_on_a_mismatch])));
        let refused_on_a_match = Op::Cas {
            expected: Some(1),
            new: Some(2),
            swapped: false,
            current: Some(1),
        };
        assert!(!check(&sequential(&[put(1, None), refused_on_a_match])));
    }

    #[test]
    fn accepts_concurrent_writes_in_either_order() {
        // 0 and 1 overlap; reads after both see one of them, and the other's previous value.
        let events = vec![
            Event::Call { id: 0, key: 0 },
            Event::Call { id: 1, key: 0 },
            Event::Return {
                id: 1,
                op: put(2, Some(1)),
            },
            Event::Return {
                id: 0,
                op: put(1, None),
            },
            Event::Call { id: 2, key: 0 },
            Event::Return {
                id: 2,
                op: Op::Read(Some(2)),
            },
        ];
        assert!(check(&events));
    }

    #[test]
    fn lets_an_unknown_write_apply_late_or_never_but_only_once() {
        let unknown_then = |reads: &[Option<u64>]| {
            let mut events = vec![
                Event::Call { id: 0, key: 0 },
                Event::Unknown {
                    id: 0,
                    op: Op::MaybeWrite(Some(1)),
                },
            ];
            for (n, read) in reads.iter().enumerate() {
                events.push(Event::Call { id: n + 1, key: 0 });
                events.push(Event::Return {
                    id: n + 1,
                    op: Op::Read(*read),
                });
            }
            check(&events)
        };
        assert!(unknown_then(&[None, None]), "never applied");
        assert!(unknown_then(&[None, Some(1), Some(1)]), "applied late");
        assert!(!unknown_then(&[Some(1), None]), "applied, then undone");
    }

    /// A put of 1 applied twice around another client's put of 2 before its caller's answer
    /// (what late copies without sessions do): two writes of unknown outcome explain it, one
    /// cannot, so an acknowledged write (no unknown copies at all) applied twice is caught.
    #[test]
    fn an_unknown_write_explains_one_application_not_two() {
        let history = |earlier_attempts: usize| {
            let mut events = vec![Event::Call { id: 0, key: 0 }];
            let earlier: Vec<usize> = (1..=earlier_attempts).collect();
            events.extend(earlier.iter().map(|&id| Event::Call { id, key: 0 }));
            let other = earlier_attempts + 1;
            events.push(Event::Call { id: other, key: 0 });
            events.push(Event::Return {
                id: other,
                op: put(2, Some(1)),
            });
            events.push(Event::Return {
                id: 0,
                op: put(1, Some(1)),
            });
            events.push(Event::Call {
                id: other + 1,
                key: 0,
            });
            events.push(Event::Return {
                id: other + 1,
                op: Op::Read(Some(1)),
            });
            events.extend(earlier.iter().map(|&id| Event::Unknown {
                id,
                op: Op::MaybeWrite(Some(1)),
            }));
            check(&events)
        };
        assert!(history(2));
        assert!(!history(1));
    }

    #[test]
    fn drops_failed_operations() {
        let events = vec![
            Event::Call { id: 0, key: 0 },
            Event::Failed { id: 0 },
            Event::Call { id: 1, key: 0 },
            Event::Return {
                id: 1,
                op: Op::Read(None),
            },
        ];
        assert!(check(&events));
    }
}

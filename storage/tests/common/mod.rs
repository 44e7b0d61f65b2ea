//! Helpers shared by the integration tests: building entries and snapshots, and observing
//! everything a `LogReader` shows so two logs can be compared.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod child;
pub mod history;
pub mod segments;

use flotilla_raft::{
    Entry, EntryPayload, InitialState, LogError, LogId, LogIndex, LogReader, Membership, NodeId,
    Snapshot, SnapshotMeta, Term,
};

/// Entries of one term at `indexes`, each with a small payload derived from its index.
pub fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes
        .map(|index| Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Normal(vec![index as u8; 10].into()),
        })
        .collect()
}

/// A snapshot at `index` of `term` holding `data`.
pub fn snapshot(term: u64, index: u64, data: &[u8]) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last: LogId::new(Term(term), LogIndex(index)),
            membership: Membership::with_voters([NodeId(1), NodeId(2)]),
        },
        data: data.to_vec(),
    }
}

/// Everything a reader shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub initial: InitialState,
    pub first: LogIndex,
    pub last: LogIndex,
    pub entries: Result<Vec<Entry>, LogError>,
    pub terms: Vec<Result<Term, LogError>>,
    pub snapshot: Snapshot,
}

/// Reads everything `log` shows.
pub fn observe(log: &dyn LogReader) -> Observed {
    let first = log.first_index();
    let last = log.last_index();
    Observed {
        initial: log.initial_state().unwrap(),
        first,
        last,
        entries: log.entries(first, last.next(), u64::MAX),
        terms: (first.0.saturating_sub(2)..=last.0 + 1)
            .map(|index| log.term(LogIndex(index)))
            .collect(),
        snapshot: log.snapshot().unwrap(),
    }
}

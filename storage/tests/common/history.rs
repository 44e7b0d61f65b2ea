//! A seeded random history of a range's entries: puts, deletes, swaps and scans on few keys,
//! bare or in sessions (with copies of applied writes and stale ones), so that two state
//! machines can be compared entry by entry. The history of `n` entries is a prefix of every
//! longer one of the same seed.

use flotilla_raft::{Entry, EntryPayload, GroupId, LogIndex, Term};
use flotilla_storage::kv::{SessionId, SessionLimits, SessionTag};
use flotilla_storage::{Codec, Command, Proposal};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The group every history belongs to.
pub const GROUP: GroupId = GroupId(9);

/// Small session limits, so histories reach evictions and full sessions.
pub fn limits() -> SessionLimits {
    SessionLimits {
        expiry_ms: 60_000,
        sessions_max: 3,
        results_max: 4,
    }
}

/// The entries 1..=`entry_count` of history `seed`, all of term 1.
pub fn random_entries(seed: u64, entry_count: u64) -> Vec<Entry> {
    random_entries_of(GROUP, seed, entry_count)
}

/// The entries 1..=`entry_count` of history `seed` of range `group`, all of term 1.
pub fn random_entries_of(group: GroupId, seed: u64, entry_count: u64) -> Vec<Entry> {
    random_history_of(group, seed, entry_count)
        .into_iter()
        .zip(1..)
        .map(|(payload, index)| Entry {
            term: Term(1),
            index: LogIndex(index),
            payload,
        })
        .collect()
}

/// The payloads of history `seed`; sessions are opened at the entries the history says.
pub fn random_history(seed: u64, entry_count: u64) -> Vec<EntryPayload> {
    random_history_of(GROUP, seed, entry_count)
}

/// The payloads of history `seed` of range `group`, whose sessions it opens.
pub fn random_history_of(group: GroupId, seed: u64, entry_count: u64) -> Vec<EntryPayload> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sessions: Vec<(SessionId, u64)> = Vec::new();
    let mut history = Vec::new();
    for index in 1..=entry_count {
        let key = format!("k{}", rng.random_range(0..12)).into_bytes();
        let command = match rng.random_range(0..5) {
            0 => Command::Delete { key },
            1 => Command::CompareAndSwap {
                key,
                expected: rng.random_bool(0.5).then(|| b"v1".to_vec()),
                new: rng
                    .random_bool(0.8)
                    .then(|| format!("v{}", index % 3).into_bytes()),
            },
            2 => Command::Scan {
                start: key,
                end: None,
                limit: rng.random_range(0..5),
            },
            _ => Command::Put {
                key,
                value: vec![b'x'; rng.random_range(0..40)],
            },
        };
        let time_ms = 1_000 + index * 10;
        let payload = match rng.random_range(0..30) {
            0 => {
                sessions.push((
                    SessionId {
                        group,
                        index: LogIndex(index),
                    },
                    0,
                ));
                Proposal::Open {
                    time_ms,
                    limits: limits(),
                }
                .to_payload()
            }
            1..=18 if !sessions.is_empty() => {
                let at = rng.random_range(0..sessions.len());
                let (session, sequence) = &mut sessions[at];
                // Mostly the next write, sometimes a copy of the last one or a stale one.
                if *sequence == 0 || rng.random_bool(0.7) {
                    *sequence += 1;
                }
                let awaited_from = sequence.saturating_sub(2).max(1);
                let tag = if *sequence > 4 && rng.random_bool(0.2) {
                    SessionTag {
                        session: *session,
                        sequence: *sequence - 4,
                        awaited_from: *sequence - 4,
                    }
                } else {
                    SessionTag {
                        session: *session,
                        sequence: *sequence,
                        awaited_from,
                    }
                };
                Proposal::Write {
                    time_ms,
                    tag,
                    command,
                }
                .to_payload()
            }
            _ => command.encode(),
        };
        history.push(EntryPayload::Normal(payload.into()));
    }
    history
}

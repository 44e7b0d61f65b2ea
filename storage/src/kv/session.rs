//! The client sessions of one range, so that a write is applied at most once however often it
//! is delivered (Raft dissertation §6.3). `docs/protocol/sessions.md` argues the design.
//!
//! A client opens a session with a log entry of the range; the session's id is that entry's
//! group and index. Each write then carries a `SessionTag`: the session, the write's sequence
//! number, and the lowest sequence the client still awaits an answer for. Per session the table
//! keeps the results of the applied sequences the client may still ask about (those at or above
//! that watermark): a copy of one of them is answered with its recorded result, a copy below it
//! is refused, and a write of an unknown session is refused, never opened anew.
//!
//! Time is log time: the leader puts its clock into each session entry, and the table keeps the
//! largest time seen. Every replica applies the same entries, so every replica expires the same
//! sessions at the same index, whatever its own clock says.

use super::command::Response;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use flotilla_api::session::{SessionId, SessionLimits, SessionTag};

/// What the table decided about a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Apply it, then `record` its result.
    Apply,
    /// Do not apply it; answer this.
    Answer(Response),
}

/// One session's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// Log time of its last entry.
    last_active_ms: u64,
    /// The highest `awaited_from` seen: every sequence below it is retired.
    awaited_from: u64,
    /// The results of the applied sequences at or above `awaited_from`, by sequence. A sorted
    /// vector: a client's sequences arrive nearly in order and leave from the front, and a
    /// vector costs a fraction of a tree's nodes for the few results a session holds.
    results: Vec<(u64, Response)>,
}

impl Session {
    fn result(&self, sequence: u64) -> Option<&Response> {
        let position = self
            .results
            .binary_search_by_key(&sequence, |(held, _)| *held)
            .ok()?;
        self.results.get(position).map(|(_, response)| response)
    }

    fn insert(&mut self, sequence: u64, response: Response) {
        match self
            .results
            .binary_search_by_key(&sequence, |(held, _)| *held)
        {
            Ok(position) => {
                if let Some(held) = self.results.get_mut(position) {
                    held.1 = response;
                }
            }
            Err(position) => self.results.insert(position, (sequence, response)),
        }
    }

    /// Raises the watermark to `awaited_from` (it never goes down) and forgets the results
    /// below the watermark.
    fn retire_below(&mut self, awaited_from: u64) {
        self.awaited_from = self.awaited_from.max(awaited_from);
        let awaited_from = self.awaited_from;
        let below = self
            .results
            .partition_point(|(sequence, _)| *sequence < awaited_from);
        self.results.drain(..below);
    }
}

/// The session table of one range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionTable {
    limits: SessionLimits,
    /// Log time: the largest entry time applied so far.
    clock_ms: u64,
    /// Persistent (as the range's map is), so a snapshot of the table is an O(1) clone and a
    /// write after it copies only the path to the session it changes.
    sessions: imbl::OrdMap<SessionId, Session>,
    /// `(last_active_ms, id)` of every session, oldest first: the next to expire or be evicted.
    by_activity: imbl::OrdSet<(u64, SessionId)>,
    /// The sessions changed since the last `take_changed`, while tracking is on.
    changed: Changed,
}

/// The sessions a table changed, for a state machine that persists only those (the disk one):
/// bookkeeping, not part of the table's value, so two tables compare equal whatever they track.
#[derive(Clone, Debug, Default)]
struct Changed(Option<BTreeSet<SessionId>>);

impl Changed {
    fn mark(&mut self, id: SessionId) {
        if let Some(changed) = &mut self.0 {
            changed.insert(id);
        }
    }
}

impl PartialEq for Changed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Changed {}

impl SessionTable {
    /// Opens session `id` (the id of the entry applied now) at log time `time_ms` under
    /// `limits`, ending the least recently active sessions if the range is full.
    pub fn open(&mut self, id: SessionId, time_ms: u64, limits: SessionLimits) -> Response {
        self.limits = limits;
        self.advance(time_ms);
        while self.sessions.len() >= limits.sessions_max.max(1) as usize {
            let Some(&(_, oldest)) = self.by_activity.get_min() else {
                break;
            };
            self.end(oldest);
        }
        let session = Session {
            last_active_ms: self.clock_ms,
            awaited_from: 1,
            results: Vec::new(),
        };
        self.by_activity.insert((self.clock_ms, id));
        self.sessions.insert(id, session);
        self.changed.mark(id);
        Response::SessionOpened {
            session: id,
            limits,
        }
    }

    /// Decides about a write tagged `tag` in an entry of log time `time_ms`: apply it (and then
    /// `record` its result), or answer it without applying it.
    pub fn admit(&mut self, time_ms: u64, tag: &SessionTag) -> Admission {
        self.advance(time_ms);
        if tag.sequence == 0 || tag.awaited_from > tag.sequence {
            return Admission::Answer(Response::Invalid(format!(
                "sequence {} awaits from {}: a write awaits its own answer",
                tag.sequence, tag.awaited_from
            )));
        }
        let results_max = self.limits.results_max as usize;
        let clock_ms = self.clock_ms;
        let Some(session) = self.sessions.get_mut(&tag.session) else {
            return Admission::Answer(Response::SessionExpired {
                session: tag.session,
            });
        };
        self.changed.mark(tag.session);
        session.retire_below(tag.awaited_from);
        let previous_activity = session.last_active_ms;
        session.last_active_ms = clock_ms;
        let admission = if tag.sequence < session.awaited_from {
            Admission::Answer(Response::Retired {
                sequence: tag.sequence,
            })
        } else if let Some(result) = session.result(tag.sequence) {
            Admission::Answer(result.clone())
        } else if session.results.len() >= results_max {
            Admission::Answer(Response::SessionExpired {
                session: tag.session,
            })
        } else {
            Admission::Apply
        };
        self.by_activity.remove(&(previous_activity, tag.session));
        self.by_activity.insert((clock_ms, tag.session));
        if matches!(
            admission,
            Admission::Answer(Response::SessionExpired { .. })
        ) {
            // Over its results limit: ending it keeps the memory bound; its client learns that
            // its writes' outcomes are unknown, as after an expiry.
            self.end(tag.session);
        }
        admission
    }

    /// Records the result of the write `tag` that `admit` let apply.
    ///
    /// # Panics
    /// If the session is unknown: `admit` answered for it, so this is a bug in the caller.
    pub fn record(&mut self, tag: &SessionTag, response: &Response) {
        let session = self
            .sessions
            .get_mut(&tag.session)
            .expect("a write is recorded only in a session admit let it apply in");
        session.insert(tag.sequence, response.clone());
        self.changed.mark(tag.session);
    }

    /// Moves log time to `time_ms` (it never goes back: leaders' clocks differ) and ends the
    /// sessions idle for the expiry.
    fn advance(&mut self, time_ms: u64) {
        self.clock_ms = self.clock_ms.max(time_ms);
        while let Some(&(last_active_ms, id)) = self.by_activity.get_min() {
            if self.clock_ms.saturating_sub(last_active_ms) < self.limits.expiry_ms {
                break;
            }
            self.end(id);
        }
    }

    fn end(&mut self, id: SessionId) {
        if let Some(session) = self.sessions.remove(&id) {
            self.by_activity.remove(&(session.last_active_ms, id));
            self.changed.mark(id);
        }
    }

    /// Folds the table of a range merged into this one: each session keeps the higher
    /// watermark, the results of both sides above it, and the later activity; log time is the
    /// later of the two. A split needs no function: both halves keep a copy (`clone`), and a
    /// session then lives on in each half, which serves disjoint keys.
    pub fn merge(&mut self, other: SessionTable) {
        self.clock_ms = self.clock_ms.max(other.clock_ms);
        for (id, theirs) in other.sessions {
            let merged = match self.sessions.remove(&id) {
                Some(ours) => {
                    self.by_activity.remove(&(ours.last_active_ms, id));
                    merge_session(ours, theirs)
                }
                None => theirs,
            };
            self.by_activity.insert((merged.last_active_ms, id));
            self.sessions.insert(id, merged);
            self.changed.mark(id);
        }
        self.advance(self.clock_ms);
        while self.sessions.len() > self.limits.sessions_max.max(1) as usize {
            let Some(&(_, oldest)) = self.by_activity.get_min() else {
                break;
            };
            self.end(oldest);
        }
    }

    /// Sessions held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether session `id` is held.
    #[must_use]
    pub fn contains(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// The results session `id` holds (0 for an unknown session).
    #[must_use]
    pub fn results_held(&self, id: SessionId) -> usize {
        self.sessions
            .get(&id)
            .map_or(0, |session| session.results.len())
    }

    /// Log time: the largest entry time applied.
    #[must_use]
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The limits in force (those of the last session opened).
    #[must_use]
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// From now on, remembers which sessions change until `take_changed` hands them over.
    pub(crate) fn track_changes(&mut self) {
        self.changed.0.get_or_insert_with(BTreeSet::new);
    }

    /// Forgets which sessions changed, and stops remembering them (a copy for a machine that
    /// never asks).
    pub(crate) fn stop_tracking(&mut self) {
        self.changed.0 = None;
    }

    /// The sessions opened, changed or ended since the last call (none unless tracking).
    pub(crate) fn take_changed(&mut self) -> BTreeSet<SessionId> {
        self.changed
            .0
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The id of every session held.
    pub(crate) fn ids(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// The encoded state of session `id`, `None` once it ended: what the disk state machine
    /// stores per session.
    pub(crate) fn session_image(&self, id: SessionId) -> Option<Vec<u8>> {
        let session = self.sessions.get(&id)?;
        Some(postcard::to_allocvec(session).expect("encoding into a Vec cannot fail"))
    }

    /// The table of `limits` at log time `clock_ms` holding the encoded `sessions`.
    ///
    /// # Errors
    /// A session's bytes do not decode.
    pub(crate) fn from_images<'a>(
        limits: SessionLimits,
        clock_ms: u64,
        sessions: impl IntoIterator<Item = (SessionId, &'a [u8])>,
    ) -> Result<Self, postcard::Error> {
        let mut table = Self {
            limits,
            clock_ms,
            ..Self::default()
        };
        for (id, bytes) in sessions {
            let session: Session = postcard::from_bytes(bytes)?;
            table.by_activity.insert((session.last_active_ms, id));
            table.sessions.insert(id, session);
        }
        Ok(table)
    }
}

fn merge_session(ours: Session, theirs: Session) -> Session {
    let mut merged = theirs;
    merged.last_active_ms = merged.last_active_ms.max(ours.last_active_ms);
    for (sequence, response) in ours.results {
        merged.insert(sequence, response);
    }
    merged.retire_below(ours.awaited_from);
    merged
}

/// The table as snapshots store it (the activity index is rebuilt on decode).
#[derive(Serialize, Deserialize)]
struct TableImage {
    limits: SessionLimits,
    clock_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
}

impl Serialize for SessionTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct ImageRef<'a> {
            limits: SessionLimits,
            clock_ms: u64,
            #[serde(serialize_with = "in_order")]
            sessions: &'a imbl::OrdMap<SessionId, Session>,
        }
        ImageRef {
            limits: self.limits,
            clock_ms: self.clock_ms,
            sessions: &self.sessions,
        }
        .serialize(serializer)
    }
}

/// A persistent map encoded as `BTreeMap` encodes itself (its pairs in key order), so the
/// table's bytes are those it had before it became persistent.
fn in_order<S: serde::Serializer>(
    map: &&imbl::OrdMap<SessionId, Session>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter())
}

impl<'de> Deserialize<'de> for SessionTable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let image = TableImage::deserialize(deserializer)?;
        let by_activity = image
            .sessions
            .iter()
            .map(|(id, session)| (session.last_active_ms, *id))
            .collect();
        Ok(Self {
            limits: image.limits,
            clock_ms: image.clock_ms,
            sessions: image.sessions.into_iter().collect(),
            by_activity,
            changed: Changed::default(),
        })
    }
}

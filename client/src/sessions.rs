//! The client's sessions, one per range it writes to (sans-IO): which session and sequence a
//! new write gets, the lowest sequence still awaited (sent with every attempt, so the range can
//! forget older results), and the window that keeps a range's held results under its limit.
//!
//! A write keeps its tag for all its attempts, also when a map refresh sends a retry to
//! another group (after a split, both halves know the session).

use flotilla_api::{SessionId, SessionLimits, SessionTag};
use flotilla_raft::GroupId;
use std::collections::{BTreeSet, HashMap};

/// Why a write cannot get a tag yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoTag {
    /// The client holds no session in the group: open one.
    NoSession,
    /// The session's window is full: a write older than `results_max` sequences is still
    /// awaited. Wait for it to end.
    WindowFull,
}

/// One session the client holds.
#[derive(Clone, Debug)]
struct Held {
    id: SessionId,
    limits: SessionLimits,
    next_sequence: u64,
    /// Sequences issued and not yet finished.
    outstanding: BTreeSet<u64>,
}

impl Held {
    /// The lowest sequence still awaited (the next one when none is).
    fn awaited_from(&self) -> u64 {
        self.outstanding
            .first()
            .copied()
            .unwrap_or(self.next_sequence)
    }
}

/// Every session of one client, by the group it was opened in.
#[derive(Debug, Default)]
pub struct SessionBook {
    by_group: HashMap<GroupId, Held>,
}

impl SessionBook {
    /// A tag for a new write to `group`. The sequence stays below `awaited_from + results_max`:
    /// every result the range holds for the session is then within that many sequences of its
    /// watermark, so the range never ends the session for holding too many.
    pub fn issue(&mut self, group: GroupId) -> Result<SessionTag, NoTag> {
        let held = self.by_group.get_mut(&group).ok_or(NoTag::NoSession)?;
        let window = u64::from(held.limits.results_max.max(1));
        if held.next_sequence >= held.awaited_from() + window {
            return Err(NoTag::WindowFull);
        }
        let sequence = held.next_sequence;
        held.next_sequence += 1;
        held.outstanding.insert(sequence);
        Ok(SessionTag {
            session: held.id,
            sequence,
            awaited_from: held.awaited_from(),
        })
    }

    /// The tag for the next attempt of `tag`'s write: the same session and sequence, with the
    /// watermark as it is now (it only rises, and never above the write's own sequence).
    pub fn refresh(&self, tag: SessionTag) -> SessionTag {
        let awaited_from = self
            .by_group
            .get(&tag.session.group)
            .filter(|held| held.id == tag.session)
            .map_or(tag.awaited_from, Held::awaited_from);
        SessionTag {
            awaited_from: awaited_from.clamp(tag.awaited_from, tag.sequence),
            ..tag
        }
    }

    /// Whether the client holds a session in `group`.
    pub fn holds(&self, group: GroupId) -> bool {
        self.by_group.contains_key(&group)
    }

    /// The write `tag` ended (answered, or given up): the client awaits it no more.
    pub fn finish(&mut self, tag: SessionTag) {
        if let Some(held) = self.held_mut(tag.session) {
            held.outstanding.remove(&tag.sequence);
        }
    }

    /// A session was opened in its group; one opened there before stays (the new one is
    /// never used and expires).
    pub fn opened(&mut self, id: SessionId, limits: SessionLimits) {
        self.by_group.entry(id.group).or_insert(Held {
            id,
            limits,
            next_sequence: 1,
            outstanding: BTreeSet::new(),
        });
    }

    /// The range no longer knows `session`: new writes need a new one.
    pub fn expired(&mut self, session: SessionId) {
        if self.held_mut(session).is_some() {
            self.by_group.remove(&session.group);
        }
    }

    fn held_mut(&mut self, session: SessionId) -> Option<&mut Held> {
        self.by_group
            .get_mut(&session.group)
            .filter(|held| held.id == session)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::LogIndex;

    const GROUP: GroupId = GroupId(4);

    fn book(results_max: u32) -> (SessionBook, SessionId) {
        let id = SessionId {
            group: GROUP,
            index: LogIndex(17),
        };
        let limits = SessionLimits {
            results_max,
            ..SessionLimits::default()
        };
        let mut book = SessionBook::default();
        book.opened(id, limits);
        (book, id)
    }

    #[test]
    fn writes_get_consecutive_sequences_and_await_from_the_oldest_unfinished() {
        let (mut book, id) = book(8);
        assert_eq!(book.issue(GroupId(5)), Err(NoTag::NoSession));
        let first = book.issue(GROUP).unwrap();
        let second = book.issue(GROUP).unwrap();
        assert_eq!(
            (first.session, first.sequence, first.awaited_from),
            (id, 1, 1)
        );
        assert_eq!((second.sequence, second.awaited_from), (2, 1));
        book.finish(second);
        assert_eq!(
            book.issue(GROUP).unwrap().awaited_from,
            1,
            "1 is still awaited"
        );
        book.finish(first);
        assert_eq!(book.issue(GROUP).unwrap().awaited_from, 3);
    }

    #[test]
    fn a_retry_sends_the_watermark_of_now_but_never_above_its_own_sequence() {
        let (mut book, _) = book(8);
        let first = book.issue(GROUP).unwrap();
        let second = book.issue(GROUP).unwrap();
        book.finish(first);
        assert_eq!(book.refresh(second).awaited_from, 2);
        assert_eq!(
            book.refresh(first).awaited_from,
            1,
            "clamped to its sequence"
        );
    }

    /// A write stuck in its retries holds the window: no sequence may get `results_max` past
    /// it, or the range would hold more results than its limit and end the session.
    #[test]
    fn the_window_stops_at_results_max_past_the_oldest_awaited_write() {
        let (mut book, _) = book(3);
        let stuck = book.issue(GROUP).unwrap();
        for _ in 0..2 {
            let done = book.issue(GROUP).unwrap();
            book.finish(done);
        }
        assert_eq!(book.issue(GROUP), Err(NoTag::WindowFull));
        book.finish(stuck);
        assert_eq!(book.issue(GROUP).unwrap().sequence, 4);
    }

    #[test]
    fn an_expired_session_is_dropped_and_a_newer_one_is_kept() {
        let (mut book, id) = book(8);
        let newer = SessionId {
            group: GROUP,
            index: LogIndex(30),
        };
        book.opened(newer, SessionLimits::default());
        assert_eq!(book.issue(GROUP).unwrap().session, id, "the first stays");
        book.expired(id);
        assert_eq!(book.issue(GROUP), Err(NoTag::NoSession));
        book.opened(newer, SessionLimits::default());
        book.expired(id);
        assert_eq!(
            book.issue(GROUP).unwrap().session,
            newer,
            "only its own expiry"
        );
    }
}

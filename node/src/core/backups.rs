//! Backup views: a range leader's read view of one whole range at one applied entry, opened
//! after a ReadIndex (so it holds every write acknowledged before the backup asked) and drained
//! by `flotilla backup` in chunks of pairs. A view costs little to hold in memory (the range's
//! map is shared), but the range's next write then copies the map, so views are bounded in
//! number (`limits.backup_views_max`), let go of the range's state once drained, and are
//! dropped when closed or idle for `limits.backup_view_idle_ms`. Chunks are numbered: the view
//! serves its last chunk again when asked for it, so a retried or copied request never skips
//! pairs.
//!
//! View ids carry the node's start number in their high bits, so an id a client kept across a
//! restart of the node never names another view.

use crate::api::{ApiError, BackupView, Reply};
use flotilla_raft::GroupId;
use flotilla_storage::{SnapshotView, StateMachine};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

/// One view: while pairs are left, the view itself; and the last chunk served, so that a
/// request for it again (a retry, a copy) gets the same pairs instead of skipping them.
struct Open {
    group: GroupId,
    /// `None` once drained (the range's state is no longer held).
    view: Option<Box<dyn SnapshotView>>,
    /// Chunks served.
    served: u64,
    /// The last chunk served.
    last: Option<Reply>,
    last_used_ms: u64,
}

/// The backup views open on a node.
pub(crate) struct BackupViews {
    open: BTreeMap<u64, Open>,
    /// The next id: the start number in the high 32 bits, a counter in the low.
    next: u64,
    views_max: usize,
    idle_ms: u64,
}

impl std::fmt::Debug for BackupViews {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BackupViews")
            .field("open", &self.open.keys().collect::<Vec<_>>())
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl BackupViews {
    /// No view open, ids starting from the node's start number `incarnation`.
    pub(crate) fn new(incarnation: u64, views_max: usize, idle_ms: u64) -> Self {
        Self {
            open: BTreeMap::new(),
            next: incarnation << 32,
            views_max,
            idle_ms,
        }
    }

    /// Views still holding their range's state.
    fn holding(&self) -> usize {
        self.open
            .values()
            .filter(|open| open.view.is_some())
            .count()
    }

    /// Whether another view may open now (after dropping the idle ones).
    pub(crate) fn has_room(&mut self, now_ms: u64) -> Result<(), ApiError> {
        self.expire(now_ms);
        let holding = self.holding();
        if holding >= self.views_max {
            return Err(ApiError::BackupViewsFull { open: holding });
        }
        Ok(())
    }

    /// Opens a view of `machine` at what it applied; what its header states.
    pub(crate) fn open_of(
        &mut self,
        machine: &dyn StateMachine,
        now_ms: u64,
    ) -> Result<BackupView, ApiError> {
        let view = machine.snapshot_view().map_err(|error| {
            ApiError::Unavailable(format!("the range's view could not be opened: {error}"))
        })?;
        self.open(view, now_ms)
    }

    /// Keeps `view` open; what its header states.
    pub(crate) fn open(
        &mut self,
        view: Box<dyn SnapshotView>,
        now_ms: u64,
    ) -> Result<BackupView, ApiError> {
        self.has_room(now_ms)?;
        // Drained views keep one chunk each until closed or idle: at most as many as views.
        while self.open.len() >= 2 * self.views_max {
            let oldest_drained = self
                .open
                .iter()
                .filter(|(_, open)| open.view.is_none())
                .min_by_key(|(_, open)| open.last_used_ms)
                .map(|(&id, _)| id);
            match oldest_drained {
                Some(id) => self.open.remove(&id),
                None => break,
            };
        }
        self.next += 1;
        let id = self.next;
        let opened = BackupView {
            view: id,
            group: view.group(),
            applied: view.applied(),
            pair_count: view.pair_count(),
            stored_bytes: view.stored_bytes(),
        };
        self.open.insert(
            id,
            Open {
                group: view.group(),
                view: Some(view),
                served: 0,
                last: None,
                last_used_ms: now_ms,
            },
        );
        Ok(opened)
    }

    /// Chunk `chunk` of view `id` of `group`: the next one, up to `chunk_bytes_max` bytes in
    /// the snapshot format (at least one pair), or the last one again. Once drained, the view
    /// lets go of the range's state and keeps only its last chunk.
    pub(crate) fn chunk(
        &mut self,
        (group, id, chunk): (GroupId, u64, u64),
        chunk_bytes_max: usize,
        now_ms: u64,
    ) -> Result<Reply, ApiError> {
        self.expire(now_ms);
        let open = self
            .open
            .get_mut(&id)
            .filter(|open| open.group == group)
            .ok_or(ApiError::NoBackupView { view: id })?;
        open.last_used_ms = now_ms;
        if chunk + 1 == open.served
            && let Some(last) = &open.last
        {
            return Ok(last.clone());
        }
        if chunk != open.served {
            return Err(ApiError::BackupChunkOutOfOrder {
                view: id,
                asked: chunk,
                next: open.served,
            });
        }
        let Some(view) = open.view.as_mut() else {
            return Err(ApiError::BackupChunkOutOfOrder {
                view: id,
                asked: chunk,
                next: open.served,
            });
        };
        let mut pairs = Vec::new();
        let more = view
            .next_chunk(chunk_bytes_max, &mut pairs)
            .map_err(|error| ApiError::Unavailable(format!("the backup view failed: {error}")))?;
        if !more {
            open.view = None;
        }
        let reply = Reply::BackupChunk {
            pairs: pairs
                .into_iter()
                .map(|(key, value)| (ByteBuf::from(key), ByteBuf::from(value)))
                .collect(),
            done: !more,
        };
        open.served += 1;
        open.last = Some(reply.clone());
        Ok(reply)
    }

    /// Drops view `id` (a backup that finished or gave up); nothing if it is not open.
    pub(crate) fn close(&mut self, id: u64) {
        self.open.remove(&id);
    }

    /// Drops every view idle for `idle_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        let idle_ms = self.idle_ms;
        self.open
            .retain(|_, open| now_ms.saturating_sub(open.last_used_ms) < idle_ms);
    }

    /// Views kept, drained or not.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{Entry, EntryPayload, LogIndex, Term};
    use flotilla_storage::{Codec, Command, KvStateMachine};

    fn machine(keys: &[&str]) -> KvStateMachine {
        let mut machine = KvStateMachine::new(GroupId(3));
        for (index, key) in keys.iter().enumerate() {
            let command = Command::Put {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
            };
            let entry = Entry {
                term: Term(1),
                index: LogIndex(index as u64 + 1),
                payload: EntryPayload::Normal(command.encode().into()),
            };
            machine.apply_entry(&entry);
        }
        machine
    }

    fn pairs_of(reply: &Reply) -> (Vec<String>, bool) {
        let Reply::BackupChunk { pairs, done } = reply else {
            panic!("not a chunk: {reply:?}");
        };
        let keys = pairs
            .iter()
            .map(|(key, _)| String::from_utf8(key.to_vec()).unwrap_or_default())
            .collect();
        (keys, *done)
    }

    #[test]
    fn a_view_hands_out_its_range_in_chunks_and_serves_the_last_one_again() {
        let mut machine = machine(&["a", "b", "c"]);
        let mut views = BackupViews::new(7, 2, 1_000);
        let view = StateMachine::snapshot_view(&machine).expect("a memory view");
        let opened = views.open(view, 0).expect("room");
        assert_eq!(opened.view >> 32, 7, "the start number is in the id");
        assert_eq!((opened.pair_count, opened.applied.index), (3, LogIndex(3)));
        // A write after the view opened is not in it.
        machine.apply_entry(&Entry {
            term: Term(1),
            index: LogIndex(4),
            payload: EntryPayload::Normal(
                Command::Put {
                    key: b"d".to_vec(),
                    value: b"v".to_vec(),
                }
                .encode()
                .into(),
            ),
        });
        let (group, id) = (GroupId(3), opened.view);
        // 8 bytes of lengths and 2 of key and value: one pair per 10-byte chunk.
        let mut keys = Vec::new();
        for chunk in 0.. {
            let reply = views.chunk((group, id, chunk), 10, 1).expect("open");
            // Asked again (a retry, a copy of the request): the same pairs.
            assert_eq!(views.chunk((group, id, chunk), 10, 1), Ok(reply.clone()));
            let (pairs, done) = pairs_of(&reply);
            assert!(pairs.len() <= 1, "{pairs:?}");
            keys.extend(pairs);
            if done {
                break;
            }
        }
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(
            views.chunk((group, id, 0), 10, 2),
            Err(ApiError::BackupChunkOutOfOrder {
                view: id,
                asked: 0,
                next: 4
            }),
            "only the last chunk is served again"
        );
        views.close(id);
        assert_eq!(
            views.chunk((group, id, 3), 10, 2),
            Err(ApiError::NoBackupView { view: id })
        );
    }

    #[test]
    fn views_are_bounded_idle_ones_dropped_and_ids_checked_against_the_group() {
        let machine = machine(&["a"]);
        let mut views = BackupViews::new(1, 2, 1_000);
        let open = || StateMachine::snapshot_view(&machine).expect("a memory view");
        let first = views.open(open(), 0).expect("room");
        let second = views.open(open(), 500).expect("room");
        assert_eq!(
            views.open(open(), 900),
            Err(ApiError::BackupViewsFull { open: 2 })
        );
        assert_eq!(
            views.chunk((GroupId(4), second.view, 0), 1 << 20, 900),
            Err(ApiError::NoBackupView { view: second.view }),
            "a view is only read for its own group"
        );
        // Drained, a view no longer counts against the limit.
        for chunk in 0..2 {
            views
                .chunk((GroupId(3), second.view, chunk), 1 << 20, 900)
                .expect("open");
        }
        views.open(open(), 900).expect("the drained view made room");
        // At 1,000 ms the first view has been idle for its limit and is dropped.
        views.open(open(), 1_000).expect("the idle view made room");
        assert_eq!(
            views.chunk((GroupId(3), first.view, 0), 1 << 20, 1_000),
            Err(ApiError::NoBackupView { view: first.view })
        );
        assert_eq!(views.len(), 3);
    }
}

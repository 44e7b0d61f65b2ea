//! The engine's key spaces: it draws a fresh one for each snapshot ingested off the Raft loop
//! (`ingest`), and deletes in the background every space no range uses any more (the old
//! space of a range switched to an ingested one, an ingested space never switched to, a
//! destroyed range's drawn space), so the loop does not walk those records to delete them (it
//! still deletes a range kept in its group's own space when the range is destroyed or
//! cleared, and the records a split carves).
//!
//! A space being deleted is never written again: drawn spaces are never drawn twice, by one
//! engine or after a reopen (`sweep` draws past every space present or named), and a range that starts empty (opened without metadata, cleared, a split's right
//! half) takes a drawn space instead of its group's own while the latter is still being
//! deleted (`Spaces::for_new_range`). A crash loses the queue; the next open finds every space
//! no metadata names and queues it again (`sweep`).

use super::backend::{Backend, WriteOp};
use super::keys::{self, Space};
use super::meta::RangeMeta;
use crate::error::EngineError;
use flotilla_raft::GroupId;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How queued deletions run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DeletionMode {
    /// On a thread of the engine's, started at the first deletion.
    Background,
    /// At the next `Engine::sync` or `Engine::wait_for_deletions`, on the caller's thread (the
    /// engine model: the simulators replay runs, and a power loss can fall between a switch
    /// and the old space's deletion).
    AtSync,
}

/// The spaces of one engine: the next to draw, and the deletions queued or running.
pub(super) struct Spaces {
    next: AtomicU64,
    mode: DeletionMode,
    shared: Arc<Shared>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the deleting thread shares with the engine.
struct Shared {
    backend: Arc<Backend>,
    batch_bytes_max: usize,
    /// Spaces queued, in order.
    queue: Mutex<VecDeque<Space>>,
    /// Spaces queued or being deleted: never written to.
    deleting: Mutex<BTreeSet<Space>>,
    /// Signalled (with `queue`) when a space is queued or the engine closes.
    queued: Condvar,
    /// Signalled (with `deleting`) when a space's deletion finished.
    finished: Condvar,
    /// The engine is closing: the worker stops between two batches.
    stop: AtomicBool,
    /// Deletions finished since the engine opened.
    deleted: AtomicU64,
}

impl Spaces {
    pub(super) fn new(backend: Arc<Backend>, batch_bytes_max: usize, mode: DeletionMode) -> Self {
        Self {
            next: AtomicU64::new(keys::DRAWN_FIRST),
            mode,
            shared: Arc::new(Shared {
                backend,
                batch_bytes_max,
                queue: Mutex::default(),
                deleting: Mutex::default(),
                queued: Condvar::new(),
                finished: Condvar::new(),
                stop: AtomicBool::new(false),
                deleted: AtomicU64::new(0),
            }),
            worker: Mutex::default(),
        }
    }

    /// A space no range of this engine ever used.
    pub(super) fn draw(&self) -> Space {
        Space(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The space a range of `group` that starts empty takes: its group's own, unless that is
    /// still being deleted.
    pub(super) fn for_new_range(&self, group: GroupId) -> Space {
        let own = Space::of(group);
        if self.shared.deleting.lock().contains(&own) {
            return self.draw();
        }
        own
    }

    /// Queues `space` for deletion off the caller's thread.
    pub(super) fn delete_later(&self, space: Space) {
        if !self.shared.deleting.lock().insert(space) {
            return;
        }
        self.shared.queue.lock().push_back(space);
        self.shared.queued.notify_all();
        if self.mode == DeletionMode::Background {
            self.start_worker();
        }
    }

    /// Deletions finished since the engine opened.
    pub(super) fn deleted_count(&self) -> u64 {
        self.shared.deleted.load(Ordering::Relaxed)
    }

    /// Runs the queued deletions here (`AtSync`), or waits for the worker to finish them.
    pub(super) fn settle(&self) -> Result<(), EngineError> {
        match self.mode {
            DeletionMode::AtSync => {
                while let Some(space) = self.shared.pop() {
                    self.shared.delete(space)?;
                }
                Ok(())
            }
            DeletionMode::Background => {
                let mut deleting = self.shared.deleting.lock();
                while !deleting.is_empty() {
                    self.shared.finished.wait(&mut deleting);
                }
                Ok(())
            }
        }
    }

    /// Runs the queued deletions if they wait for a sync (`AtSync`).
    pub(super) fn at_sync(&self) -> Result<(), EngineError> {
        if self.mode == DeletionMode::AtSync {
            return self.settle();
        }
        Ok(())
    }

    fn start_worker(&self) {
        let mut worker = self.worker.lock();
        if worker.is_some() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("flotilla-engine-delete".to_owned())
            .spawn(move || shared.run());
        match spawned {
            Ok(handle) => *worker = Some(handle),
            // The spaces stay unreferenced: the next open deletes them.
            Err(error) => {
                tracing::warn!(%error, "no thread to delete unused engine spaces");
                while let Some(space) = self.shared.pop() {
                    self.shared.done(space);
                }
            }
        }
    }

    /// At open, before any range: every drawn space and every group's own space that no
    /// metadata names is queued for deletion, and the next space drawn is past every drawn
    /// space present and every one a metadata record names (a range that holds no record yet
    /// names a space nothing else shows). One seek per range and per drawn space.
    pub(super) fn sweep(&self) -> Result<(), EngineError> {
        let drawn = self.drawn_present()?;
        let (named, orphans, all_known) = self.named_spaces()?;
        if let Some(last) = drawn.last().max(named.last()) {
            self.next.store(last.0 + 1, Ordering::Relaxed);
        }
        for space in orphans {
            self.delete_later(space);
        }
        // A metadata record that does not decode might name any space: keep them all (opening
        // that range reports the damage).
        if all_known {
            for space in drawn.difference(&named) {
                self.delete_later(*space);
            }
        }
        Ok(())
    }

    /// The drawn spaces that hold a record.
    fn drawn_present(&self) -> Result<BTreeSet<Space>, EngineError> {
        let mut spaces = BTreeSet::new();
        let mut start = keys::drawn_start();
        let end = keys::drawn_end();
        while let Some(key) = self.shared.first_key(&start, &end)? {
            let Some(space) = keys::prefix_of(&key) else {
                break;
            };
            spaces.insert(Space(space));
            // Past the owner's prefix there is nothing to find.
            let Some(next) = space.checked_add(1) else {
                break;
            };
            start = keys::meta(GroupId(next));
        }
        Ok(spaces)
    }

    /// The drawn spaces the ranges' metadata names; the own spaces of ranges that name a drawn
    /// one yet still hold records there (a crash before their deletion finished); and whether
    /// every metadata record decoded.
    fn named_spaces(&self) -> Result<(BTreeSet<Space>, Vec<Space>, bool), EngineError> {
        let mut named = BTreeSet::new();
        let mut orphans = Vec::new();
        let mut all_known = true;
        let mut start = keys::meta(GroupId(0));
        let end = keys::drawn_start();
        loop {
            let mut found = None;
            self.shared
                .backend
                .scan(&start, &end, &mut |key, value| {
                    found = Some((key.to_vec(), value.to_vec()));
                    false
                })
                .map_err(super::backend_error("list the spaces its ranges use"))?;
            let Some((key, value)) = found else {
                return Ok((named, orphans, all_known));
            };
            let Some(group) = keys::prefix_of(&key).map(GroupId) else {
                return Ok((named, orphans, all_known));
            };
            if keys::is_meta(&key) {
                match RangeMeta::decode(&value) {
                    Ok(RangeMeta {
                        space: Some(space), ..
                    }) => {
                        named.insert(space);
                        let (own_start, own_end) = keys::space_records(Space::of(group));
                        if self.shared.first_key(&own_start, &own_end)?.is_some() {
                            orphans.push(Space::of(group));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => all_known = false,
                }
            }
            let Some(next) = group.0.checked_add(1) else {
                return Ok((named, orphans, all_known));
            };
            start = keys::meta(GroupId(next));
        }
    }

    /// Stops the worker (the engine closes): it ends between two batches; what it left is
    /// unreferenced, and the next open deletes it.
    fn close(&self) {
        {
            // Under the queue's lock, so the worker cannot miss it between its check and its
            // wait.
            let _queue = self.shared.queue.lock();
            self.shared.stop.store(true, Ordering::Release);
            self.shared.queued.notify_all();
        }
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Spaces {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn pop(&self) -> Option<Space> {
        self.queue.lock().pop_front()
    }

    /// The worker: deletes queued spaces until the engine closes.
    fn run(&self) {
        loop {
            let space = {
                let mut queue = self.queue.lock();
                loop {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Some(space) = queue.pop_front() {
                        break space;
                    }
                    self.queued.wait(&mut queue);
                }
            };
            if let Err(error) = self.delete(space) {
                // Left unreferenced: the next open queues it again.
                tracing::warn!(space = space.0, %error, "could not delete an unused engine space");
                self.done(space);
            }
        }
    }

    /// Deletes `space`'s records in batches of at most `batch_bytes_max` key bytes, each walk
    /// starting after the last key deleted; stops early if the engine closes.
    fn delete(&self, space: Space) -> Result<(), EngineError> {
        let (mut start, end) = keys::space_records(space);
        while !self.stop.load(Ordering::Acquire) {
            let Some(last) = delete_batch(&self.backend, &start, &end, self.batch_bytes_max)?
            else {
                break;
            };
            start = last;
            // The smallest key after the last one deleted.
            start.push(0);
        }
        self.done(space);
        Ok(())
    }

    fn done(&self, space: Space) {
        self.deleting.lock().remove(&space);
        self.deleted.fetch_add(1, Ordering::Relaxed);
        self.finished.notify_all();
    }

    /// The first key in `[start, end)`.
    fn first_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let mut found = None;
        self.backend
            .scan(start, end, &mut |key, _| {
                found = Some(key.to_vec());
                false
            })
            .map_err(super::backend_error("walk its spaces"))?;
        Ok(found)
    }
}

/// Deletes the keys from `start` below `end`, up to `bytes_max` key bytes of them, in one
/// batch; the last key deleted, `None` if there was none.
pub(super) fn delete_batch(
    backend: &Backend,
    start: &[u8],
    end: &[u8],
    bytes_max: usize,
) -> Result<Option<Vec<u8>>, EngineError> {
    let mut batch: Vec<WriteOp> = Vec::new();
    let mut bytes = 0usize;
    backend
        .scan(start, end, &mut |key, _| {
            bytes = bytes.saturating_add(key.len());
            batch.push((key.to_vec(), None));
            bytes < bytes_max
        })
        .map_err(super::backend_error("walk a range to delete it"))?;
    let Some((last, _)) = batch.last() else {
        return Ok(None);
    };
    let last = last.clone();
    backend
        .commit(batch)
        .map_err(super::backend_error("commit a batch"))?;
    Ok(Some(last))
}

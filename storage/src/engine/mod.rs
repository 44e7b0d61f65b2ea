//! The node's one embedded ordered engine for applied data: every range's pairs, sessions and
//! applied entry, keyed by the range's group id (`keys`), each entry's effects committed in one
//! atomic batch with its applied entry.
//!
//! Durability: the Raft WAL is the only log synced per write. A batch here is handed to the OS
//! but not synced, so after a crash a range may be behind the WAL, never ahead of it and never
//! between two entries: recovery opens the range at its applied entry and replays the WAL from
//! the next one. `Engine::sync` makes everything applied durable; the WAL may be compacted only
//! up to what a completed `sync` covered.
//!
//! Crash assumptions: a batch is atomic, and the engine recovers a prefix of the committed
//! batches in commit order (its own journal gives both).
//!
//! A received snapshot is ingested off the Raft loop into a fresh key space (`ingest`) and the
//! range switched to it with one write of its metadata record; spaces no range uses any more
//! are deleted in the background (`spaces`).

mod backend;
mod batch;
mod config;
mod ingest;
mod keys;
mod machine;
mod meta;
#[cfg(any(test, feature = "testing"))]
mod model;
mod rows;
mod spaces;
mod view;

pub use config::{CACHE_BYTES_MIN, EngineConfig, EngineConfigError};
pub use ingest::IngestedRange;
pub use machine::DiskStateMachine;
#[cfg(any(test, feature = "testing"))]
pub use model::{EngineModel, ModelError};

use crate::error::EngineError;
use backend::{Backend, BackendError, FjallBackend, WriteOp};
use flotilla_raft::GroupId;
use keys::Space;
use parking_lot::Mutex;
use spaces::{DeletionMode, Spaces};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The engine of one node, shared by all its ranges (cheap to clone).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<Backend>,
    /// The spaces drawn for ingested snapshots and the deletions of unused ones.
    spaces: Spaces,
    config: EngineConfig,
    /// Where fjall keeps its files; none for the model.
    directory: Option<PathBuf>,
    /// The ranges with a live `DiskStateMachine`.
    open: Mutex<BTreeSet<GroupId>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("directory", &self.inner.directory)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn backend_error(operation: &'static str) -> impl FnOnce(BackendError) -> EngineError {
    move |source| EngineError::Backend { operation, source }
}

impl Engine {
    /// Opens the engine in `directory`, creating it if it is new.
    ///
    /// # Errors
    /// The configuration is invalid, or the engine could not open or recover its files.
    pub fn open(directory: &Path, config: EngineConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let backend = FjallBackend::open(directory, &config).map_err(backend_error("open"))?;
        Self::with(
            Backend::Fjall(backend),
            config,
            Some(directory.to_path_buf()),
        )
    }

    /// Opens the engine on what `model`'s disk holds (after `EngineModel::crash`, what
    /// survived it). Engines opened on it before are refused from now on, as a restarted
    /// process replaces the one before. Unused spaces are deleted at `sync` or
    /// `wait_for_deletions`, not on a thread, so runs replay.
    ///
    /// # Errors
    /// The configuration is invalid.
    #[cfg(any(test, feature = "testing"))]
    pub fn open_model(model: &EngineModel, config: EngineConfig) -> Result<Self, EngineError> {
        config.validate()?;
        Self::with(Backend::Model(model.open()), config, None)
    }

    /// The engine over `backend`, its unused spaces queued for deletion.
    fn with(
        backend: Backend,
        config: EngineConfig,
        directory: Option<PathBuf>,
    ) -> Result<Self, EngineError> {
        let mode = match backend {
            Backend::Fjall(_) => DeletionMode::Background,
            #[cfg(any(test, feature = "testing"))]
            Backend::Model(_) => DeletionMode::AtSync,
        };
        let backend = Arc::new(backend);
        let spaces = Spaces::new(Arc::clone(&backend), config.batch_bytes_max, mode);
        spaces.sweep()?;
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                spaces,
                config,
                directory,
                open: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// The limits the engine runs with.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Opens the state machine of `group` at the applied entry the engine holds (index 0 for a
    /// range it never saw). Leftovers of an install or deletion a crash interrupted are
    /// deleted first.
    ///
    /// # Errors
    /// The range is already open, a record of it is damaged, or the engine failed.
    pub fn open_range(&self, group: GroupId) -> Result<DiskStateMachine, EngineError> {
        if !keys::is_group_id(group) {
            return Err(EngineError::GroupIdOutOfRange(group));
        }
        if !self.register(group) {
            return Err(EngineError::AlreadyOpen(group));
        }
        DiskStateMachine::open(self.clone(), group)
    }

    /// Deletes every record of `group`, in batches (a destroyed replica). The range must not
    /// be open; `StateMachine::clear` deletes an open one.
    ///
    /// # Errors
    /// The range is open, or the engine failed.
    pub fn destroy_range(&self, group: GroupId) -> Result<(), EngineError> {
        if self.inner.open.lock().contains(&group) {
            return Err(EngineError::AlreadyOpen(group));
        }
        // A record that does not decode names no space we can trust: its own is deleted, and
        // a drawn one it named, no longer named, goes at the next open.
        let space = machine::load_meta(&self.backend().view(), group)
            .ok()
            .flatten()
            .map_or(Space::of(group), |meta| meta.space_of(group));
        self.delete_range(group, space)
    }

    /// The group of every range that holds a record in the engine, in order: what a node
    /// compares with the replicas it still has, to destroy the ranges left by a replica removed
    /// while it was down. One seek per range; the drawn spaces are not ranges.
    ///
    /// # Errors
    /// The engine failed.
    pub fn range_ids(&self) -> Result<Vec<GroupId>, EngineError> {
        let mut groups = Vec::new();
        let mut start = keys::meta(GroupId(0));
        let end = keys::drawn_start();
        loop {
            let mut found = None;
            self.backend()
                .scan(&start, &end, &mut |key, _| {
                    found = keys::prefix_of(key).map(GroupId);
                    false
                })
                .map_err(backend_error("list its ranges"))?;
            let Some(group) = found else {
                return Ok(groups);
            };
            groups.push(group);
            let Some(next) = group.0.checked_add(1) else {
                return Ok(groups);
            };
            start = keys::meta(GroupId(next));
        }
    }

    /// The snapshot of `group` at the engine's applied entry, encoded whole in memory (a test
    /// or a small range; `write_range_snapshot` streams one to a file).
    ///
    /// # Errors
    /// `NoSnapshot` if the range holds no state or names no members, or the engine failed.
    pub fn range_snapshot(
        &self,
        group: GroupId,
        chunk_bytes_max: usize,
    ) -> Result<flotilla_raft::Snapshot, EngineError> {
        let (meta, mut range) = self.range_view(group)?;
        let data = crate::snapshot::encode_view(&mut range, chunk_bytes_max)?;
        Ok(flotilla_raft::Snapshot { meta, data })
    }

    /// Streams the snapshot of `group` at the engine's applied entry into `file` from one read
    /// view, `chunk_bytes_max` bytes of pairs at a time (memory never holds the range); returns
    /// what it covers and its length. Runs off the Raft loop while the range goes on applying.
    ///
    /// # Errors
    /// `NoSnapshot` if the range holds no state or names no members, `SnapshotFile` if the
    /// file failed, or the engine failed.
    pub fn write_range_snapshot(
        &self,
        group: GroupId,
        chunk_bytes_max: usize,
        file: &dyn crate::file::SegmentFile,
    ) -> Result<(flotilla_raft::SnapshotMeta, u64), EngineError> {
        let (meta, mut range) = self.range_view(group)?;
        let length = crate::snapshot::write_view_at(file, &mut range, chunk_bytes_max)?
            .map_err(|source| EngineError::SnapshotFile { group, source })?;
        Ok((meta, length))
    }

    /// `group`'s snapshot view at the engine's applied entry, and what its snapshot covers.
    fn range_view(
        &self,
        group: GroupId,
    ) -> Result<(flotilla_raft::SnapshotMeta, view::DiskView), EngineError> {
        let view = self.backend().view();
        let meta = machine::load_meta(&view, group)?.ok_or(EngineError::NoSnapshot {
            group,
            reason: "it holds no state",
        })?;
        let membership = meta.membership.clone().ok_or(EngineError::NoSnapshot {
            group,
            reason: "it names no members",
        })?;
        let sessions = machine::load_sessions(&view, group, &meta)?;
        let last = meta.applied();
        let range = view::DiskView::new(group, meta, Arc::new(sessions), view);
        Ok((flotilla_raft::SnapshotMeta { last, membership }, range))
    }

    /// Binds the engine to the data directory `directory_id`: a new engine (no range in it)
    /// records it, durably; an engine that records another, or holds ranges but records none,
    /// is refused, so a node never starts on ranges that are not its own.
    ///
    /// # Errors
    /// `NotOwn`, or the engine failed.
    pub fn bind(&self, directory_id: u128) -> Result<(), EngineError> {
        let recorded = self
            .backend()
            .get(&keys::owner())
            .map_err(backend_error("read the engine's owner"))?;
        match recorded {
            Some(bytes) if bytes == directory_id.to_be_bytes() => Ok(()),
            Some(bytes) => Err(EngineError::NotOwn {
                directory_id,
                recorded: hex(&bytes),
            }),
            None if !self.range_ids()?.is_empty() => Err(EngineError::NotOwn {
                directory_id,
                recorded: "no owner".to_owned(),
            }),
            None => {
                self.commit(vec![(
                    keys::owner(),
                    Some(directory_id.to_be_bytes().to_vec()),
                )])?;
                self.sync()
            }
        }
    }

    /// Makes every batch committed so far durable (one sync of the engine's journal). On the
    /// engine model, the deletions of unused spaces run first.
    ///
    /// # Errors
    /// The engine failed.
    pub fn sync(&self) -> Result<(), EngineError> {
        self.inner.spaces.at_sync()?;
        self.inner.backend.sync().map_err(backend_error("sync"))
    }

    /// Waits until every unused space queued for deletion is deleted (on the engine model,
    /// deletes them here).
    ///
    /// # Errors
    /// The engine failed.
    pub fn wait_for_deletions(&self) -> Result<(), EngineError> {
        self.inner.spaces.settle()
    }

    /// Unused spaces deleted since the engine opened (those it found at open included).
    #[must_use]
    pub fn spaces_deleted(&self) -> u64 {
        self.inner.spaces.deleted_count()
    }

    /// The bytes the engine's files take on disk.
    ///
    /// # Errors
    /// The engine failed to measure them.
    pub fn disk_bytes(&self) -> Result<u64, EngineError> {
        self.inner
            .backend
            .disk_bytes()
            .map_err(backend_error("measure its files"))
    }

    /// Deletes `group`'s range whose records live in `space`: the metadata record first, in
    /// its own batch, then the records under the group's own id in batches of at most
    /// `batch_bytes_max` (a crash midway leaves a range without metadata, which `open_range`
    /// finishes deleting); a drawn space, unreferenced once the metadata is gone, is deleted
    /// in the background.
    pub(crate) fn delete_range(&self, group: GroupId, space: Space) -> Result<(), EngineError> {
        self.commit(vec![(keys::meta(group), None)])?;
        if space.is_drawn() {
            self.delete_space_later(space);
        }
        self.delete_records(group)
    }

    /// Deletes whatever records `group`'s own id keys, in batches of at most
    /// `batch_bytes_max` key bytes; each walk starts after the last key deleted, not over the
    /// tombstones before it. Commits nothing for a range with no records.
    pub(crate) fn delete_records(&self, group: GroupId) -> Result<(), EngineError> {
        let (mut start, end) = keys::whole_range(group);
        let limit = self.inner.config.batch_bytes_max;
        while let Some(mut last) = spaces::delete_batch(self.backend(), &start, &end, limit)? {
            // The smallest key after the last one deleted.
            last.push(0);
            start = last;
        }
        Ok(())
    }

    /// Queues `space`, which no range uses any more, for deletion in the background.
    pub(crate) fn delete_space_later(&self, space: Space) {
        self.inner.spaces.delete_later(space);
    }

    /// The space a range of `group` that starts empty takes (`Spaces::for_new_range`).
    pub(crate) fn space_for_new_range(&self, group: GroupId) -> Space {
        self.inner.spaces.for_new_range(group)
    }

    pub(crate) fn commit(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        self.inner
            .backend
            .commit(ops)
            .map_err(backend_error("commit a batch"))
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Marks `group` open; false if a machine of it is open already.
    pub(crate) fn register(&self, group: GroupId) -> bool {
        self.inner.open.lock().insert(group)
    }

    /// `group`'s state machine was dropped.
    pub(crate) fn release(&self, group: GroupId) {
        self.inner.open.lock().remove(&group);
    }
}

/// Counting what the engine holds, for the engine's tests: what a range, a space or a
/// deletion left behind.
#[cfg(test)]
impl Engine {
    /// How many records the engine holds from `start` below `end`.
    pub(crate) fn records_between(&self, start: &[u8], end: &[u8]) -> usize {
        let mut count = 0;
        self.backend()
            .scan(start, end, &mut |_, _| {
                count += 1;
                true
            })
            .expect("the engine can be read");
        count
    }

    /// How many records `space` holds (pairs and sessions).
    pub(crate) fn records_in(&self, space: Space) -> usize {
        let (start, end) = keys::space_records(space);
        self.records_between(&start, &end)
    }
}

/// `bytes` in hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new engine takes its data directory's id; the same directory opens it again, another
    /// one is refused, and so is an engine that holds ranges but records no owner.
    #[test]
    fn an_engine_serves_only_the_directory_it_belongs_to() {
        let directory = tempfile::tempdir().unwrap();
        let open = || Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
        let engine = open();
        engine.bind(7).unwrap();
        engine.bind(7).unwrap();
        let refused = engine.bind(8).unwrap_err();
        assert!(
            matches!(
                refused,
                EngineError::NotOwn {
                    directory_id: 8,
                    ..
                }
            ),
            "{refused}"
        );
        assert!(refused.to_string().contains("another node's ranges"));
        drop(engine);
        open().bind(7).unwrap();

        let unowned = tempfile::tempdir().unwrap();
        let engine = Engine::open(unowned.path(), EngineConfig::small_for_tests()).unwrap();
        engine
            .commit(vec![(keys::meta(GroupId(3)), Some(vec![1]))])
            .unwrap();
        assert!(matches!(engine.bind(7), Err(EngineError::NotOwn { .. })));
    }
}

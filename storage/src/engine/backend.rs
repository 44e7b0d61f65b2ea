//! The embedded engine behind the five operations the state machines need: read a key, walk a
//! key range, commit a batch atomically, open a read view, and make everything committed
//! durable. fjall, an LSM tree with its own journal; `docs/decisions/state-machine-engine.md`
//! says why, and what redb measured.

use super::config::EngineConfig;
use fjall::Readable;
use std::path::Path;

/// What the engine failed with.
pub(crate) type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// One operation of a batch: set a key, or remove it (`None`).
pub(crate) type WriteOp = (Vec<u8>, Option<Vec<u8>>);

/// The one keyspace every range's records live in.
const KEYSPACE: &str = "ranges";

/// An open engine.
pub(crate) struct Backend {
    database: fjall::Database,
    tree: fjall::Keyspace,
}

/// A consistent read view of the engine at one moment (a sequence number: the view costs
/// nothing until the engine compacts what it still sees).
pub(crate) struct BackendView {
    snapshot: fjall::Snapshot,
    tree: fjall::Keyspace,
}

impl Backend {
    /// Opens (or creates) the engine in `directory`, replaying its journal.
    pub(crate) fn open(directory: &Path, config: &EngineConfig) -> Result<Self, BackendError> {
        let database = fjall::Database::builder(directory)
            .cache_size(config.cache_bytes)
            .worker_threads(config.background_threads)
            .manual_journal_persist(!config.flush_each_batch)
            .open()?;
        let write_buffer_bytes = config.write_buffer_bytes;
        let tree = database.keyspace(KEYSPACE, || {
            fjall::KeyspaceCreateOptions::default().max_memtable_size(write_buffer_bytes)
        })?;
        Ok(Self { database, tree })
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.tree.get(key)?.map(|value| value.to_vec()))
    }

    /// Calls `visit` with the pairs in `[start, end)` in key order until it returns false.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        self.view().scan(start, end, visit)
    }

    /// Commits `ops` atomically: after a crash the engine holds all of them or none, and every
    /// batch committed before them. Not synced: `sync` makes it durable.
    pub(crate) fn commit(&self, ops: Vec<WriteOp>) -> Result<(), BackendError> {
        let mut batch = self.database.batch();
        for (key, value) in ops {
            match value {
                Some(value) => batch.insert(&self.tree, key, value),
                None => batch.remove(&self.tree, key),
            }
        }
        Ok(batch.commit()?)
    }

    /// A read view of everything committed so far.
    pub(crate) fn view(&self) -> BackendView {
        BackendView {
            snapshot: self.database.snapshot(),
            tree: self.tree.clone(),
        }
    }

    /// Makes every committed batch durable.
    pub(crate) fn sync(&self) -> Result<(), BackendError> {
        Ok(self.database.persist(fjall::PersistMode::SyncData)?)
    }

    /// The bytes the engine's files take on disk, its journal included.
    pub(crate) fn disk_bytes(&self) -> Result<u64, BackendError> {
        Ok(self.database.disk_space()?)
    }
}

impl BackendView {
    /// Calls `visit` with the pairs in `[start, end)` in key order until it returns false.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        for guard in self.snapshot.range(&self.tree, start..end) {
            let (key, value) = guard.into_inner()?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }
}

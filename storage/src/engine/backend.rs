//! The embedded engine behind the five operations the state machines need: read a key, walk a
//! key range, commit a batch atomically, open a read view, and make everything committed
//! durable. fjall, an LSM tree with its own journal; `docs/decisions/state-machine-engine.md`
//! says why, and what redb measured. The crash tests and simulators run the same operations on
//! `EngineModel`, a disk in memory that loses unsynced batches at a simulated power loss.

use super::config::EngineConfig;
#[cfg(any(test, feature = "testing"))]
use super::model::{ModelBackend, ModelView};
use fjall::Readable;
use std::path::Path;

/// What the engine failed with.
pub(crate) type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// One operation of a batch: set a key, or remove it (`None`).
pub(crate) type WriteOp = (Vec<u8>, Option<Vec<u8>>);

/// The one keyspace every range's records live in.
const KEYSPACE: &str = "ranges";

/// An open engine: fjall, or the in-memory model.
pub(crate) enum Backend {
    /// fjall in a directory.
    Fjall(FjallBackend),
    /// A disk in memory that loses unsynced batches at a simulated power loss.
    #[cfg(any(test, feature = "testing"))]
    Model(ModelBackend),
}

/// A consistent read view of the engine at one moment; commits after it neither change it nor
/// wait for it.
pub(crate) enum BackendView {
    /// fjall's snapshot.
    Fjall(FjallView),
    /// The model's image at that moment.
    #[cfg(any(test, feature = "testing"))]
    Model(ModelView),
}

impl Backend {
    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        match self {
            Self::Fjall(fjall) => fjall.get(key),
            #[cfg(any(test, feature = "testing"))]
            Self::Model(model) => model.get(key),
        }
    }

    /// Calls `visit` with the pairs in `[start, end)` in key order until it returns false.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        match self {
            Self::Fjall(fjall) => fjall.view().scan(start, end, visit),
            #[cfg(any(test, feature = "testing"))]
            Self::Model(model) => model.scan(start, end, visit),
        }
    }

    /// Commits `ops` atomically: after a crash the engine holds all of them or none, and every
    /// batch committed before them. Not synced: `sync` makes it durable.
    pub(crate) fn commit(&self, ops: Vec<WriteOp>) -> Result<(), BackendError> {
        match self {
            Self::Fjall(fjall) => fjall.commit(ops),
            #[cfg(any(test, feature = "testing"))]
            Self::Model(model) => model.commit(ops),
        }
    }

    /// A read view of everything committed so far.
    pub(crate) fn view(&self) -> BackendView {
        match self {
            Self::Fjall(fjall) => BackendView::Fjall(fjall.view()),
            #[cfg(any(test, feature = "testing"))]
            Self::Model(model) => BackendView::Model(model.view()),
        }
    }

    /// Makes every committed batch durable.
    pub(crate) fn sync(&self) -> Result<(), BackendError> {
        match self {
            Self::Fjall(fjall) => fjall.sync(),
            #[cfg(any(test, feature = "testing"))]
            Self::Model(model) => model.sync(),
        }
    }

    /// The bytes the engine's files take on disk, its journal included (for the model, the key
    /// and value bytes it holds).
    pub(crate) fn disk_bytes(&self) -> Result<u64, BackendError> {
        match self {
            Self::Fjall(fjall) => fjall.disk_bytes(),
            #[cfg(any(test, feature = "testing"))]
            Self::Model(model) => model.disk_bytes(),
        }
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
        match self {
            Self::Fjall(fjall) => fjall.scan(start, end, visit),
            #[cfg(any(test, feature = "testing"))]
            Self::Model(model) => model.scan(start, end, visit),
        }
    }
}

/// fjall, open in a directory.
pub(crate) struct FjallBackend {
    database: fjall::Database,
    tree: fjall::Keyspace,
}

/// A fjall read view at one moment (a sequence number: the view costs nothing until the
/// engine compacts what it still sees).
pub(crate) struct FjallView {
    snapshot: fjall::Snapshot,
    tree: fjall::Keyspace,
}

impl FjallBackend {
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
    pub(crate) fn view(&self) -> FjallView {
        FjallView {
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

impl FjallView {
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

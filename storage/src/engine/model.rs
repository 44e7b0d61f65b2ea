//! A deterministic in-memory stand-in for the engine's disk, so the crash tests and the
//! simulators can lose power under the disk state machines the way `CrashFs` does under the
//! WAL. It keeps fjall's promise and nothing more: a batch is atomic, and a power loss keeps
//! what the last sync covered plus a prefix of the batches committed after it, in commit order.

use super::backend::{BackendError, WriteOp};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use thiserror::Error;

/// The ordered pairs of one image of the model's disk.
type Pairs = BTreeMap<Vec<u8>, Vec<u8>>;

/// Why an engine on the model failed.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The model crashed, or another engine opened on it, since this engine opened.
    #[error(
        "the engine model lost power or was reopened since this engine opened; it belongs to a \
         process that no longer runs"
    )]
    Stale,
}

/// The disk of the engine model (cheap to clone: clones share one disk).
///
/// Calling order: `Engine::open_model(&model, config)`, use the engine (its batches are
/// committed here, unsynced, until `Engine::sync`), then `crash(keep)` to cut the power and
/// `Engine::open_model` again on the same model to recover. `fork` copies the disk as it stands,
/// so one moment can be crashed with every `keep` in turn.
#[derive(Clone, Debug, Default)]
pub struct EngineModel {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Clone, Debug, Default)]
struct Disk {
    /// What the last sync covered: what survives any power loss.
    durable: Pairs,
    /// The batches committed since the last sync, in commit order.
    unsynced: Vec<Vec<WriteOp>>,
    /// `durable` with every unsynced batch applied: what reads see. Shared with the read views
    /// opened since the last commit; a commit copies it first if one is still alive.
    live: Arc<Pairs>,
    /// The key and value bytes of `live`.
    live_bytes: u64,
    /// Bumped by every crash and every open: an engine from an older process is refused.
    process: u64,
}

impl EngineModel {
    /// An empty disk.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power loss: the disk keeps what the last sync covered plus the first `keep`
    /// batches committed after it (all of them if `keep` exceeds their count); engines opened
    /// before fail every call from now on.
    pub fn crash(&self, keep: usize) {
        let mut disk = self.disk.lock();
        let unsynced = std::mem::take(&mut disk.unsynced);
        for batch in unsynced.into_iter().take(keep) {
            apply(&mut disk.durable, batch);
        }
        disk.live = Arc::new(disk.durable.clone());
        disk.live_bytes = pair_bytes(&disk.live);
        disk.process += 1;
    }

    /// The batches committed since the last sync: a crash keeps a prefix of them, of length
    /// `0..=unsynced_batch_count()`.
    #[must_use]
    pub fn unsynced_batch_count(&self) -> usize {
        self.disk.lock().unsynced.len()
    }

    /// An independent copy of the disk as it stands now, unsynced batches included. Engines
    /// open on `self` never touch the copy.
    #[must_use]
    pub fn fork(&self) -> Self {
        let mut disk = self.disk.lock().clone();
        disk.live = Arc::new(Pairs::clone(&disk.live));
        Self {
            disk: Arc::new(Mutex::new(disk)),
        }
    }

    /// Opens the disk for a new process: engines opened before are refused from now on.
    pub(crate) fn open(&self) -> ModelBackend {
        let mut disk = self.disk.lock();
        disk.process += 1;
        ModelBackend {
            model: self.clone(),
            process: disk.process,
        }
    }
}

/// An engine's handle on the model, valid until the next crash or open.
pub(crate) struct ModelBackend {
    model: EngineModel,
    process: u64,
}

/// A read view of the model: the image reads saw when it opened.
pub(crate) struct ModelView {
    pairs: Arc<Pairs>,
}

impl ModelBackend {
    /// Locks the disk if this handle's process still owns it.
    fn disk(&self) -> Result<parking_lot::MutexGuard<'_, Disk>, BackendError> {
        let disk = self.model.disk.lock();
        if disk.process != self.process {
            return Err(Box::new(ModelError::Stale));
        }
        Ok(disk)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.disk()?.live.get(key).cloned())
    }

    pub(crate) fn commit(&self, ops: Vec<WriteOp>) -> Result<(), BackendError> {
        let mut disk = self.disk()?;
        let disk = &mut *disk;
        let live = Arc::make_mut(&mut disk.live);
        for (key, value) in &ops {
            let old = match value {
                Some(value) => live.insert(key.clone(), value.clone()),
                None => live.remove(key),
            };
            let old_bytes = old.map_or(0, |old| key.len() + old.len());
            let new_bytes = value.as_ref().map_or(0, |value| key.len() + value.len());
            disk.live_bytes = disk.live_bytes + new_bytes as u64 - old_bytes as u64;
        }
        disk.unsynced.push(ops);
        Ok(())
    }

    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        let pairs = Arc::clone(&self.disk()?.live);
        ModelView { pairs }.scan(start, end, visit)
    }

    /// Not refused after a crash: what a dead process's view reads harms nothing.
    pub(crate) fn view(&self) -> ModelView {
        ModelView {
            pairs: Arc::clone(&self.model.disk.lock().live),
        }
    }

    pub(crate) fn sync(&self) -> Result<(), BackendError> {
        let mut disk = self.disk()?;
        for batch in std::mem::take(&mut disk.unsynced) {
            apply(&mut disk.durable, batch);
        }
        Ok(())
    }

    /// The key and value bytes the disk holds.
    pub(crate) fn disk_bytes(&self) -> Result<u64, BackendError> {
        Ok(self.disk()?.live_bytes)
    }
}

impl ModelView {
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        // `BTreeMap::range` panics on a reversed range; fjall yields nothing.
        if start >= end {
            return Ok(());
        }
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        for (key, value) in self.pairs.range::<[u8], _>(bounds) {
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
    }
}

fn apply(pairs: &mut Pairs, batch: Vec<WriteOp>) {
    for (key, value) in batch {
        match value {
            Some(value) => pairs.insert(key, value),
            None => pairs.remove(&key),
        };
    }
}

fn pair_bytes(pairs: &Pairs) -> u64 {
    pairs
        .iter()
        .map(|(key, value)| (key.len() + value.len()) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulators hand one model to every thread of a node.
    const _: () = {
        const fn shared<T: Clone + Send + Sync>() {}
        shared::<EngineModel>();
    };

    fn put(key: &str, value: &str) -> WriteOp {
        (key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))
    }

    fn delete(key: &str) -> WriteOp {
        (key.as_bytes().to_vec(), None)
    }

    fn read(backend: &ModelBackend, key: &str) -> Option<String> {
        let value = backend.get(key.as_bytes()).unwrap()?;
        Some(String::from_utf8(value).unwrap())
    }

    fn all(view: &ModelView) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut pairs = Vec::new();
        view.scan(b"", &[0xff], &mut |key, value| {
            pairs.push((key.to_vec(), value.to_vec()));
            true
        })
        .unwrap();
        pairs
    }

    #[test]
    fn a_crash_keeps_the_synced_state_and_a_prefix_of_the_batches_after_it() {
        for keep in 0..4 {
            let model = EngineModel::new();
            let backend = model.open();
            backend.commit(vec![put("a", "1")]).unwrap();
            backend.sync().unwrap();
            backend.commit(vec![put("a", "2"), put("b", "2")]).unwrap();
            backend.commit(vec![delete("a")]).unwrap();
            backend.commit(vec![put("c", "3")]).unwrap();
            assert_eq!(model.unsynced_batch_count(), 3);
            model.crash(keep);
            let backend = model.open();
            let found: Vec<_> = ["a", "b", "c"].map(|key| read(&backend, key)).into();
            let expected = match keep {
                0 => [Some("1"), None, None],
                1 => [Some("2"), Some("2"), None],
                2 => [None, Some("2"), None],
                _ => [None, Some("2"), Some("3")],
            }
            .map(|value| value.map(String::from));
            assert_eq!(found, expected, "keep {keep}");
            assert_eq!(model.unsynced_batch_count(), 0);
        }
    }

    #[test]
    fn an_engine_from_before_a_crash_or_a_reopen_is_refused() {
        let model = EngineModel::new();
        let old = model.open();
        model.crash(0);
        assert!(old.commit(vec![put("a", "1")]).is_err());
        let newer = model.open();
        let newest = model.open();
        assert!(newer.get(b"a").is_err());
        newest.commit(vec![put("a", "1")]).unwrap();
        assert_eq!(read(&newest, "a").as_deref(), Some("1"));
    }

    #[test]
    fn a_view_keeps_its_image_while_commits_go_on() {
        let model = EngineModel::new();
        let backend = model.open();
        backend.commit(vec![put("a", "1"), put("b", "1")]).unwrap();
        let view = backend.view();
        backend.commit(vec![delete("a"), put("c", "1")]).unwrap();
        assert_eq!(all(&view).len(), 2);
        assert_eq!(all(&view)[0].0, b"a");
        assert_eq!(all(&backend.view()).len(), 2);
        assert_eq!(read(&backend, "a"), None);
    }

    #[test]
    fn a_fork_shares_nothing_and_bytes_follow_the_pairs() {
        let model = EngineModel::new();
        let backend = model.open();
        backend.commit(vec![put("ab", "123")]).unwrap();
        assert_eq!(backend.disk_bytes().unwrap(), 5);
        let fork = model.fork();
        backend.commit(vec![put("ab", "1"), put("c", "")]).unwrap();
        assert_eq!(backend.disk_bytes().unwrap(), 4);
        fork.crash(0);
        assert_eq!(fork.open().disk_bytes().unwrap(), 0);
        assert_eq!(backend.disk_bytes().unwrap(), 4, "the original goes on");
        let empty = backend.view();
        let mut visited = 0;
        empty
            .scan(b"z", b"a", &mut |_, _| {
                visited += 1;
                true
            })
            .unwrap();
        assert_eq!(visited, 0, "a reversed range is empty");
    }
}

//! Snapshots read to be sent, loaded off the caller's thread. A leader sends a follower that
//! fell behind its log (or a new replica, a learner added by a move) the group's last snapshot,
//! which lives in a file of the data directory. Reading and checking that file on the Raft loop
//! held up every group of the node for as long as the file took, so a large one is loaded
//! elsewhere: the first ask starts the load and is answered `SnapshotTemporarilyUnavailable`,
//! which Raft already handles (it asks again at the follower's next heartbeat answer), and a
//! later ask takes the loaded snapshot.
//!
//! Snapshots up to `LogConfig::snapshot_inline_bytes_max` are read at once, as before: a small
//! file costs less than the round trip. At most `LogConfig::snapshot_loads_max` snapshots are
//! loading or loaded and not yet taken, so what this holds is bounded by that many snapshot
//! files; a loaded snapshot no group took is evicted for a new load, and one whose group
//! compacted past it is dropped when the group next asks.

use super::body::SnapshotMarker;
use flotilla_raft::{GroupId, LogError, LogIndex, Snapshot};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Where a snapshot too large to read inline is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotLoading {
    /// On a thread of its own (a real node).
    Background,
    /// On the next ask, by the caller (deterministic: the simulator, whose runs must replay,
    /// still takes the path where the first ask finds the snapshot unavailable).
    NextAsk,
}

/// The loads of one engine.
pub(crate) struct SnapshotLoads {
    loading: SnapshotLoading,
    slots_max: usize,
    slots: Arc<Mutex<FxHashMap<GroupId, Slot>>>,
}

/// One group's load, for the snapshot at `index`.
enum Slot {
    Loading {
        index: LogIndex,
    },
    Loaded {
        index: LogIndex,
        result: Result<Snapshot, LogError>,
    },
}

impl Slot {
    fn index(&self) -> LogIndex {
        match self {
            Slot::Loading { index } | Slot::Loaded { index, .. } => *index,
        }
    }
}

impl SnapshotLoads {
    pub(crate) fn new(loading: SnapshotLoading, slots_max: usize) -> Self {
        Self {
            loading,
            slots_max,
            slots: Arc::default(),
        }
    }

    /// `group`'s snapshot described by `marker`: taken if loaded, else its load is started (or
    /// left running) and the answer is `SnapshotTemporarilyUnavailable`. `load` reads the file.
    pub(crate) fn take_or_start(
        &self,
        group: GroupId,
        marker: &SnapshotMarker,
        load: impl FnOnce() -> Result<Snapshot, LogError> + Send + 'static,
    ) -> Result<Snapshot, LogError> {
        let index = marker.index();
        let mut slots = self.slots.lock();
        match slots.remove(&group) {
            Some(Slot::Loaded {
                index: loaded,
                result,
            }) if loaded == index => return result,
            Some(Slot::Loading { index: loading }) if loading == index => {
                if self.loading == SnapshotLoading::NextAsk {
                    drop(slots);
                    return load();
                }
                slots.insert(group, Slot::Loading { index });
                return Err(LogError::SnapshotTemporarilyUnavailable);
            }
            // Nothing yet, or an older snapshot (its load, if still running, finds its slot
            // gone and drops what it read).
            _ => {}
        }
        if slots.len() >= self.slots_max {
            let evicted = slots
                .iter()
                .find(|(_, slot)| matches!(slot, Slot::Loaded { .. }))
                .map(|(&evicted, _)| evicted);
            match evicted {
                Some(evicted) => {
                    slots.remove(&evicted);
                }
                None => return Err(LogError::SnapshotTemporarilyUnavailable),
            }
        }
        slots.insert(group, Slot::Loading { index });
        drop(slots);
        if self.loading == SnapshotLoading::Background {
            self.spawn(group, index, load)?;
        }
        Err(LogError::SnapshotTemporarilyUnavailable)
    }

    fn spawn(
        &self,
        group: GroupId,
        index: LogIndex,
        load: impl FnOnce() -> Result<Snapshot, LogError> + Send + 'static,
    ) -> Result<(), LogError> {
        let slots = Arc::clone(&self.slots);
        let spawned = std::thread::Builder::new()
            .name("flotilla-snapshot-load".to_owned())
            .spawn(move || {
                let result = load();
                let mut slots = slots.lock();
                if slots.get(&group).is_some_and(|slot| {
                    slot.index() == index && matches!(slot, Slot::Loading { .. })
                }) {
                    slots.insert(group, Slot::Loaded { index, result });
                }
            });
        if let Err(error) = spawned {
            self.slots.lock().remove(&group);
            return Err(LogError::Storage(format!(
                "no thread to load a snapshot of {group}: {error}"
            )));
        }
        Ok(())
    }

    /// How many snapshots are loading or loaded and not yet taken (for tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.slots.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::{LogId, SnapshotMeta, Term};

    fn marker(index: u64) -> SnapshotMarker {
        SnapshotMarker {
            meta: SnapshotMeta {
                last: LogId::new(Term(1), LogIndex(index)),
                ..SnapshotMeta::default()
            },
            file_name: format!("snap-{index}"),
            data_bytes: 3,
            data_checksum: 0,
        }
    }

    fn snapshot(index: u64) -> Snapshot {
        Snapshot {
            meta: marker(index).meta,
            data: vec![1, 2, 3],
        }
    }

    fn unavailable(result: Result<Snapshot, LogError>) -> bool {
        matches!(result, Err(LogError::SnapshotTemporarilyUnavailable))
    }

    #[test]
    fn on_next_ask_the_first_ask_starts_and_the_second_takes() {
        let loads = SnapshotLoads::new(SnapshotLoading::NextAsk, 4);
        let group = GroupId(1);
        assert!(unavailable(loads.take_or_start(group, &marker(5), || {
            panic!("loaded on the first ask")
        })));
        assert_eq!(loads.held(), 1);
        let taken = loads.take_or_start(group, &marker(5), || Ok(snapshot(5)));
        assert_eq!(taken, Ok(snapshot(5)));
        assert_eq!(loads.held(), 0, "taken, not kept");
    }

    #[test]
    fn a_newer_snapshot_replaces_an_older_load() {
        let loads = SnapshotLoads::new(SnapshotLoading::NextAsk, 4);
        let group = GroupId(1);
        assert!(unavailable(
            loads.take_or_start(group, &marker(5), || Ok(snapshot(5)))
        ));
        // The group compacted again: the load of 5 is forgotten, 9 starts afresh.
        assert!(unavailable(
            loads.take_or_start(group, &marker(9), || Ok(snapshot(9)))
        ));
        assert_eq!(
            loads.take_or_start(group, &marker(9), || Ok(snapshot(9))),
            Ok(snapshot(9))
        );
    }

    #[test]
    fn loads_are_bounded_and_a_loaded_one_is_evicted_for_a_new_one() {
        let loads = SnapshotLoads::new(SnapshotLoading::Background, 2);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        // Two loads that wait until told to finish: the third is refused without starting.
        for group in [1, 2] {
            let rx = Arc::clone(&rx);
            let started = loads.take_or_start(GroupId(group), &marker(5), move || {
                rx.lock().recv().unwrap();
                Ok(snapshot(5))
            });
            assert!(unavailable(started));
        }
        assert!(unavailable(loads.take_or_start(
            GroupId(3),
            &marker(5),
            || panic!("started past the limit")
        )));
        assert_eq!(loads.held(), 2);
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        // Once loaded (not yet taken), one is evicted to let group 3's load start.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while loads
            .slots
            .lock()
            .values()
            .any(|slot| matches!(slot, Slot::Loading { .. }))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the loads never ended"
            );
            std::thread::yield_now();
        }
        assert!(unavailable(loads.take_or_start(
            GroupId(3),
            &marker(5),
            || Ok(snapshot(5))
        )));
        assert_eq!(loads.held(), 2);
    }

    #[test]
    fn a_failed_load_is_reported_to_the_next_ask() {
        let loads = SnapshotLoads::new(SnapshotLoading::NextAsk, 4);
        let group = GroupId(1);
        let _ = loads.take_or_start(group, &marker(5), || Ok(snapshot(5)));
        let failed = loads.take_or_start(group, &marker(5), || {
            Err(LogError::Storage(
                "the file does not match its marker".into(),
            ))
        });
        assert!(matches!(failed, Err(LogError::Storage(_))));
    }
}

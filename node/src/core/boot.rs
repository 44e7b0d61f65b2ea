//! Building a node core from its log: the initial state a new cluster's first nodes compute
//! alike and write once, and the recovery of every group (MultiRaft over the log, state machines
//! from their snapshots). The server and the whole-cluster simulator start nodes the same way.

use super::{BatchSink, CoreConfig, CoreError, CoreIdentity, NodeCore, RangeStore, Respond};
use crate::config::Endpoint;
use flotilla_raft::{
    GroupId, HardState, LogError, LogId, Membership, MultiConfig, MultiError, MultiRaft, NodeId,
    Persist, Snapshot, SnapshotCheck, SnapshotMeta,
};
use flotilla_shard_manager::{
    Directory, Epoch, KeyRange, META_GROUP, MetaState, RangeDescriptor, RangeEpoch, RangeId,
    RangeMap, RangeMapError,
};
use flotilla_storage::machine::VIEW_CHUNK_BYTES;
use flotilla_storage::{GroupLog, LogEngine, WriteBatch, WriteError, verify_snapshot};
use std::sync::Arc;

/// Why a node could not be built from its log.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A group's snapshot or log could not be read.
    #[error("group {group}: {source}")]
    Read {
        /// The group.
        group: GroupId,
        /// What failed.
        source: LogError,
    },
    /// MultiRaft refused a group.
    #[error("group {group}: {source}")]
    Host {
        /// The group.
        group: GroupId,
        /// Why.
        source: MultiError,
    },
    /// A state machine could not be restored.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The log holds no group although the directory was bootstrapped.
    #[error("the log holds no group although it was bootstrapped")]
    NoGroup,
}

/// The map and directory every initial node computes alike: `groups` ranges of equal share of
/// the key space, range `g` (1-based) on nodes `g-1, g, g+1, ...` (mod the node count) of the
/// sorted `nodes`, `replicas` each.
#[must_use]
pub fn initial_meta(nodes: &[Endpoint], groups: u64, replicas: usize) -> MetaState {
    let map = RangeMap::uniform(groups, |group| {
        placed(nodes, (group.0 - 1) as usize, replicas)
    });
    MetaState::new(map, directory_of(nodes))
}

/// The map and directory every node of a cluster restored from a backup computes alike: the
/// backup's ranges (their ids, groups and keys), the `index`-th in key order on nodes
/// `index, index+1, ...` (mod the node count) of the sorted `nodes`, `replicas` each.
///
/// # Errors
/// The ranges do not tile the key space.
pub fn restored_meta(
    ranges: impl IntoIterator<Item = (RangeId, GroupId, KeyRange)>,
    nodes: &[Endpoint],
    replicas: usize,
) -> Result<MetaState, RangeMapError> {
    let mut ranges: Vec<_> = ranges.into_iter().collect();
    ranges.sort_by(|a, b| a.2.start.cmp(&b.2.start));
    let descriptors = ranges
        .into_iter()
        .enumerate()
        .map(|(index, (id, group, keys))| RangeDescriptor {
            id,
            keys,
            group,
            replicas: placed(nodes, index, replicas),
            epoch: RangeEpoch::default(),
        })
        .collect();
    let map = RangeMap::new(descriptors, Epoch(1))?;
    Ok(MetaState::new(map, directory_of(nodes)))
}

/// The replicas of the `index`-th range: `replicas` nodes of `nodes` from the `index`-th on.
fn placed(nodes: &[Endpoint], index: usize, replicas: usize) -> Vec<NodeId> {
    let ids: Vec<NodeId> = nodes.iter().map(|endpoint| endpoint.node).collect();
    (0..replicas.min(ids.len()))
        .map(|offset| ids[(index + offset) % ids.len()])
        .collect()
}

fn directory_of(nodes: &[Endpoint]) -> Directory {
    Directory::new(
        nodes
            .iter()
            .map(|endpoint| (endpoint.node, endpoint.address.to_string())),
    )
}

/// First start: persists the initial state of every group `node` hosts, in one write (the
/// meta group on every initial node, each range on its replicas).
///
/// # Errors
/// The write failed.
pub fn bootstrap_log(engine: &LogEngine, node: NodeId, meta: &MetaState) -> Result<(), WriteError> {
    let mut batch = WriteBatch::new();
    batch.persist(META_GROUP, &meta_persist(meta));
    for range in hosted(meta, node) {
        batch.persist(range.group, &Persist::bootstrap(voters(range)));
    }
    engine.write(batch)?;
    Ok(())
}

/// First start of a node of a cluster restored from a backup: as `bootstrap_log`, but each
/// range `node` hosts starts from the state `restored` gives for its group, at the entry the
/// backup read it at (a snapshot there, and that entry's term as the replica's term, so the
/// restored cluster's leaders are elected past it). One write per range, so memory holds one
/// range's snapshot at a time; the data directory's bootstrap marker makes them one.
///
/// # Errors
/// `restored` failed, or a write failed.
pub fn bootstrap_restored<E: From<WriteError>>(
    engine: &LogEngine,
    node: NodeId,
    meta: &MetaState,
    mut restored: impl FnMut(GroupId) -> Result<(LogId, Vec<u8>), E>,
) -> Result<(), E> {
    for range in hosted(meta, node) {
        let (last, data) = restored(range.group)?;
        let mut batch = WriteBatch::new();
        batch.persist(
            range.group,
            &Persist {
                snapshot: Some(Snapshot {
                    meta: SnapshotMeta {
                        last,
                        membership: voters(range),
                    },
                    data,
                }),
                hard_state: Some(HardState {
                    term: last.term,
                    vote: None,
                    commit: last.index,
                }),
                ..Persist::default()
            },
        );
        engine.write(batch)?;
    }
    let mut batch = WriteBatch::new();
    batch.persist(META_GROUP, &meta_persist(meta));
    engine.write(batch)?;
    Ok(())
}

/// The meta group's first state on an initial node: a snapshot of `meta` before any entry,
/// every node of the directory a voter.
fn meta_persist(meta: &MetaState) -> Persist {
    Persist {
        snapshot: Some(Snapshot {
            meta: SnapshotMeta {
                last: LogId::default(),
                membership: Membership::with_voters(meta.directory.nodes()),
            },
            data: meta.encode(),
        }),
        ..Persist::default()
    }
}

/// The ranges `node` hosts in `meta`'s map.
fn hosted(meta: &MetaState, node: NodeId) -> impl Iterator<Item = &RangeDescriptor> {
    meta.map
        .ranges()
        .filter(move |range| range.replicas.contains(&node))
}

/// A range's replicas, every one a voter.
fn voters(range: &RangeDescriptor) -> Membership {
    Membership::with_voters(range.replicas.iter().copied())
}

/// First start of a node that joined a running cluster: its meta replica starts from the meta
/// leader's stored snapshot (it is a learner once the leader adds it; the log after the
/// snapshot follows); it hosts no range yet.
///
/// # Errors
/// The write failed.
pub fn bootstrap_joined(engine: &LogEngine, meta: Snapshot) -> Result<(), WriteError> {
    let mut batch = WriteBatch::new();
    batch.persist(
        META_GROUP,
        &Persist {
            snapshot: Some(meta),
            ..Persist::default()
        },
    );
    engine.write(batch)?;
    Ok(())
}

/// A node core over every group of `engine`, each state machine restored from its snapshot
/// (Raft then hands the committed entries after it to the core to apply again).
///
/// # Errors
/// A group could not be read or hosted, a snapshot did not restore, or the log holds no group.
pub fn start<R: Respond, S: BatchSink>(
    config: CoreConfig,
    multi_config: MultiConfig,
    engine: Arc<LogEngine>,
    sink: S,
    meta: MetaState,
    identity: CoreIdentity,
    store: RangeStore,
) -> Result<NodeCore<R, S>, BootError> {
    let groups = engine.group_ids();
    if groups.is_empty() {
        return Err(BootError::NoGroup);
    }
    let mut multi_config = multi_config;
    #[cfg(feature = "mutations")]
    let checked = config.mutation != super::CoreMutation::InstallUncheckedSnapshots;
    #[cfg(not(feature = "mutations"))]
    let checked = true;
    if checked {
        multi_config.raft.snapshot_check = SnapshotCheck(check_snapshot);
    }
    // Received snapshots are staged in files and checked off the loop (`LogEngine`'s
    // staging), never gathered in memory.
    multi_config.raft.snapshot_staging = true;
    let mut multi: MultiRaft<GroupLog> = MultiRaft::new(multi_config);
    for &group in &groups {
        multi
            .create_group(group, engine.group(group))
            .map_err(|source| BootError::Host { group, source })?;
    }
    let produced = Arc::new(std::sync::atomic::AtomicU64::new(0));
    if let RangeStore::Engine(ranges) = &store {
        ranges
            .bind(identity.directory)
            .map_err(|error| BootError::Core(CoreError::Engine(error)))?;
        let (ranges, produced) = (ranges.clone(), Arc::clone(&produced));
        engine.set_engine_snapshots(Arc::new(move |group, file| {
            // A snapshot that cannot be produced now stops no node: the follower waits, and
            // the leader asks again at its next heartbeat answer.
            let snapshot = ranges
                .write_range_snapshot(group, VIEW_CHUNK_BYTES, file)
                .map_err(|error| {
                    tracing::error!(%group, %error, "a snapshot for a follower failed");
                    LogError::SnapshotTemporarilyUnavailable
                })?;
            produced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(snapshot)
        }));
    }
    let mut core = NodeCore::new(
        config,
        multi,
        Arc::clone(&engine),
        sink,
        meta,
        identity,
        store,
    );
    core.engine_snapshots_produced = produced;
    // One snapshot in memory at a time: a node's snapshot files together can be as large as
    // its data (ranges in memory; a split's right half in the engine keeps the snapshot it
    // began from until it compacts), and 17 of those held at once took 541 MiB at a restart.
    for group in groups {
        let snapshot = engine
            .group(group)
            .load_snapshot()
            .map_err(|source| BootError::Read { group, source })?;
        core.restore(group, &snapshot)?;
    }
    core.adopt_carves()?;
    Ok(core)
}

/// Whether a snapshot a leader sent may be installed (every replica of a node checks with it,
/// so a snapshot that would not restore never replaces a log): the meta group's data decodes as
/// its state; a range's is a whole, checksummed KV snapshot of that group at the snapshot's
/// last entry.
///
/// # Errors
/// Why the data does not restore, as a sentence.
pub fn check_snapshot(group: GroupId, meta: &SnapshotMeta, data: &[u8]) -> Result<(), String> {
    if group == META_GROUP {
        return decode_meta_snapshot(data).map(drop);
    }
    let header = verify_snapshot(data).map_err(|error| error.to_string())?;
    if header.group != group {
        return Err(format!("it holds the state of group {}", header.group));
    }
    if header.applied != meta.last {
        return Err(format!(
            "its state is at entry {} (term {}), not at entry {} (term {})",
            header.applied.index, header.applied.term, meta.last.index, meta.last.term
        ));
    }
    Ok(())
}

/// The meta group's state in its snapshot `data` (`check_snapshot`'s check of it).
///
/// # Errors
/// Why the data does not decode, as a sentence.
pub(crate) fn decode_meta_snapshot(data: &[u8]) -> Result<MetaState, String> {
    MetaState::decode(data)
        .map_err(|error| format!("the meta group's state does not decode: {error}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use flotilla_raft::{LogIndex, Term};
    use flotilla_storage::KvStateMachine;
    use flotilla_storage::snapshot::encode_snapshot;

    fn meta_at(term: u64, index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last: LogId::new(Term(term), LogIndex(index)),
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        }
    }

    #[test]
    fn a_snapshot_is_installed_only_if_it_is_that_groups_state_at_that_entry() {
        let at = LogId::new(Term(2), LogIndex(10));
        let machine = KvStateMachine::from_parts(GroupId(3), at, Default::default());
        let data = encode_snapshot(&machine.snapshot_source());
        assert_eq!(check_snapshot(GroupId(3), &meta_at(2, 10), &data), Ok(()));

        let other_group = check_snapshot(GroupId(4), &meta_at(2, 10), &data).unwrap_err();
        assert!(other_group.contains("group g3"), "{other_group}");
        let other_entry = check_snapshot(GroupId(3), &meta_at(2, 11), &data).unwrap_err();
        assert!(other_entry.contains("not at entry i11"), "{other_entry}");
        let other_term = check_snapshot(GroupId(3), &meta_at(3, 10), &data).unwrap_err();
        assert!(other_term.contains("term t3"), "{other_term}");
        let mut damaged = data.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        assert!(check_snapshot(GroupId(3), &meta_at(2, 10), &damaged).is_err());
        assert!(check_snapshot(GroupId(3), &meta_at(2, 10), &[]).is_err());

        let nodes = [Endpoint {
            node: NodeId(1),
            address: "127.0.0.1:7001".parse().unwrap(),
        }];
        let meta = initial_meta(&nodes, 4, 1).encode();
        assert_eq!(check_snapshot(META_GROUP, &meta_at(1, 5), &meta), Ok(()));
        let refused = check_snapshot(META_GROUP, &meta_at(1, 5), &meta[..meta.len() / 2]);
        assert!(refused.unwrap_err().contains("meta group"));
    }
}

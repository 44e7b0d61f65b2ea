//! Building a node core from its log: the initial state a new cluster's first nodes compute
//! alike and write once, and the recovery of every group (MultiRaft over the log, state machines
//! from their snapshots). The server and the whole-cluster simulator start nodes the same way.

use super::{BatchSink, CoreConfig, CoreError, CoreIdentity, NodeCore, Respond};
use crate::config::Endpoint;
use flotilla_raft::{
    GroupId, HardState, LogError, LogId, Membership, MultiConfig, MultiError, MultiRaft, NodeId,
    Persist, Snapshot, SnapshotMeta,
};
use flotilla_shard_manager::{
    Directory, Epoch, KeyRange, META_GROUP, MetaState, RangeDescriptor, RangeId, RangeMap,
    RangeMapError,
};
use flotilla_storage::{GroupLog, LogEngine, WriteBatch, WriteError};
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
) -> Result<NodeCore<R, S>, BootError> {
    let groups = engine.group_ids();
    if groups.is_empty() {
        return Err(BootError::NoGroup);
    }
    let mut multi: MultiRaft<GroupLog> = MultiRaft::new(multi_config);
    let mut snapshots = Vec::with_capacity(groups.len());
    for group in groups {
        let store = engine.group(group);
        let snapshot = store
            .load_snapshot()
            .map_err(|source| BootError::Read { group, source })?;
        snapshots.push((group, snapshot));
        multi
            .create_group(group, store)
            .map_err(|source| BootError::Host { group, source })?;
    }
    let mut core = NodeCore::new(config, multi, engine, sink, meta, identity);
    for (group, snapshot) in &snapshots {
        core.restore(*group, snapshot)?;
    }
    Ok(core)
}

//! Building a node core from its log: the initial state a new cluster's first nodes compute
//! alike and write once, and the recovery of every group (MultiRaft over the log, state machines
//! from their snapshots). The server and the whole-cluster simulator start nodes the same way.

use super::{BatchSink, CoreConfig, CoreError, CoreIdentity, NodeCore, Respond};
use crate::config::Endpoint;
use flotilla_raft::{
    GroupId, LogError, Membership, MultiConfig, MultiError, MultiRaft, NodeId, Persist, Snapshot,
    SnapshotMeta,
};
use flotilla_shard_manager::{Directory, META_GROUP, MetaState, RangeMap};
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
    let ids: Vec<NodeId> = nodes.iter().map(|endpoint| endpoint.node).collect();
    let replicas = replicas.min(ids.len());
    let map = RangeMap::uniform(groups, |group| {
        let first = (group.0 - 1) as usize;
        (0..replicas)
            .map(|offset| ids[(first + offset) % ids.len()])
            .collect()
    });
    let directory = Directory::new(
        nodes
            .iter()
            .map(|endpoint| (endpoint.node, endpoint.address.to_string())),
    );
    MetaState::new(map, directory)
}

/// First start: persists the initial state of every group `node` hosts, in one write (the
/// meta group on every initial node, each range on its replicas).
///
/// # Errors
/// The write failed.
pub fn bootstrap_log(engine: &LogEngine, node: NodeId, meta: &MetaState) -> Result<(), WriteError> {
    let mut batch = WriteBatch::new();
    let meta_snapshot = Snapshot {
        meta: SnapshotMeta {
            last: Default::default(),
            membership: Membership::with_voters(meta.directory.nodes()),
        },
        data: meta.encode(),
    };
    batch.persist(
        META_GROUP,
        &Persist {
            snapshot: Some(meta_snapshot),
            ..Persist::default()
        },
    );
    for range in meta
        .map
        .ranges()
        .filter(|range| range.replicas.contains(&node))
    {
        let membership = Membership::with_voters(range.replicas.iter().copied());
        batch.persist(range.group, &Persist::bootstrap(membership));
    }
    engine.write(batch)?;
    Ok(())
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

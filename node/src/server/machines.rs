//! The state machines of one node's groups: a KV state machine per data group and the meta
//! state (range map + directory) of the meta group, restored from snapshots and advanced by
//! committed entries in log order.

use flotilla_raft::{Entry, EntryPayload, GroupId, LogIndex, Snapshot};
use flotilla_shard_manager::{META_GROUP, MetaCommand, MetaState};
use flotilla_storage::snapshot::encode_snapshot;
use flotilla_storage::{KvStateMachine, Response, decode_snapshot};
use std::collections::BTreeMap;

/// Every state machine of the node.
#[derive(Debug)]
pub(crate) struct Machines {
    kv: BTreeMap<GroupId, KvStateMachine>,
    meta: MetaState,
    meta_applied: LogIndex,
}

impl Machines {
    pub(crate) fn new(meta: MetaState) -> Self {
        Self {
            kv: BTreeMap::new(),
            meta,
            meta_applied: LogIndex(0),
        }
    }

    pub(crate) fn meta(&self) -> &MetaState {
        &self.meta
    }

    pub(crate) fn kv(&self, group: GroupId) -> Option<&KvStateMachine> {
        self.kv.get(&group)
    }

    /// The last index `group` applied.
    pub(crate) fn applied(&self, group: GroupId) -> LogIndex {
        if group == META_GROUP {
            return self.meta_applied;
        }
        self.kv
            .get(&group)
            .map_or(LogIndex(0), |machine| machine.applied().index)
    }

    /// Replaces `group`'s state with `snapshot` (an empty one starts empty).
    pub(crate) fn restore(&mut self, group: GroupId, snapshot: &Snapshot) -> Result<(), String> {
        let index = snapshot.meta.last.index;
        if group == META_GROUP {
            if !snapshot.data.is_empty() {
                self.meta = MetaState::decode(&snapshot.data).map_err(|error| error.to_string())?;
            }
            self.meta_applied = index;
            return Ok(());
        }
        let machine = if snapshot.data.is_empty() {
            KvStateMachine::new(group)
        } else {
            decode_snapshot(&snapshot.data).map_err(|error| error.to_string())?
        };
        self.kv.insert(group, machine);
        Ok(())
    }

    /// Applies one committed entry; the response of a KV command, if it was one.
    pub(crate) fn apply(&mut self, group: GroupId, entry: &Entry) -> Option<Response> {
        if group != META_GROUP {
            return self
                .kv
                .entry(group)
                .or_insert_with(|| KvStateMachine::new(group))
                .apply_entry(entry);
        }
        self.meta_applied = entry.index;
        if let EntryPayload::Normal(data) = &entry.payload {
            let outcome = MetaCommand::decode(data)
                .map_err(|error| error.to_string())
                .and_then(|command| self.meta.apply(command).map_err(|error| error.to_string()));
            if let Err(error) = outcome {
                tracing::warn!(index = entry.index.0, %error, "meta command refused");
            }
        }
        None
    }

    /// The snapshot bytes of `group` at its applied index.
    pub(crate) fn snapshot_data(&self, group: GroupId) -> Vec<u8> {
        if group == META_GROUP {
            return self.meta.encode();
        }
        self.kv
            .get(&group)
            .map(|machine| encode_snapshot(&machine.snapshot_source()))
            .unwrap_or_default()
    }
}

//! A range's snapshot view over the engine: an engine read view (a consistent image of every
//! range at one moment) plus the range's metadata and session table of that moment, its pairs
//! walked in chunks from after the last key handed out, so no chunk holds the whole range.

use super::backend::BackendView;
use super::keys::{self, Space};
use super::meta::RangeMeta;
use crate::error::EngineError;
use crate::kv::{MergeState, RangeBounds, SessionTable};
use crate::machine::{PAIR_FRAMING_BYTES, Pair, SnapshotView};
use flotilla_raft::{GroupId, LogId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A range at one applied entry, in the engine.
pub(crate) struct DiskView {
    group: GroupId,
    meta: RangeMeta,
    sessions: Arc<SessionTable>,
    view: BackendView,
    /// Where the range's pairs live.
    space: Space,
    /// The engine key the next chunk starts at (included).
    next_key: Vec<u8>,
}

impl DiskView {
    /// The view of `group` whose state at `view` is `meta` and `sessions`.
    pub(crate) fn new(
        group: GroupId,
        meta: RangeMeta,
        sessions: Arc<SessionTable>,
        view: BackendView,
    ) -> Self {
        let space = meta.space_of(group);
        Self {
            group,
            meta,
            sessions,
            view,
            space,
            next_key: keys::data(space, b""),
        }
    }
}

impl SnapshotView for DiskView {
    fn group(&self) -> GroupId {
        self.group
    }

    fn applied(&self) -> LogId {
        self.meta.applied()
    }

    fn pair_count(&self) -> u64 {
        self.meta.pair_count
    }

    fn stored_bytes(&self) -> u64 {
        self.meta.stored_bytes
    }

    fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    fn bounds(&self) -> &RangeBounds {
        &self.meta.bounds
    }

    fn merge_state(&self) -> &MergeState {
        &self.meta.merge
    }

    fn declined(&self) -> &BTreeMap<GroupId, u64> {
        &self.meta.declined
    }

    fn next_chunk(
        &mut self,
        chunk_bytes_max: usize,
        pairs: &mut Vec<Pair>,
    ) -> Result<bool, EngineError> {
        let end = keys::data_end(self.space);
        let mut bytes = 0usize;
        let mut last_key = None;
        self.view
            .scan(&self.next_key, &end, &mut |key, value| {
                let user_key = keys::user_key(key);
                bytes = bytes.saturating_add(PAIR_FRAMING_BYTES + user_key.len() + value.len());
                if bytes > chunk_bytes_max && last_key.is_some() {
                    return false;
                }
                pairs.push((user_key.to_vec(), value.to_vec()));
                last_key = Some(key.to_vec());
                true
            })
            .map_err(|source| EngineError::Backend {
                operation: "read a snapshot chunk",
                source,
            })?;
        let Some(mut last_key) = last_key else {
            return Ok(false);
        };
        // The smallest key after the last one handed out.
        last_key.push(0);
        self.next_key = last_key;
        Ok(true)
    }
}

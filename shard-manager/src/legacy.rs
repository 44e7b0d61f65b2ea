//! Meta snapshots and meta log entries in the formats written before the current ones still
//! decode: snapshots from before ranges had their own epochs (descriptors without one, and the
//! map's layout epoch) and from before merges (no list of merged groups), and placement
//! decisions from before they named the record they were made on. A range from such a
//! snapshot starts at epoch zero; its versions grow from there like any other's.

use crate::directory::Directory;
use crate::error::RangeMapError;
use crate::meta::MetaState;
use crate::placement::{AbandonReason, ClusterView, Decision, OperatorId, OperatorKind, Step};
use crate::range::{Epoch, KeyRange, RangeDescriptor, RangeEpoch, RangeId};
use crate::range_map::RangeMap;
use flotilla_raft::{GroupId, NodeId};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A range as encoded before ranges had epochs.
#[derive(Deserialize)]
struct DescriptorBeforeEpochs {
    id: RangeId,
    keys: KeyRange,
    group: GroupId,
    replicas: Vec<NodeId>,
}

/// The range map as encoded before ranges had epochs.
#[derive(Deserialize)]
struct MapBeforeEpochs {
    epoch: Epoch,
    /// The epoch of the last split or merge, which requests were checked against then.
    _layout_epoch: Epoch,
    ranges: BTreeMap<Vec<u8>, DescriptorBeforeEpochs>,
    next_range_id: u64,
}

impl MapBeforeEpochs {
    fn upgrade(self) -> Result<RangeMap, RangeMapError> {
        let ranges = self
            .ranges
            .into_iter()
            .map(|(start, range)| {
                let descriptor = RangeDescriptor {
                    id: range.id,
                    keys: range.keys,
                    group: range.group,
                    replicas: range.replicas,
                    epoch: RangeEpoch::default(),
                };
                (start, descriptor)
            })
            .collect();
        RangeMap::checked(self.epoch, ranges, self.next_range_id)
    }
}

/// The meta state as encoded before ranges had epochs.
#[derive(Deserialize)]
pub(crate) struct MetaStateBeforeEpochs {
    map: MapBeforeEpochs,
    directory: Directory,
    data_directories: BTreeMap<NodeId, u128>,
    cluster: ClusterView,
    merged: imbl::OrdSet<GroupId>,
}

/// The meta state as encoded before merges (no `merged`).
#[derive(Deserialize)]
pub(crate) struct MetaStateBeforeMerges {
    map: MapBeforeEpochs,
    directory: Directory,
    data_directories: BTreeMap<NodeId, u128>,
    cluster: ClusterView,
}

impl MetaStateBeforeEpochs {
    /// The state in today's form.
    pub(crate) fn upgrade(self) -> Result<MetaState, RangeMapError> {
        Ok(MetaState {
            map: self.map.upgrade()?,
            directory: self.directory,
            data_directories: self.data_directories,
            cluster: self.cluster,
            merged: self.merged,
        })
    }
}

impl MetaStateBeforeMerges {
    /// The state in today's form: no group merged yet.
    pub(crate) fn upgrade(self) -> Result<MetaState, RangeMapError> {
        MetaStateBeforeEpochs {
            map: self.map,
            directory: self.directory,
            data_directories: self.data_directories,
            cluster: self.cluster,
            merged: imbl::OrdSet::new(),
        }
        .upgrade()
    }
}

/// A decision as the meta log encoded it before decisions named the record they were made
/// on: an entry of an older log still decodes, taken on the record as it is when applied.
#[derive(Deserialize)]
pub(crate) enum DecisionBeforeRecords {
    Start {
        range: RangeId,
        kind: OperatorKind,
        steps: Vec<Step>,
        now_ms: u64,
    },
    Advance {
        operator: OperatorId,
        step_index: usize,
        now_ms: u64,
    },
    Finish {
        operator: OperatorId,
    },
    Abandon {
        operator: OperatorId,
        reason: AbandonReason,
    },
}

impl From<DecisionBeforeRecords> for Decision {
    fn from(decision: DecisionBeforeRecords) -> Self {
        match decision {
            DecisionBeforeRecords::Start {
                range,
                kind,
                steps,
                now_ms,
            } => Decision::Start {
                range,
                kind,
                steps,
                now_ms,
                decided_on: None,
            },
            DecisionBeforeRecords::Advance {
                operator,
                step_index,
                now_ms,
            } => Decision::Advance {
                operator,
                step_index,
                now_ms,
                decided_on: None,
            },
            DecisionBeforeRecords::Finish { operator } => Decision::Finish { operator },
            DecisionBeforeRecords::Abandon { operator, reason } => {
                Decision::Abandon { operator, reason }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// A range as encoded before ranges had epochs.
    #[derive(Serialize)]
    struct OldDescriptor<'a> {
        id: RangeId,
        keys: &'a KeyRange,
        group: GroupId,
        replicas: &'a [NodeId],
    }

    /// The range map as encoded before ranges had epochs.
    #[derive(Serialize)]
    struct OldMap<'a> {
        epoch: Epoch,
        layout_epoch: Epoch,
        ranges: BTreeMap<&'a [u8], OldDescriptor<'a>>,
        next_range_id: u64,
    }

    /// The meta state as encoded before ranges had epochs; `merged: None` before merges.
    #[derive(Serialize)]
    struct Old<'a> {
        map: OldMap<'a>,
        directory: &'a Directory,
        data_directories: &'a BTreeMap<NodeId, u128>,
        cluster: &'a ClusterView,
    }

    fn old_map(map: &RangeMap) -> OldMap<'_> {
        let ranges = map
            .ranges()
            .map(|range| {
                let old = OldDescriptor {
                    id: range.id,
                    keys: &range.keys,
                    group: range.group,
                    replicas: &range.replicas,
                };
                (range.keys.start.as_slice(), old)
            })
            .collect();
        OldMap {
            epoch: map.epoch(),
            layout_epoch: map.epoch(),
            ranges,
            next_range_id: 9,
        }
    }

    fn state() -> MetaState {
        let map = RangeMap::uniform(4, |_| vec![NodeId(1), NodeId(2)]);
        let directory = Directory::new([
            (NodeId(1), "127.0.0.1:1".to_string()),
            (NodeId(2), "127.0.0.1:2".to_string()),
        ]);
        let mut state = MetaState::new(map, directory);
        state.data_directories.insert(NodeId(1), 7);
        state
    }

    #[test]
    fn states_encoded_before_range_epochs_and_before_merges_decode() {
        let mut state = state();
        state.merged.insert(GroupId(40));
        let old = Old {
            map: old_map(&state.map),
            directory: &state.directory,
            data_directories: &state.data_directories,
            cluster: &state.cluster,
        };
        let mut before_epochs = postcard::to_allocvec(&old).unwrap();
        before_epochs.extend(postcard::to_allocvec(&state.merged).unwrap());
        let before_merges = postcard::to_allocvec(&old).unwrap();

        let decoded = MetaState::decode(&before_epochs).unwrap();
        assert!(
            decoded
                .map
                .ranges()
                .all(|range| range.epoch == RangeEpoch::default())
        );
        assert_eq!(decoded.map.ranges().count(), 4);
        assert_eq!(decoded.merged, state.merged);
        assert_eq!(decoded.directory, state.directory);
        let mut reserved = decoded.map.clone();
        assert_eq!(
            reserved.reserve_range_id(),
            RangeId(9),
            "the id allocator kept"
        );

        let decoded = MetaState::decode(&before_merges).unwrap();
        assert!(decoded.merged.is_empty());
        assert_eq!(decoded.map.ranges().count(), 4);
        assert_eq!(decoded.data_directories, state.data_directories);
    }
}

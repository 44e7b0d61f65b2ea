//! Whether a request reached the range that holds its key, and, when it did not, the
//! descriptors that send the client to the one that does (`docs/protocol/split-merge.md`,
//! "Epochs").
//!
//! A range's own state machine is the word on its keys once a split or merge gave it bounds
//! of its own (version above 0): the meta group records the change after the range applied
//! it, and a node's copy of the map follows later still. Before that, the map's keys are the
//! range's. The check here is only the fast answer: the range checks the key again when it
//! applies a write or serves a read (`Response::OutsideRange`), so a check made against a
//! lagging replica costs a retry, never a wrong answer.

use super::{BatchSink, NodeCore, Respond};
use crate::api::ApiError;
use flotilla_raft::GroupId;
use flotilla_shard_manager::{KeyRange, RangeDescriptor, RangeEpoch, RangeId};
use flotilla_storage::{MergeState, StateMachine};

/// The keys a request touches: one key, or a scan's span (`end: None`: to the end of the key
/// space).
#[derive(Clone, Copy, Debug)]
pub(super) enum Span<'a> {
    /// A get, put, delete or compare-and-swap.
    Key(&'a [u8]),
    /// A scan of `[start, end)`.
    Scan(&'a [u8], Option<&'a [u8]>),
}

impl Span<'_> {
    fn start(&self) -> &[u8] {
        match *self {
            Span::Key(key) | Span::Scan(key, _) => key,
        }
    }

    /// Whether the span lies in `[start, end)` (`end: None`: to the end of the key space).
    fn inside(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let (first, last) = match *self {
            Span::Key(key) => return key >= start && end.is_none_or(|end| key < end),
            Span::Scan(first, last) => (first, last),
        };
        let ends_inside = match (last, end) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(last), Some(end)) => last <= end,
        };
        first >= start && ends_inside
    }
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// Whether `group` holds `span` (routed with the range's `epoch`): by its own bounds here
    /// once it has them, else by the map. Refused `StaleEpoch` with the descriptors of the
    /// range this node knows to hold the span's first key when that is newer than the
    /// request's, `NotServed` when it is not (this node is behind) or the range is frozen for
    /// a merge that this node's replica of the left range has not applied.
    pub(super) fn check_route(
        &self,
        group: GroupId,
        epoch: RangeEpoch,
        span: Span<'_>,
    ) -> Result<(), ApiError> {
        let held = match self.machines.kv(group) {
            Some(machine) if machine.is_frozen() => false,
            Some(machine) if machine.bounds().version > 0 => {
                let bounds = machine.bounds();
                span.inside(&bounds.start, bounds.end.as_deref())
            }
            _ => {
                let range = self.machines.meta().map.lookup(span.start());
                range.group == group && span.inside(&range.keys.start, range.keys.end.as_deref())
            }
        };
        if held {
            return Ok(());
        }
        Err(self.range_changed(group, epoch, span.start()))
    }

    /// The refusal of a request for `key` sent to `group` with `epoch`, which `group` does not
    /// hold here: the holder this node knows, unless that is what the client knows already.
    pub(super) fn range_changed(&self, group: GroupId, epoch: RangeEpoch, key: &[u8]) -> ApiError {
        match self.holder(key) {
            Some(holder) if holder.group != group || holder.epoch.version > epoch.version => {
                ApiError::StaleEpoch {
                    ranges: vec![holder],
                }
            }
            _ => ApiError::NotServed { group },
        }
    }

    /// The range that holds `key` as this node knows it best: the map's, unless a replica
    /// here applied a split or merge the map does not show yet. `None` while the key's range
    /// is frozen for a merge whose left range this node has not seen take it.
    pub(super) fn holder(&self, key: &[u8]) -> Option<RangeDescriptor> {
        let mapped = self.machines.meta().map.lookup(key);
        let Some(machine) = self.machines.kv(mapped.group) else {
            return Some(mapped.clone());
        };
        let bounds = machine.bounds();
        if let MergeState::Frozen { into, .. } = *machine.merge_state() {
            // The left range here holds the key once it applied the merge.
            return self
                .machines
                .kv(into)
                .filter(|left| left.bounds().version > 0 && left.bounds().contains(key))
                .map(|left| self.descriptor_of(left));
        }
        if bounds.version <= mapped.epoch.version {
            return Some(mapped.clone());
        }
        if bounds.contains(key) {
            return Some(self.descriptor_of(machine));
        }
        // A split this node applied and the map does not show: the right half holds the key.
        let right = self
            .placement
            .splits_unrecorded
            .get(&mapped.group)
            .filter(|split| split.at.as_slice() <= key)
            .and_then(|split| self.machines.kv(split.right))
            .filter(|right| right.bounds().contains(key));
        Some(right.map_or_else(|| mapped.clone(), |right| self.descriptor_of(right)))
    }

    /// `machine`'s range as a descriptor: its own bounds and version, the map's id, replicas
    /// and conf version where the map knows the group (a split's right half it does not know
    /// yet has the range id of its group's number, and its group's voters).
    fn descriptor_of(&self, machine: &dyn StateMachine) -> RangeDescriptor {
        let group = machine.group();
        let bounds = machine.bounds();
        let mapped = self.machines.meta().map.range_of_group(group);
        let replicas = mapped.map_or_else(
            || {
                self.multi
                    .group(group)
                    .map(|raft| raft.membership().voters.iter().copied().collect())
                    .unwrap_or_default()
            },
            |range| range.replicas.clone(),
        );
        RangeDescriptor {
            id: mapped.map_or(RangeId(group.0), |range| range.id),
            keys: KeyRange {
                start: bounds.start.clone(),
                end: bounds.end.clone(),
            },
            group,
            replicas,
            epoch: RangeEpoch {
                version: bounds.version,
                conf_version: mapped.map_or(0, |range| range.epoch.conf_version),
            },
        }
    }
}

//! Key ranges and their descriptors: `[start, end)` over byte strings, where an empty `end`
//! means "to the end of the key space".

use flotilla_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of a range; it keeps its id across epochs until it is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RangeId(pub u64);

/// The version of the whole range map; every change recorded in it makes a new one. Clients
/// compare it only to keep the newer of two maps: requests carry their range's own
/// `RangeEpoch`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The next epoch.
    #[must_use]
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

/// A half-open range of keys `[start, end)`; `end == None` is unbounded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRange {
    /// The first key in the range.
    pub start: Vec<u8>,
    /// The first key after the range, or `None` for the end of the key space.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// The whole key space.
    #[must_use]
    pub fn all() -> Self {
        Self {
            start: Vec::new(),
            end: None,
        }
    }

    /// Whether `key` falls in the range.
    #[must_use]
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_ref().is_none_or(|end| key < end.as_slice())
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self
            .end
            .as_ref()
            .map_or_else(|| "∞".to_string(), |end| escape(end));
        write!(f, "[{}, {end})", escape(&self.start))
    }
}

fn escape(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// A range's own epoch, as TiKV's region epoch: `version` moves on every split or merge that
/// changes its keys, `conf_version` on every change of its replicas. Versions only grow along
/// a key's history: the range that holds a key after a split or merge has a higher version
/// than every range that held it before, so of two descriptors that overlap, the one with the
/// higher version is the newer (`docs/protocol/split-merge.md`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RangeEpoch {
    /// Bumped by every split and merge of the range; the range's own state machine keeps the
    /// same count (its bounds' version), which the map's record follows.
    pub version: u64,
    /// Bumped by every change of the range's replicas the map records.
    pub conf_version: u64,
}

/// One range as the map knows it: its keys, the group serving it, the group's replicas, and
/// the range's epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDescriptor {
    /// The range's identity.
    pub id: RangeId,
    /// The keys it covers.
    pub keys: KeyRange,
    /// The Raft group that serves it.
    pub group: GroupId,
    /// The nodes with a replica of the group.
    pub replicas: Vec<NodeId>,
    /// The range's own epoch.
    pub epoch: RangeEpoch,
}

impl KeyRange {
    /// Whether the two ranges share a key.
    #[must_use]
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let starts_before_other_ends = other
            .end
            .as_ref()
            .is_none_or(|end| self.start.as_slice() < end.as_slice());
        let other_starts_before_end = self
            .end
            .as_ref()
            .is_none_or(|end| other.start.as_slice() < end.as_slice());
        starts_before_other_ends && other_starts_before_end
    }
}

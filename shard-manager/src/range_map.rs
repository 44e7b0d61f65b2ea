//! The range map: ranges that tile the key space, each served by one group, under an epoch
//! that changes on every split or replica move. A request routed with any epoch since the last
//! change of the key space's layout (a split) is routed right: replica moves change where a
//! group lives, not which group serves a key, so they never send requests back.

use crate::error::RangeMapError;
use crate::range::{Epoch, KeyRange, RangeDescriptor, RangeId};
use flotilla_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Ranges by start key; together they cover every key exactly once. A decoded map (from a
/// node, or a meta snapshot) is checked like a built one, so `lookup` cannot miss.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RangeMapWire")]
pub struct RangeMap {
    epoch: Epoch,
    /// The epoch of the last change of which group serves which keys.
    layout_epoch: Epoch,
    ranges: BTreeMap<Vec<u8>, RangeDescriptor>,
    next_range_id: u64,
}

/// A range map as decoded, before it is checked.
#[derive(Deserialize)]
struct RangeMapWire {
    epoch: Epoch,
    layout_epoch: Epoch,
    ranges: BTreeMap<Vec<u8>, RangeDescriptor>,
    next_range_id: u64,
}

impl TryFrom<RangeMapWire> for RangeMap {
    type Error = RangeMapError;

    fn try_from(wire: RangeMapWire) -> Result<Self, RangeMapError> {
        if wire
            .ranges
            .iter()
            .any(|(start, range)| *start != range.keys.start)
        {
            return Err(RangeMapError::NotATiling(
                "a range is filed under another start key",
            ));
        }
        let highest = wire
            .ranges
            .values()
            .map(|range| range.id.0)
            .max()
            .unwrap_or(0);
        if wire.layout_epoch > wire.epoch {
            return Err(RangeMapError::NotATiling(
                "the layout is newer than the map",
            ));
        }
        let map = Self::new(wire.ranges.into_values().collect(), wire.epoch)?;
        Ok(Self {
            layout_epoch: wire.layout_epoch,
            next_range_id: wire.next_range_id.max(highest + 1),
            ..map
        })
    }
}

impl RangeMap {
    /// A map from descriptors that must tile the key space, starting at the empty key.
    ///
    /// # Errors
    /// `NotATiling` for gaps, overlaps or a missing first or last range; `NoReplica`.
    pub fn new(descriptors: Vec<RangeDescriptor>, epoch: Epoch) -> Result<Self, RangeMapError> {
        let mut ranges = BTreeMap::new();
        for descriptor in descriptors {
            if descriptor.replicas.is_empty() {
                return Err(RangeMapError::NoReplica);
            }
            let start = descriptor.keys.start.clone();
            if ranges.insert(start, descriptor).is_some() {
                return Err(RangeMapError::NotATiling(
                    "two ranges start at the same key",
                ));
            }
        }
        check_tiling(&ranges)?;
        let next_range_id = ranges.values().map(|range| range.id.0).max().unwrap_or(0) + 1;
        Ok(Self {
            epoch,
            layout_epoch: epoch,
            ranges,
            next_range_id,
        })
    }

    /// The most ranges `uniform` makes.
    pub const UNIFORM_RANGES_MAX: u64 = 1_000_000;

    /// `group_count` ranges of equal share of the key space, served by groups
    /// 1..=group_count, each with `replicas(group)`. Up to 65,536 ranges the bounds are
    /// two-byte prefixes (the layout clusters started with before more were allowed); above,
    /// four-byte ones.
    ///
    /// # Panics
    /// If `group_count` is 0 or above `UNIFORM_RANGES_MAX` (a configuration error caught at
    /// start).
    pub fn uniform(group_count: u64, replicas: impl Fn(GroupId) -> Vec<NodeId>) -> Self {
        assert!(
            (1..=Self::UNIFORM_RANGES_MAX).contains(&group_count),
            "1 to {} groups, not {group_count}",
            Self::UNIFORM_RANGES_MAX
        );
        let boundary = |index: u64| -> Vec<u8> {
            let bytes = if group_count <= 65_536 {
                ((index << 16) / group_count).to_be_bytes()[6..].to_vec()
            } else {
                ((index << 32) / group_count).to_be_bytes()[4..].to_vec()
            };
            if bytes.iter().all(|&byte| byte == 0) {
                Vec::new()
            } else {
                bytes
            }
        };
        let descriptors = (0..group_count)
            .map(|index| RangeDescriptor {
                id: RangeId(index + 1),
                keys: KeyRange {
                    start: boundary(index),
                    end: (index + 1 < group_count).then(|| boundary(index + 1)),
                },
                group: GroupId(index + 1),
                replicas: replicas(GroupId(index + 1)),
            })
            .collect();
        match Self::new(descriptors, Epoch(1)) {
            Ok(map) => map,
            Err(error) => panic!("a uniform split always tiles: {error}"),
        }
    }

    /// The map's epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The epoch of the last change of which group serves which keys: a request routed with
    /// this epoch or a later one went to the right group.
    #[must_use]
    pub fn layout_epoch(&self) -> Epoch {
        self.layout_epoch
    }

    /// The range that holds `key`.
    #[must_use]
    pub fn lookup(&self, key: &[u8]) -> &RangeDescriptor {
        let found = self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back();
        match found {
            Some((_, range)) => range,
            None => panic!("the ranges tile the key space, so a range starts at the empty key"),
        }
    }

    /// Every range in key order.
    pub fn ranges(&self) -> impl Iterator<Item = &RangeDescriptor> {
        self.ranges.values()
    }

    /// The ranges a scan of `[start, end)` visits, in key order.
    pub fn ranges_overlapping<'a>(
        &'a self,
        start: &'a [u8],
        end: Option<&'a [u8]>,
    ) -> impl Iterator<Item = &'a RangeDescriptor> + 'a {
        let first = self.lookup(start).keys.start.clone();
        self.ranges
            .range(first..)
            .map(|(_, range)| range)
            .take_while(move |range| end.is_none_or(|end| range.keys.start.as_slice() < end))
    }

    /// The range with id `id`.
    #[must_use]
    pub fn range(&self, id: RangeId) -> Option<&RangeDescriptor> {
        self.ranges.values().find(|range| range.id == id)
    }

    /// Reserves a range id no range ever had (nor will): a split's right half takes it as its
    /// range id and, the same number, as its group id (`GroupId(id)`), so a split-born group's
    /// id is never used twice either. Ids that name a group the map routes to are passed over.
    pub fn reserve_range_id(&mut self) -> RangeId {
        loop {
            let id = self.next_range_id;
            self.next_range_id += 1;
            if !self.ranges.values().any(|range| range.group.0 == id) {
                return RangeId(id);
            }
        }
    }

    /// Splits range `id` at `at`: the left part keeps its id and group, the right part gets a
    /// new id and is served by `right_group` on the same replicas. Returns the new range's id.
    ///
    /// # Errors
    /// `UnknownRange`, or `SplitKeyOutsideRange` unless `start < at < end`.
    pub fn split(
        &mut self,
        id: RangeId,
        at: Vec<u8>,
        right_group: GroupId,
    ) -> Result<RangeId, RangeMapError> {
        let right_id = RangeId(self.next_range_id);
        // `split_as` moves `next_range_id` past the id it records.
        self.split_as(id, at, (right_id, right_group))?;
        Ok(right_id)
    }

    /// Records a split a range's group applied: range `id` keeps the keys below `at`, and
    /// range `right` (id reserved with `reserve_range_id`), served by its group on the same
    /// replicas, takes the keys from `at` on. The layout changes, so the epoch does.
    ///
    /// # Errors
    /// `UnknownRange`, or `SplitKeyOutsideRange` unless `start < at < end`.
    pub fn split_as(
        &mut self,
        id: RangeId,
        at: Vec<u8>,
        (right_id, right_group): (RangeId, GroupId),
    ) -> Result<(), RangeMapError> {
        let left = self
            .range(id)
            .ok_or(RangeMapError::UnknownRange(id))?
            .clone();
        let inside = at > left.keys.start && left.keys.end.as_ref().is_none_or(|end| &at < end);
        if !inside {
            return Err(RangeMapError::SplitKeyOutsideRange);
        }
        let right = RangeDescriptor {
            id: right_id,
            keys: KeyRange {
                start: at.clone(),
                end: left.keys.end.clone(),
            },
            group: right_group,
            replicas: left.replicas.clone(),
        };
        if let Some(range) = self.ranges.get_mut(&left.keys.start) {
            range.keys.end = Some(at.clone());
        }
        self.ranges.insert(at, right);
        self.next_range_id = self.next_range_id.max(right_id.0 + 1);
        self.epoch = self.epoch.next();
        self.layout_epoch = self.epoch;
        Ok(())
    }

    /// Records a merge a range's group applied: range `left` takes the keys of its right
    /// neighbour `right`, which leaves the map (its id is never used again). The layout
    /// changes, so the epoch does.
    ///
    /// # Errors
    /// `UnknownRange`, or `NotNeighbours` unless `left` ends where `right` starts.
    pub fn merge(&mut self, left: RangeId, right: RangeId) -> Result<(), RangeMapError> {
        let left_start = self
            .range(left)
            .ok_or(RangeMapError::UnknownRange(left))?
            .keys
            .start
            .clone();
        let right_range = self
            .range(right)
            .ok_or(RangeMapError::UnknownRange(right))?
            .clone();
        let left_range = self
            .ranges
            .get_mut(&left_start)
            .ok_or(RangeMapError::UnknownRange(left))?;
        if left_range.keys.end.as_ref() != Some(&right_range.keys.start) {
            return Err(RangeMapError::NotNeighbours { left, right });
        }
        left_range.keys.end = right_range.keys.end;
        self.ranges.remove(&right_range.keys.start);
        self.epoch = self.epoch.next();
        self.layout_epoch = self.epoch;
        Ok(())
    }

    /// Replaces the replicas of range `id` (a move).
    ///
    /// # Errors
    /// `UnknownRange` or `NoReplica`.
    pub fn set_replicas(
        &mut self,
        id: RangeId,
        replicas: Vec<NodeId>,
    ) -> Result<(), RangeMapError> {
        if replicas.is_empty() {
            return Err(RangeMapError::NoReplica);
        }
        let range = self
            .ranges
            .values_mut()
            .find(|range| range.id == id)
            .ok_or(RangeMapError::UnknownRange(id))?;
        range.replicas = replicas;
        self.epoch = self.epoch.next();
        Ok(())
    }
}

/// Ranges tile the key space: the first starts at the empty key, each ends where the next
/// starts, and only the last is unbounded.
fn check_tiling(ranges: &BTreeMap<Vec<u8>, RangeDescriptor>) -> Result<(), RangeMapError> {
    let tiling = RangeMapError::NotATiling;
    let mut expected_start: Option<&[u8]> = Some(&[]);
    for range in ranges.values() {
        match expected_start {
            Some(start) if start == range.keys.start.as_slice() => {}
            Some(_) => return Err(tiling("a range does not start where the previous ends")),
            None => return Err(tiling("a range follows the unbounded one")),
        }
        if range
            .keys
            .end
            .as_ref()
            .is_some_and(|end| end <= &range.keys.start)
        {
            return Err(tiling("a range ends before it starts"));
        }
        expected_start = range.keys.end.as_deref();
    }
    match expected_start {
        None => Ok(()),
        Some(_) => Err(tiling("the last range must be unbounded")),
    }
}

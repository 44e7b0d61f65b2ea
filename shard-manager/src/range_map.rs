//! The range map: ranges that tile the key space, each served by one group, with its own
//! epoch (`RangeEpoch`: a version moved by splits and merges, a conf version by replica
//! changes), under a map epoch that changes on every recorded change. A request carries its
//! range's epoch; a node refuses one whose key left the range with the descriptors it knows
//! for that key, and a client's cached map takes those in (`patch`) without asking for the
//! whole map again.

use crate::error::RangeMapError;
use crate::range::{Epoch, KeyRange, RangeDescriptor, RangeEpoch, RangeId};
use flotilla_raft::{GroupId, NodeId};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Ranges by start key; together they cover every key exactly once. A decoded map (from a
/// node, or a meta snapshot) is checked like a built one, so `lookup` cannot miss. The ranges
/// are a persistent map: a copy (`ranges_shared`) costs O(1), so the meta group's snapshot is
/// encoded off its Raft loop from one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RangeMapWire")]
pub struct RangeMap {
    epoch: Epoch,
    ranges: OrdMap<Vec<u8>, RangeDescriptor>,
    next_range_id: u64,
    /// Range id -> start key, and group -> range id: derived from `ranges`, never encoded.
    #[serde(skip)]
    index: Index,
}

/// The lookups by id and by group, so neither walks the map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Index {
    starts: HashMap<RangeId, Vec<u8>>,
    ranges_of_groups: HashMap<GroupId, RangeId>,
}

impl Index {
    fn of(ranges: &OrdMap<Vec<u8>, RangeDescriptor>) -> Self {
        let mut index = Self::default();
        for range in ranges.values() {
            index.add(range);
        }
        index
    }

    fn add(&mut self, range: &RangeDescriptor) {
        self.starts.insert(range.id, range.keys.start.clone());
        self.ranges_of_groups.insert(range.group, range.id);
    }

    fn remove(&mut self, range: &RangeDescriptor) {
        if self.starts.get(&range.id) == Some(&range.keys.start) {
            self.starts.remove(&range.id);
        }
        if self.ranges_of_groups.get(&range.group) == Some(&range.id) {
            self.ranges_of_groups.remove(&range.group);
        }
    }
}

/// A range map as decoded, before it is checked.
#[derive(Deserialize)]
struct RangeMapWire {
    epoch: Epoch,
    /// Decoded an entry at a time (`decode_ranges`), reserving nothing.
    #[serde(deserialize_with = "decode_ranges")]
    ranges: OrdMap<Vec<u8>, RangeDescriptor>,
    next_range_id: u64,
}

/// The ranges as decoded, each inserted as it is read: imbl's own decoder reserves as many
/// entries as the encoded length claims, and postcard does not bound a map's length by the
/// bytes left (a damaged length aborted the process on a failed allocation).
fn decode_ranges<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<OrdMap<Vec<u8>, RangeDescriptor>, D::Error> {
    struct Ranges;
    impl<'de> serde::de::Visitor<'de> for Ranges {
        type Value = OrdMap<Vec<u8>, RangeDescriptor>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("ranges by start key")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut entries: A,
        ) -> Result<Self::Value, A::Error> {
            let mut ranges = OrdMap::new();
            while let Some((start, range)) = entries.next_entry()? {
                ranges.insert(start, range);
            }
            Ok(ranges)
        }
    }
    deserializer.deserialize_map(Ranges)
}

impl TryFrom<RangeMapWire> for RangeMap {
    type Error = RangeMapError;

    fn try_from(wire: RangeMapWire) -> Result<Self, RangeMapError> {
        Self::checked(wire.epoch, wire.ranges, wire.next_range_id)
    }
}

/// What a range map encodes, copied in O(1) (the ranges are shared): it encodes to the map's
/// bytes, on any thread.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RangeMapCopy {
    epoch: Epoch,
    ranges: OrdMap<Vec<u8>, RangeDescriptor>,
    next_range_id: u64,
}

impl RangeMap {
    /// A map from descriptors that must tile the key space, starting at the empty key.
    ///
    /// # Errors
    /// `NotATiling` for gaps, overlaps or a missing first or last range; `NoReplica`.
    pub fn new(descriptors: Vec<RangeDescriptor>, epoch: Epoch) -> Result<Self, RangeMapError> {
        let mut ranges = OrdMap::new();
        for descriptor in descriptors {
            let start = descriptor.keys.start.clone();
            if ranges.insert(start, descriptor).is_some() {
                return Err(RangeMapError::NotATiling(
                    "two ranges start at the same key",
                ));
            }
        }
        Self::checked(epoch, ranges, 0)
    }

    /// A map from ranges filed by start key, checked: each filed under its own start, the
    /// whole tiling the key space. Range ids are reserved from `next_range_id` on, and never
    /// below one a range has.
    pub(crate) fn checked(
        epoch: Epoch,
        ranges: OrdMap<Vec<u8>, RangeDescriptor>,
        next_range_id: u64,
    ) -> Result<Self, RangeMapError> {
        if ranges
            .iter()
            .any(|(start, range)| *start != range.keys.start)
        {
            return Err(RangeMapError::NotATiling(
                "a range is filed under another start key",
            ));
        }
        if ranges.values().any(|range| range.replicas.is_empty()) {
            return Err(RangeMapError::NoReplica);
        }
        check_tiling(&ranges)?;
        let highest = ranges.values().map(|range| range.id.0).max().unwrap_or(0);
        Ok(Self {
            epoch,
            index: Index::of(&ranges),
            ranges,
            next_range_id: next_range_id.max(highest + 1),
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
                epoch: RangeEpoch::default(),
            })
            .collect();
        match Self::new(descriptors, Epoch(1)) {
            Ok(map) => map,
            Err(error) => panic!("a uniform split always tiles: {error}"),
        }
    }

    /// What the map encodes, copied in O(1).
    pub(crate) fn copy_encoded(&self) -> RangeMapCopy {
        RangeMapCopy {
            epoch: self.epoch,
            ranges: self.ranges.clone(),
            next_range_id: self.next_range_id,
        }
    }

    /// The map's epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The range that holds `key`.
    #[must_use]
    pub fn lookup(&self, key: &[u8]) -> &RangeDescriptor {
        match self.ranges.get_prev(key) {
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

    /// The range with id `id`. (In a client's cache that took in descriptors with `patch`,
    /// two pieces of a range may share its id; this is one of them.)
    #[must_use]
    pub fn range(&self, id: RangeId) -> Option<&RangeDescriptor> {
        self.index
            .starts
            .get(&id)
            .and_then(|start| self.ranges.get(start))
    }

    /// The range group `group` serves.
    #[must_use]
    pub fn range_of_group(&self, group: GroupId) -> Option<&RangeDescriptor> {
        self.index
            .ranges_of_groups
            .get(&group)
            .and_then(|&id| self.range(id))
    }

    /// Takes in `descriptor`, a node's word on a range (a refusal carries the current
    /// descriptors of the ranges that hold a key), if it is newer than every cached range it
    /// overlaps: of two overlapping descriptors, the one with the higher version is newer
    /// (`RangeEpoch`), and of two of the same range and version, the one with the higher conf
    /// version. The cached ranges it overlaps give way; what they held outside its keys stays
    /// theirs, so the map still tiles. Returns whether anything changed.
    pub fn patch(&mut self, descriptor: &RangeDescriptor) -> bool {
        if descriptor.replicas.is_empty() {
            return false;
        }
        let overlapped: Vec<RangeDescriptor> = self
            .ranges_overlapping(&descriptor.keys.start, descriptor.keys.end.as_deref())
            .cloned()
            .collect();
        let newer = overlapped.iter().all(|cached| {
            let same = cached.id == descriptor.id
                && cached.group == descriptor.group
                && cached.keys == descriptor.keys;
            if same {
                cached.epoch < descriptor.epoch
            } else {
                cached.epoch.version < descriptor.epoch.version
            }
        });
        if !newer {
            return false;
        }
        for cached in &overlapped {
            self.ranges.remove(&cached.keys.start);
            self.index.remove(cached);
        }
        let mut pieces = vec![descriptor.clone()];
        if let Some(first) = overlapped.first()
            && first.keys.start < descriptor.keys.start
        {
            let mut before = first.clone();
            before.keys.end = Some(descriptor.keys.start.clone());
            pieces.push(before);
        }
        if let (Some(last), Some(end)) = (overlapped.last(), &descriptor.keys.end)
            && last.keys.end.as_ref().is_none_or(|last_end| last_end > end)
        {
            let mut after = last.clone();
            after.keys.start = end.clone();
            pieces.push(after);
        }
        for piece in pieces {
            self.index.add(&piece);
            self.ranges.insert(piece.keys.start.clone(), piece);
        }
        self.next_range_id = self.next_range_id.max(descriptor.id.0 + 1);
        debug_assert!(
            check_tiling(&self.ranges).is_ok(),
            "a patch keeps the tiling"
        );
        true
    }

    /// Reserves a range id no range ever had (nor will): a split's right half takes it as its
    /// range id and, the same number, as its group id (`GroupId(id)`), so a split-born group's
    /// id is never used twice either. Ids that name a group the map routes to are passed over.
    pub fn reserve_range_id(&mut self) -> RangeId {
        loop {
            let id = self.next_range_id;
            self.next_range_id += 1;
            if !self.index.ranges_of_groups.contains_key(&GroupId(id)) {
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
        self.split_as(id, at, (right_id, right_group), 0)?;
        Ok(right_id)
    }

    /// Records a split a range's group applied: range `id` keeps the keys below `at`, and
    /// range `right` (id reserved with `reserve_range_id`), served by its group on the same
    /// replicas, takes the keys from `at` on. Both halves take the next version, or the
    /// `version` the group's state machine reported if that is higher.
    ///
    /// # Errors
    /// `UnknownRange`, or `SplitKeyOutsideRange` unless `start < at < end`.
    pub fn split_as(
        &mut self,
        id: RangeId,
        at: Vec<u8>,
        (right_id, right_group): (RangeId, GroupId),
        version: u64,
    ) -> Result<(), RangeMapError> {
        let left = self
            .range(id)
            .ok_or(RangeMapError::UnknownRange(id))?
            .clone();
        let inside = at > left.keys.start && left.keys.end.as_ref().is_none_or(|end| &at < end);
        if !inside {
            return Err(RangeMapError::SplitKeyOutsideRange);
        }
        let epoch = RangeEpoch {
            version: (left.epoch.version + 1).max(version),
            conf_version: left.epoch.conf_version,
        };
        let right = RangeDescriptor {
            id: right_id,
            keys: KeyRange {
                start: at.clone(),
                end: left.keys.end.clone(),
            },
            group: right_group,
            replicas: left.replicas.clone(),
            epoch,
        };
        if let Some(range) = self.ranges.get_mut(&left.keys.start) {
            range.keys.end = Some(at.clone());
            range.epoch = epoch;
        }
        self.index.add(&right);
        self.ranges.insert(at, right);
        self.next_range_id = self.next_range_id.max(right_id.0 + 1);
        self.epoch = self.epoch.next();
        Ok(())
    }

    /// Records a merge a range's group applied: range `left` takes the keys of its right
    /// neighbour `right`, which leaves the map (its id is never used again). `left` takes a
    /// version above both ranges', or the `version` its state machine reported if higher.
    ///
    /// # Errors
    /// `UnknownRange`, or `NotNeighbours` unless `left` ends where `right` starts.
    pub fn merge(
        &mut self,
        left: RangeId,
        right: RangeId,
        version: u64,
    ) -> Result<(), RangeMapError> {
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
        left_range.keys.end = right_range.keys.end.clone();
        left_range.epoch.version =
            (left_range.epoch.version.max(right_range.epoch.version) + 1).max(version);
        self.ranges.remove(&right_range.keys.start);
        self.index.remove(&right_range);
        self.epoch = self.epoch.next();
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
        let start = self
            .index
            .starts
            .get(&id)
            .ok_or(RangeMapError::UnknownRange(id))?;
        let range = self
            .ranges
            .get_mut(start)
            .ok_or(RangeMapError::UnknownRange(id))?;
        range.replicas = replicas;
        range.epoch.conf_version += 1;
        self.epoch = self.epoch.next();
        Ok(())
    }
}

/// Ranges tile the key space: the first starts at the empty key, each ends where the next
/// starts, and only the last is unbounded.
fn check_tiling(ranges: &OrdMap<Vec<u8>, RangeDescriptor>) -> Result<(), RangeMapError> {
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

//! The meta group's state machine: the range map and the node directory, replicated as one
//! Raft group (group 0) so the "registry" of the cluster has no single point of failure.
//! Its commands are Raft entries; its snapshot is the encoded state.

use crate::directory::Directory;
use crate::error::RangeMapError;
use crate::placement::{
    ApplyError, ClusterView, Decision, NodeState, NodeView, RangeView, Replica, ViewError,
};
use crate::range::RangeId;
use crate::range_map::RangeMap;
use flotilla_raft::{GroupId, NodeId};
use imbl::OrdSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The group every initial node hosts, whose log holds the range map and the directory.
pub const META_GROUP: GroupId = GroupId(0);

/// A change to the meta state, proposed to the meta group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// `node` now listens at `address` (a removed node is refused).
    SetAddress {
        /// The node.
        node: NodeId,
        /// Its `host:port`.
        address: String,
    },
    /// `node`'s data directory is `directory` (its random id, chosen at bootstrap), for good:
    /// every node then refuses batches from any other directory under that id.
    RegisterDataDirectory {
        /// The node.
        node: NodeId,
        /// Its data directory's id.
        directory: u128,
    },
    /// A decision of the placement driver (start, advance, finish or abandon an operator).
    Placement(Decision),
    /// The leader of range `range`'s group applied the membership `replicas`, at `index` of
    /// the group's log. An older membership than the one recorded changes nothing.
    RangeMembership {
        /// The range.
        range: RangeId,
        /// Its replicas and their roles.
        replicas: Vec<Replica>,
        /// The index of the membership entry in the range's log.
        index: u64,
    },
    /// A new node joins the cluster at `address`: up, with no replica yet. Its id must never
    /// have been used in this cluster (a node that lost its data joins under a new id).
    AddNode {
        /// The node.
        node: NodeId,
        /// Its `host:port`.
        address: String,
    },
    /// An operator sets a node's state: `Up` (back from draining), `Draining` or `Removed`
    /// (for good: its id is never used again).
    SetNodeState {
        /// The node.
        node: NodeId,
        /// Its new state.
        state: NodeState,
    },
    // Appended: the meta log encodes a command by its position.
    /// Reserves a range id (and the group id of the same number) for a split's right half;
    /// the entry's proposer is answered with it.
    ReserveRange,
    /// The group of range `range` applied a split at `at`: range `right`, served by group
    /// `right_group` on `voters`, now holds the keys from `at` on. Recorded once: a copy, or a
    /// split the map already shows, changes nothing.
    RecordSplit {
        /// The range that split (it keeps the keys below `at`).
        range: RangeId,
        /// The first key of the right half.
        at: Vec<u8>,
        /// The right half's range id (reserved).
        right: RangeId,
        /// The right half's group.
        right_group: GroupId,
        /// The right half's voters, as the split created its group.
        voters: Vec<NodeId>,
    },
    /// The group of range `left` applied the merge of its right neighbour `right`: `left`
    /// now holds `right`'s keys too, and `right` leaves the map and the placement view, for
    /// good. Recorded once: a copy, or a merge the map already shows, changes nothing.
    RecordMerge {
        /// The range that took the keys.
        left: RangeId,
        /// The range merged into it.
        right: RangeId,
    },
    // Appended: `RecordSplit` and `RecordMerge` are what logs written before ranges had
    // epochs hold; they apply as these do, with the version the map counts itself.
    /// `RecordSplit`, with `version`, the version both halves' state machines have after it.
    RecordSplitAtVersion {
        /// The split as `RecordSplit` names it.
        split: MapSplit,
        /// The halves' version.
        version: u64,
    },
    /// `RecordMerge`, with `version`, the version the left range's state machine has after it.
    RecordMergeAtVersion {
        /// The range that took the keys.
        left: RangeId,
        /// The range merged into it.
        right: RangeId,
        /// The left range's version.
        version: u64,
    },
}

/// A split as the meta group records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSplit {
    /// The range that split (it keeps the keys below `at`).
    pub range: RangeId,
    /// The first key of the right half.
    pub at: Vec<u8>,
    /// The right half's range id (reserved).
    pub right: RangeId,
    /// The right half's group.
    pub right_group: GroupId,
    /// The right half's voters, as the split created its group.
    pub voters: Vec<NodeId>,
}

/// What a meta snapshot starts with: this magic, then the crc32c of the rest (little-endian),
/// then the encoded state. A state's encoding has no checksum of its own, and a damaged byte
/// (in an address, say) can still decode into a valid, different state; bytes without the
/// magic were written before snapshots carried one, and decode as they are.
const SNAPSHOT_MAGIC: &[u8; 8] = b"FLOTMETA";

/// `Placement`'s position among the commands: the meta log encodes a command's position first.
const PLACEMENT_POSITION: u8 = 2;

/// What a meta command gives its proposer beyond being applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaAnswer {
    /// Applied; nothing to say.
    Applied,
    /// The range id `ReserveRange` reserved.
    Reserved(RangeId),
}

/// What the meta group holds: the range map, where every node listens, and the data directory
/// each node id belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// The ranges, their groups and replicas, under an epoch.
    pub map: RangeMap,
    /// Node id -> address.
    pub directory: Directory,
    /// Node id -> the id of its data directory, registered once.
    pub data_directories: BTreeMap<NodeId, u128>,
    /// Node states, the replicas of every range with their roles, and the operators in
    /// flight: the placement driver's view. Only its replicated part is encoded and compared.
    pub cluster: ClusterView,
    /// The groups merged into their left neighbour, for good: every replica of one is
    /// destroyed wherever it is found. (Encoded last; a state encoded before merges existed
    /// decodes with none.)
    pub merged: OrdSet<GroupId>,
}

/// A meta state's snapshot, copied on the meta group's loop in O(nodes + operators in flight)
/// (its ranges and merged groups are persistent maps it shares with the state) and encoded
/// anywhere else: `encode` gives the bytes `MetaState::encode` gave when it was taken.
#[derive(Clone, Debug, Serialize)]
pub struct MetaSnapshot {
    map: crate::range_map::RangeMapCopy,
    directory: Directory,
    data_directories: BTreeMap<NodeId, u128>,
    cluster: crate::placement::record::ViewCopy,
    merged: OrdSet<GroupId>,
}

impl MetaSnapshot {
    /// The snapshot bytes, checksummed (`MetaState::decode` reads them).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&[0; 4]);
        let mut bytes = postcard::to_extend(self, bytes).expect("encoding into a Vec cannot fail");
        let checksum = crc32c::crc32c(&bytes[SNAPSHOT_MAGIC.len() + 4..]);
        bytes[SNAPSHOT_MAGIC.len()..SNAPSHOT_MAGIC.len() + 4]
            .copy_from_slice(&checksum.to_le_bytes());
        bytes
    }
}

/// Why a meta command was refused (every replica refuses it alike).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MetaError {
    /// The range map refused the change.
    #[error(transparent)]
    RangeMap(#[from] RangeMapError),
    /// The placement view refused a node or range update.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The placement view refused a driver's decision.
    #[error(transparent)]
    Placement(#[from] ApplyError),
    /// A joining node's id was used before in this cluster.
    #[error(
        "{0} was used before in this cluster: a node joins under an id never used (a node that \
         lost its data joins under a new id)"
    )]
    NodeIdUsed(NodeId),
    /// A split's right half names a group another range has.
    #[error("group {0} already serves a range")]
    GroupInUse(GroupId),
    /// The node was removed, for good: it has no address any more.
    #[error("{0} was removed, and a removed node stays removed")]
    NodeRemoved(NodeId),
    /// A node's state may be set to up, draining or removed only: suspect and down are the
    /// driver's reading of its heartbeats.
    #[error("a node's state can be set to up, draining or removed, not {0:?}")]
    StateNotSettable(NodeState),
    /// The node id is registered with another data directory.
    #[error(
        "{node} is registered with data directory {registered:032x}, not {claimed:032x}: a node \
         that lost its data must join under a new id"
    )]
    OtherDataDirectory {
        /// The node.
        node: NodeId,
        /// Its registered directory.
        registered: u128,
        /// The directory claimed now.
        claimed: u128,
    },
}

/// Why bytes did not decode as meta state or a meta command.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("meta group bytes do not decode: {0}")]
pub struct MetaCodecError(String);

impl MetaState {
    /// The state of a new cluster: `map` over the nodes of `directory`, every node up and
    /// every range's replicas voters.
    #[must_use]
    pub fn new(map: RangeMap, directory: Directory) -> Self {
        let mut cluster = ClusterView::new();
        for node in directory.nodes() {
            let fresh = cluster.upsert_node(NodeView::up(node, 0));
            debug_assert!(fresh.is_ok(), "a new view knows no removed node");
        }
        for range in map.ranges() {
            // A replica on a node the directory lacks still counts: the node is recorded up.
            for &node in &range.replicas {
                if cluster.node(node).is_none() {
                    let fresh = cluster.upsert_node(NodeView::up(node, 0));
                    debug_assert!(fresh.is_ok(), "a new view knows no removed node");
                }
            }
            let mut view = RangeView::voters(range.id, range.group, &range.replicas);
            view.leader = None;
            let fits = cluster.upsert_range(view);
            debug_assert!(fits.is_ok(), "an initial range does not fit: {fits:?}");
        }
        Self {
            map,
            directory,
            data_directories: BTreeMap::new(),
            cluster,
            merged: OrdSet::new(),
        }
    }

    /// Applies one committed command. A refused command changes nothing; every replica
    /// refuses it alike, so the state stays identical everywhere.
    ///
    /// # Errors
    /// The range map's refusal (unknown range, no replica), or a node id registered with
    /// another data directory.
    pub fn apply(&mut self, command: MetaCommand) -> Result<(), MetaError> {
        self.apply_answered(command).map(drop)
    }

    /// `apply`, with what the command gives its proposer (`ReserveRange`'s id).
    ///
    /// # Errors
    /// As `apply`.
    pub fn apply_answered(&mut self, command: MetaCommand) -> Result<MetaAnswer, MetaError> {
        let applied = match command {
            MetaCommand::ReserveRange => {
                return Ok(MetaAnswer::Reserved(self.map.reserve_range_id()));
            }
            MetaCommand::RecordSplit {
                range,
                at,
                right,
                right_group,
                voters,
            } => {
                let split = MapSplit {
                    range,
                    at,
                    right,
                    right_group,
                    voters,
                };
                self.record_split(split, 0)
            }
            MetaCommand::RecordSplitAtVersion { split, version } => {
                self.record_split(split, version)
            }
            MetaCommand::RecordMerge { left, right } => self.record_merge(left, right, 0),
            MetaCommand::RecordMergeAtVersion {
                left,
                right,
                version,
            } => self.record_merge(left, right, version),
            MetaCommand::SetAddress { node, address } => {
                if self
                    .cluster
                    .node(node)
                    .is_some_and(|known| known.state == NodeState::Removed)
                {
                    return Err(MetaError::NodeRemoved(node));
                }
                self.directory.insert(node, address);
                Ok(())
            }
            MetaCommand::RegisterDataDirectory { node, directory } => {
                match self.data_directories.get(&node) {
                    Some(&registered) if registered != directory => {
                        Err(MetaError::OtherDataDirectory {
                            node,
                            registered,
                            claimed: directory,
                        })
                    }
                    _ => {
                        self.data_directories.insert(node, directory);
                        Ok(())
                    }
                }
            }
            MetaCommand::Placement(decision) => {
                self.cluster.apply(&decision)?;
                Ok(())
            }
            MetaCommand::RangeMembership {
                range,
                replicas,
                index,
            } => self.set_membership(range, replicas, index),
            MetaCommand::AddNode { node, address } => {
                if self.cluster.node(node).is_some() || self.data_directories.contains_key(&node) {
                    return Err(MetaError::NodeIdUsed(node));
                }
                self.cluster.upsert_node(NodeView::up(node, 0))?;
                self.directory.insert(node, address);
                Ok(())
            }
            MetaCommand::SetNodeState { node, state } => match state {
                NodeState::Up | NodeState::Draining | NodeState::Removed => {
                    Ok(self.cluster.set_node_state(node, state)?)
                }
                NodeState::Suspect | NodeState::Down { .. } => {
                    Err(MetaError::StateNotSettable(state))
                }
            },
        };
        applied.map(|()| MetaAnswer::Applied)
    }

    /// A range's merge, once: the left range takes the right one's keys, and the right one
    /// leaves the map and the placement view.
    fn record_merge(
        &mut self,
        left: RangeId,
        right: RangeId,
        version: u64,
    ) -> Result<(), MetaError> {
        let Some(right_group) = self.map.range(right).map(|range| range.group) else {
            return Ok(());
        };
        self.map.merge(left, right, version)?;
        self.cluster.remove_range(right);
        self.merged.insert(right_group);
        Ok(())
    }

    /// A range's split, once: the map's left range shrinks and the right one appears, and the
    /// placement view gets the right range with its voters (leaderless until its leader
    /// reports). Both halves take `version` if it is above the map's next one.
    fn record_split(&mut self, split: MapSplit, version: u64) -> Result<(), MetaError> {
        let MapSplit {
            range,
            at,
            right,
            right_group,
            voters,
        } = split;
        // Recorded already; or recorded, then merged away since (a late copy of the record
        // must not bring the range back).
        if self.map.range(right).is_some() || self.merged.contains(&right_group) {
            return Ok(());
        }
        if voters.is_empty() {
            return Err(RangeMapError::NoReplica.into());
        }
        if self.cluster.range_of_group(right_group).is_some() {
            return Err(MetaError::GroupInUse(right_group));
        }
        let mut view = RangeView::voters(right, right_group, &voters);
        view.leader = None;
        // Everything that can refuse is checked before anything changes.
        view.validate()?;
        if let Some(&node) = voters
            .iter()
            .find(|&&node| self.cluster.node(node).is_none())
        {
            return Err(ViewError::UnknownNode(node).into());
        }
        self.map
            .split_as(range, at, (right, right_group), version)?;
        self.map.set_replicas(right, voters)?;
        self.cluster.upsert_range(view)?;
        Ok(())
    }

    /// Records a range's newer membership in the view, and its voters in the range map (which
    /// routes clients to them).
    fn set_membership(
        &mut self,
        range: RangeId,
        replicas: Vec<Replica>,
        index: u64,
    ) -> Result<(), MetaError> {
        let Some(current) = self.cluster.range(range) else {
            return Err(RangeMapError::UnknownRange(range).into());
        };
        if index <= current.membership_index {
            return Ok(());
        }
        let mut updated = current.clone();
        updated.replicas = replicas;
        updated.membership_index = index;
        if updated
            .leader
            .is_some_and(|leader| !updated.is_voter(leader))
        {
            updated.leader = None;
        }
        let mut voters: Vec<NodeId> = updated.voter_nodes().collect();
        voters.sort();
        self.cluster.upsert_range(updated)?;
        let routed = self.map.range(range).map(|range| range.replicas.clone());
        if routed.is_some_and(|mut routed| {
            routed.sort();
            routed != voters
        }) {
            self.map.set_replicas(range, voters)?;
        }
        Ok(())
    }

    /// The snapshot bytes of the state.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        self.snapshot().encode()
    }

    /// The state as its snapshot encodes it, copied without walking its ranges: the loop takes
    /// it, another thread encodes it.
    #[must_use]
    pub fn snapshot(&self) -> MetaSnapshot {
        MetaSnapshot {
            map: self.map.copy_encoded(),
            directory: self.directory.clone(),
            data_directories: self.data_directories.clone(),
            cluster: self.cluster.copy_replicated(),
            merged: self.merged.clone(),
        }
    }

    /// The state from snapshot bytes (or from a state encoded before snapshots carried a
    /// checksum).
    ///
    /// # Errors
    /// The checksum does not match, or the bytes are not an encoded `MetaState`.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaCodecError> {
        let bytes = match bytes.strip_prefix(SNAPSHOT_MAGIC) {
            None => bytes,
            Some(rest) => {
                let Some((checksum, body)) = rest.split_first_chunk::<4>() else {
                    return Err(MetaCodecError("the snapshot ends in its checksum".into()));
                };
                if u32::from_le_bytes(*checksum) != crc32c::crc32c(body) {
                    return Err(MetaCodecError(
                        "the snapshot's checksum does not match: its bytes are damaged".into(),
                    ));
                }
                body
            }
        };
        let upgraded = |result: Result<Self, RangeMapError>| {
            result.map_err(|error| MetaCodecError(error.to_string()))
        };
        decode(bytes).or_else(|error| {
            if let Ok(before) = decode::<crate::legacy::MetaStateBeforeEpochs>(bytes) {
                return upgraded(before.upgrade());
            }
            if let Ok(before) = decode::<crate::legacy::MetaStateBeforeMerges>(bytes) {
                return upgraded(before.upgrade());
            }
            Err(error)
        })
    }
}

impl MetaCommand {
    /// The entry payload of the command.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// The command in an entry payload (a placement decision written before decisions named
    /// the record they were made on included).
    ///
    /// # Errors
    /// The bytes are not an encoded `MetaCommand`.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaCodecError> {
        decode(bytes).or_else(|error| match bytes {
            [PLACEMENT_POSITION, decision @ ..] => {
                decode::<crate::legacy::DecisionBeforeRecords>(decision)
                    .map(|decision| MetaCommand::Placement(decision.into()))
                    .map_err(|_| error)
            }
            _ => Err(error),
        })
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("encoding into a Vec cannot fail")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MetaCodecError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(MetaCodecError(format!("{} trailing bytes", rest.len()))),
        Err(error) => Err(MetaCodecError(error.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::placement::{OperatorId, OperatorKind, ReplicaRole, Step};

    fn state() -> MetaState {
        MetaState::new(
            RangeMap::uniform(4, |_| vec![NodeId(1), NodeId(2)]),
            Directory::new([
                (NodeId(1), "127.0.0.1:1".to_string()),
                (NodeId(2), "127.0.0.1:2".to_string()),
            ]),
        )
    }

    #[test]
    fn state_and_commands_roundtrip() {
        let state = state();
        assert_eq!(MetaState::decode(&state.encode()), Ok(state));
        let command = MetaCommand::SetAddress {
            node: NodeId(3),
            address: "h:3".into(),
        };
        assert_eq!(MetaCommand::decode(&command.encode()), Ok(command));
        assert!(MetaCommand::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn a_snapshot_encodes_as_the_state_did_and_stays_as_it_was_taken() {
        // What b67eb72 (before the ranges were persistent maps and the snapshot a copy)
        // encoded for the state the commands below make.
        const ENCODED_BEFORE: &str = concat!(
            "04040001000101200102010201000120050120010240000502010201010240000202400001028000",
            "02020102000002800003028000000302010201000602010b3132372e302e302e313a31020b313237",
            "2e302e302e313a320101edfd03020100020304010102010002000002020201000200000303020100",
            "020000050502010002000001000202010302000a0201000200010104",
        );
        let hex =
            |bytes: &[u8]| -> String { bytes.iter().map(|byte| format!("{byte:02x}")).collect() };
        let mut state = state();
        let commands = [
            MetaCommand::RegisterDataDirectory {
                node: NodeId(1),
                directory: 0xfeed,
            },
            MetaCommand::SetNodeState {
                node: NodeId(2),
                state: NodeState::Draining,
            },
            MetaCommand::RecordMerge {
                left: RangeId(3),
                right: RangeId(4),
            },
            MetaCommand::RecordSplit {
                range: RangeId(1),
                at: vec![0x20],
                right: RangeId(5),
                right_group: GroupId(5),
                voters: vec![NodeId(1), NodeId(2)],
            },
            MetaCommand::Placement(Decision::Start {
                range: RangeId(2),
                kind: OperatorKind::Drain,
                steps: vec![Step::Remove { node: NodeId(2) }],
                now_ms: 10,
                decided_on: None,
            }),
        ];
        for command in commands {
            state.apply(command).unwrap();
        }
        assert!(!state.merged.is_empty() && state.cluster.operators().count() == 1);
        let bytes = state.encode();
        let (magic, rest) = bytes.split_at(SNAPSHOT_MAGIC.len());
        assert_eq!(
            (magic, hex(&rest[4..])),
            (&SNAPSHOT_MAGIC[..], ENCODED_BEFORE.into())
        );
        assert_eq!(MetaState::decode(&bytes), Ok(state.clone()));
        // As b67eb72 wrote it, without the checksum: it decodes the same.
        let unchecked: Vec<u8> = (0..ENCODED_BEFORE.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&ENCODED_BEFORE[at..at + 2], 16).unwrap())
            .collect();
        assert_eq!(MetaState::decode(&unchecked), Ok(state.clone()));
        // A damaged byte anywhere is refused, the magic's included.
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(MetaState::decode(&damaged).is_err(), "byte {at} damaged");
        }
        assert!(
            MetaState::decode(&bytes[..10]).is_err(),
            "cut in the checksum"
        );

        // What is applied after the copy is not in it.
        let snapshot = state.snapshot();
        let later = [
            MetaCommand::RecordMerge {
                left: RangeId(1),
                right: RangeId(5),
            },
            MetaCommand::AddNode {
                node: NodeId(3),
                address: "127.0.0.1:3".into(),
            },
            MetaCommand::RecordSplit {
                range: RangeId(3),
                at: vec![0xd0],
                right: RangeId(6),
                right_group: GroupId(6),
                voters: vec![NodeId(1), NodeId(3)],
            },
        ];
        for command in later {
            state.apply(command).unwrap();
        }
        assert_eq!(snapshot.encode(), bytes);
        assert_ne!(state.encode(), bytes);
        assert_eq!(MetaState::decode(&state.encode()), Ok(state));
    }

    #[test]
    fn a_split_is_recorded_once_under_a_reserved_id() {
        let mut state = state();
        let reserve = |state: &mut MetaState| match state.apply_answered(MetaCommand::ReserveRange)
        {
            Ok(MetaAnswer::Reserved(id)) => id,
            other => panic!("reserving answered {other:?}"),
        };
        let right = reserve(&mut state);
        assert_eq!(right, RangeId(5), "past the four uniform ranges");
        assert_eq!(reserve(&mut state), RangeId(6), "never the same id twice");
        let parent = state.map.lookup(&[0x10]).clone();
        let voters = vec![NodeId(1), NodeId(2)];
        let record = |at: &[u8], voters: &[NodeId]| MetaCommand::RecordSplit {
            range: parent.id,
            at: at.to_vec(),
            right,
            right_group: GroupId(right.0),
            voters: voters.to_vec(),
        };
        // Refusals change nothing.
        let before = state.clone();
        let outside = state.apply(record(&[0x50], &voters));
        assert_eq!(outside, Err(RangeMapError::SplitKeyOutsideRange.into()));
        let stranger = state.apply(record(&[0x20], &[NodeId(9)]));
        assert_eq!(stranger, Err(ViewError::UnknownNode(NodeId(9)).into()));
        let taken = MetaCommand::RecordSplit {
            range: parent.id,
            at: vec![0x20],
            right,
            right_group: GroupId(2),
            voters: voters.clone(),
        };
        assert_eq!(state.apply(taken), Err(MetaError::GroupInUse(GroupId(2))));
        assert_eq!(state, before);

        state.apply(record(&[0x20], &voters)).unwrap();
        assert_eq!(state.map.lookup(&[0x10]).keys.end, Some(vec![0x20]));
        let carved = state.map.lookup(&[0x20, 0x01]).clone();
        assert_eq!((carved.id, carved.group), (right, GroupId(right.0)));
        assert_eq!(carved.keys.end, parent.keys.end);
        assert_eq!(carved.replicas, voters);
        let version = parent.epoch.version + 1;
        assert_eq!(carved.epoch.version, version, "both halves move on");
        assert_eq!(state.map.lookup(&[0x10]).epoch.version, version);
        let view = state.cluster.range_of_group(GroupId(right.0)).unwrap();
        assert_eq!(view.voter_nodes().collect::<Vec<_>>(), voters);
        // A copy of the record (a second report of the same split) changes nothing.
        let recorded = state.clone();
        state.apply(record(&[0x20], &voters)).unwrap();
        assert_eq!(state, recorded);
        assert_eq!(MetaState::decode(&state.encode()), Ok(state));
    }

    #[test]
    fn a_merge_is_recorded_once_and_only_between_neighbours() {
        let mut state = state();
        let first = state.map.lookup(&[0x10]).clone();
        let second = state.map.lookup(&first.keys.end.clone().unwrap()).clone();
        let third = state.map.lookup(&second.keys.end.clone().unwrap()).clone();
        // Not neighbours: refused, nothing changed.
        let before = state.clone();
        let apart = MetaCommand::RecordMerge {
            left: first.id,
            right: third.id,
        };
        assert_eq!(
            state.apply(apart),
            Err(RangeMapError::NotNeighbours {
                left: first.id,
                right: third.id
            }
            .into())
        );
        assert_eq!(state, before);
        let merge = MetaCommand::RecordMerge {
            left: first.id,
            right: second.id,
        };
        state.apply(merge.clone()).unwrap();
        let merged = state.map.lookup(&[0x10]).clone();
        assert_eq!(merged.id, first.id);
        assert_eq!(merged.keys.end, second.keys.end);
        assert_eq!(state.map.lookup(&second.keys.start).id, first.id);
        assert!(state.map.range(second.id).is_none());
        assert!(state.cluster.range(second.id).is_none());
        assert!(state.merged.contains(&second.group));
        assert!(merged.epoch.version > first.epoch.version.max(second.epoch.version));
        // A late copy of the split that made the merged range does not bring it back.
        let late = MetaCommand::RecordSplit {
            range: first.id,
            at: second.keys.start.clone(),
            right: second.id,
            right_group: second.group,
            voters: vec![NodeId(1), NodeId(2)],
        };
        let recorded = state.clone();
        state.apply(late).unwrap();
        assert_eq!(state, recorded);
        // A copy changes nothing; the merged id is never handed out again.
        let recorded = state.clone();
        state.apply(merge).unwrap();
        assert_eq!(state, recorded);
        assert!(state.map.reserve_range_id().0 > 4);
        assert_eq!(MetaState::decode(&state.encode()), Ok(state));
    }

    #[test]
    fn records_carry_the_version_the_range_reported() {
        let mut state = state();
        let parent = state.map.lookup(&[0x10]).clone();
        let split = MetaCommand::RecordSplitAtVersion {
            split: MapSplit {
                range: parent.id,
                at: vec![0x20],
                right: RangeId(5),
                right_group: GroupId(5),
                voters: vec![NodeId(1), NodeId(2)],
            },
            version: 7,
        };
        state.apply(split).unwrap();
        assert_eq!(state.map.lookup(&[0x10]).epoch.version, 7);
        assert_eq!(state.map.lookup(&[0x20]).epoch.version, 7);
        // A reported version below the map's next one does not take a version back.
        let merge = MetaCommand::RecordMergeAtVersion {
            left: parent.id,
            right: RangeId(5),
            version: 3,
        };
        state.apply(merge).unwrap();
        assert_eq!(state.map.lookup(&[0x20]).epoch.version, 8);
        assert_eq!(state.map.lookup(&[0x20]).id, parent.id);
        assert_eq!(MetaState::decode(&state.encode()), Ok(state));
    }

    #[test]
    fn a_decision_encoded_before_decisions_named_their_record_decodes_with_none() {
        #[derive(Serialize)]
        enum CommandBefore {
            SetAddress { node: NodeId, address: String },
            RegisterDataDirectory { node: NodeId, directory: u128 },
            Placement(DecisionBefore),
        }
        #[derive(Serialize)]
        enum DecisionBefore {
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
        }
        let steps = vec![Step::Remove { node: NodeId(2) }];
        let start = CommandBefore::Placement(DecisionBefore::Start {
            range: RangeId(2),
            kind: OperatorKind::Drain,
            steps: steps.clone(),
            now_ms: 10,
        });
        let decoded = MetaCommand::decode(&postcard::to_allocvec(&start).unwrap());
        let start_on = |decided_on| Decision::Start {
            range: RangeId(2),
            kind: OperatorKind::Drain,
            steps: steps.clone(),
            now_ms: 10,
            decided_on,
        };
        assert_eq!(decoded, Ok(MetaCommand::Placement(start_on(None))));
        let advance = CommandBefore::Placement(DecisionBefore::Advance {
            operator: OperatorId(3),
            step_index: 1,
            now_ms: 20,
        });
        let decoded = MetaCommand::decode(&postcard::to_allocvec(&advance).unwrap());
        let expected_advance = Decision::Advance {
            operator: OperatorId(3),
            step_index: 1,
            now_ms: 20,
            decided_on: None,
        };
        assert_eq!(decoded, Ok(MetaCommand::Placement(expected_advance)));
        // The commands before it, and today's encoding, decode as they are.
        let address = CommandBefore::SetAddress {
            node: NodeId(1),
            address: "127.0.0.1:1".into(),
        };
        assert_eq!(
            MetaCommand::decode(&postcard::to_allocvec(&address).unwrap()),
            Ok(MetaCommand::SetAddress {
                node: NodeId(1),
                address: "127.0.0.1:1".into(),
            })
        );
        let directory = CommandBefore::RegisterDataDirectory {
            node: NodeId(1),
            directory: 7,
        };
        assert_eq!(
            MetaCommand::decode(&postcard::to_allocvec(&directory).unwrap()),
            Ok(MetaCommand::RegisterDataDirectory {
                node: NodeId(1),
                directory: 7,
            })
        );
        let replicas = vec![Replica {
            node: NodeId(2),
            role: ReplicaRole::Voter,
        }];
        let named = MetaCommand::Placement(start_on(Some(replicas)));
        assert_eq!(named.encode()[0], PLACEMENT_POSITION);
        assert_eq!(MetaCommand::decode(&named.encode()), Ok(named));
    }

    #[test]
    fn a_removed_node_gets_no_new_address() {
        let mut state = state();
        let moved = MetaCommand::SetAddress {
            node: NodeId(2),
            address: "127.0.0.1:9".into(),
        };
        assert_eq!(state.apply(moved.clone()), Ok(()));
        assert_eq!(state.directory.address(NodeId(2)), Some("127.0.0.1:9"));
        let removed = MetaCommand::SetNodeState {
            node: NodeId(2),
            state: NodeState::Removed,
        };
        assert_eq!(state.apply(removed), Ok(()));
        let again = MetaCommand::SetAddress {
            node: NodeId(2),
            address: "127.0.0.1:10".into(),
        };
        assert_eq!(state.apply(again), Err(MetaError::NodeRemoved(NodeId(2))));
        assert_eq!(state.directory.address(NodeId(2)), Some("127.0.0.1:9"));
    }

    #[test]
    fn commands_change_the_directory_and_the_epoch() {
        let mut state = state();
        let command = MetaCommand::SetAddress {
            node: NodeId(2),
            address: "127.0.0.1:2".into(),
        };
        assert_eq!(state.apply(command), Ok(()));
        assert_eq!(state.directory.address(NodeId(2)), Some("127.0.0.1:2"));
        let epoch = state.map.epoch();
        let replicas = |nodes: &[(u64, ReplicaRole)]| -> Vec<Replica> {
            nodes
                .iter()
                .map(|&(node, role)| Replica {
                    node: NodeId(node),
                    role,
                })
                .collect()
        };
        let with_learner = MetaCommand::RangeMembership {
            range: RangeId(1),
            replicas: replicas(&[
                (1, ReplicaRole::Voter),
                (2, ReplicaRole::Voter),
                (3, ReplicaRole::Learner),
            ]),
            index: 5,
        };
        assert!(
            state.apply(with_learner.clone()).is_err(),
            "node 3 is unknown"
        );
        state.directory.insert(NodeId(3), "127.0.0.1:3".into());
        state
            .cluster
            .upsert_node(NodeView::up(NodeId(3), 0))
            .unwrap();
        assert_eq!(state.apply(with_learner), Ok(()));
        assert_eq!(state.map.epoch(), epoch, "a learner changes no route");
        let moved = MetaCommand::RangeMembership {
            range: RangeId(1),
            replicas: replicas(&[(3, ReplicaRole::Voter), (2, ReplicaRole::Voter)]),
            index: 9,
        };
        assert_eq!(state.apply(moved), Ok(()));
        assert!(state.map.epoch() > epoch);
        let moved = state.map.range(RangeId(1)).unwrap();
        assert_eq!(moved.replicas, vec![NodeId(2), NodeId(3)]);
        assert_eq!(moved.epoch.version, 0, "the keys did not change");
        assert_eq!(moved.epoch.conf_version, 1, "the replicas did");
        let older = MetaCommand::RangeMembership {
            range: RangeId(1),
            replicas: replicas(&[(1, ReplicaRole::Voter)]),
            index: 7,
        };
        let before = state.clone();
        assert_eq!(state.apply(older), Ok(()), "an older membership is ignored");
        assert_eq!(state, before);
        let unknown = MetaCommand::RangeMembership {
            range: RangeId(99),
            replicas: replicas(&[(2, ReplicaRole::Voter)]),
            index: 1,
        };
        assert!(state.apply(unknown).is_err());
        assert_eq!(state, before);
    }

    #[test]
    fn node_states_and_operators_are_recorded_and_encoded() {
        let mut state = state();
        let drain = MetaCommand::SetNodeState {
            node: NodeId(2),
            state: NodeState::Draining,
        };
        assert_eq!(state.apply(drain), Ok(()));
        let down = MetaCommand::SetNodeState {
            node: NodeId(2),
            state: NodeState::Down { since_ms: 1 },
        };
        assert!(matches!(
            state.apply(down),
            Err(MetaError::StateNotSettable(_))
        ));
        let start = MetaCommand::Placement(Decision::Start {
            range: RangeId(2),
            kind: OperatorKind::Drain,
            steps: vec![Step::Remove { node: NodeId(2) }],
            now_ms: 10,
            decided_on: state
                .cluster
                .range(RangeId(2))
                .map(|range| range.replicas.clone()),
        });
        assert_eq!(state.apply(start.clone()), Ok(()));
        assert!(
            matches!(state.apply(start), Err(MetaError::Placement(_))),
            "one operator per range"
        );
        // What only a meta leader hears is not encoded: replicas encode the same bytes.
        let mut heard = state.clone();
        heard
            .cluster
            .heartbeat(NodeId(1), 500, 40, 1 << 20)
            .unwrap();
        assert_eq!(heard.encode(), state.encode());
        assert_eq!(
            heard.cluster, state.cluster,
            "what only a leader hears is not compared"
        );
        let decoded = MetaState::decode(&state.encode()).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(
            decoded.cluster.node(NodeId(2)).unwrap().state,
            NodeState::Draining
        );
        let operator = decoded.cluster.operator_for(RangeId(2)).unwrap();
        assert_eq!(operator.steps, vec![Step::Remove { node: NodeId(2) }]);
        let join = |node: u64| MetaCommand::AddNode {
            node: NodeId(node),
            address: format!("127.0.0.1:{node}"),
        };
        assert_eq!(state.apply(join(3)), Ok(()));
        assert_ne!(
            state.cluster, decoded.cluster,
            "a recorded node is compared"
        );
        assert_eq!(state.directory.address(NodeId(3)), Some("127.0.0.1:3"));
        assert_eq!(state.cluster.node(NodeId(3)).unwrap().state, NodeState::Up);
        assert_eq!(state.apply(join(3)), Err(MetaError::NodeIdUsed(NodeId(3))));
        assert_eq!(state.apply(join(1)), Err(MetaError::NodeIdUsed(NodeId(1))));
        let removed = MetaCommand::SetNodeState {
            node: NodeId(2),
            state: NodeState::Removed,
        };
        assert_eq!(state.apply(removed), Ok(()));
        let back = MetaCommand::SetNodeState {
            node: NodeId(2),
            state: NodeState::Up,
        };
        assert!(
            state.apply(back).is_err(),
            "a removed node never comes back"
        );
    }

    #[test]
    fn a_data_directory_is_registered_once() {
        let mut state = state();
        let register = |directory| MetaCommand::RegisterDataDirectory {
            node: NodeId(2),
            directory,
        };
        assert_eq!(state.apply(register(7)), Ok(()));
        assert_eq!(state.apply(register(7)), Ok(()), "again: no change");
        assert!(matches!(
            state.apply(register(8)),
            Err(MetaError::OtherDataDirectory {
                registered: 7,
                claimed: 8,
                ..
            })
        ));
        assert_eq!(state.data_directories.get(&NodeId(2)), Some(&7));
    }
}

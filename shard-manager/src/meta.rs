//! The meta group's state machine: the range map and the node directory, replicated as one
//! Raft group (group 0) so the "registry" of the cluster has no single point of failure.
//! Its commands are Raft entries; its snapshot is the encoded state.

use crate::directory::Directory;
use crate::error::RangeMapError;
use crate::range::RangeId;
use crate::range_map::RangeMap;
use flotilla_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The group every initial node hosts, whose log holds the range map and the directory.
pub const META_GROUP: GroupId = GroupId(0);

/// A change to the meta state, proposed to the meta group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// `node` now listens at `address`.
    SetAddress {
        /// The node.
        node: NodeId,
        /// Its `host:port`.
        address: String,
    },
    /// The replicas of range `range` are now `replicas` (a move); the epoch advances.
    SetReplicas {
        /// The range.
        range: RangeId,
        /// Its new replicas.
        replicas: Vec<NodeId>,
    },
    /// `node`'s data directory is `directory` (its random id, chosen at bootstrap), for good:
    /// every node then refuses batches from any other directory under that id.
    RegisterDataDirectory {
        /// The node.
        node: NodeId,
        /// Its data directory's id.
        directory: u128,
    },
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
}

/// Why a meta command was refused (every replica refuses it alike).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MetaError {
    /// The range map refused the change.
    #[error(transparent)]
    RangeMap(#[from] RangeMapError),
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
    /// Applies one committed command. A refused command changes nothing; every replica
    /// refuses it alike, so the state stays identical everywhere.
    ///
    /// # Errors
    /// The range map's refusal (unknown range, no replica), or a node id registered with
    /// another data directory.
    pub fn apply(&mut self, command: MetaCommand) -> Result<(), MetaError> {
        match command {
            MetaCommand::SetAddress { node, address } => {
                self.directory.insert(node, address);
                Ok(())
            }
            MetaCommand::SetReplicas { range, replicas } => {
                Ok(self.map.set_replicas(range, replicas)?)
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
        }
    }

    /// The snapshot bytes of the state.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// The state from snapshot bytes.
    ///
    /// # Errors
    /// The bytes are not an encoded `MetaState`.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaCodecError> {
        decode(bytes)
    }
}

impl MetaCommand {
    /// The entry payload of the command.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// The command in an entry payload.
    ///
    /// # Errors
    /// The bytes are not an encoded `MetaCommand`.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaCodecError> {
        decode(bytes)
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
mod tests {
    use super::*;

    fn state() -> MetaState {
        MetaState {
            map: RangeMap::uniform(4, |_| vec![NodeId(1), NodeId(2)]),
            directory: Directory::new([(NodeId(1), "127.0.0.1:1".to_string())]),
            data_directories: BTreeMap::new(),
        }
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
    fn commands_change_the_directory_and_the_epoch() {
        let mut state = state();
        let command = MetaCommand::SetAddress {
            node: NodeId(2),
            address: "127.0.0.1:2".into(),
        };
        assert_eq!(state.apply(command), Ok(()));
        assert_eq!(state.directory.address(NodeId(2)), Some("127.0.0.1:2"));
        let epoch = state.map.epoch();
        let moved = MetaCommand::SetReplicas {
            range: RangeId(1),
            replicas: vec![NodeId(2)],
        };
        assert_eq!(state.apply(moved), Ok(()));
        assert!(state.map.epoch() > epoch);
        let unknown = MetaCommand::SetReplicas {
            range: RangeId(99),
            replicas: vec![NodeId(2)],
        };
        let before = state.clone();
        assert!(state.apply(unknown).is_err());
        assert_eq!(state, before);
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

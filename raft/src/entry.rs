//! What a log holds and what must be persisted: entries, hard state, membership, snapshots.

use crate::types::{LogId, LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub use bytes::Bytes;

/// One entry of a group's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term the leader that created the entry was in.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

/// The content of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// The empty entry a new leader appends to commit entries of earlier terms (Raft §5.4.2, §8).
    Blank,
    /// Application data (a client command), encoded as one byte string. Shared, not copied,
    /// by the clones an entry goes through: into the write, each follower's AppendEntries and
    /// the apply.
    Normal(Bytes),
    /// A membership change: the whole configuration that takes effect when the entry is
    /// applied. Carrying the result rather than the steps makes re-applying idempotent.
    Membership(Membership),
}

impl Entry {
    /// The entry's log id.
    #[must_use]
    pub fn log_id(&self) -> LogId {
        LogId::new(self.term, self.index)
    }

    /// Bytes this entry counts for against replication and persistence limits.
    #[must_use]
    pub fn payload_bytes(&self) -> u64 {
        match &self.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Normal(data) => data.len() as u64,
            EntryPayload::Membership(membership) => 8 * membership.replicas().count() as u64,
        }
    }
}

/// The state a replica must persist before it answers any message that depends on it:
/// the current term and the vote in it (Raft Figure 2), plus the commit index as a hint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this replica has seen.
    pub term: Term,
    /// The candidate this replica voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index known committed (persisting it is optional, it only saves work).
    pub commit: LogIndex,
}

/// The members of a group. In a joint configuration (`outgoing` non-empty) every decision needs
/// a majority of `voters` and a majority of `outgoing` (Raft §6, joint consensus).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The voters of the (incoming) configuration.
    pub voters: BTreeSet<NodeId>,
    /// The voters of the outgoing configuration while joint; empty otherwise.
    pub outgoing: BTreeSet<NodeId>,
    /// Non-voting replicas that receive the log.
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A simple configuration of voters.
    #[must_use]
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            voters: voters.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Whether this is a joint configuration.
    #[must_use]
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `node` votes in either half of the configuration.
    #[must_use]
    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.contains(&node) || self.outgoing.contains(&node)
    }

    /// Every replica that receives the log: voters of both halves and learners.
    pub fn replicas(&self) -> impl Iterator<Item = NodeId> + '_ {
        let all: BTreeSet<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.into_iter()
    }

    /// Whether `node` is a member in any role.
    #[must_use]
    pub fn contains(&self, node: NodeId) -> bool {
        self.is_voter(node) || self.learners.contains(&node)
    }
}

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeStep {
    /// Make the node a voter (from learner or from nothing).
    AddVoter(NodeId),
    /// Make the node a learner (from voter or from nothing).
    AddLearner(NodeId),
    /// Remove the node in any role.
    Remove(NodeId),
}

/// What a snapshot covers: the last entry it includes and the membership as of that entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last entry the snapshot includes.
    pub last: LogId,
    /// The membership in force at `last`.
    pub membership: Membership,
}

/// A state-machine snapshot: its metadata and the application's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The application's serialized state at `meta.last`.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload as it was encoded before it became `Bytes`: logs and peers of either
    /// version read each other's entries.
    #[derive(Serialize, Deserialize)]
    enum VecPayload {
        Blank,
        Normal(#[serde(with = "serde_bytes")] Vec<u8>),
        Membership(Membership),
    }

    #[test]
    fn a_shared_payload_encodes_as_the_byte_vector_did() {
        let data = vec![0, 1, 2, 254, 255];
        let shared = EntryPayload::Normal(Bytes::from(data.clone()));
        let encoded = postcard::to_allocvec(&shared).expect("encodes");
        let before = postcard::to_allocvec(&VecPayload::Normal(data)).expect("encodes");
        assert_eq!(encoded, before);
        let decoded: EntryPayload = postcard::from_bytes(&before).expect("decodes");
        assert_eq!(decoded, shared);
        for (now, then) in [
            (EntryPayload::Blank, VecPayload::Blank),
            (
                EntryPayload::Membership(Membership::with_voters([NodeId(1), NodeId(2)])),
                VecPayload::Membership(Membership::with_voters([NodeId(1), NodeId(2)])),
            ),
        ] {
            assert_eq!(
                postcard::to_allocvec(&now).expect("encodes"),
                postcard::to_allocvec(&then).expect("encodes")
            );
        }
    }
}

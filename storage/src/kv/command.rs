//! The commands a group's state machine applies and the responses it gives, with their one
//! codec (serde + postcard): the node encodes a `Proposal` (or, for a write without a session,
//! a bare `Command`) into an entry's payload, replicas decode it when the entry is committed.

use super::session::{SessionLimits, SessionTag};
use flotilla_raft::{GroupId, NodeId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use flotilla_api::kv::{Command, MergeStep, RangeBounds, Response};

/// What a data group's log entry carries in the current format: the node adds the leader's
/// clock (`time_ms`, milliseconds since the Unix epoch), which is the range's log time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// Opens a session; its id is this entry's group and index.
    Open {
        /// The leader's clock when it proposed the entry.
        time_ms: u64,
        /// The limits the range applies from this entry on.
        limits: SessionLimits,
    },
    /// A write in a session.
    Write {
        /// The leader's clock when it proposed the entry.
        time_ms: u64,
        /// The session, the write's sequence and the client's watermark.
        tag: SessionTag,
        /// The write.
        command: Command,
    },
    /// Splits the range at `at`: it keeps the keys below, and a new group on the same replicas
    /// takes the keys from `at` on, carved out of this state at this entry on every replica.
    Split {
        /// The range as the proposer saw it (the meta group's record at version 0).
        expected: RangeBounds,
        /// The first key of the right half.
        #[serde(with = "serde_bytes")]
        at: Vec<u8>,
        /// The new group (from the meta group's allocator).
        right: GroupId,
        /// The new group's voters: the node creates it with these on every replica (the
        /// parent's membership as its leader proposed the split, which the state machine does
        /// not see and a replica's own log tail may already have changed).
        voters: Vec<NodeId>,
    },
    // Appended: a proposal is encoded by its position.
    /// The first step of a merge, in the left range: from here on it does not split and
    /// awaits the frozen state of its right neighbour `right`.
    PrepareMerge {
        /// The range as the proposer saw it (the meta group's record at version 0).
        expected: RangeBounds,
        /// The right neighbour's group.
        right: GroupId,
    },
    /// The second step, in the right range: from here on it serves nothing, for good, and
    /// its state is the one group `into` takes. Refused (and the version moved on, so no copy
    /// of this entry applies later) unless the range is as `expected`, holds at most
    /// `bytes_max` key and value bytes, and takes part in no other merge.
    Freeze {
        /// The range as the proposer saw it (the meta group's record at version 0).
        expected: RangeBounds,
        /// The left neighbour that takes the keys.
        into: GroupId,
        /// The most bytes a range may hold to be merged: its keys and values and its
        /// encoded session table.
        bytes_max: u64,
        /// Which merge of `into` asks: its version while it awaits this range. A freeze
        /// refused once for `into` is refused for good up to that attempt.
        attempt: u64,
    },
    /// The last step, in the left range: takes the keys and sessions of `right`, whose frozen
    /// state (a snapshot encoding) the entry carries, so every replica, and the log replayed
    /// after a restart, merges from the entry alone.
    Merge {
        /// The right neighbour's group.
        right: GroupId,
        /// Its frozen state, encoded as a snapshot.
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
    },
    /// Gives up the merge with `right`, which refused to freeze: the left range splits again.
    AbortMerge {
        /// The right neighbour's group.
        right: GroupId,
    },
}

/// The first byte of an entry payload in the `Proposal` format. Any other first byte is a bare
/// `Command` (the format before sessions, still written for writes without one), whose first
/// byte is its variant, 0 to 4: the two cannot be confused.
pub const PROPOSAL_FORMAT: u8 = 0xF1;

/// A decoded entry payload of a data group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A command without a session.
    Bare(Command),
    /// A session entry.
    Proposal(Proposal),
}

impl Payload {
    /// Decodes an entry payload of either format.
    ///
    /// # Errors
    /// The bytes are malformed or longer than the value.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes.split_first() {
            Some((&PROPOSAL_FORMAT, rest)) => Proposal::decode(rest).map(Payload::Proposal),
            _ => Command::decode(bytes).map(Payload::Bare),
        }
    }

    /// Whether an entry with payload `bytes` may share one apply batch with the entries after
    /// it, read from its first bytes without decoding it: a bare command and a session's open
    /// or write change only pairs and sessions; a split or a merge step changes the range's
    /// shape, and the node must take the split's right half or follow the merge right after
    /// it (`StateMachine::apply_entries` keeps only the last split's right half).
    #[must_use]
    pub fn batches_with_next(bytes: &[u8]) -> bool {
        match bytes {
            // postcard writes a variant below 128 as one byte: Open is 0, Write 1.
            [PROPOSAL_FORMAT, variant, ..] => *variant <= 1,
            [PROPOSAL_FORMAT] => false,
            _ => true,
        }
    }
}

/// Why bytes did not decode as a command or response.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes are not a valid encoding.
    #[error("the bytes do not decode: {0}")]
    Malformed(String),
    /// A valid encoding was followed by extra bytes.
    #[error("{0} bytes follow the encoded value")]
    TrailingBytes(usize),
}

/// The one codec for commands and responses: postcard, with trailing bytes refused.
pub trait Codec: Serialize + DeserializeOwned {
    /// The encoding of `self`.
    fn encode(&self) -> Vec<u8> {
        let buffer = Vec::with_capacity(self.encoded_bytes_hint());
        postcard::to_extend(self, buffer).expect("encoding into a Vec cannot fail")
    }

    /// About how many bytes `encode` produces, so its buffer does not grow (and copy) on the
    /// way; zero when unknown.
    fn encoded_bytes_hint(&self) -> usize {
        0
    }

    /// Decodes a whole buffer.
    ///
    /// # Errors
    /// The bytes are malformed or longer than the value.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (value, rest) = postcard::take_from_bytes(bytes)
            .map_err(|error| CodecError::Malformed(error.to_string()))?;
        if !rest.is_empty() {
            return Err(CodecError::TrailingBytes(rest.len()));
        }
        Ok(value)
    }
}

impl Codec for Command {
    fn encoded_bytes_hint(&self) -> usize {
        let bytes = |value: &Option<Vec<u8>>| value.as_ref().map_or(0, Vec::len);
        32 + match self {
            Command::Get { key } | Command::Delete { key } => key.len(),
            Command::Put { key, value } => key.len() + value.len(),
            Command::CompareAndSwap { key, expected, new } => {
                key.len() + bytes(expected) + bytes(new)
            }
            Command::Scan { start, end, .. } => start.len() + bytes(end),
        }
    }
}
impl Codec for Response {}

impl Codec for Proposal {
    fn encoded_bytes_hint(&self) -> usize {
        match self {
            Proposal::Open { .. } => 32,
            Proposal::Write { command, .. } => 48 + command.encoded_bytes_hint(),
            Proposal::Split {
                expected,
                at,
                voters,
                ..
            } => {
                48 + expected.start.len()
                    + expected.end.as_ref().map_or(0, Vec::len)
                    + at.len()
                    + 8 * voters.len()
            }
            Proposal::PrepareMerge { expected, .. } | Proposal::Freeze { expected, .. } => {
                48 + expected.start.len() + expected.end.as_ref().map_or(0, Vec::len)
            }
            Proposal::Merge { state, .. } => 32 + state.len(),
            Proposal::AbortMerge { .. } => 16,
        }
    }
}

impl Proposal {
    /// The entry payload: `PROPOSAL_FORMAT`, then the postcard encoding (`Payload::decode`
    /// reads it back).
    #[must_use]
    pub fn to_payload(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(1 + self.encoded_bytes_hint());
        buffer.push(PROPOSAL_FORMAT);
        postcard::to_extend(self, buffer).expect("encoding into a Vec cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_responses_roundtrip() {
        let command = Command::CompareAndSwap {
            key: b"k".to_vec(),
            expected: None,
            new: Some(b"v".to_vec()),
        };
        assert_eq!(Command::decode(&command.encode()), Ok(command));
        let response = Response::Scan {
            pairs: vec![(b"a".to_vec(), b"1".to_vec())],
            more: true,
        };
        assert_eq!(Response::decode(&response.encode()), Ok(response));
    }

    /// Byte strings are encoded as bytes (serde_bytes) for speed; in postcard that is the
    /// same encoding as a sequence of `u8`, so logs and clients from before still decode.
    #[test]
    fn byte_strings_keep_the_encoding_of_byte_sequences() {
        #[derive(Serialize)]
        enum PlainCommand {
            #[allow(dead_code)]
            Get {
                key: Vec<u8>,
            },
            Put {
                key: Vec<u8>,
                value: Vec<u8>,
            },
        }
        #[derive(Serialize)]
        enum PlainResponse {
            #[allow(dead_code)]
            Value(Option<Vec<u8>>),
            #[allow(dead_code)]
            Written { previous: Option<Vec<u8>> },
            #[allow(dead_code)]
            CompareAndSwap {
                swapped: bool,
                current: Option<Vec<u8>>,
            },
            Scan {
                pairs: Vec<(Vec<u8>, Vec<u8>)>,
                more: bool,
            },
        }
        let value: Vec<u8> = (0..=255).collect();
        let plain = postcard::to_allocvec(&PlainCommand::Put {
            key: b"key".to_vec(),
            value: value.clone(),
        })
        .unwrap();
        let command = Command::Put {
            key: b"key".to_vec(),
            value: value.clone(),
        };
        assert_eq!(command.encode(), plain);
        assert_eq!(Command::decode(&plain), Ok(command));
        let pairs = vec![(b"a".to_vec(), value.clone()), (b"b".to_vec(), Vec::new())];
        let plain = postcard::to_allocvec(&PlainResponse::Scan {
            pairs: pairs.clone(),
            more: false,
        })
        .unwrap();
        let response = Response::Scan { pairs, more: false };
        assert_eq!(response.encode(), plain);
        assert_eq!(Response::decode(&plain), Ok(response));
    }

    /// Only a command and a session's open or write batch with the next entry: every
    /// proposal that changes the range's shape ends its batch.
    #[test]
    fn only_commands_opens_and_writes_batch_with_the_next_entry() {
        let command = Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let expected = RangeBounds {
            start: Vec::new(),
            end: None,
            version: 0,
        };
        let proposals = [
            Proposal::Open {
                time_ms: 1,
                limits: SessionLimits::default(),
            },
            Proposal::Write {
                time_ms: 1,
                tag: SessionTag {
                    session: super::super::SessionId {
                        group: GroupId(9),
                        index: flotilla_raft::LogIndex(1),
                    },
                    sequence: 1,
                    awaited_from: 1,
                },
                command: command.clone(),
            },
            Proposal::Split {
                expected: expected.clone(),
                at: b"m".to_vec(),
                right: GroupId(9),
                voters: vec![NodeId(1)],
            },
            Proposal::PrepareMerge {
                expected: expected.clone(),
                right: GroupId(9),
            },
            Proposal::Freeze {
                expected,
                into: GroupId(9),
                bytes_max: 1,
                attempt: 0,
            },
            Proposal::Merge {
                right: GroupId(9),
                state: vec![1; 300],
            },
            Proposal::AbortMerge { right: GroupId(9) },
        ];
        for proposal in proposals {
            let plain = matches!(proposal, Proposal::Open { .. } | Proposal::Write { .. });
            assert_eq!(
                Payload::batches_with_next(&proposal.to_payload()),
                plain,
                "{proposal:?}"
            );
        }
        assert!(Payload::batches_with_next(&command.encode()));
        assert!(!Payload::batches_with_next(&[PROPOSAL_FORMAT]));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(Command::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut bytes = Command::Get { key: vec![1] }.encode();
        bytes.push(0);
        assert_eq!(Command::decode(&bytes), Err(CodecError::TrailingBytes(1)));
    }
}

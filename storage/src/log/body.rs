//! The payload of each record kind, encoded with postcard, and what applying it does to a
//! group's index (`Effect`).

use super::record::{Frame, RecordKind};
use crate::error::RecordError;
use flotilla_raft::{Entry, HardState, LogIndex, SnapshotMeta, Term};
use serde::{Deserialize, Serialize};

/// The WAL's record of a snapshot: its metadata and the file holding its data. A snapshot
/// without data (the first state of a range, which holds only its membership) has no file:
/// its file name is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMarker {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The snapshot file's name inside the data directory (empty: no data, no file).
    pub file_name: String,
    /// The length of the snapshot data.
    pub data_bytes: u64,
    /// The crc32c of the snapshot data.
    pub data_checksum: u32,
}

impl SnapshotMarker {
    /// The last index the snapshot covers.
    #[must_use]
    pub fn index(&self) -> LogIndex {
        self.meta.last.index
    }

    /// Whether a file holds the snapshot's data (every snapshot with data has one, but the
    /// marker of a range whose state is in the engine).
    #[must_use]
    pub fn has_file(&self) -> bool {
        !self.file_name.is_empty()
    }

    /// Whether the snapshot's data is `machine::ENGINE_STATE`: the range's state is in the
    /// node's engine, and no file holds it.
    #[must_use]
    pub fn is_engine_state(&self) -> bool {
        !self.has_file()
            && self.data_bytes == crate::machine::ENGINE_STATE.len() as u64
            && self.data_checksum == crc32c::crc32c(crate::machine::ENGINE_STATE)
    }
}

/// A decoded record payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// One entry.
    Entry(Entry),
    /// A hard state.
    HardState(HardState),
    /// A received snapshot that replaces the log.
    Snapshot(SnapshotMarker),
    /// A local snapshot that drops the entries it covers.
    Compaction(SnapshotMarker),
    /// The replica was destroyed; the hard state is its tombstone.
    Destroy(HardState),
}

/// What a record does to a group's index, without the entry's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// An entry at `index` of `term` now exists; every later one is gone.
    Entry {
        /// The entry's index.
        index: LogIndex,
        /// The entry's term.
        term: Term,
    },
    /// The hard state changed.
    HardState(HardState),
    /// A snapshot replaced the log.
    Snapshot(SnapshotMarker),
    /// A snapshot dropped the entries it covers.
    Compaction(SnapshotMarker),
    /// The log and snapshot are gone; only this hard state remains.
    Destroy(HardState),
}

impl Body {
    /// The record kind that carries this body.
    #[must_use]
    pub fn kind(&self) -> RecordKind {
        match self {
            Body::Entry(_) => RecordKind::Entry,
            Body::HardState(_) => RecordKind::HardState,
            Body::Snapshot(_) => RecordKind::Snapshot,
            Body::Compaction(_) => RecordKind::Compaction,
            Body::Destroy(_) => RecordKind::Destroy,
        }
    }

    /// The postcard encoding of the payload.
    #[must_use]
    pub fn encode_payload(&self) -> Vec<u8> {
        let encoded = match self {
            // Sized up front: growing from empty would copy a large payload several times.
            Body::Entry(entry) => postcard::to_extend(
                entry,
                Vec::with_capacity(entry.payload_bytes() as usize + 32),
            ),
            Body::HardState(hard_state) | Body::Destroy(hard_state) => {
                postcard::to_allocvec(hard_state)
            }
            Body::Snapshot(marker) | Body::Compaction(marker) => postcard::to_allocvec(marker),
        };
        encoded.expect("encoding into a Vec cannot fail")
    }

    /// Decodes the payload of a frame that passed its checksum.
    ///
    /// # Errors
    /// The payload does not decode as its kind, or has bytes left over.
    pub fn decode(frame: &Frame<'_>) -> Result<Body, RecordError> {
        let payload = frame.payload;
        Ok(match frame.kind {
            RecordKind::Entry => Body::Entry(decode_exact(payload)?),
            RecordKind::HardState => Body::HardState(decode_exact(payload)?),
            RecordKind::Snapshot => Body::Snapshot(decode_exact(payload)?),
            RecordKind::Compaction => Body::Compaction(decode_exact(payload)?),
            RecordKind::Destroy => Body::Destroy(decode_exact(payload)?),
        })
    }

    /// What applying this body does to the index.
    #[must_use]
    pub fn effect(&self) -> Effect {
        match self {
            Body::Entry(entry) => Effect::Entry {
                index: entry.index,
                term: entry.term,
            },
            Body::HardState(hard_state) => Effect::HardState(*hard_state),
            Body::Snapshot(marker) => Effect::Snapshot(marker.clone()),
            Body::Compaction(marker) => Effect::Compaction(marker.clone()),
            Body::Destroy(hard_state) => Effect::Destroy(*hard_state),
        }
    }
}

fn decode_exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, RecordError> {
    let (value, rest) = postcard::take_from_bytes(payload)
        .map_err(|error| RecordError::Payload(error.to_string()))?;
    if !rest.is_empty() {
        return Err(RecordError::Payload(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{EntryPayload, GroupId};

    #[test]
    fn an_entry_body_roundtrips_through_a_frame() {
        let body = Body::Entry(Entry {
            term: Term(3),
            index: LogIndex(9),
            payload: EntryPayload::Normal(b"put".to_vec().into()),
        });
        let payload = body.encode_payload();
        let frame = Frame {
            group: GroupId(1),
            kind: body.kind(),
            payload: &payload,
        };
        assert_eq!(Body::decode(&frame).unwrap(), body);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut payload = Body::HardState(HardState::default()).encode_payload();
        payload.push(0);
        let frame = Frame {
            group: GroupId(1),
            kind: RecordKind::HardState,
            payload: &payload,
        };
        assert!(Body::decode(&frame).is_err());
    }
}

//! The metadata record of a range in the engine: its applied entry, what it holds, its session
//! table's limits and log time, (from format 2) its bounds, its part in a merge and the merge
//! attempts it refused, (from format 3) the group's members and (format 4) the space its
//! sessions and pairs live under, written in the same batch as every entry's effects.
//!
//! ```text
//! format 3:  0x03 | postcard(RangeMeta)                  sessions and pairs under the group's id
//! format 4:  0x04 | space u64 BE | postcard(RangeMeta)   sessions and pairs under `space`
//! ```
//!
//! A range whose records live under its own group id keeps writing format 3, so a data
//! directory reads the same with a binary from before spaces as long as no snapshot was
//! ingested into a space; a format this code does not know is an error, never a guess.

use super::keys::Space;
use crate::kv::{MergeState, RangeBounds, SessionLimits};
use flotilla_raft::{GroupId, LogId, LogIndex, Membership, Term};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record's format when the range's records live in a space the engine drew.
const FORMAT_VERSION_SPACE: u8 = 4;
/// The record's format when they live under the group's own id.
const FORMAT_VERSION: u8 = 3;
/// The format before the group's membership: bounds, merge state and refused attempts.
const FORMAT_VERSION_V2: u8 = 2;
/// The format before splits and merges: no bounds, no merge state.
const FORMAT_VERSION_V1: u8 = 1;

/// A range's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RangeMeta {
    /// The last entry applied.
    pub(crate) applied_index: u64,
    /// Its term.
    pub(crate) applied_term: u64,
    /// Pairs the range holds.
    pub(crate) pair_count: u64,
    /// Their key and value bytes.
    pub(crate) stored_bytes: u64,
    /// The session limits in force.
    pub(crate) session_limits: SessionLimits,
    /// The session table's log time.
    pub(crate) session_clock_ms: u64,
    /// The keys the range holds and its version, as its own log says.
    pub(crate) bounds: RangeBounds,
    /// Its part in a merge.
    pub(crate) merge: MergeState,
    /// Per left neighbour, the latest merge attempt whose freeze the range refused.
    pub(crate) declined: BTreeMap<GroupId, u64>,
    /// The group's members as of the applied entry (from its last membership entry, the
    /// snapshot it was restored from, or its parent's voters for a split's right half): what a
    /// snapshot produced from the engine names.
    pub(crate) membership: Option<Membership>,
    /// Where the range's sessions and pairs live, `None` under its group's own id. Not in the
    /// postcard body: format 4 carries it before it.
    #[serde(skip)]
    pub(crate) space: Option<Space>,
}

/// A format 2 record: no membership.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct RangeMetaV2 {
    applied_index: u64,
    applied_term: u64,
    pair_count: u64,
    stored_bytes: u64,
    session_limits: SessionLimits,
    session_clock_ms: u64,
    bounds: RangeBounds,
    merge: MergeState,
    declined: BTreeMap<GroupId, u64>,
}

impl From<RangeMetaV2> for RangeMeta {
    fn from(v2: RangeMetaV2) -> Self {
        Self {
            applied_index: v2.applied_index,
            applied_term: v2.applied_term,
            pair_count: v2.pair_count,
            stored_bytes: v2.stored_bytes,
            session_limits: v2.session_limits,
            session_clock_ms: v2.session_clock_ms,
            bounds: v2.bounds,
            merge: v2.merge,
            declined: v2.declined,
            membership: None,
            space: None,
        }
    }
}

/// A format 1 record: a range that never split nor merged.
#[derive(Deserialize)]
struct RangeMetaV1 {
    applied_index: u64,
    applied_term: u64,
    pair_count: u64,
    stored_bytes: u64,
    session_limits: SessionLimits,
    session_clock_ms: u64,
}

impl From<RangeMetaV1> for RangeMeta {
    fn from(v1: RangeMetaV1) -> Self {
        Self {
            applied_index: v1.applied_index,
            applied_term: v1.applied_term,
            pair_count: v1.pair_count,
            stored_bytes: v1.stored_bytes,
            session_limits: v1.session_limits,
            session_clock_ms: v1.session_clock_ms,
            ..Self::default()
        }
    }
}

impl RangeMeta {
    pub(crate) fn applied(&self) -> LogId {
        LogId::new(Term(self.applied_term), LogIndex(self.applied_index))
    }

    /// Where `group`'s sessions and pairs live, whose metadata this is.
    pub(crate) fn space_of(&self, group: GroupId) -> Space {
        self.space.unwrap_or(Space::of(group))
    }

    /// Format 3 for a range under its own group id, format 4 (with the space) otherwise.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let bytes = match self.space {
            None => vec![FORMAT_VERSION],
            Some(space) => {
                let mut bytes = vec![FORMAT_VERSION_SPACE];
                bytes.extend_from_slice(&space.0.to_be_bytes());
                bytes
            }
        };
        postcard::to_extend(self, bytes).expect("encoding into a Vec cannot fail")
    }

    /// Decodes a record of format 4, 3, 2 or 1 (the whole key space, in no merge); the formats
    /// before 4 name no space (the group's own).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let error = |error: postcard::Error| error.to_string();
        match bytes.split_first() {
            Some((&FORMAT_VERSION_SPACE, rest)) => {
                let (space, body) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| "the record ends inside its space".to_owned())?;
                let space = Space(u64::from_be_bytes(*space));
                if !space.is_drawn() {
                    return Err(format!("space {} is not one the engine draws", space.0));
                }
                let meta: Self = postcard::from_bytes(body).map_err(error)?;
                Ok(Self {
                    space: Some(space),
                    ..meta
                })
            }
            Some((&FORMAT_VERSION, rest)) => postcard::from_bytes(rest).map_err(error),
            Some((&FORMAT_VERSION_V2, rest)) => postcard::from_bytes::<RangeMetaV2>(rest)
                .map(Self::from)
                .map_err(error),
            Some((&FORMAT_VERSION_V1, rest)) => postcard::from_bytes::<RangeMetaV1>(rest)
                .map(Self::from)
                .map_err(error),
            Some((version, _)) => Err(format!(
                "format version {version} is unknown (this build reads formats 1 to 4)"
            )),
            None => Err("the record is empty".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> RangeMeta {
        RangeMeta {
            applied_index: 9,
            applied_term: 2,
            pair_count: 3,
            stored_bytes: 40,
            session_limits: SessionLimits::default(),
            session_clock_ms: 77,
            ..RangeMeta::default()
        }
    }

    #[test]
    fn metadata_roundtrips_and_refuses_other_versions() {
        let meta = RangeMeta {
            bounds: RangeBounds {
                start: b"m".to_vec(),
                end: Some(b"t".to_vec()),
                version: 4,
            },
            merge: MergeState::Frozen {
                into: GroupId(3),
                attempt: 2,
            },
            declined: BTreeMap::from([(GroupId(5), 7)]),
            membership: Some(Membership::with_voters([flotilla_raft::NodeId(2)])),
            ..counts()
        };
        let bytes = meta.encode();
        assert_eq!(RangeMeta::decode(&bytes), Ok(meta.clone()));
        assert_eq!(bytes[0], 3, "a range under its own id writes format 3");
        let mut newer = bytes.clone();
        newer[0] = 5;
        assert_eq!(
            RangeMeta::decode(&newer),
            Err("format version 5 is unknown (this build reads formats 1 to 4)".to_owned())
        );
        // A format 2 record (before the membership) reads as naming none.
        let v2 = RangeMetaV2 {
            applied_index: meta.applied_index,
            applied_term: meta.applied_term,
            pair_count: meta.pair_count,
            stored_bytes: meta.stored_bytes,
            session_limits: meta.session_limits,
            session_clock_ms: meta.session_clock_ms,
            bounds: meta.bounds.clone(),
            merge: meta.merge.clone(),
            declined: meta.declined.clone(),
        };
        let old = postcard::to_extend(&v2, vec![FORMAT_VERSION_V2]).unwrap();
        assert_eq!(
            RangeMeta::decode(&old),
            Ok(RangeMeta {
                membership: None,
                ..meta
            })
        );
        assert!(RangeMeta::decode(&[]).is_err());
    }

    /// A record written before splits reads as a range over the whole key space in no merge.
    #[test]
    fn a_format_1_record_decodes_as_the_whole_key_space() {
        #[derive(Serialize)]
        struct V1 {
            applied_index: u64,
            applied_term: u64,
            pair_count: u64,
            stored_bytes: u64,
            session_limits: SessionLimits,
            session_clock_ms: u64,
        }
        let v1 = V1 {
            applied_index: 9,
            applied_term: 2,
            pair_count: 3,
            stored_bytes: 40,
            session_limits: SessionLimits::default(),
            session_clock_ms: 77,
        };
        let bytes = postcard::to_extend(&v1, vec![1]).unwrap();
        assert_eq!(RangeMeta::decode(&bytes), Ok(counts()));
    }

    /// A range in a drawn space writes format 4: the space, big-endian, before the same body
    /// as format 3. A space that no group id could be kept from is refused, not guessed at.
    #[test]
    fn a_range_in_a_drawn_space_names_it_in_format_4() {
        let meta = RangeMeta {
            space: Some(Space(super::super::keys::DRAWN_FIRST + 5)),
            ..counts()
        };
        let bytes = meta.encode();
        assert_eq!(bytes[0], 4);
        assert_eq!(
            bytes[1..9],
            (super::super::keys::DRAWN_FIRST + 5).to_be_bytes()
        );
        assert_eq!(bytes[9..], counts().encode()[1..]);
        assert_eq!(RangeMeta::decode(&bytes), Ok(meta.clone()));
        assert_eq!(
            meta.space_of(GroupId(3)),
            Space(super::super::keys::DRAWN_FIRST + 5)
        );
        assert_eq!(counts().space_of(GroupId(3)), Space(3));
        let mut own = bytes.clone();
        own[1..9].copy_from_slice(&3u64.to_be_bytes());
        assert_eq!(
            RangeMeta::decode(&own),
            Err("space 3 is not one the engine draws".to_owned())
        );
        assert!(RangeMeta::decode(&bytes[..5]).is_err());
    }
}

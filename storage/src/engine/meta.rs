//! The metadata record of a range in the engine: its applied entry, what it holds, and its
//! session table's limits and log time, written in the same batch as every entry's effects.

use crate::kv::SessionLimits;
use flotilla_raft::{LogId, LogIndex, Term};
use serde::{Deserialize, Serialize};

/// The record's format, its first byte.
const FORMAT_VERSION: u8 = 1;

/// A range's metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl RangeMeta {
    pub(crate) fn applied(&self) -> LogId {
        LogId::new(Term(self.applied_term), LogIndex(self.applied_index))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let bytes = vec![FORMAT_VERSION];
        postcard::to_extend(self, bytes).expect("encoding into a Vec cannot fail")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((&FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|error| error.to_string())
            }
            Some((version, _)) => Err(format!("format version {version} is unknown")),
            None => Err("the record is empty".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_roundtrips_and_refuses_other_versions() {
        let meta = RangeMeta {
            applied_index: 9,
            applied_term: 2,
            pair_count: 3,
            stored_bytes: 40,
            session_limits: SessionLimits::default(),
            session_clock_ms: 77,
        };
        let bytes = meta.encode();
        assert_eq!(RangeMeta::decode(&bytes), Ok(meta));
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert_eq!(
            RangeMeta::decode(&newer),
            Err("format version 2 is unknown".to_owned())
        );
        assert!(RangeMeta::decode(&[]).is_err());
    }
}

//! The key-value commands a range's state machine applies and the responses it gives: what a
//! client sends inside a request and gets back inside a reply. Their codec and their rules
//! live in `flotilla-storage`; this module holds the data only.

use crate::session::{SessionId, SessionLimits};
use flotilla_raft::GroupId;
use serde::{Deserialize, Serialize};

/// The most pairs one scan returns, whatever limit the client asks for.
pub const SCAN_PAIR_COUNT_MAX: u32 = 10_000;
/// The most key and value bytes one scan copies unless its reader asks for another bound; a
/// scan always returns at least one pair.
pub const SCAN_BYTES_MAX: usize = 4 << 20;

/// One client operation on a group's key range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Read one key.
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Set a key to a value.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove a key.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Set `key` to `new` (or remove it when `new` is `None`) only if its current value is
    /// `expected` (`None`: only if the key is absent).
    CompareAndSwap {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the key must have now; `None` means it must be absent.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The value to set; `None` removes the key.
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    },
    /// Read the pairs with `start <= key < end` in key order, at most `limit` of them.
    Scan {
        /// The first key (inclusive).
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        /// The end (exclusive); `None` scans to the end of the range.
        #[serde(with = "serde_bytes")]
        end: Option<Vec<u8>>,
        /// The most pairs to return; capped by `SCAN_PAIR_COUNT_MAX`.
        limit: u32,
    },
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The value of a `Get` (`None`: absent).
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// A `Put` or `Delete` took effect; carries the value it replaced.
    Written {
        /// The value before the command (`None`: absent).
        #[serde(with = "serde_bytes")]
        previous: Option<Vec<u8>>,
    },
    /// The outcome of a `CompareAndSwap`.
    CompareAndSwap {
        /// Whether the swap happened.
        swapped: bool,
        /// The value before the command, so a client can retry without a read.
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
    },
    /// The pairs of a `Scan`, and whether more pairs lay in the range past the limit.
    Scan {
        /// Key-value pairs in key order.
        #[serde(with = "pair_bytes")]
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Whether the scan stopped at the limit with keys left in the range.
        more: bool,
    },
    /// The entry did not decode as a command; it changed nothing.
    Invalid(String),
    /// A session was opened in the range: its id and the limits the range applies.
    SessionOpened {
        /// The new session.
        session: SessionId,
        /// The limits in force; a client keeps `sequence - awaited_from` under `results_max`.
        limits: SessionLimits,
    },
    /// The write's session is unknown to the range: it expired, it was ended (the range was
    /// full, or it held too many results), or it was never opened here. Not applied.
    SessionExpired {
        /// The session.
        session: SessionId,
    },
    /// The write's sequence is below the lowest one its client still awaits: a copy of a
    /// write that was answered or abandoned. Not applied (again).
    Retired {
        /// The sequence.
        sequence: u64,
    },
    /// The key (or a scan's span) lies outside the range's bounds as of this entry: the range
    /// split since the request was routed. Not applied, and not recorded in the session, so
    /// the write may be sent again, with the same tag, to the range that now holds the key.
    OutsideRange {
        /// The range's bounds and version when the entry applied (boxed: a response is held
        /// in every session's results, so its size counts).
        bounds: Box<RangeBounds>,
    },
    /// A split took effect: the range keeps the keys below the split key, and `right` (a new
    /// group on the same replicas) holds the keys from it on, with a copy of the session table.
    Split {
        /// The new group.
        right: GroupId,
        /// The version both halves have now.
        version: u64,
    },
    /// The meta group reserved range id `id` (and group id `id`) for a split's right half.
    Reserved {
        /// The id.
        id: u64,
    },
    // Appended: a response is encoded by its position.
    /// The range is frozen for its merge into group `into`, which takes its keys: nothing is
    /// read or written here any more. Not applied, and not recorded in the session, so the
    /// request may be sent again, with the same tag, to the range that holds the key now.
    Merging {
        /// The range that takes this one's keys.
        into: GroupId,
    },
    /// A step of a merge of `right` into this range (or, for `Frozen`, of this range into
    /// `right`) took effect; the range is now at `version`.
    Merge {
        /// The other range of the merge.
        right: GroupId,
        /// The step.
        step: MergeStep,
        /// The range's version after it.
        version: u64,
    },
}

/// The steps of a merge (`docs/protocol/split-merge.md`): the left range prepares (it stops
/// splitting and awaits its right neighbour), the right range freezes (it stops serving,
/// for good), and the left range takes the frozen state in one entry; or the left range gives
/// the merge up, when the right one refused to freeze.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MergeStep {
    /// The left range awaits its right neighbour.
    Prepared,
    /// The right range froze into the left one.
    Frozen,
    /// The left range took the right one's keys.
    Merged,
    /// The left range gave the merge up.
    Aborted,
}

/// The keys a range's state machine holds and its version: what its own log says, which the
/// meta group's record follows. A range's first state covers the whole key space at version 0
/// (its keys are then the meta group's); a split gives both halves explicit bounds and the
/// next version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RangeBounds {
    /// The first key.
    #[serde(with = "serde_bytes")]
    pub start: Vec<u8>,
    /// The first key past the range; `None`: the end of the key space.
    #[serde(with = "serde_bytes")]
    pub end: Option<Vec<u8>>,
    /// Bumped by every split (and merge) of the range.
    pub version: u64,
}

impl RangeBounds {
    /// Whether `key` lies in the range.
    #[must_use]
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// Whether the scan span `[start, end)` (`end == None`: to the end of the key space) lies
    /// in the range.
    #[must_use]
    pub fn covers(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let ends_inside = match (end, self.end.as_deref()) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(end), Some(bound)) => end <= bound,
        };
        start >= self.start.as_slice() && ends_inside
    }
}

impl Command {
    /// The operation's name as an access rule or a refusal names it (`get`, `put`, `delete`,
    /// `compare-and-swap`, `scan`).
    #[must_use]
    pub fn action(&self) -> &'static str {
        match self {
            Self::Get { .. } => "get",
            Self::Put { .. } => "put",
            Self::Delete { .. } => "delete",
            Self::CompareAndSwap { .. } => "compare-and-swap",
            Self::Scan { .. } => "scan",
        }
    }

    /// The key the command is routed by (a scan's first key).
    #[must_use]
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Get { key }
            | Self::Put { key, .. }
            | Self::Delete { key }
            | Self::CompareAndSwap { key, .. } => key,
            Self::Scan { start, .. } => start,
        }
    }
}

/// Scan pairs as two byte strings each (one copy per string, not one call per byte); the
/// encoding is the same as a plain sequence of bytes in postcard.
mod pair_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub(super) fn serialize<S: Serializer>(
        pairs: &[(Vec<u8>, Vec<u8>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            pairs
                .iter()
                .map(|(key, value)| (Bytes::new(key), Bytes::new(value))),
        )
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Pairs, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(deserializer)?;
        Ok(pairs
            .into_iter()
            .map(|(key, value)| (key.into_vec(), value.into_vec()))
            .collect())
    }
}

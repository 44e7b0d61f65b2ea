//! Domain numbers as newtypes, so a term can never be passed where an index is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }
    };
}

newtype_u64!(
    /// Identity of a node (a process with one log engine and one transport endpoint).
    NodeId,
    "n"
);
newtype_u64!(
    /// Identity of a Raft group (one replicated range of keys).
    GroupId,
    "g"
);
newtype_u64!(
    /// A Raft term: a logical clock that only moves forward.
    Term,
    "t"
);
newtype_u64!(
    /// The position of an entry in a group's log; the first entry has index 1.
    LogIndex,
    "i"
);

impl LogIndex {
    /// The index before the first entry of every log.
    pub const ZERO: LogIndex = LogIndex(0);

    /// The next index.
    #[must_use]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The previous index; zero stays zero.
    #[must_use]
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// This index moved forward by `count` entries.
    #[must_use]
    pub fn plus(self, count: u64) -> LogIndex {
        LogIndex(self.0 + count)
    }
}

impl Term {
    /// The term before any election.
    pub const ZERO: Term = Term(0);

    /// The next term.
    #[must_use]
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

/// The identity of one log entry: its term and index. Two logs that hold the same `LogId`
/// agree on every entry up to it (Raft §5.3, Log Matching).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogId {
    /// The term the entry was created in.
    pub term: Term,
    /// The entry's position.
    pub index: LogIndex,
}

impl LogId {
    /// Builds a log id.
    #[must_use]
    pub fn new(term: Term, index: LogIndex) -> Self {
        Self { term, index }
    }

    /// Whether a log ending at `self` is at least as up to date as one ending at `other`
    /// (Raft §5.4.1: compare last terms, then lengths).
    #[must_use]
    pub fn is_up_to_date_with(&self, other: &LogId) -> bool {
        (self.term, self.index) >= (other.term, other.index)
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.term.0, self.index.0)
    }
}

/// Which process of which data directory a batch comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Incarnation {
    /// The sender's data directory, chosen at random when it was bootstrapped.
    pub directory: u128,
    /// How many times that directory has been started: newer processes count higher.
    pub start: u64,
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "directory {:032x} start {}", self.directory, self.start)
    }
}

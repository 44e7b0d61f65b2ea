//! Errors of the range map and the router, one enum per operation.

use crate::range::{Epoch, RangeId};
use thiserror::Error;

/// Why a change to the range map was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RangeMapError {
    /// No range has this id.
    #[error("no range has the id {0:?}")]
    UnknownRange(RangeId),
    /// The split key is not strictly inside the range.
    #[error("the split key is not strictly inside the range")]
    SplitKeyOutsideRange,
    /// The change was computed against another epoch of the map.
    #[error("the change was made for epoch {expected:?} but the map is at {actual:?}")]
    StaleEpoch {
        /// The epoch the change expected.
        expected: Epoch,
        /// The map's epoch.
        actual: Epoch,
    },
    /// Ranges must cover the key space without gaps or overlaps, starting at the empty key.
    #[error("the ranges do not tile the key space: {0}")]
    NotATiling(&'static str),
    /// A range has no replica.
    #[error("a range must have at least one replica")]
    NoReplica,
    /// A merge names ranges that are not neighbours as the map has them.
    #[error("range {left:?} does not end where range {right:?} starts")]
    NotNeighbours {
        /// The range that takes the keys.
        left: RangeId,
        /// The range merged into it.
        right: RangeId,
    },
}

/// Why the router cannot send a request now.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The cached range has no replica the router could try (all failed within the deadline).
    #[error("every replica of the range was tried without success")]
    ReplicasExhausted,
    /// The request's total deadline passed.
    #[error("the request's deadline passed after {attempts} attempts")]
    DeadlineExceeded {
        /// How many attempts were made.
        attempts: u32,
    },
}

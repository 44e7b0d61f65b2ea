//! Which Raft group serves which keys, and where a client sends each request. Pure decisions:
//! no IO, no clock, no async — the node and the client act on what these types decide.
//! A `RangeMap` maps `[start, end)` key ranges to groups, each range with its own epoch; a
//! `Router` caches it and turns replies (not leader, range changed, timeout) into the next
//! target. The placement driver turns the cluster's state into operators that keep ranges
//! replicated and spread.
#![forbid(unsafe_code)]

pub mod directory;
pub mod error;
mod legacy;
pub mod meta;
pub mod placement;
pub mod range;
pub mod range_map;
pub mod router;

pub use directory::Directory;
pub use error::{RangeMapError, RouteError};
pub use meta::{META_GROUP, MapSplit, MetaAnswer, MetaCommand, MetaError, MetaSnapshot, MetaState};
pub use range::{Epoch, KeyRange, RangeDescriptor, RangeEpoch, RangeId};
pub use range_map::RangeMap;
pub use router::{Attempts, Next, Reply, Router, Target};

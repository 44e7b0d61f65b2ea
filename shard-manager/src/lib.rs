//! Which Raft group serves which keys, and where a client sends each request. Pure decisions:
//! no IO, no clock, no async — the node and the client act on what these types decide.
//! A `RangeMap` maps `[start, end)` key ranges to groups under an epoch; a `Router` caches it
//! and turns replies (not leader, stale epoch, timeout) into the next target. The placement
//! driver turns the cluster's state into operators that keep ranges replicated and spread.
#![forbid(unsafe_code)]

pub mod directory;
pub mod error;
pub mod meta;
pub mod placement;
pub mod range;
pub mod range_map;
pub mod router;

pub use directory::Directory;
pub use error::{RangeMapError, RouteError};
pub use meta::{META_GROUP, MetaAnswer, MetaCommand, MetaError, MetaState};
pub use range::{Epoch, KeyRange, RangeDescriptor, RangeId};
pub use range_map::RangeMap;
pub use router::{Attempts, Next, Reply, Router, Target};

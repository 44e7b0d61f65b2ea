//! Tests of the node core's rules that need more than one node: a few cores on an in-memory
//! network the test cuts and heals (`cluster.rs`), one file per area of rules.

mod cluster;
mod observe;
mod placement;
mod snapshots;

//! The Raft paper tests: one test per rule of the protocol, each citing its section of the
//! Raft paper (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm") or of
//! Ongaro's thesis ("Consensus: Bridging Theory and Practice"). Most drive one `RaftNode` with
//! hand-built messages and compare the whole `Ready` it hands back; the rest run a few nodes in
//! lockstep (`util::net`) or in simulated time (`harness::Cluster`). Bands: see README.md.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

#[path = "../harness/mod.rs"]
mod harness;
mod util;

mod t10_election;
mod t15_check_quorum;
mod t20_replication;
mod t30_commit;
mod t40_safety;
mod t50_membership;
mod t60_snapshot;
mod t65_snapshot_flow;
mod t70_transfer;
mod t80_reads;
mod t85_client;
mod t90_bad_input;

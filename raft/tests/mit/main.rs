//! The MIT 6.5840 Raft lab acceptance suite (parts 3A-3D) against the sans-IO core, in
//! simulated time. One file per part; each test is named after the behaviour it checks and
//! cites its 6.5840 name. Bounds are the course's (`docs/TESTING.md`); where our core differs
//! from the lab's Raft (blank entries of new leaders, request and answer counted apart), the
//! mapping is documented in `tester.rs` and kept as strict as the course's.
//!
//! Every test runs one fixed seed; `FLOTILLA_MIT_SEEDS=N` reruns each over N seeds and
//! `FLOTILLA_MIT_SEED=s` runs seed `s` (a failure prints it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../harness/mod.rs"]
mod harness;

mod clients;
mod tester;

mod t3a_election;
mod t3b_agreement;
mod t3c_persistence;
mod t3d_snapshots;

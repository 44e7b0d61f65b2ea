//! The `flotilla` node: the only driver of Raft, storage and the transport. It runs a server
//! (MultiRaft + one log + QUIC), a client that routes by the range map, the CLI and the demo.
//! Protocol decisions live in the other crates; this one does the IO they ask for.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod demo;
pub mod encoding;
mod gateway;
pub mod inspect;
pub mod intervals;
pub mod loadgen;
pub mod local;
mod observe;
pub mod ranges;
pub mod reply;
pub mod server;
pub mod shell;
pub mod status;
pub mod workload;

pub use client::{Client, ClientError, ClientOptions, MapFailure, Outcome, ScanResult};
pub use config::{Endpoint, NodeConfig};

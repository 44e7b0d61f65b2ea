//! The wire types Flotilla's clients and nodes share, and nothing else: data with serde derives,
//! no IO, no codec, no rules. The server, the storage engine and the client crate all speak
//! these; a client application needs this crate (through `flotilla-client`), never the server's.
#![forbid(unsafe_code)]

pub mod error;
pub mod kv;
pub mod reply;
pub mod request;
pub mod session;
pub mod status;

pub use error::ApiError;
pub use kv::{Command, Response, SCAN_BYTES_MAX, SCAN_PAIR_COUNT_MAX};
pub use reply::{BackupView, PlacementStatus, Reply, ResponseFrame, kv_answer_bytes};
pub use request::{AdminCommand, Request, RequestFrame};
pub use session::{SessionId, SessionLimits, SessionTag};
pub use status::{GroupStatus, NodeStatus, PeerState, PeerStatus};

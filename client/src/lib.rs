//! The Flotilla client: connects to a cluster over QUIC with mutual TLS, routes each request to
//! the leader of its key's range, and retries until answered; every write is applied exactly
//! once. It depends on the wire types (`flotilla-api`), never on the server.
//!
//! # Getting started
//!
//! **1. Certificates.** A cluster trusts one CA, and a client proves who it is with a
//! certificate that CA signed. Where the cluster's CA lives (`ca.pem`, `ca.key`), sign one for
//! your application:
//!
//! ```text
//! flotilla certs --dir flotilla-certs --cluster-id flotilla --add-client app
//! ```
//!
//! and give the application `ca.pem`, `client-app.pem` and `client-app.key` (mode 0600) in one
//! directory. The name (`app`) is what the nodes' `[access]` rules grant roles to.
//!
//! **2. A configuration.** Either a builder:
//!
//! ```no_run
//! # fn main() -> Result<(), flotilla_client::ConfigError> {
//! let config = flotilla_client::ClientConfig::builder()
//!     .endpoint("db1.example:7000")
//!     .endpoint("db2.example:7000")
//!     .tls_dir("/etc/app/flotilla")
//!     .cluster_id("flotilla")
//!     .name("app")
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! or a TOML file read with [`ClientConfig::from_file`] (its keys are listed in [`config`]):
//!
//! ```toml
//! endpoints = ["db1.example:7000", "db2.example:7000"]
//! tls_dir = "flotilla"
//! cluster_id = "flotilla"
//! name = "app"
//! ```
//!
//! An endpoint is `host:port`, with a host name or an IP address; one is enough, since the
//! cluster tells the client where the other nodes are. The client starts at one chosen at
//! random, and learns which node it reached from that node's certificate (it must chain to the
//! cluster's CA and name a node of this cluster). `id@host:port` names the node in advance.
//!
//! **3. Requests.**
//!
//! ```no_run
//! use flotilla_client::{Client, ClientConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect(ClientConfig::from_file("client.toml".as_ref())?).await?;
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
//! let swap = client.cas("greeting", Some(b"hello"), Some(b"hi")).await?;
//! assert!(swap.swapped);
//! let mut scan = client.scan(..);
//! while let Some((key, value)) = scan.next().await? {
//!     println!("{} = {}", String::from_utf8_lossy(&key), String::from_utf8_lossy(&value));
//! }
//! client.delete("greeting").await?;
//! # Ok(()) }
//! ```
//!
//! `examples/quickstart.rs` is the same as a program that runs against a cluster:
//! `cargo run -p flotilla-client --example quickstart -- --help`.
//!
//! # What a result means
//!
//! A [`Client`] is cheap to clone and serves many tasks at once. Reads are linearizable. A
//! write that returns `Ok` was applied exactly once, however many attempts it took: every
//! attempt carries the same tag of the write's session in its range, and the range applies a
//! tag once. [`ClientError::OutcomeUnknown`] is the one ambiguous answer: an attempt may have
//! applied and then the deadline passed; the write was applied once or not at all. Every other
//! error means it was not applied.
#![forbid(unsafe_code)]

pub mod attempts;
pub mod client;
pub mod config;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod scan;
pub mod sessions;
pub mod tls;

pub use client::{CasOutcome, Client, Outcome, ScanResult};
pub use config::{ClientConfig, ClientConfigBuilder, ConfigError, REDIAL_PAUSE, RETRY_PAUSE};
pub use connection::CallError;
pub use endpoint::{Endpoint, EndpointError, parse_endpoints};
pub use error::{ClientError, MapFailure};
pub use flotilla_api as api;
pub use scan::Scan;
pub use tls::{TlsLoadError, load_tls};

//! The client: the `flotilla-client` crate, re-exported at the path the node's code, the CLI and
//! the tests use; `ClientOptions` is the node's name for its `ClientConfig`.

pub use flotilla_client::*;

/// How a client reaches a cluster (the node's name for [`ClientConfig`]).
pub type ClientOptions = ClientConfig;

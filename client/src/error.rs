//! Why a request failed: [`ClientError`], and [`MapFailure`], why one node did not give the
//! client the range map.

use crate::config::ConfigError;
use crate::connection::CallError;
use crate::tls::TlsLoadError;
use flotilla_api::ApiError;
use flotilla_shard_manager::KeyRange;
use std::sync::Arc;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(Arc<ConfigError>),
    /// Certificates missing or invalid.
    #[error(transparent)]
    Tls(Arc<TlsLoadError>),
    /// No endpoint answered with a range map.
    #[error("no endpoint reachable: {}", join_failures(.0))]
    NoEndpoint(Vec<MapFailure>),
    /// The node refused the request for good (e.g. a key over the size limit).
    #[error("refused: {0}")]
    Refused(ApiError),
    /// The request could not be sent, and sending it again cannot help: it does not fit in a
    /// frame, or the node refused this client's certificate. Nothing was applied.
    #[error(transparent)]
    NotSent(CallError),
    /// A write may have been applied, once, or not at all: an attempt got no answer, and then
    /// the deadline passed or the write's session expired in its range.
    #[error(
        "the outcome is unknown after {attempts} attempts: {reason}; the write was applied once or not at all"
    )]
    OutcomeUnknown {
        /// Attempts made.
        attempts: u32,
        /// Why the client stopped.
        reason: String,
    },
    /// Out of time or replicas, and nothing was applied.
    #[error("gave up after {attempts} attempts: {reason}; nothing was applied")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last reason.
        reason: String,
    },
    /// Out of time while the range's replicas answered that they knew no leader: its group
    /// could not elect one (a majority of its replicas is down or cut off). Nothing was
    /// applied.
    #[error("no leader for range {range} after {attempts} attempts; nothing was applied")]
    NoLeader {
        /// The range's keys.
        range: KeyRange,
        /// Attempts made.
        attempts: u32,
    },
}

/// Why one node did not give the client the range map.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MapFailure {
    /// An endpoint without a node id could not be dialed (its id is learnt on the way).
    #[error("{endpoint}: {error}")]
    Dial {
        /// The endpoint.
        endpoint: String,
        /// Why.
        error: CallError,
    },
    /// The request got no answer.
    #[error("node {node}: {error}")]
    Call {
        /// The node.
        node: u64,
        /// Why.
        error: CallError,
    },
    /// The node refused it.
    #[error("node {node} refused: {error}")]
    Refused {
        /// The node.
        node: u64,
        /// Its refusal.
        error: ApiError,
    },
    /// The node answered something else.
    #[error("node {node} answered with something other than the range map")]
    Unexpected {
        /// The node.
        node: u64,
    },
}

fn join_failures(failures: &[MapFailure]) -> String {
    let failures: Vec<String> = failures.iter().map(ToString::to_string).collect();
    failures.join("; ")
}

impl From<ConfigError> for ClientError {
    fn from(error: ConfigError) -> Self {
        Self::Config(Arc::new(error))
    }
}

impl From<TlsLoadError> for ClientError {
    fn from(error: TlsLoadError) -> Self {
        Self::Tls(Arc::new(error))
    }
}

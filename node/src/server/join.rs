//! Joining a running cluster (`flotilla server --join`): a node with an empty data directory
//! asks the meta group's leader, through any node it is given, to record it under its
//! certificate's id (one never used in the cluster), then fetches the meta group's snapshot
//! its own meta replica starts from. The meta leader then adds that replica as a learner and
//! the placement driver gives the node its share of ranges.
//!
//! A node restarted at another address (same id, same data directory) asks the meta leader the
//! same way to record its new address, so peers that dial it find it there.

use super::ServerError;
use crate::api::{ApiError, Reply, Request};
use crate::client::connection::NodeConnection;
use crate::config::{Endpoint, NodeConfig};
use flotilla_raft::{NodeId, Snapshot};
use flotilla_shard_manager::Directory;
use flotilla_transport_quic::{TlsSetup, TransportConfig};
use std::time::{Duration, Instant};

/// How long each attempt waits for an answer.
const ATTEMPT: Duration = Duration::from_secs(3);
/// How long joining may take in all before the node gives up.
const DEADLINE: Duration = Duration::from_secs(60);
/// The pause between two rounds over the endpoints.
const RETRY: Duration = Duration::from_millis(300);

/// What a joining node starts from: the meta snapshot its meta replica begins at, and where
/// every node listens now (the snapshot may be older than some of them).
pub(crate) struct Joined {
    pub(crate) meta: Snapshot,
    pub(crate) directory: Directory,
}

/// Records this node in the cluster and returns what it starts from.
///
/// # Errors
/// The cluster refused the id (used before), or no meta leader answered within a minute.
pub(crate) async fn join_cluster(
    config: &NodeConfig,
    tls: &TlsSetup,
    seeds: &[Endpoint],
    address: String,
) -> Result<Joined, ServerError> {
    let node = config.node();
    let join = Request::Join { node, address };
    match ask_meta_leader(tls, seeds, &join)
        .await
        .map_err(Asked::join_failed)?
    {
        Reply::Applied => tracing::info!(node = node.0, "the cluster recorded this node"),
        other => return Err(unexpected(&other)),
    }
    // The meta leader applied this node's entry: its directory lists every node up to it.
    let snapshot = ask_meta_leader(tls, seeds, &Request::MetaSnapshot).await;
    match snapshot.map_err(Asked::join_failed)? {
        Reply::MetaSnapshot {
            snapshot,
            directory,
        } => Ok(Joined {
            meta: snapshot,
            directory,
        }),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &Reply) -> ServerError {
    ServerError::JoinFailed(format!("an unexpected answer: {reply:?}"))
}

/// Asks the meta leader, through `peers`, to record this node's new `address` until it has:
/// a restarted node whose directory entry names another address. Runs beside the node; a
/// refusal (a removed node, another data directory) is logged, and the node's own checks stop
/// it if it is not who it claims.
pub(crate) async fn announce_address(tls: TlsSetup, peers: Vec<Endpoint>, request: Request) {
    loop {
        match ask_meta_leader(&tls, &peers, &request).await {
            Ok(Reply::Applied) => {
                tracing::info!("the cluster recorded this node's new address");
                return;
            }
            Ok(other) => {
                tracing::error!(answer = ?other, "recording this node's new address: an unexpected answer");
                return;
            }
            Err(Asked::Refused(reason)) => {
                tracing::error!(%reason, "the cluster refused this node's new address");
                return;
            }
            Err(Asked::NoLeader(reason)) => {
                tracing::warn!(%reason, "this node's new address is not recorded yet; asking again");
            }
        }
    }
}

/// Why the meta leader did not answer a request.
#[derive(Debug)]
enum Asked {
    /// It refused it, for good.
    Refused(String),
    /// No meta leader answered in time.
    NoLeader(String),
}

impl Asked {
    fn join_failed(self) -> ServerError {
        match self {
            Asked::Refused(reason) | Asked::NoLeader(reason) => ServerError::JoinFailed(reason),
        }
    }
}

/// Sends `request` until the meta leader answers it: each seed in turn, a leader hint at once.
async fn ask_meta_leader(
    tls: &TlsSetup,
    seeds: &[Endpoint],
    request: &Request,
) -> Result<Reply, Asked> {
    let transport = TransportConfig {
        handshake_timeout_ms: ATTEMPT.as_millis() as u64,
        ..TransportConfig::default()
    };
    let started = Instant::now();
    let mut last = String::from("no endpoint was tried");
    while started.elapsed() < DEADLINE {
        for seed in seeds {
            let mut target = (seed.node, seed.address.to_string());
            for _ in 0..2 {
                let Ok(address) = target.1.parse() else {
                    break;
                };
                let answer = async {
                    let connection =
                        NodeConnection::connect(tls, &transport, target.0, address).await?;
                    connection.call(request.clone(), ATTEMPT).await
                };
                match tokio::time::timeout(ATTEMPT * 2, answer).await {
                    Ok(Ok(Ok(reply))) => return Ok(reply),
                    Ok(Ok(Err(ApiError::NotLeader {
                        leader: Some(leader),
                        address: Some(leader_address),
                        ..
                    }))) if leader != target.0 => {
                        target = (leader, leader_address);
                        continue;
                    }
                    Ok(Ok(Err(
                        error @ (ApiError::AdminRefused(_) | ApiError::PermissionDenied { .. }),
                    ))) => return Err(Asked::Refused(error.to_string())),
                    Ok(Ok(Err(error))) => last = format!("{}: {error}", target.0),
                    Ok(Err(error)) => last = format!("{}: {error}", target.0),
                    Err(_) => last = format!("{}: no answer", target.0),
                }
                break;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
    Err(Asked::NoLeader(format!(
        "no meta-group leader answered within {} s (last: {last})",
        DEADLINE.as_secs()
    )))
}

/// The node ids `seeds` must not contain: a joining node is none of them.
pub(crate) fn check_seeds(node: NodeId, seeds: &[Endpoint]) -> Result<(), ServerError> {
    if seeds.iter().any(|seed| seed.node == node) {
        return Err(ServerError::JoinFailed(format!(
            "{node} is among the nodes to join through: a joining node has a new id"
        )));
    }
    Ok(())
}

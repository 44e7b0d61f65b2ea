//! What operators and tools ask of a cluster through a client: each node's status, the
//! placement driver's view, and commands carried out through the meta group.

use super::{Client, stop_error, unexpected};
use crate::attempts::Kind;
use crate::error::ClientError;
use flotilla_api::{AdminCommand, ApiError, NodeStatus, PlacementStatus, Reply, Request, Response};
use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::RangeId;
use std::time::Instant;

impl Client {
    /// The status of every node the client knows, in node order.
    pub async fn statuses(&self) -> Vec<(NodeId, Result<NodeStatus, ClientError>)> {
        let mut statuses = Vec::new();
        for (node, _) in self.nodes() {
            statuses.push((node, self.status(node).await));
        }
        statuses
    }

    /// The status of one node.
    ///
    /// # Errors
    /// The node did not answer.
    pub async fn status(&self, node: NodeId) -> Result<NodeStatus, ClientError> {
        match self
            .call(node, Request::Status, self.inner.options.attempt_timeout)
            .await
        {
            Ok(Ok(Reply::Status(status))) => Ok(status),
            Ok(Ok(_)) => Err(ClientError::Refused(ApiError::Unavailable(
                "unexpected reply".into(),
            ))),
            Ok(Err(error)) => Err(ClientError::Refused(error)),
            Err(error) => Err(ClientError::Unavailable {
                attempts: 1,
                reason: error.to_string(),
            }),
        }
    }

    /// The placement driver's view (nodes, ranges, operators), from the meta group's leader.
    ///
    /// # Errors
    /// No node answered, or the leader refused.
    pub async fn placement(&self) -> Result<PlacementStatus, ClientError> {
        match self.call_meta_leader(Request::Placement).await? {
            Reply::Placement(status) => Ok(status),
            _ => Err(ClientError::Refused(ApiError::Unavailable(
                "unexpected reply".into(),
            ))),
        }
    }

    /// Carries out an operator's command through the meta group; returns once it is applied.
    ///
    /// # Errors
    /// No node answered, or the cluster refused the command (`AdminRefused`, say). A command
    /// whose answer was lost may have been applied: it is safe to send again.
    pub async fn admin(&self, command: AdminCommand) -> Result<(), ClientError> {
        match self.call_meta_leader(Request::Admin(command)).await? {
            // The meta group refused the entry when it applied it (a rival operator won).
            Reply::Kv(Response::Invalid(reason)) => {
                Err(ClientError::Refused(ApiError::AdminRefused(reason)))
            }
            _ => Ok(()),
        }
    }

    /// Splits the range holding `at` there: it keeps the keys below `at`, and a new range (on
    /// the same replicas, with a new group) takes the keys from `at` on. The meta group
    /// reserves the new range's id, the range's leader splits it at one entry of its log, and
    /// the meta group records it; returns the new range's id once this client's map shows it.
    /// Safe to call again after an error: a split that took effect is answered as done.
    ///
    /// # Errors
    /// `at` is the range's first key (`Refused`), or no answer before the deadline.
    pub async fn split(&self, at: &[u8]) -> Result<RangeId, ClientError> {
        let id = match self
            .call_meta_leader(Request::Admin(AdminCommand::ReserveRange))
            .await?
        {
            Reply::Kv(Response::Reserved { id }) => id,
            Reply::Kv(other) => return Err(unexpected(&other)),
            _ => {
                return Err(ClientError::Refused(ApiError::Unavailable(
                    "unexpected reply".into(),
                )));
            }
        };
        let right = GroupId(id);
        let deadline = Instant::now() + self.inner.options.deadline;
        let answered = self
            .attempt_loop(at, Kind::Idempotent, deadline, |target| Request::Split {
                group: target.group,
                epoch: target.epoch,
                at: at.to_vec(),
                right,
            })
            .await
            .map_err(stop_error)?;
        match answered.response {
            Response::Split { .. } => {}
            Response::Invalid(reason) => {
                return Err(ClientError::Refused(ApiError::AdminRefused(reason)));
            }
            other => return Err(unexpected(&other)),
        }
        // The range's leader has the meta group record it within a placement round or two.
        loop {
            if let Err(error) = self.refresh_map().await {
                tracing::debug!(%error, "the range map could not be refreshed");
            }
            if self.map().lookup(at).group == right {
                return Ok(RangeId(id));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Unavailable {
                    attempts: answered.attempts,
                    reason: format!(
                        "range {id} split off, and the meta group has not recorded it yet"
                    ),
                });
            }
            tokio::time::sleep(self.inner.options.retry_pause).await;
        }
    }

    /// Merges the range holding `key` with its right neighbour: the range takes its
    /// neighbour's keys, and the neighbour's range and group are gone for good. The range's
    /// leader prepares the merge in the range's own log, has the neighbour freeze, takes its
    /// state in one entry and has the meta group record it; returns the merged range's id once
    /// this client's map shows it. Safe to call again after an error: a merge under way is
    /// answered as prepared.
    ///
    /// # Errors
    /// The range is the last one, or its neighbour holds more than `ranges.merge_bytes`
    /// (`Refused`); or the merge did not finish before the deadline (the neighbour refused to
    /// freeze: it changed, or grew too big; the range then gives the merge up).
    pub async fn merge(&self, key: &[u8]) -> Result<RangeId, ClientError> {
        let deadline = Instant::now() + self.inner.options.deadline;
        let answered = self
            .attempt_loop(key, Kind::Idempotent, deadline, |target| Request::Merge {
                group: target.group,
                epoch: target.epoch,
            })
            .await
            .map_err(stop_error)?;
        let right = match answered.response {
            Response::Merge { right, .. } => right,
            Response::Invalid(reason) => {
                return Err(ClientError::Refused(ApiError::AdminRefused(reason)));
            }
            other => return Err(unexpected(&other)),
        };
        // The leader finishes the merge and has it recorded within a few placement rounds.
        loop {
            if let Err(error) = self.refresh_map().await {
                tracing::debug!(%error, "the range map could not be refreshed");
            }
            let map = self.map();
            if map.ranges().all(|range| range.group != right) {
                return Ok(map.lookup(key).id);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Unavailable {
                    attempts: answered.attempts,
                    reason: format!(
                        "the merge of group {right} was prepared and has not been recorded yet \
                         (it is given up if that range changed or grew past \
                         ranges.merge_bytes)"
                    ),
                });
            }
            tokio::time::sleep(self.inner.options.retry_pause).await;
        }
    }

    /// Sends `request` to each node in turn until the meta group's leader answers, following
    /// a leader hint (and the address it names) at once.
    pub(super) async fn call_meta_leader(&self, request: Request) -> Result<Reply, ClientError> {
        let timeout = self.inner.options.attempt_timeout;
        let mut reasons = Vec::new();
        let mut attempts = 0;
        for (node, _) in self.nodes() {
            let mut target = node;
            for _ in 0..2 {
                attempts += 1;
                match self.call(target, request.clone(), timeout).await {
                    Ok(Ok(reply)) => return Ok(reply),
                    Ok(Err(ApiError::NotLeader {
                        leader: Some(leader),
                        address,
                        ..
                    })) if leader != target => {
                        // A leader that joined after this client read the directory is
                        // reached at the address the refusal names.
                        self.learn_address(Some(leader), address.as_deref());
                        target = leader;
                        continue;
                    }
                    Ok(Err(
                        error @ (ApiError::AdminRefused(_) | ApiError::PermissionDenied { .. }),
                    )) => {
                        return Err(ClientError::Refused(error));
                    }
                    Ok(Err(error)) => reasons.push(format!("{target}: {error}")),
                    Err(error) => reasons.push(format!("{target}: {error}")),
                }
                break;
            }
        }
        Err(ClientError::Unavailable {
            attempts,
            reason: format!("no meta-group leader answered ({})", reasons.join("; ")),
        })
    }
}

//! What operators and tools ask of a cluster through a client: each node's status, the
//! placement driver's view, and commands carried out through the meta group.

use super::Client;
use crate::error::ClientError;
use flotilla_api::{AdminCommand, ApiError, NodeStatus, PlacementStatus, Reply, Request, Response};
use flotilla_raft::NodeId;

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

    /// Sends `request` to each node in turn until the meta group's leader answers, following
    /// a leader hint (and the address it names) at once.
    async fn call_meta_leader(&self, request: Request) -> Result<Reply, ClientError> {
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

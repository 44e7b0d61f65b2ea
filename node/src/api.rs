//! The client protocol's messages: `flotilla-api`'s, re-exported at the paths the node's code
//! and tests have always used, plus the measure the node's answer budget takes of a frame.

pub use flotilla_api::error::ApiError;
use flotilla_api::kv::Response;
pub use flotilla_api::reply::{BackupView, PlacementStatus, Reply, ResponseFrame, kv_answer_bytes};
pub use flotilla_api::request::{AdminCommand, Request, RequestFrame};
pub use flotilla_api::status::{GroupStatus, NodeStatus, PeerState, PeerStatus};

/// The answer to a client of `group` whose command the range applied or read with `response`:
/// a key outside the range's bounds (it split since the request was routed), or a range frozen
/// for a merge, is refused as not served there, which sends the client to refresh its map and try again; anything else is the
/// range's answer.
pub(crate) fn kv_result(
    group: flotilla_raft::GroupId,
    response: Response,
) -> Result<Reply, ApiError> {
    match response {
        Response::OutsideRange { .. } | Response::Merging { .. } => {
            Err(ApiError::NotServed { group })
        }
        response => Ok(Reply::Kv(response)),
    }
}

/// About how many bytes a response frame takes on the wire: what a client stream's answer
/// budget counts.
pub trait FrameWeight {
    /// Within a few bytes for a key-value answer; counted by encoding for the rest.
    fn weight(&self) -> usize;
}

impl FrameWeight for ResponseFrame {
    fn weight(&self) -> usize {
        Self::OVERHEAD_BYTES
            + match &self.result {
                Ok(Reply::Kv(response)) => kv_answer_bytes(response),
                other => postcard::serialize_with_flavor::<_, _, usize>(
                    other,
                    postcard::ser_flavors::Size::default(),
                )
                .unwrap_or(0),
            }
    }
}

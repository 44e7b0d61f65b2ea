//! The network side of the client API: each accepted client connection opens persistent
//! bidirectional streams; requests are read as they come (pipelined) and handed to the Raft
//! loop, and responses are written back in whatever order they complete, several per write.

use crate::api::{ApiError, RequestFrame, ResponseFrame};
use crate::core::Respond;
use crate::server::driver::{Input, Responder};
use crate::server::gate::{Caller, Gate};
use crossbeam_channel::{Sender, TrySendError};
use flotilla_transport_quic::{
    ClientConnection, FrameError, MessageReceiver, MessageSender, StreamError,
};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Serves every stream the client opens until the connection closes.
pub(crate) async fn serve_client(
    connection: ClientConnection,
    inbox: Sender<Input>,
    gate: Arc<Gate>,
) {
    let who = connection.identity().san();
    let caller = Caller::of(&connection);
    while let Ok((send, recv)) = connection.accept_stream().await {
        let stream = serve_stream(send, recv, inbox.clone(), Arc::clone(&gate), caller.clone());
        tokio::spawn(stream);
    }
    tracing::debug!(client = %who, "client connection closed");
}

async fn serve_stream(
    send: MessageSender<ResponseFrame>,
    mut recv: MessageReceiver<RequestFrame>,
    inbox: Sender<Input>,
    gate: Arc<Gate>,
    caller: Caller,
) {
    let (responses, pending) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_responses(send, pending));
    loop {
        let frame = match recv.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error @ StreamError::Frame(_)) => {
                tracing::info!(%error, "client stream closed: bad request frame");
                break;
            }
            Err(error) => {
                tracing::debug!(%error, "client stream ended");
                break;
            }
        };
        let responder = Responder::new(frame.id, responses.clone());
        if let Err(refusal) = gate.check(&caller, &frame.request) {
            responder.answer(Err(refusal));
            continue;
        }
        match inbox.try_send(Input::Request(frame.request, responder)) {
            Ok(()) => {}
            Err(TrySendError::Full(Input::Request(_, responder))) => {
                responder.answer(Err(ApiError::Busy))
            }
            Err(TrySendError::Disconnected(Input::Request(_, responder))) => {
                responder.answer(Err(ApiError::Unavailable("the node is stopping".into())));
            }
            Err(_) => {}
        }
    }
    // The writer ends once every responder of this stream has answered or been dropped.
    drop(responses);
    let _ = writer.await;
}

async fn write_responses(
    send: MessageSender<ResponseFrame>,
    pending: mpsc::UnboundedReceiver<ResponseFrame>,
) {
    // Too large for a frame (a huge value): say so instead of the data.
    let refuse = |response: &ResponseFrame, error: FrameError| {
        tracing::warn!(%error, "response does not fit in a frame");
        Some(ResponseFrame {
            id: response.id,
            result: Err(ApiError::ResponseTooLarge(error.to_string())),
        })
    };
    if let Err(error) = send.write_bursts(pending, refuse).await {
        tracing::debug!(%error, "client stream failed while answering");
    }
}

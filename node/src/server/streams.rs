//! The network side of the client API: each accepted client connection opens persistent
//! bidirectional streams; requests are read as they come (pipelined) and handed to the Raft
//! loop, and responses are written back in whatever order they complete, several per write.
//!
//! What one stream may make the node hold is bounded ([`StreamBounds`]): the node stops
//! reading a stream while it has `requests_max` requests unanswered, or while answers of more
//! than half of `answer_bytes_max` wait for the client to read them; an answer that would take
//! the waiting bytes past `answer_bytes_max` (a client that sends and never reads) closes the
//! client's connection instead of being queued.

use crate::api::{ApiError, RequestFrame, ResponseFrame};
use crate::core::Respond;
use crate::observe::requests::{Operation, RequestStats};
use crate::server::driver::{Input, RequestTiming, Responder};
use crate::server::gate::{Caller, Gate};
use crossbeam_channel::{Sender, TrySendError};
use flotilla_transport_quic::endpoint::CLOSE_ANSWERS_UNREAD;
use flotilla_transport_quic::{
    ClientCloser, ClientConnection, FrameError, MessageReceiver, MessageSender, StreamError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};

/// What one client stream may make the node hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamBounds {
    /// Requests read and not yet answered.
    pub(crate) requests_max: usize,
    /// Answer bytes waiting for the client to read them.
    pub(crate) answer_bytes_max: usize,
}

/// What every stream of a node shares: the gate that checks requests, and the request counters.
#[derive(Clone, Debug)]
pub(crate) struct StreamShared {
    pub(crate) gate: Arc<Gate>,
    pub(crate) stats: Arc<RequestStats>,
}

/// Serves every stream the client opens until the connection closes.
pub(crate) async fn serve_client(
    connection: ClientConnection,
    inbox: Sender<Input>,
    bounds: StreamBounds,
    shared: StreamShared,
) {
    let who = connection.identity().san();
    let caller = Caller::of(&connection);
    while let Ok((send, recv)) = connection.accept_stream().await {
        let budget = Arc::new(StreamBudget::new(bounds, connection.closer()));
        let access = (shared.clone(), caller.clone());
        tokio::spawn(serve_stream(send, recv, inbox.clone(), budget, access));
    }
    tracing::debug!(client = %who, "client connection closed");
}

async fn serve_stream(
    send: MessageSender<ResponseFrame>,
    mut recv: MessageReceiver<RequestFrame>,
    inbox: Sender<Input>,
    budget: Arc<StreamBudget>,
    (shared, caller): (StreamShared, Caller),
) {
    let (responses, pending) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_responses(send, pending, Arc::clone(&budget)));
    loop {
        budget.wait_for_room().await;
        let frame = match recv.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error @ (StreamError::Frame(_) | StreamError::SlowFrame { .. })) => {
                tracing::info!(%error, "client stream closed: bad request frame");
                break;
            }
            Err(error) => {
                tracing::debug!(%error, "client stream ended");
                break;
            }
        };
        let operation = Operation::of(&frame.request);
        shared.stats.received(operation);
        let timing = RequestTiming {
            operation,
            read_at: std::time::Instant::now(),
            stats: Arc::clone(&shared.stats),
        };
        let responder = Responder::new(frame.id, responses.clone(), Arc::clone(&budget), timing);
        if let Err(refusal) = shared.gate.check(&caller, &frame.request) {
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
    budget: Arc<StreamBudget>,
) {
    // Too large for a frame (a huge value): say so instead of the data.
    let refuse = |response: &ResponseFrame, error: FrameError| {
        tracing::warn!(%error, "response does not fit in a frame");
        Some(ResponseFrame {
            id: response.id,
            result: Err(ApiError::ResponseTooLarge(error.to_string())),
        })
    };
    let taken = |response: &ResponseFrame| budget.taken(response.weight());
    if let Err(error) = send.write_bursts_counted(pending, refuse, taken).await {
        tracing::debug!(%error, "client stream failed while answering");
    }
}

/// What one stream holds now against its [`StreamBounds`].
#[derive(Debug)]
pub(crate) struct StreamBudget {
    bounds: StreamBounds,
    /// Requests read whose responder has not answered yet.
    unanswered: AtomicUsize,
    /// Bytes (by [`ResponseFrame::weight`]) of answers queued and not yet taken for a write.
    queued_bytes: AtomicUsize,
    /// Set once the queued answers overran the limit and the connection was closed.
    overrun: AtomicBool,
    /// Woken whenever an answer or a queued byte is given back.
    room: Notify,
    closer: ClientCloser,
}

impl StreamBudget {
    fn new(bounds: StreamBounds, closer: ClientCloser) -> Self {
        Self {
            bounds,
            unanswered: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            overrun: AtomicBool::new(false),
            room: Notify::new(),
            closer,
        }
    }

    fn has_room(&self) -> bool {
        self.unanswered.load(Ordering::Acquire) < self.bounds.requests_max
            && self.queued_bytes.load(Ordering::Acquire) < self.bounds.answer_bytes_max / 2
    }

    /// Waits until the stream may read another request.
    async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                self.unanswered.fetch_add(1, Ordering::AcqRel);
                return;
            }
            notified.await;
        }
    }

    /// An answer of `bytes` joins the queue; `false` (the connection closed, the answer to be
    /// dropped) when it would take the queue past the limit.
    pub(crate) fn queue(&self, bytes: usize) -> bool {
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) <= self.bounds.answer_bytes_max {
            return true;
        }
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if !self.overrun.swap(true, Ordering::AcqRel) {
            tracing::info!(
                queued_bytes = before,
                limit = self.bounds.answer_bytes_max,
                "closed a client connection that does not read its answers"
            );
            self.closer.close(
                CLOSE_ANSWERS_UNREAD,
                "answers waiting for this client passed limits.stream_answer_bytes_max",
            );
        }
        false
    }

    /// A responder answered (or was dropped): one request fewer in flight.
    pub(crate) fn answered(&self) {
        self.unanswered.fetch_sub(1, Ordering::AcqRel);
        self.room.notify_one();
    }

    /// The writer took an answer of `bytes` from the queue.
    fn taken(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.room.notify_one();
    }
}

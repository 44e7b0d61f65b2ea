//! The network side of the client API: each accepted client connection opens persistent
//! bidirectional streams; requests are read as they come (pipelined) and handed to the Raft
//! loop, and responses are written back in whatever order they complete, several per write.
//!
//! What one stream may make the node hold is bounded ([`StreamBounds`]) before it is spent:
//! each request read reserves the largest answer it can have (a value for a get or a write, a
//! scan page for a scan), and the node reads a stream's next request only while its requests
//! in flight stay under `requests_max` and its reserved and queued answer bytes leave room for
//! another largest answer under `answer_bytes_max`. A client that sends and never reads is
//! simply not read any more; a client that reads is never cut off.

use crate::api::{ApiError, FrameWeight, Request, RequestFrame, ResponseFrame};
use crate::core::Respond;
use crate::observe::requests::{Operation, RequestStats};
use crate::server::driver::{Input, RequestTiming, Responder};
use crate::server::gate::{Caller, Gate};
use crossbeam_channel::{Sender, TrySendError};
use flotilla_storage::Command;
use flotilla_transport_quic::{
    ClientConnection, FrameError, MessageReceiver, MessageSender, StreamError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};

/// Answer bytes reserved for a request whose answer is not a key-value one (status, the range
/// map): such an answer may be larger, and is then counted at its size once it exists.
const OTHER_ANSWER_BYTES: usize = 64 << 10;

/// What one client stream may make the node hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamBounds {
    /// Requests read and not yet answered.
    pub(crate) requests_max: usize,
    /// Answer bytes reserved for requests in flight plus those waiting for the client.
    pub(crate) answer_bytes_max: usize,
    /// The largest key.
    pub(crate) key_bytes_max: usize,
    /// The largest value (what a get or a write may answer with).
    pub(crate) value_bytes_max: usize,
    /// The most key and value bytes of one scan page.
    pub(crate) scan_bytes_max: usize,
}

impl StreamBounds {
    /// The largest answer `request` can have, as [`ResponseFrame::weight`] counts it.
    pub(crate) fn reservation(&self, request: &Request) -> usize {
        match request {
            Request::Kv { command, .. } | Request::Write { command, .. } => match command {
                Command::Scan { .. } => self.scan_answer_bytes(),
                Command::Get { .. }
                | Command::Put { .. }
                | Command::Delete { .. }
                | Command::CompareAndSwap { .. } => self.value_answer_bytes(),
            },
            Request::RangeMap
            | Request::RangeMapRead
            | Request::Status
            | Request::Placement
            | Request::MetaSnapshot
            // A refused split says why.
            | Request::Split { .. }
            | Request::Merge { .. } => OTHER_ANSWER_BYTES,
            Request::BackupChunk { .. } => self.backup_chunk_answer_bytes(),
            Request::KnownDirectory { .. }
            | Request::OpenSession { .. }
            | Request::Admin(_)
            | Request::Join { .. }
            | Request::SetAddress { .. }
            | Request::BackupOpen { .. }
            | Request::BackupClose { .. } => ResponseFrame::OVERHEAD_BYTES,
        }
    }

    /// The largest reservation any request makes.
    pub(crate) fn largest_reservation(&self) -> usize {
        self.scan_answer_bytes()
            .max(self.value_answer_bytes())
            .max(self.backup_chunk_answer_bytes())
            .max(OTHER_ANSWER_BYTES)
    }

    /// A backup chunk's largest answer: `scan_bytes_max` bytes of pairs counted as the
    /// snapshot format lays them out (8 bytes of lengths each, more than postcard's), or one
    /// pair of the largest key and value when a single pair is larger; 16 bytes of framing.
    fn backup_chunk_answer_bytes(&self) -> usize {
        let one_pair =
            flotilla_storage::PAIR_FRAMING_BYTES + self.key_bytes_max + self.value_bytes_max;
        ResponseFrame::OVERHEAD_BYTES + 16 + self.scan_bytes_max.max(one_pair)
    }

    /// A get's or a write's largest answer: one value.
    fn value_answer_bytes(&self) -> usize {
        ResponseFrame::OVERHEAD_BYTES + self.value_bytes_max
    }

    /// A scan's largest answer: a page, each pair counting 8 bytes beyond its key and value.
    fn scan_answer_bytes(&self) -> usize {
        let pairs = flotilla_storage::kv::SCAN_PAIR_COUNT_MAX as usize;
        ResponseFrame::OVERHEAD_BYTES + self.scan_bytes_max + 8 * pairs
    }
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
        let budget = Arc::new(StreamBudget::new(bounds));
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
    // Stops when the client ends the stream, sends a bad frame, or no longer takes answers.
    while budget.wait_for_room().await {
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
        let reserved = budget.bounds.reservation(&frame.request);
        let operation = Operation::of(&frame.request);
        shared.stats.received(operation);
        let timing = RequestTiming {
            operation,
            read_at: std::time::Instant::now(),
            stats: Arc::clone(&shared.stats),
        };
        let reservation = budget.reserve(reserved);
        let responder = Responder::new(frame.id, responses.clone(), reservation, timing);
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
    budget.writer_gone();
}

/// What one stream holds now against its [`StreamBounds`].
#[derive(Debug)]
pub(crate) struct StreamBudget {
    bounds: StreamBounds,
    /// Requests read whose responder has not answered yet.
    unanswered: AtomicUsize,
    /// Answer bytes reserved by those requests plus those of answers queued and not yet taken
    /// for a write (by [`ResponseFrame::weight`]).
    held_bytes: AtomicUsize,
    /// Set once the writer stopped (the client no longer takes answers).
    gone: AtomicBool,
    /// Woken whenever a request is answered, bytes are given back, or the writer stops.
    room: Notify,
}

/// The answer bytes one request holds in its stream's budget; given back as its answer is
/// queued (then counted at its real size) or when it is dropped unanswered.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<StreamBudget>,
    bytes: usize,
}

impl Reservation {
    /// The request is answered with `frame`: its reservation becomes the frame's weight.
    /// Returns whether the answer should be queued (the writer still takes answers).
    pub(crate) fn answered(mut self, frame: &ResponseFrame) -> bool {
        let weight = frame.weight();
        let budget = &self.budget;
        budget.held_bytes.fetch_add(weight, Ordering::AcqRel);
        budget.held_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.bytes = 0;
        !budget.gone.load(Ordering::Acquire)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.held_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        budget.unanswered.fetch_sub(1, Ordering::AcqRel);
        budget.room.notify_one();
    }
}

impl StreamBudget {
    fn new(bounds: StreamBounds) -> Self {
        Self {
            bounds,
            unanswered: AtomicUsize::new(0),
            held_bytes: AtomicUsize::new(0),
            gone: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    fn has_room(&self) -> bool {
        let held = self.held_bytes.load(Ordering::Acquire);
        self.unanswered.load(Ordering::Acquire) < self.bounds.requests_max
            && held + self.bounds.largest_reservation() <= self.bounds.answer_bytes_max
    }

    /// Waits until the stream may read another request; `false` once the writer is gone.
    async fn wait_for_room(&self) -> bool {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.gone.load(Ordering::Acquire) {
                return false;
            }
            if self.has_room() {
                return true;
            }
            notified.await;
        }
    }

    /// A request read: it holds `bytes` of the budget until answered.
    fn reserve(self: &Arc<Self>, bytes: usize) -> Reservation {
        self.unanswered.fetch_add(1, Ordering::AcqRel);
        self.held_bytes.fetch_add(bytes, Ordering::AcqRel);
        Reservation {
            budget: Arc::clone(self),
            bytes,
        }
    }

    /// The writer took an answer of `bytes` from the queue.
    fn taken(&self, bytes: usize) {
        self.held_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.room.notify_one();
    }

    /// The writer stopped: nothing more is read from this stream.
    fn writer_gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.room.notify_one();
    }
}

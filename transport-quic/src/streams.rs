//! Raft batches and snapshot chunks on separate persistent QUIC streams: frame IO on quinn
//! streams, the per-class writer task, and the reader that checks each batch's sender.
//!
//! A batch is split by `split_batch`: snapshot chunks go to the snapshot stream, everything else
//! (votes, appends, heartbeats) to the Raft stream. An empty batch goes out too: it is the
//! node-level liveness heartbeat of an idle node. Each stream has its own queue and writer
//! task and QUIC flow-controls streams independently, so a multi-megabyte snapshot never sits in
//! front of a heartbeat. Order is kept per stream, not across the two.

use crate::counters::Counters;
use crate::error::{FrameError, StreamError};
use crate::frame::{self, FrameKind, HEADER_BYTES};
use crate::inbound::InboundSender;
use crate::outbound::OutboundQueue;
use crate::reader::FrameReader;
use crate::silence::{self, Heard};
use flotilla_raft::{Batch, NodeId};
use quinn::{Connection, ReadExactError, RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The application error code a connection is closed with after a malformed frame.
pub const CLOSE_MALFORMED_FRAME: u32 = 0x46_01;
/// Queued batches are gathered into one stream write up to about this many bytes.
const COALESCE_BYTES: usize = 64 << 10;
/// Buffers above this are shrunk back after use, so one snapshot does not pin memory per stream.
const BUFFER_BYTES_KEPT: usize = 1 << 20;
/// Bytes asked of the stream per read of a frame's payload.
const PAYLOAD_CHUNK_BYTES: usize = 64 << 10;
/// At most this many received batches are handed to the inbound queue at once.
const INBOUND_BURST_BATCHES: usize = 256;

/// Splits a batch into its Raft part and its snapshot-chunk part. A batch without chunks goes
/// whole to the Raft stream even when empty: an empty batch is how a node with nothing to say
/// tells its peers it is up (their liveness check wakes the groups of a silent node). Only the
/// Raft part left empty by moving the chunks out is `None`.
#[must_use]
pub fn split_batch(batch: Batch) -> (Option<Batch>, Option<Batch>) {
    if !batch.messages.iter().any(|m| m.message.is_snapshot_chunk()) {
        return (Some(batch), None);
    }
    let mut snapshot = batch.sibling();
    let mut raft = batch;
    let (chunks, rest) = raft
        .messages
        .drain(..)
        .partition(|m| m.message.is_snapshot_chunk());
    snapshot.messages = chunks;
    raft.messages = rest;
    (Some(raft).filter(|b| !b.is_empty()), Some(snapshot))
}

/// What a frame read may take: its size, and how long its payload may take after its header.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimit {
    /// The largest frame, header included; a larger header fails before any payload is read.
    pub bytes_max: u32,
    /// How long the payload may take to arrive once the header has.
    pub payload_timeout: Duration,
}

/// Reads one frame of `kind`; `Ok(None)` when the stream ends cleanly between frames. The
/// payload is buffered as it arrives (never reserved whole on the header's word), so a peer
/// that announces a large frame and sends little costs only what it sent.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut RecvStream,
    kind: FrameKind,
    limit: FrameLimit,
    buf: &mut Vec<u8>,
) -> Result<Option<T>, StreamError> {
    let mut header = [0u8; HEADER_BYTES];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(error) => return Err(read_error(error, HEADER_BYTES)),
    }
    let header = frame::decode_header(&header, limit.bytes_max)?;
    frame::check_kind(header, kind)?;
    let payload_bytes = header.payload_bytes as usize;
    buf.clear();
    let timeout = limit.payload_timeout;
    tokio::time::timeout(timeout, read_payload(recv, payload_bytes, buf))
        .await
        .map_err(|_| StreamError::SlowFrame {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            received_bytes: buf.len(),
            payload_bytes,
        })??;
    let value = frame::decode_payload(buf);
    if buf.capacity() > BUFFER_BYTES_KEPT {
        *buf = Vec::new();
    }
    Ok(Some(value?))
}

/// Appends `payload_bytes` bytes of the stream to `buf`, growing it only as they arrive.
async fn read_payload(
    recv: &mut RecvStream,
    payload_bytes: usize,
    buf: &mut Vec<u8>,
) -> Result<(), StreamError> {
    while buf.len() < payload_bytes {
        let wanted = payload_bytes - buf.len();
        match recv
            .read_chunk(wanted.min(PAYLOAD_CHUNK_BYTES), true)
            .await?
        {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None => return Err(frame::truncated(payload_bytes, buf.len()).into()),
        }
    }
    Ok(())
}

fn read_error(error: ReadExactError, needed: usize) -> StreamError {
    match error {
        ReadExactError::FinishedEarly(available) => frame::truncated(needed, available).into(),
        ReadExactError::ReadError(error) => error.into(),
    }
}

/// Encodes `value` into `buf` and writes it as one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut SendStream,
    kind: FrameKind,
    value: &T,
    frame_bytes_max: u32,
    buf: &mut Vec<u8>,
) -> Result<(), StreamError> {
    buf.clear();
    frame::encode(kind, value, frame_bytes_max, buf)?;
    send.write_all(buf).await?;
    if buf.capacity() > BUFFER_BYTES_KEPT {
        *buf = Vec::new();
    }
    Ok(())
}

/// What a reader needs to check and hand over inbound batches.
#[derive(Debug, Clone)]
pub(crate) struct InboundContext {
    pub(crate) local: NodeId,
    pub(crate) frame_bytes_max: u32,
    pub(crate) counters: Arc<Counters>,
    pub(crate) queue: InboundSender,
    /// A peer connection on which nothing arrived for this long is closed.
    pub(crate) peer_silence: std::time::Duration,
}

/// Accepts the peer's streams on `connection` and reads batches from each until it closes;
/// closes the connection if nothing arrives on it for `peer_silence`.
pub(crate) async fn serve_inbound(context: InboundContext, connection: Connection, peer: NodeId) {
    let heard = Heard::new();
    tokio::spawn(silence::close_when_silent(
        connection.clone(),
        Arc::clone(&heard),
        context.peer_silence,
        Arc::clone(&context.counters),
        peer,
    ));
    while let Ok(recv) = connection.accept_uni().await {
        tokio::spawn(read_batches(
            context.clone(),
            connection.clone(),
            (peer, Arc::clone(&heard)),
            recv,
        ));
    }
}

async fn read_batches(
    context: InboundContext,
    connection: Connection,
    (peer, heard): (NodeId, Arc<Heard>),
    mut recv: RecvStream,
) {
    let mut reader = FrameReader::new(FrameKind::RaftBatch, context.frame_bytes_max);
    // Every whole frame of a burst is decoded, then handed over at once: the Raft
    // loop is woken once per burst, not once per batch.
    let max = context.queue.capacity().min(INBOUND_BURST_BATCHES);
    let mut batches = Vec::new();
    loop {
        let outcome = reader.next_frames(&mut recv, &mut batches, max).await;
        if !batches.is_empty() {
            heard.hear();
        }
        if !context.accept_all(peer, &mut batches).await {
            return;
        }
        match outcome {
            Ok(0) => return,
            Ok(_) => {}
            Err(StreamError::Frame(error)) => {
                return close_malformed(&context, &connection, peer, &error);
            }
            Err(error) => return tracing::debug!(%peer, %error, "inbound stream ended"),
        }
    }
}

fn close_malformed(
    context: &InboundContext,
    connection: &Connection,
    peer: NodeId,
    error: &FrameError,
) {
    Counters::bump(&context.counters.frames_malformed);
    tracing::error!(%peer, %error, "closing the connection: the peer sent a malformed frame");
    connection.close(CLOSE_MALFORMED_FRAME.into(), b"malformed frame");
}

impl InboundContext {
    /// Checks each batch against the certificate's node id and this node, and queues those that
    /// pass, in order, as one hand-over; empties `batches`. Returns false once the node
    /// is gone.
    async fn accept_all(&self, peer: NodeId, batches: &mut Vec<Batch>) -> bool {
        batches.retain(|batch| self.check(peer, batch));
        if batches.is_empty() {
            return true;
        }
        // Counted before it is visible, so a reader of a batch always sees it counted.
        let received = |count: usize| {
            self.counters
                .batches_received
                .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
        };
        self.queue.send_all(batches, received).await
    }

    /// Whether a batch names the certificate's node as sender and this node as receiver; counts
    /// (and logs) the batch as dropped if not.
    fn check(&self, peer: NodeId, batch: &Batch) -> bool {
        if batch.from != peer {
            Counters::bump(&self.counters.dropped_bad_sender);
            tracing::warn!(%peer, claimed = %batch.from, "dropped a batch whose sender is not the certificate's node");
            return false;
        }
        if batch.to != self.local {
            Counters::bump(&self.counters.dropped_misaddressed);
            tracing::warn!(%peer, to = %batch.to, "dropped a batch addressed to another node");
            return false;
        }
        true
    }
}

enum Pump {
    QueueClosed,
    ConnectionChanged,
    WriteFailed,
}

/// Writes the batches of one stream class to the current connection to one peer, reopening
/// the stream on each new connection; exits when the queue or the connection slot closes.
pub(crate) async fn run_writer(
    counters: Arc<Counters>,
    frame_bytes_max: u32,
    queue: Arc<OutboundQueue>,
    mut slot: watch::Receiver<Option<Connection>>,
) {
    let mut writer = Writer::new(counters, frame_bytes_max);
    while let Some(connection) = wait_for_connection(&mut slot).await {
        let outcome = match connection.open_uni().await {
            Ok(mut send) => writer.pump(&queue, &mut slot, &mut send).await,
            Err(_) => Pump::WriteFailed,
        };
        match outcome {
            Pump::QueueClosed => break,
            Pump::ConnectionChanged => {}
            Pump::WriteFailed if slot.changed().await.is_err() => break,
            Pump::WriteFailed => {}
        }
    }
    // Sends from now on are refused as unreachable, as when the link is gone.
    queue.close();
}

/// One writer task's state: the batches it took off its queue and the bytes of one write.
struct Writer {
    counters: Arc<Counters>,
    frame_bytes_max: u32,
    /// Batches taken off the queue; those before `next` are encoded (and emptied).
    taken: Vec<Batch>,
    next: usize,
    /// The frames of the next write.
    buf: Vec<u8>,
    buf_frame_count: u64,
    last_frame_bytes: usize,
}

impl Writer {
    fn new(counters: Arc<Counters>, frame_bytes_max: u32) -> Self {
        Self {
            counters,
            frame_bytes_max,
            taken: Vec::new(),
            next: 0,
            buf: Vec::new(),
            buf_frame_count: 0,
            last_frame_bytes: 0,
        }
    }

    /// Takes the queued batches each time the queue fills, and writes them as frames in writes
    /// of about `COALESCE_BYTES`; returns why it stopped.
    async fn pump(
        &mut self,
        queue: &OutboundQueue,
        slot: &mut watch::Receiver<Option<Connection>>,
        send: &mut SendStream,
    ) -> Pump {
        loop {
            let taken_count = tokio::select! {
                biased;
                changed = slot.changed() => return if changed.is_ok() { Pump::ConnectionChanged } else { Pump::QueueClosed },
                taken_count = queue.take(&mut self.taken) => taken_count,
            };
            if taken_count == 0 {
                return Pump::QueueClosed;
            }
            let written = self.write_taken(queue, send).await;
            queue.written();
            if !written {
                return Pump::WriteFailed;
            }
        }
    }

    /// Encodes and writes the taken batches, and whatever else is queued by the time they are
    /// encoded, as long as a write has room (batching per peer). False when the stream failed;
    /// the batches not written are then counted as lost.
    async fn write_taken(&mut self, queue: &OutboundQueue, send: &mut SendStream) -> bool {
        loop {
            self.encode_some();
            if self.next == self.taken.len() {
                self.taken.clear();
                self.next = 0;
                if self.buf.len() < COALESCE_BYTES && queue.take_more(&mut self.taken) > 0 {
                    continue;
                }
            }
            if !self.buf.is_empty() && !self.write_buf(send).await {
                return false;
            }
            if self.taken.is_empty() {
                return true;
            }
        }
    }

    /// Encodes taken batches into `buf` (emptying each) until about `COALESCE_BYTES` are there.
    fn encode_some(&mut self) {
        // One allocation per write, sized by the last frame (`encode` grows it if short).
        let estimate = self.last_frame_bytes * (self.taken.len() - self.next);
        let room = COALESCE_BYTES
            .saturating_sub(self.buf.len())
            .max(self.last_frame_bytes);
        self.buf.reserve(estimate.min(room));
        while let Some(slot) = self.taken.get_mut(self.next) {
            self.next += 1;
            let batch = std::mem::take(slot);
            let before = self.buf.len();
            self.buf_frame_count +=
                encode_counted(&self.counters, self.frame_bytes_max, &batch, &mut self.buf);
            if self.buf.len() > before {
                self.last_frame_bytes = self.buf.len() - before;
            }
            if self.buf.len() >= COALESCE_BYTES {
                break;
            }
        }
    }

    /// Hands `buf` to quinn as it is (no copy into its send buffer) and counts its frames.
    async fn write_buf(&mut self, send: &mut SendStream) -> bool {
        let frame_count = std::mem::take(&mut self.buf_frame_count);
        if let Err(error) = send.write_chunk(std::mem::take(&mut self.buf).into()).await {
            let lost = frame_count + (self.taken.len() - self.next) as u64;
            self.taken.clear();
            self.next = 0;
            self.counters
                .dropped_connection_lost
                .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%error, lost, "lost batches: the stream failed");
            return false;
        }
        self.counters
            .batches_sent
            .fetch_add(frame_count, std::sync::atomic::Ordering::Relaxed);
        true
    }
}

/// Appends `batch` as a frame; returns 1, or 0 when it was too large and dropped (and counted).
fn encode_counted(
    counters: &Counters,
    frame_bytes_max: u32,
    batch: &Batch,
    buf: &mut Vec<u8>,
) -> u64 {
    match frame::encode(FrameKind::RaftBatch, batch, frame_bytes_max, buf) {
        Ok(()) => 1,
        Err(error) => {
            Counters::bump(&counters.dropped_oversized);
            tracing::error!(to = %batch.to, %error, "dropped a batch that does not fit in a frame");
            0
        }
    }
}

/// Waits until the slot holds an open connection; `None` when the slot's owner is gone.
async fn wait_for_connection(slot: &mut watch::Receiver<Option<Connection>>) -> Option<Connection> {
    loop {
        let current = slot.borrow_and_update().clone();
        if let Some(connection) = current.filter(|c| c.close_reason().is_none()) {
            return Some(connection);
        }
        slot.changed().await.ok()?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::{
        GroupId, GroupMessage, HeartbeatEntry, LogIndex, Message, MessageBody, SnapshotMeta, Term,
    };

    fn message(body: MessageBody) -> GroupMessage {
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body,
        };
        GroupMessage {
            group: GroupId(3),
            message,
        }
    }

    fn chunk() -> GroupMessage {
        message(MessageBody::InstallSnapshot {
            meta: SnapshotMeta::default(),
            transfer: 1,
            offset: 0,
            data: vec![1; 10],
            done: false,
        })
    }

    fn heartbeat() -> GroupMessage {
        message(MessageBody::Heartbeat {
            commit: LogIndex(4),
            read_round: 0,
        })
    }

    #[test]
    fn a_batch_without_chunks_stays_whole_on_the_raft_stream() {
        let mut batch = Batch::new(NodeId(1), NodeId(2));
        batch.messages = vec![heartbeat(), heartbeat()];
        assert_eq!(split_batch(batch.clone()), (Some(batch), None));
    }

    #[test]
    fn chunks_move_to_the_snapshot_stream_and_the_rest_keeps_its_order() {
        let mut batch = Batch::new(NodeId(1), NodeId(2));
        batch.messages = vec![heartbeat(), chunk(), heartbeat()];
        batch.heartbeats = vec![HeartbeatEntry {
            group: GroupId(3),
            term: Term(1),
            commit: LogIndex(1),
            read_round: 0,
            quiesce: false,
        }];
        let (raft, snapshot) = split_batch(batch.clone());
        let raft = raft.unwrap();
        let snapshot = snapshot.unwrap();
        assert_eq!(raft.messages, vec![heartbeat(), heartbeat()]);
        assert_eq!(raft.heartbeats, batch.heartbeats);
        assert_eq!(snapshot.messages, vec![chunk()]);
        assert!(snapshot.heartbeats.is_empty());
        assert_eq!((snapshot.from, snapshot.to), (batch.from, batch.to));
    }

    #[test]
    fn a_batch_of_only_chunks_sends_nothing_on_the_raft_stream() {
        let mut batch = Batch::new(NodeId(1), NodeId(2));
        batch.messages = vec![chunk()];
        assert_eq!(split_batch(batch.clone()), (None, Some(batch)));
    }

    /// Regression: empty batches were dropped here, so a node whose groups were all quiescent
    /// sent nothing; its peers declared it down every node timeout and re-elected its groups'
    /// leaders in an idle cluster, again and again.
    #[test]
    fn an_empty_batch_goes_out_on_the_raft_stream() {
        let empty = Batch::new(NodeId(1), NodeId(2));
        assert_eq!(split_batch(empty.clone()), (Some(empty), None));
    }
}

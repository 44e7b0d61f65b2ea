//! The two halves of a pipelined client stream: a sender that writes client-message frames,
//! every value already queued in one write, and a receiver that reads them back decoded.
//!
//! Both ends of the client protocol use them: the client sends requests and receives responses,
//! the node receives requests and sends responses, each tagged with the application's ids.

use crate::error::{FrameError, StreamError};
use crate::frame::{self, FrameKind};
use crate::streams::{FrameLimit, read_frame, write_frame};
use quinn::{RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The most frames written in one `write_all`.
const BURST_MAX: usize = 256;
/// A burst takes no more frames once it holds this many bytes, so the bytes a slow reader
/// holds up in one write stay bounded.
const BURST_BYTES_MAX: usize = 1 << 20;
/// A write buffer with more capacity than this is released after its write.
const BUFFER_BYTES_KEPT: usize = 4 << 20;

/// How much one end of a stream reads and sends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLimits {
    /// The largest frame sent.
    pub(crate) send_bytes_max: u32,
    /// The largest frame read (checked on its header, before the payload is buffered).
    pub(crate) receive_bytes_max: u32,
    /// How long a frame's payload may take to arrive after its header.
    pub(crate) frame_read_timeout: Duration,
}

/// Builds the two halves of one bidirectional stream.
pub(crate) fn halves<S, R>(
    send: SendStream,
    recv: RecvStream,
    limits: StreamLimits,
) -> (MessageSender<S>, MessageReceiver<R>) {
    let sender = MessageSender {
        send,
        frame_bytes_max: limits.send_bytes_max,
        buf: Vec::new(),
        message: PhantomData,
    };
    let receiver = MessageReceiver {
        recv,
        frame_bytes_max: limits.receive_bytes_max,
        read_timeout: limits.frame_read_timeout,
        buf: Vec::new(),
        message: PhantomData,
    };
    (sender, receiver)
}

/// The sending half of a pipelined client stream: values of `T`, one frame each.
#[derive(Debug)]
pub struct MessageSender<T> {
    send: SendStream,
    frame_bytes_max: u32,
    buf: Vec<u8>,
    message: PhantomData<fn(T)>,
}

impl<T: Serialize> MessageSender<T> {
    /// Writes `value` as one frame, in a write of its own.
    pub async fn send(&mut self, value: &T) -> Result<(), StreamError> {
        let kind = FrameKind::ClientMessage;
        write_frame(
            &mut self.send,
            kind,
            value,
            self.frame_bytes_max,
            &mut self.buf,
        )
        .await
    }

    /// Writes what `queue` yields until it closes, then finishes the stream; stops at the first
    /// failed write. Every value waiting in the queue joins one write (up to `BURST_MAX`
    /// values and about `BURST_BYTES_MAX` bytes). A value too large for a frame is handed to
    /// `too_large`, which may give a replacement to send in its place (the value is skipped
    /// otherwise).
    pub async fn write_bursts(
        self,
        queue: UnboundedReceiver<T>,
        too_large: impl Fn(&T, FrameError) -> Option<T>,
    ) -> Result<(), StreamError> {
        self.write_bursts_counted(queue, too_large, |_| {}).await
    }

    /// [`Self::write_bursts`], calling `taken` with each value as it leaves the queue for a
    /// write: a caller that bounds what waits in the queue gives the value's room back there.
    pub async fn write_bursts_counted(
        mut self,
        mut queue: UnboundedReceiver<T>,
        too_large: impl Fn(&T, FrameError) -> Option<T>,
        mut taken: impl FnMut(&T),
    ) -> Result<(), StreamError> {
        let mut values = Vec::with_capacity(BURST_MAX);
        loop {
            if values.is_empty() {
                if queue.recv_many(&mut values, BURST_MAX).await == 0 {
                    break;
                }
                // Tasks already woken (callers answered a moment ago, about to send again) run
                // first, so what they queue joins this write: fewer, fuller packets under load.
                tokio::task::yield_now().await;
                while values.len() < BURST_MAX {
                    match queue.try_recv() {
                        Ok(value) => values.push(value),
                        Err(_) => break,
                    }
                }
            }
            self.encode_burst(&mut values, &too_large, &mut taken);
            self.send.write_all(&self.buf).await?;
            if self.buf.capacity() > BUFFER_BYTES_KEPT {
                self.buf = Vec::new();
            }
        }
        self.finish();
        Ok(())
    }

    /// Encodes values from the front of `values` into `buf` as consecutive frames, until
    /// `buf` holds `BURST_BYTES_MAX` bytes or `values` is empty; removes what it encoded.
    fn encode_burst(
        &mut self,
        values: &mut Vec<T>,
        too_large: impl Fn(&T, FrameError) -> Option<T>,
        taken: &mut impl FnMut(&T),
    ) {
        let kind = FrameKind::ClientMessage;
        self.buf.clear();
        let mut encoded = 0;
        for value in values.iter() {
            if self.buf.len() >= BURST_BYTES_MAX {
                break;
            }
            encoded += 1;
            taken(value);
            if let Err(error) = frame::encode(kind, value, self.frame_bytes_max, &mut self.buf)
                && let Some(replacement) = too_large(value, error)
            {
                let _ = frame::encode(kind, &replacement, self.frame_bytes_max, &mut self.buf);
            }
        }
        values.drain(..encoded);
    }

    /// Ends the stream after what was written: the peer reads a clean end.
    pub fn finish(mut self) {
        // Already finished or reset by the peer: there is nothing left to end.
        let _ = self.send.finish();
    }
}

/// The receiving half of a pipelined client stream: values of `T`, one frame each.
#[derive(Debug)]
pub struct MessageReceiver<T> {
    recv: RecvStream,
    frame_bytes_max: u32,
    read_timeout: Duration,
    buf: Vec<u8>,
    message: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> MessageReceiver<T> {
    /// The next value; `Ok(None)` when the peer finished the stream cleanly between frames.
    /// A frame larger than the limit is refused on its header; a payload is buffered only as
    /// its bytes arrive, and must arrive whole within the frame read timeout.
    pub async fn recv(&mut self) -> Result<Option<T>, StreamError> {
        let kind = FrameKind::ClientMessage;
        let limit = FrameLimit {
            bytes_max: self.frame_bytes_max,
            payload_timeout: self.read_timeout,
        };
        read_frame(&mut self.recv, kind, limit, &mut self.buf).await
    }
}

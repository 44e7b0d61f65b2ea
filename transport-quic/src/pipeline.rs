//! The two halves of a pipelined client stream: a sender that writes client-message frames,
//! every value already queued in one write, and a receiver that reads them back decoded.
//!
//! Both ends of the client protocol use them: the client sends requests and receives responses,
//! the node receives requests and sends responses, each tagged with the application's ids.

use crate::error::{FrameError, StreamError};
use crate::frame::{self, FrameKind};
use crate::streams::{read_frame, write_frame};
use quinn::{RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use tokio::sync::mpsc::UnboundedReceiver;

/// The most frames written in one `write_all`.
const BURST_MAX: usize = 256;

/// Builds the two halves of one bidirectional stream.
pub(crate) fn halves<S, R>(
    send: SendStream,
    recv: RecvStream,
    frame_bytes_max: u32,
) -> (MessageSender<S>, MessageReceiver<R>) {
    let sender = MessageSender {
        send,
        frame_bytes_max,
        buf: Vec::new(),
        message: PhantomData,
    };
    let receiver = MessageReceiver {
        recv,
        frame_bytes_max,
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
    /// failed write. Every value waiting in the queue joins one write (up to `BURST_MAX`). A
    /// value too large for a frame is handed to `too_large`, which may give a replacement to
    /// send in its place (the value is skipped otherwise).
    pub async fn write_bursts(
        mut self,
        mut queue: UnboundedReceiver<T>,
        too_large: impl Fn(&T, FrameError) -> Option<T>,
    ) -> Result<(), StreamError> {
        let mut values = Vec::with_capacity(BURST_MAX);
        while queue.recv_many(&mut values, BURST_MAX).await > 0 {
            // Tasks already woken (callers answered a moment ago, about to send again) run
            // first, so what they queue joins this write: fewer, fuller packets under load.
            tokio::task::yield_now().await;
            while values.len() < BURST_MAX {
                match queue.try_recv() {
                    Ok(value) => values.push(value),
                    Err(_) => break,
                }
            }
            self.encode_burst(&mut values, &too_large);
            self.send.write_all(&self.buf).await?;
        }
        self.finish();
        Ok(())
    }

    /// Encodes `values` (emptying it) into `buf` as consecutive frames.
    fn encode_burst(
        &mut self,
        values: &mut Vec<T>,
        too_large: impl Fn(&T, FrameError) -> Option<T>,
    ) {
        let kind = FrameKind::ClientMessage;
        self.buf.clear();
        for value in values.drain(..) {
            if let Err(error) = frame::encode(kind, &value, self.frame_bytes_max, &mut self.buf)
                && let Some(replacement) = too_large(&value, error)
            {
                let _ = frame::encode(kind, &replacement, self.frame_bytes_max, &mut self.buf);
            }
        }
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
    buf: Vec<u8>,
    message: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> MessageReceiver<T> {
    /// The next value; `Ok(None)` when the peer finished the stream cleanly between frames.
    pub async fn recv(&mut self) -> Result<Option<T>, StreamError> {
        let kind = FrameKind::ClientMessage;
        read_frame(&mut self.recv, kind, self.frame_bytes_max, &mut self.buf).await
    }
}

//! Buffered frame reading from a QUIC stream: pulls chunks (every chunk already received, in one
//! call) and cuts frames out of the buffer, so a stream of small batches costs one stream read per
//! burst of packets, not two per frame, and the frames of a burst can be handed over together.
//!
//! The header of each frame is checked (magic, version, kind, and size against the limit) as
//! soon as its 7 bytes are buffered, before the buffer grows for its payload.

use crate::error::StreamError;
use crate::frame::{self, FrameKind, HEADER_BYTES};
use quinn::RecvStream;
use serde::de::DeserializeOwned;

/// Bytes asked of the stream per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Received chunks taken from the stream per `read_chunks` call (each at most one packet's data).
const READ_CHUNKS: usize = 32;
/// An empty buffer with more capacity than this is released (after a large snapshot frame).
const BUFFER_BYTES_KEPT: usize = 1 << 20;

/// Reads frames of one kind from one stream, keeping the bytes of a partial frame between calls.
#[derive(Debug)]
pub struct FrameReader {
    kind: FrameKind,
    frame_bytes_max: u32,
    buffer: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// A reader of frames of `kind`, each at most `frame_bytes_max` bytes.
    #[must_use]
    pub fn new(kind: FrameKind, frame_bytes_max: u32) -> Self {
        Self {
            kind,
            frame_bytes_max,
            buffer: Vec::new(),
            start: 0,
        }
    }

    /// The next frame's message; `Ok(None)` when the stream ends cleanly between frames.
    pub async fn next<T: DeserializeOwned>(
        &mut self,
        recv: &mut RecvStream,
    ) -> Result<Option<T>, StreamError> {
        loop {
            if let Some(value) = self.take_frame()? {
                return Ok(Some(value));
            }
            self.compact();
            match recv.read_chunk(READ_CHUNK_BYTES, true).await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.bytes),
                None => return self.finished(),
            }
        }
    }

    /// Waits until at least one frame is whole, then appends to `out` every whole frame buffered
    /// (at most `max`, at least one) and returns how many; 0 when the stream ended cleanly
    /// between frames. On an error, frames before the bad one are already in `out`.
    pub async fn next_frames<T: DeserializeOwned>(
        &mut self,
        recv: &mut RecvStream,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<usize, StreamError> {
        let max = max.max(1);
        loop {
            let mut taken = 0;
            while taken < max {
                let Some(value) = self.take_frame()? else {
                    break;
                };
                out.push(value);
                taken += 1;
            }
            if taken > 0 {
                return Ok(taken);
            }
            self.compact();
            // Empty `Bytes` (no allocation); the type comes from `read_chunks`.
            let mut chunks: [_; READ_CHUNKS] = std::array::from_fn(|_| Default::default());
            match recv.read_chunks(&mut chunks).await? {
                Some(read) => {
                    for chunk in chunks.iter().take(read) {
                        self.buffer.extend_from_slice(chunk);
                    }
                }
                None => return self.finished().map(|_: Option<()>| 0),
            }
        }
    }

    /// Cuts one whole frame out of the buffer, if one is there; errors on a bad header at once.
    fn take_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, StreamError> {
        let buffered = self.buffer.get(self.start..).unwrap_or_default();
        let available = buffered.len();
        if available < HEADER_BYTES {
            return Ok(None);
        }
        let header = frame::decode_header(buffered, self.frame_bytes_max)?;
        frame::check_kind(header, self.kind)?;
        let frame_bytes = HEADER_BYTES + header.payload_bytes as usize;
        let Some(payload) = buffered.get(HEADER_BYTES..frame_bytes) else {
            // The size is within the limit: growing the buffer for it is allowed now.
            self.buffer.reserve(frame_bytes - available);
            return Ok(None);
        };
        let value = frame::decode_payload(payload)?;
        self.start += frame_bytes;
        Ok(Some(value))
    }

    /// Drops consumed bytes from the front of the buffer.
    fn compact(&mut self) {
        if self.start == self.buffer.len() {
            self.buffer.clear();
            if self.buffer.capacity() > BUFFER_BYTES_KEPT {
                self.buffer = Vec::new();
            }
        } else if self.start > 0 {
            self.buffer.drain(..self.start);
        }
        self.start = 0;
    }

    /// The stream ended: cleanly if no partial frame is left, otherwise the frame is truncated.
    fn finished<T>(&self) -> Result<Option<T>, StreamError> {
        let buffered = self.buffer.len() - self.start;
        if buffered == 0 {
            return Ok(None);
        }
        let needed = match self
            .buffer
            .get(self.start..)
            .map(|b| frame::decode_header(b, self.frame_bytes_max))
        {
            Some(Ok(header)) => HEADER_BYTES + header.payload_bytes as usize,
            _ => HEADER_BYTES,
        };
        Err(frame::truncated(needed, buffered).into())
    }
}

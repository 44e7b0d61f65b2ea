//! Buffered frame reading from a QUIC stream: pulls chunks (every chunk already received, in one
//! call) and cuts frames out of them, so a stream of small batches costs one stream read per
//! burst of packets, not two per frame, and the frames of a burst can be handed over together.
//! Frames that lie whole in a chunk are decoded from it in place; only the bytes of a frame that
//! straddles chunks are copied into the reader's buffer.
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

    /// Waits until at least one frame is whole, then appends to `out` the whole frames received
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
            let before = out.len();
            while out.len() - before < max {
                let Some(value) = self.take_frame()? else {
                    break;
                };
                out.push(value);
            }
            if out.len() > before {
                return Ok(out.len() - before);
            }
            self.compact();
            // Empty `Bytes` (no allocation); the type comes from `read_chunks`.
            let mut chunks: [_; READ_CHUNKS] = std::array::from_fn(|_| Default::default());
            let Some(read) = recv.read_chunks(&mut chunks).await? else {
                return self.finished().map(|_: Option<()>| 0);
            };
            let mut room = max;
            for chunk in chunks.iter().take(read) {
                self.absorb(chunk, out, &mut room)?;
            }
            if out.len() > before {
                return Ok(out.len() - before);
            }
        }
    }

    /// Takes in one received chunk: decodes the frames that lie whole in it straight from it
    /// (while `room` lasts), and copies into the buffer only the bytes of frames that straddle
    /// chunks (or that found no room). Needs the buffer to hold less than one whole frame.
    fn absorb<T: DeserializeOwned>(
        &mut self,
        mut chunk: &[u8],
        out: &mut Vec<T>,
        room: &mut usize,
    ) -> Result<(), StreamError> {
        if self.buffer.len() > self.start && *room > 0 {
            chunk = self.complete_buffered(chunk, out, room)?;
        }
        if self.buffer.len() == self.start {
            while *room > 0 {
                let Some((value, used)) = self.whole_frame(chunk)? else {
                    break;
                };
                out.push(value);
                *room -= 1;
                chunk = chunk.get(used..).unwrap_or_default();
            }
        }
        self.buffer.extend_from_slice(chunk);
        Ok(())
    }

    /// Copies from `chunk` only the bytes that the partial frame in the buffer still lacks (its
    /// header first, checked before the buffer grows for the payload); when that completes the
    /// frame, decodes it. Returns the rest of the chunk.
    fn complete_buffered<'c, T: DeserializeOwned>(
        &mut self,
        mut chunk: &'c [u8],
        out: &mut Vec<T>,
        room: &mut usize,
    ) -> Result<&'c [u8], StreamError> {
        self.compact();
        chunk = self.fill_to(HEADER_BYTES, chunk);
        if self.buffer.len() < HEADER_BYTES {
            return Ok(chunk);
        }
        let needed = self.frame_bytes(&self.buffer)?;
        assert!(self.buffer.len() <= needed, "the buffer held a whole frame");
        self.buffer.reserve(needed - self.buffer.len());
        chunk = self.fill_to(needed, chunk);
        if self.buffer.len() < needed {
            return Ok(chunk);
        }
        let payload = self.buffer.get(HEADER_BYTES..).unwrap_or_default();
        out.push(frame::decode_payload(payload)?);
        *room -= 1;
        self.buffer.clear();
        if self.buffer.capacity() > BUFFER_BYTES_KEPT {
            self.buffer = Vec::new();
        }
        Ok(chunk)
    }

    /// Copies from the front of `chunk` until the buffer holds `len` bytes; returns the rest.
    fn fill_to<'c>(&mut self, len: usize, chunk: &'c [u8]) -> &'c [u8] {
        let wanted = len.saturating_sub(self.buffer.len()).min(chunk.len());
        let (head, rest) = chunk.split_at(wanted);
        self.buffer.extend_from_slice(head);
        rest
    }

    /// The size of the frame whose (whole) header starts `bytes`, after checking the header.
    fn frame_bytes(&self, bytes: &[u8]) -> Result<usize, StreamError> {
        let header = frame::decode_header(bytes, self.frame_bytes_max)?;
        frame::check_kind(header, self.kind)?;
        Ok(HEADER_BYTES + header.payload_bytes as usize)
    }

    /// Decodes the frame at the front of `bytes` if it is whole there; errors on a bad header as
    /// soon as it is whole.
    fn whole_frame<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<Option<(T, usize)>, StreamError> {
        if bytes.len() < HEADER_BYTES {
            return Ok(None);
        }
        let frame_bytes = self.frame_bytes(bytes)?;
        let Some(payload) = bytes.get(HEADER_BYTES..frame_bytes) else {
            return Ok(None);
        };
        Ok(Some((frame::decode_payload(payload)?, frame_bytes)))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: u32 = 1 << 16;

    /// The frames read, and the error that stopped the reading (with the frames before it).
    type ReadAll = Result<Vec<Vec<u8>>, (Vec<Vec<u8>>, StreamError)>;

    fn frames(values: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for value in values {
            frame::encode(FrameKind::RaftBatch, value, LIMIT, &mut bytes).unwrap();
        }
        bytes
    }

    /// What `next_frames` does with each received chunk, without a stream: hand out what is
    /// buffered first, then take in the chunk with `max` frames of room.
    fn read_all(reader: &mut FrameReader, chunks: &[&[u8]], max: usize) -> ReadAll {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut room = max;
            while let Some(value) = reader.take_frame().map_err(|e| (out.clone(), e))? {
                out.push(value);
                room = room.saturating_sub(1);
            }
            reader.compact();
            if let Err(error) = reader.absorb(chunk, &mut out, &mut room) {
                return Err((out, error));
            }
        }
        while let Some(value) = reader.take_frame().map_err(|e| (out.clone(), e))? {
            out.push(value);
        }
        Ok(out)
    }

    fn cut(bytes: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut rest = bytes;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at((*size).clamp(1, rest.len()));
            chunks.push(head.to_vec());
            rest = tail;
        }
        chunks
    }

    proptest! {
        #[test]
        fn frames_come_out_whole_and_in_order_however_the_stream_is_cut(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            sizes in proptest::collection::vec(1usize..400, 1..8),
            max in 1usize..4,
        ) {
            let bytes = frames(&values);
            let chunks = cut(&bytes, &sizes);
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let mut reader = FrameReader::new(FrameKind::RaftBatch, LIMIT);
            let out = read_all(&mut reader, &chunks, max).unwrap();
            prop_assert_eq!(out, values);
            prop_assert_eq!(reader.finished::<()>().unwrap(), None);
        }
    }

    #[test]
    fn frames_before_a_bad_header_are_kept_and_the_header_is_refused() {
        let mut bytes = frames(&[vec![1], vec![2, 2]]);
        let good = bytes.len();
        bytes.extend_from_slice(&frames(&[vec![3; 10]]));
        bytes[good] = 0;
        for size in [1, 3, 7, 9, 64] {
            let chunks = cut(&bytes, &[size]);
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let mut reader = FrameReader::new(FrameKind::RaftBatch, LIMIT);
            let (out, error) = read_all(&mut reader, &chunks, 8).unwrap_err();
            assert_eq!(out, vec![vec![1], vec![2, 2]], "chunks of {size}");
            assert!(matches!(
                error,
                StreamError::Frame(crate::FrameError::BadMagic { found: 0 })
            ));
        }
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload_arrives() {
        let mut reader = FrameReader::new(FrameKind::RaftBatch, 64);
        let header = [frame::MAGIC, frame::VERSION, 1, 0, 0, 1, 0];
        let (first, second) = header.split_at(3);
        let (out, error) = read_all(&mut reader, &[first, second], 8).unwrap_err();
        assert!(out.is_empty());
        assert!(matches!(
            error,
            StreamError::Frame(crate::FrameError::TooLarge { .. })
        ));
        assert!(reader.buffer.capacity() < 256);
    }

    #[test]
    fn a_partial_frame_at_the_end_is_truncated() {
        let bytes = frames(&[vec![5; 20]]);
        let mut reader = FrameReader::new(FrameKind::RaftBatch, LIMIT);
        let out = read_all(&mut reader, &[&bytes[..15]], 8).unwrap();
        assert!(out.is_empty());
        assert!(reader.finished::<()>().is_err());
    }
}

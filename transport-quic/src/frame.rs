//! The wire format of every message: a pure codec (no IO) for length-prefixed, versioned frames.
//!
//! ```text
//! byte 0      magic        0xF1
//! byte 1      version      1
//! byte 2      kind         1 = Raft batch, 2 = client message
//! bytes 3..7  payload_bytes  u32, big endian
//! bytes 7..   payload      postcard encoding of the message (serde)
//! ```
//!
//! The length is checked against the configured maximum before any buffer for the payload is
//! allocated, so a peer cannot make a node reserve memory by lying about a length.
#![deny(clippy::indexing_slicing)]

use crate::error::FrameError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first byte of every frame.
pub const MAGIC: u8 = 0xF1;
/// The frame format version this build speaks. 2: a Raft batch names its sender's data
/// directory and start (`Batch::incarnation`). 3: a vote answer carries the voter's commit
/// (`MessageBody::VoteResponse::commit`). 4: a batch carries the host's notes (`Batch::notes`).
/// 5: snapshot chunks and their answers name their transfer (`MessageBody::InstallSnapshot`).
pub const VERSION: u8 = 5;
/// Bytes of the fixed header before the payload.
pub const HEADER_BYTES: usize = 7;

/// What a frame carries; one stream carries one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A `flotilla_raft::Batch` between two nodes.
    RaftBatch = 1,
    /// A request or response on a client connection.
    ClientMessage = 2,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Result<Self, FrameError> {
        match byte {
            1 => Ok(Self::RaftBatch),
            2 => Ok(Self::ClientMessage),
            found => Err(FrameError::UnknownKind { found }),
        }
    }
}

/// A decoded and checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: FrameKind,
    /// Bytes of payload that follow the header.
    pub payload_bytes: u32,
}

/// Appends one frame holding `value` to `buf`; on error `buf` is left as it was.
pub fn encode<T: Serialize>(
    kind: FrameKind,
    value: &T,
    frame_bytes_max: u32,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[MAGIC, VERSION, kind as u8, 0, 0, 0, 0]);
    if let Err(error) = postcard::serialize_with_flavor(value, Append(buf)) {
        buf.truncate(start);
        return Err(invalid(&error));
    }
    let frame_bytes = (buf.len() - start) as u64;
    if frame_bytes > u64::from(frame_bytes_max) {
        buf.truncate(start);
        return Err(FrameError::TooLarge {
            frame_bytes,
            frame_bytes_max,
        });
    }
    let payload_bytes = (frame_bytes - HEADER_BYTES as u64) as u32;
    if let Some(length) = buf.get_mut(start + 3..start + HEADER_BYTES) {
        length.copy_from_slice(&payload_bytes.to_be_bytes());
    }
    Ok(())
}

/// The bytes the frame of `value` would take, header included, without encoding it (a
/// counting pass: a 100 MB value costs no copy); `TooLarge` when over `frame_bytes_max`, the
/// error `encode` would give. A sender checks this before queueing what it cannot send.
pub fn check_fits<T: Serialize>(value: &T, frame_bytes_max: u32) -> Result<u64, FrameError> {
    let payload_bytes =
        postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
            .map_err(|error| invalid(&error))?;
    let frame_bytes = (HEADER_BYTES + payload_bytes) as u64;
    if frame_bytes > u64::from(frame_bytes_max) {
        return Err(FrameError::TooLarge {
            frame_bytes,
            frame_bytes_max,
        });
    }
    Ok(frame_bytes)
}

/// The postcard output of `encode`: appends to a `Vec`. Most writes are one-byte varints, which
/// take a `push` instead of a `memcpy` call (about twice as fast as postcard's `to_extend` for a
/// small batch); the bytes written are the same.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        match bytes {
            [byte] => self.0.push(*byte),
            _ => self.0.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes and checks a header: magic, version, kind, and size against `frame_bytes_max`.
pub fn decode_header(bytes: &[u8], frame_bytes_max: u32) -> Result<FrameHeader, FrameError> {
    let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else {
        return Err(truncated(HEADER_BYTES, bytes.len()));
    };
    let [magic, version, kind, length @ ..] = *header;
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion { found: version });
    }
    let kind = FrameKind::from_byte(kind)?;
    let payload_bytes = u32::from_be_bytes(length);
    let frame_bytes = HEADER_BYTES as u64 + u64::from(payload_bytes);
    if frame_bytes > u64::from(frame_bytes_max) {
        return Err(FrameError::TooLarge {
            frame_bytes,
            frame_bytes_max,
        });
    }
    Ok(FrameHeader {
        kind,
        payload_bytes,
    })
}

/// Decodes a payload as one `T`, refusing bytes left over.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes(payload).map_err(|error| invalid(&error))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            extra_bytes: rest.len() as u64,
        });
    }
    Ok(value)
}

/// Decodes one whole frame of kind `expected` from the front of `bytes`; returns the value and
/// the bytes consumed.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    expected: FrameKind,
    frame_bytes_max: u32,
) -> Result<(T, usize), FrameError> {
    let header = decode_header(bytes, frame_bytes_max)?;
    check_kind(header, expected)?;
    let frame_bytes = HEADER_BYTES + header.payload_bytes as usize;
    let Some(payload) = bytes.get(HEADER_BYTES..frame_bytes) else {
        return Err(truncated(frame_bytes, bytes.len()));
    };
    Ok((decode_payload(payload)?, frame_bytes))
}

/// Checks that a frame is of the kind its stream carries.
pub fn check_kind(header: FrameHeader, expected: FrameKind) -> Result<(), FrameError> {
    if header.kind == expected {
        Ok(())
    } else {
        Err(FrameError::UnexpectedKind {
            expected: expected as u8,
            found: header.kind as u8,
        })
    }
}

/// The one "truncated" error: `needed` bytes were required, `available` were there.
#[must_use]
pub fn truncated(needed: usize, available: usize) -> FrameError {
    FrameError::Truncated {
        needed_bytes: needed as u64,
        available_bytes: available as u64,
    }
}

fn invalid(error: &postcard::Error) -> FrameError {
    FrameError::PayloadInvalid {
        reason: error.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use flotilla_raft::{Batch, NodeId};

    fn batch() -> Batch {
        Batch::new(NodeId(1), NodeId(2))
    }

    #[test]
    fn header_layout_is_magic_version_kind_length() {
        let mut buf = Vec::new();
        encode(FrameKind::RaftBatch, &batch(), 1024, &mut buf).unwrap();
        let payload_bytes = (buf.len() - HEADER_BYTES) as u32;
        assert_eq!(buf[..3], [MAGIC, VERSION, 1]);
        assert_eq!(buf[3..7], payload_bytes.to_be_bytes());
    }

    #[test]
    fn the_payload_is_exactly_postcards_encoding() {
        let mut value = batch();
        value.heartbeats = vec![flotilla_raft::HeartbeatEntry {
            group: flotilla_raft::GroupId(300),
            term: flotilla_raft::Term(u64::MAX),
            commit: flotilla_raft::LogIndex(128),
            read_round: 7,
            quiesce: true,
        }];
        let mut buf = vec![9];
        encode(FrameKind::RaftBatch, &value, 1024, &mut buf).unwrap();
        assert_eq!(
            buf[1 + HEADER_BYTES..],
            postcard::to_allocvec(&value).unwrap()
        );
        assert_eq!(buf[0], 9);
    }

    #[test]
    fn too_large_to_encode_leaves_the_buffer_untouched() {
        let mut buf = vec![9, 9];
        let error = encode(FrameKind::RaftBatch, &vec![0u8; 100], 50, &mut buf).unwrap_err();
        assert!(matches!(
            error,
            FrameError::TooLarge {
                frame_bytes_max: 50,
                ..
            }
        ));
        assert_eq!(buf, vec![9, 9]);
    }

    #[test]
    fn check_fits_measures_what_encode_writes() {
        let value = vec![7u8; 300];
        let mut buf = Vec::new();
        encode(FrameKind::ClientMessage, &value, 1024, &mut buf).unwrap();
        assert_eq!(check_fits(&value, 1024).unwrap(), buf.len() as u64);
        let too_small = buf.len() as u32 - 1;
        assert_eq!(
            check_fits(&value, too_small),
            Err(FrameError::TooLarge {
                frame_bytes: buf.len() as u64,
                frame_bytes_max: too_small
            })
        );
    }

    #[test]
    fn oversized_header_is_refused_before_the_payload_is_read() {
        let header = [MAGIC, VERSION, 1, 0x7f, 0xff, 0xff, 0xff];
        let error = decode_header(&header, 1 << 20).unwrap_err();
        assert!(matches!(error, FrameError::TooLarge { .. }));
    }

    #[test]
    fn each_bad_header_byte_has_its_own_error() {
        assert_eq!(
            decode_header(&[0, 1, 1, 0, 0, 0, 0], 64),
            Err(FrameError::BadMagic { found: 0 })
        );
        assert_eq!(
            decode_header(&[MAGIC, 9, 1, 0, 0, 0, 0], 64),
            Err(FrameError::UnsupportedVersion { found: 9 })
        );
        assert_eq!(
            decode_header(&[MAGIC, VERSION, 7, 0, 0, 0, 0], 64),
            Err(FrameError::UnknownKind { found: 7 })
        );
        assert_eq!(decode_header(&[MAGIC], 64), Err(truncated(HEADER_BYTES, 1)));
    }

    #[test]
    fn wrong_kind_and_trailing_bytes_are_refused() {
        let mut buf = Vec::new();
        encode(FrameKind::ClientMessage, &7u8, 64, &mut buf).unwrap();
        let error = decode::<u8>(&buf, FrameKind::RaftBatch, 64).unwrap_err();
        assert_eq!(
            error,
            FrameError::UnexpectedKind {
                expected: 1,
                found: 2
            }
        );
        assert!(matches!(
            decode_payload::<u8>(&[1, 2]),
            Err(FrameError::TrailingBytes { extra_bytes: 1 })
        ));
    }
}

//! The commands a group's state machine applies and the responses it gives, with their one
//! codec (serde + postcard): clients encode a `Command` into an entry's payload, replicas
//! decode it when the entry is committed.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One client operation on a group's key range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Read one key.
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Set a key to a value.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Set `key` to `new` (or remove it when `new` is `None`) only if its current value is
    /// `expected` (`None`: only if the key is absent).
    CompareAndSwap {
        /// The key.
        key: Vec<u8>,
        /// The value the key must have now; `None` means it must be absent.
        expected: Option<Vec<u8>>,
        /// The value to set; `None` removes the key.
        new: Option<Vec<u8>>,
    },
    /// Read the pairs with `start <= key < end` in key order, at most `limit` of them.
    Scan {
        /// The first key (inclusive).
        start: Vec<u8>,
        /// The end (exclusive); `None` scans to the end of the range.
        end: Option<Vec<u8>>,
        /// The most pairs to return; capped by `SCAN_PAIR_COUNT_MAX`.
        limit: u32,
    },
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The value of a `Get` (`None`: absent).
    Value(Option<Vec<u8>>),
    /// A `Put` or `Delete` took effect; carries the value it replaced.
    Written {
        /// The value before the command (`None`: absent).
        previous: Option<Vec<u8>>,
    },
    /// The outcome of a `CompareAndSwap`.
    CompareAndSwap {
        /// Whether the swap happened.
        swapped: bool,
        /// The value before the command, so a client can retry without a read.
        current: Option<Vec<u8>>,
    },
    /// The pairs of a `Scan`, and whether more pairs lay in the range past the limit.
    Scan {
        /// Key-value pairs in key order.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Whether the scan stopped at the limit with keys left in the range.
        more: bool,
    },
    /// The entry did not decode as a command; it changed nothing.
    Invalid(String),
}

/// Why bytes did not decode as a command or response.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes are not a valid encoding.
    #[error("the bytes do not decode: {0}")]
    Malformed(String),
    /// A valid encoding was followed by extra bytes.
    #[error("{0} bytes follow the encoded value")]
    TrailingBytes(usize),
}

/// The one codec for commands and responses: postcard, with trailing bytes refused.
pub trait Codec: Serialize + DeserializeOwned {
    /// The encoding of `self`.
    fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding into a Vec cannot fail")
    }

    /// Decodes a whole buffer.
    ///
    /// # Errors
    /// The bytes are malformed or longer than the value.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (value, rest) = postcard::take_from_bytes(bytes)
            .map_err(|error| CodecError::Malformed(error.to_string()))?;
        if !rest.is_empty() {
            return Err(CodecError::TrailingBytes(rest.len()));
        }
        Ok(value)
    }
}

impl Codec for Command {}
impl Codec for Response {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_responses_roundtrip() {
        let command = Command::CompareAndSwap {
            key: b"k".to_vec(),
            expected: None,
            new: Some(b"v".to_vec()),
        };
        assert_eq!(Command::decode(&command.encode()), Ok(command));
        let response = Response::Scan {
            pairs: vec![(b"a".to_vec(), b"1".to_vec())],
            more: true,
        };
        assert_eq!(Response::decode(&response.encode()), Ok(response));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(Command::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut bytes = Command::Get { key: vec![1] }.encode();
        bytes.push(0);
        assert_eq!(Command::decode(&bytes), Err(CodecError::TrailingBytes(1)));
    }
}

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
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Set a key to a value.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove a key.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Set `key` to `new` (or remove it when `new` is `None`) only if its current value is
    /// `expected` (`None`: only if the key is absent).
    CompareAndSwap {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the key must have now; `None` means it must be absent.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The value to set; `None` removes the key.
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    },
    /// Read the pairs with `start <= key < end` in key order, at most `limit` of them.
    Scan {
        /// The first key (inclusive).
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        /// The end (exclusive); `None` scans to the end of the range.
        #[serde(with = "serde_bytes")]
        end: Option<Vec<u8>>,
        /// The most pairs to return; capped by `SCAN_PAIR_COUNT_MAX`.
        limit: u32,
    },
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The value of a `Get` (`None`: absent).
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// A `Put` or `Delete` took effect; carries the value it replaced.
    Written {
        /// The value before the command (`None`: absent).
        #[serde(with = "serde_bytes")]
        previous: Option<Vec<u8>>,
    },
    /// The outcome of a `CompareAndSwap`.
    CompareAndSwap {
        /// Whether the swap happened.
        swapped: bool,
        /// The value before the command, so a client can retry without a read.
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
    },
    /// The pairs of a `Scan`, and whether more pairs lay in the range past the limit.
    Scan {
        /// Key-value pairs in key order.
        #[serde(with = "pair_bytes")]
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Whether the scan stopped at the limit with keys left in the range.
        more: bool,
    },
    /// The entry did not decode as a command; it changed nothing.
    Invalid(String),
}

/// Scan pairs as two byte strings each (one copy per string, not one call per byte); the
/// encoding is the same as a plain sequence of bytes in postcard.
mod pair_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub(super) fn serialize<S: Serializer>(
        pairs: &[(Vec<u8>, Vec<u8>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            pairs
                .iter()
                .map(|(key, value)| (Bytes::new(key), Bytes::new(value))),
        )
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Pairs, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(deserializer)?;
        Ok(pairs
            .into_iter()
            .map(|(key, value)| (key.into_vec(), value.into_vec()))
            .collect())
    }
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
        let buffer = Vec::with_capacity(self.encoded_bytes_hint());
        postcard::to_extend(self, buffer).expect("encoding into a Vec cannot fail")
    }

    /// About how many bytes `encode` produces, so its buffer does not grow (and copy) on the
    /// way; zero when unknown.
    fn encoded_bytes_hint(&self) -> usize {
        0
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

impl Codec for Command {
    fn encoded_bytes_hint(&self) -> usize {
        let bytes = |value: &Option<Vec<u8>>| value.as_ref().map_or(0, Vec::len);
        32 + match self {
            Command::Get { key } | Command::Delete { key } => key.len(),
            Command::Put { key, value } => key.len() + value.len(),
            Command::CompareAndSwap { key, expected, new } => {
                key.len() + bytes(expected) + bytes(new)
            }
            Command::Scan { start, end, .. } => start.len() + bytes(end),
        }
    }
}
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

    /// Byte strings are encoded as bytes (serde_bytes) for speed; in postcard that is the
    /// same encoding as a sequence of `u8`, so logs and clients from before still decode.
    #[test]
    fn byte_strings_keep_the_encoding_of_byte_sequences() {
        #[derive(Serialize)]
        enum PlainCommand {
            #[allow(dead_code)]
            Get {
                key: Vec<u8>,
            },
            Put {
                key: Vec<u8>,
                value: Vec<u8>,
            },
        }
        #[derive(Serialize)]
        enum PlainResponse {
            #[allow(dead_code)]
            Value(Option<Vec<u8>>),
            #[allow(dead_code)]
            Written { previous: Option<Vec<u8>> },
            #[allow(dead_code)]
            CompareAndSwap {
                swapped: bool,
                current: Option<Vec<u8>>,
            },
            Scan {
                pairs: Vec<(Vec<u8>, Vec<u8>)>,
                more: bool,
            },
        }
        let value: Vec<u8> = (0..=255).collect();
        let plain = postcard::to_allocvec(&PlainCommand::Put {
            key: b"key".to_vec(),
            value: value.clone(),
        })
        .unwrap();
        let command = Command::Put {
            key: b"key".to_vec(),
            value: value.clone(),
        };
        assert_eq!(command.encode(), plain);
        assert_eq!(Command::decode(&plain), Ok(command));
        let pairs = vec![(b"a".to_vec(), value.clone()), (b"b".to_vec(), Vec::new())];
        let plain = postcard::to_allocvec(&PlainResponse::Scan {
            pairs: pairs.clone(),
            more: false,
        })
        .unwrap();
        let response = Response::Scan { pairs, more: false };
        assert_eq!(response.encode(), plain);
        assert_eq!(Response::decode(&plain), Ok(response));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(Command::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut bytes = Command::Get { key: vec![1] }.encode();
        bytes.push(0);
        assert_eq!(Command::decode(&bytes), Err(CodecError::TrailingBytes(1)));
    }
}

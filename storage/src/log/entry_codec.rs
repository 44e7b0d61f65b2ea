//! The postcard encoding of a log entry, byte-for-byte the one `postcard::to_allocvec(&entry)`
//! produces, but writing and reading the payload as one byte string instead of a sequence of
//! `u8` (serde's default for `Vec<u8>` costs a call per byte, which dominated appends of large
//! entries). A test pins the wire format to the derived one.

use flotilla_raft::{Entry, EntryPayload, LogIndex, Membership, Term};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Borrowed bytes serialized as a byte string (postcard: length varint, then the bytes).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Owned bytes deserialized from a byte string.
struct ByteBuf(Vec<u8>);

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = ByteBuf;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<ByteBuf, E> {
        Ok(ByteBuf(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<ByteBuf, E> {
        Ok(ByteBuf(bytes))
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor)
    }
}

/// `Entry` with the same fields in the same order; only the payload bytes differ in how serde
/// walks them.
#[derive(Serialize)]
struct EntryRef<'a> {
    term: Term,
    index: LogIndex,
    payload: PayloadRef<'a>,
}

/// `EntryPayload` with the same variants in the same order.
#[derive(Serialize)]
enum PayloadRef<'a> {
    Blank,
    Normal(Bytes<'a>),
    Membership(&'a Membership),
}

#[derive(Deserialize)]
struct EntryOwned {
    term: Term,
    index: LogIndex,
    payload: PayloadOwned,
}

#[derive(Deserialize)]
enum PayloadOwned {
    Blank,
    Normal(ByteBuf),
    Membership(Membership),
}

/// Appends the postcard encoding of `entry` to `out`.
pub(crate) fn encode_entry(entry: &Entry, out: Vec<u8>) -> Vec<u8> {
    let payload = match &entry.payload {
        EntryPayload::Blank => PayloadRef::Blank,
        EntryPayload::Normal(data) => PayloadRef::Normal(Bytes(data)),
        EntryPayload::Membership(membership) => PayloadRef::Membership(membership),
    };
    let mirror = EntryRef {
        term: entry.term,
        index: entry.index,
        payload,
    };
    postcard::to_extend(&mirror, out).expect("encoding into a Vec cannot fail")
}

/// Decodes an entry from the front of `bytes`; returns it and the bytes after it.
pub(crate) fn decode_entry(bytes: &[u8]) -> postcard::Result<(Entry, &[u8])> {
    let (owned, rest) = postcard::take_from_bytes::<EntryOwned>(bytes)?;
    let payload = match owned.payload {
        PayloadOwned::Blank => EntryPayload::Blank,
        PayloadOwned::Normal(ByteBuf(data)) => EntryPayload::Normal(data),
        PayloadOwned::Membership(membership) => EntryPayload::Membership(membership),
    };
    let entry = Entry {
        term: owned.term,
        index: owned.index,
        payload,
    };
    Ok((entry, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::NodeId;

    fn samples() -> Vec<Entry> {
        let payloads = [
            EntryPayload::Blank,
            EntryPayload::Normal(Vec::new()),
            EntryPayload::Normal(vec![7; 300]),
            EntryPayload::Membership(Membership::with_voters([NodeId(1), NodeId(300)])),
        ];
        payloads
            .into_iter()
            .map(|payload| Entry {
                term: Term(70_000),
                index: LogIndex(u64::MAX),
                payload,
            })
            .collect()
    }

    #[test]
    fn the_wire_format_is_the_derived_one() {
        for entry in samples() {
            let derived = postcard::to_allocvec(&entry).unwrap();
            assert_eq!(encode_entry(&entry, Vec::new()), derived);
            let (decoded, rest) = decode_entry(&derived).unwrap();
            assert_eq!((decoded, rest.len()), (entry, 0));
        }
    }
}

//! Property tests of the record codec: every frame and body roundtrips, any single flipped
//! byte is detected, and arbitrary bytes never make the decoder panic (the CI twin of the
//! fuzz target in `storage/fuzz/`).
#![allow(clippy::unwrap_used)]

use flotilla_raft::{Entry, EntryPayload, GroupId, HardState, LogIndex, NodeId, Term};
use flotilla_storage::log::body::Body;
use flotilla_storage::log::record::{Frame, RecordKind, decode, encode};
use proptest::prelude::*;

const PAYLOAD_BYTES_MAX: u64 = 1 << 16;

fn kind() -> impl Strategy<Value = RecordKind> {
    prop_oneof![
        Just(RecordKind::Entry),
        Just(RecordKind::HardState),
        Just(RecordKind::Snapshot),
        Just(RecordKind::Compaction),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let entry = (
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(term, index, data)| {
            Body::Entry(Entry {
                term: Term(term),
                index: LogIndex(index),
                payload: EntryPayload::Normal(data.into()),
            })
        });
    let hard_state =
        (any::<u64>(), any::<Option<u64>>(), any::<u64>()).prop_map(|(term, vote, commit)| {
            Body::HardState(HardState {
                term: Term(term),
                vote: vote.map(NodeId),
                commit: LogIndex(commit),
            })
        });
    prop_oneof![entry, hard_state]
}

fn encoded(group: u64, kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(
        &Frame {
            group: GroupId(group),
            kind,
            payload,
        },
        &mut out,
    );
    out
}

proptest! {
    #[test]
    fn a_frame_decodes_to_what_was_encoded(
        group in any::<u64>(),
        kind in kind(),
        payload in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let bytes = encoded(group, kind, &payload);
        let frame = decode(&bytes, PAYLOAD_BYTES_MAX).unwrap();
        prop_assert_eq!(frame, Frame { group: GroupId(group), kind, payload: &payload });
        prop_assert_eq!(frame.frame_bytes(), bytes.len());
    }

    #[test]
    fn a_body_decodes_to_what_was_encoded(group in any::<u64>(), body in body()) {
        let payload = body.encode_payload();
        let bytes = encoded(group, body.kind(), &payload);
        let frame = decode(&bytes, PAYLOAD_BYTES_MAX).unwrap();
        prop_assert_eq!(Body::decode(&frame).unwrap(), body);
    }

    #[test]
    fn any_single_flipped_byte_is_detected(
        kind in kind(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        position in any::<prop::sample::Index>(),
        mask in 1..=255u8,
    ) {
        let mut bytes = encoded(3, kind, &payload);
        let at = position.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(decode(&bytes, PAYLOAD_BYTES_MAX).is_err(), "flip at {} not detected", at);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(frame) = decode(&bytes, PAYLOAD_BYTES_MAX) {
            let _ = Body::decode(&frame);
        }
    }

    #[test]
    fn a_valid_header_with_arbitrary_payload_never_panics(
        kind in kind(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let bytes = encoded(1, kind, &payload);
        let frame = decode(&bytes, PAYLOAD_BYTES_MAX).unwrap();
        let _ = Body::decode(&frame);
    }
}

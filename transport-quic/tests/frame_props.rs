//! Property tests of the frame codec: roundtrip, the payload is postcard's bytes, arbitrary bytes
//! never panic, a flipped length is refused cleanly.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{
    Batch, Entry, EntryPayload, GroupId, GroupMessage, HeartbeatEntry, Incarnation, LogId,
    LogIndex, Message, MessageBody, NodeId, Term,
};
use flotilla_transport_quic::FrameError;
use flotilla_transport_quic::frame::{self, FrameKind, HEADER_BYTES};
use proptest::prelude::*;

const FRAME_BYTES_MAX: u32 = 1 << 20;

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(term, index, data)| Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Normal(data.into()),
        })
}

fn body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(commit, read_round)| MessageBody::Heartbeat {
            commit: LogIndex(commit),
            read_round
        }),
        (
            any::<u64>(),
            proptest::collection::vec(entry(), 0..4),
            any::<u64>()
        )
            .prop_map(|(prev, entries, commit)| {
                MessageBody::AppendEntries {
                    prev: LogId::new(Term(prev), LogIndex(prev)),
                    entries,
                    commit: LogIndex(commit),
                }
            }),
        (any::<bool>(), any::<bool>(), any::<u64>()).prop_map(|(pre_vote, granted, commit)| {
            MessageBody::VoteResponse {
                pre_vote,
                granted,
                commit: LogId::new(Term(commit), LogIndex(commit)),
            }
        }),
        Just(MessageBody::TimeoutNow),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    let message =
        (any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(group, from, term, body)| {
            GroupMessage {
                group: GroupId(group),
                message: Message {
                    from: NodeId(from),
                    to: NodeId(2),
                    term: Term(term),
                    body,
                },
            }
        });
    let heartbeat = (any::<u64>(), any::<u64>()).prop_map(|(group, commit)| HeartbeatEntry {
        group: GroupId(group),
        term: Term(1),
        commit: LogIndex(commit),
        read_round: 0,
        quiesce: false,
    });
    (
        any::<u64>(),
        any::<(u128, u64)>(),
        proptest::collection::vec(message, 0..6),
        proptest::collection::vec(heartbeat, 0..6),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
    )
        .prop_map(
            |(from, (directory, start), messages, heartbeats, notes)| Batch {
                from: NodeId(from),
                incarnation: Incarnation { directory, start },
                to: NodeId(2),
                messages,
                heartbeats,
                heartbeat_responses: Vec::new(),
                notes: notes.into_iter().map(flotilla_raft::Note).collect(),
            },
        )
}

proptest! {
    #[test]
    fn every_batch_roundtrips(batch in batch()) {
        let mut buf = Vec::new();
        frame::encode(FrameKind::RaftBatch, &batch, FRAME_BYTES_MAX, &mut buf).unwrap();
        let (decoded, consumed) = frame::decode::<Batch>(&buf, FrameKind::RaftBatch, FRAME_BYTES_MAX).unwrap();
        prop_assert_eq!(decoded, batch);
        prop_assert_eq!(consumed, buf.len());
    }

    #[test]
    fn the_payload_is_exactly_postcards_encoding(batch in batch()) {
        let mut buf = Vec::new();
        frame::encode(FrameKind::RaftBatch, &batch, FRAME_BYTES_MAX, &mut buf).unwrap();
        prop_assert_eq!(&buf[HEADER_BYTES..], &postcard::to_allocvec(&batch).unwrap()[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frame::decode::<Batch>(&bytes, FrameKind::RaftBatch, FRAME_BYTES_MAX);
    }

    #[test]
    fn arbitrary_payloads_behind_a_valid_header_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = vec![frame::MAGIC, frame::VERSION, FrameKind::RaftBatch as u8];
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        let _ = frame::decode::<Batch>(&bytes, FrameKind::RaftBatch, FRAME_BYTES_MAX);
    }

    #[test]
    fn a_flipped_length_is_refused_cleanly(batch in batch(), bit in 0u32..32) {
        let mut buf = Vec::new();
        frame::encode(FrameKind::RaftBatch, &batch, FRAME_BYTES_MAX, &mut buf).unwrap();
        let length = u32::from_be_bytes(buf[3..HEADER_BYTES].try_into().unwrap()) ^ (1 << bit);
        buf[3..HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
        let error = frame::decode::<Batch>(&buf, FrameKind::RaftBatch, FRAME_BYTES_MAX).unwrap_err();
        let clean = matches!(
            error,
            FrameError::Truncated { .. } | FrameError::TooLarge { .. } | FrameError::PayloadInvalid { .. } | FrameError::TrailingBytes { .. }
        );
        prop_assert!(clean, "unexpected error {error:?}");
    }

    #[test]
    fn a_prefix_of_a_frame_is_truncated(batch in batch(), cut in 0usize..10_000) {
        let mut buf = Vec::new();
        frame::encode(FrameKind::RaftBatch, &batch, FRAME_BYTES_MAX, &mut buf).unwrap();
        let cut = cut % buf.len();
        let error = frame::decode::<Batch>(&buf[..cut], FrameKind::RaftBatch, FRAME_BYTES_MAX).unwrap_err();
        prop_assert!(matches!(error, FrameError::Truncated { .. }), "{error:?}");
    }
}

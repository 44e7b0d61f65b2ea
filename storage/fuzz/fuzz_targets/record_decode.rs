//! Fuzzes the WAL record decoder: any bytes, read as a run of frames the way recovery reads a
//! segment, must decode or fail with an error, never panic. The checksum stops almost every
//! input before the payload decoder, so the same bytes are also fed to the payload decoder
//! directly (first byte: the kind), as a frame that passed its checksum would be.
//! Run: `cd storage/fuzz && cargo +nightly fuzz run record_decode`.
#![no_main]

use flotilla_raft::GroupId;
use flotilla_storage::log::body::Body;
use flotilla_storage::log::record::{Frame, RecordKind, decode};
use libfuzzer_sys::fuzz_target;

const KINDS: [RecordKind; 4] = [
    RecordKind::Entry,
    RecordKind::HardState,
    RecordKind::Snapshot,
    RecordKind::Compaction,
];

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(frame) = decode(rest, 1 << 20) {
        let _ = Body::decode(&frame);
        assert!(frame.frame_bytes() <= rest.len(), "a frame is longer than its buffer");
        rest = rest.get(frame.frame_bytes()..).unwrap_or_default();
    }
    if let Some((kind, payload)) = data.split_first() {
        let kind = KINDS[usize::from(*kind) % KINDS.len()];
        let frame = Frame { group: GroupId(1), kind, payload };
        if let Ok(body) = Body::decode(&frame) {
            assert_eq!(body.kind(), kind);
        }
    }
});

//! Fuzzes the frame decoder: any bytes must decode or fail with an error, never panic, and
//! whatever decodes must encode back to the same frame.
#![no_main]

use flotilla_raft::Batch;
use flotilla_transport_quic::frame::{self, FrameKind};
use libfuzzer_sys::fuzz_target;

const FRAME_BYTES_MAX: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = frame::decode_header(data, FRAME_BYTES_MAX);
    if let Ok((batch, consumed)) = frame::decode::<Batch>(data, FrameKind::RaftBatch, FRAME_BYTES_MAX) {
        let mut encoded = Vec::new();
        frame::encode(FrameKind::RaftBatch, &batch, FRAME_BYTES_MAX, &mut encoded).expect("a decoded batch re-encodes");
        let (again, _) = frame::decode::<Batch>(&encoded, FrameKind::RaftBatch, FRAME_BYTES_MAX).expect("re-encoded frame decodes");
        assert_eq!(again, batch);
        assert!(consumed <= data.len());
    }
});

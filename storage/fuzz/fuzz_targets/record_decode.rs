//! Fuzzes the WAL record decoder: any bytes, read as a run of frames the way recovery reads a
//! segment, must decode or fail with an error, never panic.
//! Run: `cd storage/fuzz && cargo +nightly fuzz run record_decode`.
#![no_main]

use flotilla_storage::log::body::Body;
use flotilla_storage::log::record::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(frame) = decode(rest, 1 << 20) {
        let _ = Body::decode(&frame);
        assert!(frame.frame_bytes() <= rest.len(), "a frame is longer than its buffer");
        rest = rest.get(frame.frame_bytes()..).unwrap_or_default();
    }
});

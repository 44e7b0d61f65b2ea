//! Flotilla's benchmarks: a criterion suite with one file per layer (`benches/`), and the
//! side-by-side run against etcd (`side-by-side.sh`, the `etcd_load` and `plot` binaries).
//! This library holds only what those binaries share: the results file and its statistics.
#![forbid(unsafe_code)]

pub mod report;

pub use report::{Percentiles, Results, Run};

/// The key of workload index `index`: the same 8 bytes as `flotilla_node::workload::key_of`
/// (a SplitMix64 finalizer, big-endian), so both systems see the same keys.
#[must_use]
pub fn key_of(index: u64) -> Vec<u8> {
    let mut value = index;
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (value ^ (value >> 31)).to_be_bytes().to_vec()
}

//! What the meta group's snapshot costs at 10,000, 100,000 and 1,000,000 ranges of 3 replicas:
//! its size, the copy the Raft loop takes (`MetaState::snapshot`), the encoding another thread
//! does from it, the decoding (a staged check off the loop, or a start) and the drop of a
//! replaced state (off the loop at install; on it before).
//!
//! `cargo run --release -p flotilla-shard-manager --example meta_snapshot [-- --ranges N]`

use flotilla_raft::NodeId;
use flotilla_shard_manager::{Directory, MetaState, RangeMap};
use std::time::{Duration, Instant};

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = work();
    (value, start.elapsed())
}

/// This process's resident memory in bytes (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let counts: Vec<u64> = match args.iter().position(|arg| arg == "--ranges") {
        Some(index) => args
            .get(index + 1)
            .and_then(|count| count.parse().ok())
            .into_iter()
            .collect(),
        None => vec![10_000, 100_000, 1_000_000],
    };
    println!("ranges     bytes   resident        copy     encode     decode       drop");
    for ranges in counts {
        let before = resident_bytes();
        let nodes = [NodeId(1), NodeId(2), NodeId(3)];
        let map = RangeMap::uniform(ranges, |_| nodes.to_vec());
        let addresses = nodes.map(|node| (node, format!("127.0.0.1:{}", 7000 + node.0)));
        let state = MetaState::new(map, Directory::new(addresses));
        let resident = resident_bytes().saturating_sub(before);
        let (snapshot, copy) = timed(|| state.snapshot());
        let (bytes, encode) = timed(|| snapshot.encode());
        let (decoded, decode) = timed(|| MetaState::decode(&bytes));
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(error) => panic!("the snapshot does not decode: {error}"),
        };
        assert!(decoded == state, "the snapshot decodes to another state");
        drop(snapshot);
        let ((), dropped) = timed(|| drop(decoded));
        println!(
            "{ranges:>9} {:>9} {:>9} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?}",
            bytes.len(),
            resident,
            copy,
            encode,
            decode,
            dropped
        );
    }
}

//! A fixed number of rounds of `benches/multiraft_spread.rs`, for an instruction count that
//! does not move with the machine's load:
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/spread_count GROUPS ROUNDS
//! ```
//!
//! (the difference between two round counts, divided by the puts, is the cost per put; see
//! `docs/benchmarks.md`).
#![allow(missing_docs)]

use flotilla_bench::in_memory::Nodes;
use flotilla_raft::MultiConfig;

fn main() {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<u64>());
    let (Some(Ok(groups)), Some(Ok(rounds))) = (args.next(), args.next()) else {
        eprintln!("usage: spread_count GROUPS ROUNDS");
        std::process::exit(2);
    };
    let payload = vec![7u8; 256];
    let mut nodes = Nodes::new(groups, MultiConfig::new);
    for _ in 0..rounds {
        nodes.round(&payload);
        nodes.compact();
    }
}

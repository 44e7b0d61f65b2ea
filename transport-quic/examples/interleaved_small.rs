//! The small-batch comparison of `benches/quic.rs` run interleaved: each round of the transport
//! is followed by a round of raw quinn with one write per batch and one with 64 KiB writes, and
//! the median round of each is reported. Load that comes and goes hits all three alike, which
//! the criterion bench (one benchmark after the other) cannot promise on a shared machine.
//!
//! `cargo run --release -p flotilla-transport-quic --example interleaved_small -- [rounds]`
#![allow(missing_docs, clippy::unwrap_used)]

// The bulk sizes and the endpoints' fields are for the criterion bench only.
#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::{RAW_COALESCED_WRITE_BYTES, SMALL_BATCHES, SMALL_ENTRY_BYTES, batches, setup};

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(1500, |a| a.parse().unwrap());
    let mut bench = setup();
    let frame = support::encoded_bytes(&support::batch(SMALL_ENTRY_BYTES, 1));
    let raw = vec![7u8; frame * SMALL_BATCHES];
    bench.transport_round(batches(SMALL_ENTRY_BYTES, 8));
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let round = batches(SMALL_ENTRY_BYTES, SMALL_BATCHES);
        let started = Instant::now();
        bench.transport_round(round);
        times[0].push(started.elapsed());
        let started = Instant::now();
        bench.raw_round(&raw, frame);
        times[1].push(started.elapsed());
        let started = Instant::now();
        bench.raw_round(&raw, RAW_COALESCED_WRITE_BYTES);
        times[2].push(started.elapsed());
    }
    let [transport, raw_same, raw_64k] = times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    let rate = |round: Duration| SMALL_BATCHES as f64 / round.as_secs_f64() / 1e3;
    let percent = |raw: Duration| 100.0 * raw.as_secs_f64() / transport.as_secs_f64();
    println!(
        "{rounds} rounds, medians: transport {:.0} K batches/s, raw one write per batch {:.0} K/s \
         ({:.0} % of it), raw 64 KiB writes {:.0} K/s ({:.0} % of it)",
        rate(transport),
        rate(raw_same),
        percent(raw_same),
        rate(raw_64k),
        percent(raw_64k),
    );
}

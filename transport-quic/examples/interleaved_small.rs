//! The small-batch comparison of `benches/quic.rs` run interleaved: each round of the transport
//! is followed by a round of raw quinn with one write per batch and one with 64 KiB writes, and
//! the median round of each is reported. Load that comes and goes hits all three alike, which
//! the criterion bench (one benchmark after the other) cannot promise on a shared machine.
//!
//! With `shuffled`, the three rounds of each iteration run in an order drawn from a fixed seed,
//! so no kind of round always follows the same other kind: work one round leaves behind (acks,
//! frees, parked threads) then lands on every kind alike instead of always on the next one.
//!
//! `cargo run --release -p flotilla-transport-quic --example interleaved_small -- [rounds] [shuffled]`
#![allow(missing_docs, clippy::unwrap_used)]

// The bulk sizes and the endpoints' fields are for the criterion bench only.
#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::{RAW_COALESCED_WRITE_BYTES, SMALL_BATCHES, SMALL_ENTRY_BYTES, batches, setup};

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(1500, |a| a.parse().unwrap());
    let shuffled = std::env::args().nth(2).is_some_and(|a| a == "shuffled");
    let mut seed = 0x5eed_u64;
    let mut bench = setup();
    let frame = support::encoded_bytes(&support::batch(SMALL_ENTRY_BYTES, 1));
    let raw = vec![7u8; frame * SMALL_BATCHES];
    bench.transport_round(batches(SMALL_ENTRY_BYTES, 8));
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let mut order = [0, 1, 2];
        if shuffled {
            shuffle(&mut order, &mut seed);
        }
        for kind in order {
            let round = (kind == 0).then(|| batches(SMALL_ENTRY_BYTES, SMALL_BATCHES));
            let started = Instant::now();
            match round {
                Some(round) => bench.transport_round(round),
                None if kind == 1 => bench.raw_round(&raw, frame),
                None => bench.raw_round(&raw, RAW_COALESCED_WRITE_BYTES),
            }
            times[kind].push(started.elapsed());
        }
    }
    let [transport, raw_same, raw_64k] = times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    let rate = |round: Duration| SMALL_BATCHES as f64 / round.as_secs_f64() / 1e3;
    let percent = |raw: Duration| 100.0 * raw.as_secs_f64() / transport.as_secs_f64();
    let order = if shuffled {
        "shuffled order"
    } else {
        "fixed order"
    };
    println!(
        "{rounds} rounds ({order}), medians: transport {:.0} K batches/s, raw one write per batch {:.0} K/s \
         ({:.0} % of it), raw 64 KiB writes {:.0} K/s ({:.0} % of it)",
        rate(transport),
        rate(raw_same),
        percent(raw_same),
        rate(raw_64k),
        percent(raw_64k),
    );
}

/// Fisher-Yates with SplitMix64 steps: the same orders on every run.
fn shuffle(order: &mut [usize; 3], seed: &mut u64) {
    for last in (1..order.len()).rev() {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        order.swap(last, (z % (last as u64 + 1)) as usize);
    }
}

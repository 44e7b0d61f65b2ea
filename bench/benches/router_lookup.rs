//! Router lookup cost: find the range of a key in a map of 100,000 ranges.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::{Attempts, RangeMap, Router};
use std::hint::black_box;

fn map_of(range_count: u64) -> RangeMap {
    let mut map = RangeMap::uniform(1, |_| vec![NodeId(1), NodeId(2), NodeId(3)]);
    for index in 1..range_count {
        let at = (index * (u64::MAX / range_count)).to_be_bytes().to_vec();
        let id = map.lookup(&at).id;
        map.split(id, at, GroupId(index + 1)).unwrap();
    }
    map
}

fn lookup(c: &mut Criterion) {
    let map = map_of(100_000);
    let keys: Vec<[u8; 8]> = (0..1024u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes())
        .collect();
    c.bench_function("range_map_lookup_100000_ranges", |b| {
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % keys.len();
            black_box(map.lookup(&keys[next]).group)
        });
    });
    let mut router = Router::new(map, 5, 1);
    c.bench_function("router_route_100000_ranges", |b| {
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % keys.len();
            let mut attempts = Attempts::default();
            black_box(router.route(&keys[next], &mut attempts))
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = lookup
}
criterion_main!(benches);

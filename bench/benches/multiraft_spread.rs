//! What spreading puts over groups costs the Raft layer: three MultiRaft nodes in memory commit
//! 64 puts of 256 B per round, either as one group's batch or as one entry in each of 64 groups
//! (every group led by node 1, batches handed over directly, stores in memory). Issue 7's
//! "64 groups at least as fast as 1" depends on the second costing little more than the first.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_bench::in_memory::{Nodes, PUTS_PER_ROUND};
use flotilla_raft::MultiConfig;

fn spread(c: &mut Criterion) {
    let payload = vec![7u8; 256];
    let mut bench_group = c.benchmark_group("commit_64_puts_3_nodes");
    bench_group.throughput(Throughput::Elements(PUTS_PER_ROUND as u64));
    for groups in [1u64, 64] {
        let mut nodes = Nodes::new(groups, MultiConfig::new);
        bench_group.bench_function(format!("{groups}_groups"), |b| {
            b.iter(|| {
                nodes.round(&payload);
                nodes.compact();
            });
        });
    }
    bench_group.finish();
}

criterion_group!(benches, spread);
criterion_main!(benches);

//! What idleness costs a MultiRaft node: one node tick with 10,000 hosted groups all active vs
//! all quiescent (criterion), and, printed before the benches run, the memory per idle group
//! and the wire traffic per second of idleness for 1, 1,000 and 10,000 groups.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_bench::in_memory::Nodes as Cluster;
use flotilla_raft::{Config, MultiConfig, NodeId};
use std::hint::black_box;

/// Ticks per second of the default configuration (a tick every 50 ms, heartbeats every 2).
const TICKS_PER_SECOND: u64 = 20;

fn config(node: NodeId, quiesce: bool) -> MultiConfig {
    MultiConfig {
        raft: Config {
            check_quorum: false,
            ..Config::new(node)
        },
        quiesce,
        ..MultiConfig::new(node)
    }
}

/// The in-memory cluster (`flotilla_bench::in_memory`), counting what crosses the wire.
struct Nodes {
    cluster: Cluster,
    wire_batches: u64,
    wire_bytes: u64,
}

impl Nodes {
    /// `group_count` groups with replicas on all three nodes, every one led by node 1.
    fn new(group_count: u64, quiesce: bool) -> Self {
        Self {
            cluster: Cluster::new(group_count, |node| config(node, quiesce)),
            wire_batches: 0,
            wire_bytes: 0,
        }
    }

    fn tick_all(&mut self) {
        for multi in &mut self.cluster.multis {
            multi.tick();
        }
        let (batches, bytes) = (&mut self.wire_batches, &mut self.wire_bytes);
        self.cluster.settle_observing(|batch| {
            *batches += 1;
            *bytes += postcard::to_allocvec(batch).unwrap().len() as u64;
        });
    }

    fn quiescent(&self) -> bool {
        self.cluster
            .multis
            .iter()
            .all(|multi| multi.group_ids().all(|group| multi.is_quiescent(group)))
    }
}

/// Wire traffic of an idle, quiescent cluster: (batches, bytes) per second.
fn idle_traffic(group_count: u64) -> (u64, u64) {
    let mut nodes = Nodes::new(group_count, true);
    while !nodes.quiescent() {
        nodes.tick_all();
    }
    let (batches, bytes) = (nodes.wire_batches, nodes.wire_bytes);
    let seconds = 10;
    for _ in 0..seconds * TICKS_PER_SECOND {
        nodes.tick_all();
    }
    (
        (nodes.wire_batches - batches) / seconds,
        (nodes.wire_bytes - bytes) / seconds,
    )
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Resident memory per quiescent group on one node (three replicas of each group live in this
/// process, so the growth is divided by three times the group count).
fn memory_per_idle_group(group_count: u64) -> u64 {
    let before = resident_bytes();
    let mut nodes = Nodes::new(group_count, true);
    while !nodes.quiescent() {
        nodes.tick_all();
    }
    let after = resident_bytes();
    black_box(&nodes);
    after.saturating_sub(before) / (3 * group_count)
}

fn report_idle_costs() {
    println!(
        "memory per idle group (resident, one replica): {} bytes",
        memory_per_idle_group(10_000)
    );
    for group_count in [1, 1_000, 10_000] {
        let (batches, bytes) = idle_traffic(group_count);
        println!(
            "idle wire traffic, 3 nodes, {group_count} groups: {batches} batches/s, {bytes} bytes/s in total"
        );
    }
}

fn node_tick(c: &mut Criterion) {
    report_idle_costs();
    let mut bench_group = c.benchmark_group("multiraft_node_tick_10000_groups");
    for (name, quiesce) in [("all_active", false), ("all_quiescent", true)] {
        let mut nodes = Nodes::new(10_000, quiesce);
        while quiesce && !nodes.quiescent() {
            nodes.tick_all();
        }
        bench_group.bench_function(name, |b| {
            b.iter(|| {
                let leader = &mut nodes.cluster.multis[0];
                leader.tick();
                while leader.has_ready() {
                    let ready = leader.ready();
                    black_box(&ready.batches);
                    black_box(&ready.persisted_batches);
                    leader.advance(ready);
                }
            });
        });
    }
    bench_group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = node_tick
}
criterion_main!(benches);

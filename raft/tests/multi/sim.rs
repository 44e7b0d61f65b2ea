//! The simulator over whole nodes: 3-5 nodes hosting 1-1,000 groups, with loss, duplication,
//! delay, long reordering, clock skew, node partitions (halves, an isolated leader, one-way
//! cuts) and node crashes (some in the middle of a write) in a safety phase, with writes,
//! linearizable reads and leadership transfers, then a liveness phase in which
//! every group must have a leader and every acknowledged write must be applied everywhere.

use crate::cluster::MultiCluster;
use flotilla_raft::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

/// One seed; returns the numbers of acknowledged writes and of linearizable reads served.
fn run_seed(seed: u64) -> (usize, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3017_1a11);
    let node_count = rng.random_range(3..=5);
    let group_count = [1, 8, 64, 1_000][rng.random_range(0..4)];
    let mut cluster = MultiCluster::new(node_count, group_count, seed, rng.random_bool(0.7));
    cluster.drop_percent = rng.random_range(0..=20);
    cluster.duplicate_percent = rng.random_range(0..=30);
    cluster.delay_ms_max = rng.random_range(1..=40);
    cluster.long_reordering = rng.random_ratio(1, 10);
    let nodes = cluster.node_ids();
    let skew = rng.random_range(0..=20);
    for node in cluster.nodes.values_mut() {
        node.clock_rate_percent = rng.random_range(100 - skew..=100 + skew);
    }
    let mut value = 0u64;
    for step in 0..rng.random_range(100..300) {
        cluster.run_for(20);
        for _ in 0..rng.random_range(0..4) {
            let group = cluster.groups[rng.random_range(0..cluster.groups.len())];
            value += 1;
            cluster.propose(group, format!("{seed}-{value}").into_bytes());
        }
        if rng.random_ratio(1, 3) {
            let group = cluster.groups[rng.random_range(0..cluster.groups.len())];
            value += 1;
            cluster.read(group, value);
        }
        if rng.random_ratio(1, 25) {
            let group = cluster.groups[rng.random_range(0..cluster.groups.len())];
            cluster.transfer(group, nodes[rng.random_range(0..nodes.len())]);
        }
        inject_fault(&mut cluster, &nodes, step, &mut rng);
    }
    cluster.heal();
    cluster.long_reordering = false;
    for node in cluster.nodes.values_mut() {
        node.crash_in_next_ready = false;
    }
    (cluster.drop_percent, cluster.duplicate_percent) = (0, 0);
    for &id in &nodes {
        cluster.restart(id);
    }
    let converged = cluster.run_until(60_000, |cluster| {
        cluster.all_groups_led() && cluster.acks_applied_everywhere().is_ok()
    });
    assert!(
        converged,
        "liveness violated: {:?}",
        cluster.acks_applied_everywhere().err()
    );
    (cluster.acks.len(), cluster.reads_served)
}

fn inject_fault(cluster: &mut MultiCluster, nodes: &[NodeId], step: u64, rng: &mut ChaCha8Rng) {
    match rng.random_range(0..100) {
        0 => {
            let victim = nodes[rng.random_range(0..nodes.len())];
            cluster.crash(victim);
        }
        1 => {
            let victim = nodes[rng.random_range(0..nodes.len())];
            if let Some(node) = cluster.nodes.get_mut(&victim) {
                node.crash_in_next_ready = node.multi.is_some();
            }
        }
        2..=4 => {
            let victim = nodes[rng.random_range(0..nodes.len())];
            cluster.restart(victim);
        }
        5 => {
            let split = rng.random_range(1..nodes.len());
            cluster.partition(&nodes[..split], &nodes[split..]);
        }
        6 => {
            // Isolate the node that leads the most groups.
            let leader = cluster.leader_of(cluster.groups[0]).unwrap_or(nodes[0]);
            let others: Vec<NodeId> = nodes
                .iter()
                .copied()
                .filter(|&node| node != leader)
                .collect();
            cluster.partition(&[leader], &others);
        }
        7 => {
            let source = nodes[rng.random_range(0..nodes.len())];
            let target = nodes[rng.random_range(0..nodes.len())];
            if source != target {
                cluster.cut_one_way(source, target);
            }
        }
        8..=10 if step % 3 == 0 => cluster.heal(),
        _ => {}
    }
}

#[test]
fn simulate_multi_seeds() {
    let first = env_u64("FLOTILLA_SIM_FIRST").unwrap_or(1);
    let seeds: Vec<u64> = match env_u64("FLOTILLA_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (first..first + env_u64("FLOTILLA_SIM_SEEDS").unwrap_or(12)).collect(),
    };
    let (mut acks, mut reads) = (0, 0);
    for seed in seeds {
        match catch_unwind(AssertUnwindSafe(|| run_seed(seed))) {
            Ok((acked, served)) => {
                acks += acked;
                reads += served;
            }
            Err(panic) => {
                let message = crate::harness_panic_text(&panic);
                panic!(
                    "multi seed {seed} failed: {message}\nreproduce: FLOTILLA_SIM_SEED={seed} cargo test -p flotilla-raft --test multi -- simulate_multi_seeds"
                );
            }
        }
    }
    assert!(
        acks > 0 && reads > 0,
        "the simulator acknowledged {acks} writes and served {reads} reads"
    );
}

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

/// What one seed did.
#[derive(Default)]
struct Counts {
    acks: usize,
    reads: u64,
    compactions: u64,
    snapshots_installed: u64,
    membership_changes: u64,
}

/// One seed.
fn run_seed(seed: u64) -> Counts {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3017_1a11);
    let node_count = rng.random_range(3..=5);
    let group_count = [1, 8, 64, 1_000][rng.random_range(0..4)];
    let mut cluster = MultiCluster::new(node_count, group_count, seed, rng.random_bool(0.7));
    cluster.drop_percent = rng.random_range(0..=20);
    cluster.duplicate_percent = rng.random_range(0..=30);
    cluster.delay_ms_max = rng.random_range(1..=40);
    cluster.long_reordering = rng.random_ratio(1, 10);
    cluster.snapshot_interval = rng.random_bool(0.5).then(|| rng.random_range(2..=8));
    let membership_changes = rng.random_bool(0.4);
    let nodes = cluster.node_ids();
    let skew = rng.random_range(0..=20);
    for node in cluster.nodes.values_mut() {
        node.clock_rate_percent = rng.random_range(100 - skew..=100 + skew);
    }
    let mut value = 0u64;
    let mut membership_count = 0;
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
        if membership_changes && rng.random_ratio(1, 10) {
            membership_count += u64::from(change_membership(&mut cluster, &nodes, &mut rng));
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
    Counts {
        acks: cluster.acks.len(),
        reads: cluster.reads_served,
        compactions: cluster.compactions,
        snapshots_installed: cluster.snapshots_installed,
        membership_changes: membership_count,
    }
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
        8..=10 if step.is_multiple_of(3) => cluster.heal(),
        _ => {}
    }
}

#[test]
fn simulate_multi_seeds() {
    let first = env_u64("FLOTILLA_SIM_FIRST").unwrap_or(1);
    let replay = env_u64("FLOTILLA_SIM_SEED");
    let seeds: Vec<u64> = match replay {
        Some(seed) => vec![seed],
        None => (first..first + env_u64("FLOTILLA_SIM_SEEDS").unwrap_or(12)).collect(),
    };
    let mut total = Counts::default();
    for seed in seeds {
        match catch_unwind(AssertUnwindSafe(|| run_seed(seed))) {
            Ok(counts) => {
                total.acks += counts.acks;
                total.reads += counts.reads;
                total.compactions += counts.compactions;
                total.snapshots_installed += counts.snapshots_installed;
                total.membership_changes += counts.membership_changes;
            }
            Err(panic) => {
                let message = crate::harness_panic_text(&panic);
                panic!(
                    "multi seed {seed} failed: {message}\nreproduce: FLOTILLA_SIM_SEED={seed} cargo test -p flotilla-raft --test multi -- simulate_multi_seeds"
                );
            }
        }
    }
    println!(
        "multi seeds: {} acknowledged writes, {} reads, {} snapshots taken, {} installed, {} membership changes",
        total.acks,
        total.reads,
        total.compactions,
        total.snapshots_installed,
        total.membership_changes
    );
    assert!(
        total.acks > 0 && total.reads > 0,
        "the simulator exercised no writes or reads"
    );
    // Coverage of a run of seeds; one replayed seed (the `reproduce:` line) need not take a
    // snapshot or change a membership to pass.
    assert!(
        replay.is_some() || (total.compactions > 0 && total.membership_changes > 0),
        "no snapshot or membership change"
    );
}

/// One membership step on a random group: remove a voter (keeping three), add a node back as
/// a learner, or promote a learner. Every node hosts a replica of every group, so a removed
/// replica stays and catches up when it is added again.
fn change_membership(cluster: &mut MultiCluster, nodes: &[NodeId], rng: &mut ChaCha8Rng) -> bool {
    use flotilla_raft::ChangeStep;
    let group = cluster.groups[rng.random_range(0..cluster.groups.len())];
    let Some(leader) = cluster.leader_of(group) else {
        return false;
    };
    let membership = cluster
        .multi(leader)
        .unwrap()
        .group(group)
        .unwrap()
        .membership()
        .clone();
    let outsider = nodes
        .iter()
        .copied()
        .find(|node| !membership.contains(*node));
    let step = match rng.random_range(0..3) {
        0 if membership.voters.len() > 3 => {
            let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
            ChangeStep::Remove(voters[rng.random_range(0..voters.len())])
        }
        1 if outsider.is_some() => ChangeStep::AddLearner(outsider.unwrap()),
        _ => match membership.learners.iter().next() {
            Some(&learner) => ChangeStep::AddVoter(learner),
            None => return false,
        },
    };
    let multi = cluster.multi_mut(leader).unwrap();
    let proposed = multi.propose_conf_change(group, vec![step]).is_ok();
    if proposed {
        cluster.drive(leader);
    }
    proposed
}

//! One seed, two phases. Safety: faults on for the swarm's number of steps, every property
//! checked after every event. Liveness: heal the network, restart every replica, and require
//! a leader, every acknowledged proposal applied on every member, and equal replicas.

use crate::faults::{FaultCounts, Faults};
use crate::harness::network::Faults as WireFaults;
use crate::harness::{Cluster, test_config};
use crate::swarm::{STEP_MS, Swarm};
use crate::workload::{Workload, WorkloadCounts};
use flotilla_raft::{Config, LogIndex, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// How long the healed cluster gets to converge, in simulated milliseconds.
pub const LIVENESS_LIMIT_MS: u64 = 60_000;

/// What one seed did (the `sim` example prints all of it).
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub struct Report {
    pub seed: u64,
    pub swarm: Swarm,
    pub faults: FaultCounts,
    pub workload: WorkloadCounts,
    pub acks: usize,
    pub reads_served: usize,
    pub checks: u64,
    /// Leaders elected in a term before an entry already committed, lacking it (legal).
    pub late_leaders: u64,
    pub terms: u64,
    pub simulated_ms: u64,
    pub trace_hash: u64,
    pub torn_writes_cut_in_order: u64,
}

/// Runs `seed` with the standard replica configuration.
pub fn run_seed(seed: u64) -> Report {
    run_seed_with(seed, test_config)
}

/// Runs `seed` with one broken rule in every replica.
pub fn run_seed_with_mutation(seed: u64, mutation: flotilla_raft::Mutation) -> Report {
    thread_local! {
        static MUTATION: std::cell::Cell<flotilla_raft::Mutation> = const { std::cell::Cell::new(flotilla_raft::Mutation::None) };
    }
    fn mutated(id: NodeId, seed: u64) -> Config {
        Config {
            mutation: MUTATION.with(std::cell::Cell::get),
            ..test_config(id, seed)
        }
    }
    MUTATION.with(|cell| cell.set(mutation));
    let outcome = catch_unwind(AssertUnwindSafe(|| run_seed_with(seed, mutated)));
    MUTATION.with(|cell| cell.set(flotilla_raft::Mutation::None));
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `seed` with a given replica configuration (the mutation tests break a rule in it).
pub fn run_seed_with(seed: u64, config_of: fn(NodeId, u64) -> Config) -> Report {
    run(seed, config_of, true)
}

/// Runs `seed` as the simulator did before it damaged disks: for seeds found then, whose
/// schedules a damaged disk would change.
pub fn run_seed_without_disk_faults(seed: u64) -> Report {
    run(seed, test_config, false)
}

fn run(seed: u64, config_of: fn(NodeId, u64) -> Config, disk_faults: bool) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f107_11a5_0000);
    let swarm = Swarm::random(&mut rng);
    let mut cluster = Cluster::with_config(swarm.replica_count, seed, config_of);
    set_up(&mut cluster, &swarm, &mut rng);
    let mut faults = Faults::new(seed, disk_faults);
    let mut workload = Workload::default();
    for step in 0..swarm.safety_steps {
        cluster.run_for(STEP_MS);
        workload.step(&mut cluster, &swarm, &mut rng);
        faults.step(step, &mut cluster, &swarm, &mut rng);
    }
    heal(&mut cluster);
    let converged = cluster.run_until(LIVENESS_LIMIT_MS, |cluster| converged(cluster).is_ok());
    if !converged {
        let reason = converged_reason(&cluster);
        panic!("liveness violated: not converged {LIVENESS_LIMIT_MS} ms after healing: {reason}");
    }
    Report {
        seed,
        swarm,
        faults: faults.counts,
        workload: workload.counts,
        acks: cluster.acks.len(),
        reads_served: cluster.reads_served.len(),
        checks: cluster.checker.checks,
        late_leaders: cluster.checker.late_leaders,
        terms: cluster
            .ids()
            .iter()
            .filter_map(|&id| cluster.raft(id))
            .map(|raft| raft.term().0)
            .max()
            .unwrap_or(0),
        simulated_ms: cluster.now_ms,
        trace_hash: cluster.trace_hash,
        torn_writes_cut_in_order: cluster.torn_writes_cut_in_order,
    }
}

fn set_up(cluster: &mut Cluster, swarm: &Swarm, rng: &mut ChaCha8Rng) {
    cluster.network.faults = swarm.faults.clone();
    cluster.snapshot_interval = swarm.snapshot_interval;
    for replica in cluster.replicas.values_mut() {
        let skew = swarm.clock_skew_percent;
        replica.clock_rate_percent = rng.random_range(100 - skew..=100 + skew);
    }
}

/// The liveness phase begins: a reliable network and every replica up.
fn heal(cluster: &mut Cluster) {
    cluster.network.heal();
    cluster.network.faults = WireFaults::reliable();
    cluster.cancel_pending_crashes();
    for id in cluster.ids() {
        cluster.restart(id);
    }
}

fn converged_reason(cluster: &Cluster) -> String {
    let reason = match converged(cluster) {
        Ok(()) => "converged after all".to_string(),
        Err(reason) => reason,
    };
    let states: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| match cluster.raft(id) {
            Some(raft) => format!("{:?} membership={:?}", raft.status(), raft.membership()),
            None => format!("{id} down"),
        })
        .collect();
    format!("{reason}\n  {}", states.join("\n  "))
}

/// A leader exists; every member applied every acknowledged proposal; all members applied
/// the same entries up to the same index.
fn converged(cluster: &Cluster) -> Result<(), String> {
    let leader = cluster.leader().ok_or("no leader")?;
    let members: Vec<NodeId> = cluster
        .raft(leader)
        .expect("up")
        .membership()
        .replicas()
        .collect();
    let leader_applied = cluster.replicas[&leader].app.applied;
    // A replica that refused to start on a damaged disk is lost for good; the rest converge.
    let members: Vec<NodeId> = members
        .into_iter()
        .filter(|&member| !cluster.is_refused(member))
        .collect();
    for &member in &members {
        let app = &cluster
            .replicas
            .get(&member)
            .ok_or(format!("{member} does not exist"))?
            .app;
        if app.applied != leader_applied {
            return Err(format!(
                "{member} applied {} but the leader {leader} applied {leader_applied}",
                app.applied
            ));
        }
        check_acks_applied(cluster, member)?;
    }
    let reference = &cluster.replicas[&leader].app.values;
    for &member in &members {
        if &cluster.replicas[&member].app.values != reference {
            return Err(format!(
                "{member}'s state differs from the leader's at equal applied index"
            ));
        }
    }
    Ok(())
}

fn check_acks_applied(cluster: &Cluster, member: NodeId) -> Result<(), String> {
    let log = &cluster.applied_logs[&member];
    for ack in &cluster.acks {
        if log.get(&ack.index) != Some(&ack.data) {
            let index: LogIndex = ack.index;
            return Err(format!("{member} lacks the acknowledged write at {index}"));
        }
    }
    Ok(())
}

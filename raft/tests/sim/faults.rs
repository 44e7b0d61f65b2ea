//! Fault injection for the safety phase: partitions (random halves, an isolated leader, a
//! one-way cut), crashes (clean, or in the middle of a ready cycle), their repair after a
//! random number of steps, and disks that lose synced data (amnesia, a flipped bit), after
//! which a replica refuses to start for good (`harness/disk.rs`).

use crate::harness::disk::DiskFault;
use crate::harness::{Cluster, CrashPoint};
use crate::swarm::Swarm;
use flotilla_raft::NodeId;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A repair scheduled for a later step.
#[derive(Clone, Copy, Debug)]
enum Repair {
    Heal,
    Restart(NodeId),
}

/// Counts of what was injected, for the run report.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    pub partitions: u64,
    pub crashes: u64,
    pub torn_crashes: u64,
    pub restarts: u64,
    /// Crashed replicas whose disk lost synced data.
    pub disk_faults: u64,
    /// Crashes after a cycle's early sends, after its write, or mid-apply.
    pub crashes_at_points: u64,
}

/// The fault schedule of one run.
#[derive(Debug)]
pub struct Faults {
    repairs: Vec<(u64, Repair)>,
    pub counts: FaultCounts,
    disk: DiskFaults,
    points: CrashPoints,
}

/// Crashes at the other points of a ready cycle (after the early sends, after the write,
/// mid-apply), drawn from their own stream like the disk faults: in half the seeds, a share of
/// the clean crashes becomes one of these.
#[derive(Debug)]
struct CrashPoints {
    percent: u32,
    rng: ChaCha8Rng,
}

impl CrashPoints {
    fn new(seed: u64, enabled: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc4a5_4b01_0000_0000);
        let percent = if rng.random_bool(0.5) && enabled {
            rng.random_range(20..=80)
        } else {
            0
        };
        Self { percent, rng }
    }

    /// A point of the next ready cycle to crash at instead of crashing now, if drawn.
    fn draw(&mut self) -> Option<CrashPoint> {
        if self.percent == 0 || self.rng.random_range(0..100) >= self.percent {
            return None;
        }
        let points = [
            CrashPoint::AfterEarlySends,
            CrashPoint::AfterWrite,
            CrashPoint::MidApply,
        ];
        Some(points[self.rng.random_range(0..points.len())])
    }
}

/// Disk faults, drawn from their own stream so that a run without them replays exactly as it
/// did before they existed: a quarter of the seeds damage the disk of at most one crashed
/// replica (which then stays down, so a majority is left).
#[derive(Debug)]
struct DiskFaults {
    /// Percent of crashes whose disk loses synced data (0: none in this run).
    percent: u32,
    rng: ChaCha8Rng,
}

impl DiskFaults {
    fn new(seed: u64, enabled: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd15c_fa17_0000_0000);
        let percent = if rng.random_ratio(1, 4) && enabled {
            rng.random_range(5..=50)
        } else {
            0
        };
        Self { percent, rng }
    }

    /// Maybe damages the disk of `victim`, just crashed.
    fn after_crash(&mut self, victim: NodeId, cluster: &mut Cluster, counts: &mut FaultCounts) {
        if self.percent == 0 || counts.disk_faults > 0 {
            return;
        }
        if self.rng.random_range(0..100) < self.percent {
            let fault = if self.rng.random_bool(0.5) {
                DiskFault::Amnesia
            } else {
                DiskFault::SyncedFlip
            };
            cluster.damage_disk(victim, fault);
            counts.disk_faults += 1;
        }
    }
}

impl Faults {
    /// No faults scheduled yet; the disk faults of `seed` drawn (if `disk_faults`).
    pub fn new(seed: u64, disk_faults: bool) -> Self {
        Self {
            repairs: Vec::new(),
            counts: FaultCounts::default(),
            disk: DiskFaults::new(seed, disk_faults),
            points: CrashPoints::new(seed, disk_faults),
        }
    }

    /// One step: apply due repairs, then maybe inject new faults.
    pub fn step(&mut self, step: u64, cluster: &mut Cluster, swarm: &Swarm, rng: &mut ChaCha8Rng) {
        self.apply_due_repairs(step, cluster);
        if rng.random_range(0..100) < swarm.partition_percent {
            self.partition(step, cluster, rng);
        }
        if rng.random_range(0..100) < swarm.crash_percent {
            self.crash(step, cluster, swarm, rng);
        }
    }

    fn apply_due_repairs(&mut self, step: u64, cluster: &mut Cluster) {
        let (due, later): (Vec<_>, Vec<_>) =
            self.repairs.drain(..).partition(|(at, _)| *at <= step);
        self.repairs = later;
        for (_, repair) in due {
            match repair {
                Repair::Heal => {
                    cluster.note(|| "HEAL".to_string());
                    cluster.network.heal();
                }
                Repair::Restart(id) => {
                    cluster.restart(id);
                    self.counts.restarts += 1;
                }
            }
        }
    }

    fn partition(&mut self, step: u64, cluster: &mut Cluster, rng: &mut ChaCha8Rng) {
        let mut ids = cluster.ids();
        match rng.random_range(0..3) {
            0 => {
                ids.shuffle(rng);
                let split = rng.random_range(1..ids.len());
                let (left, right) = ids.split_at(split);
                cluster.note(|| format!("PARTITION {left:?} | {right:?}"));
                cluster.network.partition(&[left.to_vec(), right.to_vec()]);
            }
            1 => {
                if let Some(leader) = cluster.leader() {
                    let others: Vec<NodeId> = ids.into_iter().filter(|&id| id != leader).collect();
                    cluster.note(|| format!("PARTITION leader {leader} | {others:?}"));
                    cluster.network.partition(&[vec![leader], others]);
                }
            }
            _ => {
                let source = ids[rng.random_range(0..ids.len())];
                let target = ids[rng.random_range(0..ids.len())];
                if source != target {
                    cluster.note(|| format!("CUT {source} -> {target}"));
                    cluster.network.cut_one_way(source, target);
                }
            }
        }
        self.counts.partitions += 1;
        self.repairs
            .push((step + rng.random_range(10..150), Repair::Heal));
    }

    fn crash(&mut self, step: u64, cluster: &mut Cluster, swarm: &Swarm, rng: &mut ChaCha8Rng) {
        let up: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|&id| cluster.is_up(id))
            .collect();
        let Some(&victim) = up.get(rng.random_range(0..up.len().max(1))) else {
            return;
        };
        if rng.random_range(0..100) < swarm.torn_crash_percent {
            cluster.note(|| format!("{victim} will crash in its next ready"));
            cluster.crash_in_next_ready(victim);
            self.counts.torn_crashes += 1;
        } else if let Some(point) = self.points.draw() {
            cluster.note(|| format!("{victim} will crash in its next ready ({point:?})"));
            cluster.crash_in_next_ready_at(victim, point);
            self.counts.crashes_at_points += 1;
        } else {
            cluster.crash(victim);
            self.disk.after_crash(victim, cluster, &mut self.counts);
        }
        self.counts.crashes += 1;
        self.repairs
            .push((step + rng.random_range(5..200), Repair::Restart(victim)));
    }
}

//! Faults on a seeded schedule during the safety phase: a node crashes (power loss, its unsynced
//! writes torn) or its disk fails in the middle of a write (the node stops, never continues),
//! and restarts later; a node pauses; a node's disk turns slow for a while; partitions isolate
//! a node, split the cluster in two, leave one node bridging two sides that cannot hear each
//! other, or cut one direction of one link, and heal. Every kind has its own module of choices here; the wire's
//! loss, duplication and delay spikes are in `network.rs`.

use crate::cluster::Cluster;
use flotilla_raft::NodeId;
use rand::Rng;
use rand::seq::SliceRandom;

/// What one run injected.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    pub crashes: u64,
    pub failed_writes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub lost_disks: u64,
    pub slow_disks: u64,
}

/// How often faults come in a run.
#[derive(Clone, Copy, Debug)]
pub struct FaultRates {
    /// A fault is drawn every this many milliseconds on average.
    pub every_ms: u64,
    /// Whether nodes crash and fail writes at all.
    pub crashes: bool,
}

/// A repair due later.
#[derive(Clone, Copy, Debug)]
enum Repair {
    Restart(NodeId),
    Heal,
    /// The node's writes take `fsync_ms` again.
    DiskRecovers(NodeId, u64),
}

#[derive(Debug, Default)]
pub struct Faults {
    repairs: Vec<(u64, Repair)>,
    pub counts: FaultCounts,
}

impl Faults {
    /// Applies due repairs and maybe injects a fault; called every `step_ms`.
    pub fn step(&mut self, cluster: &mut Cluster, rates: FaultRates, step_ms: u64) {
        self.repair(cluster);
        if cluster.rng.random_range(0..rates.every_ms.max(1)) >= step_ms {
            return;
        }
        match cluster.rng.random_range(0..20) {
            0..=4 if rates.crashes => self.crash(cluster),
            5 | 6 if rates.crashes => self.fail_a_write(cluster),
            7 if rates.crashes => self.lose_a_disk(cluster),
            8..=10 => self.pause(cluster),
            11 => self.slow_a_disk(cluster),
            _ => self.partition(cluster),
        }
    }

    fn repair(&mut self, cluster: &mut Cluster) {
        let now = cluster.now_ms;
        let (due, later): (Vec<_>, Vec<_>) = self.repairs.drain(..).partition(|(at, _)| *at <= now);
        self.repairs = later;
        for (_, repair) in due {
            match repair {
                Repair::Restart(node) => cluster.restart(node),
                Repair::Heal => {
                    cluster.note(|| "HEAL".to_string());
                    cluster.network.heal();
                }
                Repair::DiskRecovers(node, fsync_ms) => {
                    cluster.note(|| format!("{node}'s disk recovers"));
                    cluster.nodes.get_mut(&node).expect("node").fsync_ms = fsync_ms;
                }
            }
        }
    }

    /// A node that is up, at random.
    fn victim(cluster: &mut Cluster) -> Option<NodeId> {
        let up: Vec<NodeId> = cluster
            .nodes
            .values()
            .filter(|node| node.is_up())
            .map(|node| node.id)
            .collect();
        up.get(cluster.rng.random_range(0..up.len().max(1)))
            .copied()
    }

    fn crash(&mut self, cluster: &mut Cluster) {
        let Some(victim) = Self::victim(cluster) else {
            return;
        };
        cluster.note(|| format!("{victim} CRASHES"));
        cluster.nodes.get_mut(&victim).expect("node").crash();
        self.counts.crashes += 1;
        let at = cluster.now_ms + cluster.rng.random_range(100..2_000);
        self.repairs.push((at, Repair::Restart(victim)));
    }

    /// The disk fails after a few more operations: the node's write fails mid-way, it stops,
    /// and the crash keeps a torn part of what it had not synced.
    fn fail_a_write(&mut self, cluster: &mut Cluster) {
        let Some(victim) = Self::victim(cluster) else {
            return;
        };
        let operations = cluster.rng.random_range(0..4);
        cluster.note(|| format!("{victim}'s disk fails after {operations} operations"));
        cluster.nodes[&victim].fs.fail_after(operations);
        self.counts.failed_writes += 1;
        let at = cluster.now_ms + cluster.rng.random_range(300..2_500);
        self.repairs.push((at, Repair::Restart(victim)));
    }

    /// A node loses its disk for good (at most one per run, so a majority of every range is
    /// left): it refuses to start again under its id.
    fn lose_a_disk(&mut self, cluster: &mut Cluster) {
        if self.counts.lost_disks > 0 {
            return;
        }
        let Some(victim) = Self::victim(cluster) else {
            return;
        };
        cluster.lose_disk(victim);
        self.counts.lost_disks += 1;
        let at = cluster.now_ms + cluster.rng.random_range(100..2_000);
        self.repairs.push((at, Repair::Restart(victim)));
    }

    /// A node's writes take 20-300 ms for a while (a disk that stalls): its groups fall behind
    /// and its inputs pile up, but it must neither lose nor misorder anything.
    fn slow_a_disk(&mut self, cluster: &mut Cluster) {
        let Some(victim) = Self::victim(cluster) else {
            return;
        };
        let already_slow = self
            .repairs
            .iter()
            .any(|(_, repair)| matches!(repair, Repair::DiskRecovers(node, _) if *node == victim));
        if already_slow {
            return;
        }
        let slow_ms = cluster.rng.random_range(20..=300);
        cluster.note(|| format!("{victim}'s writes take {slow_ms} ms"));
        let node = cluster.nodes.get_mut(&victim).expect("node");
        let normal_ms = std::mem::replace(&mut node.fsync_ms, slow_ms);
        self.counts.slow_disks += 1;
        let at = cluster.now_ms + cluster.rng.random_range(300..3_000);
        self.repairs
            .push((at, Repair::DiskRecovers(victim, normal_ms)));
    }

    fn pause(&mut self, cluster: &mut Cluster) {
        let Some(victim) = Self::victim(cluster) else {
            return;
        };
        let until = cluster.now_ms + cluster.rng.random_range(100..2_500);
        cluster.note(|| format!("{victim} PAUSES until {until}"));
        cluster
            .nodes
            .get_mut(&victim)
            .expect("node")
            .paused_until_ms = until;
        cluster.wake(victim, until);
        self.counts.pauses += 1;
    }

    fn partition(&mut self, cluster: &mut Cluster) {
        let mut ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        match cluster.rng.random_range(0..4) {
            0 => {
                let isolated = ids.remove(cluster.rng.random_range(0..ids.len()));
                cluster.note(|| format!("PARTITION {isolated} | {ids:?}"));
                cluster.network.partition(&[vec![isolated], ids]);
            }
            1 => {
                ids.shuffle(&mut cluster.rng);
                let split = cluster.rng.random_range(1..ids.len());
                let (left, right) = ids.split_at(split);
                cluster.note(|| format!("PARTITION {left:?} | {right:?}"));
                cluster.network.partition(&[left.to_vec(), right.to_vec()]);
            }
            2 => {
                ids.shuffle(&mut cluster.rng);
                let bridge = ids.remove(0);
                let split = cluster.rng.random_range(1..ids.len());
                let (left, right) = ids.split_at(split);
                cluster.note(|| format!("PARTITION {left:?} | {right:?}, {bridge} hears both"));
                cluster.network.partition(&[left.to_vec(), right.to_vec()]);
            }
            _ => {
                ids.shuffle(&mut cluster.rng);
                cluster.note(|| format!("CUT {} -> {}", ids[0], ids[1]));
                cluster.network.cut_one_way(ids[0], ids[1]);
            }
        }
        self.counts.partitions += 1;
        let at = cluster.now_ms + cluster.rng.random_range(200..3_000);
        self.repairs.push((at, Repair::Heal));
    }

    /// Every crashed node restarts (the liveness phase).
    pub fn restart_all(&mut self, cluster: &mut Cluster) {
        for (_, repair) in self.repairs.drain(..) {
            match repair {
                Repair::DiskRecovers(node, fsync_ms) => {
                    cluster.nodes.get_mut(&node).expect("node").fsync_ms = fsync_ms;
                }
                // A node still up with a disk failure armed may already have had an operation
                // fail (a read the core reports later): the failure ends in a crash, and the
                // restart below brings it back.
                Repair::Restart(node) if cluster.nodes[&node].is_up() => {
                    cluster.note(|| format!("{node} CRASHES (its disk failure armed)"));
                    cluster.nodes.get_mut(&node).expect("node").crash();
                }
                Repair::Restart(_) | Repair::Heal => {}
            }
        }
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.nodes[&id].fs.restore_power();
            cluster.nodes.get_mut(&id).expect("node").paused_until_ms = 0;
            cluster.restart(id);
        }
    }
}

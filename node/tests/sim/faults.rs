//! Faults on a seeded schedule during the safety phase: a node crashes (power loss, its unsynced
//! writes torn) or its disk fails in the middle of a write (the node stops, never continues),
//! and restarts later; a node pauses; a node's disk turns slow for a while; partitions isolate
//! a node, split the cluster in two, leave one node bridging two sides that cannot hear each
//! other, or cut one direction of one link, and heal. An operator drains nodes, removes one
//! lost for good, and new nodes join (one replacing a lost node, or the cluster grows). Every kind has its own module of choices here; the wire's
//! loss, duplication and delay spikes are in `network.rs`.

use crate::cluster::Cluster;
use crate::node::SimNode;
use flotilla_node::api::AdminCommand;
use flotilla_raft::NodeId;
use flotilla_shard_manager::placement::NodeState;
use rand::Rng;
use rand::seq::SliceRandom;

/// New nodes one run may add.
const JOINS_MAX: u64 = 2;

/// What one run injected.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    pub crashes: u64,
    pub failed_writes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub lost_disks: u64,
    pub slow_disks: u64,
    /// Nodes an operator drained (and later set up again).
    pub drains: u64,
    /// Nodes lost for good that an operator removed.
    pub removals: u64,
    /// New nodes that joined under new ids (one replacing a node that lost its disk, or
    /// growing the cluster).
    pub joins: u64,
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
    /// The operator sets a drained node up again.
    Undrain(NodeId),
    /// The operator removes a node lost for good.
    Remove(NodeId),
    /// A new node joins (a replacement, or the cluster grows).
    Join,
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
            12 => self.drain(cluster),
            13 => self.join(cluster),
            _ => self.partition(cluster),
        }
    }

    fn repair(&mut self, cluster: &mut Cluster) {
        let now = cluster.now_ms;
        let (due, later): (Vec<_>, Vec<_>) = self.repairs.drain(..).partition(|(at, _)| *at <= now);
        self.repairs = later;
        for (_, repair) in due {
            match repair {
                // Still up: its disk failure is armed and no operation has hit it yet, or one
                // did that the core has not reported (a failed destroy's write). The restart
                // stays due, so the liveness phase crashes the node before it restarts all
                // (seed 84: it stopped just after, and stayed down).
                Repair::Restart(node) if cluster.nodes[&node].is_up() => {
                    self.repairs.push((now + 500, Repair::Restart(node)));
                }
                Repair::Restart(node) => cluster.restart(node),
                Repair::Heal => {
                    cluster.note(|| "HEAL".to_string());
                    cluster.network.heal();
                }
                Repair::DiskRecovers(node, fsync_ms) => {
                    cluster.note(|| format!("{node}'s disk recovers"));
                    cluster.nodes.get_mut(&node).expect("node").fsync_ms = fsync_ms;
                }
                Repair::Undrain(node) => set_state(cluster, node, NodeState::Up),
                Repair::Remove(node) => set_state(cluster, node, NodeState::Removed),
                Repair::Join => self.join(cluster),
            }
        }
    }

    /// A new node joins under the next id never used (at most `JOINS_MAX` per run).
    fn join(&mut self, cluster: &mut Cluster) {
        if self.counts.joins >= JOINS_MAX {
            return;
        }
        let last = cluster.nodes.keys().chain(cluster.joiners.keys()).max();
        let id = NodeId(last.map_or(1, |last| last.0 + 1));
        let directory = u128::from(cluster.rng.random::<u64>()) << 64 | u128::from(id.0);
        let fsync_ms = cluster.rng.random_range(0..=3);
        let rate = cluster.rng.random_range(90..=110);
        cluster.join(SimNode::new(id, directory, fsync_ms, rate));
        self.counts.joins += 1;
    }

    /// A node that is up, at random.
    fn victim(cluster: &mut Cluster) -> Option<NodeId> {
        let up = cluster.up_nodes();
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
        // Half the time an operator removes it; otherwise the driver re-places its replicas
        // once it has been down for `down_after_ms`. Either way a new node replaces it.
        if cluster.rng.random_bool(0.5) {
            let at = cluster.now_ms + cluster.rng.random_range(500..3_000);
            self.repairs.push((at, Repair::Remove(victim)));
            self.counts.removals += 1;
        }
        let at = cluster.now_ms + cluster.rng.random_range(1_000..4_000);
        self.repairs.push((at, Repair::Join));
    }

    /// An operator drains a node for a while: its replicas and leaders leave it, then it is
    /// set up again and receives its share back.
    fn drain(&mut self, cluster: &mut Cluster) {
        let Some(victim) = Self::victim(cluster) else {
            return;
        };
        let draining = self
            .repairs
            .iter()
            .any(|(_, repair)| matches!(repair, Repair::Undrain(node) if *node == victim));
        if draining {
            return;
        }
        set_state(cluster, victim, NodeState::Draining);
        self.counts.drains += 1;
        let at = cluster.now_ms + cluster.rng.random_range(1_000..5_000);
        self.repairs.push((at, Repair::Undrain(victim)));
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
        let repairs: Vec<(u64, Repair)> = self.repairs.drain(..).collect();
        for (_, repair) in repairs {
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
                Repair::Undrain(node) => set_state(cluster, node, NodeState::Up),
                Repair::Remove(node) => set_state(cluster, node, NodeState::Removed),
                Repair::Join => self.join(cluster),
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

/// The operator sets `node`'s state (sent to every node: only the meta leader takes it; lost
/// if there is none just then, like any request).
fn set_state(cluster: &mut Cluster, node: NodeId, state: NodeState) {
    cluster.note(|| format!("OPERATOR sets {node} {state:?}"));
    cluster.admin(AdminCommand::SetNodeState { node, state });
}

//! What clients and operators do during a run: proposals and linearizable reads sent to the
//! replica believed to lead, membership changes (add a learner, promote it, remove a voter)
//! and leadership transfers.

use crate::harness::Cluster;
use crate::swarm::Swarm;
use flotilla_raft::{ChangeStep, NodeId, Role};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Counts of what the workload did, for the run report.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkloadCounts {
    pub proposals: u64,
    pub reads: u64,
    pub membership_changes: u64,
    pub transfers: u64,
}

/// The client and operator side of a run.
#[derive(Debug, Default)]
pub struct Workload {
    next_value: u64,
    next_read: u64,
    pub counts: WorkloadCounts,
}

impl Workload {
    /// One step of client and operator activity.
    pub fn step(&mut self, cluster: &mut Cluster, swarm: &Swarm, rng: &mut ChaCha8Rng) {
        let target = pick_target(cluster, rng);
        if rng.random_range(0..100) < swarm.propose_percent {
            self.propose(cluster, target);
        }
        if rng.random_range(0..100) < swarm.read_percent {
            self.next_read += 1;
            if cluster.read(target, self.next_read).is_ok() {
                self.counts.reads += 1;
            }
        }
        if rng.random_range(0..100) < swarm.membership_percent {
            self.change_membership(cluster, swarm, rng);
        }
        if rng.random_range(0..100) < swarm.transfer_percent {
            self.transfer(cluster, rng);
        }
    }

    fn propose(&mut self, cluster: &mut Cluster, target: NodeId) {
        self.next_value += 1;
        let value = format!("v{}", self.next_value).into_bytes();
        if cluster.propose(target, value).is_ok() {
            self.counts.proposals += 1;
        }
    }

    fn change_membership(&mut self, cluster: &mut Cluster, swarm: &Swarm, rng: &mut ChaCha8Rng) {
        let Some(leader) = cluster.leader() else {
            return;
        };
        let membership = cluster.raft(leader).expect("up").membership().clone();
        let voter_count = membership.voters.len();
        let spare_ids = (swarm.replica_count + 1)..=(swarm.replica_count + 2);
        let step = match rng.random_range(0..3) {
            0 => spare_ids
                .map(NodeId)
                .find(|id| !membership.contains(*id))
                .map(ChangeStep::AddLearner),
            1 => membership
                .learners
                .iter()
                .next()
                .copied()
                .map(ChangeStep::AddVoter),
            _ if voter_count > 3 => {
                let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
                Some(ChangeStep::Remove(
                    voters[rng.random_range(0..voters.len())],
                ))
            }
            _ => None,
        };
        let Some(step) = step else { return };
        if let ChangeStep::AddLearner(id) = step
            && !cluster.replicas.contains_key(&id)
        {
            cluster.add_empty_replica(id);
        }
        let raft = cluster.raft_mut(leader).expect("up");
        if raft.propose_conf_change(vec![step]).is_ok() {
            self.counts.membership_changes += 1;
            cluster.drive(leader);
        }
    }

    fn transfer(&mut self, cluster: &mut Cluster, rng: &mut ChaCha8Rng) {
        let Some(leader) = cluster.leader() else {
            return;
        };
        let voters: Vec<NodeId> = cluster
            .raft(leader)
            .expect("up")
            .membership()
            .voters
            .iter()
            .copied()
            .collect();
        let target = voters[rng.random_range(0..voters.len())];
        if cluster
            .raft_mut(leader)
            .expect("up")
            .transfer_leader(target)
            .is_ok()
        {
            self.counts.transfers += 1;
            cluster.drive(leader);
        }
    }
}

/// The replica a client would send to: usually the leader it knows, sometimes any replica.
fn pick_target(cluster: &Cluster, rng: &mut ChaCha8Rng) -> NodeId {
    let ids = cluster.ids();
    let leaders: Vec<NodeId> = ids
        .iter()
        .copied()
        .filter(|&id| {
            cluster
                .raft(id)
                .is_some_and(|raft| raft.role() == Role::Leader)
        })
        .collect();
    if !leaders.is_empty() && rng.random_bool(0.9) {
        return leaders[rng.random_range(0..leaders.len())];
    }
    ids[rng.random_range(0..ids.len())]
}

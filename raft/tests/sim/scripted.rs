//! Scripted fault schedules for violations the random swarm reaches too rarely: Raft Figure 8
//! (an old-term entry committed by counting, then overwritten), a vote forgotten across a
//! restart (two leaders in one term), and a follower whose disk lost an acknowledged write
//! (amnesia, a flipped bit) voting a leader without it. Partitions choose who can win each election; the run is
//! otherwise the same simulated cluster with every checker on.

use crate::harness::disk::{DiskFault, DiskRule};
use crate::harness::{Cluster, CrashPoint};
use flotilla_raft::{Config, LogIndex, NodeId, Role};

const LONG_MS: u64 = 5_000;

fn leader_among(cluster: &mut Cluster, candidates: &[NodeId]) -> NodeId {
    let found = cluster.run_until(LONG_MS, |cluster| {
        candidates.iter().any(|&id| {
            cluster
                .raft(id)
                .is_some_and(|raft| raft.role() == Role::Leader)
        })
    });
    assert!(found, "no leader among {candidates:?}");
    *candidates
        .iter()
        .filter(|&&id| {
            cluster
                .raft(id)
                .is_some_and(|raft| raft.role() == Role::Leader)
        })
        .max_by_key(|&&id| cluster.raft(id).map(|raft| raft.term()))
        .expect("a leader")
}

fn others(all: &[NodeId], except: &[NodeId]) -> Vec<NodeId> {
    all.iter()
        .copied()
        .filter(|id| !except.contains(id))
        .collect()
}

fn holds(cluster: &Cluster, id: NodeId, index: LogIndex) -> bool {
    cluster
        .raft(id)
        .is_some_and(|raft| raft.log().last_index() >= index)
}

/// Raft Figure 8 with five replicas. X (old term) reaches one follower; a leader without X
/// writes Y at the same index alone; a leader with X brings X to a majority without an entry
/// of its own term; then the holder of Y is elected. Correct Raft never applies X; a leader
/// that commits X by counting applies it and the checker sees Y's leader lack it.
pub fn figure8_scripted(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    let mut cluster = Cluster::with_config(5, seed, config_of);
    let all = cluster.ids();
    let first = leader_among(&mut cluster, &all);
    let index = cluster.raft(first).expect("up").log().last_index().next();
    let follower = others(&all, &[first])[0];
    let rest = others(&all, &[first, follower]);
    cluster
        .network
        .partition(&[vec![first, follower], rest.clone()]);
    cluster
        .propose(first, b"X".to_vec())
        .expect("leader accepts X");
    cluster.run_until(LONG_MS, |cluster| holds(cluster, follower, index));
    cluster.network.heal();
    cluster
        .network
        .partition(&[vec![first], vec![follower], rest.clone()]);
    let second = leader_among(&mut cluster, &rest);
    let second_index = cluster.raft(second).expect("up").log().last_index().next();
    cluster.network.heal();
    cluster
        .network
        .partition(&[vec![second], others(&all, &[second])]);
    let y_index = cluster
        .propose(second, b"Y".to_vec())
        .expect("leader accepts Y");
    assert!(y_index >= second_index);
    // The X holders and the two others, without the holder of Y, elect an X holder.
    let pair: Vec<NodeId> = others(&rest, &[second]);
    cluster.network.heal();
    cluster
        .network
        .partition(&[vec![second], vec![first, follower, pair[0], pair[1]]]);
    // Under the paper's rules without a blank entry only an X holder can win here; with the
    // blank entry the second leader's term may have reached the pair, and one of them wins.
    leader_among(&mut cluster, &[first, follower, pair[0], pair[1]]);
    cluster.run_for(1_000);
    // The holder of Y returns with the two others and no X holder.
    cluster.crash(first);
    cluster.crash(follower);
    cluster.network.heal();
    cluster.run_for(LONG_MS);
    leader_among(&mut cluster, &[second, pair[0], pair[1]]);
}

/// Three replicas. A leader is elected with one vote besides its own; that voter restarts;
/// the third replica, cut off until now, campaigns in the same term and asks it. A replica
/// that kept its vote refuses; one that forgot it makes a second leader in the term.
pub fn forgotten_vote_scripted(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    let mut cluster = Cluster::with_config(3, seed, config_of);
    let all = cluster.ids();
    let late = all[2];
    cluster
        .network
        .partition(&[vec![all[0], all[1]], vec![late]]);
    let leader = leader_among(&mut cluster, &all[..2]);
    let voter = others(&all, &[leader, late])[0];
    cluster.crash(voter);
    cluster.restart(voter);
    cluster.network.heal();
    cluster
        .network
        .partition(&[vec![leader], vec![voter, late]]);
    cluster.run_for(LONG_MS);
}

/// Three replicas. A voter crashes in the ready cycle in which it grants its vote, after that
/// cycle's early sends and before its write: a vote that waits for the write never leaves, a
/// vote sent early is forgotten. Then the third replica, cut off until now, campaigns in the
/// same term and asks the restarted voter: one that forgot makes a second leader in the term.
pub fn vote_crash_scripted(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    let mut cluster = Cluster::with_config(3, seed, config_of);
    let all = cluster.ids();
    let late = all[2];
    cluster
        .network
        .partition(&[vec![all[0], all[1]], vec![late]]);
    for &id in &all[..2] {
        cluster.crash_in_next_vote_at(id, CrashPoint::AfterEarlySends);
    }
    let crashed = cluster.run_until(LONG_MS, |cluster| {
        all[..2].iter().any(|&id| !cluster.is_up(id))
    });
    assert!(crashed, "nobody granted a vote");
    cluster.cancel_pending_crashes();
    let voter = *all[..2]
        .iter()
        .find(|&&id| !cluster.is_up(id))
        .expect("crashed");
    let candidate = others(&all, &[voter, late])[0];
    cluster.run_for(1_000);
    cluster.restart(voter);
    cluster.network.heal();
    cluster
        .network
        .partition(&[vec![candidate], vec![voter, late]]);
    cluster.run_for(LONG_MS);
}

/// Three replicas; an acknowledged write X sits on the leader and one follower only (the third
/// is cut off). The follower crashes and its disk loses synced data (`fault`); the leader
/// crashes; the follower restarts and the third replica, healed, campaigns. A follower that
/// refuses to start (production) leaves it without a majority until the old leader is back,
/// and X survives. One that starts on what is left votes for it, and X is gone.
fn lost_disk_scripted(
    seed: u64,
    config_of: fn(NodeId, u64) -> Config,
    rule: DiskRule,
    fault: DiskFault,
) {
    let mut cluster = Cluster::with_config(3, seed, config_of);
    cluster.disk_rule = rule;
    let all = cluster.ids();
    let late = all[2];
    cluster
        .network
        .partition(&[vec![all[0], all[1]], vec![late]]);
    let leader = leader_among(&mut cluster, &all[..2]);
    let follower = others(&all, &[leader, late])[0];
    let index = cluster
        .propose(leader, b"X".to_vec())
        .expect("leader accepts X");
    let acknowledged = cluster.run_until(LONG_MS, |cluster| {
        cluster.acks.iter().any(|ack| ack.index == index)
    });
    assert!(acknowledged, "X was never acknowledged");
    cluster.crash(follower);
    cluster.damage_disk(follower, fault);
    cluster.crash(leader);
    cluster.restart(follower);
    cluster.network.heal();
    cluster.run_for(LONG_MS);
    cluster.restart(leader);
    let survivors = others(&all, &[follower]);
    let new_leader = leader_among(&mut cluster, &survivors);
    assert!(
        holds(&cluster, new_leader, index),
        "the leader after the loss lacks X"
    );
}

/// The follower comes back on an empty data directory.
pub fn amnesia_scripted(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    lost_disk_scripted(seed, config_of, DiskRule::Refuse, DiskFault::Amnesia);
}

/// The follower's log has a flipped bit in a synced entry.
pub fn synced_flip_scripted(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    lost_disk_scripted(seed, config_of, DiskRule::Refuse, DiskFault::SyncedFlip);
}

/// Mutation: the amnesiac follower starts anyway, as a fresh initial member.
pub fn amnesia_started_scripted(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    lost_disk_scripted(seed, config_of, DiskRule::StartAnyway, DiskFault::Amnesia);
}

/// Mutation: the follower starts on its log cut at the flip (taken for a torn tail).
pub fn synced_flip_started_scripted(seed: u64, config_of: fn(NodeId, u64) -> Config) {
    lost_disk_scripted(
        seed,
        config_of,
        DiskRule::StartAnyway,
        DiskFault::SyncedFlip,
    );
}

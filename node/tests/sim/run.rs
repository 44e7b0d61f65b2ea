//! One seed, two phases. Safety: clients write and read a few keys while faults come on the
//! seed's schedule; election safety is checked after every event. Liveness: the network heals,
//! every node restarts, and the cluster must converge (every range led, its replicas equal at
//! equal applied index); then a client reads every key, and each key's whole history must be
//! linearizable, so an acknowledged write lost or applied twice fails the run.

use crate::client::{Intent, SimClient};
use crate::cluster::{Cluster, TICK_MS};
use crate::faults::{FaultCounts, FaultRates, Faults};
use crate::history::{histories, linearizable};
use crate::network::WireFaults;
use crate::node::{Setup, SimNode};
use flotilla_node::config::{Endpoint, Limits};
use flotilla_node::core::{CoreConfig, CoreMutation, CoreTuning, boot};
use flotilla_raft::{GroupId, MultiConfig, NodeId};
use flotilla_shard_manager::META_GROUP;
use flotilla_shard_manager::placement::{Liveness, PlacementConfig, liveness};
use flotilla_storage::kv::SessionLimits;
use flotilla_storage::{LogConfig, SnapshotLoading};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// The longest safety phase, and how long a healed cluster gets to converge.
const SAFETY_MS_MAX: u64 = 20_000;
const LIVENESS_MS_MAX: u64 = 60_000;
const STEP_MS: u64 = 10;
/// With splits on, a range splits by size past this many key and value bytes.
const SPLIT_BYTES: u64 = 20;
/// With splits on, a range splits by load past this many requests per second at its leader.
const SPLIT_LOAD_RPS: u64 = 50;
/// With splits on, the operator starts one every this many milliseconds on average.
const SPLIT_EVERY_MS: u64 = 1_500;
/// With splits on, the operator also merges a range with its right neighbour this often on
/// average.
const MERGE_EVERY_MS: u64 = 2_000;
/// With splits on, a range holding more bytes than this with its session table is not merged
/// (a range's sessions, with the previous values they keep, take a few hundred bytes to a few
/// kilobytes here), so some freezes are refused and their merges given up.
const MERGE_BYTES: u64 = 1_500;
/// With splits on, two neighbours holding fewer bytes than this together merge by themselves:
/// below `SPLIT_BYTES` where ranges split by size, about two pairs where they split by load.
const MERGE_BELOW_BYTES: (u64, u64) = (17, 40);

/// What a seed draws.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub node_count: u64,
    pub range_count: u64,
    pub client_count: usize,
    pub ops_per_client: u64,
    pub key_count: u64,
    pub wire: WireFaults,
    pub rates: FaultRates,
    pub snapshot_entries: u64,
}

impl Swarm {
    pub fn random(rng: &mut ChaCha8Rng) -> Self {
        Self {
            node_count: rng.random_range(3..=5),
            range_count: rng.random_range(4..=64),
            client_count: rng.random_range(3..=12),
            ops_per_client: rng.random_range(200..=600),
            key_count: rng.random_range(3..=10),
            wire: WireFaults {
                drop_percent: rng.random_range(0..=10),
                duplicate_percent: rng.random_range(0..=10),
                delay_ms_max: rng.random_range(1..=5),
                spike_percent: rng.random_range(0..=5),
                spike_ms_max: rng.random_range(0..=300),
            },
            rates: FaultRates {
                every_ms: rng.random_range(100..=1_500),
                crashes: rng.random_bool(0.8),
            },
            snapshot_entries: rng.random_range(20..=200),
        }
    }

    // The two settings below are derived from `snapshot_entries`, so the seeds draw what they
    // drew before they existed.

    /// Log segments before the groups keeping older ones are compacted: few (2 to 5) in half
    /// the seeds, so quiet groups are compacted early often.
    fn compact_beyond_segments(&self) -> usize {
        if self.snapshot_entries.is_multiple_of(2) {
            2 + (self.snapshot_entries / 2 % 4) as usize
        } else {
            CoreTuning::default().compact_beyond_segments
        }
    }

    /// Committed entry bytes one ready cycle hands out: a few entries in a third of the seeds,
    /// so a node restarted with a long log, or far behind, applies its backlog over many cycles.
    fn apply_bytes_per_ready(&self) -> u64 {
        if self.snapshot_entries.is_multiple_of(3) {
            64
        } else {
            multi_config().apply_bytes_per_ready
        }
    }
}

/// What one seed did.
#[derive(Clone, Debug)]
pub struct Report {
    pub swarm: Swarm,
    pub faults: FaultCounts,
    pub operations: usize,
    /// Reads of keys by backup views that were drained (each view reads every key of its
    /// range).
    pub backup_reads: usize,
    pub stops: u64,
    /// Snapshots a replica refused because their data failed the check.
    pub snapshots_refused: u64,
    /// The operator's splits: applied, and refused or given up.
    pub splits: crate::cluster::SplitCounts,
    /// Ranges the run started with, and ranges in the meta group's map at the end.
    pub ranges: (u64, usize),
    /// Groups some node's map showed that no map shows at the end: merged away.
    pub merged: usize,
    /// Splits range leaders asked for by size and by load (the nodes up at the end).
    pub splits_asked: (u64, u64),
    /// Merge entries the replicas of the nodes up at the end applied, and gave up.
    pub merge_entries: (u64, u64),
    /// Merges range leaders asked for by size (the nodes up at the end).
    pub merges_asked: u64,
    pub simulated_ms: u64,
    pub trace_hash: u64,
    /// Whether the ranges' data lived in the nodes' engines.
    pub disk_engine: bool,
    /// What the engines did (the nodes up at the end, since their last start): entries the
    /// log replayed that the engine had applied, snapshots produced for followers, and split
    /// halves hosted from the engine at start.
    pub engine_work: (u64, u64, u64),
    /// Snapshots received and installed, of those restored off the loop, and of those the meta
    /// group's (the nodes up at the end, since their last start).
    pub snapshots_installed: (u64, u64, u64),
    /// Snapshots the nodes took of their own groups, of those written off the loop, and of
    /// those the meta group's (the nodes up at the end, since their last start).
    pub snapshots_taken: (u64, u64, u64),
    /// Groups compacted early because they kept the log's oldest segments (the nodes up at
    /// the end, since their last start).
    pub compactions_forced: u64,
}

/// How a run breaks the rules on purpose (the mutation tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// A broken rule in every node core.
    pub mutation: CoreMutation,
    /// A node that lost its disk starts again empty under its old id (instead of refusing).
    pub amnesiac_restarts: bool,
    /// Whether clients back up ranges now and then; `None`: half the seeds do, drawn from the
    /// seed apart from everything else, so a seed without backups runs as it did before them.
    pub backups: Option<bool>,
    /// Whether the network damages a byte of some snapshot chunks; `None`: half the seeds
    /// do, drawn apart from everything else like `backups`.
    pub corrupt_snapshots: Option<bool>,
    /// Whether an operator splits ranges at random keys now and then; `None`: half the seeds
    /// do, drawn apart from everything else like `backups`.
    pub splits: Option<bool>,
    /// Whether the ranges' applied data lives in each node's engine (on a model disk that
    /// loses power with the node); `None`: half the seeds, drawn apart from everything else.
    pub disk_engine: Option<bool>,
}

/// Runs one seed; panics with what failed.
pub fn run_seed(seed: u64) -> Report {
    run_seed_with(seed, Options::default())
}

/// Runs one seed with `options`; panics with what failed.
pub fn run_seed_with(seed: u64, options: Options) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0de5_c0de_5eed_0000);
    let swarm = Swarm::random(&mut rng);
    // The operator's splits draw from their own stream, so a seed without them runs as before.
    let splits = options.splits.unwrap_or_else(|| {
        ChaCha8Rng::seed_from_u64(seed ^ 0x5b11_75ee_d000_0000).random_bool(0.5)
    });
    let options = Options {
        splits: Some(splits),
        ..options
    };
    // Ranges split by size in half the split seeds, by load in the other half: by size, every
    // range soon holds one key, a median no load split could cut at.
    let by_load = ChaCha8Rng::seed_from_u64(seed ^ 0x10ad_5b11_7000_0000).random_bool(0.5);
    let mut cluster = build(seed, &swarm, rng, (options, by_load));
    cluster.start_all();
    for client in 0..cluster.clients.len() {
        cluster.kick(client);
    }
    let mut faults = Faults::default();
    let mut split_rng = splits.then(|| ChaCha8Rng::seed_from_u64(seed ^ 0x5b11_7c0d_e000_0000));
    let mut merge_rng = splits.then(|| ChaCha8Rng::seed_from_u64(seed ^ 0x3e26_e000_0000_0000));
    while cluster.now_ms < SAFETY_MS_MAX && !clients_done(&cluster) {
        let until = cluster.now_ms + STEP_MS;
        cluster.run_until(until);
        faults.step(&mut cluster, swarm.rates, STEP_MS);
        if let Some(rng) = split_rng.as_mut()
            && rng.random_range(0..SPLIT_EVERY_MS) < STEP_MS
        {
            let key = cluster.setup.keys[rng.random_range(0..cluster.setup.keys.len())].clone();
            cluster.split(key);
        }
        if let Some(rng) = merge_rng.as_mut()
            && rng.random_range(0..MERGE_EVERY_MS) < STEP_MS
        {
            let key = cluster.setup.keys[rng.random_range(0..cluster.setup.keys.len())].clone();
            cluster.merge(key);
        }
    }
    heal(&mut cluster, &mut faults);
    finish_operations(&mut cluster);
    converge(&mut cluster);
    read_every_key(&mut cluster);
    check_histories(&cluster);
    let events = cluster.recorder.events.lock().expect("events");
    let operations = crate::history::completed(&events);
    let backup_reads = events
        .iter()
        .filter(|event| matches!(event, crate::history::Event::Resolve { .. }))
        .count();
    drop(events);
    let range_count = swarm.range_count;
    let final_map = cluster
        .nodes
        .values()
        .find_map(|node| node.core.as_ref())
        .map(|core| core.meta().map.clone());
    let merged = final_map.map_or(0, |map| {
        cluster
            .groups_seen
            .iter()
            .filter(|&&group| map.ranges().all(|range| range.group != group))
            .count()
    });
    Report {
        disk_engine: cluster.setup.disk_engine,
        engine_work: (
            counted(&cluster, |counters| counters.entries_applied_before_start),
            counted(&cluster, |counters| counters.engine_snapshots_produced),
            counted(&cluster, |counters| counters.carves_adopted),
        ),
        snapshots_installed: (
            counted(&cluster, |counters| counters.snapshots_installed),
            counted(&cluster, |counters| counters.snapshots_restored_off_loop),
            counted(&cluster, |counters| counters.meta_snapshots_installed),
        ),
        snapshots_taken: (
            counted(&cluster, |counters| counters.snapshots_taken),
            counted(&cluster, |counters| counters.snapshots_written_off_loop),
            counted(&cluster, |counters| counters.meta_snapshots_written),
        ),
        compactions_forced: counted(&cluster, |counters| counters.compactions_forced),
        swarm,
        faults: faults.counts,
        operations,
        backup_reads,
        stops: cluster.stops,
        snapshots_refused: cluster
            .nodes
            .values()
            .map(|node| node.snapshots_refused)
            .sum(),
        splits: cluster.splits,
        merged,
        ranges: (
            range_count,
            cluster
                .nodes
                .values()
                .find_map(|node| node.core.as_ref())
                .map_or(0, |core| core.meta().map.ranges().count()),
        ),
        splits_asked: (
            counted(&cluster, |counters| counters.splits_asked_by_size),
            counted(&cluster, |counters| counters.splits_asked_by_load),
        ),
        merges_asked: counted(&cluster, |counters| counters.merges_asked_by_size),
        merge_entries: (
            counted(&cluster, |counters| counters.merges_applied),
            counted(&cluster, |counters| counters.merges_given_up),
        ),
        simulated_ms: cluster.now_ms,
        trace_hash: cluster.trace_hash,
    }
}

/// A counter summed over the nodes up at the end.
fn counted(cluster: &Cluster, counter: impl Fn(&flotilla_node::core::Counters) -> u64) -> u64 {
    cluster
        .nodes
        .values()
        .filter_map(|node| node.core.as_ref())
        .map(|core| counter(&core.counters()))
        .sum()
}

fn build(
    seed: u64,
    swarm: &Swarm,
    mut rng: ChaCha8Rng,
    (options, by_load): (Options, bool),
) -> Cluster {
    let endpoints: Vec<Endpoint> = (1..=swarm.node_count)
        .map(|id| Endpoint {
            node: NodeId(id),
            address: format!("127.0.0.1:{}", 7000 + id)
                .parse()
                .expect("an address"),
        })
        .collect();
    let meta = boot::initial_meta(&endpoints, swarm.range_count, 3);
    let keys: Vec<Vec<u8>> = (0..swarm.key_count)
        .map(flotilla_node::workload::key_of)
        .collect();
    let splits = options.splits == Some(true);
    let setup = Setup {
        keys: keys.clone(),
        log: LogConfig {
            segment_bytes_max: 256 << 10,
            record_bytes_max: 32 << 10,
            sync_bytes_max: 128 << 10,
            pending_writes_max: 16,
            preallocate: false,
            recent_entries_per_group: 64,
            recent_bytes_per_group: 1 << 20,
            // Every snapshot of a range on disk is streamed into its spool on the ask after the
            // one that found it missing, so every run takes the path where a leader waits for
            // it (deterministically); every snapshot file is sent from the file, a chunk at a
            // time, and few at once, so transfers are given up and started over.
            snapshot_loading: SnapshotLoading::NextAsk,
            snapshot_inline_bytes_max: 0,
            snapshot_loads_max: 4,
            snapshot_sends_max: 2,
        },
        core: CoreConfig {
            node: NodeId(0),
            tick_ms: TICK_MS,
            snapshot_entries: swarm.snapshot_entries,
            limits: Limits::small_for_tests(),
            session_limits: SessionLimits::default(),
            // With splits, ranges also split by size (any range holding two of the clients'
            // pairs) or by load.
            tuning: CoreTuning {
                split_bytes: if splits && !by_load { SPLIT_BYTES } else { 0 },
                split_load_rps: if splits && by_load { SPLIT_LOAD_RPS } else { 0 },
                merge_bytes: if splits {
                    MERGE_BYTES
                } else {
                    CoreTuning::default().merge_bytes
                },
                merge_below_bytes: match (splits, by_load) {
                    (false, _) => 0,
                    (true, false) => MERGE_BELOW_BYTES.0,
                    (true, true) => MERGE_BELOW_BYTES.1,
                },
                // Seeds splitting by load merge only ranges that are cold.
                merge_below_rps: if splits && by_load {
                    SPLIT_LOAD_RPS / 2
                } else {
                    0
                },
                merge_wait_ms: 1_000,
                compact_beyond_segments: swarm.compact_beyond_segments(),
                ..CoreTuning::default()
            },
            placement: placement_config(),
            mutation: options.mutation,
        },
        multi: MultiConfig {
            apply_bytes_per_ready: swarm.apply_bytes_per_ready(),
            ..multi_config()
        },
        meta: meta.clone(),
        seed,
        disk_engine: options.disk_engine.unwrap_or_else(|| {
            ChaCha8Rng::seed_from_u64(seed ^ 0xd15c_e561_0e00_0000).random_bool(0.5)
        }),
    };
    let nodes = endpoints
        .iter()
        .map(|endpoint| {
            let directory = u128::from(rng.random::<u64>()) << 64 | u128::from(endpoint.node.0);
            let fsync_ms = rng.random_range(0..=3);
            let rate = rng.random_range(90..=110);
            (
                endpoint.node,
                SimNode::new(endpoint.node, directory, fsync_ms, rate),
            )
        })
        .collect();
    let mut cluster = Cluster::new(nodes, setup, swarm.wire.clone(), rng);
    cluster.amnesiac_restarts = options.amnesiac_restarts;
    cluster.backups = options.backups.unwrap_or_else(|| {
        ChaCha8Rng::seed_from_u64(seed ^ 0xbac0_0b5e_ed00_0000).random_bool(0.5)
    });
    let corrupt = options.corrupt_snapshots.unwrap_or_else(|| {
        ChaCha8Rng::seed_from_u64(seed ^ 0xc0de_dbad_5eed_0000).random_bool(0.5)
    });
    cluster.corrupt_snapshots =
        corrupt.then(|| ChaCha8Rng::seed_from_u64(seed ^ 0x5a15_c0de_0b17_0000));
    for id in 0..swarm.client_count {
        let client_seed = seed ^ (id as u64 + 1) << 40;
        let client = SimClient::new(
            id,
            meta.map.clone(),
            keys.clone(),
            swarm.ops_per_client,
            client_seed,
        );
        cluster.clients.push(client);
    }
    cluster
}

/// The placement driver of the simulated nodes: a lost node's replicas are re-placed after
/// 4 s, within the safety phase.
fn placement_config() -> PlacementConfig {
    PlacementConfig {
        replicas_per_range: 3,
        meta_voters: 3,
        down_after_ms: 4_000,
        heartbeat_stale_ms: 1_000,
        moves_per_node_max: 4,
        moves_in_flight_max: 16,
        leader_transfers_per_node_max: 4,
        leader_transfers_in_flight_max: 8,
        step_timeout_ms: 5_000,
        catch_up_bytes_per_second_min: 1 << 20,
        leader_load_tolerance_percent: 10,
        ranges_scanned_per_tick_max: 256,
    }
}

/// The MultiRaft timing of the simulated nodes, in ticks of `TICK_MS`.
fn multi_config() -> MultiConfig {
    let mut multi = MultiConfig::new(NodeId(0));
    multi.raft.election_timeout_ticks_min = 15;
    multi.raft.election_timeout_ticks_max = 30;
    multi.raft.heartbeat_interval_ticks = 3;
    multi.heartbeat_interval_ticks = 3;
    multi.node_timeout_ticks = 15;
    // As the node's default: an idle peer hears this node every other heartbeat.
    multi.liveness_every_heartbeats = 2;
    multi
}

fn clients_done(cluster: &Cluster) -> bool {
    cluster
        .clients
        .iter()
        .all(|client| client.ops_left == 0 && client.is_idle())
}

/// The liveness phase begins: a reliable network, every node up and running.
fn heal(cluster: &mut Cluster, faults: &mut Faults) {
    cluster.note(|| "LIVENESS: heal and restart everything".to_string());
    cluster.network.heal();
    cluster.network.faults = WireFaults::reliable();
    faults.restart_all(cluster);
    let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
    for id in ids {
        let now = cluster.now_ms;
        cluster.wake(id, now + 1);
    }
}

/// No new operations; the ones in flight end (answered, or given up at their deadline).
fn finish_operations(cluster: &mut Cluster) {
    for client in &mut cluster.clients {
        client.ops_left = 0;
    }
    let deadline = cluster.now_ms + 2 * crate::client::DEADLINE_MS;
    while !clients_done(cluster) {
        assert!(cluster.now_ms < deadline, "client operations never ended");
        let until = cluster.now_ms + 10;
        cluster.run_until(until);
    }
}

/// Runs until every range has a leader and its replicas are equal, or fails.
fn converge(cluster: &mut Cluster) {
    let deadline = cluster.now_ms + LIVENESS_MS_MAX;
    loop {
        let until = cluster.now_ms + 100;
        cluster.run_until(until);
        match converged(cluster) {
            Ok(()) => return,
            Err(reason) if cluster.now_ms >= deadline => {
                panic!(
                    "liveness violated: not converged {LIVENESS_MS_MAX} ms after healing: {reason}"
                )
            }
            Err(_) => {}
        }
    }
}

/// Every group has a leader, every replica applied what it committed, all replicas of a
/// group hold the same state at the same applied index, and the placement driver has made
/// every range whole again (`fully_placed`).
fn converged(cluster: &Cluster) -> Result<(), String> {
    if let Some(id) = cluster.joiners.keys().next() {
        let meta: Vec<String> = cluster
            .nodes
            .iter()
            .filter_map(|(node, sim)| {
                let raft = sim.core.as_ref()?.multi().group(META_GROUP)?;
                Some(format!(
                    "{node}: {:?} {:?}",
                    raft.status(),
                    raft.membership()
                ))
            })
            .collect();
        return Err(format!("{id} has not joined yet; meta replicas: {meta:?}"));
    }
    let mut groups: BTreeMap<GroupId, Vec<NodeId>> = BTreeMap::new();
    for (&id, node) in cluster.nodes.iter().filter(|(_, node)| !node.refused) {
        let core = node.core.as_ref().ok_or(format!("{id} is down"))?;
        for group in core.multi().group_ids() {
            groups.entry(group).or_default().push(id);
        }
    }
    // The members are the ones the group's leader counts: a replica destroyed after its
    // removal is a tombstone, and one removed but never told lingers outside the group.
    let leaders_members: BTreeMap<GroupId, Vec<NodeId>> = groups
        .iter()
        .filter_map(|(&group, replicas)| {
            replicas.iter().find_map(|&id| {
                let raft = cluster.nodes[&id].core.as_ref()?.multi().group(group)?;
                (raft.role() == flotilla_raft::Role::Leader)
                    .then(|| (group, raft.membership().replicas().collect()))
            })
        })
        .collect();
    for (group, replicas) in &mut groups {
        if let Some(members) = leaders_members.get(group) {
            replicas.retain(|id| members.contains(id));
        }
    }
    fully_placed(cluster)?;
    // A group no map shows was merged away: every replica of it is destroyed, a tombstone
    // with no membership that nobody leads.
    let mapped: std::collections::BTreeSet<GroupId> = cluster
        .nodes
        .values()
        .filter_map(|node| node.core.as_ref())
        .find(|core| {
            core.multi()
                .group(META_GROUP)
                .is_some_and(|raft| raft.role() == flotilla_raft::Role::Leader)
        })
        .ok_or("the meta group has no leader")?
        .meta()
        .map
        .ranges()
        .map(|range| range.group)
        .collect();
    let (merged_away, groups): (BTreeMap<_, _>, BTreeMap<_, _>) = groups
        .into_iter()
        .partition(|(group, _)| *group != META_GROUP && !mapped.contains(group));
    for (group, replicas) in merged_away {
        for id in replicas {
            let core = cluster.nodes[&id].core.as_ref().expect("up");
            let raft = core.multi().group(group).expect("hosted");
            if raft.membership().replicas().next().is_some() {
                let machine = core
                    .state_machine(group)
                    .map(|machine| (machine.bounds().clone(), machine.merge_state().clone()));
                return Err(format!(
                    "{id} still holds a replica of {group}, which no map shows (merged away): \
                     {:?} {:?} at {:?}, state {machine:?}, listed merged: {}",
                    raft.role(),
                    raft.membership(),
                    raft.status().applied,
                    core.meta().merged.contains(&group)
                ));
            }
        }
    }
    for (group, replicas) in groups {
        let mut leader = None;
        let mut states = Vec::new();
        for id in replicas {
            let core = cluster.nodes[&id].core.as_ref().expect("up");
            let raft = core.multi().group(group).expect("hosted");
            if raft.role() == flotilla_raft::Role::Leader {
                leader = Some(id);
            }
            let status = raft.status();
            if status.applied != status.committed {
                return Err(format!(
                    "{id} applied {:?} of {:?} in {group}",
                    status.applied, status.committed
                ));
            }
            states.push((id, status.applied, state_of(core, group)));
        }
        leader.ok_or_else(|| {
            let replicas: Vec<String> = cluster
                .nodes
                .iter()
                .filter_map(|(id, node)| {
                    let core = node.core.as_ref()?;
                    let raft = core.multi().group(group)?;
                    let machine = core
                        .state_machine(group)
                        .map(|machine| (machine.bounds().clone(), machine.merge_state().clone()));
                    Some(format!(
                        "{id}: {:?} {:?} at {:?}, state {machine:?}, status {:?}",
                        raft.role(),
                        raft.membership(),
                        raft.status().applied,
                        raft.status()
                    ))
                })
                .collect();
            format!("{group} has no leader; replicas: {replicas:?}")
        })?;
        if let Some((first, applied, state)) = states.first() {
            for (id, other_applied, other) in &states[1..] {
                if other_applied != applied || other != state {
                    return Err(format!(
                        "{group}: {first} at {applied:?} and {id} at {other_applied:?} differ"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The meta leader's view shows no operator in flight and every range with three voters (or
/// as many as there are nodes the driver may use), no learner, each on a node that is up; and
/// every node the driver may use holds within one of the mean number of replicas.
fn fully_placed(cluster: &Cluster) -> Result<(), String> {
    let leader = cluster
        .nodes
        .values()
        .filter_map(|node| node.core.as_ref())
        .find(|core| {
            core.multi()
                .group(flotilla_shard_manager::META_GROUP)
                .is_some_and(|raft| raft.role() == flotilla_raft::Role::Leader)
        })
        .ok_or("the meta group has no leader")?;
    let view = &leader.meta().cluster;
    if let Some(operator) = view.operators().next() {
        let range = view.range(operator.range).expect("the operator's range");
        let actual: Vec<String> = cluster
            .nodes
            .values()
            .filter_map(|node| node.core.as_ref())
            .filter_map(|core| {
                let raft = core.multi().group(range.group)?;
                Some(format!(
                    "{}: {:?} {:?} at {:?}",
                    core.multi().node(),
                    raft.role(),
                    raft.membership(),
                    raft.membership_index()
                ))
            })
            .collect();
        return Err(format!(
            "operator in flight: {operator} (step {}, range recorded {:?} at {}, led by {:?}; replicas: {actual:?})",
            operator.step_index, range.replicas, range.membership_index, range.leader
        ));
    }
    let config = placement_config();
    let now_ms = cluster.now().wall_ms;
    let usable: Vec<NodeId> = view
        .nodes()
        .filter(|node| {
            liveness(node, now_ms, &config) == Liveness::Live
                && node.state == flotilla_shard_manager::placement::NodeState::Up
        })
        .map(|node| node.id)
        .collect();
    let wanted = config.replicas_per_range.min(usable.len());
    for range in view.ranges() {
        let on_usable = range
            .voter_nodes()
            .filter(|node| usable.contains(node))
            .count();
        if on_usable != wanted || range.learner_nodes().next().is_some() {
            return Err(format!("r{} has replicas {:?}", range.id.0, range.replicas));
        }
        // A replica on a node gone for good stays only while there is no node to move it to.
        let stranded = range.voter_nodes().find(|node| !usable.contains(node));
        if let Some(node) = stranded.filter(|_| wanted == config.replicas_per_range) {
            return Err(format!("r{} keeps a replica on {node}", range.id.0));
        }
    }
    let counts: Vec<usize> = usable
        .iter()
        .map(|&node| view.replica_count(node))
        .collect();
    let (least, most) = (counts.iter().min(), counts.iter().max());
    if let (Some(least), Some(most)) = (least, most)
        && most - least > 2
    {
        return Err(format!(
            "replica counts {counts:?} on {usable:?} are not balanced"
        ));
    }
    // The meta group: `meta_voters` voters on usable nodes (all of them when fewer), no more.
    let meta = leader
        .multi()
        .group(flotilla_shard_manager::META_GROUP)
        .expect("the meta leader's group")
        .membership();
    let voting_usable = meta
        .voters
        .iter()
        .filter(|node| usable.contains(node))
        .count();
    if meta.is_joint()
        || voting_usable != config.meta_voters.min(usable.len())
        || meta.voters.len() > config.meta_voters
    {
        return Err(format!(
            "the meta group's membership {meta:?} is not {} voters on {usable:?}",
            config.meta_voters
        ));
    }
    Ok(())
}

/// A group's state machine, comparable across replicas.
fn state_of(core: &crate::node::Core, group: GroupId) -> Vec<u8> {
    match core.state_machine(group) {
        Some(machine) => flotilla_storage::machine::encode_machine(machine, 1 << 20)
            .expect("a state machine of the simulator reads its state"),
        None => core.meta().encode(),
    }
}

/// The value an operation writes (what a later read could see), if any.
fn written_value(op: &crate::history::Op) -> Option<Option<u64>> {
    use crate::history::Op;
    match op {
        Op::Swap { new, .. } | Op::MaybeWrite(new) | Op::MaybeCas { new, .. } => Some(*new),
        Op::Cas {
            new, swapped: true, ..
        } => Some(*new),
        Op::Cas { .. } | Op::Read(_) => None,
    }
}

/// The value an operation saw, if any.
fn observed_value(op: &crate::history::Op) -> Option<Option<u64>> {
    use crate::history::Op;
    match op {
        Op::Read(value)
        | Op::Swap {
            previous: value, ..
        }
        | Op::Cas { current: value, .. } => Some(*value),
        Op::MaybeWrite(_) | Op::MaybeCas { .. } => None,
    }
}

/// A client reads every key once, after the faults: a lost acknowledged write shows up there.
fn read_every_key(cluster: &mut Cluster) {
    let keys = cluster.setup.keys.len();
    for key in 0..keys {
        cluster.start_op(0, key, Intent::Get);
        let deadline = cluster.now_ms + 10_000;
        while !cluster.clients[0].is_idle() {
            assert!(
                cluster.now_ms < deadline,
                "the final read of key {key} never finished"
            );
            let until = cluster.now_ms + 10;
            cluster.run_until(until);
        }
    }
}

fn check_histories(cluster: &Cluster) {
    let events = cluster.recorder.events.lock().expect("events");
    for (key, history) in histories(&events) {
        if cluster.trace && !linearizable(&history) {
            // A smaller failing history: an operation is dropped if the rest still fails and
            // no other operation saw the value it wrote.
            let mut kept = history.clone();
            let ids: Vec<usize> = history.iter().map(|(id, _)| *id).collect();
            for id in ids {
                let written = kept.iter().find_map(|(other, action)| match action {
                    todc_utils::Action::Response(op) if *other == id => written_value(op),
                    _ => None,
                });
                let seen = written.is_some_and(|value| {
                    kept.iter().any(|(other, action)| {
                        *other != id
                            && matches!(action, todc_utils::Action::Response(op)
                                if observed_value(op) == Some(value))
                    })
                });
                if seen {
                    continue;
                }
                let without: Vec<_> = kept
                    .iter()
                    .filter(|(other, _)| *other != id)
                    .cloned()
                    .collect();
                if without.len() < kept.len() && !linearizable(&without) {
                    kept = without;
                }
            }
            for event in &kept {
                eprintln!("key {key}: {event:?}");
            }
        }
        assert!(
            linearizable(&history),
            "the history of key {key} is not linearizable ({} events)",
            history.len()
        );
    }
}

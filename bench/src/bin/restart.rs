//! Issue 22's measurements on real processes: three `flotilla server` processes on this machine
//! with `--ranges` ranges of three replicas each (so every node hosts every range), their
//! applied data in `--engine` (`[storage] engine`), each serving metrics over HTTP.
//!
//! 1. Load: one client keeps `--clients` puts in flight until `--mib` MiB of `--value-bytes`
//!    values (incompressible, each key written once) are acknowledged: puts/s and MiB/s.
//! 2. Once every replica has applied everything committed: each node's resident memory
//!    (`VmRSS`, split into anonymous and file pages, and the peak `VmHWM`), its data
//!    directory's bytes (file lengths) in the log's folder and the engine's, and how many of the
//!    entries it applied its log still holds.
//! 3. One node (not the meta group's leader) killed with SIGKILL; every group's commit index on
//!    the live replicas noted at that moment; the node started again on its data directory.
//!    With `--mib-while-down`, that many MiB more are put while it is down, so its leaders
//!    compact past it and it catches up from the snapshots they send; every node's memory
//!    (the peaks include sending and receiving them) is printed after the catch-up.
//!    From the process's spawn: (a) the time until it answers (metrics or status), (b) until
//!    every group it hosts has applied at least the index noted, (c) until its `/ready`; then
//!    its resident memory.
//! 4. `--check-keys` acknowledged keys picked at random are read back: a missing or wrong value
//!    is a failure, not a measurement. The restarted node's memory once more, 10 s later.
//!
//! ```text
//! cargo build --release -p flotilla-node -p flotilla-bench && \
//!     target/release/restart --flotilla target/release/flotilla --engine disk --mib 256
//! ```
//!
//! Waits are bounded by `--timeout-seconds` (a failure, not a measurement).
#![allow(clippy::print_stdout)]

use clap::{Parser, ValueEnum};
use flotilla_bench::local_nodes::{answers_ok, folder_bytes, proc_status_kib, wait};
use flotilla_node::Client;
use flotilla_node::local::{LocalCluster, client_runtime, connect_when_ready};
use flotilla_node::workload::{key_of, mix};
use flotilla_raft::{GroupId, NodeId};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Load, memory, disk and restart time of three real nodes with data in one engine.
#[derive(Parser, Debug)]
struct Args {
    /// The `flotilla` binary (a release build).
    #[arg(long)]
    flotilla: PathBuf,
    /// Where each range's applied data lives (`[storage] engine`).
    #[arg(long, value_enum, default_value_t = Engine::Disk)]
    engine: Engine,
    /// Ranges of the cluster, each with three replicas.
    #[arg(long, default_value_t = 16)]
    ranges: u64,
    /// MiB of values loaded.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    /// Bytes of each value.
    #[arg(long, default_value_t = 1024)]
    value_bytes: u64,
    /// Puts the loading client keeps in flight.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// MiB of values put (to new keys) while the node is down, before it starts again: past
    /// a compaction, so it catches up from snapshots its leaders send (0: none).
    #[arg(long, default_value_t = 0)]
    mib_while_down: u64,
    /// Acknowledged keys read back at the end.
    #[arg(long, default_value_t = 1000)]
    check_keys: u64,
    /// The longest any wait may take.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// Where the cluster's directory goes (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// More of the nodes' configuration, appended to the file they share (TOML; the file
    /// opens with `[storage]`, so settings of other sections come under their own header),
    /// e.g. `--config-extra $'[raft]\napply_bytes_per_ready = 1073741824'`.
    #[arg(long, default_value = "")]
    config_extra: String,
}

/// `[storage] engine`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Engine {
    /// Each range in memory, rebuilt at start from its snapshot file and the log.
    Memory,
    /// Every range in one fjall engine per node; a start replays only the log after it.
    Disk,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
        }
    }
}

const NODES: u64 = 3;
const MIB: u64 = 1 << 20;

/// The meta group (the range map), which every node hosts: `flotilla-shard-manager`'s
/// `META_GROUP`, not a dependency of this crate.
const META_GROUP: GroupId = GroupId(0);

/// How long after the check the restarted node's memory is read again.
const LATER: Duration = Duration::from_secs(10);

/// How often the restarted node is asked whether it answers, has applied, is ready.
const POLL: Duration = Duration::from_millis(20);

fn main() -> Result<(), String> {
    let args = Args::parse();
    let temporary = tempfile::tempdir().map_err(|error| error.to_string())?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    let config = dir.join("server.toml");
    let text = format!(
        "[storage]\nengine = \"{}\"\n{}\n",
        args.engine.name(),
        args.config_extra
    );
    std::fs::write(&config, text).map_err(|error| error.to_string())?;
    let mut cluster = LocalCluster::start_with_http_and_config(
        &args.flotilla,
        &dir,
        (NODES, args.ranges),
        config,
    )
    .map_err(|error| error.to_string())?;
    let runtime = client_runtime(flotilla_node::local::LOCAL_CLIENT_THREADS)
        .map_err(|error| error.to_string())?;
    let client = runtime
        .block_on(connect_when_ready(cluster.client_options(), timeout))
        .map_err(|error| error.to_string())?;
    println!(
        "{} ranges x 3 replicas, engine {}, in {}",
        args.ranges,
        args.engine.name(),
        dir.display()
    );

    let acknowledged = runtime.block_on(load(&client, &args));
    wait(
        timeout,
        "every replica to apply everything committed",
        || runtime.block_on(settled(&client)).then_some(()),
    )?;
    report_memory_and_disk(&cluster, &runtime, &client);
    let restarted = restart_one(&args, &mut cluster, (&runtime, &client), timeout)?;
    if args.mib_while_down > 0 {
        // The leaders sent the snapshots: their peaks (`VmHWM`) include that.
        for node in nodes() {
            println!(
                "after the catch-up, node {}: {}",
                node.0,
                memory(&cluster, node)
            );
        }
    }
    runtime.block_on(check(&client, &acknowledged, &args))?;
    // Whether what the start took is given back, or kept.
    std::thread::sleep(LATER);
    println!(
        "restarted node {}, {} s later: {}",
        restarted.0,
        LATER.as_secs(),
        memory(&cluster, restarted)
    );
    cluster.stop();
    Ok(())
}

/// What one of the puts in flight saw: the key numbers acknowledged, and the errors of those
/// that failed.
#[derive(Default)]
struct Puts {
    acknowledged: Vec<u64>,
    errors: Vec<String>,
}

/// Puts `--mib` MiB of values with `--clients` in flight; the key numbers acknowledged.
async fn load(client: &Client, args: &Args) -> Vec<u64> {
    load_from(client, args, 0, args.mib * MIB / args.value_bytes).await
}

/// Puts key numbers `first..first + puts` with `--clients` in flight; those acknowledged.
async fn load_from(client: &Client, args: &Args, first: u64, puts: u64) -> Vec<u64> {
    let next = Arc::new(AtomicU64::new(first));
    let end = first + puts;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (client, next) = (client.clone(), Arc::clone(&next));
            tokio::spawn(put_until(client, next, end, args.value_bytes))
        })
        .collect();
    let mut all = Puts::default();
    for task in tasks {
        let done = task.await.unwrap_or_default();
        all.acknowledged.extend(done.acknowledged);
        all.errors.extend(done.errors);
    }
    let seconds = started.elapsed().as_secs_f64();
    let count = all.acknowledged.len() as u64;
    println!(
        "load: {count} of {puts} puts of {} B acknowledged in {seconds:.1} s: {:.0} puts/s, {:.1} MiB/s of values",
        args.value_bytes,
        count as f64 / seconds,
        (count * args.value_bytes) as f64 / MIB as f64 / seconds
    );
    if let Some(first) = all.errors.first() {
        println!("load: {} puts failed, the first: {first}", all.errors.len());
    }
    all.acknowledged
}

/// One of the puts in flight: puts key numbers from `next` until `puts`. A put that fails is
/// not retried (its outcome may be unknown) and not counted as acknowledged.
async fn put_until(client: Client, next: Arc<AtomicU64>, puts: u64, value_bytes: u64) -> Puts {
    let mut done = Puts::default();
    loop {
        let number = next.fetch_add(1, Ordering::Relaxed);
        if number >= puts {
            return done;
        }
        match client
            .put(key_of(number), value_of(number, value_bytes))
            .await
        {
            Ok(_) => done.acknowledged.push(number),
            Err(error) => done.errors.push(error.to_string()),
        }
    }
}

/// The value of key number `number`: `bytes` pseudo-random bytes from it (incompressible, so
/// no engine stores less than what was sent).
fn value_of(number: u64, bytes: u64) -> Vec<u8> {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    let mut value = Vec::with_capacity(bytes + 8);
    let mut state = mix(number);
    while value.len() < bytes {
        state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
        value.extend_from_slice(&state.to_be_bytes());
    }
    value.truncate(bytes);
    value
}

/// Whether every node answers and every group is applied to one commit index everywhere.
async fn settled(client: &Client) -> bool {
    let mut groups: BTreeMap<GroupId, Vec<(u64, u64)>> = BTreeMap::new();
    for (_, status) in client.statuses().await {
        let Ok(status) = status else { return false };
        for group in status.groups {
            let indexes = groups.entry(group.group).or_default();
            indexes.push((group.committed, group.applied));
        }
    }
    groups.values().all(|replicas| {
        let committed = replicas.iter().map(|&(committed, _)| committed).max();
        replicas.len() == NODES as usize
            && replicas
                .iter()
                .all(|&(_, applied)| Some(applied) == committed)
    })
}

/// Prints each node's resident memory, its data directory's bytes and how much of what it
/// applied its log still holds.
fn report_memory_and_disk(cluster: &LocalCluster, runtime: &Runtime, client: &Client) {
    for node in nodes() {
        let data = cluster.data_dir(node);
        let (log, engine) = (
            folder_bytes(&data.join("log")),
            folder_bytes(&data.join("engine")),
        );
        let other = folder_bytes(&data).saturating_sub(log + engine);
        println!(
            "node {}: {}; data {} in log/, {} in engine/, {} else",
            node.0,
            memory(cluster, node),
            mib(log),
            mib(engine),
            mib(other),
        );
        if let Ok(status) = runtime.block_on(client.status(node)) {
            let groups = &status.groups;
            let applied: u64 = groups.iter().map(|g| g.applied).sum();
            let in_log: u64 = groups
                .iter()
                .map(|g| g.applied.saturating_sub(g.snapshot_index))
                .sum();
            println!(
                "node {}: {} groups; the log holds {in_log} of the {applied} entries applied \
                 (the rest compacted into snapshots or the engine)",
                node.0,
                groups.len()
            );
        }
    }
}

/// The node's resident memory (`VmRSS`: anonymous plus file pages such as the mapped log) and
/// its peak (`VmHWM`).
fn memory(cluster: &LocalCluster, node: NodeId) -> String {
    let field = |name| mib(proc_status_kib(cluster, node, name) * 1024);
    format!(
        "RSS {} (anonymous {}, file {}), peak {}",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:")
    )
}

/// Kills a node that does not lead the meta group, starts it again and prints how soon it
/// answers, has applied what was committed at the kill, and is ready; the node.
fn restart_one(
    args: &Args,
    cluster: &mut LocalCluster,
    (runtime, client): (&Runtime, &Client),
    timeout: Duration,
) -> Result<NodeId, String> {
    // A client of its own that redials a node at once, so it sees the restarted node answer
    // as soon as it does (the default pause between dials is 500 ms).
    let probe = runtime
        .block_on(Client::connect(flotilla_node::ClientOptions {
            redial_pause: POLL,
            attempt_timeout: Duration::from_millis(250),
            ..cluster.client_options()
        }))
        .map_err(|error| error.to_string())?;
    let (victim, led) = runtime.block_on(victim(&probe));
    cluster.kill(victim);
    if args.mib_while_down > 0 {
        let first = args.mib * MIB / args.value_bytes;
        let puts = args.mib_while_down * MIB / args.value_bytes;
        let acknowledged = runtime.block_on(load_from(client, args, first, puts));
        println!(
            "while node {} was down: {} of {puts} more puts acknowledged",
            victim.0,
            acknowledged.len()
        );
    }
    let targets = runtime.block_on(committed_on_live(&probe, victim))?;
    println!(
        "killed node {} (leading {led} of {} groups); {} entries committed over them",
        victim.0,
        targets.len(),
        targets.values().sum::<u64>()
    );
    let spawned = Instant::now();
    cluster
        .restart(&args.flotilla, victim)
        .map_err(|error| error.to_string())?;
    let times = measure_restart(
        cluster,
        runtime,
        &probe,
        (victim, &targets),
        spawned,
        timeout,
    )?;
    print_restart(args, victim, &times);
    println!(
        "restarted node {}: {}; anonymous peak until ready (read every {} ms) {}",
        victim.0,
        memory(cluster, victim),
        POLL.as_millis(),
        mib(times.anonymous_peak_kib * 1024)
    );
    Ok(victim)
}

/// The node to kill (the highest that does not lead the meta group, if the statuses tell) and
/// how many groups it leads.
async fn victim(client: &Client) -> (NodeId, usize) {
    let statuses = client.statuses().await;
    let leads = |node: NodeId, group: Option<GroupId>| {
        statuses
            .iter()
            .filter(|(id, _)| *id == node)
            .filter_map(|(_, status)| status.as_ref().ok())
            .flat_map(|status| &status.groups)
            .filter(|g| g.role == "Leader" && group.is_none_or(|group| g.group == group))
            .count()
    };
    let victim = nodes()
        .rev()
        .find(|&node| leads(node, Some(META_GROUP)) == 0)
        .unwrap_or(NodeId(NODES));
    (victim, leads(victim, None))
}

/// Per group the victim hosts, the highest commit index its live replicas report.
async fn committed_on_live(
    client: &Client,
    victim: NodeId,
) -> Result<BTreeMap<GroupId, u64>, String> {
    let mut targets = BTreeMap::new();
    for node in nodes().filter(|&node| node != victim) {
        let status = client
            .status(node)
            .await
            .map_err(|error| error.to_string())?;
        for group in status.groups {
            let target = targets.entry(group.group).or_insert(0);
            *target = group.committed.max(*target);
        }
    }
    Ok(targets)
}

/// From the restarted process's spawn: when it answered, had applied the targets, was ready.
struct RestartTimes {
    answering: Duration,
    applied: Duration,
    ready: Duration,
    /// The most anonymous memory (`RssAnon`) seen, read at every poll until ready: the start's
    /// own memory, without the file pages of the log it reads (which `VmHWM` counts).
    anonymous_peak_kib: u64,
}

fn measure_restart(
    cluster: &LocalCluster,
    runtime: &Runtime,
    probe: &Client,
    (victim, targets): (NodeId, &BTreeMap<GroupId, u64>),
    spawned: Instant,
    timeout: Duration,
) -> Result<RestartTimes, String> {
    let (mut answering, mut applied, mut ready) = (None, None, None);
    let mut anonymous_peak_kib = 0;
    loop {
        anonymous_peak_kib = anonymous_peak_kib.max(proc_status_kib(cluster, victim, "RssAnon:"));
        let status = runtime.block_on(probe.status(victim)).ok();
        if answering.is_none() && (status.is_some() || metrics_answer(cluster, victim)) {
            answering = Some(spawned.elapsed());
        }
        let caught_up = status.is_some_and(|status| {
            targets.iter().all(|(group, target)| {
                status
                    .groups
                    .iter()
                    .any(|g| g.group == *group && g.applied >= *target)
            })
        });
        if applied.is_none() && caught_up {
            applied = Some(spawned.elapsed());
        }
        if ready.is_none() && is_ready(cluster, victim) {
            ready = Some(spawned.elapsed());
        }
        if let (Some(answering), Some(applied), Some(ready)) = (answering, applied, ready) {
            return Ok(RestartTimes {
                answering,
                applied,
                ready,
                anonymous_peak_kib,
            });
        }
        if spawned.elapsed() > timeout {
            return Err(format!(
                "the restarted node did not serve within {} s: answering {answering:?}, \
                 applied {applied:?}, ready {ready:?}",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn print_restart(args: &Args, victim: NodeId, times: &RestartTimes) {
    let engine = args.engine.name();
    let node = victim.0;
    let seconds = |time: Duration| time.as_secs_f64();
    println!(
        "restart ({engine}, {} MiB): node {node} answering after {:.2} s",
        args.mib,
        seconds(times.answering)
    );
    println!(
        "restart ({engine}, {} MiB): node {node} applied every group to its commit at the kill after {:.2} s",
        args.mib,
        seconds(times.applied)
    );
    println!(
        "restart ({engine}, {} MiB): node {node} /ready after {:.2} s",
        args.mib,
        seconds(times.ready)
    );
}

/// Reads `--check-keys` acknowledged keys picked at random; an error names the first that is
/// missing or wrong.
async fn check(client: &Client, acknowledged: &[u64], args: &Args) -> Result<(), String> {
    let count = u64::try_from(acknowledged.len()).unwrap_or(u64::MAX);
    if count == 0 {
        return Err("no put was acknowledged".into());
    }
    let checks = args.check_keys.min(count);
    for pick in 0..checks {
        let index = usize::try_from(mix(pick) % count).unwrap_or(0);
        let number = acknowledged.get(index).copied().unwrap_or(0);
        let value = client
            .get(key_of(number))
            .await
            .map_err(|error| format!("reading key number {number}: {error}"))?;
        if value != Some(value_of(number, args.value_bytes)) {
            let found = value.map(|value| value.len());
            return Err(format!(
                "acknowledged key number {number} reads back wrong: {found:?} bytes"
            ));
        }
    }
    println!("check: {checks} acknowledged keys picked at random read back intact");
    Ok(())
}

fn nodes() -> impl DoubleEndedIterator<Item = NodeId> {
    (1..=NODES).map(NodeId)
}

fn metrics_answer(cluster: &LocalCluster, node: NodeId) -> bool {
    answers_ok(cluster, node, "/metrics")
}

fn is_ready(cluster: &LocalCluster, node: NodeId) -> bool {
    answers_ok(cluster, node, "/ready")
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB as f64)
}

//! Issue 23's measurements on real processes: three `flotilla server` processes on this machine
//! with `--ranges` ranges of three replicas each (so every node hosts every range), started the
//! way `flotilla demo` starts them, each serving metrics over HTTP.
//!
//! 1. An empty cluster (one range): each node's resident memory once it is ready, the base.
//! 2. A new cluster of `--ranges` ranges: the time from spawning the processes to each node
//!    answering metrics (listening), and to every node hosting every range with a leader; the
//!    peak resident memory (`VmHWM`) against the steady one.
//! 3. Idle: once 99 % of every node's groups are quiescent (the placement driver balances
//!    leaders after the elections), CPU per node over `--idle-seconds` and Raft batches sent
//!    per second.
//!    Memory per replica: (steady RSS - the empty node's RSS) / replicas hosted.
//! 4. One node killed and restarted: the time from its start to `/ready` (every range it hosts
//!    led and applied to what it knows committed), and the elections the cluster held for it,
//!    per range (elections won on all nodes, before and after).
//!
//! ```text
//! cargo build --release && cargo run --release -p flotilla-bench --bin scale -- \
//!     --flotilla target/release/flotilla --ranges 100000
//! ```
//!
//! Waits are bounded by `--timeout-seconds` (a failure, not a measurement).
#![allow(clippy::print_stdout)]

use clap::Parser;
use flotilla_bench::local_nodes::{answers_ok, get, proc_status_kib, wait};
use flotilla_node::local::LocalCluster;
use flotilla_raft::NodeId;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Start-up, memory and idle cost of many ranges on three real nodes.
#[derive(Parser, Debug)]
struct Args {
    /// The `flotilla` binary (a release build).
    #[arg(long)]
    flotilla: PathBuf,
    /// Ranges of the measured cluster.
    #[arg(long, default_value_t = 100_000)]
    ranges: u64,
    /// Seconds of idle CPU and traffic measured.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// The longest any wait may take.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// Skip the restart of one node.
    #[arg(long)]
    no_restart: bool,
    /// Where the clusters' directories go (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const NODES: u64 = 3;

/// The share of a node's groups that must be quiescent before the idle figures are taken.
const QUIET_SHARE: f64 = 0.99;

fn main() -> Result<(), String> {
    let args = Args::parse();
    let temporary = tempfile::tempdir().map_err(|error| error.to_string())?;
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let timeout = Duration::from_secs(args.timeout_seconds);

    let base = base_rss(&args, &root.join("empty"), timeout)?;
    println!("empty node (1 range): {}", mib_list(&base));

    let dir = root.join("measured");
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    let started = Instant::now();
    let mut cluster = LocalCluster::start_with_http(&args.flotilla, &dir, NODES, args.ranges)
        .map_err(|error| error.to_string())?;
    let listening = wait(timeout, "every node answering metrics", || {
        nodes()
            .all(|node| metrics(&cluster, node).is_some())
            .then_some(())
    })
    .map(|()| started.elapsed())?;
    wait(timeout, "every range led on every node", || {
        nodes()
            .all(|node| all_led(&cluster, node, args.ranges))
            .then_some(())
    })?;
    let led = started.elapsed();
    println!(
        "cold start of {} ranges x 3 replicas: listening after {:.1} s, every range led after {:.1} s",
        args.ranges,
        listening.as_secs_f64(),
        led.as_secs_f64()
    );

    // Idle means quiet: after the elections the placement driver still balances leaders,
    // and every transfer wakes its group. Wait until nearly every group is quiescent.
    let quiet = wait(timeout, "the groups quiescent", || {
        nodes()
            .all(|node| quiescent_share(&cluster, node) >= QUIET_SHARE)
            .then_some(())
    })
    .map(|()| started.elapsed());
    match quiet {
        Ok(quiet) => println!(
            "{:.0} % of the groups quiescent on every node after {:.1} s",
            QUIET_SHARE * 100.0,
            quiet.as_secs_f64()
        ),
        Err(error) => println!("{error}: measuring anyway"),
    }
    std::thread::sleep(Duration::from_secs(5));
    let steady: Vec<u64> = nodes()
        .map(|node| proc_status_kib(&cluster, node, "VmRSS:") * 1024)
        .collect();
    let peak: Vec<u64> = nodes()
        .map(|node| proc_status_kib(&cluster, node, "VmHWM:") * 1024)
        .collect();
    let per_replica: Vec<String> = steady
        .iter()
        .zip(&base)
        .map(|(steady, base)| {
            format!(
                "{:.0} B",
                steady.saturating_sub(*base) as f64 / args.ranges as f64
            )
        })
        .collect();
    println!("steady RSS: {}", mib_list(&steady));
    println!("peak RSS during start: {}", mib_list(&peak));
    println!("memory per idle replica: {}", per_replica.join(", "));

    let cpu_before: Vec<u64> = nodes().map(|node| cpu_ticks(&cluster, node)).collect();
    let sent_before: Vec<u64> = nodes()
        .map(|node| counter(&cluster, node, "flotilla_transport_batches_sent_total"))
        .collect();
    let idle = Instant::now();
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let seconds = idle.elapsed().as_secs_f64();
    let ticks_per_second = clock_ticks_per_second();
    let cpu: Vec<String> = nodes()
        .zip(&cpu_before)
        .map(|(node, before)| {
            let used = cpu_ticks(&cluster, node).saturating_sub(*before) as f64;
            format!("{:.2} %", used / ticks_per_second / seconds * 100.0)
        })
        .collect();
    let sent: Vec<String> = nodes()
        .zip(&sent_before)
        .map(|(node, before)| {
            let sent = counter(&cluster, node, "flotilla_transport_batches_sent_total") - before;
            format!("{:.0}/s", sent as f64 / seconds)
        })
        .collect();
    println!("idle CPU over {seconds:.0} s: {}", cpu.join(", "));
    println!("idle Raft batches sent: {}", sent.join(", "));

    if !args.no_restart {
        restart_one(&args, &mut cluster, timeout)?;
    }
    cluster.stop();
    Ok(())
}

/// Kills node 3, starts it again and measures how soon it serves and how many elections the
/// cluster held.
fn restart_one(args: &Args, cluster: &mut LocalCluster, timeout: Duration) -> Result<(), String> {
    let node = NodeId(NODES);
    let others = || nodes().filter(move |&other| other != node);
    let before: Vec<u64> = others()
        .map(|other| counter(cluster, other, "flotilla_elections_won_total"))
        .collect();
    cluster.kill(node);
    let started = Instant::now();
    cluster
        .restart(&args.flotilla, node)
        .map_err(|error| error.to_string())?;
    wait(timeout, "the restarted node ready", || {
        ready(cluster, node).then_some(())
    })?;
    let serving = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    // The restarted process counts from zero: everything it won is new.
    let elections: u64 = others()
        .zip(&before)
        .map(|(other, before)| counter(cluster, other, "flotilla_elections_won_total") - before)
        .sum::<u64>()
        + counter(cluster, node, "flotilla_elections_won_total");
    println!(
        "restart of node {}: ready after {:.1} s; {elections} elections won after it ({:.3} per range)",
        node.0,
        serving.as_secs_f64(),
        elections as f64 / args.ranges as f64
    );
    Ok(())
}

/// The empty cluster's resident memory per node, once ready.
fn base_rss(args: &Args, dir: &std::path::Path, timeout: Duration) -> Result<Vec<u64>, String> {
    std::fs::create_dir_all(dir).map_err(|error| error.to_string())?;
    let mut cluster = LocalCluster::start_with_http(&args.flotilla, dir, NODES, 1)
        .map_err(|error| error.to_string())?;
    wait(timeout, "the empty cluster ready", || {
        nodes().all(|node| ready(&cluster, node)).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let rss = nodes()
        .map(|node| proc_status_kib(&cluster, node, "VmRSS:") * 1024)
        .collect();
    cluster.stop();
    Ok(rss)
}

fn nodes() -> impl Iterator<Item = NodeId> {
    (1..=NODES).map(NodeId)
}

fn metrics(cluster: &LocalCluster, node: NodeId) -> Option<String> {
    get(cluster, node, "/metrics")
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
}

fn ready(cluster: &LocalCluster, node: NodeId) -> bool {
    answers_ok(cluster, node, "/ready")
}

/// The value of an unlabelled metric `name` in a metrics text.
fn value_in(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|value| value as u64)
}

fn counter(cluster: &LocalCluster, node: NodeId, name: &str) -> u64 {
    metrics(cluster, node)
        .and_then(|text| value_in(&text, name))
        .unwrap_or(0)
}

/// The share of the node's hosted groups that are quiescent.
fn quiescent_share(cluster: &LocalCluster, node: NodeId) -> f64 {
    let Some(text) = metrics(cluster, node) else {
        return 0.0;
    };
    let hosted = value_in(&text, "flotilla_ranges_hosted").unwrap_or(0);
    let quiescent = value_in(&text, "flotilla_ranges_quiescent").unwrap_or(0);
    quiescent as f64 / hosted.max(1) as f64
}

fn all_led(cluster: &LocalCluster, node: NodeId, ranges: u64) -> bool {
    let Some(text) = metrics(cluster, node) else {
        return false;
    };
    value_in(&text, "flotilla_ranges_hosted").is_some_and(|hosted| hosted >= ranges)
        && value_in(&text, "flotilla_ranges_without_leader") == Some(0)
}

/// User plus system CPU of the node's process, in clock ticks.
fn cpu_ticks(cluster: &LocalCluster, node: NodeId) -> u64 {
    let Some(pid) = cluster.pid(node) else {
        return 0;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command (which may hold spaces) start at the state, field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |number: usize| -> u64 {
        fields
            .get(number - 3)
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

fn mib_list(bytes: &[u64]) -> String {
    bytes
        .iter()
        .map(|bytes| format!("{:.0} MiB", *bytes as f64 / f64::from(1 << 20)))
        .collect::<Vec<_>>()
        .join(", ")
}

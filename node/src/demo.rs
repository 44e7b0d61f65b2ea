//! `flotilla demo`: certificates and data in a temporary folder, a local cluster of child
//! processes on loopback, a mixed workload with a progress bar, the results, a node killed to
//! show fail-over, and a clean shutdown.

use crate::encoding::Encoding;
use crate::local::{
    LocalCluster, LocalError, SetupError, client_runtime, connect_when_ready, leaderless_groups,
};
use crate::workload::{self, WorkloadOptions, print_report};
use clap::Args;
use flotilla_raft::NodeId;
use std::time::{Duration, Instant};

/// Flags of `flotilla demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Nodes in the local cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Ranges (groups).
    #[arg(long, default_value_t = 16)]
    pub groups: u64,
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadOptions,
    /// Keep the temporary folder (certificates, data, logs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Scale out: add this many nodes while a workload runs, show the ranges and leaders
    /// moving to them, and the throughput before and after (0 to 16).
    #[arg(long, default_value_t = 0)]
    pub grow: u64,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A flag is out of range.
    #[error("{0}")]
    Flags(#[from] workload::FlagError),
    /// The temporary folder, this program's path or the client runtime was not available.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The local cluster did not start.
    #[error(transparent)]
    Cluster(#[from] LocalError),
}

/// Runs the demo.
///
/// # Errors
/// The cluster could not start or a step failed.
pub fn run(args: &DemoArgs) -> Result<(), DemoError> {
    args.workload.validate()?;
    if args.nodes == 0 || args.groups == 0 {
        return Err(workload::FlagError("--nodes and --groups must be at least 1").into());
    }
    if args.grow > 16 {
        return Err(workload::FlagError("--grow must be 0 to 16").into());
    }
    let folder = tempfile::Builder::new()
        .prefix("flotilla-demo-")
        .tempdir()
        .map_err(SetupError::of("making a temporary folder"))?;
    let binary = std::env::current_exe().map_err(SetupError::of("finding this program's path"))?;
    let mut cluster =
        LocalCluster::start_with_http(&binary, folder.path(), args.nodes, args.groups)?;
    println!(
        "Flotilla demo: {} nodes on loopback ({}), {} ranges, {} replicas each; files in {}",
        args.nodes,
        cluster
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        args.groups,
        args.nodes.min(3),
        folder.path().display()
    );
    print_urls(&cluster);
    let runtime = client_runtime(crate::local::LOCAL_CLIENT_THREADS)
        .map_err(SetupError::of("starting the client runtime"))?;
    let result = runtime.block_on(drive(&mut cluster, &binary, args));
    cluster.stop();
    println!("stopped every node");
    if args.keep {
        println!("kept {}", folder.keep().display());
    }
    result
}

/// Each node's observe endpoints and JSON API, and a curl command that calls the API.
fn print_urls(cluster: &LocalCluster) {
    for &(node, http) in &cluster.http {
        println!(
            "  node {}: http://{http}/metrics  http://{http}/ready  http://{http}/health  \
             API {}",
            node.0,
            cluster.api_url(node).unwrap_or_default()
        );
    }
    if let Some(curl) = cluster.api_curl_example(NodeId(1)) {
        println!(
            "  the API (docs/http-api.md) while the demo runs, as client \"demo\"; --resolve maps \
             the name in node 1's certificate to its address:\n  {curl}"
        );
    }
}

async fn drive(
    cluster: &mut LocalCluster,
    binary: &std::path::Path,
    args: &DemoArgs,
) -> Result<(), DemoError> {
    let workload = &args.workload;
    let started = Instant::now();
    let client = connect_when_ready(cluster.client_options(), Duration::from_secs(30)).await?;
    println!(
        "every range has a leader after {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    println!(
        "workload: {} clients, {:.0} s, {} keys ({:?}), {} B values, {}% get / {}% cas / {}% put",
        workload.clients,
        workload.seconds,
        workload.keys,
        workload.distribution,
        workload.value_size,
        workload.read_percent,
        workload.cas_percent,
        100 - workload.read_percent - workload.cas_percent
    );
    let report = workload::run(&client, workload, true).await;
    print_report(&report);
    let statuses = client.statuses().await;
    println!(
        "\n{}",
        crate::status::status_tables(&client, &statuses, Encoding::Hex)
    );
    if args.grow > 0 {
        grow(cluster, binary, &client, args, report.ops_per_second).await?;
    }
    if cluster.endpoints.len() < 3 {
        println!("(fewer than 3 nodes: a majority cannot survive a kill, so no fail-over step)");
        return Ok(());
    }
    let victim = statuses
        .iter()
        .filter_map(|(node, status)| Some((*node, status.as_ref().ok()?)))
        .max_by_key(|(_, status)| {
            status
                .groups
                .iter()
                .filter(|group| group.role == "Leader")
                .count()
        })
        .map_or(NodeId(1), |(node, _)| node);
    cluster.kill(victim);
    let failover = WorkloadOptions {
        seconds: (workload.seconds / 2.0).clamp(1.0, 5.0),
        ..workload.clone()
    };
    println!(
        "killed node {} with SIGKILL; the workload goes on for {:.0} s:",
        victim.0, failover.seconds
    );
    let after = workload::run(&client, &failover, true).await;
    print_report(&after);
    let statuses = client.statuses().await;
    let leaderless = leaderless_groups(&client).await;
    println!(
        "\nafter fail-over: {leaderless} ranges without a leader\n{}",
        crate::status::status_tables(&client, &statuses, Encoding::Hex)
    );
    Ok(())
}

/// Scale-out: `args.grow` nodes join while the workload runs; the placement driver moves
/// replicas and leaders to them (printed each second); then the workload runs again.
async fn grow(
    cluster: &mut LocalCluster,
    binary: &std::path::Path,
    client: &crate::Client,
    args: &DemoArgs,
    before_ops_per_second: f64,
) -> Result<(), DemoError> {
    let first = cluster.endpoints.len() as u64 + 1;
    let joining: Vec<NodeId> = (first..first + args.grow).map(NodeId).collect();
    for &node in &joining {
        cluster.join(binary, node)?;
    }
    println!(
        "\nscale-out: nodes {} join while the workload runs; replicas and leaders move to them",
        joining
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let during = WorkloadOptions {
        seconds: args.workload.seconds.max(5.0),
        ..args.workload.clone()
    };
    let watcher = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok(view) = client.placement().await {
                    println!("  {}", placement_line(&view));
                }
            }
        })
    };
    let report = workload::run(client, &during, false).await;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(60) {
        match client.placement().await {
            Ok(view) if view.operators.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    watcher.abort();
    println!("while growing: {:.0} ops/s", report.ops_per_second);
    if let Ok(view) = client.placement().await {
        println!("settled: {}", placement_line(&view));
    }
    let after = workload::run(client, &args.workload, true).await;
    print_report(&after);
    println!(
        "throughput: {before_ops_per_second:.0} ops/s on {} nodes before, {:.0} ops/s on {} after \
         (one machine: the nodes share its cores, so more nodes do not add capacity here)",
        first - 1,
        after.ops_per_second,
        first - 1 + args.grow
    );
    Ok(())
}

/// Replicas and leaders per node, and the moves in flight, on one line.
fn placement_line(view: &crate::api::PlacementStatus) -> String {
    let mut per_node: std::collections::BTreeMap<NodeId, (usize, usize)> =
        view.nodes.iter().map(|node| (node.id, (0, 0))).collect();
    for range in &view.ranges {
        for replica in &range.replicas {
            per_node.entry(replica.node).or_default().0 += 1;
        }
        if let Some(leader) = range.leader {
            per_node.entry(leader).or_default().1 += 1;
        }
    }
    let nodes: Vec<String> = per_node
        .iter()
        .map(|(node, (replicas, leaders))| format!("{node}: {replicas} replicas/{leaders} led"))
        .collect();
    format!(
        "{} | {} moves in flight",
        nodes.join(", "),
        view.operators.len()
    )
}

//! `flotilla bench`: the load generator. Against a running cluster (`--endpoints`), or with no
//! endpoints against a local cluster it starts like the demo, it runs the workload once per
//! (value size, client count) and prints throughput, latency percentiles, errors by kind and
//! the entries per fsync the nodes reported for that run; `--json FILE` writes the results.
//! `--report-every` adds the throughput, ranges and leaders of each interval of a run, and
//! `--split-load-rps` / `--split-bytes` set the local cluster's automatic splits.

use crate::api::NodeStatus;
use crate::client::{Client, ClientError, Endpoint};
use crate::config::SPLIT_BYTES_MIN;
use crate::intervals::{self, INTERVALS_MAX, Interval, REPORT_EVERY_SECONDS_MIN, Sample};
use crate::local::{self, LocalCluster, LocalError, SetupError, connect_when_ready};
use crate::workload::{
    self, Distribution, FlagError, KeyOrder, Percentiles, WorkloadOptions, print_report,
};
use clap::Args;
use flotilla_raft::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `flotilla bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A running cluster's nodes (host:port or id@host:port, comma-separated); none: start a
    /// local cluster.
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<Endpoint>,
    /// The running cluster's certificates and id.
    #[command(flatten)]
    pub identity: crate::config::IdentityArgs,
    /// Client counts to sweep (concurrent requests in flight).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub clients: Vec<usize>,
    /// Value sizes to sweep, in bytes.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub value_size: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// How keys are picked.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,
    /// Where the keys lie: hashed over the key space (every range gets its share of the hot
    /// keys) or in order (a zipfian run's hot keys are neighbours, in one range).
    #[arg(long, value_enum, default_value_t = KeyOrder::Hashed)]
    pub key_order: KeyOrder,
    /// Percent of operations that are linearizable gets.
    #[arg(long, default_value_t = 0)]
    pub read_percent: u8,
    /// Percent that are compare-and-swaps (the rest are puts).
    #[arg(long, default_value_t = 0)]
    pub cas_percent: u8,
    /// Nodes of the local cluster (without --endpoints).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Ranges of the local cluster (without --endpoints).
    #[arg(long, default_value_t = 16)]
    pub groups: u64,
    /// The local cluster's `ranges.split_load_rps`: a range whose leader serves more requests
    /// per second splits at a sampled median key (0: never, the node's default).
    #[arg(long)]
    pub split_load_rps: Option<u64>,
    /// The local cluster's `ranges.split_bytes`: a range holding more key and value bytes
    /// splits at its middle key (0: never; else at least 1024; the node's default: 64 MiB).
    #[arg(long)]
    pub split_bytes: Option<u64>,
    /// The local cluster's `storage.engine`: where each range's applied data lives (memory or
    /// disk; the node's default: memory).
    #[arg(long, value_enum)]
    pub storage_engine: Option<crate::config::StorageEngine>,
    /// Also report each run every this many seconds (at least 0.5): ops/s, and the ranges in
    /// the map and the ranges each node leads at the interval's end.
    #[arg(long)]
    pub report_every: Option<f64>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The results file: what `flotilla bench --json` and the etcd load client write and the
/// side-by-side plot reads. One system, one run per (value size, client count).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// `"flotilla"` or `"etcd"`.
    pub system: String,
    /// Ranges (groups) of the cluster, when `flotilla bench` started it.
    #[serde(default)]
    pub groups: Option<u64>,
    /// The runs.
    pub runs: Vec<Run>,
}

/// One run: a fixed number of clients for a fixed time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Concurrent clients.
    pub clients: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Successful operations.
    pub ops: u64,
    /// Successful operations per second.
    pub ops_per_second: f64,
    /// Latency percentiles, microseconds.
    pub latency_us: Percentiles,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
    /// Log entries per fsync over the run, all nodes together (`None` where the system does
    /// not report it).
    pub entries_per_fsync: Option<f64>,
    /// The run interval by interval (`--report-every`; empty without it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Interval>,
}

impl Results {
    /// Reads a results file.
    ///
    /// # Errors
    /// The file could not be read or is not a results file.
    pub fn read(path: &std::path::Path) -> Result<Self, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ResultsError::NotResults {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the results as pretty JSON.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn write(&self, path: &std::path::Path) -> Result<(), ResultsError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|source| ResultsError::NotResults {
                path: path.to_path_buf(),
                source,
            })?;
        std::fs::write(path, text + "\n").map_err(|source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The run with `clients` clients, if there is one.
    #[must_use]
    pub fn run_with(&self, clients: usize) -> Option<&Run> {
        self.runs.iter().find(|run| run.clients == clients)
    }
}

/// Why a results file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file could not be read or written.
    #[error("{} could not be accessed: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold results (or the results could not be encoded).
    #[error("{} is not a results file: {source}", path.display())]
    NotResults {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
}

/// A flag of `flotilla bench` about the local cluster or the intervals that cannot be used:
/// the rule it broke, as a sentence.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BenchFlagError {
    /// `--split-load-rps`, `--split-bytes` or `--storage-engine` with `--endpoints`.
    #[error(
        "--split-load-rps, --split-bytes and --storage-engine set up the local cluster; a \
         running cluster (--endpoints) keeps its own configuration"
    )]
    SplitsNeedLocalCluster,
    /// `--split-bytes` between 1 and `SPLIT_BYTES_MIN - 1`.
    #[error("--split-bytes must be 0 (never split) or at least {SPLIT_BYTES_MIN}, not {0}")]
    SplitBytesTooSmall(u64),
    /// A value the node's configuration (TOML, signed 64-bit integers) cannot hold.
    #[error("{flag} must be at most {max}, the largest value the configuration holds, not {value}",
        max = i64::MAX)]
    TooLarge {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: u64,
    },
    /// `--report-every` below the minimum, above `--seconds`, or not a number.
    #[error(
        "--report-every must be at least {REPORT_EVERY_SECONDS_MIN} s and at most --seconds \
         ({seconds} s), not {every} s"
    )]
    ReportEveryOutOfRange {
        /// The interval asked for.
        every: f64,
        /// The run's length.
        seconds: f64,
    },
    /// `--seconds` / `--report-every` above `INTERVALS_MAX`.
    #[error(
        "--seconds {seconds} with --report-every {every} makes more than {INTERVALS_MAX} \
         intervals; report less often"
    )]
    TooManyIntervals {
        /// The interval asked for.
        every: f64,
        /// The run's length.
        seconds: f64,
    },
}

/// Checks the flags about the local cluster's splits and the intervals; the local cluster's
/// configuration file (TOML), when a split flag asks for one.
///
/// # Errors
/// The first flag that breaks its rule.
pub fn check_split_and_interval_flags(args: &BenchArgs) -> Result<Option<String>, BenchFlagError> {
    if let Some(every) = args.report_every {
        check_report_every(every, args.seconds)?;
    }
    let splits = [
        ("split_load_rps", "--split-load-rps", args.split_load_rps),
        ("split_bytes", "--split-bytes", args.split_bytes),
    ];
    let mut config = String::new();
    for (key, flag, value) in splits {
        let Some(value) = value else { continue };
        if !args.endpoints.is_empty() {
            return Err(BenchFlagError::SplitsNeedLocalCluster);
        }
        if i64::try_from(value).is_err() {
            return Err(BenchFlagError::TooLarge { flag, value });
        }
        if key == "split_bytes" && value != 0 && value < SPLIT_BYTES_MIN {
            return Err(BenchFlagError::SplitBytesTooSmall(value));
        }
        config.push_str(&format!("{key} = {value}\n"));
    }
    let mut text = String::new();
    if !config.is_empty() {
        text = format!("[ranges]\n{config}");
    }
    if let Some(engine) = args.storage_engine {
        if !args.endpoints.is_empty() {
            return Err(BenchFlagError::SplitsNeedLocalCluster);
        }
        text.push_str(&format!("[storage]\nengine = \"{}\"\n", engine.name()));
    }
    Ok((!text.is_empty()).then_some(text))
}

/// Checks `--report-every` against `--seconds` (already checked positive).
fn check_report_every(every: f64, seconds: f64) -> Result<(), BenchFlagError> {
    if !(REPORT_EVERY_SECONDS_MIN..=seconds).contains(&every) {
        return Err(BenchFlagError::ReportEveryOutOfRange { every, seconds });
    }
    if seconds / every > INTERVALS_MAX as f64 {
        return Err(BenchFlagError::TooManyIntervals { every, seconds });
    }
    Ok(())
}

/// Why the load generator stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag is out of range.
    #[error("{0}")]
    Flags(#[from] FlagError),
    /// A flag about the local cluster's splits or the intervals cannot be used.
    #[error(transparent)]
    SplitOrIntervalFlags(#[from] BenchFlagError),
    /// The temporary folder, this program's path or the client runtime was not available.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The cluster did not start or cannot be reached.
    #[error(transparent)]
    Cluster(#[from] LocalError),
    /// The results file could not be written.
    #[error(transparent)]
    Results(#[from] ResultsError),
}

/// Runs the load generator.
///
/// # Errors
/// Bad flags, a cluster that does not start or cannot be reached, or an unwritable JSON file.
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    if args.clients.is_empty() || args.value_size.is_empty() || args.clients.contains(&0) {
        return Err(FlagError(
            "--clients needs counts of at least 1 and --value-size at least one size",
        )
        .into());
    }
    let template = WorkloadOptions {
        clients: 1,
        seconds: args.seconds,
        value_size: 0,
        keys: args.keys,
        distribution: args.distribution,
        key_order: args.key_order,
        read_percent: args.read_percent,
        cas_percent: args.cas_percent,
    };
    template.validate()?;
    let config = check_split_and_interval_flags(args)?;
    let threads = if args.endpoints.is_empty() {
        local::LOCAL_CLIENT_THREADS
    } else {
        local::CLIENT_THREADS
    };
    let runtime =
        local::client_runtime(threads).map_err(SetupError::of("starting the client runtime"))?;
    let folder = tempfile::Builder::new()
        .prefix("flotilla-bench-")
        .tempdir()
        .map_err(SetupError::of("making a temporary folder"))?;
    let (mut cluster, options) = if args.endpoints.is_empty() {
        let binary =
            std::env::current_exe().map_err(SetupError::of("finding this program's path"))?;
        let config = match config {
            Some(text) => Some(write_config(folder.path(), &text)?),
            None => None,
        };
        let cluster = LocalCluster::start_with_config(
            &binary,
            folder.path(),
            args.nodes,
            args.groups,
            config,
        )?;
        let options = cluster.client_options();
        println!(
            "started a local cluster: {} nodes, {} ranges{}, in {}",
            args.nodes,
            args.groups,
            splits_text(args),
            folder.path().display()
        );
        (Some(cluster), options)
    } else {
        let options = crate::client::ClientOptions {
            attempt_timeout: Duration::from_secs(2),
            ..crate::client::ClientOptions::new(
                args.endpoints.clone(),
                args.identity.tls_dir.clone(),
                &args.identity.cluster_id,
                &args.identity.name,
            )
        };
        (None, options)
    };
    let results = runtime.block_on(async {
        let client = connect_when_ready(options, Duration::from_secs(30)).await?;
        let mut runs = Vec::new();
        for &value_size in &args.value_size {
            for &clients in &args.clients {
                let options = WorkloadOptions {
                    clients,
                    value_size,
                    ..template.clone()
                };
                println!(
                    "{clients} clients, {value_size} B values, {:.0} s:",
                    args.seconds
                );
                runs.push(one_run(&client, &options, args.report_every).await);
            }
        }
        Ok::<_, LocalError>(runs)
    });
    if let Some(cluster) = &mut cluster {
        cluster.stop();
    }
    let results = Results {
        system: "flotilla".into(),
        groups: cluster.is_some().then_some(args.groups),
        runs: results?,
    };
    if let Some(path) = &args.json {
        results.write(path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The local cluster's configuration file, `bench.toml` in `folder`.
fn write_config(folder: &std::path::Path, text: &str) -> Result<PathBuf, SetupError> {
    let path = folder.join("bench.toml");
    std::fs::write(&path, text)
        .map_err(SetupError::of("writing the local cluster's configuration"))?;
    Ok(path)
}

/// `, split_load_rps 2000` and the like, for the line that announces the local cluster.
fn splits_text(args: &BenchArgs) -> String {
    let mut text = String::new();
    if let Some(rps) = args.split_load_rps {
        text.push_str(&format!(", split_load_rps {rps}"));
    }
    if let Some(bytes) = args.split_bytes {
        text.push_str(&format!(", split_bytes {bytes}"));
    }
    if let Some(engine) = args.storage_engine {
        text.push_str(&format!(", ranges in {}", engine.name()));
    }
    text
}

async fn one_run(client: &Client, options: &WorkloadOptions, report_every: Option<f64>) -> Run {
    let before = fsync_totals(&client.statuses().await);
    let (report, intervals) = match report_every {
        None => (workload::run(client, options, true).await, Vec::new()),
        Some(every) => run_in_intervals(client, options, every).await,
    };
    let after = fsync_totals(&client.statuses().await);
    print_report(&report);
    // Over the nodes that answered both times.
    let (entries, fsyncs) = after
        .iter()
        .fold((0, 0), |(entries, fsyncs), (node, (e, f))| {
            match before.get(node) {
                Some((e0, f0)) => (entries + e - e0, fsyncs + f - f0),
                None => (entries, fsyncs),
            }
        });
    let entries_per_fsync = (fsyncs > 0).then(|| entries as f64 / fsyncs as f64);
    if let Some(ratio) = entries_per_fsync {
        println!("  entries per fsync: {ratio:.1}");
    }
    Run {
        clients: options.clients,
        value_size: options.value_size,
        seconds: report.seconds,
        ops: report.ops,
        ops_per_second: report.ops_per_second,
        latency_us: report.latency_us,
        errors: report.errors,
        entries_per_fsync,
        intervals,
    }
}

/// The workload, with a line for each interval of `every` seconds instead of a progress bar.
async fn run_in_intervals(
    client: &Client,
    options: &WorkloadOptions,
    every: f64,
) -> (workload::WorkloadReport, Vec<Interval>) {
    let running = workload::start(client, options);
    let mut sampled = intervals::sample_until_end(client, &running, every).await;
    let report = running.finish().await;
    // The last interval ends with the run's report, so the intervals add up to its figures.
    let last = Sample {
        elapsed_seconds: report.seconds,
        ops: report.ops,
        errors: report.errors.values().sum(),
    };
    let view = intervals::look(client).await;
    println!("{}", intervals::describe(&sampled.close(last, view)));
    (report, sampled.into_vec())
}

/// Entries persisted and fsyncs of every node that answered.
fn fsync_totals(
    statuses: &[(NodeId, Result<NodeStatus, ClientError>)],
) -> BTreeMap<NodeId, (u64, u64)> {
    statuses
        .iter()
        .filter_map(|(node, status)| {
            let status = status.as_ref().ok()?;
            Some((*node, (status.entries_persisted, status.fsyncs)))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// The configuration file the flags ask for, or the rule they break.
    type Checked = Result<Option<String>, BenchFlagError>;

    fn check(flags: &[&str]) -> Checked {
        let flags = Flags::try_parse_from(std::iter::once("bench").chain(flags.iter().copied()));
        check_split_and_interval_flags(&flags.unwrap().bench)
    }

    #[test]
    fn split_and_interval_flags_are_checked_before_anything_starts() {
        use BenchFlagError::*;
        let local = |text: &str| Ok(Some(format!("[ranges]\n{text}")));
        let cases: &[(&[&str], Checked)] = &[
            (&[], Ok(None)),
            (
                &["--split-load-rps", "2000"],
                local("split_load_rps = 2000\n"),
            ),
            (
                &["--split-bytes", "1024", "--split-load-rps", "0"],
                local("split_load_rps = 0\nsplit_bytes = 1024\n"),
            ),
            (&["--split-bytes", "0"], local("split_bytes = 0\n")),
            (&["--split-bytes", "1023"], Err(SplitBytesTooSmall(1023))),
            (
                &["--split-load-rps", "9223372036854775808"],
                Err(TooLarge {
                    flag: "--split-load-rps",
                    value: 1 << 63,
                }),
            ),
            (
                &["--split-bytes", "4096", "--endpoints", "1@127.0.0.1:7101"],
                Err(SplitsNeedLocalCluster),
            ),
            (
                &["--report-every", "10", "--split-load-rps", "1"],
                local("split_load_rps = 1\n"),
            ),
            (&["--report-every", "0.5", "--seconds", "5000"], Ok(None)),
            (
                &["--report-every", "0.4"],
                Err(ReportEveryOutOfRange {
                    every: 0.4,
                    seconds: 10.0,
                }),
            ),
            (
                &["--report-every", "11"],
                Err(ReportEveryOutOfRange {
                    every: 11.0,
                    seconds: 10.0,
                }),
            ),
            (
                &["--report-every", "0.5", "--seconds", "5000.5"],
                Err(TooManyIntervals {
                    every: 0.5,
                    seconds: 5000.5,
                }),
            ),
        ];
        for (flags, expected) in cases {
            assert_eq!(&check(flags), expected, "{flags:?}");
        }
        assert!(matches!(
            check(&["--report-every", "NaN"]),
            Err(ReportEveryOutOfRange { .. })
        ));
    }

    /// The file the local nodes read sets the keys the flags name.
    #[test]
    fn the_local_cluster_reads_the_split_flags() {
        let text = check(&[
            "--split-load-rps",
            "2000",
            "--split-bytes",
            "4096",
            "--storage-engine",
            "disk",
        ])
        .unwrap()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &text).unwrap();
        let config = crate::config::NodeConfig::load(Some(&path)).unwrap();
        assert_eq!(
            (config.ranges.split_load_rps, config.ranges.split_bytes),
            (2000, 4096)
        );
        assert_eq!(config.storage.engine, crate::config::StorageEngine::Disk);
        let memory = check(&["--storage-engine", "memory"]).unwrap().unwrap();
        let path = write_config(dir.path(), &memory).unwrap();
        let config = crate::config::NodeConfig::load(Some(&path)).unwrap();
        assert_eq!(config.storage.engine, crate::config::StorageEngine::Memory);
    }

    #[test]
    fn a_results_file_of_another_system_reads_back() {
        let text = r#"{"system":"etcd","runs":[{"clients":1,"value_size":256,"seconds":10.0,
            "ops":123,"ops_per_second":12.3,"latency_us":{"p50":1,"p90":1,"p99":1,"p999":1,
            "max":1},"errors":{"timeout":2},"entries_per_fsync":null}]}"#;
        let results: Results = serde_json::from_str(text).unwrap();
        assert_eq!((results.system.as_str(), results.groups), ("etcd", None));
        assert_eq!(results.run_with(1).unwrap().errors["timeout"], 2);
        let again: Results =
            serde_json::from_str(&serde_json::to_string(&results).unwrap()).unwrap();
        assert_eq!(again, results);
    }
}

//! The command line: `server`, the client commands, `shell`, `status`, `certs` and `demo`.
//! Every flag is documented here, so `--help` documents every flag.
//!
//! Exit codes: 0 done, 1 failed (a bad command line too), 2 `status` found a node down or a range without a leader,
//! 3 `get` found no value for its key, 4 `cas` found another value and set nothing.

use crate::client::{Client, ClientError, ClientOptions, Endpoint};
use crate::config::{ConfigError, IdentityArgs, NodeConfig, parse_endpoints};
use crate::demo::{DemoArgs, DemoError};
use crate::encoding::{DecodeError, Encoding};
use crate::loadgen::{BenchArgs, BenchError};
use crate::local::{CLIENT_THREADS, client_runtime};
use crate::reply::{Finished, OpResult, Output, describe, try_execute};
use crate::server::ServerError;
use crate::shell::ShellError;
use clap::{Args, Parser, Subcommand};
use flotilla_raft::NodeId;
use flotilla_storage::Command;
use flotilla_transport_quic::{
    CertError, ClusterId, add_client_certs, add_node_certs, write_dev_certs,
};
use std::path::PathBuf;
use std::time::Duration;

/// What `flotilla --help` ends with.
const EXIT_CODES: &str = "\
Exit codes: 0 done; 1 the command failed, or its command line is not valid (stderr says why),
or `inspect` found damage; 2 `status` found a node down or a range without a leader;
3 `get` found no value for its key; 4 `cas` found another value than the expected one and set
nothing.";

/// Flotilla: a multi-Raft sharded key-value store.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
    /// How log lines (stderr) are written: text, or one JSON object a line for a log
    /// collector. Filtered by FLOTILLA_LOG, else RUST_LOG (`info`, `flotilla_node=debug`, ...).
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields` (with `message`), `target`.
    Json,
}

/// What `flotilla node` does.
#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Every node: its state, replicas, leaders, load and size, and the moves in flight.
    List,
    /// Move every replica and leader off node ID (it keeps serving until they have left).
    Drain {
        /// The node.
        id: u64,
    },
    /// Set a draining node up again: it receives its share of replicas back.
    Undrain {
        /// The node.
        id: u64,
    },
    /// Remove node ID for good: its replicas are re-placed at once, its id is never used
    /// again and its messages are refused. Drain it first if it still runs.
    Remove {
        /// The node.
        id: u64,
    },
}

/// What `flotilla range` does.
#[derive(Debug, Subcommand)]
pub enum RangeAction {
    /// Every range: its group, keys, replicas and roles, leader, and operator in flight.
    List,
    /// Move RANGE's voter on node FROM to node TO (which holds no replica of it).
    ///
    /// A learner is added on TO, promoted while FROM's voter is demoted, then FROM's replica
    /// is removed, with leadership handed away first if FROM leads. Returns once the move is
    /// recorded; `range list` shows it until it is done. The rules may later move a replica
    /// back.
    Move {
        /// The range (`7` or `r7`).
        #[arg(value_parser = parse_range)]
        range: u64,
        /// The node whose voter leaves.
        #[arg(long)]
        from: u64,
        /// The node that receives it (up, and holding no replica of the range).
        #[arg(long)]
        to: u64,
    },
    /// Hand RANGE's leadership to its voter on node TO.
    ///
    /// Returns once the transfer is recorded; the leader rule may later move leadership back.
    TransferLeader {
        /// The range (`7` or `r7`).
        #[arg(value_parser = parse_range)]
        range: u64,
        /// The voter to lead.
        #[arg(long)]
        to: u64,
    },
    /// Split the range holding KEY at KEY: it keeps the keys below, and a new range on the
    /// same replicas takes the keys from KEY on.
    ///
    /// KEY is read in `--encoding` (hex unless given, as `range list` prints keys). Returns
    /// once the meta group records the new range.
    Split {
        /// The first key of the new range.
        key: String,
    },
    /// Merge the range holding KEY with its right neighbour: it takes the neighbour's keys,
    /// and the neighbour's range is gone for good.
    ///
    /// KEY is read in `--encoding` (hex unless given). The neighbour may hold at most
    /// `ranges.merge_bytes`. Returns once the meta group records the merge.
    Merge {
        /// Any key of the range.
        key: String,
    },
}

/// A range id as `range list` prints it (`r7`) or bare (`7`).
fn parse_range(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix('r').unwrap_or(text);
    digits
        .parse()
        .map_err(|_| format!("`{text}` is not a range id (such as 7 or r7)"))
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run one node of a cluster (until SIGINT or SIGTERM).
    Server(ServerArgs),
    /// Start a local 3-node cluster on loopback, run a workload, print what it did.
    Demo(DemoArgs),
    /// The load generator: sweep client counts and value sizes, print ops/s and latencies.
    Bench(BenchArgs),
    /// Read a key: prints its value, or `(absent)` (JSON: `"result": null`) and exits 3.
    Get {
        /// The key (in --encoding).
        key: String,
        /// How keys and values are written and printed.
        #[command(flatten)]
        format: DataArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a key: prints the value it replaced (`previous`).
    Put {
        /// The key (in --encoding).
        key: String,
        /// The value (in --encoding).
        value: String,
        /// How keys and values are written and printed.
        #[command(flatten)]
        format: DataArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a key: prints the value it had (`previous`).
    Delete {
        /// The key (in --encoding).
        key: String,
        /// How keys and values are written and printed.
        #[command(flatten)]
        format: DataArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Compare-and-swap: set KEY to NEW only if it holds EXPECTED ("-" means absent).
    ///
    /// Prints whether it swapped and the value before (`swapped`, `current`); exits 4 when it
    /// did not swap. "-" means absent in every encoding (under hex or base64 the value `-` is
    /// written `2d` or `LQ==`).
    Cas {
        /// The key (in --encoding).
        key: String,
        /// The value the key must hold now (in --encoding); "-" means it must be absent.
        expected: String,
        /// The value to set (in --encoding); "-" removes the key.
        new: String,
        /// How keys and values are written and printed.
        #[command(flatten)]
        format: DataArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the pairs with START <= key < END, across ranges.
    ///
    /// Text: one `KEY<tab>VALUE` line a pair, then `(more)` when --limit stopped the scan
    /// with keys left (`(no pairs)` when there are none). JSON: `{"pairs": [[key, value], ..],
    /// "more": ..}` as the result.
    Scan {
        /// The first key, in --encoding (default: the start of the key space).
        #[arg(default_value = "")]
        start: String,
        /// The end, exclusive, in --encoding (default: the end of the key space).
        end: Option<String>,
        /// The most pairs to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// How keys and values are written and printed.
        #[command(flatten)]
        format: DataArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read commands from stdin, one a line (`help` lists them); answer each on stdout.
    ///
    /// On a terminal: a prompt, line editing and history, and text answers. From a pipe or a
    /// file: one JSON object a line (the objects `get --output json` and the others print).
    /// Words are split as a POSIX shell splits them: `put "my key" "a value"`.
    Shell {
        /// How keys and values are written and printed: utf8 (text), hex or base64; one flag
        /// for keys and values both.
        #[arg(long, value_enum, default_value_t)]
        encoding: Encoding,
        /// How answers are printed (default: text on a terminal, JSON lines otherwise).
        #[arg(long, value_enum)]
        output: Option<Output>,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show nodes, ranges, leaders, terms and applied indexes. Exits 0 when every node
    /// answers and every range has a leader, 2 when a node is down or a range has none (after
    /// printing), 1 when the command fails (no node answered).
    Status {
        /// How range keys are printed: hex (the default here: range bounds are seldom text),
        /// utf8 or base64, as the data commands print keys. Under utf8 a key that is not
        /// UTF-8 prints as `(not UTF-8, hex: ..)`, and in JSON as `{"hex": ".."}`.
        #[arg(long, value_enum, default_value_t = Encoding::Hex)]
        encoding: Encoding,
        /// Tables or JSON.
        #[command(flatten)]
        output: OutputArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// See and change the cluster's nodes through the placement driver.
    Node {
        /// What to do.
        #[command(subcommand)]
        action: NodeAction,
        /// Tables or JSON (`list`).
        #[command(flatten)]
        output: OutputArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// See the cluster's ranges; move their replicas and leaders by hand.
    Range {
        /// What to do.
        #[command(subcommand)]
        action: RangeAction,
        /// How `list` prints range keys: hex (the default here), utf8 or base64, as
        /// `flotilla status --encoding` does.
        #[arg(long, value_enum, global = true, default_value_t = Encoding::Hex)]
        encoding: Encoding,
        /// Tables or JSON (`list`).
        #[command(flatten)]
        output: OutputArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Back up every range into a new directory: one checksummed snapshot file per range,
    /// each holding its range at one applied entry with every write acknowledged before the
    /// backup reached that range (ranges are read one after another, not at one moment), and
    /// a manifest written last. Needs an admin client certificate.
    Backup {
        /// The directory to write (created; it must be empty).
        #[arg(long)]
        to: PathBuf,
        /// Text or JSON (the manifest).
        #[command(flatten)]
        output: OutputArgs,
        /// How to reach the cluster.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write one node's data directory of a new cluster from a backup (offline): verify every
    /// file against the manifest, place the backup's ranges on the initial cluster as a first
    /// start would, and start each range this node hosts from its file. Give it the flags
    /// `flotilla server` will get, on every initial node, then start the servers.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The node's configuration, as `flotilla server` takes it.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Read a stopped node's data directory without starting it or changing a byte: its
    /// identity, log segments, groups (indexes, hard state, snapshot) and any damage.
    ///
    /// Verifies every segment header, batch and record checksum as a start does. Exits 0 when
    /// healthy (a torn tail or an orphaned snapshot file, which the next start repairs, are
    /// notices), 1 when damaged (after printing) or unreadable, or when a running node holds the
    /// directory (stop it first).
    Inspect(crate::inspect::InspectArgs),
    /// Create a cluster CA and node and client certificates (for development).
    Certs {
        /// Where to write them.
        #[arg(long, default_value = "flotilla-certs")]
        dir: PathBuf,
        /// Node ids, comma-separated.
        #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
        nodes: Vec<u64>,
        /// Client names, comma-separated.
        #[arg(long, default_value = "admin", value_delimiter = ',')]
        clients: Vec<String>,
        /// The client the nodes' HTTPS/JSON API reaches the cluster through (their
        /// `http.api_client`), issued beside --clients; "" for none.
        #[arg(long, default_value = crate::config::DEFAULT_HTTP_API_CLIENT)]
        http_api_client: String,
        /// The cluster's id.
        #[arg(long, default_value = "flotilla")]
        cluster_id: String,
        /// Instead of a new CA: sign certificates for these client names (comma-separated)
        /// with the CA already in --dir (ca.pem, ca.key), which is kept; prints each serial
        /// number (for `[access] deny_serials`). Existing files are not overwritten.
        #[arg(long, value_delimiter = ',')]
        add_client: Vec<String>,
        /// Instead of a new CA: sign certificates for these node ids (comma-separated) with the
        /// CA already in --dir, for nodes that join the running cluster.
        #[arg(long, value_delimiter = ',')]
        add_node: Vec<u64>,
        /// Replace an existing CA in --dir (every certificate it signed stops working).
        #[arg(long)]
        force: bool,
    },
}

/// Flags of `flotilla server`; each overrides the configuration file and the default.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A TOML file overriding the embedded default configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id.
    #[arg(long)]
    pub node_id: Option<u64>,
    /// The address to listen on (ip:port, UDP; default: this node's initial_cluster address).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve /metrics, /health and /ready over HTTP on this address (ip:port, TCP; default:
    /// off).
    #[arg(long)]
    pub http_listen: Option<std::net::SocketAddr>,
    /// The data directory (default: `flotilla-data/node-<id>`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The certificate directory.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// The initial cluster: id@ip:port, comma-separated.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Join a running cluster through these nodes (id@ip:port, comma-separated) instead of
    /// starting one: needs --listen and a node id never used in the cluster.
    #[arg(long)]
    pub join: Option<String>,
    /// How many ranges (groups) the key space is split into.
    #[arg(long)]
    pub groups: Option<u64>,
    /// The cluster's id.
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Size of one write-ahead log segment, in MiB.
    #[arg(long)]
    pub segment_mib: Option<u64>,
    /// Network threads (0: one per core, up to 4).
    #[arg(long)]
    pub network_threads: Option<usize>,
    /// Print the effective configuration as TOML and exit (after checking it).
    #[arg(long)]
    pub check: bool,
    /// Stop when the parent process exits (the demo and tests start nodes this way, so a
    /// harness that dies cannot leave nodes behind).
    #[arg(long)]
    pub exit_with_parent: bool,
}

/// How a command that prints data prints it.
#[derive(Clone, Copy, Debug, Args)]
pub struct OutputArgs {
    /// Print text (tables, lines) or JSON.
    #[arg(long, value_enum, global = true, default_value_t)]
    pub output: Output,
    /// The same as `--output json`.
    #[arg(long, global = true, conflicts_with = "output")]
    pub json: bool,
}

impl OutputArgs {
    /// The output these flags choose.
    #[must_use]
    pub fn output(self) -> Output {
        if self.json { Output::Json } else { self.output }
    }
}

/// How a data command (get, put, delete, cas, scan) reads its keys and values and prints its
/// result.
#[derive(Clone, Copy, Debug, Args)]
pub struct DataArgs {
    /// How keys and values are written in the arguments and printed: utf8 (text), hex or
    /// base64 (one flag for keys and values both). Under utf8, bytes that are not UTF-8 print
    /// as `(not UTF-8, hex: ..)` in text and as `{"hex": ".."}` in JSON, never lossily.
    #[arg(long, value_enum, default_value_t)]
    pub encoding: Encoding,
    /// Text, or one JSON object: `{"op", "key", "ok", "result"}` (`result` null when the
    /// value is absent); a failure is `{"op", "key", "ok": false, "error"}` on stdout too,
    /// with `"outcome_unknown": true` for a write that may have applied.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl DataArgs {
    /// The bytes an argument stands for.
    fn decode(self, text: &str) -> Result<Vec<u8>, DecodeError> {
        self.encoding.decode(text)
    }

    /// The bytes an argument stands for, `None` for "-".
    fn decode_optional(self, text: &str) -> Result<Option<Vec<u8>>, DecodeError> {
        (text != "-").then(|| self.decode(text)).transpose()
    }
}

/// How a client command reaches the cluster.
#[derive(Clone, Debug, Args)]
pub struct ClientArgs {
    /// Nodes to start from, comma-separated (one is enough): host:port, where the host is a
    /// name or an IP address (`[ipv6]:port`), or id@host:port. Without an id the client learns
    /// it from the node's certificate.
    #[arg(
        long,
        global = true,
        default_value = "1@127.0.0.1:7101",
        value_delimiter = ','
    )]
    pub endpoints: Vec<Endpoint>,
    /// The client's certificate and cluster.
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// How long one attempt waits for an answer, in milliseconds.
    #[arg(long, global = true, default_value_t = 2000)]
    pub attempt_timeout_ms: u64,
    /// How long a request may take in all, retries included, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub deadline_ms: u64,
}

impl ClientArgs {
    /// The client options these flags describe.
    #[must_use]
    pub fn options(&self) -> ClientOptions {
        let deadline = Duration::from_millis(self.deadline_ms.max(1));
        ClientOptions {
            // An attempt never outlasts the whole request.
            attempt_timeout: Duration::from_millis(self.attempt_timeout_ms.max(1)).min(deadline),
            deadline,
            ..ClientOptions::new(
                self.endpoints.clone(),
                self.identity.tls_dir.clone(),
                &self.identity.cluster_id,
                &self.identity.name,
            )
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration or a flag is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not start or had to stop.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The demo failed.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// The load generator failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// The shell or the status command failed.
    #[error(transparent)]
    Shell(#[from] ShellError),
    /// The request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `--cluster-id` is not a valid cluster id.
    #[error("`{0}` is not a valid cluster id (lowercase letters, digits and dashes)")]
    ClusterId(String),
    /// The certificates could not be written.
    #[error(transparent)]
    Certificates(#[from] CertError),
    /// The client runtime could not start.
    #[error("the client runtime could not start: {0}")]
    Runtime(#[source] std::io::Error),
    /// A key or value is not in the chosen `--encoding`.
    #[error(transparent)]
    Encoding(#[from] DecodeError),
    /// The backup or the restore failed.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// `inspect` found damage or could not read the directory.
    #[error(transparent)]
    Inspect(#[from] crate::inspect::InspectError),
}

impl CliError {
    /// The process's exit code for this error: 2 when `flotilla status` found a node down or
    /// a range without a leader (it printed what it found), 1 for any other failure.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Shell(ShellError::Unhealthy(_)) => 2,
            _ => 1,
        }
    }
}

/// Runs a parsed command line; how it ended, for the exit code.
///
/// # Errors
/// Whatever the command failed with, for a message and a non-zero exit.
pub fn run(cli: Cli) -> Result<Finished, CliError> {
    let done = |result: Result<(), CliError>| result.map(|()| Finished::Done);
    let init_logs = |default: &str| init_logs(default, cli.log_format);
    match cli.command {
        Commands::Server(args) => {
            init_logs("info");
            let (config, effective) = server_config(&args)?;
            if args.check {
                println!(
                    "# The effective configuration: the embedded default, then the file, then \
                     the flags.\n{effective}"
                );
                return Ok(Finished::Done);
            }
            let exit_with_parent = args.exit_with_parent;
            let reread = Box::new(move || server_config(&args).map(|(config, _)| config));
            done(Ok(crate::server::run(config, reread, exit_with_parent)?))
        }
        Commands::Demo(args) => {
            init_logs("warn");
            done(Ok(crate::demo::run(&args)?))
        }
        Commands::Bench(args) => {
            init_logs("warn");
            done(Ok(crate::loadgen::run(&args)?))
        }
        Commands::Inspect(args) => {
            init_logs("warn");
            Ok(crate::inspect::run(&args)?)
        }
        Commands::Certs {
            dir,
            nodes,
            clients,
            http_api_client,
            cluster_id,
            add_client,
            add_node,
            force,
        } => {
            let cluster =
                ClusterId::new(&cluster_id).ok_or(CliError::ClusterId(cluster_id.clone()))?;
            if !add_client.is_empty() || !add_node.is_empty() {
                let names: Vec<&str> = add_client.iter().map(String::as_str).collect();
                let nodes: Vec<NodeId> = add_node.into_iter().map(NodeId).collect();
                let mut written = add_client_certs(&dir, &cluster, &names)?;
                written.extend(add_node_certs(&dir, &cluster, &nodes)?);
                for files in written {
                    println!(
                        "wrote {} (serial {})",
                        files.certificate.display(),
                        files.serial_hex
                    );
                }
                return Ok(Finished::Done);
            }
            if force {
                for file in ["ca.pem", "ca.key"] {
                    remove_if_present(&dir.join(file))?;
                }
            }
            let nodes: Vec<NodeId> = nodes.into_iter().map(NodeId).collect();
            let clients = certificate_clients(&clients, &http_api_client);
            let files = write_dev_certs(&dir, &cluster, &nodes, &clients)?;
            println!(
                "wrote a CA, {} node and {} client certificates ({}) to {}",
                files.nodes.len(),
                files.clients.len(),
                clients.join(", "),
                dir.display()
            );
            Ok(Finished::Done)
        }
        Commands::Restore { from, server } => {
            init_logs("warn");
            let (config, _) = server_config(&server)?;
            let restored = crate::backup::restore(&from, &config)?;
            println!(
                "restored node {} in {}: {} of the backup's {} ranges (groups {:?})",
                restored.node.0,
                restored.data_dir.display(),
                restored.groups.len(),
                restored.range_count,
                restored
                    .groups
                    .iter()
                    .map(|group| group.0)
                    .collect::<Vec<_>>()
            );
            Ok(Finished::Done)
        }
        command => {
            init_logs("warn");
            client_runtime(CLIENT_THREADS)
                .map_err(CliError::Runtime)?
                .block_on(client_command(command))
        }
    }
}

/// The configuration file, overridden by the flags (read again on SIGHUP), and the effective
/// configuration as TOML.
fn server_config(args: &ServerArgs) -> Result<(NodeConfig, String), ConfigError> {
    let (config, effective) = NodeConfig::load_with(args.config.as_deref(), flag_table(args)?)?;
    config.validate()?;
    Ok((config, effective))
}

/// The flags given, as a table of the configuration's shape, to override the file with.
fn flag_table(args: &ServerArgs) -> Result<toml::Table, ConfigError> {
    let text = |value: &dyn ToString| toml::Value::String(value.to_string());
    let int = |flag, value: Option<u64>| value.map(|value| integer(flag, value)).transpose();
    let dir = |flag, value: &Option<PathBuf>| value.as_deref().map(|p| path(flag, p)).transpose();
    let endpoint_list = |flag: &str, given: &Option<String>| -> Result<_, ConfigError> {
        match given {
            Some(list) => {
                let endpoints = parse_endpoints(list)
                    .map_err(|error| ConfigError::Invalid(format!("{flag}: {error}")))?;
                let list = endpoints
                    .iter()
                    .map(|endpoint| toml::Value::String(endpoint.to_string()))
                    .collect();
                Ok(Some(toml::Value::Array(list)))
            }
            None => Ok(None),
        }
    };
    let initial_cluster = endpoint_list("--initial-cluster", &args.initial_cluster)?;
    let join = endpoint_list("--join", &args.join)?;
    let threads = args.network_threads.map(|threads| threads as u64);
    let flags = [
        ("node_id", int("--node-id", args.node_id)?),
        (
            "http_listen",
            args.http_listen.map(|address| text(&address)),
        ),
        ("listen", args.listen.map(|address| text(&address))),
        ("data_dir", dir("--data-dir", &args.data_dir)?),
        ("tls_dir", dir("--tls-dir", &args.tls_dir)?),
        ("initial_cluster", initial_cluster),
        ("join", join),
        ("ranges.groups", int("--groups", args.groups)?),
        ("network_threads", int("--network-threads", threads)?),
        ("log.segment_mib", int("--segment-mib", args.segment_mib)?),
        (
            "cluster_id",
            args.cluster_id.clone().map(toml::Value::String),
        ),
    ];
    let mut table = toml::Table::new();
    for (key, value) in flags {
        let Some(value) = value else { continue };
        let Some((section, key)) = key.split_once('.') else {
            table.insert(key.into(), value);
            continue;
        };
        let section = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(section) = section {
            section.insert(key.into(), value);
        }
    }
    Ok(table)
}

/// `value` as a TOML integer (which is signed: above 2^63 - 1 it is refused).
fn integer(flag: &str, value: u64) -> Result<toml::Value, ConfigError> {
    i64::try_from(value)
        .map(toml::Value::Integer)
        .map_err(|_| ConfigError::Invalid(format!("{flag} {value} is too large")))
}

/// `path` as a TOML string (which is UTF-8: another path is refused).
fn path(flag: &str, path: &std::path::Path) -> Result<toml::Value, ConfigError> {
    path.to_str()
        .map(|text| toml::Value::String(text.into()))
        .ok_or_else(|| ConfigError::Invalid(format!("{flag} {} is not UTF-8", path.display())))
}

async fn client_command(command: Commands) -> Result<Finished, CliError> {
    let (client_args, format, command) = match command {
        Commands::Get {
            key,
            format,
            client,
        } => (
            client,
            format,
            Command::Get {
                key: format.decode(&key)?,
            },
        ),
        Commands::Put {
            key,
            value,
            format,
            client,
        } => (
            client,
            format,
            Command::Put {
                key: format.decode(&key)?,
                value: format.decode(&value)?,
            },
        ),
        Commands::Delete {
            key,
            format,
            client,
        } => (
            client,
            format,
            Command::Delete {
                key: format.decode(&key)?,
            },
        ),
        Commands::Cas {
            key,
            expected,
            new,
            format,
            client,
        } => (
            client,
            format,
            Command::CompareAndSwap {
                key: format.decode(&key)?,
                expected: format.decode_optional(&expected)?,
                new: format.decode_optional(&new)?,
            },
        ),
        Commands::Scan {
            start,
            end,
            limit,
            format,
            client,
        } => (
            client,
            format,
            Command::Scan {
                start: format.decode(&start)?,
                end: end.as_deref().map(|end| format.decode(end)).transpose()?,
                limit,
            },
        ),
        command => return admin_command(command).await.map(|()| Finished::Done),
    };
    let (op, key) = describe(&command);
    let key = key.to_vec();
    let result = match Client::connect(client_args.options()).await {
        Ok(client) => data_command(&client, format, command).await,
        Err(error) => Err(error.into()),
    };
    // A script reading `--output json` gets the failure as the same object on stdout (and the
    // exit code 1); stderr still says it for a person.
    if let (Err(CliError::Client(error)), Output::Json) = (&result, format.output.output()) {
        let line = OpResult::failed(op, &key, error, format.encoding).line();
        println!("{}", line.map_err(ShellError::Json)?);
    }
    result
}

/// Runs a get, put, delete, cas or scan and prints its result.
async fn data_command(
    client: &Client,
    format: DataArgs,
    command: Command,
) -> Result<Finished, CliError> {
    let (op, key) = describe(&command);
    let key = key.to_vec();
    let reply = try_execute(client, command).await?;
    let encoding = format.encoding;
    match format.output.output() {
        Output::Text => println!("{}", reply.text(encoding)),
        Output::Json => {
            let line = OpResult::done(op, &key, &reply, encoding).line();
            println!("{}", line.map_err(ShellError::Json)?);
        }
    }
    Ok(reply.finished())
}

/// Runs a client command that is not a data command: the shell, status, node and range.
async fn admin_command(command: Commands) -> Result<(), CliError> {
    match command {
        Commands::Shell {
            encoding,
            output,
            client,
        } => {
            let client = Client::connect(client.options()).await?;
            Ok(crate::shell::run(&client, encoding, output).await?)
        }
        Commands::Status {
            encoding,
            output,
            client,
        } => {
            let client = Client::connect(client.options()).await?;
            let json = output.output() == Output::Json;
            Ok(crate::status::print_status(&client, json, encoding).await?)
        }
        Commands::Node {
            action,
            output,
            client,
        } => {
            let client = Client::connect(client.options()).await?;
            let json = output.output() == Output::Json;
            Ok(crate::status::node_command(&client, action, json).await?)
        }
        Commands::Range {
            action,
            encoding,
            output,
            client,
        } => {
            let client = Client::connect(client.options()).await?;
            let json = output.output() == Output::Json;
            Ok(crate::ranges::range_command(&client, action, json, encoding).await?)
        }
        Commands::Backup { to, output, client } => {
            let cluster_id = client.identity.cluster_id.clone();
            let client = Client::connect(client.options()).await?;
            let json = output.output() == Output::Json;
            let manifest = crate::backup::backup(&client, &cluster_id, &to, |range| {
                if !json {
                    println!(
                        "range {} (group {}): {} pairs at index {} from node {}",
                        range.range,
                        range.group,
                        range.pair_count,
                        range.applied_index,
                        range.read_from
                    );
                }
            })
            .await?;
            if json {
                let text = serde_json::to_string(&manifest).map_err(ShellError::Json)?;
                println!("{text}");
            } else {
                let pairs: u64 = manifest.ranges.iter().map(|range| range.pair_count).sum();
                println!(
                    "backed up {} ranges, {pairs} pairs, into {}",
                    manifest.ranges.len(),
                    to.display()
                );
            }
            Ok(())
        }
        Commands::Server(_)
        | Commands::Restore { .. }
        | Commands::Demo(_)
        | Commands::Bench(_)
        | Commands::Inspect(_)
        | Commands::Certs { .. }
        | Commands::Get { .. }
        | Commands::Put { .. }
        | Commands::Delete { .. }
        | Commands::Cas { .. }
        | Commands::Scan { .. } => {
            unreachable!("run() and client_command() handle the commands that are not these")
        }
    }
}

/// The client names `flotilla certs` issues: `clients`, then the API's client unless it is ""
/// or already listed.
fn certificate_clients<'a>(clients: &'a [String], http_api_client: &'a str) -> Vec<&'a str> {
    let mut names: Vec<&str> = clients.iter().map(String::as_str).collect();
    if !http_api_client.is_empty() && !names.contains(&http_api_client) {
        names.push(http_api_client);
    }
    names
}

/// Removes `path` unless it is already gone.
fn remove_if_present(path: &std::path::Path) -> Result<(), CliError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(CliError::Certificates(CertError::Io {
                path: path.to_owned(),
                source: error,
            }))
        }
        _ => Ok(()),
    }
}

/// Logs to stderr as `format` says, filtered by `FLOTILLA_LOG`, else `RUST_LOG`, else
/// `default`.
fn init_logs(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Cli, Commands, certificate_clients};
    use clap::Parser;

    /// The endpoints `flotilla get ... --endpoints LIST` was given, or clap's error message.
    fn endpoints_of(list: &str) -> Result<Vec<String>, String> {
        let cli = Cli::try_parse_from(["flotilla", "get", "k", "--endpoints", list])
            .map_err(|error| error.to_string())?;
        let Commands::Get { client, .. } = cli.command else {
            unreachable!("parsed a get");
        };
        Ok(client.endpoints.iter().map(ToString::to_string).collect())
    }

    /// `host:port` (a name, an IPv4 or a bracketed IPv6 address) and `id@host:port` both,
    /// in one list.
    #[test]
    fn endpoints_take_host_port_with_or_without_a_node_id() {
        assert_eq!(
            endpoints_of("db1.example:7000,2@10.0.0.2:7001,[::1]:7002").unwrap(),
            ["db1.example:7000", "2@10.0.0.2:7001", "[::1]:7002"]
        );
    }

    /// A malformed endpoint is refused before any request, saying what is wrong with it.
    #[test]
    fn malformed_endpoints_are_refused_with_what_is_wrong() {
        for (list, says) in [
            ("db1.example", "`db1.example` has no port"),
            ("db1:70000", "`70000` in `db1:70000` is not a port"),
            ("0@db1:7000", "`0` in `0@db1:7000` is not a node id"),
            (
                "db1:7000,bad host:7000",
                "`bad host` in `bad host:7000` is not a host name",
            ),
        ] {
            let error = endpoints_of(list).unwrap_err();
            assert!(error.contains(says), "{list}: {error}");
            assert!(error.contains("--endpoints"), "{list}: {error}");
        }
    }

    /// The API's client comes after `--clients`, once, and "" leaves it out.
    #[test]
    fn certs_issue_the_api_client_once_unless_told_not_to() {
        let clients = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
        let admin: Vec<String> = clients(&["admin"]);
        assert_eq!(
            certificate_clients(&admin, "http-api"),
            ["admin", "http-api"]
        );
        assert_eq!(certificate_clients(&admin, ""), ["admin"]);
        let both: Vec<String> = clients(&["http-api", "admin"]);
        assert_eq!(
            certificate_clients(&both, "http-api"),
            ["http-api", "admin"]
        );
    }
}

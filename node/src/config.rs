//! The node's configuration: an embedded default (`default.toml`), overridden by a TOML file
//! and then by flags, and validated once at start so a bad value is a clear error.

use flotilla_raft::NodeId;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

// Loaded the same way by nodes and clients; the client crate owns the code.
pub use flotilla_client::tls::{TlsLoadError, load_tls};

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The default `http.api_client`: the client name `flotilla certs` and a local cluster issue
/// a certificate for, so the JSON API works without another step.
pub const DEFAULT_HTTP_API_CLIENT: &str = "http-api";

/// `peer_silence_ms` must cover at least this many liveness intervals (an idle connection
/// carries one batch each).
const PEER_SILENCE_HEARTBEATS_MIN: u64 = 4;

/// The largest `log.segment_mib`: the log engine addresses a segment with 32-bit offsets, so
/// 4096 MiB is one byte too many.
pub const SEGMENT_MIB_MAX: u64 = 4095;

/// The most ranges a new cluster starts with (`ranges.groups`).
pub const RANGES_MAX: u64 = flotilla_shard_manager::RangeMap::UNIFORM_RANGES_MAX;
/// The smallest `ranges.split_bytes` other than 0 (never split).
pub const SPLIT_BYTES_MIN: u64 = 1024;
/// The largest log record (one entry), whatever the segment size.
const RECORD_BYTES_LIMIT: u64 = 8 << 20;

const _: () = assert!(SEGMENT_MIB_MAX << 20 <= u32::MAX as u64);
const _: () = assert!(RECORD_BYTES_LIMIT <= (SEGMENT_MIB_MAX << 20) / 2);

/// A node and where it listens, written `id@address` (`1@127.0.0.1:7101`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The node's id (its certificate names it).
    pub node: NodeId,
    /// Its QUIC address.
    pub address: SocketAddr,
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (id, address) = text
            .split_once('@')
            .ok_or_else(|| format!("`{text}` is not id@address (e.g. 1@127.0.0.1:7101)"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("`{id}` in `{text}` is not a node id (a positive integer)"))?;
        if id == 0 {
            return Err(format!("node ids start at 1 (`{text}`)"));
        }
        let address = address
            .parse()
            .map_err(|_| format!("`{address}` in `{text}` is not an ip:port address"))?;
        Ok(Self {
            node: NodeId(id),
            address,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node.0, self.address)
    }
}

impl From<Endpoint> for flotilla_client::Endpoint {
    fn from(endpoint: Endpoint) -> Self {
        Self {
            node: Some(endpoint.node),
            ..Self::from(endpoint.address)
        }
    }
}

/// Parses a comma-separated list of endpoints.
///
/// # Errors
/// The first entry that is not `id@address`, or an empty list.
pub fn parse_endpoints(text: &str) -> Result<Vec<Endpoint>, String> {
    let endpoints = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(Endpoint::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err("no endpoint given".into());
    }
    Ok(endpoints)
}

/// Who a client is: its certificate and cluster.
#[derive(Clone, Debug, clap::Args)]
pub struct IdentityArgs {
    /// The certificate directory (`ca.pem`, `client-<name>.pem`/`.key`).
    #[arg(long, global = true, default_value = "flotilla-certs")]
    pub tls_dir: PathBuf,
    /// The client certificate's name.
    #[arg(long, global = true, default_value = "admin")]
    pub name: String,
    /// The cluster's id.
    #[arg(long, global = true, default_value = "flotilla")]
    pub cluster_id: String,
}

/// How one node runs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The cluster's name.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: u64,
    /// Where this node listens (default: its address in `initial_cluster`).
    pub listen: Option<SocketAddr>,
    /// Where the HTTP listener (`/metrics`, `/health`, `/ready`) listens, TCP; none: off.
    pub http_listen: Option<SocketAddr>,
    /// The log, snapshots and state (default: `flotilla-data/node-<id>`).
    pub data_dir: Option<PathBuf>,
    /// Certificates.
    pub tls_dir: PathBuf,
    /// Network threads (0: one per core, up to 4).
    pub network_threads: usize,
    /// A peer connection on which nothing arrived for this long is given up and redialed.
    pub peer_silence_ms: u64,
    /// The nodes the cluster starts with, `id@address`.
    pub initial_cluster: Vec<String>,
    /// Nodes of a running cluster to join through, `id@address` (empty: this node is one of
    /// `initial_cluster`). A joining node needs `listen` and an id never used in the cluster.
    pub join: Vec<String>,
    /// How long a node about to bootstrap an empty data directory waits for the other initial
    /// nodes to say whether they already know its id.
    pub bootstrap_check_ms: u64,
    /// How the key space is split.
    pub ranges: RangesConfig,
    /// Raft timing.
    pub raft: RaftConfig,
    /// The write-ahead log.
    pub log: LogSettings,
    /// Where each range's applied data lives (`[storage]`).
    pub storage: StorageSettings,
    /// Client limits.
    pub limits: Limits,
    /// Client sessions (exactly-once writes).
    pub sessions: SessionSettings,
    /// The QUIC transport's limits.
    pub transport: TransportSettings,
    /// Cadences and sizes of the node's own work.
    pub tuning: Tuning,
    /// How the placement driver keeps ranges replicated and spread (`[placement]`).
    pub placement: flotilla_shard_manager::placement::PlacementConfig,
    /// Who may do what, and which certificates are refused.
    pub access: crate::access::AccessSettings,
    /// What a client of the HTTP listener may make the node hold.
    pub http: HttpSettings,
}

/// What a client of the HTTP listener (`http_listen`) may make the node hold: connections, head
/// bytes and time for every request; for the JSON API (HTTPS with a client certificate only,
/// `docs/http-api.md`) also a body, a request's time and a scan's answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub connections_max: usize,
    /// The largest request head (request line and headers) read; a larger one is refused.
    pub header_bytes_max: usize,
    /// A request head must arrive within this long, or the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A connection is closed this long after it was accepted, whatever it is doing.
    pub connection_lifetime_ms: u64,
    /// The status page (`/`) lists at most this many nodes and this many ranges; it counts
    /// the rest.
    pub status_rows_max: usize,
    /// The status page plots the request rate over this many seconds (one sample a second,
    /// kept by the driver).
    pub status_history_seconds: u64,
    /// The client certificate (`client-<name>.pem` in `tls_dir`) through which the JSON API
    /// reaches the cluster; each caller's own certificate is checked against `[access]` first.
    pub api_client: String,
    /// The largest request body the API reads (a value, or a compare-and-swap's JSON); a
    /// larger one is refused with 413 before it is read.
    pub body_bytes_max: usize,
    /// How long one API request may take: its body must arrive within it, and the cluster
    /// must answer within it (retries included).
    pub request_timeout_ms: u64,
    /// The most pairs one API scan returns; it gives a continuation key for the rest.
    pub scan_pairs_max: u32,
    /// The key and value bytes one API scan collects at most (it stops at the first pair
    /// past them and gives a continuation key).
    pub scan_bytes_max: usize,
}

impl HttpSettings {
    /// hyper reads request heads into a buffer of at least this many bytes.
    const HEADER_BYTES_MIN: usize = 8192;
    /// Heads beyond this are no scraper's or probe's.
    const HEADER_BYTES_LIMIT: usize = 1 << 20;
    /// A status page of more rows than this is for a program, which reads `/metrics`.
    const STATUS_ROWS_LIMIT: usize = 10_000;
    /// An hour of one-second samples: 3,600 of them, about 100 KB in the driver.
    const STATUS_HISTORY_LIMIT_SECONDS: u64 = 3_600;
    /// An API body or scan answer smaller than this holds no useful value.
    const BODY_BYTES_MIN: usize = 1024;
    /// 64 MiB: far over the largest write (a compare-and-swap of two values of `[limits]`),
    /// and what `connections_max` bodies at once may each hold.
    const BODY_BYTES_LIMIT: usize = 64 << 20;
    /// A request gets one attempt of the client at least (its attempts wait up to a second).
    const REQUEST_TIMEOUT_MS_MIN: u64 = 1_000;
    /// Pairs beyond this in one answer are for a program that pages.
    const SCAN_PAIRS_LIMIT: u32 = 100_000;

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError::Invalid(reason));
        if !(1..=65_536).contains(&self.connections_max) {
            return fail(format!(
                "http.connections_max must be 1 to 65536, not {}",
                self.connections_max
            ));
        }
        if !(Self::HEADER_BYTES_MIN..=Self::HEADER_BYTES_LIMIT).contains(&self.header_bytes_max) {
            return fail(format!(
                "http.header_bytes_max must be {} to {}, not {}",
                Self::HEADER_BYTES_MIN,
                Self::HEADER_BYTES_LIMIT,
                self.header_bytes_max
            ));
        }
        if !(1..=600_000).contains(&self.header_read_timeout_ms) {
            return fail(format!(
                "http.header_read_timeout_ms must be 1 to 600000, not {}",
                self.header_read_timeout_ms
            ));
        }
        if !(self.header_read_timeout_ms..=3_600_000).contains(&self.connection_lifetime_ms) {
            return fail(format!(
                "http.connection_lifetime_ms must be http.header_read_timeout_ms ({}) to \
                 3600000, not {}",
                self.header_read_timeout_ms, self.connection_lifetime_ms
            ));
        }
        self.validate_status_page()?;
        self.validate_api()
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError::Invalid(reason));
        if !flotilla_transport_quic::identity::is_label(&self.api_client) {
            return fail(format!(
                "http.api_client must be a client name (a lowercase DNS label), not {:?}",
                self.api_client
            ));
        }
        if !(Self::BODY_BYTES_MIN..=Self::BODY_BYTES_LIMIT).contains(&self.body_bytes_max) {
            return fail(format!(
                "http.body_bytes_max must be {} to {}, not {}",
                Self::BODY_BYTES_MIN,
                Self::BODY_BYTES_LIMIT,
                self.body_bytes_max
            ));
        }
        if !(Self::REQUEST_TIMEOUT_MS_MIN..=600_000).contains(&self.request_timeout_ms) {
            return fail(format!(
                "http.request_timeout_ms must be {} to 600000, not {}",
                Self::REQUEST_TIMEOUT_MS_MIN,
                self.request_timeout_ms
            ));
        }
        if !(1..=Self::SCAN_PAIRS_LIMIT).contains(&self.scan_pairs_max) {
            return fail(format!(
                "http.scan_pairs_max must be 1 to {}, not {}",
                Self::SCAN_PAIRS_LIMIT,
                self.scan_pairs_max
            ));
        }
        if !(Self::BODY_BYTES_MIN..=Self::BODY_BYTES_LIMIT).contains(&self.scan_bytes_max) {
            return fail(format!(
                "http.scan_bytes_max must be {} to {}, not {}",
                Self::BODY_BYTES_MIN,
                Self::BODY_BYTES_LIMIT,
                self.scan_bytes_max
            ));
        }
        Ok(())
    }

    fn validate_status_page(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError::Invalid(reason));
        if !(1..=Self::STATUS_ROWS_LIMIT).contains(&self.status_rows_max) {
            return fail(format!(
                "http.status_rows_max must be 1 to {}, not {}",
                Self::STATUS_ROWS_LIMIT,
                self.status_rows_max
            ));
        }
        if !(2..=Self::STATUS_HISTORY_LIMIT_SECONDS).contains(&self.status_history_seconds) {
            return fail(format!(
                "http.status_history_seconds must be 2 to {}, not {}",
                Self::STATUS_HISTORY_LIMIT_SECONDS,
                self.status_history_seconds
            ));
        }
        Ok(())
    }
}

/// The QUIC transport's limits (the rest of `TransportConfig` keeps its defaults).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransportSettings {
    /// The largest frame accepted or sent, header included; checked before allocating.
    pub frame_bytes_max: u32,
    /// Batches queued per peer and per stream class before new ones are dropped.
    pub outbound_queue_batches: usize,
    /// Snapshot chunk bytes queued per peer before new snapshot batches are dropped.
    pub outbound_snapshot_queue_bytes: u64,
    /// Batches received but not yet handed to the node; a full queue pushes back on peers.
    pub inbound_queue_batches: usize,
    /// Accepted client connections waiting to be served; more are refused.
    pub client_queue_connections: usize,
    /// How long a QUIC + TLS handshake may take.
    pub handshake_timeout_ms: u64,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout_ms: u64,
    /// Keep-alive interval, well under `idle_timeout_ms`.
    pub keep_alive_interval_ms: u64,
    /// The largest request frame read from a client, header included (checked on the header).
    pub client_request_bytes_max: u32,
    /// How long a frame's payload may take to arrive after its header.
    pub frame_read_timeout_ms: u64,
    /// Streams one client connection may have open at once.
    pub client_streams_max: u32,
    /// Client connections served at once.
    pub client_connections_max: usize,
    /// Client connections one certificate name may hold at once.
    pub client_connections_per_identity_max: usize,
    /// Incoming handshakes in progress at once.
    pub handshakes_max: usize,
    /// Refused connections are counted each but logged at most once per reason per this
    /// interval (0: every one); at most an hour.
    pub refusal_log_interval_ms: u64,
}

/// Cadences and sizes of the node's own work.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Inputs the driver takes from each queue (peer batches, client requests) in one turn.
    pub input_burst_max: usize,
    /// Peer batches waiting for the driver; more are dropped (Raft tolerates loss).
    pub inbound_batches_max: usize,
    /// The most entry and snapshot bytes in one outbound batch.
    pub batch_payload_bytes_max: u64,
    /// The most key and value bytes in one scan response.
    pub scan_bytes_max: usize,
    /// Answer bytes of reads the driver serves in one turn; the rest wait for the next turn.
    pub read_bytes_per_turn: usize,
    /// Log writes between two garbage collections of the log's segments.
    pub gc_interval_writes: u64,
    /// Ticks between two rounds of placement work: reports to the meta leader, its driver's
    /// tick, range leaders carrying out operators, replicas created and destroyed.
    pub placement_interval_ticks: u64,
    /// How often the driver publishes its counters for the HTTP listener, in milliseconds.
    pub metrics_publish_interval_ms: u64,
    /// At most one summary line at info per this many milliseconds (none while nothing
    /// changed).
    pub summary_log_interval_ms: u64,
}

/// How each range keeps its clients' sessions. The values travel in every entry that opens a
/// session, so the replicas of a range apply the same ones; give every node the same.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// A session ends after this long (log time) without a write of its own in the range.
    pub expiry_seconds: u64,
    /// Sessions one range keeps; opening one more ends the least recently active one.
    pub per_range_max: u32,
    /// Results one session may hold in a range (writes its client still awaits, and those
    /// answered after the oldest it awaits); a session that would hold more is ended. Clients
    /// keep within it.
    pub results_per_session_max: u32,
}

/// The write-ahead log's settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Segment size in MiB.
    pub segment_mib: u64,
    /// Payload bytes of each range's newest log entries kept in memory for replication.
    pub recent_bytes_per_range: u64,
    /// Segments the log may hold before every group with a live entry in an older one is
    /// compacted, however little it applied since its last snapshot; 2 to 1,000,000.
    pub compact_beyond_segments: usize,
    /// Snapshots of ranges on disk streaming into spool files off the Raft loop (to be sent
    /// to followers), or streamed and not yet taken, at once; 1 to 64.
    pub snapshot_loads_max: usize,
    /// Snapshot files open to be sent at once, each held until its transfers end; 1 to 4096.
    pub snapshot_sends_max: usize,
}

/// Which store holds each range's applied data.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngine {
    /// In memory: a restart rebuilds every range from its snapshot and the log.
    Memory,
    /// In one embedded engine per node (fjall), in the data directory's `engine` folder.
    Disk,
}

impl StorageEngine {
    /// Its name in the configuration.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
        }
    }
}

/// Where each range's applied data lives, and the embedded engine's memory.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// `memory` or `disk`.
    pub engine: StorageEngine,
    /// The engine's block cache, shared by every range, in MiB.
    pub cache_mib: u64,
    /// The size at which the engine's write buffer is rotated to be flushed, in MiB (one can grow
    /// past it while the engine's background thread compacts).
    pub write_buffer_mib: u64,
    /// The engine's threads that flush and compact in the background, 1 to 4.
    pub background_threads: usize,
}

/// How the key space is split into groups.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RangesConfig {
    /// Ranges (= data groups) of equal share of the key space.
    pub groups: u64,
    /// Replicas per group.
    pub replicas: usize,
    /// A range whose key and value bytes pass this splits at its middle key (0: never).
    pub split_bytes: u64,
    /// A range whose leader serves more requests per second than this splits at the median
    /// of the keys it sampled (0: never).
    pub split_load_rps: u64,
    /// The most key and value bytes a range may hold to be merged into its left neighbour:
    /// its state travels in one note and one entry (0: no merges).
    pub merge_bytes: u64,
    /// Two neighbours holding fewer key and value bytes than this together merge by
    /// themselves (0: only by command); below `split_bytes`, so a merged range does not split.
    pub merge_below_bytes: u64,
    /// Such neighbours merge by themselves only while their leaders served fewer requests per
    /// second than this together (0: their load does not count); below `split_load_rps`, so
    /// a merged range does not split by load.
    pub merge_below_rps: u64,
    /// Seconds after a split before its halves may merge by themselves.
    pub merge_wait_seconds: u64,
}

/// Raft timing, in ticks of `tick_ms`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    /// One tick.
    pub tick_ms: u64,
    /// Lower bound of the election timeout.
    pub election_ticks_min: u64,
    /// Upper bound (exclusive) of the election timeout.
    pub election_ticks_max: u64,
    /// Interval of the coalesced node heartbeat.
    pub heartbeat_ticks: u64,
    /// A peer that nothing else goes to gets an empty heartbeat batch (its liveness signal)
    /// every this many heartbeat intervals.
    pub liveness_every_heartbeats: u64,
    /// A silent peer node is down after this many ticks.
    pub node_timeout_ticks: u64,
    /// Applied entries between two snapshots of a group, at least (a group also waits until
    /// those entries carry as many bytes as its last snapshot).
    pub snapshot_entries: u64,
    /// Bytes of snapshot chunks a leader keeps in flight per transfer (at least one chunk).
    pub snapshot_window_bytes: u64,
    /// Payload bytes of committed entries handed out to apply in one ready cycle, over all
    /// groups (each group with entries to apply gets at least one); 1 MiB to 1 GiB.
    pub apply_bytes_per_ready: u64,
    /// A snapshot transfer that made no progress this long sends its window again.
    pub snapshot_resend_ticks: u64,
    /// A snapshot transfer to a follower silent this long is given up.
    pub snapshot_give_up_ticks: u64,
}

/// What clients may send.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The largest key.
    pub key_bytes_max: usize,
    /// The largest value.
    pub value_bytes_max: usize,
    /// Requests queued for the driver before new ones are refused as busy.
    pub pending_requests_max: usize,
    /// Requests of one client stream read but not yet answered; the node stops reading the
    /// stream while this many are in flight.
    pub stream_requests_max: usize,
    /// Answer bytes one client stream may hold: each request read reserves its largest
    /// possible answer until the answer is written, and the node reads the stream's next
    /// request only while another largest answer fits (a client that never reads is not read).
    pub stream_answer_bytes_max: usize,
    /// Key and value bytes this node's ranges may hold before writes that add data are
    /// refused (0: no quota). Ranges live in memory, so this bounds their memory too.
    pub storage_quota_bytes: u64,
    /// Free disk space below which writes that add data are refused, so the log always has
    /// room to finish the writes Raft has started.
    pub disk_reserve_bytes: u64,
    /// Backup views (`flotilla backup`) open at once on this node; each holds its range's
    /// state as it was when opened, so a write to the range after it copies that state.
    pub backup_views_max: usize,
    /// A backup view nobody asked for pairs for this long is dropped.
    pub backup_view_idle_ms: u64,
    /// Replicas (ranges and the meta group) this node may host: a bound on the memory they
    /// take, checked when a replica is created.
    pub ranges_hosted_max: usize,
}

impl Limits {
    /// Small limits for tests of the node core (its unit tests and the whole-cluster
    /// simulator): 64-byte keys and values, no quota or disk reserve, 4 backup views.
    #[must_use]
    pub fn small_for_tests() -> Self {
        Self {
            key_bytes_max: 64,
            value_bytes_max: 64,
            pending_requests_max: 4096,
            stream_requests_max: 1024,
            stream_answer_bytes_max: 8 << 20,
            storage_quota_bytes: 0,
            disk_reserve_bytes: 0,
            backup_views_max: 4,
            backup_view_idle_ms: 60_000,
            ranges_hosted_max: 1_000,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("configuration: cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not TOML.
    #[error("configuration: {} is not TOML: {source}", path.display())]
    NotToml {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: Box<toml::de::Error>,
    },
    /// The embedded default does not parse (a build defect).
    #[error("configuration: the embedded default does not parse: {0}")]
    Embedded(#[source] Box<toml::de::Error>),
    /// A key is unknown or a value has the wrong type.
    #[error("configuration: {location}: {message}")]
    Key {
        /// Where: the file and line that set the key (when a file did), and the dotted key.
        location: String,
        /// What the parser said.
        message: String,
    },
    /// The merged configuration could not be written back as TOML (a defect).
    #[error("configuration: the merged table cannot be written: {0}")]
    Merge(#[source] toml::ser::Error),
    /// A value out of range, or values that do not fit together: the rule, as a sentence.
    #[error("configuration: {0}")]
    Invalid(String),
    /// The `[access]` section breaks a rule.
    #[error("configuration: access: {0}")]
    Access(#[from] crate::access::AccessError),
}

impl NodeConfig {
    /// The embedded default, overridden by the TOML file at `path` if given.
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown key or a value of the wrong type.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Ok(Self::load_with(path, toml::Table::new())?.0)
    }

    /// The embedded default, overridden by the TOML file at `path` if given, then by `flags`
    /// (a table of the same shape); with the effective configuration as TOML text, which
    /// loads back to the same values.
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown key or a value of the wrong type: the error
    /// names the key and, when the file set it, the file's line.
    pub fn load_with(
        path: Option<&Path>,
        flags: toml::Table,
    ) -> Result<(Self, String), ConfigError> {
        let mut table: toml::Table = toml::from_str(DEFAULT_CONFIG)
            .map_err(|error| ConfigError::Embedded(Box::new(error)))?;
        let mut file = None;
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let top: toml::Table =
                toml::from_str(&text).map_err(|source| ConfigError::NotToml {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?;
            merge(&mut table, top);
            file = Some((path, text));
        }
        merge(&mut table, flags);
        // The merged text is parsed (not the table) so that an error has a position; the
        // position is in that text, so it is mapped back to the key and the file's line.
        let merged = toml::to_string(&table).map_err(ConfigError::Merge)?;
        let file = file.as_ref().map(|(path, text)| (*path, text.as_str()));
        let config = toml::from_str(&merged).map_err(|error| key_error(&error, &merged, file))?;
        Ok((config, merged))
    }

    /// This node's id.
    #[must_use]
    pub fn node(&self) -> NodeId {
        NodeId(self.node_id)
    }

    /// Where this node listens: `listen`, or its own address in the initial cluster.
    ///
    /// # Errors
    /// Neither is given, or the initial cluster does not parse.
    pub fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        if let Some(listen) = self.listen {
            return Ok(listen);
        }
        self.initial_endpoints()?
            .iter()
            .find(|endpoint| endpoint.node == self.node())
            .map(|endpoint| endpoint.address)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "node {} is not in initial_cluster, so `listen` must be given",
                    self.node_id
                ))
            })
    }

    /// How many network threads to run.
    #[must_use]
    pub fn network_threads(&self) -> usize {
        match self.network_threads {
            0 => std::thread::available_parallelism().map_or(2, |cores| cores.get().min(4)),
            threads => threads,
        }
    }

    /// The data directory: `data_dir`, or `flotilla-data/node-<id>`.
    #[must_use]
    pub fn data_directory(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("flotilla-data/node-{}", self.node_id)))
    }

    /// The nodes to join through, parsed (empty: not joining).
    ///
    /// # Errors
    /// An entry that is not `id@address`.
    pub fn join_endpoints(&self) -> Result<Vec<Endpoint>, ConfigError> {
        self.join
            .iter()
            .map(|text| {
                Endpoint::from_str(text)
                    .map_err(|error| ConfigError::Invalid(format!("join: {error}")))
            })
            .collect()
    }

    /// The initial cluster, parsed and sorted by node id.
    ///
    /// # Errors
    /// An entry that is not `id@address`, or a node id given twice.
    pub fn initial_endpoints(&self) -> Result<Vec<Endpoint>, ConfigError> {
        let mut endpoints = self
            .initial_cluster
            .iter()
            .map(|text| {
                Endpoint::from_str(text)
                    .map_err(|error| ConfigError::Invalid(format!("initial_cluster: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        endpoints.sort();
        if endpoints
            .windows(2)
            .any(|pair| pair[0].node == pair[1].node)
        {
            return Err(ConfigError::Invalid(
                "initial_cluster names a node id twice".into(),
            ));
        }
        Ok(endpoints)
    }

    /// Checks every value and every relation between values.
    ///
    /// # Errors
    /// The first value out of range, as a sentence.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError::Invalid(reason));
        let endpoints = self.initial_endpoints()?;
        if endpoints.is_empty() {
            return fail("initial_cluster must name at least one node".into());
        }
        if self.node_id == 0 {
            return fail("node_id must be at least 1".into());
        }
        let joining = self.join_endpoints()?;
        if !joining.is_empty() {
            if self.listen.is_none() {
                return fail("a joining node (join) needs `listen`: its address".into());
            }
            if endpoints
                .iter()
                .any(|endpoint| endpoint.node == self.node())
            {
                return fail(format!(
                    "node {} is in initial_cluster, so it starts the cluster and cannot join it",
                    self.node_id
                ));
            }
        }
        let listen = self.listen_address()?;
        let own = endpoints
            .iter()
            .find(|endpoint| endpoint.node == self.node());
        if let Some(own) = own.filter(|own| own.address.port() != listen.port()) {
            return fail(format!(
                "listen {listen} does not match this node's initial_cluster entry {own} (peers dial that port)"
            ));
        }
        if !(1..=RANGES_MAX).contains(&self.ranges.groups) {
            return fail(format!(
                "ranges.groups must be 1 to {RANGES_MAX}, not {}",
                self.ranges.groups
            ));
        }
        if !(1..=10_000_000).contains(&self.limits.ranges_hosted_max) {
            return fail(format!(
                "limits.ranges_hosted_max must be 1 to 10000000, not {}",
                self.limits.ranges_hosted_max
            ));
        }
        // A first start hosts every range on a cluster of as many nodes as replicas.
        if self.limits.ranges_hosted_max as u64 <= self.ranges.groups {
            return fail(format!(
                "limits.ranges_hosted_max ({}) must exceed ranges.groups ({}): a node may host \
                 every range and the meta group",
                self.limits.ranges_hosted_max, self.ranges.groups
            ));
        }
        if self.ranges.split_bytes != 0 && self.ranges.split_bytes < SPLIT_BYTES_MIN {
            return fail(format!(
                "ranges.split_bytes must be 0 (never split) or at least {SPLIT_BYTES_MIN}, not {}",
                self.ranges.split_bytes
            ));
        }
        let merge_limit = self.tuning.batch_payload_bytes_max / 4;
        if self.ranges.merge_bytes > merge_limit {
            return fail(format!(
                "ranges.merge_bytes must be at most a quarter of tuning.batch_payload_bytes_max \
                 ({merge_limit}): a merged range's state travels in one batch, with its \
                 sessions; not {}",
                self.ranges.merge_bytes
            ));
        }
        let split = self.ranges.split_bytes;
        if self.ranges.merge_below_bytes != 0
            && split != 0
            && self.ranges.merge_below_bytes >= split
        {
            return fail(format!(
                "ranges.merge_below_bytes ({}) must be below ranges.split_bytes ({split}), or \
                 the merged range would split again",
                self.ranges.merge_below_bytes
            ));
        }
        let split_rps = self.ranges.split_load_rps;
        if self.ranges.merge_below_rps != 0
            && split_rps != 0
            && self.ranges.merge_below_rps >= split_rps
        {
            return fail(format!(
                "ranges.merge_below_rps ({}) must be below ranges.split_load_rps ({split_rps}), \
                 or the merged range would split again by load",
                self.ranges.merge_below_rps
            ));
        }
        if self.ranges.replicas == 0 {
            return fail("ranges.replicas must be at least 1".into());
        }
        let raft = &self.raft;
        if raft.tick_ms == 0 || raft.tick_ms > 10_000 {
            return fail(format!(
                "raft.tick_ms must be 1 to 10000, not {}",
                raft.tick_ms
            ));
        }
        if raft.snapshot_entries == 0 {
            return fail("raft.snapshot_entries must be at least 1".into());
        }
        let chunk = self.multi_config().raft.snapshot_chunk_bytes;
        if !(chunk..=1 << 30).contains(&raft.snapshot_window_bytes) {
            return fail(format!(
                "raft.snapshot_window_bytes must be {chunk} (one snapshot chunk) to 1073741824, \
                 not {}",
                raft.snapshot_window_bytes
            ));
        }
        if !(1 << 20..=1 << 30).contains(&raft.apply_bytes_per_ready) {
            return fail(format!(
                "raft.apply_bytes_per_ready must be 1048576 to 1073741824, not {}",
                raft.apply_bytes_per_ready
            ));
        }
        if !(1..=1_000_000).contains(&raft.snapshot_resend_ticks) {
            return fail(format!(
                "raft.snapshot_resend_ticks must be 1 to 1000000, not {}",
                raft.snapshot_resend_ticks
            ));
        }
        if !(raft.election_ticks_min..=10_000_000).contains(&raft.snapshot_give_up_ticks) {
            return fail(format!(
                "raft.snapshot_give_up_ticks must be raft.election_ticks_min ({}) to 10000000, \
                 not {}",
                raft.election_ticks_min, raft.snapshot_give_up_ticks
            ));
        }
        if !(1..=60_000).contains(&self.bootstrap_check_ms) {
            return fail(format!(
                "bootstrap_check_ms must be 1 to 60000, not {}",
                self.bootstrap_check_ms
            ));
        }
        self.check_peer_silence()?;
        if self.network_threads > 64 {
            return fail(format!(
                "network_threads must be 0 to 64, not {}",
                self.network_threads
            ));
        }
        self.check_log()?;
        if self.limits.key_bytes_max == 0 || self.limits.pending_requests_max == 0 {
            return fail(
                "limits.key_bytes_max and limits.pending_requests_max must be at least 1".into(),
            );
        }
        if !(1..=1024).contains(&self.limits.backup_views_max) {
            return fail(format!(
                "limits.backup_views_max must be 1 to 1024, not {}",
                self.limits.backup_views_max
            ));
        }
        if !(1_000..=86_400_000).contains(&self.limits.backup_view_idle_ms) {
            return fail(format!(
                "limits.backup_view_idle_ms must be 1000 to 86400000 (a day), not {}",
                self.limits.backup_view_idle_ms
            ));
        }
        self.sessions.validate()?;
        self.access.validate()?;
        self.http.validate()?;
        self.transport_config()
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("transport: {error}")))?;
        self.check_tuning()?;
        self.placement_config()
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("placement: {error}")))?;
        self.multi_config()
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("raft: {}", error.0)))
    }

    /// The session limits every range this node leads applies.
    #[must_use]
    pub fn session_limits(&self) -> flotilla_storage::kv::SessionLimits {
        flotilla_storage::kv::SessionLimits {
            expiry_ms: self.sessions.expiry_seconds * 1000,
            sessions_max: self.sessions.per_range_max,
            results_max: self.sessions.results_per_session_max,
        }
    }

    /// `log.segment_mib` within `segment_mib_min()` to `SEGMENT_MIB_MAX`, and the log engine's
    /// own check of the configuration it makes.
    fn check_log(&self) -> Result<(), ConfigError> {
        let record_bytes = self.largest_write_bytes();
        if record_bytes > RECORD_BYTES_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "a key and two values (a compare-and-swap) of the limits need a log record of \
                 {record_bytes} bytes, over the largest of {RECORD_BYTES_LIMIT} (lower limits.*)"
            )));
        }
        let minimum = self.segment_mib_min();
        if !(minimum..=SEGMENT_MIB_MAX).contains(&self.log.segment_mib) {
            return Err(ConfigError::Invalid(format!(
                "log.segment_mib must be {minimum} to {SEGMENT_MIB_MAX} with these limits (a log \
                 record, half a segment, must hold a key and two values of limits.* and 1 KiB), \
                 not {}",
                self.log.segment_mib
            )));
        }
        if !(1..=64).contains(&self.log.snapshot_loads_max) {
            return Err(ConfigError::Invalid(format!(
                "log.snapshot_loads_max must be 1 to 64, not {}",
                self.log.snapshot_loads_max
            )));
        }
        if !(1..=4096).contains(&self.log.snapshot_sends_max) {
            return Err(ConfigError::Invalid(format!(
                "log.snapshot_sends_max must be 1 to 4096, not {}",
                self.log.snapshot_sends_max
            )));
        }
        let storage = &self.storage;
        if storage.cache_mib == 0 || storage.write_buffer_mib == 0 {
            return Err(ConfigError::Invalid(format!(
                "storage.cache_mib and storage.write_buffer_mib must be at least 1, not {} and {}",
                storage.cache_mib, storage.write_buffer_mib
            )));
        }
        if !(1..=4).contains(&storage.background_threads) {
            return Err(ConfigError::Invalid(format!(
                "storage.background_threads must be 1 to 4, not {}",
                storage.background_threads
            )));
        }
        self.engine_config()
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("storage: {error}")))?;
        self.log_config()
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("log: {error}")))
    }

    /// The bytes of the largest write the limits allow, as one log record: a compare-and-swap
    /// of a key and two values, and 1 KiB for the rest of the entry.
    fn largest_write_bytes(&self) -> u64 {
        (self.limits.key_bytes_max + 2 * self.limits.value_bytes_max + 1024) as u64
    }

    /// The smallest `log.segment_mib` these limits allow: a log record is half a segment (at
    /// most 8 MiB) and must hold the largest write. With the default limits (4 KiB keys, 1 MiB
    /// values), 5.
    #[must_use]
    pub fn segment_mib_min(&self) -> u64 {
        (2 * self.largest_write_bytes()).div_ceil(1 << 20).max(1)
    }

    /// Each tuning value within its bounds, and the payload and scan limits under the frame
    /// limit (with room for a batch's or a response's headers).
    fn check_tuning(&self) -> Result<(), ConfigError> {
        let tuning = &self.tuning;
        let frame = u64::from(self.transport.frame_bytes_max);
        let counts = [
            (
                "tuning.input_burst_max",
                tuning.input_burst_max as u64,
                1_000_000,
            ),
            (
                "tuning.inbound_batches_max",
                tuning.inbound_batches_max as u64,
                1_000_000,
            ),
            (
                "tuning.gc_interval_writes",
                tuning.gc_interval_writes,
                1 << 40,
            ),
            (
                "tuning.placement_interval_ticks",
                tuning.placement_interval_ticks,
                1 << 40,
            ),
            (
                "tuning.metrics_publish_interval_ms",
                tuning.metrics_publish_interval_ms,
                60_000,
            ),
            (
                "tuning.summary_log_interval_ms",
                tuning.summary_log_interval_ms,
                86_400_000,
            ),
        ];
        for (name, value, max) in counts {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be 1 to {max}, not {value}"
                )));
            }
        }
        // What must travel alone in one frame, with room for its batch's or response's
        // headers: the largest write (a compare-and-swap of two values) and a snapshot chunk.
        let write_bytes = self.largest_write_bytes();
        let chunk_bytes = self.multi_config().raft.snapshot_chunk_bytes;
        if write_bytes.max(chunk_bytes) > frame / 2 {
            return Err(ConfigError::Invalid(format!(
                "transport.frame_bytes_max ({frame}) must be at least twice the largest write \
                 ({write_bytes} bytes: a key and two values of the limits) and a snapshot chunk \
                 ({chunk_bytes} bytes)"
            )));
        }
        let request = u64::from(self.transport.client_request_bytes_max);
        if write_bytes > request {
            return Err(ConfigError::Invalid(format!(
                "transport.client_request_bytes_max ({request}) must hold the largest write \
                 ({write_bytes} bytes: a key and two values of the limits)"
            )));
        }
        if !(2..=1_000_000).contains(&self.log.compact_beyond_segments) {
            return Err(ConfigError::Invalid(format!(
                "log.compact_beyond_segments must be 2 to 1000000, not {}",
                self.log.compact_beyond_segments
            )));
        }
        if self.log.recent_bytes_per_range > 1 << 30 {
            return Err(ConfigError::Invalid(format!(
                "log.recent_bytes_per_range must be at most {}, not {}",
                1u64 << 30,
                self.log.recent_bytes_per_range
            )));
        }
        for (name, value) in [
            (
                "limits.stream_requests_max",
                self.limits.stream_requests_max,
            ),
            (
                "limits.stream_answer_bytes_max",
                self.limits.stream_answer_bytes_max,
            ),
        ] {
            if !(1..=1 << 30).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be 1 to {}, not {value}",
                    1 << 30
                )));
            }
        }
        let largest = self.stream_bounds().largest_reservation();
        if self.limits.stream_answer_bytes_max < 2 * largest {
            return Err(ConfigError::Invalid(format!(
                "limits.stream_answer_bytes_max ({}) must hold at least two of the largest \
                 answers ({largest} bytes: a value of the limits or a scan page)",
                self.limits.stream_answer_bytes_max
            )));
        }
        if !(1 << 20..=1 << 30).contains(&tuning.read_bytes_per_turn) {
            return Err(ConfigError::Invalid(format!(
                "tuning.read_bytes_per_turn must be 1 MiB to 1 GiB, not {}",
                tuning.read_bytes_per_turn
            )));
        }
        // Clients read with the transport's default frame limit, so what a node answers (a
        // scan, a value) must fit that too, whatever this node's own limit.
        let client_frame =
            u64::from(flotilla_transport_quic::TransportConfig::default().frame_bytes_max);
        if tuning.scan_bytes_max as u64 > client_frame / 2 || write_bytes > client_frame / 2 {
            return Err(ConfigError::Invalid(format!(
                "tuning.scan_bytes_max and the write limits must fit half of the clients' frame \
                 limit ({client_frame} bytes)"
            )));
        }
        let limit = crate::core::BATCH_PAYLOAD_BYTES_LIMIT.min(frame / 2);
        let sizes = [
            (
                "tuning.batch_payload_bytes_max",
                tuning.batch_payload_bytes_max,
            ),
            ("tuning.scan_bytes_max", tuning.scan_bytes_max as u64),
        ];
        for (name, value) in sizes {
            if !(4096..=limit).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be 4096 to {limit} (half of transport.frame_bytes_max, at \
                     most {}), not {value}",
                    crate::core::BATCH_PAYLOAD_BYTES_LIMIT
                )));
            }
        }
        Ok(())
    }

    /// What one client stream may make this node hold.
    pub(crate) fn stream_bounds(&self) -> crate::server::StreamBounds {
        crate::server::StreamBounds {
            requests_max: self.limits.stream_requests_max,
            answer_bytes_max: self.limits.stream_answer_bytes_max,
            key_bytes_max: self.limits.key_bytes_max,
            value_bytes_max: self.limits.value_bytes_max,
            scan_bytes_max: self.tuning.scan_bytes_max,
        }
    }

    /// The placement driver's configuration.
    #[must_use]
    pub fn placement_config(&self) -> flotilla_shard_manager::placement::PlacementConfig {
        flotilla_shard_manager::placement::PlacementConfig {
            replicas_per_range: self.ranges.replicas,
            ..self.placement.clone()
        }
    }

    /// The core's cadences and sizes.
    #[must_use]
    pub fn core_tuning(&self) -> crate::core::CoreTuning {
        crate::core::CoreTuning {
            placement_interval_ticks: self.tuning.placement_interval_ticks,
            gc_interval_writes: self.tuning.gc_interval_writes,
            compact_beyond_segments: self.log.compact_beyond_segments,
            batch_payload_bytes_max: self.tuning.batch_payload_bytes_max,
            scan_bytes_max: self.tuning.scan_bytes_max,
            read_bytes_per_turn: self.tuning.read_bytes_per_turn,
            split_bytes: self.ranges.split_bytes,
            split_load_rps: self.ranges.split_load_rps,
            merge_bytes: self.ranges.merge_bytes,
            merge_below_bytes: self.ranges.merge_below_bytes,
            merge_below_rps: self.ranges.merge_below_rps,
            merge_wait_ms: self.ranges.merge_wait_seconds.saturating_mul(1000),
        }
    }

    /// The peer silence limit must leave room for a few node heartbeats (an idle peer gets
    /// one every `heartbeat_ticks` x `liveness_every_heartbeats`, and a late one must not cost
    /// the connection) and lie below QUIC's idle timeout (past it QUIC closes the connection
    /// anyway).
    fn check_peer_silence(&self) -> Result<(), ConfigError> {
        let heartbeat_ms = self
            .multi_config()
            .liveness_interval_ticks()
            .saturating_mul(self.raft.tick_ms);
        let idle_ms = self.transport.idle_timeout_ms;
        if self.peer_silence_ms < heartbeat_ms.saturating_mul(PEER_SILENCE_HEARTBEATS_MIN)
            || self.peer_silence_ms >= idle_ms
        {
            return Err(ConfigError::Invalid(format!(
                "peer_silence_ms must be at least {PEER_SILENCE_HEARTBEATS_MIN} node heartbeats \
                 ({heartbeat_ms} ms each) and below the idle timeout of {idle_ms} ms, not {}",
                self.peer_silence_ms
            )));
        }
        Ok(())
    }

    /// The transport's configuration: this node's limits, the rest the transport's defaults.
    #[must_use]
    pub fn transport_config(&self) -> flotilla_transport_quic::TransportConfig {
        let settings = &self.transport;
        flotilla_transport_quic::TransportConfig {
            frame_bytes_max: settings.frame_bytes_max,
            outbound_queue_batches: settings.outbound_queue_batches,
            outbound_snapshot_queue_bytes: settings.outbound_snapshot_queue_bytes,
            inbound_queue_batches: settings.inbound_queue_batches,
            client_queue_connections: settings.client_queue_connections,
            handshake_timeout_ms: settings.handshake_timeout_ms,
            idle_timeout_ms: settings.idle_timeout_ms,
            keep_alive_interval_ms: settings.keep_alive_interval_ms,
            client_request_bytes_max: settings.client_request_bytes_max,
            frame_read_timeout_ms: settings.frame_read_timeout_ms,
            client_bidi_streams_max: settings.client_streams_max,
            client_connections_max: settings.client_connections_max,
            client_connections_per_identity_max: settings.client_connections_per_identity_max,
            handshakes_max: settings.handshakes_max,
            refusal_log_interval_ms: settings.refusal_log_interval_ms,
            peer_silence_ms_max: self.peer_silence_ms,
            ..flotilla_transport_quic::TransportConfig::default()
        }
    }

    /// The state machine engine's configuration (`[storage]`).
    #[must_use]
    pub fn engine_config(&self) -> flotilla_storage::EngineConfig {
        flotilla_storage::EngineConfig {
            cache_bytes: self.storage.cache_mib.saturating_mul(1 << 20),
            write_buffer_bytes: self.storage.write_buffer_mib.saturating_mul(1 << 20),
            background_threads: self.storage.background_threads,
            // The log replays what a crash loses; compaction syncs the engine first.
            flush_each_batch: false,
            ..flotilla_storage::EngineConfig::default()
        }
    }

    /// The log engine's configuration.
    #[must_use]
    pub fn log_config(&self) -> flotilla_storage::LogConfig {
        let segment_bytes_max = self.log.segment_mib << 20;
        flotilla_storage::LogConfig {
            segment_bytes_max,
            record_bytes_max: RECORD_BYTES_LIMIT.min(segment_bytes_max / 2),
            recent_bytes_per_group: self.log.recent_bytes_per_range,
            snapshot_loads_max: self.log.snapshot_loads_max,
            snapshot_sends_max: self.log.snapshot_sends_max,
            ..flotilla_storage::LogConfig::default()
        }
    }

    /// The MultiRaft configuration of this node.
    #[must_use]
    pub fn multi_config(&self) -> flotilla_raft::MultiConfig {
        let mut multi = flotilla_raft::MultiConfig::new(self.node());
        multi.raft.election_timeout_ticks_min = self.raft.election_ticks_min;
        multi.raft.election_timeout_ticks_max = self.raft.election_ticks_max;
        multi.raft.heartbeat_interval_ticks = self.raft.heartbeat_ticks;
        multi.raft.rng_seed =
            self.node_id.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ std::process::id() as u64;
        multi.heartbeat_interval_ticks = self.raft.heartbeat_ticks;
        multi.liveness_every_heartbeats = self.raft.liveness_every_heartbeats;
        multi.node_timeout_ticks = self.raft.node_timeout_ticks;
        multi.raft.snapshot_inflight_bytes_max = self.raft.snapshot_window_bytes;
        multi.raft.snapshot_resend_ticks = self.raft.snapshot_resend_ticks;
        multi.raft.snapshot_give_up_ticks = self.raft.snapshot_give_up_ticks;
        multi.groups_max = self.limits.ranges_hosted_max;
        multi.apply_bytes_per_ready = self.raft.apply_bytes_per_ready;
        multi
    }
}

impl SessionSettings {
    /// The most sessions a range may keep, and results a session may hold: memory bounds, not
    /// tuning knobs (`docs/protocol/sessions.md` gives the bytes each costs).
    const PER_RANGE_LIMIT: u32 = 1_000_000;
    const RESULTS_LIMIT: u32 = 65_536;

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=30 * 24 * 3600).contains(&self.expiry_seconds) {
            return Err(ConfigError::Invalid(format!(
                "sessions.expiry_seconds must be 1 to 2592000 (30 days), not {}",
                self.expiry_seconds
            )));
        }
        if !(1..=Self::PER_RANGE_LIMIT).contains(&self.per_range_max) {
            return Err(ConfigError::Invalid(format!(
                "sessions.per_range_max must be 1 to {}, not {}",
                Self::PER_RANGE_LIMIT,
                self.per_range_max
            )));
        }
        if !(1..=Self::RESULTS_LIMIT).contains(&self.results_per_session_max) {
            return Err(ConfigError::Invalid(format!(
                "sessions.results_per_session_max must be 1 to {}, not {}",
                Self::RESULTS_LIMIT,
                self.results_per_session_max
            )));
        }
        Ok(())
    }
}

/// A parse error of the merged text as the user can act on it: the dotted key, and the line of
/// `file` (path and text) that set it, if it did.
fn key_error(error: &toml::de::Error, merged: &str, file: Option<(&Path, &str)>) -> ConfigError {
    let key = error.span().and_then(|span| key_at(merged, span.start));
    let location = match (key, file) {
        (Some(key), Some((path, text))) => match line_setting(text, &key) {
            Some(line) => format!("{} line {line}, `{key}`", path.display()),
            None => format!("`{key}`"),
        },
        (Some(key), None) => format!("`{key}`"),
        (None, _) => "the merged configuration".into(),
    };
    ConfigError::Key {
        location,
        message: error.message().trim().to_string(),
    }
}

/// The dotted key at `offset` of `merged`, which `toml::to_string` wrote: one key per line,
/// under `[table]` headers.
fn key_at(merged: &str, offset: usize) -> Option<String> {
    let before = merged.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = merged.get(line_start..)?.lines().next()?;
    if let Some(table) = table_header(line) {
        return Some(table);
    }
    let key = dotted(line.split_once('=')?.0);
    let table = before
        .get(..line_start)?
        .lines()
        .rev()
        .find_map(table_header);
    Some(table.map_or_else(|| key.clone(), |table| format!("{table}.{key}")))
}

/// The 1-based line of `text` that sets `path` or, failing that, the closest table or value
/// that holds it (an inline table or an array of them written on one line).
fn line_setting(text: &str, path: &str) -> Option<usize> {
    let mut prefix = path;
    loop {
        if let Some(line) = line_of(text, prefix) {
            return Some(line);
        }
        prefix = &prefix[..prefix.rfind('.')?];
    }
}

/// The 1-based line of `text` that sets the dotted key `path` (or opens it as a table).
fn line_of(text: &str, path: &str) -> Option<usize> {
    let mut table = String::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = table_header(line) {
            if header == path {
                return Some(index + 1);
            }
            table = header;
            continue;
        }
        let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) else {
            continue;
        };
        let key = dotted(key);
        let full = if table.is_empty() {
            key
        } else {
            format!("{table}.{key}")
        };
        if full == path {
            return Some(index + 1);
        }
    }
    None
}

/// `a.b` for a header line `[a.b]` or `[[a.b]]`.
fn table_header(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(dotted(inner.trim_start_matches('[').trim_end_matches(']')))
}

/// A key as written (`a . "b"`) in its plain dotted form (`a.b`).
fn dotted(key: &str) -> String {
    key.split('.')
        .map(|part| part.trim().trim_matches('"'))
        .collect::<Vec<_>>()
        .join(".")
}

/// Overrides `base` with `top`, table by table.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(top)) => merge(inner, top),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A missing certificate names the command that makes it: a new CA only when there is
    /// none, else one more certificate signed by the CA that is there.
    #[test]
    fn a_missing_certificate_names_the_command_that_adds_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = load_tls(dir.path(), "flotilla", "client-reader").unwrap_err();
        assert!(error.to_string().contains("a new CA"), "{error}");
        let cluster = flotilla_transport_quic::ClusterId::new("flotilla").unwrap();
        flotilla_transport_quic::write_dev_certs(dir.path(), &cluster, &[], &[]).unwrap();
        let error = load_tls(dir.path(), "flotilla", "client-reader").unwrap_err();
        assert!(error.to_string().contains("--add-client reader"), "{error}");
        let error = load_tls(dir.path(), "flotilla", "node-4").unwrap_err();
        assert!(error.to_string().contains("--add-node 4"), "{error}");
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let config = NodeConfig::load(None).unwrap();
        config.validate().unwrap();
        assert_eq!(config.initial_endpoints().unwrap().len(), 3);
        // `flotilla certs` issues this name by default; the two must not drift apart.
        assert_eq!(config.http.api_client, DEFAULT_HTTP_API_CLIENT);
    }

    #[test]
    fn a_file_overrides_single_keys_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "node_id = 2\n[ranges]\ngroups = 4\n").unwrap();
        let config = NodeConfig::load(Some(&path)).unwrap();
        assert_eq!(
            (config.node_id, config.ranges.groups, config.ranges.replicas),
            (2, 4, 3)
        );
        std::fs::write(&path, "[ranges]\ngroupz = 4\n").unwrap();
        let error = NodeConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("groupz"), "{error}");
    }

    #[test]
    fn a_bad_key_is_named_with_the_line_of_the_users_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let cases = [
            (
                "# mine\n\n[raft]\ntick_ms = \"fast\"\n",
                "line 4, `raft.tick_ms`",
                "invalid type",
            ),
            (
                "[raft]\ntick_ms = 20\nticks = 3\n",
                "line 3, `raft.ticks`",
                "unknown field `ticks`",
            ),
            (
                "node_id = 2\n[raftt]\nx = 1\n",
                "line 2, `raftt`",
                "unknown field `raftt`",
            ),
            (
                "raft.tick_ms = true\n",
                "line 1, `raft.tick_ms`",
                "invalid type",
            ),
            (
                "[access]\ngrants = [{ client = \"a\", role = \"reader\" }]\n",
                "line 2, `access.grants.role`",
                "unknown variant `reader`",
            ),
        ];
        for (text, location, message) in cases {
            std::fs::write(&path, text).unwrap();
            let error = NodeConfig::load(Some(&path)).unwrap_err().to_string();
            let expected = format!("configuration: {} {location}: {message}", path.display());
            assert!(error.starts_with(&expected), "{error}");
        }
    }

    #[test]
    fn the_effective_configuration_loads_back_to_the_same_values() {
        let flags: toml::Table = toml::from_str("ranges.groups = 7").unwrap();
        let (config, effective) = NodeConfig::load_with(None, flags).unwrap();
        assert_eq!(config.ranges.groups, 7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("effective.toml");
        std::fs::write(&path, &effective).unwrap();
        assert_eq!(NodeConfig::load(Some(&path)).unwrap(), config);
    }

    #[test]
    fn the_access_section_is_checked_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let grants =
            r#"grants = [{ client = "a", role = "admin" }, { client = "a", role = "none" }]"#;
        std::fs::write(&path, format!("[access]\n{grants}\n")).unwrap();
        let error = NodeConfig::load(Some(&path))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains(r#"access: client "a" has two grants"#),
            "{error}"
        );
        std::fs::write(
            &path,
            "[access]\ngrants = [{ client = \"a\", role = \"reader\" }]\n",
        )
        .unwrap();
        let error = NodeConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("unknown variant `reader`"), "{error}");
        let open = NodeConfig::load(None).unwrap();
        assert_eq!(
            open.access.effective_default_role(),
            crate::access::Role::Admin
        );
    }

    #[test]
    fn the_embedded_defaults_are_the_cores_and_the_transports() {
        let config = NodeConfig::load(None).unwrap();
        assert_eq!(config.core_tuning(), crate::core::CoreTuning::default());
        let transport = flotilla_transport_quic::TransportConfig {
            peer_silence_ms_max: config.peer_silence_ms,
            ..flotilla_transport_quic::TransportConfig::default()
        };
        assert_eq!(config.transport_config(), transport);
        let (raft, defaults) = (
            config.multi_config().raft,
            flotilla_raft::Config::new(flotilla_raft::NodeId(1)),
        );
        assert_eq!(
            (
                raft.snapshot_inflight_bytes_max,
                raft.snapshot_resend_ticks,
                raft.snapshot_give_up_ticks
            ),
            (
                defaults.snapshot_inflight_bytes_max,
                defaults.snapshot_resend_ticks,
                defaults.snapshot_give_up_ticks
            )
        );
    }

    /// The range the error states is the range accepted, at both ends, and the log engine
    /// accepts every segment size the node does (4096 MiB passed the node and failed at start).
    #[test]
    fn log_segment_mib_is_accepted_exactly_in_the_range_its_error_states() {
        let defaults = NodeConfig::load(None).unwrap();
        assert_eq!(defaults.segment_mib_min(), 5);
        let with_segment = |segment_mib| {
            let mut config = defaults.clone();
            config.log.segment_mib = segment_mib;
            config.validate().map_err(|error| error.to_string())
        };
        let error = with_segment(4).unwrap_err();
        assert!(
            error.contains("log.segment_mib must be 5 to 4095 with these limits"),
            "{error}"
        );
        assert!(
            with_segment(4096)
                .unwrap_err()
                .contains("must be 5 to 4095")
        );
        for accepted in [5, 64, 4095] {
            with_segment(accepted).unwrap();
        }
        // Smaller limits allow smaller segments, and the error follows them.
        let mut small = defaults.clone();
        small.limits.value_bytes_max = 64 << 10;
        small.log.segment_mib = 1;
        small.validate().unwrap();
        small.limits.value_bytes_max = 1 << 20;
        let error = small.validate().unwrap_err().to_string();
        assert!(error.contains("must be 5 to 4095"), "{error}");
        // The embedded default file states the same range.
        assert!(DEFAULT_CONFIG.contains("5 to 4095"));
    }

    #[test]
    fn bad_values_are_named() {
        let mut config = NodeConfig::load(None).unwrap();
        config.ranges.groups = 0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("ranges.groups")
        );
        let mut config = NodeConfig::load(None).unwrap();
        config.raft.election_ticks_max = config.raft.election_ticks_min;
        assert!(config.validate().is_err());
        for (name, change) in [
            (
                "sessions.expiry_seconds",
                (|c: &mut NodeConfig| c.sessions.expiry_seconds = 0) as fn(&mut NodeConfig),
            ),
            ("sessions.per_range_max", |c| c.sessions.per_range_max = 0),
            ("limits.backup_views_max", |c| c.limits.backup_views_max = 0),
            ("limits.ranges_hosted_max", |c| {
                c.limits.ranges_hosted_max = 0
            }),
            ("limits.ranges_hosted_max", |c| {
                c.ranges.groups = 1_000;
                c.limits.ranges_hosted_max = 1_000;
            }),
            ("ranges.groups", |c| c.ranges.groups = 1_000_001),
            ("ranges.split_bytes", |c| c.ranges.split_bytes = 100),
            ("ranges.merge_bytes", |c| c.ranges.merge_bytes = 1 << 40),
            ("ranges.merge_below_bytes", |c| {
                c.ranges.merge_below_bytes = c.ranges.split_bytes;
            }),
            ("ranges.merge_below_rps", |c| {
                c.ranges.split_load_rps = 100;
                c.ranges.merge_below_rps = 100;
            }),
            ("limits.backup_view_idle_ms", |c| {
                c.limits.backup_view_idle_ms = 999
            }),
            ("sessions.results_per_session_max", |c| {
                c.sessions.results_per_session_max = 70_000
            }),
            ("raft.snapshot_window_bytes", |c| {
                c.raft.snapshot_window_bytes = 1000
            }),
            ("raft.apply_bytes_per_ready", |c| {
                c.raft.apply_bytes_per_ready = 1000
            }),
            ("raft.snapshot_resend_ticks", |c| {
                c.raft.snapshot_resend_ticks = 0
            }),
            ("raft.snapshot_give_up_ticks", |c| {
                c.raft.snapshot_give_up_ticks = c.raft.election_ticks_min - 1
            }),
        ] {
            let mut config = NodeConfig::load(None).unwrap();
            change(&mut config);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
        for (name, change) in [
            (
                "tuning.input_burst_max",
                (|c: &mut NodeConfig| c.tuning.input_burst_max = 0) as fn(&mut NodeConfig),
            ),
            ("tuning.batch_payload_bytes_max", |c| {
                c.tuning.batch_payload_bytes_max = u64::from(c.transport.frame_bytes_max)
            }),
            ("tuning.scan_bytes_max", |c| c.tuning.scan_bytes_max = 10),
            ("transport", |c| c.transport.frame_bytes_max = 3),
            ("transport", |c| c.transport.inbound_queue_batches = 0),
            ("transport.frame_bytes_max", |c| {
                c.transport.frame_bytes_max = 1 << 20;
                c.transport.client_request_bytes_max = 1 << 20;
            }),
            ("transport.client_request_bytes_max", |c| {
                c.transport.client_request_bytes_max = 1 << 20
            }),
            ("limits.stream_requests_max", |c| {
                c.limits.stream_requests_max = 0
            }),
            ("http.status_rows_max", |c| c.http.status_rows_max = 0),
            ("http.status_rows_max", |c| c.http.status_rows_max = 10_001),
            ("http.status_history_seconds", |c| {
                c.http.status_history_seconds = 1
            }),
            ("http.status_history_seconds", |c| {
                c.http.status_history_seconds = 3_601
            }),
            ("http.api_client", |c| {
                c.http.api_client = "Not A Name".into()
            }),
            ("http.body_bytes_max", |c| c.http.body_bytes_max = 100),
            ("http.body_bytes_max", |c| c.http.body_bytes_max = 65 << 20),
            ("http.request_timeout_ms", |c| {
                c.http.request_timeout_ms = 999
            }),
            ("http.scan_pairs_max", |c| c.http.scan_pairs_max = 0),
            ("http.scan_bytes_max", |c| c.http.scan_bytes_max = 10),
            ("limits.stream_answer_bytes_max", |c| {
                c.limits.stream_answer_bytes_max = 4 << 20
            }),
            ("tuning.read_bytes_per_turn", |c| {
                c.tuning.read_bytes_per_turn = 1
            }),
            ("limits.stream_answer_bytes_max", |c| {
                c.limits.stream_answer_bytes_max = 1 << 31
            }),
            ("log.recent_bytes_per_range", |c| {
                c.log.recent_bytes_per_range = 1 << 31
            }),
            ("log.compact_beyond_segments", |c| {
                c.log.compact_beyond_segments = 1
            }),
            ("storage.cache_mib", |c| c.storage.cache_mib = 0),
            ("storage.write_buffer_mib", |c| {
                c.storage.write_buffer_mib = 0
            }),
            ("storage.background_threads", |c| {
                c.storage.background_threads = 5
            }),
            ("log.snapshot_loads_max", |c| c.log.snapshot_loads_max = 0),
            ("log.snapshot_loads_max", |c| c.log.snapshot_loads_max = 65),
            ("log.snapshot_sends_max", |c| c.log.snapshot_sends_max = 0),
            ("log.snapshot_sends_max", |c| {
                c.log.snapshot_sends_max = 4097
            }),
            // A node frame large enough for the scan: only the clients' limit is broken.
            ("clients' frame", |c| {
                c.transport.frame_bytes_max = 64 << 20;
                c.tuning.scan_bytes_max = 12 << 20;
            }),
        ] {
            let mut config = NodeConfig::load(None).unwrap();
            change(&mut config);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
        let mut config = NodeConfig::load(None).unwrap();
        config.transport.refusal_log_interval_ms = 3_600_001;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("refusal_log_interval_ms"), "{error}");
        for silence_ms in [159, 10_000] {
            let mut config = NodeConfig::load(None).unwrap();
            config.peer_silence_ms = silence_ms;
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("peer_silence_ms"), "{error}");
        }
        assert!(Endpoint::from_str("1-127.0.0.1:1").is_err());
        assert!(Endpoint::from_str("0@127.0.0.1:1").is_err());
        assert_eq!(
            Endpoint::from_str("7@127.0.0.1:9").unwrap().to_string(),
            "7@127.0.0.1:9"
        );
    }
}

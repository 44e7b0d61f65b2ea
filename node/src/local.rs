//! A local cluster of `flotilla server` child processes on loopback, with certificates and data
//! in one folder: what `flotilla demo`, `flotilla bench` without endpoints, the node's tests and
//! the cluster bench start. It knows nothing of the commands that use it.

use crate::client::{Client, ClientError, ClientOptions};
use crate::config::Endpoint;
use flotilla_raft::NodeId;
use flotilla_transport_quic::{CertError, ClusterId, write_dev_certs};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The cluster id of every local cluster.
pub const CLUSTER: &str = "flotilla-demo";
const CLIENT: &str = "demo";

/// Worker threads of the client runtime when its cluster runs elsewhere.
pub const CLIENT_THREADS: usize = 2;

/// Worker threads of the client runtime when it shares the machine with a local cluster
/// (`demo`, `bench` without endpoints): one, as each local node has one network thread. The
/// three nodes and the client then compete for the cores already, and a second client thread
/// only adds cross-thread wake-ups (`docs/benchmarks.md`, "One client thread beside a local
/// cluster").
pub const LOCAL_CLIENT_THREADS: usize = 1;

/// The bytes of the files under `folder` (0 if it does not exist): what a node's data
/// directory, or its log or engine folder, takes on disk.
#[must_use]
pub fn folder_bytes(folder: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => folder_bytes(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The small runtime client commands run on, with `threads` workers.
///
/// # Errors
/// The runtime could not start.
pub fn client_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

/// A piece of a local run's set-up (a temporary folder, this program's path, a runtime) that
/// the system did not give.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed: {source}")]
pub struct SetupError {
    /// What was being set up, e.g. "making a temporary folder".
    pub what: &'static str,
    /// Why.
    pub source: std::io::Error,
}

impl SetupError {
    /// A `map_err` adapter: `.map_err(SetupError::of("making a temporary folder"))`.
    pub fn of(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self { what, source }
    }
}

/// Why a local cluster could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The certificates could not be written.
    #[error("the local cluster's certificates could not be written: {0}")]
    Certificates(#[from] CertError),
    /// No UDP port could be bound on loopback.
    #[error("no free UDP port on loopback: {0}")]
    NoPort(#[source] std::io::Error),
    /// A node's process could not be started.
    #[error("node {node}'s process could not start: {source}")]
    Spawn {
        /// The node.
        node: u64,
        /// Why.
        source: std::io::Error,
    },
    /// `flotilla restore` failed for a node.
    #[error("the restore of node {node} failed: {output}")]
    Restore {
        /// The node.
        node: u64,
        /// What it printed on stderr.
        output: String,
    },
    /// No node answered with the range map in time.
    #[error("the cluster did not start within {seconds} s: {source}")]
    NotStarted {
        /// How long it was given.
        seconds: u64,
        /// The last attempt's error.
        source: ClientError,
    },
    /// Some ranges had no leader in time.
    #[error("{leaderless} ranges elected no leader within {seconds} s")]
    NoLeaders {
        /// Ranges without a leader at the deadline.
        leaderless: usize,
        /// How long they were given.
        seconds: u64,
    },
}

/// A local cluster of `flotilla server` child processes; dropping it kills them all.
#[derive(Debug)]
pub struct LocalCluster {
    /// Where certificates, data and logs live.
    pub dir: PathBuf,
    /// Each node's endpoint.
    pub endpoints: Vec<Endpoint>,
    /// Each node's HTTP listener (`/metrics`, `/health`, `/ready`), when started with one.
    pub http: Vec<(NodeId, std::net::SocketAddr)>,
    children: Vec<(NodeId, Option<Child>)>,
    /// How many of `endpoints` started the cluster; the rest joined it.
    initial: usize,
    groups: u64,
    /// A configuration file every node reads (`--config`); the flags override it.
    config: Option<PathBuf>,
}

impl LocalCluster {
    /// Makes certificates in `dir` and starts `nodes` servers with `groups` ranges.
    ///
    /// # Errors
    /// Certificates, ports or processes could not be made.
    pub fn start(binary: &Path, dir: &Path, nodes: u64, groups: u64) -> Result<Self, LocalError> {
        Self::start_with_config(binary, dir, nodes, groups, None)
    }

    /// `start`, with every node also reading the configuration file `config`.
    ///
    /// # Errors
    /// Certificates, ports or processes could not be made.
    pub fn start_with_config(
        binary: &Path,
        dir: &Path,
        nodes: u64,
        groups: u64,
        config: Option<PathBuf>,
    ) -> Result<Self, LocalError> {
        Self::start_inner(binary, dir, (nodes, groups), config, false)
    }

    /// `start`, with every node also serving HTTP (`--http-listen`) on a free loopback port
    /// (listed in `http`), and the JSON API's client certificate (`client-http-api`) beside
    /// the others.
    ///
    /// # Errors
    /// Certificates, ports or processes could not be made.
    pub fn start_with_http(
        binary: &Path,
        dir: &Path,
        nodes: u64,
        groups: u64,
    ) -> Result<Self, LocalError> {
        Self::start_inner(binary, dir, (nodes, groups), None, true)
    }

    /// Makes certificates in `dir` and starts `nodes` servers on data directories written
    /// first by `flotilla restore --from backup` (each node's, with the flags its server gets).
    ///
    /// # Errors
    /// Certificates, ports or processes could not be made, or a restore failed (its output).
    pub fn start_restored(
        binary: &Path,
        dir: &Path,
        nodes: u64,
        backup: &Path,
    ) -> Result<Self, LocalError> {
        let mut cluster = Self::prepare(dir, (nodes, 1), None, false)?;
        for index in 0..nodes {
            let node = NodeId(index + 1);
            let args = cluster
                .node_args(node, &cluster.data_dir(node))
                .map_err(|source| LocalError::Spawn {
                    node: node.0,
                    source,
                })?;
            let output = std::process::Command::new(binary)
                .arg("restore")
                .arg("--from")
                .arg(backup)
                .args(args)
                .output()
                .map_err(|source| LocalError::Spawn {
                    node: node.0,
                    source,
                })?;
            if !output.status.success() {
                return Err(LocalError::Restore {
                    node: node.0,
                    output: String::from_utf8_lossy(&output.stderr).into_owned(),
                });
            }
        }
        cluster.spawn_all(binary)?;
        Ok(cluster)
    }

    /// `start_with_http`, with every node also reading the configuration file `config`.
    ///
    /// # Errors
    /// Certificates, ports or processes could not be made.
    pub fn start_with_http_and_config(
        binary: &Path,
        dir: &Path,
        (nodes, groups): (u64, u64),
        config: PathBuf,
    ) -> Result<Self, LocalError> {
        Self::start_inner(binary, dir, (nodes, groups), Some(config), true)
    }

    fn start_inner(
        binary: &Path,
        dir: &Path,
        (nodes, groups): (u64, u64),
        config: Option<PathBuf>,
        http: bool,
    ) -> Result<Self, LocalError> {
        let mut cluster = Self::prepare(dir, (nodes, groups), config, http)?;
        cluster.spawn_all(binary)?;
        Ok(cluster)
    }

    /// Starts every node of a prepared cluster.
    fn spawn_all(&mut self, binary: &Path) -> Result<(), LocalError> {
        let ids: Vec<NodeId> = self
            .endpoints
            .iter()
            .map(|endpoint| endpoint.node)
            .collect();
        for node in ids {
            let child = self.spawn_node(binary, node)?;
            self.children.push((node, Some(child)));
        }
        Ok(())
    }

    /// Certificates in `dir`, a free address per node: a cluster with no process yet.
    fn prepare(
        dir: &Path,
        (nodes, groups): (u64, u64),
        config: Option<PathBuf>,
        http: bool,
    ) -> Result<Self, LocalError> {
        let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
        #[allow(clippy::expect_used)]
        let cluster = ClusterId::new(CLUSTER).expect("the demo's cluster id is valid");
        // A cluster that serves HTTP gets its API's client too, as `flotilla certs` makes it.
        let clients: &[&str] = if http {
            &[CLIENT, crate::config::DEFAULT_HTTP_API_CLIENT]
        } else {
            &[CLIENT]
        };
        write_dev_certs(&dir.join("certs"), &cluster, &ids, clients)?;
        let endpoints = ids
            .iter()
            .map(|&node| {
                Ok(Endpoint {
                    node,
                    address: free_udp_address()?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(LocalError::NoPort)?;
        let http = ids
            .iter()
            .filter(|_| http)
            .map(|&node| Ok((node, free_tcp_address()?)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(LocalError::NoPort)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            endpoints,
            http,
            children: Vec::new(),
            initial: ids.len(),
            groups,
            config,
        })
    }

    /// The data directory of node `node`.
    #[must_use]
    pub fn data_dir(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("node-{}", node.0))
    }

    /// Node `node`'s HTTP listener, if the cluster was started with them.
    #[must_use]
    pub fn http_address(&self, node: NodeId) -> Option<std::net::SocketAddr> {
        self.http
            .iter()
            .find_map(|&(id, address)| (id == node).then_some(address))
    }

    /// Node `node`'s JSON API, `https://node-<id>.<cluster>:<port>/v1/kv`, if the cluster
    /// serves HTTP. The host is the name the node's certificate proves; it resolves nowhere,
    /// so a client maps it to the listener (`api_curl_example`).
    #[must_use]
    pub fn api_url(&self, node: NodeId) -> Option<String> {
        let address = self.http_address(node)?;
        Some(format!(
            "https://node-{}.{CLUSTER}:{}/v1/kv",
            node.0,
            address.port()
        ))
    }

    /// A one-line shell command that puts `greeting` = `hello` through node `node`'s JSON API
    /// with this cluster's CA and client certificate (`docs/http-api.md`), if the cluster
    /// serves HTTP.
    #[must_use]
    pub fn api_curl_example(&self, node: NodeId) -> Option<String> {
        let address = self.http_address(node)?;
        let url = self.api_url(node)?;
        let certs = self.dir.join("certs");
        let file = |name: &str| shell_word(&certs.join(name).display().to_string());
        Some(format!(
            "curl -sS --cacert {} --cert {} --key {} --resolve node-{}.{CLUSTER}:{}:{} \
             -X PUT --data-binary hello {url}/greeting",
            file("ca.pem"),
            file(&format!("client-{CLIENT}.pem")),
            file(&format!("client-{CLIENT}.key")),
            node.0,
            address.port(),
            address.ip(),
        ))
    }

    /// The log file of node `node`'s processes.
    #[must_use]
    pub fn log_file(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("node-{}.log", node.0))
    }

    /// `spawn`, its failure named after the node.
    fn spawn_node(&self, binary: &Path, node: NodeId) -> Result<Child, LocalError> {
        self.spawn(binary, node)
            .map_err(|source| LocalError::Spawn {
                node: node.0,
                source,
            })
    }

    fn spawn(&self, binary: &Path, node: NodeId) -> std::io::Result<Child> {
        self.spawn_on(binary, node, &self.data_dir(node), &self.log_file(node))
    }

    /// Starts another process as node `node` (its certificate, its address) on `data_dir`,
    /// logging to `log`: what a mistaken or malicious second start does. The caller owns it.
    ///
    /// # Errors
    /// The process could not start.
    pub fn spawn_impostor(
        &self,
        binary: &Path,
        node: NodeId,
        data_dir: &Path,
        log: &Path,
    ) -> std::io::Result<Child> {
        self.spawn_on(binary, node, data_dir, log)
    }

    /// Waits up to `wait` for node `node`'s process to exit; its status if it did.
    pub fn wait_for_exit(
        &mut self,
        node: NodeId,
        wait: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            let status = self
                .children
                .iter_mut()
                .filter(|(id, _)| *id == node)
                .filter_map(|(_, child)| child.as_mut())
                .find_map(|child| child.try_wait().ok().flatten());
            if status.is_some() || Instant::now() >= deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_on(
        &self,
        binary: &Path,
        node: NodeId,
        data_dir: &Path,
        log: &Path,
    ) -> std::io::Result<Child> {
        let args = self.node_args(node, data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        std::process::Command::new(binary)
            .arg("server")
            .args(args)
            .arg("--exit-with-parent")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    }

    /// The flags that make `flotilla server` node `node` of this cluster on `data_dir`.
    fn node_args(&self, node: NodeId, data_dir: &Path) -> std::io::Result<Vec<String>> {
        let endpoint = self
            .endpoints
            .iter()
            .find(|endpoint| endpoint.node == node)
            .ok_or(std::io::ErrorKind::NotFound)?;
        let initial: Vec<String> = self.endpoints[..self.initial]
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut args = Vec::new();
        let mut flag = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        if let Some(config) = &self.config {
            flag("config", config.display().to_string());
        }
        if let Some((_, http)) = self.http.iter().find(|(id, _)| *id == node) {
            flag("http-listen", http.to_string());
        }
        flag("node-id", node.0.to_string());
        flag("listen", endpoint.address.to_string());
        flag("data-dir", data_dir.display().to_string());
        flag("tls-dir", self.dir.join("certs").display().to_string());
        flag("initial-cluster", initial.join(","));
        if !initial.contains(&endpoint.to_string()) {
            flag("join", initial.join(","));
        }
        flag("groups", self.groups.to_string());
        flag("cluster-id", CLUSTER.to_string());
        // Small segments: each is zero-filled when created, and a local cluster is small.
        flag("segment-mib", "16".to_string());
        // The nodes share this machine: one network thread each (measured faster on 2 cores).
        flag("network-threads", "1".to_string());
        Ok(args)
    }

    /// Client options for this cluster.
    #[must_use]
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions::new(
            self.endpoints.clone(),
            self.dir.join("certs"),
            CLUSTER,
            CLIENT,
        )
    }

    /// Kills node `node` with SIGKILL (no chance to flush anything).
    pub fn kill(&mut self, node: NodeId) {
        for (id, child) in &mut self.children {
            if *id == node
                && let Some(mut child) = child.take()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts a new node `node` (a certificate from the cluster's CA, a free address, an
    /// empty data directory) that joins the running cluster through the initial nodes.
    ///
    /// # Errors
    /// The certificate, the port or the process could not be made.
    pub fn join(&mut self, binary: &Path, node: NodeId) -> Result<(), LocalError> {
        #[allow(clippy::expect_used)]
        let cluster = ClusterId::new(CLUSTER).expect("the demo's cluster id is valid");
        let certs = self.dir.join("certs");
        if !certs.join(format!("node-{}.pem", node.0)).exists() {
            flotilla_transport_quic::add_node_certs(&certs, &cluster, &[node])?;
        }
        let address = free_udp_address().map_err(LocalError::NoPort)?;
        self.endpoints.retain(|endpoint| endpoint.node != node);
        self.endpoints.push(Endpoint { node, address });
        let child = self.spawn_node(binary, node)?;
        self.children.retain(|(id, _)| *id != node);
        self.children.push((node, Some(child)));
        Ok(())
    }

    /// Starts a killed node again on its data directory.
    ///
    /// # Errors
    /// The process could not start.
    pub fn restart(&mut self, binary: &Path, node: NodeId) -> std::io::Result<()> {
        let child = self.spawn(binary, node)?;
        for (id, slot) in &mut self.children {
            if *id == node {
                *slot = Some(child);
                return Ok(());
            }
        }
        Ok(())
    }

    /// Gives node `node` a new free address; it listens there from its next start
    /// ([`LocalCluster::restart`]).
    ///
    /// # Errors
    /// No free port.
    pub fn readdress(&mut self, node: NodeId) -> Result<std::net::SocketAddr, LocalError> {
        let address = free_udp_address().map_err(LocalError::NoPort)?;
        for endpoint in &mut self.endpoints {
            if endpoint.node == node {
                endpoint.address = address;
            }
        }
        Ok(address)
    }

    /// Asks node `node` to re-read its access rules and certificates (SIGHUP). Returns whether
    /// it was signalled.
    pub fn reload(&self, node: NodeId) -> bool {
        self.signal(node, "-HUP")
    }

    /// Freezes node `node` (SIGSTOP), as a long stall of the process would: it keeps its state
    /// and its connections and does nothing until `resume`. Returns whether it was signalled.
    pub fn pause(&self, node: NodeId) -> bool {
        self.signal(node, "-STOP")
    }

    /// Lets a paused node run again (SIGCONT). Returns whether it was signalled.
    pub fn resume(&self, node: NodeId) -> bool {
        self.signal(node, "-CONT")
    }

    /// The process id of node `node`, while it runs.
    #[must_use]
    pub fn pid(&self, node: NodeId) -> Option<u32> {
        self.children
            .iter()
            .filter(|(id, _)| *id == node)
            .find_map(|(_, child)| child.as_ref().map(Child::id))
    }

    fn signal(&self, node: NodeId, signal: &str) -> bool {
        self.children
            .iter()
            .filter(|(id, _)| *id == node)
            .filter_map(|(_, child)| child.as_ref())
            .any(|child| send_signal(child, signal))
    }

    /// Asks every node to stop (SIGTERM, and SIGCONT in case it was paused) and waits for each.
    pub fn stop(&mut self) {
        for (_, child) in &mut self.children {
            if let Some(mut child) = child.take() {
                if !send_signal(&child, "-TERM") {
                    let _ = child.kill();
                }
                send_signal(&child, "-CONT");
                let _ = child.wait();
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sends `signal` (e.g. `-TERM`) to `child` with `kill`; whether it was delivered.
fn send_signal(child: &Child, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// The first port of the kernel's ephemeral range (Linux), if it can be read.
fn ephemeral_port_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `text` as one word for a POSIX shell: as it is when it holds only characters no shell
/// treats specially, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@=,%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The lowest port `free_udp_address` picks from.
const NODE_PORT_MIN: u16 = 10_000;

/// A loopback TCP address free now (the system's choice; the node binds it a moment later).
fn free_tcp_address() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()
}

/// A free UDP address on loopback for a node, below the kernel's ephemeral port range when
/// there is room: a client's socket (bound to port 0) then never takes the port of a node
/// that was killed before the node restarts on it. Falls back to any free port.
fn free_udp_address() -> std::io::Result<std::net::SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_low = ephemeral_port_low().unwrap_or(32_768);
    let span = u64::from(ephemeral_low.saturating_sub(NODE_PORT_MIN));
    // A random start (std's per-map hash keys), so clusters started at once rarely collide.
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    for attempt in 0..span.min(256) {
        let offset = u16::try_from((start.wrapping_add(attempt)) % span).unwrap_or(0);
        if let Ok(socket) = std::net::UdpSocket::bind(("127.0.0.1", NODE_PORT_MIN + offset)) {
            return socket.local_addr();
        }
    }
    std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// Connects to `cluster` and waits until every range's group has a leader.
///
/// # Errors
/// The cluster did not come up within `wait`.
pub async fn connect_when_ready(
    options: ClientOptions,
    wait: Duration,
) -> Result<Client, LocalError> {
    let deadline = Instant::now() + wait;
    let seconds = wait.as_secs();
    let client = loop {
        match Client::connect(options.clone()).await {
            Ok(client) => break client,
            // Bad options or certificates do not get better with time.
            Err(source @ (ClientError::Config(_) | ClientError::Tls(_))) => {
                return Err(LocalError::NotStarted { seconds, source });
            }
            Err(source) if Instant::now() > deadline => {
                return Err(LocalError::NotStarted { seconds, source });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let every_node_answers = async |client: &Client| {
        let statuses = client.statuses().await;
        statuses.iter().all(|(_, status)| status.is_ok())
    };
    loop {
        let leaderless = leaderless_groups(&client).await;
        if leaderless == 0 && every_node_answers(&client).await {
            return Ok(client);
        }
        if Instant::now() > deadline {
            return Err(LocalError::NoLeaders {
                leaderless,
                seconds,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ranges whose group no live node reports as led by itself.
pub async fn leaderless_groups(client: &Client) -> usize {
    let statuses = client.statuses().await;
    client
        .map()
        .ranges()
        .filter(|range| {
            !statuses
                .iter()
                .filter_map(|(_, status)| status.as_ref().ok())
                .any(|status| {
                    status
                        .groups
                        .iter()
                        .any(|group| group.group == range.group && group.role == "Leader")
                })
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path with a space or a quote is still one word.
    #[test]
    fn shell_words_survive_spaces_and_quotes() {
        assert_eq!(
            shell_word("/tmp/flotilla-demo-x1/ca.pem"),
            "/tmp/flotilla-demo-x1/ca.pem"
        );
        assert_eq!(shell_word("/tmp/my dir/ca.pem"), "'/tmp/my dir/ca.pem'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    /// Node ports stay out of the range the kernel hands to sockets bound to port 0, where a
    /// client could take a killed node's port before the node restarts.
    #[test]
    fn node_ports_lie_below_the_ephemeral_range() {
        let Some(low) = ephemeral_port_low() else {
            return;
        };
        if low <= NODE_PORT_MIN {
            return;
        }
        let ports: Vec<u16> = (0..8)
            .map(|_| free_udp_address().expect("a free port").port())
            .collect();
        assert!(
            ports.iter().all(|port| (NODE_PORT_MIN..low).contains(port)),
            "{ports:?} not in {NODE_PORT_MIN}..{low}"
        );
    }
}

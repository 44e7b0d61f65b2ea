//! `flotilla server`: wires one node together — its data directory and log, MultiRaft with a
//! replica of every group it hosts, the node core over them, the QUIC transport and the client
//! API — and runs the driver on its own thread until SIGINT or SIGTERM. SIGHUP re-reads the
//! `[access]` section and the certificate files for new connections.

pub(crate) mod data;
mod driver;
mod join;
pub use driver::DriverError;
mod gate;
pub(crate) use gate::{Caller, Gate};
mod streams;
pub(crate) use streams::StreamBounds;

use crate::access::Policy;
use crate::api::Request;
use crate::config::{ConfigError, Endpoint, NodeConfig, StorageEngine};
use crate::core::{CoreConfig, CoreIdentity, NodeCore, RangeStore, boot};
use crate::gateway::{Gateway, Https};
use crate::observe::requests::RequestStats;
use crate::observe::{Published, Publisher, View};
use crate::server::driver::{Driver, Input, Responder};
use crossbeam_channel::Sender;
use flotilla_raft::NodeId;
use flotilla_transport_quic::{QuicTransport, Transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `/ready` fails when the driver published nothing for this long at least (a long log write
/// under load is not yet a stuck driver).
const READY_STALE_MIN: Duration = Duration::from_secs(2);

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A bad configuration value.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Certificates missing or invalid.
    #[error(transparent)]
    Tls(#[from] crate::config::TlsLoadError),
    /// This node's certificate file holds no certificate.
    #[error("the node's certificate file holds no certificate")]
    NoCertificate,
    /// This node's certificate does not parse as a Flotilla identity.
    #[error("the node's certificate cannot be read: {0}")]
    CertificateUnreadable(#[source] flotilla_transport_quic::TlsError),
    /// This node's certificate names another node or a client.
    #[error("the certificate names {named}, not node {node}: each node needs its own certificate")]
    WrongCertificate {
        /// Who the certificate names.
        named: flotilla_transport_quic::PeerIdentity,
        /// This node.
        node: u64,
    },
    /// The system gave no randomness for a new data directory's id.
    #[error("the system has no randomness to offer for a new data directory's id")]
    NoRandomness,
    /// The file of the peers' pinned data directories could not be read.
    #[error("{} could not be read: {source}", path.display())]
    PinsUnreadable {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file of the peers' pinned data directories is damaged.
    #[error(
        "{} is damaged at `{line}`: the node must not start without the peers it knows",
        path.display()
    )]
    PinsDamaged {
        /// The file.
        path: std::path::PathBuf,
        /// The line that does not parse.
        line: String,
    },
    /// The data directory cannot be used by this process.
    #[error(transparent)]
    DataDir(#[from] flotilla_storage::DataDirError),
    /// The log could not be recovered; the node must not start on it.
    #[error("the log cannot be recovered: {0}")]
    Recovery(#[from] flotilla_storage::RecoveryError),
    /// The state machine engine could not be opened.
    #[error("the state machine engine in {} cannot be opened: {source}", path.display())]
    Engine {
        /// Its folder.
        path: std::path::PathBuf,
        /// Why.
        source: flotilla_storage::EngineError,
    },
    /// The node core could not be built from the log.
    #[error("the node cannot start from its log: {0}")]
    Boot(#[from] boot::BootError),
    /// The initial state could not be written.
    #[error("writing the initial state failed: {0}")]
    Bootstrap(#[from] flotilla_storage::WriteError),
    /// The data directory is empty, but the cluster already knows this node id.
    #[error(
        "node {node} is already a member of this cluster (node {peer} knows it by data \
         directory {directory}), but this data directory is empty: its data was lost or this is \
         the wrong directory. A node never comes back empty under its old id; keep it down and \
         add a new node with a new id (docs/operations.md, \"A damaged or lost disk\")"
    )]
    AlreadyMember {
        /// This node's id.
        node: u64,
        /// The peer that knows it.
        peer: u64,
        /// The data directory that peer knows it by.
        directory: String,
    },
    /// Joining a running cluster failed.
    #[error("joining the cluster failed: {0}")]
    JoinFailed(String),
    /// The network runtime could not start.
    #[error("the network runtime could not start: {0}")]
    Runtime(#[source] std::io::Error),
    /// The endpoint could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: flotilla_transport_quic::ConnectError,
    },
    /// The bound endpoint has no local address.
    #[error("the endpoint has no local address: {0}")]
    LocalAddress(#[source] std::io::Error),
    /// The HTTP listener could not be bound.
    #[error("cannot serve HTTP on {address} (http_listen): {source}")]
    HttpListen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The driver thread could not be started.
    #[error("the driver thread could not start: {0}")]
    DriverThread(#[source] std::io::Error),
    /// The driver stopped on an error.
    #[error("the node stopped: {0}")]
    Driver(#[from] driver::DriverError),
    /// The driver thread panicked.
    #[error("the driver thread panicked")]
    DriverPanicked,
    /// The SIGHUP handler could not be installed (without it, SIGHUP would stop the node).
    #[error("the SIGHUP handler could not be installed: {0}")]
    Signal(#[source] std::io::Error),
    /// The certificates read again could not serve new connections.
    #[error("the certificates read again cannot be used: {0}")]
    Reload(#[source] flotilla_transport_quic::ConnectError),
    /// The node's certificate and key cannot serve HTTPS on the HTTP listener.
    #[error("the node's certificate cannot serve HTTPS on http_listen: {0}")]
    Https(#[source] flotilla_transport_quic::TlsError),
}

/// Reads the configuration again (the file and the flags), for a reload on SIGHUP.
pub type Reread = Box<dyn Fn() -> Result<NodeConfig, ConfigError> + Send>;

/// Runs the node described by `config` until SIGINT or SIGTERM; on SIGHUP applies the
/// `[access]` section and the certificate files of the configuration `reread` gives.
///
/// # Errors
/// Anything that prevents starting, or a fatal error while running.
pub fn run(config: NodeConfig, reread: Reread, exit_with_parent: bool) -> Result<(), ServerError> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.network_threads())
        .thread_name("flotilla-net")
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(serve(config, reread, exit_with_parent))
}

async fn serve(
    config: NodeConfig,
    reread: Reread,
    exit_with_parent: bool,
) -> Result<(), ServerError> {
    // Installed before the node starts: SIGHUP's default action would stop the process.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(ServerError::Signal)?;
    let mut node = start(&config).await?;
    let shutdown = shutdown_signal(exit_with_parent);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                tracing::info!("stopping");
                return node.stop().await;
            }
            result = &mut node.done => {
                node.shut_down_network().await;
                return loop_result(result);
            }
            Some(()) = hangups.recv() => {
                match reread().map_err(ServerError::from).and_then(|config| node.reload(&config)) {
                    Ok(()) => tracing::info!(
                        "SIGHUP: applied the access rules and certificate files for new connections"
                    ),
                    Err(error) => tracing::warn!(
                        %error,
                        "SIGHUP: reload failed; the previous access rules and certificates stay"
                    ),
                }
            }
        }
    }
}

/// A node running inside this process (the server's core, also used by benches and tests).
#[derive(Debug)]
pub struct RunningNode {
    node: NodeId,
    address: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    done: tokio::sync::oneshot::Receiver<Result<(), driver::DriverError>>,
    transport: Option<Arc<QuicTransport>>,
    gate: Arc<Gate>,
    /// The HTTP listener's TLS configuration, when it serves one.
    https: Option<Arc<Https>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the node `config` describes inside the current tokio runtime: recovers or
/// bootstraps its groups, binds its endpoint and starts the driver thread.
///
/// # Errors
/// Anything that prevents starting.
pub async fn start(config: &NodeConfig) -> Result<RunningNode, ServerError> {
    config.validate()?;
    let node = config.node();
    let initial = config.initial_endpoints()?;
    let seeds = config.join_endpoints()?;
    if seeds.is_empty() && !initial.iter().any(|endpoint| endpoint.node == node) {
        return Err(crate::config::ConfigError::Invalid(format!(
            "node {} is not in initial_cluster: to join a running cluster, give --join",
            node.0
        ))
        .into());
    }
    join::check_seeds(node, &seeds)?;
    let tls = crate::config::load_tls(
        &config.tls_dir,
        &config.cluster_id,
        &format!("node-{}", node.0),
    )?;
    let meta = boot::initial_meta(&initial, config.ranges.groups, config.ranges.replicas);
    let mut joined_directory = None;
    let data = if seeds.is_empty() {
        data::open(config, &tls, &initial, |engine| {
            boot::bootstrap_log(engine, node, &meta)?;
            tracing::info!(
                node = node.0,
                "wrote the initial state of every group this node hosts"
            );
            Ok(())
        })
        .await?
    } else {
        let base = if data::is_fresh(config)? {
            let address = config.listen_address()?.to_string();
            Some(join::join_cluster(config, &tls, &seeds, address).await?)
        } else {
            None
        };
        joined_directory = base.as_ref().map(|joined| joined.directory.clone());
        data::open(config, &tls, &seeds, |engine| match base {
            Some(joined) => Ok(boot::bootstrap_joined(engine, joined.meta)?),
            None => Err(ServerError::JoinFailed(
                "the data directory began a join that did not finish: remove it and join again"
                    .into(),
            )),
        })
        .await?
    };
    let engine = Arc::clone(&data.engine);
    let mut multi_config = config.multi_config();
    multi_config.incarnation = data.incarnation();
    let listen = config.listen_address()?;
    let policy = Policy::new(&config.access).map_err(ConfigError::from)?;
    let revoked = Arc::new(policy.revocations(&tls.cluster));
    let gate = Arc::new(Gate::new(policy, &config.access));
    let announce_tls = tls.clone();
    let https = match config.http_listen {
        Some(_) => Some(Arc::new(
            Https::new(&tls, Arc::clone(&revoked)).map_err(ServerError::Https)?,
        )),
        None => None,
    };
    let transport =
        QuicTransport::bind_revoking(node, listen, tls, config.transport_config(), revoked)
            .await
            .map_err(|source| ServerError::Listen {
                address: listen,
                source,
            })?;
    let address = transport
        .local_address()
        .map_err(ServerError::LocalAddress)?;
    let transport = Arc::new(transport);
    let identity = CoreIdentity {
        directory: data.identity.directory_id,
        incarnation: data.identity.incarnation,
        pins: data.pins.clone(),
    };
    let core_config = CoreConfig {
        node,
        tick_ms: config.raft.tick_ms,
        snapshot_entries: config.raft.snapshot_entries,
        limits: config.limits.clone(),
        session_limits: config.session_limits(),
        tuning: config.core_tuning(),
        placement: config.placement_config(),
        #[cfg(feature = "mutations")]
        mutation: crate::core::CoreMutation::None,
    };
    let store = match config.storage.engine {
        StorageEngine::Memory => RangeStore::Memory,
        StorageEngine::Disk => {
            let path = data.directory.engine_path();
            let engine = flotilla_storage::Engine::open(&path, config.engine_config())
                .map_err(|source| ServerError::Engine { path, source })?;
            RangeStore::Engine(engine)
        }
    };
    let sink = Arc::clone(&transport);
    let mut core = boot::start(
        core_config,
        multi_config,
        engine,
        sink,
        meta,
        identity,
        store,
    )?;
    connect_peers(&transport, &mut core, node, joined_directory);
    let moved = moved_request(&core, node, listen.to_string(), data.identity.directory_id);
    let (peers, peers_rx) = crossbeam_channel::bounded(config.tuning.inbound_batches_max);
    let (clients, clients_rx) = crossbeam_channel::bounded(config.limits.pending_requests_max);
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(Published::default());
    let requests = Arc::new(RequestStats::default());
    let mut tasks = vec![
        tokio::spawn(forward_batches(Arc::clone(&transport), peers)),
        tokio::spawn(accept_clients(
            Arc::clone(&transport),
            clients,
            config.stream_bounds(),
            streams::StreamShared {
                gate: Arc::clone(&gate),
                stats: Arc::clone(&requests),
            },
        )),
    ];
    if let Some((peers, request)) = moved {
        tasks.push(tokio::spawn(join::announce_address(
            announce_tls,
            peers,
            request,
        )));
    }
    let http_address = match (config.http_listen, &https) {
        (Some(http), Some(https)) => {
            let api = gateway(config, address_of(address, http), &gate)?;
            let secure = (Arc::clone(https), Arc::new(api));
            let (task, bound) = start_http(config, &published, requests, http, secure).await?;
            tasks.push(task);
            Some(bound)
        }
        _ => None,
    };
    let publish_interval = Duration::from_millis(config.tuning.metrics_publish_interval_ms);
    let driver = Driver {
        core,
        peers: peers_rx,
        clients: clients_rx,
        input_burst_max: config.tuning.input_burst_max,
        stop: Arc::clone(&stop),
        data,
        publisher: Publisher::new(
            published,
            (
                publish_interval,
                Duration::from_millis(config.tuning.summary_log_interval_ms),
            ),
            config.http.status_history_seconds,
        ),
        transport: Arc::clone(&transport),
    };
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("flotilla-raft-{}", node.0))
        .spawn(move || {
            let _runtime = runtime.enter();
            let _ = done_tx.send(driver.run());
        })
        .map_err(ServerError::DriverThread)?;
    match http_address {
        Some(http) => {
            tracing::info!(node = node.0, listen = %address, %http, data_dir = %config.data_directory().display(), "serving")
        }
        None => {
            tracing::info!(node = node.0, listen = %address, data_dir = %config.data_directory().display(), "serving")
        }
    }
    Ok(RunningNode {
        node,
        address,
        stop,
        done,
        transport: Some(transport),
        gate,
        https,
        tasks,
    })
}

impl RunningNode {
    /// The node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.node
    }

    /// The address the node listens on (useful when it was started on port 0).
    #[must_use]
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Applies `config`'s `[access]` section to every request from now on, and serves new
    /// connections with the certificate files read again and its deny-list (open connections
    /// keep their handshake, but their requests meet the new rules). Nothing changes if
    /// anything fails. The other keys need a restart.
    ///
    /// # Errors
    /// An invalid configuration, or certificates that cannot be read or used.
    pub fn reload(&self, config: &NodeConfig) -> Result<(), ServerError> {
        config.validate()?;
        let policy = Policy::new(&config.access).map_err(ConfigError::from)?;
        let tls = crate::config::load_tls(
            &config.tls_dir,
            &config.cluster_id,
            &format!("node-{}", self.node.0),
        )?;
        let revoked = Arc::new(policy.revocations(&tls.cluster));
        if let Some(transport) = &self.transport {
            transport
                .reload_server_tls(&tls, Arc::clone(&revoked))
                .map_err(ServerError::Reload)?;
        }
        if let Some(https) = &self.https {
            https.replace(&tls, revoked).map_err(ServerError::Https)?;
        }
        self.gate.replace(policy, &config.access);
        Ok(())
    }

    /// Stops the driver after its current turn, then the network.
    ///
    /// # Errors
    /// The loop had already stopped on an error.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.stop.store(true, Ordering::Release);
        let result = (&mut self.done).await;
        self.shut_down_network().await;
        loop_result(result)
    }

    async fn shut_down_network(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        // The loop thread and the tasks are gone, so this is the last reference.
        if let Some(Ok(transport)) = self.transport.take().map(Arc::try_unwrap) {
            transport.shutdown().await;
        }
    }
}

fn loop_result(
    result: Result<Result<(), driver::DriverError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<(), ServerError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ServerError::Driver(error)),
        Err(_) => Err(ServerError::DriverPanicked),
    }
}

/// The JSON API of this node (listening at `listen`), through the cluster's initial and join
/// endpoints.
fn gateway(
    config: &NodeConfig,
    listen: std::net::SocketAddr,
    gate: &Arc<Gate>,
) -> Result<Gateway, ServerError> {
    let own = Endpoint {
        node: config.node(),
        address: listen,
    };
    let mut endpoints = vec![own];
    let others = config.initial_endpoints()?.into_iter();
    endpoints.extend(
        others
            .chain(config.join_endpoints()?)
            .filter(|e| e.node != own.node),
    );
    Ok(Gateway::new(
        endpoints,
        (config.tls_dir.clone(), &config.cluster_id),
        &config.http,
        Arc::clone(gate),
    ))
}

/// Where this node's QUIC endpoint, listening on `listen`, is reached from the HTTP listener's
/// host: an unspecified address (0.0.0.0) is dialed on the HTTP listener's IP instead.
fn address_of(listen: std::net::SocketAddr, http: std::net::SocketAddr) -> std::net::SocketAddr {
    if listen.ip().is_unspecified() && !http.ip().is_unspecified() {
        std::net::SocketAddr::new(http.ip(), listen.port())
    } else if listen.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    }
}

/// Binds the HTTP listener on `address` and serves it on a task, with HTTPS and the API
/// (`secure`); returns the task and the bound address.
async fn start_http(
    config: &NodeConfig,
    published: &Arc<Published>,
    requests: Arc<RequestStats>,
    address: std::net::SocketAddr,
    (https, gateway): (Arc<Https>, Arc<Gateway>),
) -> Result<(tokio::task::JoinHandle<()>, std::net::SocketAddr), ServerError> {
    let http_error = |source| ServerError::HttpListen { address, source };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(http_error)?;
    let bound = listener.local_addr().map_err(http_error)?;
    // The driver publishes every interval; twenty missed in a row is a stuck driver.
    let stale_after =
        Duration::from_millis(config.tuning.metrics_publish_interval_ms * 20).max(READY_STALE_MIN);
    let view = Arc::new(View::new(
        (config.node(), Arc::clone(published)),
        requests,
        stale_after,
        config.http.status_rows_max,
    ));
    let served = crate::observe::Served {
        view,
        https,
        gateway,
        settings: config.http.clone(),
    };
    let task = tokio::spawn(crate::observe::serve(listener, Arc::new(served)));
    Ok((task, bound))
}

/// Dials every peer of the directory (a joining node's, fresher than its meta snapshot, when
/// given).
/// When the meta state records this node at another address than `address` (it restarted
/// elsewhere), the request that records the new one and the peers to send it through.
fn moved_request(
    core: &NodeCore<Responder, Arc<QuicTransport>>,
    node: NodeId,
    address: String,
    data_directory: u128,
) -> Option<(Vec<Endpoint>, Request)> {
    let directory = &core.meta().directory;
    let recorded = directory.address(node)?;
    if recorded == address {
        return None;
    }
    tracing::info!(node = node.0, %recorded, %address, "this node moved; recording its new address");
    let peers = directory
        .nodes()
        .filter(|&peer| peer != node)
        .filter_map(|peer| {
            let address = directory.address(peer)?.parse().ok()?;
            Some(Endpoint {
                node: peer,
                address,
            })
        })
        .collect();
    let request = Request::SetAddress {
        node,
        address,
        data_directory,
    };
    Some((peers, request))
}

fn connect_peers(
    transport: &QuicTransport,
    core: &mut NodeCore<Responder, Arc<QuicTransport>>,
    node: NodeId,
    directory: Option<flotilla_shard_manager::Directory>,
) {
    let directory = directory.unwrap_or_else(|| core.meta().directory.clone());
    for peer in directory.nodes().filter(|&peer| peer != node) {
        match directory.address(peer).map(str::parse) {
            Some(Ok(address)) => {
                transport.add_peer(peer, address);
                core.add_peer(peer);
            }
            _ => tracing::warn!(peer = peer.0, "no usable address for peer"),
        }
    }
}

async fn forward_batches(transport: Arc<QuicTransport>, inbox: Sender<Input>) {
    while let Some(batch) = transport.recv().await {
        // A full inbox drops the batch: Raft tolerates loss and the loop is behind anyway.
        if let Err(crossbeam_channel::TrySendError::Disconnected(_)) =
            inbox.try_send(Input::Batch(batch))
        {
            return;
        }
    }
}

async fn accept_clients(
    transport: Arc<QuicTransport>,
    inbox: Sender<Input>,
    bounds: streams::StreamBounds,
    shared: streams::StreamShared,
) {
    // Each connection reads requests up to the endpoint's `client_request_bytes_max`.
    while let Some(connection) = transport.accept_client().await {
        let serve = streams::serve_client(connection, inbox.clone(), bounds, shared.clone());
        tokio::spawn(serve);
    }
}

/// SIGINT, SIGTERM, or (with `exit_with_parent`) the parent process going away.
async fn shutdown_signal(exit_with_parent: bool) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let orphaned = async {
        let parent = std::os::unix::process::parent_id();
        while !exit_with_parent || std::os::unix::process::parent_id() == parent {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::warn!("the parent process exited");
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = orphaned => {}
    }
}

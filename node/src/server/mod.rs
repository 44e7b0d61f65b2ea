//! `flotilla server`: wires one node together — the log engine, MultiRaft with a replica of
//! every group this node hosts, their state machines, the QUIC transport and the client API —
//! and runs the Raft loop on its own thread until SIGINT or SIGTERM.

mod clients;
mod machines;
mod raft_loop;
mod streams;

use crate::config::{Endpoint, NodeConfig};
use crate::server::clients::Waiting;
use crate::server::machines::Machines;
use crate::server::raft_loop::{Input, LoopCounters, RaftLoop};
use crossbeam_channel::Sender;
use flotilla_raft::{LogReader, Membership, MultiRaft, NodeId, Persist, Snapshot, SnapshotMeta};
use flotilla_shard_manager::{Directory, META_GROUP, MetaState, RangeMap};
use flotilla_storage::{LogEngine, WriteBatch};
use flotilla_transport_quic::{QuicTransport, Transport, TransportConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Batches from peers that may wait for the Raft loop (client requests have their own queue).
const INBOUND_BATCHES_MAX: usize = 4096;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A bad configuration value.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Certificates missing or invalid.
    #[error("tls: {0}")]
    Tls(String),
    /// The log could not be opened or written.
    #[error("storage: {0}")]
    Storage(String),
    /// The endpoint could not be bound.
    #[error("network: {0}")]
    Network(String),
    /// The Raft loop stopped on an error.
    #[error("raft loop: {0}")]
    Loop(String),
}

/// Runs the node described by `config` until SIGINT or SIGTERM.
///
/// # Errors
/// Anything that prevents starting, or a fatal error while running.
pub fn run(config: NodeConfig, exit_with_parent: bool) -> Result<(), ServerError> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.network_threads())
        .thread_name("flotilla-net")
        .enable_all()
        .build()
        .map_err(|error| ServerError::Network(error.to_string()))?;
    runtime.block_on(serve(config, exit_with_parent))
}

async fn serve(config: NodeConfig, exit_with_parent: bool) -> Result<(), ServerError> {
    let mut node = start(&config).await?;
    tokio::select! {
        () = shutdown_signal(exit_with_parent) => {
            tracing::info!("stopping");
            node.stop().await
        }
        result = &mut node.done => {
            node.shut_down_network().await;
            loop_result(result)
        }
    }
}

/// A node running inside this process (the server's core, also used by benches and tests).
#[derive(Debug)]
pub struct RunningNode {
    node: NodeId,
    address: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    done: tokio::sync::oneshot::Receiver<Result<(), raft_loop::LoopError>>,
    transport: Option<Arc<QuicTransport>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the node `config` describes inside the current tokio runtime: recovers or
/// bootstraps its groups, binds its endpoint and starts the Raft loop thread.
///
/// # Errors
/// Anything that prevents starting.
pub async fn start(config: &NodeConfig) -> Result<RunningNode, ServerError> {
    config.validate()?;
    let node = config.node();
    let initial = config.initial_endpoints()?;
    if !initial.iter().any(|endpoint| endpoint.node == node) {
        return Err(crate::config::ConfigError(format!(
            "node {} is not in initial_cluster; joining a running cluster is not supported yet",
            node.0
        ))
        .into());
    }
    let tls = crate::config::load_tls(
        &config.tls_dir,
        &config.cluster_id,
        &format!("node-{}", node.0),
    )
    .map_err(ServerError::Tls)?;
    let engine = open_log(config)?;
    if engine.group_ids().is_empty() {
        bootstrap(&engine, node, &initial_meta(config, &initial))?;
    }
    let (mut multi, machines) = recover(config, &engine, initial_meta(config, &initial))?;
    let listen = config.listen_address()?;
    let transport = QuicTransport::bind(node, listen, tls, config.transport_config())
        .await
        .map_err(|error| ServerError::Network(format!("cannot listen on {listen}: {error}")))?;
    let address = transport
        .local_address()
        .map_err(|error| ServerError::Network(error.to_string()))?;
    let transport = Arc::new(transport);
    connect_peers(&transport, &mut multi, machines.meta(), node);
    let (peers, peers_rx) = crossbeam_channel::bounded(INBOUND_BATCHES_MAX);
    let (clients, clients_rx) = crossbeam_channel::bounded(config.limits.pending_requests_max);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = vec![
        tokio::spawn(forward_batches(Arc::clone(&transport), peers)),
        tokio::spawn(accept_clients(Arc::clone(&transport), clients)),
    ];
    let raft_loop = RaftLoop {
        node,
        multi,
        engine,
        transport: Arc::clone(&transport),
        peers: peers_rx,
        clients: clients_rx,
        stop: Arc::clone(&stop),
        tick: Duration::from_millis(config.raft.tick_ms),
        snapshot_entries: config.raft.snapshot_entries,
        limits: config.limits.clone(),
        machines,
        waiting: Waiting::default(),
        counters: LoopCounters::default(),
        synced_votes: Default::default(),
        deferred: Default::default(),
    };
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("flotilla-raft-{}", node.0))
        .spawn(move || {
            let _runtime = runtime.enter();
            let _ = done_tx.send(raft_loop.run());
        })
        .map_err(|error| ServerError::Loop(error.to_string()))?;
    tracing::info!(node = node.0, listen = %address, data_dir = %config.data_directory().display(), "serving");
    Ok(RunningNode {
        node,
        address,
        stop,
        done,
        transport: Some(transport),
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

    /// Stops the Raft loop after its current turn, then the network.
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
    result: Result<Result<(), raft_loop::LoopError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<(), ServerError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ServerError::Loop(error.to_string())),
        Err(_) => Err(ServerError::Loop("the Raft loop thread panicked".into())),
    }
}

fn open_log(config: &NodeConfig) -> Result<Arc<LogEngine>, ServerError> {
    let (engine, report) =
        LogEngine::open(config.data_directory().join("log"), config.log_config())
            .map_err(|error| ServerError::Storage(error.to_string()))?;
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(
            ?torn,
            "the log ended in a torn write (a crash mid-write); it was cut there"
        );
    }
    Ok(Arc::new(engine))
}

/// The map and directory every initial node computes alike from the configuration.
fn initial_meta(config: &NodeConfig, initial: &[Endpoint]) -> MetaState {
    let nodes: Vec<NodeId> = initial.iter().map(|endpoint| endpoint.node).collect();
    let replicas = config.ranges.replicas.min(nodes.len());
    let map = RangeMap::uniform(config.ranges.groups, |group| {
        let first = (group.0 - 1) as usize;
        (0..replicas)
            .map(|offset| nodes[(first + offset) % nodes.len()])
            .collect()
    });
    let directory = Directory::new(
        initial
            .iter()
            .map(|endpoint| (endpoint.node, endpoint.address.to_string())),
    );
    MetaState { map, directory }
}

/// First start: persist the initial state of every group this node hosts, in one write.
fn bootstrap(engine: &LogEngine, node: NodeId, meta: &MetaState) -> Result<(), ServerError> {
    let mut batch = WriteBatch::new();
    let meta_snapshot = Snapshot {
        meta: SnapshotMeta {
            last: Default::default(),
            membership: Membership::with_voters(meta.directory.nodes()),
        },
        data: meta.encode(),
    };
    batch.persist(
        META_GROUP,
        &Persist {
            snapshot: Some(meta_snapshot),
            ..Persist::default()
        },
    );
    for range in meta
        .map
        .ranges()
        .filter(|range| range.replicas.contains(&node))
    {
        let membership = Membership::with_voters(range.replicas.iter().copied());
        batch.persist(range.group, &Persist::bootstrap(membership));
    }
    engine
        .write(batch)
        .map_err(|error| ServerError::Storage(error.to_string()))?;
    tracing::info!(node = node.0, "bootstrapped a new replica set");
    Ok(())
}

/// Every group in the log, with its state machine restored from its snapshot; Raft then hands
/// the committed entries after the snapshot to the loop to apply again.
fn recover(
    config: &NodeConfig,
    engine: &LogEngine,
    meta: MetaState,
) -> Result<(MultiRaft<flotilla_storage::GroupLog>, Machines), ServerError> {
    let mut multi = MultiRaft::new(config.multi_config());
    let mut machines = Machines::new(meta);
    for group in engine.group_ids() {
        let store = engine.group(group);
        let group_error =
            |reason: String| ServerError::Storage(format!("group {}: {reason}", group.0));
        let snapshot = store
            .snapshot()
            .map_err(|error| group_error(error.to_string()))?;
        machines.restore(group, &snapshot).map_err(group_error)?;
        multi
            .create_group(group, store)
            .map_err(|error| group_error(error.to_string()))?;
    }
    Ok((multi, machines))
}

fn connect_peers(
    transport: &QuicTransport,
    multi: &mut MultiRaft<flotilla_storage::GroupLog>,
    meta: &MetaState,
    node: NodeId,
) {
    for peer in meta.directory.nodes().filter(|&peer| peer != node) {
        match meta.directory.address(peer).map(str::parse) {
            Some(Ok(address)) => {
                transport.add_peer(peer, address);
                multi.add_peer(peer);
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

async fn accept_clients(transport: Arc<QuicTransport>, inbox: Sender<Input>) {
    let frame_bytes_max = TransportConfig::default().frame_bytes_max;
    while let Some(connection) = transport.accept_client().await {
        tokio::spawn(streams::serve_client(
            connection,
            inbox.clone(),
            frame_bytes_max,
        ));
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

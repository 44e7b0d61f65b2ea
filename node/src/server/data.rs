//! The data directory at start: locked for this process, checked against this node and
//! cluster, its log opened as the directory's own, and bootstrapped exactly once.
//!
//! An empty directory is bootstrapped only when no other initial node already knows this node
//! id (it would have met the id's earlier directory): a node that lost its data must not come
//! back empty under its old id and vote as if it remembered. Peers that are down cannot answer;
//! the new directory is then harmless anyway, since every peer that met the old one refuses
//! the new one's batches (`MultiRaft` pins each peer's directory).

use super::ServerError;
use crate::api::{Reply, Request};
use crate::client::connection::NodeConnection;
use crate::config::{Endpoint, NodeConfig};
use flotilla_raft::{Incarnation, NodeId};
use flotilla_storage::{DataDir, DirIdentity, DirState, LogBinding, LogEngine, RealFs};
use flotilla_transport_quic::{PeerIdentity, TlsSetup, TransportConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PINS_FILE: &str = "peers";

/// The locked data directory, its identity (this start counted) and its open log.
pub(crate) struct OpenedData {
    pub(crate) directory: DataDir,
    pub(crate) identity: DirIdentity,
    pub(crate) engine: Arc<LogEngine>,
    /// The data directory each peer was first met with (persisted in `peers`).
    pub(crate) pins: BTreeMap<NodeId, u128>,
}

impl OpenedData {
    /// What this process names in every batch it sends.
    pub(crate) fn incarnation(&self) -> Incarnation {
        Incarnation {
            directory: self.identity.directory_id,
            start: self.identity.incarnation,
        }
    }

    /// Persists `pins` (all of them): a temporary file, synced, renamed, directory synced.
    pub(crate) fn save_pins(&self) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let directory = self.directory.path();
        let temporary = directory.join(format!("{PINS_FILE}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        writeln!(
            file,
            "# The data directory each peer node was first met with: node directory"
        )?;
        for (node, pinned) in &self.pins {
            writeln!(file, "{} {pinned:032x}", node.0)?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, directory.join(PINS_FILE))?;
        std::fs::File::open(directory)?.sync_all()
    }
}

/// Locks and opens the data directory, bootstrapping it (with `bootstrap_log`, which writes the
/// log's first state) when it is new.
pub(crate) async fn open(
    config: &NodeConfig,
    tls: &TlsSetup,
    initial: &[Endpoint],
    bootstrap_log: impl FnOnce(&LogEngine) -> Result<(), ServerError>,
) -> Result<OpenedData, ServerError> {
    check_certificate(tls, config.node())?;
    let directory = DataDir::lock(&config.data_directory())?;
    let fresh = match directory.state()? {
        DirState::Ready(_) => None,
        DirState::Bootstrapping(identity) => Some(identity),
        DirState::Fresh => {
            ensure_unknown_to_peers(config, tls, initial).await?;
            Some(new_identity(config)?)
        }
    };
    if let Some(identity) = fresh {
        directory.begin_bootstrap(&identity)?;
        let engine = open_log(config, &directory, &identity, false)?;
        bootstrap_log(&engine)?;
        drop(engine);
        directory.finish_bootstrap(&identity)?;
        tracing::info!(
            node = config.node_id,
            directory = %format!("{:032x}", identity.directory_id),
            "bootstrapped a new data directory"
        );
    }
    let identity = directory.start(&config.cluster_id, config.node_id)?;
    let engine = Arc::new(open_log(config, &directory, &identity, true)?);
    let pins = load_pins(directory.path())?;
    Ok(OpenedData {
        directory,
        identity,
        engine,
        pins,
    })
}

/// Whether the data directory was never bootstrapped (it is locked and released to look).
pub(crate) fn is_fresh(config: &NodeConfig) -> Result<bool, ServerError> {
    let directory = DataDir::lock(&config.data_directory())?;
    Ok(matches!(directory.state()?, DirState::Fresh))
}

/// The certificate this node presents must name this node: a copied or mixed-up file would
/// let one process speak as another node.
fn check_certificate(tls: &TlsSetup, node: NodeId) -> Result<(), ServerError> {
    let certificate = tls
        .identity
        .cert_chain
        .first()
        .ok_or(ServerError::NoCertificate)?;
    let named =
        PeerIdentity::from_certificate(certificate).map_err(ServerError::CertificateUnreadable)?;
    match named {
        PeerIdentity::Node { node: named, .. } if named == node => Ok(()),
        other => Err(ServerError::WrongCertificate {
            named: other,
            node: node.0,
        }),
    }
}

pub(crate) fn new_identity(config: &NodeConfig) -> Result<DirIdentity, ServerError> {
    let mut bytes = [0; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ServerError::NoRandomness)?;
    Ok(DirIdentity {
        cluster_id: config.cluster_id.clone(),
        node_id: config.node_id,
        directory_id: u128::from_le_bytes(bytes),
        incarnation: 0,
    })
}

pub(crate) fn open_log(
    config: &NodeConfig,
    directory: &DataDir,
    identity: &DirIdentity,
    must_exist: bool,
) -> Result<LogEngine, ServerError> {
    let binding = LogBinding {
        log_id: Some(identity.log_id()),
        must_exist,
    };
    let (engine, report) = LogEngine::open_bound(
        Arc::new(RealFs),
        directory.log_path(),
        config.log_config(),
        binding,
    )?;
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(
            file = %torn.file.display(),
            offset = torn.offset,
            discarded_bytes = torn.discarded_bytes,
            "the log ended in a write that never completed its sync (a crash); it was cut there"
        );
    }
    Ok(engine)
}

/// Asks every other initial node whether it knows this node id; refuses to bootstrap if one
/// does. Nodes that do not answer within the check's time are passed over.
async fn ensure_unknown_to_peers(
    config: &NodeConfig,
    tls: &TlsSetup,
    initial: &[Endpoint],
) -> Result<(), ServerError> {
    let node = config.node();
    let wait = Duration::from_millis(config.bootstrap_check_ms);
    let mut questions = tokio::task::JoinSet::new();
    for peer in initial.iter().filter(|endpoint| endpoint.node != node) {
        questions.spawn(ask(tls.clone(), *peer, node, wait));
    }
    while let Some(answer) = questions.join_next().await {
        if let Ok((peer, Some(directory))) = answer {
            return Err(ServerError::AlreadyMember {
                node: node.0,
                peer: peer.0,
                directory: format!("{directory:032x}"),
            });
        }
    }
    Ok(())
}

/// What `peer` knows of `node`'s data directory; `None` when it knows nothing or does not
/// answer within `wait`.
async fn ask(
    tls: TlsSetup,
    peer: Endpoint,
    node: NodeId,
    wait: Duration,
) -> (NodeId, Option<u128>) {
    let transport = TransportConfig {
        handshake_timeout_ms: wait.as_millis().max(1) as u64,
        ..TransportConfig::default()
    };
    let answer = async {
        let connection = NodeConnection::connect(&tls, &transport, peer.node, peer.address)
            .await
            .ok()?;
        match connection
            .call(Request::KnownDirectory { node }, wait)
            .await
        {
            Ok(Ok(Reply::KnownDirectory { directory })) => directory,
            _ => None,
        }
    };
    let known = tokio::time::timeout(wait * 2, answer).await.ok().flatten();
    (peer.node, known)
}

/// The peers' pinned directories persisted by earlier runs.
fn load_pins(directory: &Path) -> Result<BTreeMap<NodeId, u128>, ServerError> {
    let path = directory.join(PINS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(ServerError::PinsUnreadable { path, source }),
    };
    let damaged = |line: &str| ServerError::PinsDamaged {
        path: path.clone(),
        line: line.to_string(),
    };
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| parse_pin(line).ok_or_else(|| damaged(line)))
        .collect()
}

fn parse_pin(line: &str) -> Option<(NodeId, u128)> {
    let (node, directory) = line.split_once(' ')?;
    let directory = u128::from_str_radix(directory, 16).ok()?;
    Some((NodeId(node.parse().ok()?), directory))
}

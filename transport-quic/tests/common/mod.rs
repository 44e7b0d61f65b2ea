//! Helpers shared by the integration tests: a test CA, clusters of QUIC transports on loopback,
//! raw quinn connections that misbehave on purpose, and batch builders.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use flotilla_raft::{
    Batch, GroupId, GroupMessage, LogIndex, Message, MessageBody, NodeId, SnapshotMeta, Term,
};
use flotilla_transport_quic::{
    ALPN_RAFT, ClusterCa, ClusterId, Identity, QuicTransport, TlsSetup, Transport, TransportConfig,
};
use rustls_pki_types::CertificateDer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The guard on every wait: far above what any step needs, only there so a bug fails the test.
pub const GUARD: Duration = Duration::from_secs(60);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

pub fn cluster_id() -> ClusterId {
    ClusterId::new("test-cluster").unwrap()
}

pub fn config() -> TransportConfig {
    TransportConfig {
        frame_bytes_max: 8 << 20,
        outbound_queue_batches: 64,
        outbound_snapshot_queue_bytes: 64 << 20,
        inbound_queue_batches: 1024,
        idle_timeout_ms: 10_000,
        keep_alive_interval_ms: 500,
        reconnect_delay_ms_base: 20,
        reconnect_delay_ms_max: 300,
        ..TransportConfig::default()
    }
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn node_tls(ca: &ClusterCa, node: u64) -> TlsSetup {
    TlsSetup {
        cluster: ca.cluster().clone(),
        ca: ca.certificate(),
        identity: ca.node_identity(NodeId(node)).unwrap(),
    }
}

/// Binds one transport per id on loopback and introduces every node to every other.
pub async fn quic_cluster(ca: &ClusterCa, ids: &[u64]) -> Vec<QuicTransport> {
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(
            QuicTransport::bind(NodeId(*id), loopback(), node_tls(ca, *id), config())
                .await
                .unwrap(),
        );
    }
    let addresses: Vec<SocketAddr> = nodes.iter().map(|n| n.local_address().unwrap()).collect();
    for node in &nodes {
        for (id, address) in ids.iter().zip(&addresses) {
            if NodeId(*id) != node.node_id() {
                node.add_peer(NodeId(*id), *address);
            }
        }
    }
    nodes
}

/// A batch with one small message whose group id carries `sequence`.
pub fn batch(from: u64, to: u64, sequence: u64) -> Batch {
    let mut batch = Batch::new(NodeId(from), NodeId(to));
    let body = MessageBody::Heartbeat {
        commit: LogIndex(sequence),
        read_round: 0,
    };
    let message = Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body,
    };
    batch.messages.push(GroupMessage {
        group: GroupId(sequence),
        message,
    });
    batch
}

/// A batch holding one snapshot chunk of `data_bytes` bytes.
pub fn snapshot_batch(from: u64, to: u64, data_bytes: usize) -> Batch {
    let mut batch = Batch::new(NodeId(from), NodeId(to));
    let data: Vec<u8> = (0..data_bytes).map(|i| (i % 251) as u8).collect();
    let body = MessageBody::InstallSnapshot {
        meta: SnapshotMeta::default(),
        transfer: 1,
        offset: 0,
        data,
        done: true,
    };
    let message = Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body,
    };
    batch.messages.push(GroupMessage {
        group: GroupId(0),
        message,
    });
    batch
}

/// The sequence number `batch` carries.
pub fn sequence(batch: &Batch) -> u64 {
    batch.messages[0].group.0
}

/// The next batch, failing the test if none arrives within the guard.
pub async fn recv<T: Transport>(node: &T) -> Batch {
    tokio::time::timeout(GUARD, node.recv())
        .await
        .expect("no batch arrived in time")
        .unwrap()
}

/// Waits until `condition` holds, polling; fails the test after the guard.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resends `batch` every 100 ms until `receiver` gets a batch from its sender.
pub async fn send_until_received<S: Transport, R: Transport>(
    sender: &S,
    receiver: &R,
    batch: Batch,
) -> Batch {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch never arrived"
        );
        let _ = sender.send(batch.clone());
        if let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(100), receiver.recv()).await
        {
            return got;
        }
    }
}

/// A quinn client config with the given trust root, client identity (or none) and ALPN.
pub fn raw_client_config(
    root: &CertificateDer<'static>,
    identity: Option<&Identity>,
    alpn: &[u8],
) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.cert_chain.clone(), identity.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// Dials `target` (node `node` of the test cluster) with a raw quinn endpoint.
pub async fn raw_connect(
    config: quinn::ClientConfig,
    target: &QuicTransport,
) -> (
    quinn::Endpoint,
    Result<quinn::Connection, quinn::ConnectionError>,
) {
    let endpoint = quinn::Endpoint::client(loopback()).unwrap();
    let server_name = format!("node-{}.{}", target.node_id().0, cluster_id());
    let connecting = endpoint
        .connect_with(config, target.local_address().unwrap(), &server_name)
        .unwrap();
    let outcome = tokio::time::timeout(GUARD, connecting)
        .await
        .expect("handshake hung");
    (endpoint, outcome)
}

/// A raw, authenticated Raft connection from `identity` to `target`.
pub async fn raw_peer(
    ca: &ClusterCa,
    identity: &Identity,
    target: &QuicTransport,
) -> (quinn::Endpoint, quinn::Connection) {
    let config = raw_client_config(&ca.certificate(), Some(identity), ALPN_RAFT);
    let (endpoint, connection) = raw_connect(config, target).await;
    (endpoint, connection.unwrap())
}

/// Waits for `connection` to be closed and returns the reason.
pub async fn closed(connection: &quinn::Connection) -> quinn::ConnectionError {
    tokio::time::timeout(GUARD, connection.closed())
        .await
        .expect("connection was not closed")
}

/// Runs `future` on a fresh two-worker runtime (QUIC tests need real concurrency).
pub fn run<F: Future<Output = ()>>(future: F) {
    init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future);
}

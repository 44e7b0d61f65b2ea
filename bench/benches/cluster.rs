//! End to end: committed puts per second of a 3-node cluster in this process (real QUIC on
//! loopback, real log engine in a temporary directory) at 1, 16 and 256 requests in flight.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    reason = "a bench: a failed setup is a bug"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_node::server::{self, RunningNode};
use flotilla_node::{Client, ClientOptions, Endpoint, NodeConfig};
use flotilla_raft::NodeId;
use flotilla_storage::Command;
use flotilla_transport_quic::{ClusterId, write_dev_certs};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const CLUSTER: &str = "flotilla-bench";
const CLIENT: &str = "bench";
const VALUE_BYTES: usize = 256;
const NODE_COUNT: u64 = 3;

/// Three nodes and a client sharing one tokio runtime; each node's Raft loop has its thread.
struct Cluster {
    runtime: Runtime,
    nodes: Vec<RunningNode>,
    client: Client,
    next_key: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

fn free_udp_address() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn node_config(dir: &Path, endpoint: &Endpoint, initial: &[Endpoint]) -> NodeConfig {
    let mut config = NodeConfig::load(None).unwrap();
    config.cluster_id = CLUSTER.into();
    config.node_id = endpoint.node.0;
    config.listen = Some(endpoint.address);
    config.data_dir = Some(dir.join(format!("node-{}", endpoint.node.0)));
    config.tls_dir = dir.join("certs");
    config.initial_cluster = initial.iter().map(ToString::to_string).collect();
    config
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let ids: Vec<NodeId> = (1..=NODE_COUNT).map(NodeId).collect();
        let cluster = ClusterId::new(CLUSTER).unwrap();
        write_dev_certs(&dir.path().join("certs"), &cluster, &ids, &[CLIENT]).unwrap();
        let endpoints: Vec<Endpoint> = ids
            .iter()
            .map(|&node| Endpoint {
                node,
                address: free_udp_address(),
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let options = ClientOptions {
            endpoints: endpoints.iter().copied().map(Into::into).collect(),
            tls_dir: dir.path().join("certs"),
            cluster_id: CLUSTER.into(),
            name: CLIENT.into(),
            attempt_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            retry_pause: flotilla_node::client::RETRY_PAUSE,
            redial_pause: flotilla_node::client::REDIAL_PAUSE,
        };
        let (nodes, client) = runtime.block_on(async {
            let mut nodes = Vec::new();
            for endpoint in &endpoints {
                let config = node_config(dir.path(), endpoint, &endpoints);
                nodes.push(server::start(&config).await.unwrap());
            }
            let wait = Duration::from_secs(30);
            let client = flotilla_node::local::connect_when_ready(options, wait).await;
            (nodes, client.unwrap())
        });
        Self {
            runtime,
            nodes,
            client,
            next_key: Arc::new(AtomicU64::new(0)),
            _dir: dir,
        }
    }

    /// Commits `puts` puts with `in_flight` requests outstanding at a time; returns the time.
    fn put_many(&self, puts: u64, in_flight: u64) -> Duration {
        let started = Instant::now();
        self.runtime.block_on(async {
            let tasks: Vec<_> = (0..in_flight)
                .map(|worker| {
                    let share = puts / in_flight + u64::from(worker < puts % in_flight);
                    let client = self.client.clone();
                    let next_key = Arc::clone(&self.next_key);
                    tokio::spawn(put_sequentially(client, next_key, share))
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        started.elapsed()
    }

    fn stop(self) {
        self.runtime.block_on(async {
            for node in self.nodes {
                node.stop().await.unwrap();
            }
        });
    }
}

/// One request in flight: `count` puts of fresh keys, each waiting for its commit.
async fn put_sequentially(client: Client, next_key: Arc<AtomicU64>, count: u64) {
    for _ in 0..count {
        let index = next_key.fetch_add(1, Ordering::Relaxed);
        let command = Command::Put {
            key: flotilla_node::workload::key_of(index),
            value: vec![index as u8; VALUE_BYTES],
        };
        client.command(command).await.unwrap();
    }
}

fn committed_puts(c: &mut Criterion) {
    let cluster = Cluster::start();
    let mut group = c.benchmark_group("cluster_3_nodes_put_256B");
    group.throughput(Throughput::Elements(1));
    for in_flight in [1u64, 16, 256] {
        group.bench_function(format!("in_flight_{in_flight}"), |b| {
            b.iter_custom(|puts| cluster.put_many(puts, in_flight));
        });
    }
    group.finish();
    cluster.stop();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = committed_puts
}
criterion_main!(benches);

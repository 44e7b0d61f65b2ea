//! Every resource a client can make a node spend is bounded before it is spent, tried with real
//! `flotilla server` processes the way an attacker or a broken client would (issue 24): frame
//! headers that announce more than they send, a client that sends and never reads (beside one
//! that reads many large answers at once), a flood of connections under one name, a storm of
//! scans over large values, and a full storage quota.
//! Memory is read from `/proc` (resident set) while each attack holds what it can.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::api::{ApiError, Request, RequestFrame, ResponseFrame};
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_node::{Client, ClientError};
use flotilla_raft::NodeId;
use flotilla_storage::{Command, Response};
use flotilla_transport_quic::endpoint::CLOSE_REFUSED;
use flotilla_transport_quic::frame::{MAGIC, VERSION};
use flotilla_transport_quic::{ClientSession, TlsSetup, TransportConfig};
use std::net::SocketAddr;
use std::time::Duration;

mod common;
use common::{WAIT, binary, leader_of, runtime};

const MIB: usize = 1 << 20;
/// The test nodes' limits: small enough that each attack reaches them quickly.
const CONFIG: &str = "
[transport]
frame_read_timeout_ms = 3000
client_streams_max = 16
client_connections_per_identity_max = 6

[limits]
stream_answer_bytes_max = 16777216
storage_quota_bytes = 41943040
";
/// `limits.storage_quota_bytes` above.
const QUOTA_BYTES: usize = 40 * MIB;

/// A line of `/proc/<pid>/status` in bytes: `VmRSS` (resident now) or `VmHWM` (the peak).
fn memory(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the field in /proc/<pid>/status");
    kib << 10
}

/// Resets the peak resident memory of `pid` to what it holds now, and returns that.
fn reset_peak(pid: u32) -> usize {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    memory(pid, "VmRSS")
}

/// How far the resident memory of `pid` rose above `baseline` since `reset_peak`.
fn peak_above(pid: u32, baseline: usize) -> usize {
    memory(pid, "VmHWM").saturating_sub(baseline)
}

fn tls(cluster: &LocalCluster) -> TlsSetup {
    let options = cluster.client_options();
    flotilla_node::config::load_tls(&options.tls_dir, &options.cluster_id, "client-demo").unwrap()
}

async fn dial(tls: &TlsSetup, node: NodeId, address: SocketAddr) -> ClientSession {
    ClientSession::connect(tls, &TransportConfig::default(), node, address)
        .await
        .unwrap()
}

/// The application code the node closed `session` with, if it did within `wait`.
async fn closed_with(session: &ClientSession, wait: Duration) -> Option<u64> {
    match tokio::time::timeout(wait, session.connection().closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => Some(close.error_code.into_inner()),
        Ok(other) => panic!("the connection ended otherwise: {other}"),
        Err(_) => None,
    }
}

/// A frame header announcing `payload_bytes` of a client message.
fn header(payload_bytes: u32) -> Vec<u8> {
    let mut header = vec![MAGIC, VERSION, 2];
    header.extend_from_slice(&payload_bytes.to_be_bytes());
    header
}

/// Whether the node ended the stream (its answer side finished or was reset) within `wait`.
async fn stream_ended(recv: &mut quinn::RecvStream, wait: Duration) -> bool {
    tokio::time::timeout(wait, recv.read_to_end(1 << 10))
        .await
        .is_ok()
}

/// `nodes` real nodes with `groups` ranges, each reading `config`.
fn start(dir: &std::path::Path, config: &str, nodes: u64, groups: u64) -> LocalCluster {
    let file = dir.join("limits.toml");
    std::fs::write(&file, config).unwrap();
    LocalCluster::start_with_config(binary(), dir, nodes, groups, Some(file)).unwrap()
}

#[test]
fn a_node_bounds_what_clients_make_it_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(dir.path(), CONFIG, 3, 2);
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect_when_ready(cluster.client_options(), WAIT)
            .await
            .unwrap();
        let tls = tls(&cluster);
        let nodes: Vec<(NodeId, SocketAddr)> = client
            .nodes()
            .into_iter()
            .map(|(node, address)| (node, address.parse().unwrap()))
            .collect();
        let (node, address) = nodes[0];
        let pid = cluster.pid(node).unwrap();

        // 1. Headers that announce more than they send. Over the request limit (3 MiB), the
        // node ends the stream on the header; under it, it holds only what arrived, and gives
        // the stream up when the rest does not follow in time.
        let attacker = dial(&tls, node, address).await;
        let mut streams = Vec::new();
        for _ in 0..16 {
            let (mut send, recv) = attacker.connection().open_bi().await.unwrap();
            send.write_all(&header(8 << 20)).await.unwrap();
            send.write_all(&[0; 1000]).await.unwrap();
            streams.push((send, recv));
        }
        for (_, recv) in &mut streams {
            assert!(
                stream_ended(recv, Duration::from_millis(1500)).await,
                "an 8 MiB header (over the 3 MiB request limit) is refused at once, not after \
                 the payload's 3 s"
            );
        }
        drop(streams);
        let before = reset_peak(pid);
        let mut streams = Vec::new();
        for _ in 0..16 {
            let (mut send, recv) = attacker.connection().open_bi().await.unwrap();
            send.write_all(&header((3 << 20) - 64)).await.unwrap();
            send.write_all(&vec![0; 64 << 10]).await.unwrap();
            streams.push((send, recv));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = peak_above(pid, before);
        eprintln!(
            "16 streams announcing 3 MiB, sending 64 KiB: +{} KiB resident",
            held >> 10
        );
        assert!(
            held < 16 * MIB,
            "16 streams announcing 3 MiB and sending 64 KiB each made the node hold {held} bytes"
        );
        for (_, recv) in &mut streams {
            assert!(
                stream_ended(recv, Duration::from_secs(10)).await,
                "a frame whose payload stops coming is given up after frame_read_timeout_ms"
            );
        }
        drop(streams);
        attacker.close().await;

        // 2. Connections under one name: at most `client_connections_per_identity_max` (6,
        // counting the test client's own), the rest refused; closing gives places back.
        let mut sessions = Vec::new();
        for _ in 0..8 {
            sessions.push(dial(&tls, node, address).await);
        }
        let mut refused = 0;
        for session in &sessions {
            match closed_with(session, Duration::from_secs(2)).await {
                Some(code) if code == u64::from(CLOSE_REFUSED) => refused += 1,
                Some(code) => panic!("closed with code {code:#x}"),
                None => {}
            }
        }
        assert!(
            (2..=3).contains(&refused),
            "8 more connections of one name against a limit of 6: {refused} refused"
        );
        for session in sessions {
            session.close().await;
        }
        let again = dial(&tls, node, address).await;
        assert_eq!(
            closed_with(&again, Duration::from_secs(2)).await,
            None,
            "places are given back when connections close"
        );
        again.close().await;

        // 3. A client that pipelines 1,000 gets of a 1 MiB value and never reads: each request
        // read reserves its largest answer, so the node stops reading the stream once 16 MiB
        // is spoken for, and holds no more. The client is not cut off; one that reads many
        // large answers at once is throttled the same way and gets every one.
        let big = vec![7u8; MIB];
        let map = client.map();
        let range = map.lookup(b"big").clone();
        client
            .command(Command::Put {
                key: b"big".to_vec(),
                value: big.clone(),
            })
            .await
            .unwrap();
        let leader = leader_of(&client, range.group).await;
        let leader_address = nodes.iter().find(|(id, _)| *id == leader).unwrap().1;
        let leader_pid = cluster.pid(leader).unwrap();
        let before = reset_peak(leader_pid);
        let greedy = dial(&tls, leader, leader_address).await;
        let (mut send, _recv) = greedy
            .open_stream::<RequestFrame, ResponseFrame>()
            .await
            .unwrap();
        for id in 0..1000 {
            let request = Request::Kv {
                group: range.group,
                epoch: range.epoch,
                command: Command::Get {
                    key: b"big".to_vec(),
                },
            };
            send.send(&RequestFrame { id, request }).await.unwrap();
        }
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let client = client.clone();
            readers.spawn(async move { client.get(b"big").await.unwrap().map(|v| v.len()) });
        }
        while let Some(read) = readers.join_next().await {
            assert_eq!(
                read.unwrap(),
                Some(MIB),
                "a client that reads gets every answer"
            );
        }
        assert_eq!(
            closed_with(&greedy, Duration::from_secs(1)).await,
            None,
            "the client that does not read is not read, not cut off"
        );
        let peak = peak_above(leader_pid, before);
        eprintln!(
            "1,000 unread and 64 read 1 MiB gets: peak +{} KiB resident",
            peak >> 10
        );
        assert!(
            peak < 64 * MIB,
            "1,000 unread 1 MiB answers made the leader hold {peak} bytes (16 MiB per stream)"
        );
        greedy.close().await;
        assert_eq!(client.get(b"big").await.unwrap(), Some(big.clone()));

        // 4. A storm of scans over large values: each page copies what it returns, and the
        // loop keeps its heartbeats (no leader changes).
        for n in 0..24u8 {
            let mut key = range.keys.start.clone();
            key.extend_from_slice(format!("scan-{n:02}").as_bytes());
            client
                .command(Command::Put {
                    key,
                    value: big.clone(),
                })
                .await
                .unwrap();
        }
        let changes_before = leader_changes(&client).await;
        let before = reset_peak(leader_pid);
        let end = range.keys.end.clone();
        let mut storm = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let client = client.clone();
            let (start, end) = (range.keys.start.clone(), end.clone());
            storm.spawn(async move {
                for _ in 0..3 {
                    let scan = client
                        .scan_limited(&start, end.as_deref(), 1000)
                        .await
                        .unwrap();
                    let mut keys: Vec<_> = scan.pairs.iter().map(|(key, _)| key).collect();
                    let count = keys.len();
                    keys.dedup();
                    assert_eq!(keys.len(), count, "each key once");
                    assert!(count >= 24, "every large value scanned: {count}");
                    assert!(!scan.more);
                }
            });
        }
        while let Some(done) = storm.join_next().await {
            done.unwrap();
        }
        assert_eq!(
            leader_changes(&client).await,
            changes_before,
            "scans of 4 MiB pages never cost a leader its heartbeats"
        );
        let peak = peak_above(leader_pid, before);
        eprintln!("4 x 3 scans of 25 MiB: peak +{} KiB resident", peak >> 10);
        assert!(
            peak < 64 * MIB,
            "the scan storm made the leader hold {peak} bytes"
        );

        // 5. The storage quota: past it, puts are refused with a clear error; reads and
        // deletes still work, and a delete makes room again.
        let mut written = Vec::new();
        let refusal = loop {
            assert!(
                written.len() < QUOTA_BYTES / MIB,
                "the quota never refused a put"
            );
            let key = format!("quota-{:02}", written.len()).into_bytes();
            match client
                .command(Command::Put {
                    key: key.clone(),
                    value: big.clone(),
                })
                .await
            {
                Ok(_) => written.push(key),
                Err(error) => break error,
            }
        };
        assert!(
            matches!(
                refusal,
                ClientError::Refused(ApiError::QuotaExceeded { quota_bytes, .. })
                    if quota_bytes == QUOTA_BYTES as u64
            ),
            "{refusal}"
        );
        assert!(refusal.to_string().contains("limits.storage_quota_bytes"));
        assert_eq!(client.get(b"big").await.unwrap(), Some(big.clone()));
        for key in written.iter().take(2) {
            client
                .command(Command::Delete { key: key.clone() })
                .await
                .unwrap();
        }
        let outcome = client
            .command(Command::Put {
                key: b"after-delete".to_vec(),
                value: big.clone(),
            })
            .await
            .unwrap();
        assert!(matches!(outcome.response, Response::Written { .. }));
    });
    cluster.stop();
}

/// Leader changes every node has seen, summed.
async fn leader_changes(client: &Client) -> u64 {
    client
        .statuses()
        .await
        .iter()
        .map(|(_, status)| status.as_ref().unwrap().leader_changes)
        .sum()
}

/// Below its disk reserve a node refuses writes that add data, with a clear error, while reads
/// and deletes work: here the reserve (1 PiB) is more than any disk has free.
#[test]
fn below_the_disk_reserve_writes_are_refused_and_reads_and_deletes_work() {
    let dir = tempfile::tempdir().unwrap();
    let reserve = "[limits]\ndisk_reserve_bytes = 1125899906842624\n";
    let mut cluster = start(dir.path(), reserve, 1, 1);
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect_when_ready(cluster.client_options(), WAIT)
            .await
            .unwrap();
        let put = Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let refusal = client.command(put).await.unwrap_err();
        assert!(
            matches!(
                refusal,
                ClientError::Refused(ApiError::DiskReserve { reserve_bytes, .. })
                    if reserve_bytes == 1 << 50
            ),
            "{refusal}"
        );
        assert!(refusal.to_string().contains("limits.disk_reserve_bytes"));
        assert_eq!(client.get(b"k").await.unwrap(), None);
        let delete = Command::Delete { key: b"k".to_vec() };
        let outcome = client.command(delete).await.unwrap();
        assert!(matches!(
            outcome.response,
            Response::Written { previous: None }
        ));
    });
    cluster.stop();
}

//! End-to-end: the control plane on real `flotilla server` processes. Three nodes with 16
//! ranges take a put and get load; two nodes join and receive their share of replicas and leaders; one
//! is drained to zero replicas and removed; one is killed for good and its ranges are
//! re-replicated after `down_after_ms`; a node with a never-used id joins in its place; a
//! second node dies and the cluster takes writes and re-replicates again, while the id of a
//! removed node stays refused. Every acknowledged write is read back at the end.
//! The waits are bounded (a failure, not a measurement).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::Client;
use flotilla_node::api::{AdminCommand, PlacementStatus};
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_raft::NodeId;
use flotilla_shard_manager::placement::{NodeState, ReplicaRole};
use flotilla_storage::Command;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{WAIT, binary, eventually, runtime};

const RANGES: u64 = 16;

/// Small timeouts, so a dead node's replicas move within seconds.
const CONFIG: &str = "\
[placement]
down_after_ms = 4000
heartbeat_stale_ms = 1500
step_timeout_ms = 20000
";

/// Per key, the last acknowledged value and the values written after it whose outcome is
/// unknown (any of which a read may return).
type Acked = Arc<Mutex<BTreeMap<Vec<u8>, (Vec<u8>, Vec<Vec<u8>>)>>>;

/// Puts to 64 keys in turn until `stop`, recording each acknowledged value, and reads each
/// key back after its put was acknowledged: the read must see that value (this is the only
/// writer), unless it fails.
async fn keep_writing(client: Client, acked: Acked, stop: Arc<AtomicBool>) {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for key in 0..64u64 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let key = format!("key-{key:02}").into_bytes();
            let value = format!("v{round}").into_bytes();
            let put = Command::Put {
                key: key.clone(),
                value: value.clone(),
            };
            let done = client.command(put).await.is_ok();
            if done && let Ok(read) = client.get(&key).await {
                assert_eq!(
                    read.as_deref(),
                    Some(value.as_slice()),
                    "a read after an acknowledged put"
                );
            }
            let mut acked = acked.lock().unwrap();
            if done {
                acked.insert(key, (value, Vec::new()));
            } else if let Some((_, unknown)) = acked.get_mut(&key) {
                unknown.push(value);
            }
        }
        round += 1;
    }
}

/// The placement view once every range has three voters and no operator is in flight.
async fn settled(client: &Client, what: &str) -> PlacementStatus {
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = None;
    let mut last_error = None;
    loop {
        match client.placement().await {
            Ok(view) if is_whole(&view) => return view,
            Ok(view) => last = Some(view),
            Err(error) => last_error = Some(error),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; the last view: {}; the last error: {last_error:?}",
            describe(last.as_ref())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The view in short: each range's replicas and leader, and the operators in flight.
fn describe(view: Option<&PlacementStatus>) -> String {
    let Some(view) = view else {
        return "none (no meta leader answered)".to_string();
    };
    let ranges: Vec<String> = view
        .ranges
        .iter()
        .map(|range| {
            let replicas: Vec<String> = range
                .replicas
                .iter()
                .map(|replica| format!("{}{:?}", replica.node, replica.role))
                .collect();
            format!("r{} {replicas:?} led by {:?}", range.id.0, range.leader)
        })
        .collect();
    let operators: Vec<String> = view.operators.iter().map(ToString::to_string).collect();
    format!("ranges {ranges:?}; operators {operators:?}")
}

/// Every range has three voters and a leader, and no operator is in flight.
fn is_whole(view: &PlacementStatus) -> bool {
    view.operators.is_empty()
        && view.ranges.len() == RANGES as usize
        && view.ranges.iter().all(|range| {
            let voters = range
                .replicas
                .iter()
                .filter(|replica| replica.role == ReplicaRole::Voter)
                .count();
            voters == 3 && range.replicas.len() == 3 && range.leader.is_some()
        })
}

/// Replicas and leaders per node.
fn counts(view: &PlacementStatus) -> BTreeMap<NodeId, (usize, usize)> {
    let mut counts: BTreeMap<NodeId, (usize, usize)> = BTreeMap::new();
    for range in &view.ranges {
        for replica in &range.replicas {
            counts.entry(replica.node).or_default().0 += 1;
        }
        if let Some(leader) = range.leader {
            counts.entry(leader).or_default().1 += 1;
        }
    }
    counts
}

/// Waits until node `gone` holds no replica and each of `on` holds one of every range.
async fn rereplicated(client: &Client, gone: u64, on: &[u64]) {
    let what = format!("node {gone}'s ranges re-replicated on {on:?}");
    eventually(&what, || async {
        let view = settled(client, "a settled placement").await;
        let counts = counts(&view);
        (!counts.contains_key(&NodeId(gone))
            && on
                .iter()
                .all(|&node| counts.get(&NodeId(node)).map(|c| c.0) == Some(RANGES as usize)))
        .then_some(())
    })
    .await;
}

/// Every node of `nodes` holds within one of the mean number of replicas, and the leaders are
/// spread (each node leads within two of the others).
fn balanced(view: &PlacementStatus, nodes: &[u64]) -> bool {
    let counts = counts(view);
    let replicas: Vec<usize> = nodes
        .iter()
        .map(|&node| counts.get(&NodeId(node)).map_or(0, |c| c.0))
        .collect();
    let leaders: Vec<usize> = nodes
        .iter()
        .map(|&node| counts.get(&NodeId(node)).map_or(0, |c| c.1))
        .collect();
    let total: usize = replicas.iter().sum();
    let (low, high) = (total / nodes.len(), total.div_ceil(nodes.len()));
    let spread = |values: &[usize]| values.iter().max().unwrap() - values.iter().min().unwrap();
    total == 3 * RANGES as usize
        && replicas
            .iter()
            .all(|&count| count + 1 >= low && count <= high + 1)
        && spread(&leaders) <= 2
}

#[test]
fn nodes_join_drain_leave_and_are_replaced_without_losing_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("placement.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut cluster =
        LocalCluster::start_with_config(binary(), dir.path(), 3, RANGES, Some(config)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(cluster.client_options(), WAIT)
            .await
            .unwrap();
        let acked: Acked = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(keep_writing(
            client.clone(),
            Arc::clone(&acked),
            Arc::clone(&stop),
        ));
        settled(&client, "the initial placement").await;

        // Two nodes join and get their share of replicas and leaders.
        cluster.join(binary(), NodeId(4)).unwrap();
        cluster.join(binary(), NodeId(5)).unwrap();
        let view = eventually("nodes 4 and 5 balanced in", || async {
            let view = settled(&client, "a settled placement").await;
            balanced(&view, &[1, 2, 3, 4, 5]).then_some(view)
        })
        .await;
        assert_eq!(view.nodes.len(), 5, "{view:?}");

        // Node 2 is drained to zero replicas, then removed.
        client
            .admin(AdminCommand::SetNodeState {
                node: NodeId(2),
                state: NodeState::Draining,
            })
            .await
            .unwrap();
        eventually("node 2 drained", || async {
            let view = settled(&client, "a settled placement").await;
            (!counts(&view).contains_key(&NodeId(2))).then_some(())
        })
        .await;
        client
            .admin(AdminCommand::SetNodeState {
                node: NodeId(2),
                state: NodeState::Removed,
            })
            .await
            .unwrap();
        cluster.kill(NodeId(2));
        let refused = client
            .admin(AdminCommand::SetNodeState {
                node: NodeId(2),
                state: NodeState::Up,
            })
            .await;
        assert!(refused.is_err(), "a removed node came back: {refused:?}");

        // Node 3 dies for good: after down_after_ms its ranges are re-replicated on 1, 4, 5.
        cluster.kill(NodeId(3));
        rereplicated(&client, 3, &[1, 4, 5]).await;

        // A node with a new id joins in its place; the removed id stays refused.
        cluster.join(binary(), NodeId(6)).unwrap();
        eventually("node 6 balanced in", || async {
            let view = settled(&client, "a settled placement").await;
            balanced(&view, &[1, 4, 5, 6]).then_some(())
        })
        .await;

        // A second failure: node 4 dies too. Writes go on, and its ranges move to 1, 5, 6.
        cluster.kill(NodeId(4));
        client
            .command(Command::Put {
                key: b"after-the-second-failure".to_vec(),
                value: b"v".to_vec(),
            })
            .await
            .unwrap();
        rereplicated(&client, 4, &[1, 5, 6]).await;

        // Node 2's machine, wiped, cannot come back under its old id.
        std::fs::remove_dir_all(cluster.data_dir(NodeId(2))).unwrap();
        cluster.join(binary(), NodeId(2)).unwrap();
        let exit = cluster.wait_for_exit(NodeId(2), WAIT);
        assert!(exit.is_some_and(|status| !status.success()), "{exit:?}");
        let log = std::fs::read_to_string(cluster.log_file(NodeId(2))).unwrap();
        assert!(log.contains("was used before"), "{log}");

        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        let acked = acked.lock().unwrap().clone();
        assert_eq!(acked.len(), 64, "some key was never acknowledged");
        for (key, (value, unknown)) in acked {
            let read = client
                .get(&key)
                .await
                .unwrap()
                .expect("an acknowledged key");
            assert!(
                read == value || unknown.contains(&read),
                "key {}: read {}, acknowledged {}",
                String::from_utf8_lossy(&key),
                String::from_utf8_lossy(&read),
                String::from_utf8_lossy(&value)
            );
        }
    });
    cluster.stop();
}

/// A node restarted at another address (same id, same data directory) is recorded there, and
/// a lower-id peer, which dials it, reaches it: with node 1 down, ranges on nodes 2 and 3
/// commit only if node 2 finds node 3 at its new address.
#[test]
fn a_node_restarted_at_another_address_is_found_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(cluster.client_options(), WAIT)
            .await
            .unwrap();
        let put = |key: &'static str| Command::Put {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        };
        client.command(put("before")).await.unwrap();

        cluster.kill(NodeId(3));
        let moved = cluster.readdress(NodeId(3)).unwrap().to_string();
        cluster.restart(binary(), NodeId(3)).unwrap();
        // Node 2 must have applied the new address before node 1 goes: node 2 has the lower id,
        // so only it dials, and without node 1 the meta group cannot tell it any more.
        for node in [1, 2] {
            eventually("node 3's new address recorded", || async {
                let reply = client
                    .request(NodeId(node), flotilla_node::api::Request::RangeMap)
                    .await;
                match reply {
                    Ok(Ok(flotilla_node::api::Reply::RangeMap { directory, .. })) => {
                        (directory.address(NodeId(3)) == Some(moved.as_str())).then_some(())
                    }
                    _ => None,
                }
            })
            .await;
        }

        cluster.kill(NodeId(1));
        let keys = [
            "after-1", "after-2", "after-3", "after-4", "after-5", "after-6",
        ];
        for key in keys {
            client.command(put(key)).await.unwrap();
        }
        for key in keys.iter().chain(&["before"]) {
            let read = client.get(key.as_bytes()).await.unwrap();
            assert_eq!(read.as_deref(), Some(&b"v"[..]), "{key}");
        }
    });
    cluster.stop();
}

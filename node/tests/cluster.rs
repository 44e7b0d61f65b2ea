//! End-to-end: real `flotilla server` processes on loopback, driven by the client library and
//! the CLI. Waits are bounded (a failure, not a measurement): nothing here asserts on speed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::api::{ApiError, Reply, Request, ResponseFrame};
use flotilla_node::client::CallError;
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_node::{Client, ClientError, ClientOptions};
use flotilla_raft::{GroupId, NodeId};
use flotilla_storage::{Command, Response};
use std::time::Duration;

mod common;
use common::{WAIT, binary, eventually, leader_of, runtime};

/// A client of `cluster`, once every range has a leader.
async fn connect(cluster: &LocalCluster) -> Client {
    connect_when_ready(cluster.client_options(), WAIT)
        .await
        .unwrap()
}

/// One key inside each range of the map.
fn key_per_range(client: &Client) -> Vec<(GroupId, Vec<u8>)> {
    client
        .map()
        .ranges()
        .map(|range| {
            let mut key = range.keys.start.clone();
            key.extend_from_slice(b"-key");
            (range.group, key)
        })
        .collect()
}

async fn put(client: &Client, key: &[u8], value: &[u8]) {
    let command = Command::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    };
    let outcome = client.command(command).await.unwrap();
    assert!(
        matches!(outcome.response, Response::Written { .. }),
        "{outcome:?}"
    );
}

/// Per node, the leader changes it has seen and each group's term; `None` if a node did not
/// answer.
async fn leadership(client: &Client) -> Option<Vec<(NodeId, u64, Vec<(GroupId, u64)>)>> {
    let mut leadership = Vec::new();
    for (node, status) in client.statuses().await {
        let status = status.ok()?;
        let terms = status.groups.iter().map(|g| (g.group, g.term)).collect();
        leadership.push((node, status.leader_changes, terms));
    }
    Some(leadership)
}

/// Writes the writer task saw acknowledged (key, value), in order.
static ACKNOWLEDGED: std::sync::Mutex<Vec<(Vec<u8>, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());

/// Puts distinct keys until aborted, recording each acknowledged write.
async fn keep_writing(client: Client) {
    for n in 0u64.. {
        let key = flotilla_node::workload::key_of(1_000_000 + n);
        let value = n.to_be_bytes().to_vec();
        let command = Command::Put {
            key: key.clone(),
            value: value.clone(),
        };
        if client.command(command).await.is_ok() {
            ACKNOWLEDGED.lock().unwrap().push((key, value));
        }
    }
}

#[test]
fn a_cluster_serves_every_range_fails_over_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 16).unwrap();
    runtime().block_on(Box::pin(async {
        let client = connect(&cluster).await;
        let keys = key_per_range(&client);
        assert_eq!(keys.len(), 16);
        for (_, key) in &keys {
            put(&client, key, b"v1").await;
        }
        for (_, key) in &keys {
            assert_eq!(client.get(key).await.unwrap(), Some(b"v1".to_vec()));
        }
        let scan = client.scan_limited(b"", None, 100).await.unwrap();
        let scanned: Vec<Vec<u8>> = scan.pairs.iter().map(|(key, _)| key.clone()).collect();
        let mut expected: Vec<Vec<u8>> = keys.iter().map(|(_, key)| key.clone()).collect();
        expected.sort();
        assert_eq!(
            (scanned, scan.more),
            (expected.clone(), false),
            "one scan across all 16 ranges"
        );
        let limited = client.scan_limited(b"", None, 5).await.unwrap();
        assert_eq!((limited.pairs.len(), limited.more), (5, true));

        // A client that knows one endpoint learns the rest from the map and reaches every range.
        let mut options = cluster.client_options();
        options.endpoints.truncate(1);
        let single = Client::connect(options).await.unwrap();
        assert_eq!(single.nodes().len(), 3);
        for (_, key) in &keys {
            assert_eq!(single.get(key).await.unwrap(), Some(b"v1".to_vec()));
        }

        // Kill -9 the leader of group 1 while a writer keeps putting: every write acknowledged
        // before, during and after the crash stays readable.
        let writer = tokio::spawn(keep_writing(client.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let victim = leader_of(&client, GroupId(1)).await;
        cluster.kill(victim);
        let new_leader = leader_of(&client, GroupId(1)).await;
        for (_, key) in &keys {
            assert_eq!(client.get(key).await.unwrap(), Some(b"v1".to_vec()));
            put(&client, key, b"v2").await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.abort();
        let acknowledged = std::mem::take(&mut *ACKNOWLEDGED.lock().unwrap());
        assert!(
            acknowledged.len() > 10,
            "the writer got {} writes through",
            acknowledged.len()
        );
        for (key, value) in &acknowledged {
            assert_eq!(client.get(key).await.unwrap().as_ref(), Some(value));
        }

        // Restarted on its data directory, it catches up with what it missed.
        cluster.restart(binary(), victim).unwrap();
        eventually("the restarted node to catch up", || async {
            let status = client.status(victim).await.ok()?;
            let leader = client.status(new_leader).await.ok()?;
            let applied = |status: &flotilla_node::api::NodeStatus, group| {
                status
                    .groups
                    .iter()
                    .find(|g| g.group == group)
                    .map(|g| g.applied)
            };
            let caught_up = keys.iter().all(|(group, _)| {
                let (restarted, reference) = (applied(&status, *group), applied(&leader, *group));
                restarted.is_some() && reference.is_some() && restarted >= reference
            });
            caught_up.then_some(())
        })
        .await;
        *ACKNOWLEDGED.lock().unwrap() = acknowledged;

        // The restarted node's groups were led by others while it was down; only the placement
        // driver's leader balancing gives it its share again.
        eventually("the leaders spread again", || async {
            leaders_spread(&client, &client.map()).await.then_some(())
        })
        .await;

        // An idle cluster keeps its leaders. Regression: the transport dropped the empty
        // batches that are a node's liveness heartbeat, so once every group was quiescent each
        // node declared its peers down and their groups elected new leaders every ~0.6 s.
        // A real stall may cost one election; the churn never left two quiet seconds.
        eventually(
            "two idle seconds without an election, every peer live",
            || async {
                let before = leadership(&client).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let all_live = client.statuses().await.iter().all(|(_, status)| {
                    status
                        .as_ref()
                        .is_ok_and(|status| status.live_peers.len() == 2)
                });
                (all_live && leadership(&client).await? == before).then_some(())
            },
        )
        .await;
        // Every replica learned a leader at least once, and each time was counted.
        for (node, status) in client.statuses().await {
            let status = status.unwrap();
            assert!(
                status.leader_changes >= status.groups.len() as u64,
                "node {node}: {} leader changes for {} groups",
                status.leader_changes,
                status.groups.len()
            );
        }
    }));

    // Every node stopped and started again: the log brings back every acknowledged write.
    restart_every_node(&mut cluster);
    runtime().block_on(Box::pin(async {
        let client = connect(&cluster).await;
        let acknowledged = ACKNOWLEDGED.lock().unwrap().clone();
        for (key, value) in acknowledged {
            assert_eq!(client.get(&key).await.unwrap(), Some(value));
        }
        for (_, key) in key_per_range(&client) {
            assert_eq!(client.get(&key).await.unwrap(), Some(b"v2".to_vec()));
        }
    }));
}

/// `group`'s replica on every node that answers, as (node, status).
async fn replicas(
    client: &Client,
    group: GroupId,
) -> Vec<(NodeId, flotilla_node::api::GroupStatus)> {
    client
        .statuses()
        .await
        .into_iter()
        .filter_map(|(node, status)| {
            let replica = status.ok()?.groups.into_iter().find(|g| g.group == group)?;
            Some((node, replica))
        })
        .collect()
}

/// The replica on `node`, if it answered.
fn replica_on(
    replicas: &[(NodeId, flotilla_node::api::GroupStatus)],
    node: NodeId,
) -> Option<&flotilla_node::api::GroupStatus> {
    replicas
        .iter()
        .find(|(n, _)| *n == node)
        .map(|(_, replica)| replica)
}

/// Stops every node and starts each again on its data directory.
fn restart_every_node(cluster: &mut LocalCluster) {
    cluster.stop();
    for node in 1..=3 {
        cluster.restart(binary(), NodeId(node)).unwrap();
    }
}

/// Snapshots end to end, with one range and a snapshot every 50 entries: every replica
/// compacts its log; a follower that was down while the leader compacted past everything it
/// held catches up from a snapshot; and every node restarted on its snapshot and log serves
/// every acknowledged write.
#[test]
fn replicas_snapshot_catch_up_from_a_snapshot_and_restart_from_one() {
    snapshots_end_to_end("memory");
}

/// The same with every range's data in each node's disk engine.
#[test]
fn replicas_in_the_disk_engine_snapshot_catch_up_and_restart() {
    snapshots_end_to_end("disk");
}

fn snapshots_end_to_end(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let text = format!("[raft]\nsnapshot_entries = 50\n[storage]\nengine = \"{engine}\"\n");
    std::fs::write(&config, text).unwrap();
    let mut cluster =
        LocalCluster::start_with_config(binary(), dir.path(), 3, 1, Some(config)).unwrap();
    let keys: Vec<Vec<u8>> = (0..400).map(flotilla_node::workload::key_of).collect();
    let big = vec![b'b'; 256];
    runtime().block_on(Box::pin(async {
        let client = connect(&cluster).await;
        let group = client.map().ranges().next().unwrap().group;
        for key in &keys[..200] {
            put(&client, key, b"a").await;
        }
        eventually("every replica to snapshot", || async {
            let replicas = replicas(&client, group).await;
            let all = replicas.len() == 3 && replicas.iter().all(|(_, g)| g.snapshot_index >= 50);
            all.then_some(())
        })
        .await;

        // A follower goes down; the leader takes 200 more puts (of 256 bytes, so the log soon
        // outweighs the state) and compacts past the follower's last entry.
        let leader = leader_of(&client, group).await;
        let follower = NodeId(leader.0 % 3 + 1);
        let held = eventually("the follower to apply the first puts", || async {
            let replicas = replicas(&client, group).await;
            let (follower_applied, leader_applied) = (
                replica_on(&replicas, follower)?.applied,
                replica_on(&replicas, leader)?.applied,
            );
            (follower_applied == leader_applied).then_some(follower_applied)
        })
        .await;
        cluster.kill(follower);
        for key in &keys[200..] {
            put(&client, key, &big).await;
        }
        let leader = leader_of(&client, group).await;
        eventually("the leader to compact past the follower's log", || async {
            let replicas = replicas(&client, group).await;
            (replica_on(&replicas, leader)?.snapshot_index > held).then_some(())
        })
        .await;
        // In memory a compaction writes the range's state to a snapshot file; in the disk
        // engine it only notes that the engine holds it.
        let range_snapshot = format!("snap-{:020}-", group.0);
        let snapshot_files = std::fs::read_dir(cluster.data_dir(leader).join("log"))
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(&range_snapshot)
            })
            .count();
        assert_eq!(snapshot_files, usize::from(engine == "memory"), "{engine}");

        // Restarted, it cannot be sent the entries it missed: only a snapshot brings it level.
        cluster.restart(binary(), follower).unwrap();
        eventually("the restarted follower to catch up", || async {
            let replicas = replicas(&client, group).await;
            let caught_up =
                replica_on(&replicas, follower)?.applied >= replica_on(&replicas, leader)?.applied;
            caught_up.then_some(())
        })
        .await;
    }));

    // The data lives where the configuration says: in the disk engine's folder, or nowhere.
    for node in 1..=3 {
        let folder = cluster.data_dir(NodeId(node)).join("engine");
        let engine_bytes = flotilla_node::local::folder_bytes(&folder);
        match engine {
            "disk" => assert!(
                engine_bytes > 200 * 256,
                "node {node}'s engine holds {engine_bytes} bytes"
            ),
            _ => assert_eq!(engine_bytes, 0, "node {node} has an engine folder"),
        }
    }
    restart_every_node(&mut cluster);
    runtime().block_on(Box::pin(async {
        let client = connect(&cluster).await;
        for (n, key) in keys.iter().enumerate() {
            let expected = if n < 200 { b"a".to_vec() } else { big.clone() };
            assert_eq!(client.get(key).await.unwrap(), Some(expected), "key {n}");
        }
    }));
}

#[test]
fn nodes_refuse_with_a_leader_hint_a_stale_epoch_and_a_routing_error() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    runtime().block_on(Box::pin(async {
        let client = connect(&cluster).await;
        let map = client.map();
        let range = map.ranges().next().unwrap().clone();
        let leader = leader_of(&client, range.group).await;
        let follower = range
            .replicas
            .iter()
            .copied()
            .find(|&node| node != leader)
            .unwrap();
        // A key of the first range (it starts at the empty key; the second at 0x40 0x00).
        let key = b"\x00k".to_vec();
        assert!(range.keys.contains(&key));
        let get = |group, epoch| Request::Kv {
            group,
            epoch,
            command: Command::Get { key: key.clone() },
        };
        // Followers may not have heard the leader yet right after the election: ask until one has.
        let refusal = eventually("a follower that knows the leader", || async {
            match client
                .request(follower, get(range.group, range.epoch))
                .await
            {
                Ok(Err(
                    error @ ApiError::NotLeader {
                        leader: Some(_), ..
                    },
                )) => Some(error),
                _ => None,
            }
        })
        .await;
        let leader_address = client
            .nodes()
            .into_iter()
            .find(|(node, _)| *node == leader)
            .unwrap()
            .1;
        assert_eq!(
            refusal,
            ApiError::NotLeader {
                group: range.group,
                leader: Some(leader),
                address: Some(leader_address.to_string())
            }
        );
        // A request sent to a group that does not hold its key is refused with the range that
        // does, as the node knows it: the client takes it in without asking for the map.
        let holder = Err(ApiError::StaleEpoch {
            ranges: vec![range.clone()],
        });
        let unknown = client
            .request(leader, get(GroupId(999), range.epoch))
            .await
            .unwrap();
        assert_eq!(unknown, holder);
        let other = map.ranges().nth(1).unwrap();
        let wrong = client
            .request(leader, get(other.group, other.epoch))
            .await
            .unwrap();
        assert_eq!(wrong, holder);
        // The map read linearizably: the meta group's leader answers with the map; every other
        // node refuses, naming that leader. Asked of every node until one round shows it (a
        // follower may not have heard the leader yet, and the leadership may move).
        let nodes: Vec<NodeId> = client.nodes().into_iter().map(|(node, _)| node).collect();
        eventually(
            "one node answering the map read, the others naming it",
            || async {
                let mut answered = Vec::new();
                let mut named = Vec::new();
                for &node in &nodes {
                    match client.request(node, Request::RangeMapRead).await.ok()? {
                        Ok(Reply::RangeMap { map: read, .. }) => {
                            assert!(read.epoch() >= map.epoch(), "a map older than the client's");
                            answered.push(node);
                        }
                        Err(ApiError::NotLeader { group, leader, .. }) => {
                            assert_eq!(group, GroupId(0));
                            named.push(leader);
                        }
                        other => panic!("node {node:?} answered a map read with {other:?}"),
                    }
                }
                // Never two at once: a read every node answered would never settle here.
                let [meta_leader] = answered[..] else {
                    return None;
                };
                named
                    .iter()
                    .all(|&leader| leader == Some(meta_leader))
                    .then_some(())
            },
        )
        .await;
        let status = client.request(leader, Request::Status).await.unwrap();
        assert!(matches!(status, Ok(Reply::Status(_))));

        // A frame that holds no request closes that stream; the node goes on serving.
        let options = cluster.client_options();
        let tls =
            flotilla_node::config::load_tls(&options.tls_dir, &options.cluster_id, "client-demo")
                .unwrap();
        let address = client
            .nodes()
            .into_iter()
            .find(|(node, _)| *node == leader)
            .unwrap()
            .1
            .parse()
            .unwrap();
        let config = flotilla_transport_quic::TransportConfig::default();
        let raw = flotilla_transport_quic::ClientSession::connect(&tls, &config, leader, address)
            .await
            .unwrap();
        let (mut send, mut recv) = raw.open_stream::<Vec<u8>, ResponseFrame>().await.unwrap();
        // As a request frame, its id is 16 and its request's variant a varint that never ends.
        send.send(&vec![0xFF; 16]).await.unwrap();
        send.finish();
        let closed = recv.recv().await;
        assert!(
            matches!(closed, Ok(None)),
            "the node answers garbage by ending the stream: {closed:?}"
        );
        assert!(matches!(
            client.request(leader, Request::Status).await,
            Ok(Ok(Reply::Status(_)))
        ));

        // Leadership spreads: the placement driver moves leaders until every node leads within
        // one of the mean (1 or 2 of the four groups), which random elections alone give only
        // sometimes.
        eventually("the leaders spread", || async {
            leaders_spread(&client, &map).await.then_some(())
        })
        .await;
    }));
}

/// Whether every node of the directory leads within one of the mean number of ranges.
async fn leaders_spread(client: &Client, map: &flotilla_shard_manager::RangeMap) -> bool {
    let nodes: Vec<NodeId> = client.nodes().into_iter().map(|(node, _)| node).collect();
    let mut led: std::collections::BTreeMap<NodeId, usize> =
        nodes.iter().map(|&node| (node, 0)).collect();
    for range in map.ranges() {
        *led.entry(leader_of(client, range.group).await).or_default() += 1;
    }
    let mean = map.ranges().count() as f64 / nodes.len() as f64;
    led.values()
        .all(|&count| (count as f64 - mean).abs() <= 1.0)
}

fn flotilla(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    flotilla_bytes(args, stdin.unwrap_or_default().as_bytes())
}

fn flotilla_bytes(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let output = common::run_flotilla(args, stdin);
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

fn client_flags(options: &ClientOptions) -> Vec<String> {
    let endpoints: Vec<String> = options.endpoints.iter().map(ToString::to_string).collect();
    vec![
        "--endpoints".into(),
        endpoints.join(","),
        "--tls-dir".into(),
        options.tls_dir.display().to_string(),
        "--name".into(),
        options.name.clone(),
        "--cluster-id".into(),
        options.cluster_id.clone(),
    ]
}

#[test]
fn the_cli_and_shell_work_and_bad_input_gets_a_clear_error() {
    let (ok, _, stderr) = flotilla(&["server", "--no-such-flag"], None);
    assert!(!ok && stderr.contains("--no-such-flag"), "{stderr}");
    let (ok, _, stderr) = flotilla(&["server", "--groups", "0", "--check"], None);
    assert!(!ok && stderr.contains("ranges.groups"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[raft]\ntick_ms = \"fast\"\n").unwrap();
    let (ok, _, stderr) = flotilla(
        &["server", "--config", config.to_str().unwrap(), "--check"],
        None,
    );
    // The error names the line of the file, not of the defaults merged under it.
    let expected = format!("{} line 2, `raft.tick_ms`", config.display());
    assert!(!ok && stderr.contains(&expected), "{stderr}");
    // `--check` prints the effective configuration as TOML, the flags applied.
    let (ok, stdout, stderr) = flotilla(&["server", "--groups", "7", "--check"], None);
    assert!(ok, "{stderr}");
    let effective: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(
        effective["ranges"]["groups"].as_integer(),
        Some(7),
        "{stdout}"
    );

    let cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    let options = cluster.client_options();
    let runtime = runtime();
    let client = runtime
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();
    let flags = client_flags(&options);
    let run_bytes = |args: &[&str], stdin: &[u8]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        flotilla_bytes(&all, stdin)
    };
    let run =
        |args: &[&str], stdin: Option<&str>| run_bytes(args, stdin.unwrap_or_default().as_bytes());
    let (ok, stdout, stderr) = run(&["put", "greeting", "hello"], None);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("previous"), "{stdout}");
    let (ok, stdout, _) = run(&["get", "greeting"], None);
    assert!(ok && stdout.trim() == "hello", "{stdout}");

    // Issue 24: a scan of u32::MAX pairs wrapped to a scan of none; a line that is not UTF-8
    // ended the shell.
    let script =
        b"put a 1\nget a\ncas a 1 2\ncas a 1 3\nscan - - 10\ndelete a\nget a\nfrobnicate a\n\
        scan - - 4294967295\nget \xff\xfe\nget greeting\n";
    let (ok, stdout, stderr) = run_bytes(&["shell"], script);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 11, "{stdout}");
    let everything = lines[8]["result"]["pairs"].as_array().unwrap();
    assert!(
        everything.iter().any(|pair| pair[0] == "greeting"),
        "{stdout}"
    );
    assert_eq!(lines[8]["result"]["more"], false, "{stdout}");
    assert_eq!(lines[9]["ok"], false, "{stdout}");
    assert!(
        lines[9]["error"].as_str().unwrap().contains("not UTF-8"),
        "{stdout}"
    );
    assert_eq!(lines[10]["result"], "hello", "the shell goes on: {stdout}");
    assert_eq!(lines[1]["result"], "1");
    assert_eq!(lines[2]["result"]["swapped"], true);
    assert_eq!(lines[3]["result"]["swapped"], false);
    assert_eq!(lines[3]["result"]["current"], "2");
    let pairs = lines[4]["result"]["pairs"].as_array().unwrap();
    assert!(
        pairs.iter().any(|pair| pair[0] == "a" && pair[1] == "2"),
        "{stdout}"
    );
    assert!(pairs.iter().any(|pair| pair[0] == "greeting"), "{stdout}");
    assert_eq!(lines[6]["result"], serde_json::Value::Null);
    assert_eq!(
        (lines[6]["ok"].clone(), lines[7]["ok"].clone()),
        (true.into(), false.into())
    );
    assert!(lines[7]["error"].as_str().unwrap().contains("cannot parse"));

    let long_key = "k".repeat(5000);
    let (ok, _, stderr) = run(&["put", &long_key, "v"], None);
    assert!(
        !ok && stderr.contains("key of 5000 bytes is over the limit of 4096 bytes"),
        "{stderr}"
    );
    let (ok, stdout, _) = run(&["get", "greeting"], None);
    assert!(
        ok && stdout.trim() == "hello",
        "the cluster keeps serving: {stdout}"
    );

    // Issue 24: a request too large for a frame was "retried" six times without being sent,
    // then reported as possibly applied. It is a final error, and nothing was applied.
    let huge = Command::Put {
        key: b"huge".to_vec(),
        value: vec![b'v'; 17 << 20],
    };
    let error = runtime.block_on(client.command(huge)).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::NotSent(CallError::TooLarge {
                frame_bytes_max: 3_145_728,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(
            "larger than the largest request a node reads (3145728 bytes): it was not sent"
        ),
        "{error}"
    );
    // Absent: `get` prints so and exits 3 (not 0), which `ok` reads as a failure.
    let (ok, stdout, _) = run(&["get", "huge"], None);
    assert!(!ok && stdout.trim() == "(absent)", "{stdout}");

    let (ok, stdout, stderr) = run(&["status", "--json"], None);
    assert!(ok, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3);

    let unreachable = [
        "get",
        "k",
        "--endpoints",
        "1@127.0.0.1:9",
        "--tls-dir",
        options.tls_dir.to_str().unwrap(),
        "--name",
        &options.name,
        "--cluster-id",
        &options.cluster_id,
        "--attempt-timeout-ms",
        "500",
    ];
    let (ok, _, stderr) = flotilla(&unreachable, None);
    assert!(!ok && stderr.contains("no endpoint reachable"), "{stderr}");
    drop(cluster);
}

#[test]
fn the_load_generator_starts_a_cluster_and_writes_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let args = [
        "bench",
        "--clients",
        "1,4",
        "--seconds",
        "1",
        "--groups",
        "2",
        "--report-every",
        "0.5",
        // Read by the nodes from the bench's configuration file; no range gets this busy.
        "--split-load-rps",
        "1000000",
        "--json",
        json.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = flotilla(&args, None);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("split_load_rps 1000000"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, clients) in runs.iter().zip([1, 4]) {
        assert_eq!(run["clients"], clients);
        assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
        assert!(run["entries_per_fsync"].as_f64().unwrap() > 0.0, "{run}");
        assert!(
            run["latency_us"]["p99"].as_u64().unwrap()
                >= run["latency_us"]["p50"].as_u64().unwrap()
        );
        // The intervals add up to the run, and each saw the two ranges.
        let intervals = run["intervals"].as_array().unwrap();
        assert!(intervals.len() >= 2, "{run}");
        let ops: u64 = intervals.iter().map(|i| i["ops"].as_u64().unwrap()).sum();
        assert_eq!(ops, run["ops"].as_u64().unwrap(), "{run}");
        assert!(intervals.iter().all(|i| i["ranges"] == 2), "{run}");
    }
    let (ok, _, stderr) = flotilla(&["bench", "--clients", "0"], None);
    assert!(!ok && stderr.contains("clients"), "{stderr}");
}

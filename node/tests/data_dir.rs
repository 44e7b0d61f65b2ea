//! A node never forgets what it acknowledged, with real `flotilla server` processes (issue 16):
//! a flipped byte in synced log data is refused, not cut as a torn write, and every acknowledged
//! write stays readable from the other replicas (one damaged node of three, two of five); a
//! second process on a live data directory is refused while the first keeps serving; another
//! cluster's or node's directory is refused; a process with a copied node certificate and an
//! empty directory is refused, by itself when a peer knows the id and by the peers otherwise.
//! Every test starts a fresh cluster from empty directories, so fresh clusters still bootstrap.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::local::{LocalCluster, leaderless_groups};
use flotilla_node::workload::key_of;
use flotilla_node::{Client, ClientOptions};
use flotilla_raft::NodeId;
use flotilla_storage::{Command, DataDir, DirIdentity, Response};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{WAIT, binary, eventually, runtime};

/// A client of a cluster in which some nodes may be down for good, once every range has a
/// leader among the nodes that answer.
async fn connect(options: ClientOptions) -> Client {
    let client = eventually("a node to answer", || async {
        Client::connect(options.clone()).await.ok()
    })
    .await;
    eventually("a leader for every range", || async {
        (leaderless_groups(&client).await == 0).then_some(())
    })
    .await;
    client
}

fn value_of(n: u64) -> Vec<u8> {
    format!("value-{n}").into_bytes()
}

/// Puts keys `range`; each must be acknowledged. (A put retried after a lost attempt may be
/// reported ambiguous: the same value on the same key, which changes nothing here.)
async fn put_keys(client: &Client, range: std::ops::Range<u64>) {
    for n in range {
        let command = Command::Put {
            key: key_of(n),
            value: value_of(n),
        };
        let outcome = client.command(command).await.unwrap();
        assert!(
            matches!(outcome.response, Response::Written { .. }),
            "{outcome:?}"
        );
    }
}

/// Every key of `range` reads back its value (linearizable gets).
async fn all_readable(client: &Client, range: std::ops::Range<u64>) {
    for n in range {
        let found = client.get(&key_of(n)).await.unwrap();
        assert_eq!(found, Some(value_of(n)), "acknowledged key {n} was lost");
    }
}

/// The newest segment of `node`'s log.
fn newest_segment(cluster: &LocalCluster, node: NodeId) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(cluster.data_dir(node).join("log"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

/// The batches of a segment as `docs/data/wal-format.md` draws them: (offset, body bytes).
fn batches(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut offset = 32;
    while offset + 32 <= bytes.len() {
        match &bytes[offset..offset + 4] {
            b"FBAT" => {
                let body = u32::from_le_bytes(bytes[offset + 16..offset + 20].try_into().unwrap());
                let body = body as usize;
                found.push((offset, body));
                let filler = (32 - body % 32) % 32;
                offset += 32 + body + if filler < 2 { filler + 32 } else { filler };
            }
            b"FSYN" => offset += 32,
            _ => break,
        }
    }
    found
}

/// Flips one byte inside a record of the batch halfway through `node`'s newest segment: data
/// the node synced (and acknowledged) long before it was killed, well within 16 MiB of the end,
/// which the old rule cut as a torn write.
fn flip_a_synced_byte(cluster: &LocalCluster, node: NodeId) {
    let path = newest_segment(cluster, node);
    let mut bytes = std::fs::read(&path).unwrap();
    let batches = batches(&bytes);
    assert!(
        batches.len() >= 8,
        "too few batches to damage the middle one"
    );
    let (offset, body) = batches[batches.len() / 2];
    bytes[offset + 32 + body / 2] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
}

fn log_says(path: &Path, words: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.contains(words))
}

/// Node `node` exits on its own with an error whose log names `words`.
fn refuses_to_start(cluster: &mut LocalCluster, node: NodeId, words: &str) {
    let status = cluster.wait_for_exit(node, WAIT);
    let status = status.unwrap_or_else(|| panic!("node {node} started; it should refuse"));
    assert!(!status.success(), "node {node} exited cleanly");
    let log = cluster.log_file(node);
    assert!(
        log_says(&log, words),
        "node {node}'s log lacks `{words}`:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn a_flipped_synced_byte_on_one_node_of_three_is_refused_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    let (one, two, three) = (NodeId(1), NodeId(2), NodeId(3));
    runtime().block_on(Box::pin(async {
        let client = connect(cluster.client_options()).await;
        put_keys(&client, 0..60).await;
        cluster.kill(two);
        put_keys(&client, 60..100).await;
    }));
    cluster.kill(three);
    flip_a_synced_byte(&cluster, three);
    cluster.kill(one);
    // Node 2 lacks keys 60-99; with node 3's damage cut off it would elect a leader without them.
    cluster.restart(binary(), two).unwrap();
    cluster.restart(binary(), three).unwrap();
    refuses_to_start(&mut cluster, three, "is corrupt at offset");
    cluster.restart(binary(), one).unwrap();
    runtime().block_on(Box::pin(async {
        let client = connect(cluster.client_options()).await;
        all_readable(&client, 0..100).await;
    }));
}

#[test]
fn a_flipped_synced_byte_on_two_nodes_of_five_is_refused_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("five-replicas.toml");
    std::fs::write(&config, "[ranges]\nreplicas = 5\n").unwrap();
    let mut cluster =
        LocalCluster::start_with_config(binary(), dir.path(), 5, 4, Some(config)).unwrap();
    let nodes: Vec<NodeId> = (1..=5).map(NodeId).collect();
    runtime().block_on(Box::pin(async {
        let client = connect(cluster.client_options()).await;
        put_keys(&client, 0..60).await;
        cluster.kill(nodes[3]);
        cluster.kill(nodes[4]);
        put_keys(&client, 60..100).await;
    }));
    for &damaged in &nodes[1..3] {
        cluster.kill(damaged);
        flip_a_synced_byte(&cluster, damaged);
    }
    cluster.kill(nodes[0]);
    for &node in &nodes[1..] {
        cluster.restart(binary(), node).unwrap();
    }
    for &damaged in &nodes[1..3] {
        refuses_to_start(&mut cluster, damaged, "is corrupt at offset");
    }
    cluster.restart(binary(), nodes[0]).unwrap();
    runtime().block_on(Box::pin(async {
        let client = connect(cluster.client_options()).await;
        all_readable(&client, 0..100).await;
    }));
}

#[test]
fn a_second_process_on_a_live_directory_is_refused_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    let one = NodeId(1);
    runtime().block_on(Box::pin(async {
        let client = connect(cluster.client_options()).await;
        put_keys(&client, 0..10).await;
        let log = dir.path().join("second.log");
        let mut second = cluster
            .spawn_impostor(binary(), one, &cluster.data_dir(one), &log)
            .unwrap();
        let status = tokio::task::spawn_blocking(move || second.wait().unwrap())
            .await
            .unwrap();
        assert!(!status.success());
        assert!(
            log_says(&log, "is in use by another process (pid"),
            "{log:?}"
        );
        put_keys(&client, 10..20).await;
        all_readable(&client, 0..20).await;
        let status = client.status(one).await.unwrap();
        assert_eq!(status.incarnation, 1, "node 1 was never restarted");
    }));
}

/// A bootstrapped data directory of another cluster or node, made as `flotilla server` would.
fn bootstrapped_elsewhere(path: &Path, cluster_id: &str, node_id: u64) {
    let directory = DataDir::lock(path).unwrap();
    let identity = DirIdentity {
        cluster_id: cluster_id.to_owned(),
        node_id,
        directory_id: 0x5eed,
        incarnation: 0,
    };
    directory.begin_bootstrap(&identity).unwrap();
    directory.finish_bootstrap(&identity).unwrap();
}

#[test]
fn another_clusters_or_nodes_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    bootstrapped_elsewhere(&dir.path().join("node-2"), "another-cluster", 2);
    bootstrapped_elsewhere(&dir.path().join("node-3"), "flotilla-demo", 4);
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    refuses_to_start(
        &mut cluster,
        NodeId(2),
        "belongs to cluster `another-cluster`, not `flotilla-demo`",
    );
    refuses_to_start(&mut cluster, NodeId(3), "belongs to node 4, not node 3");
}

#[test]
fn a_copied_node_certificate_with_an_empty_directory_cannot_vote() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    let (one, two, three) = (NodeId(1), NodeId(2), NodeId(3));
    runtime().block_on(Box::pin(async {
        let client = connect(cluster.client_options()).await;
        put_keys(&client, 0..20).await;
        // Every node takes up every node's data directory from the meta group, also those of
        // peers it never met itself.
        for node in [one, two, three] {
            eventually("every data directory registered", || async {
                let status = client.status(node).await.ok()?;
                (status.registered_directories == [one, two, three]).then_some(())
            })
            .await;
        }
    }));
    cluster.kill(two);
    // Node 2's certificate on an empty directory, while its peers are up: they know node 2, and
    // the impostor refuses to bootstrap.
    let empty = dir.path().join("impostor-2");
    let log = dir.path().join("impostor.log");
    let mut impostor = cluster.spawn_impostor(binary(), two, &empty, &log).unwrap();
    let status = impostor.wait().unwrap();
    assert!(!status.success());
    assert!(
        log_says(&log, "node 2 is already a member of this cluster"),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // With the peers down it cannot ask, bootstraps, and is refused by every peer once they are
    // back: they pinned node 2's real data directory.
    cluster.kill(one);
    cluster.kill(three);
    std::fs::remove_dir_all(&empty).unwrap();
    let mut impostor = cluster.spawn_impostor(binary(), two, &empty, &log).unwrap();
    let bootstrapped = std::time::Instant::now();
    while !log_says(&log, "bootstrapped a new data directory") {
        assert!(bootstrapped.elapsed() < WAIT, "the impostor never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.restart(binary(), one).unwrap();
    cluster.restart(binary(), three).unwrap();
    runtime().block_on(Box::pin(async {
        let client = connect(cluster.client_options()).await;
        all_readable(&client, 0..20).await;
        for node in [one, three] {
            let refused = eventually("the impostor's batches refused", || async {
                let status = client.status(node).await.ok()?;
                (status.batches_refused > 0).then_some(status)
            })
            .await;
            let leads_with_two = refused.groups.iter().any(|group| group.leader == Some(two));
            assert!(
                !leads_with_two,
                "node {node} follows the impostor: {refused:?}"
            );
        }
    }));
    assert!(log_says(
        &cluster.log_file(one),
        "a node that lost its data must join under a new id"
    ));
    let _ = impostor.kill();
    let _ = impostor.wait();
}

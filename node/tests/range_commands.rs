//! End-to-end: manual operators on real `flotilla server` processes. Four nodes with two
//! ranges (six replicas, so one move keeps every node within one of the mean and no rule has
//! a reason to undo it): a replica moves to the node without one through the admin request, a
//! leadership moves with `flotilla range transfer-leader`, `flotilla range list --json` shows
//! the result, and a request that does not fit is refused with its reason and exit code 1.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::Client;
use flotilla_node::ClientOptions;
use flotilla_node::api::{AdminCommand, PlacementStatus};
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_raft::NodeId;
use flotilla_shard_manager::RangeId;
use flotilla_shard_manager::placement::{ManualRequest, RangeView, ReplicaRole};
use std::collections::BTreeMap;

mod common;
use common::{WAIT, binary, eventually, runtime};

const RANGES: u64 = 2;

/// Every range has three voters, no learner and a leader, and nothing is in flight.
async fn settled(client: &Client) -> PlacementStatus {
    eventually("a settled placement", || async {
        let view = client.placement().await.ok()?;
        let whole = view.operators.is_empty()
            && view.ranges.len() == RANGES as usize
            && view.ranges.iter().all(|range| {
                range.leader.is_some()
                    && range.replicas.len() == 3
                    && range
                        .replicas
                        .iter()
                        .all(|replica| replica.role == ReplicaRole::Voter)
            });
        whole.then_some(view)
    })
    .await
}

fn replicas_per_node(view: &PlacementStatus) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = (1..=4).map(|id| (NodeId(id), 0)).collect();
    for replica in view.ranges.iter().flat_map(|range| &range.replicas) {
        *counts.entry(replica.node).or_default() += 1;
    }
    counts
}

/// A move that keeps the spread within one: a range's voter on a node holding the most
/// replicas, to a node holding the fewest and none of that range.
fn a_balanced_move(view: &PlacementStatus) -> (RangeId, NodeId, NodeId) {
    let counts = replicas_per_node(view);
    let most = counts.values().max().copied().unwrap();
    let fewest = counts.values().min().copied().unwrap();
    view.ranges
        .iter()
        .find_map(|range| {
            let from = range.voter_nodes().find(|node| counts[node] == most)?;
            let to = counts
                .iter()
                .find(|(node, count)| **count == fewest && range.role_of(**node).is_none())?;
            Some((range.id, from, *to.0))
        })
        .expect("two ranges of three replicas on four nodes leave a balanced move")
}

fn range(view: &PlacementStatus, id: RangeId) -> &RangeView {
    view.ranges.iter().find(|range| range.id == id).unwrap()
}

/// Runs `flotilla range ACTION...` against the cluster, the client flags after the action.
fn flotilla(args: &[&str], options: &ClientOptions) -> (bool, String, String) {
    let endpoints: Vec<String> = options.endpoints.iter().map(ToString::to_string).collect();
    let output = std::process::Command::new(binary())
        .args(args)
        .args(["--endpoints", &endpoints.join(",")])
        .args(["--tls-dir", options.tls_dir.to_str().unwrap()])
        .args(["--name", &options.name, "--cluster-id", &options.cluster_id])
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[test]
fn a_replica_and_a_leader_move_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 4, RANGES).unwrap();
    let options = cluster.client_options();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(options.clone(), WAIT).await.unwrap();
        let view = settled(&client).await;

        // A replica moves through the admin request and the operator runs to its end.
        let (moved, from, to) = a_balanced_move(&view);
        client
            .admin(AdminCommand::Manual(ManualRequest::MoveReplica {
                range: moved,
                from,
                to,
            }))
            .await
            .unwrap();
        let view = eventually("the move done", || async {
            let view = settled(&client).await;
            let range = range(&view, moved);
            (range.is_voter(to) && range.role_of(from).is_none()).then_some(view)
        })
        .await;

        // A leadership moves through the CLI, to a voter that leads nothing.
        let target = range(&view, moved)
            .voter_nodes()
            .find(|&node| view.ranges.iter().all(|range| range.leader != Some(node)))
            .unwrap();
        let id = format!("r{}", moved.0);
        let to_flag = target.0.to_string();
        let (ok, stdout, stderr) = flotilla(
            &["range", "transfer-leader", &id, "--to", &to_flag],
            &options,
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("transferring leadership"), "{stdout}");
        eventually("the new leader", || async {
            let view = settled(&client).await;
            (range(&view, moved).leader == Some(target)).then_some(())
        })
        .await;

        // `range list --json` shows what the view holds.
        let (ok, stdout, stderr) = flotilla(&["range", "list", "--json"], &options);
        assert!(ok, "{stderr}");
        let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["range"] == moved.0)
            .unwrap();
        assert_eq!(row["leader"], target.0, "{stdout}");
        let nodes: Vec<u64> = row["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|replica| replica["node"].as_u64().unwrap())
            .collect();
        assert!(
            nodes.contains(&to.0) && !nodes.contains(&from.0),
            "{stdout}"
        );

        let (ok, stdout, stderr) = flotilla(&["range", "list"], &options);
        assert!(ok, "{stderr}");
        let line = stdout.lines().find(|line| line.starts_with(&id)).unwrap();
        assert!(line.contains(&format!("{}*", target.0)), "{stdout}");
        let (_, stdout, stderr) = flotilla(&["status"], &options);
        assert!(
            stdout.contains("node states: n1 up, n2 up, n3 up, n4 up"),
            "{stdout}{stderr}"
        );
        assert!(stdout.contains("moves in flight: none"), "{stdout}");

        // A move onto a node that already holds the range is refused, with the reason.
        let holder = range(&view, moved)
            .voter_nodes()
            .find(|&node| node != to)
            .unwrap();
        let (ok, _, stderr) = flotilla(
            &[
                "range",
                "move",
                &id,
                "--from",
                &to.0.to_string(),
                "--to",
                &holder.0.to_string(),
            ],
            &options,
        );
        assert!(!ok, "a move onto a holder was accepted");
        assert!(
            stderr.contains("already holds a replica of range"),
            "{stderr}"
        );
        let (ok, _, stderr) = flotilla(
            &["range", "move", "x7", "--from", "1", "--to", "2"],
            &options,
        );
        assert!(!ok && stderr.contains("is not a range id"), "{stderr}");
    });
    cluster.stop();
}

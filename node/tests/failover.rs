//! Fail-over on five real nodes (issue 25). Ranges of three replicas on five `flotilla server`
//! processes, with clients writing to every range. Round after round, two followers of a range
//! are cut from each other with real packet drops (nftables, on the nodes' UDP ports: a sender
//! sees no error), the cut heals, and then the range's leader is killed with SIGKILL or cut off
//! from every other node. Every range must serve a write again within 2 s of the loss, the
//! issue's acceptance bound. Before the fix, the healed pair's QUIC connection, its congestion
//! window full of what it sent during the cut, only probed at doubling intervals: after a cut
//! of 5-10 s the next probe fell past the 10 s idle timeout, and the range stayed leaderless
//! until then.
//!
//! Needs root and `nft` (`apt-get install nftables`; `.ci/run` installs it). The rules live in
//! a table of this test's own, removed when it ends.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::api::{PeerState, Reply, Request};
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_node::{Client, ClientError, ClientOptions};
use flotilla_raft::{GroupId, NodeId};
use flotilla_storage::Command;
use std::collections::BTreeMap;
use std::process::Command as Process;
use std::time::{Duration, Instant};

mod common;
use common::{WAIT, binary, eventually, runtime};

/// The bound: every range serves again this long after its leader is lost.
const SERVES_AGAIN_WITHIN: Duration = Duration::from_secs(2);

/// How each round loses the leader.
#[derive(Clone, Copy, Debug)]
enum Loss {
    Kill,
    Isolation,
}

/// One round: which range, how long its followers are cut, how long after the heal the leader
/// is lost, and how.
struct Round {
    group: GroupId,
    cut: Duration,
    wait: Duration,
    loss: Loss,
}

/// Packet drops between nodes, in an nftables table of this process's own.
struct Firewall {
    table: String,
}

impl Firewall {
    /// A table with an input chain that drops nothing yet.
    fn new() -> Self {
        let table = format!("flotilla_failover_{}", std::process::id());
        nft(&["add", "table", "inet", &table]).unwrap_or_else(|error| {
            panic!(
                "this test drops packets with nftables and needs root and `nft` \
                 (apt-get install nftables; .ci/run installs it): {error}"
            )
        });
        let chain = "{ type filter hook input priority 0; policy accept; }";
        nft(&["add", "chain", "inet", &table, "input", chain]).unwrap();
        Self { table }
    }

    /// Drops every datagram between the nodes on ports `a` and `b`, both ways.
    fn cut(&self, a: u16, b: u16) {
        for (source, target) in [(a, b), (b, a)] {
            let (source, target) = (source.to_string(), target.to_string());
            let rule = ["udp", "sport", &source, "udp", "dport", &target, "drop"];
            let mut args = vec!["add", "rule", "inet", &self.table, "input"];
            args.extend(rule);
            nft(&args).unwrap();
        }
    }

    /// Drops everything between the node on `port` and every node on `others`.
    fn isolate(&self, port: u16, others: &[u16]) {
        for &other in others {
            self.cut(port, other);
        }
    }

    /// Removes every drop.
    fn heal(&self) {
        nft(&["flush", "chain", "inet", &self.table, "input"]).unwrap();
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.table]);
    }
}

fn nft(args: &[&str]) -> Result<(), String> {
    let output = Process::new("nft")
        .args(args)
        .output()
        .map_err(|error| format!("cannot run nft: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Client options whose attempts give up fast, so a probe measures the range, not the client's
/// wait on a dead or isolated node.
fn probe_options(cluster: &LocalCluster) -> ClientOptions {
    ClientOptions {
        attempt_timeout: Duration::from_millis(300),
        deadline: Duration::from_secs(1),
        retry_pause: flotilla_node::client::RETRY_PAUSE,
        redial_pause: flotilla_node::client::REDIAL_PAUSE,
        ..cluster.client_options()
    }
}

/// The node that leads `group`, once exactly one does (no stale leader around).
async fn leader_of(client: &Client, group: GroupId) -> NodeId {
    eventually("one leader", || async {
        let statuses = client.statuses().await;
        let leaders: Vec<NodeId> = statuses
            .iter()
            .filter_map(|(node, status)| {
                let status = status.as_ref().ok()?;
                let leads = status
                    .groups
                    .iter()
                    .any(|g| g.group == group && g.role == "Leader");
                leads.then_some(*node)
            })
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

/// How `node` sees `peer`, if it answers.
async fn peer_state(client: &Client, node: NodeId, peer: NodeId) -> Option<PeerState> {
    let status = client.status(node).await.ok()?;
    status
        .peers
        .iter()
        .find(|p| p.node == peer)
        .map(|p| p.state)
}

/// Sends `request` to `node` until it is served (not refused, not timed out); returns how long
/// after `since` it was.
async fn served_by(client: Client, node: NodeId, request: Request, since: Instant) -> Duration {
    loop {
        if let Ok(Ok(Reply::Kv(_))) = client.request(node, request.clone()).await {
            return since.elapsed();
        }
        assert!(since.elapsed() < WAIT, "the range never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// For every range, how long after `since` one of its replicas served a write. Every node is
/// asked directly, so this measures the range and not the client's routing (which waits out an
/// attempt timeout on a dead leader, and may follow a stale hint back to it); every node and
/// not the map's replicas, since the placement driver may have moved one since the map was
/// read (a node without the range refuses, one that leads it serves).
async fn every_range_served(client: &Client, since: Instant) -> Vec<(GroupId, Duration)> {
    let map = client.map();
    let nodes: Vec<NodeId> = client.nodes().into_iter().map(|(node, _)| node).collect();
    let mut served = Vec::new();
    for range in map.ranges() {
        // The range's first key, then a zero byte: inside the range whatever its bounds.
        let mut key = range.keys.start.clone();
        key.extend_from_slice(b"\x00probe");
        let request = Request::Kv {
            group: range.group,
            epoch: range.epoch,
            command: Command::Put {
                key,
                value: b"probe".to_vec(),
            },
        };
        let (sender, first) = tokio::sync::mpsc::channel(nodes.len());
        let probes: Vec<_> = nodes
            .iter()
            .map(|&node| {
                let (client, request, sender) = (client.clone(), request.clone(), sender.clone());
                tokio::spawn(async move {
                    let took = served_by(client, node, request, since).await;
                    let _ = sender.send(took).await;
                })
            })
            .collect();
        served.push((range.group, probes, first));
    }
    let mut took = Vec::new();
    for (group, probes, mut first) in served {
        took.push((group, first.recv().await.expect("a replica served")));
        for probe in probes {
            probe.abort();
        }
    }
    took
}

/// Puts distinct keys in a loop until aborted (the clients on every node of the issue).
async fn keep_writing(client: Client, worker: u64) {
    for n in 0u64.. {
        let put = Command::Put {
            key: flotilla_node::workload::key_of((worker << 32) | n),
            value: vec![7; 256],
        };
        let _ = client.command(put).await;
    }
}

/// Every node answers, every node hears all its peers, the placement driver has no move or
/// leader transfer in flight (it balances the fresh cluster, and moves replicas while the first
/// round runs otherwise), the client's map is the meta group's, and every range has exactly
/// one leader.
async fn settled(client: &Client) {
    eventually("no placement operator in flight", || async {
        let view = client.placement().await.ok()?;
        view.operators.is_empty().then_some(())
    })
    .await;
    client.refresh_map().await.unwrap();
    eventually("a settled cluster", || async {
        let statuses = client.statuses().await;
        let all_live = statuses.iter().all(|(_, status)| {
            status.as_ref().is_ok_and(|status| {
                status
                    .peers
                    .iter()
                    .all(|peer| peer.state == PeerState::Live)
            })
        });
        all_live.then_some(())
    })
    .await;
    for range in client.map().ranges() {
        leader_of(client, range.group).await;
    }
}

/// Cuts the leader's two followers apart, heals, loses the leader; returns how long each range
/// took to serve again.
async fn run_round(
    cluster: &mut LocalCluster,
    firewall: &Firewall,
    client: &Client,
    round: &Round,
) -> Vec<(GroupId, Duration)> {
    let ports: BTreeMap<NodeId, u16> = cluster
        .endpoints
        .iter()
        .map(|endpoint| (endpoint.node, endpoint.address.port()))
        .collect();
    let map = client.map();
    let range = map.ranges().find(|r| r.group == round.group).unwrap();
    let leader = leader_of(client, round.group).await;
    let followers: Vec<NodeId> = range
        .replicas
        .iter()
        .copied()
        .filter(|&n| n != leader)
        .collect();
    let (a, b) = (followers[0], followers[1]);
    firewall.cut(ports[&a], ports[&b]);
    tokio::time::sleep(round.cut).await;
    // Given up as silent, every dial since unanswered: each sees the other as unreachable.
    assert_eq!(peer_state(client, a, b).await, Some(PeerState::Unreachable));
    assert_eq!(peer_state(client, b, a).await, Some(PeerState::Unreachable));
    firewall.heal();
    tokio::time::sleep(round.wait).await;
    let lost = Instant::now();
    match round.loss {
        Loss::Kill => cluster.kill(leader),
        Loss::Isolation => {
            let others: Vec<u16> = ports
                .iter()
                .filter(|&(&n, _)| n != leader)
                .map(|(_, &p)| p)
                .collect();
            firewall.isolate(ports[&leader], &others);
        }
    }
    let served = every_range_served(client, lost).await;
    match round.loss {
        Loss::Kill => cluster.restart(binary(), leader).unwrap(),
        Loss::Isolation => firewall.heal(),
    }
    println!(
        "{:?} of n{} ({}), leader of the range of n{}-n{} cut {:?} and healed {:?} before: \
         every range served within {:?}",
        round.loss,
        leader.0,
        round.group,
        a.0,
        b.0,
        round.cut,
        round.wait,
        served.iter().map(|(_, took)| *took).max().unwrap()
    );
    settled(client).await;
    served
}

#[test]
fn every_range_serves_within_2_s_when_a_healed_follower_pairs_leader_is_lost() {
    let firewall = Firewall::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 5, 8).unwrap();
    runtime().block_on(Box::pin(async {
        let client = connect_when_ready(probe_options(&cluster), WAIT)
            .await
            .unwrap();
        settled(&client).await;
        let writers: Vec<_> = (0..4)
            .map(|worker| tokio::spawn(keep_writing(client.clone(), worker)))
            .collect();
        // Cuts of 7.5 s heal between the stalled connection's last probe before the idle
        // timeout and its next after it (the worst case before the fix); 6 s and 1 s is the
        // issue's own trial.
        let rounds = [
            (1, 7_500, 300, Loss::Kill),
            (4, 7_500, 300, Loss::Isolation),
            (6, 6_000, 1_000, Loss::Kill),
            (3, 3_000, 0, Loss::Isolation),
        ];
        let mut slow = Vec::new();
        for (group, cut_ms, wait_ms, loss) in rounds {
            let round = Round {
                group: GroupId(group),
                cut: Duration::from_millis(cut_ms),
                wait: Duration::from_millis(wait_ms),
                loss,
            };
            let served = run_round(&mut cluster, &firewall, &client, &round).await;
            slow.extend(
                served
                    .into_iter()
                    .filter(|(_, took)| *took > SERVES_AGAIN_WITHIN)
                    .map(|(g, took)| format!("{g} after {took:?} in the round on g{group}")),
            );
        }
        for writer in writers {
            writer.abort();
        }
        assert!(
            slow.is_empty(),
            "ranges that served again too late: {slow:?}"
        );
    }));
}

/// A request that gives up on a range whose group cannot elect says so, with the range.
#[test]
fn a_request_to_a_range_without_a_leader_gives_up_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 2).unwrap();
    runtime().block_on(Box::pin(async {
        // An attempt timeout below the transport's dial answer timeout (250 ms) must work too.
        let options = ClientOptions {
            attempt_timeout: Duration::from_millis(200),
            deadline: Duration::from_secs(3),
            retry_pause: flotilla_node::client::RETRY_PAUSE,
            redial_pause: flotilla_node::client::REDIAL_PAUSE,
            ..cluster.client_options()
        };
        let client = connect_when_ready(options, WAIT).await.unwrap();
        let range = client.map().ranges().next().unwrap().clone();
        cluster.kill(NodeId(2));
        cluster.kill(NodeId(3));
        let error = client.get(&range.keys.start).await.unwrap_err();
        println!("{error}");
        let ClientError::NoLeader { range: keys, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(keys, &range.keys);
        assert!(
            error.to_string().starts_with("no leader for range ["),
            "{error}"
        );
    }));
}

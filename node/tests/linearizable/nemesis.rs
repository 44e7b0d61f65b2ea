//! The nemesis: kill -9 and restart, a leader frozen with SIGSTOP, a leader cut off from its
//! peers by nftables. Each step returns the operations completed when it happened, so the test
//! can show the cluster served in every window.

use crate::common::{binary, eventually};
use crate::history::Recorder;
use flotilla_node::Client;
use flotilla_node::local::LocalCluster;
use flotilla_raft::NodeId;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Marks of the nemesis: what happened, and how many operations had completed by then.
pub(crate) type Marks = Vec<(String, usize)>;

/// How long the frozen leader stays frozen: a long GC pause or a stalled VM (issue 17 saw
/// abandoned attempts applied late after freezes of 3-5 s).
const PAUSE: Duration = Duration::from_secs(4);
/// How long a leader stays cut off from its peers.
const PARTITION: Duration = Duration::from_secs(4);
/// How long the clients go on after a frozen or cut-off leader is back, while it takes its
/// preferred ranges back and late copies of attempts sent to it arrive.
const AFTER: Duration = Duration::from_secs(4);

/// The node other than `spare` that leads the most groups now (the lowest such id if no node
/// answers).
async fn busiest_leader(client: &Client, spare: Option<NodeId>) -> NodeId {
    let mut best = (
        0,
        if spare == Some(NodeId(1)) {
            NodeId(2)
        } else {
            NodeId(1)
        },
    );
    for (node, status) in client.statuses().await {
        if Some(node) == spare {
            continue;
        }
        if let Ok(status) = status {
            let leading = status.groups.iter().filter(|g| g.role == "Leader").count();
            if leading > best.0 {
                best = (leading, node);
            }
        }
    }
    best.1
}

/// Waits (at most `WAIT`) until `node` has applied, in every group it hosts, what the most
/// advanced replica of that group had applied when the wait began.
async fn caught_up(client: &Client, node: NodeId) {
    let mut target: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, status) in client.statuses().await {
        for group in status.map(|status| status.groups).unwrap_or_default() {
            let applied = target.entry(group.group.0).or_default();
            *applied = (*applied).max(group.applied);
        }
    }
    let what = format!("node {} to catch up", node.0);
    eventually(&what, || async {
        let status = client.status(node).await.ok()?;
        let behind = status
            .groups
            .iter()
            .any(|group| group.applied < target.get(&group.group.0).copied().unwrap_or(0));
        (!behind && !status.groups.is_empty()).then_some(())
    })
    .await;
}

/// Two crashes (SIGKILL) of different nodes, each of the node leading the most groups at the
/// time, each restarted 2.5 s later. The restarted node gets its preferred groups back, so the
/// second crash hits another node; with three nodes, one of the two has the higher id of a
/// pair, so its peer dialed it and must notice the crash to dial again.
pub(crate) async fn crash_twice(
    cluster: &mut LocalCluster,
    client: &Client,
    recorder: &Recorder,
) -> Marks {
    let mut marks = Vec::new();
    let mut previous = None;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        let victim = busiest_leader(client, previous).await;
        cluster.kill(victim);
        marks.push((format!("killed node {}", victim.0), recorder.completed()));
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        cluster.restart(binary(), victim).unwrap();
        marks.push((format!("restarted node {}", victim.0), recorder.completed()));
        previous = Some(victim);
        // The next crash must leave a majority that holds every group's log: wait until the
        // restarted node has caught up with what the groups had applied by now.
        caught_up(client, victim).await;
    }
    marks
}

/// The node leading the most groups freezes (SIGSTOP) for `PAUSE` and runs again, while the
/// clients go on writing the same keys. The others elect new leaders meanwhile; the frozen one
/// wakes up believing it still leads, with requests of its clients in flight (a stale read or
/// a write acknowledged by a deposed leader would show), then takes its preferred ranges back.
pub(crate) async fn pause_once(
    cluster: &LocalCluster,
    client: &Client,
    recorder: &Recorder,
) -> Marks {
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let victim = busiest_leader(client, None).await;
    assert!(cluster.pause(victim), "node {} not paused", victim.0);
    let paused = (format!("paused node {}", victim.0), recorder.completed());
    tokio::time::sleep(PAUSE).await;
    assert!(cluster.resume(victim), "node {} not resumed", victim.0);
    let resumed = (format!("resumed node {}", victim.0), recorder.completed());
    tokio::time::sleep(AFTER).await;
    caught_up(client, victim).await;
    vec![paused, resumed]
}

/// The node leading the most groups is cut off from its peers for `PARTITION` (its clients
/// still reach it), then healed, while the clients go on. Skipped, with a line saying why, where
/// nftables cannot be used (not root, or no `nft`).
pub(crate) async fn partition_once(
    cluster: &LocalCluster,
    client: &Client,
    recorder: &Recorder,
) -> Marks {
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let victim = busiest_leader(client, None).await;
    let port = |node: NodeId| {
        let endpoint = cluster.endpoints.iter().find(|e| e.node == node);
        endpoint.expect("a node of the cluster").address.port()
    };
    let others: Vec<u16> = (cluster.endpoints.iter())
        .filter(|endpoint| endpoint.node != victim)
        .map(|endpoint| endpoint.address.port())
        .collect();
    let partition = match Partition::isolate(port(victim), &others) {
        Ok(partition) => partition,
        Err(reason) => {
            println!("partition skipped: {reason}");
            return Vec::new();
        }
    };
    let cut = (format!("cut off node {}", victim.0), recorder.completed());
    tokio::time::sleep(PARTITION).await;
    drop(partition);
    let healed = (format!("healed node {}", victim.0), recorder.completed());
    tokio::time::sleep(AFTER).await;
    caught_up(client, victim).await;
    vec![cut, healed]
}

/// A partition among servers on loopback, as TESTING.md describes: nodes send peer traffic from
/// their listening UDP port, so an nftables table of this test's own drops, on the input hook,
/// the datagrams between one node's port and the others' (a sender sees no error, as on a real
/// network). Clients use other ports and still reach every node. Removed when dropped.
struct Partition {
    table: String,
}

impl Partition {
    fn isolate(victim: u16, others: &[u16]) -> Result<Self, String> {
        let table = format!("flotilla_test_{}_{victim}", std::process::id());
        let rules: String = others
            .iter()
            .map(|other| {
                format!(
                    "udp sport {victim} udp dport {other} drop\n\
                     udp sport {other} udp dport {victim} drop\n"
                )
            })
            .collect();
        let script = format!(
            "table inet {table} {{\nchain input {{\ntype filter hook input priority 0; policy accept;\n{rules}}}\n}}\n"
        );
        nft(&["-f", "-"], Some(&script))?;
        Ok(Self { table })
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Err(error) = nft(&["delete", "table", "inet", &self.table], None) {
            eprintln!("could not remove nftables table {}: {error}", self.table);
        }
    }
}

/// Runs `nft` with `args` and `input` on its standard input.
fn nft(args: &[&str], input: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("nft cannot run: {error}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "nft {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

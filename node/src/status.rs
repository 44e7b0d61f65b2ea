//! `flotilla status`: every node's status and the range map, as tables or one JSON document,
//! and whether the cluster is well (every node answers, every range has a leader) for the exit
//! code scripts and cron rely on: 0 well, 1 the command failed (no node answered), 2 unwell.

use crate::api::{NodeStatus, PeerState, PlacementStatus};
use crate::client::{Client, ClientError};
use crate::encoding::{Encoded, Encoding};
use crate::ranges::OperatorRow;
use crate::shell::ShellError;
use flotilla_raft::NodeId;
use flotilla_shard_manager::placement::Operator;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// Each node's status, or why it did not give it.
pub type Statuses = [(NodeId, Result<NodeStatus, ClientError>)];

/// What is not well: nodes that did not answer, ranges no answering node knows a leader of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unhealthy {
    /// Nodes that did not answer.
    pub nodes_down: Vec<u64>,
    /// Groups of the ranges without a known leader.
    pub ranges_without_leader: Vec<u64>,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ids: &[u64]| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.nodes_down.is_empty() {
            parts.push(format!("node(s) {} did not answer", list(&self.nodes_down)));
        }
        if !self.ranges_without_leader.is_empty() {
            parts.push(format!(
                "the range(s) of group(s) {} have no leader",
                list(&self.ranges_without_leader)
            ));
        }
        write!(f, "the cluster is not well: {}", parts.join("; "))
    }
}

/// One range as the answering nodes see it: the map's descriptor, and the replica status with
/// the highest term and applied index among them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RangeRow {
    /// The first key, in the chosen `--encoding`.
    pub start: Encoded,
    /// The end key (exclusive); none: the end of the key space.
    pub end: Option<Encoded>,
    /// The range's Raft group.
    pub group: u64,
    /// The leader the freshest replica knows.
    pub leader: Option<u64>,
    /// That replica's term.
    pub term: u64,
    /// That replica's applied index.
    pub applied: u64,
    /// Key and value bytes that replica holds.
    pub stored_bytes: u64,
    /// The nodes holding a replica.
    pub replicas: Vec<u64>,
}

/// Every range of the client's map, with what the answering nodes say of it; keys in
/// `encoding`.
#[must_use]
pub fn range_rows(client: &Client, statuses: &Statuses, encoding: Encoding) -> Vec<RangeRow> {
    let map = client.map();
    map.ranges()
        .map(|range| {
            let best = statuses
                .iter()
                .filter_map(|(_, status)| status.as_ref().ok())
                .flat_map(|status| status.groups.iter())
                .filter(|group| group.group == range.group)
                .max_by_key(|group| (group.term, group.applied));
            RangeRow {
                start: encoding.of(&range.keys.start),
                end: range.keys.end.as_deref().map(|end| encoding.of(end)),
                group: range.group.0,
                leader: best.and_then(|group| group.leader).map(|leader| leader.0),
                term: best.map_or(0, |group| group.term),
                applied: best.map_or(0, |group| group.applied),
                stored_bytes: best.map_or(0, |group| group.stored_bytes),
                replicas: range.replicas.iter().map(|node| node.0).collect(),
            }
        })
        .collect()
}

/// What is not well in `statuses` and `ranges`, if anything.
#[must_use]
pub fn unhealthy(statuses: &Statuses, ranges: &[RangeRow]) -> Option<Unhealthy> {
    let found = Unhealthy {
        nodes_down: statuses
            .iter()
            .filter(|(_, status)| status.is_err())
            .map(|(node, _)| node.0)
            .collect(),
        ranges_without_leader: ranges
            .iter()
            .filter(|range| range.leader.is_none())
            .map(|range| range.group)
            .collect(),
    };
    (found != Unhealthy::default()).then_some(found)
}

/// Prints every node's status and the range map: tables, or one JSON document; range keys in
/// `encoding`.
///
/// # Errors
/// stdout failed; no node answered (`NoNodeAnswered`); or some node did not answer or some
/// range has no leader (`Unhealthy`, after printing).
pub async fn print_status(
    client: &Client,
    as_json: bool,
    encoding: Encoding,
) -> Result<(), ShellError> {
    let statuses = client.statuses().await;
    let ranges = range_rows(client, &statuses, encoding);
    let problems = unhealthy(&statuses, &ranges);
    // The node states and the moves are the meta leader's; without one the rest still shows.
    let placement = client.placement().await;
    if as_json {
        let mut document = status_json(client, &statuses, &ranges, problems.as_ref());
        if let Value::Object(fields) = &mut document {
            fields.insert("placement".into(), placement_json(&placement));
        }
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", tables_of(client, &statuses, &ranges, encoding));
        print!("{}", placement_text(&placement));
    }
    if statuses.iter().all(|(_, status)| status.is_err()) {
        return Err(ShellError::NoNodeAnswered);
    }
    match problems {
        Some(problems) => Err(ShellError::Unhealthy(problems)),
        None => Ok(()),
    }
}

/// The JSON document: every node's status (with its address) or its error, the range map with
/// each range's leader, term, applied index and size, and what is not well.
fn status_json(
    client: &Client,
    statuses: &Statuses,
    ranges: &[RangeRow],
    problems: Option<&Unhealthy>,
) -> Value {
    let addresses: BTreeMap<_, _> = client.nodes().into_iter().collect();
    let nodes: Vec<Value> = statuses
        .iter()
        .map(|(node, status)| {
            let address = addresses.get(node).map(ToString::to_string);
            match status {
                Ok(status) => {
                    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
                    if let Value::Object(fields) = &mut value {
                        fields.insert("address".into(), json!(address));
                        fields.insert("state".into(), json!("up"));
                    }
                    value
                }
                Err(error) => json!({
                    "node": node.0,
                    "address": address,
                    "state": "down",
                    "error": error.to_string(),
                }),
            }
        })
        .collect();
    json!({
        "healthy": problems.is_none(),
        "problems": problems,
        "epoch": client.map().epoch(),
        "nodes": nodes,
        "ranges": ranges,
    })
}

/// The meta leader's node states and operators in flight, or why they are unknown.
fn placement_json(placement: &Result<PlacementStatus, ClientError>) -> Value {
    match placement {
        Ok(placement) => {
            let nodes: Vec<Value> = placement
                .nodes
                .iter()
                .map(|node| json!({"node": node.id.0, "state": node.state.to_string()}))
                .collect();
            let moves: Vec<OperatorRow> = placement.operators.iter().map(OperatorRow::of).collect();
            json!({"nodes": nodes, "moves_in_flight": moves})
        }
        Err(error) => json!({"error": error.to_string()}),
    }
}

/// The node states and the moves in flight, as text.
fn placement_text(placement: &Result<PlacementStatus, ClientError>) -> String {
    let placement = match placement {
        Ok(placement) => placement,
        Err(error) => return format!("\nplacement: unknown ({error})\n"),
    };
    let states: Vec<String> = placement
        .nodes
        .iter()
        .map(|node| format!("{} {}", node.id, node.state))
        .collect();
    format!(
        "\nnode states: {}\n{}",
        states.join(", "),
        moves_in_flight(&placement.operators)
    )
}

/// `moves in flight: none`, or one line per operator under that heading.
#[must_use]
pub fn moves_in_flight(operators: &[Operator]) -> String {
    if operators.is_empty() {
        return "moves in flight: none\n".to_string();
    }
    let mut out = String::from("moves in flight:\n");
    for operator in operators {
        out += &format!("  {}\n", OperatorRow::of(operator).summary());
    }
    out
}

/// The node table, the peer table and the range table, as text; range keys in `encoding`.
#[must_use]
pub fn status_tables(client: &Client, statuses: &Statuses, encoding: Encoding) -> String {
    let ranges = range_rows(client, statuses, encoding);
    tables_of(client, statuses, &ranges, encoding)
}

/// `status_tables` for rows already made.
fn tables_of(
    client: &Client,
    statuses: &Statuses,
    ranges: &[RangeRow],
    encoding: Encoding,
) -> String {
    let mut out = node_table(client, statuses);
    out += &peer_table(statuses);
    out += &range_table(ranges, encoding);
    out
}

/// The range table: each range's keys in `encoding`, group, leader, term, applied index,
/// replicas and size.
fn range_table(ranges: &[RangeRow], encoding: Encoding) -> String {
    let heading = format!("range ({} keys)", encoding.name());
    let mut out = format!("\n{heading:<24} group  leader  term  applied  replicas  bytes\n");
    for range in ranges {
        let leader = range
            .leader
            .map_or_else(|| "-".to_string(), |leader| leader.to_string());
        let replicas: Vec<String> = range.replicas.iter().map(ToString::to_string).collect();
        let end = range
            .end
            .as_ref()
            .map_or("∞".to_string(), ToString::to_string);
        let keys = format!("[{}, {end})", range.start);
        out += &format!(
            "{keys:<24} {:>5}  {leader:>6}  {:>4}  {:>7}  {:<8}  {}\n",
            range.group,
            range.term,
            range.applied,
            replicas.join(","),
            range.stored_bytes
        );
    }
    out
}

fn node_table(client: &Client, statuses: &Statuses) -> String {
    let mut out = String::from(
        "node  address              groups  leading  leader changes  entries/fsync  fsync ms  loop busy  requests  state\n",
    );
    let addresses: BTreeMap<_, _> = client.nodes().into_iter().collect();
    for (node, status) in statuses {
        let address = addresses
            .get(node)
            .map(ToString::to_string)
            .unwrap_or_default();
        match status {
            Ok(status) => {
                let leading = status
                    .groups
                    .iter()
                    .filter(|group| group.role == "Leader")
                    .count();
                let fsync_ms = status.write_micros as f64 / status.fsyncs.max(1) as f64 / 1000.0;
                let busy = 100.0 * status.busy_micros as f64 / status.uptime_micros.max(1) as f64;
                out += &format!(
                    "{:<5} {address:<20} {:>6}  {leading:>7}  {:>14}  {:>13.1}  {fsync_ms:>8.2}  {busy:>8.0}%  {:>8}  up\n",
                    node.0,
                    status.groups.len(),
                    status.leader_changes,
                    status.entries_per_fsync(),
                    status.requests
                );
            }
            Err(error) => {
                out += &format!(
                    "{:<5} {address:<20} {:>6}  {:>7}  {:>14}  {:>13}  {:>8}  {:>9}  {:>8}  down ({error})\n",
                    node.0, "-", "-", "-", "-", "-", "-", "-"
                );
            }
        }
    }
    out
}

/// How each node hears its peers: live (heard within the node timeout), quiet (a connection is
/// open but nothing came through it: stalled, or the peer is stuck) or unreachable.
fn peer_table(statuses: &Statuses) -> String {
    let mut out = String::from("\nnode  live peers      quiet          unreachable\n");
    for (node, status) in statuses {
        let Ok(status) = status else { continue };
        let in_state = |state: PeerState| {
            let nodes: Vec<String> = status
                .peers
                .iter()
                .filter(|peer| peer.state == state)
                .map(|peer| peer.node.0.to_string())
                .collect();
            if nodes.is_empty() {
                "-".to_string()
            } else {
                nodes.join(",")
            }
        };
        out += &format!(
            "{:<5} {:<15} {:<14} {}\n",
            node.0,
            in_state(PeerState::Live),
            in_state(PeerState::Quiet),
            in_state(PeerState::Unreachable)
        );
    }
    out
}

/// `flotilla node list|drain|undrain|remove`: the placement driver's view of every node, or an
/// operator's command carried out through the meta group.
///
/// # Errors
/// No meta-group leader answered, the cluster refused the command, or stdout failed.
pub async fn node_command(
    client: &Client,
    action: crate::cli::NodeAction,
    as_json: bool,
) -> Result<(), ShellError> {
    use crate::api::AdminCommand;
    use crate::cli::NodeAction;
    use flotilla_shard_manager::placement::NodeState;
    let (node, state) = match action {
        NodeAction::List => return list_nodes(client, as_json).await,
        NodeAction::Drain { id } => (id, NodeState::Draining),
        NodeAction::Undrain { id } => (id, NodeState::Up),
        NodeAction::Remove { id } => (id, NodeState::Removed),
    };
    let node = NodeId(node);
    client
        .admin(AdminCommand::SetNodeState { node, state })
        .await?;
    println!("{node} is now {state}");
    Ok(())
}

async fn list_nodes(client: &Client, as_json: bool) -> Result<(), ShellError> {
    let placement = client.placement().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&placement)?);
        return Ok(());
    }
    let mut replicas: BTreeMap<NodeId, (usize, usize)> = BTreeMap::new();
    for range in &placement.ranges {
        for replica in &range.replicas {
            replicas.entry(replica.node).or_default().0 += 1;
        }
        if let Some(leader) = range.leader {
            replicas.entry(leader).or_default().1 += 1;
        }
    }
    println!(
        "{:<6} {:<9} {:>8} {:>7} {:>10} {:>12}",
        "node", "state", "replicas", "leaders", "requests/s", "bytes"
    );
    for node in &placement.nodes {
        let (held, led) = replicas.get(&node.id).copied().unwrap_or_default();
        println!(
            "{:<6} {:<9} {:>8} {:>7} {:>10} {:>12}",
            node.id.to_string(),
            node.state.to_string(),
            held,
            led,
            node.load_requests_per_second,
            node.size_bytes
        );
    }
    print!("{}", moves_in_flight(&placement.operators));
    Ok(())
}

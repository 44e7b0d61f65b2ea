//! `flotilla range list|move|transfer-leader`: every range as the placement driver sees it
//! (group, keys, replicas and roles, leader, operator in flight), and a person's move or
//! leadership transfer, carried out as a manual operator through the meta group.

use crate::api::{AdminCommand, PlacementStatus};
use crate::cli::RangeAction;
use crate::client::Client;
use crate::encoding::{Encoded, Encoding};
use crate::shell::ShellError;
use flotilla_raft::NodeId;
use flotilla_shard_manager::placement::{ManualRequest, Operator, ReplicaRole};
use flotilla_shard_manager::{RangeId, RangeMap};
use serde::Serialize;

/// One range as `range list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RangeListRow {
    /// The range's id.
    pub range: u64,
    /// Its Raft group.
    pub group: u64,
    /// The first key, in the chosen `--encoding` (none: the client's map does not know the
    /// range yet).
    pub start: Option<Encoded>,
    /// The end key (exclusive); none: the end of the key space (or unknown).
    pub end: Option<Encoded>,
    /// Its replicas, voters first.
    pub replicas: Vec<ReplicaRow>,
    /// The leader the meta leader knows.
    pub leader: Option<u64>,
    /// The operator in flight on it, if any.
    pub operator: Option<OperatorRow>,
}

/// One replica: its node and role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaRow {
    /// The node holding it.
    pub node: u64,
    /// `voter` or `learner`.
    pub role: &'static str,
}

/// An operator in flight, as `range list` and `status` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OperatorRow {
    /// Its id (`op7`).
    pub id: String,
    /// The range it changes.
    pub range: u64,
    /// The rule that made it, or `manual`.
    pub kind: String,
    /// Its steps, in order.
    pub steps: Vec<String>,
    /// The step being carried out now (an index into `steps`).
    pub step_index: usize,
}

impl OperatorRow {
    /// The row of `operator`.
    #[must_use]
    pub fn of(operator: &Operator) -> Self {
        Self {
            id: operator.id.to_string(),
            range: operator.range.0,
            kind: operator.kind.to_string(),
            steps: operator.steps.iter().map(ToString::to_string).collect(),
            step_index: operator.step_index,
        }
    }

    /// `op7 r3 manual, step 2 of 4: promote n4 demote n2`.
    #[must_use]
    pub fn summary(&self) -> String {
        let current = self.steps.get(self.step_index).map_or("", String::as_str);
        format!(
            "{} r{} {}, step {} of {}: {current}",
            self.id,
            self.range,
            self.kind,
            self.step_index + 1,
            self.steps.len()
        )
    }
}

/// Every range of the placement view, with its keys from `map` in `encoding`, in range order.
#[must_use]
pub fn range_rows(
    placement: &PlacementStatus,
    map: &RangeMap,
    encoding: Encoding,
) -> Vec<RangeListRow> {
    placement
        .ranges
        .iter()
        .map(|range| {
            let descriptor = map.range(range.id);
            let mut replicas: Vec<ReplicaRow> = range
                .replicas
                .iter()
                .map(|replica| ReplicaRow {
                    node: replica.node.0,
                    role: role_name(replica.role),
                })
                .collect();
            replicas.sort_by_key(|replica| (replica.role != "voter", replica.node));
            RangeListRow {
                range: range.id.0,
                group: range.group.0,
                start: descriptor.map(|descriptor| encoding.of(&descriptor.keys.start)),
                end: descriptor
                    .and_then(|descriptor| descriptor.keys.end.as_deref())
                    .map(|end| encoding.of(end)),
                replicas,
                leader: range.leader.map(|leader| leader.0),
                operator: placement
                    .operators
                    .iter()
                    .find(|operator| operator.range == range.id)
                    .map(OperatorRow::of),
            }
        })
        .collect()
}

fn role_name(role: ReplicaRole) -> &'static str {
    match role {
        ReplicaRole::Voter => "voter",
        ReplicaRole::Learner => "learner",
    }
}

/// The table `range list` prints, keys in `encoding`: learners marked `~`, the leader `*`.
#[must_use]
pub fn range_table(rows: &[RangeListRow], encoding: Encoding) -> String {
    let mut out = format!(
        "{:<6} {:>5}  {:<24} {:<18} {:<6}  operator\n",
        "range",
        "group",
        format!("keys ({})", encoding.name()),
        "replicas",
        "leader"
    );
    for row in rows {
        let keys = match &row.start {
            Some(start) => {
                let end = row
                    .end
                    .as_ref()
                    .map_or("∞".to_string(), ToString::to_string);
                format!("[{start}, {end})")
            }
            None => "unknown".to_string(),
        };
        let replicas: Vec<String> = row
            .replicas
            .iter()
            .map(|replica| {
                let learner = if replica.role == "learner" { "~" } else { "" };
                let leader = if row.leader == Some(replica.node) {
                    "*"
                } else {
                    ""
                };
                format!("{learner}{}{leader}", replica.node)
            })
            .collect();
        let leader = row
            .leader
            .map_or_else(|| "-".to_string(), |leader| leader.to_string());
        let operator = row
            .operator
            .as_ref()
            .map_or_else(|| "-".to_string(), OperatorRow::summary);
        out += &format!(
            "{:<6} {:>5}  {keys:<24} {:<18} {leader:<6}  {operator}\n",
            format!("r{}", row.range),
            row.group,
            replicas.join(",")
        );
    }
    out
}

/// Runs `flotilla range ACTION`.
///
/// # Errors
/// No meta-group leader answered, the cluster refused the command (with its reason), or
/// stdout failed.
pub async fn range_command(
    client: &Client,
    action: RangeAction,
    as_json: bool,
    encoding: Encoding,
) -> Result<(), ShellError> {
    let (command, done) = match action {
        RangeAction::List => return list_ranges(client, as_json, encoding).await,
        RangeAction::Split { key } => return split_range(client, &key, as_json, encoding).await,
        RangeAction::Merge { key } => return merge_range(client, &key, as_json, encoding).await,
        RangeAction::Move { range, from, to } => (
            AdminCommand::Manual(ManualRequest::MoveReplica {
                range: RangeId(range),
                from: NodeId(from),
                to: NodeId(to),
            }),
            format!("r{range}: moving the replica on n{from} to n{to}"),
        ),
        RangeAction::TransferLeader { range, to } => (
            AdminCommand::Manual(ManualRequest::TransferLeader {
                range: RangeId(range),
                to: NodeId(to),
            }),
            format!("r{range}: transferring leadership to n{to}"),
        ),
    };
    client.admin(command).await?;
    println!("{done} (`flotilla range list` shows it until it is done)");
    Ok(())
}

/// `range split KEY`: splits the range holding KEY there and says which range took the keys
/// from KEY on.
async fn split_range(
    client: &Client,
    key: &str,
    as_json: bool,
    encoding: Encoding,
) -> Result<(), ShellError> {
    let at = encoding.decode(key)?;
    let range = client.split(&at).await?;
    print_changed_range("split", range, &client.map(), &at, (as_json, encoding))
}

/// `range merge KEY`: merges the range holding KEY with its right neighbour and says which
/// keys the merged range holds.
async fn merge_range(
    client: &Client,
    key: &str,
    as_json: bool,
    encoding: Encoding,
) -> Result<(), ShellError> {
    let key = encoding.decode(key)?;
    let range = client.merge(&key).await?;
    print_changed_range("merge", range, &client.map(), &key, (as_json, encoding))
}

/// Prints the range `id` that a split or merge (`change`) left holding `key`, as the map has
/// it: one JSON object, or one line (`split: r17 (group g17) holds a to (end)`).
fn print_changed_range(
    change: &str,
    id: RangeId,
    map: &RangeMap,
    key: &[u8],
    (as_json, encoding): (bool, Encoding),
) -> Result<(), ShellError> {
    let range = map.lookup(key);
    if as_json {
        let end = range.keys.end.as_deref().map(|end| encoding.json(end));
        let value = serde_json::json!({
            "range": id.0,
            "group": range.group.0,
            "start": encoding.json(&range.keys.start),
            "end": end,
        });
        println!("{}", serde_json::to_string(&value)?);
    } else {
        let end = range
            .keys
            .end
            .as_deref()
            .map_or_else(|| "(end)".to_owned(), |end| encoding.text(end));
        println!(
            "{change}: r{} (group {}) holds {} to {end}",
            id.0,
            range.group,
            encoding.text(&range.keys.start)
        );
    }
    Ok(())
}

async fn list_ranges(client: &Client, as_json: bool, encoding: Encoding) -> Result<(), ShellError> {
    let placement = client.placement().await?;
    // The keys come from the map; a split since the client connected is in a fresh one.
    client.refresh_map().await?;
    let rows = range_rows(&placement, &client.map(), encoding);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", range_table(&rows, encoding));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::GroupId;
    use flotilla_shard_manager::placement::{OperatorId, OperatorKind, RangeView, Replica, Step};
    use serde_json::json;

    fn placement() -> PlacementStatus {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let mut moving = RangeView::voters(RangeId(2), GroupId(2), &voters);
        moving.leader = Some(NodeId(2));
        moving.replicas.push(Replica {
            node: NodeId(4),
            role: ReplicaRole::Learner,
        });
        let operator = Operator {
            id: OperatorId(7),
            range: RangeId(2),
            kind: OperatorKind::Manual,
            steps: vec![
                Step::AddLearner { node: NodeId(4) },
                Step::Promote {
                    node: NodeId(4),
                    demote: Some(NodeId(3)),
                },
                Step::Remove { node: NodeId(3) },
            ],
            step_index: 1,
            step_started_ms: 0,
            decided_on: moving.replicas.clone(),
        };
        PlacementStatus {
            nodes: Vec::new(),
            ranges: vec![RangeView::voters(RangeId(1), GroupId(1), &voters), moving],
            operators: vec![operator],
        }
    }

    #[test]
    fn the_table_shows_keys_roles_leaders_and_the_operator() {
        let map = RangeMap::uniform(2, |_| vec![NodeId(1), NodeId(2), NodeId(3)]);
        let rows = range_rows(&placement(), &map, Encoding::Hex);
        assert_eq!(rows[1].replicas.last().unwrap().role, "learner");
        let table = range_table(&rows, Encoding::Hex);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with("r1"), "{table}");
        assert!(
            lines[1].contains("1*,2,3") && lines[1].ends_with(" -"),
            "{table}"
        );
        assert!(lines[2].contains("1,2*,3,~4"), "{table}");
        assert!(
            lines[2].ends_with("op7 r2 manual, step 2 of 3: promote n4 demote n3"),
            "{table}"
        );
        assert!(
            lines[1].contains("[, "),
            "the first range starts at the empty key: {table}"
        );
    }

    /// Two ranges split at 0x8000: the bound prints in the chosen encoding, and under utf8,
    /// where it is not text, under the marker (JSON: `{"hex": ...}`).
    #[test]
    fn keys_follow_the_encoding() {
        let map = RangeMap::uniform(2, |_| vec![NodeId(1), NodeId(2), NodeId(3)]);
        let cases = [
            (Encoding::Hex, "keys (hex)", "[8000, ∞)", json!("8000")),
            (
                Encoding::Base64,
                "keys (base64)",
                "[gAA=, ∞)",
                json!("gAA="),
            ),
            (
                Encoding::Utf8,
                "keys (utf8)",
                "[(not UTF-8, hex: 8000), ∞)",
                json!({ "hex": "8000" }),
            ),
        ];
        for (encoding, heading, keys, start) in cases {
            let rows = range_rows(&placement(), &map, encoding);
            let table = range_table(&rows, encoding);
            assert!(table.lines().next().unwrap().contains(heading), "{table}");
            assert!(table.lines().nth(2).unwrap().contains(keys), "{table}");
            let document = serde_json::to_value(&rows).unwrap();
            assert_eq!(document[1]["start"], start, "{document}");
            assert_eq!(document[0]["start"], json!(""), "{document}");
        }
    }

    #[test]
    fn a_range_the_map_does_not_know_yet_has_unknown_keys() {
        let map = RangeMap::uniform(1, |_| vec![NodeId(1)]);
        let rows = range_rows(&placement(), &map, Encoding::Hex);
        assert_eq!((rows[1].start.clone(), rows[1].end.clone()), (None, None));
        assert!(range_table(&rows, Encoding::Hex).contains("unknown"));
    }
}

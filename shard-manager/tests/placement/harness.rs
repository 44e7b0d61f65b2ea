//! Reads and runs the data-driven placement cases: `command args` lines, each followed by
//! `----` and the expected output up to a blank line (etcd's and CockroachDB's datadriven
//! format, simplified). `PLACEMENT_REWRITE=1` rewrites the expectations from the actual output.

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::RangeId;
use flotilla_shard_manager::placement::model::Model;
use flotilla_shard_manager::placement::{
    NodeState, NodeView, PlacementConfig, RangeView, Replica, ReplicaRole,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One command and its expected output.
struct Case {
    line: usize,
    command: String,
    expected: String,
}

fn parse(text: &str) -> (Vec<Case>, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut layout = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        index += 1;
        if line.trim().is_empty() || line.starts_with('#') {
            layout.push(line.to_string());
            continue;
        }
        assert_eq!(
            lines.get(index).copied(),
            Some("----"),
            "line {index}: `----` after a command"
        );
        index += 1;
        let mut expected = Vec::new();
        while index < lines.len() && !lines[index].trim().is_empty() {
            expected.push(lines[index]);
            index += 1;
        }
        cases.push(Case {
            line: index,
            command: line.to_string(),
            expected: expected.join("\n"),
        });
        layout.push(format!("\u{0}{}", cases.len() - 1));
    }
    (cases, layout)
}

/// Runs every case of `text`; returns the rewritten file when the output differs.
pub(crate) fn run_file(name: &str, text: &str) -> Option<String> {
    let (cases, layout) = parse(text);
    let mut harness = Harness::default();
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let actual = harness.run(&case.command);
        let actual = if actual.is_empty() {
            "ok".to_string()
        } else {
            actual
        };
        if actual.trim_end() != case.expected {
            failures.push(format!(
                "{name}:{} `{}`\nexpected:\n{}\nactual:\n{}",
                case.line, case.command, case.expected, actual
            ));
        }
        outputs.push(actual);
    }
    if failures.is_empty() {
        return None;
    }
    if std::env::var_os("PLACEMENT_REWRITE").is_some() {
        return Some(rewrite(&layout, &cases, &outputs));
    }
    panic!("{}", failures.join("\n\n"));
}

fn rewrite(layout: &[String], cases: &[Case], outputs: &[String]) -> String {
    let mut text = String::new();
    for line in layout {
        match line.strip_prefix('\u{0}') {
            Some(index) => {
                let index: usize = index.parse().unwrap();
                let _ = write!(
                    text,
                    "{}\n----\n{}\n",
                    cases[index].command,
                    outputs[index].trim_end()
                );
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

#[derive(Default)]
struct Harness {
    model: Option<Model>,
}

fn node_id(text: &str) -> NodeId {
    NodeId(text.trim_start_matches('n').parse().unwrap())
}

fn range_id(text: &str) -> RangeId {
    RangeId(text.trim_start_matches('r').parse().unwrap())
}

fn nodes(text: &str) -> Vec<NodeId> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(node_id)
        .collect()
}

fn arguments(words: &[&str]) -> BTreeMap<String, String> {
    words
        .iter()
        .filter_map(|word| word.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

impl Harness {
    fn model(&mut self) -> &mut Model {
        self.model
            .get_or_insert_with(|| Model::new(PlacementConfig::default()).unwrap())
    }

    fn run(&mut self, command: &str) -> String {
        let words: Vec<&str> = command.split_whitespace().collect();
        let args = arguments(&words[1..]);
        match words[0] {
            "config" => self.configure(&args),
            "node" => self.add_nodes(&words[1..], &args),
            "state" => self.set_state(words[1], words[2], &args),
            "range" => self.add_range(range_id(words[1]), &args),
            "drop" => {
                self.model().view.remove_range(range_id(words[1]));
                String::new()
            }
            "ranges" => self.add_ranges(words[1], &args),
            "time" => self.advance_time(words[1].parse().unwrap()),
            "tick" => self.tick(),
            "step" => self.step(),
            "run" => self.run_until_idle(),
            "show" => self.show(),
            "counts" => self.counts(),
            other => panic!("unknown command {other}"),
        }
    }

    fn configure(&mut self, args: &BTreeMap<String, String>) -> String {
        let mut config = PlacementConfig::default();
        for (key, value) in args {
            let value: u64 = value.parse().unwrap();
            let count = value as usize;
            match key.as_str() {
                "replicas" => config.replicas_per_range = count,
                "down-after" => config.down_after_ms = value,
                "stale" => config.heartbeat_stale_ms = value,
                "moves-per-node" => config.moves_per_node_max = count,
                "moves" => config.moves_in_flight_max = count,
                "transfers-per-node" => config.leader_transfers_per_node_max = count,
                "transfers" => config.leader_transfers_in_flight_max = count,
                "step-timeout" => config.step_timeout_ms = value,
                "catch-up" => config.catch_up_bytes_per_second_min = value,
                "scan" => config.ranges_scanned_per_tick_max = count,
                "tolerance" => config.leader_load_tolerance_percent = value,
                other => panic!("unknown config key {other}"),
            }
        }
        match Model::new(config) {
            Ok(model) => {
                self.model = Some(model);
                String::new()
            }
            Err(error) => format!("error: {error}"),
        }
    }

    fn add_nodes(&mut self, words: &[&str], args: &BTreeMap<String, String>) -> String {
        let model = self.model();
        for word in words.iter().filter(|word| !word.contains('=')) {
            let mut view = NodeView::up(node_id(word), model.now_ms);
            view.load_requests_per_second =
                args.get("load").map_or(0, |load| load.parse().unwrap());
            if let Err(error) = model.view.upsert_node(view) {
                return format!("error: {error}");
            }
        }
        String::new()
    }

    fn set_state(&mut self, node: &str, state: &str, args: &BTreeMap<String, String>) -> String {
        let since = |model: &Model| {
            args.get("since")
                .map_or(model.now_ms, |since| since.parse().unwrap())
        };
        let model = self.model();
        let state = match state {
            "up" => NodeState::Up,
            "suspect" => NodeState::Suspect,
            "down" => NodeState::Down {
                since_ms: since(model),
            },
            "draining" => NodeState::Draining,
            "removed" => NodeState::Removed,
            other => panic!("unknown state {other}"),
        };
        match model.view.set_node_state(node_id(node), state) {
            Ok(()) => String::new(),
            Err(error) => format!("error: {error}"),
        }
    }

    fn add_range(&mut self, id: RangeId, args: &BTreeMap<String, String>) -> String {
        let voters = nodes(args.get("voters").map_or("", String::as_str));
        let learners = nodes(args.get("learners").map_or("", String::as_str));
        let mut range = RangeView::voters(id, GroupId(id.0), &voters);
        range.replicas.extend(learners.iter().map(|&node| Replica {
            node,
            role: ReplicaRole::Learner,
        }));
        if let Some(leader) = args.get("leader") {
            range.leader = (leader != "none").then(|| node_id(leader));
        }
        range.size_bytes = args.get("size").map_or(0, |size| size.parse().unwrap());
        range.load_requests_per_second = args.get("load").map_or(0, |load| load.parse().unwrap());
        match self.model().view.upsert_range(range) {
            Ok(()) => String::new(),
            Err(error) => format!("error: {error}"),
        }
    }

    /// `ranges 1-12 on=1,2,3,4`: each range on `replicas` consecutive nodes of the list,
    /// starting one further along each time, led by the first.
    fn add_ranges(&mut self, span: &str, args: &BTreeMap<String, String>) -> String {
        let (first, last) = span.split_once('-').unwrap();
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        let on = nodes(&args["on"]);
        let replicas = self.model().driver.config().replicas_per_range;
        for (offset, id) in (first..=last).enumerate() {
            let voters: Vec<NodeId> = (0..replicas).map(|i| on[(offset + i) % on.len()]).collect();
            let range = RangeView::voters(RangeId(id), GroupId(id), &voters);
            if let Err(error) = self.model().view.upsert_range(range) {
                return format!("error: {error}");
            }
        }
        String::new()
    }

    /// Moves time to `now_ms`; every up or draining node heartbeats then.
    fn advance_time(&mut self, now_ms: u64) -> String {
        let model = self.model();
        model.now_ms = now_ms;
        let beating: Vec<NodeView> = model
            .view
            .nodes()
            .filter(|node| matches!(node.state, NodeState::Up | NodeState::Draining))
            .cloned()
            .collect();
        for node in beating {
            model
                .view
                .heartbeat(
                    node.id,
                    now_ms,
                    node.load_requests_per_second,
                    node.size_bytes,
                )
                .unwrap();
        }
        String::new()
    }

    fn tick(&mut self) -> String {
        match self.model().tick() {
            Ok(decisions) => decisions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            Err(error) => format!("error: {error}"),
        }
    }

    fn step(&mut self) -> String {
        let changed = self.model().carry_out_steps().unwrap();
        let model = self.model();
        changed
            .iter()
            .filter_map(|&id| model.view.range(id))
            .map(describe)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn run_until_idle(&mut self) -> String {
        let mut below_majority = Vec::new();
        let rounds = self
            .model()
            .run_until_idle(10_000, |model| {
                for range in model.view.ranges() {
                    let voters = range.voter_nodes().count();
                    if voters == 0 {
                        below_majority.push(range.id);
                    }
                }
            })
            .unwrap();
        let mut text = match rounds {
            Some(rounds) => format!("settled after {rounds} rounds"),
            None => "did not settle".to_string(),
        };
        if !below_majority.is_empty() {
            let _ = write!(text, "\nranges without voters: {below_majority:?}");
        }
        text.push('\n');
        text.push_str(&self.counts());
        text
    }

    fn show(&mut self) -> String {
        let model = self.model();
        let mut lines: Vec<String> = model.view.ranges().map(describe).collect();
        lines.extend(
            model
                .view
                .operators()
                .map(|operator| format!("{operator} (at step {})", operator.step_index)),
        );
        lines.join("\n")
    }

    fn counts(&mut self) -> String {
        let model = self.model();
        model
            .view
            .nodes()
            .map(|node| {
                format!(
                    "{}: replicas={} leaders={}",
                    node.id,
                    model.view.replica_count(node.id),
                    model.view.leader_count(node.id)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn describe(range: &RangeView) -> String {
    let mut text = format!("r{}:", range.id.0);
    for replica in &range.replicas {
        let role = match replica.role {
            ReplicaRole::Voter => "v",
            ReplicaRole::Learner => "l",
        };
        let _ = write!(text, " {role}{}", replica.node.0);
    }
    match range.leader {
        Some(leader) => {
            let _ = write!(text, " leader={leader}");
        }
        None => text.push_str(" leader=none"),
    }
    text
}

//! Runs the data-driven quorum cases in `testdata/`.

use super::{VoteResult, quorum_of};
use crate::entry::Membership;
use crate::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};

fn parse_set(text: &str) -> BTreeSet<NodeId> {
    if text == "-" {
        return BTreeSet::new();
    }
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| NodeId(part.parse().expect("node id")))
        .collect()
}

fn parse_pairs(text: &str) -> BTreeMap<NodeId, String> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|pair| {
            let (node, value) = pair.split_once(':').expect("node:value");
            (NodeId(node.parse().expect("node id")), value.to_string())
        })
        .collect()
}

fn field<'a>(words: &'a [&str], name: &str) -> &'a str {
    words
        .iter()
        .find_map(|word| {
            word.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
        })
        .unwrap_or_else(|| panic!("missing field {name}"))
}

fn run_case(line: &str) -> (String, String) {
    let (case, expected) = line.split_once("=>").expect("a case has '=>'");
    let words: Vec<&str> = case.split_whitespace().collect();
    let membership = Membership {
        voters: parse_set(field(&words, "voters")),
        outgoing: parse_set(field(&words, "outgoing")),
        learners: BTreeSet::new(),
    };
    let quorum = quorum_of(&membership);
    let actual = match words[0] {
        "committed" => {
            let values = parse_pairs(field(&words, "values"));
            let committed =
                quorum.committed(|node| values.get(&node).map(|v| v.parse().expect("number")));
            if committed == u64::MAX {
                "max".to_string()
            } else {
                committed.to_string()
            }
        }
        "vote" => {
            let votes = parse_pairs(field(&words, "votes"));
            let result = quorum.vote_result(|node| votes.get(&node).map(|v| v == "y"));
            match result {
                VoteResult::Won => "won",
                VoteResult::Lost => "lost",
                VoteResult::Pending => "pending",
            }
            .to_string()
        }
        other => panic!("unknown case kind {other}"),
    };
    (actual, expected.trim().to_string())
}

fn run_file(name: &str, text: &str) {
    let mut case_count = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (actual, expected) = run_case(line);
        assert_eq!(actual, expected, "{name}: {line}");
        case_count += 1;
    }
    assert!(case_count > 5, "{name} holds too few cases");
}

#[test]
fn majority_cases() {
    run_file("majority.txt", include_str!("testdata/majority.txt"));
}

#[test]
fn joint_cases() {
    run_file("joint.txt", include_str!("testdata/joint.txt"));
}

//! `flotilla inspect DATA_DIR` on real `flotilla server` data directories (issue 21): a running
//! node's directory is refused; a stopped node's is read (identity, groups with indexes past
//! zero, each range's keys) and healthy, exit 0; a flipped byte in the middle of a segment is a finding naming the
//! file and the batch's offset, exit 1.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_node::workload::key_of;
use flotilla_raft::NodeId;
use flotilla_storage::{Command, Response};
use serde_json::Value;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod common;
use common::{WAIT, binary, run_flotilla, runtime};

/// `flotilla inspect DIR --output json`: the exit code and the parsed report.
fn inspect_json(data_dir: &Path) -> (Option<i32>, Value, String) {
    let output = run_flotilla(
        &["inspect", data_dir.to_str().unwrap(), "--output", "json"],
        b"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report, stderr)
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a number"))
}

/// The segment holding the most records, and where its valid bytes end.
fn fullest_segment(report: &Value) -> (PathBuf, u64) {
    let segments = report["log"]["segments"].as_array().unwrap();
    let fullest = segments
        .iter()
        .max_by_key(|segment| number(&segment["record_count"]))
        .unwrap();
    let file = PathBuf::from(fullest["file"].as_str().unwrap());
    (file, number(&fullest["valid_bytes"]))
}

fn flip_byte(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
}

#[test]
fn a_stopped_nodes_directory_is_inspected_and_a_flipped_byte_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 4).unwrap();
    let two = NodeId(2);
    runtime().block_on(Box::pin(async {
        let client = connect_when_ready(cluster.client_options(), WAIT)
            .await
            .unwrap();
        for n in 0..40 {
            let put = Command::Put {
                key: key_of(n),
                value: format!("value-{n}").into_bytes(),
            };
            let outcome = client.command(put).await.unwrap();
            assert!(matches!(outcome.response, Response::Written { .. }));
        }
    }));
    let data_dir = cluster.data_dir(two);

    let (code, _, stderr) = inspect_json(&data_dir);
    assert_eq!(code, Some(1), "a running node's directory is refused");
    assert!(stderr.contains("stop the node first"), "{stderr}");

    cluster.kill(two);
    let (code, report, stderr) = inspect_json(&data_dir);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!(report["healthy"], Value::Bool(true));
    assert_eq!(number(&report["identity"]["node_id"]), 2);
    let groups = report["log"]["groups"].as_array().unwrap();
    assert!(
        groups.len() >= 5,
        "the meta group and 4 ranges: {groups:#?}"
    );
    for group in groups {
        assert!(number(&group["last_index"]) > 0, "{group:#}");
        assert!(number(&group["hard_state"]["commit"]) > 0, "{group:#}");
        assert!(number(&group["applied_index"]) > 0, "{group:#}");
    }
    assert!(number(&report["log"]["totals"]["record_count"]) > 0);
    let ranges = report["ranges"].as_array().unwrap();
    assert_eq!(
        ranges.len(),
        4,
        "each range's keys, from the meta snapshot: {ranges:#?}"
    );
    let text = run_flotilla(&["inspect", data_dir.to_str().unwrap()], b"");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("GROUP") && text.contains("healthy"), "{text}");

    let (segment, valid_bytes) = fullest_segment(&report);
    let flipped = valid_bytes / 2;
    flip_byte(&segment, flipped);
    let (code, report, stderr) = inspect_json(&data_dir);
    assert_eq!(code, Some(1), "{report:#}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert_eq!(report["healthy"], Value::Bool(false));
    let findings = report["log"]["findings"].as_array().unwrap();
    let damage = findings
        .iter()
        .find(|finding| finding["severity"] == "damage")
        .unwrap_or_else(|| panic!("no damage among {findings:#?}"));
    assert_eq!(damage["file"].as_str(), segment.to_str());
    let offset = number(&damage["offset"]);
    assert!(
        offset <= flipped && flipped - offset < 16 << 20,
        "the finding's batch at {offset} holds byte {flipped}"
    );
    cluster.stop();
}

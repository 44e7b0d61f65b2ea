//! End-to-end: `flotilla backup` of a 3-node cluster with 4 ranges, `flotilla restore` of
//! every node of a new cluster from it, and every key compared. Writes keep landing while the
//! backup runs: each range's file holds at least what was acknowledged before the backup
//! began, and the restored cluster holds exactly what the files hold. A damaged backup is
//! refused before anything is written.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::ClientOptions;
use flotilla_node::backup::{MANIFEST, Manifest};
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_storage::Command;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod common;
use common::{WAIT, binary, client_flags, run_flotilla, runtime};

async fn put(client: &flotilla_node::Client, key: &[u8], value: &[u8]) {
    let command = Command::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    };
    client.command(command).await.unwrap();
}

async fn delete(client: &flotilla_node::Client, key: &[u8]) {
    let command = Command::Delete { key: key.to_vec() };
    client.command(command).await.unwrap();
}

/// Keys in every range: the 4 ranges split the key space on the first byte at 0x40, 0x80 and
/// 0xc0, and keys starting 0x80-0xbf are not UTF-8 text.
fn key(index: u32) -> Vec<u8> {
    let mut key = vec![(index % 4) as u8 * 0x40 + (index % 7) as u8];
    key.extend_from_slice(format!("key-{index:05}").as_bytes());
    key
}

/// `flotilla backup --to DIR --output json` against the cluster: its exit code, stdout and
/// stderr.
fn backup(options: &ClientOptions, to: &Path) -> (Option<i32>, String, String) {
    let mut args = vec!["backup", "--to", to.to_str().unwrap(), "--output", "json"];
    let flags = client_flags(options);
    args.extend(flags.iter().map(String::as_str));
    let output = run_flotilla(&args, b"");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.code(),
        text(output.stdout),
        text(output.stderr),
    )
}

/// Every pair of the cluster, by a scan across all ranges.
async fn everything(client: &flotilla_node::Client) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let scanned = client.scan_limited(b"", None, 100_000).await.unwrap();
    assert!(!scanned.more);
    scanned.pairs.into_iter().collect()
}

#[test]
fn a_backup_restores_into_a_new_cluster_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let source = LocalCluster::start(binary(), &dir.path().join("source"), 3, 4).unwrap();
    let options = source.client_options();
    let rt = runtime();
    let client = rt
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();

    // 600 keys, a third of them overwritten and every tenth deleted.
    let before = rt.block_on(async {
        for index in 0..600 {
            let value = format!("value-{index}").into_bytes();
            put(&client, &key(index), &value).await;
        }
        for index in (0..600).step_by(3) {
            put(&client, &key(index), b"overwritten").await;
        }
        for index in (0..600).step_by(10) {
            delete(&client, &key(index)).await;
        }
        everything(&client).await
    });
    assert_eq!(before.len(), 540);

    // A writer keeps adding keys of its own while the backup runs.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (client, writing) = (client.clone(), Arc::clone(&writing));
        rt.spawn(async move {
            let mut index = 10_000;
            while writing.load(Ordering::Relaxed) {
                put(&client, &key(index), b"during").await;
                index += 1;
            }
            index
        })
    };
    let to = dir.path().join("backup");
    let (code, stdout, stderr) = backup(&options, &to);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    writing.store(false, Ordering::Relaxed);
    let written_during = rt.block_on(writer).unwrap() - 10_000;
    let manifest: Manifest = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        manifest,
        serde_json::from_slice::<Manifest>(&std::fs::read(to.join(MANIFEST)).unwrap()).unwrap(),
        "the printed manifest is the one written"
    );
    assert_eq!(manifest.ranges.len(), 4);
    assert!(manifest.ranges.iter().all(|range| range.applied_index > 0));

    // A second backup into the same directory is refused: nothing is overwritten.
    let (code, _, stderr) = backup(&options, &to);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    drop(client);
    drop(source);

    // The new cluster: each node's directory restored, then the servers started.
    let restored =
        LocalCluster::start_restored(binary(), &dir.path().join("restored"), 3, &to).unwrap();
    let options = restored.client_options();
    let client = rt
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();
    let after = rt.block_on(everything(&client));
    let pairs_in_files: u64 = manifest.ranges.iter().map(|range| range.pair_count).sum();
    assert_eq!(
        after.len() as u64,
        pairs_in_files,
        "exactly what the files hold"
    );
    for (key, value) in &before {
        assert_eq!(
            after.get(key),
            Some(value),
            "{key:?} was acknowledged before"
        );
    }
    let during: Vec<_> = after
        .iter()
        .filter(|(key, _)| !before.contains_key(*key))
        .collect();
    assert!(
        during
            .iter()
            .all(|(_, value)| value.as_slice() == b"during"),
        "only the writer's keys are new"
    );
    assert!(during.len() as u64 <= u64::from(written_during));
    // The restored cluster takes writes: its leaders were elected past the restored entries.
    rt.block_on(async {
        put(&client, b"after-restore", b"yes").await;
        assert_eq!(
            client.get(b"after-restore").await.unwrap(),
            Some(b"yes".to_vec())
        );
    });
}

/// `flotilla restore --from backup` of node 1 into `data_dir`, which must fail: its stderr.
fn refused_restore(backup: &Path, data_dir: &Path) -> String {
    let output = run_flotilla(
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--node-id",
            "1",
            "--initial-cluster",
            "1@127.0.0.1:7101",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        b"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_damaged_backup_is_refused_before_a_directory_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let source = LocalCluster::start(binary(), &dir.path().join("source"), 1, 2).unwrap();
    let options = source.client_options();
    let rt = runtime();
    let client = rt
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();
    rt.block_on(async {
        for index in 0..50 {
            put(&client, &key(index), b"value").await;
        }
    });
    let to = dir.path().join("backup");
    let (code, stdout, stderr) = backup(&options, &to);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let manifest: Manifest = serde_json::from_str(stdout.trim()).unwrap();
    drop(source);

    // One flipped byte in the middle of a range's file.
    let file = to.join(&manifest.ranges[0].file);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let data_dir = dir.path().join("restored-node-1");
    let stderr = refused_restore(&to, &data_dir);
    assert!(stderr.contains("checksum"), "{stderr}");
    assert!(!data_dir.exists(), "nothing was written");

    // Without its manifest, a directory is not a finished backup.
    std::fs::remove_file(to.join(MANIFEST)).unwrap();
    let stderr = refused_restore(&to, &data_dir);
    assert!(stderr.contains("has no manifest.json"), "{stderr}");
}

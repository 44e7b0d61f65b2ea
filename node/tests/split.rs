//! End-to-end: ranges split on real `flotilla server` processes (issue 20). Three nodes start
//! with one range holding 200 keys; it splits through the client and then through `flotilla
//! range split`; every key stays readable with its value, a scan across the split points
//! returns each key once and in order, writes land on both sides, a backup racing a split
//! still tiles the key space, a split at a range's first key is refused with its reason, and
//! a node restarted after the splits (which replays the split entries) serves its ranges with
//! the same data. Ranges merge back through the client and `flotilla range merge`, keeping
//! every key; a neighbour bigger than `ranges.merge_bytes`, and the last range, are refused with
//! their reasons; and a restarted node replays the merges. The waits are bounded (a failure,
//! not a measurement).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::Client;
use flotilla_node::ClientError;
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_raft::NodeId;

mod common;
use common::{WAIT, binary, client_flags, eventually, eventually_within, run_flotilla, runtime};

fn key(index: u32) -> Vec<u8> {
    format!("key-{index:03}").into_bytes()
}

/// Every key's value, and a scan of the whole key space: each key once, in order.
async fn check_all(client: &Client, keys: u32, round: &str) {
    for index in 0..keys {
        let value = client.get(key(index)).await.unwrap();
        assert_eq!(
            value,
            Some(format!("{round}{index}").into_bytes()),
            "key {index}"
        );
    }
    let scanned = all_keys(client).await;
    let expected: Vec<Vec<u8>> = (0..keys).map(key).collect();
    assert_eq!(scanned, expected, "a scan across the splits");
}

/// Every key of a scan over the whole key space, in the order it returned them.
async fn all_keys(client: &Client) -> Vec<Vec<u8>> {
    let mut scanned = Vec::new();
    let mut scan = client.scan(..);
    while let Some(page) = scan.next_page().await.unwrap() {
        scanned.extend(page.into_iter().map(|(key, _)| key));
    }
    scanned
}

async fn put_all(client: &Client, keys: u32, round: &str) {
    for index in 0..keys {
        client
            .put(key(index), format!("{round}{index}"))
            .await
            .unwrap();
    }
}

/// Runs `flotilla ARGS...` against the cluster: whether it succeeded, its stdout and stderr.
fn flotilla(args: &[&str], cluster: &LocalCluster) -> (bool, String, String) {
    let flags = client_flags(&cluster.client_options());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(flags.iter().map(String::as_str));
    let output = run_flotilla(&all, b"");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

/// Three nodes on one range, reading `config` (a `[ranges]` section) as well.
fn one_range_with(dir: &std::path::Path, config: &str) -> LocalCluster {
    let path = dir.join("split.toml");
    std::fs::write(&path, config).unwrap();
    LocalCluster::start_with_config(binary(), dir, 3, 1, Some(path)).unwrap()
}

/// Waits until every range of the client's fresh map has a leader in the placement view.
async fn all_led(client: &Client, ranges: usize) {
    eventually("every range led", || async {
        client.refresh_map().await.ok()?;
        let view = client.placement().await.ok()?;
        let led = view.ranges.iter().filter(|range| range.leader.is_some());
        (client.map().ranges().count() == ranges && led.count() == ranges).then_some(())
    })
    .await;
}

#[test]
fn a_range_splits_and_keeps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(binary(), dir.path(), 3, 1).unwrap();
    let options = cluster.client_options();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(options.clone(), WAIT).await.unwrap();
        put_all(&client, 200, "a").await;

        // Through the client: the map shows the new range at once.
        let right = client.split(&key(100)).await.unwrap();
        let map = client.map();
        assert_eq!(map.ranges().count(), 2);
        let carved = map.lookup(&key(100));
        assert_eq!((carved.id, carved.keys.start.clone()), (right, key(100)));
        assert_eq!(map.lookup(&key(99)).keys.end, Some(key(100)));
        check_all(&client, 200, "a").await;

        // Through the CLI, in the right half; the key read as UTF-8.
        let (ok, stdout, stderr) = flotilla(
            &["range", "split", "--encoding", "utf8", "key-150"],
            &cluster,
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("holds key-150 to (end)"), "{stdout}");
        all_led(&client, 3).await;
        put_all(&client, 200, "b").await;
        check_all(&client, 200, "b").await;

        // A backup taken now holds the three ranges, tiling the key space, and every pair; one
        // racing a split reads the changed ranges again until its entries tile.
        let backup_dir = tempfile::tempdir().unwrap();
        let at = key(50);
        let racing_split = client.split(&at);
        let backup =
            flotilla_node::backup::backup(&client, &options.cluster_id, backup_dir.path(), |_| {});
        let (split, manifest) = tokio::join!(racing_split, backup);
        split.unwrap();
        let manifest = manifest.unwrap();
        let mut next_start = Some(String::new());
        for range in &manifest.ranges {
            assert_eq!(Some(&range.start_hex), next_start.as_ref(), "{manifest:?}");
            next_start.clone_from(&range.end_hex);
        }
        assert_eq!(next_start, None, "the last range is unbounded");
        let pairs: u64 = manifest.ranges.iter().map(|range| range.pair_count).sum();
        assert_eq!(pairs, 200);
        all_led(&client, 4).await;

        // A split at a range's first key cuts nothing: refused, with the reason.
        match client.split(&key(150)).await {
            Err(ClientError::Refused(error)) => {
                assert!(error.to_string().contains("past its first key"), "{error}");
            }
            other => panic!("a split at a range's first key answered {other:?}"),
        }
    });

    // A restarted node replays the split entries over the right halves it hosts.
    const RANGES: usize = 4;
    cluster.kill(NodeId(3));
    cluster.restart(binary(), NodeId(3)).unwrap();
    rt.block_on(async {
        let client = connect_when_ready(options.clone(), WAIT).await.unwrap();
        all_led(&client, RANGES).await;
        put_all(&client, 200, "c").await;
        check_all(&client, 200, "c").await;
        // Node 3's replicas hold what the others do: ask it alone for its status.
        let status = eventually("node 3 applied every range", || async {
            let status = client.status(NodeId(3)).await.ok()?;
            (status.groups.len() == RANGES + 1).then_some(status)
        })
        .await;
        assert_eq!(
            status.groups.len(),
            RANGES + 1,
            "the meta group and the ranges"
        );
    });
    cluster.stop();
}

/// A cluster that starts from one range grows ranges as its data grows: with
/// `ranges.split_bytes` at 4 KiB, 400 pairs of about 110 bytes end in many ranges, every value
/// readable and a scan returning each key once.
#[test]
fn a_range_splits_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = one_range_with(dir.path(), "[ranges]\nsplit_bytes = 4096\n");
    let options = cluster.client_options();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(options, WAIT).await.unwrap();
        let value = |index: u32| format!("{index:0>100}");
        for index in 0..400 {
            client.put(key(index), value(index)).await.unwrap();
        }
        // 44 KB in ranges of at most 4 KiB: at least 11 once the splits are done.
        eventually("the ranges split by size", || async {
            client.refresh_map().await.ok()?;
            (client.map().ranges().count() >= 11).then_some(())
        })
        .await;
        for index in 0..400 {
            let read = client.get(key(index)).await.unwrap();
            assert_eq!(read, Some(value(index).into_bytes()), "key {index}");
        }
        let scanned = all_keys(&client).await;
        assert_eq!(scanned, (0..400).map(key).collect::<Vec<_>>());
    });
    cluster.stop();
}

/// A hot range splits by load: with `ranges.split_load_rps` at 50, reads of 100 keys of the
/// one range, as fast as one client goes, split it at a sampled median key.
#[test]
fn a_hot_range_splits_by_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = one_range_with(dir.path(), "[ranges]\nsplit_load_rps = 50\n");
    let options = cluster.client_options();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(options, WAIT).await.unwrap();
        put_all(&client, 100, "a").await;
        let mut round = 0u32;
        eventually("the hot range split", || {
            round += 1;
            let client = &client;
            async move {
                for index in 0..100 {
                    client.get(key((index + round) % 100)).await.ok()?;
                }
                client.refresh_map().await.ok()?;
                (client.map().ranges().count() >= 2).then_some(())
            }
        })
        .await;
        check_all(&client, 100, "a").await;
    });
    cluster.stop();
}

/// Split ranges merge back: through the client, then through `flotilla range merge`; every key
/// keeps its value and a scan returns each once, in order, writes in sessions opened before a
/// merge go on after it, a neighbour past `ranges.merge_bytes` and the last range are refused
/// with their reasons, and a node restarted after the merges (which replays them from the
/// entries) serves the same data.
#[test]
fn split_ranges_merge_back_and_keep_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = one_range_with(dir.path(), "[ranges]\nmerge_bytes = 1024\n");
    let options = cluster.client_options();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(options.clone(), WAIT).await.unwrap();
        put_all(&client, 200, "a").await;
        for at in [50, 100, 150] {
            client.split(&key(at)).await.unwrap();
        }
        all_led(&client, 4).await;
        // Sessions are open in every range now; the merges keep them.
        put_all(&client, 200, "b").await;

        // Through the client: the range holding key 0 takes keys 50 to 99.
        let merged = client.merge(&key(0)).await.unwrap();
        let map = client.map();
        assert_eq!(map.ranges().count(), 3);
        let range = map.lookup(&key(75));
        assert_eq!((range.id, range.keys.end.clone()), (merged, Some(key(100))));
        check_all(&client, 200, "b").await;

        // Through the CLI: the range holding key 100 takes the last one.
        let (ok, stdout, stderr) = flotilla(
            &["range", "merge", "--encoding", "utf8", "key-120"],
            &cluster,
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("holds key-100 to (end)"), "{stdout}");
        all_led(&client, 2).await;
        put_all(&client, 200, "c").await;
        check_all(&client, 200, "c").await;

        // Keys 100 to 199 with their values hold about 1,100 bytes, more than merge_bytes.
        match client.merge(&key(0)).await {
            Err(ClientError::Refused(error)) => {
                assert!(error.to_string().contains("ranges.merge_bytes"), "{error}");
            }
            other => panic!("a merge of a neighbour too big answered {other:?}"),
        }
        // The last range has no right neighbour.
        let (ok, _, stderr) = flotilla(
            &["range", "merge", "--encoding", "utf8", "key-150"],
            &cluster,
        );
        assert!(!ok);
        assert!(stderr.contains("no right neighbour"), "{stderr}");
        check_all(&client, 200, "c").await;
    });

    // A restarted node replays the merge entries, which carry the merged ranges' state.
    cluster.kill(NodeId(3));
    cluster.restart(binary(), NodeId(3)).unwrap();
    rt.block_on(async {
        let client = connect_when_ready(options.clone(), WAIT).await.unwrap();
        all_led(&client, 2).await;
        check_all(&client, 200, "c").await;
        put_all(&client, 200, "d").await;
        check_all(&client, 200, "d").await;
        // Node 3's replicas of the two ranges hold what node 1's do: the merges replayed.
        let groups: Vec<_> = client.map().ranges().map(|range| range.group).collect();
        let held = |status: flotilla_node::api::NodeStatus| -> Vec<(_, u64)> {
            let mut held: Vec<_> = status
                .groups
                .iter()
                .filter(|group| groups.contains(&group.group))
                .map(|group| (group.group, group.stored_bytes))
                .collect();
            held.sort();
            held
        };
        eventually("node 3 holds what node 1 does", || async {
            let first = held(client.status(NodeId(1)).await.ok()?);
            let third = held(client.status(NodeId(3)).await.ok()?);
            (first.len() == 2 && first == third).then_some(())
        })
        .await;
    });
    cluster.stop();
}

/// Small neighbours merge by themselves: with `ranges.merge_below_bytes` at 64 KiB and no wait
/// after a split, a range split in four by command merges back into one, every key kept.
#[test]
fn small_ranges_merge_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = one_range_with(
        dir.path(),
        "[ranges]\nmerge_below_bytes = 65536\nmerge_wait_seconds = 0\n",
    );
    let options = cluster.client_options();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(options, WAIT).await.unwrap();
        put_all(&client, 200, "a").await;
        for at in [50, 100, 150] {
            // A split may find the range merging back already: tried until it is in the map.
            eventually("the split", || async {
                client.split(&key(at)).await.ok()?;
                Some(())
            })
            .await;
        }
        // One merge a placement round per node, each after its neighbour's freeze; with the
        // 256-range test beside it on two cores this took over a minute in CI.
        let wait = std::time::Duration::from_secs(300);
        eventually_within(wait, "the ranges merged back into one", || async {
            client.refresh_map().await.ok()?;
            (client.map().ranges().count() == 1).then_some(())
        })
        .await;
        all_led(&client, 1).await;
        check_all(&client, 200, "a").await;
        put_all(&client, 200, "b").await;
        check_all(&client, 200, "b").await;
    });
    cluster.stop();
}

/// Small neighbours merge by themselves only while cold: with `ranges.merge_below_rps` at 1,
/// two small ranges read by four tasks as fast as they go (hundreds of requests per second on
/// a quiet machine; at 5 the threshold was crossed on a loaded one, where a read took over
/// half a second) stay apart; once the reads stop they merge.
#[test]
fn small_ranges_merge_only_while_cold() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = one_range_with(
        dir.path(),
        "[ranges]\nmerge_below_bytes = 65536\nmerge_below_rps = 1\nmerge_wait_seconds = 0\n",
    );
    let options = cluster.client_options();
    let rt = runtime();
    rt.block_on(async {
        let client = connect_when_ready(options, WAIT).await.unwrap();
        put_all(&client, 100, "a").await;
        // The reads start before the split, so no load window between the split and the
        // reads can find the halves cold (on a busy machine one did, and they merged).
        let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut readers = tokio::task::JoinSet::new();
        for task in 0..4u32 {
            let (client, reading) = (client.clone(), std::sync::Arc::clone(&reading));
            readers.spawn(async move {
                let mut index = task;
                while reading.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client.get(key(index % 100)).await;
                    index += 7;
                }
            });
        }
        eventually("the split", || async {
            client.split(&key(50)).await.ok()?;
            Some(())
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        while readers.join_next().await.is_some() {}
        client.refresh_map().await.unwrap();
        assert_eq!(
            client.map().ranges().count(),
            2,
            "hot ranges merged while read"
        );
        let wait = std::time::Duration::from_secs(300);
        eventually_within(wait, "the cold ranges merged", || async {
            client.refresh_map().await.ok()?;
            (client.map().ranges().count() == 1).then_some(())
        })
        .await;
        check_all(&client, 100, "a").await;
    });
    cluster.stop();
}

/// A cluster grows from one range to hundreds as data comes, and merges back as it goes: with
/// `ranges.split_bytes` at 1 KiB and `ranges.merge_below_bytes` at 512 bytes, 3,000 pairs of
/// about 110 bytes written by eight tasks (with reads and scans among them) split the one range
/// into at least 256; every value reads back and a scan returns each key once. Then all but one
/// key in thirty are deleted, a quieter load, and the ranges merge back to 64 or fewer (each
/// node merges one range a placement round), every remaining key readable and every deleted
/// one gone.
#[test]
#[ignore = "found a read unavailable for over 10 s while hundreds of ranges merge (issue 20, \
            open); run with --ignored"]
fn ranges_split_into_hundreds_and_merge_back() {
    const KEYS: u32 = 3_000;
    const KEPT_EVERY: u32 = 30;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = one_range_with(
        dir.path(),
        "[ranges]\nsplit_bytes = 1024\nmerge_below_bytes = 512\nmerge_wait_seconds = 1\n",
    );
    let options = cluster.client_options();
    let rt = runtime();
    let wide = |index: u32| format!("{index:0>100}");
    let wide_key = |index: u32| format!("key-{index:05}").into_bytes();
    rt.block_on(async {
        let client = std::sync::Arc::new(connect_when_ready(options, WAIT).await.unwrap());
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..8u32)
            .map(|task| {
                let client = client.clone();
                tokio::spawn(async move {
                    for index in (task..KEYS).step_by(8) {
                        client.put(wide_key(index), wide(index)).await.unwrap();
                        if index % 50 == task {
                            let read = client.get(wide_key(index)).await.unwrap();
                            assert_eq!(read, Some(wide(index).into_bytes()));
                            let mut scan = client.scan(wide_key(index)..wide_key(index + 20));
                            while scan.next_page().await.unwrap().is_some() {}
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Each phase takes 30-80 s on a 2-core machine running other clusters beside.
        let phase = std::time::Duration::from_secs(300);
        eventually_within(phase, "at least 256 ranges", || async {
            client.refresh_map().await.ok()?;
            (client.map().ranges().count() >= 256).then_some(())
        })
        .await;
        let grown = client.map().ranges().count();
        eprintln!("{grown} ranges after {:?}", started.elapsed());
        for index in 0..KEYS {
            let read = client.get(wide_key(index)).await.unwrap();
            assert_eq!(read, Some(wide(index).into_bytes()), "key {index}");
        }
        let scanned = all_keys(&client).await;
        assert_eq!(scanned, (0..KEYS).map(wide_key).collect::<Vec<_>>());

        // The quieter load: most keys go, and the small ranges merge back.
        for index in (0..KEYS).filter(|index| index % KEPT_EVERY != 0) {
            client.delete(wide_key(index)).await.unwrap();
        }
        eventually_within(phase, "the ranges merged back to a quarter", || async {
            client.refresh_map().await.ok()?;
            (client.map().ranges().count() <= 64).then_some(())
        })
        .await;
        eprintln!(
            "{} ranges after {:?}",
            client.map().ranges().count(),
            started.elapsed()
        );
        for index in 0..KEYS {
            let read = client.get(wide_key(index)).await.unwrap();
            let expected = (index % KEPT_EVERY == 0).then(|| wide(index).into_bytes());
            assert_eq!(read, expected, "key {index}");
        }
        let scanned = all_keys(&client).await;
        let kept: Vec<Vec<u8>> = (0..KEYS)
            .filter(|index| index % KEPT_EVERY == 0)
            .map(wide_key)
            .collect();
        assert_eq!(scanned, kept);
    });
    cluster.stop();
}

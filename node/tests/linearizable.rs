//! The client history of a real cluster under crashes is linearizable, key by key (TESTING.md,
//! property 8): clients get, put, delete and compare-and-swap a few keys of every range while
//! nodes are killed with SIGKILL and restarted, and a leader is frozen with SIGSTOP and woken; every operation's call and response are
//! recorded in real-time order, and each key's history is checked against a sequential
//! register with the Wing-Gong-Lowe checker of `todc-utils`.
//!
//! What the checker accepts as "may or may not have happened": a write whose outcome the
//! client reports as unknown (a timed-out compare-and-swap, a put or delete that gave up after
//! a timeout) and the first attempts of a retried put or delete. Those get their response at
//! the end of the history, so they may take effect at any point after their call, or never.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::demo::{LocalCluster, connect_when_ready};
use flotilla_node::{Client, ClientError};
use flotilla_raft::NodeId;
use flotilla_storage::{Command, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use todc_utils::{Action, History, Specification, WGLChecker};

mod common;
use common::{WAIT, binary, eventually, runtime};

/// A register holding one key's value: `None` is absent, a value is the writer's unique id.
struct KeySpec;

/// What one operation did, as the checker sees it (responses carry the results).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    /// A get that returned this.
    Read(Option<u64>),
    /// A put (`Some`) or delete (`None`) that reported the value it replaced.
    Swap {
        new: Option<u64>,
        previous: Option<u64>,
    },
    /// A write whose effect is unknown: the first attempts of a retried put or delete, or one
    /// that gave up after a timeout.
    MaybeWrite(Option<u64>),
    /// A compare-and-swap with its reported outcome.
    Cas {
        expected: Option<u64>,
        new: Option<u64>,
        swapped: bool,
        current: Option<u64>,
    },
    /// A compare-and-swap whose outcome is unknown: it swaps if it matches wherever it lands.
    MaybeCas {
        expected: Option<u64>,
        new: Option<u64>,
    },
}

impl Specification for KeySpec {
    type State = Option<u64>;
    type Operation = Op;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &Op, state: &Option<u64>) -> (bool, Option<u64>) {
        match op {
            Op::Read(value) => (value == state, *state),
            Op::Swap { new, previous } => (
                previous == state,
                if previous == state { *new } else { *state },
            ),
            Op::MaybeWrite(new) => (true, *new),
            Op::Cas {
                expected,
                new,
                swapped,
                current,
            } => {
                let valid = current == state && (expected == state) == *swapped;
                (valid, if valid && *swapped { *new } else { *state })
            }
            Op::MaybeCas { expected, new } => (true, if expected == state { *new } else { *state }),
        }
    }
}

/// One event of the history, in the order they happened.
#[derive(Clone, Debug)]
enum Event {
    /// Operation `id` on key `key` was called.
    Call { id: usize, key: usize },
    /// Operation `id` finished with this result.
    Return { id: usize, op: Op },
    /// Operation `id` may have taken effect at any time after its call: it ends with the
    /// history.
    Unknown { id: usize, op: Op },
    /// Operation `id` certainly had no effect: it leaves the history.
    Failed { id: usize },
}

/// The shared record of every client's operations.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    next_id: AtomicUsize,
}

impl Recorder {
    fn call(&self, key: usize) -> usize {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.push(Event::Call { id, key });
        id
    }

    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    /// Operations answered so far.
    fn completed(&self) -> usize {
        completed(&self.events.lock().unwrap())
    }
}

/// Each key's history for the checker: calls and responses in real-time order, then the
/// responses of operations with an unknown outcome. Failed operations are left out.
fn histories(events: &[Event]) -> BTreeMap<usize, Vec<(usize, Action<Op>)>> {
    let mut key_of = BTreeMap::new();
    let mut failed = std::collections::BTreeSet::new();
    for event in events {
        match event {
            Event::Call { id, key } => {
                key_of.insert(*id, *key);
            }
            Event::Failed { id } => {
                failed.insert(*id);
            }
            Event::Return { .. } | Event::Unknown { .. } => {}
        }
    }
    let mut histories: BTreeMap<usize, Vec<(usize, Action<Op>)>> = BTreeMap::new();
    let mut unknown: BTreeMap<usize, Vec<(usize, Action<Op>)>> = BTreeMap::new();
    // An operation with an unknown outcome needs a call of its own op kind; the call's
    // payload is not used by the checker (it applies the response).
    let placeholder = Op::Read(None);
    for event in events {
        match event {
            Event::Call { id, key } if !failed.contains(id) => histories
                .entry(*key)
                .or_default()
                .push((*id, Action::Call(placeholder.clone()))),
            Event::Return { id, op } if !failed.contains(id) => histories
                .entry(key_of[id])
                .or_default()
                .push((*id, Action::Response(op.clone()))),
            Event::Unknown { id, op } => unknown
                .entry(key_of[id])
                .or_default()
                .push((*id, Action::Response(op.clone()))),
            _ => {}
        }
    }
    for (key, tail) in unknown {
        histories.entry(key).or_default().extend(tail);
    }
    // The checker sizes its tables by the largest process id: number them per key.
    for history in histories.values_mut() {
        let mut renumber = BTreeMap::new();
        for (id, _) in history.iter_mut() {
            let next = renumber.len();
            *id = *renumber.entry(*id).or_insert(next);
        }
    }
    histories
}

fn linearizable(history: &[(usize, Action<Op>)]) -> bool {
    history.is_empty()
        || WGLChecker::<KeySpec>::is_linearizable(History::from_actions(history.to_vec()))
}

fn value_id(bytes: Option<Vec<u8>>) -> Option<u64> {
    bytes.map(|bytes| {
        u64::from_be_bytes(
            bytes
                .try_into()
                .unwrap_or_else(|bytes| panic!("a value no client wrote: {bytes:?}")),
        )
    })
}

fn value_bytes(id: Option<u64>) -> Option<Vec<u8>> {
    id.map(|id| id.to_be_bytes().to_vec())
}

/// The most earlier attempts of one write the history can hold (the client's deadline allows
/// about ten timed-out attempts; an attempt lost with its connection fails faster).
const EARLIER_ATTEMPTS_MAX: usize = 16;

/// One client task: random operations on `keys` until `stop`, each recorded.
async fn client_loop(
    client: Client,
    worker: u64,
    keys: Arc<Vec<Vec<u8>>>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(worker);
    let mut last_seen: BTreeMap<usize, Option<u64>> = BTreeMap::new();
    for seq in 1u64.. {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let key = rng.random_range(0..keys.len());
        let unique = (worker << 32) | seq;
        let roll = rng.random_range(0..100);
        let id = recorder.call(key);
        let key_bytes = keys[key].clone();
        let event = match roll {
            0..45 => {
                let event = get(&client, id, key_bytes).await;
                if let Event::Return {
                    op: Op::Read(value),
                    ..
                } = &event
                {
                    last_seen.insert(key, *value);
                }
                event
            }
            // 5 % deletes, the rest puts of a value no one else writes.
            45..80 => write(&client, &recorder, id, key, key_bytes, Some(unique)).await,
            80..85 => write(&client, &recorder, id, key, key_bytes, None).await,
            _ => {
                let expected = last_seen.get(&key).copied().flatten();
                let event = compare_and_swap(&client, id, key_bytes, expected, unique).await;
                if let Event::Return {
                    op:
                        Op::Cas {
                            new,
                            swapped,
                            current,
                            ..
                        },
                    ..
                } = &event
                {
                    last_seen.insert(key, if *swapped { *new } else { *current });
                }
                event
            }
        };
        recorder.push(event);
        tokio::time::sleep(Duration::from_millis(rng.random_range(2..12))).await;
    }
}

async fn get(client: &Client, id: usize, key: Vec<u8>) -> Event {
    match client.get(&key).await {
        Ok(value) => Event::Return {
            id,
            op: Op::Read(value_id(value)),
        },
        Err(_) => Event::Failed { id },
    }
}

/// A put of `new` (a delete for `None`). The client may retry it after attempts that got no
/// answer; each may have applied too, at any later time. Those earlier attempts are called
/// with the write (placeholders, `EARLIER_ATTEMPTS_MAX` of them), and once the client answers,
/// as many as it reports ambiguous are left with an unknown outcome and the rest dropped.
async fn write(
    client: &Client,
    recorder: &Recorder,
    id: usize,
    key: usize,
    key_bytes: Vec<u8>,
    new: Option<u64>,
) -> Event {
    let earlier: Vec<usize> = (0..EARLIER_ATTEMPTS_MAX)
        .map(|_| recorder.call(key))
        .collect();
    let command = match new {
        Some(value) => Command::Put {
            key: key_bytes,
            value: value.to_be_bytes().to_vec(),
        },
        None => Command::Delete { key: key_bytes },
    };
    let (ambiguous, event) = match client.command(command).await {
        Ok(outcome) => {
            let Response::Written { previous } = outcome.response else {
                panic!("a write answered {:?}", outcome.response);
            };
            let op = Op::Swap {
                new,
                previous: value_id(previous),
            };
            (outcome.ambiguous_attempts, Event::Return { id, op })
        }
        Err(error @ (ClientError::Unavailable { .. } | ClientError::NoLeader { .. }))
            if error.ambiguous_attempts() > 0 =>
        {
            (
                error.ambiguous_attempts() - 1,
                Event::Unknown {
                    id,
                    op: Op::MaybeWrite(new),
                },
            )
        }
        Err(_) => (0, Event::Failed { id }),
    };
    let ambiguous = usize::try_from(ambiguous).unwrap();
    assert!(
        ambiguous <= EARLIER_ATTEMPTS_MAX,
        "a write with {ambiguous} ambiguous attempts: raise EARLIER_ATTEMPTS_MAX"
    );
    for (n, &attempt) in earlier.iter().enumerate() {
        recorder.push(if n < ambiguous {
            Event::Unknown {
                id: attempt,
                op: Op::MaybeWrite(new),
            }
        } else {
            Event::Failed { id: attempt }
        });
    }
    event
}

/// A compare-and-swap from `expected` to a value no one else writes. The client never retries
/// one after an attempt that may have applied, so at most one attempt can take effect.
async fn compare_and_swap(
    client: &Client,
    id: usize,
    key: Vec<u8>,
    expected: Option<u64>,
    unique: u64,
) -> Event {
    let new = Some(unique);
    let command = Command::CompareAndSwap {
        key,
        expected: value_bytes(expected),
        new: value_bytes(new),
    };
    match client.command(command).await {
        Ok(outcome) => {
            let Response::CompareAndSwap { swapped, current } = outcome.response else {
                panic!("a compare-and-swap answered {:?}", outcome.response);
            };
            let op = Op::Cas {
                expected,
                new,
                swapped,
                current: value_id(current),
            };
            Event::Return { id, op }
        }
        Err(
            ClientError::Ambiguous(_)
            | ClientError::Refused(flotilla_node::api::ApiError::OutcomeUnknown),
        ) => Event::Unknown {
            id,
            op: Op::MaybeCas { expected, new },
        },
        Err(error @ (ClientError::Unavailable { .. } | ClientError::NoLeader { .. }))
            if error.ambiguous_attempts() > 0 =>
        {
            Event::Unknown {
                id,
                op: Op::MaybeCas { expected, new },
            }
        }
        Err(_) => Event::Failed { id },
    }
}

const WORKERS: u64 = 6;
const KEYS_PER_RANGE: usize = 3;

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
    let what = format!("node {} to catch up after its restart", node.0);
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

fn completed(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|event| matches!(event, Event::Return { .. }))
        .count()
}

/// The most operations of unknown outcome one key's history may hold: each stays pending to
/// the end of the history, and the checker's search grows with their number.
const UNKNOWN_PER_KEY_MAX: usize = 24;

#[test]
fn a_history_of_gets_puts_and_swaps_under_kill_9_and_restart_is_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    // Small snapshots, so replicas compact during the run and a restarted node may catch up
    // from one.
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "[raft]\nsnapshot_entries = 200\n").unwrap();
    let mut cluster =
        LocalCluster::start_with_config(binary(), dir.path(), 3, 4, Some(config)).unwrap();
    let recorder = Arc::new(Recorder::default());
    let (keys, marks) = runtime().block_on(Box::pin(async {
        let client = connect_when_ready(cluster.client_options(), WAIT)
            .await
            .unwrap();
        let keys = Arc::new(keys_of(&client));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (1..=WORKERS)
            .map(|worker| {
                tokio::spawn(client_loop(
                    client.clone(),
                    worker,
                    Arc::clone(&keys),
                    Arc::clone(&recorder),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        let mut marks = crash_twice(&mut cluster, &client, &recorder).await;
        marks.extend(pause_once(&cluster, &client, &recorder).await);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        stop.store(true, Ordering::Release);
        for worker in workers {
            worker.await.unwrap();
        }
        marks.push(("stopped".to_string(), recorder.completed()));
        (keys, marks)
    }));
    cluster.stop();
    check(&recorder.events.lock().unwrap(), &keys, &marks);
}

/// `KEYS_PER_RANGE` keys in each range of the map.
fn keys_of(client: &Client) -> Vec<Vec<u8>> {
    client
        .map()
        .ranges()
        .flat_map(|range| {
            (0..KEYS_PER_RANGE).map(move |n| {
                let mut key = range.keys.start.clone();
                key.extend_from_slice(format!("-lin-{n}").as_bytes());
                key
            })
        })
        .collect()
}

/// The nemesis: two crashes (SIGKILL) of different nodes, each of the node leading the most
/// groups at the time, each restarted 2.5 s later. The restarted node gets its preferred
/// groups back, so the second crash hits another node; with three nodes, one of the two has
/// the higher id of a pair, so its peer dialed it and must notice the crash to dial again.
/// Returns the operations completed at each step.
async fn crash_twice(
    cluster: &mut LocalCluster,
    client: &Client,
    recorder: &Recorder,
) -> Vec<(String, usize)> {
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

/// The nemesis, last part: the node leading the most groups freezes (SIGSTOP) for 2.5 s and
/// runs again. The others elect new leaders meanwhile; the frozen one wakes up believing it
/// still leads, with requests of its clients in flight, which is where a stale read or a
/// write acknowledged by a deposed leader would show.
async fn pause_once(
    cluster: &LocalCluster,
    client: &Client,
    recorder: &Recorder,
) -> Vec<(String, usize)> {
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let victim = busiest_leader(client, None).await;
    assert!(
        cluster.pause(victim),
        "node {} could not be paused",
        victim.0
    );
    let paused = (format!("paused node {}", victim.0), recorder.completed());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        cluster.resume(victim),
        "node {} could not be resumed",
        victim.0
    );
    vec![
        paused,
        (format!("resumed node {}", victim.0), recorder.completed()),
    ]
}

/// The checks on a finished run: operations completed in every window of the nemesis, every
/// key saw reads and writes, and every key's history is linearizable.
fn check(events: &[Event], keys: &[Vec<u8>], marks: &[(String, usize)]) {
    // Each window between nemesis steps (2 s or more) completed operations: the cluster served
    // while a node was down and after it came back, so the history covers both. (This test is
    // how a restarted node's unreachability was found: its clients and the peer that dials it
    // kept their connections to its previous process until the 10 s idle timeout. The
    // transport test `a_crashed_peer_that_comes_back_resets_the_dead_connection_at_once` is
    // that bug's regression test; here the wait for the restarted node to catch up absorbs
    // such a stall.)
    let counts: Vec<usize> = marks.iter().map(|(_, count)| *count).collect();
    assert!(
        counts.windows(2).all(|pair| pair[1] > pair[0]) && counts[0] > 0,
        "operations completed at each step: {marks:?}"
    );
    let histories = histories(events);
    assert_eq!(histories.len(), keys.len(), "every key was used");
    let unknown = |history: &[(usize, Action<Op>)]| {
        history
            .iter()
            .filter(|(_, action)| {
                matches!(
                    action,
                    Action::Response(Op::MaybeWrite(_) | Op::MaybeCas { .. })
                )
            })
            .count()
    };
    println!(
        "{} operations completed, {} with an unknown outcome, on {} keys (at most {} per key); {marks:?}",
        completed(events),
        histories
            .values()
            .map(|history| unknown(history))
            .sum::<usize>(),
        keys.len(),
        histories.values().map(Vec::len).max().unwrap_or(0) / 2,
    );
    for (key, history) in &histories {
        let name = String::from_utf8_lossy(&keys[*key]);
        let (reads, writes) = reads_and_writes(history);
        assert!(
            reads > 0 && writes > 0,
            "key {name}: {reads} reads of a value, {writes} acknowledged writes"
        );
        assert!(
            unknown(history) <= UNKNOWN_PER_KEY_MAX,
            "key {name}: {} operations of unknown outcome, too many to check",
            unknown(history)
        );
        assert!(
            linearizable(history),
            "key {name} ({marks:?}): the history is not linearizable:\n{}",
            history
                .iter()
                .map(|(process, action)| format!("{process}: {action:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Reads that returned a value, and acknowledged writes of a value, in one key's history.
fn reads_and_writes(history: &[(usize, Action<Op>)]) -> (usize, usize) {
    let count = |wanted: fn(&Op) -> bool| {
        history
            .iter()
            .filter(|(_, action)| matches!(action, Action::Response(op) if wanted(op)))
            .count()
    };
    (
        count(|op| matches!(op, Op::Read(Some(_)))),
        count(|op| {
            matches!(
                op,
                Op::Swap { new: Some(_), .. } | Op::Cas { swapped: true, .. }
            )
        }),
    )
}

/// The checker and this file's modelling bite: histories built from events the way the test
/// records them, with the anomalies a broken store would show.
mod the_checker {
    use super::*;

    /// Events of sequential operations on key 0: each op called, then answered.
    fn sequential(ops: &[Op]) -> Vec<Event> {
        ops.iter()
            .enumerate()
            .flat_map(|(id, op)| {
                [
                    Event::Call { id, key: 0 },
                    Event::Return { id, op: op.clone() },
                ]
            })
            .collect()
    }

    fn check(events: &[Event]) -> bool {
        histories(events)
            .values()
            .all(|history| linearizable(history))
    }

    fn put(new: u64, previous: Option<u64>) -> Op {
        Op::Swap {
            new: Some(new),
            previous,
        }
    }

    #[test]
    fn accepts_reads_of_the_latest_write() {
        assert!(check(&sequential(&[
            Op::Read(None),
            put(1, None),
            Op::Read(Some(1)),
            put(2, Some(1)),
            Op::Read(Some(2)),
        ])));
    }

    #[test]
    fn rejects_a_stale_read() {
        assert!(!check(&sequential(&[
            put(1, None),
            put(2, Some(1)),
            Op::Read(Some(1)),
        ])));
    }

    #[test]
    fn rejects_a_lost_acknowledged_write() {
        assert!(!check(&sequential(&[put(1, None), Op::Read(None)])));
    }

    #[test]
    fn rejects_a_write_that_reports_the_wrong_previous_value() {
        assert!(!check(&sequential(&[put(1, None), put(2, None)])));
    }

    #[test]
    fn rejects_a_swap_that_reports_the_wrong_outcome() {
        let swapped_on_a_mismatch = Op::Cas {
            expected: Some(7),
            new: Some(2),
            swapped: true,
            current: Some(1),
        };
        assert!(!check(&sequential(&[put(1, None), swapped_on_a_mismatch])));
        let refused_on_a_match = Op::Cas {
            expected: Some(1),
            new: Some(2),
            swapped: false,
            current: Some(1),
        };
        assert!(!check(&sequential(&[put(1, None), refused_on_a_match])));
    }

    #[test]
    fn accepts_concurrent_writes_in_either_order() {
        // 0 and 1 overlap; reads after both see one of them, and the other's previous value.
        let events = vec![
            Event::Call { id: 0, key: 0 },
            Event::Call { id: 1, key: 0 },
            Event::Return {
                id: 1,
                op: put(2, Some(1)),
            },
            Event::Return {
                id: 0,
                op: put(1, None),
            },
            Event::Call { id: 2, key: 0 },
            Event::Return {
                id: 2,
                op: Op::Read(Some(2)),
            },
        ];
        assert!(check(&events));
    }

    #[test]
    fn lets_an_unknown_write_apply_late_or_never_but_only_once() {
        let unknown_then = |reads: &[Option<u64>]| {
            let mut events = vec![
                Event::Call { id: 0, key: 0 },
                Event::Unknown {
                    id: 0,
                    op: Op::MaybeWrite(Some(1)),
                },
            ];
            for (n, read) in reads.iter().enumerate() {
                events.push(Event::Call { id: n + 1, key: 0 });
                events.push(Event::Return {
                    id: n + 1,
                    op: Op::Read(*read),
                });
            }
            check(&events)
        };
        assert!(unknown_then(&[None, None]), "never applied");
        assert!(unknown_then(&[None, Some(1), Some(1)]), "applied late");
        assert!(!unknown_then(&[Some(1), None]), "applied, then undone");
    }

    /// A put retried twice after attempts without an answer: both earlier attempts applied,
    /// around another client's put, before the last one answered. One unknown write per
    /// ambiguous attempt explains it; a single one cannot.
    #[test]
    fn needs_one_unknown_write_per_ambiguous_attempt() {
        let history = |earlier_attempts: usize| {
            let mut events = vec![Event::Call { id: 0, key: 0 }];
            let earlier: Vec<usize> = (1..=earlier_attempts).collect();
            events.extend(earlier.iter().map(|&id| Event::Call { id, key: 0 }));
            let other = earlier_attempts + 1;
            events.push(Event::Call { id: other, key: 0 });
            events.push(Event::Return {
                id: other,
                op: put(2, Some(1)),
            });
            events.push(Event::Return {
                id: 0,
                op: put(1, Some(1)),
            });
            events.push(Event::Call {
                id: other + 1,
                key: 0,
            });
            events.push(Event::Return {
                id: other + 1,
                op: Op::Read(Some(1)),
            });
            events.extend(earlier.iter().map(|&id| Event::Unknown {
                id,
                op: Op::MaybeWrite(Some(1)),
            }));
            check(&events)
        };
        assert!(history(2));
        assert!(!history(1));
    }

    #[test]
    fn drops_failed_operations() {
        let events = vec![
            Event::Call { id: 0, key: 0 },
            Event::Failed { id: 0 },
            Event::Call { id: 1, key: 0 },
            Event::Return {
                id: 1,
                op: Op::Read(None),
            },
        ];
        assert!(check(&events));
    }
}

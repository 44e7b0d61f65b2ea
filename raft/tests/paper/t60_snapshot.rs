//! Log compaction: Raft §7 (snapshots, InstallSnapshot in chunks).

use crate::util::*;
use flotilla_raft::{
    CompactError, Config, GroupId, LogIndex, LogReader, MessageBody, Persist, Ready, Snapshot,
    SnapshotCheck, SnapshotMeta, StepError,
};

/// A single-voter leader that applied entries 1 (blank) to 5.
fn leader_that_applied_five() -> Node {
    let mut leader = new_leader(1, &[1]);
    for index in 2..=5 {
        leader.propose(format!("1/{index}").into_bytes()).unwrap();
    }
    let _ = leader.take();
    let _ = leader.take();
    assert_eq!(leader.log().applied().0, 5);
    leader
}

fn meta(last: (u64, u64), voter_ids: &[u64]) -> SnapshotMeta {
    SnapshotMeta {
        last: log_id(last.0, last.1),
        membership: voters(voter_ids),
    }
}

/// Raft §7: "each server takes snapshots independently, covering just the committed entries";
/// the snapshot reaches the caller in `Ready.persist.compaction`, and storing it drops the
/// entries it covers. A snapshot past the applied index is refused.
#[test]
fn compact_hands_the_snapshot_to_the_caller_and_drops_the_log_prefix() {
    let mut leader = leader_that_applied_five();
    leader.compact(LogIndex(3), b"state@3".to_vec()).unwrap();
    let snapshot = Snapshot {
        meta: meta((1, 3), &[1]),
        data: b"state@3".to_vec(),
    };
    let expected = Ready {
        persist: Persist {
            compaction: Some(snapshot.clone()),
            ..Persist::default()
        },
        ..Ready::default()
    };
    assert_eq!(leader.take(), expected);
    assert_eq!(leader.log().first_index().0, 4);
    assert_eq!(leader.stored_entries(), vec![entry(1, 4), entry(1, 5)]);
    assert_eq!(leader.log().store().snapshot().unwrap(), snapshot);

    let refused = leader.compact(LogIndex(9), Vec::new());
    let not_applied = CompactError::NotApplied {
        index: LogIndex(9),
        applied: LogIndex(5),
    };
    assert_eq!(refused.unwrap_err().to_string(), not_applied.to_string());
}

/// Raft §7: "the leader must occasionally send snapshots to followers that lag behind"; with
/// small chunks the snapshot goes out in offset order, the follower acknowledges each, and
/// installs the whole once the last one arrives.
#[test]
fn a_lagging_follower_receives_the_snapshot_in_chunks_and_restores_it() {
    let mut net = group_with_3_behind_the_snapshot();
    net.tick(1);
    net.tick(1);

    let chunks: Vec<(u64, Vec<u8>, bool)> = net
        .delivered
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::InstallSnapshot {
                offset, data, done, ..
            } => Some((*offset, data.clone(), *done)),
            _ => None,
        })
        .collect();
    let expected = vec![
        (0, b"0123".to_vec(), false),
        (4, b"4567".to_vec(), false),
        (8, b"89".to_vec(), true),
    ];
    assert_eq!(chunks, expected);
    let leader_snapshot = net.node(1).log().store().snapshot().unwrap();
    assert_eq!(
        net.node(3).log().store().snapshot().unwrap(),
        leader_snapshot
    );
    assert_eq!(net.node(3).log().committed().0, 6);
    assert_eq!(net.node(3).log().applied().0, 6);
}

/// A follower of leader 2 in term 1 with entries of `terms`, `commit` of them applied.
fn follower_with(terms: &[u64], commit: u64) -> Node {
    let store = store_with_log(voters(&[1, 2, 3]), terms, 1, commit);
    let mut follower = node_over(config(1), store);
    follower.deliver(heartbeat(2, 1, 1, 0, 0));
    let _ = follower.take();
    follower
}

/// Raft §7: a snapshot that covers no more than what the follower already committed is
/// ignored; the follower answers with what it holds.
#[test]
fn a_stale_snapshot_is_ignored() {
    let mut follower = follower_with(&[1, 1, 1, 1, 1], 5);
    let chunk = snapshot_chunk(2, 1, 1, meta((1, 3), &[1, 2, 3]), (0, b"old"), true);
    follower.deliver(chunk);
    let expected = Ready {
        persisted_messages: vec![accepted(1, 2, 1, 5)],
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
    assert_eq!(follower.stored_entries().len(), 5);
}

/// Raft §7: "If instead the follower receives a snapshot that describes a prefix of its log
/// ... entries covered by the snapshot are deleted but entries following the snapshot are still
/// valid and must be retained." Here the entries stay and only the commit index moves.
#[test]
fn a_snapshot_of_a_prefix_of_the_log_keeps_the_entries_after_it() {
    let mut follower = follower_with(&[1, 1, 1, 1, 1, 1], 2);
    let chunk = snapshot_chunk(2, 1, 1, meta((1, 4), &[1, 2, 3]), (0, b"state@4"), true);
    follower.deliver(chunk);
    let expected = Ready {
        persisted_messages: vec![accepted(1, 2, 1, 4)],
        persist: Persist {
            hard_state: Some(hard_state(1, None, 4)),
            commit_only: true,
            ..Persist::default()
        },
        committed: vec![entry(1, 3), entry(1, 4)],
        committed_before_persist: 2,
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
    assert_eq!(follower.log().last_index().0, 6);
}

/// Raft §7: "Usually the snapshot will contain new information not already in the recipient's
/// log. In this case, the follower discards its entire log." The snapshot is persisted and
/// restored through the Ready.
#[test]
fn a_snapshot_that_conflicts_with_the_log_replaces_it() {
    let mut follower = follower_with(&[1, 1, 1, 1], 2);
    let chunk = snapshot_chunk(2, 1, 1, meta((1, 5), &[1, 2, 3]), (0, b"state@5"), true);
    follower.deliver(chunk);
    let snapshot = Snapshot {
        meta: meta((1, 5), &[1, 2, 3]),
        data: b"state@5".to_vec(),
    };
    let expected = Ready {
        persisted_messages: vec![accepted(1, 2, 1, 5)],
        persist: Persist {
            snapshot: Some(snapshot),
            hard_state: Some(hard_state(1, None, 5)),
            commit_only: true,
            ..Persist::default()
        },
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
    assert_eq!(follower.stored_entries(), vec![]);
    assert_eq!(follower.log().applied().0, 5);
}

/// A whole snapshot whose data fails the application's `SnapshotCheck` is dropped: the step
/// says why, nothing is persisted or installed and no acknowledgement leaves; the leader is
/// answered offset 0, which starts the snapshot over. The same snapshot with data
/// that passes is installed.
#[test]
fn a_snapshot_whose_data_fails_the_check_is_dropped_and_sent_again() {
    fn states_only(group: GroupId, meta: &SnapshotMeta, data: &[u8]) -> Result<(), String> {
        if data.starts_with(b"state@") {
            Ok(())
        } else {
            Err(format!("group {group} at {}: not a state", meta.last.index))
        }
    }
    let config = Config {
        group: GroupId(7),
        snapshot_check: SnapshotCheck(states_only),
        ..config(1)
    };
    let mut follower = node_over(
        config,
        store_with_log(voters(&[1, 2, 3]), &[1, 1, 1, 1], 1, 2),
    );
    follower.deliver(heartbeat(2, 1, 1, 0, 0));
    let _ = follower.take();

    let bad = snapshot_chunk(2, 1, 1, meta((1, 5), &[1, 2, 3]), (0, b"garbage"), true);
    let refused = follower.step(bad);
    let expected = StepError::SnapshotRefused {
        from: flotilla_raft::NodeId(2),
        index: LogIndex(5),
        reason: "group g7 at i5: not a state".to_owned(),
    };
    assert_eq!(refused, Err(expected));
    // Nothing persisted or acknowledged; the leader is asked to start over (offset 0).
    let restart = message(
        1,
        2,
        1,
        MessageBody::SnapshotResponse {
            snapshot_index: LogIndex(5),
            transfer: 1,
            next_offset: 0,
        },
    );
    let expected = Ready {
        persisted_messages: vec![restart.clone()],
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
    assert_eq!(follower.stored_entries().len(), 4);
    assert_eq!(follower.log().applied().0, 2);

    // A late copy of its last chunk: the follower has nothing and asks from the start again.
    let again = snapshot_chunk(2, 1, 1, meta((1, 5), &[1, 2, 3]), (4, b"bage"), true);
    follower.deliver(again);
    assert_eq!(follower.take().persisted_messages, vec![restart]);

    let good = snapshot_chunk(2, 1, 1, meta((1, 5), &[1, 2, 3]), (0, b"state@5"), true);
    follower.deliver(good);
    let installed = follower
        .take()
        .persist
        .snapshot
        .map(|snapshot| snapshot.data);
    assert_eq!(installed, Some(b"state@5".to_vec()));
    assert_eq!(follower.log().applied().0, 5);
}

/// With `snapshot_staging` a follower gathers nothing in memory: each chunk is handed to the
/// caller to stage, the last one is reported received, and nothing is acknowledged or
/// installed until the caller checked what it staged. Refused, it is dropped and asked for
/// again from the start (an answer of offset 0); installed, it replaces the log with the data the caller stores and
/// is acknowledged once persisted. A replica that campaigns meanwhile installs nothing.
#[test]
fn a_staging_follower_hands_out_chunks_and_installs_only_once_the_caller_checked() {
    let staging = Config {
        snapshot_staging: true,
        ..config(1)
    };
    let new_follower = || {
        let mut follower = node_over(
            staging.clone(),
            store_with_log(voters(&[1, 2, 3]), &[1, 1, 1, 1], 1, 2),
        );
        follower.deliver(heartbeat(2, 1, 1, 0, 0));
        let _ = follower.take();
        follower
    };
    let snapshot = meta((1, 5), &[1, 2, 3]);
    let response = |next_offset: u64| {
        message(
            1,
            2,
            1,
            MessageBody::SnapshotResponse {
                snapshot_index: LogIndex(5),
                transfer: 1,
                next_offset,
            },
        )
    };
    let mut follower = new_follower();
    follower.deliver(snapshot_chunk(
        2,
        1,
        1,
        snapshot.clone(),
        (0, b"0123"),
        false,
    ));
    let ready = follower.take();
    let piece = flotilla_raft::SnapshotPiece {
        last: log_id(1, 5),
        offset: 0,
        data: b"0123".to_vec(),
    };
    assert_eq!(ready.snapshot_chunks, vec![piece]);
    assert_eq!(ready.persisted_messages, vec![response(4)]);
    follower.deliver(snapshot_chunk(2, 1, 1, snapshot.clone(), (4, b"45"), true));
    let ready = follower.take();
    assert_eq!(ready.snapshot_chunks.len(), 1);
    assert_eq!(ready.snapshot_received, Some(snapshot.clone()));
    assert!(
        ready.persisted_messages.is_empty(),
        "nothing acknowledged yet"
    );
    assert_eq!(ready.persist.snapshot, None, "nothing installed yet");
    // The leader resends the last chunk meanwhile: the caller is checking, nothing is said.
    follower.deliver(snapshot_chunk(2, 1, 1, snapshot.clone(), (4, b"45"), true));
    assert_eq!(follower.take(), Ready::default());

    // Refused: dropped, and the leader asked to start over; a late chunk is asked for from
    // the start too.
    assert!(follower.refuse_staged(&snapshot));
    assert!(!follower.refuse_staged(&snapshot), "once");
    assert_eq!(follower.take().persisted_messages, vec![response(0)]);
    follower.deliver(snapshot_chunk(2, 1, 1, snapshot.clone(), (4, b"45"), true));
    assert_eq!(follower.take().persisted_messages, vec![response(0)]);

    // Sent again and checked: installed with what the caller stores, then acknowledged.
    follower.deliver(snapshot_chunk(
        2,
        1,
        1,
        snapshot.clone(),
        (0, b"012345"),
        true,
    ));
    let ready = follower.take();
    assert_eq!(ready.snapshot_received, Some(snapshot.clone()));
    assert!(
        !follower.install_staged(&meta((1, 6), &[1, 2, 3]), Vec::new()),
        "not this one"
    );
    assert!(follower.install_staged(&snapshot, b"staged file".to_vec()));
    let ready = follower.take();
    let installed = ready.persist.snapshot.map(|snapshot| snapshot.data);
    assert_eq!(installed, Some(b"staged file".to_vec()));
    assert_eq!(ready.persisted_messages, vec![accepted(1, 2, 1, 5)]);
    assert_eq!(follower.log().applied().0, 5);

    // A snapshot whose last entry the follower's log already holds is not installed: what was
    // staged for it is dropped, and the follower only commits.
    let mut follower = new_follower();
    let held = meta((1, 3), &[1, 2, 3]);
    follower.deliver(snapshot_chunk(2, 1, 1, held.clone(), (0, b"01"), false));
    assert_eq!(follower.take().snapshot_chunks.len(), 1);
    follower.deliver(snapshot_chunk(2, 1, 1, held, (2, b"23"), true));
    let ready = follower.take();
    assert!(ready.snapshot_staging_dropped);
    assert_eq!(ready.snapshot_received, None);
    assert_eq!(ready.persisted_messages, vec![accepted(1, 2, 1, 3)]);
    assert_eq!(follower.log().committed().0, 3);

    // A follower that starts campaigning before the check ends installs nothing.
    let mut follower = new_follower();
    follower.deliver(snapshot_chunk(
        2,
        1,
        1,
        snapshot.clone(),
        (0, b"012345"),
        true,
    ));
    let _ = follower.take();
    follower.tick_until_campaign();
    let _ = follower.take();
    assert!(!follower.install_staged(&snapshot, b"staged file".to_vec()));
    assert_eq!(follower.take().persist.snapshot, None);
    assert_eq!(follower.log().applied().0, 2);
}

/// Raft §7 (chunks): a chunk that does not continue the snapshot being received is answered
/// with the offset the follower expects, and nothing is installed.
#[test]
fn an_out_of_order_chunk_is_answered_with_the_expected_offset() {
    let mut follower = follower_with(&[1], 1);
    let chunk = snapshot_chunk(2, 1, 1, meta((1, 5), &[1, 2, 3]), (4, b"4567"), true);
    follower.deliver(chunk);
    let expected = Ready {
        persisted_messages: vec![message(
            1,
            2,
            1,
            MessageBody::SnapshotResponse {
                snapshot_index: LogIndex(5),
                transfer: 1,
                next_offset: 0,
            },
        )],
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
}

/// Group 1-2-3 with 3 behind a 10-byte snapshot (`Net::with_3_behind_the_snapshot`).
fn group_with_3_behind_the_snapshot() -> Net {
    Net::with_3_behind_the_snapshot(b"0123456789", |config| config)
}

/// Raft §7: what a follower installed from a snapshot survives a restart: the snapshot, the
/// commit index and the membership it carries.
#[test]
fn a_follower_restarted_after_installing_a_snapshot_keeps_it() {
    let mut net = group_with_3_behind_the_snapshot();
    net.tick(1);
    net.tick(1);
    let store = net.nodes.remove(&3).unwrap().into_store();
    let restarted = node_over(config(3), store);
    assert_eq!(restarted.log().first_index().0, 7);
    assert_eq!(restarted.log().committed().0, 6);
    assert_eq!(restarted.log().applied().0, 6);
    assert_eq!(restarted.membership(), &voters(&[1, 2, 3]));
}

/// Thesis §3.10 with Raft §7: a transfer target behind the leader's snapshot is caught up with
/// the snapshot first, then takes over.
#[test]
fn a_transfer_target_behind_the_snapshot_is_caught_up_and_takes_over() {
    let mut net = group_with_3_behind_the_snapshot();
    net.node_mut(1)
        .transfer_leader(flotilla_raft::NodeId(3))
        .unwrap();
    for _ in 0..4 {
        net.tick(1);
    }
    assert_eq!(net.leader(), Some(3));
    assert_eq!(
        net.node(3).log().store().snapshot().unwrap().data,
        b"0123456789"
    );
}

/// Raft §7 then §5.3: entries that follow a snapshot may arrive before the caller persisted
/// the snapshot; one Ready then carries both, and the entries after it are applied.
#[test]
fn entries_after_a_snapshot_not_yet_persisted_follow_it_in_the_same_ready() {
    let mut follower = follower_with(&[1, 1], 2);
    let chunk = snapshot_chunk(2, 1, 1, meta((1, 5), &[1, 2, 3]), (0, b"state@5"), true);
    follower.deliver(chunk);
    follower.deliver(append(2, 1, 1, (1, 5), vec![entry(1, 6), entry(1, 7)], 6));
    let ready = follower.take();
    assert_eq!(
        ready.persist.snapshot.map(|snapshot| snapshot.meta.last),
        Some(log_id(1, 5))
    );
    assert_eq!(ready.persist.entries, vec![entry(1, 6), entry(1, 7)]);
    assert_eq!(ready.committed, vec![entry(1, 6)]);
    assert_eq!(
        ready.persisted_messages,
        vec![accepted(1, 2, 1, 5), accepted(1, 2, 1, 7)]
    );
    assert_eq!(follower.stored_entries(), vec![entry(1, 6), entry(1, 7)]);
    assert_eq!(follower.log().applied().0, 6);
}

/// A log whose snapshot data is a reference it resolves a chunk at a time (as
/// flotilla-storage sends a snapshot from its file): the "files" live in a shared map.
struct StreamingLog {
    inner: flotilla_raft::MemLog,
    files: std::rc::Rc<std::cell::RefCell<std::collections::HashMap<Vec<u8>, Vec<u8>>>>,
    /// The snapshots Raft said it no longer sends, in order.
    released: std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>,
}

impl LogReader for StreamingLog {
    fn initial_state(&self) -> Result<flotilla_raft::InitialState, flotilla_raft::LogError> {
        self.inner.initial_state()
    }
    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
    ) -> Result<Vec<flotilla_raft::Entry>, flotilla_raft::LogError> {
        self.inner.entries(low, high, bytes_max)
    }
    fn term(&self, index: LogIndex) -> Result<flotilla_raft::Term, flotilla_raft::LogError> {
        self.inner.term(index)
    }
    fn first_index(&self) -> LogIndex {
        self.inner.first_index()
    }
    fn last_index(&self) -> LogIndex {
        self.inner.last_index()
    }
    fn snapshot(&self) -> Result<Snapshot, flotilla_raft::LogError> {
        self.inner.snapshot()
    }
    fn snapshot_chunk(
        &self,
        snapshot: &Snapshot,
        offset: u64,
        bytes_max: u64,
    ) -> Result<flotilla_raft::SnapshotChunk, flotilla_raft::LogError> {
        match self.files.borrow().get(&snapshot.data) {
            Some(file) => Ok(flotilla_raft::SnapshotChunk::of_bytes(
                file, offset, bytes_max,
            )),
            // Replaced by a newer snapshot.
            None => Err(flotilla_raft::LogError::Compacted(LogIndex(0))),
        }
    }
    fn snapshot_released(&self, snapshot: &Snapshot) {
        self.released.borrow_mut().push(snapshot.data.clone());
    }
}

/// A leader sends the bytes its log resolves the snapshot to, a chunk at a time, never the
/// reference itself; a chunk the log can no longer read (the file was replaced) gives that
/// transfer up, and the follower is sent the newest snapshot from its start.
#[test]
fn a_snapshot_read_through_the_log_a_chunk_at_a_time_starts_over_once_replaced() {
    use flotilla_raft::{Message, Persist, RaftNode, Role};
    let files = std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
    let mut inner = flotilla_raft::MemLog::new();
    let mut membership = voters(&[1]);
    membership.learners.insert(flotilla_raft::NodeId(2));
    inner.persist(&Persist::bootstrap(membership));
    let released = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let store = StreamingLog {
        inner,
        files: files.clone(),
        released: released.clone(),
    };
    // A window of one chunk: each answer sends the next.
    let config = Config {
        snapshot_chunk_bytes: 4,
        snapshot_inflight_bytes_max: 4,
        snapshot_give_up_ticks: 30,
        ..config(1)
    };
    let mut leader = RaftNode::new(config, store).unwrap();
    // Every message the leader sends, once its writes are persisted.
    let settle = |node: &mut RaftNode<StreamingLog>| -> Vec<Message> {
        let mut sent = Vec::new();
        while node.has_ready() {
            let ready = node.ready();
            node.store_mut().inner.persist(&ready.persist);
            sent.extend(ready.messages.iter().cloned());
            node.advance(ready);
        }
        sent
    };
    let chunks = |sent: &[Message]| -> Vec<(u64, u64, Vec<u8>, bool)> {
        sent.iter()
            .filter_map(|message| match &message.body {
                MessageBody::InstallSnapshot {
                    meta,
                    offset,
                    data,
                    done,
                    ..
                } => Some((meta.last.index.0, *offset, data.clone(), *done)),
                _ => None,
            })
            .collect()
    };
    while leader.role() != Role::Leader {
        leader.tick();
        settle(&mut leader);
    }
    let term = leader.term().0;
    for index in 2..=4 {
        leader
            .propose(format!("{term}/{index}").into_bytes())
            .unwrap();
    }
    settle(&mut leader);
    assert_eq!(leader.log().applied().0, 4);

    // The log compacts to a snapshot whose data is a reference to "file A".
    files
        .borrow_mut()
        .insert(b"A".to_vec(), b"0123456789".to_vec());
    leader.compact(LogIndex(3), b"A".to_vec()).unwrap();
    settle(&mut leader);
    // Learner 2 never answered its probe; at its first heartbeat answer the leader probes it
    // again, finds the entries compacted, and sends the snapshot.
    leader.step(heartbeat_response(2, 1, term, 0)).unwrap();
    let sent = settle(&mut leader);
    assert_eq!(chunks(&sent), vec![(3, 0, b"0123".to_vec(), false)]);
    leader
        .step(message(
            2,
            1,
            term,
            MessageBody::SnapshotResponse {
                snapshot_index: LogIndex(3),
                transfer: 1,
                next_offset: 4,
            },
        ))
        .unwrap();
    assert_eq!(
        chunks(&settle(&mut leader)),
        vec![(3, 4, b"4567".to_vec(), false)]
    );

    // File A is replaced by a newer snapshot: its next chunk cannot be read.
    files.borrow_mut().clear();
    files
        .borrow_mut()
        .insert(b"B".to_vec(), b"abcdefgh".to_vec());
    leader.compact(LogIndex(4), b"B".to_vec()).unwrap();
    settle(&mut leader);
    leader
        .step(message(
            2,
            1,
            term,
            MessageBody::SnapshotResponse {
                snapshot_index: LogIndex(3),
                transfer: 1,
                next_offset: 8,
            },
        ))
        .unwrap();
    assert_eq!(chunks(&settle(&mut leader)), vec![], "given up");
    assert!(
        leader.fatal_error().is_none(),
        "a replaced file stops no node"
    );
    assert_eq!(*released.borrow(), vec![b"A".to_vec()], "the log hears it");
    // The follower's next heartbeat answer sends it the newest snapshot from its start.
    leader.step(heartbeat_response(2, 1, term, 0)).unwrap();
    assert_eq!(
        chunks(&settle(&mut leader)),
        vec![(4, 0, b"abcd".to_vec(), false)]
    );
    // The learner goes silent: at the first check-quorum after `snapshot_give_up_ticks` the
    // transfer is given up (the log may close its file), and the log hears it.
    let ticks = 3 * Config::new(flotilla_raft::NodeId(1)).election_timeout_ticks_min;
    for _ in 0..ticks {
        leader.tick();
        settle(&mut leader);
    }
    assert_eq!(*released.borrow(), vec![b"A".to_vec(), b"B".to_vec()]);
    // Back, the transfer resumes where the learner was (it acknowledged nothing of B); once
    // it holds it all, that transfer ends too.
    leader.step(heartbeat_response(2, 1, term, 0)).unwrap();
    assert_eq!(
        chunks(&settle(&mut leader)),
        vec![(4, 0, b"abcd".to_vec(), false)]
    );
    leader.step(accepted(2, 1, term, 4)).unwrap();
    settle(&mut leader);
    let released = released.borrow().clone();
    assert_eq!(released, vec![b"A".to_vec(), b"B".to_vec(), b"B".to_vec()]);
}

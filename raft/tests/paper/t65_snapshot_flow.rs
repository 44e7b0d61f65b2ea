//! Snapshot flow control (Raft §7, chunked InstallSnapshot): how many chunks a leader sends and
//! when, with messages in flight while heartbeats go round (`util::timed`), chunks lost, and
//! a follower gone silent. See docs/protocol/snapshots.md, "A leader sends a window of chunks".

use crate::util::*;
use flotilla_raft::{Config, Message, MessageBody, NodeId};
use std::collections::BTreeMap;

/// The snapshot's data: 40 bytes, 10 chunks of 4.
const SNAPSHOT: &[u8] = b"0123456789abcdefghijABCDEFGHIJklmnopqrst";

/// Group 1-2-3 with 3 behind the snapshot (`Net::with_3_behind_the_snapshot`), with
/// `configure` applied to every replica's configuration.
fn behind_the_snapshot(configure: fn(Config) -> Config) -> BTreeMap<u64, Node> {
    Net::with_3_behind_the_snapshot(SNAPSHOT, configure).nodes
}

fn unchanged(config: Config) -> Config {
    config
}

fn is_chunk_answer(message: &Message) -> bool {
    matches!(message.body, MessageBody::SnapshotResponse { .. })
}

/// The offsets of the chunks sent to `to`, in the order sent.
fn chunk_offsets(sent: &[Message], to: u64) -> Vec<u64> {
    sent.iter()
        .filter(|message| message.to == NodeId(to))
        .filter_map(|message| match &message.body {
            MessageBody::InstallSnapshot { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect()
}

/// How many times each offset was sent to `to`.
fn copies_per_offset(sent: &[Message], to: u64) -> BTreeMap<u64, usize> {
    let mut copies = BTreeMap::new();
    for offset in chunk_offsets(sent, to) {
        *copies.entry(offset).or_default() += 1;
    }
    copies
}

fn installed(net: &TimedNet) -> bool {
    net.node(3).log().applied().0 >= 6
}

/// Runs `net` until 3 installed the snapshot (within `rounds_max` rounds), then 40 rounds more
/// for any late or extra chunk to show in `net.sent`; how many rounds the install took.
fn install_then_idle(net: &mut TimedNet, rounds_max: u64) -> u64 {
    let rounds = net.run_until(rounds_max, installed);
    net.run(40);
    rounds
}

fn each_once() -> BTreeMap<u64, usize> {
    (0..10).map(|chunk| (chunk * 4, 1)).collect()
}

/// Raft §7 over a network that loses nothing but takes a round per message: every chunk of
/// the snapshot is sent exactly once, though heartbeats (every 2 rounds) are answered while
/// chunks are in flight. Before flow control each heartbeat answer sent one more chunk, and
/// each of those begot another.
#[test]
fn each_chunk_crosses_a_lossless_network_once() {
    let mut net = TimedNet::new(behind_the_snapshot(unchanged), |_| 1, |_| false);
    install_then_idle(&mut net, 200);
    assert_eq!(copies_per_offset(&net.sent, 3), each_once());
}

/// Raft §7 with a slow snapshot stream: the follower's chunk answers take 7 rounds while its
/// heartbeat answers take one. Heartbeat answers during the transfer send nothing, so no
/// chunk is sent twice.
#[test]
fn heartbeats_during_a_slow_transfer_send_no_duplicate_chunks() {
    let delay = |message: &Message| if is_chunk_answer(message) { 7 } else { 1 };
    let mut net = TimedNet::new(behind_the_snapshot(unchanged), delay, |_| false);
    install_then_idle(&mut net, 400);
    assert_eq!(copies_per_offset(&net.sent, 3), each_once());
}

/// At most `snapshot_inflight_bytes_max` bytes are sent and not acknowledged (cumulative
/// answers free the window), and the window is used: three chunks leave before any answer.
#[test]
fn the_window_bounds_the_bytes_in_flight() {
    let window = |config| Config {
        snapshot_inflight_bytes_max: 12,
        ..config
    };
    let mut net = TimedNet::new(behind_the_snapshot(window), |_| 1, |_| false);
    net.run_until(200, installed);
    let mut acknowledged = 0;
    let mut in_flight_max = 0;
    for message in &net.sent {
        match &message.body {
            MessageBody::InstallSnapshot { offset, data, .. } if message.to == NodeId(3) => {
                let in_flight = offset + data.len() as u64 - acknowledged;
                in_flight_max = in_flight_max.max(in_flight);
            }
            MessageBody::SnapshotResponse { next_offset, .. } => {
                acknowledged = acknowledged.max(*next_offset);
            }
            _ => {}
        }
    }
    assert_eq!(in_flight_max, 12);
    assert_eq!(copies_per_offset(&net.sent, 3), each_once());
}

/// A chunk lost on the way: the follower answers the chunks after it with the offset it
/// still expects, which sends nothing; once the transfer made no progress for
/// `snapshot_resend_ticks` the next heartbeat answer sends the window again from there, and
/// the transfer completes. Only the lost chunk and those after it go twice.
#[test]
fn a_lost_chunk_is_sent_again_after_the_resend_timeout() {
    let resend = |config| Config {
        snapshot_resend_ticks: 20,
        ..config
    };
    let mut lost = false;
    let lose_8_once = move |message: &Message| {
        let is_8 = matches!(message.body, MessageBody::InstallSnapshot { offset: 8, .. });
        let drop = is_8 && !lost;
        lost |= drop;
        drop
    };
    let mut net = TimedNet::new(behind_the_snapshot(resend), |_| 1, lose_8_once);
    let rounds = install_then_idle(&mut net, 200);
    assert!(
        rounds > 20,
        "resent only after the timeout ({rounds} rounds)"
    );
    let mut expected = each_once();
    for offset in (8..40).step_by(4) {
        expected.insert(offset, 2);
    }
    assert_eq!(copies_per_offset(&net.sent, 3), expected);
    let counters = net.nodes.get_mut(&1).unwrap().take_snapshot_send_counters();
    assert_eq!(counters.windows_resent, 1);
    assert_eq!(counters.chunks_sent, 18);
    assert_eq!(counters.chunk_bytes_sent, 72);
    assert_eq!(counters.transfers_started, 1);
}

/// Raft §7 at the follower (staging): a late copy of a chunk it already has is answered with
/// the offset it expects next (a cumulative acknowledgement) and hands the caller nothing, so
/// a copy of the first chunk no longer starts its staging over; a chunk of an earlier transfer
/// is ignored; the first chunk of a newer transfer starts over.
#[test]
fn a_late_copy_of_a_chunk_does_not_restart_the_staging() {
    let staging = Config {
        snapshot_staging: true,
        ..config(1)
    };
    let store = store_with_log(voters(&[1, 2, 3]), &[1, 1, 1, 1], 1, 2);
    let mut follower = node_over(staging, store);
    follower.deliver(heartbeat(2, 1, 1, 0, 0));
    let _ = follower.take();
    let meta = flotilla_raft::SnapshotMeta {
        last: log_id(1, 5),
        membership: voters(&[1, 2, 3]),
    };
    let chunk = |transfer: u64, offset: u64, data: &[u8]| {
        snapshot_chunk_of(transfer, (2, 1, 1), meta.clone(), (offset, data), false)
    };
    let answer =
        |transfer: u64, next_offset: u64| snapshot_answer((1, 2, 1), (5, transfer), next_offset);
    let pieces = |ready: &flotilla_raft::Ready| -> Vec<u64> {
        ready
            .snapshot_chunks
            .iter()
            .map(|piece| piece.offset)
            .collect()
    };

    follower.deliver(chunk(2, 0, b"0123"));
    follower.deliver(chunk(2, 4, b"4567"));
    let ready = follower.take();
    assert_eq!(pieces(&ready), vec![0, 4]);
    assert_eq!(ready.persisted_messages, vec![answer(2, 4), answer(2, 8)]);

    // Late copies of both chunks: nothing staged, each answered with 8.
    follower.deliver(chunk(2, 0, b"0123"));
    follower.deliver(chunk(2, 4, b"4567"));
    let ready = follower.take();
    assert_eq!(pieces(&ready), Vec::<u64>::new());
    assert_eq!(ready.persisted_messages, vec![answer(2, 8), answer(2, 8)]);

    // A chunk of an earlier transfer, even its first: ignored, unanswered.
    follower.deliver(chunk(1, 0, b"0123"));
    assert_eq!(follower.take(), flotilla_raft::Ready::default());

    // The staging goes on where it was.
    follower.deliver(chunk(2, 8, b"89ab"));
    let ready = follower.take();
    assert_eq!(pieces(&ready), vec![8]);
    assert_eq!(ready.persisted_messages, vec![answer(2, 12)]);

    // A newer transfer's first chunk starts over; its later chunks before that ask for 0.
    follower.deliver(chunk(3, 4, b"4567"));
    follower.deliver(chunk(3, 0, b"0123"));
    let ready = follower.take();
    assert_eq!(pieces(&ready), vec![0]);
    assert_eq!(ready.persisted_messages, vec![answer(3, 0), answer(3, 4)]);
}

/// The leader side of the same: answers that do not move the acknowledged offset (copies,
/// late ones, another transfer's) send nothing and are not progress; one that moves it sends
/// the window's worth; an answer of 0 (the follower holds nothing: it restarted, or refused
/// what it staged) starts the transfer over.
#[test]
fn only_an_answer_that_moves_the_acknowledged_offset_sends_chunks() {
    let window = |config| Config {
        snapshot_inflight_bytes_max: 8,
        snapshot_resend_ticks: 10,
        ..config
    };
    let mut nodes = behind_the_snapshot(window);
    let mut leader = nodes.remove(&1).unwrap();
    let term = leader.term_number();
    let sent_offsets =
        |leader: &mut Node| -> Vec<u64> { chunk_offsets(&leader.take().messages, 3) };
    leader.deliver(heartbeat_response(3, 1, term, 0));
    assert_eq!(
        sent_offsets(&mut leader),
        vec![0, 4],
        "the window: two chunks"
    );
    let answer =
        |transfer: u64, next_offset: u64| snapshot_answer((3, 1, term), (6, transfer), next_offset);
    leader.deliver(answer(1, 4));
    assert_eq!(sent_offsets(&mut leader), vec![8]);
    leader.deliver(answer(1, 4));
    leader.deliver(answer(2, 8));
    leader.deliver(answer(1, 40));
    assert_eq!(
        sent_offsets(&mut leader),
        Vec::<u64>::new(),
        "copies, others, past what was sent"
    );
    leader.deliver(answer(1, 12));
    assert_eq!(
        sent_offsets(&mut leader),
        vec![12, 16],
        "cumulative: two freed at once"
    );
    leader.deliver(answer(1, 0));
    assert_eq!(sent_offsets(&mut leader), vec![0, 4], "starts over");

    // Chunk 4 is lost: the follower answers every later chunk with 4 again. Those copies are
    // not progress, so `snapshot_resend_ticks` after the last answer that moved the offset a
    // heartbeat answer sends the window again from 4.
    leader.deliver(answer(1, 4));
    assert_eq!(sent_offsets(&mut leader), vec![8]);
    for _ in 0..10 {
        leader.ticks(1);
        leader.deliver(answer(1, 4));
    }
    assert_eq!(sent_offsets(&mut leader), Vec::<u64>::new(), "copies only");
    leader.deliver(heartbeat_response(3, 1, term, 0));
    assert_eq!(
        sent_offsets(&mut leader),
        vec![4, 8],
        "the window again, from the acknowledged offset"
    );
}

/// A snapshot of one chunk is never acknowledged before the follower checks it (the last
/// chunk is answered only once installed). Refused, its answer of offset 0 still starts the
/// transfer over at once (docs/protocol/snapshots.md, "Failed"), not `snapshot_resend_ticks`
/// later.
#[test]
fn a_refused_snapshot_of_one_chunk_is_sent_again_at_once() {
    let one_chunk = |config| Config {
        snapshot_chunk_bytes: 64,
        ..config
    };
    let mut nodes = behind_the_snapshot(one_chunk);
    let mut leader = nodes.remove(&1).unwrap();
    let term = leader.term_number();
    let sent_offsets =
        |leader: &mut Node| -> Vec<u64> { chunk_offsets(&leader.take().messages, 3) };
    leader.deliver(heartbeat_response(3, 1, term, 0));
    assert_eq!(sent_offsets(&mut leader), vec![0], "the whole snapshot");
    leader.deliver(snapshot_answer((3, 1, term), (6, 1), 0));
    assert_eq!(sent_offsets(&mut leader), vec![0], "sent again at once");
}

/// Check-quorum gives up a transfer only when its follower stayed silent for
/// `snapshot_give_up_ticks`, not after one check-quorum interval (a follower whose loop is
/// busy for a while). Given up, the log may close the snapshot's file; when the follower is
/// back and the newest snapshot is still the same, the transfer resumes where it was instead
/// of starting over at offset 0.
#[test]
fn a_transfer_is_given_up_only_after_a_long_silence_and_then_resumes() {
    use std::cell::Cell;
    use std::rc::Rc;
    let patient = |config| Config {
        snapshot_inflight_bytes_max: 4,
        snapshot_resend_ticks: 10,
        snapshot_give_up_ticks: 60,
        ..config
    };
    let cut = Rc::new(Cell::new(false));
    let cut_3 = cut.clone();
    let drop = move |message: &Message| {
        cut_3.get() && (message.to == NodeId(3) || message.from == NodeId(3))
    };
    let mut net = TimedNet::new(behind_the_snapshot(patient), |_| 1, drop);
    let sent_to_3 = |net: &TimedNet| chunk_offsets(&net.sent, 3).len();
    net.run_until(100, |net| sent_to_3(net) == 3);

    // Silent for 25 rounds: two check-quorum intervals (10 rounds each), not given up.
    cut.set(true);
    net.run(25);
    cut.set(false);
    let leader = net.nodes.get_mut(&1).unwrap();
    let counters = leader.take_snapshot_send_counters();
    assert_eq!(counters.transfers_given_up, 0);
    assert_eq!(counters.transfers_started, 1);
    // Back: the transfer goes on (the chunk lost in the silence is sent again).
    net.run_until(100, |net| sent_to_3(net) == 6);

    // Silent for 80 rounds: given up.
    cut.set(true);
    net.run(80);
    cut.set(false);
    let counters = net.nodes.get_mut(&1).unwrap().take_snapshot_send_counters();
    assert_eq!(counters.transfers_given_up, 1);
    // Back: resumed from what the follower acknowledged, not from offset 0.
    net.run_until(200, installed);
    let counters = net.nodes.get_mut(&1).unwrap().take_snapshot_send_counters();
    assert_eq!(counters.transfers_resumed, 1);
    assert_eq!(counters.transfers_started, 0);
    assert_eq!(copies_per_offset(&net.sent, 3)[&0], 1, "never started over");
}

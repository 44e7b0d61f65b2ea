//! The router's decisions: follow leader hints, take in the descriptors a changed range comes
//! back with, refresh once per request on a stale route, a hint the map does not list or after
//! trying every replica (and pause before the attempts after), try another replica on a
//! timeout (and say the retry is ambiguous), give up after the attempt budget.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::router::Next;
use flotilla_shard_manager::{Attempts, RangeId, RangeMap, Reply, RouteError, Router};

fn router() -> Router {
    let map = RangeMap::uniform(4, |_| vec![NodeId(1), NodeId(2), NodeId(3)]);
    Router::new(map, 5, 7)
}

#[test]
fn a_request_goes_to_the_range_of_its_key() {
    let mut router = router();
    let mut attempts = Attempts::default();
    let target = router.route(&[0x90, 0x00], &mut attempts);
    assert_eq!(target.group.0, 3);
    let range = router.map().lookup(&[0x90, 0x00]);
    assert_eq!(target.epoch, range.epoch, "the range's own epoch");
    assert_eq!(target.keys, range.keys);
}

#[test]
fn a_changed_range_is_taken_in_and_the_request_goes_to_its_holder() {
    let mut router = router();
    let mut attempts = Attempts::default();
    let key = [0x90, 0x10];
    let first = router.route(&key, &mut attempts);
    // The node split the range at 0x90 0x08 (version 1) and names the right half.
    let mut node_map = router.map().clone();
    let range = node_map.lookup(&key).id;
    node_map
        .split_as(range, vec![0x90, 0x08], (RangeId(50), GroupId(50)), 1)
        .unwrap();
    let holder = node_map.lookup(&key).clone();
    assert_eq!(holder.epoch.version, 1);
    let next = router.on_reply(
        &key,
        &first,
        Reply::RangeChanged(vec![holder.clone()]),
        &mut attempts,
    );
    let Next::Retry { target, pause, .. } = next else {
        panic!("expected a retry without a map fetch, got {next:?}")
    };
    assert_eq!(target.group, GroupId(50));
    assert_eq!(target.epoch, holder.epoch);
    assert!(!pause, "the route changed: no reason to wait");
    // The left part keeps what the cached range held below the split key.
    let left = router.map().lookup(&[0x90, 0x00]);
    assert_eq!(left.group, first.group);
    assert_eq!(left.keys.end, Some(vec![0x90, 0x08]));

    // The same news again changes nothing: the map is refreshed once, then attempts wait.
    let next = router.on_reply(
        &key,
        &target,
        Reply::RangeChanged(vec![holder.clone()]),
        &mut attempts,
    );
    assert_eq!(next, Next::RefreshMap);
    let target = router.route(&key, &mut attempts);
    let next = router.on_reply(
        &key,
        &target,
        Reply::RangeChanged(vec![holder]),
        &mut attempts,
    );
    assert!(
        matches!(next, Next::Retry { pause: true, .. }),
        "a node behind the client is not asked again at once: {next:?}"
    );
}

#[test]
fn not_leader_follows_the_hint_and_the_leader_is_remembered() {
    let mut router = router();
    let mut attempts = Attempts::default();
    let key = b"k";
    let first = router.route(key, &mut attempts);
    let hint = NodeId(if first.node == NodeId(3) { 2 } else { 3 });
    let next = router.on_reply(
        key,
        &first,
        Reply::NotLeader {
            leader_hint: Some(hint),
        },
        &mut attempts,
    );
    let Next::Retry {
        target, ambiguous, ..
    } = next
    else {
        panic!("expected a retry, got {next:?}")
    };
    assert_eq!(target.node, hint);
    assert!(!ambiguous, "a refusal applied nothing");
    assert_eq!(
        router.on_reply(key, &target, Reply::Done, &mut attempts),
        Next::Done
    );
    let mut fresh = Attempts::default();
    assert_eq!(
        router.route(key, &mut fresh).node,
        hint,
        "the next request goes to the leader"
    );
}

#[test]
fn a_stale_route_asks_for_a_newer_map_once() {
    let mut router = router();
    let mut attempts = Attempts::default();
    let target = router.route(b"k", &mut attempts);
    assert_eq!(
        router.on_reply(b"k", &target, Reply::StaleRoute, &mut attempts),
        Next::RefreshMap
    );
    let target = router.route(b"k", &mut attempts);
    assert!(
        matches!(
            router.on_reply(b"k", &target, Reply::StaleRoute, &mut attempts),
            Next::Retry { pause: true, .. }
        ),
        "after one refresh, the request waits and goes again"
    );
    let mut newer = router.map().clone();
    let range = newer.lookup(b"k").id;
    newer
        .split(range, b"k".to_vec(), flotilla_raft::GroupId(99))
        .unwrap();
    router.update_map(newer);
    let mut attempts = Attempts::default();
    assert_eq!(router.route(b"k", &mut attempts).group.0, 99);
}

#[test]
fn a_timeout_tries_another_replica_and_marks_the_retry_ambiguous() {
    let mut router = router();
    let mut attempts = Attempts::default();
    let first = router.route(b"k", &mut attempts);
    let next = router.on_reply(b"k", &first, Reply::Timeout, &mut attempts);
    let Next::Retry {
        target, ambiguous, ..
    } = next
    else {
        panic!("expected a retry, got {next:?}")
    };
    assert_ne!(target.node, first.node);
    assert!(ambiguous, "the timed-out attempt may have applied");
}

#[test]
fn retries_stop_at_the_attempt_budget() {
    let mut router = router();
    let mut attempts = Attempts::default();
    let mut target = router.route(b"k", &mut attempts);
    let mut outcome = None;
    let mut refreshes = 0;
    for _ in 0..10 {
        match router.on_reply(b"k", &target, Reply::Timeout, &mut attempts) {
            Next::Retry { target: next, .. } => target = next,
            Next::RefreshMap => {
                refreshes += 1;
                target = router.route(b"k", &mut attempts);
            }
            other => {
                outcome = Some(other);
                break;
            }
        }
    }
    assert_eq!(
        outcome,
        Some(Next::Fail(RouteError::DeadlineExceeded { attempts: 5 }))
    );
    assert_eq!(refreshes, 1, "one refresh once every replica was tried");
}

#[test]
fn a_hint_the_map_does_not_list_refreshes_the_map_once() {
    let mut router = Router::new(
        RangeMap::uniform(4, |_| vec![NodeId(1), NodeId(2), NodeId(3)]),
        20,
        7,
    );
    let key = b"k";
    let mut attempts = Attempts::default();
    let first = router.route(key, &mut attempts);
    let moved_to = Some(NodeId(4));
    let hint = Reply::NotLeader {
        leader_hint: moved_to,
    };
    assert_eq!(
        router.on_reply(key, &first, hint.clone(), &mut attempts),
        Next::RefreshMap,
        "node 4 leads a range the map places on 1, 2, 3: the map is stale"
    );
    // A map that still lags does not loop: the hint is not followed, another replica is tried.
    let again = router.route(key, &mut attempts);
    let Next::Retry { target, .. } = router.on_reply(key, &again, hint.clone(), &mut attempts)
    else {
        panic!("a second refresh for the same request")
    };
    assert_ne!(target.node, NodeId(4), "a node the map does not list");

    // The newer map lists node 4: the next request goes to it.
    let mut newer = router.map().clone();
    let range = newer.lookup(key).id;
    newer
        .set_replicas(range, vec![NodeId(1), NodeId(4), NodeId(5)])
        .unwrap();
    router.update_map(newer);
    let mut fresh = Attempts::default();
    assert_eq!(router.route(key, &mut fresh).node, NodeId(4));
}

#[test]
fn having_tried_every_replica_refreshes_the_map_once() {
    let mut router = Router::new(RangeMap::uniform(1, |_| vec![NodeId(1), NodeId(2)]), 20, 7);
    let mut attempts = Attempts::default();
    let first = router.route(b"k", &mut attempts);
    let Next::Retry { target, .. } = router.on_reply(b"k", &first, Reply::Timeout, &mut attempts)
    else {
        panic!("one replica is untried")
    };
    assert_ne!(target.node, first.node);
    assert_eq!(
        router.on_reply(b"k", &target, Reply::Timeout, &mut attempts),
        Next::RefreshMap,
        "both replicas are silent: they may have moved"
    );
    let target = router.route(b"k", &mut attempts);
    assert!(
        matches!(
            router.on_reply(b"k", &target, Reply::Timeout, &mut attempts),
            Next::Retry { .. }
        ),
        "only one refresh per request"
    );
}

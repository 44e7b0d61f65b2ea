//! Simulated clients, built like the real one: the shard-manager `Router` picks each attempt's
//! node from the range map and the replies, the client's `SessionBook` tags every write
//! (opening a session in a range first), and every attempt of a write carries the same tag.
//! One operation at a time per client; every operation's call and answer go into the shared
//! history the linearizability checker reads.

use crate::history::{Event, Op, Recorder};
use flotilla_node::api::{ApiError, Reply, Request};
use flotilla_node::client::attempts::{Kind, Outcome, Stop, Tries, Verdict};
use flotilla_node::client::sessions::{NoTag, SessionBook};
use flotilla_raft::NodeId;
use flotilla_shard_manager::{
    Attempts, KeyRange, Next, RangeMap, Reply as RouteReply, Router, Target,
};
use flotilla_storage::kv::SessionTag;
use flotilla_storage::{Command, Response};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How long an attempt waits for its answer.
pub const ATTEMPT_TIMEOUT_MS: u64 = 300;
/// The pause before retrying a refusal: the production client's default.
pub const RETRY_PAUSE_MS: u64 = flotilla_node::client::RETRY_PAUSE.as_millis() as u64;
/// How long an operation may take before the client gives up.
pub const DEADLINE_MS: u64 = 4_000;

/// What the client wants to do with a key.
#[derive(Clone, Debug)]
pub enum Intent {
    Get,
    Put(u64),
    Delete,
    Cas {
        expected: Option<u64>,
        new: Option<u64>,
    },
    /// A backup view of the key's range (`flotilla backup`'s requests): opened at the range
    /// leader, drained in chunks; every key of the range is a read that took effect between
    /// the call and the open's answer.
    Backup,
}

/// A backup in progress.
#[derive(Debug)]
struct BackupReads {
    /// The keys of the range (indexes into the client's keys), each with its read's id.
    reads: Vec<(usize, usize)>,
    /// The range's keys.
    range: KeyRange,
    /// Once opened: the view and the node holding it.
    view: Option<(u64, NodeId)>,
    /// Chunks received.
    chunks: u64,
    /// The pairs drained so far.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One operation in flight.
#[derive(Debug)]
struct Pending {
    history_id: usize,
    key: usize,
    intent: Intent,
    /// Set once the write has its tag.
    tag: Option<SessionTag>,
    /// A backup's reads and view.
    backup: Option<BackupReads>,
    /// Opening a session in the key's range before the write can be tagged.
    opening: bool,
    target: Target,
    attempts: Attempts,
    /// The id of the attempt whose answer counts.
    request: u64,
    /// The attempts so far, judged by the client's own rules.
    tries: Tries,
    deadline_ms: u64,
}

/// What the cluster must do for a client.
#[derive(Debug)]
pub enum Action {
    /// Send `request` to `node` as attempt `request_id`; time it out after the attempt timeout.
    Send {
        node: NodeId,
        request: Request,
        request_id: u64,
    },
    /// Try again later (a pause after a refusal).
    Wait { until_ms: u64 },
    /// The operation ended: start the next one when the client wants.
    Finished,
}

pub struct SimClient {
    pub id: usize,
    router: Router,
    sessions: SessionBook,
    pending: Option<Pending>,
    /// The id of the range-map fetch in flight, if the router asked for one.
    refreshing: Option<u64>,
    /// How far that fetch went, as the production client's `refresh_map`: the linearizable
    /// read at the target, then at the leader its refusal named, then any replica's map.
    refresh_step: RefreshStep,
    next_request: u64,
    keys: Vec<Vec<u8>>,
    /// Operations this client still makes in the safety phase.
    pub ops_left: u64,
}

impl SimClient {
    pub fn new(id: usize, map: RangeMap, keys: Vec<Vec<u8>>, ops: u64, seed: u64) -> Self {
        Self {
            id,
            router: Router::new(map, u32::MAX, seed),
            sessions: SessionBook::default(),
            pending: None,
            refreshing: None,
            refresh_step: RefreshStep::Asked,
            next_request: 0,
            keys,
            ops_left: ops,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }

    /// Starts an operation on `key`; `value_id` makes a written value unique.
    pub fn start(
        &mut self,
        key: usize,
        intent: Intent,
        now_ms: u64,
        recorder: &Recorder,
    ) -> Action {
        let mut attempts = Attempts::default();
        let target = self.router.route(&self.keys[key], &mut attempts);
        let backup = matches!(intent, Intent::Backup).then(|| {
            let range = target.keys.clone();
            let reads = (0..self.keys.len())
                .filter(|&other| range.contains(&self.keys[other]))
                .map(|other| (other, recorder.call(other)))
                .collect();
            BackupReads {
                reads,
                range,
                view: None,
                chunks: 0,
                pairs: Vec::new(),
            }
        });
        let history_id = if backup.is_some() {
            usize::MAX
        } else {
            recorder.call(key)
        };
        self.pending = Some(Pending {
            history_id,
            key,
            intent,
            backup,
            tag: None,
            opening: false,
            target,
            attempts,
            request: 0,
            tries: Tries::default(),
            deadline_ms: now_ms + DEADLINE_MS,
        });
        self.attempt(now_ms, recorder)
    }

    /// A random operation on one of the keys; a backup of its range now and then when
    /// `backups` (drawn only then, so a run without backups draws as before).
    pub fn random_intent(rng: &mut ChaCha8Rng, value_id: u64, backups: bool) -> Intent {
        if backups && rng.random_range(0..100) < 3 {
            return Intent::Backup;
        }
        match rng.random_range(0..100) {
            0..40 => Intent::Get,
            40..75 => Intent::Put(value_id),
            75..82 => Intent::Delete,
            _ => Intent::Cas {
                expected: rng
                    .random_bool(0.5)
                    .then(|| rng.random_range(0..value_id.max(1))),
                new: Some(value_id),
            },
        }
    }

    /// The next attempt of the pending operation: its request, or an end.
    fn attempt(&mut self, now_ms: u64, recorder: &Recorder) -> Action {
        let Some(pending) = self.pending.as_mut() else {
            return Action::Finished;
        };
        if now_ms >= pending.deadline_ms {
            return self.give_up(recorder);
        }
        let target = pending.target.clone();
        let request = if let Some(backup) = &pending.backup {
            match backup.view {
                Some((view, node)) => {
                    self.next_request += 1;
                    pending.request = self.next_request;
                    return Action::Send {
                        node,
                        request: Request::BackupChunk {
                            group: target.group,
                            view,
                            chunk: backup.chunks,
                        },
                        request_id: self.next_request,
                    };
                }
                None => {
                    // The keys this backup reads are its range's when it started: a range that
                    // split since (the map the target came from says so) holds fewer, and its
                    // view cannot answer for the others. The backup ends, its reads not made.
                    if target.keys != backup.range {
                        return self.fail(recorder);
                    }
                    Request::BackupOpen {
                        group: target.group,
                        epoch: target.epoch,
                    }
                }
            }
        } else if is_read(&pending.intent) {
            Request::Kv {
                group: target.group,
                epoch: target.epoch,
                command: command(&self.keys[pending.key], &pending.intent),
            }
        } else {
            match pending.tag {
                Some(tag) => Request::Write {
                    group: target.group,
                    epoch: target.epoch,
                    tag: self.sessions.refresh(tag),
                    command: command(&self.keys[pending.key], &pending.intent),
                },
                None => match self.sessions.issue(target.group) {
                    Ok(tag) => {
                        pending.tag = Some(tag);
                        pending.opening = false;
                        Request::Write {
                            group: target.group,
                            epoch: target.epoch,
                            tag,
                            command: command(&self.keys[pending.key], &pending.intent),
                        }
                    }
                    Err(NoTag::NoSession) => {
                        pending.opening = true;
                        Request::OpenSession {
                            group: target.group,
                            epoch: target.epoch,
                        }
                    }
                    Err(NoTag::WindowFull) => {
                        return Action::Wait {
                            until_ms: now_ms + RETRY_PAUSE_MS,
                        };
                    }
                },
            }
        };
        self.next_request += 1;
        pending.request = self.next_request;
        pending.tries.attempt();
        Action::Send {
            node: target.node,
            request,
            request_id: self.next_request,
        }
    }

    /// The pending operation's current attempt got no answer in time.
    pub fn timed_out(
        &mut self,
        request_id: u64,
        now_ms: u64,
        recorder: &Recorder,
    ) -> Option<Action> {
        if self.refreshing == Some(request_id) {
            // No map: the operation goes on with the cached one, as the production client's.
            self.refreshing = None;
            return Some(self.route_again(now_ms, recorder, true));
        }
        if self.draining(request_id) {
            // The view serves its last chunk again: ask for the same one, within the deadline.
            return Some(self.attempt(now_ms, recorder));
        }
        let outcome = Outcome::NoAnswer {
            reason: "timed out".into(),
        };
        self.judge(request_id, outcome, now_ms, recorder)
    }

    /// Whether `request_id` is the current attempt of a backup whose view is open.
    fn draining(&self, request_id: u64) -> bool {
        self.pending.as_ref().is_some_and(|pending| {
            pending.request == request_id
                && pending
                    .backup
                    .as_ref()
                    .is_some_and(|backup| backup.view.is_some())
        })
    }

    /// A backup's answer: the view opened (every read of the range took effect by now), or a
    /// chunk of it (checked: the range's keys, ascending), or the end of the view (each read
    /// resolved with what the view holds). `None` for an answer the attempt rules judge.
    fn backup_answered(
        &mut self,
        request_id: u64,
        result: &Result<Reply, ApiError>,
        now_ms: u64,
        recorder: &Recorder,
    ) -> Option<Action> {
        let pending = self.pending.as_mut()?;
        if pending.request != request_id {
            return None;
        }
        let node = pending.target.node;
        let group = pending.target.group;
        let backup = pending.backup.as_mut()?;
        match (backup.view, result) {
            (None, Ok(Reply::BackupOpened(view))) => {
                assert_eq!(
                    view.group, group,
                    "client {}: a view of another range",
                    self.id
                );
                for &(_, id) in &backup.reads {
                    recorder.push(Event::Deferred { id });
                }
                backup.view = Some((view.view, node));
                Some(self.attempt(now_ms, recorder))
            }
            (None, _) => None,
            (Some(_), Ok(Reply::BackupChunk { pairs, done })) => {
                for (key, value) in pairs {
                    assert!(
                        backup.range.contains(key),
                        "client {}: a backup view of {:?} holds {key:?}",
                        self.id,
                        backup.range
                    );
                    if let Some((last, _)) = backup.pairs.last() {
                        assert!(last.as_slice() < key.as_ref(), "a view's keys ascend");
                    }
                    backup.pairs.push((key.to_vec(), value.to_vec()));
                }
                backup.chunks += 1;
                if !done {
                    return Some(self.attempt(now_ms, recorder));
                }
                let backup = self.pending.take()?.backup?;
                for (key, id) in backup.reads {
                    let seen = backup
                        .pairs
                        .iter()
                        .find(|(found, _)| *found == self.keys[key])
                        .map(|(_, value)| value_id(value));
                    recorder.push(Event::Resolve {
                        id,
                        op: Op::Read(seen),
                    });
                }
                Some(Action::Finished)
            }
            // A lost view cannot be opened again at the same point: the backup's reads end.
            (Some(_), _) => Some(self.fail(recorder)),
        }
    }

    /// An answer arrived for attempt `request_id`.
    pub fn answered(
        &mut self,
        request_id: u64,
        result: Result<Reply, ApiError>,
        now_ms: u64,
        recorder: &Recorder,
    ) -> Option<Action> {
        if self.refreshing == Some(request_id) {
            self.refreshing = None;
            let target = self.pending.as_ref().map(|pending| pending.target.node);
            return Some(match (result, self.refresh_step, target) {
                (Ok(Reply::RangeMap { map, .. }), _, _) => {
                    self.router.update_map(map);
                    self.route_again(now_ms, recorder, false)
                }
                (
                    Err(ApiError::NotLeader {
                        leader: Some(leader),
                        ..
                    }),
                    RefreshStep::Asked,
                    _,
                ) => {
                    self.refresh_step = RefreshStep::Hinted;
                    self.send_refresh(leader, Request::RangeMapRead)
                }
                (_, RefreshStep::Asked | RefreshStep::Hinted, Some(node)) => {
                    self.refresh_step = RefreshStep::AnyReplica;
                    self.send_refresh(node, Request::RangeMap)
                }
                _ => self.route_again(now_ms, recorder, true),
            });
        }
        if let Some(action) = self.backup_answered(request_id, &result, now_ms, recorder) {
            return Some(action);
        }
        self.judge(request_id, Outcome::Answered(result), now_ms, recorder)
    }

    /// Asks the node of the current attempt for the range map, read linearizably (the
    /// production client asks the nodes in turn; a node that just answered is the likeliest
    /// up), then the leader its refusal names, then any replica's map (`RefreshStep`).
    /// Replicas move in these runs, so a map read at the start stops leading to some ranges.
    fn fetch_map(&mut self) -> Action {
        let node = self.pending.as_ref().expect("pending").target.node;
        self.refresh_step = RefreshStep::Asked;
        self.send_refresh(node, Request::RangeMapRead)
    }

    /// Sends one request of the map fetch.
    fn send_refresh(&mut self, node: NodeId, request: Request) -> Action {
        self.next_request += 1;
        self.refreshing = Some(self.next_request);
        Action::Send {
            node,
            request,
            request_id: self.next_request,
        }
    }

    /// After a map fetch: the operation routes again, at once when the map came, else after
    /// the pause a retry takes.
    fn route_again(&mut self, now_ms: u64, recorder: &Recorder, pause: bool) -> Action {
        let Some(pending) = self.pending.as_mut() else {
            return Action::Finished;
        };
        pending.target = self
            .router
            .route(&self.keys[pending.key], &mut pending.attempts);
        if pause {
            return Action::Wait {
                until_ms: now_ms + RETRY_PAUSE_MS,
            };
        }
        self.attempt(now_ms, recorder)
    }

    /// What the attempt rules production runs say of the current attempt's outcome.
    fn judge(
        &mut self,
        request_id: u64,
        outcome: Outcome,
        now_ms: u64,
        recorder: &Recorder,
    ) -> Option<Action> {
        let pending = self.pending.as_mut()?;
        if pending.request != request_id {
            return None;
        }
        // Reads, backups and session openings are idempotent; a write carries its tag on every
        // attempt.
        let kind = if pending.opening || is_read(&pending.intent) || pending.backup.is_some() {
            Kind::Idempotent
        } else {
            Kind::Tagged
        };
        if std::env::var("FLOTILLA_SIM_TRACE").is_ok_and(|value| value == "1") {
            eprintln!(
                "{now_ms:>7} client {} key {} {:?} at {:?}: {outcome:?}",
                self.id, pending.key, pending.intent, pending.target
            );
        }
        Some(match pending.tries.judge(kind, outcome) {
            Verdict::Done(response) => self.done(response, now_ms, recorder),
            Verdict::Retry { route, pause } => self.reroute(route, pause, now_ms, recorder),
            Verdict::Stop(Stop::Refused(_) | Stop::NoLeader { .. } | Stop::NotSent(_)) => {
                self.fail(recorder)
            }
            Verdict::Stop(Stop::GaveUp { .. }) => self.give_up(recorder),
        })
    }

    /// The router's next target after `reply`, or a fetch of the range map first.
    fn reroute(
        &mut self,
        reply: RouteReply,
        pause: bool,
        now_ms: u64,
        recorder: &Recorder,
    ) -> Action {
        let pending = self.pending.as_mut().expect("pending");
        let key = &self.keys[pending.key];
        let next = self
            .router
            .on_reply(key, &pending.target, reply, &mut pending.attempts);
        let mut pause = pause;
        pending.target = match next {
            Next::Retry {
                target,
                pause: wait,
                ..
            } => {
                pause |= wait;
                target
            }
            Next::RefreshMap => return self.fetch_map(),
            Next::Done => self.router.route(key, &mut pending.attempts),
            Next::Fail(_) => return self.give_up(recorder),
        };
        if pause {
            return Action::Wait {
                until_ms: now_ms + RETRY_PAUSE_MS,
            };
        }
        self.attempt(now_ms, recorder)
    }

    /// Continues after a pause.
    pub fn resume(&mut self, now_ms: u64, recorder: &Recorder) -> Action {
        self.attempt(now_ms, recorder)
    }

    fn done(&mut self, response: Response, now_ms: u64, recorder: &Recorder) -> Action {
        let pending = self.pending.as_mut().expect("pending");
        let key = self.keys[pending.key].clone();
        self.router.on_reply(
            &key,
            &pending.target,
            RouteReply::Done,
            &mut pending.attempts,
        );
        if pending.opening {
            let Response::SessionOpened { session, limits } = response else {
                return self.fail(recorder);
            };
            self.sessions.opened(session, limits);
            pending.opening = false;
            return self.attempt(now_ms, recorder);
        }
        if let Response::SessionExpired { session } = response {
            // The range that holds the key now does not know the session: it split off after
            // the session was opened in the range before it (or the session expired). As the
            // production client does: again in a new session if no attempt may have applied,
            // otherwise the outcome is unknown.
            self.sessions.expired(session);
            if let Some(tag) = pending.tag.take() {
                self.sessions.finish(tag);
            }
            if pending.tries.maybe_applied() {
                return self.give_up(recorder);
            }
            return self.attempt(now_ms, recorder);
        }
        if let Some(tag) = pending.tag {
            self.sessions.finish(tag);
        }
        let op = match (&pending.intent, response) {
            (Intent::Get, Response::Value(value)) => Op::Read(value.as_deref().map(value_id)),
            (Intent::Put(new), Response::Written { previous }) => Op::Swap {
                new: Some(*new),
                previous: previous.as_deref().map(value_id),
            },
            (Intent::Delete, Response::Written { previous }) => Op::Swap {
                new: None,
                previous: previous.as_deref().map(value_id),
            },
            (Intent::Cas { expected, new }, Response::CompareAndSwap { swapped, current }) => {
                Op::Cas {
                    expected: *expected,
                    new: *new,
                    swapped,
                    current: current.as_deref().map(value_id),
                }
            }
            (_, response) => panic!(
                "client {}: {response:?} answers {:?}",
                self.id, pending.intent
            ),
        };
        recorder.push(Event::Return {
            id: pending.history_id,
            op,
        });
        self.pending = None;
        Action::Finished
    }

    /// Certainly not applied: it leaves the history.
    fn fail(&mut self, recorder: &Recorder) -> Action {
        let pending = self.pending.take().expect("pending");
        if std::env::var("FLOTILLA_SIM_TRACE").is_ok_and(|value| value == "1") {
            eprintln!(
                "client {} key {} {:?}: FAILED (not applied)",
                self.id, pending.key, pending.intent
            );
        }
        if let Some(tag) = pending.tag {
            self.sessions.finish(tag);
        }
        match pending.backup {
            Some(backup) => {
                for (_, id) in backup.reads {
                    recorder.push(Event::Failed { id });
                }
            }
            None => recorder.push(Event::Failed {
                id: pending.history_id,
            }),
        }
        Action::Finished
    }

    /// Out of time: a write that may have applied has an unknown outcome.
    fn give_up(&mut self, recorder: &Recorder) -> Action {
        let pending = self.pending.as_ref().expect("pending");
        if !pending.tries.maybe_applied() {
            return self.fail(recorder);
        }
        let pending = self.pending.take().expect("pending");
        if let Some(tag) = pending.tag {
            self.sessions.finish(tag);
        }
        let op = match pending.intent {
            Intent::Put(new) => Op::MaybeWrite(Some(new)),
            Intent::Delete => Op::MaybeWrite(None),
            Intent::Cas { expected, new } => Op::MaybeCas { expected, new },
            Intent::Get | Intent::Backup => unreachable!("a read never may have applied"),
        };
        recorder.push(Event::Unknown {
            id: pending.history_id,
            op,
        });
        Action::Finished
    }
}

/// The steps of a map fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefreshStep {
    /// The linearizable read went to the target.
    Asked,
    /// It went to the leader the target named.
    Hinted,
    /// Any replica's map was asked for.
    AnyReplica,
}

fn is_read(intent: &Intent) -> bool {
    matches!(intent, Intent::Get)
}

fn command(key: &[u8], intent: &Intent) -> Command {
    let key = key.to_vec();
    let bytes = |value: u64| value.to_be_bytes().to_vec();
    match intent {
        Intent::Get => Command::Get { key },
        Intent::Put(value) => Command::Put {
            key,
            value: bytes(*value),
        },
        Intent::Delete => Command::Delete { key },
        Intent::Cas { expected, new } => Command::CompareAndSwap {
            key,
            expected: expected.map(bytes),
            new: new.map(bytes),
        },
        Intent::Backup => unreachable!("a backup is no key-value command"),
    }
}

/// The writer's unique id a value carries.
pub fn value_id(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(word)
}

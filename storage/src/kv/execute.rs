//! The meaning of every command and proposal, written once over the rows a state machine keeps:
//! the in-memory map and the node's disk engine both apply entries through `apply_payload` and
//! answer reads through `read`, so the two can only differ in where the rows live.

use super::command::{Command, MergeStep, Payload, Proposal, RangeBounds, Response};
use super::session::{Admission, SessionId, SessionTable, SessionTag};
use super::{KvStateMachine, MergeState};
use flotilla_raft::{GroupId, LogIndex};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The pairs of a scan and whether more lie in its range past where it stopped.
pub(crate) type ScanPage = (Vec<(Vec<u8>, Vec<u8>)>, bool);

/// The rows of one range as commands read them.
pub(crate) trait ReadRows {
    /// What a read can fail with (nothing, for the in-memory map).
    type Error;

    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The pairs from `start` (included) below `end` (`None`: to the end of the range), at most
    /// `limit` of them, stopping before the pair that takes them past `bytes_max` key and value
    /// bytes unless it is the first; and whether a pair follows the last one returned.
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<ScanPage, Self::Error>;
}

/// The rows of one range as commands write them; each write returns the value it replaced.
pub(crate) trait Rows: ReadRows {
    /// Sets `key` to `value`.
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Removes `key`.
    fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
}

/// What an entry's payload asks of the state machine once it is decided.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The answer; the rows and the sessions already changed as it says.
    Response(Response),
    /// A split the machine carries out where its rows live.
    Split(SplitPlan),
    /// A step of a merge the machine carries out.
    Merge(MergePlan),
}

/// A decided step of a merge.
#[derive(Debug)]
pub(crate) enum MergePlan {
    /// The range takes `bounds` and `merge` as they are (prepare, freeze, a refused freeze,
    /// abort) and answers `response`.
    Mark {
        bounds: RangeBounds,
        merge: MergeState,
        /// A freeze refused: the left neighbour and its attempt, never frozen for after.
        declined: Option<(GroupId, u64)>,
        response: Response,
    },
    /// The range takes the rows and sessions of its frozen right neighbour and `bounds`.
    Absorb {
        right: Box<KvStateMachine>,
        bounds: RangeBounds,
    },
}

/// What a range is, for deciding an entry: its group, its bounds and its part in a merge.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RangeState<'a> {
    pub(crate) group: GroupId,
    pub(crate) bounds: &'a RangeBounds,
    pub(crate) merge: &'a MergeState,
    /// Per left neighbour, the latest merge attempt it refused to freeze for.
    pub(crate) declined: &'a BTreeMap<GroupId, u64>,
    /// The key and value bytes it holds.
    pub(crate) stored_bytes: u64,
}

/// A range's shape as a merge step changes it, wherever its rows live: its bounds, its part in
/// a merge and the merge attempts it refused.
pub(crate) struct Shape<'a> {
    pub(crate) bounds: &'a mut RangeBounds,
    pub(crate) merge: &'a mut MergeState,
    pub(crate) declined: &'a mut BTreeMap<GroupId, u64>,
}

impl Shape<'_> {
    /// Takes a marked step (`MergePlan::Mark`: prepare, freeze, a refused freeze, abort) and
    /// gives its answer.
    pub(crate) fn mark(
        self,
        (bounds, merge): (RangeBounds, MergeState),
        declined: Option<(GroupId, u64)>,
        response: Response,
    ) -> Response {
        *self.bounds = bounds;
        *self.merge = merge;
        if let Some((into, attempt)) = declined {
            self.declined.insert(into, attempt);
        }
        response
    }

    /// The frozen neighbour `right` was taken in (`MergePlan::Absorb`, its rows and sessions
    /// already moved): the range holds `bounds` and leaves the merge.
    pub(crate) fn absorbed(self, bounds: RangeBounds, right: GroupId) -> Response {
        *self.bounds = bounds;
        *self.merge = MergeState::None;
        Response::Merge {
            right,
            step: MergeStep::Merged,
            version: self.bounds.version,
        }
    }
}

/// A decided split: the machine keeps the keys below `at` under `left`, and hands the keys
/// from `at` on, with a copy of its session table, to a new state machine of group `right`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitPlan {
    /// The first key of the right half.
    pub(crate) at: Vec<u8>,
    /// The right half's group.
    pub(crate) right: GroupId,
    /// The bounds the splitting machine keeps.
    pub(crate) left: RangeBounds,
    /// The bounds of the right half.
    pub(crate) right_bounds: RangeBounds,
}

impl SplitPlan {
    /// The answer the split's proposer gets.
    pub(crate) fn response(&self) -> Response {
        Response::Split {
            right: self.right,
            version: self.left.version,
        }
    }
}

/// Applies the payload `data` of entry `index` of `group`, whose keys are `bounds`: a
/// `Proposal` or a bare `Command`. Bytes that decode as neither yield `Response::Invalid` and
/// change nothing; a command on a key outside `bounds` yields `Response::OutsideRange` and
/// changes nothing, not even its session. The session table is copied only when a proposal
/// changes it while a snapshot still shares it.
pub(crate) fn apply_payload<R: Rows>(
    rows: &mut R,
    sessions: &mut Arc<SessionTable>,
    range: RangeState<'_>,
    index: LogIndex,
    data: &[u8],
) -> Result<Applied, R::Error> {
    let RangeState { group, bounds, .. } = range;
    let payload = Payload::decode(data);
    if let Ok(payload) = &payload
        && let Some(applied) = merge_step(range, payload, sessions)
    {
        return Ok(applied);
    }
    let response = match payload {
        Ok(Payload::Bare(command)) => match outside(bounds, &command) {
            Some(refusal) => refusal,
            None => execute(rows, command)?,
        },
        Ok(Payload::Proposal(Proposal::Open { time_ms, limits })) => {
            let id = SessionId { group, index };
            Arc::make_mut(sessions).open(id, time_ms, limits)
        }
        Ok(Payload::Proposal(Proposal::Write {
            time_ms,
            tag,
            command,
        })) => match outside(bounds, &command) {
            Some(refusal) => refusal,
            None => write_in_session(rows, Arc::make_mut(sessions), time_ms, &tag, command)?,
        },
        Ok(Payload::Proposal(Proposal::Split {
            expected,
            at,
            right,
            ..
        })) => match plan_split((group, bounds), expected, at, right) {
            Ok(plan) => return Ok(Applied::Split(plan)),
            Err(refusal) => Response::Invalid(refusal),
        },
        Ok(Payload::Proposal(
            Proposal::PrepareMerge { .. }
            | Proposal::Freeze { .. }
            | Proposal::Merge { .. }
            | Proposal::AbortMerge { .. },
        )) => unreachable!("merge_step decides every merge proposal"),
        Err(error) => Response::Invalid(error.to_string()),
    };
    Ok(Applied::Response(response))
}

/// What a range's part in a merge decides about `payload`, if anything: a frozen range
/// refuses every command (`Merging`) and every change; the merge proposals are decided here.
fn merge_step(
    range: RangeState<'_>,
    payload: &Payload,
    sessions: &SessionTable,
) -> Option<Applied> {
    let RangeState {
        group,
        bounds,
        merge,
        ..
    } = range;
    let frozen_into = match merge {
        MergeState::Frozen { into, .. } => Some(*into),
        MergeState::None | MergeState::Absorbing { .. } => None,
    };
    let refuse = |reason: String| Some(Applied::Response(Response::Invalid(reason)));
    let proposal = match payload {
        Payload::Bare(_) => {
            return frozen_into.map(|into| Applied::Response(Response::Merging { into }));
        }
        Payload::Proposal(
            proposal @ (Proposal::PrepareMerge { .. }
            | Proposal::Freeze { .. }
            | Proposal::Merge { .. }
            | Proposal::AbortMerge { .. }),
        ) => proposal,
        Payload::Proposal(Proposal::Split { .. }) => {
            return match merge {
                MergeState::None => None,
                MergeState::Absorbing { right } => refuse(format!(
                    "the range awaits its merge with group {right} and does not split"
                )),
                MergeState::Frozen { into, .. } => refuse(format!(
                    "the range is frozen for its merge into group {into}"
                )),
            };
        }
        Payload::Proposal(Proposal::Open { .. } | Proposal::Write { .. }) => {
            return frozen_into.map(|into| Applied::Response(Response::Merging { into }));
        }
    };
    let answer = |right: GroupId, step: MergeStep, version: u64| Response::Merge {
        right,
        step,
        version,
    };
    match proposal {
        Proposal::PrepareMerge { expected, right } => {
            if *merge == (MergeState::Absorbing { right: *right }) {
                return Some(Applied::Response(answer(
                    *right,
                    MergeStep::Prepared,
                    bounds.version,
                )));
            }
            if *merge != MergeState::None {
                return refuse("the range takes part in another merge".to_owned());
            }
            if let Err(reason) = stale(bounds, expected) {
                return refuse(reason);
            }
            if expected.end.is_none() || *right == group {
                return refuse("the range has no right neighbour to merge".to_owned());
            }
            let bounds = RangeBounds {
                version: expected.version + 1,
                ..expected.clone()
            };
            let response = answer(*right, MergeStep::Prepared, bounds.version);
            Some(Applied::Merge(MergePlan::Mark {
                bounds,
                merge: MergeState::Absorbing { right: *right },
                declined: None,
                response,
            }))
        }
        Proposal::Freeze { into, attempt, .. }
            if *merge
                == (MergeState::Frozen {
                    into: *into,
                    attempt: *attempt,
                }) =>
        {
            Some(Applied::Response(answer(
                *into,
                MergeStep::Frozen,
                bounds.version,
            )))
        }
        Proposal::Freeze {
            expected,
            into,
            bytes_max,
            attempt,
        } => Some(Applied::Merge(plan_freeze(
            range,
            expected,
            (*into, *attempt),
            (*bytes_max, sessions),
        ))),
        Proposal::Merge { right, state } => Some(plan_absorb(range, *right, state)),
        Proposal::AbortMerge { right } => {
            if *merge != (MergeState::Absorbing { right: *right }) {
                return refuse(format!("the range awaits no merge with group {right}"));
            }
            let bounds = RangeBounds {
                version: bounds.version + 1,
                ..bounds.clone()
            };
            let response = answer(*right, MergeStep::Aborted, bounds.version);
            Some(Applied::Merge(MergePlan::Mark {
                bounds,
                merge: MergeState::None,
                declined: None,
                response,
            }))
        }
        Proposal::Open { .. } | Proposal::Write { .. } | Proposal::Split { .. } => None,
    }
}

/// Why a proposal made for the range as `expected` comes too late for it (now `bounds`): at
/// version 0 its keys are the meta group's, so the proposer's view is taken; past it, the
/// proposer must have seen these very bounds.
fn stale(bounds: &RangeBounds, expected: &RangeBounds) -> Result<(), String> {
    if expected.version != bounds.version || (bounds.version > 0 && expected != bounds) {
        return Err(format!(
            "the proposal was made for version {} of the range, which is at version {}",
            expected.version, bounds.version
        ));
    }
    Ok(())
}

/// Decides a freeze of the range into its left neighbour `into`. A refusal is recorded
/// (`declined`), so no copy of this entry, later in the log, can freeze the range after its
/// left neighbour gave the merge up on this answer; it leaves the range's version alone. The
/// version of a range that awaits its own right neighbour is that merge's attempt, which its
/// neighbour may have frozen for already: a refusal that moved it would leave both waiting
/// for good (simulator seed 4, two merges chained).
fn plan_freeze(
    range: RangeState<'_>,
    expected: &RangeBounds,
    (into, attempt): (GroupId, u64),
    (bytes_max, sessions): (u64, &SessionTable),
) -> MergePlan {
    let RangeState {
        group,
        bounds,
        merge,
        declined,
        ..
    } = range;
    // What the left range would take: the pairs, and the session table as encoded.
    let state_bytes = || {
        let sessions_bytes = postcard::serialize_with_flavor::<_, _, usize>(
            sessions,
            postcard::ser_flavors::Size::default(),
        )
        .unwrap_or(usize::MAX);
        range.stored_bytes.saturating_add(sessions_bytes as u64)
    };
    let refusal = if declined
        .get(&into)
        .is_some_and(|&refused| attempt <= refused)
    {
        Some(format!(
            "the range refused to freeze for attempt {attempt} of group {into}'s merge already"
        ))
    } else if *merge != MergeState::None {
        Some("the range takes part in another merge".to_owned())
    } else if let Err(reason) = stale(bounds, expected) {
        Some(reason)
    } else if into == group || expected.start.is_empty() {
        Some("the range has no left neighbour to merge into".to_owned())
    } else if range.stored_bytes > bytes_max || state_bytes() > bytes_max {
        Some(format!(
            "the range holds more than {bytes_max} bytes with its sessions, the most a merge \
             takes"
        ))
    } else {
        None
    };
    if let Some(reason) = refusal {
        return MergePlan::Mark {
            bounds: bounds.clone(),
            merge: merge.clone(),
            declined: Some((into, attempt)),
            response: Response::Invalid(reason),
        };
    }
    let mut next = if bounds.version == 0 {
        expected.clone()
    } else {
        bounds.clone()
    };
    next.version = bounds.version + 1;
    MergePlan::Mark {
        response: Response::Merge {
            right: into,
            step: MergeStep::Frozen,
            version: next.version,
        },
        bounds: next,
        merge: MergeState::Frozen { into, attempt },
        declined: None,
    }
}

/// Decides the last step of a merge: the range awaits `right`, and `state` decodes as the
/// state of `right` frozen into this range, starting where this range ends.
fn plan_absorb(range: RangeState<'_>, right: GroupId, state: &[u8]) -> Applied {
    let RangeState {
        group,
        bounds,
        merge,
        ..
    } = range;
    let refuse = |reason: String| Applied::Response(Response::Invalid(reason));
    if *merge != (MergeState::Absorbing { right }) {
        return refuse(format!("the range awaits no merge with group {right}"));
    }
    let frozen = match crate::snapshot::decode_snapshot(state) {
        Ok(frozen) => frozen,
        Err(error) => return refuse(format!("the merged range's state: {error}")),
    };
    let adjacent = bounds.end.as_deref() == Some(frozen.bounds().start.as_slice());
    let frozen_for = MergeState::Frozen {
        into: group,
        attempt: bounds.version,
    };
    if frozen.group() != right || *frozen.merge_state() != frozen_for || !adjacent {
        return refuse(format!(
            "the state is not group {right} frozen into this range where it ends"
        ));
    }
    let bounds = RangeBounds {
        start: bounds.start.clone(),
        end: frozen.bounds().end.clone(),
        version: bounds.version.max(frozen.bounds().version) + 1,
    };
    Applied::Merge(MergePlan::Absorb {
        right: Box::new(frozen),
        bounds,
    })
}

/// The refusal of a command whose key (or scan span) lies outside `bounds`.
pub(crate) fn outside(bounds: &RangeBounds, command: &Command) -> Option<Response> {
    let inside = match command {
        Command::Scan { start, end, .. } => bounds.covers(start, end.as_deref()),
        other => bounds.contains(other.key()),
    };
    (!inside).then(|| Response::OutsideRange {
        bounds: Box::new(bounds.clone()),
    })
}

/// Decides a split of `group` (now `bounds`) at `at` into a new group `right`, proposed by a
/// leader that saw the range as `expected`. At version 0 the machine's keys are the meta
/// group's, so it takes the proposer's bounds; past it, the proposer must have seen these very
/// bounds. Refused (the reason, as a sentence) when the proposer's view is stale or `at` does
/// not cut the range in two non-empty spans.
fn plan_split(
    (group, bounds): (GroupId, &RangeBounds),
    expected: RangeBounds,
    at: Vec<u8>,
    right: GroupId,
) -> Result<SplitPlan, String> {
    if expected.version != bounds.version || (bounds.version > 0 && expected != *bounds) {
        return Err(format!(
            "the split was proposed for version {} of the range, which is at version {}",
            expected.version, bounds.version
        ));
    }
    if right == group {
        return Err(format!("the split's new group {right} is the range's own"));
    }
    if !expected.contains(&at) || at == expected.start {
        return Err("the split key does not lie inside the range past its first key".to_owned());
    }
    let version = expected.version + 1;
    Ok(SplitPlan {
        left: RangeBounds {
            start: expected.start,
            end: Some(at.clone()),
            version,
        },
        right_bounds: RangeBounds {
            start: at.clone(),
            end: expected.end,
            version,
        },
        at,
        right,
    })
}

/// Applies `command` unless the session table answers it (a copy, a retired sequence, an
/// unknown session); records the result of what it applies.
fn write_in_session<R: Rows>(
    rows: &mut R,
    sessions: &mut SessionTable,
    time_ms: u64,
    tag: &SessionTag,
    command: Command,
) -> Result<Response, R::Error> {
    match sessions.admit(time_ms, tag) {
        Admission::Answer(response) => Ok(response),
        Admission::Apply => {
            let response = execute(rows, command)?;
            sessions.record(tag, &response);
            Ok(response)
        }
    }
}

/// Answers a read-only command (`Get` or `Scan`) on a range of `bounds` (refused when its key
/// lies outside them); `None` for a command that writes.
pub(crate) fn read<R: ReadRows>(
    rows: &R,
    bounds: &RangeBounds,
    command: &Command,
    scan_bytes_max: usize,
) -> Result<Option<Response>, R::Error> {
    if is_write(command) {
        return Ok(None);
    }
    if let Some(refusal) = outside(bounds, command) {
        return Ok(Some(refusal));
    }
    match command {
        Command::Get { key } => rows.get(key).map(|value| Some(Response::Value(value))),
        Command::Scan { start, end, limit } => {
            scan(rows, start, end.as_deref(), *limit, scan_bytes_max).map(Some)
        }
        Command::Put { .. } | Command::Delete { .. } | Command::CompareAndSwap { .. } => Ok(None),
    }
}

fn is_write(command: &Command) -> bool {
    !matches!(command, Command::Get { .. } | Command::Scan { .. })
}

fn execute<R: Rows>(rows: &mut R, command: Command) -> Result<Response, R::Error> {
    match command {
        Command::Get { key } => rows.get(&key).map(Response::Value),
        Command::Scan { start, end, limit } => {
            scan(rows, &start, end.as_deref(), limit, super::SCAN_BYTES_MAX)
        }
        Command::Put { key, value } => rows
            .insert(key, value)
            .map(|previous| Response::Written { previous }),
        Command::Delete { key } => rows
            .remove(&key)
            .map(|previous| Response::Written { previous }),
        Command::CompareAndSwap { key, expected, new } => {
            compare_and_swap(rows, key, expected, new)
        }
    }
}

fn compare_and_swap<R: Rows>(
    rows: &mut R,
    key: Vec<u8>,
    expected: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
) -> Result<Response, R::Error> {
    let current = rows.get(&key)?;
    if current != expected {
        return Ok(Response::CompareAndSwap {
            swapped: false,
            current,
        });
    }
    match new {
        Some(value) => rows.insert(key, value)?,
        None => rows.remove(&key)?,
    };
    Ok(Response::CompareAndSwap {
        swapped: true,
        current,
    })
}

/// A scan capped at `SCAN_PAIR_COUNT_MAX` pairs; an empty or inverted range is empty.
fn scan<R: ReadRows>(
    rows: &R,
    start: &[u8],
    end: Option<&[u8]>,
    limit: u32,
    bytes_max: usize,
) -> Result<Response, R::Error> {
    if end.is_some_and(|end| end <= start) {
        return Ok(Response::Scan {
            pairs: Vec::new(),
            more: false,
        });
    }
    let limit = limit.min(super::SCAN_PAIR_COUNT_MAX) as usize;
    let (pairs, more) = rows.scan(start, end, limit, bytes_max)?;
    Ok(Response::Scan { pairs, more })
}

/// Collects a scan page from pairs in key order: the policy of `ReadRows::scan` for any source
/// that can walk its pairs.
pub(crate) struct PageBuilder {
    limit: usize,
    bytes_max: usize,
    bytes: usize,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    more: bool,
}

impl PageBuilder {
    /// A page of at most `limit` pairs and `bytes_max` bytes (at least one pair).
    pub(crate) fn new(limit: usize, bytes_max: usize) -> Self {
        Self {
            limit,
            bytes_max,
            bytes: 0,
            pairs: Vec::new(),
            more: false,
        }
    }

    /// Offers the next pair; false once the page is full (the pair was not taken and `more` is
    /// set).
    pub(crate) fn offer(&mut self, key: &[u8], value: &[u8]) -> bool {
        let bytes = self.bytes.saturating_add(key.len() + value.len());
        if self.pairs.len() >= self.limit || (bytes > self.bytes_max && !self.pairs.is_empty()) {
            self.more = true;
            return false;
        }
        self.bytes = bytes;
        self.pairs.push((key.to_vec(), value.to_vec()));
        true
    }

    /// The page.
    pub(crate) fn finish(self) -> ScanPage {
        (self.pairs, self.more)
    }
}

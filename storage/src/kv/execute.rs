//! The meaning of every command and proposal, written once over the rows a state machine keeps:
//! the in-memory map and the node's disk engine both apply entries through `apply_payload` and
//! answer reads through `read`, so the two can only differ in where the rows live.

use super::command::{Command, Payload, Proposal, RangeBounds, Response};
use super::session::{Admission, SessionId, SessionTable, SessionTag};
use flotilla_raft::{GroupId, LogIndex};
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
    (group, bounds): (GroupId, &RangeBounds),
    index: LogIndex,
    data: &[u8],
) -> Result<Applied, R::Error> {
    let response = match Payload::decode(data) {
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
        Err(error) => Response::Invalid(error.to_string()),
    };
    Ok(Applied::Response(response))
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

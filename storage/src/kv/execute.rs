//! The meaning of every command and proposal, written once over the rows a state machine keeps:
//! the in-memory map and the node's disk engine both apply entries through `apply_payload` and
//! answer reads through `read`, so the two can only differ in where the rows live.

use super::command::{Command, Payload, Proposal, Response};
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

/// Applies the payload `data` of entry `index` of `group`: a `Proposal` or a bare `Command`.
/// Bytes that decode as neither yield `Response::Invalid` and change nothing. The session
/// table is copied only when a proposal changes it while a snapshot still shares it.
pub(crate) fn apply_payload<R: Rows>(
    rows: &mut R,
    sessions: &mut Arc<SessionTable>,
    group: GroupId,
    index: LogIndex,
    data: &[u8],
) -> Result<Response, R::Error> {
    match Payload::decode(data) {
        Ok(Payload::Bare(command)) => execute(rows, command),
        Ok(Payload::Proposal(Proposal::Open { time_ms, limits })) => {
            let id = SessionId { group, index };
            Ok(Arc::make_mut(sessions).open(id, time_ms, limits))
        }
        Ok(Payload::Proposal(Proposal::Write {
            time_ms,
            tag,
            command,
        })) => write_in_session(rows, Arc::make_mut(sessions), time_ms, &tag, command),
        Err(error) => Ok(Response::Invalid(error.to_string())),
    }
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

/// Answers a read-only command (`Get` or `Scan`); `None` for a command that writes.
pub(crate) fn read<R: ReadRows>(
    rows: &R,
    command: &Command,
    scan_bytes_max: usize,
) -> Result<Option<Response>, R::Error> {
    match command {
        Command::Get { key } => rows.get(key).map(|value| Some(Response::Value(value))),
        Command::Scan { start, end, limit } => {
            scan(rows, start, end.as_deref(), *limit, scan_bytes_max).map(Some)
        }
        Command::Put { .. } | Command::Delete { .. } | Command::CompareAndSwap { .. } => Ok(None),
    }
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

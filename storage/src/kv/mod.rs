//! The KV state machine of one group: an ordered map with get, put, delete, compare-and-swap
//! and limited range scans, applied deterministically from committed entries, and the group's
//! client sessions, which apply each write at most once. The map and the session table sit
//! behind `Arc`s, so taking a snapshot is O(1) and the copy happens on the next write.

mod command;
mod session;

pub use command::{Codec, CodecError, Command, PROPOSAL_FORMAT, Payload, Proposal, Response};
pub use session::{Admission, SessionId, SessionLimits, SessionTable, SessionTag};

use flotilla_raft::{Entry, EntryPayload, GroupId, LogId, LogIndex};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// The most pairs one scan returns, whatever limit the client asks for.
pub const SCAN_PAIR_COUNT_MAX: u32 = 10_000;
/// The most key and value bytes one scan copies unless its reader asks for another bound
/// ([`KvStateMachine::read_bounded`]); a scan always returns at least one pair.
pub const SCAN_BYTES_MAX: usize = 4 << 20;

fn pair_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// The ordered map of a group.
pub type KvMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// The state machine of one group and the last entry it applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStateMachine {
    group: GroupId,
    map: Arc<KvMap>,
    sessions: Arc<SessionTable>,
    applied: LogId,
    /// Key and value bytes in `map`.
    stored_bytes: u64,
}

/// An immutable view of a state machine at its applied entry, for writing a snapshot file
/// on another thread while the state machine goes on applying.
#[derive(Clone, Debug)]
pub struct KvSnapshotSource {
    /// The group.
    pub group: GroupId,
    /// The last entry applied.
    pub applied: LogId,
    /// The map at `applied`.
    pub map: Arc<KvMap>,
    /// The session table at `applied`.
    pub sessions: Arc<SessionTable>,
}

impl KvStateMachine {
    /// An empty state machine of `group`.
    #[must_use]
    pub fn new(group: GroupId) -> Self {
        Self {
            group,
            ..Self::default()
        }
    }

    /// A state machine restored to `map` at `applied` (from a snapshot).
    #[must_use]
    pub fn from_parts(group: GroupId, applied: LogId, map: KvMap) -> Self {
        let stored_bytes = map.iter().map(|(key, value)| pair_bytes(key, value)).sum();
        Self {
            group,
            map: Arc::new(map),
            sessions: Arc::default(),
            applied,
            stored_bytes,
        }
    }

    /// The same state machine with `sessions` as its session table (from a snapshot).
    #[must_use]
    pub fn with_sessions(mut self, sessions: SessionTable) -> Self {
        self.sessions = Arc::new(sessions);
        self
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The last entry applied.
    #[must_use]
    pub fn applied(&self) -> LogId {
        self.applied
    }

    /// Key and value bytes the map holds (what a storage quota counts).
    #[must_use]
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// The map as of the applied entry.
    #[must_use]
    pub fn map(&self) -> &KvMap {
        &self.map
    }

    /// The session table as of the applied entry.
    #[must_use]
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// A snapshot view that shares the map and the sessions until the next write.
    #[must_use]
    pub fn snapshot_source(&self) -> KvSnapshotSource {
        KvSnapshotSource {
            group: self.group,
            applied: self.applied,
            map: self.map.clone(),
            sessions: self.sessions.clone(),
        }
    }

    /// Applies a committed entry; blank and membership entries only move the applied index.
    ///
    /// # Panics
    /// If the entry is not after the last one applied: a bug in the caller.
    pub fn apply_entry(&mut self, entry: &Entry) -> Option<Response> {
        let response = match &entry.payload {
            EntryPayload::Normal(data) => Some(self.apply(entry.index, data)),
            EntryPayload::Blank | EntryPayload::Membership(_) => {
                self.advance(entry.index);
                None
            }
        };
        self.applied = entry.log_id();
        response
    }

    /// Applies the payload `data` (a `Proposal` or a bare `Command`) at `index` (`apply_entry`
    /// also records the entry's term in `applied()`). Deterministic: every replica that
    /// applies the same entries in the same order holds the same map and sessions and gives
    /// the same responses. Bytes that decode as neither yield `Response::Invalid` and change
    /// nothing.
    ///
    /// # Panics
    /// If `index` is not after the last one applied: a bug in the caller.
    pub fn apply(&mut self, index: LogIndex, data: &[u8]) -> Response {
        self.advance(index);
        match Payload::decode(data) {
            Ok(Payload::Bare(command)) => self.execute(command),
            Ok(Payload::Proposal(Proposal::Open { time_ms, limits })) => {
                let id = SessionId {
                    group: self.group,
                    index,
                };
                Arc::make_mut(&mut self.sessions).open(id, time_ms, limits)
            }
            Ok(Payload::Proposal(Proposal::Write {
                time_ms,
                tag,
                command,
            })) => self.write_in_session(time_ms, &tag, command),
            Err(error) => Response::Invalid(error.to_string()),
        }
    }

    /// Applies `command` unless the session table answers it (a copy, a retired sequence, an
    /// unknown session); records the result of what it applies.
    fn write_in_session(&mut self, time_ms: u64, tag: &SessionTag, command: Command) -> Response {
        match Arc::make_mut(&mut self.sessions).admit(time_ms, tag) {
            Admission::Answer(response) => response,
            Admission::Apply => {
                let response = self.execute(command);
                Arc::make_mut(&mut self.sessions).record(tag, &response);
                response
            }
        }
    }

    fn advance(&mut self, index: LogIndex) {
        assert!(
            index > self.applied.index,
            "entry {index} applied twice or out of order"
        );
        self.applied.index = index;
    }

    /// Answers a read-only command (`Get` or `Scan`) from the applied state, without a log
    /// entry: the node serves linearizable reads this way once ReadIndex confirmed them.
    /// `None` for a command that writes.
    #[must_use]
    pub fn read(&self, command: &Command) -> Option<Response> {
        self.read_bounded(command, SCAN_BYTES_MAX)
    }

    /// [`Self::read`], with a scan that stops copying once its pairs reach `scan_bytes_max`
    /// key and value bytes (it returns at least one pair, and says there is `more`): a page
    /// costs what it returns, never a copy of `SCAN_PAIR_COUNT_MAX` values cut afterwards.
    #[must_use]
    pub fn read_bounded(&self, command: &Command, scan_bytes_max: usize) -> Option<Response> {
        match command {
            Command::Get { key } => Some(self.get(key)),
            Command::Scan { start, end, limit } => {
                Some(self.scan(start.clone(), end.clone(), *limit, scan_bytes_max))
            }
            Command::Put { .. } | Command::Delete { .. } | Command::CompareAndSwap { .. } => None,
        }
    }

    fn execute(&mut self, command: Command) -> Response {
        match command {
            Command::Get { key } => self.get(&key),
            Command::Scan { start, end, limit } => self.scan(start, end, limit, SCAN_BYTES_MAX),
            Command::Put { key, value } => Response::Written {
                previous: self.insert(key, value),
            },
            Command::Delete { key } => Response::Written {
                previous: self.remove(&key),
            },
            Command::CompareAndSwap { key, expected, new } => {
                self.compare_and_swap(key, expected, new)
            }
        }
    }

    fn get(&self, key: &[u8]) -> Response {
        Response::Value(self.map.get(key).cloned())
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        self.stored_bytes += pair_bytes(&key, &value);
        let key_bytes = key.len();
        let previous = Arc::make_mut(&mut self.map).insert(key, value);
        if let Some(previous) = &previous {
            self.stored_bytes -= (key_bytes + previous.len()) as u64;
        }
        previous
    }

    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        if !self.map.contains_key(key) {
            return None;
        }
        let removed = Arc::make_mut(&mut self.map).remove(key);
        if let Some(value) = &removed {
            self.stored_bytes -= pair_bytes(key, value);
        }
        removed
    }

    fn compare_and_swap(
        &mut self,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Response {
        let current = self.map.get(&key).cloned();
        if current != expected {
            return Response::CompareAndSwap {
                swapped: false,
                current,
            };
        }
        match new {
            Some(value) => self.insert(key, value),
            None => self.remove(&key),
        };
        Response::CompareAndSwap {
            swapped: true,
            current,
        }
    }

    fn scan(&self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32, bytes_max: usize) -> Response {
        let limit = limit.min(SCAN_PAIR_COUNT_MAX) as usize;
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        if matches!(&upper, Bound::Excluded(end) if *end <= start) {
            return Response::Scan {
                pairs: Vec::new(),
                more: false,
            };
        }
        let mut range = self.map.range((Bound::Included(start), upper)).peekable();
        let mut pairs = Vec::new();
        let mut bytes = 0usize;
        while pairs.len() < limit {
            let Some((key, value)) = range.peek() else {
                break;
            };
            bytes = bytes.saturating_add(key.len() + value.len());
            if bytes > bytes_max && !pairs.is_empty() {
                break;
            }
            pairs.push(((*key).clone(), (*value).clone()));
            range.next();
        }
        let more = range.next().is_some();
        Response::Scan { pairs, more }
    }
}

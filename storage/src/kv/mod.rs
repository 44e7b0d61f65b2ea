//! The KV state machine of one group: an ordered map with get, put, delete, compare-and-swap
//! and limited range scans, applied deterministically from committed entries, and the group's
//! client sessions, which apply each write at most once. The map is chunked and the session
//! table persistent, both behind `Arc`s: taking a snapshot copies an index of chunks, and a
//! write after it copies only the chunk or the path it changes, never the whole range.

mod command;
pub(crate) mod execute;
mod map;
mod session;

pub use command::{
    Codec, CodecError, Command, MergeStep, PROPOSAL_FORMAT, Payload, Proposal, RangeBounds,
    Response,
};
pub use map::KvMap;
pub use session::{Admission, SessionId, SessionLimits, SessionTable, SessionTag};

use execute::{Applied, MergePlan, PageBuilder, RangeState, ReadRows, Rows, ScanPage, SplitPlan};
use flotilla_raft::{Entry, EntryPayload, GroupId, LogId, LogIndex};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::Bound;
use std::sync::Arc;

pub use flotilla_api::kv::{SCAN_BYTES_MAX, SCAN_PAIR_COUNT_MAX};

fn pair_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// A range's part in a merge, as its own log says (`docs/protocol/split-merge.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MergeState {
    /// None.
    #[default]
    None,
    /// The left range of a merge: it awaits the frozen state of `right` and does not split.
    Absorbing {
        /// Its right neighbour.
        right: GroupId,
    },
    /// The right range of a merge: it serves nothing any more, for good; group `into` takes
    /// its keys.
    Frozen {
        /// Its left neighbour.
        into: GroupId,
        /// The merge of `into` it froze for (`into`'s version while it awaited this range).
        attempt: u64,
    },
}

/// The state machine of one group and the last entry it applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStateMachine {
    group: GroupId,
    map: Arc<KvMap>,
    sessions: Arc<SessionTable>,
    applied: LogId,
    /// Key and value bytes in `map`.
    stored_bytes: u64,
    /// The keys the range holds, as its own log says.
    bounds: RangeBounds,
    /// Its part in a merge.
    merge: MergeState,
    /// Per left neighbour, the latest merge attempt whose freeze this range refused: it never
    /// freezes for that attempt or an earlier one, so the neighbour may give it up.
    declined: BTreeMap<GroupId, u64>,
    /// The right half of the last split applied, until the node takes it.
    carved: Option<Box<KvStateMachine>>,
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
    /// The range's bounds at `applied`.
    pub bounds: RangeBounds,
    /// The range's part in a merge at `applied`.
    pub merge: MergeState,
    /// The merge attempts it refused to freeze for, at `applied`.
    pub declined: BTreeMap<GroupId, u64>,
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
            bounds: RangeBounds::default(),
            merge: MergeState::None,
            declined: BTreeMap::new(),
            carved: None,
        }
    }

    /// The same state machine with `sessions` as its session table (from a snapshot).
    #[must_use]
    pub fn with_sessions(mut self, sessions: SessionTable) -> Self {
        self.sessions = Arc::new(sessions);
        self
    }

    /// The same state machine holding `bounds` (from a snapshot).
    #[must_use]
    pub fn with_bounds(mut self, bounds: RangeBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The same state machine in `merge` (from a snapshot).
    #[must_use]
    pub fn with_merge(mut self, merge: MergeState) -> Self {
        self.merge = merge;
        self
    }

    /// The same state machine with `declined` as the merge attempts it refused (from a
    /// snapshot).
    #[must_use]
    pub fn with_declined(mut self, declined: BTreeMap<GroupId, u64>) -> Self {
        self.declined = declined;
        self
    }

    /// Its part in a merge, as its own log says.
    #[must_use]
    pub fn merge_state(&self) -> &MergeState {
        &self.merge
    }

    /// Whether it is frozen for a merge into its left neighbour: it serves nothing any more.
    #[must_use]
    pub fn is_frozen(&self) -> bool {
        matches!(self.merge, MergeState::Frozen { .. })
    }

    /// The same state machine as of entry `applied`: a split's right half (at entry 0 when
    /// carved) as its new group starts, its first state being a snapshot at that entry.
    #[must_use]
    pub fn with_applied(mut self, applied: LogId) -> Self {
        self.applied = applied;
        self
    }

    /// The keys the range holds and its version, as its own log says.
    #[must_use]
    pub fn bounds(&self) -> &RangeBounds {
        &self.bounds
    }

    /// The right half of the split the last entry applied (`Response::Split`), once: a new
    /// state machine of the new group, holding the keys from the split key on and a copy of
    /// the session table, at applied entry 0.
    pub fn take_carved(&mut self) -> Option<KvStateMachine> {
        self.carved.take().map(|carved| *carved)
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
            bounds: self.bounds.clone(),
            merge: self.merge.clone(),
            declined: self.declined.clone(),
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
        let mut rows = MapRows {
            map: &mut self.map,
            stored_bytes: &mut self.stored_bytes,
        };
        let range = RangeState {
            group: self.group,
            bounds: &self.bounds,
            merge: &self.merge,
            declined: &self.declined,
            stored_bytes: *rows.stored_bytes,
        };
        let applied = execute::apply_payload(&mut rows, &mut self.sessions, range, index, data);
        match applied {
            Ok(Applied::Response(response)) => response,
            Ok(Applied::Split(plan)) => self.split(plan),
            Ok(Applied::Merge(plan)) => self.merge(plan),
            Err(never) => match never {},
        }
    }

    /// Carries out a decided step of a merge: a new merge state and bounds, or the rows and
    /// sessions of the frozen right neighbour taken in.
    fn merge(&mut self, plan: MergePlan) -> Response {
        match plan {
            MergePlan::Mark {
                bounds,
                merge,
                declined,
                response,
            } => self.shape().mark((bounds, merge), declined, response),
            MergePlan::Absorb { right, bounds } => {
                let KvStateMachine {
                    group: right,
                    map: right_map,
                    sessions: right_sessions,
                    stored_bytes: right_bytes,
                    ..
                } = *right;
                // Its keys all lie past this range's: the two maps join end to end.
                Arc::make_mut(&mut self.map).append(Arc::unwrap_or_clone(right_map));
                self.stored_bytes += right_bytes;
                Arc::make_mut(&mut self.sessions).merge(Arc::unwrap_or_clone(right_sessions));
                self.shape().absorbed(bounds, right)
            }
        }
    }

    fn shape(&mut self) -> execute::Shape<'_> {
        execute::Shape {
            bounds: &mut self.bounds,
            merge: &mut self.merge,
            declined: &mut self.declined,
        }
    }

    /// Carries out a decided split: the keys from `plan.at` on move to a new state machine
    /// (taken with `take_carved`), which also gets a copy of the session table, so a write
    /// applied here before the split is still answered once when sent again to the right half.
    fn split(&mut self, plan: SplitPlan) -> Response {
        let response = plan.response();
        let right_map = Arc::make_mut(&mut self.map).split_off(plan.at.as_slice());
        let right_bytes: u64 = right_map
            .iter()
            .map(|(key, value)| pair_bytes(key, value))
            .sum();
        self.stored_bytes -= right_bytes;
        self.bounds = plan.left;
        self.carved = Some(Box::new(KvStateMachine {
            group: plan.right,
            map: Arc::new(right_map),
            sessions: self.sessions.clone(),
            applied: LogId::default(),
            stored_bytes: right_bytes,
            bounds: plan.right_bounds,
            merge: MergeState::None,
            declined: BTreeMap::new(),
            carved: None,
        }));
        response
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
        if let MergeState::Frozen { into, .. } = self.merge {
            let reads = matches!(command, Command::Get { .. } | Command::Scan { .. });
            return reads.then_some(Response::Merging { into });
        }
        match execute::read(&*self.map, &self.bounds, command, scan_bytes_max) {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

impl ReadRows for KvMap {
    type Error = Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(KvMap::get(self, key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<ScanPage, Infallible> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = PageBuilder::new(limit, bytes_max);
        for (key, value) in self.range(Bound::Included(start), upper) {
            if !page.offer(key, value) {
                break;
            }
        }
        Ok(page.finish())
    }
}

/// The map of a state machine while it applies an entry, keeping its byte count.
struct MapRows<'a> {
    map: &'a mut Arc<KvMap>,
    stored_bytes: &'a mut u64,
}

impl ReadRows for MapRows<'_> {
    type Error = Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        ReadRows::get(&**self.map, key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<ScanPage, Infallible> {
        self.map.scan(start, end, limit, bytes_max)
    }
}

impl Rows for MapRows<'_> {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<Option<Vec<u8>>, Infallible> {
        *self.stored_bytes += pair_bytes(&key, &value);
        let key_bytes = key.len();
        let previous = Arc::make_mut(self.map).insert(key, value);
        if let Some(previous) = &previous {
            *self.stored_bytes -= (key_bytes + previous.len()) as u64;
        }
        Ok(previous)
    }

    fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        if !self.map.contains_key(key) {
            return Ok(None);
        }
        let removed = Arc::make_mut(self.map).remove(key);
        if let Some(value) = &removed {
            *self.stored_bytes -= pair_bytes(key, value);
        }
        Ok(removed)
    }
}

//! The Raft loop: the one thread that drives every group of the node.
//!
//! Each turn: wait for input or the next tick; take every waiting input (inbound batches are
//! stepped, client requests proposed or read); tick when due; then one ready cycle for all
//! groups: one log write (one fdatasync) for everything to persist, send the outbound batches,
//! apply committed entries, answer waiting clients, advance. Requests that arrive during the
//! fsync queue up and share the next one, so a busy node persists many entries per sync.

use crate::api::{ApiError, GroupStatus, NodeStatus, Reply, Request};
use crate::config::Limits;
use crate::server::clients::{Responder, Waiting};
use crate::server::machines::{Machines, SinceSnapshot};
use crossbeam_channel::Receiver;
use flotilla_raft::{
    Batch, Entry, GroupId, GroupMessage, HardState, LogIndex, MessageBody, MultiError, MultiRaft,
    MultiReady, NodeId, ProposeError, Ready, Role,
};
use flotilla_shard_manager::{Epoch, META_GROUP, MetaCommand};
use flotilla_storage::kv::{SessionLimits, SessionTag};
use flotilla_storage::{
    Codec, Command, GroupLog, LogEngine, Proposal, Response, WriteBatch, WriteError,
};
use flotilla_transport_quic::{QuicTransport, Transport};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The most inputs taken in one turn before the ready cycle runs.
const INPUT_BURST_MAX: usize = 4096;

/// How often a leader checks whether its group's preferred leader could take over.
const BALANCE_INTERVAL_TICKS: u64 = 100;

/// What reaches the Raft loop from the network.
#[derive(Debug)]
pub(crate) enum Input {
    /// Raft messages from a peer node.
    Batch(Batch),
    /// A client request and where to answer it.
    Request(Request, Responder),
}

/// The loop's state: MultiRaft, the log, the state machines and the waiting clients.
pub(crate) struct RaftLoop {
    pub(crate) node: NodeId,
    pub(crate) multi: MultiRaft<GroupLog>,
    pub(crate) engine: Arc<LogEngine>,
    pub(crate) transport: Arc<QuicTransport>,
    /// Batches from peer nodes.
    pub(crate) peers: Receiver<Input>,
    /// Client requests.
    pub(crate) clients: Receiver<Input>,
    /// Set to stop after the current turn.
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) tick: Duration,
    pub(crate) snapshot_entries: u64,
    pub(crate) limits: Limits,
    pub(crate) machines: Machines,
    pub(crate) waiting: Waiting,
    pub(crate) counters: LoopCounters,
    /// Commit-only hard states waiting for the next write.
    pub(crate) deferred: BTreeMap<GroupId, HardState>,
    /// The data directory (locked while the loop lives) and its identity.
    pub(crate) data: crate::server::data::OpenedData,
    /// When a refused batch from each peer was last logged.
    pub(crate) refusals_logged: FxHashMap<NodeId, Instant>,
    /// How many registered data directories were taken up.
    pub(crate) adopted_directories: usize,
    /// The limits put into each entry that opens a session.
    pub(crate) session_limits: SessionLimits,
    /// This node's clock at the start of the turn (milliseconds since the Unix epoch): the log
    /// time a leader puts into its session entries.
    pub(crate) now_ms: u64,
}

/// What the loop has done since start.
#[derive(Debug, Default)]
pub(crate) struct LoopCounters {
    fsyncs: u64,
    entries_persisted: u64,
    requests: u64,
    batches_refused: u64,
    leader_changes: u64,
    cycles_since_gc: u64,
    ticks: u64,
    write_micros: u64,
    busy_micros: u64,
    started: Option<Instant>,
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoopError {
    /// The log could not be written: nothing more can be acknowledged.
    #[error("the log write failed: {0}")]
    Write(#[from] WriteError),
    /// Every input channel closed.
    #[error("the node's input channels closed")]
    Closed,
    /// A group's log store failed while stepping a peer's message.
    #[error("the log store failed: {0}")]
    Store(String),
    /// A group's store failed.
    #[error("group {group} failed: {reason}")]
    Group { group: GroupId, reason: String },
    /// The peers' pinned data directories could not be saved.
    #[error("saving the peers' data directories failed: {0}")]
    Pins(std::io::Error),
    /// The meta group registered this node id with another data directory.
    #[error(
        "the cluster registered node {node} with data directory {registered}, but this process \
         runs on directory {own}: it is not that node's data directory (a node that lost its \
         data must join under a new id)"
    )]
    NotOwnDirectory {
        node: NodeId,
        registered: String,
        own: String,
    },
}

impl RaftLoop {
    /// Runs until `stop` is set or a fatal error.
    pub(crate) fn run(mut self) -> Result<(), LoopError> {
        self.counters.started = Some(Instant::now());
        let mut next_tick = Instant::now() + self.tick;
        while !self.stop.load(Ordering::Acquire) {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = crossbeam_channel::select! {
                recv(self.peers) -> input => Some(input.map_err(|_| LoopError::Closed)?),
                recv(self.clients) -> input => Some(input.map_err(|_| LoopError::Closed)?),
                default(wait) => None,
            };
            let turn = Instant::now();
            self.now_ms = wall_clock_ms();
            if let Some(input) = first {
                self.handle(input)?;
            }
            // Peer traffic first, then client requests: client load never starves Raft.
            // Taken one at a time (no vector of inputs to grow each turn).
            for queue in [self.peers.clone(), self.clients.clone()] {
                for input in queue.try_iter().take(INPUT_BURST_MAX) {
                    self.handle(input)?;
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.multi.tick();
                next_tick = (next_tick + self.tick).max(now);
                self.counters.ticks += 1;
                if self.counters.ticks.is_multiple_of(BALANCE_INTERVAL_TICKS) {
                    self.balance_leaders();
                    self.register_data_directories();
                }
            }
            while self.multi.has_ready() {
                self.cycle()?;
            }
            self.adopt_registered_directories()?;
            self.counters.busy_micros += turn.elapsed().as_micros() as u64;
        }
        self.flush_deferred()
    }

    fn handle(&mut self, input: Input) -> Result<(), LoopError> {
        match input {
            Input::Batch(batch) => {
                match self.multi.step_batch(batch) {
                    Ok(()) => {}
                    // A store failed: stop rather than serve from a log that cannot be trusted.
                    Err(MultiError::Log(error)) => {
                        return Err(LoopError::Store(error.to_string()));
                    }
                    Err(error @ MultiError::Refused { .. }) => {
                        self.counters.batches_refused += 1;
                        self.warn_refused(&error);
                    }
                    Err(error) => {
                        self.counters.batches_refused += 1;
                        tracing::debug!(%error, "inbound batch refused");
                    }
                }
                self.save_learned_pins()?;
            }
            Input::Request(request, responder) => {
                self.counters.requests += 1;
                match request {
                    Request::Kv {
                        group,
                        epoch,
                        command,
                    } => self.kv(group, epoch, command, responder),
                    Request::OpenSession { group, epoch } => {
                        self.open_session(group, epoch, responder);
                    }
                    Request::Write {
                        group,
                        epoch,
                        tag,
                        command,
                    } => self.write(group, epoch, tag, command, responder),
                    Request::RangeMap => responder.answer(Ok(Reply::RangeMap {
                        map: self.machines.meta().map.clone(),
                        directory: self.machines.meta().directory.clone(),
                    })),
                    Request::Status => responder.answer(Ok(Reply::Status(self.status()))),
                    Request::KnownDirectory { node } => {
                        let directory = self.multi.pinned_directory(node);
                        responder.answer(Ok(Reply::KnownDirectory { directory }));
                    }
                }
            }
        }
        Ok(())
    }

    /// A peer's first batch pinned its data directory: saved before anything answering it
    /// leaves (the ready cycle comes after), so a restart still refuses another directory.
    fn save_learned_pins(&mut self) -> Result<(), LoopError> {
        let learned = self.multi.take_learned_pins();
        if learned.is_empty() {
            return Ok(());
        }
        for (peer, directory) in learned {
            let directory_hex = format!("{directory:032x}");
            tracing::info!(peer = peer.0, directory = %directory_hex, "met a peer's data directory");
            self.data.pins.insert(peer, directory);
        }
        self.data.save_pins().map_err(LoopError::Pins)?;
        self.register_data_directories();
        Ok(())
    }

    /// The meta leader registers, in the meta group, the data directory of every node it has
    /// met (and its own), so every node learns each id's directory, also from peers it never
    /// met itself. Proposed again each balance interval until applied.
    fn register_data_directories(&mut self) {
        let leads_meta = self
            .multi
            .group(META_GROUP)
            .is_some_and(|raft| raft.role() == Role::Leader);
        if !leads_meta {
            return;
        }
        let own = (self.node, self.data.identity.directory_id);
        let known = self
            .data
            .pins
            .iter()
            .map(|(node, directory)| (*node, *directory));
        let registered = &self.machines.meta().data_directories;
        let missing: Vec<(NodeId, u128)> = std::iter::once(own)
            .chain(known)
            .filter(|(node, _)| !registered.contains_key(node))
            .collect();
        for (node, directory) in missing {
            let command = MetaCommand::RegisterDataDirectory { node, directory };
            match self.multi.propose(META_GROUP, command.encode()) {
                Ok(index) => tracing::debug!(
                    peer = node.0,
                    index = index.0,
                    "registering a data directory"
                ),
                Err(error) => tracing::debug!(%error, "registering a data directory was refused"),
            }
        }
    }

    /// Takes up the data directories the meta group registered: a peer's becomes its pin
    /// unless this node met another directory under that id (kept, and reported: the first is
    /// the one it promised things to); this node's own must be this directory, or this process
    /// is an impostor and stops.
    fn adopt_registered_directories(&mut self) -> Result<(), LoopError> {
        let registered = &self.machines.meta().data_directories;
        if registered.len() == self.adopted_directories {
            return Ok(());
        }
        self.adopted_directories = registered.len();
        let own = self.data.identity.directory_id;
        if let Some(&directory) = registered.get(&self.node).filter(|&&dir| dir != own) {
            return Err(LoopError::NotOwnDirectory {
                node: self.node,
                registered: format!("{directory:032x}"),
                own: format!("{own:032x}"),
            });
        }
        let mut changed = false;
        for (&node, &directory) in registered.iter().filter(|(node, _)| **node != self.node) {
            match self.data.pins.get(&node) {
                None => {
                    self.data.pins.insert(node, directory);
                    self.multi.pin_peer(node, directory);
                    changed = true;
                }
                Some(&pinned) if pinned != directory => tracing::error!(
                    peer = node.0,
                    pinned = %format!("{pinned:032x}"),
                    registered = %format!("{directory:032x}"),
                    "this node met another data directory under this id than the one registered; it keeps refusing the registered one"
                ),
                Some(_) => {}
            }
        }
        if changed {
            self.data.save_pins().map_err(LoopError::Pins)?;
        }
        Ok(())
    }

    /// A batch from a process this node must not accept for its sender's id: an error an
    /// operator must see, logged at most once per peer every minute.
    fn warn_refused(&mut self, error: &MultiError) {
        let MultiError::Refused { from, .. } = error else {
            return;
        };
        let now = Instant::now();
        let last = self
            .refusals_logged
            .entry(*from)
            .or_insert(now - Duration::from_secs(61));
        if now.duration_since(*last) >= Duration::from_secs(60) {
            *last = now;
            tracing::error!(%error, "refused a batch");
        }
    }

    /// Checks a KV request against the map and limits, then proposes it or starts a read. A
    /// write here has no session (a client from before sessions): a copy of it applies again.
    fn kv(&mut self, group: GroupId, epoch: Epoch, command: Command, responder: Responder) {
        if let Err(error) = self.check(group, epoch, &command) {
            return responder.answer(Err(error));
        }
        if self.waiting.len() >= self.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        if !matches!(command, Command::Get { .. } | Command::Scan { .. }) {
            return self.propose(group, command.encode(), responder);
        }
        let context = self.waiting.add_read(group, command, responder);
        if let Err(error) = self.multi.read_index(group, context) {
            let (_, _, responder) = self.waiting.take_read(context).expect("just added");
            responder.answer(Err(self.refusal(group, error)));
        }
    }

    /// Checks a write in a session, then proposes it with this node's clock as its log time.
    fn write(
        &mut self,
        group: GroupId,
        epoch: Epoch,
        tag: SessionTag,
        command: Command,
        responder: Responder,
    ) {
        if matches!(command, Command::Get { .. } | Command::Scan { .. }) {
            return self.kv(group, epoch, command, responder);
        }
        if tag.sequence == 0 || tag.awaited_from > tag.sequence {
            return responder.answer(Err(ApiError::BadSessionTag {
                sequence: tag.sequence,
                awaited_from: tag.awaited_from,
            }));
        }
        if let Err(error) = self.check(group, epoch, &command) {
            return responder.answer(Err(error));
        }
        if self.waiting.len() >= self.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        let time_ms = self.now_ms;
        let proposal = Proposal::Write {
            time_ms,
            tag,
            command,
        };
        self.propose(group, proposal.to_payload(), responder);
    }

    /// Proposes the opening of a session in `group` (its id will be the entry's index).
    fn open_session(&mut self, group: GroupId, epoch: Epoch, responder: Responder) {
        let map = &self.machines.meta().map;
        if epoch != map.epoch() {
            let node_epoch = map.epoch();
            return responder.answer(Err(ApiError::StaleEpoch { node_epoch }));
        }
        let served = group != META_GROUP && map.ranges().any(|range| range.group == group);
        if !served || self.multi.group(group).is_none() {
            return responder.answer(Err(ApiError::NotServed { group }));
        }
        if self.waiting.len() >= self.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        let proposal = Proposal::Open {
            time_ms: self.now_ms,
            limits: self.session_limits,
        };
        self.propose(group, proposal.to_payload(), responder);
    }

    /// Proposes `payload` to `group`; the client is answered once its entry is applied.
    fn propose(&mut self, group: GroupId, payload: Vec<u8>, responder: Responder) {
        match self.multi.propose(group, payload) {
            Ok(index) => {
                let term = self
                    .multi
                    .group(group)
                    .map(|raft| raft.term())
                    .unwrap_or_default();
                self.waiting.add_proposal(group, index, term, responder);
            }
            Err(error) => responder.answer(Err(self.refusal(group, error))),
        }
    }

    fn check(&self, group: GroupId, epoch: Epoch, command: &Command) -> Result<(), ApiError> {
        let map = &self.machines.meta().map;
        if epoch != map.epoch() {
            return Err(ApiError::StaleEpoch {
                node_epoch: map.epoch(),
            });
        }
        let (key, values, end) = match command {
            Command::Get { key } | Command::Delete { key } => (key, [None, None], None),
            Command::Put { key, value } => (key, [Some(value), None], None),
            Command::CompareAndSwap { key, expected, new } => {
                (key, [expected.as_ref(), new.as_ref()], None)
            }
            Command::Scan { start, end, .. } => (start, [None, None], end.as_ref()),
        };
        too_large("key", key.len(), self.limits.key_bytes_max)?;
        if let Some(end) = end {
            too_large("scan end key", end.len(), self.limits.key_bytes_max)?;
        }
        // Every value is checked (a compare-and-swap carries two): the configuration keeps a
        // key and two values of the limits inside one log record.
        for value in values.into_iter().flatten() {
            too_large("value", value.len(), self.limits.value_bytes_max)?;
        }
        let range = map.lookup(key);
        let end_inside = match (end, &range.keys.end) {
            (_, None) => true,
            (Some(end), Some(limit)) => end <= limit,
            (None, Some(_)) => !matches!(command, Command::Scan { .. }),
        };
        if range.group != group || !end_inside || self.multi.group(group).is_none() {
            return Err(ApiError::NotServed { group });
        }
        Ok(())
    }

    fn refusal(&self, group: GroupId, error: MultiError) -> ApiError {
        match error {
            MultiError::Propose(ProposeError::NotLeader { leader_hint }) => ApiError::NotLeader {
                group,
                leader: leader_hint,
                address: leader_hint.and_then(|leader| {
                    self.machines
                        .meta()
                        .directory
                        .address(leader)
                        .map(str::to_owned)
                }),
            },
            MultiError::UnknownGroup(group) => ApiError::NotServed { group },
            MultiError::Propose(
                ProposeError::TooManyPendingReads | ProposeError::TransferInProgress,
            ) => ApiError::Busy,
            other => ApiError::Unavailable(other.to_string()),
        }
    }

    /// One ready cycle for every group with work.
    fn cycle(&mut self) -> Result<(), LoopError> {
        let mut ready = self.multi.ready();
        for (group, group_ready) in &ready.groups {
            if let Some(leader) = group_ready.leader_changed {
                self.counters.leader_changes += 1;
                // Debug level: a node hosts thousands of groups, and `status` counts these.
                match leader {
                    Some(leader) => tracing::debug!(%group, %leader, "leader changed"),
                    None => tracing::debug!(%group, "leader unknown"),
                }
            }
        }
        // Raft's order (`MultiReady`): a leader's traffic leaves before this cycle's fsync, and
        // what is already durable here is applied and answered before it too: a client whose
        // entry committed does not wait for the write of newer entries.
        self.send(std::mem::take(&mut ready.batches));
        for (group, group_ready) in &ready.groups {
            let durable = &group_ready.committed[..group_ready.committed_before_persist];
            self.apply_entries(*group, durable);
            self.confirm_reads(group_ready);
        }
        self.serve_reads();
        self.persist(&ready)?;
        self.send(std::mem::take(&mut ready.persisted_batches));
        let mut compact = Vec::new();
        for (group, group_ready) in &ready.groups {
            self.apply_rest(*group, group_ready)?;
            let entries =
                (self.machines.applied(*group).0).saturating_sub(self.snapshot_index(*group).0);
            let since = self.machines.since_snapshot(*group);
            if snapshot_due(entries, since, self.snapshot_entries) {
                compact.push(*group);
            }
        }
        self.serve_reads();
        self.multi.advance(ready);
        for group in compact {
            let index = self.machines.applied(group);
            let data = self.machines.snapshot_data(group);
            let size = data.len();
            match self.multi.compact(group, index, data) {
                Ok(()) => self.machines.snapshot_taken(group, size),
                Err(error) => tracing::warn!(%group, %error, "compaction refused"),
            }
        }
        Ok(())
    }

    fn send(&self, batches: Vec<Batch>) {
        for batch in batches.into_iter().flat_map(split_oversized) {
            // A full or down peer drops the batch (counted by the transport); Raft resends.
            let _ = self.transport.send(batch);
        }
    }

    /// Makes everything `ready` asks durable in one write and one fdatasync. A hard state Raft
    /// marks `commit_only`, when nothing else of its group is written, rides with the next
    /// write instead of costing one. The write keeps `Persist`'s order (entries, then hard
    /// state), so a write torn by a crash never leaves a commit index over entries it lost.
    fn persist(&mut self, ready: &MultiReady) -> Result<(), LoopError> {
        let mut batch = WriteBatch::new();
        for (group, group_ready) in &ready.groups {
            let persist = &group_ready.persist;
            if persist.is_empty() {
                continue;
            }
            let alone = persist.snapshot.is_none()
                && persist.entries.is_empty()
                && persist.compaction.is_none();
            if let (true, true, Some(state)) = (alone, persist.commit_only, persist.hard_state) {
                self.deferred.insert(*group, state);
                continue;
            }
            let deferred = self.deferred.remove(group);
            self.counters.entries_persisted += persist.entries.len() as u64;
            batch.persist(*group, persist);
            // Raft hands out a hard state only when it changed, so a write of entries alone
            // would otherwise drop the deferred one: it goes after them (older on disk would
            // be safe, but a restart would relearn more).
            if let (None, None, Some(state)) = (persist.hard_state, &persist.snapshot, deferred) {
                batch.set_hard_state(*group, state);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        for (group, state) in std::mem::take(&mut self.deferred) {
            batch.set_hard_state(group, state);
        }
        let started = Instant::now();
        self.engine.write(batch)?;
        self.counters.write_micros += started.elapsed().as_micros() as u64;
        self.counters.fsyncs += 1;
        self.counters.cycles_since_gc += 1;
        if self.counters.cycles_since_gc >= 1024 {
            self.counters.cycles_since_gc = 0;
            if let Err(error) = self.engine.gc() {
                tracing::warn!(%error, "log gc failed");
            }
        }
        Ok(())
    }

    /// Writes the commit-only hard states still waiting (at a clean stop).
    fn flush_deferred(&mut self) -> Result<(), LoopError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for (group, state) in std::mem::take(&mut self.deferred) {
            batch.set_hard_state(group, state);
        }
        self.engine.write(batch)?;
        Ok(())
    }

    /// After the write: installs the snapshot `ready` persisted, then applies the committed
    /// entries the write made durable (those after `committed_before_persist`).
    fn apply_rest(&mut self, group: GroupId, ready: &Ready) -> Result<(), LoopError> {
        if let Some(snapshot) = &ready.persist.snapshot {
            self.machines
                .restore(group, snapshot)
                .map_err(|reason| LoopError::Group { group, reason })?;
            self.waiting
                .snapshot_installed(group, snapshot.meta.last.index);
        }
        self.apply_entries(group, &ready.committed[ready.committed_before_persist..]);
        Ok(())
    }

    fn apply_entries(&mut self, group: GroupId, entries: &[Entry]) {
        self.machines.count_applied(group, entries);
        for entry in entries {
            let response = self.machines.apply(group, entry);
            self.waiting
                .applied(group, entry.index, entry.term, response);
        }
    }

    /// Reads whose index is now known wait for it to apply; reads given up are refused.
    fn confirm_reads(&mut self, ready: &Ready) {
        for read in &ready.reads {
            self.waiting.confirm_read(read.context, read.index);
        }
        for &context in &ready.aborted_reads {
            if let Some((group, _, responder)) = self.waiting.take_read(context) {
                let leader = self.multi.group(group).and_then(|raft| raft.leader());
                responder.answer(Err(self.refusal(
                    group,
                    MultiError::Propose(ProposeError::NotLeader {
                        leader_hint: leader,
                    }),
                )));
            }
        }
    }

    /// Spreads leadership: each data group prefers the first replica in its descriptor (the
    /// initial placement rotates it across nodes), so a leader that is not the preferred one
    /// hands over once the preferred node is live. Raft's transfer waits for it to catch up.
    fn balance_leaders(&mut self) {
        let live: Vec<NodeId> = self.multi.live_peers().collect();
        let handovers: Vec<(GroupId, NodeId)> = self
            .machines
            .meta()
            .map
            .ranges()
            .filter_map(|range| {
                let preferred = *range.replicas.first()?;
                let raft = self.multi.group(range.group)?;
                let hand_over = raft.role() == Role::Leader
                    && preferred != self.node
                    && live.contains(&preferred);
                hand_over.then_some((range.group, preferred))
            })
            .collect();
        for (group, preferred) in handovers {
            if let Err(error) = self.multi.transfer_leader(group, preferred) {
                tracing::debug!(%group, %error, "leadership transfer refused");
            }
        }
    }

    fn serve_reads(&mut self) {
        let machines = &self.machines;
        for read in self.waiting.take_servable(|group| machines.applied(group)) {
            let response = machines
                .kv(read.group)
                .and_then(|machine| machine.read(&read.command))
                .map(cap_scan_bytes);
            let result = response
                .map(Reply::Kv)
                .ok_or(ApiError::NotServed { group: read.group });
            read.responder.answer(result);
        }
    }

    fn snapshot_index(&self, group: GroupId) -> LogIndex {
        self.multi
            .group(group)
            .map_or(LogIndex(0), |raft| raft.log().first_index().prev())
    }

    fn status(&self) -> NodeStatus {
        let groups = self
            .multi
            .group_ids()
            .filter_map(|group| {
                let raft = self.multi.group(group)?;
                let status = raft.status();
                Some(GroupStatus {
                    group,
                    role: format!("{:?}", status.role),
                    term: status.term.0,
                    leader: status.leader,
                    committed: status.committed.0,
                    applied: status.applied.0,
                    snapshot_index: self.snapshot_index(group).0,
                    quiescent: self.multi.is_quiescent(group),
                })
            })
            .collect();
        NodeStatus {
            node: self.node,
            epoch: self.machines.meta().map.epoch(),
            groups,
            fsyncs: self.counters.fsyncs,
            entries_persisted: self.counters.entries_persisted,
            write_micros: self.counters.write_micros,
            busy_micros: self.counters.busy_micros,
            uptime_micros: self
                .counters
                .started
                .map_or(0, |started| started.elapsed().as_micros() as u64),
            requests: self.counters.requests,
            batches_refused: self.counters.batches_refused,
            waiting: self.waiting.len() as u64,
            leader_changes: self.counters.leader_changes,
            live_peers: self.multi.live_peers().collect(),
            incarnation: self.data.identity.incarnation,
            registered_directories: self
                .machines
                .meta()
                .data_directories
                .keys()
                .copied()
                .collect(),
        }
    }
}

/// Whether a group snapshots now: once `every_entries` entries were applied since its last
/// snapshot, and not before they carry as many bytes as that snapshot. Encoding the whole state
/// then costs at most as much as the log it replaces; a fixed entry count alone made a group
/// with a large state re-encode it far more often than it changed (one range of 100,000 keys,
/// every ~0.6 s at 30 K puts/s).
fn snapshot_due(entries: u64, since: SinceSnapshot, every_entries: u64) -> bool {
    entries >= every_entries && since.log_bytes >= since.snapshot_bytes
}

/// The most entry and snapshot bytes in one outbound batch: well under the transport's frame
/// limit, which drops a bigger batch whole (heartbeats included).
const BATCH_PAYLOAD_BYTES_MAX: u64 = 4 << 20;

/// Splits a batch whose messages carry more than `BATCH_PAYLOAD_BYTES_MAX` into several
/// (each with at least one message); the coalesced heartbeats ride in the first.
fn split_oversized(mut batch: Batch) -> Vec<Batch> {
    let weight = |message: &GroupMessage| match &message.message.body {
        MessageBody::AppendEntries { entries, .. } => {
            entries.iter().map(|entry| entry.payload_bytes() + 64).sum()
        }
        MessageBody::InstallSnapshot { data, .. } => data.len() as u64,
        _ => 64,
    };
    let total: u64 = batch.messages.iter().map(weight).sum();
    if total <= BATCH_PAYLOAD_BYTES_MAX {
        return vec![batch];
    }
    let mut parts = Vec::new();
    let mut current = batch.sibling();
    current.heartbeats = std::mem::take(&mut batch.heartbeats);
    current.heartbeat_responses = std::mem::take(&mut batch.heartbeat_responses);
    let mut bytes = 0;
    for message in batch.messages {
        let size = weight(&message);
        if !current.messages.is_empty() && bytes + size > BATCH_PAYLOAD_BYTES_MAX {
            let next = current.sibling();
            parts.push(std::mem::replace(&mut current, next));
            bytes = 0;
        }
        bytes += size;
        current.messages.push(message);
    }
    parts.push(current);
    parts
}

/// The most key and value bytes one scan response carries; the client continues after the
/// last key (`more`), so a scan of big values never outgrows a frame.
const SCAN_BYTES_MAX: usize = 4 << 20;

fn cap_scan_bytes(response: Response) -> Response {
    let Response::Scan { mut pairs, more } = response else {
        return response;
    };
    let mut bytes = 0;
    let fits = pairs
        .iter()
        .take_while(|(key, value)| {
            bytes += key.len() + value.len();
            bytes <= SCAN_BYTES_MAX
        })
        .count()
        .max(1);
    let cut = fits < pairs.len();
    pairs.truncate(fits);
    Response::Scan {
        pairs,
        more: more || cut,
    }
}

/// This node's clock in milliseconds since the Unix epoch (0 if it reads before 1970).
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn too_large(what: &str, bytes: usize, limit: usize) -> Result<(), ApiError> {
    if bytes > limit {
        return Err(ApiError::TooLarge {
            what: what.into(),
            bytes,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::{Entry, EntryPayload, LogId, Message, Term};

    fn append(group: u64, payload_bytes: usize) -> GroupMessage {
        let entry = Entry {
            index: LogIndex(1),
            term: Term(1),
            payload: EntryPayload::Normal(vec![0; payload_bytes].into()),
        };
        GroupMessage {
            group: GroupId(group),
            message: Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(1),
                body: MessageBody::AppendEntries {
                    prev: LogId::default(),
                    entries: vec![entry],
                    commit: LogIndex(0),
                },
            },
        }
    }

    #[test]
    fn big_batches_are_split_under_the_payload_limit_and_small_ones_are_not() {
        let mut small = Batch::new(NodeId(1), NodeId(2));
        small.messages = (0..10).map(|group| append(group, 1000)).collect();
        assert_eq!(split_oversized(small).len(), 1);
        let mut big = Batch::new(NodeId(1), NodeId(2));
        big.messages = (0..16).map(|group| append(group, 1 << 20)).collect();
        let parts = split_oversized(big);
        // Three 1 MiB entries (plus their overhead) fit under 4 MiB, four do not.
        assert_eq!(parts.len(), 6);
        assert!(parts.iter().all(|part| part.messages.len() <= 3));
        assert_eq!(
            parts.iter().map(|part| part.messages.len()).sum::<usize>(),
            16
        );
        let mut huge = Batch::new(NodeId(1), NodeId(2));
        huge.messages = vec![append(1, 6 << 20)];
        assert_eq!(
            split_oversized(huge).len(),
            1,
            "one message always goes, alone"
        );
    }

    #[test]
    fn scans_are_cut_by_bytes_and_say_there_is_more() {
        let pairs: Vec<_> = (0..10u8).map(|key| (vec![key], vec![0; 1 << 20])).collect();
        let Response::Scan { pairs, more } = cap_scan_bytes(Response::Scan { pairs, more: false })
        else {
            panic!("a scan stays a scan");
        };
        assert_eq!((pairs.len(), more), (3, true));
    }

    #[test]
    fn a_group_snapshots_after_enough_entries_and_as_many_bytes_as_its_last_snapshot() {
        let since = |log_bytes, snapshot_bytes| SinceSnapshot {
            log_bytes,
            snapshot_bytes,
        };
        // A small state: the entry count decides.
        assert!(!snapshot_due(19_999, since(10 << 20, 1_000), 20_000));
        assert!(snapshot_due(20_000, since(10 << 20, 1_000), 20_000));
        // A large state (27 MB): 20,000 puts of 300 bytes are not enough log to pay for it.
        assert!(!snapshot_due(20_000, since(6 << 20, 27 << 20), 20_000));
        assert!(snapshot_due(95_000, since(27 << 20, 27 << 20), 20_000));
        // No snapshot yet: the entry count alone.
        assert!(snapshot_due(20_000, since(0, 0), 20_000));
    }
}

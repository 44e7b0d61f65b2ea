//! The Raft loop: the one thread that drives every group of the node.
//!
//! Each turn: wait for input or the next tick; take every waiting input (inbound batches are
//! stepped, client requests proposed or read); tick when due; then one ready cycle for all
//! groups: one log write (one fdatasync) for everything to persist, send the outbound batches,
//! apply committed entries, answer waiting clients, advance. Requests that arrive during the
//! fsync queue up and share the next one, so a busy node persists many entries per sync.

use crate::api::{ApiError, GroupStatus, NodeStatus, PeerState, PeerStatus, Reply, Request};
use crate::config::Limits;
use crate::server::clients::{Responder, Waiting};
use crate::server::machines::{Machines, SinceSnapshot};
use crossbeam_channel::Receiver;
use flotilla_raft::{
    Batch, Entry, GroupId, GroupMessage, HardState, LogIndex, MessageBody, MultiError, MultiRaft,
    MultiReady, NodeId, ProposeError, Ready, Role, Term,
};
use flotilla_shard_manager::Epoch;
use flotilla_storage::{Codec, Command, GroupLog, LogEngine, Response, WriteBatch, WriteError};
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
    /// The term and vote last made durable, per group.
    pub(crate) synced_votes: FxHashMap<GroupId, (Term, Option<NodeId>)>,
    /// Commit-only hard states waiting for the next write.
    pub(crate) deferred: BTreeMap<GroupId, HardState>,
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
                if self.counters.ticks % BALANCE_INTERVAL_TICKS == 0 {
                    self.balance_leaders();
                }
            }
            while self.multi.has_ready() {
                self.cycle()?;
            }
            self.counters.busy_micros += turn.elapsed().as_micros() as u64;
        }
        self.flush_deferred()
    }

    fn handle(&mut self, input: Input) -> Result<(), LoopError> {
        match input {
            Input::Batch(batch) => match self.multi.step_batch(batch) {
                Ok(()) => {}
                // A store failed: stop rather than serve from a log that cannot be trusted.
                Err(MultiError::Log(error)) => return Err(LoopError::Store(error.to_string())),
                Err(error) => {
                    self.counters.batches_refused += 1;
                    tracing::debug!(%error, "inbound batch refused");
                }
            },
            Input::Request(request, responder) => {
                self.counters.requests += 1;
                match request {
                    Request::Kv {
                        group,
                        epoch,
                        command,
                    } => self.kv(group, epoch, command, responder),
                    Request::RangeMap => responder.answer(Ok(Reply::RangeMap {
                        map: self.machines.meta().map.clone(),
                        directory: self.machines.meta().directory.clone(),
                    })),
                    Request::Status => responder.answer(Ok(Reply::Status(self.status()))),
                }
            }
        }
        Ok(())
    }

    /// Checks a KV request against the map and limits, then proposes it or starts a read.
    fn kv(&mut self, group: GroupId, epoch: Epoch, command: Command, responder: Responder) {
        if let Err(error) = self.check(group, epoch, &command) {
            return responder.answer(Err(error));
        }
        if self.waiting.len() >= self.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        let result = if matches!(command, Command::Get { .. } | Command::Scan { .. }) {
            let context = self.waiting.add_read(group, command, responder);
            self.multi.read_index(group, context).map_err(|error| {
                let (_, _, responder) = self.waiting.take_read(context).expect("just added");
                (error, responder)
            })
        } else {
            match self.multi.propose(group, command.encode()) {
                Ok(index) => {
                    let term = self
                        .multi
                        .group(group)
                        .map(|raft| raft.term())
                        .unwrap_or_default();
                    self.waiting.add_proposal(group, index, term, responder);
                    Ok(())
                }
                Err(error) => Err((error, responder)),
            }
        };
        if let Err((error, responder)) = result {
            responder.answer(Err(self.refusal(group, error)));
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
        let (leader_traffic, after_persist) =
            split_leader_traffic(std::mem::take(&mut ready.batches));
        self.send(leader_traffic);
        // What is already durable here is applied and answered before this cycle's fsync: a
        // client whose entry committed does not wait for the write of newer entries.
        for (group, group_ready) in &ready.groups {
            let durable = &group_ready.committed[..durable_prefix(group_ready)];
            self.apply_entries(*group, durable);
            self.confirm_reads(group_ready);
        }
        self.serve_reads();
        self.persist(&ready)?;
        self.send(after_persist);
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

    /// Makes everything `ready` asks durable in one write and one fdatasync. A hard state that
    /// only moved the commit index needs no sync of its own, so it rides with the next write
    /// instead of costing one: a restart that finds an older commit index relearns the rest
    /// from the leader, and the deferred index covers only entries earlier writes made durable
    /// (it comes with no new entries). The write keeps `Persist`'s order (entries, then hard
    /// state), so a write torn by a crash never leaves a commit index over entries it lost.
    fn persist(&mut self, ready: &MultiReady) -> Result<(), LoopError> {
        let mut batch = WriteBatch::new();
        for (group, group_ready) in &ready.groups {
            let persist = &group_ready.persist;
            if persist.is_empty() {
                continue;
            }
            let vote = persist.hard_state.map(|state| (state.term, state.vote));
            let commit_only = persist.snapshot.is_none()
                && persist.entries.is_empty()
                && persist.compaction.is_none()
                && vote.is_some()
                && self.synced_votes.get(group) == vote.as_ref();
            if let (true, Some(state)) = (commit_only, persist.hard_state) {
                self.deferred.insert(*group, state);
                continue;
            }
            let deferred = self.deferred.remove(group);
            if let Some(vote) = vote {
                self.synced_votes.insert(*group, vote);
            }
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
    /// entries the write made durable (those past `durable_prefix`, applied before it).
    fn apply_rest(&mut self, group: GroupId, ready: &Ready) -> Result<(), LoopError> {
        if let Some(snapshot) = &ready.persist.snapshot {
            self.machines
                .restore(group, snapshot)
                .map_err(|reason| LoopError::Group { group, reason })?;
            self.waiting
                .snapshot_installed(group, snapshot.meta.last.index);
        }
        self.apply_entries(group, &ready.committed[durable_prefix(ready)..]);
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
            peers: self.peer_statuses(),
        }
    }

    /// Each watched peer as Raft hears it, told apart by whether the transport holds an open
    /// connection to it: a connected but quiet peer is a stalled connection or a stuck peer,
    /// an unreachable one is down or cut off.
    fn peer_statuses(&self) -> Vec<PeerStatus> {
        let connected = self.transport.connected_peers();
        let is_connected = |peer| connected.iter().any(|&(node, open)| node == peer && open);
        let node_timeout_ticks = self.multi.config().node_timeout_ticks;
        let tick_ms = self.tick.as_millis() as u64;
        self.multi
            .peer_silences()
            .map(|(node, silent_ticks)| PeerStatus {
                node,
                state: PeerState::of(silent_ticks, node_timeout_ticks, is_connected(node)),
                silent_ms: silent_ticks * tick_ms,
            })
            .collect()
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

/// How many of `ready.committed` are durable before `ready`'s own write: those below the first
/// entry it appends (the log before it was made durable by earlier writes). None when it
/// installs a snapshot, which they come after.
fn durable_prefix(ready: &Ready) -> usize {
    if ready.persist.snapshot.is_some() {
        return 0;
    }
    match ready.persist.entries.first() {
        None => ready.committed.len(),
        Some(first) => ready
            .committed
            .partition_point(|entry| entry.index < first.index),
    }
}

/// Splits outbound batches into what a leader sends (AppendEntries, heartbeats, snapshot
/// chunks, TimeoutNow), which may leave before this node's fsync, and everything else (votes
/// and responses, which promise what this node has persisted), which must wait for it.
///
/// Sending a leader's entries while it writes them itself is safe (Raft thesis §10.2.1): the
/// leader counts its own copy toward a commit only once `advance` reports it persisted, and a
/// leader's term and vote were persisted when it campaigned, in an earlier ready.
fn split_leader_traffic(batches: Vec<Batch>) -> (Vec<Batch>, Vec<Batch>) {
    let mut early = Vec::with_capacity(batches.len());
    let mut late = Vec::with_capacity(batches.len());
    for mut batch in batches {
        let (leader, other): (Vec<GroupMessage>, Vec<GroupMessage>) =
            batch.messages.drain(..).partition(|message| {
                matches!(
                    message.message.body,
                    MessageBody::AppendEntries { .. }
                        | MessageBody::Heartbeat { .. }
                        | MessageBody::InstallSnapshot { .. }
                        | MessageBody::TimeoutNow
                )
            });
        let mut first = Batch::new(batch.from, batch.to);
        first.messages = leader;
        first.heartbeats = std::mem::take(&mut batch.heartbeats);
        batch.messages = other;
        // An empty batch still goes out: it is the node-level liveness heartbeat.
        if first.is_empty() || !batch.is_empty() {
            late.push(batch);
        }
        if !first.is_empty() {
            early.push(first);
        }
    }
    (early, late)
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
    let mut current = Batch::new(batch.from, batch.to);
    current.heartbeats = std::mem::take(&mut batch.heartbeats);
    current.heartbeat_responses = std::mem::take(&mut batch.heartbeat_responses);
    let mut bytes = 0;
    for message in batch.messages {
        let size = weight(&message);
        if !current.messages.is_empty() && bytes + size > BATCH_PAYLOAD_BYTES_MAX {
            parts.push(std::mem::replace(
                &mut current,
                Batch::new(batch.from, batch.to),
            ));
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

    fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        range
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(1),
                payload: EntryPayload::Normal(vec![1].into()),
            })
            .collect()
    }

    /// Committed entries are answered before the fsync only when an earlier write made them
    /// durable: those below the first entry this ready appends, none with a snapshot.
    #[test]
    fn only_entries_written_before_are_applied_ahead_of_the_write() {
        let mut ready = Ready {
            committed: entries(5..=9),
            ..Ready::default()
        };
        assert_eq!(
            durable_prefix(&ready),
            5,
            "nothing new to write: all of them"
        );
        ready.persist.entries = entries(8..=12);
        assert_eq!(durable_prefix(&ready), 3, "5, 6 and 7 were written before");
        ready.persist.entries = entries(5..=12);
        assert_eq!(durable_prefix(&ready), 0, "all of them are in this write");
        ready.persist.entries.clear();
        ready.persist.snapshot = Some(flotilla_raft::Snapshot::default());
        assert_eq!(
            durable_prefix(&ready),
            0,
            "they follow the snapshot this write installs"
        );
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

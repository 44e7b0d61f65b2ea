//! The node's logic, sans IO: admission and epoch checks, the persistence plan, apply, reads,
//! answers to clients, snapshots, leader balancing, the data-directory registry and the
//! counters, driven by inputs and acting through two small seams (a `BatchSink` for peers, the
//! `LogEngine` for the one write per cycle). No clock, thread or socket: time is passed in.
//!
//! The production driver (`server::driver`) and the whole-cluster simulator (`node/tests/sim`)
//! run this same core. Calling order, each turn:
//!
//! 1. `on_time(now_ms)`: the clock, read by the driver (ticks when one is due);
//! 2. `on_batch(batch)` and `on_request(request, responder)` for each input;
//! 3. `take_pins()`: when some, the driver makes them durable before anything else;
//! 4. `run()`: every ready cycle, in Raft's order (`MultiReady`): early sends, the durable
//!    prefix applied and answered, one log write, the persisted sends, the rest applied;
//! 5. at a clean stop, `stop()` writes what was deferred.
//!
//! A `CoreError` means the node must stop: the log or a store can no longer be trusted.

mod admission;
mod backups;
pub mod boot;
mod cycle;
pub mod histogram;
mod machines;
mod merge;
mod placement;
mod registry;
mod routing;
mod split;
mod status;
pub use machines::RangeStore;
pub use status::{GroupsObservation, Observation};
#[cfg(test)]
mod tests;
mod waiting;

use crate::api::{ApiError, Reply, Request};
use crate::config::Limits;
use flotilla_raft::{Batch, GroupId, HardState, LogIndex, MultiError, MultiRaft, NodeId};
use flotilla_shard_manager::MetaState;
use flotilla_shard_manager::placement::PlacementConfig;
use flotilla_storage::kv::SessionLimits;
use flotilla_storage::{GroupLog, LogEngine, WriteError};
use flotilla_transport_quic::{QuicTransport, Transport};
use histogram::Histogram;
use machines::Machines;
use registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use waiting::Waiting;

/// Takes the one answer to one client request.
pub trait Respond {
    /// Delivers `result`; a client that went away is not an error.
    fn answer(self, result: Result<Reply, ApiError>);
}

/// Where batches for peer nodes go. Sending never blocks and may drop: Raft resends.
pub trait BatchSink {
    /// Queues `batch` for `batch.to`.
    fn send_batch(&self, batch: Batch);

    /// Whether a connection to `peer` is open (a quiet peer on an open connection is a stalled
    /// connection or a stuck peer; without one, it is down or cut off).
    fn is_connected(&self, peer: NodeId) -> bool;

    /// `peer` listens at `address` (`host:port`): a node that joined, or moved. The sink
    /// dials it there from now on.
    fn peer_address(&self, peer: NodeId, address: &str);
}

impl BatchSink for Arc<QuicTransport> {
    fn send_batch(&self, batch: Batch) {
        // A full or down peer drops the batch (counted by the transport).
        let _ = self.send(batch);
    }

    fn is_connected(&self, peer: NodeId) -> bool {
        self.connected_peers()
            .iter()
            .any(|&(node, open)| node == peer && open)
    }

    fn peer_address(&self, peer: NodeId, address: &str) {
        match address.parse() {
            Ok(address) => self.add_peer(peer, address),
            Err(error) => {
                tracing::warn!(peer = peer.0, address, %error, "a peer's address does not parse")
            }
        }
    }
}

/// What the core needs to know of the node's configuration.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// This node.
    pub node: NodeId,
    /// One tick of every group's logical clock.
    pub tick_ms: u64,
    /// Applied entries between two snapshots of a group, at least.
    pub snapshot_entries: u64,
    /// Client limits.
    pub limits: Limits,
    /// The limits put into each entry that opens a session.
    pub session_limits: SessionLimits,
    /// Cadences and sizes of the core's own work.
    pub tuning: CoreTuning,
    /// The placement driver's configuration (it runs while this node leads the meta group).
    pub placement: PlacementConfig,
    /// A deliberately broken rule (feature `mutations`, tests only).
    #[cfg(feature = "mutations")]
    pub mutation: CoreMutation,
}

/// Cadences and sizes of the core's own work (`[tuning]` in the node's configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreTuning {
    /// Ticks between two rounds of placement work: reports to the meta leader, its driver's
    /// tick, range leaders carrying out operators, replicas created and destroyed.
    pub placement_interval_ticks: u64,
    /// Log writes between two garbage collections of the log's segments.
    pub gc_interval_writes: u64,
    /// Once the log holds more segments than this, every group with a live entry in an
    /// older one is compacted as soon as it applied that entry, however few it applied since
    /// its last snapshot: a quiet group's old entries would otherwise keep every newer segment
    /// on disk.
    pub compact_beyond_segments: usize,
    /// The most entry and snapshot bytes in one outbound batch: below the transport's frame
    /// limit, which drops a bigger batch whole (heartbeats included).
    pub batch_payload_bytes_max: u64,
    /// The most key and value bytes one scan response carries; the client continues after
    /// the last key, so a scan of big values never outgrows a frame.
    pub scan_bytes_max: usize,
    /// The answer bytes of reads served in one turn of the driver; the rest wait for the
    /// next turn, so a storm of reads never holds the loop for long.
    pub read_bytes_per_turn: usize,
    /// A range whose key and value bytes pass this splits at its middle key (0: never).
    pub split_bytes: u64,
    /// A range whose leader serves more requests per second than this, over a window of a
    /// second or more, splits at the median of the keys it sampled (0: never).
    pub split_load_rps: u64,
    /// The most key and value bytes a range may hold to be merged into its left neighbour
    /// (0: no merges).
    pub merge_bytes: u64,
    /// Two neighbours holding fewer key and value bytes than this together merge by
    /// themselves (0: only by command).
    pub merge_below_bytes: u64,
    /// Two such neighbours merge by themselves only while their leaders served fewer requests
    /// per second than this together (0: load does not count).
    pub merge_below_rps: u64,
    /// How long after a split its halves do not merge by themselves.
    pub merge_wait_ms: u64,
}

/// The largest `batch_payload_bytes_max` any configuration may set: a batch's framing and
/// message headers must still fit the transport's largest possible frame.
pub const BATCH_PAYLOAD_BYTES_LIMIT: u64 = 256 << 20;
const _: () = assert!(
    BATCH_PAYLOAD_BYTES_LIMIT < flotilla_transport_quic::config::FRAME_BYTES_LIMIT as u64 / 2
);

impl Default for CoreTuning {
    /// The values of the embedded default configuration.
    fn default() -> Self {
        Self {
            placement_interval_ticks: 25,
            gc_interval_writes: 1024,
            compact_beyond_segments: 16,
            batch_payload_bytes_max: 4 << 20,
            scan_bytes_max: 4 << 20,
            read_bytes_per_turn: 16 << 20,
            split_bytes: 64 << 20,
            split_load_rps: 0,
            merge_bytes: 1 << 20,
            merge_below_bytes: 0,
            merge_below_rps: 0,
            merge_wait_ms: 600_000,
        }
    }
}

/// Deliberately broken rules of the node core, which the whole-cluster simulator's checkers
/// must catch (feature `mutations`, tests only).
#[cfg(feature = "mutations")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CoreMutation {
    /// The core as it should be.
    #[default]
    None,
    /// Answer a put or delete as soon as it is proposed, from this node's state, before a
    /// majority holds it.
    AnswerBeforeCommit,
    /// Serve gets from this node's state at once, without a ReadIndex round.
    ReadWithoutReadIndex,
    /// Install a snapshot a leader sent without checking its data first.
    InstallUncheckedSnapshots,
    /// Compact a range's log onto the disk engine without syncing the engine first.
    CompactWithoutEngineSync,
}

/// Why the node must stop.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The log could not be written: nothing more can be acknowledged.
    #[error("the log write failed: {0}")]
    Write(#[from] WriteError),
    /// A group's log store failed while stepping a peer's message.
    #[error("the log store failed: {0}")]
    Store(flotilla_raft::LogError),
    /// The state machine engine failed.
    #[error("the state machine engine failed: {0}")]
    Engine(#[source] flotilla_storage::EngineError),
    /// A range's state machine failed in the engine: it may hold less than it applied.
    #[error("range {group}'s state machine failed: {source}")]
    Machine {
        /// The range's group.
        group: GroupId,
        /// What failed.
        source: flotilla_storage::MachineError,
    },
    /// A group's state could not be restored from its snapshot.
    #[error("group {group} cannot restore its snapshot: {reason}")]
    Restore {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
    /// The meta group registered this node id with another data directory.
    #[error(
        "the cluster registered node {node} with data directory {registered:032x}, but this \
         process runs on directory {own:032x}: it is not that node's data directory (a node \
         that lost its data must join under a new id)"
    )]
    NotOwnDirectory {
        /// This node.
        node: NodeId,
        /// The directory the meta group registered for it.
        registered: u128,
        /// This process's directory.
        own: u128,
    },
}

/// The node's identity as the core sees it: its data directory, and the directories of its
/// peers it met before (persisted by the driver).
#[derive(Clone, Debug)]
pub struct CoreIdentity {
    /// This data directory's id.
    pub directory: u128,
    /// How many times it was started (this process's number).
    pub incarnation: u64,
    /// The data directory each peer was first met with.
    pub pins: BTreeMap<NodeId, u128>,
}

/// One node: MultiRaft, its state machines, the waiting clients, and what it counts.
pub struct NodeCore<R, S> {
    config: CoreConfig,
    multi: MultiRaft<GroupLog>,
    engine: Arc<LogEngine>,
    sink: S,
    machines: Machines,
    waiting: Waiting<R>,
    counters: Counters,
    /// Commit-only hard states waiting for the next write.
    deferred: BTreeMap<GroupId, HardState>,
    registry: Registry,
    clock: Clock,
    /// Free bytes on the data directory's file system, as the driver last read them.
    disk_free_bytes: Option<u64>,
    /// Servable reads were left for the next turn (the turn's read budget ran out).
    reads_left: bool,
    /// Reports, the placement driver (on the meta leader), replica creation and destruction.
    placement: placement::Placement,
    /// Backup views open on this node.
    backups: backups::BackupViews,
    /// Merges this node takes part in.
    merges: merge::Merges,
    /// Snapshots produced from the engine for followers (off the loop, so shared).
    engine_snapshots_produced: Arc<std::sync::atomic::AtomicU64>,
    /// Received snapshots refused once staged (Raft counts those it checked itself).
    staged_snapshots_refused: u64,
    /// Ranges restored off the loop from a received snapshot Raft installs (decoded, or
    /// ingested into the engine), by group, with the snapshot's last entry: restored at install
    /// by swapping them in or switching to them; what the cycle did not use is dropped at its
    /// end (an ingested space then deleted in the background).
    prepared: rustc_hash::FxHashMap<GroupId, (flotilla_raft::LogId, machines::PreparedRestore)>,
    /// What checks a received snapshot staged in a file, off the loop (`staged_check`).
    staged_check: flotilla_storage::StagedCheck,
    /// Ranges in memory whose snapshot is being written off the loop (one at a time each),
    /// with what each had applied since its last snapshot when the copy was taken.
    compacting: BTreeMap<GroupId, machines::SinceSnapshot>,
    /// The log's segment count when the groups keeping old segments were last looked for
    /// (looked for again only once it changes).
    segments_checked: usize,
    /// Groups that keep the log's oldest segments, with the last entry each holds there: each
    /// is compacted at the end of a cycle once it applied that entry.
    pinning: Vec<(GroupId, LogIndex)>,
}

/// What the core has done since start.
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    /// Log writes (each one fdatasync).
    pub fsyncs: u64,
    /// Entries those writes persisted.
    pub entries_persisted: u64,
    /// Time spent in those writes, in microseconds (as the log engine measured it).
    pub write_micros: u64,
    /// Client requests received.
    pub requests: u64,
    /// Inbound batches refused.
    pub batches_refused: u64,
    /// Leader changes seen over all groups.
    pub leader_changes: u64,
    /// Ready cycles since the last log garbage collection.
    cycles_since_gc: u64,
    /// Time the driver reported busy, in microseconds, and since when it runs.
    pub busy_micros: u64,
    /// Time since the core started, in microseconds, as the driver reported it.
    pub uptime_micros: u64,
    /// Entries proposed to a group's log by this node (client writes and session openings).
    pub proposals: u64,
    /// Committed entries applied to this node's state machines.
    pub entries_applied: u64,
    /// Times this node became the leader of a group.
    pub leaderships_won: u64,
    /// Snapshots this node took of its own state machines (log compaction).
    pub snapshots_taken: u64,
    /// Groups compacted early because their old entries kept the log's oldest segments
    /// (`compact_beyond_segments`).
    pub compactions_forced: u64,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: u64,
    /// Of those, restored off the Raft loop: a range in memory or the meta group's state
    /// decoded (swapped in at install), a range in the disk engine ingested into a space of its
    /// own (switched to at install).
    pub snapshots_restored_off_loop: u64,
    /// Of the snapshots taken, those written to their file off the Raft loop (ranges in memory
    /// and the meta group's state).
    pub snapshots_written_off_loop: u64,
    /// Of the snapshots installed, the meta group's.
    pub meta_snapshots_installed: u64,
    /// Of the snapshots written off the loop, the meta group's.
    pub meta_snapshots_written: u64,
    /// Snapshots received from a leader whose data failed the check (dropped, not installed).
    pub snapshots_refused: u64,
    /// What this node's snapshot sending did as a leader: chunks and bytes sent, transfers
    /// started, resumed and given up (taken from Raft at each `counters()`).
    pub snapshot_sends: flotilla_raft::SnapshotSendCounters,
    /// Bytes the log writes framed and wrote.
    pub log_bytes_written: u64,
    /// Splits this node asked for as the leader of a range past `ranges.split_bytes`.
    pub splits_asked_by_size: u64,
    /// Splits this node asked for as the leader of a range past `ranges.split_load_rps`.
    pub splits_asked_by_load: u64,
    /// Merges this node asked for as the leader of a range small enough with its neighbour.
    pub merges_asked_by_size: u64,
    /// Merges this node's replicas applied (each replica of the left range counts one).
    pub merges_applied: u64,
    /// Merges this node's replicas gave up, their right neighbour having refused to freeze.
    pub merges_given_up: u64,
    /// Committed entries the log replayed that the engine had applied before this start (its
    /// ranges are at their applied entry, past their log's snapshot).
    pub entries_applied_before_start: u64,
    /// Splits' right halves the engine held that this start hosted (a crash had cut their
    /// hosting short).
    pub carves_adopted: u64,
    /// Snapshots the engine produced to be sent to followers.
    pub engine_snapshots_produced: u64,
    /// How long each log write (write + fdatasync) took, in seconds.
    pub write_seconds: Histogram,
    /// How many entries each log write persisted (group commit).
    pub entries_per_write: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            fsyncs: 0,
            entries_persisted: 0,
            write_micros: 0,
            requests: 0,
            batches_refused: 0,
            splits_asked_by_size: 0,
            splits_asked_by_load: 0,
            merges_asked_by_size: 0,
            merges_applied: 0,
            merges_given_up: 0,
            entries_applied_before_start: 0,
            carves_adopted: 0,
            engine_snapshots_produced: 0,
            leader_changes: 0,
            cycles_since_gc: 0,
            busy_micros: 0,
            uptime_micros: 0,
            proposals: 0,
            entries_applied: 0,
            leaderships_won: 0,
            snapshots_taken: 0,
            compactions_forced: 0,
            snapshots_installed: 0,
            snapshots_restored_off_loop: 0,
            snapshots_written_off_loop: 0,
            meta_snapshots_installed: 0,
            meta_snapshots_written: 0,
            snapshots_refused: 0,
            snapshot_sends: flotilla_raft::SnapshotSendCounters::default(),
            log_bytes_written: 0,
            write_seconds: Histogram::new(histogram::LATENCY_BOUNDS_SECONDS),
            entries_per_write: Histogram::new(histogram::ENTRY_COUNT_BOUNDS),
        }
    }
}

/// The time, as the driver read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// A monotonic clock in milliseconds (never goes back): the tick schedule.
    pub monotonic_ms: u64,
    /// The wall clock in milliseconds since the Unix epoch: the log time a leader puts into
    /// session entries.
    pub wall_ms: u64,
}

/// The core's view of time: the last `Now` passed in, and the tick schedule.
#[derive(Clone, Copy, Debug, Default)]
struct Clock {
    monotonic_ms: u64,
    now_ms: u64,
    next_tick_ms: Option<u64>,
    ticks: u64,
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// A core over `multi` (every group recovered from `engine`) and `machines` (their state
    /// machines restored), sending through `sink`.
    pub fn new(
        config: CoreConfig,
        multi: MultiRaft<GroupLog>,
        engine: Arc<LogEngine>,
        sink: S,
        meta: MetaState,
        identity: CoreIdentity,
        store: RangeStore,
    ) -> Self {
        let mut placement = placement::Placement::new(&config.placement);
        placement.never_hosted = placement::voted_while_empty(&multi);
        let mut multi = multi;
        for (&peer, &directory) in &identity.pins {
            multi.pin_peer(peer, directory);
        }
        // The mutation installs what no check looked at: a snapshot its restore cannot
        // prepare goes on to install too, and fails on the loop.
        #[cfg(feature = "mutations")]
        let prepared_checks = config.mutation != CoreMutation::InstallUncheckedSnapshots;
        #[cfg(not(feature = "mutations"))]
        let prepared_checks = true;
        let staged_check = machines::staged_check(
            multi.config().raft.snapshot_check.0,
            &store,
            prepared_checks,
        );
        let backups = backups::BackupViews::new(
            identity.incarnation,
            config.limits.backup_views_max,
            config.limits.backup_view_idle_ms,
        );
        Self {
            backups,
            registry: Registry::new(config.node, identity),
            config,
            multi,
            engine,
            sink,
            machines: Machines::new(meta, store),
            waiting: Waiting::default(),
            counters: Counters::default(),
            deferred: BTreeMap::new(),
            clock: Clock::default(),
            disk_free_bytes: None,
            reads_left: false,
            placement,
            merges: merge::Merges::default(),
            engine_snapshots_produced: Arc::default(),
            staged_snapshots_refused: 0,
            prepared: rustc_hash::FxHashMap::default(),
            compacting: BTreeMap::new(),
            segments_checked: 0,
            pinning: Vec::new(),
            staged_check,
        }
    }

    /// Restores `group`'s state machine from its snapshot (at start, before any input).
    ///
    /// # Errors
    /// `Restore` when the snapshot does not decode.
    pub fn restore(
        &mut self,
        group: GroupId,
        snapshot: &flotilla_raft::Snapshot,
    ) -> Result<(), CoreError> {
        self.machines.restore(group, snapshot)
    }

    /// The time is `now`: ticks once if a tick is due, and every placement interval does the
    /// placement work (reports, the driver, operators, replicas) and registers data
    /// directories.
    pub fn on_time(&mut self, now: Now) {
        self.clock.now_ms = now.wall_ms;
        let now_ms = now.monotonic_ms;
        self.clock.monotonic_ms = now_ms;
        let next = *self
            .clock
            .next_tick_ms
            .get_or_insert(now_ms + self.config.tick_ms);
        if now_ms < next {
            return;
        }
        self.multi.tick();
        self.clock.next_tick_ms = Some((next + self.config.tick_ms).max(now_ms));
        self.clock.ticks += 1;
        if self
            .clock
            .ticks
            .is_multiple_of(self.config.tuning.placement_interval_ticks)
        {
            self.placement_round();
            self.register_data_directories();
            self.backups.expire(now_ms);
        }
    }

    /// When the next tick is due, on the driver's monotonic clock (it may sleep until then).
    #[must_use]
    pub fn next_deadline_ms(&self) -> u64 {
        if self.reads_left {
            return self.clock.monotonic_ms;
        }
        self.clock
            .next_tick_ms
            .unwrap_or(self.clock.monotonic_ms + self.config.tick_ms)
    }

    /// Steps a batch from a peer node: creates the replicas the meta group placed here that
    /// it names, and reads its notes once MultiRaft accepted it. A removed node's batches are
    /// refused.
    ///
    /// # Errors
    /// `Store` when a group's log store failed (the node must stop).
    pub fn on_batch(&mut self, mut batch: Batch) -> Result<(), CoreError> {
        let from = batch.from;
        if self
            .machines
            .meta()
            .cluster
            .node(from)
            .is_some_and(|peer| peer.state == flotilla_shard_manager::placement::NodeState::Removed)
        {
            self.counters.batches_refused += 1;
            tracing::debug!(peer = from.0, "a batch from a removed node was refused");
            return Ok(());
        }
        self.create_placed_replicas(&batch);
        self.drop_votes_for_empty_replicas(&mut batch);
        let notes = std::mem::take(&mut batch.notes);
        let accepted = match self.multi.step_batch(batch) {
            Ok(()) | Err(MultiError::UnknownGroups { .. }) => true,
            Err(MultiError::Log(error)) => return Err(CoreError::Store(error)),
            Err(error @ MultiError::Refused { .. }) => {
                self.counters.batches_refused += 1;
                self.registry.warn_refused(&error, self.clock.monotonic_ms);
                false
            }
            Err(error) => {
                self.counters.batches_refused += 1;
                tracing::debug!(%error, "inbound batch refused");
                false
            }
        };
        if accepted && !notes.is_empty() {
            self.on_notes(from, notes);
        }
        self.learn_pins();
        Ok(())
    }

    /// Handles a client request; `responder` takes its answer, now or once it is applied.
    pub fn on_request(&mut self, request: Request, responder: R) {
        self.counters.requests += 1;
        match request {
            Request::Kv {
                group,
                epoch,
                command,
            } => {
                self.note_load(group, command.key());
                self.kv(group, epoch, command, responder);
            }
            Request::OpenSession { group, .. } => self.open_session(group, responder),
            Request::Write {
                group,
                epoch,
                tag,
                command,
            } => {
                self.note_load(group, command.key());
                self.write(group, epoch, tag, command, responder);
            }
            Request::RangeMap => responder.answer(Ok(Reply::RangeMap {
                map: self.machines.meta().map.clone(),
                directory: self.machines.meta().directory.clone(),
            })),
            Request::RangeMapRead => self.range_map_read(responder),
            Request::Status => responder.answer(Ok(Reply::Status(self.status()))),
            Request::KnownDirectory { node } => {
                let directory = self.multi.pinned_directory(node);
                responder.answer(Ok(Reply::KnownDirectory { directory }));
            }
            Request::Admin(command) => self.admin(command, responder),
            Request::Placement => self.placement_status(responder),
            Request::Join { node, address } => self.join(node, address, responder),
            Request::SetAddress {
                node,
                address,
                data_directory,
            } => self.set_address(node, address, data_directory, responder),
            Request::MetaSnapshot => self.meta_snapshot(responder),
            Request::BackupOpen { group, epoch } => self.backup_open(group, epoch, responder),
            Request::BackupChunk { group, view, chunk } => {
                self.backup_chunk((group, view, chunk), responder);
            }
            Request::Split {
                group,
                epoch,
                at,
                right,
            } => self.split_request((group, epoch), at, right, responder),
            Request::Merge { group, epoch } => self.merge_request((group, epoch), responder),
            Request::BackupClose { view } => {
                self.backups.close(view);
                responder.answer(Ok(Reply::Applied));
            }
        }
    }

    /// Peer data directories met for the first time, or registered by the meta group, since
    /// the last call: all pins, for the driver to make durable before the next `run`.
    pub fn take_pins(&mut self) -> Option<BTreeMap<NodeId, u128>> {
        self.registry.take_changed_pins()
    }

    /// Runs every ready cycle there is, then takes up data directories the meta group
    /// registered.
    ///
    /// # Errors
    /// The log write failed, a snapshot did not restore, or the meta group registered this
    /// node id with another data directory: the node must stop.
    pub fn run(&mut self) -> Result<(), CoreError> {
        // A snapshot checked off the loop is installed at once, even when nothing else is
        // ready (a quiet follower); one written off the loop compacts its log at once.
        self.install_checked_snapshots();
        self.compact_with_written_snapshots();
        while self.multi.has_ready() {
            self.cycle()?;
        }
        if self.reads_left {
            self.serve_reads();
        }
        self.adopt_registered_directories()
    }

    /// At a clean stop: writes the commit-only hard states still deferred.
    ///
    /// # Errors
    /// The log write failed.
    pub fn stop(&mut self) -> Result<(), CoreError> {
        self.flush_deferred()
    }

    /// Reports the free bytes of the data directory's file system: below the configured
    /// reserve, writes that add data are refused (deletes and reads still work).
    pub fn on_disk_free(&mut self, free_bytes: u64) {
        self.disk_free_bytes = Some(free_bytes);
    }

    /// Reports how long the driver was busy in its last turn and how long the core has run,
    /// for `status`.
    pub fn account(&mut self, busy_micros: u64, uptime_micros: u64) {
        self.counters.busy_micros += busy_micros;
        self.counters.uptime_micros = uptime_micros;
    }

    /// Watches `peer` for liveness and sends it the node heartbeat (peers from the directory,
    /// at start).
    pub fn add_peer(&mut self, peer: NodeId) {
        self.multi.add_peer(peer);
    }

    /// Whether this node holds a replica of `group` that is a member of it: not a tombstone
    /// left by a removal, nor an empty replica no leader has reached yet.
    #[must_use]
    pub fn is_member(&self, group: GroupId) -> bool {
        self.multi
            .group(group)
            .is_some_and(|raft| raft.membership().contains(self.config.node))
    }

    /// The node's MultiRaft (for tests and the simulator's checks).
    #[must_use]
    pub fn multi(&self) -> &MultiRaft<GroupLog> {
        &self.multi
    }

    /// The node's counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        Counters {
            entries_applied_before_start: self.machines.entries_applied_before_start(),
            snapshot_sends: self.multi.snapshot_send_counters(),
            engine_snapshots_produced: self
                .engine_snapshots_produced
                .load(std::sync::atomic::Ordering::Relaxed),
            ..self.counters
        }
    }

    /// The meta state (range map, directory, registered data directories) this node applied.
    #[must_use]
    pub fn meta(&self) -> &MetaState {
        self.machines.meta()
    }

    /// The KV state machine of `group`, if hosted.
    #[must_use]
    pub fn state_machine(&self, group: GroupId) -> Option<&dyn flotilla_storage::StateMachine> {
        self.machines.kv(group)
    }

    /// The log engine (the driver collects garbage through it).
    #[must_use]
    pub fn engine(&self) -> &Arc<LogEngine> {
        &self.engine
    }
}

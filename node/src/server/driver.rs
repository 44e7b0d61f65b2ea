//! The driver: the one thread that feeds the node core and does its IO. Each turn it waits for
//! input or the next tick, reads the clock, hands the core every waiting input (peer batches
//! first), makes newly learned peer pins durable, and lets the core run its ready cycles (which
//! write the log and send through the transport). Requests that arrive during a write queue up
//! and share the next one, so a busy node persists many entries per sync.

use crate::api::{ApiError, Reply, Request, ResponseFrame};
use crate::core::{CoreError, NodeCore, Now, Respond};
use crate::observe::Publisher;
use crate::observe::requests::{Operation, RequestStats};
use crate::server::data::OpenedData;
use crate::server::streams::Reservation;
use crossbeam_channel::Receiver;
use flotilla_raft::Batch;
use flotilla_transport_quic::{QuicTransport, Transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How often the driver reads the data directory's free space (for the disk reserve).
const DISK_READ_INTERVAL: Duration = Duration::from_secs(1);

/// What reaches the driver from the network.
#[derive(Debug)]
pub(crate) enum Input {
    /// Raft messages from a peer node.
    Batch(Batch),
    /// A client request and where to answer it.
    Request(Request, Responder),
}

/// Where the answer to one request goes: its client stream's writer, within the stream's
/// budget (its reservation is given back when it answers or is dropped unanswered);
/// answering counts the request's latency under its operation.
#[derive(Debug)]
pub(crate) struct Responder {
    id: u64,
    stream: UnboundedSender<ResponseFrame>,
    reservation: Reservation,
    timing: RequestTiming,
}

/// A request's operation, when it was read, and where its latency is counted.
#[derive(Debug)]
pub(crate) struct RequestTiming {
    pub(crate) operation: Operation,
    pub(crate) read_at: Instant,
    pub(crate) stats: Arc<RequestStats>,
}

impl Responder {
    pub(crate) fn new(
        id: u64,
        stream: UnboundedSender<ResponseFrame>,
        reservation: Reservation,
        timing: RequestTiming,
    ) -> Self {
        Self {
            id,
            stream,
            reservation,
            timing,
        }
    }
}

impl Respond for Responder {
    fn answer(self, result: Result<Reply, ApiError>) {
        let timing = &self.timing;
        timing
            .stats
            .answered(timing.operation, timing.read_at.elapsed(), result.is_ok());
        let frame = ResponseFrame {
            id: self.id,
            result,
        };
        // A send fails only once the stream's writer is gone, and the stream with it.
        if self.reservation.answered(&frame) {
            let _ = self.stream.send(frame);
        }
    }
}

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The core must stop.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Every input channel closed.
    #[error("the node's input channels closed")]
    Closed,
    /// The peers' pinned data directories could not be saved.
    #[error("saving the peers' data directories failed: {0}")]
    Pins(std::io::Error),
}

/// The core, its inputs and the data directory it runs on (locked while the driver lives).
pub(crate) struct Driver {
    pub(crate) core: NodeCore<Responder, Arc<QuicTransport>>,
    pub(crate) peers: Receiver<Input>,
    pub(crate) clients: Receiver<Input>,
    /// Inputs taken from each queue in one turn.
    pub(crate) input_burst_max: usize,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) data: OpenedData,
    /// Where the counters go for the HTTP listener, and the log lines they lead to.
    pub(crate) publisher: Publisher,
    /// The transport, for its counters (the core sends through it).
    pub(crate) transport: Arc<QuicTransport>,
}

impl Driver {
    /// Runs until `stop` is set or a fatal error; at a clean stop, writes what was deferred.
    pub(crate) fn run(mut self) -> Result<(), DriverError> {
        let started = Instant::now();
        let clock = Clock::new();
        let mut disk_read_at: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            if disk_read_at.is_none_or(|at| at.elapsed() >= DISK_READ_INTERVAL) {
                disk_read_at = Some(Instant::now());
                self.read_disk_free();
            }
            let wait = self
                .core
                .next_deadline_ms()
                .saturating_sub(clock.now().monotonic_ms);
            let first = crossbeam_channel::select! {
                recv(self.peers) -> input => Some(input.map_err(|_| DriverError::Closed)?),
                recv(self.clients) -> input => Some(input.map_err(|_| DriverError::Closed)?),
                default(Duration::from_millis(wait)) => None,
            };
            let turn = Instant::now();
            self.core.on_time(clock.now());
            if let Some(input) = first {
                self.handle(input)?;
            }
            // Peer traffic first, then client requests: client load never starves Raft.
            for queue in [self.peers.clone(), self.clients.clone()] {
                for input in queue.try_iter().take(self.input_burst_max) {
                    self.handle(input)?;
                }
            }
            self.save_pins()?;
            self.core.run()?;
            self.save_pins()?;
            let busy = turn.elapsed().as_micros() as u64;
            self.core
                .account(busy, started.elapsed().as_micros() as u64);
            self.publish();
        }
        Ok(self.core.stop()?)
    }

    fn handle(&mut self, input: Input) -> Result<(), DriverError> {
        match input {
            Input::Batch(batch) => self.core.on_batch(batch)?,
            Input::Request(request, responder) => self.core.on_request(request, responder),
        }
        Ok(())
    }

    /// Every publish interval: the core's and the transport's counters, for the HTTP
    /// listener and the summary log lines.
    fn publish(&mut self) {
        let now = Instant::now();
        if self.publisher.due(now) {
            if self.publisher.groups_due(now) {
                let groups = self.core.observe_groups();
                self.publisher.groups_scanned(groups, now.elapsed(), now);
            }
            if self.publisher.leaders_due(now) {
                let walk = Instant::now();
                let leaders = self.core.group_leaders();
                self.publisher.leaders_walked(leaders, walk.elapsed(), now);
            }
            let observation = self.core.observe(self.publisher.groups());
            let queued = (self.peers.len(), self.clients.len());
            self.publisher.publish(
                (observation, self.core.meta()),
                (self.transport.counters(), queued),
                now,
            );
        }
    }

    /// Tells the core how much space the data directory's file system has left.
    fn read_disk_free(&mut self) {
        match rustix::fs::statvfs(self.data.directory.path()) {
            Ok(stats) => self
                .core
                .on_disk_free(stats.f_bavail.saturating_mul(stats.f_frsize)),
            Err(error) => tracing::warn!(%error, "the data directory's free space is unknown"),
        }
    }

    /// Makes the peers' pins durable before anything answering the batches that taught them
    /// leaves.
    fn save_pins(&mut self) -> Result<(), DriverError> {
        if let Some(pins) = self.core.take_pins() {
            self.data.pins = pins;
            self.data.save_pins().map_err(DriverError::Pins)?;
        }
        Ok(())
    }
}

/// The node's clocks: monotonic (since the driver started) and wall.
struct Clock {
    started: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    fn now(&self) -> Now {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        Now {
            monotonic_ms: self.started.elapsed().as_millis() as u64,
            wall_ms,
        }
    }
}

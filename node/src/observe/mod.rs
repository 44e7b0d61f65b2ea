//! What a node shows of itself: an HTTP listener (`/metrics` in Prometheus' text format,
//! `/health` and `/ready` for probes), the counters the driver publishes for it, and the log
//! lines that summarise the node (peers declared down or up, a rate-limited summary).
//!
//! The driver owns the core, so nothing here reads the core: every
//! `tuning.metrics_publish_interval_ms` the driver copies an `Observation` into [`Published`]
//! (skipping a round rather than waiting when a scrape holds it), and the listener encodes
//! that copy. Client request counts and latencies are atomics the request path updates.

mod http;
mod metrics;
mod publish;
mod ready;
pub(crate) mod requests;

pub(crate) use http::{View, serve};
pub(crate) use publish::Publisher;

use crate::core::Observation;
use flotilla_transport_quic::CounterSnapshot;
use std::sync::Mutex;
use std::time::Instant;

/// The node as the driver last published it.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    /// The core's counters and groups.
    pub(crate) observation: Observation,
    /// The transport's counters.
    pub(crate) transport: CounterSnapshot,
    /// Inputs waiting in the driver's queues: (peer batches, client requests).
    pub(crate) queued: (usize, usize),
    /// When the driver published it.
    pub(crate) at: Instant,
}

/// The last snapshot the driver published (none before its first turn).
#[derive(Debug, Default)]
pub(crate) struct Published {
    latest: Mutex<Option<Snapshot>>,
}

impl Published {
    /// Replaces the snapshot unless a reader holds it now; `false` then (the driver tries
    /// again on its next turn instead of waiting).
    pub(crate) fn try_publish(&self, snapshot: Snapshot) -> bool {
        match self.latest.try_lock() {
            Ok(mut latest) => {
                *latest = Some(snapshot);
                true
            }
            Err(_) => false,
        }
    }

    /// A copy of the last snapshot.
    pub(crate) fn latest(&self) -> Option<Snapshot> {
        // A reader or the driver that panicked holding it left a whole snapshot behind.
        match self.latest.lock() {
            Ok(latest) => latest.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

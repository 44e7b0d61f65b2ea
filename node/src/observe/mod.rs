//! What a node shows of itself: an HTTP listener (a status page at `/` for people, `/metrics`
//! in Prometheus' text format, `/health` and `/ready` for probes), the counters the driver
//! publishes for it, and the log lines that summarise the node (peers declared down or up, a
//! rate-limited summary).
//!
//! The driver owns the core, so nothing here reads the core: every
//! `tuning.metrics_publish_interval_ms` the driver copies an `Observation` into [`Published`]
//! (skipping a round rather than waiting when a scrape holds it), and the listener encodes
//! that copy. Client request counts and latencies are atomics the request path updates.

mod http;
mod metrics;
mod page;
mod publish;
mod ready;
pub(crate) mod requests;
mod svg;

pub(crate) use http::{Served, View, serve};
pub(crate) use publish::Publisher;

use crate::core::Observation;
use flotilla_shard_manager::MetaState;
use flotilla_transport_quic::CounterSnapshot;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The range map and directory as this node knows them, for the status page: copied only
    /// while the page is viewed (none before its first view), at most once a second or when
    /// the epoch changed.
    pub(crate) meta: Option<Arc<MetaState>>,
    /// The request counters once a second, oldest first, over `http.status_history_seconds`.
    pub(crate) samples: Vec<Sample>,
}

/// The node's request and proposal counters at one moment, for the status page's rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When they were read.
    pub(crate) at: Instant,
    /// Client requests the driver handled since start.
    pub(crate) requests: u64,
    /// Entries this node proposed as a leader since start.
    pub(crate) proposals: u64,
}

/// The last snapshot the driver published (none before its first turn).
#[derive(Debug, Default)]
pub(crate) struct Published {
    latest: Mutex<Option<Snapshot>>,
    /// The status page was served since the driver last copied the range map: copying a map
    /// of 65,536 ranges takes tens of milliseconds of the driver's time, so it is copied only
    /// for a reader.
    map_wanted: AtomicBool,
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

    /// A reader wants the range map in the next snapshots.
    pub(crate) fn want_map(&self) {
        self.map_wanted.store(true, Ordering::Relaxed);
    }

    /// Whether a reader wanted the range map since the last `take_map_wanted`.
    pub(crate) fn map_wanted(&self) -> bool {
        self.map_wanted.load(Ordering::Relaxed)
    }

    /// Whether a reader wanted the range map since the last call.
    pub(crate) fn take_map_wanted(&self) -> bool {
        self.map_wanted.swap(false, Ordering::Relaxed)
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

/// Two ranges on one node, n1 at 127.0.0.1:7001, for the tests of what is published.
#[cfg(test)]
fn one_node_meta() -> MetaState {
    let endpoint = crate::config::Endpoint {
        node: flotilla_raft::NodeId(1),
        address: std::net::SocketAddr::from(([127, 0, 0, 1], 7001)),
    };
    crate::core::boot::initial_meta(&[endpoint], 2, 1)
}

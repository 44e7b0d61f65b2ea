//! Client requests counted by operation, with their latency from the moment a request was
//! read to its answer: atomics, updated by the stream tasks and the driver without a lock.

use crate::api::Request;
use crate::core::histogram::{BUCKETS_MAX, LATENCY_BOUNDS_SECONDS, bucket_of};
use flotilla_storage::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a client request asks, as the metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Get,
    Put,
    Delete,
    CompareAndSwap,
    Scan,
    OpenSession,
    RangeMap,
    Status,
    KnownDirectory,
    Admin,
    Placement,
    Join,
    MetaSnapshot,
    SetAddress,
    Backup,
    Split,
    Merge,
}

impl Operation {
    /// Every operation, in label order.
    pub(crate) const ALL: [Self; 17] = [
        Self::Get,
        Self::Put,
        Self::Delete,
        Self::CompareAndSwap,
        Self::Scan,
        Self::OpenSession,
        Self::RangeMap,
        Self::Status,
        Self::KnownDirectory,
        Self::Admin,
        Self::Placement,
        Self::Join,
        Self::MetaSnapshot,
        Self::SetAddress,
        Self::Backup,
        Self::Split,
        Self::Merge,
    ];

    /// The operation `request` asks for (a write in a session by its command).
    pub(crate) fn of(request: &Request) -> Self {
        match request {
            Request::Kv { command, .. } | Request::Write { command, .. } => match command {
                Command::Get { .. } => Self::Get,
                Command::Put { .. } => Self::Put,
                Command::Delete { .. } => Self::Delete,
                Command::CompareAndSwap { .. } => Self::CompareAndSwap,
                Command::Scan { .. } => Self::Scan,
            },
            Request::OpenSession { .. } => Self::OpenSession,
            Request::RangeMap | Request::RangeMapRead => Self::RangeMap,
            Request::Status => Self::Status,
            Request::KnownDirectory { .. } => Self::KnownDirectory,
            Request::Admin(_) => Self::Admin,
            Request::Placement => Self::Placement,
            Request::Join { .. } => Self::Join,
            Request::MetaSnapshot => Self::MetaSnapshot,
            Request::SetAddress { .. } => Self::SetAddress,
            Request::BackupOpen { .. }
            | Request::BackupChunk { .. }
            | Request::BackupClose { .. } => Self::Backup,
            Request::Split { .. } => Self::Split,
            Request::Merge { .. } => Self::Merge,
        }
    }

    /// The `op` label's value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::CompareAndSwap => "cas",
            Self::Scan => "scan",
            Self::OpenSession => "open_session",
            Self::RangeMap => "range_map",
            Self::Status => "status",
            Self::KnownDirectory => "known_directory",
            Self::Admin => "admin",
            Self::Placement => "placement",
            Self::Join => "join",
            Self::MetaSnapshot => "meta_snapshot",
            Self::SetAddress => "set_address",
            Self::Backup => "backup",
            Self::Split => "split",
            Self::Merge => "merge",
        }
    }
}

/// One operation's counts and latencies.
#[derive(Debug, Default)]
struct OperationStats {
    received: AtomicU64,
    refused: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS_MAX],
    latency_micros: AtomicU64,
    answered: AtomicU64,
}

/// What one operation's counters read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OperationCounts {
    /// Requests read.
    pub(crate) received: u64,
    /// Requests answered with an error.
    pub(crate) refused: u64,
    /// Latency buckets in seconds (upper bound, own count), the last one unbounded.
    pub(crate) buckets: Vec<(f64, u64)>,
    /// The sum of the latencies, in seconds.
    pub(crate) latency_seconds: f64,
    /// Requests answered.
    pub(crate) answered: u64,
}

/// Every operation's counters.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    operations: [OperationStats; Operation::ALL.len()],
}

impl RequestStats {
    fn of(&self, operation: Operation) -> &OperationStats {
        &self.operations[operation as usize]
    }

    /// A request for `operation` was read.
    pub(crate) fn received(&self, operation: Operation) {
        self.of(operation).received.fetch_add(1, Ordering::Relaxed);
    }

    /// A request for `operation` was answered `elapsed` after it was read, `ok` or not.
    pub(crate) fn answered(&self, operation: Operation, elapsed: Duration, ok: bool) {
        let stats = self.of(operation);
        let bucket = bucket_of(LATENCY_BOUNDS_SECONDS, elapsed.as_secs_f64());
        stats.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        stats
            .latency_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        stats.answered.fetch_add(1, Ordering::Relaxed);
        if !ok {
            stats.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `operation`'s counters now (each read is atomic; the set is not one cut).
    pub(crate) fn counts(&self, operation: Operation) -> OperationCounts {
        let stats = self.of(operation);
        let bounds = LATENCY_BOUNDS_SECONDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX));
        OperationCounts {
            received: stats.received.load(Ordering::Relaxed),
            refused: stats.refused.load(Ordering::Relaxed),
            buckets: bounds
                .zip(&stats.latency_buckets)
                .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
                .collect(),
            latency_seconds: stats.latency_micros.load(Ordering::Relaxed) as f64 / 1e6,
            answered: stats.answered.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_slot_and_label() {
        for (slot, operation) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(operation as usize, slot);
        }
        let stats = RequestStats::default();
        stats.received(Operation::Put);
        stats.answered(Operation::Put, Duration::from_micros(300), true);
        stats.answered(Operation::Put, Duration::from_secs(9), false);
        let put = stats.counts(Operation::Put);
        assert_eq!((put.received, put.answered, put.refused), (1, 2, 1));
        assert_eq!(put.buckets[2], (0.0005, 1));
        assert_eq!(put.buckets.last(), Some(&(f64::MAX, 1)));
        assert_eq!(stats.counts(Operation::Get).received, 0);
    }
}

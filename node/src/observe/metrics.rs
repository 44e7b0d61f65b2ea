//! `/metrics`: the published snapshot, the request counters and the resident memory, encoded
//! by `prometheus-client` at each scrape (a `Collector`: nothing is counted twice, the core's
//! and the transport's own counters are read as they are).

use super::requests::{Operation, RequestStats};
use super::{Published, Snapshot};
use crate::core::histogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Every metric of one node, read at scrape time.
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    pub(crate) published: Arc<Published>,
    pub(crate) requests: Arc<RequestStats>,
}

impl Collector for NodeMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut out = Out { encoder };
        requests(&mut out, &self.requests)?;
        if let Some(snapshot) = self.published.latest() {
            core(&mut out, &snapshot)?;
            groups(&mut out, &snapshot)?;
            transport(&mut out, &snapshot)?;
            out.gauge(
                "flotilla_metrics_age_seconds",
                "Seconds since the driver published the counters this scrape reads",
                Instant::now()
                    .saturating_duration_since(snapshot.at)
                    .as_secs_f64(),
            )?;
        }
        if let Some(bytes) = resident_bytes() {
            out.gauge(
                "flotilla_resident_memory_bytes",
                "Resident memory of the node's process (/proc/self/statm)",
                bytes,
            )?;
        }
        Ok(())
    }
}

/// The encoder with one call per kind of metric.
struct Out<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Out<'_> {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let counter = ConstCounter::new(value);
        counter.encode(
            self.encoder
                .encode_descriptor(name, help, None, counter.metric_type())?,
        )
    }

    fn gauge<V: prometheus_client::encoding::EncodeGaugeValue + Copy>(
        &mut self,
        name: &str,
        help: &str,
        value: V,
    ) -> fmt::Result {
        let gauge = ConstGauge::new(value);
        gauge.encode(
            self.encoder
                .encode_descriptor(name, help, None, gauge.metric_type())?,
        )
    }

    /// One family of `kind`, a sample per `(label value, value)` under label `label`.
    fn labeled(
        &mut self,
        (name, help, kind): (&str, &str, MetricType),
        label: &str,
        values: &[(&str, u64)],
    ) -> fmt::Result {
        let mut family = self.encoder.encode_descriptor(name, help, None, kind)?;
        for &(value_label, value) in values {
            let labels = [(label, value_label)];
            let sample = family.encode_family(&labels)?;
            match kind {
                MetricType::Gauge => ConstGauge::new(value).encode(sample)?,
                _ => ConstCounter::new(value).encode(sample)?,
            }
        }
        Ok(())
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) -> fmt::Result {
        let mut sample = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        sample.encode_histogram::<NoLabelSet>(
            histogram.sum(),
            histogram.count(),
            &histogram.buckets(),
            None,
        )
    }
}

fn requests(out: &mut Out<'_>, stats: &RequestStats) -> fmt::Result {
    let counts: Vec<_> = Operation::ALL
        .iter()
        .map(|&operation| (operation.label(), stats.counts(operation)))
        .collect();
    let received: Vec<_> = counts.iter().map(|(op, c)| (*op, c.received)).collect();
    let kind = MetricType::Counter;
    out.labeled(
        (
            "flotilla_client_requests",
            "Client requests read, by operation",
            kind,
        ),
        "op",
        &received,
    )?;
    let refused: Vec<_> = counts.iter().map(|(op, c)| (*op, c.refused)).collect();
    out.labeled(
        (
            "flotilla_client_request_errors",
            "Client requests answered with an error (refused, busy, not leader...), by operation",
            kind,
        ),
        "op",
        &refused,
    )?;
    let mut family = out.encoder.encode_descriptor(
        "flotilla_client_request_duration_seconds",
        "From reading a client request to its answer, by operation",
        None,
        MetricType::Histogram,
    )?;
    for (op, count) in &counts {
        let labels = [("op", *op)];
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                count.latency_seconds,
                count.answered,
                &count.buckets,
                None,
            )?;
    }
    Ok(())
}

fn core(out: &mut Out<'_>, snapshot: &Snapshot) -> fmt::Result {
    let counters = &snapshot.observation.counters;
    let list = [
        (
            "flotilla_proposals",
            "Entries this node proposed as a leader (client writes, session openings)",
            counters.proposals,
        ),
        (
            "flotilla_entries_applied",
            "Committed entries applied to this node's state machines",
            counters.entries_applied,
        ),
        (
            "flotilla_elections_won",
            "Times this node became the leader of a range",
            counters.leaderships_won,
        ),
        (
            "flotilla_leader_changes",
            "Changes of a range's leader seen by this node, over all its ranges",
            counters.leader_changes,
        ),
        (
            "flotilla_log_writes",
            "Log writes, each one fdatasync (group commit)",
            counters.fsyncs,
        ),
        (
            "flotilla_log_entries_appended",
            "Entries the log writes persisted",
            counters.entries_persisted,
        ),
        (
            "flotilla_log_bytes_written",
            "Bytes the log writes added, record headers included",
            counters.log_bytes_written,
        ),
        (
            "flotilla_snapshots_taken",
            "Snapshots of its own state machines this node took (log compaction)",
            counters.snapshots_taken,
        ),
        (
            "flotilla_log_compactions_forced",
            "Groups compacted early because their old entries kept the log's oldest segments",
            counters.compactions_forced,
        ),
        (
            "flotilla_snapshots_installed",
            "Snapshots received from a leader and installed",
            counters.snapshots_installed,
        ),
        (
            "flotilla_snapshots_restored_off_loop",
            "Of the snapshots installed, those restored off the Raft loop (decoded in memory or ingested into the engine)",
            counters.snapshots_restored_off_loop,
        ),
        (
            "flotilla_snapshots_written_off_loop",
            "Of the snapshots taken, those written to their file off the Raft loop (ranges in memory, the meta group)",
            counters.snapshots_written_off_loop,
        ),
        (
            "flotilla_meta_snapshots_installed",
            "Of the snapshots installed, the meta group's",
            counters.meta_snapshots_installed,
        ),
        (
            "flotilla_meta_snapshots_written",
            "Of the snapshots written off the Raft loop, the meta group's",
            counters.meta_snapshots_written,
        ),
        (
            "flotilla_snapshots_refused",
            "Snapshots received from a leader whose data failed the check, dropped uninstalled",
            counters.snapshots_refused,
        ),
        (
            "flotilla_snapshot_chunks_sent",
            "Snapshot chunks this node sent to followers as a leader, copies sent again included",
            counters.snapshot_sends.chunks_sent,
        ),
        (
            "flotilla_snapshot_chunk_bytes_sent",
            "Snapshot bytes those chunks carried",
            counters.snapshot_sends.chunk_bytes_sent,
        ),
        (
            "flotilla_snapshot_windows_resent",
            "Snapshot windows sent again from the acknowledged offset after a transfer stalled",
            counters.snapshot_sends.windows_resent,
        ),
        (
            "flotilla_snapshot_transfers_started",
            "Snapshot transfers to followers started from offset 0",
            counters.snapshot_sends.transfers_started,
        ),
        (
            "flotilla_snapshot_transfers_resumed",
            "Snapshot transfers given up earlier and resumed where the follower was",
            counters.snapshot_sends.transfers_resumed,
        ),
        (
            "flotilla_snapshot_transfers_given_up",
            "Snapshot transfers given up because the follower stayed silent",
            counters.snapshot_sends.transfers_given_up,
        ),
        (
            "flotilla_batches_refused",
            "Inbound Raft batches the node refused (malformed, unknown group, wrong data directory)",
            counters.batches_refused,
        ),
        (
            "flotilla_requests",
            "Client requests the node's driver handled",
            counters.requests,
        ),
    ];
    for (name, help, value) in list {
        out.counter(name, help, value)?;
    }
    out.counter(
        "flotilla_driver_busy_microseconds",
        "Time the driver spent working rather than waiting for input",
        counters.busy_micros,
    )?;
    out.histogram(
        "flotilla_log_write_duration_seconds",
        "How long each log write (write and fdatasync) took",
        &counters.write_seconds,
    )?;
    out.histogram(
        "flotilla_log_entries_per_write",
        "Entries each log write persisted",
        &counters.entries_per_write,
    )
}

fn groups(out: &mut Out<'_>, snapshot: &Snapshot) -> fmt::Result {
    let observation = &snapshot.observation;
    let list = [
        (
            "flotilla_ranges_hosted",
            "Ranges (Raft groups, the meta group included) with a replica on this node",
            observation.groups.hosted,
        ),
        (
            "flotilla_ranges_led",
            "Ranges this node leads",
            observation.groups.led,
        ),
        (
            "flotilla_ranges_quiescent",
            "Ranges idle on this node (no ticks, no heartbeats of their own)",
            observation.groups.quiescent,
        ),
        (
            "flotilla_ranges_without_leader",
            "Ranges whose replica here knows no leader",
            observation.groups.without_leader.len() as u64,
        ),
        (
            "flotilla_requests_waiting",
            "Client requests waiting for their entry to apply or their read to be confirmed",
            observation.waiting,
        ),
        (
            "flotilla_stored_bytes",
            "Key and value bytes this node's ranges hold",
            observation.stored_bytes,
        ),
        (
            "flotilla_log_segments",
            "Segment files the write-ahead log uses",
            observation.log_segments,
        ),
        (
            "flotilla_uptime_seconds",
            "Seconds since the node's driver started",
            observation.counters.uptime_micros / 1_000_000,
        ),
    ];
    for (name, help, value) in list {
        out.gauge(name, help, value)?;
    }
    let (batches, requests) = snapshot.queued;
    out.labeled(
        (
            "flotilla_driver_queue_depth",
            "Inputs waiting for the driver: peer batches and client requests",
            MetricType::Gauge,
        ),
        "queue",
        &[
            ("peer_batches", batches as u64),
            ("client_requests", requests as u64),
        ],
    )?;
    let states = ["live", "quiet", "unreachable"];
    let count = |state: &str| {
        observation
            .peers
            .iter()
            .filter(|peer| peer_state_label(peer.state) == state)
            .count() as u64
    };
    let peers: Vec<_> = states.iter().map(|&state| (state, count(state))).collect();
    out.labeled(
        (
            "flotilla_peers",
            "Peer nodes by how this node hears them",
            MetricType::Gauge,
        ),
        "state",
        &peers,
    )
}

/// The `state` label of a peer, as `/metrics` and the status page name it.
pub(super) fn peer_state_label(state: crate::api::PeerState) -> &'static str {
    match state {
        crate::api::PeerState::Live => "live",
        crate::api::PeerState::Quiet => "quiet",
        crate::api::PeerState::Unreachable => "unreachable",
    }
}

/// The transport's counters: drops and refusals under a `reason` label, the rest each alone
/// with its doc as help.
fn transport(out: &mut Out<'_>, snapshot: &Snapshot) -> fmt::Result {
    let named = snapshot.transport.named();
    let with_prefix = |prefix: &str| -> Vec<(&str, u64)> {
        named
            .iter()
            .filter_map(|counter| Some((counter.name.strip_prefix(prefix)?, counter.value)))
            .collect()
    };
    out.labeled(
        (
            "flotilla_transport_batches_dropped",
            "Raft batches the transport dropped, by reason",
            MetricType::Counter,
        ),
        "reason",
        &with_prefix("dropped_"),
    )?;
    out.labeled(
        (
            "flotilla_transport_connections_refused",
            "Inbound connections the transport refused, by reason",
            MetricType::Counter,
        ),
        "reason",
        &with_prefix("refused_"),
    )?;
    // `connections_refused` is the sum of most `refused_*`: the family above carries it.
    let rest = named.iter().filter(|counter| {
        !counter.name.starts_with("dropped_")
            && !counter.name.starts_with("refused_")
            && counter.name != "connections_refused"
    });
    for counter in rest {
        let name = format!("flotilla_transport_{}", counter.name);
        out.counter(&name, counter.doc, counter.value)?;
    }
    Ok(())
}

/// The process's resident memory: the second field of `/proc/self/statm`, in pages.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

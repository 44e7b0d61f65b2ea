//! Throughput interval by interval (`flotilla bench --report-every`): the operations that
//! succeeded and failed in each interval, with the ranges of the map and the ranges each node
//! leads at its end, so one run shows the throughput before and after the cluster splits.

use crate::api::NodeStatus;
use crate::client::{Client, ClientError};
use crate::workload::Running;
use flotilla_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The shortest interval: each one's end asks every node for its status and refreshes the
/// map, which should stay a small part of the load.
pub const REPORT_EVERY_SECONDS_MIN: f64 = 0.5;

/// The most intervals one run may have (`--seconds` / `--report-every`): they are kept in
/// memory and written to the results file.
pub const INTERVALS_MAX: u64 = 10_000;

/// One interval of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Seconds from the run's start to the interval's start.
    pub start_seconds: f64,
    /// The interval's length in seconds.
    pub seconds: f64,
    /// Operations that succeeded in it.
    pub ops: u64,
    /// Successful operations per second.
    pub ops_per_second: f64,
    /// Operations that failed in it.
    pub errors: u64,
    /// Ranges in the map at its end (`None`: the map could not be refreshed).
    pub ranges: Option<usize>,
    /// Ranges of the map each node that answered led at its end, by node id.
    pub leaders: BTreeMap<u64, usize>,
}

/// The cluster as seen at an interval's end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Ranges in the map (`None`: the map could not be refreshed).
    pub ranges: Option<usize>,
    /// Ranges each node leads, by node id.
    pub leaders: BTreeMap<u64, usize>,
}

/// What a run's counters said at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the run started.
    pub elapsed_seconds: f64,
    /// Operations that succeeded so far.
    pub ops: u64,
    /// Operations that failed so far.
    pub errors: u64,
}

/// Turns a run's cumulative counts, sampled at each interval's end, into intervals.
#[derive(Clone, Debug, Default)]
pub struct Intervals {
    last: Sample,
    closed: Vec<Interval>,
}

impl Intervals {
    /// No interval yet; the first starts at the run's start (all counts zero).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes the interval that ends at `sample`, with the cluster as `view` saw it then, and
    /// returns it.
    ///
    /// # Panics
    /// If `sample` is earlier than the previous one or its counts went down (a defect).
    pub fn close(&mut self, sample: Sample, view: ClusterView) -> Interval {
        let last = self.last;
        assert!(sample.elapsed_seconds >= last.elapsed_seconds);
        assert!(sample.ops >= last.ops);
        assert!(sample.errors >= last.errors);
        let seconds = sample.elapsed_seconds - last.elapsed_seconds;
        let ops = sample.ops - last.ops;
        let interval = Interval {
            start_seconds: last.elapsed_seconds,
            seconds,
            ops,
            ops_per_second: ops as f64 / seconds.max(0.001),
            errors: sample.errors - last.errors,
            ranges: view.ranges,
            leaders: view.leaders,
        };
        self.closed.push(interval.clone());
        self.last = sample;
        interval
    }

    /// The intervals closed, in order.
    #[must_use]
    pub fn into_vec(self) -> Vec<Interval> {
        self.closed
    }
}

/// The seconds from the start at which the intervals of a run of `seconds`, `every` seconds
/// long, end before the run does; the last interval ends with the run.
#[must_use]
pub fn boundaries(every: f64, seconds: f64) -> Vec<f64> {
    assert!(every >= REPORT_EVERY_SECONDS_MIN, "interval {every} s");
    (1u32..)
        .map(|index| every * f64::from(index))
        .take_while(|&end| end < seconds)
        .collect()
}

/// Ranges of the map each node leads, by node id, from the nodes that answered.
#[must_use]
pub fn leaders_by_node(
    map_groups: &BTreeSet<GroupId>,
    statuses: &[(NodeId, Result<NodeStatus, ClientError>)],
) -> BTreeMap<u64, usize> {
    statuses
        .iter()
        .filter_map(|(node, status)| Some((node, status.as_ref().ok()?)))
        .map(|(node, status)| {
            let led = status
                .groups
                .iter()
                .filter(|group| group.role == "Leader" && map_groups.contains(&group.group))
                .count();
            (node.0, led)
        })
        .collect()
}

/// The cluster now: the map refreshed, every node's status.
pub async fn look(client: &Client) -> ClusterView {
    let refreshed = client.refresh_map().await.is_ok();
    let map = client.map();
    let groups: BTreeSet<GroupId> = map.ranges().map(|range| range.group).collect();
    let statuses = client.statuses().await;
    ClusterView {
        ranges: refreshed.then_some(groups.len()),
        leaders: leaders_by_node(&groups, &statuses),
    }
}

/// Closes an interval at each boundary of `running` (every `every` seconds until its clients
/// stop), printing each; the caller closes the last one when the run has finished.
pub async fn sample_until_end(client: &Client, running: &Running, every: f64) -> Intervals {
    let mut intervals = Intervals::new();
    let seconds = (running.until() - running.started()).as_secs_f64();
    for end in boundaries(every, seconds) {
        tokio::time::sleep_until((running.started() + Duration::from_secs_f64(end)).into()).await;
        let (ops, errors) = running.counts();
        let sample = Sample {
            elapsed_seconds: running.started().elapsed().as_secs_f64(),
            ops,
            errors,
        };
        println!("{}", describe(&intervals.close(sample, look(client).await)));
    }
    intervals
}

/// One line for a person: `  4.0-6.0 s: 15234 ops/s, 3 ranges, leaders 1:1 2:1 3:1`.
#[must_use]
pub fn describe(interval: &Interval) -> String {
    let ranges = match interval.ranges {
        Some(1) => "1 range".to_string(),
        Some(count) => format!("{count} ranges"),
        None => "ranges unknown".to_string(),
    };
    let leaders: Vec<String> = interval
        .leaders
        .iter()
        .map(|(node, led)| format!("{node}:{led}"))
        .collect();
    let errors = match interval.errors {
        0 => String::new(),
        errors => format!(", {errors} errors"),
    };
    format!(
        "  {:.1}-{:.1} s: {:.0} ops/s, {ranges}, leaders {}{errors}",
        interval.start_seconds,
        interval.start_seconds + interval.seconds,
        interval.ops_per_second,
        leaders.join(" ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::GroupStatus;
    use flotilla_shard_manager::Epoch;

    fn sample(elapsed_seconds: f64, ops: u64, errors: u64) -> Sample {
        Sample {
            elapsed_seconds,
            ops,
            errors,
        }
    }

    fn view(ranges: usize) -> ClusterView {
        ClusterView {
            ranges: Some(ranges),
            leaders: BTreeMap::from([(1, ranges)]),
        }
    }

    #[test]
    fn intervals_count_what_happened_between_samples() {
        let mut intervals = Intervals::new();
        intervals.close(sample(2.0, 20_000, 0), view(1));
        intervals.close(sample(4.5, 50_000, 3), view(4));
        let last = intervals.close(sample(5.0, 50_000, 3), view(4));
        assert_eq!((last.ops, last.ops_per_second), (0, 0.0));
        let all = intervals.into_vec();
        let table: Vec<(f64, f64, u64, f64, u64, Option<usize>)> = all
            .iter()
            .map(|i| {
                (
                    i.start_seconds,
                    i.seconds,
                    i.ops,
                    i.ops_per_second,
                    i.errors,
                    i.ranges,
                )
            })
            .collect();
        assert_eq!(
            table,
            [
                (0.0, 2.0, 20_000, 10_000.0, 0, Some(1)),
                (2.0, 2.5, 30_000, 12_000.0, 3, Some(4)),
                (4.5, 0.5, 0, 0.0, 0, Some(4)),
            ]
        );
        assert_eq!(all.iter().map(|i| i.ops).sum::<u64>(), 50_000);
    }

    #[test]
    #[should_panic(expected = "sample.ops >= last.ops")]
    fn counts_never_go_down() {
        let mut intervals = Intervals::new();
        intervals.close(sample(1.0, 10, 0), view(1));
        intervals.close(sample(2.0, 9, 0), view(1));
    }

    #[test]
    fn boundaries_fall_strictly_inside_the_run() {
        assert_eq!(boundaries(2.0, 7.0), [2.0, 4.0, 6.0]);
        assert_eq!(boundaries(2.0, 6.0), [2.0, 4.0]);
        assert_eq!(boundaries(5.0, 5.0), [] as [f64; 0]);
        assert_eq!(boundaries(0.5, 1.2), [0.5, 1.0]);
        // Multiplied, not added up: no drift over many intervals.
        let many = boundaries(0.5, 1000.0);
        assert_eq!((many.len(), many.last()), (1999, Some(&999.5)));
    }

    #[test]
    fn leaders_count_only_ranges_of_the_map_and_nodes_that_answered() {
        let group = |id: u64, role: &str| GroupStatus {
            group: GroupId(id),
            role: role.into(),
            term: 1,
            leader: None,
            committed: 0,
            applied: 0,
            snapshot_index: 0,
            quiescent: false,
            stored_bytes: 0,
        };
        let status = |node: u64, groups: Vec<GroupStatus>| NodeStatus {
            node: NodeId(node),
            epoch: Epoch(1),
            groups,
            fsyncs: 0,
            entries_persisted: 0,
            write_micros: 0,
            busy_micros: 0,
            uptime_micros: 0,
            requests: 0,
            batches_refused: 0,
            waiting: 0,
            leader_changes: 0,
            live_peers: Vec::new(),
            incarnation: 1,
            registered_directories: Vec::new(),
            peers: Vec::new(),
        };
        // Group 0 (the meta group) and group 9 (merged away) are not in the map.
        let map_groups = BTreeSet::from([GroupId(1), GroupId(2), GroupId(3)]);
        let statuses = vec![
            (
                NodeId(1),
                Ok(status(
                    1,
                    vec![
                        group(0, "Leader"),
                        group(1, "Leader"),
                        group(2, "Leader"),
                        group(3, "Follower"),
                    ],
                )),
            ),
            (
                NodeId(2),
                Ok(status(2, vec![group(3, "Leader"), group(9, "Leader")])),
            ),
            (NodeId(3), Ok(status(3, vec![group(1, "Candidate")]))),
            (NodeId(4), Err(ClientError::NoEndpoint(Vec::new()))),
        ];
        assert_eq!(
            leaders_by_node(&map_groups, &statuses),
            BTreeMap::from([(1, 2), (2, 1), (3, 0)])
        );
    }

    #[test]
    fn a_line_names_the_rate_the_ranges_and_the_leaders() {
        let interval = Interval {
            start_seconds: 4.0,
            seconds: 2.0,
            ops: 30_000,
            ops_per_second: 15_000.0,
            errors: 0,
            ranges: Some(3),
            leaders: BTreeMap::from([(1, 1), (2, 1), (3, 1)]),
        };
        assert_eq!(
            describe(&interval),
            "  4.0-6.0 s: 15000 ops/s, 3 ranges, leaders 1:1 2:1 3:1"
        );
        let unknown = Interval {
            ranges: None,
            errors: 2,
            ..interval
        };
        assert_eq!(
            describe(&unknown),
            "  4.0-6.0 s: 15000 ops/s, ranges unknown, leaders 1:1 2:1 3:1, 2 errors"
        );
    }
}

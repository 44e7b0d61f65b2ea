//! The results file that `etcd_load` and `flotilla bench --json` write and `plot` reads:
//! one system, one run per client count.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Every run of one system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// `"flotilla"` or `"etcd"`.
    pub system: String,
    /// One entry per client count (and value size).
    pub runs: Vec<Run>,
}

/// One load run: a fixed number of clients for a fixed time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Concurrent clients (requests in flight).
    pub clients: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Wall-clock seconds the run lasted.
    pub seconds: f64,
    /// Operations that succeeded.
    pub ops: u64,
    /// Successful operations per second.
    pub ops_per_second: f64,
    /// Latency percentiles of successful operations, in microseconds.
    pub latency_us: Percentiles,
    /// Failed operations by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Log entries per fsync on the servers (`None` where the system does not report it).
    pub entries_per_fsync: Option<f64>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `histogram` (all zero when it is empty).
    #[must_use]
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

impl Results {
    /// Reads a results file.
    ///
    /// # Errors
    /// The file could not be read or is not a results file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|error| format!("{} is not a results file: {error}", path.display()))
    }

    /// Writes the results as pretty JSON.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|error| error.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    /// The run with `clients` clients, if there is one.
    #[must_use]
    pub fn run_with(&self, clients: usize) -> Option<&Run> {
        self.runs.iter().find(|run| run.clients == clients)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_back_in_the_documented_schema() {
        let text = r#"{"system":"etcd","runs":[{"clients":1,"value_size":256,"seconds":10.0,
            "ops":123,"ops_per_second":12.3,"latency_us":{"p50":1,"p90":1,"p99":1,"p999":1,
            "max":1},"errors":{"timeout":2},"entries_per_fsync":null}]}"#;
        let results: Results = serde_json::from_str(text).unwrap();
        assert_eq!(results.system, "etcd");
        assert_eq!(results.runs[0].errors["timeout"], 2);
        assert_eq!(results.runs[0].entries_per_fsync, None);
        let again: Results =
            serde_json::from_str(&serde_json::to_string(&results).unwrap()).unwrap();
        assert_eq!(again, results);
    }

    #[test]
    fn percentiles_of_an_empty_histogram_are_zero() {
        let histogram = Histogram::<u64>::new(3).unwrap();
        assert_eq!(Percentiles::of(&histogram), Percentiles::default());
    }
}

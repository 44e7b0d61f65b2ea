//! A key-value workload: many concurrent clients issuing a mix of gets, puts and
//! compare-and-swaps over a key space (uniform or zipfian, hashed or in order) for a while,
//! with latencies in an HDR histogram. The demo and `flotilla bench` both run it.

use crate::client::{Client, ClientError};
use clap::{Args, ValueEnum};
use flotilla_storage::{Command, Response};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How keys are picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// A few keys are hot (Zipf, s = 0.99, as in YCSB).
    Zipfian,
}

/// Where key number `n` lies in the key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrder {
    /// Scattered by a hash (`key_of`): every range gets its share of the hot keys too.
    Hashed,
    /// In order of their number, evenly spaced over the key space (`ordered_key_of`): the
    /// hottest keys of a zipfian run are neighbours, so they fall in one range.
    Ordered,
}

/// What the workload does.
#[derive(Clone, Debug, Args, Serialize)]
pub struct WorkloadOptions {
    /// Concurrent clients (requests in flight).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// How keys are picked.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,
    /// Where the keys lie: hashed over the key space, or in order.
    #[arg(long, value_enum, default_value_t = KeyOrder::Hashed)]
    pub key_order: KeyOrder,
    /// Percent of operations that are linearizable gets.
    #[arg(long, default_value_t = 40)]
    pub read_percent: u8,
    /// Percent that are compare-and-swaps (the rest are puts).
    #[arg(long, default_value_t = 10)]
    pub cas_percent: u8,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadReport {
    /// Operations that succeeded.
    pub ops: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Successful operations per second.
    pub ops_per_second: f64,
    /// Latency percentiles of successful operations, in microseconds.
    pub latency_us: Percentiles,
    /// Successful operations by kind.
    pub by_op: BTreeMap<String, u64>,
    /// Failed operations by error kind.
    pub errors: BTreeMap<String, u64>,
}

/// Latency percentiles, in microseconds.
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
        let at = |quantile: f64| histogram.value_at_quantile(quantile);
        Self {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: histogram.max(),
        }
    }
}

impl WorkloadOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// A value out of range.
    pub fn validate(&self) -> Result<(), FlagError> {
        if self.clients == 0 || self.keys == 0 || self.seconds.is_nan() || self.seconds <= 0.0 {
            return Err(FlagError("clients, keys and seconds must be positive"));
        }
        if u16::from(self.read_percent) + u16::from(self.cas_percent) > 100 {
            return Err(FlagError("read_percent + cas_percent must be at most 100"));
        }
        Ok(())
    }
}

/// A command-line flag out of range: the rule it broke, as a sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub &'static str);

/// The key of workload key number `index`: 8 bytes spread evenly over the key space, so every
/// range gets its share.
#[must_use]
pub fn key_of(index: u64) -> Vec<u8> {
    mix(index).to_be_bytes().to_vec()
}

/// The key of workload key number `index` of `keys` in order: `index` times the largest
/// spacing that fits `keys` keys into 8 bytes. Keys sort as their numbers do, and a range of
/// `ranges.groups` equal shares holds about `keys / groups` consecutive numbers.
#[must_use]
pub fn ordered_key_of(index: u64, keys: u64) -> Vec<u8> {
    assert!(index < keys, "key number {index} of {keys}");
    // index * spacing <= (keys - 1) * (MAX / keys) < MAX: no overflow.
    (index * (u64::MAX / keys)).to_be_bytes().to_vec()
}

/// Runs the workload against `client`; with `progress`, a progress bar on stderr.
pub async fn run(client: &Client, options: &WorkloadOptions, progress: bool) -> WorkloadReport {
    let running = start(client, options);
    if progress {
        running.show_progress(options.seconds).await;
    }
    running.finish().await
}

/// Starts the workload's clients against `client`; they run for `options.seconds`.
#[must_use]
pub fn start(client: &Client, options: &WorkloadOptions) -> Running {
    let picker = Arc::new(KeyPicker::new(
        options.keys,
        options.distribution,
        options.key_order,
    ));
    let counts = Arc::new(Counters::default());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(options.seconds);
    let tasks = (0..options.clients)
        .map(|index| {
            let worker = Worker {
                client: client.clone(),
                options: options.clone(),
                picker: Arc::clone(&picker),
                counts: Arc::clone(&counts),
                rng: mix(index as u64 ^ 0x5eed),
            };
            tokio::spawn(worker.run(until))
        })
        .collect();
    Running {
        counts,
        started,
        until,
        tasks,
    }
}

/// A workload under way: its clients run until `until()`; `finish` waits for them and
/// reports.
#[derive(Debug)]
pub struct Running {
    counts: Arc<Counters>,
    started: Instant,
    until: Instant,
    tasks: Vec<JoinHandle<Tally>>,
}

/// Operations finished so far, counted by the clients as they go.
#[derive(Debug, Default)]
struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
}

impl Running {
    /// When the clients started.
    #[must_use]
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the clients stop sending (each finishes the request it has in flight).
    #[must_use]
    pub fn until(&self) -> Instant {
        self.until
    }

    /// Operations that succeeded and that failed so far.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.ops.load(Ordering::Relaxed),
            self.counts.errors.load(Ordering::Relaxed),
        )
    }

    /// A progress bar on stderr until the clients stop.
    async fn show_progress(&self, seconds: f64) {
        let bar = progress_bar(seconds);
        while Instant::now() < self.until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let elapsed = self.started.elapsed().as_secs_f64();
            bar.set_position((elapsed * 10.0) as u64);
            let (ops, _) = self.counts();
            bar.set_message(format!(
                "{ops} ops, {:.0} ops/s",
                ops as f64 / elapsed.max(0.001)
            ));
        }
        bar.finish_and_clear();
    }

    /// Waits for every client and reports the whole run.
    pub async fn finish(self) -> WorkloadReport {
        let mut total = Tally::new();
        for task in self.tasks {
            if let Ok(tally) = task.await {
                total.merge(&tally);
            }
        }
        total.report(self.started.elapsed().as_secs_f64())
    }
}

fn progress_bar(seconds: f64) -> ProgressBar {
    let bar = ProgressBar::new((seconds * 10.0) as u64);
    let style = ProgressStyle::with_template("  [{bar:40}] {elapsed:>3} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

struct Worker {
    client: Client,
    options: WorkloadOptions,
    picker: Arc<KeyPicker>,
    counts: Arc<Counters>,
    rng: u64,
}

impl Worker {
    async fn run(mut self, until: Instant) -> Tally {
        let mut tally = Tally::new();
        while Instant::now() < until {
            let (name, command) = self.next_command();
            let started = Instant::now();
            let result = self.client.command(command).await;
            let micros = started.elapsed().as_micros() as u64;
            match result {
                Ok(outcome) if !matches!(outcome.response, Response::Invalid(_)) => {
                    tally.record(name, micros);
                    self.counts.ops.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => self.failed(&mut tally, "invalid"),
                Err(error) => self.failed(&mut tally, error_kind(&error)),
            }
        }
        tally
    }

    fn failed(&self, tally: &mut Tally, kind: &str) {
        tally.error(kind);
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn next_command(&mut self) -> (&'static str, Command) {
        let random = self.next_random();
        let key = self.picker.key(self.picker.pick(random));
        let roll = (self.next_random() % 100) as u8;
        if roll < self.options.read_percent {
            return ("get", Command::Get { key });
        }
        let value = self.value();
        if roll < self.options.read_percent + self.options.cas_percent {
            return (
                "cas",
                Command::CompareAndSwap {
                    key,
                    expected: None,
                    new: Some(value),
                },
            );
        }
        ("put", Command::Put { key, value })
    }

    fn value(&mut self) -> Vec<u8> {
        let seed = self.next_random();
        (0..self.options.value_size)
            .map(|index| (seed >> (index % 8 * 8)) as u8)
            .collect()
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.rng)
    }
}

fn error_kind(error: &ClientError) -> &'static str {
    match error {
        ClientError::Config(_) => "options",
        ClientError::Tls(_) => "tls",
        ClientError::NoEndpoint(_) => "no endpoint",
        ClientError::Refused(_) => "refused",
        ClientError::NotSent(_) => "not sent (too large, or certificate refused), not applied",
        ClientError::OutcomeUnknown { .. } => "outcome unknown (deadline or session expired)",
        ClientError::Unavailable { .. } => "unavailable (deadline), not applied",
        ClientError::NoLeader { .. } => "no leader (deadline), not applied",
    }
}

/// Successful operations (latencies in microseconds, by operation) and failures by kind; one
/// per worker, merged at the end. The etcd load client keeps its figures in one too.
#[derive(Debug)]
pub struct Tally {
    histogram: Histogram<u64>,
    by_op: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// An empty tally (latencies from 1 µs to 60 s at 3 significant digits).
    #[must_use]
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            by_op: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// One success of `op` that took `micros`.
    pub fn record(&mut self, op: &str, micros: u64) {
        self.histogram.saturating_record(micros.max(1));
        *self.by_op.entry(op.to_string()).or_default() += 1;
    }

    /// One failure of `kind`.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// Adds another worker's tally.
    pub fn merge(&mut self, other: &Tally) {
        let _ = self.histogram.add(&other.histogram);
        for (op, count) in &other.by_op {
            *self.by_op.entry(op.clone()).or_default() += count;
        }
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    /// The report of a run that lasted `seconds`.
    #[must_use]
    pub fn report(self, seconds: f64) -> WorkloadReport {
        let ops = self.histogram.len();
        WorkloadReport {
            ops,
            seconds,
            ops_per_second: ops as f64 / seconds.max(0.001),
            latency_us: Percentiles::of(&self.histogram),
            by_op: self.by_op,
            errors: self.errors,
        }
    }
}

/// Picks key numbers uniformly or by a Zipf law over `[0, keys)` (the hottest is number 0),
/// and lays them out in the key space.
struct KeyPicker {
    keys: u64,
    order: KeyOrder,
    /// Zipfian: the cumulative distribution over the ranks (hottest first).
    cumulative: Option<Vec<f64>>,
}

impl KeyPicker {
    fn new(keys: u64, distribution: Distribution, order: KeyOrder) -> Self {
        let cumulative = (distribution == Distribution::Zipfian).then(|| {
            let weights: Vec<f64> = (1..=keys)
                .map(|rank| 1.0 / (rank as f64).powf(0.99))
                .collect();
            let total: f64 = weights.iter().sum();
            let mut sum = 0.0;
            weights
                .iter()
                .map(|weight| {
                    sum += weight / total;
                    sum
                })
                .collect()
        });
        Self {
            keys,
            order,
            cumulative,
        }
    }

    /// The key of number `index`.
    fn key(&self, index: u64) -> Vec<u8> {
        match self.order {
            KeyOrder::Hashed => key_of(index),
            KeyOrder::Ordered => ordered_key_of(index, self.keys),
        }
    }

    fn pick(&self, random: u64) -> u64 {
        match &self.cumulative {
            None => random % self.keys,
            Some(cumulative) => {
                let point = (random >> 11) as f64 / (1u64 << 53) as f64;
                let rank = cumulative.partition_point(|&edge| edge < point) as u64;
                rank.min(self.keys - 1)
            }
        }
    }
}

/// SplitMix64's finalizer: a bijection that spreads consecutive numbers over all 64 bits.
#[must_use]
pub fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Prints a workload report for a person.
pub fn print_report(report: &WorkloadReport) {
    let ms = |micros: u64| micros as f64 / 1000.0;
    let latency = &report.latency_us;
    println!(
        "  {} ops in {:.1} s = {:.0} ops/s   latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        report.ops,
        report.seconds,
        report.ops_per_second,
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.p999),
        ms(latency.max)
    );
    let ops: Vec<String> = report
        .by_op
        .iter()
        .map(|(op, count)| format!("{op} {count}"))
        .collect();
    println!("  by operation: {}", ops.join(", "));
    if report.errors.is_empty() {
        println!("  errors: none");
    } else {
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        println!("  errors: {}", errors.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_keys_are_skewed_and_uniform_keys_are_not() {
        let zipf = KeyPicker::new(1000, Distribution::Zipfian, KeyOrder::Hashed);
        let uniform = KeyPicker::new(1000, Distribution::Uniform, KeyOrder::Hashed);
        let hot = |picker: &KeyPicker| (0..10_000u64).filter(|&n| picker.pick(mix(n)) < 10).count();
        assert!(
            hot(&zipf) > 3_000,
            "the 10 hottest of 1000 keys take over 30% under Zipf"
        );
        assert!(hot(&uniform) < 300, "and about 1% uniformly");
        assert!((0..10_000u64).all(|n| zipf.pick(mix(n)) < 1000));
    }

    #[test]
    fn keys_spread_over_the_first_two_bytes() {
        let prefixes: std::collections::BTreeSet<u8> = (0..1000).map(|n| key_of(n)[0]).collect();
        assert!(prefixes.len() > 200);
    }

    /// Ordered keys sort as their numbers, and a uniform pre-split into `groups` ranges
    /// (two-byte prefixes, `RangeMap::uniform`) gives each range its share of consecutive
    /// numbers: the zipfian hot keys, numbers 0, 1, 2..., all fall in the first range.
    #[test]
    fn ordered_keys_sort_by_number_and_fill_uniform_ranges_evenly() {
        let keys = 100_000;
        let all: Vec<Vec<u8>> = (0..keys).map(|n| ordered_key_of(n, keys)).collect();
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(all[0], vec![0; 8]);
        assert!(all[keys as usize - 1] > vec![0xff, 0xfe]);
        let groups = 64u64;
        let map =
            flotilla_shard_manager::RangeMap::uniform(groups, |_| vec![flotilla_raft::NodeId(1)]);
        let mut per_range = vec![0u64; groups as usize];
        for key in &all {
            per_range[(map.lookup(key).id.0 - 1) as usize] += 1;
        }
        let share = keys / groups;
        assert!(
            per_range.iter().all(|&count| count.abs_diff(share) <= 1),
            "{per_range:?}"
        );
        assert_eq!(ordered_key_of(0, 1), vec![0; 8]);
        assert_eq!(ordered_key_of(u64::MAX - 1, u64::MAX).len(), 8);
    }
}

//! The placement driver alone, in virtual time, at a scale this machine cannot run for real:
//! 100 nodes, 1,000,000 ranges of 3 replicas, then 10 nodes added. Prints the time to
//! rebalance at the move limits, the operators the driver computes per wall-clock second, and
//! the meta-group writes per second during the rebalance and at steady state.
//!
//! `cargo run --release -p flotilla-shard-manager --example placement_scale [-- --nodes 100
//! --ranges 1000000 --added 10 --tick-ms 1000 --range-mib 64 --snapshot-mib-per-second 100
//! --conf-change-ms 50 --heartbeat-ms 10000 --moves-per-node 8 --moves 64]`
//!
//! Model: a step that copies data (add learner) takes `conf-change-ms` plus the range's size
//! over `snapshot-mib-per-second`; every other step takes `conf-change-ms`; the driver sees a
//! step done on its next tick. One meta-group write per decision (start, advance, finish,
//! abandon) plus one per node heartbeat every `heartbeat-ms`.

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::RangeId;
use flotilla_shard_manager::placement::{
    ClusterView, Decision, NodeView, OperatorId, PlacementConfig, PlacementDriver, RangeView, Step,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

struct Options {
    nodes: u64,
    ranges: u64,
    added: u64,
    tick_ms: u64,
    range_mib: u64,
    snapshot_mib_per_second: u64,
    conf_change_ms: u64,
    heartbeat_ms: u64,
    moves_per_node: usize,
    moves: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str, default: u64| {
        args.iter()
            .position(|arg| arg == &format!("--{name}"))
            .and_then(|index| args.get(index + 1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    Options {
        nodes: get("nodes", 100),
        ranges: get("ranges", 1_000_000),
        added: get("added", 10),
        tick_ms: get("tick-ms", 1000),
        range_mib: get("range-mib", 64),
        snapshot_mib_per_second: get("snapshot-mib-per-second", 100),
        conf_change_ms: get("conf-change-ms", 50),
        heartbeat_ms: get("heartbeat-ms", 10_000),
        moves_per_node: usize::try_from(get("moves-per-node", 8)).unwrap_or(8),
        moves: usize::try_from(get("moves", 64)).unwrap_or(64),
    }
}

/// A small deterministic generator (xorshift64*), so the run is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The simulated cluster: the view, the driver, and the steps being carried out.
struct Sim {
    options: Options,
    view: ClusterView,
    driver: PlacementDriver,
    now_ms: u64,
    /// (done at, operator, step index), soonest first.
    due: BinaryHeap<Reverse<(u64, OperatorId, usize)>>,
    writes: u64,
    operators_started: u64,
    decisions: u64,
    driver_time: Duration,
    ticks: u64,
    tick_time_max: Duration,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

impl Sim {
    fn new(options: Options) -> Result<Self> {
        let config = PlacementConfig {
            moves_per_node_max: options.moves_per_node,
            moves_in_flight_max: options.moves,
            ..PlacementConfig::default()
        };
        Ok(Self {
            options,
            view: ClusterView::new(),
            driver: PlacementDriver::new(config)?,
            now_ms: 0,
            due: BinaryHeap::new(),
            writes: 0,
            operators_started: 0,
            decisions: 0,
            driver_time: Duration::ZERO,
            ticks: 0,
            tick_time_max: Duration::ZERO,
        })
    }

    fn populate(&mut self) -> Result<()> {
        let nodes = self.options.nodes;
        for id in 1..=nodes {
            self.view.upsert_node(NodeView::up(NodeId(id), 0))?;
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mean_bytes = self.options.range_mib << 20;
        for id in 0..self.options.ranges {
            let first = id % nodes;
            let stride = 1 + (id / nodes) % (nodes / 2 - 1);
            let voters: Vec<NodeId> = [first, first + stride, first + 2 * stride]
                .map(|node| NodeId(node % nodes + 1))
                .to_vec();
            let mut range = RangeView::voters(RangeId(id + 1), GroupId(id + 1), &voters);
            range.size_bytes = mean_bytes / 2 + rng.next() % mean_bytes;
            self.view.upsert_range(range)?;
        }
        Ok(())
    }

    fn add_nodes(&mut self) -> Result<()> {
        let first = self.options.nodes + 1;
        for id in first..first + self.options.added {
            self.view
                .upsert_node(NodeView::up(NodeId(id), self.now_ms))?;
        }
        Ok(())
    }

    /// One tick of virtual time: finish due steps, heartbeat, run the driver, apply.
    fn tick(&mut self) -> Result<bool> {
        self.now_ms += self.options.tick_ms;
        self.complete_due_steps()?;
        self.heartbeats()?;
        let started = Instant::now();
        let ready = self.driver.tick(&self.view, self.now_ms);
        let elapsed = started.elapsed();
        self.driver_time += elapsed;
        self.tick_time_max = self.tick_time_max.max(elapsed);
        self.ticks += 1;
        let busy = !ready.decisions.is_empty() || ready.scan_limit_reached;
        for decision in &ready.decisions {
            self.writes += 1;
            self.decisions += 1;
            let id = self.view.apply(decision)?;
            self.schedule(decision, id);
        }
        Ok(busy || self.view.operators().next().is_some())
    }

    fn heartbeats(&mut self) -> Result<()> {
        let interval = self.options.heartbeat_ms;
        let previous = self.now_ms - self.options.tick_ms;
        let node_count = self.view.nodes().count() as u64;
        let beats = node_count * (self.now_ms / interval - previous / interval);
        self.writes += beats;
        if beats > 0 {
            let ids: Vec<NodeId> = self.view.nodes().map(|node| node.id).collect();
            for id in ids {
                self.view.heartbeat(id, self.now_ms, 0, 0)?;
            }
        }
        Ok(())
    }

    fn schedule(&mut self, decision: &Decision, started: Option<OperatorId>) {
        let (id, step_index) = match decision {
            Decision::Start { .. } => match started {
                Some(id) => {
                    self.operators_started += 1;
                    (id, 0)
                }
                None => return,
            },
            Decision::Advance {
                operator,
                step_index,
                ..
            } => (*operator, *step_index),
            _ => return,
        };
        let Some(operator) = self.view.operators().find(|operator| operator.id == id) else {
            return;
        };
        let Some(range) = self.view.range(operator.range) else {
            return;
        };
        let duration = match operator.steps.get(step_index) {
            Some(Step::AddLearner { .. }) => {
                self.options.conf_change_ms
                    + range.size_bytes * 1000 / (self.options.snapshot_mib_per_second << 20)
            }
            _ => self.options.conf_change_ms,
        };
        self.due
            .push(Reverse((self.now_ms + duration, id, step_index)));
    }

    fn complete_due_steps(&mut self) -> Result<()> {
        while let Some(Reverse((at, id, step_index))) = self.due.peek().copied() {
            if at > self.now_ms {
                break;
            }
            self.due.pop();
            let Some(operator) = self.view.operators().find(|operator| operator.id == id) else {
                continue;
            };
            if operator.step_index != step_index {
                continue;
            }
            let (Some(step), Some(range)) = (operator.step(), self.view.range(operator.range))
            else {
                continue;
            };
            let mut changed = step.carried_out(range);
            if changed.leader.is_none() {
                let leader = changed.voter_nodes().next();
                changed.leader = leader;
            }
            self.view.upsert_range(changed)?;
        }
        Ok(())
    }

    fn spreads(&self) -> (usize, usize) {
        let replicas: Vec<usize> = self
            .view
            .nodes()
            .map(|node| self.view.replica_count(node.id))
            .collect();
        let leaders: Vec<usize> = self
            .view
            .nodes()
            .map(|node| self.view.leader_count(node.id))
            .collect();
        let spread = |counts: &[usize]| {
            counts.iter().max().copied().unwrap_or(0) - counts.iter().min().copied().unwrap_or(0)
        };
        (spread(&replicas), spread(&leaders))
    }

    fn reset_counters(&mut self) {
        self.writes = 0;
        self.operators_started = 0;
        self.decisions = 0;
        self.driver_time = Duration::ZERO;
        self.ticks = 0;
        self.tick_time_max = Duration::ZERO;
    }
}

fn hours(ms: u64) -> f64 {
    ms as f64 / 3_600_000.0
}

fn main() -> Result<()> {
    let options = options();
    println!(
        "placement_scale: {} nodes, {} ranges x 3 replicas, +{} nodes; tick {} ms; ranges {} MiB \
         on average, snapshots at {} MiB/s, conf changes {} ms; limits {} moves per node, {} in all",
        options.nodes,
        options.ranges,
        options.added,
        options.tick_ms,
        options.range_mib,
        options.snapshot_mib_per_second,
        options.conf_change_ms,
        options.moves_per_node,
        options.moves
    );
    let mut sim = Sim::new(options)?;
    let started = Instant::now();
    sim.populate()?;
    println!("view built: {:.1} s wall", started.elapsed().as_secs_f64());

    steady_state(&mut sim, "steady state before", 600_000)?;
    burst(&mut sim)?;
    rebalance(&mut sim)?;
    steady_state(&mut sim, "steady state after", 3_600_000)?;
    Ok(())
}

/// Runs `span_ms` of virtual time on a balanced cluster: meta writes are heartbeats only.
fn steady_state(sim: &mut Sim, label: &str, span_ms: u64) -> Result<()> {
    sim.reset_counters();
    let start_ms = sim.now_ms;
    while sim.now_ms - start_ms < span_ms {
        sim.tick()?;
    }
    let seconds = span_ms as f64 / 1000.0;
    println!(
        "{label}: {:.1} meta writes/s ({} decisions in {:.0} virtual s); driver tick {:.1} us mean, {:.1} us max",
        sim.writes as f64 / seconds,
        sim.decisions,
        seconds,
        sim.driver_time.as_secs_f64() * 1e6 / sim.ticks.max(1) as f64,
        sim.tick_time_max.as_secs_f64() * 1e6
    );
    Ok(())
}

/// The raw planning rate: a driver with limits out of the way plans as many moves as it can
/// in one tick, on a copy of the view right after the nodes are added.
fn burst(sim: &mut Sim) -> Result<()> {
    let mut view = sim.view.clone();
    let first = sim.options.nodes + 1;
    for id in first..first + sim.options.added {
        view.upsert_node(NodeView::up(NodeId(id), sim.now_ms))?;
    }
    let config = PlacementConfig {
        moves_per_node_max: 1_000_000,
        moves_in_flight_max: 1_000_000,
        leader_transfers_per_node_max: 1_000_000,
        leader_transfers_in_flight_max: 1_000_000,
        ranges_scanned_per_tick_max: 10_000_000,
        ..sim.driver.config().clone()
    };
    let mut driver = PlacementDriver::new(config)?;
    let started = Instant::now();
    let ready = driver.tick(&view, sim.now_ms);
    let elapsed = started.elapsed().as_secs_f64();
    let count = ready.decisions.len();
    println!(
        "burst (limits lifted): {count} operators planned in one tick in {:.3} s wall = {:.0} operators/s",
        elapsed,
        count as f64 / elapsed
    );
    let started = Instant::now();
    let mut applied = 0;
    for decision in &ready.decisions {
        if view.apply(decision).is_ok() {
            applied += 1;
        }
    }
    println!(
        "  applying them to the view: {applied} in {:.3} s wall",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn rebalance(sim: &mut Sim) -> Result<()> {
    sim.reset_counters();
    sim.add_nodes()?;
    let start_ms = sim.now_ms;
    let wall = Instant::now();
    let mut last_report_ms = start_ms;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    while sim.tick()? {
        if sim.now_ms - last_report_ms >= 3_600_000 {
            last_report_ms = sim.now_ms;
            let (replicas, leaders) = sim.spreads();
            println!(
                "  {:.1} h: {} operators, replica spread {replicas}, leader spread {leaders}",
                hours(sim.now_ms - start_ms),
                sim.operators_started
            );
        }
        for operator in sim.view.operators() {
            if operator.step_index == 0 && operator.step_started_ms == sim.now_ms {
                *kinds.entry(operator.kind.to_string()).or_default() += 1;
            }
        }
    }
    let span_ms = sim.now_ms - start_ms;
    let (replicas, leaders) = sim.spreads();
    let driver_seconds = sim.driver_time.as_secs_f64();
    println!(
        "rebalance after adding {} nodes: {:.2} virtual hours ({} ticks), {} operators {kinds:?}; \
         replica spread {replicas}, leader spread {leaders}",
        sim.options.added,
        hours(span_ms),
        sim.ticks,
        sim.operators_started
    );
    println!(
        "  driver: {:.2} s wall in tick ({:.1} us mean, {:.1} us max), {:.0} operators/s, {:.0} decisions/s; \
         whole simulation {:.1} s wall",
        driver_seconds,
        driver_seconds * 1e6 / sim.ticks.max(1) as f64,
        sim.tick_time_max.as_secs_f64() * 1e6,
        sim.operators_started as f64 / driver_seconds,
        sim.decisions as f64 / driver_seconds,
        wall.elapsed().as_secs_f64()
    );
    println!(
        "  meta writes during the rebalance: {:.1}/s ({} decisions + heartbeats)",
        sim.writes as f64 / (span_ms as f64 / 1000.0),
        sim.decisions
    );
    Ok(())
}

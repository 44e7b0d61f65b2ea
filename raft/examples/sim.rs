//! Runs the deterministic Raft simulator from the command line and prints what it did:
//! `cargo run --release -p flotilla-raft --example sim -- --seeds 500 [--first 1]`, or
//! `--seed S` to replay one seed.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub, dead_code)]

#[path = "../tests/sim/faults.rs"]
mod faults;
#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "../tests/sim/run.rs"]
mod run;
#[path = "../tests/sim/swarm.rs"]
mod swarm;
#[path = "../tests/sim/workload.rs"]
mod workload;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: sim [--seeds N] [--first S] [--seed S]";

struct Args {
    first: u64,
    count: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        first: 1,
        count: 200,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{flag} takes a whole number, not '{value}'\n{USAGE}"))?;
        match flag.as_str() {
            "--seeds" => args.count = number,
            "--first" => args.first = number,
            "--seed" => (args.first, args.count) = (number, 1),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[derive(Default)]
struct Totals {
    acks: u64,
    reads: u64,
    checks: u64,
    crashes: u64,
    torn_crashes: u64,
    partitions: u64,
    membership_changes: u64,
    transfers: u64,
    simulated_ms: u64,
    max_term: u64,
}

impl Totals {
    fn add(&mut self, report: &run::Report) {
        self.acks += report.acks as u64;
        self.reads += report.reads_served as u64;
        self.checks += report.checks;
        self.crashes += report.faults.crashes;
        self.torn_crashes += report.faults.torn_crashes;
        self.partitions += report.faults.partitions;
        self.membership_changes += report.workload.membership_changes;
        self.transfers += report.workload.transfers;
        self.simulated_ms += report.simulated_ms;
        self.max_term = self.max_term.max(report.terms);
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    for seed in args.first..args.first + args.count {
        match catch_unwind(AssertUnwindSafe(|| run::run_seed(seed))) {
            Ok(report) => totals.add(&report),
            Err(panic) => failures.push((seed, panic_text(&panic))),
        }
    }
    print_summary(&args, &totals, started.elapsed().as_secs_f64());
    for (seed, message) in &failures {
        println!(
            "FAILED seed {seed}: {message}\n  reproduce: cargo run --release -p flotilla-raft --example sim -- --seed {seed}"
        );
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_summary(args: &Args, totals: &Totals, seconds: f64) {
    println!(
        "Flotilla Raft simulator: seeds {}..{} ({} runs) in {seconds:.1} s wall clock",
        args.first,
        args.first + args.count - 1,
        args.count
    );
    println!(
        "  simulated time        {:>12.1} s",
        totals.simulated_ms as f64 / 1000.0
    );
    println!(
        "  acknowledged writes   {:>12}  (every one applied on every replica after healing)",
        totals.acks
    );
    println!("  linearizable reads    {:>12}", totals.reads);
    println!(
        "  crashes               {:>12}  ({} in the middle of a ready cycle)",
        totals.crashes, totals.torn_crashes
    );
    println!("  partitions            {:>12}", totals.partitions);
    println!("  membership changes    {:>12}", totals.membership_changes);
    println!("  leadership transfers  {:>12}", totals.transfers);
    println!("  highest term reached  {:>12}", totals.max_term);
    println!(
        "  safety checks passed  {:>12}  (election safety, leader append-only, log matching,",
        totals.checks
    );
    println!(
        "                                      commit safety, leader completeness, state machine\n                                      safety, linearizable reads)"
    );
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

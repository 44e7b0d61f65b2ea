//! A child process for the SIGKILL tests: the test binary re-invoked to run one ignored test
//! that prints `acked <index>` after each durable step; the parent kills it mid-run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the ignored test `child_test` of this binary with `variable` set to `directory` until
/// it acknowledged something past `acked_before` (however slow the machine is), then for
/// `run_for` more, then kills it; returns the highest index it acknowledged.
pub fn run_child_and_kill(
    child_test: &str,
    variable: &str,
    directory: &Path,
    acked_before: u64,
    run_for: Duration,
) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            child_test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(variable, directory)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (acks, acked_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(index) = line.strip_prefix("acked ") {
                acked = index.parse().unwrap();
                let _ = acks.send(acked);
            }
        }
        acked
    });
    // A guard against a child that never starts, not a timing assumption.
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Ok(acked) = acked_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if acked > acked_before {
            break;
        }
    }
    std::thread::sleep(run_for);
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

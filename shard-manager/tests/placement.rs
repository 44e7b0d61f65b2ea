//! The placement driver from outside: data-driven cases (`placement/*.txt`) and the property
//! that random clusters converge to fully replicated and balanced without ever leaving a range
//! below a majority of live voters.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

#[path = "placement/convergence.rs"]
mod convergence;
#[path = "placement/harness.rs"]
mod harness;

fn check(name: &str, text: &str) {
    if let Some(rewritten) = harness::run_file(name, text) {
        let path = format!("{}/tests/placement/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(path, rewritten).unwrap();
    }
}

#[test]
fn t10_repair_cases() {
    check("t10_repair.txt", include_str!("placement/t10_repair.txt"));
}

#[test]
fn t20_drain_cases() {
    check("t20_drain.txt", include_str!("placement/t20_drain.txt"));
}

#[test]
fn t30_spread_cases() {
    check("t30_spread.txt", include_str!("placement/t30_spread.txt"));
}

#[test]
fn t40_leader_cases() {
    check("t40_leaders.txt", include_str!("placement/t40_leaders.txt"));
}

#[test]
fn t50_failure_cases() {
    check(
        "t50_failures.txt",
        include_str!("placement/t50_failures.txt"),
    );
}

#[test]
fn t60_limit_cases() {
    check("t60_limits.txt", include_str!("placement/t60_limits.txt"));
}

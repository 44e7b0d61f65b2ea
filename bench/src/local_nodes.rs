//! What the real-process benchmarks (`scale`, `restart`) ask of a local cluster's nodes: a
//! bounded wait, an HTTP `GET` on a node's listener, a field of its `/proc` status (and, from
//! `flotilla_node::local`, the bytes a folder of its data directory takes).

use flotilla_node::local::LocalCluster;
pub use flotilla_node::local::folder_bytes;
use flotilla_raft::NodeId;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Polls `done` every 200 ms until it gives a value; an error naming `what` after `timeout`.
///
/// # Errors
/// `timeout` passed first.
pub fn wait<T>(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = done() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET path` on the node's HTTP listener: the status code and body.
#[must_use]
pub fn get(cluster: &LocalCluster, node: NodeId, path: &str) -> Option<(u16, String)> {
    let address = cluster.http_address(node)?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Whether `GET path` on the node answers 200.
#[must_use]
pub fn answers_ok(cluster: &LocalCluster, node: NodeId, path: &str) -> bool {
    get(cluster, node, path).is_some_and(|(status, _)| status == 200)
}

/// A field of `/proc/PID/status` (`"VmRSS:"`, ...), in KiB (0 when the node is not running).
#[must_use]
pub fn proc_status_kib(cluster: &LocalCluster, node: NodeId, field: &str) -> u64 {
    let Some(pid) = cluster.pid(node) else {
        return 0;
    };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

//! What the end-to-end tests share: the built binary, a runtime, and the bounded wait.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long any wait may take before the test fails (a failure, not a measurement).
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The `flotilla` binary cargo built for these tests.
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flotilla"))
}

/// The tests' tokio runtime.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Retries `attempt` until it returns `Some`, for at most `WAIT`.
pub(crate) async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    attempt: impl FnMut() -> F,
) -> T {
    eventually_within(WAIT, what, attempt).await
}

/// `eventually`, for a wait known to take longer than `WAIT` on a busy machine.
#[allow(dead_code)] // not every test binary waits long
pub(crate) async fn eventually_within<T, F: Future<Output = Option<T>>>(
    wait: Duration,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node that leads `group` (the first one a status shows leading it).
#[allow(dead_code)] // not every test binary asks for a leader
pub(crate) async fn leader_of(
    client: &flotilla_node::Client,
    group: flotilla_raft::GroupId,
) -> flotilla_raft::NodeId {
    eventually("a leader", || async {
        let statuses = client.statuses().await;
        statuses.iter().find_map(|(node, status)| {
            let status = status.as_ref().ok()?;
            let leads = status
                .groups
                .iter()
                .any(|g| g.group == group && g.role == "Leader");
            leads.then_some(*node)
        })
    })
    .await
}

/// What `flotilla ARGS` printed and how it ended, with `stdin` piped in (so never a terminal).
#[allow(dead_code)] // only the tests of the command line run the binary as a client
pub(crate) fn run_flotilla(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the flotilla binary starts");
    let mut input = child.stdin.take().expect("a piped stdin");
    input.write_all(stdin).expect("stdin written");
    drop(input);
    child.wait_with_output().expect("the flotilla binary ends")
}

/// The flags that point a `flotilla` client command at the cluster of `options`.
#[allow(dead_code)] // only the tests of the command line run the binary as a client
pub(crate) fn client_flags(options: &flotilla_node::ClientOptions) -> Vec<String> {
    let endpoints: Vec<String> = options.endpoints.iter().map(ToString::to_string).collect();
    [
        "--endpoints",
        &endpoints.join(","),
        "--tls-dir",
        options.tls_dir.to_str().expect("a UTF-8 path"),
        "--name",
        &options.name,
        "--cluster-id",
        &options.cluster_id,
    ]
    .map(String::from)
    .to_vec()
}

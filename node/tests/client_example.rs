//! The client crate's example, `client/examples/quickstart.rs`, run as the program it is against
//! three real `flotilla server` processes: what issue 21 asks CI to prove. It is given
//! endpoints without node ids (and a host name, where `localhost` is IPv4 loopback), so it also
//! proves a client learns each node's id from its certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::local::{LocalCluster, connect_when_ready};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{WAIT, binary, runtime};

/// Builds the example with the cargo that runs this test, into the same target directory and
/// profile, and gives its path. (`cargo test --workspace` has built it already; then this is a
/// fresh check. `cargo test -p flotilla-node` has not.)
fn quickstart() -> PathBuf {
    let test = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<this test>
    let profile_dir = test.parent().and_then(Path::parent).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "-p", "flotilla-client", "--example", "quickstart"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    // What cargo set for this test (`CARGO_PKG_NAME=flotilla-node`, ...) would differ from
    // what the outer cargo saw, and build scripts that watch those variables (ring's) would
    // run again, in both builds in turn, each time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = ["CARGO_PKG_", "CARGO_BIN_", "CARGO_CFG_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if set_by_cargo {
            build.env_remove(name.as_ref());
        }
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "the example did not build: {status}");
    profile_dir.join("examples").join("quickstart")
}

/// `127.0.0.1:port` as `localhost:port` if `localhost` resolves to IPv4 loopback first (the
/// nodes listen there only), else as is.
fn by_name(address: SocketAddr) -> String {
    let localhost = ("localhost", address.port()).to_socket_addrs().ok();
    match localhost.and_then(|mut resolved| resolved.next()) {
        Some(resolved) if resolved == address => format!("localhost:{}", address.port()),
        _ => address.to_string(),
    }
}

#[test]
fn the_quickstart_example_runs_against_a_three_node_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(binary(), dir.path(), 3, 3).unwrap();
    let options = cluster.client_options();
    runtime()
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();
    let mut endpoints: Vec<String> = cluster
        .endpoints
        .iter()
        .map(|endpoint| endpoint.address.to_string())
        .collect();
    endpoints[0] = by_name(cluster.endpoints[0].address);

    let output = Command::new(quickstart())
        .args(["--endpoints", &endpoints.join(",")])
        .arg("--tls-dir")
        .arg(&options.tls_dir)
        .args(["--cluster-id", &options.cluster_id, "--name", &options.name])
        .args(["--prefix", "ci/"])
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    let expected = [
        "connected: 3 nodes, 3 ranges",
        "put ci/greeting = \"hello\" (replaced nothing)",
        "get ci/greeting -> \"hello\"",
        "cas ci/greeting \"hello\" -> \"hi\": swapped true",
        "cas ci/greeting \"hello\" -> \"hey\": swapped false, current \"hi\"",
        "scan ci/fruit/apple = \"red\"",
        "scan ci/fruit/banana = \"yellow\"",
        "scan ci/fruit/cherry = \"dark red\"",
        "scanned 3 pairs",
        "delete ci/greeting (it was \"hi\")",
        "get ci/greeting -> nothing",
        "done",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected, "{stderr}");
}

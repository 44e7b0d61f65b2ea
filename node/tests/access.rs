//! End-to-end: who may do what, on a real `flotilla server` process. Roles bound to client
//! certificate names, node certificates on the client protocol, and the deny-list applied on
//! SIGHUP without a restart. One node and one test: start-up dominates the time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::api::ApiError;
use flotilla_node::local::{CLUSTER, LocalCluster, connect_when_ready};
use flotilla_node::{Client, ClientError, ClientOptions};
use flotilla_raft::NodeId;
use flotilla_storage::{Command, Response};
use std::path::Path;

mod common;
use common::{WAIT, binary, eventually, runtime};

const GRANTS: &str = r#"
[access]
grants = [
    { client = "demo", role = "admin" },
    { client = "reader", role = "read-only" },
    { client = "writer", role = "read-write" },
    { client = "leaked", role = "read-write" },
    { client = "stolen", role = "read-write" },
]
"#;

/// `flotilla ARGS`: whether it succeeded, and its stdout and stderr.
fn flotilla(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(binary())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Signs client certificates with the cluster's CA; each name's serial number in hex.
fn add_clients(certs: &Path, names: &str) -> Vec<(String, String)> {
    let dir = certs.display().to_string();
    let args = [
        "certs",
        "--dir",
        &dir,
        "--cluster-id",
        CLUSTER,
        "--add-client",
        names,
    ];
    let (ok, text) = flotilla(&args);
    assert!(ok, "{text}");
    text.lines()
        .map(|line| {
            let (file, serial) = line.split_once(" (serial ").expect(line);
            let name = file
                .rsplit("client-")
                .next()
                .unwrap()
                .trim_end_matches(".pem");
            (name.to_owned(), serial.trim_end_matches(')').to_owned())
        })
        .collect()
}

fn options(cluster: &LocalCluster, name: &str) -> ClientOptions {
    ClientOptions {
        name: name.to_owned(),
        ..cluster.client_options()
    }
}

fn put(key: &str) -> Command {
    Command::Put {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
    }
}

/// The refusal's text, if `result` is a permission refusal.
fn denial<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(error @ ClientError::Refused(ApiError::PermissionDenied { .. })) => error.to_string(),
        other => panic!("expected a permission refusal, got {other:?}"),
    }
}

#[test]
fn roles_limit_each_certificate_and_the_deny_list_applies_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("access.toml");
    std::fs::write(&config, GRANTS).unwrap();
    let cluster =
        LocalCluster::start_with_config(binary(), dir.path(), 1, 2, Some(config.clone())).unwrap();
    let certs = dir.path().join("certs");
    let serials = add_clients(&certs, "reader,writer,leaked,stolen");
    let stolen_serial = &serials.iter().find(|(name, _)| name == "stolen").unwrap().1;
    // A node's certificate and key, presented on the client protocol.
    for extension in ["pem", "key"] {
        std::fs::copy(
            certs.join(format!("node-1.{extension}")),
            certs.join(format!("client-node1.{extension}")),
        )
        .unwrap();
    }
    runtime().block_on(Box::pin(async {
        let admin = connect_when_ready(cluster.client_options(), WAIT)
            .await
            .unwrap();
        admin.command(put("k")).await.unwrap();

        // Read-only: the map, get and scan; no put.
        let reader = Client::connect(options(&cluster, "reader")).await.unwrap();
        assert_eq!(reader.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            reader
                .scan_limited(b"", None, 10)
                .await
                .unwrap()
                .pairs
                .len(),
            1
        );
        let refused = denial(reader.command(put("r")).await);
        assert!(
            refused.contains(r#"permission denied: client "reader" may not put"#),
            "{refused}"
        );
        let flags = client_flags(&cluster, "reader");
        let mut args = vec!["put", "r", "v"];
        args.extend(flags.iter().map(String::as_str));
        let (ok, text) = flotilla(&args);
        assert!(
            !ok && text.contains(r#"client "reader" may not put"#),
            "{text}"
        );
        assert_eq!(
            admin.get(b"r").await.unwrap(),
            None,
            "the refused put was not applied"
        );

        // Read-write: writes, but no status.
        let writer = Client::connect(options(&cluster, "writer")).await.unwrap();
        writer.command(put("w")).await.unwrap();
        let refused = denial(writer.status(NodeId(1)).await);
        assert!(
            refused.contains("may not read the node's status"),
            "{refused}"
        );

        // A node's certificate has no client rights: not even the range map.
        let error = Client::connect(options(&cluster, "node1"))
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("node 1 may not read the range map"),
            "{error}"
        );

        // Before the deny-list: both soon-denied certificates work.
        let leaked = Client::connect(options(&cluster, "leaked")).await.unwrap();
        leaked.command(put("l")).await.unwrap();
        Client::connect(options(&cluster, "stolen")).await.unwrap();

        // A broken file on SIGHUP changes nothing.
        std::fs::write(&config, format!("{GRANTS}deny_nodes = [0]\n")).unwrap();
        assert!(cluster.reload(NodeId(1)));
        let log = cluster.log_file(NodeId(1));
        eventually("the failed reload's line", || async {
            let text = std::fs::read_to_string(&log).unwrap();
            text.contains("reload failed").then_some(())
        })
        .await;
        leaked.command(put("l2")).await.unwrap();

        // Deny `leaked` by name and `stolen` by serial; let nodes read.
        let denials = format!(
            "{GRANTS}deny_clients = [\"leaked\"]\ndeny_serials = [\"{stolen_serial}\"]\n\
             node_role = \"read-only\"\n"
        );
        std::fs::write(&config, denials).unwrap();
        assert!(cluster.reload(NodeId(1)));
        // The open connection's requests are refused; new handshakes too.
        let refused = eventually("the deny-list in force", || async {
            match leaked.get(b"k").await {
                Err(ClientError::Refused(error @ ApiError::PermissionDenied { .. })) => {
                    Some(error.to_string())
                }
                _ => None,
            }
        })
        .await;
        assert!(refused.contains("on the deny-list"), "{refused}");
        for name in ["leaked", "stolen"] {
            let refused = Client::connect(options(&cluster, name)).await.unwrap_err();
            assert!(
                !refused.to_string().contains("permission denied"),
                "{name} got past the handshake: {refused}"
            );
        }

        // Everyone else goes on, and nodes now read but do not write.
        assert_eq!(reader.get(b"w").await.unwrap(), Some(b"v".to_vec()));
        writer.command(put("w2")).await.unwrap();
        admin.status(NodeId(1)).await.unwrap();
        let node = Client::connect(options(&cluster, "node1")).await.unwrap();
        assert_eq!(node.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        let refused = denial(node.command(put("n")).await);
        assert!(refused.contains("node 1 may not put"), "{refused}");
        let outcome = admin.command(put("k")).await.unwrap();
        assert!(matches!(outcome.response, Response::Written { .. }));

        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("refused a request"), "{text}");
        assert!(text.contains("SIGHUP: applied"), "{text}");
        // Revoked handshakes are counted and logged under their own reason, rate-limited.
        assert!(text.contains("reason=Revoked"), "{text}");
    }));
}

/// The CLI flags that reach `cluster` as client `name`.
fn client_flags(cluster: &LocalCluster, name: &str) -> Vec<String> {
    let endpoints: Vec<String> = cluster.endpoints.iter().map(ToString::to_string).collect();
    vec![
        "--endpoints".into(),
        endpoints.join(","),
        "--tls-dir".into(),
        cluster.dir.join("certs").display().to_string(),
        "--cluster-id".into(),
        CLUSTER.into(),
        "--name".into(),
        name.into(),
    ]
}

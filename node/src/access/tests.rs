//! The decision table: each line a certificate, a request and the expected answer.

use super::*;
use flotilla_raft::GroupId;
use flotilla_raft::LogIndex;
use flotilla_shard_manager::RangeEpoch;
use flotilla_storage::kv::{SessionId, SessionTag};

fn settings(toml: &str) -> AccessSettings {
    let base = r#"
        node_role = "none"
        grants = []
        deny_clients = []
        deny_nodes = []
        deny_serials = []
        refusal_log_interval_ms = 5000
        refusal_log_clients_max = 1024
    "#;
    let mut table: toml::Table = toml::from_str(base).unwrap();
    table.extend(toml::from_str::<toml::Table>(toml).unwrap());
    table.try_into().unwrap()
}

fn client(name: &str) -> PeerIdentity {
    PeerIdentity::Client {
        name: name.to_owned(),
        cluster: ClusterId::new("test").unwrap(),
    }
}

fn node(id: u64) -> PeerIdentity {
    PeerIdentity::Node {
        node: NodeId(id),
        cluster: ClusterId::new("test").unwrap(),
    }
}

fn kv(command: Command) -> Request {
    Request::Kv {
        group: GroupId(1),
        epoch: RangeEpoch::default(),
        command,
    }
}

fn get(key: &str) -> Request {
    kv(Command::Get {
        key: key.as_bytes().to_vec(),
    })
}

fn put(key: &str) -> Request {
    Request::Write {
        group: GroupId(1),
        epoch: RangeEpoch::default(),
        tag: SessionTag {
            session: SessionId {
                group: GroupId(1),
                index: LogIndex(1),
            },
            sequence: 1,
            awaited_from: 1,
        },
        command: Command::Put {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        },
    }
}

fn scan(start: &str, end: Option<&str>) -> Request {
    kv(Command::Scan {
        start: start.as_bytes().to_vec(),
        end: end.map(|end| end.as_bytes().to_vec()),
        limit: 10,
    })
}

const GRANTS: &str = r#"
    node_role = "none"
    grants = [
        { client = "reader", role = "read-only" },
        { client = "writer", role = "read-write" },
        { client = "ops", role = "admin" },
        { client = "app", role = "read-write", prefixes = ["app/", "shared/"] },
    ]
    deny_clients = ["leaked"]
"#;

/// Each line: who, the request, and `None` (allowed) or the refusal's text.
#[test]
fn every_role_gets_what_it_may_and_nothing_more() {
    let policy = Policy::new(&settings(GRANTS)).unwrap();
    let open_session = Request::OpenSession {
        group: GroupId(1),
        epoch: RangeEpoch::default(),
    };
    let table: Vec<(PeerIdentity, Request, Option<&str>)> = vec![
        (client("reader"), Request::RangeMap, None),
        (client("reader"), get("k"), None),
        (client("reader"), scan("", None), None),
        (
            client("reader"),
            put("k"),
            Some(r#"permission denied: client "reader" may not put"#),
        ),
        (
            client("reader"),
            open_session.clone(),
            Some("may not open a write session"),
        ),
        (
            client("reader"),
            Request::Status,
            Some("may not read the node's status"),
        ),
        (client("writer"), put("k"), None),
        (client("writer"), open_session.clone(), None),
        (
            client("writer"),
            Request::Status,
            Some(r#"client "writer" may not read the node's status"#),
        ),
        (
            client("writer"),
            Request::KnownDirectory { node: NodeId(2) },
            Some("data directory"),
        ),
        (client("ops"), Request::Status, None),
        (client("ops"), put("k"), None),
        (
            client("ops"),
            Request::KnownDirectory { node: NodeId(2) },
            None,
        ),
        (client("app"), put("app/1"), None),
        (client("app"), get("shared/x"), None),
        (client("app"), open_session, None),
        (
            client("app"),
            put("other"),
            Some(
                r#"may not put key "other" (its grant covers keys starting with "app/" or "shared/")"#,
            ),
        ),
        (client("app"), scan("app/", Some("app0")), None),
        (client("app"), scan("app/a", Some("app/b")), None),
        (
            client("app"),
            scan("app/", Some("app1")),
            Some(r#"scan from "app/" to "app1""#),
        ),
        (client("app"), scan("app/", None), Some("to the end")),
        (client("app"), scan("", Some("app/")), Some("may not scan")),
        (
            client("stranger"),
            Request::RangeMap,
            Some(r#"client "stranger" may not read the range map"#),
        ),
        (
            client("leaked"),
            get("k"),
            Some("may not get (its certificate is on the deny-list)"),
        ),
        (node(1), Request::KnownDirectory { node: NodeId(2) }, None),
        (
            node(1),
            put("k"),
            Some("permission denied: node 1 may not put"),
        ),
        (
            node(1),
            Request::RangeMap,
            Some("node 1 may not read the range map"),
        ),
    ];
    for (who, request, expected) in table {
        let answer = policy
            .check(&who, &request)
            .map_err(|denied| denied.to_string());
        match expected {
            None => assert_eq!(answer, Ok(()), "{who} {request:?}"),
            Some(text) => {
                let error = answer.unwrap_err();
                assert!(error.contains(text), "{who} {request:?}: {error}");
            }
        }
    }
}

#[test]
fn without_grants_every_client_is_admin_and_nodes_only_talk_to_nodes() {
    let policy = Policy::new(&settings("")).unwrap();
    for request in [Request::Status, put("k"), get("k"), Request::RangeMap] {
        assert_eq!(policy.check(&client("anyone"), &request), Ok(()));
    }
    assert!(policy.check(&node(2), &put("k")).is_err());
    assert!(
        policy
            .check(&node(2), &Request::KnownDirectory { node: NodeId(1) })
            .is_ok()
    );
    let locked = Policy::new(&settings(r#"default_role = "none""#)).unwrap();
    assert!(locked.check(&client("anyone"), &Request::RangeMap).is_err());
    let nodes_read = Policy::new(&settings(r#"node_role = "read-only""#)).unwrap();
    assert_eq!(nodes_read.check(&node(2), &get("k")), Ok(()));
    assert!(nodes_read.check(&node(2), &put("k")).is_err());
}

#[test]
fn the_deny_list_names_certificates_by_identity_and_serial() {
    let policy = Policy::new(&settings(
        r#"
        deny_clients = ["leaked"]
        deny_nodes = [3]
        deny_serials = ["00:8F:0a", "1"]
        "#,
    ))
    .unwrap();
    assert!(policy.revokes(&client("leaked"), None));
    assert!(policy.revokes(&node(3), Some(&[7])));
    assert!(policy.revokes(&client("ok"), Some(&[0x8f, 0x0a])));
    assert!(policy.revokes(&client("ok"), Some(&[0, 0x01])));
    assert!(!policy.revokes(&client("ok"), Some(&[0x8f])));
    assert!(!policy.revokes(&node(2), None));
    let refused = policy.check_certificate(&client("ok"), Some(&[1]), &get("k"));
    assert_eq!(
        refused.unwrap_err().to_string(),
        r#"permission denied: client "ok" may not get (its certificate is on the deny-list)"#
    );
    assert_eq!(
        policy.check_certificate(&client("ok"), Some(&[2]), &get("k")),
        Ok(())
    );
    let revocations = policy.revocations(&ClusterId::new("test").unwrap());
    assert!(revocations.refuses(&client("leaked"), None));
    assert!(revocations.refuses(&node(3), None));
    assert!(revocations.refuses(&client("ok"), Some(&[0x8f, 0x0a])));
    assert!(!revocations.refuses(&client("ok"), Some(&[0x8f])));
}

#[test]
fn broken_rules_are_named() {
    let cases = [
        (
            r#"grants = [{ client = "", role = "admin" }]"#,
            "not a client name",
        ),
        (
            r#"grants = [{ client = "A b", role = "admin" }]"#,
            "not a client name",
        ),
        (
            r#"grants = [{ client = "a", role = "admin" }, { client = "a", role = "read-only" }]"#,
            "client \"a\" has two grants",
        ),
        (
            r#"grants = [{ client = "a", role = "admin", prefixes = [""] }]"#,
            "empty or repeated prefix",
        ),
        (
            r#"grants = [{ client = "a", role = "admin", prefixes = ["x", "x"] }]"#,
            "repeated prefix",
        ),
        (
            r#"deny_clients = ["ok", "ok"]"#,
            "deny_clients names ok twice",
        ),
        (r#"deny_nodes = [0]"#, "node 0"),
        (r#"deny_serials = ["xyz"]"#, "not a certificate serial"),
        (r#"deny_serials = ["00"]"#, "not a certificate serial"),
        (
            r#"deny_serials = ["0a", "0A"]"#,
            "deny_serials names 0a twice",
        ),
        ("refusal_log_interval_ms = 0", "refusal_log_interval_ms"),
        ("refusal_log_clients_max = 0", "refusal_log_clients_max"),
    ];
    for (toml, expected) in cases {
        let error = Policy::new(&settings(toml)).unwrap_err().to_string();
        assert!(error.contains(expected), "{toml}: {error}");
    }
    let unknown: Result<AccessSettings, _> =
        toml::from_str::<toml::Table>(r#"grants = [{ client = "a", role = "reader" }]"#)
            .unwrap()
            .try_into();
    assert!(unknown.is_err());
}

#[test]
fn serials_parse_like_openssl_prints_them() {
    assert_eq!(parse_serial("8F0A"), Some(vec![0x8f, 0x0a]));
    assert_eq!(parse_serial("00:8f:0a"), Some(vec![0x8f, 0x0a]));
    assert_eq!(parse_serial("abc"), Some(vec![0x0a, 0xbc]));
    assert_eq!(parse_serial(&"1".repeat(42)), None);
    assert_eq!(parse_serial(""), None);
    assert_eq!(to_hex(&[0x8f, 0x0a]), "8f0a");
}

#[test]
fn prefix_ends_carry_past_full_bytes() {
    assert_eq!(prefix_end(b"app/"), Some(b"app0".to_vec()));
    assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
    assert_eq!(prefix_end(b"\xff\xff"), None);
}

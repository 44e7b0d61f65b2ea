//! End-to-end: the JSON API on the HTTP listener of real `flotilla server` processes, driven
//! with the `curl` binary (and `docs/http-api/example.py` with `python3`, when on PATH): every
//! operation and its statuses, base64 values, a scan across ranges with its continuation key,
//! `[access]` applied to the caller's certificate, and the refusals of plain HTTP and of TLS
//! without a client certificate. The observe endpoints still answer over plain HTTP. One
//! cluster start; waits are bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::local::{CLUSTER, LocalCluster, connect_when_ready};
use flotilla_transport_quic::{ClusterId, add_client_certs};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{WAIT, binary, run_flotilla, runtime};

/// Every node's `[access]`: the test's client is admin, the API's own client may write, and
/// `reader` may only read (through the API as on QUIC).
const GRANTS: &str = r#"
[access]
grants = [
  { client = "demo", role = "admin" },
  { client = "http-api", role = "read-write" },
  { client = "reader", role = "read-only" },
]
"#;

/// The name the first node's certificate proves, which HTTPS clients check.
fn server_name() -> String {
    format!("node-1.{CLUSTER}")
}

/// How curl reaches the node: over HTTPS with `client`'s certificate (`None`: none), or
/// plain HTTP.
#[derive(Clone, Copy)]
enum Via<'a> {
    Https(Option<&'a str>),
    Plain,
}

/// One `curl` request: the status and the body.
struct Curl<'a> {
    address: SocketAddr,
    certs: &'a Path,
}

impl Curl<'_> {
    fn call(&self, via: Via<'_>, method: &str, target: &str, body: Option<&Path>) -> (u16, String) {
        let mut command = Command::new("curl");
        command.args([
            "-sS",
            "--max-time",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        let port = self.address.port();
        let url = match via {
            Via::Plain => format!("http://{}{target}", self.address),
            Via::Https(client) => {
                let resolve = format!("{}:{port}:{}", server_name(), self.address.ip());
                command.args(["--resolve", &resolve]);
                command.arg("--cacert").arg(self.certs.join("ca.pem"));
                if let Some(client) = client {
                    command
                        .arg("--cert")
                        .arg(self.certs.join(format!("client-{client}.pem")));
                    command
                        .arg("--key")
                        .arg(self.certs.join(format!("client-{client}.key")));
                }
                format!("https://{}:{port}{target}", server_name())
            }
        };
        if let Some(body) = body {
            command
                .arg("--data-binary")
                .arg(format!("@{}", body.display()));
        }
        let output = command.arg(url).output().expect("curl runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let status = status.trim().parse().unwrap_or(0);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(status != 0, "curl {method} {target}: {stderr}");
        (status, body.to_owned())
    }

    /// `call` over HTTPS as client `demo`, the answer as JSON.
    fn api(&self, method: &str, target: &str, body: Option<&[u8]>) -> (u16, Value) {
        self.api_as("demo", method, target, body)
    }

    /// `api` as client `client`.
    fn api_as(
        &self,
        client: &str,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        let file = body.map(|bytes| {
            let path = self.certs.join("body");
            std::fs::write(&path, bytes).unwrap();
            path
        });
        let (status, text) = self.call(Via::Https(Some(client)), method, target, file.as_deref());
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{method} {target}: {error}: {text:?}"));
        (status, json)
    }
}

#[test]
fn curl_drives_every_operation_over_https_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flotilla.toml");
    std::fs::write(&config, GRANTS).unwrap();
    let mut cluster =
        LocalCluster::start_with_http_and_config(binary(), dir.path(), (3, 4), config).unwrap();
    let certs: PathBuf = dir.path().join("certs");
    let runtime = runtime();
    let client = runtime
        .block_on(connect_when_ready(cluster.client_options(), WAIT))
        .unwrap();
    let curl = Curl {
        address: cluster.http[0].1,
        certs: &certs,
    };
    // The local cluster issued the API's own client certificate, as `flotilla certs` does.
    // Without it the API says how to make one; the node loads it at the first call after it
    // was added.
    for extension in ["pem", "key"] {
        std::fs::remove_file(certs.join(format!("client-http-api.{extension}"))).unwrap();
    }
    let (status, json) = curl.api("GET", "/v1/kv/a", None);
    assert_eq!(status, 503, "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("--add-client http-api"), "{error}");
    let cluster_id = ClusterId::new(CLUSTER).unwrap();
    add_client_certs(&certs, &cluster_id, &["http-api", "reader"]).unwrap();

    the_demos_curl_example_puts_a_key(&cluster, &curl);
    observe_endpoints_stay_open(&curl);
    the_api_needs_https_and_a_certificate(&curl);
    single_keys(&curl);
    compare_and_swap(&curl);
    access_rules_apply_to_the_caller(&curl);
    let map = client.map();
    assert_ne!(map.lookup(b"0-first").id, map.lookup(b"k-second").id);
    scan_across_ranges(&curl);
    binary_values(&curl);
    limits(&curl);
    python_example(&curl);
    cluster.stop();
}

/// A `flotilla server` child that is killed when the test ends, even by a panic.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `flotilla certs` with its defaults issues the API's own client certificate beside the
/// CLI's, so a node serving HTTPS answers API calls at once, with no `--add-client` step.
#[test]
fn the_api_answers_with_the_certificates_flotilla_certs_makes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_dir = certs.to_str().unwrap();
    let made = run_flotilla(
        &[
            "certs",
            "--dir",
            certs_dir,
            "--nodes",
            "1",
            "--cluster-id",
            CLUSTER,
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(made.status.success(), "{made:?}");
    assert!(
        stdout.contains("2 client certificates (admin, http-api)"),
        "{stdout}"
    );
    let quic = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _server = Server(
        Command::new(binary())
            .args(["server", "--node-id", "1", "--groups", "1"])
            .args(["--initial-cluster", &format!("1@{quic}")])
            .args(["--http-listen", &http.to_string(), "--cluster-id", CLUSTER])
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .args(["--tls-dir", certs_dir, "--segment-mib", "16"])
            .arg("--exit-with-parent")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let curl = Curl {
        address: http,
        certs: &certs,
    };
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(http).is_err()
        || curl.call(Via::Plain, "GET", "/ready", None).0 != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{http} never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // 404 with `"ok": true`: the key is absent, and the API reached the cluster (a node
    // without its certificate answers 503).
    let (status, json) = curl.api_as("admin", "GET", "/v1/kv/absent", None);
    assert_eq!((status, &json["ok"]), (404, &json!(true)), "{json}");
}

/// The curl command `flotilla demo` prints runs as it is printed, in a shell. Its key is
/// deleted after, so the scans below see only their own keys.
fn the_demos_curl_example_puts_a_key(cluster: &LocalCluster, curl: &Curl<'_>) {
    let example = cluster.api_curl_example(flotilla_raft::NodeId(1)).unwrap();
    let output = Command::new("sh").args(["-c", &example]).output().unwrap();
    let answer: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{example}: {error}: {output:?}"));
    assert_eq!(
        answer,
        json!({"op": "put", "key": "greeting", "ok": true, "result": {"previous": null}}),
        "{example}"
    );
    let (status, json) = curl.api("DELETE", "/v1/kv/greeting", None);
    assert_eq!(json["result"], json!({"previous": "hello"}), "{status}");
}

fn observe_endpoints_stay_open(curl: &Curl<'_>) {
    assert_eq!(
        curl.call(Via::Plain, "GET", "/health", None),
        (200, "ok\n".into())
    );
    let (status, metrics) = curl.call(Via::Plain, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    // Over TLS too, with or without a client certificate.
    for via in [Via::Https(None), Via::Https(Some("demo"))] {
        assert_eq!(curl.call(via, "GET", "/health", None).0, 200);
    }
}

fn the_api_needs_https_and_a_certificate(curl: &Curl<'_>) {
    let (status, body) = curl.call(Via::Plain, "GET", "/v1/kv/a", None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("HTTPS only"), "{body}");
    let (status, body) = curl.call(Via::Https(None), "GET", "/v1/kv/a", None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("needs a client certificate"), "{body}");
}

fn single_keys(curl: &Curl<'_>) {
    let (status, json) = curl.api("PUT", "/v1/kv/0-first", Some(b"one"));
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json,
        json!({"op": "put", "key": "0-first", "ok": true, "result": {"previous": null}})
    );
    assert_eq!(curl.api("PUT", "/v1/kv/k-second", Some(b"two")).0, 200);
    let (status, json) = curl.api("GET", "/v1/kv/0-first", None);
    assert_eq!((status, &json["result"]), (200, &json!("one")), "{json}");
    let (status, json) = curl.api("GET", "/v1/kv/missing", None);
    assert_eq!((status, &json["result"]), (404, &json!(null)), "{json}");
    assert_eq!(curl.api("PUT", "/v1/kv/gone", Some(b"x")).0, 200);
    let (status, json) = curl.api("DELETE", "/v1/kv/gone", None);
    assert_eq!((status, &json["result"]), (200, &json!({"previous": "x"})));
    assert_eq!(curl.api("GET", "/v1/kv/gone", None).0, 404);
}

fn access_rules_apply_to_the_caller(curl: &Curl<'_>) {
    let (status, json) = curl.api_as("reader", "GET", "/v1/kv/0-first", None);
    assert_eq!((status, &json["result"]), (200, &json!("uno")), "{json}");
    // The API's own client may write; the caller may not, and is told so.
    let (status, json) = curl.api_as("reader", "PUT", "/v1/kv/0-first", Some(b"no"));
    assert_eq!(status, 403, "{json}");
    let error = json["error"].as_str().unwrap();
    assert_eq!(error, "permission denied: client \"reader\" may not put");
    assert_eq!(
        curl.api("GET", "/v1/kv/0-first", None).1["result"],
        json!("uno")
    );
    // Refused before its body is read: too large a body gets the same refusal.
    let big = vec![b'v'; 4 << 20];
    let (status, json) = curl.api_as("reader", "PUT", "/v1/kv/0-first", Some(&big));
    assert_eq!(status, 403, "{json}");
}

fn compare_and_swap(curl: &Curl<'_>) {
    let swap = br#"{"expected": "one", "new": "uno"}"#;
    let (status, json) = curl.api("POST", "/v1/kv/0-first/cas", Some(swap));
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["result"], json!({"swapped": true, "current": "one"}));
    let (status, json) = curl.api("POST", "/v1/kv/0-first/cas", Some(swap));
    assert_eq!(status, 409, "{json}");
    assert_eq!(json["result"], json!({"swapped": false, "current": "uno"}));
    let (status, json) = curl.api("POST", "/v1/kv/0-first/cas", Some(b"{\"new\": 1}"));
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["ok"], json!(false));
}

fn scan_across_ranges(curl: &Curl<'_>) {
    let (status, json) = curl.api("GET", "/v1/kv?start=0&end=l", None);
    assert_eq!(status, 200, "{json}");
    let both = json!([["0-first", "uno"], ["k-second", "two"]]);
    assert_eq!(json["result"], json!({"pairs": both, "more": false}));
    let (status, json) = curl.api("GET", "/v1/kv?start=0&end=l&limit=1", None);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["result"]["pairs"], json!([["0-first", "uno"]]));
    assert_eq!(json["result"]["more"], json!(true));
    let next = json["result"]["next"].as_str().unwrap();
    assert_eq!(next, "0-first\u{0}");
    let (status, json) = curl.api("GET", "/v1/kv?start=0-first%00&end=l&limit=1", None);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["result"]["pairs"], json!([["k-second", "two"]]));
}

fn binary_values(curl: &Curl<'_>) {
    // The key 0x80 0xff and the value 0xff 0xfe 0xfd, in base64.
    let (status, json) = curl.api("PUT", "/v1/kv/gP8%3D?encoding=base64", Some(b"//79"));
    assert_eq!(status, 200, "{json}");
    let (status, json) = curl.api("GET", "/v1/kv/gP8%3D?encoding=base64", None);
    assert_eq!((status, &json["result"]), (200, &json!("//79")), "{json}");
    assert_eq!(json["key"], json!("gP8="));
    let (status, json) = curl.api("GET", "/v1/kv/80ff?encoding=hex", None);
    assert_eq!((status, &json["result"]), (200, &json!("fffefd")), "{json}");
    // A raw body is the value as it is; utf8 cannot show it, and says what can.
    assert_eq!(curl.api("PUT", "/v1/kv/raw", Some(b"\xff\x00")).0, 200);
    let (status, json) = curl.api("GET", "/v1/kv/raw", None);
    assert_eq!(status, 406, "{json}");
    assert!(json["error"].as_str().unwrap().contains("encoding=base64"));
    // Keys are in the encoding too: "raw" is "cmF3" in base64.
    let (status, json) = curl.api("GET", "/v1/kv/cmF3?encoding=base64", None);
    assert_eq!((status, &json["result"]), (200, &json!("/wA=")), "{json}");
}

fn limits(curl: &Curl<'_>) {
    // A key over limits.key_bytes_max (4096) is the node's refusal; nothing is written.
    let long = "k".repeat(5000);
    let (status, json) = curl.api("PUT", &format!("/v1/kv/{long}"), Some(b"v"));
    assert_eq!(status, 413, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("over the limit"),
        "{json}"
    );
    // A body over http.body_bytes_max (3 MiB) is refused on its length, unread.
    let (status, json) = curl.api("PUT", "/v1/kv/big", Some(&vec![b'v'; 4 << 20]));
    assert_eq!(status, 413, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("http.body_bytes_max")
    );
    let (status, json) = curl.api("GET", "/v1/kv/a?limit=3", None);
    assert_eq!(status, 400, "{json}");
}

fn python_example(curl: &Curl<'_>) {
    let found = Command::new("python3").arg("--version").output();
    if !found.is_ok_and(|output| output.status.success()) {
        println!("python3 is not on PATH: docs/http-api/example.py was not run");
        return;
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/http-api/example.py");
    let output = Command::new("python3")
        .arg(example)
        .arg(curl.address.to_string())
        .arg(server_name())
        .arg(curl.certs)
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(r#""swapped": true"#), "{stdout}");
}

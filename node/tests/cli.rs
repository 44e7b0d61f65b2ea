//! End-to-end: the `flotilla` data commands and the shell against a real `flotilla server`.
//! Keys in every encoding (including the range of keys starting 0x80-0xbf, which no UTF-8 key
//! reaches), the same JSON fields from every command and the shell, the exit codes scripts
//! test, and quoted words in the shell. One node: start-up dominates the time.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::ClientOptions;
use flotilla_node::local::{LocalCluster, connect_when_ready};
use serde_json::{Value, json};

mod common;
use common::{WAIT, binary, client_flags, run_flotilla, runtime};

/// How one run of `flotilla` ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The one JSON object the command printed.
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|error| panic!("{error}: {self:?}"))
    }

    /// One JSON object a line.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// `flotilla ARGS` with `stdin` (a pipe, not a terminal).
fn flotilla(args: &[&str], stdin: &[u8]) -> Run {
    let output = run_flotilla(args, stdin);
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    Run {
        code: output.status.code(),
        stdout: text(output.stdout),
        stderr: text(output.stderr),
    }
}

/// A client of one cluster through the binary.
struct Cli {
    flags: Vec<String>,
}

impl Cli {
    fn new(options: &ClientOptions) -> Self {
        Self {
            flags: client_flags(options),
        }
    }

    /// `flotilla ARGS` with the cluster's flags, that ended with exit code `code`.
    fn run(&self, args: &[&str], code: i32) -> Run {
        self.shell(args, b"", code)
    }

    /// The same, with `stdin`.
    fn shell(&self, args: &[&str], stdin: &[u8], code: i32) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.flags.iter().map(String::as_str));
        let run = flotilla(&all, stdin);
        assert_eq!(run.code, Some(code), "flotilla {args:?}: {run:?}");
        run
    }
}

#[test]
fn bad_input_is_refused_before_any_request_with_a_clear_error() {
    // Nothing listens on the endpoint: the arguments are checked first.
    let endpoint = ["--endpoints", "1@127.0.0.1:9"];
    let run = flotilla(
        &[&["get", "--encoding", "hex", "8"][..], &endpoint].concat(),
        b"",
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("`8` is not hex: Odd number of digits"),
        "{run:?}"
    );
    let put = ["put", "--encoding", "base64", "gA==", "not*base64"];
    let run = flotilla(&[&put[..], &endpoint].concat(), b"");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("`not*base64` is not base64"), "{run:?}");
    // A failure under `--output json` is a JSON object on stdout too, for scripts.
    let get = ["get", "k", "--output", "json", "--deadline-ms", "300"];
    let run = flotilla(&[&get[..], &endpoint].concat(), b"");
    assert_eq!(run.code, Some(1), "{run:?}");
    let failed = run.json();
    assert_eq!(failed["ok"], false, "{run:?}");
    assert_eq!(failed["op"], "get", "{run:?}");
    // No certificates here: the same sentence stderr says.
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("ca.pem"), "{run:?}");
    assert_eq!(run.stderr.trim(), format!("error: {error}"), "{run:?}");
    let run = flotilla(&["get", "k", "--json", "--output", "text"], b"");
    assert_eq!(
        run.code,
        Some(1),
        "a usage error exits 1 like any failure: {run:?}"
    );
    assert!(run.stderr.contains("cannot be used with"), "{run:?}");
    let help = flotilla(&["--help"], b"");
    assert!(
        help.stdout.contains("3 `get` found no value for its key"),
        "{help:?}"
    );
    let help = flotilla(&["get", "--help"], b"");
    assert!(
        help.stdout.contains("one flag for keys and values both"),
        "{help:?}"
    );
}

#[test]
fn the_cli_reaches_every_key_in_every_encoding_with_consistent_output() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(binary(), dir.path(), 1, 4).unwrap();
    let options = cluster.client_options();
    runtime()
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();
    let cli = Cli::new(&options);

    // Four ranges split the key space at 0x4000, 0x8000 and 0xc000: the third holds only keys
    // starting 0x80-0xbf, which no UTF-8 text does. Hex and base64 reach it.
    let status = cli.run(&["status", "--output", "json"], 0).json();
    let ranges = status["ranges"].as_array().unwrap();
    assert!(
        ranges
            .iter()
            .any(|range| range["start"] == "8000" && range["end"] == "c000"),
        "{status}"
    );
    range_keys_follow_the_encoding(&cli);
    let put = cli.run(&["put", "--encoding", "hex", "80ff", "00ff"], 0);
    assert_eq!(put.stdout, "previous: (absent)\n");
    let get = cli.run(&["get", "--encoding", "hex", "80ff"], 0);
    assert_eq!(get.stdout, "00ff\n");
    let get = cli.run(
        &["get", "--encoding", "base64", "gP8=", "--output", "json"],
        0,
    );
    assert_eq!(
        get.json(),
        json!({ "op": "get", "key": "gP8=", "ok": true, "result": "AP8=" })
    );
    let scan = cli.run(&["scan", "--encoding", "hex", "8000", "c000"], 0);
    assert_eq!(scan.stdout, "80ff\t00ff\n");
    // Under utf8 the same pair prints under a marker, never lossily.
    let scan = cli.run(&["scan", "--output", "json"], 0).json();
    assert_eq!(
        scan["result"]["pairs"],
        json!([[{ "hex": "80ff" }, { "hex": "00ff" }]])
    );
    let scan = cli.run(&["scan"], 0);
    assert_eq!(
        scan.stdout,
        "(not UTF-8, hex: 80ff)\t(not UTF-8, hex: 00ff)\n"
    );

    // The same fields for the same thing; an absent value is null, and a get of it exits 3.
    let absent = cli.run(&["get", "nope", "--output", "json"], 3);
    assert_eq!(
        absent.json(),
        json!({ "op": "get", "key": "nope", "ok": true, "result": null })
    );
    assert_eq!(cli.run(&["get", "nope"], 3).stdout, "(absent)\n");
    let put = cli.run(&["put", "k", "v", "--json"], 0).json();
    assert_eq!(
        put,
        json!({ "op": "put", "key": "k", "ok": true, "result": { "previous": null } })
    );
    let get = cli.run(&["get", "k", "--json"], 0).stdout;
    assert_eq!(get, cli.run(&["get", "k", "--output", "json"], 0).stdout);
    // A cas that does not swap exits 4, and says what the key holds.
    let cas = cli
        .run(&["cas", "k", "other", "w", "--output", "json"], 4)
        .json();
    assert_eq!(cas["result"], json!({ "swapped": false, "current": "v" }));
    let cas = cli.run(&["cas", "k", "v", "w"], 0);
    assert_eq!(cas.stdout, "swapped: true\ncurrent: v\n");
    let delete = cli.run(&["delete", "k", "--output", "json"], 0).json();
    assert_eq!(delete["result"], json!({ "previous": "w" }));
    cli.run(&["put", "a", "1"], 0);
    cli.run(&["put", "b", "2"], 0);
    let scan = cli.run(&["scan", "a", "--limit", "1"], 0);
    assert_eq!(scan.stdout, "a\t1\n(more)\n");
    let scan = cli.run(&["scan", "x", "y"], 0);
    assert_eq!(scan.stdout, "(no pairs)\n");
    // The commands that print tables take --output as well as --json.
    let ranges = cli.run(&["range", "list", "--output", "json"], 0).json();
    assert_eq!(ranges, cli.run(&["range", "list", "--json"], 0).json());
    // An endpoint given as host:port, without the node's id: the client learns the id from
    // the node's certificate.
    let mut unnamed = options.clone();
    for endpoint in &mut unnamed.endpoints {
        endpoint.node = None;
    }
    let unnamed = Cli::new(&unnamed);
    assert!(!unnamed.flags[1].contains('@'), "{:?}", unnamed.flags);
    assert_eq!(unnamed.run(&["get", "a"], 0).stdout, "1\n");
    drop(cluster);
}

/// `status` and `range list` print range keys in `--encoding` (hex by default), in tables
/// and in JSON: the range [0x8000, 0xc000) in base64 is [gAA=, wAA=), and under utf8, where
/// its keys are not text, `{"hex": ...}`.
fn range_keys_follow_the_encoding(cli: &Cli) {
    let has_range = |ranges: &Value, start: Value, end: Value| {
        let ranges = ranges.as_array().unwrap();
        ranges
            .iter()
            .any(|range| range["start"] == start && range["end"] == end)
    };
    let status = cli
        .run(&["status", "--json", "--encoding", "base64"], 0)
        .json();
    assert!(
        has_range(&status["ranges"], json!("gAA="), json!("wAA=")),
        "{status}"
    );
    let status = cli
        .run(&["status", "--json", "--encoding", "utf8"], 0)
        .json();
    let (start, end) = (json!({ "hex": "8000" }), json!({ "hex": "c000" }));
    assert!(has_range(&status["ranges"], start, end), "{status}");
    let list = cli.run(&["range", "list", "--json", "--encoding", "base64"], 0);
    assert!(
        has_range(&list.json(), json!("gAA="), json!("wAA=")),
        "{list:?}"
    );
    for command in [&["status"][..], &["range", "list"]] {
        let text = cli.run(&[command, &["--encoding", "base64"]].concat(), 0);
        assert!(text.stdout.contains("[gAA=, wAA=)"), "{text:?}");
        assert!(text.stdout.contains("base64"), "{text:?}");
        let hex = cli.run(command, 0);
        assert!(hex.stdout.contains("[8000, c000)"), "{hex:?}");
    }
}

#[test]
fn the_shell_takes_quoted_words_and_prints_json_or_text() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(binary(), dir.path(), 1, 1).unwrap();
    let options = cluster.client_options();
    runtime()
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();
    let cli = Cli::new(&options);

    let script = br#"put "my key" "a value with spaces"
get 'my key'
get "no such key"
put "unclosed v
help
"#;
    let lines = cli.shell(&["shell"], script, 0).json_lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["result"], json!({ "previous": null }));
    assert_eq!(
        lines[1],
        json!({ "op": "get", "key": "my key", "ok": true, "result": "a value with spaces" })
    );
    assert_eq!(
        lines[2],
        json!({ "op": "get", "key": "no such key", "ok": true, "result": null })
    );
    assert_eq!(lines[3]["ok"], false);
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap()
            .contains("is not closed"),
        "{lines:?}"
    );
    assert!(
        lines[4]["result"]
            .as_str()
            .unwrap()
            .contains("scan START END LIMIT"),
        "{lines:?}"
    );

    // Text, as on a terminal; and keys in hex.
    let script = b"get \"my key\"\nget nope\nfrobnicate\n";
    let text = cli.shell(&["shell", "--output", "text"], script, 0).stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["a value with spaces", "(absent)"], "{text}");
    assert!(
        lines[2].starts_with("error: cannot parse `frobnicate`"),
        "{text}"
    );
    let script = b"put c0 01\nget c0\nscan c0 - 10\n";
    let lines = cli
        .shell(&["shell", "--encoding", "hex"], script, 0)
        .json_lines();
    assert_eq!(lines[1]["key"], "c0");
    assert_eq!(lines[1]["result"], "01");
    assert_eq!(lines[2]["result"]["pairs"], json!([["c0", "01"]]));
    drop(cluster);
}

/// `--log-format json` makes every log line one JSON object (for a log collector).
#[test]
fn a_server_logs_json_lines_when_asked() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let run = flotilla(
        &["certs", "--dir", certs.to_str().unwrap(), "--nodes", "1"],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("1@127.0.0.1:{port}");
    let mut server = std::process::Command::new(binary())
        .args(["--log-format", "json", "server", "--node-id", "1"])
        .args(["--initial-cluster", &endpoint, "--groups", "1"])
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--tls-dir", certs.to_str().unwrap(), "--segment-mib", "16"])
        .arg("--exit-with-parent")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let serving = lines.map_while(Result::ok).find_map(|line| {
        seen.push(line.clone());
        let object: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        (object["fields"]["message"] == "serving").then_some(object)
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let serving = serving.unwrap_or_else(|| panic!("no `serving` line in {seen:?}"));
    assert_eq!(serving["level"], "INFO", "{serving}");
    assert_eq!(serving["fields"]["node"], 1, "{serving}");
}

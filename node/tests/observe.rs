//! End-to-end: each node's HTTP listener (the status page at `/`, `/metrics`, `/health`,
//! `/ready`) and the exit codes of `flotilla status`, on real `flotilla server` processes. One cluster start; the waits are
//! bounded (a failure, not a measurement).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use flotilla_node::ClientOptions;
use flotilla_node::local::{LocalCluster, connect_when_ready};
use flotilla_raft::NodeId;
use flotilla_storage::Command;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

mod common;
use common::{WAIT, binary, eventually, runtime};

/// `GET path` on `address`: the status code and the body (`None`: no connection).
fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A scrape: every sample by its name with labels (`name{op="put"}`), after checking the
/// exposition's shape: each sample belongs to a family declared by a `# TYPE` line before it,
/// each value is a number, and the document ends with `# EOF`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').unwrap();
            assert!(
                families.insert(name.into(), kind.into()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            value => value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        let declared = families.keys().any(|family| {
            name == family
                || ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family))
        });
        assert!(declared, "{name} has no # TYPE line before it");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

fn scrape(address: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = get(address, "/metrics").expect("a /metrics answer");
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

/// The sum over `nodes` of one sample.
fn total(scrapes: &[BTreeMap<String, f64>], series: &str) -> f64 {
    scrapes
        .iter()
        .map(|samples| samples.get(series).copied().unwrap_or(0.0))
        .sum()
}

/// Every `flotilla_*` name in the Grafana dashboard's strings (its PromQL, its variables'
/// queries), after checking it imports as is: each query names its data source by the
/// dashboard's `datasource` variable.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/flotilla.json");
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|variable| variable["name"] == "datasource" && variable["type"] == "datasource")
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let targets: Vec<_> = panels
        .iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
        .collect();
    assert!(targets.len() >= 15, "{} queries", targets.len());
    for target in &targets {
        assert_eq!(target["datasource"]["uid"], "${datasource}", "{target}");
        assert!(target["expr"].as_str().is_some_and(|expr| !expr.is_empty()));
    }
    let mut names = BTreeSet::new();
    collect_metric_names(&dashboard, &mut names);
    names
}

fn collect_metric_names(value: &serde_json::Value, names: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::String(text) => {
            for (start, _) in text.match_indices("flotilla_") {
                let name: String = text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
        serde_json::Value::Array(items) => {
            items
                .iter()
                .for_each(|item| collect_metric_names(item, names));
        }
        serde_json::Value::Object(fields) => {
            fields
                .values()
                .for_each(|item| collect_metric_names(item, names));
        }
        _ => {}
    }
}

/// `flotilla status [--json]` against `options`: the exit code and stdout.
fn status(options: &ClientOptions, json: bool) -> (i32, String) {
    let endpoints: Vec<String> = options.endpoints.iter().map(ToString::to_string).collect();
    let mut command = std::process::Command::new(binary());
    command
        .arg("status")
        .args(["--endpoints", &endpoints.join(",")])
        .args(["--tls-dir", options.tls_dir.to_str().unwrap()])
        .args(["--name", &options.name, "--cluster-id", &options.cluster_id])
        .args(["--attempt-timeout-ms", "500", "--deadline-ms", "2000"]);
    if json {
        command.arg("--json");
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
    )
}

/// The status page of the node at `address`.
fn page(address: SocketAddr) -> String {
    let (status, body) = get(address, "/").expect("a / answer");
    assert_eq!(status, 200, "{body}");
    body
}

/// How the page's nodes table says its node hears `node` (`this node`, `live`, ...).
fn heard_as(html: &str, node: u64) -> Option<String> {
    let row = html.split(&format!("<tr><td>n{node}</td><td>")).nth(1)?;
    let cells: Vec<&str> = row.split("</td><td>").take(2).collect();
    cells.get(1).map(|cell| (*cell).to_string())
}

/// The page of the node at `address` once it shows the range map: the node copies the map
/// only for a page that was viewed, so the first view may come before it.
fn page_with_map(runtime: &tokio::runtime::Runtime, address: SocketAddr) -> String {
    runtime.block_on(eventually(
        "the page to show the range map",
        || async move {
            let html = tokio::task::spawn_blocking(move || page(address))
                .await
                .unwrap();
            html.contains("<table id=nodes>").then_some(html)
        },
    ))
}

/// Every node's page names every node, counts the map's ranges and marks one leader for
/// each of them (every node hosts every range here, so each knows every leader).
fn check_pages(runtime: &tokio::runtime::Runtime, http: &[SocketAddr], ranges: usize) {
    for (index, &address) in http.iter().enumerate() {
        let html = page_with_map(runtime, address);
        let node = index + 1;
        assert!(
            html.contains(&format!("<h1>Flotilla node n{node}</h1>")),
            "{html}"
        );
        assert_eq!(heard_as(&html, node as u64).as_deref(), Some("this node"));
        for other in (1..=http.len()).filter(|&other| other != node) {
            assert_eq!(heard_as(&html, other as u64).as_deref(), Some("live"));
        }
        assert!(
            html.contains(&format!("<span id=range-count>{ranges}</span> ranges")),
            "{html}"
        );
        let marks = html.matches("<b class=leader title=leader>").count();
        assert_eq!(marks, ranges, "{html}");
        // The operators in flight: none once placement settled, else a table of them.
        assert!(
            html.contains("<p id=moves>none</p>") || html.contains("<table id=moves>"),
            "{html}"
        );
    }
}

async fn ready(address: SocketAddr, want: u16) -> String {
    eventually(&format!("/ready answering {want}"), || async {
        let (status, body) = tokio::task::spawn_blocking(move || get(address, "/ready"))
            .await
            .unwrap()?;
        (status == want).then_some(body)
    })
    .await
}

#[test]
fn metrics_health_ready_and_status_follow_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start_with_http(binary(), dir.path(), 3, 4).unwrap();
    let http: Vec<SocketAddr> = cluster.http.iter().map(|&(_, address)| address).collect();
    let options = cluster.client_options();
    let runtime = runtime();
    let client = runtime
        .block_on(connect_when_ready(options.clone(), WAIT))
        .unwrap();
    for &address in &http {
        assert_eq!(get(address, "/health"), Some((200, "ok\n".into())));
        assert_eq!(
            get(address, "/nowhere").map(|(status, _)| status),
            Some(404)
        );
        runtime.block_on(ready(address, 200));
    }
    check_pages(&runtime, &http, 4);

    // Counters rise with a few puts, and the request histogram gets samples.
    let before: Vec<_> = http.iter().map(|&address| scrape(address)).collect();
    for name in ["flotilla_ranges_hosted", "flotilla_resident_memory_bytes"] {
        assert!(total(&before, name) > 0.0, "{name}: {:?}", before[0]);
    }
    runtime.block_on(async {
        for index in 0..20 {
            let key = format!("observe-{index}").into_bytes();
            let command = Command::Put {
                key,
                value: b"v".to_vec(),
            };
            client.command(command).await.unwrap();
        }
    });
    let after: Vec<_> = eventually_scrapes(&runtime, &http, &before);
    let puts = r#"flotilla_client_requests_total{op="put"}"#;
    assert!(total(&after, puts) >= total(&before, puts) + 20.0);
    let put_latencies = r#"flotilla_client_request_duration_seconds_count{op="put"}"#;
    assert!(total(&after, put_latencies) >= 20.0);
    let all_puts = r#"flotilla_client_request_duration_seconds_bucket{le="+Inf",op="put"}"#;
    assert!(total(&after, all_puts) >= 20.0, "{:?}", after[0]);
    for name in [
        "flotilla_proposals_total",
        "flotilla_log_writes_total",
        "flotilla_entries_applied_total",
        "flotilla_log_write_duration_seconds_count",
    ] {
        assert!(total(&after, name) > total(&before, name), "{name}");
    }
    assert!(total(&after, "flotilla_ranges_led") >= 5.0);
    assert!(total(&after, "flotilla_transport_batches_sent_total") > 0.0);
    assert!(after[0].contains_key(r#"flotilla_driver_queue_depth{queue="client_requests"}"#));

    // The Grafana dashboard asks only for series a node exports (after puts, so that every
    // family has its samples).
    let exported: BTreeSet<&str> = after
        .iter()
        .flat_map(BTreeMap::keys)
        .map(|series| series.split('{').next().unwrap())
        .collect();
    let used = dashboard_metrics();
    assert!(used.contains("flotilla_client_request_duration_seconds_bucket"));
    for name in &used {
        assert!(
            exported.contains(name.as_str()),
            "docs/grafana/flotilla.json uses {name}, which /metrics does not export"
        );
    }

    // All well: status exits 0 and its JSON carries the range map.
    let (code, stdout) = status(&options, true);
    assert_eq!(code, 0, "{stdout}");
    let document: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(document["healthy"], true);
    let ranges = document["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 4, "{stdout}");
    assert!(
        ranges.iter().all(|range| range["leader"].is_u64()),
        "{stdout}"
    );
    assert!(
        ranges
            .iter()
            .any(|range| range["stored_bytes"].as_u64() > Some(0))
    );

    // A node down: status exits 2 and says which.
    cluster.kill(NodeId(3));
    let (code, stdout) = status(&options, true);
    assert_eq!(code, 2, "{stdout}");
    let document: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(document["problems"]["nodes_down"], serde_json::json!([3]));
    let first = http[0];
    let heard = runtime.block_on(eventually("n1's page to see n3 gone", || async move {
        let html = tokio::task::spawn_blocking(move || page(first))
            .await
            .unwrap();
        heard_as(&html, 3).filter(|heard| heard != "live")
    }));
    assert!(
        ["quiet", "unreachable"].contains(&heard.as_str()),
        "{heard}"
    );

    // Two of three down: the survivor's ranges lose their leaders and it is not ready.
    cluster.kill(NodeId(2));
    let reason = runtime.block_on(ready(http[0], 503));
    assert!(reason.contains("no leader"), "{reason}");
    assert_eq!(get(http[0], "/health").map(|(status, _)| status), Some(200));

    // Back: ready again, and status exits 0.
    cluster.restart(binary(), NodeId(2)).unwrap();
    cluster.restart(binary(), NodeId(3)).unwrap();
    runtime.block_on(ready(http[0], 200));
    runtime.block_on(eventually("status to exit 0", || async {
        let options = options.clone();
        let (code, _) = tokio::task::spawn_blocking(move || status(&options, false))
            .await
            .unwrap();
        (code == 0).then_some(())
    }));
    drop(cluster);
}

/// Scrapes until the driver published the puts' proposals (it publishes every 100 ms).
fn eventually_scrapes(
    runtime: &tokio::runtime::Runtime,
    http: &[SocketAddr],
    before: &[BTreeMap<String, f64>],
) -> Vec<BTreeMap<String, f64>> {
    let proposals = "flotilla_proposals_total";
    runtime.block_on(eventually("the counters to move", || async {
        let scrapes: Vec<_> = http.iter().map(|&address| scrape(address)).collect();
        (total(&scrapes, proposals) >= total(before, proposals) + 20.0).then_some(scrapes)
    }))
}

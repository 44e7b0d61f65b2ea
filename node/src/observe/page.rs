//! The status page at `/`: one node's view of the cluster for a person with a browser (the
//! nodes, the ranges on each and who leads them, the request rate, the moves in flight), as
//! plain HTML with inline SVG rendered from the published snapshot. No script: the page
//! reloads itself. Every text taken from the node is escaped, and each table stops at
//! `http.status_rows_max` rows, so the page's size is bounded.

use super::metrics::peer_state_label;
use super::{Sample, Snapshot, svg};
use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::{META_GROUP, MetaState, RangeDescriptor};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Display, Write};

/// What the page is rendered from.
#[derive(Debug)]
pub(super) struct Page<'a> {
    /// The node serving it.
    pub(super) node: NodeId,
    /// The last published snapshot (none before the driver's first turn).
    pub(super) snapshot: Option<&'a Snapshot>,
    /// `/ready`'s answer now.
    pub(super) readiness: Result<(), String>,
    /// Rows per table (`http.status_rows_max`).
    pub(super) rows_max: usize,
}

/// The page reloads itself this often: about the time a person takes to read a change.
const RELOAD_SECONDS: u32 = 3;
/// Bytes of a range's boundary keys shown; the table is for people, `flotilla status --json`
/// has the whole keys.
const KEY_BYTES_SHOWN: usize = 24;

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}\
.bad{color:#b00}.good{color:#070}.leader{color:#05a}\
svg text{font:11px system-ui,sans-serif;fill:#555}\
.plot{fill:#f6f6f6}polyline{fill:none;stroke:#05a;stroke-width:1.5}\
.track{fill:#eee}.replicas{fill:#9bc}.leads{fill:#05a}";

/// The page, whole.
pub(super) fn render(page: &Page<'_>) -> String {
    let mut html = String::with_capacity(16 * 1024);
    match write_page(&mut html, page) {
        Ok(()) => html,
        // Only a `Display` that fails gets here, and none of those used does.
        Err(fmt::Error) => "<!doctype html><p>The status page could not be rendered.</p>\n".into(),
    }
}

fn write_page(html: &mut String, page: &Page<'_>) -> fmt::Result {
    writeln!(
        html,
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n\
         <meta http-equiv=refresh content={RELOAD_SECONDS}>\n<title>Flotilla {node}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>Flotilla node {node}</h1>",
        node = page.node
    )?;
    match page.snapshot {
        None => writeln!(
            html,
            "<p class=bad>Starting: the node has not published its state yet.</p>"
        )?,
        Some(snapshot) => {
            let leaders: BTreeMap<GroupId, Option<NodeId>> = snapshot
                .observation
                .groups
                .leaders
                .iter()
                .copied()
                .collect();
            summary(html, page, snapshot)?;
            throughput(html, &snapshot.samples)?;
            match &snapshot.meta {
                Some(meta) => {
                    nodes(html, page, snapshot, (meta, &leaders))?;
                    ranges(html, page.rows_max, meta, &leaders)?;
                    let leads_meta = leaders.get(&META_GROUP) == Some(&Some(page.node));
                    moves(html, page.rows_max, meta, leads_meta)?;
                }
                None => writeln!(
                    html,
                    "<p id=map-pending>The node copies its range map for this page only while \
                     the page is viewed: it comes with the next publication, and the page \
                     reloads in {RELOAD_SECONDS} s.</p>\n<h2>Moves in flight</h2>\n\
                     <p id=moves>They come with the range map.</p>"
                )?,
            }
        }
    }
    writeln!(html, "</body>\n</html>")
}

fn summary(html: &mut String, page: &Page<'_>, snapshot: &Snapshot) -> fmt::Result {
    match &page.readiness {
        Ok(()) => writeln!(html, "<p class=good>Ready.</p>")?,
        Err(reason) => writeln!(html, "<p class=bad>Not ready: {}</p>", Escaped(reason))?,
    }
    let observation = &snapshot.observation;
    let live = observation
        .peers
        .iter()
        .filter(|peer| peer_state_label(peer.state) == "live")
        .count();
    writeln!(
        html,
        "<p>Up {} s. This node hosts {} ranges (the meta group included) and leads {}. \
         {} of {} peers live. {} requests waiting.</p>",
        observation.counters.uptime_micros / 1_000_000,
        observation.groups.hosted,
        observation.groups.led,
        live,
        observation.peers.len(),
        observation.waiting
    )
}

/// Per second between consecutive samples: (requests, proposals).
fn rates(samples: &[Sample]) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .map(|pair| {
            let seconds = pair[1]
                .at
                .saturating_duration_since(pair[0].at)
                .as_secs_f64();
            let per_second =
                |before: u64, after: u64| after.saturating_sub(before) as f64 / seconds.max(1e-3);
            (
                per_second(pair[0].requests, pair[1].requests),
                per_second(pair[0].proposals, pair[1].proposals),
            )
        })
        .collect()
}

fn throughput(html: &mut String, samples: &[Sample]) -> fmt::Result {
    writeln!(html, "<h2>Throughput</h2>")?;
    let rates = rates(samples);
    let Some(&(requests, proposals)) = rates.last() else {
        return writeln!(
            html,
            "<p>Not measured yet: the first rate takes two seconds.</p>"
        );
    };
    writeln!(
        html,
        "<p>Last second: <b id=requests-per-second>{requests:.0}</b> client requests/s at this \
         node, {proposals:.0} entries/s proposed as a leader.</p>"
    )?;
    let requests: Vec<f64> = rates.iter().map(|&(requests, _)| requests).collect();
    svg::rate_line(html, &requests, "client requests per second")
}

/// Every node the directory or the map names, with how this node hears it, its replicas and
/// the ranges it leads (as this node knows: leaders of ranges hosted elsewhere are unknown).
fn nodes(
    html: &mut String,
    page: &Page<'_>,
    snapshot: &Snapshot,
    (meta, leaders): (&MetaState, &BTreeMap<GroupId, Option<NodeId>>),
) -> fmt::Result {
    let counts = replicas_and_leads(meta, leaders);
    let mut ids: BTreeSet<NodeId> = meta.directory.nodes().collect();
    ids.extend(counts.keys().copied());
    ids.insert(page.node);
    let count = |node: NodeId| counts.get(&node).copied().unwrap_or((0, 0));
    let most = counts
        .values()
        .map(|&(replicas, _)| replicas)
        .max()
        .unwrap_or(0);
    writeln!(
        html,
        "<h2>Nodes</h2>\n<table id=nodes>\n<tr><th>node</th><th>address</th><th>heard</th>\
         <th>ranges</th><th>leads</th><th></th></tr>"
    )?;
    for &node in ids.iter().take(page.rows_max) {
        let (replicas, leads) = count(node);
        writeln!(
            html,
            "<tr><td>{node}</td><td>{}</td><td>{}</td><td>{replicas}</td><td>{leads}</td><td>",
            Escaped(meta.directory.address(node).unwrap_or("unknown")),
            heard(snapshot, page.node, node)
        )?;
        svg::node_bar(html, (replicas, leads), most)?;
        writeln!(html, "</td></tr>")?;
    }
    writeln!(html, "</table>")?;
    more(html, ids.len(), page.rows_max, "nodes")?;
    let meta_leader = match leaders.get(&META_GROUP) {
        Some(&Some(leader)) => format!("led by {leader}"),
        Some(None) => "without a leader known here".into(),
        None => "not hosted here".into(),
    };
    writeln!(
        html,
        "<p>Leads count only the ranges hosted here, whose leaders this node knows. The meta \
         group ({META_GROUP}) is {meta_leader}.</p>"
    )
}

/// Per node, in one pass over the map: the ranges it holds a replica of, and those of them
/// it leads as far as this node knows.
fn replicas_and_leads(
    meta: &MetaState,
    leaders: &BTreeMap<GroupId, Option<NodeId>>,
) -> BTreeMap<NodeId, (u64, u64)> {
    let mut counts: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
    for range in meta.map.ranges() {
        let leader = leaders.get(&range.group).copied().flatten();
        for &replica in &range.replicas {
            let (replicas, leads) = counts.entry(replica).or_default();
            *replicas += 1;
            *leads += u64::from(leader == Some(replica));
        }
    }
    counts
}

/// How this node hears `node`.
fn heard(snapshot: &Snapshot, this: NodeId, node: NodeId) -> &'static str {
    if node == this {
        return "this node";
    }
    let peers = &snapshot.observation.peers;
    peers
        .iter()
        .find(|peer| peer.node == node)
        .map_or("not watched", |peer| peer_state_label(peer.state))
}

fn ranges(
    html: &mut String,
    rows_max: usize,
    meta: &MetaState,
    leaders: &BTreeMap<GroupId, Option<NodeId>>,
) -> fmt::Result {
    let count = meta.map.ranges().count();
    writeln!(
        html,
        "<h2>Ranges</h2>\n<p><span id=range-count>{count}</span> ranges in the map at epoch {}. \
         <span class=leader>★</span> marks the leader this node knows.</p>\n<table id=ranges>\n\
         <tr><th>range</th><th>keys</th><th>group</th><th>replicas</th><th>leader</th></tr>",
        meta.map.epoch().0
    )?;
    for range in meta.map.ranges().take(rows_max) {
        range_row(html, range, leaders.get(&range.group).copied())?;
    }
    writeln!(html, "</table>")?;
    more(html, count, rows_max, "ranges")
}

/// One range; `leader` is `None` when this node hosts no replica of it.
fn range_row(
    html: &mut String,
    range: &RangeDescriptor,
    leader: Option<Option<NodeId>>,
) -> fmt::Result {
    let end = range.keys.end.as_deref().map_or("∞".into(), key);
    write!(
        html,
        "<tr><td>r{}</td><td>[{}, {}) </td><td>{}</td><td>",
        range.id.0,
        Escaped(&key(&range.keys.start)),
        Escaped(&end),
        range.group
    )?;
    for replica in &range.replicas {
        if leader == Some(Some(*replica)) {
            write!(html, "<b class=leader title=leader>{replica}★</b> ")?;
        } else {
            write!(html, "{replica} ")?;
        }
    }
    let leader = match leader {
        Some(Some(leader)) => leader.to_string(),
        Some(None) => "none known".into(),
        None => "not hosted here".into(),
    };
    writeln!(html, "</td><td>{leader}</td></tr>")
}

/// A boundary key as `flotilla status` would show it, cut at `KEY_BYTES_SHOWN` bytes.
fn key(bytes: &[u8]) -> String {
    let shown = bytes.get(..KEY_BYTES_SHOWN).unwrap_or(bytes);
    let cut = if shown.len() < bytes.len() { "…" } else { "" };
    format!("{}{cut}", shown.escape_ascii())
}

/// The operators in flight, as this node's replica of the meta group applied them: the meta
/// leader's own view when this node leads it, else a copy at most a moment behind.
fn moves(html: &mut String, rows_max: usize, meta: &MetaState, leads_meta: bool) -> fmt::Result {
    let source = if leads_meta {
        "the meta leader's view (this node)"
    } else {
        "this node's replica of the meta group, which may be a moment behind its leader"
    };
    writeln!(html, "<h2>Moves in flight</h2>")?;
    let count = meta.cluster.operators().count();
    if count == 0 {
        return writeln!(html, "<p id=moves>none</p>\n<p>As of {source}.</p>");
    }
    writeln!(
        html,
        "<p>{count} in flight, as of {source}.</p>\n<table id=moves>\n<tr><th>operator</th>\
         <th>range</th><th>kind</th><th>step</th><th>steps</th></tr>"
    )?;
    for operator in meta.cluster.operators().take(rows_max) {
        let steps: Vec<String> = operator.steps.iter().map(ToString::to_string).collect();
        let current = operator.step().map(ToString::to_string).unwrap_or_default();
        writeln!(
            html,
            "<tr><td>{}</td><td>r{}</td><td>{}</td><td>{} of {}: {}</td><td>{}</td></tr>",
            operator.id,
            operator.range.0,
            operator.kind,
            operator.step_index + 1,
            operator.steps.len(),
            Escaped(&current),
            Escaped(&steps.join(", "))
        )?;
    }
    writeln!(html, "</table>")?;
    more(html, count, rows_max, "moves")
}

/// "… and 12 more ranges" when a table stopped at `rows_max` of `count` rows.
fn more(html: &mut String, count: usize, rows_max: usize, what: &str) -> fmt::Result {
    if count > rows_max {
        writeln!(
            html,
            "<p>… and {} more {what} (the page lists http.status_rows_max = {rows_max}).</p>",
            count - rows_max
        )?;
    }
    Ok(())
}

/// Text with HTML's special characters escaped, for element text and attribute values.
struct Escaped<'a>(&'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for character in self.0.chars() {
            match character {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                other => f.write_char(other)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

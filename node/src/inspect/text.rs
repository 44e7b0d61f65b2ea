//! `flotilla inspect` as text: a header (identity and totals), the segments table, the groups
//! table (with each group's keys when the meta snapshot names them) and the findings.

use super::{APPLIED_MEANS, DirInspection, RangeName};
use flotilla_shard_manager::META_GROUP;
use flotilla_storage::inspect::{Finding, GroupReport, SegmentReport, Severity};

/// The report as text: a header, the segments, the groups, the findings.
pub(super) fn text(inspection: &DirInspection) -> String {
    let identity = &inspection.identity;
    let totals = &inspection.log.totals;
    let mut out = format!(
        "data directory {}\ncluster {}, node {}, directory {}, incarnation {}{}\n\
         log: {} segments ({} bytes), {} records, {} groups, {} snapshots ({} bytes)\n\n",
        inspection.directory.display(),
        identity.cluster_id,
        identity.node_id,
        identity.directory_id,
        identity.incarnation,
        if identity.bootstrapped {
            ""
        } else {
            " (bootstrap unfinished)"
        },
        totals.segment_count,
        totals.segment_bytes,
        totals.record_count,
        totals.group_count,
        totals.snapshot_count,
        totals.snapshot_bytes,
    );
    out.push_str(&table(
        &SEGMENT_COLUMNS,
        inspection.log.segments.iter().map(segment_row),
    ));
    out.push('\n');
    out.push_str(&table(
        &GROUP_COLUMNS,
        inspection
            .log
            .groups
            .iter()
            .map(|group| group_row(group, &inspection.ranges)),
    ));
    out.push_str(&format!("({APPLIED_MEANS})\n"));
    if let Some(range) = inspection.ranges.first() {
        out.push_str(&format!(
            "(keys: as the meta group's snapshot at index {} records them; a split or merge after \
             it is not shown)\n",
            range.as_of_meta_index
        ));
    }
    out.push('\n');
    out.push_str(&findings_text(&inspection.log.findings));
    out
}

const SEGMENT_COLUMNS: [&str; 6] = [
    "SEGMENT",
    "SEQUENCE",
    "BYTES",
    "VALID",
    "RECORDS",
    "TORN TAIL",
];

fn segment_row(segment: &SegmentReport) -> Vec<String> {
    let name = segment.file.file_name().map_or_else(
        || segment.file.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    vec![
        name,
        segment.sequence.to_string(),
        segment.file_bytes.to_string(),
        segment
            .valid_bytes
            .map_or_else(|| "damaged".to_owned(), |valid| valid.to_string()),
        segment.record_count.to_string(),
        segment.torn_tail.map_or_else(
            || "-".to_owned(),
            |torn| format!("{} bytes at {}", torn.discarded_bytes, torn.offset),
        ),
    ]
}

const GROUP_COLUMNS: [&str; 11] = [
    "GROUP",
    "KEYS",
    "FIRST",
    "LAST",
    "LAST TERM",
    "TERM",
    "VOTE",
    "COMMIT",
    "APPLIED",
    "SNAPSHOT",
    "FILE",
];

/// A group's key range as `[start, end)` in hex, `meta` for the meta group, `-` when unknown.
fn keys_of(group: &GroupReport, ranges: &[RangeName]) -> String {
    if group.group == META_GROUP {
        return "meta".to_owned();
    }
    ranges
        .iter()
        .find(|range| range.group == group.group.0)
        .map_or_else(
            || "-".to_owned(),
            |range| {
                format!(
                    "[{}, {})",
                    range.start,
                    range.end.as_deref().unwrap_or("end")
                )
            },
        )
}

fn group_row(group: &GroupReport, ranges: &[RangeName]) -> Vec<String> {
    let hard_state = &group.hard_state;
    let (snapshot, file) = group.snapshot.as_ref().map_or_else(
        || ("-".to_owned(), "-".to_owned()),
        |snapshot| {
            let state = match (snapshot.file_bytes, snapshot.verified) {
                (None, _) if snapshot.file.is_empty() => "(no data, no file)",
                (None, _) => "missing",
                (Some(found), _) if found != snapshot.data_bytes => "wrong length",
                (Some(_), true) => "verified",
                (Some(_), false) => "present",
            };
            let at = format!(
                "{}@{} ({} bytes)",
                snapshot.index, snapshot.term, snapshot.data_bytes
            );
            (at, format!("{} {state}", snapshot.file))
        },
    );
    vec![
        group.group.to_string(),
        keys_of(group, ranges),
        group
            .first_index
            .map_or_else(|| "-".to_owned(), |index| index.to_string()),
        group.last_index.to_string(),
        group.last_term.to_string(),
        hard_state.term.to_string(),
        hard_state
            .vote
            .map_or_else(|| "-".to_owned(), |vote| vote.to_string()),
        hard_state.commit.to_string(),
        group.applied_index.to_string(),
        snapshot,
        file,
    ]
}

fn findings_text(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "findings: none (healthy)\n".to_owned();
    }
    let mut out = "findings:\n".to_owned();
    for finding in findings {
        let severity = match finding.severity {
            Severity::Damage => "damage",
            Severity::Notice => "notice",
        };
        let file = finding
            .file
            .as_ref()
            .map_or_else(String::new, |file| format!(" {}", file.display()));
        let offset = finding
            .offset
            .map_or_else(String::new, |offset| format!(" at offset {offset}"));
        out.push_str(&format!(
            "  {severity}:{file}{offset}: {}\n",
            finding.problem
        ));
    }
    out
}

/// Left-aligned columns, two spaces apart.
fn table(columns: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(String::len)
                .chain([columns.get(column).map_or(0, |name| name.len())])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|name| (*name).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

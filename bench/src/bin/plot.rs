//! Draws the side-by-side results: puts/s vs clients and p99 latency vs clients, Flotilla and
//! etcd on each (SVG), and prints the Markdown table for `docs/benchmarks.md`.

use clap::Parser;
use flotilla_bench::{Results, Run};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Reads the two results files; writes two SVG plots and prints a table.
#[derive(Debug, Parser)]
struct Args {
    /// Flotilla's results (`flotilla bench --json`).
    #[arg(long)]
    flotilla: PathBuf,
    /// etcd's results (`etcd_load --json`).
    #[arg(long)]
    etcd: PathBuf,
    /// Where the SVG files go.
    #[arg(long, default_value = "docs/img")]
    out_dir: PathBuf,
}

const FLOTILLA_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const ETCD_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// One plotted quantity: its file, title, axis label and how to read it from a run.
struct Chart {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    value: fn(&Run) -> f64,
}

const CHARTS: [Chart; 2] = [
    Chart {
        file: "throughput-vs-clients.svg",
        title: "Committed puts/s vs concurrent clients (3 nodes, 256 B values)",
        y_label: "puts/s",
        value: |run| run.ops_per_second,
    },
    Chart {
        file: "p99-vs-clients.svg",
        title: "p99 put latency vs concurrent clients (3 nodes, 256 B values)",
        y_label: "p99 latency (ms)",
        value: |run| run.latency_us.p99 as f64 / 1000.0,
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let systems = [
        (Results::read(&args.flotilla)?, FLOTILLA_COLOR),
        (Results::read(&args.etcd)?, ETCD_COLOR),
    ];
    std::fs::create_dir_all(&args.out_dir)?;
    for chart in &CHARTS {
        let path = args.out_dir.join(chart.file);
        draw(&path, chart, &systems)?;
        println!("wrote {}", path.display());
    }
    println!();
    print!("{}", table(&systems[0].0, &systems[1].0));
    Ok(())
}

/// The client counts any system ran, in order: the x axis places them evenly.
fn client_counts(systems: &[(Results, RGBColor)]) -> Vec<usize> {
    let mut counts: Vec<usize> = systems
        .iter()
        .flat_map(|(results, _)| results.runs.iter().map(|run| run.clients))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

fn points(results: &Results, counts: &[usize], value: fn(&Run) -> f64) -> Vec<(f64, f64)> {
    counts
        .iter()
        .enumerate()
        .filter_map(|(position, &clients)| {
            Some((position as f64, value(results.run_with(clients)?)))
        })
        .collect()
}

fn draw(
    path: &Path,
    chart: &Chart,
    systems: &[(Results, RGBColor)],
) -> Result<(), Box<dyn std::error::Error>> {
    let counts = client_counts(systems);
    let series: Vec<_> = systems
        .iter()
        .map(|(results, color)| {
            (
                results.system.clone(),
                *color,
                points(results, &counts, chart.value),
            )
        })
        .collect();
    let y_max = series
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|point| point.1))
        .fold(0.0, f64::max);
    let x_last = counts.len().saturating_sub(1) as f64;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut context = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.3..x_last + 0.3, 0.0..y_max * 1.15)?;
    let label = |x: &f64| {
        let position = x.round();
        let count = counts
            .get(position as usize)
            .filter(|_| (x - position).abs() < 0.01);
        count.map_or_else(String::new, ToString::to_string)
    };
    context
        .configure_mesh()
        .x_labels(counts.len())
        .x_label_formatter(&label)
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_label_formatter(&|y| {
            if y_max > 100.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .x_desc("concurrent clients")
        .y_desc(chart.y_label)
        .draw()?;
    for (name, color, points) in series {
        context
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        context.draw_series(
            points
                .into_iter()
                .map(|point| Circle::new(point, 4, color.filled())),
        )?;
    }
    context
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The Markdown table: one row per client count both systems ran.
fn table(flotilla: &Results, etcd: &Results) -> String {
    let ms = |micros: u64| micros as f64 / 1000.0;
    let mut text = String::from(
        "| clients | Flotilla puts/s | etcd puts/s | Flotilla / etcd | Flotilla p50 / p99 (ms) | etcd p50 / p99 (ms) |\n|---|---|---|---|---|---|\n",
    );
    for ours in &flotilla.runs {
        let Some(theirs) = etcd.run_with(ours.clients) else {
            continue;
        };
        text += &format!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.2} / {:.2} | {:.2} / {:.2} |\n",
            ours.clients,
            ours.ops_per_second,
            theirs.ops_per_second,
            ours.ops_per_second / theirs.ops_per_second.max(f64::MIN_POSITIVE),
            ms(ours.latency_us.p50),
            ms(ours.latency_us.p99),
            ms(theirs.latency_us.p50),
            ms(theirs.latency_us.p99),
        );
    }
    text
}

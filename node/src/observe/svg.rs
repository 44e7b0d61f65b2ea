//! The status page's two drawings as inline SVG: a line of a rate over time, and a bar per
//! node. Numbers in, markup out; the only text they draw is numbers and fixed labels.

use std::fmt::{self, Write};

/// The rate line's size in pixels: wide enough for an hour of one-second samples to read.
const LINE_SIZE: (f64, f64) = (720.0, 120.0);
/// Room for the axis labels at the left and at the bottom.
const LINE_MARGIN: (f64, f64) = (56.0, 18.0);
/// A bar's full length and height, in pixels.
const BAR_SIZE: (f64, f64) = (240.0, 14.0);

/// `values`, per second and one a second, oldest first, as a line with the peak and the time
/// span labelled; `what` names them for a screen reader.
pub(super) fn rate_line(out: &mut String, values: &[f64], what: &str) -> fmt::Result {
    let (width, height) = LINE_SIZE;
    let (left, bottom) = LINE_MARGIN;
    let peak = values.iter().copied().fold(0.0_f64, f64::max);
    // A flat zero still draws, along the bottom.
    let top = if peak > 0.0 { peak } else { 1.0 };
    writeln!(
        out,
        "<svg class=rate width={width} height={height} viewBox=\"0 0 {width} {height}\" \
         role=img aria-label=\"{what} over the last {} s\">",
        values.len()
    )?;
    let plot = (width - left, height - bottom);
    writeln!(
        out,
        "<rect x={left} y=0 width={} height={} class=plot />",
        plot.0, plot.1
    )?;
    let step = plot.0 / (values.len().max(2) - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let x = left + step * index as f64;
            let y = plot.1 - value / top * (plot.1 - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    writeln!(out, "<polyline points=\"{}\" />", points.join(" "))?;
    writeln!(
        out,
        "<text x={} y=12 text-anchor=end>{peak:.0}/s</text>\n\
         <text x={} y={} text-anchor=end>0</text>",
        left - 4.0,
        left - 4.0,
        plot.1
    )?;
    writeln!(
        out,
        "<text x={left} y={} >-{} s</text>\n<text x={width} y={} text-anchor=end>now</text>",
        height - 4.0,
        values.len().saturating_sub(1),
        height - 4.0
    )?;
    writeln!(out, "</svg>")
}

/// Two bars on one track: `replicas` of `most` (light) and `leads` of them (dark).
pub(super) fn node_bar(out: &mut String, (replicas, leads): (u64, u64), most: u64) -> fmt::Result {
    let (width, height) = BAR_SIZE;
    let scale = |count: u64| width * count as f64 / most.max(1) as f64;
    write!(
        out,
        "<svg width={width} height={height} viewBox=\"0 0 {width} {height}\" role=img \
         aria-label=\"{replicas} replicas, {leads} led\">\
         <rect width={width} height={height} class=track />\
         <rect width={:.1} height={height} class=replicas />\
         <rect width={:.1} height={height} class=leads /></svg>",
        scale(replicas),
        scale(leads)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_line_has_a_point_per_value_and_labels_its_peak() {
        let mut out = String::new();
        rate_line(&mut out, &[0.0, 5.0, 10.0], "requests/s").expect("a string takes it");
        let points = out
            .split("points=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a polyline");
        assert_eq!(points.split(' ').count(), 3, "{out}");
        // The peak touches the top (4 px inside), zero the bottom of the plot.
        assert!(points.ends_with("720.0,4.0"), "{points}");
        assert!(points.starts_with("56.0,102.0"), "{points}");
        assert!(out.contains(">10/s</text>"), "{out}");
        assert!(out.contains(">-2 s</text>"), "{out}");
    }

    #[test]
    fn bars_are_scaled_to_the_busiest_node() {
        let mut out = String::new();
        node_bar(&mut out, (2, 1), 4).expect("a string takes it");
        assert!(
            out.contains("<rect width=120.0 height=14 class=replicas />"),
            "{out}"
        );
        assert!(
            out.contains("<rect width=60.0 height=14 class=leads />"),
            "{out}"
        );
    }
}

//! `--plot FILE`: an SVG written by hand (no plotting dependency) with three
//! panels: throughput over time, p50/p99 latency over time, and the latency
//! percentile curve of the whole run on the usual "number of nines" axis.

use std::fmt::Write as _;

use super::report::Report;

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 30.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 45.0;
/// Deepest percentile drawn: 99.999% (five nines).
const NINES_MAX: f64 = 5.0;
const CURVE_POINTS: usize = 200;

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// Render `report` as an SVG document.
pub fn write_svg(report: &Report) -> String {
    let mut svg = String::new();
    let height = 3.0 * PANEL_HEIGHT;
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let time = |f: fn(&super::stats::Sample) -> f64| {
        report
            .samples
            .iter()
            .map(|s| (s.elapsed_s, f(s)))
            .collect::<Vec<_>>()
    };
    panel(
        &mut svg,
        0.0,
        "Throughput (ops/s)",
        "elapsed (s)",
        &[Series {
            label: "ops/s",
            color: "#1f77b4",
            points: time(|s| s.ops_per_sec),
        }],
        None,
    );
    panel(
        &mut svg,
        PANEL_HEIGHT,
        "Latency over time (us)",
        "elapsed (s)",
        &[
            Series {
                label: "p50",
                color: "#2ca02c",
                points: time(|s| s.p50_us),
            },
            Series {
                label: "p99",
                color: "#d62728",
                points: time(|s| s.p99_us),
            },
        ],
        None,
    );
    let histogram = report.all_latency_ns();
    let mut curve = Vec::with_capacity(CURVE_POINTS + 1);
    if !histogram.is_empty() {
        for step in 0..=CURVE_POINTS {
            let nines = NINES_MAX * step as f64 / CURVE_POINTS as f64;
            let quantile = 1.0 - 10f64.powf(-nines);
            curve.push((nines, histogram.value_at_quantile(quantile) as f64 / 1000.0));
        }
    }
    panel(
        &mut svg,
        2.0 * PANEL_HEIGHT,
        "Latency by percentile, whole run (us)",
        "percentile",
        &[Series {
            label: "latency",
            color: "#9467bd",
            points: curve,
        }],
        Some(&["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]),
    );
    svg.push_str("</svg>\n");
    svg
}

/// One panel at vertical offset `top`. `x_labels` replaces numeric x ticks
/// with labels at x = 0, 1, 2, ... (the percentile panel).
fn panel(
    svg: &mut String,
    top: f64,
    title: &str,
    x_name: &str,
    series: &[Series<'_>],
    x_labels: Option<&[&str]>,
) {
    let left = MARGIN_LEFT;
    let right = WIDTH - MARGIN_RIGHT;
    let plot_top = top + MARGIN_TOP;
    let bottom = top + PANEL_HEIGHT - MARGIN_BOTTOM;
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = match x_labels {
        Some(labels) => (labels.len() - 1) as f64,
        None => all.clone().map(|p| p.0).fold(0.0, f64::max).max(1.0),
    };
    let y_max = nice_ceiling(all.map(|p| p.1).fold(0.0, f64::max));
    let sx = |x: f64| left + (right - left) * x / x_max;
    let sy = |y: f64| bottom - (bottom - plot_top) * y / y_max;
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{title}</text>",
        top + 22.0
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{plot_top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
        right - left,
        bottom - plot_top
    );
    for tick in 0..=4 {
        let y = y_max * tick as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{right}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>",
            sy(y),
            left - 6.0,
            sy(y) + 4.0,
            short_number(y)
        );
    }
    let x_ticks: Vec<(f64, String)> = match x_labels {
        Some(labels) => labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i as f64, l.to_string()))
            .collect(),
        None => (0..=5)
            .map(|i| x_max * i as f64 / 5.0)
            .map(|x| (x, short_number(x)))
            .collect(),
    };
    for (x, label) in x_ticks {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            sx(x),
            bottom + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_name}</text>",
        (left + right) / 2.0,
        bottom + 34.0
    );
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">no data</text>",
                (left + right) / 2.0,
                (plot_top + bottom) / 2.0
            );
            continue;
        }
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            s.color,
            points.join(" ")
        );
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                sx(x),
                sy(y),
                s.color
            );
        }
        let legend_x = right - 90.0;
        let legend_y = plot_top + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{legend_x}\" x2=\"{}\" y1=\"{1:.1}\" y2=\"{1:.1}\" stroke=\"{2}\" stroke-width=\"2\"/>\
             <text x=\"{3}\" y=\"{4:.1}\">{5}</text>",
            legend_x + 20.0,
            legend_y,
            s.color,
            legend_x + 26.0,
            legend_y + 4.0,
            s.label
        );
    }
}

/// Round up to 1, 2 or 5 times a power of ten, so ticks read well.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= value)
        .unwrap_or(10.0 * magnitude)
}

fn short_number(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v if v == v.trunc() => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}

//! The HTML report's SVG charts, drawn to be read like psrecord's and mprof's plots: the page's full
//! width, axis titles with units, round tick values (1-2-5 steps in the unit the values need;
//! whole minutes and hours on the time axis), grid lines, per line a min-max band and the
//! average, sparse series (PSS/USS) as points, gaps in the recording as grey bands, and alert,
//! resolution and cleanup markers with visible labels on their own target's chart only.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{Chart, Line, Report, esc, jbytes, jtext};
use crate::units::format_time;

/// The drawing box, in SVG units; the page scales it to its full width.
const W: f64 = 1000.0;
const H: f64 = 330.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 18.0;
/// Room above the plot for three rows of marker labels.
const TOP: f64 = 42.0;
const BOTTOM: f64 = 48.0;
const PLOT_W: f64 = W - LEFT - RIGHT;
const PLOT_H: f64 = H - TOP - BOTTOM;

/// Marker colours, apart from every line colour: firing red, resolution slate, cleanup green,
/// other events (annotations, a command's start and exit, restarts) teal.
pub(crate) const FIRING: &str = "#dc2626";
pub(crate) const RESOLVED: &str = "#475569";
pub(crate) const CLEANUP: &str = "#16a34a";
pub(crate) const EVENT: &str = "#0891b2";
/// Line colours: blue, magenta, amber, brown, plum: none near the markers' red, slate or green,
/// nor near each other (at least 139 apart in summed RGB steps, the test below keeps it so).
pub(crate) const LINE_COLORS: [&str; 5] = ["#2563eb", "#c026d3", "#f59e0b", "#a16207", "#86198f"];

/// A metric keeps its colour on every chart (rss is always blue).
pub(crate) fn line_color(metric: &str, i: usize) -> &'static str {
    match metric {
        "rss" | "mem_used" | "usage" => LINE_COLORS[0],
        "tree_rss" | "limit" => LINE_COLORS[1],
        "pss" | "anon" => LINE_COLORS[2],
        "uss" | "file" => LINE_COLORS[3],
        _ => LINE_COLORS[i % LINE_COLORS.len()],
    }
}

/// A "nice" step at least `raw`: 1, 2 or 5 times a power of ten.
pub(crate) fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let e = 10f64.powf(raw.log10().floor());
    let f = raw / e;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * e
}

/// The value axis: its range rounded out to whole steps, in the unit the values need.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueAxis {
    /// Range and step in display units (MiB, %, ...).
    pub lo: f64,
    pub hi: f64,
    pub step: f64,
    /// Raw value per display unit (1024^k for bytes).
    pub div: f64,
    pub unit: &'static str,
    pub title: String,
}

impl ValueAxis {
    pub fn new(unit: &str, lo: f64, hi: f64) -> ValueAxis {
        let (div, shown, title) = match unit {
            "bytes" => {
                let units = ["B", "KiB", "MiB", "GiB", "TiB"];
                let k = (0..units.len())
                    .rev()
                    .find(|&k| hi.abs().max(lo.abs()) >= 1024f64.powi(k as i32))
                    .unwrap_or(0);
                (
                    1024f64.powi(k as i32),
                    units[k],
                    format!("memory ({})", units[k]),
                )
            }
            "percent" => (1.0, "%", "percent (%)".to_string()),
            "count" => (1.0, "", "count".to_string()),
            _ => (1.0, "", "value".to_string()),
        };
        let (l, h) = (lo / div, hi / div);
        let step = nice_step(((h - l) / 5.0).max(f64::EPSILON * h.abs().max(1.0)));
        let lo = (l / step).floor() * step;
        let mut hi = (h / step).ceil() * step;
        if hi <= lo {
            hi = lo + step;
        }
        ValueAxis {
            lo,
            hi,
            step,
            div,
            unit: shown,
            title,
        }
    }

    /// The tick values, in display units.
    pub fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round() as i64;
        (0..=n).map(|i| self.lo + i as f64 * self.step).collect()
    }

    /// A tick's label: as many decimals as the step needs, and the unit.
    pub fn label(&self, v: f64) -> String {
        let decimals = (-self.step.log10().floor()).max(0.0) as usize;
        let v = if v.abs() < self.step / 1e6 { 0.0 } else { v };
        match self.unit {
            "" => format!("{v:.decimals$}"),
            "%" => format!("{v:.decimals$} %"),
            u => format!("{v:.decimals$} {u}"),
        }
    }
}

/// Steps the time axis may use: whole seconds, minutes, hours, days.
const TIME_STEPS_MS: [i64; 20] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
];

/// Time ticks: the smallest round step giving at most `max` ticks, at multiples of the step
/// (UTC: a 15-minute step ticks at :00, :15, :30, :45), with their labels.
pub(crate) fn time_ticks(from_ms: i64, to_ms: i64, max: i64) -> Vec<(i64, String)> {
    let span = (to_ms - from_ms).max(1);
    let step = TIME_STEPS_MS
        .iter()
        .copied()
        .find(|s| span / s <= max)
        .unwrap_or(TIME_STEPS_MS[TIME_STEPS_MS.len() - 1]);
    let fmt = |ts: i64| {
        let f = match step {
            s if s < 60_000 => "%H:%M:%S",
            s if s >= 86_400_000 => "%m-%d",
            _ if span >= 86_400_000 && ts.rem_euclid(86_400_000) == 0 => "%m-%d",
            _ => "%H:%M",
        };
        chrono::DateTime::from_timestamp_millis(ts)
            .map_or(String::new(), |t| t.format(f).to_string())
    };
    let first = from_ms.div_euclid(step) * step
        + if from_ms.rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    (0..)
        .map(|i| first + i * step)
        .take_while(|&t| t <= to_ms)
        .map(|t| (t, fmt(t)))
        .collect()
}

/// A time tick's label is centred on its tick, but one so near the right edge that half of it
/// would overflow the drawing (a recording's last second, "18:11:39") ends at its tick instead.
fn time_label_anchor(x: f64, label: &str) -> &'static str {
    if x + label_width(label) / 2.0 > W {
        "end"
    } else {
        "middle"
    }
}

/// One vertical marker: an alert, its resolution, a cleanup, or another event.
struct Marker {
    ts_ms: i64,
    color: &'static str,
    class: &'static str,
    label: String,
    title: String,
}

/// The chart's markers: only its own target's (kind, name and pid), oldest first.
fn markers(c: &Chart, r: &Report) -> Vec<Marker> {
    let own = |m: &Map<String, Value>, kind: &str| {
        kind == c.kind.as_str()
            && m.get("target").and_then(Value::as_str) == Some(c.target.as_str())
            && m.get("pid").and_then(Value::as_i64) == c.pid
    };
    let mut out = Vec::new();
    for a in &r.alerts {
        let (Some(ts), Some(kind)) = (
            a.get("ts_ms").and_then(Value::as_i64),
            a.get("kind").and_then(Value::as_str),
        ) else {
            continue;
        };
        if !own(a, kind) {
            continue;
        }
        let (color, class, word) = match jtext(a, "event").as_str() {
            "resolved" => (RESOLVED, "marker resolved", "resolved"),
            "firing" => (FIRING, "marker alert", "alert"),
            _ => continue,
        };
        out.push(Marker {
            ts_ms: ts,
            color,
            class,
            label: format!("{word}: {}", jtext(a, "rule")),
            title: format!("{} {}", format_time(ts), jtext(a, "message")),
        });
    }
    for cl in &r.cleanups {
        let Some(ts) = cl.get("started_ms").and_then(Value::as_i64) else {
            continue;
        };
        if !own(cl, "process") {
            continue;
        }
        let freed = jbytes(cl, "freed_bytes");
        out.push(Marker {
            ts_ms: ts,
            color: CLEANUP,
            class: "marker cleanup",
            label: format!("cleanup: freed {freed}"),
            title: format!(
                "{} cleanup ({}): freed {freed}",
                format_time(ts),
                jtext(cl, "trigger")
            ),
        });
    }
    for e in &r.events {
        let Some(ts) = e.get("ts_ms").and_then(Value::as_i64) else {
            continue;
        };
        // The host's events mark every chart; a target's, its own (any pid, or its pid).
        let target = e.get("target").and_then(Value::as_str);
        let pid = e.get("pid").and_then(Value::as_i64);
        if target.is_some_and(|t| t != c.target) || pid.is_some_and(|p| Some(p) != c.pid) {
            continue;
        }
        let label = jtext(e, "label");
        let short: String = match label.char_indices().nth(40) {
            Some((i, _)) => format!("{}…", &label[..i]),
            None => label.clone(),
        };
        out.push(Marker {
            ts_ms: ts,
            color: EVENT,
            class: "marker event",
            label: short,
            title: format!("{} {}: {label}", format_time(ts), jtext(e, "kind")),
        });
    }
    out.sort_by_key(|m| m.ts_ms);
    out
}

/// A label's width in SVG units at the 10-unit font, erring wide (so labels placed apart are apart).
fn label_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.3 + 4.0
}

/// Rows for marker labels, left to right: each label takes the first of three rows where it does
/// not touch the one before; one that fits no row keeps its line and tooltip but no text.
fn label_rows(xs: &[(f64, f64)]) -> Vec<Option<usize>> {
    let mut ends = [f64::MIN; 3];
    xs.iter()
        .map(|&(x, w)| {
            let row = ends.iter().position(|&end| x >= end + 6.0)?;
            ends[row] = x + w;
            Some(row)
        })
        .collect()
}

/// The value scale of a chart: over every bucket's min and max, from zero for memory.
fn value_range(c: &Chart) -> (f64, f64) {
    let values = c
        .lines
        .iter()
        .flat_map(|l| l.buckets.iter().flat_map(|b| [b.1, b.3]));
    let (mut lo, mut hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    if matches!(c.unit.as_str(), "bytes" | "percent" | "count") {
        lo = lo.min(0.0);
    }
    (lo, hi)
}

/// A line's usual step between buckets (their median), at least one bucket.
fn usual_step(line: &Line, bucket_ms: i64) -> i64 {
    let mut steps: Vec<i64> = line.buckets.windows(2).map(|w| w[1].0 - w[0].0).collect();
    steps.sort_unstable();
    steps
        .get(steps.len() / 2)
        .copied()
        .unwrap_or(i64::MAX)
        .max(bucket_ms)
}

/// Whether a line's samples are sparse beside the chart's densest line (PSS/USS read every minute
/// beside an RSS read every few seconds): its usual step is four times that line's or more, or it
/// has a single point. Those are drawn as points.
fn sparse(line: &Line, c: &Chart) -> bool {
    let densest = c
        .lines
        .iter()
        .map(|l| usual_step(l, c.bucket_ms))
        .min()
        .unwrap_or(c.bucket_ms);
    line.buckets.len() < 2 || usual_step(line, c.bucket_ms) / 4 >= densest
}

/// Contiguous runs of a line's buckets: a gap is a step well beyond the line's usual one.
fn runs(line: &Line, bucket_ms: i64) -> Vec<&[(i64, f64, f64, f64)]> {
    let usual = usual_step(line, bucket_ms).min(i64::MAX / 4);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=line.buckets.len() {
        if i == line.buckets.len() || line.buckets[i].0 - line.buckets[i - 1].0 > usual * 5 / 2 {
            out.push(&line.buckets[start..i]);
            start = i;
        }
    }
    out
}

/// Where a time and a value land in the plot.
struct Scale {
    from_ms: i64,
    span_ms: f64,
    axis: ValueAxis,
}

impl Scale {
    fn x(&self, ts: i64) -> f64 {
        LEFT + ((ts - self.from_ms) as f64 / self.span_ms).clamp(0.0, 1.0) * PLOT_W
    }
    fn y(&self, raw: f64) -> f64 {
        let v = raw / self.axis.div;
        TOP + PLOT_H - (v - self.axis.lo) / (self.axis.hi - self.axis.lo) * PLOT_H
    }
}

/// The grid, the tick labels and the two axis titles.
fn axes(s: &mut String, sc: &Scale, r: &Report) {
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="#fcfcfd" stroke="#d1d5db"/>"##
    );
    for v in sc.axis.ticks() {
        let yy = sc.y(v * sc.axis.div);
        let _ = write!(
            s,
            r##"<line class="grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end" class="tick ytick">{}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            yy + 3.5,
            esc(&sc.axis.label(v))
        );
    }
    for (ts, label) in time_ticks(r.data_from_ms, r.data_to_ms, 8) {
        let xx = sc.x(ts);
        let _ = write!(
            s,
            r##"<line class="grid" x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#e5e7eb"/><text x="{xx:.1}" y="{}" text-anchor="{}" class="tick xtick">{}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 15.0,
            time_label_anchor(xx, &label),
            esc(&label)
        );
    }
    let _ = write!(
        s,
        r#"<text class="axis-title" x="{}" y="{}" text-anchor="middle">time (UTC)</text><text class="axis-title" transform="translate(14 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        LEFT + PLOT_W / 2.0,
        H - 8.0,
        TOP + PLOT_H / 2.0,
        esc(&sc.axis.title)
    );
}

/// Each line: a min-max band and the average, or points where the samples are sparse.
fn lines(s: &mut String, sc: &Scale, c: &Chart) {
    for (i, line) in c.lines.iter().enumerate() {
        let color = line_color(&line.metric, i);
        let point = |b: &(i64, f64, f64, f64), v: f64| format!("{:.1},{:.1}", sc.x(b.0), sc.y(v));
        if sparse(line, c) {
            for b in &line.buckets {
                let _ = write!(
                    s,
                    r#"<circle class="point" data-metric="{}" cx="{:.1}" cy="{:.1}" r="2.6" fill="{color}"/>"#,
                    esc(&line.metric),
                    sc.x(b.0),
                    sc.y(b.2)
                );
            }
            continue;
        }
        for run in runs(line, c.bucket_ms) {
            let upper: Vec<String> = run.iter().map(|b| point(b, b.3)).collect();
            let lower: Vec<String> = run.iter().rev().map(|b| point(b, b.1)).collect();
            let avg: Vec<String> = run.iter().map(|b| point(b, b.2)).collect();
            let _ = write!(
                s,
                r#"<polygon class="band" points="{} {}" fill="{color}" fill-opacity="0.16" stroke="none"/><polyline class="line" data-metric="{}" points="{}" fill="none" stroke="{color}" stroke-width="1.6"/>"#,
                upper.join(" "),
                lower.join(" "),
                esc(&line.metric),
                avg.join(" ")
            );
        }
    }
}

/// Markers: a vertical line through the plot and, above it, a label in the marker's colour.
fn draw_markers(s: &mut String, sc: &Scale, list: &[Marker]) {
    let placed: Vec<(f64, f64)> = list
        .iter()
        .map(|m| {
            let (x, w) = (sc.x(m.ts_ms), label_width(&m.label));
            // A label near the right edge ends at its line instead of starting there.
            (if x + w > W { x - w } else { x }, w)
        })
        .collect();
    for ((m, row), (lx, _)) in list.iter().zip(label_rows(&placed)).zip(&placed) {
        let x = sc.x(m.ts_ms);
        let _ = write!(
            s,
            r#"<line class="{}" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="{}" stroke-width="1.4" stroke-dasharray="5 3"><title>{}</title></line>"#,
            m.class,
            TOP + PLOT_H,
            m.color,
            esc(&m.title)
        );
        if let Some(row) = row {
            let _ = write!(
                s,
                r#"<text class="marker-label" x="{lx:.1}" y="{:.1}" fill="{}">{}<title>{}</title></text>"#,
                11.0 + row as f64 * 11.0,
                m.color,
                esc(&m.label),
                esc(&m.title)
            );
        }
    }
}

/// The legend under a chart: its lines, then the marker kinds it shows.
fn legend(c: &Chart, list: &[Marker]) -> String {
    let mut items: Vec<String> = c
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let how = if sparse(l, c) { " (points)" } else { "" };
            format!(
                r#"<span><i style="background:{}"></i>{}{how}</span>"#,
                line_color(&l.metric, i),
                esc(&l.metric)
            )
        })
        .collect();
    for (class, color, word) in [
        ("marker alert", FIRING, "alert"),
        ("marker resolved", RESOLVED, "resolved"),
        ("marker cleanup", CLEANUP, "cleanup"),
        ("marker event", EVENT, "event"),
    ] {
        if list.iter().any(|m| m.class == class) {
            items.push(format!(
                r#"<span><i style="background:{color}"></i>{word}</span>"#
            ));
        }
    }
    items.push(r#"<span><i class="gap"></i>not recording</span>"#.to_string());
    format!(
        r#"<div class="legend">{} · band: min–max per {}, line: average</div>"#,
        items.join(" "),
        match c.bucket_ms.max(1) {
            ms if ms < 1_000 => format!("{ms} ms"),
            ms => crate::units::format_duration_rough(ms as f64 / 1000.0),
        }
    )
}

/// A chart as SVG with its legend.
pub fn svg(c: &Chart, r: &Report) -> String {
    let (lo, hi) = value_range(c);
    let sc = Scale {
        from_ms: r.data_from_ms,
        span_ms: (r.data_to_ms - r.data_from_ms).max(1) as f64,
        axis: ValueAxis::new(&c.unit, lo, hi),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{}">"#,
        esc(&c.title)
    );
    axes(&mut s, &sc, r);
    for g in &r.gaps {
        let _ = write!(
            s,
            r##"<rect class="gap" x="{:.1}" y="{TOP}" width="{:.1}" height="{PLOT_H}" fill="#e5e7eb"><title>not recording</title></rect>"##,
            sc.x(g.from_ms),
            (sc.x(g.to_ms) - sc.x(g.from_ms)).max(1.0)
        );
    }
    lines(&mut s, &sc, c);
    let list = markers(c, r);
    draw_markers(&mut s, &sc, &list);
    s.push_str("</svg>");
    s + &legend(c, &list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ticks_are_round_in_the_unit_the_values_need() {
        const MIB: f64 = 1024.0 * 1024.0;
        let a = ValueAxis::new("bytes", 0.0, 175.0 * MIB);
        assert_eq!((a.unit, a.step, a.lo, a.hi), ("MiB", 50.0, 0.0, 200.0));
        let labels: Vec<String> = a.ticks().iter().map(|v| a.label(*v)).collect();
        assert_eq!(labels, ["0 MiB", "50 MiB", "100 MiB", "150 MiB", "200 MiB"]);
        let a = ValueAxis::new("bytes", 0.0, 3.3 * 1024.0 * MIB);
        assert_eq!((a.unit, a.step), ("GiB", 1.0));
        let a = ValueAxis::new("percent", 0.0, 87.0);
        assert_eq!(a.ticks(), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(a.label(20.0), "20 %");
        let a = ValueAxis::new("bytes", 0.0, 1.3 * MIB);
        assert_eq!(a.label(a.step), "0.5 MiB");
        for raw in [0.013, 0.7, 3.0, 42.0, 999.0] {
            let s = nice_step(raw);
            let m = s / 10f64.powf(s.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|x| (m - x).abs() < 1e-9) && s >= raw,
                "{raw} -> {s}"
            );
        }
    }

    #[test]
    fn time_ticks_fall_on_round_minutes_and_hours() {
        // 2026-09-21 14:13:20 UTC for an hour: every 10 minutes, on the minute.
        let t0 = 1_790_000_000_000;
        let ticks = time_ticks(t0, t0 + 3_600_000, 8);
        let labels: Vec<&str> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(
            labels,
            ["14:20", "14:30", "14:40", "14:50", "15:00", "15:10"]
        );
        // 3m 34s: every 30 s.
        let ticks = time_ticks(t0, t0 + 214_089, 8);
        assert_eq!(ticks[0].1, "14:13:30");
        assert!(ticks.windows(2).all(|w| w[1].0 - w[0].0 == 30_000));
        // A day: every 3 h, on the hour, the day's start by its date.
        let ticks = time_ticks(t0, t0 + 86_400_000, 8);
        assert!(ticks.iter().all(|t| t.0 % 10_800_000 == 0), "{ticks:?}");
        assert!(ticks.iter().any(|t| t.1 == "09-22"), "{ticks:?}");
    }

    #[test]
    fn a_time_label_at_the_right_edge_ends_at_its_tick() {
        assert_eq!(time_label_anchor(LEFT + PLOT_W, "18:11:39"), "end");
        assert_eq!(
            time_label_anchor(LEFT + PLOT_W - 30.0, "18:11:39"),
            "middle"
        );
        assert_eq!(time_label_anchor(LEFT, "18:11:39"), "middle");
    }

    #[test]
    fn labels_that_would_touch_take_another_row_or_none() {
        let rows = label_rows(&[
            (100.0, 80.0),
            (150.0, 80.0),
            (170.0, 80.0),
            (175.0, 80.0),
            (400.0, 50.0),
        ]);
        assert_eq!(rows, [Some(0), Some(1), Some(2), None, Some(0)]);
    }

    #[test]
    fn marker_and_line_colours_are_told_apart() {
        let all: Vec<&str> = LINE_COLORS
            .iter()
            .copied()
            .chain([FIRING, RESOLVED, CLEANUP, EVENT])
            .collect();
        let rgb = |c: &str| -> [i32; 3] {
            let v = i32::from_str_radix(&c[1..], 16).unwrap_or(0);
            [v >> 16 & 255, v >> 8 & 255, v & 255]
        };
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                let (x, y) = (rgb(a), rgb(b));
                let d: i32 = (0..3).map(|k| (x[k] - y[k]).abs()).sum();
                assert!(d >= 120, "{a} and {b} are too close ({d})");
            }
        }
    }
}

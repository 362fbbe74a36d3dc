//! `memtrail compare`'s output: a table for the terminal, JSON, Markdown, and a self-contained HTML
//! page with each target's two series overlaid on one chart, aligned by time since each side's
//! start.

use std::fmt::Write as _;

use crate::analyze::compare::{Comparison, Figures, Points, Row, Side};
use crate::present::report::chart::LINE_COLORS;
use crate::present::report::{STYLE, esc};
use crate::units::{format_duration_rough, format_time, format_value};

/// The growth rate with its range: "12.0 MiB/h (10.1 to 13.9)", or "-" without one.
fn rate(f: &Figures) -> String {
    let u = &f.unit;
    match (
        f.slope_per_hour,
        f.slope_low_per_hour,
        f.slope_high_per_hour,
    ) {
        (Some(s), Some(lo), Some(hi)) => format!(
            "{}/h ({} to {})",
            format_value(u, s),
            format_value(u, lo),
            format_value(u, hi)
        ),
        (Some(s), _, _) => format!("{}/h", format_value(u, s)),
        _ => "-".into(),
    }
}

fn span(s: &Side) -> String {
    format!(
        "{} .. {} ({})",
        format_time(s.from_ms),
        format_time(s.to_ms),
        format_duration_rough((s.to_ms - s.from_ms) as f64 / 1000.0)
    )
}

/// The cells of one row, in the columns of every format.
fn cells(r: &Row) -> [String; 8] {
    [
        format!("{} {}", r.kind, r.target),
        r.metric.clone(),
        rate(&r.a),
        rate(&r.b),
        format!(
            "{} / {}",
            format_value(&r.unit, r.a.peak),
            format_value(&r.unit, r.b.peak)
        ),
        format!(
            "{} / {}",
            format_value(&r.unit, r.a.avg),
            format_value(&r.unit, r.b.avg)
        ),
        r.change.as_str().to_string(),
        r.why.clone(),
    ]
}

const HEAD: [&str; 8] = [
    "target",
    "metric",
    "growth A",
    "growth B",
    "peak A / B",
    "average A / B",
    "verdict",
    "why",
];

/// For the terminal: the sides, then an aligned table.
pub fn table(c: &Comparison) -> String {
    let mut o = format!(
        "A: {}  {}\nB: {}  {}\n\n",
        c.a.label,
        span(&c.a),
        c.b.label,
        span(&c.b)
    );
    let rows: Vec<[String; 8]> = c.rows.iter().map(cells).collect();
    let widths: Vec<usize> = (0..HEAD.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([HEAD[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    o += &line(&HEAD.map(String::from));
    o += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in &rows {
        o += &line(r);
    }
    o + &others(c)
}

/// The targets on one side only.
fn others(c: &Comparison) -> String {
    let mut o = String::new();
    if !c.only_in_a.is_empty() {
        let _ = writeln!(o, "only in A: {}", c.only_in_a.join(", "));
    }
    if !c.only_in_b.is_empty() {
        let _ = writeln!(o, "only in B: {}", c.only_in_b.join(", "));
    }
    o
}

pub fn json(c: &Comparison) -> String {
    serde_json::to_string_pretty(c).unwrap_or_else(|_| "{}".into()) + "\n"
}

pub fn markdown(c: &Comparison) -> String {
    let mut o = format!(
        "# memtrail compare\n\n- **A**: {} — {}\n- **B**: {} — {}\n\n",
        c.a.label,
        span(&c.a),
        c.b.label,
        span(&c.b)
    );
    let _ = writeln!(o, "| {} |", HEAD.join(" | "));
    let _ = writeln!(o, "|{}", " --- |".repeat(HEAD.len()));
    for r in &c.rows {
        let row: Vec<String> = cells(r).iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(o, "| {} |", row.join(" | "));
    }
    let rest = others(c);
    if !rest.is_empty() {
        let _ = write!(o, "\n{rest}");
    }
    o
}

/// The page: the sides, the table, and a chart per row (A and B over time since each side's
/// start). `points` gives each row's two series.
pub fn html(c: &Comparison, points: &[(Points, Points)]) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>memtrail compare: {} vs {}</title><style>{STYLE}</style></head><body><h1>memtrail compare</h1>\
         <p class=\"meta\"><b style=\"color:{}\">A</b> {} — {}<br><b style=\"color:{}\">B</b> {} — {}</p>",
        esc(&c.a.label),
        esc(&c.b.label),
        LINE_COLORS[0],
        esc(&c.a.label),
        esc(&span(&c.a)),
        LINE_COLORS[1],
        esc(&c.b.label),
        esc(&span(&c.b))
    );
    o.push_str("<table><tr>");
    for h in HEAD {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr>");
    for r in &c.rows {
        o.push_str("<tr>");
        for (i, cell) in cells(r).iter().enumerate() {
            let class = match (i, r.change.as_str()) {
                (6, "worse") => " class=\"leak\"",
                (6, "fixed" | "improved") => " class=\"ok\"",
                _ => "",
            };
            let _ = write!(o, "<td{class}>{}</td>", esc(cell));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
    let rest = others(c);
    if !rest.is_empty() {
        let _ = write!(
            o,
            "<p class=\"meta\">{}</p>",
            esc(&rest).replace('\n', "<br>")
        );
    }
    for (r, (pa, pb)) in c.rows.iter().zip(points) {
        let _ = write!(
            o,
            "<h2>{} {} — {}</h2>{}",
            esc(&r.target),
            esc(&r.metric),
            esc(r.change.as_str()),
            overlay(&r.unit, pa, pb)
        );
    }
    o.push_str("</body></html>\n");
    o
}

/// One SVG chart: both sides' series, x = time since each side's start, y from zero to the peak.
fn overlay(unit: &str, a: &[(i64, f64)], b: &[(i64, f64)]) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 260.0;
    const L: f64 = 80.0;
    const T: f64 = 12.0;
    const PW: f64 = W - L - 16.0;
    const PH: f64 = H - T - 36.0;
    let x_max = a.iter().chain(b).map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let y_max = a
        .iter()
        .chain(b)
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let (x, y) = (
        |ms: i64| L + ms as f64 / x_max * PW,
        |v: f64| T + PH - v / y_max * PH,
    );
    let mut s = format!(
        r##"<svg class="chart" viewBox="0 0 {W} {H}" role="img" xmlns="http://www.w3.org/2000/svg"><rect x="{L}" y="{T}" width="{PW}" height="{PH}" fill="none" stroke="#e5e7eb"/>"##
    );
    for (v, label) in [
        (0.0, format_value(unit, 0.0)),
        (y_max, format_value(unit, y_max)),
    ] {
        let _ = write!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            L - 6.0,
            y(v) + 4.0,
            esc(&label)
        );
    }
    let _ = write!(
        s,
        r#"<text class="tick" x="{L}" y="{:.1}">0</text><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{} since each start</text>"#,
        H - 14.0,
        L + PW,
        H - 14.0,
        esc(&format_duration_rough(x_max / 1000.0))
    );
    for (pts, color, name) in [(a, LINE_COLORS[0], "A"), (b, LINE_COLORS[1], "B")] {
        let path: Vec<String> = pts
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="side-{name}" fill="none" stroke="{color}" stroke-width="1.8" points="{}"><title>{name}</title></polyline>"#,
            path.join(" ")
        );
    }
    s + "</svg>"
}

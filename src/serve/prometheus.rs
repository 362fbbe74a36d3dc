//! `/metrics`: what the recorder knows, in the Prometheus text exposition format (0.0.4) or, when
//! the scraper asks for it, OpenMetrics 1.0: the latest value of every series, the analysis the
//! recorder last exported (trend verdicts as state sets, slopes, R², times to limit, every rule's
//! state per series), the recorder's own counters and its build. Nothing here runs a query: the
//! caller hands in the latest values and the cached analysis.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analyze::export::Export;
use crate::model::Table;
use crate::record::live::Held;

/// A label value as the text format wants it: backslash, quote and newline escaped.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The recorder's own counters, as the metrics endpoint exports them.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecorderFigures {
    pub ticks: u64,
    pub samples: u64,
    pub failed_ticks: u64,
    pub tick_seconds: f64,
    pub last_tick_ms: Option<i64>,
    pub held: Held,
}

/// Which format the scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 (`Accept: application/openmetrics-text`): counters typed by their family
    /// name without `_total`, the build as an info family, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// From the request's Accept header.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// How to write the exposition: its format, and whether series carry the pid label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    pub pid_label: bool,
}

impl Options {
    pub fn text() -> Options {
        Options {
            format: Format::Text,
            pid_label: true,
        }
    }
}

/// Render the latest value of every series, the analysis last exported and the recorder's own
/// counters and build. Without the pid label the processes of one name are one series: raw values
/// summed, the analysis of the one in the most urgent state (`Export::without_pid`).
pub fn exposition(
    latest: &Table,
    analysis: &Export,
    recorder: RecorderFigures,
    o: Options,
) -> String {
    let mut families = Families::new();
    series_families(&mut families, latest, o.pid_label);
    if o.pid_label {
        analysis_families(&mut families, analysis, true);
    } else {
        analysis_families(&mut families, &analysis.without_pid(), false);
    }
    recorder_families(&mut families, recorder);
    render(families, o.format)
}

/// Metric families by name: (help, type, sample lines).
type Families = BTreeMap<String, (String, &'static str, Vec<String>)>;

/// The family a raw series is exported in, its help, and the labels its metric adds: a gauge per
/// metric named with its unit (`memtrail_rss_bytes`, `memtrail_mem_used_percent`,
/// `memtrail_threads`); custom metrics in one family with a `metric` label; a mapping group's
/// series (`map_rss:[heap]`) in one family with a `mapping` label. Rules exported for Prometheus
/// name the same families.
pub fn family_of(kind: &str, metric: &str, unit: &str) -> (String, String, String) {
    if kind == "custom" {
        return (
            "memtrail_custom".to_string(),
            "A metric an application pushed to /internal/memory/custom.".to_string(),
            format!(",metric=\"{}\"", label(metric)),
        );
    }
    let (metric, extra) = match metric.split_once(':') {
        Some((base, group)) => (base, format!(",mapping=\"{}\"", label(group))),
        None => (metric, String::new()),
    };
    let suffix = match unit {
        "bytes" => "_bytes",
        "percent" if !metric.ends_with("_percent") => "_percent",
        _ => "",
    };
    (
        format!("memtrail_{metric}{suffix}"),
        format!("The latest {metric} ({unit}) memtrail recorded."),
        extra,
    )
}

/// The latest value of every series: a gauge family per metric (custom metrics in one family,
/// labelled by metric). Without the pid label, the processes of one name are summed.
fn series_families(families: &mut Families, latest: &Table, pid_label: bool) {
    let mut sums: BTreeMap<(String, String), (String, f64)> = BTreeMap::new();
    for r in 0..latest.rows.len() {
        let (Some(kind), Some(target), Some(metric), Some(unit), Some(value)) = (
            latest.get(r, "kind").as_str(),
            latest.get(r, "target").as_str(),
            latest.get(r, "metric").as_str(),
            latest.get(r, "unit").as_str(),
            latest.get(r, "value").as_f64(),
        ) else {
            continue;
        };
        let pid = pid_label.then(|| latest.get(r, "pid").as_i64());
        let (family, help, extra) = family_of(kind, metric, unit);
        let labels = format!("{}{extra}", identity(kind, target, pid));
        sums.entry((family, labels))
            .and_modify(|(_, v)| *v += value)
            .or_insert((help, value));
    }
    for ((family, labels), (help, value)) in sums {
        let line = format!("{family}{{{labels}}} {value}");
        sample(families, (&family, &help, "gauge"), line);
    }
}

/// A series' identity labels, as the raw series carry them: kind, target, and the pid (empty
/// for none; left out, `None`, when the pid label is off).
fn identity(kind: &str, target: &str, pid: Option<Option<i64>>) -> String {
    let mut id = format!("kind=\"{}\",target=\"{}\"", label(kind), label(target));
    if let Some(pid) = pid {
        let _ = write!(
            id,
            ",pid=\"{}\"",
            pid.map_or(String::new(), |p| p.to_string())
        );
    }
    id
}

/// Add one sample to a family (created with its help and type on first use).
fn sample(families: &mut Families, (name, help, kind): (&str, &str, &'static str), line: String) {
    families
        .entry(name.to_string())
        .or_insert_with(|| (help.to_string(), kind, Vec::new()))
        .2
        .push(line);
}

const VERDICT: (&str, &str, &str) = (
    "memtrail_trend_verdict",
    "The trend verdict on a series, as a state set: 1 for its verdict (increasing is a leak), 0 for the others.",
    "gauge",
);
const SLOPE: (&str, &str, &str) = (
    "memtrail_trend_slope_per_second",
    "The series' robust (Theil-Sen) slope over the trend window, in its own unit (bytes, percent, count) per second.",
    "gauge",
);
const RELATIVE: (&str, &str, &str) = (
    "memtrail_trend_slope_ratio_per_second",
    "The slope as a fraction of the series' level per second (x 360000: percent per hour).",
    "gauge",
);
const R2: (&str, &str, &str) = (
    "memtrail_trend_r2",
    "How well a straight line fits the slice levels (least squares R squared, 0 to 1).",
    "gauge",
);
const TO_LIMIT: [(&str, &str, &str); 3] = [
    (
        "memtrail_time_to_limit_seconds",
        "For a leak: seconds until the series reaches its limit at its robust slope.",
        "gauge",
    ),
    (
        "memtrail_time_to_limit_low_seconds",
        "The soonest the limit is reached within the slope's 95 % range.",
        "gauge",
    ),
    (
        "memtrail_time_to_limit_high_seconds",
        "The latest the limit is reached within the slope's 95 % range.",
        "gauge",
    ),
];
const RULE_STATE: (&str, &str, &str) = (
    "memtrail_rule_state",
    "Each alert rule's state on each series it watches, as a state set: ok, pending, firing, cooldown.",
    "gauge",
);
const FIRING: (&str, &str, &str) = (
    "memtrail_alert_firing",
    "1 while an alert rule fires on a series, else 0.",
    "gauge",
);
const OBSERVED: (&str, &str, &str) = (
    "memtrail_rule_observed",
    "The value each alert rule compares with its threshold on each series, as the recorder last evaluated it (a leak rule: the slope in percent per hour while the trend is increasing, else 0).",
    "gauge",
);
const EXPORTED: (&str, &str, &str) = (
    "memtrail_analysis_timestamp_seconds",
    "When the recorder last computed the exported trends (Unix time).",
    "gauge",
);

/// The analysis the recorder last exported: per series its verdict (a state set), slope,
/// relative slope, R² and time to limit with its range; per rule and series its state (a state
/// set) and whether it fires.
fn analysis_families(families: &mut Families, a: &Export, pid_label: bool) {
    use crate::analyze::overview::{RuleStateKind, Verdict};
    let pid = |p: Option<i64>| pid_label.then_some(p);
    for t in &a.trends {
        let id = format!(
            "{},metric=\"{}\"",
            identity(t.kind.as_str(), &t.target, pid(t.pid)),
            label(&t.metric)
        );
        for v in Verdict::ALL {
            let on = u8::from(v == t.classification);
            let line = format!("{}{{{id},verdict=\"{}\"}} {on}", VERDICT.0, v.as_str());
            sample(families, VERDICT, line);
        }
        let per_second = [
            (SLOPE, t.slope_per_hour.map(|s| s / 3600.0)),
            (RELATIVE, t.pct_per_hour.map(|p| p / 100.0 / 3600.0)),
            (R2, t.r2),
            (TO_LIMIT[0], t.seconds_to_limit),
            (TO_LIMIT[1], t.seconds_to_limit_low),
            (TO_LIMIT[2], t.seconds_to_limit_high),
        ];
        for (family, value) in per_second {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                sample(families, family, format!("{}{{{id}}} {v}", family.0));
            }
        }
    }
    for r in &a.rules {
        let kind = r.kind.map_or("", |k| k.as_str());
        let id = format!(
            "rule=\"{}\",severity=\"{}\",{},metric=\"{}\"",
            label(&r.rule),
            label(&r.severity),
            identity(kind, r.target.as_deref().unwrap_or(""), pid(r.pid)),
            label(r.metric.as_deref().unwrap_or(""))
        );
        for st in RuleStateKind::ALL {
            let on = u8::from(st == r.state);
            let line = format!("{}{{{id},state=\"{}\"}} {on}", RULE_STATE.0, st.as_str());
            sample(families, RULE_STATE, line);
        }
        let firing = u8::from(r.state == RuleStateKind::Firing);
        sample(families, FIRING, format!("{}{{{id}}} {firing}", FIRING.0));
        if let Some(v) = r.observed.filter(|v| v.is_finite()) {
            sample(families, OBSERVED, format!("{}{{{id}}} {v}", OBSERVED.0));
        }
    }
    if a.trends_ms > 0 {
        let at = a.trends_ms as f64 / 1000.0;
        sample(families, EXPORTED, format!("{} {at}", EXPORTED.0));
    }
}

/// The recorder's own counters and gauges, one sample each.
fn recorder_families(families: &mut Families, f: RecorderFigures) {
    let own: [(&str, &str, &'static str, Option<String>); 9] = [
        (
            "memtrail_log_lines_dropped_total",
            "Log lines that could not be written to stderr (a closed pipe, a full disk) and were dropped.",
            "counter",
            Some(crate::logsink::dropped_lines().to_string()),
        ),
        (
            "memtrail_recorder_ticks_total",
            "Ticks the recorder has run.",
            "counter",
            Some(f.ticks.to_string()),
        ),
        (
            "memtrail_recorder_samples_total",
            "Samples the recorder has written.",
            "counter",
            Some(f.samples.to_string()),
        ),
        (
            "memtrail_recorder_failed_ticks_total",
            "Ticks whose write failed.",
            "counter",
            Some(f.failed_ticks.to_string()),
        ),
        (
            "memtrail_recorder_tick_duration_seconds",
            "How long the last tick took (sample and write).",
            "gauge",
            Some(f.tick_seconds.to_string()),
        ),
        (
            "memtrail_recorder_held_samples",
            "Samples held in memory because the database could not be written.",
            "gauge",
            Some(f.held.samples.to_string()),
        ),
        (
            "memtrail_recorder_spooled_samples",
            "Samples waiting in the spool for the next commit (commit_interval); not a fault.",
            "gauge",
            Some(f.held.spooled_samples.to_string()),
        ),
        (
            "memtrail_recorder_dropped_ticks_total",
            "Held ticks dropped because the write buffer was full.",
            "counter",
            Some(f.held.dropped_ticks.to_string()),
        ),
        (
            "memtrail_recorder_last_tick_timestamp_seconds",
            "When the last tick ran (Unix time).",
            "gauge",
            f.last_tick_ms.map(|ms| (ms as f64 / 1000.0).to_string()),
        ),
    ];
    families.insert(
        "memtrail_build_info".into(),
        (
            "The memtrail build that serves these metrics.".into(),
            "info",
            vec![format!(
                "memtrail_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )],
        ),
    );
    for (name, help, kind, value) in own {
        if let Some(value) = value {
            families.insert(
                name.into(),
                (help.into(), kind, vec![format!("{name} {value}")]),
            );
        }
    }
}

/// The exposition: each family's HELP and TYPE, then its samples; empty families left out. In
/// OpenMetrics a counter's family is named without `_total` and an `_info` gauge is an info
/// family named without `_info`; the text ends with `# EOF`.
fn render(families: Families, format: Format) -> String {
    let mut out = String::new();
    for (name, (help, kind, lines)) in families {
        if lines.is_empty() {
            continue;
        }
        let (family, kind) = match (format, kind) {
            (Format::OpenMetrics, "counter") => (name.trim_end_matches("_total"), kind),
            (Format::OpenMetrics, "info") => (name.trim_end_matches("_info"), kind),
            (Format::Text, "info") => (name.as_str(), "gauge"),
            _ => (name.as_str(), kind),
        };
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cell;

    #[test]
    fn exposition_escapes_labels_and_groups_families() {
        let latest = Table {
            columns: ["kind", "target", "pid", "metric", "unit", "value"]
                .map(String::from)
                .to_vec(),
            rows: vec![
                vec![
                    Cell::Text("process".into()),
                    Cell::Text("we\"ird\\name".into()),
                    Cell::Int(7),
                    Cell::Text("rss".into()),
                    Cell::Text("bytes".into()),
                    Cell::Real(1024.0),
                ],
                vec![
                    Cell::Text("system".into()),
                    Cell::Text("system".into()),
                    Cell::Null,
                    Cell::Text("mem_used_percent".into()),
                    Cell::Text("percent".into()),
                    Cell::Real(42.5),
                ],
                vec![
                    Cell::Text("custom".into()),
                    Cell::Text("web".into()),
                    Cell::Null,
                    Cell::Text("chat_sessions".into()),
                    Cell::Text("count".into()),
                    Cell::Int(12),
                ],
                vec![
                    Cell::Text("process".into()),
                    Cell::Text("api".into()),
                    Cell::Int(8),
                    Cell::Text("map_rss:/var/lib/x \"y\".db".into()),
                    Cell::Text("bytes".into()),
                    Cell::Real(4096.0),
                ],
            ],
        };
        let text = exposition(
            &latest,
            &Export::default(),
            RecorderFigures {
                ticks: 3,
                samples: 30,
                tick_seconds: 0.001,
                last_tick_ms: Some(1_700_000_000_000),
                ..Default::default()
            },
            Options::text(),
        );
        assert!(
            text.contains(
                "memtrail_rss_bytes{kind=\"process\",target=\"we\\\"ird\\\\name\",pid=\"7\"} 1024\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "memtrail_mem_used_percent{kind=\"system\",target=\"system\",pid=\"\"} 42.5"
            ),
            "{text}"
        );
        assert!(text.contains("memtrail_custom{kind=\"custom\",target=\"web\",pid=\"\",metric=\"chat_sessions\"} 12"), "{text}");
        assert!(
            text.contains(
                "# TYPE memtrail_recorder_ticks_total counter\nmemtrail_recorder_ticks_total 3\n"
            ),
            "{text}"
        );
        let parsed =
            openmetrics_parser::prometheus::parse_prometheus(&text).expect("valid exposition");
        assert!(parsed.families.contains_key("memtrail_rss_bytes"));
        // A mapping group: one family, the mapping as a label.
        assert!(
            text.contains(
                "memtrail_map_rss_bytes{kind=\"process\",target=\"api\",pid=\"8\",mapping=\"/var/lib/x \\\"y\\\".db\"} 4096\n"
            ),
            "{text}"
        );
        assert!(parsed.families.contains_key("memtrail_map_rss_bytes"));
    }

    /// #26 item 1: the exported analysis, with the raw series' identity labels: a verdict as a
    /// state set, slopes per second, R², the time to limit with its range, each rule's state; in
    /// OpenMetrics too (counters by family name, the build as info, `# EOF`).
    #[test]
    fn the_analysis_is_exported_as_state_sets_and_gauges() {
        use crate::analyze::export::{RuleExport, TrendExport};
        use crate::analyze::overview::{RuleStateKind, Verdict};
        use crate::model::Kind;
        let analysis = Export {
            trends_ms: 1_700_000_000_000,
            trends: vec![TrendExport {
                kind: Kind::Process,
                target: "api".into(),
                pid: Some(42),
                metric: "rss".into(),
                classification: Verdict::Increasing,
                slope_per_hour: Some(3600.0 * 1024.0),
                pct_per_hour: Some(3.6),
                r2: Some(0.97),
                seconds_to_limit: Some(7200.0),
                seconds_to_limit_low: Some(6000.0),
                seconds_to_limit_high: Some(9000.0),
            }],
            rules_ms: 1_700_000_000_000,
            rules: vec![RuleExport {
                rule: "process_rss_leak".into(),
                severity: "warning".into(),
                kind: Some(Kind::Process),
                target: Some("api".into()),
                pid: Some(42),
                metric: Some("rss".into()),
                series_id: Some(1),
                observed: Some(2.5),
                state: RuleStateKind::Pending,
            }],
        };
        let text = exposition(
            &Table::default(),
            &analysis,
            RecorderFigures::default(),
            Options::text(),
        );
        let id = "kind=\"process\",target=\"api\",pid=\"42\",metric=\"rss\"";
        for line in [
            format!("memtrail_trend_verdict{{{id},verdict=\"increasing\"}} 1\n"),
            format!("memtrail_trend_verdict{{{id},verdict=\"stable\"}} 0\n"),
            format!("memtrail_trend_slope_per_second{{{id}}} 1024\n"),
            format!("memtrail_trend_slope_ratio_per_second{{{id}}} 0.00001\n"),
            format!("memtrail_trend_r2{{{id}}} 0.97\n"),
            format!("memtrail_time_to_limit_seconds{{{id}}} 7200\n"),
            format!("memtrail_time_to_limit_low_seconds{{{id}}} 6000\n"),
            format!("memtrail_time_to_limit_high_seconds{{{id}}} 9000\n"),
            "memtrail_rule_state{rule=\"process_rss_leak\",severity=\"warning\",kind=\"process\",target=\"api\",pid=\"42\",metric=\"rss\",state=\"pending\"} 1\n".to_string(),
            "memtrail_alert_firing{rule=\"process_rss_leak\",severity=\"warning\",kind=\"process\",target=\"api\",pid=\"42\",metric=\"rss\"} 0\n".to_string(),
            "memtrail_analysis_timestamp_seconds 1700000000\n".to_string(),
            "memtrail_rule_observed{rule=\"process_rss_leak\",severity=\"warning\",kind=\"process\",target=\"api\",pid=\"42\",metric=\"rss\"} 2.5\n".to_string(),
            format!("# TYPE memtrail_build_info gauge\nmemtrail_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        assert_eq!(
            text.matches("memtrail_trend_verdict{").count(),
            Verdict::ALL.len()
        );
        openmetrics_parser::prometheus::parse_prometheus(&text).expect("valid text exposition");

        let om = exposition(
            &Table::default(),
            &analysis,
            RecorderFigures {
                ticks: 3,
                ..Default::default()
            },
            Options {
                format: Format::OpenMetrics,
                pid_label: true,
            },
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains(
                "# TYPE memtrail_recorder_ticks counter\nmemtrail_recorder_ticks_total 3\n"
            ),
            "{om}"
        );
        assert!(om.contains("# TYPE memtrail_build info\n"), "{om}");
        openmetrics_parser::openmetrics::parse_openmetrics(&om).expect("valid OpenMetrics");
    }

    /// #26 item 2: without the pid label, two processes of one name are one series: their raw
    /// values summed, the verdict and rule state of the more urgent one.
    #[test]
    fn without_the_pid_label_a_name_is_one_series() {
        use crate::analyze::export::{RuleExport, TrendExport};
        use crate::analyze::overview::{RuleStateKind, Verdict};
        use crate::model::Kind;
        let row = |pid: i64, rss: f64| {
            vec![
                Cell::Text("process".into()),
                Cell::Text("worker".into()),
                Cell::Int(pid),
                Cell::Text("rss".into()),
                Cell::Text("bytes".into()),
                Cell::Real(rss),
            ]
        };
        let latest = Table {
            columns: ["kind", "target", "pid", "metric", "unit", "value"]
                .map(String::from)
                .to_vec(),
            rows: vec![row(1, 100.0), row(2, 250.0)],
        };
        let trend = |pid: i64, v: Verdict| TrendExport {
            kind: Kind::Process,
            target: "worker".into(),
            pid: Some(pid),
            metric: "rss".into(),
            classification: v,
            slope_per_hour: Some(pid as f64),
            pct_per_hour: None,
            r2: None,
            seconds_to_limit: None,
            seconds_to_limit_low: None,
            seconds_to_limit_high: None,
        };
        let rule = |pid: i64, state: RuleStateKind| RuleExport {
            rule: "process_rss_leak".into(),
            severity: "warning".into(),
            kind: Some(Kind::Process),
            target: Some("worker".into()),
            pid: Some(pid),
            metric: Some("rss".into()),
            series_id: Some(pid),
            observed: None,
            state,
        };
        let analysis = Export {
            trends_ms: 1,
            trends: vec![trend(1, Verdict::Stable), trend(2, Verdict::Increasing)],
            rules_ms: 1,
            rules: vec![rule(1, RuleStateKind::Firing), rule(2, RuleStateKind::Ok)],
        };
        let o = Options {
            format: Format::Text,
            pid_label: false,
        };
        let text = exposition(&latest, &analysis, RecorderFigures::default(), o);
        assert!(
            text.contains("memtrail_rss_bytes{kind=\"process\",target=\"worker\"} 350\n"),
            "{text}"
        );
        assert!(!text.contains("pid="), "{text}");
        let id = "kind=\"process\",target=\"worker\",metric=\"rss\"";
        assert!(
            text.contains(&format!(
                "memtrail_trend_verdict{{{id},verdict=\"increasing\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "memtrail_trend_slope_per_second{{{id}}} {}\n",
                2.0 / 3600.0
            )),
            "{text}"
        );
        assert!(text.contains("state=\"firing\"} 1\n"), "{text}");
        assert_eq!(
            text.matches("memtrail_trend_verdict{").count(),
            Verdict::ALL.len()
        );
        openmetrics_parser::prometheus::parse_prometheus(&text).expect("no duplicate series");
        // With it, each process is its own series.
        let text = exposition(
            &latest,
            &analysis,
            RecorderFigures::default(),
            Options::text(),
        );
        assert!(
            text.contains("memtrail_rss_bytes{kind=\"process\",target=\"worker\",pid=\"2\"} 250\n"),
            "{text}"
        );
    }
}

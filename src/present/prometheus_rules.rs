//! memtrail's alert rules as a Prometheus rule file (`memtrail rules export --format prometheus`):
//! thresholds, percent change and counter increases in PromQL over the raw series `/metrics`
//! exports, under the same family names; trend (slope) and time-to-limit rules over the exported
//! analysis (`memtrail_rule_observed`, the value each rule compares, from the recorder's own
//! evaluation). Each rule keeps its `for`, its severity and its name (`memtrail_rule`), with a
//! summary and a description. What Prometheus has no word for is said in the file's header:
//! memtrail's cooldown, hysteresis and warm-up.

use std::fmt::Write as _;

use crate::analyze::alerts::{Comparison, Rule};
use crate::serve::prometheus::{family_of, label};

/// The rule file for `rules`, as YAML.
pub fn rule_file(rules: &[Rule]) -> String {
    let mut o = String::from(
        "# memtrail's alert rules for Prometheus, written by `memtrail rules export --format prometheus`.\n\
         # Thresholds, percent change and increases are PromQL over the series memtrail's /metrics\n\
         # exports; trend (slope) and time-to-limit rules read memtrail_rule_observed, the value each\n\
         # rule compares as the recorder evaluated it. Prometheus has no cooldown, hysteresis or\n\
         # warm-up: an alert here may fire again sooner than memtrail's would after it resolves.\n\
         groups:\n  - name: memtrail\n    rules:\n",
    );
    for r in rules {
        let _ = write!(
            o,
            "      - alert: {}\n        expr: {}\n        for: {}\n        labels:\n          severity: {}\n          memtrail_rule: {}\n        annotations:\n          summary: {}\n          description: {}\n",
            alert_name(&r.name),
            quoted(&expr(r)),
            duration(r.for_ms),
            quoted(&r.severity),
            quoted(&r.name),
            quoted(&format!(
                "memtrail: {} on {{{{ $labels.kind }}}} {{{{ $labels.target }}}} (pid {{{{ $labels.pid }}}})",
                r.name
            )),
            quoted(&description(r)),
        );
    }
    o
}

/// `process_rss_high` -> `MemtrailProcessRssHigh`.
pub fn alert_name(rule: &str) -> String {
    let mut name = String::from("Memtrail");
    for part in rule.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.extend(chars);
        }
    }
    name
}

/// A YAML double-quoted scalar (JSON's escapes are YAML's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A Prometheus duration: the largest unit that divides it (`5m`, `1h`, `90s`, `0s`).
fn duration(ms: i64) -> String {
    match ms.max(0) {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// The label matchers of a rule's selector: kind, target, pid, and the metric's own (`metric`,
/// `mapping`).
fn selector(r: &Rule, extra: &str) -> String {
    let mut m = Vec::new();
    if let Some(k) = r.kind {
        m.push(format!("kind=\"{}\"", k.as_str()));
    }
    if let Some(t) = &r.target {
        m.push(format!("target=\"{}\"", label(t)));
    }
    if let Some(p) = r.pid {
        m.push(format!("pid=\"{p}\""));
    }
    let extra = extra.trim_start_matches(',');
    if !extra.is_empty() {
        m.push(extra.to_string());
    }
    format!("{{{}}}", m.join(","))
}

/// The rule's condition in PromQL.
fn expr(r: &Rule) -> String {
    let kind = r.kind.map_or("process", |k| k.as_str());
    let unit = crate::model::unit_of(&r.metric);
    let (family, _, extra) = family_of(kind, &r.metric, unit.as_str());
    let series = format!("{family}{}", selector(r, &extra));
    let t = r.threshold;
    match r.comparison {
        Comparison::GreaterThan => format!("{series} > {t}"),
        Comparison::LessThan => format!("{series} < {t}"),
        // memtrail's percent_change: the median of the window's last fifth against the median
        // of its first fifth.
        Comparison::PercentChange => {
            let slice = duration(r.window_ms / 5);
            let offset = duration(r.window_ms - r.window_ms / 5);
            let start = format!("quantile_over_time(0.5, {series}[{slice}] offset {offset})");
            format!("(quantile_over_time(0.5, {series}[{slice}]) - {start}) / {start} * 100 > {t}")
        }
        Comparison::Increase => format!("increase({series}[{}]) > {t}", duration(r.window_ms)),
        Comparison::Slope => format!(
            "memtrail_rule_observed{{rule=\"{}\"}} > {t}",
            label(&r.name)
        ),
        Comparison::TimeToLimit => format!(
            "memtrail_rule_observed{{rule=\"{}\"}} < {t}",
            label(&r.name)
        ),
    }
}

/// What the rule watches, in words.
fn description(r: &Rule) -> String {
    let window = duration(r.window_ms);
    let what = match r.comparison {
        Comparison::GreaterThan => format!("{} above {}", r.metric, r.threshold),
        Comparison::LessThan => format!("{} below {}", r.metric, r.threshold),
        Comparison::PercentChange => format!(
            "{} up more than {} % over {window} (medians of its first and last fifth)",
            r.metric, r.threshold
        ),
        Comparison::Increase => format!("{} increased over {window}", r.metric),
        Comparison::Slope => format!(
            "{} increasing (memtrail's trend verdict over {window}) at more than {} %/h",
            r.metric, r.threshold
        ),
        Comparison::TimeToLimit => format!(
            "{} reaches its limit within {} s at its trend",
            r.metric, r.threshold
        ),
    };
    format!("{what}, held {}", duration(r.for_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_durations_are_what_prometheus_reads() {
        assert_eq!(alert_name("process_rss_high"), "MemtrailProcessRssHigh");
        assert_eq!(alert_name("my-rule.2"), "MemtrailMyRule2");
        assert_eq!(duration(300_000), "5m");
        assert_eq!(duration(3_600_000), "1h");
        assert_eq!(duration(90_000), "90s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(1500), "1500ms");
    }
}

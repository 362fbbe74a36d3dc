//! The analysis as Prometheus reads it: each leading series' trend verdict, slope, R² and time to
//! its limit, and every rule's state per series, refreshed by the recorder after each rule
//! evaluation (the trends at most every `EXPORT_EVERY_MS`) and kept for `/metrics`, so a scrape
//! never runs an analysis query. The identity (kind, target, pid, metric) is the raw series' own.

use serde::Deserialize;

use rusqlite::Connection;

use crate::analyze::analysis::{self, AnalysisError};
use crate::analyze::overview::{RuleStateKind, Verdict};
use crate::model::{Cell, Kind};

/// The series whose verdicts are exported: what speaks for a process (alone and with its
/// children), a cgroup, the system.
pub const EXPORT_METRICS: [&str; 4] = ["rss", "tree_rss", "usage", "mem_used"];
/// How often the export is refreshed at most: a verdict over an hour moves slowly, and every
/// refresh runs `trend` once per exported metric.
pub const EXPORT_EVERY_MS: i64 = 30_000;

/// One series' trend, as exported.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrendExport {
    pub kind: Kind,
    pub target: String,
    pub pid: Option<i64>,
    pub metric: String,
    pub classification: Verdict,
    pub slope_per_hour: Option<f64>,
    pub pct_per_hour: Option<f64>,
    pub r2: Option<f64>,
    pub seconds_to_limit: Option<f64>,
    pub seconds_to_limit_low: Option<f64>,
    pub seconds_to_limit_high: Option<f64>,
}

/// One rule's state on one series, as exported.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RuleExport {
    pub rule: String,
    pub severity: String,
    pub kind: Option<Kind>,
    pub target: Option<String>,
    pub pid: Option<i64>,
    pub metric: Option<String>,
    pub series_id: Option<i64>,
    /// The value the rule compares (its leak slope, time to limit, level...), if it has one.
    pub observed: Option<f64>,
    pub state: RuleStateKind,
}

/// What the analysis said: the trends as of `trends_ms`, the rules' states as of `rules_ms`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Export {
    pub trends_ms: i64,
    pub trends: Vec<TrendExport>,
    pub rules_ms: i64,
    pub rules: Vec<RuleExport>,
}

impl Export {
    /// The export after a rule evaluation at `now_ms`: the rules' states read again (they change
    /// with each evaluation, and reading them is cheap), the trends computed again when the last
    /// are `EXPORT_EVERY_MS` old, else kept.
    pub fn refresh(&self, conn: &Connection, now_ms: i64) -> Result<Export, AnalysisError> {
        let trends = if now_ms - self.trends_ms >= EXPORT_EVERY_MS || self.trends_ms == 0 {
            (now_ms, trends(conn, now_ms)?)
        } else {
            (self.trends_ms, self.trends.clone())
        };
        let t = analysis::run(conn, "rule_states", &[], now_ms)?;
        let rules = rows::<RuleExport>("rule_states", &t)?
            .into_iter()
            // A rule that watches no series yet has nothing to say per series.
            .filter(|r| r.series_id.is_some())
            .collect();
        Ok(Export {
            trends_ms: trends.0,
            trends: trends.1,
            rules_ms: now_ms,
            rules,
        })
    }
}

impl Export {
    /// One entry per target name instead of per process: where several processes share a kind,
    /// name and metric, the one whose verdict is most urgent (increasing first, then levelling
    /// off, step, fluctuating, stable, decreasing, no verdict), and per rule the most urgent
    /// state (firing, pending, cooldown, ok); pids dropped.
    pub fn without_pid(&self) -> Export {
        use std::collections::BTreeMap;
        let urgency = |v: Verdict| match v {
            Verdict::Increasing => 6,
            Verdict::LevellingOff => 5,
            Verdict::Step => 4,
            Verdict::Fluctuating => 3,
            Verdict::Stable => 2,
            Verdict::Decreasing => 1,
            Verdict::InsufficientData => 0,
        };
        let mut trends: BTreeMap<(Kind, &str, &str), &TrendExport> = BTreeMap::new();
        for t in &self.trends {
            let key = (t.kind, t.target.as_str(), t.metric.as_str());
            if trends
                .get(&key)
                .is_none_or(|b| urgency(b.classification) < urgency(t.classification))
            {
                trends.insert(key, t);
            }
        }
        let state = |s: RuleStateKind| match s {
            RuleStateKind::Firing => 3,
            RuleStateKind::Pending => 2,
            RuleStateKind::Cooldown => 1,
            RuleStateKind::Ok => 0,
        };
        type RuleKey<'a> = (&'a str, Option<Kind>, Option<&'a str>, Option<&'a str>);
        let mut rules: BTreeMap<RuleKey, &RuleExport> = BTreeMap::new();
        for r in &self.rules {
            let key = (
                r.rule.as_str(),
                r.kind,
                r.target.as_deref(),
                r.metric.as_deref(),
            );
            if rules
                .get(&key)
                .is_none_or(|b| state(b.state) < state(r.state))
            {
                rules.insert(key, r);
            }
        }
        Export {
            trends_ms: self.trends_ms,
            trends: trends
                .into_values()
                .map(|t| TrendExport {
                    pid: None,
                    ..t.clone()
                })
                .collect(),
            rules_ms: self.rules_ms,
            rules: rules
                .into_values()
                .map(|r| RuleExport {
                    pid: None,
                    ..r.clone()
                })
                .collect(),
        }
    }
}

/// `trend` on each exported metric.
fn trends(conn: &Connection, now_ms: i64) -> Result<Vec<TrendExport>, AnalysisError> {
    let mut trends = Vec::new();
    for metric in EXPORT_METRICS {
        let t = analysis::run(
            conn,
            "trend",
            &[("metric", Cell::Text(metric.to_string()))],
            now_ms,
        )?;
        trends.extend(rows::<TrendExport>("trend", &t)?);
    }
    Ok(trends)
}

fn rows<T: serde::de::DeserializeOwned>(
    query: &str,
    t: &crate::model::Table,
) -> Result<Vec<T>, AnalysisError> {
    t.typed_rows().map_err(|e| AnalysisError::Rows {
        query: query.into(),
        source: e,
    })
}

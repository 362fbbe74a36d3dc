//! Alert rules and their evaluation. A rule picks series (metric + target selector), observes one
//! number per series through an analysis query (the newest value, the percent change, the trend's
//! leak slope, or the time to a limit), and writes it to `alert_state`. What happens next — firing
//! once the condition has held for `for`, suppression inside the cooldown, repeats, resolution past
//! the hysteresis margin — is decided in SQL by `queries/alerts_due.sql` over `alert_conditions`
//! and the `alerts` audit table; this module writes the events it returns.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;

use crate::analyze::analysis::{self, AnalysisError};
use crate::config::{ConfigError, NotifySection, RuleConfig, RuleValue};
use crate::model::{AlertEventKind, CGROUP_METRICS, Cell, Kind, PROCESS_METRICS, SYSTEM_METRICS};
use crate::store::{self, StoreError};
use crate::units::format_value;
use crate::units::{ByteSize, HumanDuration};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    GreaterThan,
    LessThan,
    PercentChange,
    Slope,
    TimeToLimit,
    /// A counter's growth over the window (e.g. new OOM kills).
    Increase,
}

impl Comparison {
    pub const ALL: [&str; 6] = [
        "greater_than",
        "less_than",
        "percent_change",
        "slope",
        "time_to_limit",
        "increase",
    ];

    pub fn parse(s: &str) -> Option<Comparison> {
        Some(match s {
            "greater_than" => Comparison::GreaterThan,
            "less_than" => Comparison::LessThan,
            "percent_change" => Comparison::PercentChange,
            "slope" => Comparison::Slope,
            "time_to_limit" => Comparison::TimeToLimit,
            "increase" => Comparison::Increase,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }

    /// Comparisons judged over a window of history (warm-up must lie before the whole window).
    fn windowed(self) -> bool {
        matches!(
            self,
            Comparison::PercentChange
                | Comparison::Slope
                | Comparison::TimeToLimit
                | Comparison::Increase
        )
    }
}

pub(crate) const ACTIONS: [&str; 4] = ["log", "webhook", "command", "cleanup"];
pub(crate) const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// The kinds of target that record `metric` (first: the one a rule without `kind` means).
pub(crate) fn kinds_of(metric: &str) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if crate::model::is_process_metric(metric) {
        kinds.push(Kind::Process);
    }
    if SYSTEM_METRICS.contains(&metric) {
        kinds.push(Kind::System);
    }
    if CGROUP_METRICS.contains(&metric) {
        kinds.push(Kind::Cgroup);
    }
    kinds
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    pub kind: Option<Kind>,
    pub target: Option<String>,
    pub pid: Option<u32>,
    pub comparison: Comparison,
    /// In the comparison's unit: the series' unit, percent, percent per hour, or seconds.
    pub threshold: f64,
    pub hysteresis: f64,
    pub window_ms: i64,
    pub for_ms: i64,
    pub cooldown_ms: i64,
    pub repeat_ms: Option<i64>,
    pub warmup_ms: i64,
    pub limit: Option<f64>,
    pub severity: String,
    pub actions: Vec<String>,
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// The built-in rules: the seed monitor's (process RSS above 1024 MiB, system memory above 85 %
/// used, each held 5 minutes; process RSS +20 % in 10 minutes with a 15-minute cooldown, its ends compared as medians
/// and held 15 minutes, so growth that comes back down does not fire it: the runaway alarm); two
/// leak alarms on the trend verdict (`increasing` over 1 h at 1 %/h or more, held 3 minutes; over
/// 6 h at 0.5 %/h or more, held 15 minutes, for slow leaks); for cgroups, usage above 90 % of the
/// group's limit and any new OOM kill in the group.
pub fn default_rules(notify: &NotifySection) -> Vec<Rule> {
    let actions = default_actions(notify);
    let base = |name: &str, metric: &str, kind: Kind, comparison, threshold: f64| Rule {
        name: name.into(),
        metric: metric.into(),
        kind: Some(kind),
        target: None,
        pid: None,
        comparison,
        threshold,
        hysteresis: threshold.abs() * 0.05,
        window_ms: 0,
        for_ms: 0,
        cooldown_ms: 15 * 60_000,
        repeat_ms: None,
        warmup_ms: 0,
        limit: None,
        severity: "warning".into(),
        actions: actions.clone(),
    };
    // A level is in use when it is held: 5 minutes, as Prometheus' memory rules say `for: 5m`,
    // so a 30 s spike or one heavy-tailed sample over the line is not an alarm.
    let held = |rule: Rule| Rule {
        for_ms: 5 * 60_000,
        ..rule
    };
    vec![
        held(base(
            "process_rss_high",
            "rss",
            Kind::Process,
            Comparison::GreaterThan,
            1024.0 * 1024.0 * 1024.0,
        )),
        held(base(
            "system_memory_high",
            "mem_used_percent",
            Kind::System,
            Comparison::GreaterThan,
            85.0,
        )),
        Rule {
            window_ms: 10 * 60_000,
            for_ms: 15 * 60_000,
            warmup_ms: 5 * 60_000,
            ..base(
                "process_rss_growth",
                "rss",
                Kind::Process,
                Comparison::PercentChange,
                20.0,
            )
        },
        Rule {
            window_ms: 60 * 60_000,
            for_ms: 3 * 60_000,
            cooldown_ms: 60 * 60_000,
            hysteresis: 0.5,
            ..base(
                "process_rss_leak",
                "rss",
                Kind::Process,
                Comparison::Slope,
                1.0,
            )
        },
        Rule {
            window_ms: 6 * 60 * 60_000,
            for_ms: 15 * 60_000,
            cooldown_ms: 6 * 60 * 60_000,
            hysteresis: 0.25,
            ..base(
                "process_rss_slow_leak",
                "rss",
                Kind::Process,
                Comparison::Slope,
                0.5,
            )
        },
        base(
            "cgroup_near_limit",
            "limit_percent",
            Kind::Cgroup,
            Comparison::GreaterThan,
            90.0,
        ),
        Rule {
            window_ms: 5 * 60_000,
            severity: "critical".into(),
            ..base(
                "cgroup_oom_kill",
                "oom_kill",
                Kind::Cgroup,
                Comparison::Increase,
                0.0,
            )
        },
    ]
}

fn default_actions(notify: &NotifySection) -> Vec<String> {
    let mut a = vec!["log".to_string()];
    if notify.webhook.is_some() {
        a.push("webhook".into());
    }
    if notify.command.is_some() {
        a.push("command".into());
    }
    a
}

/// Check the `[[rules]]` of a config file and merge them with the defaults.
pub(crate) fn build_rules(
    configs: &[RuleConfig],
    use_defaults: bool,
    notify: &NotifySection,
) -> Result<Vec<Rule>, ConfigError> {
    let mut rules: Vec<Rule> = if use_defaults {
        default_rules(notify)
    } else {
        Vec::new()
    };
    for (i, c) in configs.iter().enumerate() {
        let rule = check_rule(c, notify).map_err(|why| {
            ConfigError::Invalid(format!(
                "rule {:?} ([[rules]] entry {}): {why}",
                c.name,
                i + 1
            ))
        })?;
        if configs[..i].iter().any(|o| o.name == c.name) {
            return Err(ConfigError::Invalid(format!(
                "rule {:?} is defined twice: rule names must be unique",
                c.name
            )));
        }
        match rules.iter_mut().find(|r| r.name == rule.name) {
            Some(slot) => *slot = rule,
            None => rules.push(rule),
        }
    }
    Ok(rules)
}

fn check_rule(c: &RuleConfig, notify: &NotifySection) -> Result<Rule, String> {
    if c.name.trim().is_empty() || c.name.len() > 64 {
        return Err("the name must be 1 to 64 characters".into());
    }
    let comparison = Comparison::parse(&c.comparison).ok_or_else(|| {
        format!(
            "unknown comparison {:?}: use one of {}",
            c.comparison,
            Comparison::ALL.join(", ")
        )
    })?;
    let kind = rule_kind(c)?;
    let threshold = rule_threshold(c, comparison)?;
    let limit = match &c.limit {
        None => None,
        Some(_) if comparison != Comparison::TimeToLimit => {
            return Err("limit only applies to comparison = \"time_to_limit\"".into());
        }
        Some(RuleValue::Number(n)) => Some(*n),
        Some(RuleValue::Text(t)) => {
            Some(t.parse::<ByteSize>().map_err(|e| format!("limit: {e}"))?.0 as f64)
        }
    };
    let window_ms = match (c.window, comparison) {
        (Some(w), _) if w.0.is_zero() && comparison.windowed() => {
            return Err("window must be longer than 0".into());
        }
        (Some(w), _) => ms(w.0),
        (None, Comparison::PercentChange) => 10 * 60_000,
        (None, Comparison::Slope | Comparison::TimeToLimit) => 60 * 60_000,
        (None, Comparison::Increase) => 5 * 60_000,
        (None, _) => 0,
    };
    let hysteresis = c.hysteresis.unwrap_or(threshold.abs() * 0.05);
    if !hysteresis.is_finite() || hysteresis < 0.0 {
        return Err("hysteresis must be 0 or more (in the unit of value)".into());
    }
    let severity = c.severity.clone().unwrap_or_else(|| "warning".into());
    if !SEVERITIES.contains(&severity.as_str()) {
        return Err(format!(
            "unknown severity {severity:?}: use {}",
            SEVERITIES.join(", ")
        ));
    }
    let actions = rule_actions(c, notify)?;
    Ok(Rule {
        name: c.name.clone(),
        metric: c.metric.clone(),
        kind,
        target: c.target.clone(),
        pid: c.pid,
        comparison,
        threshold,
        hysteresis,
        window_ms,
        for_ms: c.for_.map_or(0, |d| ms(d.0)),
        cooldown_ms: c.cooldown.map_or(15 * 60_000, |d| ms(d.0)),
        repeat_ms: c.repeat.map(|d| ms(d.0)).filter(|r| *r > 0),
        warmup_ms: c.warmup.map_or(0, |d| ms(d.0)),
        limit,
        severity,
        actions,
    })
}

/// The kind of target a rule's metric belongs to (`custom` when said so).
fn rule_kind(c: &RuleConfig) -> Result<Option<Kind>, String> {
    let kinds = kinds_of(&c.metric);
    let kind =
        match c.kind.as_deref() {
            Some(k) => Some(Kind::parse(k).ok_or_else(|| {
                format!("unknown kind {k:?}: use process, system, cgroup or custom")
            })?),
            None => None,
        };
    Ok(match (kind, kinds.first()) {
        (Some(Kind::Custom), _) => Some(Kind::Custom),
        (Some(k), Some(_)) if !kinds.contains(&k) => {
            return Err(format!(
                "metric {:?} belongs to {} targets, not {}",
                c.metric,
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" and "),
                k.as_str()
            ));
        }
        (Some(k), Some(_)) => Some(k),
        (None, Some(m)) => Some(*m),
        (_, None) => {
            return Err(format!(
                "unknown metric {:?}: use one of {}, {}, {} (or kind = \"custom\" for an application's own metric)",
                c.metric,
                PROCESS_METRICS.join(", "),
                SYSTEM_METRICS.join(", "),
                CGROUP_METRICS.join(", ")
            ));
        }
    })
}

/// The rule's value in its comparison's unit (bytes, percent, seconds to the limit).
fn rule_threshold(c: &RuleConfig, comparison: Comparison) -> Result<f64, String> {
    Ok(match (&c.value, comparison) {
        (RuleValue::Number(n), _) if n.is_finite() => *n,
        (RuleValue::Number(_), _) => return Err("value must be a finite number".into()),
        (RuleValue::Text(t), Comparison::TimeToLimit) => t
            .parse::<HumanDuration>()
            .map(|d| d.0.as_secs_f64())
            .map_err(|e| format!("value: {e}"))?,
        (RuleValue::Text(t), Comparison::GreaterThan | Comparison::LessThan) => t
            .parse::<ByteSize>()
            .map(|b| b.0 as f64)
            .map_err(|e| format!("value: {e}"))?,
        (RuleValue::Text(t), _) => {
            return Err(format!(
                "value {t:?} must be a number (percent) for {}",
                c.comparison
            ));
        }
    })
}

/// The rule's actions, each known and with its channel configured.
fn rule_actions(c: &RuleConfig, notify: &NotifySection) -> Result<Vec<String>, String> {
    let actions = c.actions.clone().unwrap_or_else(|| default_actions(notify));
    for a in &actions {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(format!("unknown action {a:?}: use {}", ACTIONS.join(", ")));
        }
        if a == "webhook" && notify.webhook.is_none() {
            return Err("action \"webhook\" needs [notify] webhook = \"URL\"".into());
        }
        if a == "command" && notify.command.is_none() {
            return Err("action \"command\" needs [notify] command = \"...\"".into());
        }
    }
    Ok(actions)
}

/// One event written to the `alerts` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    pub ts_ms: i64,
    pub rule: String,
    pub event: AlertEventKind,
    pub severity: String,
    pub series_id: i64,
    /// None when the series' facts could not be read.
    pub kind: Option<Kind>,
    pub target: String,
    pub pid: Option<i64>,
    pub metric: String,
    pub observed: Option<f64>,
    pub threshold: f64,
    pub comparison: String,
    pub message: String,
    #[serde(skip)]
    pub actions: Vec<String>,
}

/// Facts about a series the engine needs besides its values.
struct SeriesFacts {
    target_id: i64,
    kind: Kind,
    target: String,
    pid: Option<i64>,
    metric: String,
    unit: String,
    born_ms: Option<i64>,
    gone_ms: Option<i64>,
}

impl SeriesFacts {
    /// Whether `rule`'s selector (metric, kind, target, pid) takes this series, as the `:metric`,
    /// `:kind`, `:target` and `:pid` filters of its query do.
    fn selected_by(&self, rule: &Rule) -> bool {
        self.metric == rule.metric
            && rule.kind.as_ref().is_none_or(|k| *k == self.kind)
            && rule.target.as_ref().is_none_or(|t| *t == self.target)
            && rule.pid.is_none_or(|p| self.pid == Some(i64::from(p)))
    }
}

/// The facts of the series whose metric one of the rules reads: a whole host records 8,500
/// series, and all of them read into memory at every evaluation were its peak (12 MiB of rows and
/// map, by heaptrack) when the default rules read the 1,000 `rss` series among them.
fn series_facts(
    conn: &Connection,
    metrics: &[&str],
) -> Result<HashMap<i64, SeriesFacts>, StoreError> {
    let metrics = serde_json::to_string(metrics).unwrap_or_else(|_| "[]".into());
    let t = store::query_table(
        conn,
        "SELECT series_id, target_id, kind, target, pid, metric, unit, coalesce(start_time_ms, first_seen_ms) AS born_ms, gone_ms
         FROM series_info WHERE metric IN (SELECT value FROM json_each(:metrics))",
        &[("metrics", Cell::Text(metrics))],
    )?;
    Ok((0..t.rows.len())
        .filter_map(|r| {
            Some((
                t.get(r, "series_id").as_i64()?,
                SeriesFacts {
                    target_id: t.get(r, "target_id").as_i64()?,
                    kind: Kind::parse(t.get(r, "kind").as_str()?)?,
                    target: t.get(r, "target").as_str()?.to_string(),
                    pid: t.get(r, "pid").as_i64(),
                    metric: t.get(r, "metric").as_str()?.to_string(),
                    unit: t.get(r, "unit").as_str()?.to_string(),
                    born_ms: t.get(r, "born_ms").as_i64(),
                    gone_ms: t.get(r, "gone_ms").as_i64(),
                },
            ))
        })
        .collect())
}

/// Write the rules in force to the `rules` table, dropping the state of rules no longer there.
pub fn install(conn: &Connection, rules: &[Rule]) -> Result<(), StoreError> {
    let tx = store::Tx::begin(conn)?;
    tx.exec("DELETE FROM rules", &[])?;
    for r in rules {
        tx.exec(
            "INSERT INTO rules (name, metric, kind, target, pid, comparison, threshold, hysteresis,
                window_ms, for_ms, cooldown_ms, repeat_ms, warmup_ms, limit_value, severity, actions)
             VALUES (:name, :metric, :kind, :target, :pid, :comparison, :threshold, :hysteresis,
                :window_ms, :for_ms, :cooldown_ms, :repeat_ms, :warmup_ms, :limit, :severity, :actions)",
            &[
                ("name", Cell::Text(r.name.clone())),
                ("metric", Cell::Text(r.metric.clone())),
                ("kind", r.kind.map_or(Cell::Null, |k| Cell::Text(k.as_str().into()))),
                ("target", opt_text(&r.target)),
                ("pid", r.pid.map_or(Cell::Null, |p| Cell::Int(p as i64))),
                ("comparison", Cell::Text(r.comparison.as_str().into())),
                ("threshold", Cell::Real(r.threshold)),
                ("hysteresis", Cell::Real(r.hysteresis)),
                ("window_ms", Cell::Int(r.window_ms)),
                ("for_ms", Cell::Int(r.for_ms)),
                ("cooldown_ms", Cell::Int(r.cooldown_ms)),
                ("repeat_ms", r.repeat_ms.map_or(Cell::Null, Cell::Int)),
                ("warmup_ms", Cell::Int(r.warmup_ms)),
                ("limit", r.limit.map_or(Cell::Null, Cell::Real)),
                ("severity", Cell::Text(r.severity.clone())),
                ("actions", Cell::Text(serde_json::to_string(&r.actions).unwrap_or_default())),
            ],
        )?;
    }
    tx.exec(
        "DELETE FROM alert_state WHERE rule NOT IN (SELECT name FROM rules)",
        &[],
    )?;
    tx.commit()
}

fn opt_text(v: &Option<String>) -> Cell {
    v.as_ref().map_or(Cell::Null, |s| Cell::Text(s.clone()))
}

/// The number a rule watches on each series it matches, now.
fn observe(
    conn: &Connection,
    rule: &Rule,
    share: Share,
    now_ms: i64,
) -> Result<Vec<(i64, Option<f64>)>, AlertError> {
    let mut params: Vec<(&str, Cell)> = vec![("metric", Cell::Text(rule.metric.clone()))];
    if share != Share::ALL {
        // Only the trend query takes a share (only trend rules are sharded).
        params.push(("shard", Cell::Int(share.shard)));
        params.push(("shards", Cell::Int(share.shards)));
    }
    if let Some(k) = &rule.kind {
        params.push(("kind", Cell::Text(k.as_str().into())));
    }
    if let Some(t) = &rule.target {
        params.push(("target", Cell::Text(t.clone())));
    }
    if let Some(p) = rule.pid {
        params.push(("pid", Cell::Int(p as i64)));
    }
    if rule.comparison.windowed() {
        params.push(("window_ms", Cell::Int(rule.window_ms)));
    }
    let (query, column) = match rule.comparison {
        Comparison::GreaterThan | Comparison::LessThan => {
            params.push(("threshold", Cell::Real(rule.threshold)));
            ("threshold", "value")
        }
        Comparison::PercentChange => ("percent_change", "percent_change"),
        Comparison::Slope => {
            // The verdict itself must use the rule's slope: a 0.5 %/h rule needs `increasing` at
            // 0.5 %/h, not at the query's default.
            params.push(("min_pct_per_hour", Cell::Real(rule.threshold)));
            // The verdict needs to know only that a window holds min_samples, not how many more.
            params.push(("count_all", Cell::Int(0)));
            ("trend", "classification")
        }
        Comparison::TimeToLimit => {
            if let Some(l) = rule.limit {
                params.push(("limit", Cell::Real(l)));
            }
            params.push(("count_all", Cell::Int(0)));
            // The trend's projection: the robust slope, and only while `increasing`.
            ("trend", "seconds_to_limit")
        }
        Comparison::Increase => ("increase", "increase"),
    };
    let t = analysis::run(conn, query, &params, now_ms)?;
    Ok((0..t.rows.len())
        .filter_map(|r| {
            let sid = t.get(r, "series_id").as_i64()?;
            let observed = match rule.comparison {
                // The leak slope when the trend verdict is `increasing`, else 0 (no leak).
                Comparison::Slope => match t.get(r, column).as_str() {
                    Some("increasing") => t.get(r, "pct_per_hour").as_f64(),
                    Some("insufficient_data") => None,
                    _ => Some(0.0),
                },
                _ => t.get(r, column).as_f64(),
            };
            Some((sid, observed))
        })
        .collect())
}

/// When rules are evaluated: after the first tick at or past each point of a grid laid every
/// `every` from a run's first tick. A tick up to half a tick interval early counts as on the point
/// (ticks wake a little early or late, so a 1 s evaluation at 1 s ticks runs after every tick);
/// points a long tick or a clock step skipped are not made up. The recorder and `backtest` share
/// it, so a replay evaluates at the ticks the live recorder did.
#[derive(Debug, Clone)]
pub(crate) struct EvaluationGrid {
    every_ms: i64,
    slack_ms: i64,
    next_ms: Option<i64>,
}

impl EvaluationGrid {
    pub fn new(every: Duration, tick_interval: Duration) -> EvaluationGrid {
        EvaluationGrid {
            every_ms: (every.as_millis() as i64).max(1),
            slack_ms: tick_interval.as_millis() as i64 / 2,
            next_ms: None,
        }
    }

    /// Whether rules are due after the tick stamped `tick_ms` (the first tick always is).
    pub fn due(&self, tick_ms: i64) -> bool {
        self.next_ms.is_none_or(|n| tick_ms + self.slack_ms >= n)
    }

    /// Rules were evaluated after `tick_ms`: the next point is the first on the grid after it.
    pub fn evaluated(&mut self, tick_ms: i64) {
        let at = tick_ms + self.slack_ms;
        self.next_ms = Some(match self.next_ms {
            None => tick_ms + self.every_ms,
            Some(n) if at < n => n,
            Some(n) => n + ((at - n) / self.every_ms + 1) * self.every_ms,
        });
    }
}

/// How often a rule is observed again at most: a tenth of a trend slice of its window (a 1 h
/// window every 30 s, the slow leak's 6 h every 3 minutes; a threshold, a 10-minute change or a
/// counter's increase at every evaluation). A verdict over 12 slices of an hour does not move in
/// 10 s, and the trend queries are most of an evaluation's cost; between observations the last
/// value stands, so `for`, cooldown and resolution are decided at every evaluation as before.
pub fn observe_every_ms(rule: &Rule) -> i64 {
    if rule.comparison.windowed() {
        rule.window_ms / 120
    } else {
        0
    }
}

/// Evaluates the installed rules against the database after a tick, every `evaluation_interval`.
pub struct Engine {
    pub rules: Vec<Rule>,
    /// When each rule is next observed (`observe_every_ms`); absent: at the next evaluation.
    next_observation: HashMap<String, i64>,
    /// The evaluation interval (ms), when the caller evaluates on one: a trend rule observed
    /// only every few evaluations then observes a share of its series at each ([`Engine::shards`]).
    every_ms: Option<i64>,
    /// The share of its series each sharded rule observes next.
    next_shard: HashMap<String, i64>,
}

/// Which of a rule's series one evaluation observes: those of the targets whose id is `shard`
/// modulo `shards` (all of them when `shards` is 1). By target, not series: a target's series are
/// numbered together, so series ids of one metric come in strides (every ninth id on a host's
/// processes) and would all fall in one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    shard: i64,
    shards: i64,
}

impl Share {
    const ALL: Share = Share {
        shard: 0,
        shards: 1,
    };

    /// Whether this share holds the series of target `target_id` (the trend query's
    /// `target_id % :shards = :shard`).
    fn takes(&self, target_id: i64) -> bool {
        target_id % self.shards == self.shard
    }
}

impl Engine {
    /// An engine that observes every due rule over all its series at once (tests, one-off runs).
    pub fn new(rules: Vec<Rule>) -> Engine {
        Engine {
            rules,
            next_observation: HashMap::new(),
            every_ms: None,
            next_shard: HashMap::new(),
        }
    }

    /// An engine evaluated every `every` (the recorder, and backtest replaying it). A trend rule
    /// is observed every `observe_every_ms` as with [`Engine::new`], but spread: a share of its
    /// series at each evaluation in between, so a host's thousand processes never make one
    /// evaluation hold the tick loop for seconds (each series is still observed as often).
    pub fn evaluated_every(rules: Vec<Rule>, every: Duration) -> Engine {
        Engine {
            every_ms: Some((every.as_millis() as i64).max(1)),
            ..Engine::new(rules)
        }
    }

    /// Into how many shares a rule's series are spread: 1 but for the trend rules (the costly
    /// queries) observed less often than every evaluation.
    fn shards(&self, rule: &Rule) -> i64 {
        let trend = matches!(rule.comparison, Comparison::Slope | Comparison::TimeToLimit);
        match self.every_ms {
            Some(every) if trend => (observe_every_ms(rule) / every).max(1),
            _ => 1,
        }
    }

    /// The rules observed at this evaluation, each with the share of its series it observes; a
    /// sharded rule moves on to its next share.
    fn due_now(&mut self, now_ms: i64) -> Vec<(&Rule, Share)> {
        let mut due = Vec::new();
        for rule in &self.rules {
            let shards = self.shards(rule);
            if shards > 1 {
                let next = self.next_shard.entry(rule.name.clone()).or_insert(0);
                due.push((
                    rule,
                    Share {
                        shard: *next,
                        shards,
                    },
                ));
                *next = (*next + 1) % shards;
            } else if self
                .next_observation
                .get(&rule.name)
                .is_none_or(|&n| now_ms >= n)
            {
                due.push((rule, Share::ALL));
            }
        }
        due
    }

    /// Observe the rules that are due (`observe_every_ms`), update `alert_state`, and write the
    /// events `alerts_due` returns.
    pub fn evaluate(
        &mut self,
        conn: &Connection,
        now_ms: i64,
    ) -> Result<Vec<AlertEvent>, AlertError> {
        let metrics: Vec<&str> = self.rules.iter().map(|r| r.metric.as_str()).collect();
        let facts = series_facts(conn, &metrics)?;
        let due = self.due_now(now_ms);
        let observations = observe_all(&due, conn, &facts, now_ms)?;
        let tx = store::Tx::begin(conn)?;
        store_observations(&due, &tx, &observations, now_ms)?;
        let observed: Vec<(String, i64)> = due
            .iter()
            .map(|(r, _)| (r.name.clone(), now_ms + observe_every_ms(r)))
            .collect();
        // `for`: when the condition started to hold; a suppressed episode ends when it stops.
        tx.exec(
            "UPDATE alert_state
             SET pending_since_ms = CASE WHEN c.holds THEN coalesce(alert_state.pending_since_ms, :now) END,
                 suppressed_since_ms = CASE WHEN c.holds THEN alert_state.suppressed_since_ms END
             FROM alert_conditions AS c
             WHERE c.rule = alert_state.rule AND c.series_id = alert_state.series_id",
            &[("now", Cell::Int(now_ms))],
        )?;
        let due = analysis::run(&tx, "alerts_due", &[], now_ms)?;
        let mut events = Vec::new();
        for r in 0..due.rows.len() {
            let (Some(rule_name), Some(sid), Some(event)) = (
                due.get(r, "rule").as_str(),
                due.get(r, "series_id").as_i64(),
                due.get(r, "event").as_str().and_then(AlertEventKind::parse),
            ) else {
                continue;
            };
            let Some(rule) = self.rules.iter().find(|x| x.name == rule_name) else {
                continue;
            };
            let observed = due.get(r, "observed").as_f64();
            let f = facts.get(&sid);
            events.push(emit(&tx, rule, sid, event, observed, f, now_ms)?);
        }
        // States with nothing to remember (no value, not pending, not firing) are dropped.
        tx.exec(
            "DELETE FROM alert_state WHERE observed IS NULL AND firing_since_ms IS NULL
               AND pending_since_ms IS NULL AND suppressed_since_ms IS NULL",
            &[],
        )?;
        tx.commit()?;
        self.next_observation.extend(observed);
        Ok(events)
    }
}

/// Each due rule's value per series it selects, `None` while the target warms up, is gone, or
/// the query has none.
fn observe_all(
    rules: &[(&Rule, Share)],
    conn: &Connection,
    facts: &HashMap<i64, SeriesFacts>,
    now_ms: i64,
) -> Result<Vec<(String, i64, Option<f64>)>, AlertError> {
    let mut observations = Vec::new();
    for &(rule, share) in rules {
        // A rule that no recorded series matches (a cgroup rule while no cgroup is recorded), or
        // whose share this time holds none of its series (a trend rule over one process, at two
        // evaluations in three), would get no rows: its query is neither run nor, at the first
        // evaluation, prepared. (Even a judgment of nothing opens the trend query's 768 cursors:
        // about 0.1 ms.)
        if !facts
            .values()
            .any(|f| f.selected_by(rule) && share.takes(f.target_id))
        {
            continue;
        }
        for (sid, observed) in observe(conn, rule, share, now_ms)? {
            let Some(f) = facts.get(&sid) else {
                continue;
            };
            let window = if rule.comparison.windowed() {
                rule.window_ms
            } else {
                0
            };
            let settled = f
                .born_ms
                .is_none_or(|born| born + rule.warmup_ms + window <= now_ms || rule.warmup_ms == 0);
            let alive = f.gone_ms.is_none_or(|gone| gone > now_ms);
            observations.push((
                rule.name.clone(),
                sid,
                observed.filter(|_| settled && alive),
            ));
        }
    }
    Ok(observations)
}

/// This evaluation's values into `alert_state` for the rules observed (a rule's series in the
/// share observed without one get NULL); the others keep their last.
fn store_observations(
    rules: &[(&Rule, Share)],
    tx: &store::Tx,
    observations: &[(String, i64, Option<f64>)],
    now_ms: i64,
) -> Result<(), AlertError> {
    for (rule, share) in rules {
        tx.exec(
            "UPDATE alert_state SET observed = NULL, evaluated_ms = :now
             WHERE rule = :rule
               AND (:shards = 1
                    OR series_id IN (SELECT id FROM series WHERE target_id % :shards = :shard))",
            &[
                ("now", Cell::Int(now_ms)),
                ("rule", Cell::Text(rule.name.clone())),
                ("shards", Cell::Int(share.shards)),
                ("shard", Cell::Int(share.shard)),
            ],
        )?;
    }
    for (rule, sid, observed) in observations {
        tx.exec(
            "INSERT INTO alert_state (rule, series_id, evaluated_ms, observed)
                 VALUES (:rule, :sid, :now, :observed)
                 ON CONFLICT (rule, series_id) DO UPDATE
                 SET evaluated_ms = excluded.evaluated_ms, observed = excluded.observed",
            &[
                ("rule", Cell::Text(rule.clone())),
                ("sid", Cell::Int(*sid)),
                ("now", Cell::Int(now_ms)),
                ("observed", observed.map_or(Cell::Null, Cell::Real)),
            ],
        )?;
    }
    Ok(())
}

/// One event `alerts_due` decided: the rule state moves on, and the event is written to `alerts`.
fn emit(
    tx: &store::Tx,
    rule: &Rule,
    sid: i64,
    event: AlertEventKind,
    observed: Option<f64>,
    f: Option<&SeriesFacts>,
    now_ms: i64,
) -> Result<AlertEvent, AlertError> {
    let state_update = match event {
        AlertEventKind::Firing => {
            "UPDATE alert_state SET firing_since_ms = :now, last_notified_ms = :now, suppressed_since_ms = NULL"
        }
        AlertEventKind::Repeat => "UPDATE alert_state SET last_notified_ms = :now",
        AlertEventKind::Resolved => {
            "UPDATE alert_state SET firing_since_ms = NULL, pending_since_ms = NULL, last_notified_ms = :now"
        }
        AlertEventKind::Suppressed => "UPDATE alert_state SET suppressed_since_ms = :now",
    };
    tx.exec(
        &format!("{state_update} WHERE rule = :rule AND series_id = :sid"),
        &[
            ("now", Cell::Int(now_ms)),
            ("rule", Cell::Text(rule.name.clone())),
            ("sid", Cell::Int(sid)),
        ],
    )?;
    let ev = AlertEvent {
        id: 0,
        ts_ms: now_ms,
        rule: rule.name.clone(),
        event,
        severity: rule.severity.clone(),
        series_id: sid,
        kind: f.map(|f| f.kind),
        target: f.map_or(String::new(), |f| f.target.clone()),
        pid: f.and_then(|f| f.pid),
        metric: f.map_or(rule.metric.clone(), |f| f.metric.clone()),
        observed,
        threshold: rule.threshold,
        comparison: rule.comparison.as_str().into(),
        message: describe(rule, event, observed, f, now_ms),
        actions: rule.actions.clone(),
    };
    let id = tx.exec_insert(
        "INSERT INTO alerts (ts_ms, rule, series_id, event, kind, target, pid, metric, observed,
            threshold, comparison, severity, message)
         VALUES (:ts, :rule, :sid, :event, :kind, :target, :pid, :metric, :observed,
            :threshold, :comparison, :severity, :message)",
        &[
            ("ts", Cell::Int(ev.ts_ms)),
            ("rule", Cell::Text(ev.rule.clone())),
            ("sid", Cell::Int(sid)),
            ("event", Cell::Text(ev.event.as_str().into())),
            (
                "kind",
                ev.kind
                    .map_or(Cell::Null, |k| Cell::Text(k.as_str().into())),
            ),
            ("target", Cell::Text(ev.target.clone())),
            ("pid", ev.pid.map_or(Cell::Null, Cell::Int)),
            ("metric", Cell::Text(ev.metric.clone())),
            ("observed", ev.observed.map_or(Cell::Null, Cell::Real)),
            ("threshold", Cell::Real(ev.threshold)),
            ("comparison", Cell::Text(ev.comparison.clone())),
            ("severity", Cell::Text(ev.severity.clone())),
            ("message", Cell::Text(ev.message.clone())),
        ],
    )?;
    Ok(AlertEvent { id, ..ev })
}

/// The alert's sentence: what, whose, how much, against what; a resolution says why it resolved
/// (back under the threshold, no longer heading for the limit, the target gone), not the firing's
/// words.
fn describe(
    rule: &Rule,
    event: AlertEventKind,
    observed: Option<f64>,
    f: Option<&SeriesFacts>,
    now_ms: i64,
) -> String {
    let who = match f {
        Some(f) if f.pid.is_some() => format!(
            "{} of {} {} (pid {})",
            f.metric,
            f.kind,
            f.target,
            f.pid.unwrap_or(0)
        ),
        Some(f) => format!("{} of {} {}", f.metric, f.kind, f.target),
        None => rule.metric.clone(),
    };
    let condition = match observed {
        Some(v) if event == AlertEventKind::Resolved => cleared(rule, v, f),
        Some(v) => holds(rule, v, f),
        None => no_value(rule, f, now_ms),
    };
    let suffix = match event {
        AlertEventKind::Resolved => " — resolved",
        AlertEventKind::Suppressed => " — held back by the cooldown",
        AlertEventKind::Repeat => " — still firing",
        AlertEventKind::Firing => "",
    };
    format!("{}: {who} {condition}{suffix}", rule.name)
}

/// The rule's window in words ("1h").
fn window_of(rule: &Rule) -> HumanDuration {
    HumanDuration(Duration::from_millis(rule.window_ms.max(0) as u64))
}

/// The condition as it holds: the firing (and repeat, suppressed) wording.
fn holds(rule: &Rule, v: f64, f: Option<&SeriesFacts>) -> String {
    let value = |x: f64| format_value(f.map_or("count", |f| f.unit.as_str()), x);
    let window = window_of(rule);
    let secs = crate::units::format_duration_rough;
    match rule.comparison {
        Comparison::GreaterThan => format!("is {} (above {})", value(v), value(rule.threshold)),
        Comparison::LessThan => format!("is {} (below {})", value(v), value(rule.threshold)),
        Comparison::PercentChange => format!(
            "changed {v:+.1} % in {window} (threshold {:.1} %)",
            rule.threshold
        ),
        Comparison::Slope => format!(
            "grows {v:.2} %/h over {window} (trend; threshold {:.2} %/h)",
            rule.threshold
        ),
        Comparison::Increase => format!(
            "rose by {} in {window} (threshold {})",
            value(v),
            value(rule.threshold)
        ),
        Comparison::TimeToLimit => format!(
            "reaches its limit in {} at its {window} trend (threshold {})",
            secs(v),
            secs(rule.threshold)
        ),
    }
}

/// Why a firing alert resolved while its value is still known.
fn cleared(rule: &Rule, v: f64, f: Option<&SeriesFacts>) -> String {
    let value = |x: f64| format_value(f.map_or("count", |f| f.unit.as_str()), x);
    let window = window_of(rule);
    let secs = crate::units::format_duration_rough;
    match rule.comparison {
        Comparison::GreaterThan => format!(
            "is back down to {}, no longer above {}",
            value(v),
            value(rule.threshold)
        ),
        Comparison::LessThan => format!(
            "is back up to {}, no longer below {}",
            value(v),
            value(rule.threshold)
        ),
        Comparison::PercentChange => format!(
            "changed {v:+.1} % in {window}, under the {:.1} % threshold",
            rule.threshold
        ),
        // Not `increasing` any more is observed as 0 %/h.
        Comparison::Slope if v <= 0.0 => {
            format!("no longer grows: its {window} trend is not increasing")
        }
        Comparison::Slope => format!(
            "grows {v:.2} %/h over {window}, under the {:.2} %/h threshold",
            rule.threshold
        ),
        Comparison::Increase => format!(
            "rose by {} in {window}, under the {} threshold",
            value(v),
            value(rule.threshold)
        ),
        Comparison::TimeToLimit => format!(
            "would reach its limit in {} at its {window} trend, later than the {} threshold",
            secs(v),
            secs(rule.threshold)
        ),
    }
}

/// Why there is no value: the target is gone, or (alive) the rule's query has none to give.
fn no_value(rule: &Rule, f: Option<&SeriesFacts>, now_ms: i64) -> String {
    let window = window_of(rule);
    match f {
        Some(f) if f.gone_ms.is_some_and(|g| g <= now_ms) => match f.kind {
            Kind::Cgroup => "has no current value: the cgroup was removed".to_string(),
            _ => "has no current value: the process exited".to_string(),
        },
        _ => match rule.comparison {
            Comparison::TimeToLimit => {
                format!("is no longer heading for its limit: its {window} trend is not increasing")
            }
            Comparison::Slope => {
                format!("has too little history over {window} to judge a trend")
            }
            _ => "has no fresh value (no recent sample)".to_string(),
        },
    }
}

#[cfg(test)]
mod tests;

//! What state each target is in, gathered one way for every reader: `memtrail status`, the API's
//! status document and the report read a series' verdict through `Trend` (typed from the `trend`
//! query's rows, with its words in `Trend::words`), and status and the API build their documents
//! from `Overview::gather`, so they cannot disagree. Rendering lives in `present`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Deserializer, Serialize};

use crate::analyze::analysis::{self, AnalysisError};
use crate::model::{Cell, EventKind, Kind, Table};
use crate::store::{self, RunStatus, SeriesStatus};
use crate::units::{format_bytes, format_duration_rough, now_ms};

/// The `trend` query's verdict on a series (its `classification` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    InsufficientData,
    Step,
    Increasing,
    LevellingOff,
    Fluctuating,
    Decreasing,
    Stable,
}

impl Verdict {
    pub const ALL: [Verdict; 7] = [
        Verdict::InsufficientData,
        Verdict::Step,
        Verdict::Increasing,
        Verdict::LevellingOff,
        Verdict::Fluctuating,
        Verdict::Decreasing,
        Verdict::Stable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::InsufficientData => "insufficient_data",
            Verdict::Step => "step",
            Verdict::Increasing => "increasing",
            Verdict::LevellingOff => "levelling_off",
            Verdict::Fluctuating => "fluctuating",
            Verdict::Decreasing => "decreasing",
            Verdict::Stable => "stable",
        }
    }
}

/// SQLite's 0/1 (or NULL) as a bool.
fn int_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.is_some_and(|v| v != 0))
}

/// One row of the `trend` query: a series' robust fit over the window and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub series_id: i64,
    pub classification: Verdict,
    /// The slice levels' mean, the base of the percentages.
    pub mean: Option<f64>,
    pub slope_per_hour: Option<f64>,
    pub slope_low_per_hour: Option<f64>,
    pub slope_high_per_hour: Option<f64>,
    pub pct_per_hour: Option<f64>,
    pub r2: Option<f64>,
    pub mk_z: Option<f64>,
    pub step_pct: Option<f64>,
    pub early_pct_per_hour: Option<f64>,
    pub late_pct_per_hour: Option<f64>,
    #[serde(deserialize_with = "int_bool", default)]
    pub accelerating: bool,
    /// Why there is no verdict (`insufficient_data`).
    pub reason: Option<String>,
    /// Only while `increasing`: when the fitted line reaches the limit, with its range.
    pub seconds_to_limit: Option<f64>,
    pub seconds_to_limit_low: Option<f64>,
    pub seconds_to_limit_high: Option<f64>,
    pub limit_at_ms: Option<i64>,
}

impl Trend {
    /// The `trend` query's rows, by series.
    pub(crate) fn by_series(table: &Table) -> Result<BTreeMap<i64, Trend>, AnalysisError> {
        let rows: Vec<Trend> = table.typed_rows().map_err(|e| AnalysisError::Rows {
            query: "trend".into(),
            source: e,
        })?;
        Ok(rows.into_iter().map(|t| (t.series_id, t)).collect())
    }

    /// A slope bound as a percentage of the level per hour.
    pub(crate) fn pct_of_mean(&self, slope: Option<f64>) -> Option<f64> {
        let mean = self.mean.filter(|m| *m != 0.0)?;
        Some(slope? * 100.0 / mean.abs())
    }

    /// A leak is an increasing series of bytes; other units just grow.
    pub fn leaks(&self, unit: &str) -> bool {
        self.classification == Verdict::Increasing && unit == "bytes"
    }

    /// The verdict in one sentence; every verdict `trend.sql` gives has its own.
    pub fn words(&self, unit: &str) -> String {
        let limit = self.seconds_to_limit.map_or(String::new(), |secs| {
            format!(", reaches its limit in {}", format_duration_rough(secs))
        });
        let pct = self.pct_per_hour.unwrap_or(0.0);
        let range = match (
            self.pct_of_mean(self.slope_low_per_hour),
            self.pct_of_mean(self.slope_high_per_hour),
        ) {
            (Some(lo), Some(hi)) => format!(" (95 % range {lo:+.2} to {hi:+.2})"),
            _ => String::new(),
        };
        let f = |x: Option<f64>| x.unwrap_or(0.0);
        match self.classification {
            Verdict::Increasing if unit == "bytes" => {
                format!("leak suspected: {pct:+.2} %/h{range}{limit}")
            }
            Verdict::Increasing => format!("growing: {pct:+.2} %/h{range}{limit}"),
            Verdict::Decreasing => format!("shrinking: {pct:+.2} %/h{range}"),
            Verdict::Step => format!("one-time step of {:+.1} %, flat after it", f(self.step_pct)),
            Verdict::LevellingOff => format!(
                "growth levelling off: {:+.2} %/h early, {:+.2} %/h late",
                f(self.early_pct_per_hour),
                f(self.late_pct_per_hour)
            ),
            Verdict::Fluctuating => "fluctuating inside the range it already spanned".into(),
            Verdict::Stable => "stable".into(),
            Verdict::InsufficientData => match &self.reason {
                Some(why) => format!("not enough data for a verdict: {why}"),
                None => "not enough data for a verdict".into(),
            },
        }
    }
}

/// When a rising series' growth began: the best breakpoint between a flat and a rising segment
/// (an `onset` row), with its 95 % range, and the event nearest before it that could explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Onset {
    pub onset_ms: i64,
    pub onset_low_ms: i64,
    pub onset_high_ms: i64,
    pub level_before: Option<f64>,
    pub pct_per_hour: Option<f64>,
    #[serde(skip_serializing)]
    pub target: String,
    #[serde(skip_serializing)]
    pub pid: Option<i64>,
    /// The latest event (not an alert) at or before the onset's range ends, within a day.
    #[serde(default)]
    pub after_event: Option<NearEvent>,
}

/// An event near an onset: what it was and how long before the onset (negative: after it, inside
/// the onset's range).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearEvent {
    pub ts_ms: i64,
    pub kind: EventKind,
    pub label: String,
    pub before_onset_ms: i64,
}

/// An `events` row.
#[derive(Debug, Clone, Deserialize)]
struct EventRow {
    ts_ms: i64,
    kind: String,
    label: String,
}

impl Onset {
    /// The onset of one series over the `window_ms` before `now_ms` (None when it does not rise
    /// after any breakpoint), told relative to the event nearest before it.
    pub(crate) fn of_series(
        conn: &Connection,
        series_id: i64,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Onset>, AnalysisError> {
        let t = analysis::run(
            conn,
            "onset",
            &[
                ("series_id", Cell::Int(series_id)),
                ("window_ms", Cell::Int(window_ms)),
            ],
            now_ms,
        )?;
        let Some(mut onset) = typed::<Onset>("onset", &t)?.into_iter().next() else {
            return Ok(None);
        };
        onset.after_event = onset.nearest_event(conn, now_ms)?;
        Ok(Some(onset))
    }

    /// The latest event of this target (or the host) that could cause a change, from a day
    /// before the onset to the end of its 95 % range.
    fn nearest_event(
        &self,
        conn: &Connection,
        now_ms: i64,
    ) -> Result<Option<NearEvent>, AnalysisError> {
        let t = analysis::run(
            conn,
            "events",
            &[
                ("from_ms", Cell::Int(self.onset_ms - 86_400_000)),
                ("to_ms", Cell::Int(self.onset_high_ms)),
                ("target", Cell::Text(self.target.clone())),
                ("pid", self.pid.map_or(Cell::Null, Cell::Int)),
            ],
            now_ms,
        )?;
        let near = typed::<EventRow>("events", &t)?
            .into_iter()
            .filter_map(|e| Some((EventKind::parse(&e.kind)?, e)))
            .rfind(|(k, _)| k.can_cause())
            .map(|(kind, e)| NearEvent {
                ts_ms: e.ts_ms,
                kind,
                label: e.label,
                before_onset_ms: self.onset_ms - e.ts_ms,
            });
        Ok(near)
    }

    /// "growing since 2026-12-07 14:05:00 UTC (95 % range 13:58 to 14:20), 3m after "deploy v1.4"".
    pub fn words(&self) -> String {
        let hm = |ms: i64| {
            crate::units::format_time(ms)
                .get(11..16)
                .unwrap_or("")
                .to_string()
        };
        let mut words = format!(
            "growing since {} (95 % range {} to {})",
            crate::units::format_time(self.onset_ms),
            hm(self.onset_low_ms),
            hm(self.onset_high_ms)
        );
        if let Some(e) = &self.after_event {
            // The onset sits on a slice grid: minutes are as precise as it is.
            let span = |ms: i64| {
                let secs = ms.unsigned_abs() as f64 / 1000.0;
                format_duration_rough(if secs >= 60.0 {
                    (secs / 60.0).round() * 60.0
                } else {
                    secs
                })
            };
            let _ = match e.before_onset_ms {
                0 => write!(words, ", at {:?}", e.label),
                d if d > 0 => write!(words, ", {} after {:?}", span(d), e.label),
                d => write!(
                    words,
                    ", {} before {:?} (inside the range)",
                    span(d),
                    e.label
                ),
            };
        }
        words
    }
}

/// What a recurring pattern is (`patterns.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternKind {
    /// A periodic swing (autocorrelation of the detrended slice levels).
    Cycle,
    /// Rises cut by sudden drops at a regular interval.
    Sawtooth,
    /// A rise at the same time each day.
    Daily,
}

/// Growth that repeats on a schedule (a `patterns` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    pub series_id: i64,
    pub pattern: PatternKind,
    pub period_ms: i64,
    pub amplitude: Option<f64>,
    pub amplitude_pct: Option<f64>,
    pub strength: Option<f64>,
    pub at_hour: Option<i64>,
    #[serde(skip_serializing)]
    pub unit: String,
}

/// The metrics whose patterns are looked for: what speaks for a process, a cgroup, the system.
pub const PATTERN_METRICS: [&str; 3] = ["rss", "usage", "mem_used"];

impl Pattern {
    /// The patterns of every series of the `PATTERN_METRICS`, by series: over the query's
    /// default windows, or over `window_ms` (a report's range) for all three patterns.
    pub(crate) fn by_series(
        conn: &Connection,
        now_ms: i64,
        window_ms: Option<i64>,
    ) -> Result<BTreeMap<i64, Vec<Pattern>>, AnalysisError> {
        let mut all = BTreeMap::new();
        for metric in PATTERN_METRICS {
            let mut given = vec![("metric", Cell::Text(metric.to_string()))];
            if let Some(w) = window_ms {
                given.extend([("window_ms", Cell::Int(w)), ("days_ms", Cell::Int(w))]);
            }
            let t = analysis::run(conn, "patterns", &given, now_ms)?;
            all.append(&mut grouped("patterns", &t, |p: &Pattern| p.series_id)?);
        }
        Ok(all)
    }

    /// "repeats: a cycle of 2h, ±10.0 %", "repeats: a saw-tooth every 20m, rising 30.0 MiB (26 %)
    /// each time", "repeats: rises daily from 02:00 UTC by 20 % (3 days)".
    pub fn words(&self) -> String {
        // The period is known to a slice or a grid step: to 5 minutes from 100 minutes on, to a
        // minute from 10.
        let minutes = self.period_ms as f64 / 60_000.0;
        let period = format_duration_rough(
            60.0 * match minutes {
                m if m >= 100.0 => (m / 5.0).round() * 5.0,
                m if m >= 10.0 => m.round(),
                m => m,
            },
        );
        let pct = self
            .amplitude_pct
            .map_or(String::new(), |p| format!("{p:.0} %"));
        let size = self
            .amplitude
            .map_or(String::new(), |a| crate::units::format_value(&self.unit, a));
        match self.pattern {
            PatternKind::Cycle => format!("repeats: a cycle of {period}, ±{pct}"),
            PatternKind::Sawtooth => {
                format!("repeats: a saw-tooth every {period}, rising {size} ({pct}) each time")
            }
            PatternKind::Daily => format!(
                "repeats: rises daily from {:02}:00 UTC by {size} ({pct}, {} days)",
                self.at_hour.unwrap_or(0),
                self.strength.unwrap_or(0.0)
            ),
        }
    }
}

/// One kind of memory inside a process's resident set (an `attribution` row): how much it moved
/// over the window, and its share of the whole's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    #[serde(skip_serializing)]
    pub whole_series_id: i64,
    /// `kind` (rss_anon, rss_file, rss_shmem) or `mapping` (a `map_rss:` group from smaps).
    pub dimension: String,
    pub part: String,
    pub change: f64,
    pub change_per_hour: Option<f64>,
    pub share_pct: Option<f64>,
}

impl Part {
    /// An `attribution` result's parts, by the series of their whole (rss or tree_rss).
    pub(crate) fn by_whole(table: &Table) -> Result<BTreeMap<i64, Vec<Part>>, AnalysisError> {
        grouped("attribution", table, |p: &Part| p.whole_series_id)
    }

    /// What the kernel's name for the part means to the person fixing the leak.
    fn meaning(&self) -> &'static str {
        match self.part.trim_start_matches("tree_") {
            "rss_anon" => "anonymous memory: heap, stacks, anonymous mappings",
            "rss_file" => "file-backed pages: mapped files, page cache the kernel can reclaim",
            "rss_shmem" => "shared memory",
            _ => "memory",
        }
    }
}

/// How a process's memory follows one of its custom metrics (a `regression` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    #[serde(skip_serializing)]
    pub series_id: i64,
    pub metric: String,
    pub pairs: i64,
    pub bytes_per_unit: Option<f64>,
    pub r2: Option<f64>,
    pub metric_per_hour: Option<f64>,
}

impl Track {
    /// A `regression` result's lines, by the memory series they explain (best R² first).
    pub(crate) fn by_memory(table: &Table) -> Result<BTreeMap<i64, Vec<Track>>, AnalysisError> {
        grouped("regression", table, |t: &Track| t.series_id)
    }
}

/// The R² a custom metric's line needs before the diagnosis says the memory tracks it.
const MIN_TRACK_R2: f64 = 0.8;

/// What a rising rss grows in: every part (largest change first), the custom metrics it was
/// regressed on, and a sentence naming the kind of memory, the mapping and the metric it
/// follows best.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub parts: Vec<Part>,
    pub tracks: Vec<Track>,
    pub words: String,
}

impl Diagnosis {
    /// The diagnosis of a whole whose verdict rises (increasing, levelling off); `None` for any
    /// other verdict, or when neither a part grew nor a metric tracks it.
    pub(crate) fn of(
        trend: Option<&Trend>,
        parts: Option<Vec<Part>>,
        tracks: Option<Vec<Track>>,
    ) -> Option<Diagnosis> {
        let rising = trend.is_some_and(|t| {
            matches!(
                t.classification,
                Verdict::Increasing | Verdict::LevellingOff
            )
        });
        if !rising {
            return None;
        }
        let (parts, tracks) = (parts.unwrap_or_default(), tracks.unwrap_or_default());
        let words = [
            Self::kind_words(&parts),
            Self::mapping_words(&parts),
            Self::track_words(&tracks),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        if words.is_empty() {
            return None;
        }
        Some(Diagnosis {
            parts,
            tracks,
            words: words.join("; "),
        })
    }

    /// The part of `dimension` that grew most (the query orders by change).
    fn top<'a>(parts: &'a [Part], dimension: &str) -> Option<&'a Part> {
        parts
            .iter()
            .find(|p| p.dimension == dimension && p.change > 0.0)
    }

    fn growth(p: &Part) -> String {
        let rate = p
            .change_per_hour
            .map_or(String::new(), |r| format!(" {}/h", format_signed_bytes(r)));
        let share = p
            .share_pct
            .map_or(String::new(), |s| format!(", {s:.0} % of the growth"));
        format!("{rate}{share}")
    }

    fn kind_words(parts: &[Part]) -> Option<String> {
        let p = Self::top(parts, "kind")?;
        Some(format!(
            "grows in {} ({}):{}",
            p.part,
            p.meaning(),
            Self::growth(p)
        ))
    }

    fn mapping_words(parts: &[Part]) -> Option<String> {
        let p = Self::top(parts, "mapping")?;
        let group = p.part.trim_start_matches("map_rss:");
        Some(format!("in the mapping {group}:{}", Self::growth(p)))
    }

    /// The custom metric the memory follows best: a rising line with R² of at least 0.8.
    fn track_words(tracks: &[Track]) -> Option<String> {
        let t = tracks
            .iter()
            .filter(|t| t.bytes_per_unit.is_some_and(|b| b > 0.0))
            .filter(|t| t.r2.is_some_and(|r| r >= MIN_TRACK_R2))
            .max_by(|a, b| a.r2.unwrap_or(0.0).total_cmp(&b.r2.unwrap_or(0.0)))?;
        let per_hour = t
            .metric_per_hour
            .map_or(String::new(), |h| format!(", {} {h:+.0}/h", t.metric));
        Some(format!(
            "tracks {}: {} per unit, R\u{b2} {:.2}{per_hour}",
            t.metric,
            format_bytes(t.bytes_per_unit.unwrap_or(0.0)),
            t.r2.unwrap_or(0.0)
        ))
    }
}

fn format_signed_bytes(v: f64) -> String {
    let sign = if v < 0.0 { "-" } else { "+" };
    format!("{sign}{}", format_bytes(v.abs()))
}

/// The words for a series without a trend row at all.
pub(crate) const NO_VERDICT: &str = "not enough data for a verdict";

/// A cgroup's usage against its memory limit. A group without a limit of its own (`max`) is
/// measured against the host's memory, and `own_limit` is false to say so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LimitStatus {
    pub target: String,
    pub usage: f64,
    pub limit: Option<f64>,
    pub own_limit: bool,
    pub percent: Option<f64>,
    pub summary: String,
}

impl LimitStatus {
    /// From a group's latest `usage`, `limit` and `has_limit` values.
    pub fn of(target: &str, latest: impl Fn(&str) -> Option<f64>) -> Option<LimitStatus> {
        let usage = latest("usage")?;
        let limit = latest("limit").filter(|l| *l > 0.0);
        let own_limit = latest("has_limit").is_some_and(|h| h > 0.0);
        let percent = limit.map(|l| usage * 100.0 / l);
        let summary = match (limit.zip(percent), own_limit) {
            (Some((l, pct)), true) => format!(
                "usage {} of its {} limit ({pct:.1} %)",
                format_bytes(usage),
                format_bytes(l)
            ),
            (Some((l, pct)), false) => format!(
                "usage {}; no memory limit of its own (max): measured against the host's {} ({pct:.1} %)",
                format_bytes(usage),
                format_bytes(l)
            ),
            (None, _) => format!("usage {}; no limit known", format_bytes(usage)),
        };
        Some(LimitStatus {
            target: target.to_string(),
            usage,
            limit,
            own_limit,
            percent,
            summary,
        })
    }
}

fn limits_of(series: &[SeriesStatus]) -> Vec<LimitStatus> {
    let mut targets: Vec<&str> = series
        .iter()
        .filter(|s| s.kind == Kind::Cgroup)
        .map(|s| s.target.as_str())
        .collect();
    targets.dedup();
    targets
        .into_iter()
        .filter_map(|t| {
            LimitStatus::of(t, |metric| {
                series
                    .iter()
                    .find(|s| s.kind == Kind::Cgroup && s.target == t && s.metric == metric)
                    .map(|s| s.latest)
            })
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub(crate) struct RecorderState {
    /// The newest run is open and its process is alive.
    pub running: bool,
    #[serde(flatten)]
    pub run: RunStatus,
}

/// A rule's state on one series (a row of the `rule_states` query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStateKind {
    Ok,
    Pending,
    Firing,
    Cooldown,
}

impl RuleStateKind {
    pub const ALL: [RuleStateKind; 4] = [
        RuleStateKind::Ok,
        RuleStateKind::Pending,
        RuleStateKind::Firing,
        RuleStateKind::Cooldown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleStateKind::Ok => "ok",
            RuleStateKind::Pending => "pending",
            RuleStateKind::Firing => "firing",
            RuleStateKind::Cooldown => "cooldown",
        }
    }
}

/// A rule that watches no series yet has one row, its series columns NULL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RuleState {
    pub rule: String,
    pub severity: String,
    pub comparison: String,
    pub threshold: Option<f64>,
    pub series_id: Option<i64>,
    pub kind: Option<Kind>,
    pub target: Option<String>,
    pub pid: Option<i64>,
    pub metric: Option<String>,
    pub observed: Option<f64>,
    pub state: RuleStateKind,
    pub pending_since_ms: Option<i64>,
    pub firing_since_ms: Option<i64>,
    pub cooldown_until_ms: Option<i64>,
}

/// A cleanup run (a row of the `cleanups` query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CleanupRun {
    pub id: i64,
    pub trigger: String,
    pub rule: Option<String>,
    pub level: String,
    pub target: String,
    pub pid: i64,
    pub actions: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub outcome: String,
    pub exit_code: Option<i64>,
    pub http_status: Option<i64>,
    pub rss_before: Option<f64>,
    pub rss_after: Option<f64>,
    pub freed_bytes: Option<f64>,
    pub freed_pct: Option<f64>,
}

/// How much history the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct History {
    pub rows: i64,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    pub series: i64,
}

/// A series' latest state: its figures over the window, its trend verdict, its recent growth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SeriesState {
    #[serde(flatten)]
    pub status: SeriesStatus,
    pub trend: Option<Trend>,
    /// The `percent_change` query's robust growth over its 10-minute window.
    pub percent_change: Option<f64>,
    /// The verdict in words (`Trend::words`), or why there is none.
    pub verdict: String,
    /// For a rising rss or tree_rss: which kind of memory grows (the `attribution` query).
    pub diagnosis: Option<Diagnosis>,
    /// For a leaking series: since when it grows (the `onset` query over the last 24 h).
    pub onset: Option<Onset>,
    /// Growth that repeats on a schedule (the `patterns` query), for `PATTERN_METRICS`.
    pub patterns: Vec<Pattern>,
}

/// Everything a status reader shows, from one pass over the database.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub database: String,
    pub generated_ms: i64,
    pub window_ms: i64,
    pub recorder: Option<RecorderState>,
    /// The newest cleanup run, if any.
    pub last_cleanup: Option<CleanupRun>,
    /// Each cgroup's latest usage against its limit.
    pub limits: Vec<LimitStatus>,
    pub series: Vec<SeriesState>,
    pub rules: Vec<RuleState>,
    pub history: Option<History>,
    /// Targets left out because they had gone before the newest run's end (`keep_current`).
    pub hidden_gone_targets: usize,
}

fn typed<T: serde::de::DeserializeOwned>(query: &str, t: &Table) -> Result<Vec<T>, AnalysisError> {
    t.typed_rows().map_err(|e| AnalysisError::Rows {
        query: query.into(),
        source: e,
    })
}

/// A query's typed rows grouped by a series id, in the query's order within each group.
fn grouped<T: serde::de::DeserializeOwned>(
    query: &str,
    table: &Table,
    key: impl Fn(&T) -> i64,
) -> Result<BTreeMap<i64, Vec<T>>, AnalysisError> {
    let mut groups: BTreeMap<i64, Vec<T>> = BTreeMap::new();
    for row in typed::<T>(query, table)? {
        groups.entry(key(&row)).or_default().push(row);
    }
    Ok(groups)
}

/// The history's size: rows, series, the oldest and newest sample (each a primary-key seek).
const HISTORY_SQL: &str = "SELECT (SELECT count(*) FROM samples) AS rows,
    (SELECT min(t) FROM (SELECT (SELECT min(ts_ms) FROM samples WHERE series_id = s.id) AS t FROM series s)) AS oldest_ms,
    (SELECT max(t) FROM (SELECT (SELECT max(ts_ms) FROM samples WHERE series_id = s.id) AS t FROM series s)) AS newest_ms,
    (SELECT count(*) FROM series) AS series";

/// How much history the file holds (None only if the query returns no row).
pub(crate) fn history(conn: &Connection) -> Result<Option<History>, AnalysisError> {
    let history = store::query_table(conn, HISTORY_SQL, &[] as &[(&str, Cell)])?;
    Ok(typed("history", &history)?.into_iter().next())
}

impl Overview {
    /// Every series' state as of `now` (min/max over `window_ms`), with the rules' states, the
    /// newest cleanup and the history's size. The recorder is left for the caller to say.
    pub(crate) fn gather(
        conn: &Connection,
        database: &str,
        now: i64,
        window_ms: i64,
    ) -> Result<Overview, AnalysisError> {
        let patterns = Pattern::by_series(conn, now, None)?;
        Self::gather_with_patterns(conn, database, now, window_ms, &patterns)
    }

    /// `gather`, with the patterns found earlier (`Pattern::by_series`): they describe hours of
    /// history, so a caller that gathers every second (the API's status) finds them less often.
    pub(crate) fn gather_with_patterns(
        conn: &Connection,
        database: &str,
        now: i64,
        window_ms: i64,
        patterns: &BTreeMap<i64, Vec<Pattern>>,
    ) -> Result<Overview, AnalysisError> {
        let run = |name: &str| analysis::run(conn, name, &[], now);
        let status = store::series_status(conn, now, window_ms)?;
        // The mapping groups' series get no verdict of their own here (the diagnosis names the
        // mapping that grows from `attribution`): a status read stays small on a busy recorder.
        let trend = analysis::run(conn, "trend", &[("mappings", Cell::Int(0))], now)?;
        let trends = Trend::by_series(&trend)?;
        let growth = run("percent_change")?;
        let growth: BTreeMap<i64, f64> = (0..growth.rows.len())
            .filter_map(|r| {
                let sid = growth.get(r, "series_id").as_i64()?;
                Some((sid, growth.get(r, "percent_change").as_f64()?))
            })
            .collect();
        let mut parts = Part::by_whole(&run("attribution")?)?;
        let mut tracks = Track::by_memory(&run("regression")?)?;
        let rules = typed("rule_states", &run("rule_states")?)?;
        let last_cleanup = typed("cleanups", &run("cleanups")?)?.into_iter().next();
        let history = history(conn)?;
        Ok(Overview {
            database: database.to_string(),
            generated_ms: now,
            window_ms,
            recorder: None,
            last_cleanup,
            limits: limits_of(&status),
            series: status
                .into_iter()
                .map(|s| {
                    let trend = trends.get(&s.series_id).cloned();
                    let diagnosis = Diagnosis::of(
                        trend.as_ref(),
                        parts.remove(&s.series_id),
                        tracks.remove(&s.series_id),
                    );
                    SeriesState {
                        onset: None,
                        patterns: Vec::new(),
                        diagnosis,
                        verdict: trend
                            .as_ref()
                            .map_or(NO_VERDICT.to_string(), |t| t.words(&s.unit)),
                        trend,
                        percent_change: growth.get(&s.series_id).copied(),
                        status: s,
                    }
                })
                .collect(),
            rules,
            history,
            hidden_gone_targets: 0,
        })
        .and_then(|mut o| {
            o.add_onsets(conn, now)?;
            for s in &mut o.series {
                s.patterns = patterns
                    .get(&s.status.series_id)
                    .cloned()
                    .unwrap_or_default();
            }
            Ok(o)
        })
    }

    /// The onset of every leaking series (few: the `onset` query runs per series).
    fn add_onsets(&mut self, conn: &Connection, now: i64) -> Result<(), AnalysisError> {
        for s in &mut self.series {
            if s.trend.as_ref().is_some_and(|t| t.leaks(&s.status.unit)) {
                s.onset = Onset::of_series(conn, s.status.series_id, 86_400_000, now)?;
            }
        }
        Ok(())
    }

    /// Leave out the targets that had gone (exited, removed) well before the newest run's end —
    /// the short jobs a top-N recording saw come and go, the processes of earlier runs — and
    /// count them in `hidden_gone_targets`. A target that went as the run ended (the command a
    /// run watched) stays: it is what the run was about. Without a run (an imported history)
    /// nothing is left out.
    pub(crate) fn keep_current(&mut self) {
        let Some(run) = self.recorder.as_ref().map(|r| &r.run) else {
            return;
        };
        let end = match (
            self.recorder.as_ref().is_some_and(|r| r.running),
            run.stopped_ms,
        ) {
            (true, _) | (false, None) => run.last_tick_ms.unwrap_or(self.generated_ms),
            (false, Some(stopped)) => stopped,
        };
        // Two intervals (at least 1 s) of slack: the exit seen at the last tick or the one before.
        let cutoff = end - (2 * run.interval_ms).max(1_000);
        let mut hidden = std::collections::BTreeSet::new();
        self.series.retain(|s| {
            let st = &s.status;
            let gone_before = st.gone_ms.is_some_and(|g| g < cutoff);
            if gone_before {
                hidden.insert((st.kind, st.target.clone(), st.pid));
            }
            !gone_before
        });
        self.hidden_gone_targets += hidden.len();
    }
}

/// `memtrail status`: the overview on a read-only connection (safe while a recorder writes, thanks
/// to WAL), with whether the newest run's recorder is alive.
pub fn collect(db: &Path, window: Duration) -> Result<Overview, AnalysisError> {
    let conn = store::open_reader(db, Duration::from_secs(5))?;
    let mut o = Overview::gather(
        &conn,
        &db.display().to_string(),
        now_ms(),
        window.as_millis() as i64,
    )?;
    o.recorder = recorder_state(&conn)?;
    Ok(o)
}

/// The newest run, and whether its recorder is alive (the run is open and its pid exists).
pub(crate) fn recorder_state(conn: &Connection) -> Result<Option<RecorderState>, AnalysisError> {
    Ok(store::last_run(conn)?.map(|run| RecorderState {
        running: run.stopped_ms.is_none() && crate::sys::pid_alive(run.pid),
        run,
    }))
}

/// The metric that speaks for a target in a headline, first of the ones it has: what a process,
/// the system or a cgroup holds in memory before what it merely maps.
pub(crate) fn leading_rank(metric: &str) -> usize {
    const ORDER: [&str; 9] = [
        "rss", "tree_rss", "pss", "uss", "mem_used", "usage", "anon", "vms", "tree_vms",
    ];
    ORDER
        .iter()
        .position(|m| *m == metric)
        .unwrap_or(ORDER.len())
}

/// Series with a leak verdict, one per target: its leading leaking metric.
pub(crate) fn leading_leaks(series: &[SeriesState]) -> Vec<&SeriesState> {
    let mut best: BTreeMap<(Kind, &str, Option<u32>), &SeriesState> = BTreeMap::new();
    for s in series
        .iter()
        .filter(|s| s.trend.as_ref().is_some_and(|t| t.leaks(&s.status.unit)))
    {
        let st = &s.status;
        let key = (st.kind, st.target.as_str(), st.pid);
        match best.get(&key) {
            Some(b) if leading_rank(&b.status.metric) <= leading_rank(&st.metric) => {}
            _ => {
                best.insert(key, s);
            }
        }
    }
    best.into_values().collect()
}

//! Two recordings side by side (`memtrail compare A B`): each side is a recorder run, a time range
//! or another database file; per target (matched by kind and name) and metric, its growth rate with
//! Sen's 95 % range (the `trend` query over the side's span), peak and average (`summary`), and a
//! verdict on the change from A to B — `fixed`, `improved`, `unchanged` or `worse` — decided on the
//! slopes' uncertainty, not on a fixed percentage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::analyze::analysis::{self, AnalysisError};
use crate::model::{Cell, Kind};

/// Growth under this (percent of the level per hour) is no growth, and a difference under it no
/// difference: the `trend` query's own `:min_pct_per_hour`.
pub const MIN_PCT_PER_HOUR: f64 = 1.0;
/// Two-sided 95 %: the z a difference of slopes must reach.
const Z_95: f64 = 1.96;
/// The metrics compared when none is named: a process's and a cgroup's resident memory, the
/// system's used memory (custom metrics are always compared).
pub const DEFAULT_METRICS: [&str; 3] = ["rss", "usage", "mem_used"];

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(
        "{0:?} is not a side to compare: give a run (run:3, run:last, run:previous), a range (2026-12-01T10:00Z..2026-12-01T12:00Z) or a database file"
    )]
    BadSide(String),
    #[error("{db} has no run {which}: `memtrail query runs --db {db}` lists them")]
    NoRun { db: String, which: String },
    #[error("{side} holds no samples{what}")]
    Empty { side: String, what: String },
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A side as written on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum SideSpec {
    /// `run:3`; `run:last` is 0 back, `run:previous` 1 back.
    Run(RunRef),
    /// `FROM..TO`, each in the one time grammar.
    Range { from_ms: i64, to_ms: i64 },
    /// Another database file: its whole history.
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunRef {
    Id(i64),
    Back(usize),
}

impl SideSpec {
    /// Parse a side: `run:N` / `run:last` / `run:previous`, `FROM..TO`, or an existing file.
    pub fn parse(text: &str, now_ms: i64) -> Result<SideSpec, CompareError> {
        let bad = || CompareError::BadSide(crate::model::shown(text));
        if let Some(run) = text.strip_prefix("run:") {
            return Ok(SideSpec::Run(match run {
                "last" | "latest" => RunRef::Back(0),
                "previous" | "prev" => RunRef::Back(1),
                n => RunRef::Id(n.parse().map_err(|_| bad())?),
            }));
        }
        if let Some((from, to)) = text.split_once("..") {
            let from_ms = crate::units::parse_time(from, now_ms).ok_or_else(bad)?;
            let to_ms = crate::units::parse_time(to, now_ms).ok_or_else(bad)?;
            return (from_ms < to_ms)
                .then_some(SideSpec::Range { from_ms, to_ms })
                .ok_or_else(bad);
        }
        let path = PathBuf::from(text);
        path.is_file()
            .then_some(SideSpec::File(path))
            .ok_or_else(bad)
    }
}

/// A side resolved: its database, its span, and how it was named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub label: String,
    pub db: PathBuf,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// A `runs` row.
#[derive(Debug, Deserialize)]
struct RunRow {
    id: i64,
    started_ms: i64,
    ended_ms: i64,
}

impl Side {
    /// Resolve a side: a run or a range in `db`, or another file's whole history.
    pub fn resolve(spec: &SideSpec, text: &str, db: &Path) -> Result<Side, CompareError> {
        let side = |db: &Path, from_ms, to_ms| Side {
            label: text.to_string(),
            db: db.to_path_buf(),
            from_ms,
            to_ms,
        };
        match spec {
            SideSpec::Range { from_ms, to_ms } => Ok(side(db, *from_ms, *to_ms)),
            SideSpec::Run(which) => {
                let conn = crate::store::open_reader(db, Duration::from_secs(5))?;
                let id = match which {
                    RunRef::Id(id) => Cell::Int(*id),
                    RunRef::Back(_) => Cell::Null,
                };
                let t = analysis::run(&conn, "runs", &[("run_id", id)], crate::units::now_ms())?;
                let rows: Vec<RunRow> = t.typed_rows().map_err(|e| AnalysisError::Rows {
                    query: "runs".into(),
                    source: e,
                })?;
                let back = match which {
                    RunRef::Back(n) => *n,
                    RunRef::Id(_) => 0,
                };
                let run = rows.get(back).ok_or_else(|| CompareError::NoRun {
                    db: db.display().to_string(),
                    which: text.trim_start_matches("run:").to_string(),
                })?;
                let mut s = side(db, run.started_ms, run.ended_ms.max(run.started_ms + 1));
                s.label = format!("{text} (run {})", run.id);
                Ok(s)
            }
            SideSpec::File(path) => {
                let conn = crate::store::open_reader(path, Duration::from_secs(5))?;
                let h = crate::analyze::overview::history(&conn)?;
                match h.and_then(|h| Some((h.oldest_ms?, h.newest_ms?))) {
                    Some((from, to)) => Ok(side(path, from, to + 1)),
                    None => Err(CompareError::Empty {
                        side: text.to_string(),
                        what: String::new(),
                    }),
                }
            }
        }
    }
}

/// One series over one side: how it grew, its peak and its average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    #[serde(skip_serializing)]
    pub series_id: i64,
    pub kind: Kind,
    pub target: String,
    pub pid: Option<i64>,
    pub metric: String,
    pub unit: String,
    pub samples: i64,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
    /// Theil-Sen slope over slice medians (units per hour) with Sen's 95 % range.
    pub slope_per_hour: Option<f64>,
    pub slope_low_per_hour: Option<f64>,
    pub slope_high_per_hour: Option<f64>,
    pub pct_per_hour: Option<f64>,
    /// The highest sample (the `summary` query's `max`) and the average.
    #[serde(alias = "max")]
    pub peak: f64,
    pub avg: f64,
}

/// The change from A to B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A grew, B does not.
    Fixed,
    /// Both grow; B significantly slower.
    Improved,
    /// No difference the slopes' uncertainty can tell from chance.
    Unchanged,
    /// B grows, and significantly faster than A.
    Worse,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Fixed => "fixed",
            Change::Improved => "improved",
            Change::Unchanged => "unchanged",
            Change::Worse => "worse",
        }
    }
}

/// One target's metric on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub kind: Kind,
    pub target: String,
    pub metric: String,
    pub unit: String,
    pub a: Figures,
    pub b: Figures,
    pub change: Change,
    /// The difference of the slopes (B - A) over its standard error.
    pub z: Option<f64>,
    /// In words: "B grows 12.0 MiB/h slower (z = -8.1)".
    pub why: String,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: Side,
    pub b: Side,
    pub rows: Vec<Row>,
    /// Targets' metrics on one side only: "process api rss".
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

impl Comparison {
    pub fn any_worse(&self) -> bool {
        self.rows.iter().any(|r| r.change == Change::Worse)
    }
}

/// What to compare: metrics (empty: `DEFAULT_METRICS` and custom ones) and a target's name.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub metrics: Vec<String>,
    pub target: Option<String>,
}

impl Filter {
    fn keeps(&self, f: &Figures) -> bool {
        let metric = if self.metrics.is_empty() {
            f.kind == Kind::Custom || DEFAULT_METRICS.contains(&f.metric.as_str())
        } else {
            self.metrics.contains(&f.metric)
        };
        metric && self.target.as_ref().is_none_or(|t| *t == f.target)
    }
}

/// Compare two resolved sides.
pub fn compare(a: Side, b: Side, filter: &Filter) -> Result<Comparison, CompareError> {
    let fa = side_figures(&a, filter)?;
    let fb = side_figures(&b, filter)?;
    let mut rows = Vec::new();
    let mut only_in_a = Vec::new();
    for (key, x) in &fa {
        match fb.get(key) {
            Some(y) => rows.push(row(x.clone(), y.clone())),
            None => only_in_a.push(format!("{} {} {}", key.0, key.1, key.2)),
        }
    }
    let only_in_b = fb
        .keys()
        .filter(|k| !fa.contains_key(*k))
        .map(|k| format!("{} {} {}", k.0, k.1, k.2))
        .collect();
    Ok(Comparison {
        a,
        b,
        rows,
        only_in_a,
        only_in_b,
    })
}

type Key = (Kind, String, String);

/// Each target's metric over one side: the series of that name with the most samples there.
fn side_figures(side: &Side, filter: &Filter) -> Result<BTreeMap<Key, Figures>, CompareError> {
    let conn = crate::store::open_reader(&side.db, Duration::from_secs(5))?;
    let mut figures = level_figures(&conn, side)?;
    add_slopes(&conn, side, &mut figures)?;
    let mut best: BTreeMap<Key, Figures> = BTreeMap::new();
    for f in figures
        .into_iter()
        .filter(|f| filter.keeps(f) && f.samples > 0)
    {
        let key = (f.kind, f.target.clone(), f.metric.clone());
        if best.get(&key).is_none_or(|b| b.samples < f.samples) {
            best.insert(key, f);
        }
    }
    if best.is_empty() {
        return Err(CompareError::Empty {
            side: side.label.clone(),
            what: match &filter.target {
                Some(t) => format!(" of {t:?} in the metrics compared"),
                None => " in the metrics compared".into(),
            },
        });
    }
    Ok(best)
}

/// Every series with samples in the side's span, with its peak and average (the `summary`
/// query): a series too short for a growth rate is still compared by those.
fn level_figures(conn: &Connection, side: &Side) -> Result<Vec<Figures>, CompareError> {
    let t = analysis::run(
        conn,
        "summary",
        &[
            ("from_ms", Cell::Int(side.from_ms)),
            ("to_ms", Cell::Int(side.to_ms)),
        ],
        side.to_ms,
    )?;
    t.typed_rows().map_err(|e| {
        CompareError::Analysis(AnalysisError::Rows {
            query: "summary".into(),
            source: e,
        })
    })
}

/// A `trend` row's slope and Sen's range.
#[derive(Debug, Deserialize)]
struct Slope {
    series_id: i64,
    slope_per_hour: Option<f64>,
    slope_low_per_hour: Option<f64>,
    slope_high_per_hour: Option<f64>,
    pct_per_hour: Option<f64>,
}

/// The growth rate from the `trend` query over the side's whole span: its Theil-Sen slope and
/// Sen's range, whatever the span's length (no coverage, span or prior history asked of it).
fn add_slopes(conn: &Connection, side: &Side, figures: &mut [Figures]) -> Result<(), CompareError> {
    let t = analysis::run(
        conn,
        "trend",
        &[
            ("window_ms", Cell::Int(side.to_ms - side.from_ms)),
            ("buckets", Cell::Int(24)),
            ("min_samples", Cell::Int(10)),
            ("min_span_ms", Cell::Int(0)),
            ("min_coverage", Cell::Real(0.0)),
            ("min_prior_ms", Cell::Int(0)),
            ("lookback_ms", Cell::Int(0)),
        ],
        side.to_ms,
    )?;
    let slopes: Vec<Slope> = t.typed_rows().map_err(|e| {
        CompareError::Analysis(AnalysisError::Rows {
            query: "trend".into(),
            source: e,
        })
    })?;
    let by_id: BTreeMap<i64, Slope> = slopes.into_iter().map(|s| (s.series_id, s)).collect();
    for f in figures {
        if let Some(s) = by_id.get(&f.series_id) {
            f.slope_per_hour = s.slope_per_hour;
            f.slope_low_per_hour = s.slope_low_per_hour;
            f.slope_high_per_hour = s.slope_high_per_hour;
            f.pct_per_hour = s.pct_per_hour;
        }
    }
    Ok(())
}

/// Whether a side grows: its slope's 95 % range lies above zero and the slope is at least
/// `MIN_PCT_PER_HOUR` of `level`.
fn grows(f: &Figures, level: f64) -> bool {
    matches!((f.slope_per_hour, f.slope_low_per_hour), (Some(s), Some(low))
        if low > 0.0 && s >= MIN_PCT_PER_HOUR / 100.0 * level)
}

/// The verdict: the slopes' difference over its standard error (each slope's from its Sen range,
/// a 95 % interval: half its width / 1.96) must reach 1.96 and be at least `MIN_PCT_PER_HOUR` of
/// the level; then B faster and growing is `worse`, A growing and B not `fixed`, B slower
/// `improved`.
pub fn row(a: Figures, b: Figures) -> Row {
    let level = a.avg.abs().max(b.avg.abs());
    let se = |f: &Figures| match (f.slope_low_per_hour, f.slope_high_per_hour) {
        (Some(lo), Some(hi)) => ((hi - lo) / (2.0 * Z_95)).max(0.0),
        _ => f64::INFINITY,
    };
    let (change, z, why) = match (a.slope_per_hour, b.slope_per_hour) {
        (Some(sa), Some(sb)) => {
            let diff = sb - sa;
            let spread = (se(&a).powi(2) + se(&b).powi(2)).sqrt();
            let z = if spread > 0.0 {
                diff / spread
            } else if diff == 0.0 {
                0.0
            } else {
                diff.signum() * f64::INFINITY
            };
            let significant = z.abs() >= Z_95 && diff.abs() >= MIN_PCT_PER_HOUR / 100.0 * level;
            let change = match (significant, diff > 0.0) {
                (false, _) => Change::Unchanged,
                (true, true) if grows(&b, level) => Change::Worse,
                (true, true) => Change::Unchanged,
                (true, false) if grows(&a, level) && !grows(&b, level) => Change::Fixed,
                (true, false) => Change::Improved,
            };
            let why = format!(
                "B grows {} {} than A (z = {})",
                crate::units::format_value(&a.unit, diff.abs()) + "/h",
                if diff > 0.0 { "faster" } else { "slower" },
                if z.is_finite() {
                    format!("{z:.1}")
                } else {
                    "∞".into()
                }
            );
            (change, z.is_finite().then_some(z), why)
        }
        _ => (
            Change::Unchanged,
            None,
            "too few samples on a side for a growth rate".to_string(),
        ),
    };
    Row {
        kind: a.kind,
        target: a.target.clone(),
        metric: a.metric.clone(),
        unit: a.unit.clone(),
        a,
        b,
        change,
        z,
        why,
    }
}

/// A chart's points: (ms since the side's start, value).
pub type Points = Vec<(i64, f64)>;

/// The points of one target's metric over a side, for a chart: (ms since the side's start, the
/// average per bucket), about `buckets` of them.
pub fn points(side: &Side, f: &Figures, buckets: i64) -> Result<Points, CompareError> {
    let conn = crate::store::open_reader(&side.db, Duration::from_secs(5))?;
    let bucket_ms = ((side.to_ms - side.from_ms) / buckets.max(1)).max(1);
    let t = analysis::run(
        &conn,
        "downsample",
        &[
            ("from_ms", Cell::Int(side.from_ms)),
            ("to_ms", Cell::Int(side.to_ms + 1)),
            ("bucket_ms", Cell::Int(bucket_ms)),
            ("series_id", Cell::Int(f.series_id)),
        ],
        side.to_ms,
    )?;
    Ok((0..t.rows.len())
        .filter_map(|r| {
            Some((
                t.get(r, "bucket_ms").as_i64()? - side.from_ms,
                t.get(r, "avg").as_f64()?,
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests;

//! `memtrail report`: turns a time range of history into a document people read — Markdown, a
//! self-contained HTML page with SVG charts, or JSON with the same content (and a schema version);
//! CSV exports the samples themselves. Every figure comes from the analysis queries (`summary`,
//! `trend`, `time_to_limit`, `downsample`, `cleanups`) and the audit tables; this module only
//! arranges and draws them. Charts are drawn from min/max per pixel-wide bucket, so spikes survive
//! and a day at 1 Hz stays small; gaps in the recording stay gaps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::analyze::analysis::{self, AnalysisError};
use crate::analyze::overview::{
    self, Diagnosis, Onset, Part, Pattern, Track, Verdict, leading_rank,
};
use crate::model::{Cell, EventKind, Kind, Table};
use crate::store::{self, StoreError};
use crate::units::{HumanDuration, format_bytes};
use crate::units::{format_time, format_value};

/// Bumped whenever the JSON report changes shape.
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// Buckets across a chart (its plot width in pixels).
pub(crate) const CHART_BUCKETS: i64 = 600;
/// How long a report waits for a lock (the recorder holds its write lock only briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the range is empty: --from must be before --to")]
    EmptyRange,
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only targets with this name (or this pid, when a number).
    pub target: Option<String>,
    pub generated_ms: i64,
    pub database: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    pub classification: Option<Verdict>,
    pub slope_per_hour: Option<f64>,
    pub pct_per_hour: Option<f64>,
    pub r2: Option<f64>,
    /// Sen's 95 % range of the slope, in % of the level per hour.
    pub pct_low_per_hour: Option<f64>,
    pub pct_high_per_hour: Option<f64>,
    /// The best step's jump (% of the level), for a `step` verdict.
    pub step_pct: Option<f64>,
    pub early_pct_per_hour: Option<f64>,
    pub late_pct_per_hour: Option<f64>,
    /// Why there is no verdict (`insufficient_data`).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesReport {
    pub series_id: i64,
    pub kind: Kind,
    pub target: String,
    pub pid: Option<i64>,
    pub metric: String,
    pub unit: String,
    pub samples: i64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub first: f64,
    pub last: f64,
    pub change_pct: Option<f64>,
    pub trend: Trend,
    pub seconds_to_limit: Option<f64>,
    /// One sentence: leak suspected (with slope and time to limit), stable, shrinking, ...
    pub verdict: String,
    /// For a rising rss or tree_rss: which kind of memory grows over the range.
    pub diagnosis: Option<Diagnosis>,
    /// For a leaking series: since when it grows, over the range.
    pub onset: Option<Onset>,
    /// Growth that repeats on a schedule over the range (rss, usage, mem_used).
    pub patterns: Vec<Pattern>,
}

/// One line of a chart: per bucket (start ms, min, avg, max).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    pub metric: String,
    pub buckets: Vec<(i64, f64, f64, f64)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chart {
    pub title: String,
    pub kind: Kind,
    pub target: String,
    pub pid: Option<i64>,
    pub unit: String,
    pub bucket_ms: i64,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Gap {
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub generated_ms: i64,
    /// The range asked for.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The part of it that holds samples: charts and fits span this.
    pub data_from_ms: i64,
    pub data_to_ms: i64,
    pub database: String,
    pub target_filter: Option<String>,
    pub series: Vec<SeriesReport>,
    pub alerts: Vec<Map<String, Value>>,
    pub cleanups: Vec<Map<String, Value>>,
    /// Annotations, a launched command's start and exit, restarts (alerts and cleanups above).
    pub events: Vec<Map<String, Value>>,
    pub runs: Vec<Map<String, Value>>,
    pub gaps: Vec<Gap>,
    pub charts: Vec<Chart>,
}

/// Progress on a terminal (stderr), silent otherwise.
pub(crate) struct Progress {
    on: bool,
    what: &'static str,
}

impl Progress {
    pub fn new(what: &'static str) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            what,
        }
    }
    pub fn step(&self, done: usize, total: usize) {
        if self.on && total > 0 {
            crate::logsink::line(&format!("\r{}: {:>3}%", self.what, done * 100 / total));
        }
    }
    pub fn done(&self) {
        if self.on {
            crate::logsink::line(&format!("\r{}: done \n", self.what));
        }
    }
}

fn filters(target: &Option<String>) -> Vec<(&'static str, Cell)> {
    match target {
        None => vec![],
        Some(t) => match t.parse::<i64>() {
            Ok(pid) => vec![("pid", Cell::Int(pid))],
            Err(_) => vec![("target", Cell::Text(t.clone()))],
        },
    }
}

/// One leaking target in the headline: "process api (4242): rss +1.20 %/h (...)".
fn headline_item(s: &SeriesReport) -> String {
    let diagnosis = s
        .diagnosis
        .as_ref()
        .map_or(String::new(), |d| format!(", {}", d.words));
    let diagnosis = match &s.onset {
        Some(o) => format!("{diagnosis}, {}", o.words()),
        None => diagnosis,
    };
    format!(
        "{}: {} {}{diagnosis}",
        who(s.kind, &s.target, s.pid),
        s.metric,
        s.verdict.trim_start_matches("leak suspected: ")
    )
}

/// Each recurring pattern in a few words: "process api (4242): rss repeats: a cycle of 2h, ±10 %".
fn pattern_items(series: &[SeriesReport]) -> Vec<String> {
    series
        .iter()
        .flat_map(|s| {
            s.patterns.iter().map(|p| {
                format!(
                    "{}: {} {}",
                    who(s.kind, &s.target, s.pid),
                    s.metric,
                    p.words()
                )
            })
        })
        .collect()
}

/// Series with a leak verdict, one per target: its leading leaking metric.
pub(crate) fn leak_headline(series: &[SeriesReport]) -> Vec<&SeriesReport> {
    let mut best: BTreeMap<(&str, &str, Option<i64>), &SeriesReport> = BTreeMap::new();
    for s in series
        .iter()
        .filter(|s| s.trend.classification == Some(Verdict::Increasing) && s.unit == "bytes")
    {
        let key = (s.kind.as_str(), s.target.as_str(), s.pid);
        match best.get(&key) {
            Some(b) if leading_rank(&b.metric) <= leading_rank(&s.metric) => {}
            _ => {
                best.insert(key, s);
            }
        }
    }
    best.into_values().collect()
}

/// Which series a chart draws: a process's memory lines, a name group's by kind, the system's used
/// memory, a cgroup's usage with the ceiling the kernel acts at; every custom metric.
fn charted(kind: Kind, metric: &str) -> bool {
    match kind {
        Kind::Process => matches!(metric, "rss" | "pss" | "uss" | "tree_rss"),
        Kind::Group => matches!(metric, "rss" | "rss_anon" | "rss_file" | "swap"),
        Kind::System => metric == "mem_used",
        Kind::Cgroup => matches!(metric, "usage" | "limit" | "anon" | "file"),
        Kind::Custom => true,
    }
}

/// The passes a report over `span`'s series needs: the summary, the attribution and regression,
/// each series' trend fit, and each charted series' buckets.
fn jobs_for(span: &Table) -> Vec<Job> {
    let mut jobs = vec![Job::Summary, Job::Attribution, Job::Regression];
    for r in 0..span.rows.len() {
        let Some(sid) = span.get(r, "series_id").as_i64() else {
            continue;
        };
        jobs.push(Job::Trend(sid));
        let (kind, metric) = (span.get(r, "kind"), span.get(r, "metric"));
        let kind = kind.as_str().and_then(Kind::parse);
        if kind.is_some_and(|k| charted(k, metric.as_str().unwrap_or(""))) {
            jobs.push(Job::Downsample(sid));
        }
    }
    jobs
}

/// One pass over the samples that a report needs.
enum Job {
    Summary,
    Attribution,
    Regression,
    Trend(i64),
    Downsample(i64),
}

/// Run the jobs on as many read-only connections as there are cores (at most 4), each worker
/// taking the next job when it finishes one; results come back in job order. WAL lets them read
/// side by side without blocking the recorder or each other.
fn pool(
    db: &Path,
    jobs: &[Job],
    progress: &Progress,
    work: impl Fn(&Connection, &Job) -> Result<Table, ReportError> + Sync,
) -> Result<Vec<Table>, ReportError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        .min(jobs.len().max(1));
    let (next, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let results: Mutex<Vec<Option<Table>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| -> Result<(), ReportError> {
        let worker = || -> Result<(), ReportError> {
            let conn = store::open_reader(db, BUSY_TIMEOUT)?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else {
                    return Ok(());
                };
                let table = work(&conn, job).inspect_err(|_| {
                    // Stop the others at their next job.
                    next.store(jobs.len(), Ordering::Relaxed);
                })?;
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(table);
                progress.step(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
            }
        };
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(worker)).collect();
        for h in handles {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        }
        Ok(())
    })?;
    Ok(results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// Gather the report for a range from the database at `db`. The passes over the samples (the
/// summary, each series' trend fit, each charted series' buckets) run side by side on read-only
/// connections; every figure still comes from the analysis queries.
pub fn build(db: &Path, o: &Options) -> Result<Report, ReportError> {
    if o.to_ms <= o.from_ms {
        return Err(ReportError::EmptyRange);
    }
    let conn = store::open_reader(db, BUSY_TIMEOUT)?;
    let progress = Progress::new("report");

    let mut params = filters(&o.target);
    params.push(("from_ms", Cell::Int(o.from_ms)));
    params.push(("to_ms", Cell::Int(o.to_ms)));
    // Where the samples are (primary-key seeks only): fits and charts span that, not the whole
    // range asked for.
    let span = analysis::run(&conn, "span", &params, o.to_ms)?;
    let ends = |col: &str| -> Vec<i64> {
        (0..span.rows.len())
            .filter_map(|r| span.get(r, col).as_i64())
            .collect()
    };
    let data_from = ends("first_ts_ms").into_iter().min().unwrap_or(o.from_ms);
    let data_to = ends("last_ts_ms")
        .into_iter()
        .max()
        .unwrap_or(o.to_ms)
        .max(data_from + 1);
    let window = data_to - data_from;
    let bucket_ms = (window / CHART_BUCKETS).max(1);

    let jobs = jobs_for(&span);
    let tables = pool(db, &jobs, &progress, |conn, job| {
        Ok(match job {
            Job::Summary => analysis::run(conn, "summary", &params, o.to_ms)?,
            Job::Attribution => analysis::run(
                conn,
                "attribution",
                &[("window_ms", Cell::Int(window))],
                data_to,
            )?,
            Job::Regression => analysis::run(
                conn,
                "regression",
                &[("window_ms", Cell::Int(window))],
                data_to,
            )?,
            Job::Trend(sid) => analysis::run(
                conn,
                "trend",
                // The window is the whole range: no history before it to ask for, and cycles
                // shorter than the range lie inside it.
                &[
                    ("series_id", Cell::Int(*sid)),
                    ("window_ms", Cell::Int(window)),
                    ("min_prior_ms", Cell::Int(0)),
                ],
                data_to,
            )?,
            Job::Downsample(sid) => analysis::run(
                conn,
                "downsample",
                &[
                    ("series_id", Cell::Int(*sid)),
                    ("from_ms", Cell::Int(data_from)),
                    ("to_ms", Cell::Int(data_to + 1)),
                    ("bucket_ms", Cell::Int(bucket_ms)),
                ],
                o.to_ms,
            )?,
        })
    })?;
    progress.done();
    let (summary, [attribution, regression], trends, buckets) = by_job(&jobs, tables);

    let mut series = series_reports(&summary, &attribution, &regression, &trends)?;
    onsets_and_patterns(&conn, &mut series, window, data_to)?;
    let charts = charts(&series, &buckets, bucket_ms);

    let (alerts, cleanups, events) = audit(&conn, o)?;
    let (runs, gaps) = runs_and_gaps(&conn, o)?;

    Ok(Report {
        schema_version: SCHEMA_VERSION,
        generated_ms: o.generated_ms,
        from_ms: o.from_ms,
        to_ms: o.to_ms,
        data_from_ms: data_from,
        data_to_ms: data_to,
        database: o.database.clone(),
        target_filter: o.target.clone(),
        series,
        alerts,
        cleanups,
        events,
        runs,
        gaps,
        charts,
    })
}

/// Since when each leaking series grows, and what repeats on a schedule, over the range.
fn onsets_and_patterns(
    conn: &Connection,
    series: &mut [SeriesReport],
    window: i64,
    data_to: i64,
) -> Result<(), ReportError> {
    let mut patterns = Pattern::by_series(conn, data_to, Some(window))?;
    for s in series {
        if s.trend.classification == Some(Verdict::Increasing) && s.unit == "bytes" {
            s.onset = Onset::of_series(conn, s.series_id, window, data_to)?;
        }
        s.patterns = patterns.remove(&s.series_id).unwrap_or_default();
    }
    Ok(())
}

/// The passes' tables by what they are: the summary, the attribution and regression, and per
/// series its trend and its buckets.
fn by_job(
    jobs: &[Job],
    tables: Vec<Table>,
) -> (
    Table,
    [Table; 2],
    BTreeMap<i64, Table>,
    BTreeMap<i64, Table>,
) {
    let mut summary = Table::default();
    let mut attribution = Table::default();
    let mut regression = Table::default();
    let mut trends = BTreeMap::new();
    let mut buckets = BTreeMap::new();
    for (job, table) in jobs.iter().zip(tables) {
        match job {
            Job::Summary => summary = table,
            Job::Attribution => attribution = table,
            Job::Regression => regression = table,
            Job::Trend(sid) => {
                trends.insert(*sid, table);
            }
            Job::Downsample(sid) => {
                buckets.insert(*sid, table);
            }
        }
    }
    (summary, [attribution, regression], trends, buckets)
}

/// A row of the `summary` query: a series' figures over the range.
#[derive(Debug, Deserialize)]
struct Summary {
    series_id: i64,
    kind: Kind,
    target: String,
    pid: Option<i64>,
    metric: String,
    unit: String,
    samples: i64,
    min: Option<f64>,
    max: Option<f64>,
    avg: Option<f64>,
    first: Option<f64>,
    last: Option<f64>,
    change_pct: Option<f64>,
}

impl Trend {
    /// The report's view of a series' fit: its slope range in percent of the level.
    fn of(t: Option<&overview::Trend>) -> Trend {
        Trend {
            classification: t.map(|t| t.classification),
            slope_per_hour: t.and_then(|t| t.slope_per_hour),
            pct_per_hour: t.and_then(|t| t.pct_per_hour),
            r2: t.and_then(|t| t.r2),
            pct_low_per_hour: t.and_then(|t| t.pct_of_mean(t.slope_low_per_hour)),
            pct_high_per_hour: t.and_then(|t| t.pct_of_mean(t.slope_high_per_hour)),
            step_pct: t.and_then(|t| t.step_pct),
            early_pct_per_hour: t.and_then(|t| t.early_pct_per_hour),
            late_pct_per_hour: t.and_then(|t| t.late_pct_per_hour),
            reason: t.and_then(|t| t.reason.clone()),
        }
    }
}

/// Each series' figures from the summary pass, with its trend verdict in words.
fn series_reports(
    summary: &Table,
    attribution: &Table,
    regression: &Table,
    trends: &BTreeMap<i64, Table>,
) -> Result<Vec<SeriesReport>, AnalysisError> {
    let mut parts = Part::by_whole(attribution)?;
    let mut tracks = Track::by_memory(regression)?;
    let rows: Vec<Summary> = summary.typed_rows().map_err(|e| AnalysisError::Rows {
        query: "summary".into(),
        source: e,
    })?;
    let mut fits = BTreeMap::new();
    for t in trends.values() {
        fits.append(&mut overview::Trend::by_series(t)?);
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let fit = fits.get(&r.series_id);
            SeriesReport {
                series_id: r.series_id,
                trend: Trend::of(fit),
                // From the same fit, as time_to_limit.sql computes it.
                seconds_to_limit: fit.and_then(|t| t.seconds_to_limit),
                verdict: fit.map_or(overview::NO_VERDICT.to_string(), |t| t.words(&r.unit)),
                diagnosis: Diagnosis::of(
                    fit,
                    parts.remove(&r.series_id),
                    tracks.remove(&r.series_id),
                ),
                onset: None,
                patterns: Vec::new(),
                kind: r.kind,
                target: r.target,
                pid: r.pid,
                metric: r.metric,
                unit: r.unit,
                samples: r.samples,
                min: r.min.unwrap_or(0.0),
                max: r.max.unwrap_or(0.0),
                avg: r.avg.unwrap_or(0.0),
                first: r.first.unwrap_or(0.0),
                last: r.last.unwrap_or(0.0),
                change_pct: r.change_pct,
            }
        })
        .collect())
}

/// An audit row (an alert, a cleanup run, a recorder run) as the report carries it.
type Row = Map<String, Value>;

/// Alerts, cleanup runs, other events.
type Audit = (Vec<Row>, Vec<Row>, Vec<Row>);

/// The alerts, cleanup runs and other events inside the range, for the selected targets.
fn audit(conn: &Connection, o: &Options) -> Result<Audit, ReportError> {
    // Alerts and cleanups inside the range (for the selected targets).
    let keep = |target: Option<&str>, pid: Option<i64>| match &o.target {
        None => true,
        Some(t) => Some(t.as_str()) == target || t.parse::<i64>().ok() == pid,
    };
    let alerts_table = store::query_table(
        conn,
        "SELECT ts_ms, rule, event, severity, kind, target, pid, metric, observed, threshold, message
         FROM alerts WHERE ts_ms >= :from AND ts_ms <= :to ORDER BY ts_ms, id",
        &[("from", Cell::Int(o.from_ms)), ("to", Cell::Int(o.to_ms))],
    )?;
    let alerts: Vec<_> = alerts_table
        .json_rows()
        .into_iter()
        .filter(|a| {
            keep(
                a.get("target").and_then(Value::as_str),
                a.get("pid").and_then(Value::as_i64),
            )
        })
        .collect();
    let cleanups_table = analysis::run(
        conn,
        "cleanups",
        &[("since_ms", Cell::Int(o.from_ms))],
        o.to_ms,
    )?;
    let mut cleanups: Vec<_> = cleanups_table
        .json_rows()
        .into_iter()
        .filter(|c| {
            keep(
                c.get("target").and_then(Value::as_str),
                c.get("pid").and_then(Value::as_i64),
            )
        })
        .collect();
    cleanups.reverse();
    Ok((alerts, cleanups, events(conn, o)?))
}

/// Whom an event concerns: "name (pid)", "name", or "the host".
fn event_target(e: &Row) -> String {
    match (
        e.get("target").and_then(Value::as_str),
        e.get("pid").and_then(Value::as_i64),
    ) {
        (Some(t), Some(p)) => format!("{t} ({p})"),
        (Some(t), None) => t.to_string(),
        (None, Some(p)) => format!("pid {p}"),
        (None, None) => "the host".into(),
    }
}

/// The events in the range that the alerts and cleanups do not hold already (annotations, a
/// launched command's start and exit, restarts): the host's, and the selected targets'.
fn events(conn: &Connection, o: &Options) -> Result<Vec<Row>, ReportError> {
    let table = analysis::run(
        conn,
        "events",
        &[
            ("from_ms", Cell::Int(o.from_ms)),
            ("to_ms", Cell::Int(o.to_ms)),
        ],
        o.to_ms,
    )?;
    Ok(table
        .json_rows()
        .into_iter()
        .filter(|e| {
            let kind = e
                .get("kind")
                .and_then(Value::as_str)
                .and_then(EventKind::parse);
            let target = e.get("target").and_then(Value::as_str);
            !matches!(kind, Some(EventKind::Alert | EventKind::Cleanup) | None)
                && match (&o.target, target) {
                    (None, _) | (_, None) => true,
                    (Some(t), Some(name)) => {
                        t == name || t.parse::<i64>().ok() == e.get("pid").and_then(Value::as_i64)
                    }
                }
        })
        .collect())
}

/// The recorder runs in the range (each with its state), and the gaps between them.
fn runs_and_gaps(conn: &Connection, o: &Options) -> Result<(Vec<Row>, Vec<Gap>), ReportError> {
    let runs_table = store::query_table(
        conn,
        "SELECT id, started_ms, coalesce(stopped_ms, last_tick_ms) AS stopped_ms, stop_reason, interval_ms, host, version,
                pid, stopped_ms IS NULL AS open
         FROM runs WHERE started_ms <= :to AND coalesce(stopped_ms, last_tick_ms, started_ms) >= :from
         ORDER BY started_ms",
        &[("from", Cell::Int(o.from_ms)), ("to", Cell::Int(o.to_ms))],
    )?;
    let mut runs = runs_table.json_rows();
    for run in &mut runs {
        let state = run_state(run);
        run.remove("open");
        run.insert("state".into(), Value::String(state.into()));
    }
    let mut gaps = Vec::new();
    for pair in runs.windows(2) {
        let (end, next) = (
            pair[0].get("stopped_ms").and_then(Value::as_i64),
            pair[1].get("started_ms").and_then(Value::as_i64),
        );
        let interval = pair[0]
            .get("interval_ms")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let (Some(end), Some(next)) = (end, next)
            && next - end > 2 * interval
        {
            gaps.push(Gap {
                from_ms: end.max(o.from_ms),
                to_ms: next.min(o.to_ms),
            });
        }
    }
    Ok((runs, gaps))
}

/// One chart per target (its memory lines) and the system's used memory, from each line's
/// downsampled buckets (min/avg/max per bucket).
fn charts(series: &[SeriesReport], buckets: &BTreeMap<i64, Table>, bucket_ms: i64) -> Vec<Chart> {
    let mut groups: BTreeMap<(u8, String, Option<i64>), Vec<&SeriesReport>> = BTreeMap::new();
    for s in series {
        if charted(s.kind, &s.metric) {
            let order = match s.kind {
                Kind::System => 0,
                Kind::Cgroup => 1,
                Kind::Group => 2,
                Kind::Process => 3,
                Kind::Custom => 4,
            };
            groups
                .entry((order, s.target.clone(), s.pid))
                .or_default()
                .push(s);
        }
    }
    let mut charts = Vec::new();
    for ((_, target, pid), members) in groups {
        let kind = members[0].kind;
        let lines = members
            .iter()
            .map(|s| Line {
                metric: s.metric.clone(),
                buckets: buckets.get(&s.series_id).map_or_else(Vec::new, |t| {
                    (0..t.rows.len())
                        .filter_map(|r| {
                            Some((
                                t.get(r, "bucket_ms").as_i64()?,
                                t.get(r, "min").as_f64()?,
                                t.get(r, "avg").as_f64()?,
                                t.get(r, "max").as_f64()?,
                            ))
                        })
                        .collect()
                }),
            })
            .collect();
        let lines = without_lone_tree(lines, series, &target, pid);
        let units: Vec<&str> = members.iter().map(|s| s.unit.as_str()).collect();
        let total = series
            .iter()
            .find(|s| s.kind == Kind::System && s.metric == "mem_total")
            .map(|s| format_bytes(s.last));
        let title = match (kind, pid) {
            (Kind::System, _) => match &total {
                Some(t) => format!("system memory used (of {t})"),
                None => "system memory used".to_string(),
            },
            (Kind::Cgroup, _) => {
                let last = |metric: &str| {
                    series
                        .iter()
                        .find(|s| {
                            s.kind == Kind::Cgroup && s.target == target && s.metric == metric
                        })
                        .map(|s| s.last)
                };
                match crate::analyze::overview::LimitStatus::of(&target, last) {
                    Some(l) => format!("cgroup {target}: {}", l.summary),
                    None => format!("cgroup {target}"),
                }
            }
            (k, Some(p)) => format!("{k} {target} (pid {p})"),
            (k, None) => format!("{k} {target}"),
        };
        charts.push(Chart {
            title,
            kind,
            target,
            pid,
            unit: if units.iter().all(|u| *u == units[0]) {
                units[0].to_string()
            } else {
                "mixed".into()
            },
            bucket_ms,
            lines,
        });
    }
    charts
}

/// A run's end as the tables show it: (stopped, reason).
fn run_end(run: &Map<String, Value>) -> (String, String) {
    match jtext(run, "state").as_str() {
        "recording" => (
            format!("recording (last tick {})", jtime(run, "stopped_ms")),
            "–".into(),
        ),
        "not closed" => (
            format!("last tick {}", jtime(run, "stopped_ms")),
            "not closed (its recorder is gone)".into(),
        ),
        _ => (jtime(run, "stopped_ms"), jtext(run, "stop_reason")),
    }
}

/// A run is `recording` while its recorder still runs (its pid, on this host, is a memtrail),
/// `stopped` once closed, and `not closed` when its recorder is gone without closing it (the next
/// recorder marks it crashed).
fn run_state(run: &Map<String, Value>) -> &'static str {
    if run.get("open").and_then(Value::as_i64) != Some(1) {
        return "stopped";
    }
    let here = run.get("host").and_then(Value::as_str)
        == Some(crate::collect::procfs::hostname().as_str());
    let alive = run.get("pid").and_then(Value::as_i64).is_some_and(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("memtrail"))
    });
    if here && alive {
        "recording"
    } else {
        "not closed"
    }
}

/// A process tree's sum is drawn only when the process has children: with none, `tree_rss` equals
/// `rss` and would hide it. Children are known from `tree_procs` (its maximum over the range), or,
/// without it, from the tree line differing from rss. The tree is drawn under rss.
fn without_lone_tree(
    mut lines: Vec<Line>,
    series: &[SeriesReport],
    target: &str,
    pid: Option<i64>,
) -> Vec<Line> {
    let procs = series
        .iter()
        .find(|s| s.target == target && s.pid == pid && s.metric == "tree_procs")
        .map(|s| s.max);
    let avg = |metric: &str| -> Option<Vec<f64>> {
        let l = lines.iter().find(|l| l.metric == metric)?;
        Some(l.buckets.iter().map(|b| b.2).collect())
    };
    let same = match (avg("rss"), avg("tree_rss")) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(x, y)| (x - y).abs() <= 1e-3 * x.abs())
        }
        _ => false,
    };
    if procs.map_or(same, |n| n <= 1.0) {
        lines.retain(|l| l.metric != "tree_rss");
    }
    lines.sort_by_key(|l| l.metric != "tree_rss");
    lines
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("–".into(), f)
}

fn jtext(m: &Map<String, Value>, k: &str) -> String {
    match m.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "–".into(),
        Some(v) => v.to_string(),
    }
}

fn jtime(m: &Map<String, Value>, k: &str) -> String {
    m.get(k)
        .and_then(Value::as_i64)
        .map_or("–".into(), format_time)
}

fn jbytes(m: &Map<String, Value>, k: &str) -> String {
    m.get(k)
        .and_then(Value::as_f64)
        .map_or("–".into(), format_bytes)
}

fn who(kind: Kind, target: &str, pid: Option<i64>) -> String {
    match pid {
        Some(p) => format!("{kind} {target} ({p})"),
        None if kind.as_str() == target => kind.to_string(),
        None => format!("{kind} {target}"),
    }
}

/// What the report is about, for its title: the target asked for, else the targets it holds
/// (the first three by name, then how many more), else the system.
fn subject(r: &Report) -> String {
    if let Some(t) = &r.target_filter {
        return t.clone();
    }
    let mut names: Vec<&str> = r
        .series
        .iter()
        .filter(|s| s.kind != Kind::System)
        .map(|s| s.target.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 if r.series.is_empty() => "no samples".into(),
        0 => "system".into(),
        1..=3 => names.join(", "),
        n => format!("{} and {} more", names[..3].join(", "), n - 3),
    }
}

/// The title line: subject and range.
fn title(r: &Report) -> String {
    format!(
        "memtrail report: {}, {} to {}",
        subject(r),
        format_time(r.from_ms),
        format_time(r.to_ms)
    )
}

/// Markdown: the tables, for a bug report or a wiki.
pub(crate) fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let span = crate::units::format_duration_rough((r.to_ms - r.from_ms).max(0) as f64 / 1000.0);
    let _ = writeln!(o, "# {}\n", title(r));
    let _ = writeln!(
        o,
        "{} to {} ({span}), from `{}`{}. Generated {}.\n",
        format_time(r.from_ms),
        format_time(r.to_ms),
        r.database,
        r.target_filter
            .as_ref()
            .map_or(String::new(), |t| format!(", target {t}")),
        format_time(r.generated_ms)
    );
    let leaks = leak_headline(&r.series);
    if leaks.is_empty() {
        let _ = writeln!(o, "No memory series is growing steadily over this range.\n");
    } else {
        let _ = writeln!(
            o,
            "**Leak suspected in {}:** {}.\n",
            leaks.len(),
            leaks
                .iter()
                .map(|s| headline_item(s))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let patterns = pattern_items(&r.series);
    if !patterns.is_empty() {
        let _ = writeln!(o, "**Recurring patterns:** {}.\n", patterns.join("; "));
    }
    let _ = writeln!(o, "## Series\n");
    let _ = writeln!(
        o,
        "| target | metric | last | min | max | average | change | verdict |"
    );
    let _ = writeln!(o, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for s in &r.series {
        let v = |x: f64| format_value(&s.unit, x);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            who(s.kind, &s.target, s.pid),
            s.metric,
            v(s.last),
            v(s.min),
            v(s.max),
            v(s.avg),
            opt(s.change_pct, |c| format!("{c:+.1} %")),
            s.verdict
        );
    }
    markdown_audit(&mut o, r);
    o
}

/// The alerts, cleanups and recorder runs in the range, and the gaps between runs.
fn markdown_audit(o: &mut String, r: &Report) {
    let _ = writeln!(o, "\n## Alerts\n");
    if r.alerts.is_empty() {
        let _ = writeln!(o, "None in this range.");
    } else {
        let _ = writeln!(o, "| time | rule | event | severity | message |");
        let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
        for a in &r.alerts {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                jtime(a, "ts_ms"),
                jtext(a, "rule"),
                jtext(a, "event"),
                jtext(a, "severity"),
                jtext(a, "message").replace('|', "\\|")
            );
        }
    }
    let _ = writeln!(o, "\n## Cleanups\n");
    if r.cleanups.is_empty() {
        let _ = writeln!(o, "None in this range.");
    } else {
        let _ = writeln!(
            o,
            "| time | trigger | level | target | outcome | before | after | freed |"
        );
        let _ = writeln!(o, "| --- | --- | --- | --- | --- | ---: | ---: | ---: |");
        for c in &r.cleanups {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} ({}) | {} | {} | {} | {} |",
                jtime(c, "started_ms"),
                jtext(c, "trigger"),
                jtext(c, "level"),
                jtext(c, "target"),
                jtext(c, "pid"),
                jtext(c, "outcome"),
                jbytes(c, "rss_before"),
                jbytes(c, "rss_after"),
                jbytes(c, "freed_bytes")
            );
        }
    }
    let _ = writeln!(o, "\n## Events\n");
    if r.events.is_empty() {
        let _ = writeln!(o, "None in this range (`memtrail annotate` writes one).");
    } else {
        let _ = writeln!(o, "| time | kind | target | event |");
        let _ = writeln!(o, "| --- | --- | --- | --- |");
        for e in &r.events {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                jtime(e, "ts_ms"),
                jtext(e, "kind"),
                event_target(e),
                jtext(e, "label").replace('|', "\\|")
            );
        }
    }
    let _ = writeln!(o, "\n## Recorder runs\n");
    if r.runs.is_empty() {
        let _ = writeln!(o, "No recorder run in this range (imported data only).");
    } else {
        let _ = writeln!(o, "| run | started | stopped | reason | interval |");
        let _ = writeln!(o, "| ---: | --- | --- | --- | ---: |");
        for run in &r.runs {
            let interval = run.get("interval_ms").and_then(Value::as_i64).unwrap_or(0);
            let (stopped, reason) = run_end(run);
            let _ = writeln!(
                o,
                "| {} | {} | {stopped} | {reason} | {} |",
                jtext(run, "id"),
                jtime(run, "started_ms"),
                HumanDuration(std::time::Duration::from_millis(interval.max(0) as u64))
            );
        }
    }
    for g in &r.gaps {
        let _ = writeln!(
            o,
            "\nGap: nothing was recorded from {} to {}.",
            format_time(g.from_ms),
            format_time(g.to_ms)
        );
    }
}

/// JSON: everything in the report, charts' data included.
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".into()) + "\n"
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1f2937}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.2rem}\
.meta{color:#6b7280}table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:13px}\
th,td{border-bottom:1px solid #e5e7eb;padding:.3rem .5rem;text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f9fafb}.chart{display:block;width:100%;height:auto}.tick{font-size:10px;fill:#4b5563}\
.axis-title{font-size:11px;fill:#374151}.marker-label{font-size:10px;font-weight:600}\
.legend{font-size:12px;color:#4b5563;margin:.2rem 0 1rem}.legend span{margin-right:.8rem}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}\
.legend i.gap{background:#e5e7eb}.leak{color:#b91c1c;font-weight:600}.ok{color:#047857}";

/// HTML: one self-contained file (inline CSS and SVG, no scripts, no network).
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let span = crate::units::format_duration_rough((r.to_ms - r.from_ms).max(0) as f64 / 1000.0);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title(r))
    );
    let _ = write!(
        o,
        "<h1>memtrail report: {}</h1><p class=\"meta\">{} to {} ({span}) · <code>{}</code>{} · generated {}</p>",
        esc(&subject(r)),
        esc(&format_time(r.from_ms)),
        esc(&format_time(r.to_ms)),
        esc(&r.database),
        r.target_filter
            .as_ref()
            .map_or(String::new(), |t| format!(" · target {}", esc(t))),
        esc(&format_time(r.generated_ms))
    );
    html_headline(&mut o, r);
    for c in &r.charts {
        let _ = write!(o, "<h2>{}</h2>{}", esc(&c.title), chart::svg(c, r));
    }
    html_series(&mut o, r);
    html_audit(&mut o, r);
    o.push_str("</body></html>\n");
    o
}

/// The headline: each target with a leak verdict, once, or that none grows.
fn html_headline(o: &mut String, r: &Report) {
    let leaks = leak_headline(&r.series);
    let _ = write!(
        o,
        "<p>{}</p>",
        if leaks.is_empty() {
            "<span class=\"ok\">No memory series is growing steadily over this range.</span>"
                .to_string()
        } else {
            format!(
                "<span class=\"leak\">Leak suspected in {}:</span> {}",
                leaks.len(),
                leaks
                    .iter()
                    .map(|s| esc(&headline_item(s)))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    );
    let patterns = pattern_items(&r.series);
    if !patterns.is_empty() {
        let _ = write!(
            o,
            "<p class=\"patterns\"><b>Recurring patterns:</b> {}</p>",
            esc(&patterns.join("; "))
        );
    }
}

/// The table of every series' figures and verdict.
fn html_series(o: &mut String, r: &Report) {
    let _ = write!(
        o,
        "<h2>Series</h2><table><tr><th>target</th><th>metric</th><th>last</th><th>min</th><th>max</th><th>average</th><th>change</th><th>verdict</th></tr>"
    );
    for s in &r.series {
        let v = |x: f64| esc(&format_value(&s.unit, x));
        let class = if s.verdict.starts_with("leak") {
            " class=\"leak\""
        } else {
            ""
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td{class}>{}</td></tr>",
            esc(&who(s.kind, &s.target, s.pid)),
            esc(&s.metric),
            v(s.last),
            v(s.min),
            v(s.max),
            v(s.avg),
            opt(s.change_pct, |c| format!("{c:+.1} %")),
            esc(&s.verdict)
        );
    }
}

/// The alerts, cleanups and recorder runs in the range, and the gaps between runs.
fn html_audit(o: &mut String, r: &Report) {
    o.push_str("</table><h2>Alerts</h2>");
    if r.alerts.is_empty() {
        o.push_str("<p>None in this range.</p>");
    } else {
        o.push_str("<table><tr><th>time</th><th>rule</th><th>event</th><th>severity</th><th>message</th></tr>");
        for a in &r.alerts {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&jtime(a, "ts_ms")),
                esc(&jtext(a, "rule")),
                esc(&jtext(a, "event")),
                esc(&jtext(a, "severity")),
                esc(&jtext(a, "message"))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Cleanups</h2>");
    if r.cleanups.is_empty() {
        o.push_str("<p>None in this range.</p>");
    } else {
        o.push_str("<table><tr><th>time</th><th>trigger</th><th>level</th><th>target</th><th>outcome</th><th>before</th><th>after</th><th>freed</th></tr>");
        for c in &r.cleanups {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&jtime(c, "started_ms")),
                esc(&jtext(c, "trigger")),
                esc(&jtext(c, "level")),
                esc(&jtext(c, "target")),
                esc(&jtext(c, "pid")),
                esc(&jtext(c, "outcome")),
                jbytes(c, "rss_before"),
                jbytes(c, "rss_after"),
                jbytes(c, "freed_bytes")
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Events</h2>");
    if r.events.is_empty() {
        o.push_str("<p>None in this range (<code>memtrail annotate</code> writes one).</p>");
    } else {
        o.push_str("<table><tr><th>time</th><th>kind</th><th>target</th><th>event</th></tr>");
        for e in &r.events {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&jtime(e, "ts_ms")),
                esc(&jtext(e, "kind")),
                esc(&event_target(e)),
                esc(&jtext(e, "label"))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Recorder runs</h2>");
    if r.runs.is_empty() {
        o.push_str("<p>No recorder run in this range (imported data only).</p>");
    } else {
        o.push_str("<table><tr><th>run</th><th>started</th><th>stopped</th><th>reason</th></tr>");
        for run in &r.runs {
            let (stopped, reason) = run_end(run);
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&jtext(run, "id")),
                esc(&jtime(run, "started_ms")),
                esc(&stopped),
                esc(&reason)
            );
        }
        o.push_str("</table>");
    }
    for g in &r.gaps {
        let _ = write!(
            o,
            "<p>Gap: nothing was recorded from {} to {}.</p>",
            esc(&format_time(g.from_ms)),
            esc(&format_time(g.to_ms))
        );
    }
}

/// CSV of the samples in the range: every sample (`raw`) or min/avg/max per `bucket_ms`.
pub fn csv(
    conn: &Connection,
    o: &Options,
    raw: bool,
    bucket_ms: i64,
    out: &mut dyn Write,
) -> Result<u64, ReportError> {
    use crate::present::output::csv_field;
    let progress = Progress::new("export");
    let series = analysis::run(
        conn,
        "summary",
        &{
            let mut p = filters(&o.target);
            p.push(("from_ms", Cell::Int(o.from_ms)));
            p.push(("to_ms", Cell::Int(o.to_ms)));
            p
        },
        o.to_ms,
    )?;
    let total: i64 = (0..series.rows.len())
        .filter_map(|r| series.get(r, "samples").as_i64())
        .sum();
    if raw {
        writeln!(out, "ts_ms,time,kind,target,pid,metric,unit,value\r")?;
    } else {
        writeln!(
            out,
            "bucket_ms,time,kind,target,pid,metric,unit,min,avg,max,samples\r"
        )?;
    }
    let mut done = 0i64;
    let mut lines = 0u64;
    for r in 0..series.rows.len() {
        let sid = series.get(r, "series_id").as_i64().unwrap_or(0);
        let text = |c: &str| csv_field(series.get(r, c).as_str().unwrap_or(""));
        let pid = series
            .get(r, "pid")
            .as_i64()
            .map_or(String::new(), |p| p.to_string());
        let prefix = format!(
            "{},{},{pid},{},{}",
            text("kind"),
            text("target"),
            text("metric"),
            text("unit")
        );
        lines += if raw {
            write_raw(conn, o, sid, &prefix, out)?
        } else {
            write_buckets(conn, o, sid, bucket_ms, &prefix, out)?
        };
        done += series.get(r, "samples").as_i64().unwrap_or(0);
        progress.step(done as usize, total as usize);
    }
    progress.done();
    Ok(lines)
}

/// Every sample of one series in the range, a CSV line each; returns the lines written.
fn write_raw(
    conn: &Connection,
    o: &Options,
    sid: i64,
    prefix: &str,
    out: &mut dyn Write,
) -> Result<u64, ReportError> {
    let mut lines = 0;
    let t = store::query_table(
        conn,
        "SELECT ts_ms, value FROM samples WHERE series_id = :sid AND ts_ms >= :from AND ts_ms <= :to ORDER BY ts_ms",
        &[
            ("sid", Cell::Int(sid)),
            ("from", Cell::Int(o.from_ms)),
            ("to", Cell::Int(o.to_ms)),
        ],
    )?;
    for row in &t.rows {
        let (Some(ts), Some(v)) = (row[0].as_i64(), row[1].as_f64()) else {
            continue;
        };
        writeln!(out, "{ts},{},{prefix},{v}\r", rfc3339_ms(ts))?;
        lines += 1;
    }
    Ok(lines)
}

/// One series' min/avg/max per bucket, a CSV line each; returns the lines written.
fn write_buckets(
    conn: &Connection,
    o: &Options,
    sid: i64,
    bucket_ms: i64,
    prefix: &str,
    out: &mut dyn Write,
) -> Result<u64, ReportError> {
    let mut lines = 0;
    let t = analysis::run(
        conn,
        "downsample",
        &[
            ("series_id", Cell::Int(sid)),
            ("from_ms", Cell::Int(o.from_ms)),
            ("to_ms", Cell::Int(o.to_ms + 1)),
            ("bucket_ms", Cell::Int(bucket_ms)),
        ],
        o.to_ms,
    )?;
    for i in 0..t.rows.len() {
        let b = t.get(i, "bucket_ms").as_i64().unwrap_or(0);
        let f = |c: &str| {
            t.get(i, c)
                .as_f64()
                .map_or(String::new(), |v| v.to_string())
        };
        writeln!(
            out,
            "{b},{},{prefix},{},{},{},{}\r",
            rfc3339_ms(b),
            f("min"),
            f("avg"),
            f("max"),
            f("samples")
        )?;
        lines += 1;
    }
    Ok(lines)
}

/// A time as RFC 3339 with milliseconds, UTC (`2026-12-01T20:10:26.000Z`).
fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or(String::new(), |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

pub(crate) mod chart;

#[cfg(test)]
pub(crate) mod tests;

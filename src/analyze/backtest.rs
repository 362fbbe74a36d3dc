//! `memtrail backtest`: replays alert rules over the stored history as if they had been live —
//! the same engine and the same SQL, evaluated after the recorded ticks on the recorder's own
//! evaluation grid (every `step`) — and
//! reports when each alert would have fired and resolved. The database is opened read-only; the
//! engine writes only to TEMP copies of the alert tables, so a backtest never changes the file.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::analyze::alerts::{self, AlertError, AlertEvent, Engine, EvaluationGrid, Rule};
use crate::model::{Cell, Table};
use crate::store::{self, StoreError};
use crate::units::HumanDuration;
use crate::units::format_time;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Alert(#[from] AlertError),
    #[error("the database has no samples to replay")]
    Empty,
    #[error("--step must be at least 1s")]
    Step,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    pub evaluations: u64,
    pub rules: Vec<Rule>,
    pub events: Vec<AlertEvent>,
}

/// The step used when none is given and no recorded run says what it used.
const DEFAULT_STEP: Duration = Duration::from_secs(60);

/// Replay `rules` over `[from_ms, to_ms]` (default: all the history). Rules are evaluated after
/// recorded ticks (the distinct sample times) on the recorder's evaluation grid, restarted at each
/// run's first tick, every `step` (default: the evaluation interval the latest run recorded, else
/// a minute), so a backtest of a recording finds the alerts the recorder fired live.
pub fn run(
    db: &Path,
    rules: Vec<Rule>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    step: Option<Duration>,
) -> Result<Report, BacktestError> {
    if step.is_some_and(|s| s < Duration::from_secs(1)) {
        return Err(BacktestError::Step);
    }
    let conn = store::open_scratch(db, Duration::from_secs(5))?;
    store::scratch_alert_tables(&conn)?;
    alerts::install(&conn, &rules)?;
    let (first, last) = span(&conn)?;
    let (from, to) = (from_ms.unwrap_or(first), to_ms.unwrap_or(last));
    let runs = recorded_runs(&conn, to)?;
    let step = step
        .or_else(|| runs.last().and_then(|r| r.evaluation_interval))
        .unwrap_or(DEFAULT_STEP);
    let ticks = store::query_table(
        &conn,
        "SELECT DISTINCT ts_ms FROM samples WHERE ts_ms BETWEEN :from AND :to ORDER BY ts_ms",
        &[("from", Cell::Int(from)), ("to", Cell::Int(to))],
    )?;
    // As the recorder evaluated: a trend rule's series spread over the evaluations.
    let mut engine = Engine::evaluated_every(rules.clone(), step);
    let mut events = Vec::new();
    let mut evaluations = 0;
    let mut grid: Option<(usize, EvaluationGrid)> = None;
    for r in 0..ticks.rows.len() {
        let Some(ts) = ticks.get(r, "ts_ms").as_i64() else {
            continue;
        };
        // Ticks of one run share a grid; a new run (or history no run recorded) starts one.
        // (A run's first tick may be stamped a moment before its start: its clock is read first.)
        let run = runs
            .iter()
            .rposition(|run| run.started_ms <= ts + run.interval.as_millis() as i64);
        let tick_interval = run.map_or(Duration::ZERO, |i| runs[i].interval);
        let key = run.map_or(usize::MAX, |i| i);
        if grid.as_ref().is_none_or(|(k, _)| *k != key) {
            grid = Some((key, EvaluationGrid::new(step, tick_interval)));
        }
        let Some((_, g)) = grid.as_mut() else {
            continue;
        };
        if g.due(ts) {
            g.evaluated(ts);
            events.extend(engine.evaluate(&conn, ts)?);
            evaluations += 1;
        }
    }
    Ok(Report {
        from_ms: from,
        to_ms: to,
        step_ms: step.as_millis() as i64,
        evaluations,
        rules,
        events,
    })
}

/// The first and last sample time.
fn span(conn: &rusqlite::Connection) -> Result<(i64, i64), BacktestError> {
    let span = store::query_table(
        conn,
        "SELECT min(first) AS first, max(last) AS last FROM (
           SELECT (SELECT min(ts_ms) FROM samples WHERE series_id = s.id) AS first,
                  (SELECT max(ts_ms) FROM samples WHERE series_id = s.id) AS last
           FROM series AS s)",
        &[] as &[(&str, Cell)],
    )?;
    match (span.get(0, "first").as_i64(), span.get(0, "last").as_i64()) {
        (Some(first), Some(last)) => Ok((first, last)),
        _ => Err(BacktestError::Empty),
    }
}

/// A recording run, as the replay needs it: where its ticks start, how often they came, and the
/// evaluation interval it ran its rules at.
struct RecordedRun {
    started_ms: i64,
    interval: Duration,
    evaluation_interval: Option<Duration>,
}

/// The runs started by `to_ms`, oldest first (imported history has none).
fn recorded_runs(
    conn: &rusqlite::Connection,
    to_ms: i64,
) -> Result<Vec<RecordedRun>, BacktestError> {
    let t = store::query_table(
        conn,
        "SELECT started_ms, interval_ms,
                json_extract(settings, '$.evaluation_interval') AS evaluation_interval
         FROM runs WHERE started_ms <= :to ORDER BY started_ms",
        &[("to", Cell::Int(to_ms))],
    )?;
    Ok((0..t.rows.len())
        .filter_map(|r| {
            Some(RecordedRun {
                started_ms: t.get(r, "started_ms").as_i64()?,
                interval: Duration::from_millis(t.get(r, "interval_ms").as_i64()?.max(0) as u64),
                evaluation_interval: match t.get(r, "evaluation_interval") {
                    Cell::Text(s) => s.parse::<HumanDuration>().ok().map(|d| d.0),
                    _ => None,
                },
            })
        })
        .collect())
}

impl Report {
    /// The timeline as a table (for the table and CSV formats).
    pub fn timeline(&self) -> Table {
        let text = |s: &str| Cell::Text(s.to_string());
        Table {
            columns: [
                "time",
                "rule",
                "event",
                "severity",
                "target",
                "pid",
                "metric",
                "observed",
                "threshold",
                "message",
            ]
            .map(String::from)
            .to_vec(),
            rows: self
                .events
                .iter()
                .map(|e| {
                    vec![
                        Cell::Text(format_time(e.ts_ms)),
                        text(&e.rule),
                        text(e.event.as_str()),
                        text(&e.severity),
                        text(&e.target),
                        e.pid.map_or(Cell::Null, Cell::Int),
                        text(&e.metric),
                        e.observed.map_or(Cell::Null, Cell::Real),
                        Cell::Real(e.threshold),
                        text(&e.message),
                    ]
                })
                .collect(),
        }
    }

    pub fn summary(&self) -> String {
        use crate::model::AlertEventKind as K;
        let count = |kind: K| self.events.iter().filter(|e| e.event == kind).count();
        format!(
            "replayed {} rules over {} .. {} every {} s ({} evaluations): {} fired, {} resolved, {} suppressed by cooldown, {} repeats",
            self.rules.len(),
            format_time(self.from_ms),
            format_time(self.to_ms),
            self.step_ms / 1000,
            self.evaluations,
            count(K::Firing),
            count(K::Resolved),
            count(K::Suppressed),
            count(K::Repeat)
        )
    }
}

//! `memtrail backtest`: replays alert rules over the stored history as if they had been live —
//! the same engine and the same SQL, evaluated every `step` from the first sample to the last — and
//! reports when each alert would have fired and resolved. The database is opened read-only; the
//! engine writes only to TEMP copies of the alert tables, so a backtest never changes the file.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::alerts::{self, AlertError, AlertEvent, Engine, Rule};
use crate::model::{Cell, Table};
use crate::status::format_time;
use crate::store::{self, StoreError};

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

pub fn run(
    db: &Path,
    rules: Vec<Rule>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    step: Duration,
) -> Result<Report, BacktestError> {
    if step < Duration::from_secs(1) {
        return Err(BacktestError::Step);
    }
    let conn = store::open_scratch(db, Duration::from_secs(5))?;
    store::scratch_alert_tables(&conn)?;
    alerts::install(&conn, &rules)?;
    let span = store::query_table(
        &conn,
        "SELECT min(first) AS first, max(last) AS last FROM (
           SELECT (SELECT min(ts_ms) FROM samples WHERE series_id = s.id) AS first,
                  (SELECT max(ts_ms) FROM samples WHERE series_id = s.id) AS last
           FROM series AS s)",
        &[] as &[(&str, Cell)],
    )?;
    let (Some(first), Some(last)) = (span.get(0, "first").as_i64(), span.get(0, "last").as_i64())
    else {
        return Err(BacktestError::Empty);
    };
    let (from, to) = (from_ms.unwrap_or(first), to_ms.unwrap_or(last));
    let step_ms = step.as_millis() as i64;
    let engine = Engine::new(rules.clone());
    let mut events = Vec::new();
    let mut evaluations = 0;
    let mut now = from;
    while now <= to {
        events.extend(engine.evaluate(&conn, now)?);
        evaluations += 1;
        now += step_ms;
    }
    Ok(Report {
        from_ms: from,
        to_ms: to,
        step_ms,
        evaluations,
        rules,
        events,
    })
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
                        text(&e.event),
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
        let count = |kind: &str| self.events.iter().filter(|e| e.event == kind).count();
        format!(
            "replayed {} rules over {} .. {} every {} s ({} evaluations): {} fired, {} resolved, {} suppressed by cooldown, {} repeats",
            self.rules.len(),
            format_time(self.from_ms),
            format_time(self.to_ms),
            self.step_ms / 1000,
            self.evaluations,
            count("firing"),
            count("resolved"),
            count("suppressed"),
            count("repeat")
        )
    }
}

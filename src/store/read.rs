//! Reads for people and the API: ad-hoc SQL (read-only, under a deadline, streamed), each
//! series' latest state over a window, the newest run.

use super::*;

/// Why an ad-hoc statement was not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdHocError {
    #[error("SQL error: {0}")]
    Invalid(String),
    #[error(
        "ad-hoc SQL is read-only: only SELECT (and read-only PRAGMA/EXPLAIN) statements run; this one would change the database"
    )]
    Writes,
    #[error("ad-hoc SQL cannot ATTACH other database files: query the memtrail database only")]
    Attach,
    #[error(
        "the query ran past its time limit of {} and was stopped: narrow it, or give it longer with --timeout",
        crate::units::HumanDuration(*.0)
    )]
    Timeout(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Run one ad-hoc statement on a read-only connection: anything that would write is refused
/// before it runs, and the connection is read-only and `query_only` besides. It is stopped once
/// it has run for `limit` (SQLite's progress handler, checked every few thousand VM steps).
pub(crate) fn adhoc_query(
    conn: &mut Connection,
    sql: &str,
    limit: Duration,
    sink: &mut dyn crate::model::Rows,
) -> std::result::Result<(), AdHocError> {
    let ran = within(conn, limit, |conn| adhoc_query_unlimited(conn, sql, sink))
        .map_err(|e| AdHocError::Invalid(e.to_string()))?;
    match ran {
        (Err(AdHocError::Invalid(_)), true) => Err(AdHocError::Timeout(limit)),
        (other, _) => other,
    }
}

pub(super) fn adhoc_query_unlimited(
    conn: &Connection,
    sql: &str,
    sink: &mut dyn crate::model::Rows,
) -> std::result::Result<(), AdHocError> {
    let stmt = conn
        .prepare(sql)
        .map_err(|e| AdHocError::Invalid(e.to_string()))?;
    if sql
        .trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("attach"))
    {
        return Err(AdHocError::Attach);
    }
    if !stmt.readonly() {
        return Err(AdHocError::Writes);
    }
    drop(stmt);
    for_each_row(conn, sql, &[] as &[(&str, Cell)], sink).map_err(|e| match e {
        StoreError::Sqlite { cause, .. } => AdHocError::Invalid(cause.to_string()),
        other => AdHocError::Store(other),
    })
}

/// One row of the `status` query.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct SeriesStatus {
    pub series_id: i64,
    pub kind: Kind,
    pub target: String,
    pub pid: Option<u32>,
    pub gone_ms: Option<i64>,
    pub metric: String,
    pub unit: String,
    pub latest_ts_ms: i64,
    pub latest: f64,
    pub window_min: Option<f64>,
    pub window_max: Option<f64>,
    pub samples: i64,
}

pub(crate) fn series_status(
    conn: &Connection,
    now_ms: i64,
    window_ms: i64,
) -> Result<Vec<SeriesStatus>> {
    let mut stmt = conn
        .prepare(include_str!("../../queries/status.sql"))
        .map_err(ctx("preparing the status query"))?;
    let rows = stmt
        .query_map(
            rusqlite::named_params! {":now_ms": now_ms, ":window_ms": window_ms},
            |r| {
                let kind: String = r.get("kind")?;
                Ok(SeriesStatus {
                    series_id: r.get("series_id")?,
                    kind: Kind::parse(&kind).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            format!("{kind:?} is not a kind of target").into(),
                        )
                    })?,
                    target: r.get("target")?,
                    pid: r.get("pid")?,
                    gone_ms: r.get("gone_ms")?,
                    metric: r.get("metric")?,
                    unit: r.get("unit")?,
                    latest_ts_ms: r.get("latest_ts_ms")?,
                    latest: r.get("latest")?,
                    window_min: r.get("window_min")?,
                    window_max: r.get("window_max")?,
                    samples: r.get("samples")?,
                })
            },
        )
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(ctx("running the status query"))?;
    Ok(rows)
}

/// The newest recorder run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct RunStatus {
    pub id: i64,
    pub started_ms: i64,
    pub stopped_ms: Option<i64>,
    pub last_tick_ms: Option<i64>,
    pub stop_reason: Option<String>,
    pub pid: u32,
    pub interval_ms: i64,
    pub host: String,
    pub version: String,
}

pub(crate) fn last_run(conn: &Connection) -> Result<Option<RunStatus>> {
    conn.query_row(
        "SELECT id, started_ms, stopped_ms, last_tick_ms, stop_reason, pid, interval_ms, host, version
         FROM runs ORDER BY id DESC LIMIT 1",
        [],
        |r| {
            Ok(RunStatus {
                id: r.get(0)?,
                started_ms: r.get(1)?,
                stopped_ms: r.get(2)?,
                last_tick_ms: r.get(3)?,
                stop_reason: r.get(4)?,
                pid: r.get(5)?,
                interval_ms: r.get(6)?,
                host: r.get(7)?,
                version: r.get(8)?,
            })
        },
    )
    .optional()
    .map_err(ctx("reading the last run"))
}

//! The audit tables: alert deliveries, the claim and outcome of each cleanup run (one open claim
//! per process, taken in an IMMEDIATE transaction), events (annotations, a launched command's start
//! and exit); a backtest's scratch alert tables.

use super::*;

/// A cleanup about to start (see `Store::claim_cleanup`).
pub(crate) struct Claim<'a> {
    pub trigger: &'a str,
    pub rule: Option<&'a str>,
    pub level: &'a str,
    pub pid: u32,
    pub start_time_ms: i64,
    pub target: &'a str,
    pub actions: &'a str,
    /// An open claim older than this was left by a crash and no longer counts.
    pub stale_after_ms: i64,
}

/// The open cleanup that holds a claim.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Busy {
    pub run_id: i64,
    pub trigger: String,
    pub started_ms: i64,
}

/// A cleanup's result.
pub(crate) struct Finish<'a> {
    pub id: i64,
    pub ended_ms: i64,
    pub outcome: &'a str,
    pub exit_code: Option<i32>,
    pub http_status: Option<u16>,
    pub output: &'a str,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub freed_bytes: Option<i64>,
}

impl Store {
    /// Record the outcome of alert deliveries (webhook, command).
    pub(crate) fn record_deliveries(
        &mut self,
        deliveries: &[crate::model::Delivery],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(ctx("starting a transaction"))?;
        for d in deliveries {
            tx.execute(
                "INSERT INTO notifications (alert_id, ts_ms, channel, ok, attempts, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![d.alert_id, d.ts_ms, d.channel, d.ok, d.attempts, d.detail],
            )
            .map_err(ctx("recording a notification"))?;
        }
        tx.commit().map_err(ctx("committing notifications"))
    }

    /// Claim a process for a cleanup: in one IMMEDIATE transaction (so two processes cannot both
    /// win), refuse when an open run of the same process exists, close a stale one as abandoned,
    /// and insert the open row. Returns the new run's id and start, or who holds the claim.
    pub(crate) fn claim_cleanup(
        &mut self,
        c: &Claim<'_>,
    ) -> Result<std::result::Result<(i64, i64), Busy>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(ctx("starting a cleanup claim"))?;
        let now = chrono::Utc::now().timestamp_millis();
        let open: Option<(i64, String, i64)> = tx
            .query_row(
                "SELECT id, trigger, started_ms FROM cleanup_runs
                 WHERE pid = ?1 AND start_time_ms = ?2 AND ended_ms IS NULL
                 ORDER BY started_ms DESC LIMIT 1",
                params![c.pid, c.start_time_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(ctx("checking for a running cleanup"))?;
        if let Some((run_id, trigger, started_ms)) = open {
            if started_ms > now - c.stale_after_ms {
                return Ok(Err(Busy {
                    run_id,
                    trigger,
                    started_ms,
                }));
            }
            tx.execute(
                "UPDATE cleanup_runs SET ended_ms = ?2, outcome = 'abandoned' WHERE id = ?1",
                params![run_id, now],
            )
            .map_err(ctx("closing an abandoned cleanup"))?;
        }
        tx.execute(
            "INSERT INTO cleanup_runs (trigger, rule, level, pid, start_time_ms, target, actions, started_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![c.trigger, c.rule, c.level, c.pid, c.start_time_ms, c.target, c.actions, now],
        )
        .map_err(ctx("recording the cleanup"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(ctx("committing the cleanup claim"))?;
        Ok(Ok((id, now)))
    }

    /// Write an event (an annotation, a launched command's start or exit); returns its id.
    pub(crate) fn add_event(&mut self, e: &crate::model::NewEvent) -> Result<i64> {
        insert_event(&self.conn, e)
    }

    pub(crate) fn finish_cleanup(&mut self, f: &Finish<'_>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE cleanup_runs SET ended_ms = ?2, outcome = ?3, exit_code = ?4, http_status = ?5,
                    output = ?6, rss_before = ?7, rss_after = ?8, freed_bytes = ?9
                 WHERE id = ?1",
                params![
                    f.id,
                    f.ended_ms,
                    f.outcome,
                    f.exit_code,
                    f.http_status,
                    f.output,
                    f.rss_before.map(|v| v as f64),
                    f.rss_after.map(|v| v as f64),
                    f.freed_bytes.map(|v| v as f64)
                ],
            )
            .map_err(ctx("recording the cleanup's result"))?;
        Ok(())
    }
}

/// Shadow the alert tables with empty TEMP copies (same definitions, read from the schema), so
/// the alert engine can run unchanged on a read-only connection without touching the file.
pub(crate) fn scratch_alert_tables(conn: &Connection) -> Result<()> {
    let ddl: Vec<(String, String)> = conn
        .prepare(
            "SELECT type, sql FROM main.sqlite_master
             WHERE sql IS NOT NULL AND (name IN ('rules', 'alert_state', 'alerts', 'notifications', 'alert_conditions')
                OR tbl_name IN ('rules', 'alert_state', 'alerts', 'notifications') AND type = 'index')
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(ctx("reading the alert tables' definitions"))?;
    for (kind, sql) in ddl {
        let temp = match kind.as_str() {
            "table" => sql.replacen("CREATE TABLE ", "CREATE TEMP TABLE ", 1),
            "view" => sql.replacen("CREATE VIEW ", "CREATE TEMP VIEW ", 1),
            _ => sql.replacen("CREATE INDEX ", "CREATE INDEX temp.", 1),
        };
        conn.execute_batch(&temp)
            .map_err(ctx("creating scratch alert tables"))?;
    }
    Ok(())
}

/// Insert an event. One with a pid but no target name takes the name that pid was last recorded
/// under.
fn insert_event(conn: &Connection, e: &crate::model::NewEvent) -> Result<i64> {
    conn.execute(
        "INSERT INTO events (ts_ms, kind, label, target, pid)
         VALUES (?1, ?2, ?3, coalesce(?4, (SELECT name FROM targets WHERE pid = ?5
                                           ORDER BY last_seen_ms DESC LIMIT 1)), ?5)",
        params![e.ts_ms, e.kind.as_str(), e.label, e.target, e.pid],
    )
    .map_err(ctx("recording the event"))?;
    Ok(conn.last_insert_rowid())
}

/// Write an event into the database at `db`, which must exist (an annotation never creates a
/// database where no recorder writes), waiting up to `busy` for the recorder's transaction.
/// Returns its id and the target name it was written with.
pub(crate) fn record_event(
    db: &Path,
    e: &crate::model::NewEvent,
    busy: Duration,
) -> Result<(i64, Option<String>)> {
    if !db.exists() {
        return Err(StoreError::Missing {
            path: db.to_path_buf(),
        });
    }
    let conn = open_for_a_write(db, busy)?;
    let id = insert_event(&conn, e)?;
    let target = conn
        .query_row("SELECT target FROM events WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .map_err(ctx("reading the event back"))?;
    Ok((id, target))
}

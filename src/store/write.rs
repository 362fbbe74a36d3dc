//! What the recorder writes: runs, each tick's samples in one transaction (targets and series
//! looked up once and cached), the retention prune in bounded batches, incremental vacuum, and
//! imported histories.

use super::*;

/// Facts about a recorder run, written to `runs` when it starts.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub started_ms: i64,
    pub interval_ms: i64,
    pub retention_ms: i64,
    pub host: String,
    pub settings_json: String,
}

/// What one prune pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Pruned {
    pub samples: usize,
    pub targets: usize,
}

/// Series ids by target id, then metric: looked up by `&str` without allocating.
pub(super) type SeriesCache = HashMap<i64, HashMap<String, i64>>;

/// What an import stored: samples new to the database, ones whose stored value the file changed,
/// and ones already there with the same value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// What the writer remembers between ticks so a tick writes only its samples.
#[derive(Default)]
pub(super) struct WriteCache {
    targets: HashMap<TargetKey, i64>,
    series: SeriesCache,
    /// The `last_seen_ms` last written for each target, and the `runs.last_tick_ms` last written:
    /// rewriting them every tick dirtied two more pages per commit for nothing (pruning works in
    /// hours, and a crashed run is closed at its last written tick, at most a second early).
    seen_written: HashMap<i64, i64>,
    tick_written_ms: Option<i64>,
    /// A batch's samples (series, time, value), gathered to be inserted series by series.
    rows: Vec<(i64, i64, f64)>,
}

/// How stale `targets.last_seen_ms` and `runs.last_tick_ms` may get before a tick rewrites them.
pub(super) const SEEN_EVERY_MS: i64 = 60_000;

pub(super) const TICK_EVERY_MS: i64 = 1_000;

impl Store {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest tick an earlier run recorded (its last tick, or its start), if any.
    pub(crate) fn newest_tick_ms(&self) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT max(coalesce(last_tick_ms, started_ms)) FROM runs",
                [],
                |r| r.get(0),
            )
            .map_err(ctx("reading the newest recorded tick"))
    }

    /// How long a write waits for another connection's lock before it fails (SQLITE_BUSY).
    pub(crate) fn set_busy_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.conn
            .busy_timeout(timeout)
            .map_err(ctx("setting the busy timeout"))
    }

    /// Close runs a crashed recorder left open (we hold the lock, so none is live), then start ours.
    pub(crate) fn begin_run(&mut self, info: &RunInfo) -> Result<i64> {
        self.ids.tick_written_ms = None;
        self.last_tick_ms = None;
        self.conn
            .execute(
                "UPDATE runs SET stopped_ms = coalesce(last_tick_ms, started_ms), stop_reason = 'crashed'
                 WHERE stopped_ms IS NULL",
                [],
            )
            .map_err(ctx("starting this run"))?;
        self.conn
            .execute(
                "INSERT INTO runs (started_ms, version, interval_ms, retention_ms, host, pid, settings)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    info.started_ms,
                    env!("CARGO_PKG_VERSION"),
                    info.interval_ms,
                    info.retention_ms,
                    info.host,
                    std::process::id(),
                    info.settings_json
                ],
            )
            .map_err(ctx("recording the start of this run"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Set a run's last tick (written at most once a second while recording).
    pub(crate) fn mark_last_tick(&mut self, run_id: i64, ts_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET last_tick_ms = max(coalesce(last_tick_ms, ?2), ?2) WHERE id = ?1",
                params![run_id, ts_ms],
            )
            .map_err(ctx("recording a run's last tick"))?;
        Ok(())
    }

    /// The run a crashed recorder left open (the newest), if any.
    pub(crate) fn open_run(&self) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT max(id) FROM runs WHERE stopped_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(ctx("looking for a run left open"))
    }

    pub(crate) fn end_run(&mut self, run_id: i64, stopped_ms: i64, reason: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET stopped_ms = ?2, stop_reason = ?3,
                 last_tick_ms = coalesce(?4, last_tick_ms) WHERE id = ?1",
                params![run_id, stopped_ms, reason, self.last_tick_ms],
            )
            .map_err(ctx("recording the end of this run"))?;
        Ok(())
    }

    /// Write one tick in one transaction. Returns the number of samples written.
    #[cfg(test)]
    pub(crate) fn write_tick(&mut self, run_id: i64, snap: &Snapshot) -> Result<usize> {
        self.write_ticks(run_id, std::slice::from_ref(snap))
    }

    /// Write ticks (oldest first) in one transaction: all of them or, on an error, none.
    /// Returns the number of samples written.
    pub(crate) fn write_ticks(&mut self, run_id: i64, snaps: &[Snapshot]) -> Result<usize> {
        let result = self.write_ticks_inner(run_id, snaps);
        if result.is_ok() {
            if let Some(last) = snaps.last() {
                self.last_tick_ms = Some(last.ts_ms);
            }
        } else {
            // The transaction rolled back: ids cached during it may not exist.
            self.ids = WriteCache::default();
        }
        result
    }

    fn write_ticks_inner(&mut self, run_id: i64, snaps: &[Snapshot]) -> Result<usize> {
        // BEGIN and COMMIT are cached statements: rusqlite's `transaction()` parses both again on
        // every call, which was a tenth of a tick's instructions.
        let conn = &self.conn;
        let step = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
        step("BEGIN").map_err(ctx("starting the tick's transaction"))?;
        let ids = &mut self.ids;
        let result = snaps
            .iter()
            .try_for_each(|snap| write_one(conn, ids, run_id, snap))
            .and_then(|()| insert_rows(conn, &mut ids.rows))
            .and_then(|n| {
                step("COMMIT").map_err(ctx("committing the tick"))?;
                Ok(n)
            });
        if result.is_err() && !conn.is_autocommit() {
            // Nothing of these ticks is kept; a failed rollback leaves SQLite to roll back.
            let _ = step("ROLLBACK");
        }
        result
    }

    /// Delete at most `budget` samples older than `cutoff_ms`, oldest first, series by series, so
    /// a prune never holds the write lock for long; then drop targets with nothing left.
    pub(crate) fn prune(&mut self, cutoff_ms: i64, budget: usize) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let tx = self.conn.transaction().map_err(ctx("starting a prune"))?;
        let stale: Vec<i64> = tx
            .prepare_cached(
                "SELECT s.id FROM series s
                 WHERE (SELECT ts_ms FROM samples WHERE series_id = s.id ORDER BY ts_ms LIMIT 1) < ?1",
            )
            .and_then(|mut s| s.query_map([cutoff_ms], |r| r.get(0))?.collect())
            .map_err(ctx("finding series to prune"))?;
        for sid in stale {
            let left = budget.saturating_sub(pruned.samples);
            if left == 0 {
                break;
            }
            pruned.samples += tx
                .prepare_cached(
                    "DELETE FROM samples WHERE series_id = ?1 AND ts_ms < ?2 AND ts_ms <= coalesce(
                       (SELECT ts_ms FROM samples WHERE series_id = ?1 AND ts_ms < ?2
                        ORDER BY ts_ms LIMIT 1 OFFSET ?3), ?2)",
                )
                .and_then(|mut s| s.execute(params![sid, cutoff_ms, left as i64 - 1]))
                .map_err(ctx("pruning samples"))?;
        }
        // Targets not seen since the cutoff whose samples are all gone. `last_seen_ms` is
        // written at most every SEEN_EVERY_MS, so a target is gone only when even the latest
        // moment it may have been seen is before the cutoff: a retention shorter than that must
        // not take a live target (and its sparse series) for gone.
        let gone_before = cutoff_ms.saturating_sub(SEEN_EVERY_MS);
        let series = tx
            .execute(
                "DELETE FROM series WHERE target_id IN (SELECT id FROM targets WHERE last_seen_ms < ?1)
                   AND NOT EXISTS (SELECT 1 FROM samples WHERE series_id = series.id)",
                [gone_before],
            )
            .map_err(ctx("pruning series"))?;
        pruned.targets = tx
            .execute(
                "DELETE FROM targets WHERE last_seen_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM series WHERE target_id = targets.id)",
                [gone_before],
            )
            .map_err(ctx("pruning targets"))?;
        tx.commit().map_err(ctx("committing a prune"))?;
        if series > 0 || pruned.targets > 0 {
            self.ids.targets.clear();
            self.ids.series.clear();
        }
        Ok(pruned)
    }

    /// Hand free pages back to the file system when more than a quarter of the file is free
    /// (after a retention change or many short-lived targets). In steady state freed pages are
    /// simply reused by new samples, which is what keeps the file from growing.
    pub(crate) fn maybe_vacuum(&mut self) -> Result<u64> {
        let (total, free) = self.page_stats()?;
        if free > 256 && free * 4 > total {
            self.conn
                .execute_batch("PRAGMA incremental_vacuum(1024)")
                .map_err(ctx("incremental vacuum"))?;
            return Ok(free.min(1024) as u64);
        }
        Ok(0)
    }

    /// Write imported series in one transaction; returns the number of samples written.
    /// Write imported series in one transaction. A sample already stored (same series and time)
    /// takes the file's value; the counts say how many were new, changed, or already there.
    pub fn import(&mut self, series: &[crate::model::ImportedSeries]) -> Result<Imported> {
        let tx = self
            .conn
            .transaction()
            .map_err(ctx("starting the import"))?;
        let mut counts = Imported::default();
        for s in series {
            let (Some(first), Some(last)) = (
                s.points.iter().map(|p| p.0).min(),
                s.points.iter().map(|p| p.0).max(),
            ) else {
                continue;
            };
            let tid = target_id(&tx, &mut self.ids.targets, &s.key, &s.cmdline, first)?;
            tx.execute(
                "UPDATE targets SET first_seen_ms = min(first_seen_ms, ?2), last_seen_ms = max(last_seen_ms, ?3)
                 WHERE id = ?1",
                params![tid, first, last],
            )
            .map_err(ctx("updating an imported target"))?;
            let sid = series_id(&tx, &mut self.ids.series, tid, &s.metric, s.unit)?;
            // Not INSERT OR REPLACE: REPLACE makes SQLite open a statement journal (a savepoint
            // copying each touched page) for every row.
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (series_id, ts_ms) DO NOTHING",
                )
                .map_err(ctx("preparing the import"))?;
            let mut update = tx
                .prepare_cached(
                    "UPDATE samples SET value = ?3 WHERE series_id = ?1 AND ts_ms = ?2 AND value IS NOT ?3",
                )
                .map_err(ctx("preparing the import"))?;
            for (ts, v) in &s.points {
                if insert
                    .execute(params![sid, ts, v])
                    .map_err(ctx("importing a sample"))?
                    == 1
                {
                    counts.new += 1;
                } else if update
                    .execute(params![sid, ts, v])
                    .map_err(ctx("importing a sample"))?
                    == 1
                {
                    counts.changed += 1;
                } else {
                    counts.unchanged += 1;
                }
            }
        }
        tx.commit().map_err(ctx("committing the import"))?;
        Ok(counts)
    }

    pub fn page_stats(&self) -> Result<(i64, i64)> {
        let q = |name: &str| -> Result<i64> {
            self.conn
                .pragma_query_value(None, name, |r| r.get(0))
                .map_err(ctx("reading page counts"))
        };
        Ok((q("page_count")?, q("freelist_count")?))
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// A tick's targets, series, `gone` marks and the run's last tick; its samples are added to
/// `ids.rows` for [`insert_rows`]; inside the caller's transaction.
pub(super) fn write_one(
    tx: &Connection,
    ids: &mut WriteCache,
    run_id: i64,
    snap: &Snapshot,
) -> Result<()> {
    for t in &snap.targets {
        let target_id = target_id(tx, &mut ids.targets, &t.key, &t.cmdline, snap.ts_ms)?;
        if ids
            .seen_written
            .get(&target_id)
            .is_none_or(|&w| snap.ts_ms - w >= SEEN_EVERY_MS)
        {
            tx.prepare_cached("UPDATE targets SET last_seen_ms = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![target_id, snap.ts_ms]))
                .map_err(ctx("updating a target"))?;
            ids.seen_written.insert(target_id, snap.ts_ms);
        }
        for v in &t.values {
            if !v.value.is_finite() {
                continue;
            }
            let sid = series_id(tx, &mut ids.series, target_id, &v.metric, v.unit)?;
            ids.rows.push((sid, snap.ts_ms, v.value));
        }
    }
    for key in &snap.gone {
        if let Some(id) = lookup_target(tx, &mut ids.targets, key)? {
            tx.execute(
                "UPDATE targets SET gone_ms = ?2 WHERE id = ?1 AND gone_ms IS NULL",
                params![id, snap.ts_ms],
            )
            .map_err(ctx("marking a target gone"))?;
        }
    }
    if ids
        .tick_written_ms
        .is_none_or(|w| snap.ts_ms - w >= TICK_EVERY_MS)
    {
        tx.prepare_cached("UPDATE runs SET last_tick_ms = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![run_id, snap.ts_ms]))
            .map_err(ctx("updating the run"))?;
        ids.tick_written_ms = Some(snap.ts_ms);
    }
    Ok(())
}

/// Insert the gathered samples series by series (each series' ticks in time order), and empty
/// the buffer. Rows are clustered by series, so a batch of ticks written tick by tick fetched
/// and dirtied every series' last page once per tick; in this order it is once per batch (a
/// whole host, 8,500 series, has far more such pages than the page cache holds).
fn insert_rows(tx: &Connection, rows: &mut Vec<(i64, i64, f64)>) -> Result<usize> {
    // Unstable: no scratch copy of the batch (a series has one sample per tick).
    rows.sort_unstable_by_key(|r| (r.0, r.1));
    let mut insert = tx
        .prepare_cached(
            // An upsert, not INSERT OR REPLACE: REPLACE makes SQLite open a statement
            // journal (a savepoint copying each touched page) for every row.
            "INSERT INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (series_id, ts_ms) DO UPDATE SET value = excluded.value",
        )
        .map_err(ctx("preparing the sample insert"))?;
    for &(sid, ts, value) in rows.iter() {
        insert
            .execute(params![sid, ts, value])
            .map_err(ctx("inserting a sample"))?;
    }
    let n = rows.len();
    rows.clear();
    Ok(n)
}

pub(super) fn lookup_target(
    tx: &Connection,
    cache: &mut HashMap<TargetKey, i64>,
    key: &TargetKey,
) -> Result<Option<i64>> {
    if let Some(id) = cache.get(key) {
        return Ok(Some(*id));
    }
    let id: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM targets WHERE kind = ?1 AND name = ?2 AND pid IS ?3 AND start_time_ms IS ?4",
        )
        .and_then(|mut s| {
            s.query_row(
                params![key.kind.as_str(), key.name, key.pid, key.start_time_ms],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(ctx("looking up a target"))?;
    if let Some(id) = id {
        cache.insert(key.clone(), id);
    }
    Ok(id)
}

pub(super) fn target_id(
    tx: &Connection,
    cache: &mut HashMap<TargetKey, i64>,
    key: &TargetKey,
    cmdline: &str,
    ts_ms: i64,
) -> Result<i64> {
    if let Some(id) = lookup_target(tx, cache, key)? {
        return Ok(id);
    }
    tx.execute(
        "INSERT INTO targets (kind, pid, start_time_ms, name, cmdline, first_seen_ms, last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            key.kind.as_str(),
            key.pid,
            key.start_time_ms,
            key.name,
            cmdline,
            ts_ms
        ],
    )
    .map_err(ctx("adding a target"))?;
    let id = tx.last_insert_rowid();
    cache.insert(key.clone(), id);
    Ok(id)
}

pub(super) fn series_id(
    tx: &Connection,
    cache: &mut SeriesCache,
    target_id: i64,
    metric: &str,
    unit: Unit,
) -> Result<i64> {
    if let Some(id) = cache.get(&target_id).and_then(|m| m.get(metric)) {
        return Ok(*id);
    }
    let existing: Option<i64> = tx
        .prepare_cached("SELECT id FROM series WHERE target_id = ?1 AND metric = ?2")
        .and_then(|mut s| {
            s.query_row(params![target_id, metric], |r| r.get(0))
                .optional()
        })
        .map_err(ctx("looking up a series"))?;
    let id = match existing {
        Some(id) => id,
        None => {
            tx.execute(
                "INSERT INTO series (target_id, metric, unit) VALUES (?1, ?2, ?3)",
                params![target_id, metric, unit.as_str()],
            )
            .map_err(ctx("adding a series"))?;
            tx.last_insert_rowid()
        }
    };
    cache
        .entry(target_id)
        .or_default()
        .insert(metric.to_string(), id);
    Ok(id)
}

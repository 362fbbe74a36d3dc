//! The SQLite store: the only module that touches rusqlite. It opens the database (WAL,
//! `synchronous=NORMAL`, busy timeout, incremental auto-vacuum), applies the embedded refinery
//! migrations, guards against a second recorder, writes each tick in one transaction, prunes
//! history past the retention window in bounded batches, and runs the read queries of `queries/`
//! on read-only connections.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::model::{Cell, Kind, Snapshot, Table, TargetKey, Unit};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The named read queries, kept in `queries/*.sql`. One test prepares each against a freshly
/// migrated database, so a query that no longer matches the schema fails `cargo test`.
pub(crate) const QUERIES: &[(&str, &str)] = &[
    ("latest", include_str!("../queries/latest.sql")),
    ("threshold", include_str!("../queries/threshold.sql")),
    (
        "percent_change",
        include_str!("../queries/percent_change.sql"),
    ),
    ("trend", include_str!("../queries/trend.sql")),
    ("attribution", include_str!("../queries/attribution.sql")),
    ("regression", include_str!("../queries/regression.sql")),
    (
        "time_to_limit",
        include_str!("../queries/time_to_limit.sql"),
    ),
    ("increase", include_str!("../queries/increase.sql")),
    ("span", include_str!("../queries/span.sql")),
    ("downsample", include_str!("../queries/downsample.sql")),
    ("alerts_due", include_str!("../queries/alerts_due.sql")),
    ("cleanups", include_str!("../queries/cleanups.sql")),
    ("rule_states", include_str!("../queries/rule_states.sql")),
    ("summary", include_str!("../queries/summary.sql")),
    ("status", include_str!("../queries/status.sql")),
];

/// The schema version of this build: its newest migration's, which is also how many it carries
/// (one per version, each applied once per database; build.rs reads it from `migrations/`).
pub(crate) fn migration_count() -> usize {
    env!("MEMTRAIL_SCHEMA_VERSION").parse().unwrap_or(0)
}

/// The newest migration applied to this database (0 for a new or foreign file).
fn applied_version(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

pub fn query_sql(name: &str) -> Option<&'static str> {
    QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
}

/// Run SQL with named parameters (`:name`) and return every row as plain cells. Parameters the
/// statement does not use are ignored; ones it uses but are not given stay NULL.
pub fn query_table<S: AsRef<str>>(
    conn: &Connection,
    sql: &str,
    params: &[(S, Cell)],
) -> Result<Table> {
    let mut table = Table {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for_each_row(conn, sql, params, &mut table)?;
    Ok(table)
}

/// Run `sql` and hand its column names, then each row as it comes, to `sink` (nothing is held
/// here: a ten-million-row result costs one row of memory). A sink's error stops it.
pub(crate) fn for_each_row<S: AsRef<str>>(
    conn: &Connection,
    sql: &str,
    params: &[(S, Cell)],
    sink: &mut dyn crate::model::Rows,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(ctx("preparing the query"))?;
    bind_named(&mut stmt, params)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
    sink.columns(&columns).map_err(StoreError::Output)?;
    let width = columns.len();
    let mut raw = stmt.raw_query();
    while let Some(row) = raw.next().map_err(ctx("running the query"))? {
        let mut cells = Vec::with_capacity(width);
        for i in 0..width {
            use rusqlite::types::ValueRef;
            cells.push(match row.get_ref(i).map_err(ctx("reading a row"))? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Cell::Text(format!("<{} bytes>", b.len())),
            });
        }
        sink.row(cells).map_err(StoreError::Output)?;
    }
    Ok(())
}

fn bind_named<S: AsRef<str>>(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[(S, Cell)],
) -> Result<()> {
    for (name, value) in params {
        let index = stmt
            .parameter_index(&format!(":{}", name.as_ref()))
            .map_err(ctx("binding a parameter"))?;
        if let Some(index) = index {
            stmt.raw_bind_parameter(index, value)
                .map_err(ctx("binding a parameter"))?;
        }
    }
    Ok(())
}

/// A transaction on a shared connection, for modules that write derived tables (alerts).
pub(crate) struct Tx<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl<'c> Tx<'c> {
    pub fn begin(conn: &'c Connection) -> Result<Tx<'c>> {
        Ok(Tx {
            tx: conn
                .unchecked_transaction()
                .map_err(ctx("starting a transaction"))?,
        })
    }

    /// Run one statement with named parameters; returns the number of rows changed.
    pub fn exec(&self, sql: &str, params: &[(&str, Cell)]) -> Result<usize> {
        let mut stmt = self
            .tx
            .prepare_cached(sql)
            .map_err(ctx("preparing a statement"))?;
        bind_named(&mut stmt, params)?;
        stmt.raw_execute().map_err(ctx("writing"))
    }

    /// Run an INSERT; returns the new row's id.
    pub(crate) fn exec_insert(&self, sql: &str, params: &[(&str, Cell)]) -> Result<i64> {
        self.exec(sql, params)?;
        Ok(self.tx.last_insert_rowid())
    }

    pub fn commit(self) -> Result<()> {
        self.tx.commit().map_err(ctx("committing"))
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.tx
    }
}

/// The parameter names (without the colon) a statement uses (the catalog's tests check each
/// header against them).
#[cfg(test)]
pub(crate) fn statement_parameters(conn: &Connection, sql: &str) -> Result<Vec<String>> {
    let stmt = conn.prepare(sql).map_err(ctx("preparing the query"))?;
    Ok((1..=stmt.parameter_count())
        .filter_map(|i| stmt.parameter_name(i))
        .map(|n| n.trim_start_matches([':', '@', '$']).to_string())
        .collect())
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Int(v) => ValueRef::Integer(*v),
            Cell::Real(v) => ValueRef::Real(*v),
            Cell::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another memtrail recorder{} is already recording to {path}: stop it first, or give this one its own --db",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error(
        "{path} is not a SQLite database: point --db at a memtrail database or a new file name"
    )]
    NotDatabase { path: PathBuf },
    #[error(
        "{path} is a SQLite database but not a memtrail one (no memtrail schema): use another --db"
    )]
    NotMemtrail { path: PathBuf },
    #[error("no database at {path}: start a recorder with `memtrail record --db {path}` first")]
    Missing { path: PathBuf },
    #[error("cannot open database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("database migration failed on {path}: {source}")]
    Migrate {
        path: PathBuf,
        source: refinery::Error,
    },
    /// The cause is in the message, not the error chain: rusqlite's error repeats itself as its
    /// own source ("database is locked: Error code 5: database is locked").
    #[error("{context}: {cause}")]
    Sqlite {
        context: &'static str,
        cause: rusqlite::Error,
    },
    #[error(
        "{path} is damaged ({detail}): memtrail will not write into it. Recover what it holds with `sqlite3 {path} .recover | sqlite3 {path}.recovered` and record into that, or start a new --db",
        path = path.display()
    )]
    Damaged { path: PathBuf, detail: String },
    #[error("writing the output: {0}")]
    Output(std::io::Error),
    #[error(
        "{context}: the database is locked by another connection (a writer such as the sqlite3 shell or a backup) for longer than the busy timeout; end that writer or give a longer --busy-timeout"
    )]
    Busy { context: &'static str },
}

type Result<T> = std::result::Result<T, StoreError>;

fn ctx(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |cause| match cause.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) => StoreError::Busy { context },
        _ => StoreError::Sqlite { context, cause },
    }
}

/// Turn an open/probe failure into an error that says what is wrong with the path.
fn classify_open(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotDatabase {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::CannotOpen)
        | Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::PermissionDenied) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let reason = if !dir.is_dir() {
                format!("directory {} does not exist", dir.display())
            } else if path.is_dir() {
                "it is a directory".to_string()
            } else {
                format!(
                    "{e} (check that {} and its directory are writable by this user)",
                    path.display()
                )
            };
            StoreError::Open {
                path: path.to_path_buf(),
                reason,
            }
        }
        _ => StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    }
}

/// Holds an exclusive lock on `<db>.lock` for as long as a recorder writes to `<db>`.
#[derive(Debug)]
pub(crate) struct RecorderLock {
    _file: File,
}

impl RecorderLock {
    pub(crate) fn lock_path(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    pub(crate) fn acquire(db: &Path) -> Result<RecorderLock> {
        let path = Self::lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                classify_open(
                    db,
                    rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                        Some(format!("cannot create lock file {}: {e}", path.display())),
                    ),
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::Locked {
                    path: db.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::Open {
                    path: db.to_path_buf(),
                    reason: format!("cannot lock {}: {e}", path.display()),
                });
            }
        }
        // Best effort: the pid only improves the message a second recorder prints.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(RecorderLock { _file: file })
    }
}

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
type SeriesCache = HashMap<i64, HashMap<String, i64>>;

/// What an import stored: samples new to the database, ones whose stored value the file changed,
/// and ones already there with the same value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
}

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

/// The writer: one connection, owned by the recorder thread.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    ids: WriteCache,
    /// The newest tick committed (written to `runs.last_tick_ms` when the run ends).
    last_tick_ms: Option<i64>,
}

/// What the writer remembers between ticks so a tick writes only its samples.
#[derive(Default)]
struct WriteCache {
    targets: HashMap<TargetKey, i64>,
    series: SeriesCache,
    /// The `last_seen_ms` last written for each target, and the `runs.last_tick_ms` last written:
    /// rewriting them every tick dirtied two more pages per commit for nothing (pruning works in
    /// hours, and a crashed run is closed at its last written tick, at most a second early).
    seen_written: HashMap<i64, i64>,
    tick_written_ms: Option<i64>,
}

/// How stale `targets.last_seen_ms` and `runs.last_tick_ms` may get before a tick rewrites them.
const SEEN_EVERY_MS: i64 = 60_000;
const TICK_EVERY_MS: i64 = 1_000;

/// Prepared statements kept per connection. A tick, a rule evaluation and a prune use a few dozen
/// distinct statements between them; rusqlite's default of 16 made them evict each other, so
/// every evaluation parsed its SQL again (a quarter of the recorder's instructions).
const STATEMENT_CACHE: usize = 96;

/// The writer's page cache, as SQLite's `cache_size` (negative: KiB).
const WRITER_CACHE_KIB: i64 = -512;

/// Each read-only connection's page cache (KiB, negative as `cache_size` takes it).
const READER_CACHE_KIB: i64 = -256;

fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Fails with NotADatabase on a file that is not SQLite.
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if tables == 0 {
        // Must be set before the first table exists: freed pages can then be handed back.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(())
}

impl Store {
    /// Open (creating if needed) the database for writing and bring its schema up to date.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify_open(path, e))?;
        configure(&conn, busy_timeout).map_err(|e| classify_open(path, e))?;
        // The writer touches the newest page of each series and what the rules read: a small
        // cache holds that. SQLite's default (2 MiB) fills as the file grows, so the recorder's
        // own memory would creep up for as long as the history does.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(|e| classify_open(path, e))?;
        let mut conn = conn;
        match check(&mut conn, Some(START_CHECK_BUDGET)) {
            Checked::Ok => {}
            Checked::Unfinished => tracing::info!(
                "{} is too large to check for damage within {} s at start: `memtrail check --db {}` checks it whole",
                path.display(),
                START_CHECK_BUDGET.as_secs(),
                path.display()
            ),
            Checked::Damaged(detail) => {
                return Err(StoreError::Damaged {
                    path: path.to_path_buf(),
                    detail,
                });
            }
        }
        let conn = match applied_version(&conn) as usize {
            v if v == migration_count() => conn,
            _ => migrate(conn, path)?,
        };
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            ids: WriteCache::default(),
            last_tick_ms: None,
        })
    }
}

/// How long the check a writer makes when it opens a database may take: `PRAGMA quick_check`
/// reads every page (about 1 s per GiB here), so a larger file is checked only as far as this
/// allows, and `memtrail check` checks it whole.
pub(crate) const START_CHECK_BUDGET: Duration = Duration::from_secs(2);

/// What a damage check found.
#[derive(Debug, PartialEq)]
pub enum Checked {
    Ok,
    /// The budget ran out first: nothing found so far.
    Unfinished,
    Damaged(String),
}

/// Check the database on `conn` for damage: `PRAGMA quick_check` (page structure, not index
/// contents), or `integrity_check` when there is no `budget` (everything, however long).
pub fn check(conn: &mut Connection, budget: Option<Duration>) -> Checked {
    let pragma = if budget.is_some() {
        "PRAGMA quick_check(20)"
    } else {
        "PRAGMA integrity_check(100)"
    };
    let run = |conn: &Connection| -> rusqlite::Result<Vec<String>> {
        conn.prepare(pragma)
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
    };
    let (found, timed_out) = match budget {
        Some(limit) => match within(conn, limit, run) {
            Ok(checked) => checked,
            Err(_) => return Checked::Unfinished,
        },
        None => (run(conn), false),
    };
    match found {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Checked::Ok,
        Ok(lines) => Checked::Damaged(lines.join("; ").replace('\n', " ")),
        Err(_) if timed_out => Checked::Unfinished,
        Err(e) => Checked::Damaged(e.to_string()),
    }
}

/// Run `f` on `conn` for at most `limit`: SQLite's progress handler (checked every 10,000 VM
/// steps) interrupts it past that. Returns what `f` returned and whether the limit was reached;
/// an error only when the handler cannot be installed (then `f` has not run).
fn within<T>(
    conn: &mut Connection,
    limit: Duration,
    f: impl FnOnce(&Connection) -> T,
) -> rusqlite::Result<(T, bool)> {
    let deadline = std::time::Instant::now() + limit;
    conn.progress_handler(10_000, Some(move || std::time::Instant::now() >= deadline))?;
    let answer = f(conn);
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    Ok((answer, std::time::Instant::now() >= deadline))
}

/// Apply the migrations this database lacks.
fn migrate(mut conn: Connection, path: &Path) -> Result<Connection> {
    {
        // A migration that rebuilds a table (SQLite's way to change a CHECK) drops the old one:
        // with foreign keys on, that would cascade into series and samples. SQLite's documented
        // procedure runs such changes with foreign keys off (the pragma is a no-op inside the
        // migration's own transaction, hence here), then restores the setting.
        let fk: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .map_err(|e| classify_open(path, e))?;
        conn.pragma_update(None, "foreign_keys", false)
            .map_err(|e| classify_open(path, e))?;
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        conn.pragma_update(None, "foreign_keys", fk)
            .map_err(|e| classify_open(path, e))?;
    }
    Ok(conn)
}

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
        let result = snaps
            .iter()
            .try_fold(0, |n, snap| {
                Ok(n + write_one(conn, &mut self.ids, run_id, snap)?)
            })
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

/// One tick's rows, inside the caller's transaction.
fn write_one(tx: &Connection, ids: &mut WriteCache, run_id: i64, snap: &Snapshot) -> Result<usize> {
    let mut written = 0;
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
        let mut insert = tx
            .prepare_cached(
                // An upsert, not INSERT OR REPLACE: REPLACE makes SQLite open a statement
                // journal (a savepoint copying each touched page) for every row.
                "INSERT INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (series_id, ts_ms) DO UPDATE SET value = excluded.value",
            )
            .map_err(ctx("preparing the sample insert"))?;
        for v in &t.values {
            if !v.value.is_finite() {
                continue;
            }
            let sid = series_id(tx, &mut ids.series, target_id, &v.metric, v.unit)?;
            insert
                .execute(params![sid, snap.ts_ms, v.value])
                .map_err(ctx("inserting a sample"))?;
            written += 1;
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
    Ok(written)
}

fn lookup_target(
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

fn target_id(
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

fn series_id(
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

/// Open an existing memtrail database read-only (ad-hoc and status queries). Never creates the
/// file, never writes, and does not block the recorder (WAL readers do not take the write lock).
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    upgrade_if_behind(path, busy_timeout)?;
    open_read_only(path, busy_timeout, true)
}

/// A database last written by an older memtrail lacks the newer tables: apply the pending
/// migrations (a short writable open) before reading it.
fn upgrade_if_behind(path: &Path, busy_timeout: Duration) -> Result<()> {
    let conn = open_read_only(path, busy_timeout, true)?;
    let applied = applied_version(&conn);
    drop(conn);
    if (applied as usize) < migration_count() {
        tracing::info!(
            "upgrading {} from schema version {applied} to {}",
            path.display(),
            migration_count()
        );
        Store::open(path, busy_timeout)?;
    }
    Ok(())
}

/// A read-only connection on which TEMP tables may still be written (for backtests): the
/// database file itself is opened with SQLITE_OPEN_READ_ONLY.
pub(crate) fn open_scratch(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    upgrade_if_behind(path, busy_timeout)?;
    open_read_only(path, busy_timeout, false)
}

fn open_read_only(path: &Path, busy_timeout: Duration, query_only: bool) -> Result<Connection> {
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_path_buf(),
        });
    }
    match open_read_only_as(path, busy_timeout, query_only, false) {
        // A WAL reader needs the `-shm` file beside the database, which a read-only mount (a
        // backup, a copied volume) cannot hold. Nothing can be writing there, so the file is
        // read as immutable: no locks, no shared memory.
        Err(StoreError::Open { .. }) if !dir_writable(path) => {
            open_read_only_as(path, busy_timeout, query_only, true)
        }
        other => other,
    }
}

/// Whether the directory holding `path` can be written (where SQLite puts `-shm` and `-wal`).
fn dir_writable(path: &Path) -> bool {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::sys::writable(dir)
}

/// `path` as an SQLite URI that opens it immutable (`%`, `?` and `#` escaped).
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn open_read_only_as(
    path: &Path,
    busy_timeout: Duration,
    query_only: bool,
    immutable: bool,
) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(|e| classify_open(path, e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| classify_open(path, e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // A reader's pages come from the OS page cache cheaply: a small cache of its own keeps a
    // recorder serving API requests from growing by SQLite's default 2 MiB per reader thread.
    conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
        .map_err(|e| classify_open(path, e))?;
    // No other database files: ATTACH could create or read one behind the user's back.
    let _ = conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0);
    if query_only {
        conn.pragma_update(None, "query_only", true)
            .map_err(|e| classify_open(path, e))?;
    }
    let has_schema: bool = conn
        .query_row(
            "SELECT count(*) = 3 FROM sqlite_master WHERE type = 'table' AND name IN ('samples', 'series', 'targets')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| classify_open(path, e))?;
    if !has_schema {
        return Err(StoreError::NotMemtrail {
            path: path.to_path_buf(),
        });
    }
    Ok(conn)
}

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

fn adhoc_query_unlimited(
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
        .prepare(include_str!("../queries/status.sql"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, TargetSample, Value};

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("m.db"), Duration::from_secs(1)).expect("open")
    }

    fn proc_key(pid: u32) -> TargetKey {
        TargetKey {
            kind: Kind::Process,
            pid: Some(pid),
            start_time_ms: Some(1000 + pid as i64),
            name: format!("p{pid}"),
        }
    }

    fn snapshot(ts_ms: i64, targets: &[TargetKey], metrics: usize) -> Snapshot {
        const NAMES: [&str; 4] = ["rss", "vms", "swap", "threads"];
        Snapshot {
            ts_ms,
            targets: targets
                .iter()
                .map(|k| TargetSample {
                    key: k.clone(),
                    cmdline: "x --y".into(),
                    values: NAMES[..metrics]
                        .iter()
                        .map(|m| Value::new(m, Unit::Bytes, ts_ms as f64))
                        .collect(),
                })
                .collect(),
            gone: vec![],
        }
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    #[test]
    fn every_named_query_prepares_on_a_fresh_schema() {
        let dir = tmp();
        let store = open(&dir);
        for (name, sql) in QUERIES {
            store
                .connection()
                .prepare(sql)
                .unwrap_or_else(|e| panic!("query {name} does not prepare: {e}"));
        }
    }

    #[test]
    fn pragmas_are_set() {
        let dir = tmp();
        let store = open(&dir);
        let c = store.connection();
        let mode: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = c
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 1, "NORMAL");
        let av: i64 = c
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .expect("av");
        assert_eq!(av, 2, "INCREMENTAL");
    }

    #[test]
    fn reopening_applies_no_migration_twice_and_keeps_history() {
        let dir = tmp();
        {
            let mut s = open(&dir);
            s.write_tick(0, &snapshot(1, &[proc_key(1)], 2))
                .expect("tick");
        }
        let s = open(&dir);
        let c = s.connection();
        assert!(migration_count() >= 2);
        // build.rs's count is refinery's: the newest version, and one migration per version.
        let embedded = embedded::migrations::runner().get_migrations().clone();
        assert_eq!(embedded.len(), migration_count());
        assert_eq!(
            embedded.iter().map(|m| m.version() as usize).max(),
            Some(migration_count())
        );
        assert_eq!(
            count(c, "SELECT count(*) FROM refinery_schema_history") as usize,
            migration_count()
        );
        assert_eq!(count(c, "SELECT count(*) FROM samples"), 2);
    }

    /// Every schema object's SQL as SQLite keeps it, tables first, then indexes, views and
    /// triggers, each group by name: the same text for the same schema however it was built.
    fn schema_dump(conn: &Connection) -> String {
        let mut stmt = conn
            .prepare(
                "SELECT sql FROM sqlite_schema
                 WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
                 ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2
                          ELSE 3 END, name",
            )
            .expect("prepare dump");
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("dump")
            .map(|r| r.expect("row") + ";\n\n")
            .collect::<String>();
        rows.trim_end().to_string() + "\n"
    }

    /// A database built by refinery, migration by migration.
    fn migrated_by_refinery(path: &Path) -> Connection {
        let mut c = Connection::open(path).expect("open");
        c.pragma_update(None, "foreign_keys", false).expect("fk");
        embedded::migrations::runner().run(&mut c).expect("migrate");
        c
    }

    /// A new database gets refinery's history of every migration, so a later build's new
    /// migration applies on top of it.
    #[test]
    fn a_new_database_is_migrated_by_refinery() {
        let dir = tmp();
        let migrated = migrated_by_refinery(&dir.path().join("migrated.db"));
        let path = dir.path().join("m.db");
        drop(Store::open(&path, Duration::from_secs(1)).expect("create"));
        let mut created = Connection::open(&path).expect("reopen");
        assert_eq!(schema_dump(&created), schema_dump(&migrated));
        let report = embedded::migrations::runner()
            .run(&mut created)
            .expect("refinery accepts its own history");
        assert!(report.applied_migrations().is_empty());
        assert_eq!(applied_version(&created) as usize, migration_count());
    }

    /// Version 4 rebuilds targets and rules: history written under version 3 survives it (foreign
    /// keys are on in this build, so a careless rebuild would cascade into series and samples).
    #[test]
    fn upgrade_to_v4_keeps_history_and_accepts_cgroups() {
        let dir = tmp();
        let path = dir.path().join("old.db");
        {
            let mut c = Connection::open(&path).expect("open");
            c.pragma_update(None, "foreign_keys", true).expect("fk");
            embedded::migrations::runner()
                .set_target(refinery::Target::Version(3))
                .run(&mut c)
                .expect("migrate to v3");
            c.execute_batch(
                "INSERT INTO targets (id, kind, pid, start_time_ms, name, first_seen_ms, last_seen_ms)
                   VALUES (1, 'process', 7, 1000, 'app', 0, 10);
                 INSERT INTO series (id, target_id, metric, unit) VALUES (1, 1, 'rss', 'bytes');
                 INSERT INTO samples VALUES (1, 0, 1.0), (1, 10, 2.0);
                 INSERT INTO rules VALUES ('r', 'rss', 'process', NULL, NULL, 'greater_than', 1, 0,
                   0, 0, 0, NULL, 0, NULL, 'warning', '[\"log\"]');",
            )
            .expect("v3 history");
            let err = c.execute(
                "INSERT INTO targets (kind, name, first_seen_ms, last_seen_ms) VALUES ('cgroup', '/a', 0, 0)",
                [],
            );
            assert!(err.is_err(), "v3 refuses cgroup targets");
        }
        let s = Store::open(&path, Duration::from_secs(1)).expect("upgrade");
        let c = s.connection();
        assert_eq!(count(c, "SELECT count(*) FROM samples"), 2);
        assert_eq!(
            count(c, "SELECT count(*) FROM series_info WHERE target = 'app'"),
            1
        );
        assert_eq!(count(c, "SELECT count(*) FROM rules"), 1);
        assert_eq!(
            count(c, "PRAGMA foreign_keys"),
            1,
            "restored after migrating"
        );
        c.execute(
            "INSERT INTO targets (kind, name, first_seen_ms, last_seen_ms) VALUES ('cgroup', '/a', 0, 0)",
            [],
        )
        .expect("v4 takes cgroup targets");
        let mut check = c.prepare("PRAGMA foreign_key_check").expect("prepare");
        assert!(
            check
                .query([])
                .expect("check")
                .next()
                .expect("row")
                .is_none()
        );
    }

    #[test]
    fn tick_rows_and_identity() {
        let dir = tmp();
        let mut s = open(&dir);
        let sys = TargetKey::system();
        let n = s
            .write_tick(0, &snapshot(10, &[proc_key(7), sys.clone()], 3))
            .expect("tick");
        assert_eq!(n, 6);
        // Same pid, different start time: a new target, not a continuation.
        let mut reused = proc_key(7);
        reused.start_time_ms = Some(99_999);
        s.write_tick(0, &snapshot(20, &[proc_key(7), reused, sys], 3))
            .expect("tick");
        let c = s.connection();
        assert_eq!(count(c, "SELECT count(*) FROM targets"), 3);
        assert_eq!(
            count(c, "SELECT count(*) FROM targets WHERE kind = 'system'"),
            1
        );
        assert_eq!(count(c, "SELECT count(*) FROM series"), 9);
        assert_eq!(count(c, "SELECT count(*) FROM samples"), 15);
    }

    #[test]
    fn non_finite_values_are_not_stored() {
        let dir = tmp();
        let mut s = open(&dir);
        let mut snap = snapshot(1, &[proc_key(1)], 1);
        snap.targets[0].values[0].value = f64::NAN;
        assert_eq!(s.write_tick(0, &snap).expect("tick"), 0);
    }

    #[test]
    fn gone_targets_are_marked_once() {
        let dir = tmp();
        let mut s = open(&dir);
        s.write_tick(0, &snapshot(1, &[proc_key(3)], 1))
            .expect("tick");
        let mut snap = snapshot(2, &[], 1);
        snap.gone = vec![proc_key(3)];
        s.write_tick(0, &snap).expect("tick");
        snap.ts_ms = 3;
        s.write_tick(0, &snap).expect("tick");
        assert_eq!(count(s.connection(), "SELECT gone_ms FROM targets"), 2);
    }

    #[test]
    fn prune_is_bounded_and_removes_only_old_rows() {
        let dir = tmp();
        let mut s = open(&dir);
        let keys = [proc_key(1), proc_key(2)];
        for ts in 0..100 {
            s.write_tick(0, &snapshot(ts, &keys, 2)).expect("tick");
        }
        // 4 series x 60 rows are older than 60; a budget of 100 removes exactly 100.
        assert_eq!(s.prune(60, 100).expect("prune").samples, 100);
        let c = s.connection();
        assert_eq!(count(c, "SELECT count(*) FROM samples"), 400 - 100);
        // Oldest first within a series.
        assert_eq!(
            count(c, "SELECT count(*) FROM samples WHERE ts_ms >= 60"),
            4 * 40,
            "nothing inside the window is touched"
        );
        while s.prune(60, 100).expect("prune").samples > 0 {}
        let c = s.connection();
        assert_eq!(count(c, "SELECT count(*) FROM samples"), 4 * 40);
        assert_eq!(count(c, "SELECT min(ts_ms) FROM samples"), 60);
        // Targets stay while they were seen after the cutoff.
        assert_eq!(count(c, "SELECT count(*) FROM targets"), 2);
    }

    #[test]
    fn targets_with_no_samples_left_are_dropped() {
        let dir = tmp();
        let mut s = open(&dir);
        s.write_tick(0, &snapshot(1, &[proc_key(1)], 2))
            .expect("tick");
        s.write_tick(0, &snapshot(500_000, &[proc_key(2)], 2))
            .expect("tick");
        // Seen at 1 ms: gone once even a minute-stale `last_seen_ms` is before the cutoff.
        let p = s.prune(60_001, 1000).expect("prune");
        assert_eq!((p.samples, p.targets), (2, 0));
        let p = s.prune(100_000, 1000).expect("prune");
        assert_eq!((p.samples, p.targets), (0, 1));
        // Writing again for a dropped target recreates it (caches were cleared).
        s.write_tick(0, &snapshot(600_000, &[proc_key(1)], 2))
            .expect("tick");
        assert_eq!(count(s.connection(), "SELECT count(*) FROM targets"), 2);
    }

    #[test]
    fn file_stops_growing_under_retention() {
        // A week of 10 series at a 1-minute tick with a 24 h retention: the page count levels
        // off once the window is full, because pruned pages are reused.
        let dir = tmp();
        let mut s = open(&dir);
        let keys: Vec<_> = (0..5).map(proc_key).collect();
        let minute = 60_000;
        let day = 1440;
        let mut pages_after_two_days = 0;
        for tick in 0..(7 * day) {
            let ts = tick * minute;
            s.write_tick(0, &snapshot(ts, &keys, 2)).expect("tick");
            s.prune(ts - day * minute, 5_000).expect("prune");
            if tick == 2 * day {
                pages_after_two_days = s.page_stats().expect("pages").0;
            }
        }
        let (pages, _) = s.page_stats().expect("pages");
        assert!(
            pages as f64 <= pages_after_two_days as f64 * 1.1,
            "grew from {pages_after_two_days} to {pages} pages"
        );
        assert_eq!(
            count(s.connection(), "SELECT count(*) FROM samples"),
            10 * (day + 1)
        );
    }

    /// At 10 Hz a tick rewrites `runs.last_tick_ms` at most once a second and each target's
    /// `last_seen_ms` at most once a minute; the end of the run writes the true last tick.
    #[test]
    fn bookkeeping_rows_are_rewritten_sparingly() {
        let dir = tmp();
        let mut s = open(&dir);
        let run = s
            .begin_run(&RunInfo {
                started_ms: 0,
                interval_ms: 100,
                retention_ms: 3_600_000,
                host: "h".into(),
                settings_json: "{}".into(),
            })
            .expect("run");
        let one = |s: &Store, sql: &str| count(s.connection(), sql);
        for ts in (0..=1_500).step_by(100) {
            s.write_tick(run, &snapshot(ts, &[proc_key(1)], 2))
                .expect("tick");
        }
        // Written at 0 and 1000, not at every tick since.
        assert_eq!(one(&s, "SELECT last_tick_ms FROM runs"), 1_000);
        assert_eq!(one(&s, "SELECT last_seen_ms FROM targets"), 0);
        assert_eq!(
            one(&s, "SELECT count(*) FROM samples"),
            32,
            "every sample is written"
        );
        s.write_tick(run, &snapshot(60_000, &[proc_key(1)], 2))
            .expect("tick");
        assert_eq!(one(&s, "SELECT last_seen_ms FROM targets"), 60_000);
        s.write_tick(run, &snapshot(60_100, &[proc_key(1)], 2))
            .expect("tick");
        s.end_run(run, 60_150, "signal").expect("end");
        assert_eq!(one(&s, "SELECT last_tick_ms FROM runs"), 60_100);
    }

    #[test]
    fn a_retention_shorter_than_the_seen_interval_never_fails_a_tick() {
        // Issue 20.1: `--retention 10s --interval 100ms` failed a tick with `FOREIGN KEY
        // constraint failed`: `last_seen_ms` is written once a minute, so the prune took the live
        // target for gone, deleted its sparse (PSS-like) series, and the writer's cached id for it
        // pointed at nothing.
        let dir = tmp();
        let mut s = open(&dir);
        let run = s.begin_run(&RunInfo {
            started_ms: 0,
            interval_ms: 100,
            retention_ms: 10_000,
            host: "h".into(),
            settings_json: "{}".into(),
        });
        let run = run.expect("run");
        for i in 0..1_350i64 {
            let ts = i * 100;
            let mut snap = snapshot(ts, &[proc_key(1)], 1);
            if i % 300 == 0 {
                snap.targets[0]
                    .values
                    .push(Value::new("pss", Unit::Bytes, ts as f64));
            }
            s.write_tick(run, &snap)
                .unwrap_or_else(|e| panic!("tick at {ts} ms: {e}"));
            s.prune(ts - 10_000, 10_000)
                .unwrap_or_else(|e| panic!("prune at {ts} ms: {e}"));
        }
        let c = s.connection();
        assert_eq!(count(c, "SELECT count(*) FROM targets"), 1);
        // The sparse series' last sample (t = 120 s) is inside the retention at the end.
        assert_eq!(
            count(c, "SELECT count(*) FROM series WHERE metric = 'pss'"),
            1
        );
    }

    #[test]
    fn crashed_run_is_closed_at_its_last_tick() {
        let dir = tmp();
        let info = RunInfo {
            started_ms: 100,
            interval_ms: 1000,
            retention_ms: 10_000,
            host: "h".into(),
            settings_json: "{}".into(),
        };
        {
            let mut s = open(&dir);
            let run = s.begin_run(&info).expect("run");
            s.write_tick(run, &snapshot(150, &[proc_key(1)], 1))
                .expect("tick");
            // No end_run: the recorder "crashed".
        }
        let mut s = open(&dir);
        let second = s.begin_run(&info).expect("run");
        let c = s.connection();
        let (stopped, reason): (i64, String) = c
            .query_row(
                "SELECT stopped_ms, stop_reason FROM runs WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("first run");
        assert_eq!((stopped, reason.as_str()), (150, "crashed"));
        assert_eq!(second, 2);
    }

    #[test]
    fn second_writer_is_refused_with_the_holder_pid() {
        let dir = tmp();
        let db = dir.path().join("m.db");
        let _first = RecorderLock::acquire(&db).expect("first lock");
        let err = RecorderLock::acquire(&db)
            .expect_err("second lock")
            .to_string();
        assert!(err.contains("already recording"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_named() {
        let dir = tmp();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "this is not a database, just some text that is long enough ".repeat(20),
        )
        .expect("write");
        let err = Store::open(&path, Duration::from_secs(1))
            .err()
            .expect("not sqlite");
        assert!(matches!(err, StoreError::NotDatabase { .. }), "{err}");
        let err = open_reader(&path, Duration::from_secs(1)).expect_err("not sqlite");
        assert!(matches!(err, StoreError::NotDatabase { .. }), "{err}");
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = tmp();
        let path = dir.path().join("no/such/dir/m.db");
        let err = Store::open(&path, Duration::from_secs(1))
            .err()
            .expect("no dir")
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn reader_cannot_write() {
        let dir = tmp();
        let path = dir.path().join("m.db");
        drop(Store::open(&path, Duration::from_secs(1)).expect("create"));
        let r = open_reader(&path, Duration::from_secs(1)).expect("reader");
        let err = r.execute("DELETE FROM samples", []).expect_err("read-only");
        assert_eq!(err.sqlite_error_code(), Some(ErrorCode::ReadOnly), "{err}");
    }
}

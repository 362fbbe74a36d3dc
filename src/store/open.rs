//! Opening a database: the writer's connection (WAL, `synchronous=NORMAL`, busy timeout,
//! incremental auto-vacuum) with refinery's migrations, the damage check at a writer's start, the
//! lock file that keeps a second recorder off, and the read-only readers (immutable on a read-only
//! mount, upgraded first when the file's schema is behind this build).

use super::*;

pub(super) mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The schema version of this build: its newest migration's, which is also how many it carries
/// (one per version, each applied once per database; build.rs reads it from `migrations/`).
pub(crate) fn migration_count() -> usize {
    env!("MEMTRAIL_SCHEMA_VERSION").parse().unwrap_or(0)
}

/// The newest migration applied to this database (0 for a new or foreign file).
pub(super) fn applied_version(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Turn an open/probe failure into an error that says what is wrong with the path.
pub(super) fn classify_open(path: &Path, e: rusqlite::Error) -> StoreError {
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

/// Prepared statements kept per connection. A tick, a rule evaluation and a prune use a few dozen
/// distinct statements between them; rusqlite's default of 16 made them evict each other, so
/// every evaluation parsed its SQL again (a quarter of the recorder's instructions).
pub(super) const STATEMENT_CACHE: usize = 96;

/// The writer's page cache, as SQLite's `cache_size` (negative: KiB).
pub(super) const WRITER_CACHE_KIB: i64 = -512;

/// Each read-only connection's page cache (KiB, negative as `cache_size` takes it).
pub(super) const READER_CACHE_KIB: i64 = -256;

pub(super) fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
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
pub(super) fn within<T>(
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
pub(super) fn migrate(mut conn: Connection, path: &Path) -> Result<Connection> {
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

/// Open an existing memtrail database read-only (ad-hoc and status queries). Never creates the
/// file, never writes, and does not block the recorder (WAL readers do not take the write lock).
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    upgrade_if_behind(path, busy_timeout)?;
    open_read_only(path, busy_timeout, true)
}

/// A database last written by an older memtrail lacks the newer tables: apply the pending
/// migrations (a short writable open) before reading it.
pub(super) fn upgrade_if_behind(path: &Path, busy_timeout: Duration) -> Result<()> {
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

/// A writable connection to an existing memtrail database for a short write beside the recorder
/// (an annotation): brought up to date first if an older memtrail wrote it, but without the
/// writer's damage check (it reads every page, up to 2 s) or its cache settings.
pub(crate) fn open_for_a_write(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    upgrade_if_behind(path, busy_timeout)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify_open(path, e))?;
    configure(&conn, busy_timeout).map_err(|e| classify_open(path, e))?;
    Ok(conn)
}

/// A read-only connection on which TEMP tables may still be written (for backtests): the
/// database file itself is opened with SQLITE_OPEN_READ_ONLY.
pub(crate) fn open_scratch(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    upgrade_if_behind(path, busy_timeout)?;
    open_read_only(path, busy_timeout, false)
}

pub(super) fn open_read_only(
    path: &Path,
    busy_timeout: Duration,
    query_only: bool,
) -> Result<Connection> {
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
pub(super) fn dir_writable(path: &Path) -> bool {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::sys::writable(dir)
}

/// `path` as an SQLite URI that opens it immutable (`%`, `?` and `#` escaped).
pub(super) fn immutable_uri(path: &Path) -> String {
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

pub(super) fn open_read_only_as(
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

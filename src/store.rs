//! The SQLite store: the only module that touches rusqlite. It opens the database (WAL,
//! `synchronous=NORMAL`, busy timeout, incremental auto-vacuum), applies the embedded refinery
//! migrations, guards against a second recorder, writes each tick in one transaction, prunes
//! history past the retention window in bounded batches, and runs the read queries of `queries/`
//! on read-only connections.
//!
//! One file per job: `open` (connections, migrations, the recorder's lock), `catalog` (the named
//! queries and running SQL), `write` (runs, ticks, prune, import), `audit` (deliveries, cleanup
//! claims), `read` (ad-hoc SQL, series status, runs).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::model::{Cell, Kind, Snapshot, Table, TargetKey, Unit};

mod audit;
mod catalog;
mod open;
mod read;
mod write;

pub(crate) use audit::*;
pub use catalog::*;
pub use open::*;
pub(crate) use read::*;
pub use write::*;

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

/// The writer: one connection, owned by the recorder thread.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    ids: WriteCache,
    /// The newest tick committed (written to `runs.last_tick_ms` when the run ends).
    last_tick_ms: Option<i64>,
}

#[cfg(test)]
mod tests;

//! The named queries of `queries/*.sql`, embedded, and the way any SQL runs here: named
//! parameters bound from `Cell`s, rows into a `Table` or streamed to a `Rows` sink, transactions.

use super::*;

/// The named read queries, kept in `queries/*.sql`. One test prepares each against a freshly
/// migrated database, so a query that no longer matches the schema fails `cargo test`.
pub(crate) const QUERIES: &[(&str, &str)] = &[
    ("latest", include_str!("../../queries/latest.sql")),
    ("threshold", include_str!("../../queries/threshold.sql")),
    (
        "percent_change",
        include_str!("../../queries/percent_change.sql"),
    ),
    ("trend", include_str!("../../queries/trend.sql")),
    ("onset", include_str!("../../queries/onset.sql")),
    ("attribution", include_str!("../../queries/attribution.sql")),
    ("regression", include_str!("../../queries/regression.sql")),
    (
        "time_to_limit",
        include_str!("../../queries/time_to_limit.sql"),
    ),
    ("increase", include_str!("../../queries/increase.sql")),
    ("span", include_str!("../../queries/span.sql")),
    ("downsample", include_str!("../../queries/downsample.sql")),
    ("alerts_due", include_str!("../../queries/alerts_due.sql")),
    ("cleanups", include_str!("../../queries/cleanups.sql")),
    ("rule_states", include_str!("../../queries/rule_states.sql")),
    ("summary", include_str!("../../queries/summary.sql")),
    ("status", include_str!("../../queries/status.sql")),
    ("top", include_str!("../../queries/top.sql")),
    ("marks", include_str!("../../queries/marks.sql")),
    ("events", include_str!("../../queries/events.sql")),
    ("runs", include_str!("../../queries/runs.sql")),
    ("patterns", include_str!("../../queries/patterns.sql")),
];

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

pub(super) fn bind_named<S: AsRef<str>>(
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

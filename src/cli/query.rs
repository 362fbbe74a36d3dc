//! `memtrail query`: a named analysis query with its typed parameters, or ad-hoc read-only SQL
//! (time-limited, its rows streamed as they are read); `--list` names them all.

use super::*;

#[derive(Debug, Args)]
pub(super) struct QueryArgs {
    #[command(flatten)]
    db: DbArg,
    /// The named query (see --list).
    #[arg(conflicts_with_all = ["sql", "list"])]
    name: Option<String>,
    /// A parameter of the named query, NAME=VALUE (repeatable); durations and sizes welcome.
    #[arg(short, long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Run this SQL instead, on a read-only connection (writes are refused).
    #[arg(long, conflicts_with = "list")]
    sql: Option<String>,
    /// Stop ad-hoc SQL that runs longer than this (exit 1).
    #[arg(long, value_name = "DURATION", default_value = "30s", requires = "sql")]
    timeout: HumanDuration,
    /// List the named queries and their parameters.
    #[arg(long)]
    list: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutFormat::Table)]
    format: OutFormat,
    /// A table with every column of a named query (by default a table shows the columns its
    /// header names for people; JSON and CSV always hold all).
    #[arg(long)]
    wide: bool,
}

pub(super) fn run_query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    use crate::analyze::analysis::{self, Default};
    let now = crate::units::now_ms();
    if args.list {
        for q in analysis::catalog() {
            out!("{} — {}", q.name, q.summary);
            for p in &q.params {
                let default = match &p.default {
                    Default::Now => "now".to_string(),
                    Default::Required => "required".to_string(),
                    Default::Value(Cell::Null) => "NULL".to_string(),
                    Default::Value(Cell::Int(v)) => v.to_string(),
                    Default::Value(Cell::Real(v)) => v.to_string(),
                    Default::Value(Cell::Text(t)) => t.clone(),
                };
                let kind = p.kind.map_or("text", |k| k.as_str());
                out!("    {:<18} = {:<12} {kind:<8} {}", p.name, default, p.doc);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let db = db_path(args.db.db)?;
    let table = match (&args.sql, &args.name) {
        (Some(sql), _) => {
            // Ad-hoc results can be any size: each row is written as it is read.
            let mut conn = crate::store::open_reader(&db, Duration::from_secs(5))?;
            let stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let mut rows = crate::present::output::Stream::new(args.format, stdout);
            crate::store::adhoc_query(&mut conn, sql, args.timeout.0, &mut rows)?;
            rows.finish()
                .map_err(|e| anyhow::anyhow!("writing the output: {e}"))?;
            return Ok(ExitCode::SUCCESS);
        }
        (None, Some(name)) => {
            let q = analysis::find(name)?;
            let params = q.parse_params(&args.params, now)?;
            let conn = crate::store::open_reader(&db, Duration::from_secs(5))?;
            let table = q.run(&conn, &params, now)?;
            match &q.table_columns {
                Some(cols) if args.format == OutFormat::Table && !args.wide => table.select(cols),
                _ => table,
            }
        }
        (None, None) => {
            return Err(UsageError(
                "name a query (`memtrail query --list` shows them) or give --sql \"SELECT ...\""
                    .into(),
            )
            .into());
        }
    };
    put!("{}", crate::present::output::render(&table, args.format));
    Ok(ExitCode::SUCCESS)
}

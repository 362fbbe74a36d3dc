//! `memtrail status`: the overview of what the database holds, as a table or JSON.

use super::*;

#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    db: DbArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The window of the min/max columns.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    window: HumanDuration,
    /// Also the targets that exited (or were removed) before the newest run ended, and in the
    /// table every series (each mapping's `map_rss:*` too).
    #[arg(long)]
    all: bool,
}

/// `memtrail status`: the overview as a table or JSON.
pub(super) fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let db = db_path(args.db.db)?;
    let mut report = crate::analyze::overview::collect(&db, args.window.0)?;
    if !args.all {
        report.keep_current();
    }
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => put!(
            "{}",
            crate::present::status::render_table(&report, args.all)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

//! `memtrail report`: a time range written as HTML with charts, Markdown, JSON or CSV.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ReportFormat {
    Html,
    Md,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    #[command(flatten)]
    db: DbArg,
    /// The range: this long before --to (or now).
    #[arg(long, value_name = "DURATION", conflicts_with = "from", value_parser = since_duration)]
    since: Option<HumanDuration>,
    /// Start of the range (a time: RFC 3339, YYYY-MM-DD[ HH:MM], Unix time, -2h, ...) [default: 24h
    /// before --to; with no range flag at all, the data's own range, at most its last 24h]
    #[arg(long)]
    from: Option<String>,
    /// End of the range [default: now]
    #[arg(long)]
    to: Option<String>,
    /// Only targets with this name (or this pid).
    #[arg(long, value_name = "NAME|PID")]
    target: Option<String>,
    /// Format [default: from the -o file's extension, else md]
    #[arg(short, long, value_enum)]
    format: Option<ReportFormat>,
    /// Write here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// CSV: every sample instead of min/avg/max per bucket.
    #[arg(long)]
    raw: bool,
    /// CSV: bucket width when not --raw.
    #[arg(long, value_name = "DURATION", default_value = "1m")]
    bucket: HumanDuration,
}

pub(super) fn run_report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let db = db_path(args.db.db.clone())?;
    let now = crate::units::now_ms();
    let conn = crate::store::open_reader(&db, Duration::from_secs(5))?;
    let (from, to) = range(&args, &conn, now)?;
    let by_extension = output_extension(&args.output).and_then(|e| match e.as_str() {
        "html" | "htm" => Some(ReportFormat::Html),
        "md" | "markdown" => Some(ReportFormat::Md),
        "json" => Some(ReportFormat::Json),
        "csv" => Some(ReportFormat::Csv),
        _ => None,
    });
    let format = args.format.or(by_extension).unwrap_or(ReportFormat::Md);
    let options = crate::present::report::Options {
        from_ms: from,
        to_ms: to,
        target: args.target.clone(),
        generated_ms: now,
        database: db.display().to_string(),
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if format == ReportFormat::Csv {
        crate::present::report::csv(
            &conn,
            &options,
            args.raw,
            args.bucket.0.as_millis().max(1) as i64,
            &mut out,
        )?;
    } else {
        let report = crate::present::report::build(&db, &options)?;
        let text = match format {
            ReportFormat::Html => crate::present::report::html(&report),
            ReportFormat::Json => crate::present::report::json(&report),
            _ => crate::present::report::markdown(&report),
        };
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    if let Some(path) = &args.output {
        tracing::info!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The range asked for; with no range flag, the data's own (its last 24 h at most), so 45 s of
/// samples make a report of 45 s, not of a day that is almost all empty.
fn range(args: &ReportArgs, conn: &rusqlite::Connection, now: i64) -> anyhow::Result<(i64, i64)> {
    const DAY_MS: i64 = 24 * 3_600_000;
    let to = time_arg("to", &args.to)?;
    let from = time_arg("from", &args.from)?;
    if from.is_none() && to.is_none() && args.since.is_none() {
        let history = crate::analyze::overview::history(conn)?;
        if let Some((oldest, newest)) = history.and_then(|h| Some((h.oldest_ms?, h.newest_ms?))) {
            return Ok((oldest.max(newest - DAY_MS), newest + 1));
        }
    }
    let to = to.unwrap_or(now);
    let from = match (from, args.since) {
        (Some(f), _) => f,
        (None, Some(d)) => to - d.0.as_millis() as i64,
        (None, None) => to - DAY_MS,
    };
    Ok((from, to))
}

//! `memtrail compare A B`: two runs, ranges or database files side by side — per target and metric,
//! the growth rate with its range, peak, average and whether B is fixed, improved, unchanged or
//! worse; exit 3 with `--fail-if-worse` when B grows faster, for CI.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum CompareFormat {
    Table,
    Json,
    Md,
    Html,
}

#[derive(Debug, Args)]
pub(super) struct CompareArgs {
    #[command(flatten)]
    db: DbArg,
    /// The baseline: run:N, run:last, run:previous, FROM..TO (times as --from takes them), or a
    /// database file.
    #[arg(allow_hyphen_values = true)]
    a: String,
    /// What is compared with it, written the same way.
    #[arg(allow_hyphen_values = true)]
    b: String,
    /// Only this metric (repeatable) [default: rss, a cgroup's usage, the system's mem_used, and
    /// custom metrics]
    #[arg(long = "metric", value_name = "METRIC")]
    metrics: Vec<String>,
    /// Only targets with this name.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Format [default: from the -o file's extension, else table]
    #[arg(short, long, value_enum)]
    format: Option<CompareFormat>,
    /// Write here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Exit 3 when any target's metric is `worse` in B (grows significantly faster than in A).
    #[arg(long)]
    fail_if_worse: bool,
}

/// Exit code of `--fail-if-worse` when B is worse.
const WORSE: u8 = 3;

/// `memtrail compare`: resolve the sides, compare, write, and exit 3 on `worse` when asked.
pub(super) fn run_compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    use crate::analyze::compare::{self, Side, SideSpec};
    use std::io::Write;
    let db = db_path(args.db.db.clone())?;
    let now = crate::units::now_ms();
    let side = |text: &str| -> anyhow::Result<Side> {
        let spec = SideSpec::parse(text, now).map_err(|e| UsageError(e.to_string()))?;
        Ok(Side::resolve(&spec, text, &db)?)
    };
    let (a, b) = (side(&args.a)?, side(&args.b)?);
    let filter = compare::Filter {
        metrics: args.metrics.clone(),
        target: args.target.clone(),
    };
    let c = compare::compare(a, b, &filter)?;
    let by_extension = output_extension(&args.output).and_then(|e| match e.as_str() {
        "html" | "htm" => Some(CompareFormat::Html),
        "md" | "markdown" => Some(CompareFormat::Md),
        "json" => Some(CompareFormat::Json),
        _ => None,
    });
    let text = match args.format.or(by_extension).unwrap_or(CompareFormat::Table) {
        CompareFormat::Table => crate::present::compare::table(&c),
        CompareFormat::Json => crate::present::compare::json(&c),
        CompareFormat::Md => crate::present::compare::markdown(&c),
        CompareFormat::Html => {
            let mut points = Vec::new();
            for r in &c.rows {
                points.push((
                    compare::points(&c.a, &r.a, 240)?,
                    compare::points(&c.b, &r.b, 240)?,
                ));
            }
            crate::present::compare::html(&c, &points)
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            tracing::info!("wrote {}", path.display());
        }
        None => put!("{text}"),
    }
    let _ = std::io::stdout().flush();
    Ok(if args.fail_if_worse && c.any_worse() {
        ExitCode::from(WORSE)
    } else {
        ExitCode::SUCCESS
    })
}

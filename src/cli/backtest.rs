//! `memtrail backtest`: the alert rules replayed over stored history, as a timeline.

use super::*;

#[derive(Debug, Args)]
pub(super) struct BacktestArgs {
    #[command(flatten)]
    db: DbArg,
    /// Config file whose rules to replay [default: the built-in rules]
    #[arg(short, long, env = "MEMTRAIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Time between evaluations [default: the evaluation interval the recording ran at, else 1m]
    #[arg(long, value_name = "DURATION")]
    step: Option<HumanDuration>,
    /// Start of the replay (a time: RFC 3339, YYYY-MM-DD[ HH:MM], Unix time, -2h, ...) [default: the first sample]
    #[arg(long)]
    from: Option<String>,
    /// End of the replay [default: the last sample]
    #[arg(long)]
    to: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutFormat::Table)]
    format: OutFormat,
}

/// `memtrail backtest`: replay the rules and print the timeline.
pub(super) fn run_backtest(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let (file, db) = config_and_db(args.config.as_deref(), args.db.db.clone())?;
    let rules = rules_of(&file)?;
    let from = time_arg("from", &args.from)?;
    let to = time_arg("to", &args.to)?;
    let report = crate::analyze::backtest::run(&db, rules, from, to, args.step.map(|s| s.0))?;
    match args.format {
        OutFormat::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        OutFormat::Csv => put!("{}", crate::present::output::csv(&report.timeline())),
        OutFormat::Table => {
            put!("{}", crate::present::output::table(&report.timeline()));
            out!("{}", report.summary());
        }
    }
    Ok(ExitCode::SUCCESS)
}

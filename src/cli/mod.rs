//! The command line: clap definitions (raw flags), their translation into checked settings, the
//! dispatch to each subcommand, and the mapping of errors to exit codes — 0 ok, 1 runtime failure,
//! 2 usage or config error, and for `record -- CMD` the command's own exit code. Each subcommand is
//! a module of its own (`record.rs`, `query.rs`, ...): its flags and the function that runs it;
//! what several share (the database flag, time arguments, the config and its rules) lives here.

/// `println!` that fails the command (exit 1, with a message) when stdout cannot be written,
/// instead of panicking: `memtrail status > /dev/full`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow::anyhow!("writing the output: {e}"))?
    }};
}

/// `print!`, failing the same way as `out!`.
macro_rules! put {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow::anyhow!("writing the output: {e}"))?
    }};
}

mod annotate;
mod backtest;
mod check;
mod cleanup;
mod compare;
mod config;
mod import;
mod man;
mod query;
mod record;
mod report;
mod rules;
mod status;
mod top;

use self::annotate::{AnnotateArgs, run_annotate};
use self::backtest::{BacktestArgs, run_backtest};
use self::check::{CheckArgs, run_check};
use self::cleanup::{CleanupArgs, run_cleanup};
use self::compare::{CompareArgs, run_compare};
use self::config::{ConfigArgs, run_config};
use self::import::{ImportArgs, run_import};
use self::man::write_man;
use self::query::{QueryArgs, run_query};
use self::record::{RecordArgs, run_record};
use self::report::{ReportArgs, run_report};
use self::rules::{RulesArgs, run_rules};
use self::status::{StatusArgs, run_status};
use self::top::{TopArgs, run_top};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::act::cleanup::{CleanupSettings, Level};
use crate::collect::import::{ImportError, ImportFormat};
use crate::collect::sampler::SamplerError;
use crate::config::{ConfigError, DEFAULT_CONFIG, FileConfig, OrOff, RecordPartial};
use crate::model::Cell;
use crate::present::output::OutFormat;
use crate::record::settings::RecordSettings;
use crate::units::{ByteSize, HumanDuration};

#[derive(Debug, Parser)]
#[command(
    name = "memtrail",
    version,
    about = "Record process and system memory into SQLite and catch leaks early",
    after_help = "Examples:\n  memtrail record --name postgres --interval 1s\n  memtrail record -- python app.py\n  memtrail status --db /var/lib/memtrail/memtrail.db\n\nExit codes:\n  0  ok (a recorder stopped by SIGINT/SIGTERM or --duration too)\n  1  runtime failure (database, lock, I/O)\n  2  usage or config error\n  N  record -- CMD: the command's own exit code"
)]
pub(crate) struct Cli {
    /// More log output (-v debug, -vv trace). Also MEMTRAIL_LOG=debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log lines as text (colored on a terminal) or as JSON objects, one per line, for collectors.
    #[arg(
        long,
        value_enum,
        global = true,
        env = "MEMTRAIL_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Record memory samples into the database until stopped.
    #[command(
        after_help = "Examples:\n  memtrail record                        # system + the 10 largest processes, every 5s\n  memtrail record --pid 4242 --interval 1s --retention 7d\n  memtrail record --name gunicorn --include-children\n  memtrail record --unit nginx           # the service's cgroup against its memory limit\n  memtrail record --interval 100ms -- ./my-service --port 8080"
    )]
    Record(RecordArgs),
    /// Show the latest value, last hour's min/max and sample count of every series.
    #[command(
        after_help = "Examples:\n  memtrail status\n  memtrail status --all                  # the processes that came and went too\n  memtrail status --format json --db /var/lib/memtrail/memtrail.db"
    )]
    Status(StatusArgs),
    /// A live, full-screen view of what is recorded: each target's value, a sparkline, its verdict
    /// and its rules, refreshed every second (keys: arrows/jk, Enter, s, /, ?, q).
    #[command(
        after_help = "Examples:\n  memtrail top\n  memtrail top --db /var/lib/memtrail/memtrail.db --span 30m\n  NO_COLOR=1 memtrail top --refresh 2s"
    )]
    Top(TopArgs),
    /// Run a named analysis query, or ad-hoc read-only SQL, on the database.
    #[command(
        after_help = "Examples:\n  memtrail query --list\n  memtrail query trend --param metric=rss --param window_ms=30m\n  memtrail query percent_change --format json\n  memtrail query threshold --param threshold=1GiB --format csv\n  memtrail query --sql \"SELECT target, max(value) FROM samples JOIN series_info USING (series_id) WHERE metric = 'rss' GROUP BY target\""
    )]
    Query(QueryArgs),
    /// Load a recording (memtrail CSV, psrecord log, memory_profiler .dat) into the database.
    #[command(
        after_help = "Examples:\n  memtrail import history.csv          # timestamp,series,metric,value[,unit]\n  memtrail import psrecord.log --target api --start 2026-11-24T10:00:00Z\n  memtrail import mprofile_20261124.dat"
    )]
    Import(ImportArgs),
    /// Replay the alert rules over the stored history and print when each would have fired.
    #[command(
        after_help = "Examples:\n  memtrail backtest\n  memtrail backtest --config memtrail.toml --step 10s --format json"
    )]
    Backtest(BacktestArgs),
    /// Write an event into the recording (a deploy, a config change): reports mark it, and a
    /// leak's onset is told relative to the nearest one before it.
    #[command(
        after_help = "Examples:\n  memtrail annotate \"deploy v1.4\"\n  memtrail annotate \"cache size 2 GiB\" --target gunicorn\n  memtrail annotate \"load test\" --pid 4242 --at -10m"
    )]
    Annotate(AnnotateArgs),
    /// Run a cleanup now on watched processes and record it, with memory before and after.
    #[command(
        after_help = "Examples:\n  memtrail cleanup --config memtrail.toml --pid 4242\n  memtrail cleanup --config memtrail.toml --name gunicorn --level aggressive"
    )]
    Cleanup(CleanupArgs),
    /// Write a report of a time range: HTML with charts, Markdown, JSON or CSV.
    #[command(
        after_help = "Examples:\n  memtrail report -o report.html                  # the data's range (its last 24 h at most), format from the file name\n  memtrail report --since 2h --format md\n  memtrail report --from 2026-11-24T08:00:00Z --to 2026-11-24T20:00:00Z --target gunicorn -o day.json\n  memtrail report --since 1h --format csv --raw -o samples.csv"
    )]
    Report(ReportArgs),
    /// Compare two recordings (runs, time ranges or database files): per target and metric, the
    /// growth rate with its range, peak, average, and fixed / improved / unchanged / worse.
    #[command(
        after_help = "Examples:\n  memtrail compare run:previous run:last\n  memtrail compare run:3 run:4 --metric rss --format md\n  memtrail compare 2026-12-01T10:00Z..2026-12-01T12:00Z 2026-12-02T10:00Z..2026-12-02T12:00Z -o compare.html\n  memtrail compare before.db after.db --fail-if-worse   # exit 3 when B grows faster\n\nExit codes:\n  0  compared\n  2  a side or flag is not understood, or a side holds nothing to compare\n  3  --fail-if-worse, and B is worse"
    )]
    Compare(CompareArgs),
    /// Export the alert rules in force for another engine (a Prometheus rule file).
    #[command(
        after_help = "Examples:\n  memtrail rules export --format prometheus > memtrail-rules.yml\n  memtrail rules export --config memtrail.toml -o /etc/prometheus/rules/memtrail.yml\n  promtool check rules memtrail-rules.yml"
    )]
    Rules(RulesArgs),
    /// Check the database for damage, every page and index (PRAGMA integrity_check): exit 0 when
    /// sound, 1 when damaged (with how to recover it).
    Check(CheckArgs),
    /// Print the commented default configuration, or check a config file.
    #[command(
        after_help = "Examples:\n  memtrail config --default > memtrail.toml\n  memtrail config check memtrail.toml"
    )]
    Config(ConfigArgs),
    /// Print shell completions for bash, zsh, fish, elvish or PowerShell.
    #[command(
        after_help = "Examples:\n  memtrail completions bash > /etc/bash_completion.d/memtrail\n  memtrail completions zsh > \"${fpath[1]}/_memtrail\"\n  memtrail completions fish > ~/.config/fish/completions/memtrail.fish"
    )]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    #[command(
        after_help = "Examples:\n  memtrail man | man -l -\n  memtrail man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write memtrail.1 and memtrail-<command>.1 into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct DbArg {
    /// SQLite database file [default: `db` in the config file, else memtrail.db; under systemd,
    /// in $STATE_DIRECTORY]
    #[arg(long, env = "MEMTRAIL_DB", value_name = "PATH")]
    db: Option<PathBuf>,
}

/// `--since` takes how far back; a time given there is pointed to `--from`.
fn since_duration(text: &str) -> Result<HumanDuration, String> {
    text.parse::<HumanDuration>().map_err(|e| {
        format!(
            "{e}; --since takes how far back from --to (2h, 1d); for a point in time use --from (e.g. --from 2026-12-01 or --from -1d)"
        )
    })
}

fn time_arg(name: &str, value: &Option<String>) -> Result<Option<i64>, UsageError> {
    value
        .as_deref()
        .map(|v| {
            crate::units::parse_time(v, crate::units::now_ms()).ok_or_else(|| {
                UsageError(format!(
                    "--{name} {v:?} is not a time: use {}",
                    crate::units::TIME_FORMS
                ))
            })
        })
        .transpose()
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

/// The lower-case extension of an `-o FILE`, which picks a format when `--format` does not.
fn output_extension(output: &Option<PathBuf>) -> Option<String> {
    output
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// An error in how memtrail was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// Parse, run, and turn the result into an exit code. Errors are printed once, here.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    if !matches!(cli.command, Command::Record(_)) {
        // Output commands end quietly when the reader goes away (`memtrail query ... | head`),
        // like other Unix tools; the recorder keeps Rust's default of ignoring SIGPIPE.
        crate::sys::set_disposition(libc::SIGPIPE, crate::sys::Disposition::Default);
    }
    let json_logs = cli.log_format == LogFormat::Json;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if json_logs {
                tracing::error!("{e:#}");
            } else {
                crate::logsink::line(&format!("memtrail: error: {e:#}\n"));
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(launch) = e.downcast_ref::<crate::record::recorder::LaunchError>() {
        return launch.code;
    }
    use crate::analyze::analysis::AnalysisError;
    use crate::analyze::backtest::BacktestError;
    use crate::store::AdHocError;
    let usage = e.chain().any(|c| {
        c.is::<ConfigError>()
            || c.is::<SamplerError>()
            || c.is::<UsageError>()
            || c.is::<ImportError>()
            || c.downcast_ref::<crate::analyze::compare::CompareError>().is_some_and(|e| {
                use crate::analyze::compare::CompareError as E;
                matches!(e, E::BadSide(_) | E::NoRun { .. } | E::Empty { .. })
            })
            || c.downcast_ref::<AnalysisError>()
                .is_some_and(|a| !matches!(a, AnalysisError::Store(_)))
            || c.downcast_ref::<AdHocError>()
                .is_some_and(|a| !matches!(a, AdHocError::Store(_) | AdHocError::Timeout(_)))
            || c.downcast_ref::<BacktestError>()
                .is_some_and(|b| matches!(b, BacktestError::Step))
            || c.downcast_ref::<crate::present::report::ReportError>()
                .is_some_and(|r| matches!(r, crate::present::report::ReportError::EmptyRange))
            // A config that names no cleanup action is a config error, like any other.
            || c.downcast_ref::<crate::act::cleanup::CleanupError>()
                .is_some_and(|r| matches!(r, crate::act::cleanup::CleanupError::NoActions))
    });
    if usage { 2 } else { 1 }
}

fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("MEMTRAIL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},refinery_core=warn")));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::logsink::Stderr)
        .log_internal_errors(false)
        .with_target(false);
    match format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => run_record(args),
        Command::Status(args) => run_status(args),
        Command::Top(args) => run_top(args),
        Command::Query(args) => run_query(args),
        Command::Report(args) => run_report(args),
        Command::Compare(args) => run_compare(args),
        Command::Rules(args) => run_rules(args),
        Command::Cleanup(args) => run_cleanup(args),
        Command::Annotate(args) => run_annotate(args),
        Command::Import(args) => run_import(args),
        Command::Backtest(args) => run_backtest(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "memtrail", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => write_man(dir.as_deref()),
        Command::Config(args) => run_config(args),
        Command::Check(args) => run_check(args),
    }
}

/// The record settings a config file puts in force, with `partial` (the file's `[record]`, flags
/// laid over it) checked: its rules, notify channels and cleanup too. The API is the caller's.
fn settings_in_force(
    file: &FileConfig,
    db: std::path::PathBuf,
    partial: RecordPartial,
    command: Vec<String>,
) -> anyhow::Result<RecordSettings> {
    let mut settings = RecordSettings::build(db, partial, command)?;
    settings.add_groups(&file.groups)?;
    settings.rules = rules_of(file)?;
    settings.notify = file.notify.clone();
    settings.cleanup = CleanupSettings::build(&file.cleanup)?;
    Ok(settings)
}

/// The config file (or the defaults) and the database: `--db`/MEMTRAIL_DB, else the file's `db`,
/// else memtrail.db (in $STATE_DIRECTORY under systemd).
/// The database a reading command opens: `--db`, else the default; checked as `record` checks it.
fn db_path(flag: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    let db = flag.unwrap_or_else(crate::config::default_db);
    crate::config::check_file_setting("db", &db)?;
    Ok(db)
}

fn config_and_db(
    config: Option<&std::path::Path>,
    db_flag: Option<PathBuf>,
) -> Result<(FileConfig, PathBuf), ConfigError> {
    let file = match config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let db = db_flag
        .or(file.db.clone())
        .unwrap_or_else(crate::config::default_db);
    crate::config::check_file_setting("db", &db)?;
    Ok((file, db))
}

/// The rules in force for a config: its `[[rules]]` over the defaults (unless switched off).
fn rules_of(file: &FileConfig) -> Result<Vec<crate::analyze::alerts::Rule>, ConfigError> {
    let rules = crate::analyze::alerts::build_rules(
        &file.rules,
        file.alerts.default_rules.unwrap_or(true),
        &file.notify,
    )?;
    if let Some(r) = rules
        .iter()
        .find(|r| r.actions.iter().any(|a| a == "cleanup"))
        && file.cleanup.actions.is_empty()
    {
        return Err(ConfigError::Invalid(format!(
            "rule {:?} has the cleanup action but no [[cleanup.actions]] are configured",
            r.name
        )));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_by_error_kind() {
        let usage: anyhow::Error = ConfigError::Invalid("x".into()).into();
        assert_eq!(exit_code(&usage), 2);
        let usage = anyhow::Error::from(SamplerError::NoSuchPid(1)).context("starting");
        assert_eq!(exit_code(&usage), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("disk on fire")), 1);
    }
}

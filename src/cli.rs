//! The command line: clap definitions (raw flags), their translation into checked settings, the
//! dispatch to each subcommand, and the mapping of errors to exit codes — 0 ok, 1 runtime failure,
//! 2 usage or config error, and for `record -- CMD` the command's own exit code.

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
pub struct Cli {
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
        after_help = "Examples:\n  memtrail status\n  memtrail status --format json --db /var/lib/memtrail/memtrail.db"
    )]
    Status(StatusArgs),
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
    /// Run a cleanup now on watched processes and record it, with memory before and after.
    #[command(
        after_help = "Examples:\n  memtrail cleanup --config memtrail.toml --pid 4242\n  memtrail cleanup --config memtrail.toml --name gunicorn --level aggressive"
    )]
    Cleanup(CleanupArgs),
    /// Write a report of a time range: HTML with charts, Markdown, JSON or CSV.
    #[command(
        after_help = "Examples:\n  memtrail report -o report.html                  # the last 24 hours, format from the file name\n  memtrail report --since 2h --format md\n  memtrail report --from 2026-11-24T08:00:00Z --to 2026-11-24T20:00:00Z --target gunicorn -o day.json\n  memtrail report --since 1h --format csv --raw -o samples.csv"
    )]
    Report(ReportArgs),
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

#[derive(Debug, Args)]
struct RecordArgs {
    #[command(flatten)]
    db: DbArg,
    /// TOML config file (see `memtrail config --default`); flags override it.
    #[arg(short, long, env = "MEMTRAIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Time between samples, at least 100ms [default: 5s]
    #[arg(short, long, value_name = "DURATION")]
    interval: Option<HumanDuration>,
    /// How long history is kept [default: 24h]
    #[arg(long, value_name = "DURATION")]
    retention: Option<HumanDuration>,
    /// Stop after this long [default: until SIGINT/SIGTERM]
    #[arg(long, value_name = "DURATION")]
    duration: Option<HumanDuration>,
    /// Watch this process (repeatable).
    #[arg(short, long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Watch every process with this name, including ones that start later (repeatable).
    #[arg(short, long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Watch a cgroup's memory against its own limit: a directory of the memory hierarchy, e.g.
    /// /system.slice/nginx.service or /sys/fs/cgroup/... (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<String>,
    /// Watch a systemd unit's cgroup (NAME or NAME.service; repeatable).
    #[arg(long = "unit", value_name = "NAME")]
    units: Vec<String>,
    /// Watch memtrail itself.
    #[arg(long = "self")]
    watch_self: bool,
    /// With no other target: watch the N largest processes by RSS [default: 10]
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Do not record system-wide memory.
    #[arg(long)]
    no_system: bool,
    /// Also record each target's whole process tree, summed (tree_rss, tree_procs, ...).
    #[arg(long)]
    include_children: bool,
    /// How often to read PSS/USS from smaps_rollup, or "off" [default: 60s]
    #[arg(long, value_name = "DURATION|off")]
    smaps_interval: Option<OrOff<HumanDuration>>,
    /// Skip PSS/USS for processes above this RSS, or "unlimited" [default: 2GiB]
    #[arg(long, value_name = "SIZE|unlimited")]
    smaps_max_rss: Option<OrOff<ByteSize>>,
    /// How often to look for new --name matches and re-rank --top [default: 5s]
    #[arg(long, value_name = "DURATION")]
    discovery_interval: Option<HumanDuration>,
    /// How long a write waits for another connection's lock [default: 5s]
    #[arg(long, value_name = "DURATION")]
    busy_timeout: Option<HumanDuration>,
    /// Samples held in memory while the database cannot be written (disk full, locked) [default: 100000]
    #[arg(long, value_name = "SAMPLES")]
    write_buffer: Option<usize>,
    /// Commit ticks together at most this often: cheaper at short intervals; ticks between
    /// commits wait in the spool, so a crash loses at most the tick in flight [default: 1s; 0s commits every tick]
    #[arg(long, value_name = "DURATION")]
    commit_interval: Option<HumanDuration>,
    /// Evaluate the alert rules at most this often (each evaluation runs every rule's query)
    /// [default: 10s]
    #[arg(long, env = "MEMTRAIL_EVALUATION_INTERVAL", value_name = "DURATION")]
    evaluation_interval: Option<HumanDuration>,
    /// Serve the HTTP API on this address [default: 127.0.0.1:8181]
    #[arg(long, env = "MEMTRAIL_LISTEN", value_name = "IP:PORT")]
    listen: Option<String>,
    /// Do not serve the HTTP API (wins over --listen and MEMTRAIL_LISTEN).
    #[arg(long)]
    no_api: bool,
    /// File holding the bearer token POSTs need (also MEMTRAIL_TOKEN); required beyond loopback.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Launch this command, watch it and its children, stop when it exits and exit with its code.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

impl RecordArgs {
    fn partial(&self) -> RecordPartial {
        let some_if = |v: bool, x: bool| v.then_some(x);
        RecordPartial {
            interval: self.interval,
            retention: self.retention,
            duration: self.duration,
            pids: (!self.pids.is_empty()).then(|| self.pids.clone()),
            names: (!self.names.is_empty()).then(|| self.names.clone()),
            cgroups: (!self.cgroups.is_empty()).then(|| self.cgroups.clone()),
            units: (!self.units.is_empty()).then(|| self.units.clone()),
            watch_self: some_if(self.watch_self, true),
            top: self.top,
            system: some_if(self.no_system, false),
            include_children: some_if(self.include_children, true),
            smaps_interval: self.smaps_interval,
            smaps_max_rss: self.smaps_max_rss,
            discovery_interval: self.discovery_interval,
            busy_timeout: self.busy_timeout,
            write_buffer: self.write_buffer,
            commit_interval: self.commit_interval,
            evaluation_interval: self.evaluation_interval,
        }
    }
}

#[derive(Debug, Args)]
struct QueryArgs {
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
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    db: DbArg,
}

#[derive(Debug, Args)]
struct ImportArgs {
    #[command(flatten)]
    db: DbArg,
    /// The file to load.
    file: PathBuf,
    /// Its format (detected from the first line by default).
    #[arg(long, value_enum, default_value_t = ImportFormat::Auto)]
    format: ImportFormat,
    /// Target name for formats that have none (psrecord; mprof defaults to its script's name).
    #[arg(long)]
    target: Option<String>,
    /// When a psrecord log started (RFC 3339 or Unix time) [default: file time minus its length]
    #[arg(long)]
    start: Option<String>,
}

#[derive(Debug, Args)]
struct CleanupArgs {
    #[command(flatten)]
    db: DbArg,
    /// Config file with the [[cleanup.actions]] to run.
    #[arg(short, long, env = "MEMTRAIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Clean up this process (repeatable) [default: [cleanup] pid or target of the config]
    #[arg(short, long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Clean up every process with this name (repeatable).
    #[arg(short, long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// normal runs the normal actions; aggressive runs all of them.
    #[arg(long, value_enum, default_value_t = Level::Normal)]
    level: Level,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Html,
    Md,
    Json,
    Csv,
}

#[derive(Debug, Args)]
struct ReportArgs {
    #[command(flatten)]
    db: DbArg,
    /// The range: this long before --to (or now).
    #[arg(long, value_name = "DURATION", conflicts_with = "from", value_parser = since_duration)]
    since: Option<HumanDuration>,
    /// Start of the range (a time: RFC 3339, YYYY-MM-DD[ HH:MM], Unix time, -2h, ...) [default: 24h before --to]
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

#[derive(Debug, Args)]
struct BacktestArgs {
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
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    db: DbArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The window of the min/max columns.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    window: HumanDuration,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ConfigArgs {
    /// Print the commented default configuration.
    #[arg(long)]
    default: bool,
    #[command(subcommand)]
    action: Option<ConfigAction>,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Check a config file and print the effective recording settings.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// An error in how memtrail was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parse, run, and turn the result into an exit code. Errors are printed once, here.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    if !matches!(cli.command, Command::Record(_)) {
        // Output commands end quietly when the reader goes away (`memtrail query ... | head`),
        // like other Unix tools; the recorder keeps Rust's default of ignoring SIGPIPE.
        // SAFETY: setting a signal disposition to its default has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
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
            || c.downcast_ref::<AnalysisError>()
                .is_some_and(|a| !matches!(a, AnalysisError::Store(_)))
            || c.downcast_ref::<AdHocError>()
                .is_some_and(|a| !matches!(a, AdHocError::Store(_) | AdHocError::Timeout(_)))
            || c.downcast_ref::<BacktestError>()
                .is_some_and(|b| matches!(b, BacktestError::Step))
            || c.downcast_ref::<crate::present::report::ReportError>()
                .is_some_and(|r| matches!(r, crate::present::report::ReportError::EmptyRange))
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
        Command::Query(args) => run_query(args),
        Command::Report(args) => run_report(args),
        Command::Cleanup(args) => run_cleanup(args),
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
    settings.rules = rules_of(file)?;
    settings.notify = file.notify.clone();
    settings.cleanup = CleanupSettings::build(&file.cleanup)?;
    Ok(settings)
}

/// `memtrail record`: the settings from the file and the flags, then the recorder with its API.
fn run_record(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let (file, db) = config_and_db(args.config.as_deref(), args.db.db.clone())?;
    let mut settings = settings_in_force(
        &file,
        db,
        file.record.clone().overlay(args.partial()),
        args.command.clone(),
    )?;
    settings.api = file.api.build(
        args.listen.as_deref(),
        args.no_api,
        args.token_file.as_deref(),
        std::env::var("MEMTRAIL_TOKEN").ok(),
    )?;
    crate::record::recorder::record(settings, |listener, shared| {
        Box::pin(crate::serve::http::serve(
            listener,
            crate::serve::api::router(shared),
        ))
    })
}

/// `memtrail status`: the overview as a table or JSON.
fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let db = db_path(args.db.db)?;
    let report = crate::analyze::status::collect(&db, args.window.0)?;
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => put!("{}", crate::analyze::status::render_table(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `memtrail import`: parse the file, store its series, say what was new.
fn run_import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let db = db_path(args.db.db)?;
    let path = args.file.display().to_string();
    let text = crate::collect::import::read_bounded(&args.file)?;
    let start = time_arg("start", &args.start)?;
    let parsed =
        crate::collect::import::parse(&path, &text, args.format, args.target.as_deref(), start)?;
    let mut store = crate::store::Store::open(&db, Duration::from_secs(5))?;
    let n = store.import(&parsed.series)?;
    let changed = match n.changed {
        0 => String::new(),
        c => format!(", {c} changed to the file's value"),
    };
    let mut notes = Vec::new();
    if parsed.duplicates > 0 {
        notes.push(format!(
            "{} duplicate timestamps in the file (the last of each kept)",
            parsed.duplicates
        ));
    }
    if parsed.skipped_lines > 0 {
        notes.push(format!(
            "{} lines skipped (markers and kinds that hold no sample)",
            parsed.skipped_lines
        ));
    }
    if parsed.cut_last_line {
        notes.push("the last line was cut short and left out".into());
    }
    out!(
        "imported {} samples in {} series from {path} into {}: {} new, {} already there{changed}{}",
        n.new + n.changed + n.unchanged,
        parsed.series.len(),
        db.display(),
        n.new,
        n.unchanged,
        notes.iter().map(|n| format!("; {n}")).collect::<String>()
    );
    Ok(ExitCode::SUCCESS)
}

/// `memtrail check`: the whole database checked, on a read-only connection.
fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let db = db_path(args.db.db)?;
    let mut conn = crate::store::open_reader(&db, Duration::from_secs(5))?;
    match crate::store::check(&mut conn, None) {
        crate::store::Checked::Damaged(detail) => {
            Err(crate::store::StoreError::Damaged { path: db, detail }.into())
        }
        _ => {
            out!("{}: ok (every page and index checked)", db.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `memtrail backtest`: replay the rules and print the timeline.
fn run_backtest(args: BacktestArgs) -> anyhow::Result<ExitCode> {
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

/// `memtrail config`: print the default, or check a file and print the settings in force.
fn run_config(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(ConfigAction::Check { file }) => {
            let config = FileConfig::load(&file)?;
            let db = config.db.clone().unwrap_or_else(crate::config::default_db);
            crate::config::check_file_setting("db", &db)?;
            let mut settings = settings_in_force(&config, db, config.record.clone(), vec![])?;
            settings.api = config.api.build(None, false, None, None)?;
            out!("{}: ok", file.display());
            for (key, value) in settings.describe() {
                out!("  {key} = {value}");
            }
            for r in &settings.rules {
                out!("  rule {} = {}", r.name, serde_json::to_string(r)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        None if args.default => {
            put!("{DEFAULT_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
        None => Err(UsageError(
            "say what to do: `memtrail config --default` or `memtrail config check FILE`".into(),
        )
        .into()),
    }
}

fn run_cleanup(args: CleanupArgs) -> anyhow::Result<ExitCode> {
    use crate::act::cleanup::{self, Target, Trigger};
    let (file, db) = config_and_db(args.config.as_deref(), args.db.db.clone())?;
    let settings = CleanupSettings::build(&file.cleanup)?;
    let (mut pids, mut names) = (args.pids.clone(), args.names.clone());
    if pids.is_empty() && names.is_empty() {
        pids.extend(settings.pid);
        names.extend(settings.target.clone());
    }
    if pids.is_empty() && names.is_empty() {
        return Err(UsageError(
            "say which process to clean up: --pid N or --name NAME (or [cleanup] pid/target in the config)".into(),
        )
        .into());
    }
    let mut targets = Vec::new();
    for pid in pids {
        targets.push(Target::of_pid(pid).ok_or(SamplerError::NoSuchPid(pid))?);
    }
    for name in &names {
        let found = Target::named(name);
        if found.is_empty() {
            return Err(UsageError(format!("no running process is named {name:?}")).into());
        }
        targets.extend(found);
    }
    let mut runs = Vec::new();
    let mut refused = Vec::new();
    for t in &targets {
        match cleanup::run(&db, &settings, Trigger::Manual, args.level, t) {
            Ok(r) => runs.push(r),
            Err(e @ cleanup::CleanupError::Busy { .. }) => refused.push(e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&runs)?),
        Format::Table => {
            for r in &runs {
                let b =
                    |v: Option<u64>| v.map_or("?".into(), |v| crate::units::format_bytes(v as f64));
                out!(
                    "cleanup {}: {} (pid {}) {} -> {}, freed {} [{}; {}]",
                    r.id,
                    r.target,
                    r.pid,
                    b(r.rss_before),
                    b(r.rss_after),
                    r.freed_bytes
                        .map_or("?".into(), |f| crate::units::format_bytes(f as f64)),
                    r.outcome,
                    r.actions
                );
            }
        }
    }
    for why in &refused {
        crate::logsink::line(&format!("memtrail: {why}\n"));
    }
    let failed = runs.iter().any(|r| r.outcome != "ok");
    Ok(if refused.is_empty() && !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let db = db_path(args.db.db)?;
    let now = crate::units::now_ms();
    let to = time_arg("to", &args.to)?.unwrap_or(now);
    let from = match (time_arg("from", &args.from)?, args.since) {
        (Some(f), _) => f,
        (None, Some(d)) => to - d.0.as_millis() as i64,
        (None, None) => to - 24 * 3_600_000,
    };
    let by_extension = args
        .output
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .and_then(|e| match e.to_ascii_lowercase().as_str() {
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
    let conn = crate::store::open_reader(&db, Duration::from_secs(5))?;
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

fn run_query(args: QueryArgs) -> anyhow::Result<ExitCode> {
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
            q.run(&conn, &params, now)?
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

/// `memtrail man`: the top page on stdout, or every command's page into `dir`.
fn write_man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .map_err(|e| anyhow::anyhow!("cannot write man pages to {}: {e}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
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

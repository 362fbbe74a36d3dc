//! `memtrail cleanup`: a cleanup run now on watched processes, recorded with memory before and after.

use super::*;

#[derive(Debug, Args)]
pub(super) struct CleanupArgs {
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

pub(super) fn run_cleanup(args: CleanupArgs) -> anyhow::Result<ExitCode> {
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

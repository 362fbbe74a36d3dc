//! `memtrail annotate`: an event written into the recording (a deploy, a config change, a load
//! test), so reports mark it and a leak's onset is told relative to it.

use super::*;

#[derive(Debug, Args)]
pub(super) struct AnnotateArgs {
    #[command(flatten)]
    db: DbArg,
    /// What happened, in a few words (at most 200 bytes): "deploy v1.4".
    label: String,
    /// The target it concerns (a process or cgroup name) [default: the whole host]
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// The process it concerns (its name is taken from the running process, else the recording).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// When it happened: a time, or how long ago (-10m) [default: now]
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    at: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `memtrail annotate`: check the label, name the target, write the event, say what was written.
pub(super) fn run_annotate(args: AnnotateArgs) -> anyhow::Result<ExitCode> {
    use crate::model::{EventKind, NewEvent};
    let db = db_path(args.db.db)?;
    crate::model::check_event_label(&args.label).map_err(UsageError)?;
    if let Some(t) = &args.target
        && !crate::model::valid_target_name(t)
    {
        return Err(UsageError(format!(
            "--target {} is not a target name",
            crate::model::shown(t)
        ))
        .into());
    }
    let ts_ms = time_arg("at", &args.at)?.unwrap_or_else(crate::units::now_ms);
    let target = args.target.or_else(|| {
        args.pid
            .and_then(crate::act::cleanup::Target::of_pid)
            .map(|t| t.name)
    });
    let event = NewEvent {
        ts_ms,
        kind: EventKind::Annotation,
        label: args.label.trim().to_string(),
        target,
        pid: args.pid,
    };
    let (id, target) = crate::store::record_event(&db, &event, Duration::from_secs(5))?;
    match args.format {
        Format::Json => out!(
            "{}",
            serde_json::json!({
                "id": id, "ts_ms": ts_ms, "kind": "annotation", "label": event.label,
                "target": target, "pid": event.pid,
            })
        ),
        Format::Table => out!(
            "event {id} at {}: {:?} ({})",
            crate::units::format_time(ts_ms),
            event.label,
            match (&target, event.pid) {
                (Some(t), Some(p)) => format!("{t}, pid {p}"),
                (Some(t), None) => t.clone(),
                (None, Some(p)) => format!("pid {p}"),
                (None, None) => "the whole host".into(),
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

//! `memtrail import`: a recording made elsewhere (memtrail CSV, psrecord, mprof) parsed, stored, and
//! summed up: what was new, already there, changed, duplicated, skipped or cut.

use super::*;

#[derive(Debug, Args)]
pub(super) struct ImportArgs {
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

/// `memtrail import`: parse the file, store its series, say what was new.
pub(super) fn run_import(args: ImportArgs) -> anyhow::Result<ExitCode> {
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

//! `memtrail check`: the whole database checked for damage (`PRAGMA integrity_check`).

use super::*;

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    db: DbArg,
}

/// `memtrail check`: the whole database checked, on a read-only connection.
pub(super) fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
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

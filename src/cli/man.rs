//! `memtrail man`: the manual pages, generated from the clap definitions.

use super::*;

/// `memtrail man`: the top page on stdout, or every command's page into `dir`.
pub(super) fn write_man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
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

//! `memtrail config`: the commented default configuration, or a file checked and its settings in
//! force printed.

use super::*;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct ConfigArgs {
    /// Print the commented default configuration.
    #[arg(long)]
    default: bool,
    #[command(subcommand)]
    action: Option<ConfigAction>,
}

#[derive(Debug, Subcommand)]
pub(super) enum ConfigAction {
    /// Check a config file and print the effective recording settings.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// `memtrail config`: print the default, or check a file and print the settings in force.
pub(super) fn run_config(args: ConfigArgs) -> anyhow::Result<ExitCode> {
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

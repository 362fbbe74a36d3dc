//! `memtrail rules export`: the alert rules in force (the defaults, or a config's) written for
//! another engine — today Prometheus, as a rule file.

use super::*;

#[derive(Debug, Args)]
pub(super) struct RulesArgs {
    #[command(subcommand)]
    action: RulesAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum RulesFormat {
    /// A Prometheus rule file (YAML): `promtool check rules` reads it.
    Prometheus,
}

#[derive(Debug, Subcommand)]
pub(super) enum RulesAction {
    /// Write the rules in force as a rule file for another engine.
    Export {
        /// The engine to write for.
        #[arg(long, value_enum, default_value_t = RulesFormat::Prometheus)]
        format: RulesFormat,
        /// Config file whose [[rules]] (and [alerts] default_rules) are in force [default: the
        /// built-in rules]
        #[arg(short, long, env = "MEMTRAIL_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `memtrail rules export`: the rules in force, in the engine's format.
pub(super) fn run_rules(args: RulesArgs) -> anyhow::Result<ExitCode> {
    let RulesAction::Export {
        format: RulesFormat::Prometheus,
        config,
        output,
    } = args.action;
    let file = match &config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let text = crate::present::prometheus_rules::rule_file(&rules_of(&file)?);
    match output {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => put!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

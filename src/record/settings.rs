//! The checked settings of `memtrail record`: the file's `[record]` section with the flags laid
//! over it, defaults filling the gaps and every value checked once, here; with the alert rules,
//! the cleanup and the API settings each stage built from its own section.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{
    CleanupSection, ConfigError, GroupSpec, MIN_INTERVAL, NotifySection, RecordPartial, Targets,
};
use crate::units::HumanDuration;

/// Checked settings for `memtrail record`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSettings {
    pub db: PathBuf,
    pub interval: Duration,
    pub retention: Duration,
    pub duration: Option<Duration>,
    pub targets: Targets,
    pub system: bool,
    pub include_children: bool,
    pub smaps_interval: Option<Duration>,
    pub smaps_max_rss: Option<u64>,
    /// How often each mapping group's RSS is read from smaps (`map_rss:...`); None: never.
    pub maps_interval: Option<Duration>,
    pub discovery_interval: Duration,
    pub busy_timeout: Duration,
    /// At most this many samples are held in memory while the database cannot be written (a full
    /// disk, a lock held past the busy timeout); the oldest are dropped beyond it.
    pub write_buffer: usize,
    /// Ticks are committed together at most this often (0: every tick is its own transaction).
    /// Fewer commits cost less (each dirties a page per series), but a crash loses what is held.
    pub commit_interval: Duration,
    /// The rules are evaluated after a tick at most this often (each evaluation runs every rule's
    /// windowed query and writes their state).
    pub evaluation_interval: Duration,
    /// Alert rules, evaluated every `evaluation_interval` (set by the caller from the config file).
    pub rules: Vec<crate::analyze::alerts::Rule>,
    pub notify: NotifySection,
    pub cleanup: crate::act::cleanup::CleanupSettings,
    /// The HTTP API, or None when it is off.
    pub api: Option<crate::config::ApiSettings>,
}

/// Samples held in memory while writes fail: about 4 MB, and at the default targets (10
/// processes and the system, 1 tick each 5 s) more than an hour of history.
pub(crate) const DEFAULT_WRITE_BUFFER: usize = 100_000;

fn dur(s: &str) -> Duration {
    s.parse::<HumanDuration>().map(|h| h.0).unwrap_or_default()
}

/// A slow reading's cadence: `default` when unset, None when "off", never 0.
fn cadence(
    set: Option<crate::config::OrOff<HumanDuration>>,
    default: &str,
    name: &str,
) -> Result<Option<Duration>, ConfigError> {
    let every = set.map_or(Some(dur(default)), |o| o.0.map(|d| d.0));
    if every.is_some_and(|d| d.is_zero()) {
        return Err(ConfigError::Invalid(format!(
            "{name} must be more than 0, or \"off\""
        )));
    }
    Ok(every)
}

impl RecordSettings {
    /// The sampler's part.
    pub(crate) fn sampler(&self) -> crate::collect::sampler::SamplerConfig {
        crate::collect::sampler::SamplerConfig {
            targets: self.targets.clone(),
            system: self.system,
            include_children: self.include_children,
            smaps_interval: self.smaps_interval,
            smaps_max_rss: self.smaps_max_rss,
            maps_interval: self.maps_interval,
            discovery_interval: self.discovery_interval,
        }
    }

    /// Fill gaps with defaults and check every value.
    pub fn build(
        db: PathBuf,
        p: RecordPartial,
        command: Vec<String>,
    ) -> Result<RecordSettings, ConfigError> {
        let interval = p.interval.map_or(dur("5s"), |d| d.0);
        let retention = p.retention.map_or(dur("24h"), |d| d.0);
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if interval < MIN_INTERVAL {
            return invalid(format!(
                "interval {} is below the minimum of 100ms: use --interval 100ms or more",
                HumanDuration(interval)
            ));
        }
        if retention <= interval {
            return invalid(format!(
                "retention {} must be longer than the interval {}: keep at least a few samples",
                HumanDuration(retention),
                HumanDuration(interval)
            ));
        }
        if let Some(d) = p.duration
            && d.0.is_zero()
        {
            return invalid(
                "duration must be more than 0 (leave it out to record until stopped)".into(),
            );
        }
        let names = p.names.unwrap_or_default();
        if let Some(bad) = names.iter().find(|n| n.trim().is_empty()) {
            return invalid(format!(
                "process name {bad:?} is empty: give the name as `ps -o comm` shows it"
            ));
        }
        let groups = p.groups.iter().flatten().map(|n| GroupSpec::named(n));
        let groups: Vec<GroupSpec> = groups.collect();
        let smaps_interval = cadence(p.smaps_interval, "60s", "smaps_interval")?;
        let maps_interval = cadence(p.maps_interval, "5m", "maps_interval")?;
        let write_buffer = p.write_buffer.unwrap_or(DEFAULT_WRITE_BUFFER);
        if write_buffer == 0 {
            return invalid(format!(
                "write_buffer must be at least 1 sample (default {DEFAULT_WRITE_BUFFER}): it holds what cannot be written yet"
            ));
        }
        let commit_interval = p.commit_interval.map_or(dur("1s"), |d| d.0);
        if commit_interval > Duration::from_secs(60) {
            return invalid(format!(
                "commit_interval {} is over 1m: a crash loses what is not yet committed; use 1m or less (0s commits every tick)",
                HumanDuration(commit_interval)
            ));
        }
        let evaluation_interval = p.evaluation_interval.map_or(dur("10s"), |d| d.0);
        if evaluation_interval < MIN_INTERVAL {
            return invalid(format!(
                "evaluation_interval {} is below the minimum of 100ms: use 100ms or more (rules then run after every tick at most)",
                HumanDuration(evaluation_interval)
            ));
        }
        let mut settings = RecordSettings {
            db,
            interval,
            retention,
            duration: p.duration.map(|d| d.0),
            targets: Targets {
                pids: p.pids.unwrap_or_default(),
                names,
                groups: Vec::new(),
                cgroups: p.cgroups.unwrap_or_default(),
                units: p.units.unwrap_or_default(),
                watch_self: p.watch_self.unwrap_or(false),
                command,
                top: p.top.unwrap_or(10),
                min_age: p.min_age.map(|d| d.0),
                min_rss: p.min_rss.map_or(0, |b| b.0),
            },
            system: p.system.unwrap_or(true),
            include_children: p.include_children.unwrap_or(false),
            smaps_interval,
            smaps_max_rss: p
                .smaps_max_rss
                .map_or(Some(2 * 1024 * 1024 * 1024), |o| o.0.map(|b| b.0)),
            maps_interval,
            discovery_interval: p
                .discovery_interval
                .map_or(dur("5s"), |d| d.0)
                .max(interval),
            busy_timeout: p.busy_timeout.map_or(dur("5s"), |d| d.0),
            write_buffer,
            commit_interval,
            evaluation_interval,
            rules: Vec::new(),
            notify: NotifySection::default(),
            cleanup: crate::act::cleanup::CleanupSettings::build(&CleanupSection::default())?,
            api: None,
        };
        settings.add_groups(&groups)?;
        Ok(settings)
    }

    /// Add name groups (`--group`, a config's `[[groups]]`), each checked: a target name, a
    /// pattern that compiles within bounds, no name twice.
    pub fn add_groups(&mut self, more: &[crate::config::GroupSpec]) -> Result<(), ConfigError> {
        for g in more {
            crate::collect::namegroup::matcher(g).map_err(ConfigError::Invalid)?;
            if self.targets.groups.iter().any(|h| h.name == g.name) {
                return Err(ConfigError::Invalid(format!(
                    "group {:?} is given twice: give each group its own name",
                    g.name
                )));
            }
            self.targets.groups.push(g.clone());
        }
        Ok(())
    }
}

impl RecordSettings {
    /// The effective settings as `key = value` pairs, for `config check` and the `runs` table.
    pub(crate) fn describe(&self) -> Vec<(&'static str, String)> {
        let d = |d: Duration| HumanDuration(d).to_string();
        let list = |v: Vec<String>| format!("[{}]", v.join(", "));
        let mut all = vec![
            ("db", self.db.display().to_string()),
            ("interval", d(self.interval)),
            ("retention", d(self.retention)),
            ("duration", self.duration.map_or("until stopped".into(), d)),
        ];
        all.extend(describe_targets(&self.targets));
        all.extend([
            ("system", self.system.to_string()),
            ("include_children", self.include_children.to_string()),
            (
                "smaps_interval",
                self.smaps_interval.map_or("off".into(), d),
            ),
            (
                "smaps_max_rss",
                self.smaps_max_rss
                    .map_or("unlimited".into(), |b| crate::units::format_bytes(b as f64)),
            ),
            ("maps_interval", self.maps_interval.map_or("off".into(), d)),
            ("discovery_interval", d(self.discovery_interval)),
            ("busy_timeout", d(self.busy_timeout)),
            ("write_buffer", format!("{} samples", self.write_buffer)),
            ("commit_interval", d(self.commit_interval)),
            ("evaluation_interval", d(self.evaluation_interval)),
            (
                "rules",
                list(self.rules.iter().map(|r| r.name.clone()).collect()),
            ),
            (
                "notify.webhook",
                self.notify.webhook.clone().unwrap_or_else(|| "none".into()),
            ),
            (
                "notify.command",
                self.notify.command.clone().unwrap_or_else(|| "none".into()),
            ),
            (
                "cleanup.actions",
                list(
                    self.cleanup
                        .actions
                        .iter()
                        .map(|a| format!("{} ({})", a.describe(), a.level.as_str()))
                        .collect(),
                ),
            ),
            (
                "cleanup.periodic",
                self.cleanup.periodic.map_or("off".into(), d),
            ),
            (
                "api",
                self.api.as_ref().map_or("off".into(), |a| {
                    format!(
                        "{}{}",
                        a.listen,
                        if a.token.is_some() {
                            " (token required for POST)"
                        } else {
                            ""
                        }
                    )
                }),
            ),
        ]);
        all
    }
}

/// The targets' settings as `key = value` pairs (`RecordSettings::describe`).
fn describe_targets(t: &Targets) -> Vec<(&'static str, String)> {
    let d = |d: Duration| HumanDuration(d).to_string();
    let list = |v: Vec<String>| format!("[{}]", v.join(", "));
    vec![
        ("pids", list(t.pids.iter().map(u32::to_string).collect())),
        (
            "names",
            list(t.names.iter().map(|n| format!("{n:?}")).collect()),
        ),
        (
            "groups",
            list(
                t.groups
                    .iter()
                    .map(|g| format!("{:?} ({})", g.name, g.selector()))
                    .collect(),
            ),
        ),
        (
            "cgroups",
            list(t.cgroups.iter().map(|n| format!("{n:?}")).collect()),
        ),
        (
            "units",
            list(t.units.iter().map(|n| format!("{n:?}")).collect()),
        ),
        ("self", t.watch_self.to_string()),
        (
            "top",
            if t.explicit() {
                format!("{} (not used: explicit targets given)", t.top)
            } else {
                t.top.to_string()
            },
        ),
        ("min_age", t.min_age.map_or("30s; 0s for names".into(), d)),
        ("min_rss", crate::units::format_bytes(t.min_rss as f64)),
        (
            "command",
            list(t.command.iter().map(|a| format!("{a:?}")).collect()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CONFIG, DEFAULT_DB, FileConfig};
    use std::path::Path;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn default_config_text_matches_built_in_defaults() {
        let file = parse(DEFAULT_CONFIG).expect("default config parses");
        let from_text = RecordSettings::build(
            file.db.expect("default config names the db"),
            file.record,
            vec![],
        )
        .expect("valid");
        let built_in =
            RecordSettings::build(PathBuf::from(DEFAULT_DB), RecordPartial::default(), vec![])
                .expect("valid");
        assert_eq!(from_text, built_in);
    }

    /// The documented [[groups]] example is valid; a group needs a name, a pattern that compiles
    /// and a name of its own; `--group NAME` selects the processes named NAME.
    #[test]
    fn name_groups_are_checked() {
        let text = crate::config::default_config_with_examples("# Name groups by command line");
        let file = parse(&text).expect("the example parses");
        let mut s = RecordSettings::build(PathBuf::from("x.db"), RecordPartial::default(), vec![])
            .expect("valid");
        s.add_groups(&file.groups)
            .expect("the example is a valid group");
        assert_eq!(s.targets.groups[0].name, "celery");
        assert_eq!(
            s.targets.groups[0].cmdline.as_deref(),
            Some("celery .*worker")
        );
        assert!(s.targets.explicit(), "a group is a target: no top N then");
        let group = |name: &str, cmdline: Option<&str>| crate::config::GroupSpec {
            name: name.into(),
            process: None,
            cmdline: cmdline.map(str::to_string),
        };
        let err = s.add_groups(&[group("celery", None)]).expect_err("twice");
        assert!(err.to_string().contains("given twice"), "{err}");
        let err = s
            .add_groups(&[group("bad", Some("("))])
            .expect_err("no regex");
        assert!(
            err.to_string().contains("not a regular expression"),
            "{err}"
        );
        let err = s.add_groups(&[group("", None)]).expect_err("no name");
        assert!(err.to_string().contains("group name"), "{err}");
        let long = "a".repeat(2000);
        assert!(s.add_groups(&[group("long", Some(&long))]).is_err());
        let flags = RecordPartial {
            groups: Some(vec!["gunicorn".into()]),
            ..Default::default()
        };
        let s = RecordSettings::build(PathBuf::from("x.db"), flags, vec![]).expect("valid");
        assert_eq!(
            s.targets.groups,
            [crate::config::GroupSpec::named("gunicorn")]
        );
    }

    #[test]
    fn flags_override_file() {
        let file = parse("[record]\ninterval = \"10s\"\ntop = 3\n").expect("parses");
        let flags = RecordPartial {
            interval: Some("1s".parse().expect("dur")),
            ..Default::default()
        };
        let s = RecordSettings::build("a.db".into(), file.record.overlay(flags), vec![])
            .expect("valid");
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!(s.targets.top, 3);
    }

    #[test]
    fn checks_ranges() {
        let build = |text: &str| {
            RecordSettings::build("a.db".into(), parse(text).expect("parses").record, vec![])
        };
        let err = build("[record]\ninterval = \"50ms\"\n")
            .expect_err("too fast")
            .to_string();
        assert!(err.contains("below the minimum"), "{err}");
        let err = build("[record]\ninterval = \"1m\"\nretention = \"30s\"\n")
            .expect_err("retention")
            .to_string();
        assert!(err.contains("retention 30s must be longer"), "{err}");
        let s = build("[record]\nsmaps_interval = \"off\"\nsmaps_max_rss = \"unlimited\"\n")
            .expect("valid");
        assert_eq!((s.smaps_interval, s.smaps_max_rss), (None, None));
        let err = build("[record]\nwrite_buffer = 0\n")
            .expect_err("no buffer")
            .to_string();
        assert!(err.contains("write_buffer must be at least 1"), "{err}");
        let err = build("[record]\ncommit_interval = \"5m\"\n")
            .expect_err("too long")
            .to_string();
        assert!(err.contains("commit_interval 5m is over 1m"), "{err}");
        let s = build("[record]\ncommit_interval = \"1s\"\nwrite_buffer = 10\n").expect("valid");
        assert_eq!(
            (s.commit_interval, s.write_buffer, s.evaluation_interval),
            (Duration::from_secs(1), 10, Duration::from_secs(10))
        );
        let err = build("[record]\nevaluation_interval = \"0s\"\n")
            .expect_err("zero")
            .to_string();
        assert!(err.contains("evaluation_interval 0ms is below"), "{err}");
        let s = build("[record]\nevaluation_interval = \"1m\"\n").expect("valid");
        assert_eq!(s.evaluation_interval, Duration::from_secs(60));
    }
}

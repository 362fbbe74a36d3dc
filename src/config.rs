//! Configuration as written: the TOML file's sections and the command-line overrides, which fill
//! the same partial struct (flags laid over the file). Unknown keys and wrong types are errors
//! that name the key and the file line (the TOML parser's spans). The checked settings built from
//! them live with the stage that uses them (`settings` for `memtrail record`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::units::{ByteSize, HumanDuration};

/// The default database file, relative to the working directory (or systemd's state directory).
pub(crate) const DEFAULT_DB: &str = "memtrail.db";
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The commented default configuration printed by `memtrail config --default`. A test checks that
/// it parses to exactly the built-in defaults, so the two cannot drift apart.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Where the database goes when neither `--db`/`MEMTRAIL_DB` nor the config file names one: in
/// systemd's state directory (`StateDirectory=` sets `$STATE_DIRECTORY`; the first of several)
/// when run by systemd, else `memtrail.db` in the working directory.
pub(crate) fn default_db() -> PathBuf {
    default_db_in(std::env::var_os("STATE_DIRECTORY").as_deref())
}

fn default_db_in(state_directory: Option<&std::ffi::OsStr>) -> PathBuf {
    state_directory
        .and_then(|dirs| std::env::split_paths(dirs).find(|d| !d.as_os_str().is_empty()))
        .map_or_else(|| PathBuf::from(DEFAULT_DB), |dir| dir.join(DEFAULT_DB))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read { path: PathBuf, source: ReadError },
    #[error("config file {}, {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The largest config file memtrail reads (a real one is a few KiB; `--config /dev/zero` is not).
pub(crate) const CONFIG_FILE_LIMIT: u64 = 1 << 20;

/// The largest token file memtrail reads.
pub(crate) const TOKEN_FILE_LIMIT: u64 = 4096;

/// Why `read_bounded` read nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a regular file")]
    NotAFile,
    #[error("{size} bytes, larger than {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Io(std::io::Error),
}

/// Read a regular file of at most `limit` bytes as UTF-8. A device, FIFO or directory, or a file
/// over the limit, is refused before it is read (a FIFO would block, `/dev/zero` never ends).
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<String, ReadError> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    let too_large = |size| ReadError::TooLarge { size, limit };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_string(&mut text))
        .map_err(ReadError::Io)?;
    // A file that grew after it was looked at.
    if text.len() as u64 > limit {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// A file a setting names (the database): not empty, not a directory, and a regular file if it
/// exists (`/dev/null` or a FIFO would swallow or block the history). Refused with exit 2.
pub(crate) fn check_file_setting(setting: &str, path: &Path) -> Result<(), ConfigError> {
    let said = |why: &str| ConfigError::Invalid(format!("`{setting}` {why}"));
    if path.as_os_str().is_empty() {
        return Err(said("is empty: name a file, e.g. memtrail.db"));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(said(&format!(
            "is {}, a directory: name a file in it, e.g. {}",
            path.display(),
            path.join(DEFAULT_DB).display()
        ))),
        Ok(m) if !m.is_file() => Err(said(&format!(
            "is {}, which is not a regular file (a device, FIFO or socket)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// A value that may also be switched off with `"off"` (or `"unlimited"`/`"none"` for limits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrOff<T>(pub Option<T>);

impl<T: FromStr> FromStr for OrOff<T> {
    type Err = T::Err;
    fn from_str(s: &str) -> Result<Self, T::Err> {
        match s.trim() {
            "off" | "none" | "unlimited" => Ok(OrOff(None)),
            other => other.parse().map(|v| OrOff(Some(v))),
        }
    }
}

impl<'de, T: FromStr> Deserialize<'de> for OrOff<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The whole config file. Sections for cleanup and the API join this struct as they come.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub db: Option<PathBuf>,
    #[serde(default)]
    pub record: RecordPartial,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub notify: NotifySection,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub cleanup: CleanupSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
}

/// A name group (`[[groups]]`, or `--group NAME`): every process named `process` (as `ps -o comm`
/// shows it), and/or whose command line matches the regular expression `cmdline`, summed into one
/// target of kind `group` named `name`. With neither, the processes named `name`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    pub process: Option<String>,
    pub cmdline: Option<String>,
}

impl GroupSpec {
    /// `--group NAME`: the processes with that name.
    pub fn named(name: &str) -> GroupSpec {
        GroupSpec {
            name: name.to_string(),
            process: Some(name.to_string()),
            cmdline: None,
        }
    }

    /// What selects the members, in words (the target's `cmdline` column).
    pub fn selector(&self) -> String {
        match (&self.process, &self.cmdline) {
            (Some(p), Some(c)) => format!("processes named {p:?} whose command line matches /{c}/"),
            (None, Some(c)) => format!("processes whose command line matches /{c}/"),
            (Some(p), None) => format!("processes named {p:?}"),
            (None, None) => format!("processes named {:?}", self.name),
        }
    }
}

/// `[api]`: the HTTP API the recorder serves.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiSection {
    /// false: no API [default: true].
    pub enabled: Option<bool>,
    /// Address to listen on [default: 127.0.0.1:8181].
    pub listen: Option<String>,
    /// A file holding the bearer token POSTs need (required to listen beyond loopback).
    pub token_file: Option<PathBuf>,
    /// false: /metrics leaves the pid label out; processes of one name are summed into one
    /// series (the analysis shows the one in the most urgent state) [default: true].
    pub pid_label: Option<bool>,
}

impl ApiSection {
    /// Lay flags over the file and check: an address to listen on, and a token when that address
    /// is not loopback. `None` when the API is off.
    pub fn build(
        &self,
        listen_flag: Option<&str>,
        no_api: bool,
        token_file_flag: Option<&Path>,
        token_env: Option<String>,
    ) -> Result<Option<ApiSettings>, ConfigError> {
        if no_api || self.enabled == Some(false) {
            return Ok(None);
        }
        let text = listen_flag
            .or(self.listen.as_deref())
            .unwrap_or("127.0.0.1:8181");
        let listen: std::net::SocketAddr = text.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "listen address {text:?} is not IP:PORT (e.g. 127.0.0.1:8181, [::1]:8181, 0.0.0.0:8181)"
            ))
        })?;
        let token = match token_file_flag.or(self.token_file.as_deref()) {
            Some(path) => Some(
                read_bounded(path, TOKEN_FILE_LIMIT)
                    .map_err(|e| {
                        ConfigError::Invalid(format!(
                            "cannot read the token file {}: {e}",
                            path.display()
                        ))
                    })?
                    .trim()
                    .to_string(),
            ),
            None => token_env.map(|t| t.trim().to_string()),
        };
        if token.as_deref() == Some("") {
            return Err(ConfigError::Invalid(
                "the API token is empty: put a secret in the token file or MEMTRAIL_TOKEN".into(),
            ));
        }
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve the API on {listen} without a token: anyone who can reach it could trigger cleanups. \
                 Give --token-file FILE or MEMTRAIL_TOKEN, or listen on 127.0.0.1"
            )));
        }
        Ok(Some(ApiSettings {
            listen,
            token,
            pid_label: self.pid_label.unwrap_or(true),
        }))
    }
}

/// `[cleanup]`: how memtrail asks a watched application to free memory, and when.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CleanupSection {
    /// Run a normal cleanup this often ("off" to never) [default: 10m when actions are configured].
    pub periodic: Option<OrOff<HumanDuration>>,
    /// Wait this long after the actions before measuring memory again [default: 2s].
    pub settle: Option<HumanDuration>,
    /// After an alert-triggered cleanup of a process, none again for this long [default: 10m].
    pub alert_cooldown: Option<HumanDuration>,
    /// Which watched processes cleanups act on, by name [default: every explicitly watched one].
    pub target: Option<String>,
    /// Which watched process cleanups act on, by pid.
    pub pid: Option<u32>,
    #[serde(default)]
    pub actions: Vec<CleanupActionConfig>,
}

/// One `[[cleanup.actions]]` entry: exactly one of signal, command, url.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CleanupActionConfig {
    /// normal or aggressive [default: normal]. A normal cleanup runs the normal actions; an
    /// aggressive one (alert-triggered, or asked for) runs all of them.
    pub level: Option<String>,
    /// Send this signal to the target, e.g. "SIGUSR1".
    pub signal: Option<String>,
    /// Run this with `sh -c`; MEMTRAIL_CLEANUP_PID, _NAME, _TRIGGER and _LEVEL are set.
    pub command: Option<String>,
    /// POST {"pid", "name", "trigger", "level"} as JSON to this URL.
    pub url: Option<String>,
    /// How long the action may take [default: 30s].
    pub timeout: Option<HumanDuration>,
}

/// `[alerts]`: whether the built-in default rules apply (a `[[rules]]` entry with the same name
/// replaces a default one).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsSection {
    pub default_rules: Option<bool>,
}

/// `[notify]`: where alerts go besides the log.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// POST each alert as JSON to this URL.
    pub webhook: Option<String>,
    pub webhook_timeout: Option<HumanDuration>,
    /// Further tries after a failed POST, with doubling back-off from 1 s.
    pub webhook_retries: Option<u32>,
    /// Run this with `sh -c`, the alert in MEMTRAIL_ALERT_* environment variables.
    pub command: Option<String>,
    pub command_timeout: Option<HumanDuration>,
}

/// A rule's threshold as written: a number, or a string with a unit (`"1GiB"`, `"2h"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum RuleValue {
    Number(f64),
    Text(String),
}

/// One `[[rules]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    pub name: String,
    pub metric: String,
    pub kind: Option<String>,
    pub target: Option<String>,
    pub pid: Option<u32>,
    pub comparison: String,
    pub value: RuleValue,
    pub window: Option<HumanDuration>,
    #[serde(rename = "for")]
    pub for_: Option<HumanDuration>,
    pub cooldown: Option<HumanDuration>,
    pub repeat: Option<HumanDuration>,
    pub hysteresis: Option<f64>,
    pub warmup: Option<HumanDuration>,
    pub limit: Option<RuleValue>,
    pub severity: Option<String>,
    pub actions: Option<Vec<String>>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = read_bounded(path, CONFIG_FILE_LIMIT).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let place = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("{place}{}", e.message().trim_end().replace('\n', " ")),
            }
        })
    }
}

/// Recording settings as written in the `[record]` section or given as flags; `None` = not set.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPartial {
    pub interval: Option<HumanDuration>,
    pub retention: Option<HumanDuration>,
    pub duration: Option<HumanDuration>,
    pub pids: Option<Vec<u32>>,
    pub names: Option<Vec<String>>,
    /// Name groups by process name (`--group NAME`; `[[groups]]` for patterns).
    pub groups: Option<Vec<String>>,
    pub cgroups: Option<Vec<String>>,
    pub units: Option<Vec<String>>,
    #[serde(rename = "self")]
    pub watch_self: Option<bool>,
    pub top: Option<usize>,
    pub min_age: Option<HumanDuration>,
    pub min_rss: Option<ByteSize>,
    pub system: Option<bool>,
    pub include_children: Option<bool>,
    pub smaps_interval: Option<OrOff<HumanDuration>>,
    pub smaps_max_rss: Option<OrOff<ByteSize>>,
    pub maps_interval: Option<OrOff<HumanDuration>>,
    pub discovery_interval: Option<HumanDuration>,
    pub busy_timeout: Option<HumanDuration>,
    pub write_buffer: Option<usize>,
    pub commit_interval: Option<HumanDuration>,
    pub evaluation_interval: Option<HumanDuration>,
}

impl RecordPartial {
    /// `over`'s values win where set.
    pub(crate) fn overlay(self, over: RecordPartial) -> RecordPartial {
        RecordPartial {
            interval: over.interval.or(self.interval),
            retention: over.retention.or(self.retention),
            duration: over.duration.or(self.duration),
            pids: over.pids.or(self.pids),
            names: over.names.or(self.names),
            groups: over.groups.or(self.groups),
            cgroups: over.cgroups.or(self.cgroups),
            units: over.units.or(self.units),
            watch_self: over.watch_self.or(self.watch_self),
            top: over.top.or(self.top),
            min_age: over.min_age.or(self.min_age),
            min_rss: over.min_rss.or(self.min_rss),
            system: over.system.or(self.system),
            include_children: over.include_children.or(self.include_children),
            smaps_interval: over.smaps_interval.or(self.smaps_interval),
            smaps_max_rss: over.smaps_max_rss.or(self.smaps_max_rss),
            maps_interval: over.maps_interval.or(self.maps_interval),
            discovery_interval: over.discovery_interval.or(self.discovery_interval),
            busy_timeout: over.busy_timeout.or(self.busy_timeout),
            write_buffer: over.write_buffer.or(self.write_buffer),
            commit_interval: over.commit_interval.or(self.commit_interval),
            evaluation_interval: over.evaluation_interval.or(self.evaluation_interval),
        }
    }
}

/// What to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub pids: Vec<u32>,
    pub names: Vec<String>,
    /// Name groups: processes summed into one target each.
    pub groups: Vec<GroupSpec>,
    /// cgroup directories (absolute, or paths in the memory hierarchy).
    pub cgroups: Vec<String>,
    /// systemd units whose cgroups are watched.
    pub units: Vec<String>,
    pub watch_self: bool,
    /// `record -- CMD ARGS...`: launch and watch this command (and its children).
    pub command: Vec<String>,
    /// With no explicit target, the N largest processes by RSS.
    pub top: usize,
    /// Processes found by `names` or `top` are watched only once they have run this long (None:
    /// the default, 30 s for `top`, none for `names`).
    pub min_age: Option<std::time::Duration>,
    /// ... and only while their RSS is at least this (bytes; 0: any).
    pub min_rss: u64,
}

impl Targets {
    pub(crate) fn explicit(&self) -> bool {
        !self.pids.is_empty()
            || !self.names.is_empty()
            || !self.groups.is_empty()
            || !self.cgroups.is_empty()
            || !self.units.is_empty()
            || self.watch_self
            || !self.command.is_empty()
    }
}

/// Where the API listens and the token POSTs need.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub listen: std::net::SocketAddr,
    pub token: Option<String>,
    /// /metrics carries the pid label.
    pub pid_label: bool,
}

/// The default config with the commented examples of one section switched on: lines that look
/// like TOML (`# key = ...`, `# [section]`) from the line starting with `from` up to the next
/// top-level section. For tests that keep the documented examples valid.
#[cfg(test)]
pub(crate) fn default_config_with_examples(from: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in DEFAULT_CONFIG.lines() {
        if line.starts_with(from) {
            inside = true;
        } else if inside && line.starts_with('[') && !line.starts_with("[[") {
            inside = false;
        }
        let code = line.strip_prefix("# ").filter(|rest| {
            rest.starts_with('[')
                || rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
        });
        out.push_str(match code {
            Some(code) if inside => code,
            _ => line,
        });
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("db = \"x.db\"\n[record]\ninterval = \"5s\"\nintervall = \"1s\"\n")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("intervall"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("test.toml"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("line 4, column 1: unknown field `intervall`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = parse("[record]\ntop = \"ten\"\n")
            .expect_err("wrong type")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
        let err = parse("[record]\n\ninterval = \"5 parsecs\"\n")
            .expect_err("bad duration")
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("unknown unit"),
            "{err}"
        );
    }

    #[test]
    fn default_db_goes_to_the_first_state_directory() {
        use std::ffi::OsStr;
        assert_eq!(default_db_in(None), PathBuf::from("memtrail.db"));
        assert_eq!(
            default_db_in(Some(OsStr::new("/var/lib/memtrail"))),
            PathBuf::from("/var/lib/memtrail/memtrail.db")
        );
        assert_eq!(
            default_db_in(Some(OsStr::new("/var/lib/a:/var/lib/b"))),
            PathBuf::from("/var/lib/a/memtrail.db")
        );
        assert_eq!(
            default_db_in(Some(OsStr::new(""))),
            PathBuf::from("memtrail.db")
        );
    }
}

//! Cleanup runs: memtrail asks a watched application to free memory — by a signal, a command or a
//! POST to the application's own cleanup endpoint — periodically, on demand (`memtrail cleanup`,
//! the API) or when an alert rule with the `cleanup` action fires, and records each run in
//! `cleanup_runs` with the target's memory just before and after (after a settle delay).
//!
//! A run first claims its target in the database (an open `cleanup_runs` row, in an IMMEDIATE
//! transaction), so two cleanups of one process never overlap, even when one is asked for from
//! another process; a request that finds a claim is refused and records nothing. A failing or
//! hanging action is recorded as such; cleanups run on worker threads, never on the tick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::act::exec::{self, ShellOutcome};
use crate::collect::procfs::{self, Kernel};
use crate::config::{CleanupSection, ConfigError};
use crate::store::{self, Store, StoreError};
use crate::units::HumanDuration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Normal,
    Aggressive,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Aggressive => "aggressive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
    Periodic,
    Manual,
    Alert(String),
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Periodic => "periodic",
            Trigger::Manual => "manual",
            Trigger::Alert(_) => "alert",
        }
    }
    fn rule(&self) -> Option<&str> {
        match self {
            Trigger::Alert(rule) => Some(rule),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    Signal(i32, String),
    Command(String),
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub kind: ActionKind,
    pub level: Level,
    pub timeout: Duration,
}

impl Action {
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            ActionKind::Signal(_, name) => format!("signal {name}"),
            ActionKind::Command(c) => format!("command {c}"),
            ActionKind::Url(u) => format!("url {u}"),
        }
    }
}

/// Checked `[cleanup]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupSettings {
    pub periodic: Option<Duration>,
    pub settle: Duration,
    pub alert_cooldown: Duration,
    pub target: Option<String>,
    pub pid: Option<u32>,
    pub actions: Vec<Action>,
}

const SIGNALS: [(&str, i32); 6] = [
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGTERM", libc::SIGTERM),
    ("SIGQUIT", libc::SIGQUIT),
];

impl CleanupSettings {
    pub fn build(c: &CleanupSection) -> Result<CleanupSettings, ConfigError> {
        let mut actions = Vec::new();
        for (i, a) in c.actions.iter().enumerate() {
            let bad = |why: String| {
                ConfigError::Invalid(format!("[[cleanup.actions]] entry {}: {why}", i + 1))
            };
            let level = match a.level.as_deref() {
                None | Some("normal") => Level::Normal,
                Some("aggressive") => Level::Aggressive,
                Some(other) => {
                    return Err(bad(format!(
                        "unknown level {other:?}: use normal or aggressive"
                    )));
                }
            };
            let kind = match (&a.signal, &a.command, &a.url) {
                (Some(sig), None, None) => {
                    let name = sig.to_ascii_uppercase();
                    let name = if name.starts_with("SIG") {
                        name
                    } else {
                        format!("SIG{name}")
                    };
                    let num = SIGNALS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| {
                            bad(format!(
                                "unknown signal {sig:?}: use one of {}",
                                SIGNALS.map(|(n, _)| n).join(", ")
                            ))
                        })?;
                    ActionKind::Signal(num, name)
                }
                (None, Some(cmd), None) if !cmd.trim().is_empty() => {
                    ActionKind::Command(cmd.clone())
                }
                (None, None, Some(url))
                    if url.starts_with("http://") || url.starts_with("https://") =>
                {
                    ActionKind::Url(url.clone())
                }
                (None, None, Some(url)) => {
                    return Err(bad(format!(
                        "url {url:?} must start with http:// or https://"
                    )));
                }
                _ => return Err(bad("give exactly one of signal, command or url".into())),
            };
            let timeout = a.timeout.map_or(Duration::from_secs(30), |d| d.0);
            if timeout.is_zero() {
                return Err(bad("timeout must be more than 0".into()));
            }
            actions.push(Action {
                kind,
                level,
                timeout,
            });
        }
        let periodic = match c.periodic {
            Some(p) => p.0.map(|d| d.0),
            None if actions.is_empty() => None,
            None => Some(Duration::from_secs(600)),
        };
        if periodic.is_some_and(|p| p < Duration::from_secs(1)) {
            return Err(ConfigError::Invalid(
                "[cleanup] periodic must be at least 1s, or \"off\"".into(),
            ));
        }
        if periodic.is_some() && actions.is_empty() {
            return Err(ConfigError::Invalid(
                "[cleanup] periodic is set but there are no [[cleanup.actions]] to run".into(),
            ));
        }
        Ok(CleanupSettings {
            periodic,
            settle: c.settle.map_or(Duration::from_secs(2), |d| d.0),
            alert_cooldown: c.alert_cooldown.map_or(Duration::from_secs(600), |d| d.0),
            target: c.target.clone(),
            pid: c.pid,
            actions,
        })
    }

    /// The actions a cleanup of this level runs: normal ones, or all of them when aggressive.
    pub(crate) fn actions_for(&self, level: Level) -> Vec<&Action> {
        self.actions
            .iter()
            .filter(|a| level == Level::Aggressive || a.level == Level::Normal)
            .collect()
    }

    /// The longest a run can take; an open claim older than this (and a margin) was abandoned.
    fn max_run(&self) -> Duration {
        self.actions.iter().map(|a| a.timeout).sum::<Duration>()
            + self.settle
            + Duration::from_secs(60)
    }
}

/// A process to clean up, by identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub pid: u32,
    pub start_time_ms: i64,
    pub name: String,
}

impl Target {
    /// The process with this pid now, if it exists.
    pub(crate) fn of_pid(pid: u32) -> Option<Target> {
        let s = procfs::read_stat(pid).filter(|s| !s.exited())?;
        Some(Target {
            pid,
            start_time_ms: s.start_time_ms(&Kernel::get()),
            name: s.comm,
        })
    }

    /// Every running process with this name (as `ps -o comm` shows it).
    pub fn named(name: &str) -> Vec<Target> {
        procfs::all_pids()
            .into_iter()
            .filter_map(|pid| {
                let s = procfs::read_stat(pid)?;
                (s.comm == name && !s.exited()).then(|| Target {
                    pid,
                    start_time_ms: s.start_time_ms(&Kernel::get()),
                    name: s.comm,
                })
            })
            .collect()
    }

    /// Its RSS now, in bytes; None once it has exited (or the pid belongs to another process).
    pub fn rss(&self) -> Option<u64> {
        let k = Kernel::get();
        procfs::read_stat(self.pid)
            .filter(|s| !s.exited() && s.start_time_ms(&k) == self.start_time_ms)
            .map(|s| s.rss_pages * k.page_size)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CleanupError {
    #[error(
        "a cleanup of {target} (pid {pid}) is already running (run {run_id}, {trigger}, started {since}); nothing new was recorded"
    )]
    Busy {
        target: String,
        pid: u32,
        run_id: i64,
        trigger: String,
        since: String,
    },
    #[error(
        "no cleanup actions are configured: add [[cleanup.actions]] (signal, command or url) to the config"
    )]
    NoActions,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One action's result, as stored in `cleanup_runs.output`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ActionResult {
    pub action: String,
    pub outcome: &'static str,
    pub exit_code: Option<i32>,
    pub http_status: Option<u16>,
    pub output: String,
}

/// A finished cleanup run (a `cleanup_runs` row).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    pub id: i64,
    pub trigger: String,
    pub rule: Option<String>,
    pub level: String,
    pub target: String,
    pub pid: u32,
    pub actions: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub http_status: Option<u16>,
    pub results: Vec<ActionResult>,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub freed_bytes: Option<i64>,
}

fn run_action(a: &Action, t: &Target, trigger: &Trigger, level: Level) -> ActionResult {
    let mut r = ActionResult {
        action: a.describe(),
        outcome: "ok",
        exit_code: None,
        http_status: None,
        output: String::new(),
    };
    match &a.kind {
        ActionKind::Signal(sig, name) => {
            if t.rss().is_none() {
                r.outcome = "failed";
                r.output = format!("pid {} is no longer {}: {name} not sent", t.pid, t.name);
                return r;
            }
            // The pid's identity (start time) was just checked.
            if let Err(e) = crate::sys::kill(t.pid, *sig) {
                r.outcome = "failed";
                r.output = format!("{name}: {e}");
            }
        }
        ActionKind::Command(cmd) => {
            let env = [
                ("MEMTRAIL_CLEANUP_PID", t.pid.to_string()),
                ("MEMTRAIL_CLEANUP_NAME", t.name.clone()),
                ("MEMTRAIL_CLEANUP_TRIGGER", trigger.as_str().to_string()),
                ("MEMTRAIL_CLEANUP_LEVEL", level.as_str().to_string()),
            ];
            let res = exec::shell(cmd, &env, a.timeout);
            r.output = res.output;
            match res.outcome {
                ShellOutcome::Exited(s) => {
                    r.exit_code = s.code();
                    if !s.success() {
                        r.outcome = "failed";
                    }
                }
                ShellOutcome::TimedOut => {
                    r.outcome = "timed_out";
                    r.output = format!("killed after {}; {}", HumanDuration(a.timeout), r.output);
                }
                ShellOutcome::NotStarted(why) => {
                    r.outcome = "failed";
                    r.output = why;
                }
            }
        }
        ActionKind::Url(url) => {
            let body = serde_json::json!({
                "pid": t.pid, "name": t.name, "trigger": trigger.as_str(), "level": level.as_str()
            })
            .to_string();
            match exec::post_json(url, &body, a.timeout) {
                Ok((status, text)) => {
                    r.http_status = Some(status);
                    r.output = text;
                    if !(200..300).contains(&status) {
                        r.outcome = "failed";
                    }
                }
                Err(e) => {
                    r.outcome =
                        if e.to_ascii_lowercase().contains("timeout") || e.contains("timed out") {
                            "timed_out"
                        } else {
                            "failed"
                        };
                    r.output = e;
                }
            }
        }
    }
    r
}

/// Clean up one target: claim it, run the level's actions, wait `settle`, measure, record.
pub fn run(
    db: &Path,
    settings: &CleanupSettings,
    trigger: Trigger,
    level: Level,
    target: &Target,
) -> Result<Run, CleanupError> {
    let actions = settings.actions_for(level);
    if actions.is_empty() {
        return Err(CleanupError::NoActions);
    }
    let mut store = Store::open(db, Duration::from_secs(5))?;
    let described: Vec<String> = actions.iter().map(|a| a.describe()).collect();
    let claim = store::Claim {
        trigger: trigger.as_str(),
        rule: trigger.rule(),
        level: level.as_str(),
        pid: target.pid,
        start_time_ms: target.start_time_ms,
        target: &target.name,
        actions: &described.join(", "),
        stale_after_ms: settings.max_run().as_millis() as i64,
    };
    let rss_before = target.rss();
    let (id, started_ms) = match store.claim_cleanup(&claim)? {
        Ok(v) => v,
        Err(busy) => {
            return Err(CleanupError::Busy {
                target: target.name.clone(),
                pid: target.pid,
                run_id: busy.run_id,
                trigger: busy.trigger,
                since: crate::units::format_time(busy.started_ms),
            });
        }
    };
    let results: Vec<ActionResult> = actions
        .iter()
        .map(|a| run_action(a, target, &trigger, level))
        .collect();
    std::thread::sleep(settings.settle);
    let rss_after = target.rss();
    let outcome = if results.iter().any(|r| r.outcome == "timed_out") {
        "timed_out"
    } else if results.iter().any(|r| r.outcome == "failed") {
        "failed"
    } else {
        "ok"
    };
    let exit_code = results.iter().rev().find_map(|r| r.exit_code);
    let http_status = results.iter().rev().find_map(|r| r.http_status);
    // A target that exited during the cleanup freed all it had.
    let freed = rss_before.map(|b| b as i64 - rss_after.unwrap_or(0) as i64);
    let ended_ms = crate::units::now_ms();
    store.finish_cleanup(&store::Finish {
        id,
        ended_ms,
        outcome,
        exit_code,
        http_status,
        output: &serde_json::to_string(&results).unwrap_or_default(),
        rss_before,
        rss_after,
        freed_bytes: freed,
    })?;
    Ok(Run {
        id,
        trigger: trigger.as_str().into(),
        rule: trigger.rule().map(str::to_string),
        level: level.as_str().into(),
        target: target.name.clone(),
        pid: target.pid,
        actions: described.join(", "),
        started_ms,
        ended_ms,
        outcome: outcome.into(),
        exit_code,
        http_status,
        results,
        rss_before,
        rss_after,
        freed_bytes: freed,
    })
}

/// Runs cleanups on worker threads for the recorder, so a slow action never delays a tick.
pub(crate) struct Cleaner {
    db: PathBuf,
    pub settings: CleanupSettings,
    running: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Cleaner {
    pub fn new(db: PathBuf, settings: CleanupSettings) -> Cleaner {
        Cleaner {
            db,
            settings,
            running: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Wait for the cleanups still running (each is bounded by its actions' timeouts and the
    /// settle delay), so stopping the recorder never cuts one off before it is recorded.
    pub fn finish(&self) {
        let handles = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        // Finished runs leave their handle behind until joined: only the others are waited for.
        let running = handles.iter().filter(|h| !h.is_finished()).count();
        if running > 0 {
            tracing::info!("waiting for {running} cleanup run(s) to finish");
        }
        for h in handles {
            let _ = h.join();
        }
    }

    pub fn spawn(&self, trigger: Trigger, level: Level, target: Target) {
        let (db, settings) = (self.db.clone(), self.settings.clone());
        let what = format!("{} (pid {})", target.name, target.pid);
        let spawned = std::thread::Builder::new()
            .name("cleanup".into())
            .spawn(move || match run(&db, &settings, trigger, level, &target) {
                Ok(r) => log_run(&r),
                Err(e @ CleanupError::Busy { .. }) => tracing::info!("{e}"),
                Err(e) => tracing::warn!(target = %what, "cleanup failed: {e}"),
            });
        match spawned {
            Ok(handle) => {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                running.retain(|h| !h.is_finished());
                running.push(handle);
            }
            Err(e) => tracing::warn!("cannot start a cleanup thread: {e}"),
        }
    }
}

pub(crate) fn log_run(r: &Run) {
    let mib = |b: Option<u64>| b.map_or("?".into(), |b| crate::units::format_bytes(b as f64));
    let freed = r
        .freed_bytes
        .map_or("?".into(), |f| crate::units::format_bytes(f as f64));
    let msg = format!(
        "cleanup {} ({} {}) of {} (pid {}): {}, freed {freed} ({} -> {})",
        r.id,
        r.trigger,
        r.level,
        r.target,
        r.pid,
        r.outcome,
        mib(r.rss_before),
        mib(r.rss_after)
    );
    if r.outcome == "ok" {
        tracing::info!("{msg}");
    } else {
        tracing::warn!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn settings(toml_text: &str) -> Result<CleanupSettings, ConfigError> {
        let file = FileConfig::parse(toml_text, Path::new("c.toml"))?;
        CleanupSettings::build(&file.cleanup)
    }

    #[test]
    fn actions_and_levels() {
        let s = settings(
            "[cleanup]\nsettle = \"1s\"\n[[cleanup.actions]]\nsignal = \"usr1\"\n\
             [[cleanup.actions]]\nlevel = \"aggressive\"\nurl = \"http://127.0.0.1:9/cleanup\"\ntimeout = \"2s\"\n",
        )
        .expect("valid");
        assert_eq!(
            s.periodic,
            Some(Duration::from_secs(600)),
            "periodic defaults to 10m with actions"
        );
        assert_eq!(
            s.actions[0].kind,
            ActionKind::Signal(libc::SIGUSR1, "SIGUSR1".into())
        );
        assert_eq!(s.actions_for(Level::Normal).len(), 1);
        assert_eq!(s.actions_for(Level::Aggressive).len(), 2);
        assert_eq!(
            settings("").expect("empty").periodic,
            None,
            "nothing to run: no periodic cleanup"
        );
    }

    #[test]
    fn the_commented_cleanup_example_in_the_default_config_is_valid() {
        let text = crate::config::default_config_with_examples("[cleanup]");
        let s = settings(&text).expect("the example is valid");
        assert_eq!(s.actions.len(), 3);
        assert_eq!(s.periodic, Some(Duration::from_secs(600)));
        assert_eq!((s.target.as_deref(), s.pid), (Some("gunicorn"), Some(4242)));
        assert_eq!(s.actions_for(Level::Normal).len(), 2);
    }

    #[test]
    fn bad_actions_are_named() {
        for (text, why) in [
            (
                "[[cleanup.actions]]\nsignal = \"SIGFOO\"\n",
                "unknown signal",
            ),
            (
                "[[cleanup.actions]]\nsignal = \"SIGUSR1\"\ncommand = \"x\"\n",
                "exactly one of",
            ),
            (
                "[[cleanup.actions]]\nurl = \"ftp://x\"\n",
                "must start with http",
            ),
            (
                "[[cleanup.actions]]\ncommand = \"x\"\nlevel = \"nuclear\"\n",
                "unknown level",
            ),
            ("[cleanup]\nperiodic = \"5m\"\n", "no [[cleanup.actions]]"),
        ] {
            let err = settings(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}

//! `memtrail status`: reads the database on a read-only connection (safe while a recorder writes
//! to it, thanks to WAL) and shows, per series, the latest value, the min/max over the last hour and
//! the sample count, plus whether a recorder is running — as a table for people or JSON for scripts.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::store::{self, RunStatus, SeriesStatus, StoreError};
use crate::units::{HumanDuration, format_bytes};
use crate::units::{format_time, format_value, now_ms};

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub database: String,
    pub generated_ms: i64,
    pub window_ms: i64,
    pub recorder: Option<RecorderState>,
    /// The newest cleanup run (a row of the `cleanups` query), if any.
    pub last_cleanup: Option<serde_json::Map<String, serde_json::Value>>,
    /// Each cgroup's latest usage against its limit.
    pub limits: Vec<LimitStatus>,
    pub series: Vec<SeriesStatus>,
}

/// A cgroup's usage against its memory limit. A group without a limit of its own (`max`) is
/// measured against the host's memory, and `own_limit` is false to say so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitStatus {
    pub target: String,
    pub usage: f64,
    pub limit: Option<f64>,
    pub own_limit: bool,
    pub percent: Option<f64>,
    pub summary: String,
}

impl LimitStatus {
    /// From a group's latest `usage`, `limit` and `has_limit` values.
    pub fn of(target: &str, latest: impl Fn(&str) -> Option<f64>) -> Option<LimitStatus> {
        let usage = latest("usage")?;
        let limit = latest("limit").filter(|l| *l > 0.0);
        let own_limit = latest("has_limit").is_some_and(|h| h > 0.0);
        let percent = limit.map(|l| usage * 100.0 / l);
        let summary = match (limit.zip(percent), own_limit) {
            (Some((l, pct)), true) => format!(
                "usage {} of its {} limit ({pct:.1} %)",
                format_bytes(usage),
                format_bytes(l)
            ),
            (Some((l, pct)), false) => format!(
                "usage {}; no memory limit of its own (max): measured against the host's {} ({pct:.1} %)",
                format_bytes(usage),
                format_bytes(l)
            ),
            (None, _) => format!("usage {}; no limit known", format_bytes(usage)),
        };
        Some(LimitStatus {
            target: target.to_string(),
            usage,
            limit,
            own_limit,
            percent,
            summary,
        })
    }
}

fn limits_of(series: &[SeriesStatus]) -> Vec<LimitStatus> {
    let mut targets: Vec<&str> = series
        .iter()
        .filter(|s| s.kind == "cgroup")
        .map(|s| s.target.as_str())
        .collect();
    targets.dedup();
    targets
        .into_iter()
        .filter_map(|t| {
            LimitStatus::of(t, |metric| {
                series
                    .iter()
                    .find(|s| s.kind == "cgroup" && s.target == t && s.metric == metric)
                    .map(|s| s.latest)
            })
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct RecorderState {
    /// The newest run is open and its process is alive.
    pub running: bool,
    #[serde(flatten)]
    pub run: RunStatus,
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the pid exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn collect(db: &Path, window: Duration) -> Result<StatusReport, StoreError> {
    let conn = store::open_reader(db, Duration::from_secs(5))?;
    let now = now_ms();
    let window_ms = window.as_millis() as i64;
    let series = store::series_status(&conn, now, window_ms)?;
    let recorder = store::last_run(&conn)?.map(|run| RecorderState {
        running: run.stopped_ms.is_none() && pid_alive(run.pid),
        run,
    });
    // The last cleanup is extra: if it cannot be read, status still shows the rest.
    let last_cleanup = crate::analyze::analysis::run(&conn, "cleanups", &[], now)
        .ok()
        .and_then(|t| t.json_rows().into_iter().next());
    Ok(StatusReport {
        database: db.display().to_string(),
        generated_ms: now,
        window_ms,
        recorder,
        last_cleanup,
        limits: limits_of(&series),
        series,
    })
}

/// The recorder's state in one line: running, stopped, or gone without closing its run.
fn recorder_line(out: &mut String, r: &StatusReport) {
    match &r.recorder {
        None => {
            let _ = writeln!(out, "recorder: no run recorded yet");
        }
        Some(state) => {
            let run = &state.run;
            let last = run.last_tick_ms.map_or("none".to_string(), format_time);
            let every = HumanDuration(Duration::from_millis(run.interval_ms.max(0) as u64));
            let _ = match (state.running, run.stopped_ms) {
                (true, _) => writeln!(
                    out,
                    "recorder: running (pid {}, run {}, every {every}) since {}; last tick {last}",
                    run.pid,
                    run.id,
                    format_time(run.started_ms)
                ),
                (false, Some(stopped)) => writeln!(
                    out,
                    "recorder: stopped {} ({}); run {} started {}",
                    format_time(stopped),
                    run.stop_reason.as_deref().unwrap_or("unknown"),
                    run.id,
                    format_time(run.started_ms)
                ),
                (false, None) => writeln!(
                    out,
                    "recorder: not running (pid {} is gone without closing run {}); last tick {last}",
                    run.pid, run.id
                ),
            };
        }
    }
}

/// The last cleanup run in one line.
fn cleanup_line(out: &mut String, r: &StatusReport) {
    if let Some(c) = &r.last_cleanup {
        let num = |k: &str| c.get(k).and_then(|v| v.as_f64());
        let text = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
        let bytes = |k: &str| num(k).map_or("?".to_string(), format_bytes);
        let _ = writeln!(
            out,
            "last cleanup: {} {} {} of {} (pid {}): {}, freed {} ({} -> {})",
            num("started_ms").map_or("?".to_string(), |t| format_time(t as i64)),
            text("trigger"),
            text("level"),
            text("target"),
            num("pid").unwrap_or(0.0),
            text("outcome"),
            bytes("freed_bytes"),
            bytes("rss_before"),
            bytes("rss_after"),
        );
    }
}

pub fn render_table(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "database: {}", r.database);
    recorder_line(&mut out, r);
    cleanup_line(&mut out, r);
    if r.series.is_empty() {
        let _ = writeln!(out, "\nno samples yet");
        return out;
    }
    let window = HumanDuration(Duration::from_millis(r.window_ms.max(0) as u64));
    let mut current: Option<(String, String, Option<u32>)> = None;
    for s in &r.series {
        let who = (s.kind.clone(), s.target.clone(), s.pid);
        if current.as_ref() != Some(&who) {
            let _ = if s.kind == s.target {
                write!(out, "\n{}", s.kind)
            } else {
                write!(out, "\n{} {}", s.kind, s.target)
            };
            if let Some(pid) = s.pid {
                let _ = write!(out, " (pid {pid})");
            }
            if let Some(gone) = s.gone_ms {
                let what = if s.kind == "cgroup" {
                    "removed"
                } else {
                    "exited"
                };
                let _ = write!(out, " - {what} {}", format_time(gone));
            }
            if let Some(l) = r
                .limits
                .iter()
                .find(|l| s.kind == "cgroup" && l.target == s.target)
            {
                let _ = write!(out, "\n  {}", l.summary);
            }
            let _ = writeln!(
                out,
                "\n  {:<22} {:>12} {:>12} {:>12} {:>9}",
                "metric",
                "latest",
                format!("min {window}"),
                format!("max {window}"),
                "samples"
            );
            current = Some(who);
        }
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format_value(&s.unit, v));
        let _ = writeln!(
            out,
            "  {:<22} {:>12} {:>12} {:>12} {:>9}",
            s.metric,
            format_value(&s.unit, s.latest),
            opt(s.window_min),
            opt(s.window_max),
            s.samples
        );
    }
    out
}

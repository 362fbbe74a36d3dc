//! `memtrail status` as a table for people: the recorder's state, the last cleanup, the leaking
//! targets in one line each, then per target every metric's latest value, its min and max over the
//! window, its sample count and its trend verdict. All of it from one `Overview`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::analyze::overview::{Overview, SeriesState, Verdict, leading_leaks};
use crate::model::Kind;
use crate::units::{HumanDuration, format_bytes, format_duration_rough, format_time, format_value};

/// The recorder's state in one line: running, stopped, or gone without closing its run.
fn recorder_line(out: &mut String, r: &Overview) {
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
fn cleanup_line(out: &mut String, r: &Overview) {
    if let Some(c) = &r.last_cleanup {
        let bytes = |v: Option<f64>| v.map_or("?".to_string(), format_bytes);
        let _ = writeln!(
            out,
            "last cleanup: {} {} {} of {} (pid {}): {}, freed {} ({} -> {})",
            format_time(c.started_ms),
            c.trigger,
            c.level,
            c.target,
            c.pid,
            c.outcome,
            bytes(c.freed_bytes),
            bytes(c.rss_before),
            bytes(c.rss_after),
        );
    }
}

/// The leaking targets, one line each, by the metric that speaks for the target.
fn leak_lines(out: &mut String, r: &Overview) {
    for s in leading_leaks(&r.series) {
        let st = &s.status;
        let who = match st.pid {
            Some(pid) => format!("{} {} (pid {pid})", st.kind.as_str(), st.target),
            None => format!("{} {}", st.kind.as_str(), st.target),
        };
        let _ = writeln!(out, "{who}: {} {}", st.metric, s.verdict);
        if let Some(o) = &s.onset {
            let _ = writeln!(out, "  {}", o.words());
        }
        if let Some(d) = &s.diagnosis {
            let _ = writeln!(out, "  {}", d.words);
        }
    }
}

/// The series whose growth repeats on a schedule, one line per pattern.
fn pattern_lines(out: &mut String, r: &Overview) {
    for s in r.series.iter().filter(|s| !s.patterns.is_empty()) {
        let st = &s.status;
        let who = match st.pid {
            Some(pid) => format!("{} {} (pid {pid})", st.kind.as_str(), st.target),
            None if st.kind.as_str() == st.target => st.target.clone(),
            None => format!("{} {}", st.kind.as_str(), st.target),
        };
        for p in &s.patterns {
            let _ = writeln!(out, "{who}: {} {}", st.metric, p.words());
        }
    }
}

/// A verdict in a table cell: the class, and the slope for a rising or falling one.
fn trend_cell(s: &SeriesState) -> String {
    let Some(t) = &s.trend else {
        return "-".into();
    };
    let pct = t.pct_per_hour.unwrap_or(0.0);
    match t.classification {
        Verdict::Increasing | Verdict::Decreasing => {
            let limit = t.seconds_to_limit.map_or(String::new(), |secs| {
                format!(", limit in {}", format_duration_rough(secs))
            });
            format!("{} {pct:+.2} %/h{limit}", t.classification.as_str())
        }
        Verdict::Step => format!("step {:+.1} %", t.step_pct.unwrap_or(0.0)),
        Verdict::InsufficientData => "-".into(),
        other => other.as_str().replace('_', " "),
    }
}

/// The table; `all` shows each mapping's `map_rss:*` series too (else they are counted under
/// their target: the diagnosis names the mapping that grows).
pub(crate) fn render_table(r: &Overview, all: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "database: {}", r.database);
    recorder_line(&mut out, r);
    cleanup_line(&mut out, r);
    leak_lines(&mut out, r);
    pattern_lines(&mut out, r);
    if r.series.is_empty() {
        let _ = writeln!(out, "\nno samples yet");
        return out;
    }
    let window = HumanDuration(Duration::from_millis(r.window_ms.max(0) as u64));
    let mut current: Option<(Kind, String, Option<u32>)> = None;
    let mut folded = 0;
    for state in &r.series {
        let s = &state.status;
        let who = (s.kind, s.target.clone(), s.pid);
        if current.as_ref() != Some(&who) {
            folded_line(&mut out, &mut folded);
            let _ = if s.kind.as_str() == s.target {
                write!(out, "\n{}", s.target)
            } else {
                write!(out, "\n{} {}", s.kind.as_str(), s.target)
            };
            if let Some(pid) = s.pid {
                let _ = write!(out, " (pid {pid})");
            }
            if let Some(gone) = s.gone_ms {
                let what = if s.kind == Kind::Cgroup {
                    "removed"
                } else {
                    "exited"
                };
                let _ = write!(out, " - {what} {}", format_time(gone));
            }
            if let Some(l) = r
                .limits
                .iter()
                .find(|l| s.kind == Kind::Cgroup && l.target == s.target)
            {
                let _ = write!(out, "\n  {}", l.summary);
            }
            let _ = writeln!(
                out,
                "\n  {:<22} {:>12} {:>12} {:>12} {:>9}  trend",
                "metric",
                "latest",
                format!("min {window}"),
                format!("max {window}"),
                "samples"
            );
            current = Some(who);
        }
        if !all && s.metric.starts_with(MAPPING_PREFIX) {
            folded += 1;
            continue;
        }
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format_value(&s.unit, v));
        let _ = writeln!(
            out,
            "  {:<22} {:>12} {:>12} {:>12} {:>9}  {}",
            s.metric,
            format_value(&s.unit, s.latest),
            opt(s.window_min),
            opt(s.window_max),
            s.samples,
            trend_cell(state)
        );
    }
    folded_line(&mut out, &mut folded);
    if r.hidden_gone_targets > 0 {
        let _ = writeln!(
            out,
            "\n{} target(s) that exited before the newest run ended are not shown: --all shows them",
            r.hidden_gone_targets
        );
    }
    out
}

/// The per-mapping series (`map_rss:[heap]`, `map_rss:/usr/lib/...`) of a process.
const MAPPING_PREFIX: &str = "map_rss:";

/// The line that counts a target's folded mapping series, if it had any; resets the count.
fn folded_line(out: &mut String, folded: &mut usize) {
    if *folded > 0 {
        let _ = writeln!(
            out,
            "  ({folded} {MAPPING_PREFIX}* series by mapping: --all shows them)"
        );
    }
    *folded = 0;
}

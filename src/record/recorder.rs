//! The recording loop: ticks on a fixed cadence of the monotonic clock, asks the sampler for a
//! snapshot, hands it to the store in one transaction, and prunes history past the retention
//! window in small batches. It runs on its own thread and owns the only writing connection; it
//! stops on a control message (a signal, the launched command's exit), after `--duration`, or when
//! nothing is left to watch. A failed write is logged and recording goes on.

use std::process::{ExitCode, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

use std::collections::HashMap;

use std::sync::Arc;

use crate::act::cleanup::{Cleaner, Level, Target, Trigger};
use crate::act::notify::Notifier;
use crate::analyze::alerts::Engine;
use crate::collect::procfs;
use crate::collect::sampler::{Origin, Sampler};
use crate::model::EventKind;
use crate::record::live::{Held, Shared, TickReport};
use crate::record::settings::RecordSettings;
use crate::store::{RecorderLock, RunInfo, Store};
use crate::units::{HumanDuration, now_ms};

/// At most this many samples are deleted per prune pass, so a prune never stalls a tick.
pub(crate) const PRUNE_BATCH: usize = 5_000;
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// When a prune found nothing to delete, the next looks a minute later: the check costs about as
/// much as a tick at 1 Hz, and history then outlives the retention by at most that minute.
const PRUNE_IDLE_EVERY: Duration = Duration::from_secs(60);
const VACUUM_EVERY: Duration = Duration::from_secs(600);
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);
/// How long a stopping recorder waits for alert deliveries still running (a command started by
/// the last evaluation), so their outcomes reach the `notifications` table.
const STOP_DELIVERY_WAIT: Duration = Duration::from_secs(5);

/// Messages from the main thread.
#[derive(Debug)]
pub(crate) enum Control {
    /// SIGINT or SIGTERM arrived (the signal number).
    Signal(i32),
    /// The launched command exited.
    CommandExited(ExitStatus),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Signal,
    Duration,
    CommandExited,
    TargetsGone,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Signal => "signal",
            StopReason::Duration => "duration",
            StopReason::CommandExited => "command exited",
            StopReason::TargetsGone => "targets gone",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Outcome {
    pub reason: StopReason,
    pub command_status: Option<ExitStatus>,
    pub ticks: u64,
    pub samples: u64,
    pub failed_ticks: u64,
    /// Ticks not written because they fell at or before the history this run started behind.
    pub skipped_ticks: u64,
}

/// Ticks not yet written, oldest first, bounded by a number of samples: while the database cannot
/// be written (a full disk, a lock held past the busy timeout), the newest history waits here and
/// the oldest is dropped beyond the bound.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    ticks: std::collections::VecDeque<crate::model::Snapshot>,
    samples: usize,
    max_samples: usize,
    /// Ticks dropped to stay within the bound, since the recorder started.
    pub dropped_ticks: u64,
}

impl Backlog {
    pub fn new(max_samples: usize) -> Backlog {
        Backlog {
            max_samples,
            ..Default::default()
        }
    }

    /// Add the newest tick; returns how many of the oldest were dropped to make room. The newest
    /// tick is always kept.
    pub fn push(&mut self, snap: crate::model::Snapshot) -> u64 {
        self.samples += snap.value_count();
        self.ticks.push_back(snap);
        let mut dropped = 0;
        while self.samples > self.max_samples && self.ticks.len() > 1 {
            if let Some(old) = self.ticks.pop_front() {
                self.samples -= old.value_count();
                dropped += 1;
            }
        }
        self.dropped_ticks += dropped;
        dropped
    }

    pub fn ticks(&self) -> usize {
        self.ticks.len()
    }

    /// Whether adding a tick of `samples` would push held ticks out: ticks held only to be
    /// committed together must then be committed, not dropped.
    pub fn would_overflow(&self, samples: usize) -> bool {
        !self.ticks.is_empty() && self.samples + samples > self.max_samples
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// What health and `/metrics` report: after a failed write every tick waiting here is held
    /// (it could not be written); otherwise they wait for the next commit, which is healthy.
    pub(crate) fn figures(&self, write_failed: bool) -> Held {
        let (ticks, samples) = (self.ticks(), self.samples);
        let (held, spooled) = if write_failed {
            ((ticks, samples), (0, 0))
        } else {
            ((0, 0), (ticks, samples))
        };
        Held {
            ticks: held.0,
            samples: held.1,
            dropped_ticks: self.dropped_ticks,
            spooled_ticks: spooled.0,
            spooled_samples: spooled.1,
        }
    }

    /// Write the held ticks, oldest first, `FLUSH_BATCH` per transaction, until none is left or
    /// `budget` has passed. Returns the samples written, or the first error (what failed stays
    /// held, so nothing is lost by trying).
    pub fn flush(
        &mut self,
        store: &mut Store,
        run_id: i64,
        budget: Duration,
    ) -> Result<usize, crate::store::StoreError> {
        let started = Instant::now();
        let mut written = 0;
        while !self.ticks.is_empty() {
            let n = self.ticks.len().min(FLUSH_BATCH);
            let batch = &self.ticks.make_contiguous()[..n];
            written += store.write_ticks(run_id, batch)?;
            for old in self.ticks.drain(..n) {
                self.samples -= old.value_count();
            }
            if started.elapsed() >= budget {
                break;
            }
        }
        Ok(written)
    }
}

/// Held ticks written per transaction when the database accepts writes again.
const FLUSH_BATCH: usize = 500;

/// A commit rewrites a database page per series it writes (samples are clustered by series), so
/// a large tick's commits are spread further apart: past [`SAMPLES_PER_COMMIT_INTERVAL`] samples
/// a tick, the commit interval is stretched in proportion, up to [`LARGE_TICK_COMMIT`] (never
/// below the interval given; `0s` still commits every tick). A whole host's 8,500 samples a
/// tick are committed every 8.5 s at the default 1 s: 42 MB/s written to the disk became 4.6.
pub(crate) fn commit_every(commit_interval: Duration, samples: usize) -> Duration {
    if commit_interval.is_zero() || samples <= SAMPLES_PER_COMMIT_INTERVAL {
        return commit_interval;
    }
    let stretched = commit_interval.mul_f64(samples as f64 / SAMPLES_PER_COMMIT_INTERVAL as f64);
    stretched.min(LARGE_TICK_COMMIT).max(commit_interval)
}

const SAMPLES_PER_COMMIT_INTERVAL: usize = 1_000;
const LARGE_TICK_COMMIT: Duration = Duration::from_secs(10);
/// A commit of more samples than this (a whole host's held ticks) hands the freed heap back.
const LARGE_BATCH_SAMPLES: usize = 10_000;

/// A wall-clock step smaller than this is taken as noise, not a jump.
const CLOCK_STEP_MS: i64 = 1_000;

/// Tick times. The wall clock is read once at the start; from there ticks advance with the
/// monotonic clock, so a wall-clock step backwards (an operator, a bad NTP source) never stamps a
/// tick before an earlier one (which would reorder history or overwrite samples). A step forwards,
/// or a suspend (the monotonic clock stops meanwhile), is followed: the history gets a gap.
#[derive(Debug)]
pub(crate) struct TickClock {
    base_ms: i64,
    base: Instant,
    /// How far behind the ticks the wall clock was when that was last reported.
    reported_behind_ms: Option<i64>,
    /// The newest recorded tick, when this run started a whole interval or more behind it.
    skip_through_ms: Option<i64>,
}

/// A wall-clock jump seen at a tick, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jump {
    Forward(i64),
    Backward(i64),
}

impl TickClock {
    /// Start at the wall clock's `wall_ms`. A history whose `newest` tick is not before it (a quick
    /// restart, or a clock that ran ahead and was put right) is resolved without stamping ticks in
    /// the future: an overlap under one `interval_ms` shifts the start just past that tick; a larger
    /// one keeps the wall clock, and the ticks up to that tick are not written
    /// ([`TickClock::before_history`]). (Starting a second past the newest tick, as before, put
    /// five 1 s runs 3.6 s ahead of the clock and a corrected clock's hour ahead for good.)
    pub fn new(wall_ms: i64, at: Instant, newest: Option<i64>, interval_ms: i64) -> TickClock {
        let (base_ms, skip_through_ms) = match newest {
            Some(t) if wall_ms <= t && t - wall_ms < interval_ms => (t + 1, None),
            Some(t) if wall_ms <= t => (wall_ms, Some(t)),
            _ => (wall_ms, None),
        };
        TickClock {
            base_ms,
            base: at,
            reported_behind_ms: None,
            skip_through_ms,
        }
    }

    /// Whether a tick stamped `ts` falls at or before the history this run started behind: it is
    /// not written, so history is neither reordered nor overwritten.
    pub(crate) fn before_history(&self, ts: i64) -> bool {
        self.skip_through_ms.is_some_and(|t| ts <= t)
    }

    /// The newest recorded tick this run started behind, until a tick passes it.
    pub(crate) fn history_ahead_ms(&self) -> Option<i64> {
        self.skip_through_ms
    }

    /// A tick passed the history: nothing is skipped from here on.
    pub(crate) fn passed_history(&mut self) {
        self.skip_through_ms = None;
    }

    /// The time of the tick taken at `at`, the wall clock reading `wall_ms`; and a jump to report.
    pub fn stamp(&mut self, at: Instant, wall_ms: i64) -> (i64, Option<Jump>) {
        let mono = self.base_ms + at.saturating_duration_since(self.base).as_millis() as i64;
        let drift = wall_ms - mono;
        if drift > CLOCK_STEP_MS {
            self.base_ms += drift;
            self.reported_behind_ms = None;
            return (mono + drift, Some(Jump::Forward(drift)));
        }
        if drift < -CLOCK_STEP_MS {
            let known = self
                .reported_behind_ms
                .is_some_and(|r| (r + drift).abs() <= CLOCK_STEP_MS);
            if !known {
                self.reported_behind_ms = Some(-drift);
                return (mono, Some(Jump::Backward(-drift)));
            }
        } else {
            self.reported_behind_ms = None;
        }
        (mono, None)
    }
}

/// The next tick on the fixed grid `start + k * interval` that is still ahead of `now`: work time
/// never shifts the cadence, and ticks missed while busy are skipped, not caught up.
pub(crate) fn next_tick(start: Instant, interval: Duration, now: Instant) -> Instant {
    let elapsed = now.saturating_duration_since(start).as_nanos();
    let step = interval.as_nanos().max(1);
    let k = elapsed / step + 1;
    start + Duration::from_nanos((k * step) as u64)
}

pub(crate) struct Recorder {
    pub settings: RecordSettings,
    pub store: Store,
    pub sampler: Sampler,
    pub run_id: i64,
    /// The launched command's pid, to forward termination to.
    pub command_pid: Option<u32>,
    pub engine: Engine,
    pub notifier: Option<Notifier>,
    pub cleaner: Option<Cleaner>,
    /// When each process last had an alert-triggered cleanup (for its cooldown).
    pub alert_cleanups: HashMap<Target, Instant>,
    /// What the HTTP API sees of the recorder (and the custom metrics it receives).
    pub shared: Arc<Shared>,
    pub clock: TickClock,
}

/// When each complaint was last logged: a fault that lasts is logged once a minute, not per tick.
#[derive(Default)]
struct Logged {
    write_error: Option<Instant>,
    drop: Option<Instant>,
    spool_error: Option<Instant>,
}

/// Log at most once per ERROR_LOG_EVERY: whether `last` allows it now (and note that it did).
fn due_to_log(last: &mut Option<Instant>, now: Instant) -> bool {
    let due = last.is_none_or(|t| now.duration_since(t) >= ERROR_LOG_EVERY);
    if due {
        *last = Some(now);
    }
    due
}

/// The loop's state between ticks: its schedules, what waits to be written, and the outcome so far.
struct LoopState {
    start: Instant,
    end: Option<Instant>,
    next: Instant,
    next_prune: Instant,
    next_vacuum: Instant,
    evaluations: crate::analyze::alerts::EvaluationGrid,
    next_periodic: Option<Instant>,
    backlog: Backlog,
    /// Ticks held between commits also go to the spool, so a crash loses none of them.
    spool: crate::record::spool::Spool,
    last_commit: Instant,
    last_write_failed: bool,
    signals: u32,
    pending_stop: Option<StopReason>,
    outcome: Outcome,
    logged: Logged,
    /// When the last tick was taken, to tell a pause by the gap since.
    last_tick_at: Option<Instant>,
}

/// What waiting for the next tick ended with.
enum Wait {
    Tick,
    Stop,
}

impl Recorder {
    /// The tick loop: wait for the tick, sample, write or hold, publish, evaluate, maintain;
    /// then stop (write what is held, finish deliveries and cleanups, end the command).
    pub fn run(mut self, control: Receiver<Control>) -> (Store, Outcome) {
        let mut st = self.loop_state();
        loop {
            if let Wait::Stop = self.wait_for_tick(&control, &mut st) {
                break;
            }
            if st.end.is_some_and(|e| Instant::now() >= e) {
                st.outcome.reason = StopReason::Duration;
                break;
            }
            let tick_at = Instant::now();
            self.log_pause(&st, tick_at);
            st.last_tick_at = Some(tick_at);
            let ts = self.stamp(tick_at);
            if self.skip_before_history(&mut st, ts) {
                st.next = self.after(&st, tick_at);
                continue;
            }
            let (snap, readings) = self.sample(tick_at, ts);
            self.record_finished_deliveries();
            let was_failing = st.last_write_failed;
            let written = self.write_or_hold(&mut st, snap, tick_at, ts);
            self.publish(&st, &written, readings, tick_at, ts);
            self.after_write(&mut st, written, was_failing, tick_at, ts);
            st.outcome.ticks += 1;
            self.maintain(&mut st, tick_at, ts);
            if let Some(reason) = self.stop_reason(&st) {
                st.outcome.reason = reason;
                break;
            }
            st.next = self.after(&st, tick_at);
        }
        self.stop(&control, st)
    }

    fn loop_state(&self) -> LoopState {
        let start = Instant::now();
        LoopState {
            start,
            end: self.settings.duration.map(|d| start + d),
            next: start,
            next_prune: start,
            next_vacuum: start + VACUUM_EVERY,
            evaluations: crate::analyze::alerts::EvaluationGrid::new(
                self.settings.evaluation_interval,
                self.settings.interval,
            ),
            next_periodic: self
                .cleaner
                .as_ref()
                .and_then(|c| c.settings.periodic)
                .map(|p| start + p),
            backlog: Backlog::new(self.settings.write_buffer),
            spool: crate::record::spool::Spool::new(&self.settings.db),
            // The first tick is committed at once: a reader sees the run start.
            last_commit: start
                .checked_sub(self.settings.commit_interval)
                .unwrap_or(start),
            last_write_failed: false,
            signals: 0,
            pending_stop: None,
            outcome: Outcome {
                reason: StopReason::Signal,
                command_status: None,
                ticks: 0,
                samples: 0,
                failed_ticks: 0,
                skipped_ticks: 0,
            },
            logged: Logged::default(),
            last_tick_at: None,
        }
    }

    /// Wait for the next tick (or the end), handling control messages as they come. A signal
    /// stops at once; the launched command's exit gets one last tick (it records the command as
    /// gone).
    fn wait_for_tick(&mut self, control: &Receiver<Control>, st: &mut LoopState) -> Wait {
        loop {
            let now = Instant::now();
            let wake = st.end.map_or(st.next, |e| e.min(st.next));
            if now >= wake {
                return Wait::Tick;
            }
            match control.recv_timeout(wake - now) {
                Ok(Control::CommandExited(status)) => {
                    st.outcome.command_status = Some(status);
                    st.pending_stop = Some(StopReason::CommandExited);
                }
                Ok(Control::Signal(sig)) => self.on_signal(st, sig),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => st.pending_stop = Some(StopReason::Signal),
            }
            match st.pending_stop {
                Some(StopReason::CommandExited) => return Wait::Tick,
                Some(reason) => {
                    st.outcome.reason = reason;
                    return Wait::Stop;
                }
                None => {}
            }
        }
    }

    /// With a launched command, the recording ends when it does: SIGTERM is passed on (SIGINT
    /// from a terminal reached it already) and a second signal kills it. Without one, stop.
    fn on_signal(&mut self, st: &mut LoopState, sig: i32) {
        st.signals += 1;
        match self.command_pid {
            Some(pid) if st.outcome.command_status.is_none() => {
                let forward = if st.signals > 1 {
                    libc::SIGKILL
                } else if sig == libc::SIGTERM {
                    libc::SIGTERM
                } else {
                    0
                };
                if forward != 0 {
                    tracing::info!(
                        pid,
                        signal = forward,
                        "passing the signal on to the command"
                    );
                    let _ = crate::sys::kill(pid, forward);
                }
            }
            _ => st.pending_stop = Some(StopReason::Signal),
        }
    }

    /// When the tick after the one taken at `tick_at` is due: the next point of the grid still
    /// ahead, and at least half an interval after this tick (a tick taken late, after a pause,
    /// would otherwise be followed by one a few ms later: two samples of the same moment).
    fn after(&self, st: &LoopState, tick_at: Instant) -> Instant {
        let interval = self.settings.interval;
        next_tick(
            st.start,
            interval,
            Instant::now().max(tick_at + interval / 2),
        )
    }

    /// Say so when a tick comes far later than the one before it should have been followed: the
    /// recorder was stopped (SIGSTOP, a frozen container) or starved of CPU, in the wait or in a
    /// tick's work, and the history has a hole there.
    fn log_pause(&self, st: &LoopState, tick_at: Instant) {
        let interval = self.settings.interval;
        let Some(last) = st.last_tick_at else {
            return;
        };
        let late = tick_at
            .saturating_duration_since(last)
            .saturating_sub(interval);
        if late >= (interval * 2).max(Duration::from_secs(1)) {
            tracing::warn!(
                late_s = late.as_secs_f64(),
                missed_ticks = late.as_nanos() / interval.as_nanos().max(1),
                "this tick is {:.1} s late: the recorder was paused (SIGSTOP, a frozen container or VM) or starved of CPU; the ticks meanwhile are missing from the history",
                late.as_secs_f64()
            );
        }
    }

    /// Whether the tick stamped `ts` is one this run does not write (at or before the history it
    /// started behind); says so when the ticks pass that history.
    fn skip_before_history(&mut self, st: &mut LoopState, ts: i64) -> bool {
        if self.clock.before_history(ts) {
            st.outcome.skipped_ticks += 1;
            return true;
        }
        if self.clock.history_ahead_ms().is_some() {
            self.clock.passed_history();
            tracing::info!(
                skipped_ticks = st.outcome.skipped_ticks,
                "the wall clock passed the newest recorded tick: ticks are written again"
            );
        }
        false
    }

    /// The tick's time, saying so when the wall clock jumped.
    fn stamp(&mut self, tick_at: Instant) -> i64 {
        let (ts, jump) = self.clock.stamp(tick_at, now_ms());
        match jump {
            Some(Jump::Forward(ms)) => tracing::warn!(
                "the wall clock jumped {:.1} s forward (or the machine was suspended): ticks follow it, leaving a gap in the history",
                ms as f64 / 1000.0
            ),
            Some(Jump::Backward(ms)) => tracing::warn!(
                "the wall clock is {:.1} s behind the last tick (it jumped back): ticks go on counting on the monotonic clock so none is stamped before an earlier one; they stay ahead of the wall clock until it catches up or the recorder restarts",
                ms as f64 / 1000.0
            ),
            None => {}
        }
        ts
    }

    /// Read every target (and the custom metrics pushed since the last tick); log what came and
    /// went. Also returns a copy of what was read from the targets for the live endpoint (empty
    /// without an API: nobody reads it).
    fn sample(
        &mut self,
        tick_at: Instant,
        ts: i64,
    ) -> (crate::model::Snapshot, Vec<crate::model::TargetSample>) {
        let (mut snap, changes) = self.sampler.sample(tick_at, ts);
        let readings = match self.settings.api {
            Some(_) => snap.targets.clone(),
            None => Vec::new(),
        };
        snap.targets.extend(self.shared.take_custom());
        for key in &changes.added {
            tracing::info!(subject = %key, "watching");
        }
        for key in &changes.gone {
            if key.kind == crate::model::Kind::Cgroup {
                tracing::info!(subject = %key, "cgroup removed; recorded as gone");
            } else {
                tracing::info!(subject = %key, "process exited; recorded as gone");
            }
        }
        if !changes.top.is_empty() {
            log_top_churn(&changes.top, self.settings.targets.top);
        }
        for name in &changes.newly_waiting {
            tracing::warn!(
                name,
                every = %crate::units::HumanDuration(self.settings.discovery_interval),
                "no process with this name yet; still looking"
            );
        }
        (snap, readings)
    }

    /// Commit now, unless ticks are gathered into fewer commits (commit_interval) and the last
    /// commit is recent: then the tick waits in the spool. After a failed write every tick tries
    /// again; rules due now commit what waits first (they read the database), and so does a tick
    /// that would push waiting ticks past the write buffer (a large host's ticks between commits
    /// are committed, never dropped).
    fn write_or_hold(
        &mut self,
        st: &mut LoopState,
        snap: crate::model::Snapshot,
        tick_at: Instant,
        ts: i64,
    ) -> Result<usize, crate::store::StoreError> {
        // Half an interval of slack: ticks wake a little late or early, and at 1 s ticks with a
        // 1 s commit interval each tick is still committed.
        let samples = snap.value_count();
        let every = commit_every(self.settings.commit_interval, samples);
        let due = st.last_write_failed
            || tick_at.saturating_duration_since(st.last_commit) + self.settings.interval / 2
                >= every
            || st.pending_stop.is_some()
            || (!self.engine.rules.is_empty() && st.evaluations.due(ts));
        let overflow = st.backlog.would_overflow(samples);
        if overflow && !st.last_write_failed {
            // Ticks waiting only to be committed together are committed before this one would
            // push them out; if that fails, the flush below tries again and says so.
            let _ = st
                .backlog
                .flush(&mut self.store, self.run_id, self.settings.interval / 2);
        }
        let due = due || overflow;
        if !due
            && let Err(e) = st.spool.append(&snap)
            && due_to_log(&mut st.logged.spool_error, tick_at)
        {
            tracing::warn!(
                spool = %st.spool.path().display(),
                "could not append this tick to the spool: {e}; it waits in memory for the next commit (a crash before it would lose it)"
            );
        }
        if st.backlog.push(snap) > 0 && due_to_log(&mut st.logged.drop, tick_at) {
            tracing::error!(
                dropped_ticks = st.backlog.dropped_ticks,
                "the write buffer is full ({} samples, write_buffer): dropping the oldest held ticks",
                self.settings.write_buffer
            );
        }
        if !due {
            return Ok(0);
        }
        let w = st
            .backlog
            .flush(&mut self.store, self.run_id, self.settings.interval / 2);
        if w.is_ok() && st.backlog.ticks() == 0 {
            st.last_commit = tick_at;
            st.spool.clear();
        }
        if w.as_ref().is_ok_and(|&n| n > LARGE_BATCH_SAMPLES) {
            // The held ticks and the batch's rows are freed by now: let them leave the RSS too.
            crate::allocator::release_freed();
        }
        st.last_write_failed = w.is_err();
        w
    }

    /// Health and the live endpoints learn of the tick.
    fn publish(
        &self,
        st: &LoopState,
        written: &Result<usize, crate::store::StoreError>,
        readings: Vec<crate::model::TargetSample>,
        tick_at: Instant,
        ts: i64,
    ) {
        self.shared.tick_done(TickReport {
            ts_ms: ts,
            readings,
            written: written.as_ref().map(|n| *n).map_err(|e| e.to_string()),
            held: st.backlog.figures(st.last_write_failed),
            took: tick_at.elapsed(),
            // Only the API's cleanup endpoint reads them.
            cleanup_targets: match self.settings.api {
                Some(_) => self.cleanup_targets(),
                None => Vec::new(),
            },
        });
    }

    /// Count what was written, say when writes work again, and evaluate the rules when due; or
    /// log the failed write (once a minute).
    fn after_write(
        &mut self,
        st: &mut LoopState,
        written: Result<usize, crate::store::StoreError>,
        was_failing: bool,
        tick_at: Instant,
        ts: i64,
    ) {
        match written {
            Ok(n) => {
                st.outcome.samples += n as u64;
                if was_failing && st.backlog.ticks() == 0 {
                    tracing::info!(
                        samples = n,
                        "the database accepts writes again: the ticks held in memory are written"
                    );
                }
                if st.backlog.ticks() == 0 && st.evaluations.due(ts) {
                    st.evaluations.evaluated(ts);
                    self.evaluate_rules(ts);
                }
            }
            Err(e) => {
                st.outcome.failed_ticks += 1;
                if due_to_log(&mut st.logged.write_error, tick_at) {
                    tracing::error!(
                        failed_ticks = st.outcome.failed_ticks,
                        held_ticks = st.backlog.ticks(),
                        held_samples = st.backlog.samples(),
                        "could not write this tick: {e}; it is held in memory with the others not yet written (at most {} samples, write_buffer) and written when the database accepts writes; still recording",
                        self.settings.write_buffer
                    );
                }
            }
        }
    }

    /// Pruning, periodic cleanups and the incremental vacuum, each on its own schedule. While
    /// ticks are held the database refuses writes, so a prune or vacuum would too: they wait.
    fn maintain(&mut self, st: &mut LoopState, tick_at: Instant, ts: i64) {
        if st.backlog.ticks() == 0 && tick_at >= st.next_prune {
            st.next_prune = tick_at + PRUNE_EVERY;
            let cutoff = ts - self.settings.retention.as_millis() as i64;
            match self.store.prune(cutoff, PRUNE_BATCH) {
                Ok(p) if p.samples > 0 || p.targets > 0 => {
                    tracing::debug!(samples = p.samples, targets = p.targets, "pruned")
                }
                Ok(_) => st.next_prune = tick_at + PRUNE_IDLE_EVERY,
                Err(e) => tracing::warn!("pruning old samples failed: {e}; will retry"),
            }
        }
        if let (Some(due), Some(cleaner)) = (st.next_periodic, &self.cleaner)
            && tick_at >= due
        {
            st.next_periodic = cleaner.settings.periodic.map(|p| tick_at + p);
            for t in self.cleanup_targets() {
                cleaner.spawn(Trigger::Periodic, Level::Normal, t);
            }
        }
        if st.backlog.ticks() == 0 && tick_at >= st.next_vacuum {
            st.next_vacuum = tick_at + VACUUM_EVERY;
            if let Err(e) = self.store.maybe_vacuum() {
                tracing::warn!("incremental vacuum failed: {e}");
            }
        }
    }

    /// After a tick: the command's exit ends the recording, and so does having nothing left to watch.
    fn stop_reason(&self, st: &LoopState) -> Option<StopReason> {
        if st.pending_stop == Some(StopReason::CommandExited) {
            return Some(StopReason::CommandExited);
        }
        if !self.sampler.has_work() {
            tracing::info!(
                "every watched process has exited and nothing else is recorded; stopping"
            );
            return Some(StopReason::TargetsGone);
        }
        None
    }

    /// The stop: what is held gets a last try, deliveries and cleanups under way finish, and a
    /// launched command that outlives the recording is ended.
    fn stop(mut self, control: &Receiver<Control>, mut st: LoopState) -> (Store, Outcome) {
        self.write_held_at_stop(&mut st);
        if let Some(n) = self.notifier.take() {
            let (done, cut_short) = n.finish(STOP_DELIVERY_WAIT);
            self.record_deliveries(&done);
            if cut_short {
                tracing::warn!(
                    "an alert delivery was still running {} s into the stop: its outcome is not recorded",
                    STOP_DELIVERY_WAIT.as_secs()
                );
            }
        }
        if let Some(c) = &self.cleaner {
            c.finish();
        }
        self.end_command(control, &mut st.outcome);
        (self.store, st.outcome)
    }

    /// What is still held gets a last try (bounded by the busy timeout); it is lost if that fails.
    fn write_held_at_stop(&mut self, st: &mut LoopState) {
        if st.backlog.ticks() > 0 {
            match st
                .backlog
                .flush(&mut self.store, self.run_id, self.settings.busy_timeout)
            {
                Ok(n) => st.outcome.samples += n as u64,
                Err(e) => tracing::error!(
                    held_ticks = st.backlog.ticks(),
                    "could not write the ticks held at the stop: {e}; they are lost"
                ),
            }
            if st.backlog.ticks() > 0 {
                tracing::error!(
                    held_ticks = st.backlog.ticks(),
                    "ticks held at the stop were not written"
                );
            }
        }
        if st.backlog.ticks() == 0 {
            let spool = std::mem::replace(
                &mut st.spool,
                crate::record::spool::Spool::new(&self.settings.db),
            );
            if let Err(e) = spool.remove() {
                tracing::warn!(
                    "could not remove the spool: {e}; the next start writes its ticks again (harmless)"
                );
            }
        }
    }

    /// A launched command that outlives the recording (--duration) is asked to stop (SIGTERM),
    /// waited for, then killed.
    fn end_command(&self, control: &Receiver<Control>, outcome: &mut Outcome) {
        let Some(pid) = self
            .command_pid
            .filter(|_| outcome.command_status.is_none())
        else {
            return;
        };
        tracing::info!(
            pid,
            "the recording ends ({}) while the launched command still runs: sending it SIGTERM",
            outcome.reason.as_str()
        );
        let _ = crate::sys::kill(pid, libc::SIGTERM);
        if let Ok(Control::CommandExited(status)) = wait_exit(control, Duration::from_secs(10)) {
            outcome.command_status = Some(status);
            return;
        }
        tracing::warn!(
            pid,
            "the launched command did not exit within 10 s of SIGTERM: sending SIGKILL"
        );
        let _ = crate::sys::kill(pid, libc::SIGKILL);
        if let Ok(Control::CommandExited(status)) = wait_exit(control, Duration::from_secs(5)) {
            outcome.command_status = Some(status);
        }
    }
}

impl Recorder {
    /// The processes cleanups act on: the explicitly watched ones (never the top-N default or
    /// memtrail itself), narrowed by `[cleanup] target`/`pid` when set.
    fn cleanup_targets(&self) -> Vec<Target> {
        let Some(c) = &self.cleaner else {
            return Vec::new();
        };
        self.sampler
            .watched()
            .filter(|(_, origin)| matches!(origin, Origin::Pid | Origin::Name | Origin::Command))
            .filter(|(k, _)| c.settings.target.as_ref().is_none_or(|n| *n == k.name))
            .filter(|(k, _)| c.settings.pid.is_none_or(|p| Some(p) == k.pid))
            .filter_map(|(k, _)| {
                Some(Target {
                    pid: k.pid?,
                    start_time_ms: k.start_time_ms?,
                    name: k.name.clone(),
                })
            })
            .collect()
    }

    /// An alert whose rule has the cleanup action: an aggressive cleanup of that process, unless
    /// it is not a cleanup target or had one within the alert cooldown.
    fn cleanup_for_alert(&mut self, ev: &crate::analyze::alerts::AlertEvent) {
        let Some(cooldown) = self.cleaner.as_ref().map(|c| c.settings.alert_cooldown) else {
            return;
        };
        let Some(target) = self
            .cleanup_targets()
            .into_iter()
            .find(|t| Some(t.pid as i64) == ev.pid)
        else {
            tracing::info!(
                rule = ev.rule,
                "alert asks for a cleanup, but {} is not a cleanup target (watch it with --pid, --name or -- CMD)",
                ev.target
            );
            return;
        };
        let now = Instant::now();
        if let Some(last) = self.alert_cleanups.get(&target)
            && now.duration_since(*last) < cooldown
        {
            tracing::info!(
                rule = ev.rule,
                "alert cleanup of {} skipped: one ran {} s ago (alert_cooldown)",
                target.name,
                now.duration_since(*last).as_secs()
            );
            return;
        }
        self.alert_cleanups.insert(target.clone(), now);
        if let Some(cleaner) = &self.cleaner {
            cleaner.spawn(Trigger::Alert(ev.rule.clone()), Level::Aggressive, target);
        }
    }

    /// Write the outcomes of alert deliveries that finished since the last call.
    fn record_finished_deliveries(&mut self) {
        let Some(n) = &self.notifier else {
            return;
        };
        let done = n.finished();
        self.record_deliveries(&done);
    }

    /// Write alert delivery outcomes to the `notifications` table (a failure is logged).
    fn record_deliveries(&mut self, done: &[crate::model::Delivery]) {
        if !done.is_empty()
            && let Err(e) = self.store.record_deliveries(done)
        {
            tracing::warn!("could not record {} alert deliveries: {e}", done.len());
        }
    }

    /// With the API on, refresh the analysis `/metrics` exports after an evaluation: a scrape
    /// then reads it and runs no analysis query.
    fn export_analysis(&mut self, ts: i64) {
        if self.settings.api.is_none() {
            return;
        }
        let last = self.shared.live().analysis.clone();
        let computed = last.refresh(self.store.connection(), ts);
        crate::allocator::release_freed();
        match computed {
            Ok(export) => self.shared.live().analysis = Arc::new(export),
            Err(e) => tracing::warn!(
                "exporting the analysis failed: {e}; will retry after the next evaluation"
            ),
        }
    }

    fn evaluate_rules(&mut self, ts: i64) {
        self.evaluate(ts);
        self.export_analysis(ts);
    }

    fn evaluate(&mut self, ts: i64) {
        if self.engine.rules.is_empty() {
            return;
        }
        let evaluated = self.engine.evaluate(self.store.connection(), ts);
        // The rule queries' working set is freed by now: let it leave the RSS too.
        crate::allocator::release_freed();
        let events = match evaluated {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(
                    "evaluating alert rules failed: {e}; will retry after the next tick"
                );
                return;
            }
        };
        for ev in events {
            use crate::model::AlertEventKind;
            if ev.event.alarms() {
                tracing::warn!(
                    rule = ev.rule,
                    severity = ev.severity,
                    alert = ev.id,
                    "ALERT {}",
                    ev.message
                )
            } else {
                tracing::info!(rule = ev.rule, alert = ev.id, "{}", ev.message)
            }
            if ev.event == AlertEventKind::Firing && ev.actions.iter().any(|a| a == "cleanup") {
                self.cleanup_for_alert(&ev);
            }
            if let Some(n) = &self.notifier
                && ev.event != AlertEventKind::Suppressed
            {
                n.send(ev);
            }
        }
    }
}

fn wait_exit(control: &Receiver<Control>, limit: Duration) -> Result<Control, RecvTimeoutError> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match control.recv_timeout(left)? {
            c @ Control::CommandExited(_) => return Ok(c),
            Control::Signal(_) => continue,
        }
    }
}

/// The launched command could not be started (exit code 127 when not found, 126 otherwise, as a shell).
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program:?}")]
pub(crate) struct LaunchError {
    pub program: String,
    pub code: u8,
    source: std::io::Error,
}

fn launch(command: &[String]) -> Result<std::process::Child, LaunchError> {
    let program = command.first().cloned().unwrap_or_default();
    std::process::Command::new(&program)
        .args(command.iter().skip(1))
        .spawn()
        .map_err(|source| LaunchError {
            code: if source.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            },
            program,
            source,
        })
}

/// The pid of a launched command to end (SIGKILL) when dropped: a start that fails after the launch
/// must not leave the command running unwatched.
struct OrphanGuard(Option<u32>);

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            tracing::warn!(
                pid,
                "the recording did not start: ending the launched command"
            );
            // Launched and not reaped (its waiter holds it): the pid is still the command's.
            let _ = crate::sys::kill(pid, libc::SIGKILL);
        }
    }
}

/// The exit code a shell would report for this status (128 + signal number when killed).
pub(crate) fn shell_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        _ => 1,
    }
}

/// Write the ticks a crashed recorder left in the spool (to its run), then empty the spool.
fn write_leftover_spool(db: &std::path::Path, store: &mut Store) -> anyhow::Result<()> {
    use anyhow::Context;
    let left = crate::record::spool::leftover(db)?;
    if left.ticks.is_empty() && !left.torn {
        return Ok(());
    }
    let spool = crate::record::spool::path_for(db);
    let run = store.open_run()?.unwrap_or(0);
    let samples = store.write_ticks(run, &left.ticks).with_context(|| {
        format!(
            "writing the {} ticks a crashed recorder left in {}",
            left.ticks.len(),
            spool.display()
        )
    })?;
    if let Some(last) = left.ticks.last() {
        // The crashed run is closed at its last tick: this one.
        store.mark_last_tick(run, last.ts_ms)?;
    }
    tracing::info!(
        ticks = left.ticks.len(),
        samples,
        torn_last_line = left.torn,
        "wrote the ticks a crashed recorder held (from {})",
        spool.display()
    );
    crate::record::spool::discard(db).with_context(|| format!("removing {}", spool.display()))?;
    Ok(())
}

/// Threads that serve API requests' database reads. Two keep a slow query from stalling `/healthz`
/// while bounding the memory (a stack, a SQLite connection and its caches) each thread holds.
const API_BLOCKING_THREADS: usize = 2;

/// `memtrail record`: check the targets, take the database, launch the command if any, then
/// record on a thread of its own while this thread turns SIGINT/SIGTERM into control messages.
/// Serves the API on a bound listener, with what the recording shares live (the caller's: the
/// recorder knows no server).
pub type Serve = fn(
    tokio::net::TcpListener,
    Arc<Shared>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub fn record(settings: RecordSettings, serve: Serve) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    // Past a file-size limit a write should fail (and be reported), not kill the recorder.
    crate::sys::set_disposition(libc::SIGXFSZ, crate::sys::Disposition::Ignore);
    crate::allocator::limit_arenas();
    let mut sampler = Sampler::new(&settings.sampler(), Instant::now())?;
    let lock = RecorderLock::acquire(&settings.db)?;
    let mut store = Store::open(&settings.db, settings.busy_timeout)?;
    write_leftover_spool(&settings.db, &mut store)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // API requests read the database on blocking threads: a few are plenty, and a burst of
        // requests must not become a burst of threads and SQLite connections.
        .max_blocking_threads(API_BLOCKING_THREADS)
        .build()
        .context("starting the signal handler runtime")?;
    let _guard = rt.enter();
    let sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    // What can fail comes before the launch, so a failed start never leaves the command running.
    crate::analyze::alerts::install(store.connection(), &settings.rules)?;
    let listener = match &settings.api {
        Some(api) => Some(bind_api(&rt, api.listen)?),
        None => None,
    };
    let (control_tx, control_rx) = mpsc::channel();
    // Ends the launched command if the start fails after the launch (disarmed once recording).
    let mut orphan_guard = OrphanGuard(None);
    let command_pid = start_command(&settings, &mut sampler, &control_tx)?;
    orphan_guard.0 = command_pid;
    let (run_id, clock) = begin_run(&settings, &mut store)?;
    let command_name = command_started(&mut store, &settings, command_pid);
    // The start waited for another writer's lock up to --busy-timeout; a tick waits at most half
    // an interval: past that it is held in memory and written with the next one, so a long
    // writer never stops the sampling.
    store.set_busy_timeout(settings.busy_timeout.min(settings.interval / 2))?;
    log_what(&settings, &sampler, run_id);

    let shared = Shared::new(
        settings.db.clone(),
        settings.interval,
        settings.cleanup.clone(),
        (
            settings.api.as_ref().and_then(|a| a.token.clone()),
            settings.api.as_ref().is_none_or(|a| a.pid_label),
        ),
    );
    if let Some(listener) = listener {
        let addr = listener.local_addr().context("reading the API's address")?;
        tracing::info!("API listening on http://{addr}");
        rt.spawn(serve(listener, shared.clone()));
    }
    let recorder = Recorder {
        settings: settings.clone(),
        store,
        sampler,
        run_id,
        command_pid,
        engine: Engine::evaluated_every(settings.rules.clone(), settings.evaluation_interval),
        notifier: Notifier::start(&settings.notify),
        cleaner: (!settings.cleanup.actions.is_empty())
            .then(|| Cleaner::new(settings.db.clone(), settings.cleanup.clone())),
        alert_cleanups: HashMap::new(),
        shared,
        clock,
    };
    let (mut store, outcome) = run_until_stopped(
        &rt,
        recorder,
        (control_tx, control_rx),
        (sigterm, sigint),
        &mut orphan_guard,
    )?;
    if let (Some(pid), Some(status)) = (command_pid, outcome.command_status) {
        command_exited(&mut store, (&command_name, pid), status);
    }
    store.end_run(run_id, now_ms(), outcome.reason.as_str())?;
    drop(lock);
    Ok(stopped(&outcome))
}

/// Run the loop on its own thread until it stops, turning SIGTERM and SIGINT into control
/// messages meanwhile; the guard is disarmed once the loop owns the launched command.
fn run_until_stopped(
    rt: &tokio::runtime::Runtime,
    recorder: Recorder,
    (control_tx, control_rx): (mpsc::Sender<Control>, mpsc::Receiver<Control>),
    (mut sigterm, mut sigint): (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    orphan_guard: &mut OrphanGuard,
) -> anyhow::Result<(Store, Outcome)> {
    use anyhow::Context;
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let result = recorder.run(control_rx);
            let _ = done_tx.send(());
            result
        })
        .context("starting the recorder thread")?;
    orphan_guard.0 = None;
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = sigterm.recv() => { let _ = control_tx.send(Control::Signal(libc::SIGTERM)); }
                _ = sigint.recv() => { let _ = control_tx.send(Control::Signal(libc::SIGINT)); }
                _ = &mut done_rx => break,
            }
        }
    });
    handle.join().map_err(|_| {
        anyhow::anyhow!(
            "the recorder thread panicked; the run is left open and will be closed as crashed"
        )
    })
}

/// Say how the run ended; the exit code is the launched command's when it ended the run.
fn stopped(outcome: &Outcome) -> ExitCode {
    tracing::info!(
        reason = outcome.reason.as_str(),
        ticks = outcome.ticks,
        samples = outcome.samples,
        failed_ticks = outcome.failed_ticks,
        skipped_ticks = outcome.skipped_ticks,
        "stopped"
    );
    let command = match (outcome.reason, outcome.command_status) {
        (
            StopReason::CommandExited | StopReason::Signal | StopReason::TargetsGone,
            Some(status),
        ) => Some(shell_code(status)),
        _ => None,
    };
    // A run that sampled but could write none of it lost everything: say so in the exit code
    // (the launched command's own failure, when it has one, still wins).
    let wrote_nothing = outcome.samples == 0 && outcome.failed_ticks > 0;
    if wrote_nothing {
        tracing::error!(
            failed_ticks = outcome.failed_ticks,
            "no tick of this run could be written to the database: nothing it sampled was kept"
        );
    }
    match command {
        Some(code) if code != 0 || !wrote_nothing => ExitCode::from(code),
        _ if wrote_nothing => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// The launched command's start as an event; returns its name as its target is recorded (comm).
fn command_started(
    store: &mut Store,
    settings: &RecordSettings,
    pid: Option<u32>,
) -> Option<String> {
    let pid = pid?;
    let name = procfs::read_stat(pid).map(|s| s.comm);
    let label = format!("started: {}", settings.targets.command.join(" "));
    command_event(store, (EventKind::CommandStarted, &name, pid), label);
    name
}

/// The launched command's exit as an event: its code, or the signal that ended it.
fn command_exited(store: &mut Store, (name, pid): (&Option<String>, u32), status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    let label = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("ended by signal {sig}"),
        (None, None) => "exited".to_string(),
    };
    command_event(store, (EventKind::CommandExited, name, pid), label);
}

/// Write a launched command's start or exit to the events; a failure is logged, never fatal.
fn command_event(
    store: &mut Store,
    (kind, name, pid): (EventKind, &Option<String>, u32),
    mut label: String,
) {
    if label.len() > crate::model::MAX_EVENT_LABEL {
        let mut end = crate::model::MAX_EVENT_LABEL - 3;
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        label.truncate(end);
        label.push_str("...");
    }
    let event = crate::model::NewEvent {
        ts_ms: now_ms(),
        kind,
        label: label.replace(char::is_control, " "),
        target: name.clone(),
        pid: Some(pid),
    };
    if let Err(e) = store.add_event(&event) {
        tracing::warn!("could not record the command's {}: {e}", kind.as_str());
    }
}

/// Take the API's port now, before anything is launched.
fn bind_api(
    rt: &tokio::runtime::Runtime,
    listen: std::net::SocketAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    rt.block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| {
            format!(
                "cannot serve the API on {listen}: is another recorder using it? Choose another with --listen, or --no-api"
            )
        })
}

/// Launch `-- CMD` (if given), watch it, and have a thread report its exit.
fn start_command(
    settings: &RecordSettings,
    sampler: &mut Sampler,
    control: &mpsc::Sender<Control>,
) -> anyhow::Result<Option<u32>> {
    use anyhow::Context;
    if settings.targets.command.is_empty() {
        return Ok(None);
    }
    let mut child = launch(&settings.targets.command)?;
    let pid = child.id();
    // Not yet reaped, so /proc/PID exists even if the command already exited.
    if let Err(e) = sampler.add_command(pid, Instant::now()) {
        let _ = crate::sys::kill(pid, libc::SIGKILL);
        return Err(e.into());
    }
    let tx = control.clone();
    let waiter = std::thread::Builder::new()
        .name("command-wait".into())
        .spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Control::CommandExited(status));
            }
        });
    if waiter.is_err() {
        // Nothing would wait for the command just launched.
        let _ = crate::sys::kill(pid, libc::SIGKILL);
    }
    waiter.context("starting the thread that waits for the command")?;
    Ok(Some(pid))
}

/// Open this run: its tick clock (after the newest tick already recorded) and its row in `runs`.
fn begin_run(settings: &RecordSettings, store: &mut Store) -> anyhow::Result<(i64, TickClock)> {
    use anyhow::Context;
    let newest = store.newest_tick_ms()?;
    let interval_ms = settings.interval.as_millis() as i64;
    // The run starts when its clock does: no tick is stamped before the run's start (`compare
    // run:N` reads a run's samples from its start).
    let started_ms = now_ms();
    let clock = TickClock::new(started_ms, Instant::now(), newest, interval_ms);
    if let Some(t) = clock.history_ahead_ms() {
        tracing::warn!(
            "the newest recorded tick is {:.1} s ahead of the wall clock (a clock that ran ahead and was put right, or one now behind): this run stamps its ticks at the wall clock and writes none until it passes that tick, so history is neither reordered nor stamped in the future",
            (t - now_ms()) as f64 / 1000.0
        );
    }
    let settings_json = serde_json::to_string(
        &settings
            .describe()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .context("describing the settings")?;
    let run_id = store.begin_run(&RunInfo {
        started_ms,
        interval_ms: settings.interval.as_millis() as i64,
        retention_ms: settings.retention.as_millis() as i64,
        host: procfs::hostname(),
        settings_json,
    })?;
    Ok((run_id, clock))
}

/// One line saying what is recorded, where, and how often.
fn log_what(settings: &RecordSettings, sampler: &Sampler, run_id: i64) {
    let mut what: Vec<String> = sampler.watched().map(|(k, _)| k.to_string()).collect();
    what.extend(
        settings
            .targets
            .names
            .iter()
            .map(|n| format!("processes named {n:?}")),
    );
    if !settings.targets.explicit() && settings.targets.top > 0 {
        what.push(format!("the {} largest processes", settings.targets.top));
    }
    if settings.system {
        what.insert(0, "system memory".to_string());
    }
    tracing::info!(
        db = %settings.db.display(),
        interval = %HumanDuration(settings.interval),
        retention = %HumanDuration(settings.retention),
        run = run_id,
        "recording {}",
        what.join(", ")
    );
}

/// The top-N default's changes in one line (churn on a busy host would otherwise be a line per
/// short job): which processes joined, were outgrown or exited, by name and pid.
fn log_top_churn(top: &crate::collect::sampler::TopChurn, n: usize) {
    let names = |keys: &[crate::model::TargetKey]| {
        keys.iter()
            .map(|k| format!("{} ({})", k.name, k.pid.unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    for (what, keys) in [
        ("now watching", &top.entered),
        ("outgrown, no longer watched", &top.left),
        ("exited", &top.exited),
    ] {
        if !keys.is_empty() {
            parts.push(format!("{what} {}", names(keys)));
        }
    }
    tracing::info!("the {n} largest processes: {}", parts.join("; "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_tick_is_committed_less_often_up_to_10_s() {
        let s = Duration::from_secs;
        assert_eq!(commit_every(s(1), 12), s(1), "one process");
        assert_eq!(commit_every(s(1), 1_000), s(1));
        assert_eq!(commit_every(s(1), 2_500), Duration::from_millis(2_500));
        assert_eq!(commit_every(s(1), 8_500), Duration::from_millis(8_500));
        assert_eq!(commit_every(s(1), 50_000), s(10), "at most 10 s");
        assert_eq!(
            commit_every(s(30), 50_000),
            s(30),
            "never below the interval given"
        );
        assert_eq!(commit_every(s(0), 50_000), s(0), "0s commits every tick");
    }

    fn tick(ts_ms: i64, values: usize) -> crate::model::Snapshot {
        use crate::model::{TargetKey, TargetSample, Unit, Value};
        crate::model::Snapshot {
            ts_ms,
            targets: vec![TargetSample {
                key: TargetKey::system(),
                cmdline: String::new(),
                values: (0..values)
                    .map(|_| Value::new("mem_used", Unit::Bytes, 1.0))
                    .collect(),
            }],
            gone: Vec::new(),
        }
    }

    #[test]
    fn the_backlog_keeps_the_newest_ticks_within_its_bound() {
        let mut b = Backlog::new(10);
        assert_eq!(b.push(tick(1, 4)), 0);
        assert_eq!(b.push(tick(2, 4)), 0);
        assert_eq!((b.ticks(), b.samples()), (2, 8));
        // 12 > 10: the oldest goes.
        assert_eq!(b.push(tick(3, 4)), 1);
        assert_eq!((b.ticks(), b.samples(), b.dropped_ticks), (2, 8, 1));
        assert_eq!(b.ticks.front().map(|t| t.ts_ms), Some(2));
        // A tick larger than the whole bound is still kept (alone): the newest is never dropped.
        assert_eq!(b.push(tick(4, 25)), 2);
        assert_eq!((b.ticks(), b.samples(), b.dropped_ticks), (1, 25, 3));
        assert_eq!(b.ticks.front().map(|t| t.ts_ms), Some(4));
    }

    #[test]
    fn a_held_tick_is_written_once_the_store_accepts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let mut store = Store::open(&db, Duration::from_millis(10)).expect("open");
        let mut b = Backlog::new(1000);
        b.push(tick(1_000, 3));
        // Another connection holds the write lock: the flush fails and keeps the tick.
        let other = rusqlite::Connection::open(&db).expect("other");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        assert!(b.flush(&mut store, 1, Duration::from_secs(1)).is_err());
        b.push(tick(2_000, 3));
        assert_eq!((b.ticks(), b.samples()), (2, 6));
        other.execute_batch("COMMIT").expect("unlock");
        assert_eq!(b.flush(&mut store, 1, Duration::from_secs(1)).ok(), Some(6));
        assert_eq!((b.ticks(), b.samples()), (0, 0));
        let n: i64 = store
            .connection()
            .query_row("SELECT count(DISTINCT ts_ms) FROM samples", [], |r| {
                r.get(0)
            })
            .expect("count");
        assert_eq!(n, 2);
    }

    #[test]
    fn tick_times_never_go_back_and_follow_a_forward_jump() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = TickClock::new(1_000_000, t0, None, 100);
        assert_eq!(c.stamp(at(100), 1_000_100), (1_000_100, None));
        // The wall clock steps back an hour: ticks go on from the monotonic clock, reported once.
        assert_eq!(
            c.stamp(at(200), 1_000_200 - 3_600_000),
            (1_000_200, Some(Jump::Backward(3_600_000)))
        );
        assert_eq!(c.stamp(at(300), 1_000_300 - 3_600_000), (1_000_300, None));
        // Small disagreement is noise.
        assert_eq!(c.stamp(at(400), 1_000_400 + 900), (1_000_400, None));
        // It catches up, then steps an hour forward: followed.
        assert_eq!(
            c.stamp(at(500), 1_000_500 + 3_600_000),
            (1_000_500 + 3_600_000, Some(Jump::Forward(3_600_000)))
        );
        assert_eq!(
            c.stamp(at(600), 1_000_600 + 3_600_000),
            (1_000_600 + 3_600_000, None)
        );
    }

    #[test]
    fn a_run_starts_after_the_newest_recorded_tick() {
        let t0 = Instant::now();
        // The wall clock is far behind the history: ticks at the wall clock, not written until
        // they pass its newest tick.
        let mut c = TickClock::new(500_000, t0, Some(900_000), 1_000);
        assert_eq!(c.stamp(t0, 500_000), (500_000, None));
        assert!(c.before_history(500_000) && c.before_history(900_000));
        assert!(!c.before_history(900_001));
        // Within one interval behind (a quick restart): shifted just past the newest tick.
        let mut c = TickClock::new(899_500, t0, Some(900_000), 1_000);
        assert_eq!(c.stamp(t0, 899_500), (900_001, None));
        assert!(!c.before_history(900_001));
        // It is ahead (the usual case): the wall clock, however close to the newest tick.
        let mut c = TickClock::new(900_010, t0, Some(900_000), 1_000);
        assert_eq!(c.stamp(t0, 900_010), (900_010, None));
    }

    #[test]
    fn ticks_stay_on_the_grid_and_skip_missed_ones() {
        let start = Instant::now();
        let i = Duration::from_millis(100);
        assert_eq!(next_tick(start, i, start), start + i);
        assert_eq!(
            next_tick(start, i, start + Duration::from_millis(130)),
            start + 2 * i
        );
        // A tick that overran by 2.5 intervals resumes on the grid, skipping the missed ticks.
        assert_eq!(
            next_tick(start, i, start + Duration::from_millis(350)),
            start + 4 * i
        );
    }
}

//! What the recording loop shares live with whoever serves it (the HTTP API): health figures of
//! the last tick, the targets watched, what a manual cleanup may act on, and custom metrics pushed
//! between ticks, and the analysis as last exported (verdicts and rule states for `/metrics`). The
//! loop writes it once a tick; readers take a short lock and copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::act::cleanup::{CleanupSettings, Target};
use crate::model::TargetSample;

/// What the recorder thread and the API share.
pub struct Shared {
    pub db: PathBuf,
    pub interval: Duration,
    pub cleanup: CleanupSettings,
    pub token: Option<String>,
    /// /metrics carries the pid label (`[api] pid_label`).
    pub pid_label: bool,
    live: Mutex<Live>,
}

#[derive(Default)]
pub(crate) struct Live {
    pub(crate) last_tick: Option<Instant>,
    pub(crate) last_tick_ms: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) ticks: u64,
    pub(crate) samples: u64,
    pub(crate) failed_ticks: u64,
    pub(crate) held: Held,
    pub(crate) tick_seconds: f64,
    /// What the last tick read from its targets (custom metrics aside), shared, not copied.
    pub(crate) readings: Arc<Vec<TargetSample>>,
    pub(crate) cleanup_targets: Vec<Target>,
    pub(crate) custom_pending: Vec<TargetSample>,
    pub(crate) custom_latest: BTreeMap<(String, String), f64>,
    /// The analysis as the recorder last exported it, shared, not copied.
    pub(crate) analysis: Arc<crate::analyze::export::Export>,
}

/// Ticks not yet in the database: held in memory because a write failed, or spooled on purpose
/// for the next commit (`commit_interval`), which is healthy and counted apart.
#[derive(Debug, Default, Clone, Copy)]
pub struct Held {
    pub ticks: usize,
    pub samples: usize,
    pub dropped_ticks: u64,
    pub spooled_ticks: usize,
    pub spooled_samples: usize,
}

/// One tick's facts, for health and the live endpoints.
pub(crate) struct TickReport {
    pub ts_ms: i64,
    /// What the tick read from its targets, custom metrics aside.
    pub readings: Vec<TargetSample>,
    /// Samples written this tick (held ones included), or why nothing could be.
    pub written: Result<usize, String>,
    pub held: Held,
    pub took: Duration,
    pub cleanup_targets: Vec<Target>,
}

impl Shared {
    pub fn new(
        db: PathBuf,
        interval: Duration,
        cleanup: CleanupSettings,
        (token, pid_label): (Option<String>, bool),
    ) -> Arc<Shared> {
        Arc::new(Shared {
            db,
            interval,
            cleanup,
            token,
            pid_label,
            live: Mutex::new(Live::default()),
        })
    }

    pub(crate) fn live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn tick_done(&self, t: TickReport) {
        let mut l = self.live();
        l.last_tick = Some(Instant::now());
        l.last_tick_ms = Some(t.ts_ms);
        l.ticks += 1;
        l.tick_seconds = t.took.as_secs_f64();
        match t.written {
            Ok(n) => {
                l.samples += n as u64;
                l.last_error = None;
            }
            Err(e) => {
                l.failed_ticks += 1;
                l.last_error = Some(e);
            }
        }
        l.held = t.held;
        l.readings = Arc::new(t.readings);
        l.cleanup_targets = t.cleanup_targets;
    }

    /// Custom metrics pushed since the last tick, to be written with it.
    pub(crate) fn take_custom(&self) -> Vec<TargetSample> {
        std::mem::take(&mut self.live().custom_pending)
    }

    pub(crate) fn push_custom(&self, sample: TargetSample) {
        let mut l = self.live();
        for v in &sample.values {
            l.custom_latest
                .insert((sample.key.name.clone(), v.metric.to_string()), v.value);
        }
        // One pending sample per target and metric: a newer push replaces an unwritten one.
        if let Some(existing) = l.custom_pending.iter_mut().find(|p| p.key == sample.key) {
            for v in sample.values {
                match existing.values.iter_mut().find(|e| e.metric == v.metric) {
                    Some(e) => e.value = v.value,
                    None => existing.values.push(v),
                }
            }
        } else {
            l.custom_pending.push(sample);
        }
    }
}

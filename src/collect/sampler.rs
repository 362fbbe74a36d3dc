//! The sampler: decides which processes are watched and reads their memory each tick. It owns the
//! data source (`/proc`), tracks targets by pid *and* start time (a reused pid is a new target),
//! and returns a plain `Snapshot`; it never touches the database. Only the watched pids are read
//! on a tick; the whole of `/proc` is scanned only on the (slower) discovery cadence, and only when
//! a `--name` or the top-N default needs it. PSS/USS come from `smaps_rollup` on their own cadence.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::collect::cgroup::{CgroupError, Group, Hierarchy};
use crate::collect::namegroup::NameGroup;
use crate::collect::procfs::{self, Kernel, ProcStat, StatusMem};
use crate::config::Targets;
use crate::model::{Kind, Snapshot, TargetKey, TargetSample, Unit, Value};

#[derive(Debug, thiserror::Error)]
pub(crate) enum SamplerError {
    #[error("no process with pid {0}: check it is running (`ps -p {0}`) and that /proc is mounted")]
    NoSuchPid(u32),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{0}")]
    Group(String),
}

/// Why a process is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Pid,
    Name,
    SelfProcess,
    Command,
    Top,
    /// A cgroup given with --cgroup or --unit.
    Cgroup,
    /// The cgroup of a watched process, recorded because it has a memory limit of its own.
    ProcessGroup,
    /// A name group (`--group`, `[[groups]]`): processes summed.
    NameGroup,
}

#[derive(Debug)]
struct Tracked {
    key: TargetKey,
    pid: u32,
    start_ticks: u64,
    cmdline: String,
    origin: Origin,
    tree: bool,
    next_smaps: Instant,
    next_maps: Instant,
    smaps_skip_logged: bool,
    /// Reads the process each tick (its files held open for the first `held_processes()`).
    proc: procfs::ProcReader,
    /// The `status` figures last read, and what `stat` said then.
    status: Option<HeldStatus>,
}

/// `status` (swap and the RSS by kind) is the dearest file of a tick to have the kernel format
/// (about 40 % of reading an idle process). Its figures move with the two that `stat` gives
/// anyway: a page mapped, freed, swapped out or in changes the RSS, a mapping made or removed the
/// size. While both hold still the last figures are carried, and read again at least every
/// [`STATUS_AT_LEAST_EVERY`] (a page traded between kinds at an equal total, swap freed by
/// `madvise`, is at most that late).
#[derive(Debug)]
struct HeldStatus {
    rss_pages: u64,
    vsize_bytes: u64,
    read_at: Instant,
    mem: Option<StatusMem>,
}

const STATUS_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

impl Tracked {
    /// The `status` figures: carried while `stat`'s RSS and size are unchanged and the last read
    /// is recent, else read.
    fn status_mem(&mut self, stat: &ProcStat, now: Instant) -> Option<StatusMem> {
        if let Some(h) = &self.status
            && h.rss_pages == stat.rss_pages
            && h.vsize_bytes == stat.vsize_bytes
            && now.saturating_duration_since(h.read_at) < STATUS_AT_LEAST_EVERY
        {
            return h.mem;
        }
        let mem = self.proc.status_mem();
        self.status = Some(HeldStatus {
            rss_pages: stat.rss_pages,
            vsize_bytes: stat.vsize_bytes,
            read_at: now,
            mem,
        });
        mem
    }
}

/// How many watched processes keep their per-tick files open (three descriptors each): at most
/// 128, and at most a quarter of the descriptor limit (`ulimit -n`; 85 at the usual 1,024), so the
/// database, the API's connections and a launched command's pipes always have room. Processes
/// past it (a large `--top`) are read by path, as before.
fn held_processes() -> usize {
    let Some(limit) = crate::sys::open_files_limit() else {
        return 0;
    };
    usize::try_from(limit / 12).map_or(128, |n| n.min(128))
}

/// A process must have run this long before the top-N default watches it: the compilers, shells
/// and short jobs that flash through the top of a busy host for a few seconds are not the services
/// whose leaks matter, and each would otherwise become a series and two log lines.
/// (The default of `--min-age` for the top N; `--name` has none.)
const TOP_MIN_AGE_MS: i64 = 30_000;
/// A process outside the top N replaces the smallest one watched only when its RSS is larger by
/// this fraction and by `TOP_MARGIN_BYTES`: two processes a few KiB apart do not trade places at
/// every discovery.
const TOP_MARGIN: f64 = 0.10;
const TOP_MARGIN_BYTES: u64 = 1 << 20;

/// What changed in the set of watched processes during one tick, for the recorder to log.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Targets watched from now on (but those of the top-N default: `top`).
    pub added: Vec<TargetKey>,
    /// Targets that exited or were removed (but those of the top-N default).
    pub gone: Vec<TargetKey>,
    /// How the top-N default's set changed, which the recorder logs as one line.
    pub top: TopChurn,
    /// Names given with `--name` that match no process right now (reported when that changes).
    pub newly_waiting: Vec<String>,
}

/// How the set of processes the top-N default watches changed in one tick.
#[derive(Debug, Default)]
pub(crate) struct TopChurn {
    pub entered: Vec<TargetKey>,
    /// Outgrown by a larger process (no longer watched, but still running).
    pub left: Vec<TargetKey>,
    pub exited: Vec<TargetKey>,
}

impl TopChurn {
    pub(crate) fn is_empty(&self) -> bool {
        self.entered.is_empty() && self.left.is_empty() && self.exited.is_empty()
    }
}

pub(crate) struct Sampler {
    kernel: Kernel,
    /// How many watched processes may hold their files open (`held_processes`).
    held_max: usize,
    names: Vec<String>,
    top: usize,
    /// `--min-age` (ms) for processes found by name, and for the top N.
    name_min_age_ms: i64,
    top_min_age_ms: i64,
    /// `--min-rss` (bytes) for both.
    min_rss: u64,
    system: bool,
    include_children: bool,
    slow: SlowReads,
    discovery_interval: Duration,
    next_discovery: Instant,
    tracked: Vec<Tracked>,
    waiting: HashSet<String>,
    /// The memory cgroup hierarchy: found at start when cgroups are given, else on first need
    /// (Some(None): looked, none readable).
    hierarchy: Option<Option<Hierarchy>>,
    groups: Vec<TrackedGroup>,
    name_groups: Vec<NameGroup>,
}

#[derive(Debug)]
struct TrackedGroup {
    key: TargetKey,
    group: Group,
    origin: Origin,
    /// The group's own limit was missing at the last reading (logged when that changes).
    unlimited: Option<bool>,
}

/// Sums over processes: a process tree, a name group.
#[derive(Default)]
pub(crate) struct Totals {
    pub rss: u64,
    pub vms: u64,
    /// swap, anon, file, shmem.
    pub mem: [u64; 4],
    pub threads: u64,
    pub fds: u64,
    pub procs: u64,
}

impl Totals {
    pub(crate) fn add(
        &mut self,
        stat: &ProcStat,
        mem: Option<StatusMem>,
        fds: Option<u64>,
        k: &Kernel,
    ) {
        self.rss += stat.rss_pages * k.page_size;
        self.vms += stat.vsize_bytes;
        self.threads += stat.threads;
        let m = mem.unwrap_or_default();
        for (total, v) in self.mem.iter_mut().zip([m.swap, m.anon, m.file, m.shmem]) {
            *total += v.unwrap_or(0);
        }
        self.fds += fds.unwrap_or(0);
        self.procs += 1;
    }
}

/// A process's `status` memory lines as values (those the kernel printed).
fn status_values(mem: Option<StatusMem>, names: [&'static str; 4]) -> impl Iterator<Item = Value> {
    let m = mem.unwrap_or_default();
    names
        .into_iter()
        .zip([m.swap, m.anon, m.file, m.shmem])
        .filter_map(|(name, v)| Some(Value::new(name, Unit::Bytes, v? as f64)))
}

/// What the sampler reads, and how often the slower readings are taken: the sampler's part of the
/// recording's settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SamplerConfig {
    pub targets: Targets,
    pub system: bool,
    pub include_children: bool,
    pub smaps_interval: Option<Duration>,
    pub smaps_max_rss: Option<u64>,
    pub maps_interval: Option<Duration>,
    pub discovery_interval: Duration,
}

/// The readings that make the kernel walk a process's page tables, each on its own cadence and
/// skipped above `max_rss`: PSS/USS from `smaps_rollup`, each mapping group's RSS from `smaps`.
#[derive(Debug, Clone, Copy)]
struct SlowReads {
    smaps_interval: Option<Duration>,
    maps_interval: Option<Duration>,
    max_rss: Option<u64>,
}

impl SlowReads {
    /// The slow readings due for `t` now, if its RSS is under the cap.
    fn read(&self, t: &mut Tracked, rss: u64, now: Instant, values: &mut Vec<Value>) {
        let due = |every: Option<Duration>, next: &mut Instant| match every {
            Some(every) if now >= *next => {
                *next = now + every;
                true
            }
            _ => false,
        };
        let smaps = due(self.smaps_interval, &mut t.next_smaps);
        let maps = due(self.maps_interval, &mut t.next_maps);
        if !(smaps || maps) {
            return;
        }
        if self.max_rss.is_some_and(|max| rss > max) {
            if !t.smaps_skip_logged {
                t.smaps_skip_logged = true;
                tracing::info!(
                    subject = %t.key,
                    "RSS is above smaps_max_rss: PSS/USS and mappings not read (reading them stalls a large process); set smaps_max_rss = \"unlimited\" to read them anyway"
                );
            }
            return;
        }
        if smaps && let Some(r) = procfs::read_smaps_rollup(t.pid) {
            values.push(Value::new("pss", Unit::Bytes, r.pss as f64));
            values.push(Value::new("uss", Unit::Bytes, r.uss as f64));
        }
        if maps && let Some(groups) = procfs::read_smaps_groups(t.pid) {
            values.extend(groups.into_iter().map(|(group, bytes)| Value {
                metric: format!("map_rss:{group}").into(),
                unit: Unit::Bytes,
                value: bytes as f64,
            }));
        }
    }
}

/// A process and its descendants summed: the process as just read, its descendants by path.
fn tree_values(
    pid: u32,
    stat: &ProcStat,
    mem: Option<StatusMem>,
    fds: Option<u64>,
    k: &Kernel,
) -> [Value; 9] {
    let mut totals = Totals::default();
    totals.add(stat, mem, fds, k);
    for kid in procfs::descendants(pid) {
        if let Some(ks) = procfs::read_stat(kid).filter(|s| !s.exited()) {
            totals.add(&ks, procfs::read_status_mem(kid), procfs::count_fds(kid), k);
        }
    }
    let [swap, anon, file, shmem] = totals.mem.map(|v| v as f64);
    [
        Value::new("tree_rss", Unit::Bytes, totals.rss as f64),
        Value::new("tree_vms", Unit::Bytes, totals.vms as f64),
        Value::new("tree_swap", Unit::Bytes, swap),
        Value::new("tree_rss_anon", Unit::Bytes, anon),
        Value::new("tree_rss_file", Unit::Bytes, file),
        Value::new("tree_rss_shmem", Unit::Bytes, shmem),
        Value::new("tree_threads", Unit::Count, totals.threads as f64),
        Value::new("tree_fds", Unit::Count, totals.fds as f64),
        Value::new("tree_procs", Unit::Count, totals.procs as f64),
    ]
}

impl Sampler {
    /// Checks that every `--pid` exists now. A launched command joins later with `add_command`.
    pub fn new(s: &SamplerConfig, now: Instant) -> Result<Sampler, SamplerError> {
        let mut sampler = Sampler {
            kernel: Kernel::get(),
            held_max: held_processes(),
            names: s.targets.names.clone(),
            name_min_age_ms: s.targets.min_age.map_or(0, |d| d.as_millis() as i64),
            top_min_age_ms: s
                .targets
                .min_age
                .map_or(TOP_MIN_AGE_MS, |d| d.as_millis() as i64),
            min_rss: s.targets.min_rss,
            top: if s.targets.explicit() {
                0
            } else {
                s.targets.top
            },
            system: s.system,
            include_children: s.include_children,
            slow: SlowReads {
                smaps_interval: s.smaps_interval,
                maps_interval: s.maps_interval,
                max_rss: s.smaps_max_rss,
            },
            discovery_interval: s.discovery_interval,
            next_discovery: now,
            tracked: Vec::new(),
            waiting: HashSet::new(),
            hierarchy: None,
            groups: Vec::new(),
            name_groups: s
                .targets
                .groups
                .iter()
                .map(|g| NameGroup::new(g.clone()))
                .collect::<Result<_, _>>()
                .map_err(SamplerError::Group)?,
        };
        let t = &s.targets;
        if !t.cgroups.is_empty() || !t.units.is_empty() {
            let h = Hierarchy::detect()?;
            for path in &t.cgroups {
                let g = h.resolve(path)?;
                sampler.add_group(g, Origin::Cgroup);
            }
            for unit in &t.units {
                let g = h.resolve_unit(unit)?;
                sampler.add_group(g, Origin::Cgroup);
            }
            sampler.hierarchy = Some(Some(h));
        }
        for &pid in &s.targets.pids {
            sampler
                .track(pid, Origin::Pid, now)
                .ok_or(SamplerError::NoSuchPid(pid))?;
        }
        if s.targets.watch_self {
            let me = std::process::id();
            sampler
                .track(me, Origin::SelfProcess, now)
                .ok_or(SamplerError::NoSuchPid(me))?;
        }
        Ok(sampler)
    }

    /// Watch a command memtrail launched, always with its children summed.
    pub(crate) fn add_command(&mut self, pid: u32, now: Instant) -> Result<(), SamplerError> {
        self.track(pid, Origin::Command, now)
            .map(|_| ())
            .ok_or(SamplerError::NoSuchPid(pid))
    }

    fn add_group(&mut self, group: Group, origin: Origin) -> Option<TargetKey> {
        if self.groups.iter().any(|g| g.group.dir == group.dir) {
            return None;
        }
        let key = TargetKey {
            kind: Kind::Cgroup,
            pid: None,
            start_time_ms: None,
            name: group.name.clone(),
        };
        self.groups.push(TrackedGroup {
            key: key.clone(),
            group,
            origin,
            unlimited: None,
        });
        Some(key)
    }

    /// A watched process in a cgroup with a memory limit of its own: record that group too (the
    /// kernel acts at the group's limit, whatever the host has free).
    fn add_group_of(&mut self, pid: u32) -> Option<TargetKey> {
        let h = self
            .hierarchy
            .get_or_insert_with(|| Hierarchy::detect().ok())
            .as_ref()?;
        let group = h.of_pid(pid)?;
        group.read()?.limit?;
        self.add_group(group, Origin::ProcessGroup)
    }

    fn track(&mut self, pid: u32, origin: Origin, now: Instant) -> Option<TargetKey> {
        if let Some(t) = self.tracked.iter().find(|t| t.pid == pid) {
            return Some(t.key.clone());
        }
        // Open first and read the identity through the held files, so they belong to that process.
        let held = self.tracked.iter().filter(|t| t.proc.holds_files()).count();
        let proc = procfs::ProcReader::new(pid, held < self.held_max);
        // A launched command is tracked even if it already exited (its gone row then says so).
        let stat = proc
            .stat()
            .filter(|s| origin == Origin::Command || !s.exited())?;
        let key = TargetKey {
            kind: Kind::Process,
            pid: Some(pid),
            start_time_ms: Some(stat.start_time_ms(&self.kernel)),
            name: stat.comm.clone(),
        };
        self.tracked.push(Tracked {
            key: key.clone(),
            pid,
            start_ticks: stat.start_ticks,
            cmdline: procfs::read_cmdline(pid),
            origin,
            tree: self.include_children || origin == Origin::Command,
            next_smaps: now,
            next_maps: now,
            smaps_skip_logged: false,
            proc,
            status: None,
        });
        if matches!(origin, Origin::Pid | Origin::Command) {
            self.add_group_of(pid);
        }
        Some(key)
    }

    /// The processes watched now.
    pub fn watched(&self) -> impl Iterator<Item = (&TargetKey, Origin)> {
        self.tracked
            .iter()
            .map(|t| (&t.key, t.origin))
            .chain(self.groups.iter().map(|g| (&g.key, g.origin)))
            .chain(self.name_groups.iter().map(|g| (&g.key, Origin::NameGroup)))
    }

    /// False once nothing is left that could ever be sampled again (only `--pid` targets were
    /// given, they have all exited, and system memory is not recorded).
    pub(crate) fn has_work(&self) -> bool {
        self.system
            || self.top > 0
            || !self.names.is_empty()
            || !self.tracked.is_empty()
            || !self.groups.is_empty()
            || !self.name_groups.is_empty()
    }

    /// Read one tick. `now` drives the discovery and smaps cadences; `ts_ms` stamps the readings.
    pub fn sample(&mut self, now: Instant, ts_ms: i64) -> (Snapshot, Changes) {
        let mut changes = Changes::default();
        if now >= self.next_discovery
            && (self.top > 0 || !self.names.is_empty() || !self.name_groups.is_empty())
        {
            self.discover(now, &mut changes);
            self.next_discovery = now + self.discovery_interval;
        }
        let mut snap = Snapshot {
            ts_ms,
            ..Default::default()
        };
        let k = self.kernel;
        let slow = self.slow;
        self.tracked.retain_mut(|t| {
            let stat = match t.proc.stat() {
                Some(s) if s.start_ticks == t.start_ticks && !s.exited() => s,
                _ => {
                    // Exited (or the pid now belongs to a newer process).
                    match t.origin {
                        Origin::Top => changes.top.exited.push(t.key.clone()),
                        _ => changes.gone.push(t.key.clone()),
                    }
                    return false;
                }
            };
            let rss = stat.rss_pages * k.page_size;
            // Room for every value a tick reads (a tree's sums double them), so the list is
            // allocated once, not grown three times.
            let mut values = Vec::with_capacity(if t.tree { 16 } else { 8 });
            values.extend([
                Value::new("rss", Unit::Bytes, rss as f64),
                Value::new("vms", Unit::Bytes, stat.vsize_bytes as f64),
                Value::new("threads", Unit::Count, stat.threads as f64),
            ]);
            let (mem, fds) = (t.status_mem(&stat, now), t.proc.fds());
            values.extend(status_values(
                mem,
                ["swap", "rss_anon", "rss_file", "rss_shmem"],
            ));
            if let Some(fds) = fds {
                values.push(Value::new("fds", Unit::Count, fds as f64));
            }
            slow.read(t, rss, now, &mut values);
            if t.tree {
                values.extend(tree_values(t.pid, &stat, mem, fds, &k));
            }
            snap.targets.push(TargetSample {
                key: t.key.clone(),
                cmdline: t.cmdline.clone(),
                values,
            });
            true
        });
        for g in &mut self.name_groups {
            snap.targets.push(g.sample(&k));
        }
        let system = self.system.then(system_sample);
        if !self.groups.is_empty() {
            self.sample_groups(system.as_ref(), &mut snap, &mut changes);
        }
        snap.gone = changes.gone.clone();
        snap.gone.extend(changes.top.exited.iter().cloned());
        if let Some(system) = system {
            snap.targets.push(system);
        }
        (snap, changes)
    }

    /// Each watched cgroup's usage against its limit (or, without one, the host's memory); a
    /// group removed since is recorded as gone.
    fn sample_groups(
        &mut self,
        system: Option<&TargetSample>,
        snap: &mut Snapshot,
        changes: &mut Changes,
    ) {
        let host_total = system
            .and_then(|s| s.values.iter().find(|v| v.metric == "mem_total"))
            .map(|v| v.value)
            .or_else(|| procfs::read_meminfo().map(|m| m.total as f64));
        self.groups.retain_mut(|g| match g.group.read() {
            Some(r) => {
                let unlimited = r.limit.is_none();
                if g.unlimited != Some(unlimited) && unlimited {
                    tracing::info!(
                        subject = %g.key,
                        "the group has no memory limit of its own (max): its limit_percent is of the host's memory"
                    );
                }
                g.unlimited = Some(unlimited);
                snap.targets.push(TargetSample {
                    key: g.key.clone(),
                    cmdline: g.group.dir.display().to_string(),
                    values: group_values(&r, host_total),
                });
                true
            }
            None => {
                changes.gone.push(g.key.clone());
                false
            }
        });
    }

    fn discover(&mut self, now: Instant, changes: &mut Changes) {
        let me = std::process::id();
        let now_wall = crate::units::now_ms();
        let mut top: Vec<Ranked> = Vec::new();
        let mut matched: HashSet<String> = HashSet::new();
        let mut members: Vec<Vec<(u32, u64)>> = vec![Vec::new(); self.name_groups.len()];
        for pid in procfs::all_pids() {
            let Some(stat) = procfs::read_stat(pid).filter(|s| !s.exited()) else {
                continue;
            };
            for (g, m) in self.name_groups.iter().zip(&mut members) {
                if g.matches(pid, &stat.comm) {
                    m.push((pid, stat.start_ticks));
                }
            }
            let rss = stat.rss_pages * self.kernel.page_size;
            let age_ms = now_wall - stat.start_time_ms(&self.kernel);
            // Kernel threads hold no memory of their own (RSS 0): never among the largest.
            if self.top > 0 && rss > 0 {
                top.push(Ranked {
                    pid,
                    rss,
                    old_enough: age_ms >= self.top_min_age_ms && rss >= self.min_rss,
                });
            }
            if self.names.is_empty() {
                continue;
            }
            let program = if self.names.contains(&stat.comm) {
                None
            } else {
                procfs::read_cmdline(pid)
                    .split(' ')
                    .next()
                    .and_then(|argv0| argv0.rsplit('/').next())
                    .map(str::to_string)
            };
            let name = self
                .names
                .iter()
                .find(|n| **n == stat.comm || program.as_deref() == Some(n.as_str()));
            if let Some(name) = name {
                matched.insert(name.clone());
                if pid != me
                    && age_ms >= self.name_min_age_ms
                    && rss >= self.min_rss
                    && !self.tracked.iter().any(|t| t.pid == pid)
                    && let Some(key) = self.track(pid, Origin::Name, now)
                {
                    changes.added.push(key);
                }
            }
        }
        // Names with a tracked process count as matched even if it was found earlier.
        for t in self.tracked.iter().filter(|t| t.origin == Origin::Name) {
            if let Some(n) = self.names.iter().find(|n| **n == t.key.name) {
                matched.insert(n.clone());
            }
        }
        for name in &self.names {
            if matched.contains(name) {
                self.waiting.remove(name);
            } else if self.waiting.insert(name.clone()) {
                changes.newly_waiting.push(name.clone());
            }
        }
        for (g, m) in self.name_groups.iter_mut().zip(members) {
            g.set_members(m);
        }
        if self.top > 0 {
            self.rerank_top(top, now, changes);
        }
    }

    /// Keep the top N by RSS watched, with hysteresis (`rerank`): a process that leaves was
    /// outgrown by a margin, one that enters has run for `TOP_MIN_AGE_MS`.
    fn rerank_top(&mut self, ranked: Vec<Ranked>, now: Instant, changes: &mut Changes) {
        let members: Vec<Ranked> = ranked
            .iter()
            .filter(|r| {
                self.tracked
                    .iter()
                    .any(|t| t.pid == r.pid && t.origin == Origin::Top)
            })
            .copied()
            .collect();
        let candidates: Vec<Ranked> = ranked
            .into_iter()
            .filter(|r| r.old_enough && !self.tracked.iter().any(|t| t.pid == r.pid))
            .collect();
        let (enter, leave) = rerank(members, candidates, self.top);
        for pid in leave {
            if let Some(i) = self.tracked.iter().position(|t| t.pid == pid) {
                changes.top.left.push(self.tracked.swap_remove(i).key);
            }
        }
        for pid in enter {
            if let Some(key) = self.track(pid, Origin::Top, now) {
                changes.top.entered.push(key);
            }
        }
    }
}

/// A process as the top-N ranking sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ranked {
    pid: u32,
    rss: u64,
    /// Has run `--min-age` and holds `--min-rss`: may join.
    old_enough: bool,
}

/// Which candidates enter the top `n` and which members leave it. Free places go to the largest
/// candidates; then a candidate takes the smallest member's place only when it is larger by
/// `TOP_MARGIN` and `TOP_MARGIN_BYTES`, so ranks that differ by a little never swap.
fn rerank(mut members: Vec<Ranked>, mut candidates: Vec<Ranked>, n: usize) -> (Vec<u32>, Vec<u32>) {
    candidates.sort_unstable_by(|a, b| b.rss.cmp(&a.rss).then(a.pid.cmp(&b.pid)));
    let (mut enter, mut leave) = (Vec::new(), Vec::new());
    for c in candidates {
        if members.len() < n {
            enter.push(c.pid);
            members.push(c);
            continue;
        }
        let Some((i, weakest)) = members.iter().enumerate().min_by_key(|(_, m)| m.rss) else {
            break;
        };
        let beats = c.rss as f64 > weakest.rss as f64 * (1.0 + TOP_MARGIN)
            && c.rss >= weakest.rss + TOP_MARGIN_BYTES;
        if !beats {
            break;
        }
        leave.push(weakest.pid);
        enter.push(c.pid);
        members[i] = c;
    }
    (enter, leave)
}

/// A cgroup's figures. `limit` is the group's own limit, or the host's total memory when it has
/// none (`has_limit` 0 says which); `limit_percent` is usage against that.
pub(crate) fn group_values(
    r: &crate::collect::cgroup::Reading,
    host_total: Option<f64>,
) -> Vec<Value> {
    let b = |m: &'static str, v: u64| Value::new(m, Unit::Bytes, v as f64);
    let c = |m: &'static str, v: u64| Value::new(m, Unit::Count, v as f64);
    let mut values = vec![b("usage", r.usage)];
    let limit = r.limit.map(|l| l as f64).or(host_total);
    values.push(c("has_limit", u64::from(r.limit.is_some())));
    if let Some(limit) = limit.filter(|l| *l > 0.0) {
        values.push(Value::new("limit", Unit::Bytes, limit));
        values.push(Value::new(
            "limit_percent",
            Unit::Percent,
            r.usage as f64 * 100.0 / limit,
        ));
    }
    let optional = [
        ("high", r.high, Unit::Bytes),
        ("swap", r.swap, Unit::Bytes),
        ("anon", r.anon, Unit::Bytes),
        ("file", r.file, Unit::Bytes),
        ("kernel", r.kernel, Unit::Bytes),
        ("events_high", r.events_high, Unit::Count),
        ("events_max", r.events_max, Unit::Count),
        ("oom", r.oom, Unit::Count),
        ("oom_kill", r.oom_kill, Unit::Count),
        ("failcnt", r.failcnt, Unit::Count),
    ];
    for (metric, v, unit) in optional {
        if let Some(v) = v {
            values.push(Value::new(metric, unit, v as f64));
        }
    }
    if let Some(p) = &r.pressure {
        push_pressure(&mut values, p);
    }
    values
}

/// PSI memory pressure (the share of time some / all tasks stalled on memory, 10 s average).
fn push_pressure(values: &mut Vec<Value>, p: &procfs::Pressure) {
    values.push(Value::new(
        "pressure_some_avg10",
        Unit::Percent,
        p.some_avg10,
    ));
    if let Some(full) = p.full_avg10 {
        values.push(Value::new("pressure_full_avg10", Unit::Percent, full));
    }
}

/// System-wide memory: total, available, used, used %, swap, and PSI pressure when present.
pub(crate) fn system_sample() -> TargetSample {
    let mut values = Vec::new();
    if let Some(m) = procfs::read_meminfo() {
        values.extend([
            Value::new("mem_total", Unit::Bytes, m.total as f64),
            Value::new("mem_available", Unit::Bytes, m.available as f64),
            Value::new("mem_used", Unit::Bytes, m.used() as f64),
            Value::new("mem_used_percent", Unit::Percent, m.used_percent()),
            Value::new("swap_total", Unit::Bytes, m.swap_total as f64),
            Value::new("swap_used", Unit::Bytes, m.swap_used() as f64),
        ]);
    }
    if let Some(p) = procfs::read_pressure() {
        push_pressure(&mut values, &p);
    }
    TargetSample {
        key: TargetKey::system(),
        cmdline: String::new(),
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecordPartial;
    use crate::record::settings::RecordSettings;

    fn settings(p: RecordPartial) -> SamplerConfig {
        RecordSettings::build("unused.db".into(), p, vec![])
            .expect("valid settings")
            .sampler()
    }

    fn metric(s: &TargetSample, name: &str) -> Option<f64> {
        s.values.iter().find(|v| v.metric == name).map(|v| v.value)
    }

    #[test]
    fn status_figures_are_carried_only_while_stat_holds_still_and_for_30_s() {
        let me = std::process::id();
        let s = settings(RecordPartial {
            pids: Some(vec![me]),
            system: Some(false),
            ..Default::default()
        });
        let now = Instant::now();
        let mut sampler = Sampler::new(&s, now).expect("own pid exists");
        let t = &mut sampler.tracked[0];
        // A figure no process shows: carried, it comes back as it is; read, it does not.
        let marked = StatusMem {
            anon: Some(1),
            ..Default::default()
        };
        let stat = |rss_pages, vsize_bytes| ProcStat {
            pid: me,
            comm: String::new(),
            state: 'S',
            ppid: 1,
            threads: 1,
            start_ticks: 0,
            vsize_bytes,
            rss_pages,
        };
        let held = |t: &mut Tracked, read_at| {
            t.status = Some(HeldStatus {
                rss_pages: 5,
                vsize_bytes: 6,
                read_at,
                mem: Some(marked),
            });
        };
        held(t, now);
        assert_eq!(t.status_mem(&stat(5, 6), now), Some(marked), "carried");
        let later = now + Duration::from_secs(29);
        assert_eq!(t.status_mem(&stat(5, 6), later), Some(marked), "29 s on");
        let read = t.status_mem(&stat(7, 6), now);
        assert!(read.is_some_and(|m| m != marked), "the RSS moved: {read:?}");
        assert_eq!(t.status.as_ref().map(|h| h.rss_pages), Some(7), "kept");
        held(t, now);
        assert_ne!(
            t.status_mem(&stat(5, 8), now),
            Some(marked),
            "the size moved"
        );
        held(t, now);
        let stale = now + STATUS_AT_LEAST_EVERY;
        assert_ne!(t.status_mem(&stat(5, 6), stale), Some(marked), "30 s old");
    }

    #[test]
    fn watches_only_the_given_pid_and_the_system() {
        let me = std::process::id();
        let s = settings(RecordPartial {
            pids: Some(vec![me]),
            ..Default::default()
        });
        let now = Instant::now();
        let mut sampler = Sampler::new(&s, now).expect("own pid exists");
        let (snap, changes) = sampler.sample(now, 1);
        assert!(changes.gone.is_empty());
        assert_eq!(snap.targets.len(), 2);
        let proc_ = &snap.targets[0];
        assert_eq!(proc_.key.pid, Some(me));
        assert!(metric(proc_, "rss").expect("rss") > 0.0);
        assert!(metric(proc_, "fds").expect("fds") >= 3.0);
        assert!(metric(proc_, "pss").is_some(), "first tick reads smaps");
        let sys = &snap.targets[1];
        assert_eq!(sys.key.kind, Kind::System);
        let used = metric(sys, "mem_used_percent").expect("used %");
        assert!((0.0..=100.0).contains(&used));
        // Every reading is in the unit `model::unit_of` names for its metric (what an import
        // assumes and a Prometheus rule's family is named by).
        for t in &snap.targets {
            for v in &t.values {
                assert_eq!(crate::model::unit_of(&v.metric), v.unit, "{}", v.metric);
            }
        }
        // smaps has its own, slower cadence.
        let (snap2, _) = sampler.sample(now + Duration::from_secs(1), 2);
        assert!(metric(&snap2.targets[0], "pss").is_none());
        assert!(metric(&snap2.targets[0], "rss").is_some());
    }

    #[test]
    fn missing_pid_is_an_error_naming_it() {
        let s = settings(RecordPartial {
            pids: Some(vec![u32::MAX - 1]),
            ..Default::default()
        });
        let err = Sampler::new(&s, Instant::now())
            .err()
            .expect("no such pid")
            .to_string();
        assert!(err.contains(&format!("{}", u32::MAX - 1)), "{err}");
    }

    #[test]
    fn exited_process_is_reported_gone_once() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let s = settings(RecordPartial {
            pids: Some(vec![pid]),
            system: Some(false),
            ..Default::default()
        });
        let now = Instant::now();
        let mut sampler = Sampler::new(&s, now).expect("child exists");
        assert_eq!(sampler.sample(now, 1).0.targets.len(), 1);
        child.kill().expect("kill");
        child.wait().expect("reap");
        let (snap, changes) = sampler.sample(now, 2);
        assert!(snap.targets.is_empty());
        assert_eq!(changes.gone.len(), 1);
        assert_eq!(snap.gone, changes.gone);
        assert!(!sampler.has_work(), "only a vanished --pid was watched");
        assert!(sampler.sample(now, 3).1.gone.is_empty());
    }

    #[test]
    fn top_default_picks_largest_by_rss() {
        let s = settings(RecordPartial {
            top: Some(3),
            ..Default::default()
        });
        let now = Instant::now();
        let mut sampler = Sampler::new(&s, now).expect("sampler");
        let (snap, changes) = sampler.sample(now, 1);
        let procs: Vec<_> = snap
            .targets
            .iter()
            .filter(|t| t.key.kind == Kind::Process)
            .collect();
        assert_eq!(procs.len(), changes.top.entered.len());
        assert!(
            procs.len() <= 3 && !procs.is_empty(),
            "{} watched",
            procs.len()
        );
        let rss: Vec<f64> = procs
            .iter()
            .map(|t| metric(t, "rss").unwrap_or(0.0))
            .collect();
        let smallest_watched = rss.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(
            smallest_watched > 0.0,
            "a kernel thread (RSS 0) was ranked: {rss:?}"
        );
        // No unwatched process is larger than the smallest watched one (allowing for movement).
        let k = Kernel::get();
        let watched: Vec<u32> = procs.iter().filter_map(|t| t.key.pid).collect();
        let old_enough = crate::units::now_ms() - TOP_MIN_AGE_MS;
        let larger = procfs::all_pids()
            .into_iter()
            .filter(|p| !watched.contains(p))
            .filter_map(procfs::read_stat)
            .filter(|s| s.start_time_ms(&k) <= old_enough)
            .filter(|s| (s.rss_pages * k.page_size) as f64 > smallest_watched * 1.5 + 1e6)
            .count();
        assert_eq!(
            larger, 0,
            "no older process is larger than the smallest watched"
        );
        assert!(
            procs
                .iter()
                .filter_map(|t| t.key.start_time_ms)
                .all(|start| start <= old_enough),
            "a process younger than {TOP_MIN_AGE_MS} ms is not ranked"
        );
    }

    #[test]
    fn the_top_n_trades_places_only_for_a_margin() {
        const MIB: u64 = 1 << 20;
        let r = |pid: u32, mib: u64| Ranked {
            pid,
            rss: mib * MIB,
            old_enough: true,
        };
        // Free places go to the largest candidates.
        let (enter, leave) = rerank(vec![r(1, 100)], vec![r(2, 5), r(3, 50), r(4, 7)], 3);
        assert_eq!((enter, leave), (vec![3, 4], vec![]));
        // Full: a candidate a little larger than the smallest member stays out...
        let members = vec![r(1, 100), r(2, 60), r(3, 50)];
        let (enter, leave) = rerank(members.clone(), vec![r(9, 54)], 3);
        assert_eq!((enter, leave), (vec![], vec![]));
        let near = Ranked {
            rss: 50 * MIB + 4096,
            ..r(9, 0)
        };
        assert_eq!(rerank(members.clone(), vec![near], 3), (vec![], vec![]));
        // ...one larger by the margin takes its place, and the next takes the next smallest.
        let (enter, leave) = rerank(members.clone(), vec![r(9, 80), r(8, 70), r(7, 61)], 3);
        assert_eq!((enter, leave), (vec![9, 8], vec![3, 2]));
        // Tiny processes: the byte margin holds where 10 % is a few KiB.
        let small = vec![Ranked {
            rss: 200 * 1024,
            ..r(1, 0)
        }];
        let bigger = Ranked {
            rss: 600 * 1024,
            ..r(2, 0)
        };
        assert_eq!(rerank(small, vec![bigger], 1), (vec![], vec![]));
    }
}

//! Name groups: every process with a name, or whose command line matches a pattern, summed into
//! one target of kind `group` (as process-exporter's name groups), so a service keeps one series
//! across restarts and worker churn. Members are found at each discovery (the sampler's scan of
//! `/proc`), read each tick, and dropped as they exit; a group with no member reads 0.

use regex::Regex;

use crate::collect::procfs::{self, Kernel, ProcStat};
use crate::collect::sampler::Totals;
use crate::config::GroupSpec;
use crate::model::{Kind, TargetKey, TargetSample, Unit, Value};

/// The longest `cmdline` pattern accepted, and the most memory its compiled form may take.
const MAX_PATTERN: usize = 1024;
const MAX_COMPILED: usize = 1 << 20;

/// Check a group: a target name, and a pattern that compiles within bounds; the compiled pattern.
pub(crate) fn matcher(spec: &GroupSpec) -> Result<Option<Regex>, String> {
    if !crate::model::valid_target_name(&spec.name) {
        return Err(format!(
            "group name {} must be 1 to 256 bytes without control characters",
            crate::model::shown(&spec.name)
        ));
    }
    if spec.process.as_ref().is_some_and(|p| p.trim().is_empty()) {
        return Err(format!(
            "group {:?}: process must be a name as `ps -o comm` shows it",
            spec.name
        ));
    }
    let Some(pattern) = &spec.cmdline else {
        return Ok(None);
    };
    if pattern.len() > MAX_PATTERN {
        return Err(format!(
            "group {:?}: the cmdline pattern is over {MAX_PATTERN} bytes",
            spec.name
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED)
        .build()
        .map(Some)
        .map_err(|e| {
            format!(
                "group {:?}: cmdline {pattern:?} is not a regular expression: {e}",
                spec.name
            )
        })
}

/// A group being recorded: its spec, its target, its members (pid and start, so a reused pid is
/// not counted).
#[derive(Debug)]
pub(crate) struct NameGroup {
    spec: GroupSpec,
    pattern: Option<Regex>,
    pub key: TargetKey,
    members: Vec<(u32, u64)>,
}

impl NameGroup {
    pub fn new(spec: GroupSpec) -> Result<NameGroup, String> {
        let pattern = matcher(&spec)?;
        Ok(NameGroup {
            key: TargetKey {
                kind: Kind::Group,
                pid: None,
                start_time_ms: None,
                name: spec.name.clone(),
            },
            spec,
            pattern,
            members: Vec::new(),
        })
    }

    /// Whether a process belongs: its name, and its command line (read only when a pattern asks).
    pub fn matches(&self, pid: u32, comm: &str) -> bool {
        let name = match (&self.spec.process, &self.pattern) {
            (Some(p), _) => p == comm,
            (None, Some(_)) => true,
            (None, None) => self.spec.name == comm,
        };
        name && self
            .pattern
            .as_ref()
            .is_none_or(|re| re.is_match(&procfs::read_cmdline(pid)))
    }

    /// The members a discovery found (they replace the last ones).
    pub fn set_members(&mut self, members: Vec<(u32, u64)>) {
        self.members = members;
    }

    /// Read every member and sum them: rss, vms, swap, the kinds of resident memory, threads,
    /// fds, and how many processes (`procs`). Members that exited are dropped.
    pub fn sample(&mut self, k: &Kernel) -> TargetSample {
        let mut totals = Totals::default();
        self.members.retain(|&(pid, start)| {
            let Some(stat) =
                procfs::read_stat(pid).filter(|s: &ProcStat| s.start_ticks == start && !s.exited())
            else {
                return false;
            };
            totals.add(
                &stat,
                procfs::read_status_mem(pid),
                procfs::count_fds(pid),
                k,
            );
            true
        });
        let [swap, anon, file, shmem] = totals.mem.map(|v| v as f64);
        TargetSample {
            key: self.key.clone(),
            cmdline: self.spec.selector(),
            values: vec![
                Value::new("rss", Unit::Bytes, totals.rss as f64),
                Value::new("vms", Unit::Bytes, totals.vms as f64),
                Value::new("swap", Unit::Bytes, swap),
                Value::new("rss_anon", Unit::Bytes, anon),
                Value::new("rss_file", Unit::Bytes, file),
                Value::new("rss_shmem", Unit::Bytes, shmem),
                Value::new("threads", Unit::Count, totals.threads as f64),
                Value::new("fds", Unit::Count, totals.fds as f64),
                Value::new("procs", Unit::Count, totals.procs as f64),
            ],
        }
    }
}

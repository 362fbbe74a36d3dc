//! The plain data that flows between modules: what the sampler reads in one tick (a `Snapshot` of
//! targets and their metric values) and how a target is identified. No I/O here.

use std::borrow::Cow;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Process,
    System,
    Custom,
    /// A cgroup (container, systemd unit): memory against the group's own limit.
    Cgroup,
    /// A name group: every process with a name (or whose command line matches a pattern),
    /// summed; one series across restarts and worker churn.
    Group,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Process,
        Kind::System,
        Kind::Custom,
        Kind::Cgroup,
        Kind::Group,
    ];

    /// The kind a stored `targets.kind` names.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::System => "system",
            Kind::Custom => "custom",
            Kind::Cgroup => "cgroup",
            Kind::Group => "group",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit a series is stored in (the schema's `series.unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Bytes,
    Percent,
    Count,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Percent => "percent",
            Unit::Count => "count",
        }
    }
}

/// Who is measured. A process is its pid *and* its start time: a reused pid is another target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TargetKey {
    pub kind: Kind,
    pub pid: Option<u32>,
    pub start_time_ms: Option<i64>,
    pub name: String,
}

impl TargetKey {
    pub fn system() -> TargetKey {
        TargetKey {
            kind: Kind::System,
            pid: None,
            start_time_ms: None,
            name: "system".to_string(),
        }
    }
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "{} {} (pid {pid})", self.kind.as_str(), self.name),
            None => write!(f, "{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// One metric reading.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Value {
    pub metric: Cow<'static, str>,
    pub unit: Unit,
    pub value: f64,
}

impl Value {
    pub fn new(metric: &'static str, unit: Unit, value: f64) -> Value {
        Value {
            metric: Cow::Borrowed(metric),
            unit,
            value,
        }
    }
}

/// Everything read from one target in one tick.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TargetSample {
    pub key: TargetKey,
    pub cmdline: String,
    pub values: Vec<Value>,
}

/// One tick's readings, all stamped with the same time.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Snapshot {
    pub ts_ms: i64,
    pub targets: Vec<TargetSample>,
    /// Targets seen to exit since the previous tick.
    pub gone: Vec<TargetKey>,
}

impl Snapshot {
    pub(crate) fn value_count(&self) -> usize {
        self.targets.iter().map(|t| t.values.len()).sum()
    }
}

/// One value of a query result (or a query parameter).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl Cell {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(v) => Some(*v as f64),
            Cell::Real(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => Some(*v),
            Cell::Real(v) => Some(*v as i64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A query result: column names and rows of cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Where query rows go as they are read: a `Table` keeps them; an output writes them at once.
pub(crate) trait Rows {
    fn columns(&mut self, names: &[String]) -> std::io::Result<()>;
    fn row(&mut self, cells: Vec<Cell>) -> std::io::Result<()>;
}

impl Rows for Table {
    fn columns(&mut self, names: &[String]) -> std::io::Result<()> {
        self.columns = names.to_vec();
        Ok(())
    }
    fn row(&mut self, cells: Vec<Cell>) -> std::io::Result<()> {
        self.rows.push(cells);
        Ok(())
    }
}

impl Table {
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Every row as a JSON object of column name to value, in column order.
    pub(crate) fn json_rows(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.clone(), serde_json::to_value(v).unwrap_or_default()))
                    .collect()
            })
            .collect()
    }

    /// Every row as a typed value, by column name (the result columns a query's header names):
    /// the one way query rows cross into Rust, so a renamed column fails here, loudly.
    pub(crate) fn typed_rows<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Vec<T>, serde_json::Error> {
        self.json_rows()
            .into_iter()
            .map(|row| serde_json::from_value(serde_json::Value::Object(row)))
            .collect()
    }

    /// The table cut to the named columns, in that order (names it lacks are left out).
    pub(crate) fn select(&self, names: &[String]) -> Table {
        let keep: Vec<usize> = names.iter().filter_map(|n| self.column(n)).collect();
        Table {
            columns: keep.iter().map(|&c| self.columns[c].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|r| keep.iter().filter_map(|&c| r.get(c).cloned()).collect())
                .collect(),
        }
    }

    /// The cell of `row` in column `name` (Null when there is no such column or row).
    pub fn get(&self, row: usize, name: &str) -> &Cell {
        static NULL: Cell = Cell::Null;
        self.column(name)
            .and_then(|c| self.rows.get(row)?.get(c))
            .unwrap_or(&NULL)
    }
}

/// Metrics memtrail records itself, with the kind of target that has them.
pub(crate) const PROCESS_METRICS: [&str; 19] = [
    "rss",
    "rss_anon",
    "rss_file",
    "rss_shmem",
    "vms",
    "swap",
    "threads",
    "fds",
    "pss",
    "uss",
    "tree_rss",
    "tree_vms",
    "tree_swap",
    "tree_rss_anon",
    "tree_rss_file",
    "tree_rss_shmem",
    "tree_threads",
    "tree_fds",
    "tree_procs",
];
pub(crate) const SYSTEM_METRICS: [&str; 8] = [
    "mem_total",
    "mem_available",
    "mem_used",
    "mem_used_percent",
    "swap_total",
    "swap_used",
    "pressure_some_avg10",
    "pressure_full_avg10",
];
pub(crate) const CGROUP_METRICS: [&str; 16] = [
    "usage",
    "limit",
    "limit_percent",
    "has_limit",
    "high",
    "swap",
    "anon",
    "file",
    "kernel",
    "events_high",
    "events_max",
    "oom",
    "oom_kill",
    "failcnt",
    "pressure_some_avg10",
    "pressure_full_avg10",
];

/// The unit memtrail records a metric in: counts (threads, fds, a cgroup's event counters, and
/// any metric it does not know, as custom ones), percentages (`*_percent`, pressure), else bytes.
pub fn unit_of(metric: &str) -> Unit {
    const COUNTS: [&str; 11] = [
        "threads",
        "fds",
        "tree_threads",
        "tree_fds",
        "tree_procs",
        "has_limit",
        "events_high",
        "events_max",
        "oom",
        "oom_kill",
        "failcnt",
    ];
    let known = is_process_metric(metric)
        || SYSTEM_METRICS.contains(&metric)
        || CGROUP_METRICS.contains(&metric);
    match metric {
        m if COUNTS.contains(&m) => Unit::Count,
        m if m.ends_with("_percent") || m.starts_with("pressure_") => Unit::Percent,
        _ if known => Unit::Bytes,
        _ => Unit::Count,
    }
}

/// One imported series: who, what, and its points (Unix ms, value in the unit).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedSeries {
    pub key: TargetKey,
    pub cmdline: String,
    pub metric: String,
    pub unit: Unit,
    pub points: Vec<(i64, f64)>,
}

/// The outcome of one alert delivery (a webhook or a command), as `notifications` records it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivery {
    pub alert_id: i64,
    pub ts_ms: i64,
    pub channel: &'static str,
    pub ok: bool,
    pub attempts: u32,
    pub detail: String,
}

/// Names: a letter or underscore, then letters, digits, `_`, `.`, `:` or `-`; at most 64 bytes.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// A metric memtrail records for a process: the fixed list, or a mapping group's RSS
/// (`map_rss:[heap]`, `map_rss:/usr/lib/libc.so.6`, ...).
pub(crate) fn is_process_metric(metric: &str) -> bool {
    PROCESS_METRICS.contains(&metric) || metric.starts_with("map_rss:")
}

/// A metric's name as a file gives it: a name (above), or a mapping group's series as the sampler
/// names them (`map_rss:` and a group: `[heap]` or a mapped file's path, as a target name may be).
pub(crate) fn valid_metric_name(name: &str) -> bool {
    valid_name(name) || name.strip_prefix("map_rss:").is_some_and(valid_target_name)
}

/// The longest target (series) name memtrail takes from a file or a push, in bytes.
pub(crate) const MAX_TARGET_NAME: usize = 256;

/// A target's name as a file gives it: not empty, at most `MAX_TARGET_NAME` bytes, no control
/// characters (process names may hold spaces, slashes and colons).
pub(crate) fn valid_target_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_TARGET_NAME && !name.chars().any(char::is_control)
}

/// A value from an input, cut for an error message: a 200 MB field is not echoed whole.
pub fn shown(value: &str) -> String {
    const MAX: usize = 60;
    match value.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}... ({} bytes)", &value[..i], value.len()),
        None => format!("{value:?}"),
    }
}

/// What happened to an alert at an evaluation, as `alerts_due` decides it and the `alerts` table
/// records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEventKind {
    /// The condition held for the rule's `for`: the alert fires (and is notified).
    Firing,
    /// Still firing, and the repeat interval has passed: notified again.
    Repeat,
    /// The condition cleared (or the target went): the alert ends.
    Resolved,
    /// It would have fired, but the cooldown holds it back.
    Suppressed,
}

impl AlertEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEventKind::Firing => "firing",
            AlertEventKind::Repeat => "repeat",
            AlertEventKind::Resolved => "resolved",
            AlertEventKind::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<AlertEventKind> {
        [
            AlertEventKind::Firing,
            AlertEventKind::Repeat,
            AlertEventKind::Resolved,
            AlertEventKind::Suppressed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether it is one a person is told about (firing, repeat), rather than a state change.
    pub fn alarms(self) -> bool {
        matches!(self, AlertEventKind::Firing | AlertEventKind::Repeat)
    }
}

/// What kind of thing happened, on the `timeline` (the `events` table holds the first three; the
/// others are read from the alerts, cleanup runs and targets that record them already).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Said by a person or a deploy script: `memtrail annotate`, POST /internal/memory/event.
    Annotation,
    /// The command `record -- CMD` launched started, or exited.
    CommandStarted,
    CommandExited,
    /// A process took the name of one that had exited: a new pid for the same name.
    Restart,
    /// A cleanup run started.
    Cleanup,
    /// An alert fired or resolved.
    Alert,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Annotation,
        EventKind::CommandStarted,
        EventKind::CommandExited,
        EventKind::Restart,
        EventKind::Cleanup,
        EventKind::Alert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Annotation => "annotation",
            EventKind::CommandStarted => "command_started",
            EventKind::CommandExited => "command_exited",
            EventKind::Restart => "restart",
            EventKind::Cleanup => "cleanup",
            EventKind::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether it can explain a change in a series (an alert follows one, it does not cause it).
    pub fn can_cause(self) -> bool {
        self != EventKind::Alert
    }
}

/// The longest event label accepted (bytes).
pub const MAX_EVENT_LABEL: usize = 200;

/// An event to write (`events` table): when, what kind, the label, and what it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub ts_ms: i64,
    pub kind: EventKind,
    pub label: String,
    /// A target's name; None for the whole host.
    pub target: Option<String>,
    pub pid: Option<u32>,
}

/// Check an event's label: 1 to `MAX_EVENT_LABEL` bytes, no control characters.
pub fn check_event_label(label: &str) -> Result<(), String> {
    if label.trim().is_empty()
        || label.len() > MAX_EVENT_LABEL
        || label.chars().any(char::is_control)
    {
        return Err(format!(
            "an event's label must be 1 to {MAX_EVENT_LABEL} bytes of text without control characters, not {}",
            shown(label)
        ));
    }
    Ok(())
}

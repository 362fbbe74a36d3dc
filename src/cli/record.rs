//! `memtrail record`: its flags, turned into the settings a recorder runs with (file, then flags), and
//! the recorder started with the API server it serves.

use super::*;

#[derive(Debug, Args)]
pub(super) struct RecordArgs {
    #[command(flatten)]
    db: DbArg,
    /// TOML config file (see `memtrail config --default`); flags override it.
    #[arg(short, long, env = "MEMTRAIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Time between samples, at least 100ms [default: 5s]
    #[arg(short, long, value_name = "DURATION")]
    interval: Option<HumanDuration>,
    /// How long history is kept [default: 24h]
    #[arg(long, value_name = "DURATION")]
    retention: Option<HumanDuration>,
    /// Stop after this long [default: until SIGINT/SIGTERM]
    #[arg(long, value_name = "DURATION")]
    duration: Option<HumanDuration>,
    /// Watch this process (repeatable).
    #[arg(short, long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Watch every process with this name, including ones that start later (repeatable).
    #[arg(short, long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Record every process with this name summed into one target of kind group (one series
    /// across restarts; [[groups]] in the config also match command lines) (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// Watch a cgroup's memory against its own limit: a directory of the memory hierarchy, e.g.
    /// /system.slice/nginx.service or /sys/fs/cgroup/... (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<String>,
    /// Watch a systemd unit's cgroup (NAME or NAME.service; repeatable).
    #[arg(long = "unit", value_name = "NAME")]
    units: Vec<String>,
    /// Watch memtrail itself.
    #[arg(long = "self")]
    watch_self: bool,
    /// With no other target: watch the N largest processes by RSS [default: 10]
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Watch a process found by --name or --top only once it has run this long, so short jobs
    /// (a connection's backend, a compiler) do not each become a series [default: 30s; 0s for
    /// --name]
    #[arg(long, value_name = "DURATION")]
    min_age: Option<HumanDuration>,
    /// Watch a process found by --name or --top only while its RSS is at least this [default: 0]
    #[arg(long, value_name = "SIZE")]
    min_rss: Option<ByteSize>,
    /// Do not record system-wide memory.
    #[arg(long)]
    no_system: bool,
    /// Also record each target's whole process tree, summed (tree_rss, tree_procs, ...).
    #[arg(long)]
    include_children: bool,
    /// How often to read PSS/USS from smaps_rollup, or "off" [default: 60s]
    #[arg(long, value_name = "DURATION|off")]
    smaps_interval: Option<OrOff<HumanDuration>>,
    /// Skip PSS/USS for processes above this RSS, or "unlimited" [default: 2GiB]
    #[arg(long, value_name = "SIZE|unlimited")]
    smaps_max_rss: Option<OrOff<ByteSize>>,
    /// How often to read each mapping's RSS from smaps (map_rss:[heap], ...), or "off"; skipped
    /// above --smaps-max-rss [default: 5m]
    #[arg(long, value_name = "DURATION|off")]
    maps_interval: Option<OrOff<HumanDuration>>,
    /// How often to look for new --name matches and re-rank --top [default: 5s]
    #[arg(long, value_name = "DURATION")]
    discovery_interval: Option<HumanDuration>,
    /// How long a write waits for another connection's lock [default: 5s]
    #[arg(long, value_name = "DURATION")]
    busy_timeout: Option<HumanDuration>,
    /// Samples held in memory while the database cannot be written (disk full, locked) [default: 100000]
    #[arg(long, value_name = "SAMPLES")]
    write_buffer: Option<usize>,
    /// Commit ticks together at most this often: cheaper at short intervals; ticks between
    /// commits wait in the spool, so a crash loses at most the tick in flight. Stretched for
    /// ticks over 1,000 samples, in proportion, up to 10s (a whole host)
    /// [default: 1s; 0s commits every tick]
    #[arg(long, value_name = "DURATION")]
    commit_interval: Option<HumanDuration>,
    /// Evaluate the alert rules at most this often (each evaluation runs every rule's query)
    /// [default: 10s]
    #[arg(long, env = "MEMTRAIL_EVALUATION_INTERVAL", value_name = "DURATION")]
    evaluation_interval: Option<HumanDuration>,
    /// Evaluate no alert rules (neither the built-in ones nor the config's [[rules]]): a recorder
    /// that only records. The same as `[alerts] default_rules = false` with no [[rules]].
    #[arg(long)]
    no_rules: bool,
    /// Serve the HTTP API on this address [default: 127.0.0.1:8181]
    #[arg(long, env = "MEMTRAIL_LISTEN", value_name = "IP:PORT")]
    listen: Option<String>,
    /// Do not serve the HTTP API (wins over --listen and MEMTRAIL_LISTEN).
    #[arg(long)]
    no_api: bool,
    /// File holding the bearer token POSTs need (also MEMTRAIL_TOKEN); required beyond loopback.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Launch this command, watch it and its children, stop when it exits and exit with its code.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

impl RecordArgs {
    fn partial(&self) -> RecordPartial {
        let some_if = |v: bool, x: bool| v.then_some(x);
        RecordPartial {
            interval: self.interval,
            retention: self.retention,
            duration: self.duration,
            pids: (!self.pids.is_empty()).then(|| self.pids.clone()),
            names: (!self.names.is_empty()).then(|| self.names.clone()),
            groups: (!self.groups.is_empty()).then(|| self.groups.clone()),
            cgroups: (!self.cgroups.is_empty()).then(|| self.cgroups.clone()),
            units: (!self.units.is_empty()).then(|| self.units.clone()),
            watch_self: some_if(self.watch_self, true),
            top: self.top,
            min_age: self.min_age,
            min_rss: self.min_rss,
            system: some_if(self.no_system, false),
            include_children: some_if(self.include_children, true),
            smaps_interval: self.smaps_interval,
            smaps_max_rss: self.smaps_max_rss,
            maps_interval: self.maps_interval,
            discovery_interval: self.discovery_interval,
            busy_timeout: self.busy_timeout,
            write_buffer: self.write_buffer,
            commit_interval: self.commit_interval,
            evaluation_interval: self.evaluation_interval,
        }
    }
}

/// `memtrail record`: the settings from the file and the flags, then the recorder with its API.
pub(super) fn run_record(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let (file, db) = config_and_db(args.config.as_deref(), args.db.db.clone())?;
    let mut settings = settings_in_force(
        &file,
        db,
        file.record.clone().overlay(args.partial()),
        args.command.clone(),
    )?;
    if args.no_rules {
        settings.rules.clear();
    }
    settings.api = file.api.build(
        args.listen.as_deref(),
        args.no_api,
        args.token_file.as_deref(),
        std::env::var("MEMTRAIL_TOKEN").ok(),
    )?;
    crate::record::recorder::record(settings, |listener, shared| {
        Box::pin(crate::serve::http::serve(
            listener,
            crate::serve::api::router(shared),
        ))
    })
}

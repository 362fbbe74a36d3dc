-- memtrail's schema as the migrations in migrations/ leave it, dumped from a database they
-- built. A new database is created from this file in one transaction (store::create_schema)
-- and its refinery history records every migration as applied; an existing one is migrated.
-- Generated: after adding a migration run `MEMTRAIL_BLESS=1 cargo test --lib squashed_schema`.
-- version: 4

CREATE TABLE alert_state (
    rule                TEXT    NOT NULL,
    series_id           INTEGER NOT NULL,
    evaluated_ms        INTEGER NOT NULL,
    observed            REAL,             -- NULL: no fresh value (series stale, target gone, warming up)
    pending_since_ms    INTEGER,          -- the condition has held since (for `for`)
    firing_since_ms     INTEGER,
    last_notified_ms    INTEGER,
    suppressed_since_ms INTEGER,          -- a firing held back by cooldown, once per episode
    PRIMARY KEY (rule, series_id)
) WITHOUT ROWID;

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    rule       TEXT    NOT NULL,
    series_id  INTEGER NOT NULL,
    event      TEXT    NOT NULL CHECK (event IN ('firing', 'resolved', 'repeat', 'suppressed')),
    kind       TEXT,
    target     TEXT,
    pid        INTEGER,
    metric     TEXT,
    observed   REAL,
    threshold  REAL    NOT NULL,
    comparison TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    message    TEXT    NOT NULL
);

CREATE TABLE cleanup_runs (
    id             INTEGER PRIMARY KEY,
    trigger        TEXT    NOT NULL CHECK (trigger IN ('periodic', 'manual', 'alert')),
    rule           TEXT,             -- the alert rule, for trigger = 'alert'
    level          TEXT    NOT NULL CHECK (level IN ('normal', 'aggressive')),
    pid            INTEGER NOT NULL,
    start_time_ms  INTEGER NOT NULL, -- the target's start time: with pid, its identity
    target         TEXT    NOT NULL,
    actions        TEXT    NOT NULL, -- the actions run, in order (e.g. "signal SIGUSR1, url http://...")
    started_ms     INTEGER NOT NULL,
    ended_ms       INTEGER,
    outcome        TEXT CHECK (outcome IN ('ok', 'failed', 'timed_out', 'abandoned')),
    exit_code      INTEGER,          -- of the last command action
    http_status    INTEGER,          -- of the last URL action
    output         TEXT,             -- per action: outcome and captured output (truncated), JSON
    rss_before     REAL,             -- bytes
    rss_after      REAL,             -- bytes, after the settle delay
    freed_bytes    REAL              -- rss_before - rss_after
);

CREATE TABLE notifications (
    id       INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    ts_ms    INTEGER NOT NULL,
    channel  TEXT    NOT NULL CHECK (channel IN ('webhook', 'command')),
    ok       INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    detail   TEXT
);

CREATE TABLE refinery_schema_history(
             version int4 PRIMARY KEY,
             name VARCHAR(255),
             applied_on VARCHAR(255),
             checksum VARCHAR(255));

CREATE TABLE "rules" (
    name         TEXT PRIMARY KEY,
    metric       TEXT    NOT NULL,
    kind         TEXT,              -- target selector: NULL = any
    target       TEXT,              -- target name, NULL = any
    pid          INTEGER,           -- NULL = any
    comparison   TEXT    NOT NULL CHECK (comparison IN
                   ('greater_than', 'less_than', 'percent_change', 'slope', 'time_to_limit',
                    'increase')),   -- increase: a counter's growth over the window
    threshold    REAL    NOT NULL,
    hysteresis   REAL    NOT NULL,
    window_ms    INTEGER NOT NULL,
    for_ms       INTEGER NOT NULL,
    cooldown_ms  INTEGER NOT NULL,
    repeat_ms    INTEGER,
    warmup_ms    INTEGER NOT NULL,
    limit_value  REAL,              -- time_to_limit: the limit (NULL = the target's own `limit`
                                    -- series, else the system total / 100 %)
    severity     TEXT    NOT NULL,
    actions      TEXT    NOT NULL
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    started_ms   INTEGER NOT NULL,
    stopped_ms   INTEGER,
    last_tick_ms INTEGER,
    stop_reason  TEXT,             -- signal, duration, command exited, targets gone, crashed, error
    version      TEXT    NOT NULL, -- memtrail version
    interval_ms  INTEGER NOT NULL,
    retention_ms INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL, -- the recorder's own pid
    settings     TEXT              -- the effective settings, JSON
);

CREATE TABLE samples (
    series_id INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    ts_ms     INTEGER NOT NULL,
    value     REAL    NOT NULL,
    PRIMARY KEY (series_id, ts_ms)
) WITHOUT ROWID;

CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    target_id INTEGER NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
    metric    TEXT    NOT NULL,     -- rss, vms, swap, threads, fds, pss, uss, tree_rss, ...
    unit      TEXT    NOT NULL CHECK (unit IN ('bytes', 'percent', 'count')),
    UNIQUE (target_id, metric)
);

CREATE TABLE "targets" (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('process', 'system', 'custom', 'cgroup')),
    pid           INTEGER,          -- NULL for system and cgroup targets
    start_time_ms INTEGER,          -- process start (Unix ms); NULL for others
    name          TEXT    NOT NULL, -- process name (comm), 'system', the custom source's name, or
                                    -- the cgroup's path in its hierarchy (e.g. /system.slice/x.service)
    cmdline       TEXT,             -- processes: the command line; cgroups: the directory read
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    gone_ms       INTEGER           -- set when the process exited (or the cgroup was removed)
);

CREATE INDEX alerts_by_rule ON alerts (rule, series_id, event, ts_ms);

CREATE INDEX alerts_by_time ON alerts (ts_ms);

CREATE INDEX cleanup_runs_by_target ON cleanup_runs (pid, start_time_ms, ended_ms);

CREATE INDEX cleanup_runs_by_time ON cleanup_runs (started_ms);

CREATE INDEX series_metric ON series (metric);

CREATE UNIQUE INDEX targets_identity
    ON targets (kind, name, ifnull(pid, -1), ifnull(start_time_ms, -1));

CREATE INDEX targets_pid ON targets (pid);

CREATE VIEW alert_conditions AS
SELECT st.*, r.comparison, r.threshold, r.hysteresis, r.for_ms, r.cooldown_ms, r.repeat_ms,
       r.severity, r.actions,
       CASE r.comparison
         WHEN 'less_than'     THEN st.observed < r.threshold
         WHEN 'time_to_limit' THEN st.observed < r.threshold
         ELSE st.observed > r.threshold
       END IS 1 AS holds,
       CASE r.comparison
         WHEN 'less_than'     THEN st.observed IS NULL OR st.observed >= r.threshold + r.hysteresis
         WHEN 'time_to_limit' THEN st.observed IS NULL OR st.observed >= r.threshold + r.hysteresis
         ELSE st.observed IS NULL OR st.observed <= r.threshold - r.hysteresis
       END AS clears
FROM alert_state AS st JOIN rules AS r ON r.name = st.rule;

CREATE VIEW series_info AS
SELECT s.id AS series_id, s.metric, s.unit, t.id AS target_id, t.kind, t.name AS target, t.pid,
       t.start_time_ms, t.first_seen_ms, t.gone_ms, t.cmdline
FROM series AS s JOIN targets AS t ON t.id = s.target_id;

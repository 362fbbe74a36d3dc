-- memtrail schema, version 1: what is measured (targets, series), the readings (samples), and the
-- recorder runs. Migrations are only ever added, never edited.
--
-- Units: every memory figure is stored in BYTES; percentages in PERCENT (0-100); counts as plain
-- numbers. Each series names its unit in series.unit ('bytes', 'percent', 'count').
-- Times: integer Unix milliseconds (UTC) everywhere (*_ms columns).

-- A thing being measured: a process (identified by pid AND start time, so a reused pid is a new
-- target), the system, or the source of custom metrics an application reports.
CREATE TABLE targets (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('process', 'system', 'custom')),
    pid           INTEGER,          -- NULL for system
    start_time_ms INTEGER,          -- process start (Unix ms); NULL for system
    name          TEXT    NOT NULL, -- process name (comm), 'system', or the custom source's name
    cmdline       TEXT,             -- full command line, arguments joined by spaces
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    gone_ms       INTEGER           -- set when the process was seen to exit
);
CREATE UNIQUE INDEX targets_identity
    ON targets (kind, name, ifnull(pid, -1), ifnull(start_time_ms, -1));
CREATE INDEX targets_pid ON targets (pid);

-- The series dictionary: one metric of one target.
CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    target_id INTEGER NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
    metric    TEXT    NOT NULL,     -- rss, vms, swap, threads, fds, pss, uss, tree_rss, ...
    unit      TEXT    NOT NULL CHECK (unit IN ('bytes', 'percent', 'count')),
    UNIQUE (target_id, metric)
);
CREATE INDEX series_metric ON series (metric);

-- The readings. Narrow and clustered by (series, time): every analysis is a range over one
-- series ordered by time, which is a single contiguous b-tree range here.
CREATE TABLE samples (
    series_id INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    ts_ms     INTEGER NOT NULL,
    value     REAL    NOT NULL,
    PRIMARY KEY (series_id, ts_ms)
) WITHOUT ROWID;

-- One row per `memtrail record` run. stopped_ms stays NULL while it runs; a run found still open
-- by the next recorder is closed as 'crashed' at its last tick. Gaps between runs are gaps in the
-- history, never interpolated.
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

-- memtrail schema, version 3: the cleanup audit. One row per cleanup of one target process: what
-- triggered it, which actions ran and how they ended, and the target's memory just before and
-- after (after the settle delay). A row with ended_ms NULL is a cleanup in progress: it is also the
-- claim that keeps a second cleanup of the same process from starting, across processes.
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
CREATE INDEX cleanup_runs_by_target ON cleanup_runs (pid, start_time_ms, ended_ms);
CREATE INDEX cleanup_runs_by_time ON cleanup_runs (started_ms);

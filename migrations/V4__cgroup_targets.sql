-- memtrail schema, version 4: cgroups as targets (a container's or systemd unit's memory against
-- its own limit), and the `increase` comparison for counters (e.g. any new oom_kill event).
--
-- SQLite cannot change a CHECK constraint in place: targets and rules are rebuilt (copy, drop,
-- rename; the store runs migrations with foreign keys off so dropping a table cascades nowhere),
-- and the views over them are dropped first and created again unchanged.

DROP VIEW series_info;
DROP VIEW alert_conditions;

CREATE TABLE targets_v4 (
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
INSERT INTO targets_v4 SELECT id, kind, pid, start_time_ms, name, cmdline, first_seen_ms,
                              last_seen_ms, gone_ms FROM targets;
DROP TABLE targets;
ALTER TABLE targets_v4 RENAME TO targets;
CREATE UNIQUE INDEX targets_identity
    ON targets (kind, name, ifnull(pid, -1), ifnull(start_time_ms, -1));
CREATE INDEX targets_pid ON targets (pid);

CREATE TABLE rules_v4 (
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
INSERT INTO rules_v4 SELECT * FROM rules;
DROP TABLE rules;
ALTER TABLE rules_v4 RENAME TO rules;

-- Unchanged from version 2.
CREATE VIEW series_info AS
SELECT s.id AS series_id, s.metric, s.unit, t.id AS target_id, t.kind, t.name AS target, t.pid,
       t.start_time_ms, t.first_seen_ms, t.gone_ms, t.cmdline
FROM series AS s JOIN targets AS t ON t.id = s.target_id;

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

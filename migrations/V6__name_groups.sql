-- memtrail schema, version 6: name groups as targets — every process with a name, or whose
-- command line matches a pattern, summed into one target of kind 'group' (as process-exporter's
-- name groups), so a service's memory keeps one series across restarts and worker churn.
--
-- The kind's CHECK is widened the way version 4 did it: the views over `targets` are dropped,
-- the table rebuilt (copy, drop, rename), the views created again unchanged.

DROP VIEW series_info;
DROP VIEW timeline;

CREATE TABLE targets_v6 (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('process', 'system', 'custom', 'cgroup', 'group')),
    pid           INTEGER,          -- NULL for system, cgroup and group targets
    start_time_ms INTEGER,          -- process start (Unix ms); NULL for others
    name          TEXT    NOT NULL, -- process name (comm), 'system', the custom source's name,
                                    -- the cgroup's path, or the name group's name
    cmdline       TEXT,             -- processes: the command line; cgroups: the directory read;
                                    -- groups: what selects the members
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    gone_ms       INTEGER           -- set when the process exited (or the cgroup was removed)
);
INSERT INTO targets_v6 SELECT id, kind, pid, start_time_ms, name, cmdline, first_seen_ms,
                              last_seen_ms, gone_ms FROM targets;
DROP TABLE targets;
ALTER TABLE targets_v6 RENAME TO targets;
CREATE UNIQUE INDEX targets_identity
    ON targets (kind, name, ifnull(pid, -1), ifnull(start_time_ms, -1));
CREATE INDEX targets_pid ON targets (pid);

-- Unchanged from version 2.
CREATE VIEW series_info AS
SELECT s.id AS series_id, s.metric, s.unit, t.id AS target_id, t.kind, t.name AS target, t.pid,
       t.start_time_ms, t.first_seen_ms, t.gone_ms, t.cmdline
FROM series AS s JOIN targets AS t ON t.id = s.target_id;

-- Unchanged from version 5.
CREATE VIEW timeline AS
SELECT ts_ms, kind, label, target, pid FROM events
UNION ALL
SELECT ts_ms, 'alert', rule || ' ' || event, target, pid
FROM alerts WHERE event IN ('firing', 'resolved')
UNION ALL
SELECT started_ms, 'cleanup', 'cleanup ' || coalesce(outcome, 'running'), target, pid
FROM cleanup_runs
UNION ALL
SELECT coalesce(t.start_time_ms, t.first_seen_ms), 'restart',
       'restart: pid ' || p.pid || ' -> ' || t.pid, t.name, t.pid
FROM targets AS t
JOIN targets AS p ON p.id = (
    SELECT id FROM targets
    WHERE kind = 'process' AND name = t.name AND gone_ms IS NOT NULL
      AND last_seen_ms < t.first_seen_ms
    ORDER BY last_seen_ms DESC LIMIT 1)
WHERE t.kind = 'process';

-- memtrail schema, version 5: events, to tell a series' changes by. What only memtrail's caller
-- knows (an annotation: `memtrail annotate`, POST /internal/memory/event) and a launched command's
-- start and exit are written to `events`; alerts, cleanups and restarts, which other tables hold
-- already, join them in the `timeline` view, so nothing is written twice.

CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    ts_ms  INTEGER NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('annotation', 'command_started', 'command_exited')),
    label  TEXT    NOT NULL,
    target TEXT,             -- the target's name it concerns; NULL = the whole host
    pid    INTEGER           -- only this process of that name; NULL = any
);
CREATE INDEX events_by_time ON events (ts_ms);

-- Every event, oldest first when ordered by ts_ms: the events table; alerts firing and resolved;
-- cleanup runs (at their start); and restarts: a process that takes the name of one that was last
-- seen alive before it was first seen (a new pid for the same name, not a second one beside it;
-- the restart names the one that exited last).
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

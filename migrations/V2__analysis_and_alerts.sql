-- memtrail schema, version 2: what the analysis queries need — a view naming each series' target,
-- the alert rules in force, each rule's state per series, and the alerts audit table.

-- Every series with its target, for queries that select by metric, kind, name or pid.
CREATE VIEW series_info AS
SELECT s.id AS series_id, s.metric, s.unit, t.id AS target_id, t.kind, t.name AS target, t.pid,
       t.start_time_ms, t.first_seen_ms, t.gone_ms, t.cmdline
FROM series AS s JOIN targets AS t ON t.id = s.target_id;

-- The rules in force, written by the recorder at start from its config (and by backtest into a
-- scratch copy). threshold, hysteresis: in the unit of the comparison (the series' unit for
-- greater_than/less_than, percent for percent_change, percent per hour for slope, seconds for
-- time_to_limit).
CREATE TABLE rules (
    name         TEXT PRIMARY KEY,
    metric       TEXT    NOT NULL,
    kind         TEXT,              -- target selector: NULL = any
    target       TEXT,              -- target name, NULL = any
    pid          INTEGER,           -- NULL = any
    comparison   TEXT    NOT NULL CHECK (comparison IN
                   ('greater_than', 'less_than', 'percent_change', 'slope', 'time_to_limit')),
    threshold    REAL    NOT NULL,
    hysteresis   REAL    NOT NULL,
    window_ms    INTEGER NOT NULL,
    for_ms       INTEGER NOT NULL,
    cooldown_ms  INTEGER NOT NULL,
    repeat_ms    INTEGER,           -- NULL = never re-notify while firing
    warmup_ms    INTEGER NOT NULL,  -- skip a target's first minutes after it starts
    limit_value  REAL,              -- time_to_limit: the limit (NULL = system total / 100 %)
    severity     TEXT    NOT NULL,
    actions      TEXT    NOT NULL   -- JSON array: log, webhook, command
);

-- Each rule's latest evaluation on each series it matches.
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

-- The comparison of each state with its rule: `holds` (the condition is true now) and `clears`
-- (a firing alert may resolve: the value crossed back by the hysteresis margin, or is gone).
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

-- The audit: one row per event. 'suppressed' is a firing held back by the cooldown (once per
-- episode), so suppressions are counted, not lost.
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
CREATE INDEX alerts_by_rule ON alerts (rule, series_id, event, ts_ms);
CREATE INDEX alerts_by_time ON alerts (ts_ms);

-- Deliveries of alerts to webhooks and commands, with their outcome.
CREATE TABLE notifications (
    id       INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    ts_ms    INTEGER NOT NULL,
    channel  TEXT    NOT NULL CHECK (channel IN ('webhook', 'command')),
    ok       INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    detail   TEXT
);

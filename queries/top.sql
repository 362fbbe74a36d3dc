-- top: what `memtrail top` lists at each refresh: every target that is still there, by its leading
-- series (the metric that speaks for it: rss for a process, mem_used for the system, usage for a
-- cgroup, else its first metric by name) with the newest value. A target whose newest sample is
-- more than :max_age_ms older than the newest of all (one whose recorder stopped watching it) is
-- left out. One primary-key seek per leading series.
--
-- Parameters (name = default  kind):
--   :now_ms = now             time      as of this time (Unix ms)
--   :max_age_ms = 300000      duration  how much older than the newest sample a target's may be (5 min)
-- Result columns:
--   series_id, kind, target, pid, metric, unit, ts_ms, value
WITH ranked AS (
    SELECT si.series_id, si.kind, si.target, si.pid, si.metric, si.unit,
           row_number() OVER (PARTITION BY si.target_id
                              ORDER BY CASE si.metric WHEN 'rss' THEN 0 WHEN 'mem_used' THEN 1
                                                      WHEN 'usage' THEN 2 WHEN 'tree_rss' THEN 3
                                                      ELSE 9 END, si.metric) AS rk
    FROM series_info AS si
    WHERE si.gone_ms IS NULL
),
newest AS MATERIALIZED (
    SELECT r.*, (SELECT max(ts_ms) FROM samples
                  WHERE series_id = r.series_id AND ts_ms <= :now_ms) AS ts_ms
    FROM ranked AS r
    WHERE r.rk = 1
)
SELECT series_id, kind, target, pid, metric, unit, ts_ms,
       (SELECT value FROM samples AS s
         WHERE s.series_id = newest.series_id AND s.ts_ms = newest.ts_ms) AS value
FROM newest
WHERE ts_ms IS NOT NULL AND ts_ms >= (SELECT max(ts_ms) FROM newest) - :max_age_ms
ORDER BY CASE kind WHEN 'system' THEN 0 ELSE 1 END, target, pid;

-- regression: which application object a process's memory tracks. For each process and each
-- custom metric pushed for it (under the same pid, or by a source named as the process), the
-- least-squares line of the process's memory against the metric over the window: bytes per unit
-- of the metric and R² ("rss rises 1.0 MiB per chat_session, R² 0.97"); and the metric's own
-- least-squares slope in time, so a growing object count shows ("objects of type Session grow
-- 400/h"). Each push is paired with the process's first sample at or after it (a primary-key
-- seek), so pushes at any rate line up with the sampler's ticks.
--
-- Parameters (name = default  kind):
--   :now_ms = now          time      as of this time (Unix ms)
--   :window_ms = 3600000   duration  the window (1 h)
--   :memory = rss          text      the process's metric to explain (rss, rss_anon, tree_rss, ...)
--   :min_pairs = 10        integer   fewer pairs in the window: no line
--   :target = NULL         text      only processes with this name
--   :pid = NULL            integer   only this pid
-- Result columns:
--   series_id (the memory's series), target, pid, memory, metric_series_id, metric (the custom
--   metric), pairs, bytes_per_unit (the line's slope), r2 (0-1; NULL when either side is
--   constant), metric_first, metric_last (its first and last pushed value in the window),
--   metric_per_hour (the metric's least-squares slope in time, per hour)
WITH links AS MATERIALIZED (
    SELECT m.series_id, m.target, m.pid, m.metric AS memory, c.series_id AS metric_series_id,
           c.metric
    FROM series_info AS m
    JOIN series_info AS c ON c.kind = 'custom' AND (c.pid = m.pid OR c.target = m.target)
    WHERE m.kind = 'process' AND m.metric = :memory
      AND (:target IS NULL OR m.target = :target) AND (:pid IS NULL OR m.pid = :pid)
),
pairs AS MATERIALIZED (
    SELECT l.series_id, l.metric_series_id, cs.ts_ms / 3600000.0 AS t, cs.value AS x,
           (SELECT value FROM samples
             WHERE series_id = l.series_id AND ts_ms >= cs.ts_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms LIMIT 1) AS y
    FROM links AS l
    JOIN samples AS cs ON cs.series_id = l.metric_series_id
     AND cs.ts_ms >= :now_ms - :window_ms AND cs.ts_ms <= :now_ms
),
-- Means first: the sums of squares are then taken about them, which keeps byte counts' precision.
means AS MATERIALIZED (
    SELECT series_id, metric_series_id, count(*) AS n, avg(x) AS mx, avg(y) AS my, avg(t) AS mt,
           min(t) AS t0, max(t) AS t1
    FROM pairs WHERE y IS NOT NULL
    GROUP BY series_id, metric_series_id
    HAVING count(*) >= :min_pairs
),
sums AS (
    SELECT p.series_id, p.metric_series_id, m.n,
           sum((p.x - m.mx) * (p.y - m.my)) AS sxy, sum((p.x - m.mx) * (p.x - m.mx)) AS sxx,
           sum((p.y - m.my) * (p.y - m.my)) AS syy, sum((p.t - m.mt) * (p.x - m.mx)) AS stx,
           sum((p.t - m.mt) * (p.t - m.mt)) AS stt,
           max(CASE WHEN p.t = m.t0 THEN p.x END) AS metric_first,
           max(CASE WHEN p.t = m.t1 THEN p.x END) AS metric_last
    FROM pairs AS p JOIN means AS m
      ON m.series_id = p.series_id AND m.metric_series_id = p.metric_series_id
    WHERE p.y IS NOT NULL
    GROUP BY p.series_id, p.metric_series_id
)
SELECT l.series_id, l.target, l.pid, l.memory, l.metric_series_id, l.metric, s.n AS pairs,
       s.sxy / nullif(s.sxx, 0) AS bytes_per_unit,
       s.sxy * s.sxy / nullif(s.sxx * s.syy, 0) AS r2,
       s.metric_first, s.metric_last,
       s.stx / nullif(s.stt, 0) AS metric_per_hour
FROM sums AS s
JOIN links AS l ON l.series_id = s.series_id AND l.metric_series_id = s.metric_series_id
ORDER BY l.series_id, r2 DESC;

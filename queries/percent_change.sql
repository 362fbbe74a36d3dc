-- percent_change: for each series, the robust level at the window's end against the robust level
-- at its start, in percent. Each end's level is the median of :points evenly spaced instants over
-- the first (or last) :end_fraction of the window, each taking the first sample at or after it (a
-- primary-key seek: no scan of the window), so one spike, a heavy-tailed sample or a single
-- garbage-collector peak cannot make a change on its own. A series is reported only once its
-- samples cover at least :min_coverage of the window: no false growth right after start.
--
-- Parameters (name = default  kind):
--   :now_ms = now        time      as of this time (Unix ms)
--   :window_ms = 600000  duration  the window (10 min)
--   :min_coverage = 0.9  number    the samples must span at least this fraction of the window
--   :end_fraction = 0.2  number    each end's slice, as a fraction of the window
--   :points = 15         integer   instants per end whose samples give its median
--   :series_id = NULL    integer   only this series
--   :metric = NULL       text      only this metric
--   :kind = NULL         text      only targets of this kind
--   :target = NULL       text      only targets with this name
--   :pid = NULL          integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, first_ts_ms, first_value (the start's median),
--   ts_ms, value (the end's median), coverage (0-1), percent_change (NULL when the start is 0)

-- `ends` is MATERIALIZED: flattened, SQLite would copy each end's subquery wherever its column
-- appears.
WITH ends AS MATERIALIZED (
    SELECT i.series_id, i.kind, i.target, i.pid, i.metric, i.unit,
           (SELECT ts_ms FROM samples WHERE series_id = i.series_id
              AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
            ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples WHERE series_id = i.series_id
              AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
            ORDER BY ts_ms DESC LIMIT 1) AS ts_ms
    FROM series_info AS i
    WHERE (:series_id IS NULL OR i.series_id = :series_id) AND (:metric IS NULL OR i.metric = :metric)
      AND (:kind IS NULL OR i.kind = :kind) AND (:target IS NULL OR i.target = :target)
      AND (:pid IS NULL OR i.pid = :pid)
),
covered AS MATERIALIZED (
    SELECT * FROM ends WHERE ts_ms - first_ts_ms >= :min_coverage * :window_ms
),
g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :points),
-- Each end's instants: the start's over [first, first + end), the end's over [last - end, last].
pts AS MATERIALIZED (
    SELECT c.series_id, e.side,
           (SELECT value FROM samples
             WHERE series_id = c.series_id
               AND ts_ms >= CASE e.side
                 WHEN 0 THEN c.first_ts_ms + CAST((g.i + 0.5) * :end_fraction * (c.ts_ms - c.first_ts_ms)
                                                  / :points AS INTEGER)
                 ELSE c.ts_ms - CAST((:points - g.i - 0.5) * :end_fraction * (c.ts_ms - c.first_ts_ms)
                                     / :points AS INTEGER) END
               AND ts_ms <= c.ts_ms
             ORDER BY ts_ms LIMIT 1) AS v
    FROM covered AS c CROSS JOIN g CROSS JOIN (SELECT 0 AS side UNION ALL SELECT 1) AS e
),
levels AS (
    SELECT series_id, side, avg(v) AS level
    FROM (SELECT series_id, side, v,
                 row_number() OVER (PARTITION BY series_id, side ORDER BY v) AS rk,
                 count(*) OVER (PARTITION BY series_id, side) AS cnt
          FROM pts WHERE v IS NOT NULL)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id, side
)
SELECT c.series_id, c.kind, c.target, c.pid, c.metric, c.unit,
       c.first_ts_ms, a.level AS first_value, c.ts_ms, b.level AS value,
       (c.ts_ms - c.first_ts_ms) * 1.0 / :window_ms AS coverage,
       (b.level - a.level) * 100.0 / nullif(abs(a.level), 0) AS percent_change
FROM covered AS c
JOIN levels AS a ON a.series_id = c.series_id AND a.side = 0
JOIN levels AS b ON b.series_id = c.series_id AND b.side = 1
ORDER BY percent_change DESC;

-- percent_change: for each series, the newest value against the earliest value inside the
-- window, in percent. Both ends are found by primary-key seeks (no scan of the window), so a rule
-- on every series costs two seeks per series. A series is reported only once its samples cover at
-- least :min_coverage of the window: no false growth right after start.
--
-- Parameters (name = default):
--   :now_ms = now           as of this time (Unix ms)
--   :window_ms = 600000     the window (10 min)
--   :min_coverage = 0.9     the samples must span at least this fraction of the window
--   :series_id = NULL       only this series
--   :metric = NULL          only this metric
--   :kind = NULL            only targets of this kind
--   :target = NULL          only targets with this name
--   :pid = NULL             only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, first_ts_ms, first_value, ts_ms, value,
--   coverage (0-1), percent_change (NULL when the first value is 0)

-- `ends` is MATERIALIZED and the values are joined: flattened, SQLite would copy each end's
-- subquery wherever its column appears, and preparing those copies cost 2.4x this.
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
)
SELECT e.series_id, e.kind, e.target, e.pid, e.metric, e.unit,
       e.first_ts_ms, a.value AS first_value, e.ts_ms, b.value AS value,
       (e.ts_ms - e.first_ts_ms) * 1.0 / :window_ms AS coverage,
       (b.value - a.value) * 100.0 / nullif(abs(a.value), 0) AS percent_change
FROM ends AS e
JOIN samples AS a ON a.series_id = e.series_id AND a.ts_ms = e.first_ts_ms
JOIN samples AS b ON b.series_id = e.series_id AND b.ts_ms = e.ts_ms
WHERE e.ts_ms - e.first_ts_ms >= :min_coverage * :window_ms
ORDER BY percent_change DESC;

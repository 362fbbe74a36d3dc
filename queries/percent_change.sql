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
WITH sel AS MATERIALIZED (
    SELECT * FROM series_info
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
ends AS (
    SELECT sel.series_id,
           (SELECT ts_ms FROM samples WHERE series_id = sel.series_id
              AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
            ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples WHERE series_id = sel.series_id
              AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
            ORDER BY ts_ms DESC LIMIT 1) AS ts_ms
    FROM sel
),
f AS (
    SELECT ends.series_id, ends.first_ts_ms, ends.ts_ms,
           (SELECT value FROM samples WHERE series_id = ends.series_id AND ts_ms = ends.first_ts_ms)
             AS first_value,
           (SELECT value FROM samples WHERE series_id = ends.series_id AND ts_ms = ends.ts_ms)
             AS value
    FROM ends
    WHERE ends.ts_ms IS NOT NULL
)
SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit,
       f.first_ts_ms, f.first_value, f.ts_ms, f.value,
       (f.ts_ms - f.first_ts_ms) * 1.0 / :window_ms AS coverage,
       (f.value - f.first_value) * 100.0 / nullif(abs(f.first_value), 0) AS percent_change
FROM f JOIN sel ON sel.series_id = f.series_id
WHERE f.ts_ms - f.first_ts_ms >= :min_coverage * :window_ms
ORDER BY percent_change DESC;

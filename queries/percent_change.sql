-- percent_change: for each series, the newest value against the earliest value inside the
-- window, in percent. The window is a frame over timestamps (RANGE BETWEEN :window_ms PRECEDING),
-- so the same expression gives a rolling percent change at every sample. A series is reported only
-- once its samples cover at least :min_coverage of the window: no false growth right after start.
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
framed AS (
    SELECT x.series_id, x.ts_ms, x.value,
           first_value(x.ts_ms) OVER w AS first_ts_ms,
           first_value(x.value) OVER w AS first_value,
           row_number() OVER (PARTITION BY x.series_id ORDER BY x.ts_ms DESC) AS newest
    FROM sel CROSS JOIN samples AS x ON x.series_id = sel.series_id
    WHERE x.ts_ms >= :now_ms - :window_ms AND x.ts_ms <= :now_ms
    WINDOW w AS (PARTITION BY x.series_id ORDER BY x.ts_ms
                 RANGE BETWEEN :window_ms PRECEDING AND CURRENT ROW)
)
SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit,
       f.first_ts_ms, f.first_value, f.ts_ms, f.value,
       (f.ts_ms - f.first_ts_ms) * 1.0 / :window_ms AS coverage,
       (f.value - f.first_value) * 100.0 / nullif(abs(f.first_value), 0) AS percent_change
FROM framed AS f JOIN sel ON sel.series_id = f.series_id
WHERE f.newest = 1 AND f.ts_ms - f.first_ts_ms >= :min_coverage * :window_ms
ORDER BY percent_change DESC;

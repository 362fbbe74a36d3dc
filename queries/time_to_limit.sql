-- time_to_limit: when each series will reach a limit if it keeps its trend, like Prometheus
-- predict_linear: a least-squares line over every sample of the window, extended to the limit.
-- NULL when the fitted line is not rising (or already past the limit: 0), and for series of what
-- is available or a capacity (mem_available, mem_total, swap_total, limit, high, has_limit).
-- Rules and the API use `trend`'s robust projection instead; this is the Prometheus-style one.
--
-- Parameters (name = default  kind):
--   :now_ms = now         time      as of this time (Unix ms)
--   :window_ms = 3600000  duration  the window the line is fitted over (1 h)
--   :limit = NULL         size      the limit in the series' unit; NULL = the target's own `limit` series
--                                   (a cgroup's memory limit) for bytes series, else the system's total
--                                   memory; 100 for percent series
--   :min_samples = 10     integer   fewer samples in the window: no prediction
--   :series_id = NULL     integer   only this series
--   :metric = NULL        text      only this metric
--   :kind = NULL          text      only targets of this kind
--   :target = NULL        text      only targets with this name
--   :pid = NULL           integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, samples, last_ts_ms, fitted_now, slope_per_hour,
--   limit_value, seconds_to_limit, limit_at_ms
WITH sel AS MATERIALIZED (
    SELECT * FROM series_info
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
-- One pass straight over the primary key, series by series (grouping needs no sort). x is seconds
-- since the window start, so squared Unix milliseconds never appear; no R² is needed here, so the
-- values are summed as they are.
sums AS (
    SELECT series_id, count(*) AS n,
           sum((ts_ms - (:now_ms - :window_ms)) / 1000.0) AS sx, sum(value) AS sy,
           sum(((ts_ms - (:now_ms - :window_ms)) / 1000.0) * ((ts_ms - (:now_ms - :window_ms)) / 1000.0)) AS sxx,
           sum(((ts_ms - (:now_ms - :window_ms)) / 1000.0) * value) AS sxy
    FROM samples
    WHERE series_id IN (SELECT series_id FROM sel) AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
    GROUP BY series_id
),
fit AS (
    SELECT series_id, n, last_ts_ms,
           (n * sxy - sx * sy) / nullif(n * sxx - sx * sx, 0) AS slope_s,
           (sy - (n * sxy - sx * sy) / nullif(n * sxx - sx * sx, 0) * sx) / n
             + (n * sxy - sx * sy) / nullif(n * sxx - sx * sx, 0)
               * (last_ts_ms - (:now_ms - :window_ms)) / 1000.0 AS fitted_now
    FROM (SELECT sums.*,
                 (SELECT ts_ms FROM samples WHERE series_id = sums.series_id
                    AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
                  ORDER BY ts_ms DESC LIMIT 1) AS last_ts_ms
          FROM sums)
),
system_total AS (
    SELECT (SELECT value FROM samples WHERE series_id = si.series_id ORDER BY ts_ms DESC LIMIT 1) AS total
    FROM series_info AS si WHERE si.kind = 'system' AND si.metric = 'mem_total'
    LIMIT 1
),
limited AS (
    SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit,
           fit.n AS samples, fit.last_ts_ms, fit.fitted_now, fit.slope_s * 3600 AS slope_per_hour,
           -- What is available or a capacity (mem_available, a limit) has no limit to reach.
           CASE WHEN sel.metric IN ('mem_available', 'mem_total', 'swap_total', 'limit', 'high',
                                    'has_limit') THEN NULL ELSE
           coalesce(:limit, CASE sel.unit
               WHEN 'percent' THEN 100.0
               WHEN 'bytes' THEN coalesce(
                 (SELECT x.value FROM series AS l JOIN samples AS x ON x.series_id = l.id
                  WHERE l.target_id = sel.target_id AND l.metric = 'limit'
                  ORDER BY x.ts_ms DESC LIMIT 1),
                 (SELECT total FROM system_total)) END) END
             AS limit_value,
           fit.slope_s
    FROM fit JOIN sel ON sel.series_id = fit.series_id
    WHERE fit.n >= :min_samples
)
SELECT series_id, kind, target, pid, metric, unit, samples, last_ts_ms, fitted_now, slope_per_hour,
       limit_value,
       CASE WHEN slope_s > 0 AND limit_value IS NOT NULL
            THEN max(0.0, (limit_value - fitted_now) / slope_s) END AS seconds_to_limit,
       CASE WHEN slope_s > 0 AND limit_value IS NOT NULL
            THEN last_ts_ms + CAST(max(0.0, (limit_value - fitted_now) / slope_s) * 1000 AS INTEGER)
       END AS limit_at_ms
FROM limited
ORDER BY seconds_to_limit IS NULL, seconds_to_limit;

-- trend: least-squares fit of each series over a window, and a verdict.
--
-- One pass over the window's samples sums, per slice (:buckets equal slices of the window), what
-- a least-squares fit needs (n, x, y, xx, xy, yy) and takes the slice's floor (its minimum); window
-- aggregates over the slices then give the fit's sums for the whole window. Sums are additive, so
-- the fit is exactly the one over every sample, at the cost of one pass. x is seconds since the
-- window start and y the value minus the window's first value, so squared Unix milliseconds never
-- lose precision. A second fit runs through the slices' floors, so a leak hidden under a garbage
-- collector's saw-tooth (the floor rises after each collection) is seen, while a saw-tooth on a
-- flat floor is not.
--
-- Verdict: 'insufficient_data' below :min_samples samples or :min_coverage of the window spanned;
-- 'increasing' when either fit has R² >= :min_r2, a slope of at least :min_pct_per_hour % of the
-- mean per hour, and a fitted growth over the covered span of at least :min_growth_pct % of the
-- mean; 'decreasing' likewise downwards; otherwise 'stable'.
--
-- Parameters (name = default):
--   :now_ms = now              as of this time (Unix ms)
--   :window_ms = 3600000       the window (1 h)
--   :buckets = 12              slices of the window for the floor fit
--   :min_samples = 10          fewer samples: insufficient_data
--   :min_coverage = 0.5        samples spanning less of the window: insufficient_data
--   :min_r2 = 0.5              fit quality needed for a verdict other than stable
--   :min_pct_per_hour = 2.0    relative slope needed (percent of the mean per hour)
--   :min_growth_pct = 1.0      fitted growth over the covered span needed (percent of the mean)
--   :series_id = NULL          only this series
--   :metric = NULL             only this metric
--   :kind = NULL               only targets of this kind
--   :target = NULL             only targets with this name
--   :pid = NULL                only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, samples, first_ts_ms, last_ts_ms, coverage, mean,
--   slope_per_hour (units/h), pct_per_hour, intercept (fitted value at the window start),
--   fitted_now (fitted value at the newest sample), r2, growth_pct,
--   floor_buckets, floor_pct_per_hour, floor_r2, floor_growth_pct, classification,
--   limit_value, seconds_to_limit (when the fitted line reaches the limit, as time_to_limit.sql
--   computes it from the same fit: the target's own `limit` series for bytes, else the system's
--   total memory; 100 for percent; NULL when the line is not rising or below :min_samples)
WITH sel AS MATERIALIZED (
    SELECT si.*,
           (SELECT value FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms LIMIT 1) AS y0,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms DESC LIMIT 1) AS last_ts_ms
    FROM series_info AS si
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
k(slice) AS (SELECT 0 UNION ALL SELECT slice + 1 FROM k WHERE slice + 1 < :buckets),
-- Each series' slices as [lo, hi) ranges of the primary key, in key order: a sample at ts falls in
-- slice floor((ts - start) * buckets / window) (the newest slice also takes ts = :now_ms). Walking
-- these ranges in order lets the grouping below follow the primary key instead of sorting.
bounds AS MATERIALIZED (
    SELECT sel.series_id, sel.y0, k.slice,
           :now_ms - :window_ms + (k.slice * :window_ms + :buckets - 1) / :buckets AS lo,
           CASE WHEN k.slice = :buckets - 1 THEN :now_ms + 1
                ELSE :now_ms - :window_ms + ((k.slice + 1) * :window_ms + :buckets - 1) / :buckets
           END AS hi
    FROM sel CROSS JOIN k
    WHERE sel.y0 IS NOT NULL
    ORDER BY sel.series_id, k.slice
),
slices AS (
    SELECT series_id, count(*) AS n, sum(x) AS sx, sum(y) AS sy, sum(x * x) AS sxx,
           sum(x * y) AS sxy, sum(y * y) AS syy,
           (slice + 0.5) * (:window_ms / 1000.0) / :buckets AS bx, min(y) AS fy
    FROM (SELECT b.series_id, b.slice, (x.ts_ms - (:now_ms - :window_ms)) / 1000.0 AS x,
                 x.value - b.y0 AS y
          FROM bounds AS b CROSS JOIN samples AS x
            ON x.series_id = b.series_id AND x.ts_ms >= b.lo AND x.ts_ms < b.hi)
    GROUP BY series_id, slice
),
fit AS (
    SELECT s.series_id, n, sx, sy, nb, sel.y0, sel.first_ts_ms, sel.last_ts_ms, sel.y0 + sy / n AS mean,
           (n * sxy - sx * sy) / nullif(n * sxx - sx * sx, 0) AS slope_s,
           (n * sxy - sx * sy) * (n * sxy - sx * sy)
             / nullif((n * sxx - sx * sx) * (n * syy - sy * sy), 0) AS r2,
           (nb * sbxy - sbx * sfy) / nullif(nb * sbxx - sbx * sbx, 0) AS floor_slope_s,
           (nb * sbxy - sbx * sfy) * (nb * sbxy - sbx * sfy)
             / nullif((nb * sbxx - sbx * sbx) * (nb * sfyy - sfy * sfy), 0) AS floor_r2
    FROM (SELECT series_id, sum(n) AS n, sum(sx) AS sx, sum(sy) AS sy, sum(sxx) AS sxx,
                 sum(sxy) AS sxy, sum(syy) AS syy, count(*) AS nb, sum(bx) AS sbx, sum(fy) AS sfy,
                 sum(bx * bx) AS sbxx, sum(bx * fy) AS sbxy, sum(fy * fy) AS sfyy
          FROM slices GROUP BY series_id) AS s
    JOIN sel ON sel.series_id = s.series_id
),
system_total AS (
    SELECT (SELECT value FROM samples WHERE series_id = si.series_id ORDER BY ts_ms DESC LIMIT 1) AS total
    FROM series_info AS si WHERE si.kind = 'system' AND si.metric = 'mem_total'
    LIMIT 1
),
judged AS (
    SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit,
           fit.n AS samples, fit.first_ts_ms, fit.last_ts_ms,
           (fit.last_ts_ms - fit.first_ts_ms) * 1.0 / :window_ms AS coverage,
           fit.mean,
           fit.slope_s * 3600 AS slope_per_hour,
           fit.slope_s * 3600 * 100.0 / nullif(abs(fit.mean), 0) AS pct_per_hour,
           fit.y0 + (fit.sy - fit.slope_s * fit.sx) / fit.n AS intercept,
           fit.y0 + (fit.sy - fit.slope_s * fit.sx) / fit.n
             + fit.slope_s * (fit.last_ts_ms - (:now_ms - :window_ms)) / 1000.0 AS fitted_now,
           fit.r2,
           fit.slope_s * (fit.last_ts_ms - fit.first_ts_ms) / 1000.0 * 100.0
             / nullif(abs(fit.mean), 0) AS growth_pct,
           fit.nb AS floor_buckets,
           CASE WHEN fit.nb * 2 >= :buckets
                THEN fit.floor_slope_s * 3600 * 100.0 / nullif(abs(fit.mean), 0) END AS floor_pct_per_hour,
           CASE WHEN fit.nb * 2 >= :buckets THEN fit.floor_r2 END AS floor_r2,
           CASE WHEN fit.nb * 2 >= :buckets
                THEN fit.floor_slope_s * (fit.last_ts_ms - fit.first_ts_ms) / 1000.0 * 100.0
                     / nullif(abs(fit.mean), 0) END AS floor_growth_pct,
           fit.slope_s,
           CASE sel.unit
             WHEN 'percent' THEN 100.0
             WHEN 'bytes' THEN coalesce(
               (SELECT x.value FROM series AS l JOIN samples AS x ON x.series_id = l.id
                WHERE l.target_id = sel.target_id AND l.metric = 'limit'
                ORDER BY x.ts_ms DESC LIMIT 1),
               (SELECT total FROM system_total)) END AS limit_value
    FROM fit JOIN sel ON sel.series_id = fit.series_id
)
SELECT series_id, kind, target, pid, metric, unit, samples, first_ts_ms, last_ts_ms, coverage,
       mean, slope_per_hour, pct_per_hour, intercept, fitted_now, r2, growth_pct, floor_buckets,
       floor_pct_per_hour, floor_r2, floor_growth_pct,
       CASE
         WHEN samples < :min_samples OR coverage < :min_coverage THEN 'insufficient_data'
         WHEN (r2 >= :min_r2 AND pct_per_hour >= :min_pct_per_hour AND growth_pct >= :min_growth_pct)
           OR (floor_r2 >= :min_r2 AND floor_pct_per_hour >= :min_pct_per_hour
               AND floor_growth_pct >= :min_growth_pct) THEN 'increasing'
         WHEN (r2 >= :min_r2 AND pct_per_hour <= -:min_pct_per_hour AND growth_pct <= -:min_growth_pct)
           OR (floor_r2 >= :min_r2 AND floor_pct_per_hour <= -:min_pct_per_hour
               AND floor_growth_pct <= -:min_growth_pct) THEN 'decreasing'
         ELSE 'stable'
       END AS classification,
       limit_value,
       CASE WHEN samples >= :min_samples AND slope_s > 0 AND limit_value IS NOT NULL
            THEN max(0.0, (limit_value - fitted_now) / slope_s) END AS seconds_to_limit
FROM judged
ORDER BY pct_per_hour DESC;

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
--   floor_buckets, floor_pct_per_hour, floor_r2, floor_growth_pct, classification
WITH sel AS MATERIALIZED (
    SELECT si.*,
           (SELECT value FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms LIMIT 1) AS y0
    FROM series_info AS si
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
pts AS (
    SELECT x.series_id, x.ts_ms, x.value,
           (x.ts_ms - (:now_ms - :window_ms)) / 1000.0 AS x,
           x.value - sel.y0 AS y,
           min(CAST((x.ts_ms - (:now_ms - :window_ms)) * :buckets / :window_ms AS INTEGER), :buckets - 1)
             AS slice
    FROM sel CROSS JOIN samples AS x ON x.series_id = sel.series_id
    WHERE x.ts_ms >= :now_ms - :window_ms AND x.ts_ms <= :now_ms
),
slices AS (
    SELECT series_id, slice, count(*) AS n, sum(x) AS sx, sum(y) AS sy, sum(x * x) AS sxx,
           sum(x * y) AS sxy, sum(y * y) AS syy, sum(value) AS sv,
           min(ts_ms) AS first_ts_ms, max(ts_ms) AS last_ts_ms,
           (slice + 0.5) * (:window_ms / 1000.0) / :buckets AS bx, min(y) AS fy
    FROM pts GROUP BY series_id, slice
),
rolling AS (
    SELECT series_id,
           sum(n) OVER w AS n, sum(sx) OVER w AS sx, sum(sy) OVER w AS sy,
           sum(sxx) OVER w AS sxx, sum(sxy) OVER w AS sxy, sum(syy) OVER w AS syy,
           sum(sv) OVER w AS sv, min(first_ts_ms) OVER w AS first_ts_ms, last_ts_ms,
           count(*) OVER w AS nb, sum(bx) OVER w AS sbx, sum(fy) OVER w AS sfy,
           sum(bx * bx) OVER w AS sbxx, sum(bx * fy) OVER w AS sbxy, sum(fy * fy) OVER w AS sfyy,
           row_number() OVER (PARTITION BY series_id ORDER BY slice DESC) AS newest
    FROM slices
    WINDOW w AS (PARTITION BY series_id ORDER BY slice
                 RANGE BETWEEN :buckets PRECEDING AND CURRENT ROW)
),
fit AS (
    SELECT r.series_id, r.n, r.first_ts_ms, r.last_ts_ms, r.sv / r.n AS mean, sel.y0, r.sx, r.sy,
           (n * sxy - sx * sy) / nullif(n * sxx - sx * sx, 0) AS slope_s,
           (n * sxy - sx * sy) * (n * sxy - sx * sy)
             / nullif((n * sxx - sx * sx) * (n * syy - sy * sy), 0) AS r2,
           r.nb,
           (nb * sbxy - sbx * sfy) / nullif(nb * sbxx - sbx * sbx, 0) AS floor_slope_s,
           (nb * sbxy - sbx * sfy) * (nb * sbxy - sbx * sfy)
             / nullif((nb * sbxx - sbx * sbx) * (nb * sfyy - sfy * sfy), 0) AS floor_r2
    FROM rolling AS r JOIN sel ON sel.series_id = r.series_id
    WHERE r.newest = 1
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
                     / nullif(abs(fit.mean), 0) END AS floor_growth_pct
    FROM fit JOIN sel ON sel.series_id = fit.series_id
)
SELECT *,
       CASE
         WHEN samples < :min_samples OR coverage < :min_coverage THEN 'insufficient_data'
         WHEN (r2 >= :min_r2 AND pct_per_hour >= :min_pct_per_hour AND growth_pct >= :min_growth_pct)
           OR (floor_r2 >= :min_r2 AND floor_pct_per_hour >= :min_pct_per_hour
               AND floor_growth_pct >= :min_growth_pct) THEN 'increasing'
         WHEN (r2 >= :min_r2 AND pct_per_hour <= -:min_pct_per_hour AND growth_pct <= -:min_growth_pct)
           OR (floor_r2 >= :min_r2 AND floor_pct_per_hour <= -:min_pct_per_hour
               AND floor_growth_pct <= -:min_growth_pct) THEN 'decreasing'
         ELSE 'stable'
       END AS classification
FROM judged
ORDER BY pct_per_hour DESC;

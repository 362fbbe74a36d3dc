-- trend: least-squares fit of each series over a window, and a verdict.
--
-- The fit uses window aggregates (sums of x, y, xx, xy, yy over a RANGE frame of :window_ms);
-- x is seconds since the window start and y the value minus the window's first value, so squared
-- Unix milliseconds never lose precision. A second fit runs through the floor of the series — the
-- minimum of each of :buckets equal slices of the window — so a leak hidden under a garbage
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
WITH sel AS (
    SELECT * FROM series_info
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
pts AS (
    SELECT x.series_id, x.ts_ms, x.value,
           (x.ts_ms - (:now_ms - :window_ms)) / 1000.0 AS x,
           x.value - first_value(x.value) OVER (PARTITION BY x.series_id ORDER BY x.ts_ms) AS y
    FROM sel JOIN samples AS x ON x.series_id = sel.series_id
    WHERE x.ts_ms >= :now_ms - :window_ms AND x.ts_ms <= :now_ms
),
rolling AS (
    SELECT series_id, ts_ms, value - y AS y0,
           count(*) OVER w AS n, sum(x) OVER w AS sx, sum(y) OVER w AS sy,
           sum(x * x) OVER w AS sxx, sum(x * y) OVER w AS sxy, sum(y * y) OVER w AS syy,
           min(ts_ms) OVER w AS first_ts_ms, avg(value) OVER w AS mean,
           row_number() OVER (PARTITION BY series_id ORDER BY ts_ms DESC) AS newest
    FROM pts
    WINDOW w AS (PARTITION BY series_id ORDER BY ts_ms
                 RANGE BETWEEN :window_ms PRECEDING AND CURRENT ROW)
),
fit AS (
    SELECT series_id, n, first_ts_ms, ts_ms AS last_ts_ms, mean, y0, sx, sy,
           (n * sxy - sx * sy) / nullif(n * sxx - sx * sx, 0) AS slope_s,
           (n * sxy - sx * sy) * (n * sxy - sx * sy)
             / nullif((n * sxx - sx * sx) * (n * syy - sy * sy), 0) AS r2
    FROM rolling WHERE newest = 1
),
floors AS (
    SELECT series_id,
           (min(CAST(x * :buckets / (:window_ms / 1000.0) AS INTEGER), :buckets - 1) + 0.5)
             * (:window_ms / 1000.0) / :buckets AS bx,
           min(y) AS fy
    FROM pts
    GROUP BY series_id, min(CAST(x * :buckets / (:window_ms / 1000.0) AS INTEGER), :buckets - 1)
),
floor_fit AS (
    SELECT series_id, count(*) AS nb,
           (count(*) * sum(bx * fy) - sum(bx) * sum(fy))
             / nullif(count(*) * sum(bx * bx) - sum(bx) * sum(bx), 0) AS slope_s,
           (count(*) * sum(bx * fy) - sum(bx) * sum(fy)) * (count(*) * sum(bx * fy) - sum(bx) * sum(fy))
             / nullif((count(*) * sum(bx * bx) - sum(bx) * sum(bx))
                      * (count(*) * sum(fy * fy) - sum(fy) * sum(fy)), 0) AS r2
    FROM floors GROUP BY series_id
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
           ff.nb AS floor_buckets,
           CASE WHEN ff.nb * 2 >= :buckets THEN ff.slope_s * 3600 * 100.0 / nullif(abs(fit.mean), 0) END
             AS floor_pct_per_hour,
           CASE WHEN ff.nb * 2 >= :buckets THEN ff.r2 END AS floor_r2,
           CASE WHEN ff.nb * 2 >= :buckets
                THEN ff.slope_s * (fit.last_ts_ms - fit.first_ts_ms) / 1000.0 * 100.0
                     / nullif(abs(fit.mean), 0) END AS floor_growth_pct
    FROM fit JOIN sel ON sel.series_id = fit.series_id
    LEFT JOIN floor_fit AS ff ON ff.series_id = fit.series_id
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

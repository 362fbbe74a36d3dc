-- onset: since when does each series grow? The best breakpoint between a flat and a rising segment
-- over the series' history in the window (default 24 h): a hinge, level c until the onset and
-- c + s * (t - onset) after it, fitted by least squares over :buckets slice levels (each the median
-- of the samples at :points evenly spaced instants in its slice, so a spike moves it little), for
-- every breakpoint on the slice grid; the best has the smallest squared residual. Its uncertainty is
-- the profile-likelihood range: every breakpoint whose residual n * ln(SSE(k) / SSE(best)) stays
-- within 3.84 (chi-squared, 1 degree of freedom, 95 %) of the best. A series that does not rise after
-- its best breakpoint (s <= 0) gets no onset.
--
-- Parameters (name = default  kind):
--   :now_ms = now            time      as of this time (Unix ms)
--   :window_ms = 86400000    duration  how far back to look for the onset (24 h)
--   :buckets = 96            integer   slices of the series' span in the window (15 min each over 24 h)
--   :points = 9              integer   instants per slice whose samples give the slice's median
--   :min_samples = 20        integer   fewer samples in the window: no onset
--   :series_id = NULL        integer   only this series
--   :metric = NULL           text      only this metric
--   :kind = NULL             text      only targets of this kind
--   :target = NULL           text      only targets with this name
--   :pid = NULL              integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, onset_ms (the best breakpoint), onset_low_ms,
--   onset_high_ms (its 95 % range, on the slice grid widened by half a slice), level_before (the flat level), slope_per_hour (after the onset,
--   units per hour), pct_per_hour (that slope in % of the level before), sse_gain (how much of a
--   flat line's squared residual the hinge removes, 0..1)
WITH sel AS MATERIALIZED (
    SELECT si.series_id, si.kind, si.target, si.pid, si.metric, si.unit,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms DESC LIMIT 1) AS last_ts_ms,
           (SELECT count(*) FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms
               AND ts_ms <= :now_ms) AS samples
    FROM series_info AS si
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
judged AS MATERIALIZED (
    SELECT * FROM sel
    WHERE samples >= :min_samples AND last_ts_ms > first_ts_ms
),
g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :buckets * :points),
pts AS MATERIALIZED (
    SELECT s.series_id, g.i / :points AS slice,
           (SELECT value FROM samples
             WHERE series_id = s.series_id
               AND ts_ms >= s.first_ts_ms + CAST((g.i + 0.5) * (s.last_ts_ms - s.first_ts_ms)
                                                 / (:buckets * :points) AS INTEGER)
             ORDER BY ts_ms LIMIT 1) AS v
    FROM judged AS s CROSS JOIN g
),
lv AS MATERIALIZED (
    SELECT series_id, slice, avg(v) AS y
    FROM (SELECT series_id, slice, v,
                 row_number() OVER (PARTITION BY series_id, slice ORDER BY v) AS rk,
                 count(*) OVER (PARTITION BY series_id, slice) AS cnt
          FROM pts WHERE v IS NOT NULL)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id, slice
),
-- Each slice level relative to the series' first one, so squares of byte counts keep precision.
rel AS MATERIALIZED (
    SELECT lv.series_id, lv.slice, lv.y - f.y AS y
    FROM lv JOIN lv AS f ON f.series_id = lv.series_id
                        AND f.slice = (SELECT min(slice) FROM lv AS m WHERE m.series_id = lv.series_id)
),
-- For each breakpoint k (a slice boundary), the hinge's regressor x = max(0, slice + 0.5 - k).
sums AS MATERIALIZED (
    SELECT r.series_id, k.i AS k, count(*) AS n,
           sum(max(0.0, r.slice + 0.5 - k.i)) AS sx,
           sum(max(0.0, r.slice + 0.5 - k.i) * max(0.0, r.slice + 0.5 - k.i)) AS sxx,
           sum(max(0.0, r.slice + 0.5 - k.i) * r.y) AS sxy,
           sum(r.y) AS sy, sum(r.y * r.y) AS syy
    FROM rel AS r JOIN g AS k ON k.i >= 1 AND k.i < :buckets
    GROUP BY r.series_id, k.i
),
fits AS MATERIALIZED (
    SELECT series_id, k, n, sy, syy,
           (n * sxy - sx * sy) / nullif(n * sxx - sx * sx, 0) AS s,
           sx, sxx, sxy
    FROM sums
),
sse AS MATERIALIZED (
    SELECT series_id, k, n, s,
           (sy - s * sx) / n AS c,
           -- Residual of the least-squares fit: syy - c sy - s sxy, with c = (sy - s sx) / n.
           max(syy - (sy - s * sx) / n * sy - s * sxy, 0.0) AS sse,
           syy - sy * sy / n AS sse_flat
    FROM fits
    WHERE s IS NOT NULL
),
best AS MATERIALIZED (
    SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY series_id ORDER BY sse, k) AS r
                   FROM sse)
    WHERE r = 1
),
-- The breakpoints the data cannot tell from the best (profile likelihood, 95 %); ln(x) from
-- SQLite's bundled build is not there, so n ln(a / b) <= 3.84 is a <= b exp(3.84 / n).
plausible AS (
    SELECT e.series_id, min(e.k) AS k_low, max(e.k) AS k_high
    FROM sse AS e JOIN best AS b ON b.series_id = e.series_id
    WHERE e.s > 0
      AND e.sse <= b.sse * (1 + 3.84 / b.n + 3.84 * 3.84 / (2 * b.n * b.n)
                             + 3.84 * 3.84 * 3.84 / (6 * b.n * b.n * b.n))
    GROUP BY e.series_id
)
SELECT j.series_id, j.kind, j.target, j.pid, j.metric, j.unit,
       j.first_ts_ms + CAST(b.k * (j.last_ts_ms - j.first_ts_ms) * 1.0 / :buckets AS INTEGER)
         AS onset_ms,
       -- The range on the slice grid, widened by half a slice each way (the grid's own step).
       j.first_ts_ms + CAST((p.k_low - 0.5) * (j.last_ts_ms - j.first_ts_ms) * 1.0 / :buckets
                            AS INTEGER) AS onset_low_ms,
       j.first_ts_ms + CAST((p.k_high + 0.5) * (j.last_ts_ms - j.first_ts_ms) * 1.0 / :buckets
                            AS INTEGER) AS onset_high_ms,
       f.y + b.c AS level_before,
       b.s / ((j.last_ts_ms - j.first_ts_ms) / 3600000.0 / :buckets) AS slope_per_hour,
       b.s / ((j.last_ts_ms - j.first_ts_ms) / 3600000.0 / :buckets) * 100.0
         / nullif(abs(f.y + b.c), 0) AS pct_per_hour,
       1.0 - b.sse / nullif(b.sse_flat, 0) AS sse_gain
FROM judged AS j
JOIN best AS b ON b.series_id = j.series_id
JOIN plausible AS p ON p.series_id = j.series_id
JOIN lv AS f ON f.series_id = j.series_id
            AND f.slice = (SELECT min(slice) FROM lv AS m WHERE m.series_id = j.series_id)
WHERE b.s > 0
ORDER BY j.kind, j.target, j.pid, j.metric;

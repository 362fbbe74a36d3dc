-- trend: is each series growing like a leak? Robust statistics over slice medians, and a verdict.
--
-- How: each series' window (the last :window_ms, or as much of it as the series has: a young
-- process is judged over its own history) is cut into :buckets equal slices. :points evenly spaced
-- instants per slice each take the first sample at or after them (a primary-key seek, so the cost
-- does not grow with the sampling rate), and the slice's level is the median of those: a short
-- spike, a heavy-tailed sample or a garbage collector's peak moves a median little. Over the
-- slice levels:
--   * Theil-Sen slope: the median of the slopes between every pair of slices, with Sen's 95 %
--     range (the pairwise slopes at the ranks a Mann-Kendall variance puts around the median);
--   * Mann-Kendall: S = the sum of the signs of every later-minus-earlier pair, z = (S - sign S) /
--     sd(S); z >= :min_z means the levels rise more consistently than chance allows (2.33: one-
--     sided p = 0.01), whatever the size of the noise;
--   * step test: the best single breakpoint splits the levels into two flat halves (each at its
--     median); when that step explains the levels at least twice as well as the Theil-Sen line
--     (L1 residuals), the change is one step, not a slope;
--   * early and late slope: Theil-Sen over each half of the slices, so growth that is levelling
--     off (a cache warming up) is told from growth that goes on or accelerates;
--   * slowing: the rates between neighbouring levels over the history recorded (the lookback's
--     groups, then the slices), tested for a trend by rank (Spearman's rho, z = rho sqrt(n - 1)):
--     a warm-up's rate falls for hours (a cache filling logarithmically over 3 h grows faster at
--     2 h than a leak, but ever more slowly), a leak's rate holds or rises from its onset;
--   * prior high: the highest level over the :lookback_ms before the window, at the slices' own
--     resolution (groups as wide as a slice, at most :lookback_groups, each the median of
--     :lookback_points instants). Growth that stays inside the range the series already spanned
--     (a cycle's rising phase, a saw-tooth's next tooth) is not a leak yet;
--   * scatter: how much the slice levels wander around their own course, from the median
--     absolute deviation of neighbouring levels' differences (robust to a step or a spike). A
--     new high must clear the prior one by :min_z standard deviations of it too: a noisy series
--     that wanders a little above its old range is not a leak.
--
-- Verdicts (classification):
--   insufficient_data  fewer than :min_samples samples, or the samples span under :min_span_ms;
--                      or, for a target older than the window (a process that started before it,
--                      the system, a cgroup), under :min_coverage of the window (an end counts as
--                      covered when a sample lies within a slice of it). A process younger
--                      than the window is judged over the life it has (from :min_span_ms on).
--   step               a one-time change: |z| >= :min_z, the step fits >= 2x better than a line, the
--                      levels after it stay flat (their range under a quarter of the jump: growth
--                      that starts and goes on is no step), and the jump is at least
--                      :min_growth_pct of the level
--   increasing         z >= :min_z, Theil-Sen slope >= :min_pct_per_hour of the level per hour,
--                      fitted growth over the span >= :min_growth_pct (a young series, whose span
--                      covers a fraction c of the window, needs :min_growth_pct / c: less evidence
--                      asks for a larger effect, so a cycle's first rising phase is not a leak),
--                      the newest level above the prior high by :min_growth_pct and by :min_z
--                      standard deviations of the levels' scatter, not levelling off
--   levelling_off      rising as above, but slowing: the late slope is under half the early one;
--                      or the rate falls (Spearman z <= -:min_z) by :min_pct_per_hour of the level
--                      between the earlier and the later half of the rates (their medians); or, for
--                      a process younger than the window, the late slope is under the early one
--                      by :min_pct_per_hour (growth since the start that slows at all is start-up)
--   fluctuating        rising or falling as above, but inside the range of the prior :lookback_ms
--                      A target older than the window that rises as above with under :min_prior_ms
--                      of history before the window (within a slice; a process that started less
--                      than that before the window needs only what it lived) is insufficient_data:
--                      without a prior range, the first rise of a saw-tooth whose teeth take about
--                      the window to rise, or of a cycle, looks just like a leak; a cycle whose
--                      period is up to twice the window shows its previous peak in a window of
--                      history before (the default: 1 h).
--   decreasing         z <= -:min_z, slope <= -:min_pct_per_hour, growth <= -:min_growth_pct
--   stable             otherwise
-- accelerating is 1 for an increasing series whose late slope is at least twice its early one.
--
-- Table columns: kind, target, pid, metric, classification, pct_per_hour, r2, seconds_to_limit, reason
--   (what `memtrail query trend` shows as a table; --wide, JSON and CSV give every column)
--
-- Parameters (name = default  kind):
--   :now_ms = now            time      as of this time (Unix ms)
--   :window_ms = 3600000     duration  the window (1 h)
--   :buckets = 12            integer   slices of the window
--   :points = 15             integer   instants per slice whose samples give the slice's median
--   :min_samples = 20        integer   fewer samples in the window: insufficient_data
--   :min_span_ms = 180000    duration  samples spanning less than this (3 min): insufficient_data
--   :min_coverage = 1.0      number    an older target's samples must span this fraction of the window
--   :min_z = 2.33            number    Mann-Kendall z needed for a rising or falling verdict
--   :min_pct_per_hour = 1.0  number    Theil-Sen slope needed (percent of the level per hour)
--   :min_growth_pct = 1.0    number    growth over the span, and margin over the prior high (percent)
--   :lookback_ms = 21600000  duration  history before the window whose range growth must leave (6 h)
--   :min_prior_ms = 3600000  duration  an older target's rise needs this much of it recorded (1 h)
--   :lookback_groups = 144   integer   at most this many groups of the lookback, each a level
--   :lookback_points = 6     integer   instants per lookback group
--   :limit = NULL            size      the limit for seconds_to_limit (default: below)
--   :series_id = NULL        integer   only this series
--   :metric = NULL           text      only this metric
--   :kind = NULL             text      only targets of this kind
--   :target = NULL           text      only targets with this name
--   :pid = NULL              integer   only this pid
--   :mappings = 1            integer   0: leave out the mapping groups' map_rss:* series
--   :count_all = 1           integer   0: count the window's samples only up to :min_samples, all a
--                                      verdict needs (the alert rules: the count is a scan, 21,600
--                                      rows a series for a 6 h window at 1 Hz)
--   :shards = 1              integer   judge only the series of targets whose id is :shard modulo
--   :shard = 0               integer   :shards (the recorder spreads a trend rule over evaluations)
-- Result columns:
--   series_id, kind, target, pid, metric, unit, samples (in the window; at most :min_samples
--   when :count_all = 0), first_ts_ms, last_ts_ms, coverage (span
--   over the window), mean (of the slice levels), slope_per_hour (Theil-Sen, units/h),
--   slope_low_per_hour, slope_high_per_hour (Sen's 95 % range), pct_per_hour (slope in % of the
--   mean per hour), intercept (line at the span's start), fitted_now (line at the newest sample),
--   r2 (least squares over the slice levels), growth_pct (fitted growth over the span, % of the
--   mean), mk_z, step_pct (the best step's jump, % of the mean), step_ratio (step residual / line
--   residual), early_pct_per_hour, late_pct_per_hour, prior_high (only for a series rising by
--   mk_z >= :min_z: no other verdict needs it), accelerating, classification,
--   reason (why there is no verdict yet), limit_value, seconds_to_limit, seconds_to_limit_low,
--   seconds_to_limit_high (only for increasing series: when the line reaches the limit at the
--   Theil-Sen slope, and at the two ends of its range), limit_at_ms (that time, Unix ms). The limit is :limit, else the target's own
--   `limit` series for bytes, else the system's total memory; 100 for percent. Series of what is
--   available or a capacity (mem_available, mem_total, swap_total, limit, high) get none.
WITH sel0 AS MATERIALIZED (
    SELECT si.series_id, si.target_id, si.kind, si.target, si.pid, si.metric, si.unit,
           -- Younger than the window: a process that started inside it, judged over its own life.
           coalesce(si.start_time_ms >= :now_ms - :window_ms, 0) AS young, si.start_time_ms,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms DESC LIMIT 1) AS last_ts_ms,
           -- Counted up to :min_samples only, unless :count_all (a count is a scan of the window).
           (SELECT count(*) FROM (SELECT 1 FROM samples
                                   WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms
                                     AND ts_ms <= :now_ms
                                   LIMIT CASE WHEN :count_all THEN -1 ELSE :min_samples END)) AS samples,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :window_ms - :lookback_ms
               AND ts_ms < :now_ms - :window_ms
             ORDER BY ts_ms LIMIT 1) AS lb_first_ts_ms,
           (SELECT max(ts_ms) FROM samples
             WHERE series_id = si.series_id AND ts_ms < :now_ms - :window_ms) AS before_ts_ms
    FROM series_info AS si
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
      AND (:mappings OR si.metric NOT LIKE 'map\_rss:%' ESCAPE '\')
      AND si.target_id % :shards = :shard
),
-- How much of the window the history covers: from the window's start when a sample lies less
-- than a slice before it, else from the first sample in it; to its end (now) when the newest
-- sample is less than a slice old. Samples a tick apart rarely fall on either end exactly.
sel AS MATERIALIZED (
    SELECT *,
           CASE WHEN last_ts_ms >= :now_ms - :window_ms / :buckets THEN :now_ms ELSE last_ts_ms END
           - CASE WHEN before_ts_ms >= :now_ms - :window_ms - :window_ms / :buckets
                  THEN :now_ms - :window_ms ELSE first_ts_ms END AS covered_ms
    FROM sel0
),
-- Mann-Kendall's variance of S for :buckets levels, and its square root by Newton's method (the
-- bundled SQLite has no sqrt()).
mk AS MATERIALIZED (SELECT :buckets * (:buckets - 1) * (2 * :buckets + 5) / 18.0 AS var,
              :buckets * (:buckets - 1) / 2 AS npairs),
newton(i, x) AS (SELECT 0, (SELECT var FROM mk) UNION ALL
                 SELECT i + 1, (x + (SELECT var FROM mk) / x) / 2 FROM newton WHERE i < 30),
sd AS MATERIALIZED (SELECT x AS sd FROM newton WHERE i = 30),
-- The lookback's groups are as wide as one slice of the window (at most :lookback_groups).
judged_sel AS MATERIALIZED (
    SELECT *, max(1, min(:lookback_groups,
                         (first_ts_ms - lb_first_ts_ms) * :buckets / :window_ms)) AS lb_groups
    FROM sel
    WHERE samples >= :min_samples AND last_ts_ms - first_ts_ms >= :min_span_ms
      AND (young OR covered_ms >= :min_coverage * :window_ms)
),
-- Instants, slices and lookback groups are counted out of these; none when the shard has no
-- target, so such an evaluation costs next to nothing. (Asked of series_info, not judged_sel:
-- SQLite expands a CTE at each reference, g is referenced through most of them, and a statement
-- may open at most 1,000 cursors in all.) Counted once into a table: SQLite runs a recursive CTE
-- again at each reference, 0.4 ms for 864 rows, and g is read by the instants, the lookback and
-- every breakpoint of the step test (half of a judgment's time went to counting).
g_rec(i) AS (SELECT 0 WHERE EXISTS (SELECT 1 FROM series_info WHERE target_id % :shards = :shard)
             UNION ALL
             SELECT i + 1 FROM g_rec
              WHERE i + 1 < max(:buckets * :points, :lookback_groups * :lookback_points)),
g AS MATERIALIZED (SELECT i FROM g_rec),
pts AS MATERIALIZED (
    SELECT s.series_id, g.i / :points AS slice,
           (SELECT value FROM samples
             WHERE series_id = s.series_id
               AND ts_ms >= s.first_ts_ms + CAST((g.i + 0.5) * (s.last_ts_ms - s.first_ts_ms)
                                                 / (:buckets * :points) AS INTEGER)
             ORDER BY ts_ms LIMIT 1) AS v
    FROM judged_sel AS s CROSS JOIN g
    WHERE g.i < :buckets * :points
),
-- flat: every level of the series is the same (an idle process's memory, a thread count that never
-- moves: most of a host's series). Nothing is fitted to a flat series (the pairs, the halves, the
-- scatter and the step test leave it out, which is most of a judgment's cost): `line` and `stats`
-- give it the flat line's figures, the ones the fits would have found.
lv AS MATERIALIZED (
    SELECT series_id, slice, avg(v) AS m,
           count(*) OVER (PARTITION BY series_id) > 1
             AND max(avg(v)) OVER (PARTITION BY series_id) = min(avg(v)) OVER (PARTITION BY series_id)
             AS flat
    FROM (SELECT series_id, slice, v,
                 row_number() OVER (PARTITION BY series_id, slice ORDER BY v) AS rk,
                 count(*) OVER (PARTITION BY series_id, slice) AS cnt
          FROM pts WHERE v IS NOT NULL)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id, slice
),
-- Every pair of slices: the slope in units per slice, and the sign of the change.
pairs AS MATERIALIZED (
    SELECT a.series_id, a.slice AS sa, b.slice AS sb, (b.m - a.m) * 1.0 / (b.slice - a.slice) AS d,
           CASE WHEN b.m > a.m THEN 1 WHEN b.m < a.m THEN -1 ELSE 0 END AS sg
    FROM lv AS a JOIN lv AS b ON b.series_id = a.series_id AND b.slice > a.slice
    WHERE NOT a.flat
),
-- Theil-Sen over all pairs, with Sen's range: ranks (N -+ 1.96 sd) / 2 of the sorted slopes.
ranked_pairs AS MATERIALIZED (
    SELECT series_id, d, sg, sa, sb,
           row_number() OVER (PARTITION BY series_id ORDER BY d) AS rk,
           count(*) OVER (PARTITION BY series_id) AS np
    FROM pairs
),
ts AS MATERIALIZED (
    SELECT series_id, sum(sg) AS s,
           avg(CASE WHEN rk IN ((np + 1) / 2, (np + 2) / 2) THEN d END) AS d,
           min(CASE WHEN rk >= max(1, CAST((np - 1.96 * (SELECT sd FROM sd)) / 2 AS INTEGER))
                    THEN d END) AS d_low,
           max(CASE WHEN rk <= min(np, CAST((np + 1.96 * (SELECT sd FROM sd)) / 2 AS INTEGER) + 1)
                    THEN d END) AS d_high
    FROM ranked_pairs GROUP BY series_id
),
-- Theil-Sen over each half of the slices alone.
halves AS MATERIALIZED (
    SELECT series_id, half, avg(d) AS d
    FROM (SELECT series_id, half, d,
                 row_number() OVER (PARTITION BY series_id, half ORDER BY d) AS rk,
                 count(*) OVER (PARTITION BY series_id, half) AS cnt
          FROM (SELECT series_id, d, CASE WHEN sb < :buckets / 2 THEN 0 ELSE 1 END AS half
                FROM pairs WHERE sb < :buckets / 2 OR sa >= :buckets / 2))
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id, half
),
-- How much the slice levels scatter around their own course: neighbouring levels differ by the
-- slope plus two levels' noise, so the noise variance is (1.4826 MAD of those differences)^2 / 2.
lv_diff AS MATERIALIZED (
    SELECT a.series_id, b.m - a.m AS dm
    FROM lv AS a JOIN lv AS b ON b.series_id = a.series_id AND b.slice = a.slice + 1
    WHERE NOT a.flat
),
dm_median AS MATERIALIZED (
    SELECT series_id, avg(dm) AS med
    FROM (SELECT series_id, dm,
                 row_number() OVER (PARTITION BY series_id ORDER BY dm) AS rk,
                 count(*) OVER (PARTITION BY series_id) AS cnt
          FROM lv_diff)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id
),
scatter AS MATERIALIZED (
    SELECT series_id, 1.4826 * avg(dev) * 1.4826 * avg(dev) / 2 AS level_var
    FROM (SELECT x.series_id, abs(x.dm - m.med) AS dev,
                 row_number() OVER (PARTITION BY x.series_id ORDER BY abs(x.dm - m.med)) AS rk,
                 count(*) OVER (PARTITION BY x.series_id) AS cnt
          FROM lv_diff AS x JOIN dm_median AS m ON m.series_id = x.series_id)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id
),
-- The line, in slices from the span's start: value = a + d * x; slice i's level sits at i + 0.5,
-- and a is the median of m - d * (i + 0.5).
icept AS MATERIALIZED (
    SELECT series_id, avg(r) AS a
    FROM (SELECT lv.series_id, lv.m - ts.d * (lv.slice + 0.5) AS r,
                 row_number() OVER (PARTITION BY lv.series_id ORDER BY lv.m - ts.d * (lv.slice + 0.5)) AS rk,
                 count(*) OVER (PARTITION BY lv.series_id) AS cnt
          FROM lv JOIN ts ON ts.series_id = lv.series_id)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id
),
-- A flat series has no Theil-Sen line: its line is its level (slope 0, intercept the level).
line AS MATERIALIZED (
    SELECT series_id, sum(abs(m - (a + d * (slice + 0.5)))) AS resid,
           -- The least-squares sums over m - a: near zero, so squares of byte counts keep their
           -- precision.
           avg(m) AS mean, count(*) AS n, sum(slice) AS sx, sum(m - a) AS sy,
           sum(slice * slice) AS sxx, sum(slice * (m - a)) AS sxy, sum((m - a) * (m - a)) AS syy,
           max(CASE WHEN slice = :buckets - 1 THEN m END) AS newest_level, max(flat) AS flat
    FROM (SELECT lv.series_id, lv.slice, lv.m, lv.flat,
                 CASE WHEN lv.flat THEN lv.m ELSE i.a END AS a,
                 CASE WHEN lv.flat THEN 0 ELSE ts.d END AS d
          FROM lv LEFT JOIN ts ON ts.series_id = lv.series_id
          LEFT JOIN icept AS i ON i.series_id = lv.series_id
          WHERE lv.flat OR (ts.series_id IS NOT NULL AND i.series_id IS NOT NULL))
    GROUP BY series_id
),
-- Every breakpoint k: each side at its median; the best k has the smallest L1 residual.
sides AS (
    SELECT lv.series_id, g.i AS k, lv.slice >= g.i AS right_side, lv.m
    FROM lv JOIN g ON g.i >= 1 AND g.i < :buckets
    WHERE NOT lv.flat
),
side_medians AS MATERIALIZED (
    SELECT series_id, k, right_side, avg(m) AS med
    FROM (SELECT series_id, k, right_side, m,
                 row_number() OVER (PARTITION BY series_id, k, right_side ORDER BY m) AS rk,
                 count(*) OVER (PARTITION BY series_id, k, right_side) AS cnt
          FROM sides)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id, k, right_side
),
steps AS MATERIALIZED (
    SELECT s.series_id, s.k, sum(abs(s.m - sm.med)) AS resid,
           max(CASE WHEN s.right_side THEN s.m END) - min(CASE WHEN s.right_side THEN s.m END)
             AS right_range,
           max(CASE WHEN s.right_side THEN sm.med END)
             - max(CASE WHEN NOT s.right_side THEN sm.med END) AS jump
    FROM sides AS s JOIN side_medians AS sm
      ON sm.series_id = s.series_id AND sm.k = s.k AND sm.right_side = s.right_side
    GROUP BY s.series_id, s.k
),
best_step AS MATERIALIZED (
    SELECT series_id, resid, jump, right_range
    FROM (SELECT *, row_number() OVER (PARTITION BY series_id ORDER BY resid, k) AS r FROM steps)
    WHERE r = 1
),
-- The lookback's levels: the median of each group's instants; the prior high is the largest.
lb_pts AS MATERIALIZED (
    SELECT s.series_id, g.i / :lookback_points AS grp,
           (SELECT value FROM samples
             WHERE series_id = s.series_id
               AND ts_ms >= s.lb_first_ts_ms + CAST((g.i + 0.5) * (s.first_ts_ms - s.lb_first_ts_ms)
                                                    / (s.lb_groups * :lookback_points) AS INTEGER)
               AND ts_ms < s.first_ts_ms
             ORDER BY ts_ms LIMIT 1) AS v
    FROM judged_sel AS s CROSS JOIN g
    WHERE s.lb_first_ts_ms IS NOT NULL AND g.i < s.lb_groups * :lookback_points
      -- Only a series rising as an increasing verdict needs (Mann-Kendall z >= :min_z) is
      -- compared with its prior high: the lookback's instants are most of a judgment's seeks.
      AND s.series_id IN (SELECT series_id FROM ts
                           WHERE (s - CASE WHEN s > 0 THEN 1 WHEN s < 0 THEN -1 ELSE 0 END)
                                 / (SELECT sd FROM sd) >= :min_z)
),
lb_lv AS MATERIALIZED (
    SELECT series_id, grp, avg(v) AS m
    FROM (SELECT series_id, grp, v,
                 row_number() OVER (PARTITION BY series_id, grp ORDER BY v) AS rk,
                 count(*) OVER (PARTITION BY series_id, grp) AS cnt
          FROM lb_pts WHERE v IS NOT NULL)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id, grp
),
prior AS MATERIALIZED (
    SELECT series_id, max(m) AS prior_high FROM lb_lv GROUP BY series_id
),
-- Is the growth slowing? The rate between neighbouring levels over the history recorded (the
-- lookback's groups, then the window's slices, each at its centre time), and a rank test for a
-- trend in those rates (Spearman's rho between the rates' order in time and in size, z = rho
-- sqrt(n - 1)): a warm-up's rate falls for hours, a leak's holds (or rises from its onset). The
-- lookback's levels are there only for a series rising as an increasing verdict needs.
hist AS MATERIALIZED (
    SELECT l.series_id,
           s.lb_first_ts_ms + (l.grp + 0.5) * (s.first_ts_ms - s.lb_first_ts_ms) / s.lb_groups AS t,
           l.m
    FROM lb_lv AS l JOIN judged_sel AS s ON s.series_id = l.series_id
    UNION ALL
    SELECT lv.series_id,
           s.first_ts_ms + (lv.slice + 0.5) * (s.last_ts_ms - s.first_ts_ms) / :buckets AS t, lv.m
    FROM lv JOIN judged_sel AS s ON s.series_id = lv.series_id
    WHERE NOT lv.flat
),
rates AS MATERIALIZED (
    SELECT series_id, r, row_number() OVER (PARTITION BY series_id ORDER BY t) AS k,
           -- The rate's rank by size, ties at their average rank.
           rank() OVER (PARTITION BY series_id ORDER BY r)
             + (count(*) OVER (PARTITION BY series_id, r) - 1) / 2.0 AS q,
           count(*) OVER (PARTITION BY series_id) AS n
    FROM (SELECT series_id, t,
                 (m - lag(m) OVER w) / nullif(t - lag(t) OVER w, 0) AS r
          FROM hist WINDOW w AS (PARTITION BY series_id ORDER BY t))
    WHERE r IS NOT NULL
),
-- Spearman's rho is the correlation of the ranks (compared squared below: the bundled SQLite has
-- no sqrt()); the median rate of the earlier and the later half of the rates say by how much.
decel AS MATERIALIZED (
    SELECT series_id, n, skq / n - sk / n * sq / n AS cov, skk / n - sk / n * sk / n AS vk,
           sqq / n - sq / n * sq / n AS vq, early_rate, late_rate
    FROM (SELECT series_id, count(*) * 1.0 AS n, sum(k) * 1.0 AS sk, sum(q) AS sq,
                 sum(k * k) * 1.0 AS skk, sum(q * q) AS sqq, sum(k * q) AS skq,
                 avg(CASE WHEN NOT late AND hr IN ((hc + 1) / 2, (hc + 2) / 2) THEN r END)
                   AS early_rate,
                 avg(CASE WHEN late AND hr IN ((hc + 1) / 2, (hc + 2) / 2) THEN r END) AS late_rate
          FROM (SELECT *, row_number() OVER (PARTITION BY series_id, late ORDER BY r) AS hr,
                       count(*) OVER (PARTITION BY series_id, late) AS hc
                FROM (SELECT *, k * 2 > n AS late FROM rates))
          GROUP BY series_id)
    WHERE n >= 4
),
system_total AS MATERIALIZED (
    SELECT (SELECT value FROM samples WHERE series_id = si.series_id ORDER BY ts_ms DESC LIMIT 1) AS total
    FROM series_info AS si WHERE si.kind = 'system' AND si.metric = 'mem_total'
    LIMIT 1
),
stats AS (
    SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit, sel.samples, sel.young,
           sel.first_ts_ms, sel.last_ts_ms, sel.covered_ms,
           (sel.last_ts_ms - sel.first_ts_ms) * 1.0 / :window_ms AS coverage,
           (sel.last_ts_ms - sel.first_ts_ms) / 1000.0 / :buckets AS slice_s,
           -- A flat series: the flat line's (no slope, no step, no scatter; r2 undefined).
           line.mean, coalesce(ts.s, flat.zero) AS s, coalesce(ts.d, flat.zero) AS d,
           coalesce(ts.d_low, flat.zero) AS d_low, coalesce(ts.d_high, flat.zero) AS d_high,
           coalesce(icept.a, CASE WHEN line.flat THEN line.mean END) AS a, line.resid,
           line.newest_level,
           (line.n * line.sxy - line.sx * line.sy) * (line.n * line.sxy - line.sx * line.sy)
             / nullif((line.n * line.sxx - line.sx * line.sx) * (line.n * line.syy - line.sy * line.sy), 0)
             AS r2,
           (coalesce(ts.s, flat.zero) - CASE WHEN ts.s > 0 THEN 1 WHEN ts.s < 0 THEN -1 ELSE 0 END)
             / (SELECT sd FROM sd) AS mk_z,
           coalesce(best_step.jump, flat.zero) AS jump,
           coalesce(best_step.resid, flat.zero) AS step_resid,
           coalesce(best_step.right_range, flat.zero) AS right_range,
           coalesce(sel.first_ts_ms - sel.lb_first_ts_ms, 0) AS prior_ms,
           -- The prior a target can have: none from before a process started.
           min(:min_prior_ms, coalesce(sel.first_ts_ms - sel.start_time_ms, :min_prior_ms))
             AS prior_needed_ms,
           coalesce((SELECT d FROM halves AS h WHERE h.series_id = sel.series_id AND h.half = 0),
                    flat.zero) AS d_early,
           coalesce((SELECT d FROM halves AS h WHERE h.series_id = sel.series_id AND h.half = 1),
                    flat.zero) AS d_late,
           prior.prior_high, coalesce(scatter.level_var, flat.zero) AS level_var,
           -- The rate falls: Spearman's z = rho sqrt(n - 1) <= -:min_z,
           -- and by at least :min_pct_per_hour of the level (rates are in units per ms).
           coalesce(decel.cov < 0
                    AND decel.cov * decel.cov * (decel.n - 1) >= :min_z * :min_z * decel.vk * decel.vq
                    AND (decel.early_rate - decel.late_rate) * 3600000 * 100
                        >= :min_pct_per_hour * abs(line.mean),
                    0) AS slowing,
           CASE WHEN sel.metric IN ('mem_available', 'mem_total', 'swap_total', 'limit', 'high',
                                    'has_limit') THEN NULL
                WHEN :limit IS NOT NULL THEN :limit
                WHEN sel.unit = 'percent' THEN 100.0
                WHEN sel.unit = 'bytes' THEN coalesce(
                  (SELECT x.value FROM series AS l JOIN samples AS x ON x.series_id = l.id
                    WHERE l.target_id = sel.target_id AND l.metric = 'limit'
                    ORDER BY x.ts_ms DESC LIMIT 1),
                  (SELECT total FROM system_total)) END AS limit_value
    FROM sel
    LEFT JOIN ts ON ts.series_id = sel.series_id
    LEFT JOIN icept ON icept.series_id = sel.series_id
    LEFT JOIN line ON line.series_id = sel.series_id
    -- 0 for a flat series, NULL for any other (whose figures come from the fits, or are none).
    LEFT JOIN (SELECT 0.0 AS zero) AS flat ON line.flat
    LEFT JOIN best_step ON best_step.series_id = sel.series_id
    LEFT JOIN prior ON prior.series_id = sel.series_id
    LEFT JOIN scatter ON scatter.series_id = sel.series_id
    LEFT JOIN decel ON decel.series_id = sel.series_id
    WHERE sel.first_ts_ms IS NOT NULL
),
judged AS (
    SELECT *,
           d / nullif(slice_s, 0) * 3600 AS slope_per_hour,
           d / nullif(slice_s, 0) * 3600 * 100.0 / nullif(abs(mean), 0) AS pct_per_hour,
           d * :buckets * 100.0 / nullif(abs(mean), 0) AS growth_pct,
           a + d * :buckets AS fitted_now,
           CASE WHEN samples < :min_samples
                  THEN 'needs ' || :min_samples || ' samples, has ' || samples
                WHEN last_ts_ms - first_ts_ms < :min_span_ms
                  THEN 'needs ' || (:min_span_ms / 1000) || ' s of history, has '
                       || ((last_ts_ms - first_ts_ms) / 1000) || ' s'
                WHEN NOT young AND covered_ms < :min_coverage * :window_ms
                  THEN 'needs ' || CAST(:min_coverage * :window_ms / 1000 AS INTEGER)
                       || ' s of history (older than the window), has '
                       || (covered_ms / 1000) || ' s' END AS reason
    FROM stats
),
verdict AS (
    SELECT *,
           CASE
             WHEN reason IS NOT NULL THEN 'insufficient_data'
             WHEN abs(mk_z) >= :min_z AND step_resid * 2 <= resid AND right_range * 4 <= abs(jump)
                  AND abs(jump) * 100.0 / nullif(abs(mean), 0) >= :min_growth_pct THEN 'step'
             WHEN mk_z >= :min_z AND pct_per_hour >= :min_pct_per_hour
                  AND growth_pct >= :min_growth_pct * max(1.0, 1.0 / coverage) THEN
               CASE WHEN NOT young AND prior_ms + :window_ms / :buckets < prior_needed_ms
                      THEN 'insufficient_data'
                    WHEN (d_early > 0 AND d_late < d_early / 2) OR slowing
                         OR (young AND (d_early - d_late) / slice_s * 3600 * 100
                                       >= :min_pct_per_hour * abs(mean)) THEN 'levelling_off'
                    -- New: above the prior high by min_growth_pct of the level, and by more
                    -- than the levels' own scatter allows (min_z standard deviations).
                    WHEN prior_high IS NOT NULL
                         AND (newest_level < prior_high + abs(mean) * :min_growth_pct / 100.0
                              OR (newest_level - prior_high) * (newest_level - prior_high)
                                 < :min_z * :min_z * level_var)
                      THEN 'fluctuating'
                    ELSE 'increasing' END
             WHEN mk_z <= -:min_z AND pct_per_hour <= -:min_pct_per_hour
                  AND growth_pct <= -:min_growth_pct THEN 'decreasing'
             ELSE 'stable'
           END AS classification
    FROM judged
)
SELECT series_id, kind, target, pid, metric, unit, samples, first_ts_ms, last_ts_ms, coverage,
       mean, slope_per_hour, d_low / nullif(slice_s, 0) * 3600 AS slope_low_per_hour,
       d_high / nullif(slice_s, 0) * 3600 AS slope_high_per_hour, pct_per_hour,
       a AS intercept, fitted_now,
       r2, growth_pct, mk_z,
       jump * 100.0 / nullif(abs(mean), 0) AS step_pct,
       step_resid / nullif(resid, 0) AS step_ratio,
       d_early / nullif(slice_s, 0) * 3600 * 100.0 / nullif(abs(mean), 0) AS early_pct_per_hour,
       d_late / nullif(slice_s, 0) * 3600 * 100.0 / nullif(abs(mean), 0) AS late_pct_per_hour,
       prior_high,
       CASE WHEN classification = 'increasing' THEN (d_late >= 2 * d AND d > 0) END AS accelerating,
       classification,
       coalesce(reason, CASE WHEN classification = 'insufficient_data'
                             THEN 'rising, but needs ' || (prior_needed_ms / 1000)
                                  || ' s of history before the window to tell a leak from a cycle''s rise, has '
                                  || (prior_ms / 1000) || ' s' END) AS reason,
       limit_value,
       CASE WHEN classification = 'increasing' AND limit_value IS NOT NULL AND d > 0
            THEN max(0.0, (limit_value - fitted_now) / (d / slice_s)) END AS seconds_to_limit,
       CASE WHEN classification = 'increasing' AND limit_value IS NOT NULL AND d_high > 0
            THEN max(0.0, (limit_value - fitted_now) / (d_high / slice_s)) END
         AS seconds_to_limit_low,
       CASE WHEN classification = 'increasing' AND limit_value IS NOT NULL AND d_low > 0
            THEN max(0.0, (limit_value - fitted_now) / (d_low / slice_s)) END
         AS seconds_to_limit_high,
       CASE WHEN classification = 'increasing' AND limit_value IS NOT NULL AND d > 0
            THEN last_ts_ms + CAST(max(0.0, (limit_value - fitted_now) / (d / slice_s)) * 1000
                                   AS INTEGER) END AS limit_at_ms
FROM verdict
ORDER BY pct_per_hour DESC;

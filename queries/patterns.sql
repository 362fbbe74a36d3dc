-- patterns: growth that repeats on a schedule, per series, over its history in the window:
--   cycle      a periodic swing (a daily-like load cycle): the slice levels (median of :points
--              instants per slice, :buckets slices), less their least-squares line, are
--              autocorrelated at every lag up to a third of the span; the period is the lag of a
--              local peak of the autocorrelation at least :min_acf and beyond the white-noise band
--              (rho^2 >= 9 / n, three standard errors): the shortest such lag whose peak is within
--              80 % of the highest, so a multiple of the period does not win over the period
--              itself. Periods under about three slices (45 min over 24 h) are not resolved: look
--              at a shorter window. The amplitude is half
--              the range between the detrended levels' 10th and 90th percentiles / 0.951 (a
--              sine's half-height), as a percentage of the mean level too.
--   sawtooth   rises cut by sudden drops at a regular interval (a garbage collector, a cache flush,
--              a periodic restart): on :fine evenly spaced instants (a sample each), a drop is a
--              fall larger than both :min_drop_pct of the level and 6 times the median step; at
--              least :min_teeth drops, at intervals whose coefficient of variation is under 0.35,
--              and teeth that rise gradually (a tooth's middle has made a fifth of its rise: a
--              spike is not a tooth). Its period is the median interval; its rise the median tooth
--              (the level before a drop less the level after the drop before it).
--   daily      growth that recurs at the same time of day: with two days of history or more (up to
--              :days_ms), each
--              day's hour of largest rise (hourly levels, :points instants each, averaged); every
--              day's such hour within one hour of the first day's, and each rise at least
--              :min_rise_pct of the level and three times that day's median hourly change. Its
--              size is the whole rise: from the lowest hourly level of the three hours up to that
--              hour to the highest of the three after it.
-- A cycle is not reported for a series whose swing is a saw-tooth, nor a cycle of about a day for
-- one whose daily rise is found (one line says it better).
--
-- Parameters (name = default  kind):
--   :now_ms = now             time      as of this time (Unix ms)
--   :window_ms = 86400000     duration  the history a cycle and a saw-tooth are looked for in (24 h)
--   :days_ms = 604800000      duration  the history a daily rise is looked for in (7 days; it needs
--                                       2 days or more)
--   :buckets = 96             integer   slices of the span for the cycle (15 min each over 24 h)
--   :points = 5               integer   instants per slice (or per hour, for daily)
--   :fine = 480               integer   instants for the saw-tooth (3 min apart over 24 h)
--   :min_samples = 40         integer   fewer samples in the window: no pattern
--   :min_acf = 0.5            number    autocorrelation a cycle's period needs
--   :min_amplitude_pct = 1.0  number    a cycle's least amplitude (percent of the level)
--   :min_drop_pct = 3.0       number    a saw-tooth drop's least size (percent of the level)
--   :min_teeth = 3            integer   drops a saw-tooth needs
--   :min_rise_pct = 2.0       number    a daily rise's least size (percent of the level)
--   :series_id = NULL         integer   only this series
--   :metric = NULL            text      only this metric
--   :kind = NULL              text      only targets of this kind
--   :target = NULL            text      only targets with this name
--   :pid = NULL               integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, pattern (cycle, sawtooth, daily), period_ms,
--   amplitude (cycle: units; sawtooth: the median rise per tooth; daily: the median rise in its
--   hour), amplitude_pct (of the mean level), strength (cycle: the autocorrelation; sawtooth: the
--   teeth; daily: the days), at_hour (daily: the hour of day, UTC, its rise begins)
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
               AND ts_ms <= :now_ms) AS samples,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :now_ms - :days_ms AND ts_ms <= :now_ms
             ORDER BY ts_ms LIMIT 1) AS first_day_ts_ms
    FROM series_info AS si
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
judged AS MATERIALIZED (
    SELECT * FROM sel WHERE samples >= :min_samples AND last_ts_ms > first_ts_ms
),
-- The cycle: slice levels, detrended, autocorrelated.
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
line AS MATERIALIZED (
    SELECT series_id, count(*) AS n, avg(slice) AS mx, avg(y) AS my,
           (avg(slice * y) - avg(slice) * avg(y))
             / nullif(avg(slice * slice) - avg(slice) * avg(slice), 0) AS b
    FROM lv GROUP BY series_id
),
res AS MATERIALIZED (
    SELECT l.series_id, l.slice, l.y - (f.my + coalesce(f.b, 0) * (l.slice - f.mx)) AS r
    FROM lv AS l JOIN line AS f ON f.series_id = l.series_id
),
var0 AS MATERIALIZED (
    SELECT series_id, sum(r * r) AS s0 FROM res GROUP BY series_id
),
lags(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM lags WHERE k + 1 <= :buckets / 3 + 1),
acf AS MATERIALIZED (
    SELECT a.series_id, lags.k, sum(a.r * b.r) / nullif(v.s0, 0) AS rho
    FROM res AS a CROSS JOIN lags
    JOIN res AS b ON b.series_id = a.series_id AND b.slice = a.slice + lags.k
    JOIN var0 AS v ON v.series_id = a.series_id
    GROUP BY a.series_id, lags.k
),
peaks AS MATERIALIZED (
    SELECT * FROM (
        SELECT series_id, k, rho,
               lag(rho) OVER (PARTITION BY series_id ORDER BY k) AS before,
               lead(rho) OVER (PARTITION BY series_id ORDER BY k) AS after
        FROM acf)
    WHERE k >= 2 AND rho > before AND rho >= after AND rho >= :min_acf
),
best_peak AS (
    -- The fundamental: the shortest lag whose peak is within 80 % of the highest (a multiple of
    -- the period peaks too, and higher when the period falls between two slices).
    SELECT * FROM (
        SELECT p.*, row_number() OVER (PARTITION BY p.series_id ORDER BY p.k) AS nth
        FROM peaks AS p JOIN line AS f ON f.series_id = p.series_id
        WHERE p.rho * p.rho >= 9.0 / f.n
          AND p.rho >= 0.8 * (SELECT max(rho) FROM peaks AS q WHERE q.series_id = p.series_id))
    WHERE nth = 1
),
spread AS (
    SELECT series_id,
           max(CASE WHEN rk = CAST(0.9 * (n - 1) AS INTEGER) + 1 THEN r END)
         - max(CASE WHEN rk = CAST(0.1 * (n - 1) AS INTEGER) + 1 THEN r END) AS p10_p90
    FROM (SELECT series_id, r, row_number() OVER (PARTITION BY series_id ORDER BY r) AS rk,
                 count(*) OVER (PARTITION BY series_id) AS n FROM res)
    GROUP BY series_id
),
cycles AS (
    SELECT j.series_id, 'cycle' AS pattern,
           CAST(bp.k * (j.last_ts_ms - j.first_ts_ms) * 1.0 / :buckets AS INTEGER) AS period_ms,
           sp.p10_p90 / 2.0 / 0.951 AS amplitude,
           100.0 * sp.p10_p90 / 2.0 / 0.951 / nullif(abs(f.my), 0) AS amplitude_pct,
           bp.rho AS strength, NULL AS at_hour
    FROM judged AS j
    JOIN best_peak AS bp ON bp.series_id = j.series_id
    JOIN spread AS sp ON sp.series_id = j.series_id
    JOIN line AS f ON f.series_id = j.series_id
),
-- The saw-tooth: drops on a fine grid, their spacing, the teeth between them.
h(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM h WHERE i + 1 < :fine),
fine AS MATERIALIZED (
    SELECT f.series_id, f.i, f.v_ts, x.value AS v
    FROM (SELECT s.series_id, h.i,
                 (SELECT ts_ms FROM samples
                   WHERE series_id = s.series_id
                     AND ts_ms >= s.first_ts_ms + CAST(h.i * (s.last_ts_ms - s.first_ts_ms) * 1.0
                                                       / (:fine - 1) AS INTEGER)
                   ORDER BY ts_ms LIMIT 1) AS v_ts
          FROM judged AS s CROSS JOIN h) AS f
    JOIN samples AS x ON x.series_id = f.series_id AND x.ts_ms = f.v_ts
),
steps AS MATERIALIZED (
    SELECT series_id, i, v_ts, v,
           lead(v) OVER (PARTITION BY series_id ORDER BY i) - v AS d,
           lead(v_ts) OVER (PARTITION BY series_id ORDER BY i) AS next_ts
    FROM fine
),
step_scale AS MATERIALIZED (
    SELECT series_id, avg(abs_d) AS mad, level
    FROM (SELECT series_id, abs(d) AS abs_d,
                 row_number() OVER (PARTITION BY series_id ORDER BY abs(d)) AS rk,
                 count(*) OVER (PARTITION BY series_id) AS cnt,
                 avg(v) OVER (PARTITION BY series_id) AS level
          FROM steps WHERE d IS NOT NULL)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id
),
drops AS MATERIALIZED (
    -- The tooth's true top and the floor after the drop: the highest and lowest sample between
    -- the two instants the drop fell between (a primary-key range of a few samples).
    SELECT st.series_id, st.i,
           (SELECT max(value) FROM samples WHERE series_id = st.series_id
              AND ts_ms >= st.v_ts AND ts_ms < st.next_ts) AS before_v,
           (SELECT min(value) FROM samples WHERE series_id = st.series_id
              AND ts_ms > st.v_ts AND ts_ms <= st.next_ts) AS after_v,
           row_number() OVER (PARTITION BY st.series_id ORDER BY st.i) AS nth
    FROM steps AS st JOIN step_scale AS sc ON sc.series_id = st.series_id
    WHERE -st.d > max(:min_drop_pct / 100.0 * abs(sc.level), 6.0 * sc.mad)
),
teeth AS MATERIALIZED (
    SELECT a.series_id, b.i - a.i AS gap, b.before_v - a.after_v AS rise,
           (SELECT v FROM fine AS m WHERE m.series_id = a.series_id
              AND m.i = (a.i + 1 + b.i) / 2) - a.after_v AS mid_rise
    FROM drops AS a JOIN drops AS b ON b.series_id = a.series_id AND b.nth = a.nth + 1
),
tooth_rank AS (
    SELECT series_id, gap, rise, mid_rise,
           row_number() OVER (PARTITION BY series_id ORDER BY gap) AS gap_rk,
           row_number() OVER (PARTITION BY series_id ORDER BY rise) AS rise_rk,
           count(*) OVER (PARTITION BY series_id) AS cnt
    FROM teeth
),
saws AS (
    SELECT t.series_id, 'sawtooth' AS pattern,
           CAST(max(CASE WHEN gap_rk = (cnt + 1) / 2 THEN gap END)
                * (j.last_ts_ms - j.first_ts_ms) * 1.0 / (:fine - 1) AS INTEGER) AS period_ms,
           max(CASE WHEN rise_rk = (cnt + 1) / 2 THEN rise END) AS amplitude,
           100.0 * max(CASE WHEN rise_rk = (cnt + 1) / 2 THEN rise END)
             / nullif(abs(sc.level), 0) AS amplitude_pct,
           count(*) + 1 AS strength, NULL AS at_hour
    FROM tooth_rank AS t
    JOIN judged AS j ON j.series_id = t.series_id
    JOIN step_scale AS sc ON sc.series_id = t.series_id
    GROUP BY t.series_id
    HAVING count(*) + 1 >= :min_teeth
       -- regular: variance of the gaps under (0.35 mean)^2
       AND avg(gap * gap) - avg(gap) * avg(gap) <= 0.35 * 0.35 * avg(gap) * avg(gap)
       -- gradual: three teeth in four rise a fifth of the way by their middle
       AND sum(mid_rise >= 0.2 * rise AND rise > 0) >= 0.75 * count(*)
),
-- Daily: hourly levels per day, each day's hour of largest rise.
days AS MATERIALIZED (
    SELECT series_id, first_day_ts_ms AS first_ts_ms, last_ts_ms FROM judged
    WHERE last_ts_ms - first_day_ts_ms >= 2 * 86400000
),
hi(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM hi WHERE i + 1 < (:days_ms / 3600000 + 1) * :points),
hourly AS MATERIALIZED (
    SELECT d.series_id, hour_start / 3600000 AS hour_no, avg(v) AS y
    FROM (SELECT d.series_id,
                 (d.first_ts_ms / 3600000 + hi.i / :points) * 3600000 AS hour_start,
                 (SELECT value FROM samples
                   WHERE series_id = d.series_id
                     AND ts_ms >= (d.first_ts_ms / 3600000 + hi.i / :points) * 3600000
                                  + (hi.i % :points) * 3600000 / :points
                     AND ts_ms < (d.first_ts_ms / 3600000 + hi.i / :points + 1) * 3600000
                   ORDER BY ts_ms LIMIT 1) AS v
          FROM days AS d CROSS JOIN hi
          WHERE (d.first_ts_ms / 3600000 + hi.i / :points) * 3600000 <= d.last_ts_ms) AS x
    JOIN days AS d ON d.series_id = x.series_id
    WHERE v IS NOT NULL
    GROUP BY d.series_id, hour_start
),
rises AS MATERIALIZED (
    SELECT series_id, hour_no, hour_no / 24 AS day, hour_no % 24 AS hour,
           lead(y) OVER (PARTITION BY series_id ORDER BY hour_no) - y AS rise, y
    FROM hourly
),
day_rank AS MATERIALIZED (
    SELECT series_id, hour_no, day, hour, rise, y,
           row_number() OVER (PARTITION BY series_id, day ORDER BY rise DESC) AS top,
           row_number() OVER (PARTITION BY series_id, day ORDER BY abs(rise)) AS rk,
           count(*) OVER (PARTITION BY series_id, day) AS cnt
    FROM rises WHERE rise IS NOT NULL
),
day_best AS MATERIALIZED (
    SELECT b.series_id, b.day, b.hour, b.rise, b.y,
           (SELECT abs(m.rise) FROM day_rank AS m
             WHERE m.series_id = b.series_id AND m.day = b.day AND m.rk = (m.cnt + 1) / 2)
             AS typical,
           -- The whole rise: from the lowest level of the three hours up to it to the highest
           -- of the three after (an hourly level averages its hour, so one step shows part).
           (SELECT min(y) FROM hourly AS l WHERE l.series_id = b.series_id
              AND l.hour_no BETWEEN b.hour_no - 2 AND b.hour_no) AS lo,
           (SELECT max(y) FROM hourly AS l WHERE l.series_id = b.series_id
              AND l.hour_no BETWEEN b.hour_no + 1 AND b.hour_no + 3) AS hi
    FROM day_rank AS b
    WHERE b.top = 1 AND b.cnt >= 12
),
dailies AS (
    SELECT b.series_id, 'daily' AS pattern, 86400000 AS period_ms,
           avg(b.hi - b.lo) AS amplitude,
           100.0 * avg(b.hi - b.lo) / nullif(avg(abs(b.lo)), 0) AS amplitude_pct,
           count(*) AS strength,
           (SELECT hour FROM day_best AS f WHERE f.series_id = b.series_id ORDER BY day LIMIT 1)
             AS at_hour
    FROM day_best AS b
    GROUP BY b.series_id
    HAVING count(*) >= 2
       AND sum(b.rise >= :min_rise_pct / 100.0 * abs(b.y) AND b.rise >= 3.0 * b.typical) = count(*)
       AND sum(min(abs(b.hour - at_hour), 24 - abs(b.hour - at_hour)) <= 1) = count(*)
),
found AS (
    SELECT * FROM saws
    UNION ALL
    SELECT * FROM cycles AS c
    WHERE amplitude_pct >= :min_amplitude_pct
      AND series_id NOT IN (SELECT series_id FROM saws)
      AND NOT (abs(period_ms - 86400000) <= 8640000
               AND series_id IN (SELECT series_id FROM dailies))
    UNION ALL
    SELECT * FROM dailies
)
SELECT j.series_id, j.kind, j.target, j.pid, j.metric, j.unit, f.pattern, f.period_ms,
       f.amplitude, f.amplitude_pct, f.strength, f.at_hour
FROM found AS f JOIN judged AS j ON j.series_id = f.series_id
ORDER BY j.kind, j.target, j.pid, j.metric, f.pattern;

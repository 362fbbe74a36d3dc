-- attribution: which kind of memory grows in each process. The resident set is split by the
-- kernel into anonymous pages (rss_anon: heap, stacks, anonymous mappings, where a leak grows),
-- file-backed pages (rss_file: mapped files and code, page cache the kernel can drop) and shared
-- memory (rss_shmem); tree_rss has the same parts summed over the process tree. The mapping groups
-- read from smaps on their slower cadence (map_rss:[heap], map_rss:[anon], map_rss:/path, ...)
-- are a second split of rss, by where the pages are mapped. For each part, its
-- change over the window between robust levels at the two ends (each the median of :points evenly
-- spaced instants over the first or last :end_fraction of the window, as percent_change takes
-- them, so one spike cannot make a change), and its share of the change of the whole.
--
-- Parameters (name = default  kind):
--   :now_ms = now          time      as of this time (Unix ms)
--   :window_ms = 3600000   duration  the window (1 h, the leak rule's)
--   :min_coverage = 0.5    number    a part's samples must span at least this fraction of the window
--   :end_fraction = 0.2    number    each end's slice, as a fraction of the window
--   :points = 15           integer   instants per end whose samples give its median
--   :target = NULL         text      only processes with this name
--   :pid = NULL            integer   only this pid
-- Result columns:
--   whole_series_id (the series of rss or tree_rss), target, pid, whole (rss or tree_rss),
--   whole_change (bytes), dimension ('kind' for rss_anon, rss_file, rss_shmem or their tree_ sums;
--   'mapping' for a map_rss: group), part (the part's metric), first_value,
--   value (the part's levels at the window's start and end), change (bytes), change_per_hour
--   (bytes/h), share_pct (the part's change in % of the whole's; NULL when the whole did not move)
WITH ends AS MATERIALIZED (
    SELECT i.series_id, i.target_id, i.target, i.pid, i.metric,
           CASE WHEN i.metric LIKE 'tree_%' THEN 'tree_rss' ELSE 'rss' END AS whole,
           CASE WHEN i.metric LIKE 'map_rss:%' THEN 'mapping' ELSE 'kind' END AS dimension,
           (SELECT ts_ms FROM samples WHERE series_id = i.series_id
              AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
            ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples WHERE series_id = i.series_id
              AND ts_ms >= :now_ms - :window_ms AND ts_ms <= :now_ms
            ORDER BY ts_ms DESC LIMIT 1) AS ts_ms
    FROM series_info AS i
    WHERE i.kind = 'process'
      AND (i.metric IN ('rss', 'rss_anon', 'rss_file', 'rss_shmem',
                       'tree_rss', 'tree_rss_anon', 'tree_rss_file', 'tree_rss_shmem')
           OR i.metric LIKE 'map_rss:%')
      AND (:target IS NULL OR i.target = :target) AND (:pid IS NULL OR i.pid = :pid)
),
covered AS MATERIALIZED (
    SELECT * FROM ends WHERE ts_ms - first_ts_ms >= :min_coverage * :window_ms
),
g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :points),
pts AS MATERIALIZED (
    SELECT c.series_id, e.side,
           (SELECT value FROM samples
             WHERE series_id = c.series_id
               AND ts_ms >= CASE e.side
                 WHEN 0 THEN c.first_ts_ms + CAST((g.i + 0.5) * :end_fraction * (c.ts_ms - c.first_ts_ms)
                                                  / :points AS INTEGER)
                 ELSE c.ts_ms - CAST((:points - g.i - 0.5) * :end_fraction * (c.ts_ms - c.first_ts_ms)
                                     / :points AS INTEGER) END
               AND ts_ms <= c.ts_ms
             ORDER BY ts_ms LIMIT 1) AS v
    FROM covered AS c CROSS JOIN g CROSS JOIN (SELECT 0 AS side UNION ALL SELECT 1) AS e
),
levels AS MATERIALIZED (
    SELECT series_id, side, avg(v) AS level
    FROM (SELECT series_id, side, v,
                 row_number() OVER (PARTITION BY series_id, side ORDER BY v) AS rk,
                 count(*) OVER (PARTITION BY series_id, side) AS cnt
          FROM pts WHERE v IS NOT NULL)
    WHERE rk IN ((cnt + 1) / 2, (cnt + 2) / 2)
    GROUP BY series_id, side
),
changes AS MATERIALIZED (
    SELECT c.*, a.level AS first_value, b.level AS value, b.level - a.level AS change,
           -- Per hour between the two ends' centres, (1 - :end_fraction) of the span apart.
           (b.level - a.level) * 3600000.0
             / nullif((c.ts_ms - c.first_ts_ms) * (1 - :end_fraction), 0) AS change_per_hour
    FROM covered AS c
    JOIN levels AS a ON a.series_id = c.series_id AND a.side = 0
    JOIN levels AS b ON b.series_id = c.series_id AND b.side = 1
)
SELECT w.series_id AS whole_series_id, p.target, p.pid, p.whole, w.change AS whole_change,
       p.dimension, p.metric AS part, p.first_value, p.value, p.change, p.change_per_hour,
       p.change * 100.0 / nullif(w.change, 0) AS share_pct
FROM changes AS p
JOIN changes AS w ON w.target_id = p.target_id AND w.metric = p.whole
WHERE p.metric <> p.whole
ORDER BY w.series_id, p.dimension, p.change DESC;

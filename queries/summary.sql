-- summary: each series over a time range: how many samples, min, max, average, first and last
-- value, and the change from first to last in percent. For reports.
--
-- Parameters (name = default  kind):
--   :from_ms = required  time     start of the range (Unix ms, inclusive)
--   :to_ms = now         time     end of the range (Unix ms, inclusive)
--   :series_id = NULL    integer  only this series
--   :metric = NULL       text     only this metric
--   :kind = NULL         text     only targets of this kind
--   :target = NULL       text     only targets with this name
--   :pid = NULL          integer  only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, samples, min, max, avg, first_ts_ms, first,
--   last_ts_ms, last, change_pct
WITH sel AS MATERIALIZED (
    SELECT * FROM series_info
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
agg AS (
    -- Straight over the primary key, series by series in order: grouping needs no sort. The first
    -- and last samples are found by seeks below, not by aggregating every row.
    SELECT x.series_id, count(*) AS samples, min(x.value) AS min, max(x.value) AS max,
           avg(x.value) AS avg
    FROM samples AS x
    WHERE x.series_id IN (SELECT series_id FROM sel) AND x.ts_ms >= :from_ms AND x.ts_ms <= :to_ms
    GROUP BY x.series_id
),
ends AS (
    SELECT agg.*,
           (SELECT ts_ms FROM samples WHERE series_id = agg.series_id
              AND ts_ms >= :from_ms AND ts_ms <= :to_ms ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT value FROM samples WHERE series_id = agg.series_id
              AND ts_ms >= :from_ms AND ts_ms <= :to_ms ORDER BY ts_ms LIMIT 1) AS first,
           (SELECT ts_ms FROM samples WHERE series_id = agg.series_id
              AND ts_ms >= :from_ms AND ts_ms <= :to_ms ORDER BY ts_ms DESC LIMIT 1) AS last_ts_ms,
           (SELECT value FROM samples WHERE series_id = agg.series_id
              AND ts_ms >= :from_ms AND ts_ms <= :to_ms ORDER BY ts_ms DESC LIMIT 1) AS last
    FROM agg
)
SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit, e.samples,
       e.min, e.max, e.avg, e.first_ts_ms, e.first, e.last_ts_ms, e.last,
       (e.last - e.first) * 100.0 / nullif(abs(e.first), 0) AS change_pct
FROM ends AS e JOIN sel ON sel.series_id = e.series_id
ORDER BY CASE sel.kind WHEN 'system' THEN 0 WHEN 'process' THEN 1 ELSE 2 END, sel.target, sel.pid, sel.metric;

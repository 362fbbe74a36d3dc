-- threshold: the newest value of each series compared with a threshold.
--
-- Parameters (name = default  kind):
--   :threshold = required       size      the value to compare with, in the series' unit (bytes, percent, count)
--   :comparison = greater_than  text      greater_than or less_than
--   :now_ms = now               time      as of this time (Unix ms)
--   :max_age_ms = 120000        duration  leave out series with no sample this recent (stopped, exited)
--   :series_id = NULL           integer   only this series
--   :metric = NULL              text      only this metric
--   :kind = NULL                text      only targets of this kind
--   :target = NULL              text      only targets with this name
--   :pid = NULL                 integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, ts_ms, value, threshold, comparison,
--   holds (1 when the value is beyond the threshold)

-- One join, not chained CTEs: SQLite flattens a CTE into its user by copying the CTE's
-- correlated subqueries wherever their columns appear, and preparing that copy cost 3x this.
-- CROSS JOIN keeps series_info the outer loop: on a large history the planner would otherwise
-- scan every sample to find each series' newest.
SELECT i.series_id, i.kind, i.target, i.pid, i.metric, i.unit, x.ts_ms, x.value,
       :threshold AS threshold, :comparison AS comparison,
       CASE :comparison WHEN 'less_than' THEN x.value < :threshold ELSE x.value > :threshold END AS holds
FROM series_info AS i
CROSS JOIN samples AS x
  ON x.series_id = i.series_id
 AND x.ts_ms = (SELECT max(ts_ms) FROM samples WHERE series_id = i.series_id AND ts_ms <= :now_ms)
WHERE (:series_id IS NULL OR i.series_id = :series_id) AND (:metric IS NULL OR i.metric = :metric)
  AND (:kind IS NULL OR i.kind = :kind) AND (:target IS NULL OR i.target = :target)
  AND (:pid IS NULL OR i.pid = :pid)
  AND x.ts_ms >= :now_ms - :max_age_ms
ORDER BY holds DESC, i.kind, i.target, i.pid, i.metric;

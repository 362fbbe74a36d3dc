-- threshold: the newest value of each series compared with a threshold.
--
-- Parameters (name = default):
--   :threshold = required       the value to compare with, in the series' unit (bytes, percent, count)
--   :comparison = greater_than  greater_than or less_than
--   :now_ms = now               as of this time (Unix ms)
--   :max_age_ms = 120000        leave out series with no sample this recent (stopped, exited)
--   :series_id = NULL           only this series
--   :metric = NULL              only this metric
--   :kind = NULL                only targets of this kind
--   :target = NULL              only targets with this name
--   :pid = NULL                 only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, ts_ms, value, threshold, comparison,
--   holds (1 when the value is beyond the threshold)
WITH sel AS (
    SELECT * FROM series_info
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
newest AS (
    SELECT sel.*,
           (SELECT max(ts_ms) FROM samples
             WHERE samples.series_id = sel.series_id AND samples.ts_ms <= :now_ms) AS ts_ms
    FROM sel
),
current AS (
    SELECT newest.*,
           (SELECT value FROM samples
             WHERE samples.series_id = newest.series_id AND samples.ts_ms = newest.ts_ms) AS value
    FROM newest
    WHERE ts_ms >= :now_ms - :max_age_ms
)
SELECT series_id, kind, target, pid, metric, unit, ts_ms, value,
       :threshold AS threshold, :comparison AS comparison,
       CASE :comparison WHEN 'less_than' THEN value < :threshold ELSE value > :threshold END AS holds
FROM current
ORDER BY holds DESC, kind, target, pid, metric;

-- latest: the newest value of each series.
--
-- Parameters (name = default  kind):
--   :now_ms = now       time      as of this time (Unix ms): only samples at or before it count
--   :max_age_ms = NULL  duration  leave out series whose newest sample is older than this (NULL = any age)
--   :series_id = NULL   integer   only this series
--   :metric = NULL      text      only this metric (rss, mem_used_percent, ...)
--   :kind = NULL        text      only targets of this kind (process, system, custom)
--   :target = NULL      text      only targets with this name
--   :pid = NULL         integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, ts_ms, value
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
)
SELECT series_id, kind, target, pid, metric, unit, ts_ms,
       (SELECT value FROM samples
         WHERE samples.series_id = newest.series_id AND samples.ts_ms = newest.ts_ms) AS value
FROM newest
WHERE ts_ms IS NOT NULL AND (:max_age_ms IS NULL OR ts_ms >= :now_ms - :max_age_ms)
ORDER BY kind, target, pid, metric;

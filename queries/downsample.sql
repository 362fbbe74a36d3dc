-- downsample: min, average and max of each series per time bucket, for charts and reports. The
-- min and max are the true extremes of each bucket, so spikes survive downsampling.
--
-- Parameters (name = default):
--   :from_ms = required     start of the range (Unix ms, inclusive)
--   :to_ms = now            end of the range (Unix ms, exclusive)
--   :bucket_ms = 60000      bucket width (1 min); buckets start at :from_ms
--   :series_id = NULL       only this series
--   :metric = NULL          only this metric
--   :kind = NULL            only targets of this kind
--   :target = NULL          only targets with this name
--   :pid = NULL             only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, bucket_ms (bucket start), min, avg, max, samples
WITH sel AS MATERIALIZED (
    SELECT * FROM series_info
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
)
SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit,
       :from_ms + (x.ts_ms - :from_ms) / :bucket_ms * :bucket_ms AS bucket_ms,
       min(x.value) AS min, avg(x.value) AS avg, max(x.value) AS max, count(*) AS samples
FROM sel CROSS JOIN samples AS x ON x.series_id = sel.series_id
WHERE x.ts_ms >= :from_ms AND x.ts_ms < :to_ms
GROUP BY sel.series_id, bucket_ms
ORDER BY sel.series_id, bucket_ms;

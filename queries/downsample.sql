-- downsample: min, average and max of each series per time bucket, for charts and reports. The
-- min and max are the true extremes of each bucket, so spikes survive downsampling. The work is
-- one pass over the samples plus one primary-key seek per bucket between a series' first and last
-- sample in the range, so a tiny :bucket_ms over a long, sparse range costs more than it saves.
--
-- Parameters (name = default  kind):
--   :from_ms = required  time      start of the range (Unix ms, inclusive)
--   :to_ms = now         time      end of the range (Unix ms, exclusive)
--   :bucket_ms = 60000   duration  bucket width (1 min); buckets start at :from_ms
--   :series_id = NULL    integer   only this series
--   :metric = NULL       text      only this metric
--   :kind = NULL         text      only targets of this kind
--   :target = NULL       text      only targets with this name
--   :pid = NULL          integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, bucket_ms (bucket start), min, avg, max, samples
WITH sel AS MATERIALIZED (
    SELECT si.*,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :from_ms AND ts_ms < :to_ms
             ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :from_ms AND ts_ms < :to_ms
             ORDER BY ts_ms DESC LIMIT 1) AS last_ts_ms
    FROM series_info AS si
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
-- Bucket numbers from each series' first sample in the range to its last.
k(n) AS (
    SELECT min((first_ts_ms - :from_ms) / :bucket_ms) FROM sel
    UNION ALL
    SELECT n + 1 FROM k WHERE n < (SELECT max((last_ts_ms - :from_ms) / :bucket_ms) FROM sel)
),
-- Each series' buckets as [lo, hi) ranges of the primary key, in key order: grouping over them
-- follows the primary key instead of sorting every sample by its bucket.
bounds AS MATERIALIZED (
    SELECT sel.series_id, k.n, :from_ms + k.n * :bucket_ms AS lo,
           min(:from_ms + (k.n + 1) * :bucket_ms, :to_ms) AS hi
    FROM sel CROSS JOIN k
    WHERE k.n BETWEEN (sel.first_ts_ms - :from_ms) / :bucket_ms AND (sel.last_ts_ms - :from_ms) / :bucket_ms
    ORDER BY sel.series_id, k.n
),
agg AS (
    SELECT b.series_id, b.lo AS bucket_ms, min(x.value) AS min, avg(x.value) AS avg,
           max(x.value) AS max, count(*) AS samples
    FROM bounds AS b CROSS JOIN samples AS x
      ON x.series_id = b.series_id AND x.ts_ms >= b.lo AND x.ts_ms < b.hi
    GROUP BY b.series_id, b.n
)
SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit, agg.bucket_ms,
       agg.min, agg.avg, agg.max, agg.samples
FROM agg JOIN sel ON sel.series_id = agg.series_id
ORDER BY agg.series_id, agg.bucket_ms;

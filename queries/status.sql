-- status: per series, the newest value, the min and max over a recent window, and the sample count.
--
-- Parameters (name = default  kind):
--   :now_ms = now         time      the time "now" (Unix ms)
--   :window_ms = 3600000  duration  how far back min/max look (memtrail status uses one hour)
-- Result columns:
--   series_id, kind, target, pid, gone_ms, metric, unit,
--   latest_ts_ms, latest, window_min, window_max (NULL when no sample in the window), samples
-- Every lookup is a range on the samples primary key (series_id, ts_ms): one b-tree seek per series.
SELECT s.id AS series_id,
       t.kind AS kind,
       t.name AS target,
       t.pid AS pid,
       t.gone_ms AS gone_ms,
       s.metric AS metric,
       s.unit AS unit,
       s.latest_ts_ms AS latest_ts_ms,
       (SELECT value FROM samples WHERE series_id = s.id AND ts_ms = s.latest_ts_ms) AS latest,
       (SELECT min(value) FROM samples
         WHERE series_id = s.id AND ts_ms > :now_ms - :window_ms AND ts_ms <= :now_ms) AS window_min,
       (SELECT max(value) FROM samples
         WHERE series_id = s.id AND ts_ms > :now_ms - :window_ms AND ts_ms <= :now_ms) AS window_max,
       (SELECT count(*) FROM samples WHERE series_id = s.id) AS samples
FROM (SELECT series.*, (SELECT max(ts_ms) FROM samples WHERE series_id = series.id) AS latest_ts_ms
      FROM series) AS s
JOIN targets AS t ON t.id = s.target_id
WHERE s.latest_ts_ms IS NOT NULL
ORDER BY CASE t.kind WHEN 'system' THEN 0 WHEN 'process' THEN 1 ELSE 2 END,
         t.gone_ms IS NOT NULL, t.name, t.pid, t.id, s.metric;

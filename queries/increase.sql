-- increase: how much a counter grew inside the window, like Prometheus increase(): the sum of the
-- rises between consecutive samples; a drop is a counter reset, after which the new value counts
-- as growth. Growth before the window (or before memtrail first saw the counter) is not counted,
-- so `increase > 0` on oom_kill means "a new OOM kill in the window".
--
-- Parameters (name = default  kind):
--   :now_ms = now        time      as of this time (Unix ms)
--   :window_ms = 300000  duration  the window (5 min)
--   :series_id = NULL    integer   only this series
--   :metric = NULL       text      only this metric
--   :kind = NULL         text      only targets of this kind
--   :target = NULL       text      only targets with this name
--   :pid = NULL          integer   only this pid
-- Result columns:
--   series_id, kind, target, pid, metric, unit, samples, first_ts_ms, last_ts_ms, first_value,
--   last_value, increase
WITH sel AS MATERIALIZED (
    SELECT * FROM series_info
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
),
deltas AS (
    SELECT x.series_id, x.ts_ms, x.value,
           x.value - lag(x.value) OVER (PARTITION BY x.series_id ORDER BY x.ts_ms) AS delta,
           first_value(x.value) OVER (PARTITION BY x.series_id ORDER BY x.ts_ms) AS first_value,
           row_number() OVER (PARTITION BY x.series_id ORDER BY x.ts_ms DESC) AS newest
    FROM sel CROSS JOIN samples AS x ON x.series_id = sel.series_id
    WHERE x.ts_ms >= :now_ms - :window_ms AND x.ts_ms <= :now_ms
)
SELECT sel.series_id, sel.kind, sel.target, sel.pid, sel.metric, sel.unit,
       count(*) AS samples, min(d.ts_ms) AS first_ts_ms, max(d.ts_ms) AS last_ts_ms,
       max(d.first_value) AS first_value,
       max(CASE WHEN d.newest = 1 THEN d.value END) AS last_value,
       total(CASE WHEN d.delta > 0 THEN d.delta WHEN d.delta < 0 THEN d.value ELSE 0 END) AS increase
FROM deltas AS d JOIN sel ON sel.series_id = d.series_id
GROUP BY sel.series_id
ORDER BY increase DESC, sel.series_id;

-- span: each selected series' first and last sample time in a range, by two primary-key seeks per
-- series (no scan). Reports use it to size their passes before running them.
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
--   series_id, kind, target, pid, metric, unit, first_ts_ms, last_ts_ms (series with no sample in
--   the range are left out)
SELECT * FROM (
    SELECT si.series_id, si.kind, si.target, si.pid, si.metric, si.unit,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :from_ms AND ts_ms <= :to_ms
             ORDER BY ts_ms LIMIT 1) AS first_ts_ms,
           (SELECT ts_ms FROM samples
             WHERE series_id = si.series_id AND ts_ms >= :from_ms AND ts_ms <= :to_ms
             ORDER BY ts_ms DESC LIMIT 1) AS last_ts_ms
    FROM series_info AS si
    WHERE (:series_id IS NULL OR series_id = :series_id) AND (:metric IS NULL OR metric = :metric)
      AND (:kind IS NULL OR kind = :kind) AND (:target IS NULL OR target = :target)
      AND (:pid IS NULL OR pid = :pid)
)
WHERE first_ts_ms IS NOT NULL
ORDER BY series_id;

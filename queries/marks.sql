-- marks: what happened to one target in a range, to mark on its chart: alert events (firing,
-- resolved, repeat, suppressed) and cleanup runs, oldest first.
--
-- Parameters (name = default  kind):
--   :from_ms = required  time     start of the range (Unix ms, inclusive)
--   :to_ms = now         time     end of the range (Unix ms, inclusive)
--   :target = required   text     the target's name
--   :pid = NULL          integer  only this pid
-- Result columns:
--   ts_ms, what (alert or cleanup), label
SELECT ts_ms, 'alert' AS what, rule || ' ' || event AS label
FROM alerts
WHERE ts_ms >= :from_ms AND ts_ms <= :to_ms AND target = :target AND (:pid IS NULL OR pid = :pid)
UNION ALL
SELECT started_ms AS ts_ms, 'cleanup' AS what,
       'cleanup ' || coalesce(outcome, 'running') AS label
FROM cleanup_runs
WHERE started_ms >= :from_ms AND started_ms <= :to_ms AND target = :target
  AND (:pid IS NULL OR pid = :pid)
ORDER BY ts_ms;

-- cleanups: cleanup runs with the memory they freed, newest first.
--
-- Parameters (name = default  kind):
--   :now_ms = now     time  runs started at or before this time (Unix ms)
--   :since_ms = NULL  time  only runs started at or after this time (NULL = all)
--   :trigger = NULL   text  only this trigger (periodic, manual, alert)
--   :target = NULL    text  only this target name
-- Result columns:
--   id, trigger, rule, level, target, pid, actions, started_ms, ended_ms, duration_ms, outcome,
--   exit_code, http_status, rss_before, rss_after, freed_bytes, freed_pct
SELECT id, trigger, rule, level, target, pid, actions, started_ms, ended_ms,
       ended_ms - started_ms AS duration_ms, coalesce(outcome, 'running') AS outcome,
       exit_code, http_status, rss_before, rss_after, freed_bytes,
       freed_bytes * 100.0 / nullif(rss_before, 0) AS freed_pct
FROM cleanup_runs
WHERE started_ms <= :now_ms AND (:since_ms IS NULL OR started_ms >= :since_ms)
  AND (:trigger IS NULL OR trigger = :trigger) AND (:target IS NULL OR target = :target)
ORDER BY started_ms DESC, id DESC;

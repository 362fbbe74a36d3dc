-- marks: what happened to one target in a range, to mark on its chart: the `timeline`'s events
-- (annotations, a launched command's start and exit, restarts, cleanups, alerts firing and
-- resolved) that concern it or the whole host, oldest first.
--
-- Parameters (name = default  kind):
--   :from_ms = required  time     start of the range (Unix ms, inclusive)
--   :to_ms = now         time     end of the range (Unix ms, inclusive)
--   :target = required   text     the target's name
--   :pid = NULL          integer  only this pid (and the events of no pid)
-- Result columns:
--   ts_ms, what (the event's kind), label
SELECT ts_ms, kind AS what, label
FROM timeline
WHERE ts_ms >= :from_ms AND ts_ms <= :to_ms AND (target IS NULL OR target = :target)
  AND (:pid IS NULL OR pid IS NULL OR pid = :pid)
ORDER BY ts_ms;

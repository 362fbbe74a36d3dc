-- events: what happened in a range, oldest first (the `timeline` view: annotations, a launched
-- command's start and exit, restarts, cleanups, alerts firing and resolved). With a target, its own
-- events and those of the whole host (no target).
--
-- Parameters (name = default  kind):
--   :from_ms = 0             time     start of the range (Unix ms, inclusive)
--   :to_ms = now             time     end of the range (Unix ms, inclusive)
--   :target = NULL           text     only this target's events and the host's
--   :pid = NULL              integer  only this pid's events (and those of any pid of the target)
--   :kind = NULL             text     only this kind (annotation, command_started, command_exited,
--                                     restart, cleanup, alert)
-- Result columns:
--   ts_ms, kind, label, target (NULL: the whole host), pid
SELECT ts_ms, kind, label, target, pid
FROM timeline
WHERE ts_ms >= :from_ms AND ts_ms <= :to_ms
  AND (:target IS NULL OR target IS NULL OR target = :target)
  AND (:pid IS NULL OR pid IS NULL OR pid = :pid)
  AND (:kind IS NULL OR kind = :kind)
ORDER BY ts_ms;

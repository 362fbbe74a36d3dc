-- runs: the recorder runs, newest first: when each started and ended (its last tick while it runs
-- or after a crash), why it stopped, its interval and host.
--
-- Parameters (name = default  kind):
--   :run_id = NULL       integer  only this run
-- Result columns:
--   id, started_ms, ended_ms (stopped, else the last tick, else the start), stop_reason,
--   interval_ms, host, version
SELECT id, started_ms, coalesce(stopped_ms, last_tick_ms, started_ms) AS ended_ms, stop_reason,
       interval_ms, host, version
FROM runs
WHERE :run_id IS NULL OR id = :run_id
ORDER BY id DESC;

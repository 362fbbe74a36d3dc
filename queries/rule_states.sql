-- rule_states: every rule in force and its state on each series it watches: firing (since when),
-- cooldown (until when a new firing would be held back), pending (its `for` has not passed), or ok.
--
-- Parameters (name = default  kind):
--   :now_ms = now  time  the time "now" (Unix ms)
-- Result columns:
--   rule, severity, comparison, threshold, series_id, kind, target, pid, metric, observed, state,
--   pending_since_ms, firing_since_ms, cooldown_until_ms
WITH last_firing AS (
    SELECT rule, series_id, max(ts_ms) AS ts_ms FROM alerts
    WHERE event = 'firing' AND ts_ms <= :now_ms
    GROUP BY rule, series_id
)
SELECT r.name AS rule, r.severity, r.comparison, r.threshold, st.series_id, si.kind, si.target,
       si.pid, si.metric, st.observed,
       CASE
         WHEN st.firing_since_ms IS NOT NULL THEN 'firing'
         WHEN lf.ts_ms + r.cooldown_ms > :now_ms THEN 'cooldown'
         WHEN st.pending_since_ms IS NOT NULL THEN 'pending'
         ELSE 'ok'
       END AS state,
       st.pending_since_ms, st.firing_since_ms,
       CASE WHEN lf.ts_ms + r.cooldown_ms > :now_ms THEN lf.ts_ms + r.cooldown_ms END AS cooldown_until_ms
FROM rules AS r
LEFT JOIN alert_state AS st ON st.rule = r.name
LEFT JOIN series_info AS si ON si.series_id = st.series_id
LEFT JOIN last_firing AS lf ON lf.rule = r.name AND lf.series_id = st.series_id
ORDER BY r.name, si.target, si.pid;

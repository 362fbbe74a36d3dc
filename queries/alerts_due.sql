-- alerts_due: what each rule must do now, from its state (alert_conditions), the rules' `for`,
-- cooldown and repeat settings, and the alerts audit table.
--   firing      the condition has held for the rule's `for` and no firing of this rule on this
--               series lies inside the cooldown
--   suppressed  the same, but inside the cooldown (reported once per episode, so it is counted)
--   repeat      still firing, and `repeat` has passed since the last notification
--   resolved    firing, and the value crossed back by the hysteresis margin (or is gone)
--
-- Parameters (name = default  kind):
--   :now_ms = now  time  the evaluation time (Unix ms)
-- Result columns:
--   rule, series_id, event, observed, threshold, comparison, severity, actions,
--   pending_since_ms, firing_since_ms

-- One pass over alert_conditions, MATERIALIZED so the event's CASE (with its subquery) is not
-- copied into the WHERE; joining the view to itself again cost a third more to prepare.
WITH due AS MATERIALIZED (
    SELECT rule, series_id, observed, threshold, comparison, severity, actions, pending_since_ms,
           firing_since_ms,
           CASE
             WHEN firing_since_ms IS NOT NULL AND clears THEN 'resolved'
             WHEN firing_since_ms IS NOT NULL AND holds AND repeat_ms IS NOT NULL
                  AND last_notified_ms <= :now_ms - repeat_ms THEN 'repeat'
             WHEN firing_since_ms IS NULL AND holds AND pending_since_ms <= :now_ms - for_ms THEN
               CASE WHEN EXISTS (SELECT 1 FROM alerts AS a
                                  WHERE a.rule = alert_conditions.rule
                                    AND a.series_id = alert_conditions.series_id
                                    AND a.event = 'firing'
                                    AND a.ts_ms > :now_ms - cooldown_ms AND a.ts_ms <= :now_ms)
                    THEN CASE WHEN suppressed_since_ms IS NULL THEN 'suppressed' END
                    ELSE 'firing'
               END
           END AS event
    FROM alert_conditions
)
SELECT rule, series_id, event, observed, threshold, comparison, severity, actions,
       pending_since_ms, firing_since_ms
FROM due
WHERE event IS NOT NULL
ORDER BY rule, series_id;

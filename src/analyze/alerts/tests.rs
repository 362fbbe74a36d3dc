//! The alert engine on synthetic histories: `for`, cooldown, hysteresis, repeat, and rule checks.

use super::*;
use crate::analyze::analysis::tests::History;
use crate::config::FileConfig;

const T0: i64 = 1_790_000_000_000;
const MIN: i64 = 60_000;

fn rules(toml_text: &str) -> Result<Vec<Rule>, ConfigError> {
    let file = FileConfig::parse(toml_text, std::path::Path::new("rules.toml"))?;
    build_rules(&file.rules, false, &file.notify)
}

fn rule(toml_body: &str) -> Rule {
    let text = format!("[[rules]]\nname = \"r\"\n{toml_body}");
    rules(&text).expect("valid rule").remove(0)
}

/// A value every 10 s from T0 for `minutes`, given by `f(minutes since T0)`.
fn history(h: &History, minutes: i64, f: impl Fn(f64) -> f64) {
    let pts: Vec<_> = (0..=minutes * 6)
        .map(|i| (T0 + i * 10_000, f(i as f64 / 6.0)))
        .collect();
    h.series("process", "app", "rss", "bytes", &pts);
}

/// Evaluate every `step_ms` from T0 to T0 + `minutes`; returns (ms since T0, event) pairs.
fn replay(h: &History, rules: Vec<Rule>, minutes: i64, step_ms: i64) -> Vec<(i64, String)> {
    replay_messages(h, rules, minutes, step_ms)
        .into_iter()
        .map(|(t, e, _)| (t, e))
        .collect()
}

fn ev(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|(t, e)| (*t, e.to_string())).collect()
}

const ABOVE_100: &str = "metric = \"rss\"\ncomparison = \"greater_than\"\nvalue = 100\n";

#[test]
fn cooldown_suppresses_a_second_alert_inside_it_and_allows_one_after() {
    let h = History::new();
    // Above 100 during minutes [0,2), [4,6) and [20,22); below otherwise.
    history(&h, 24, |m| {
        if m < 2.0 || (4.0..6.0).contains(&m) || (20.0..22.0).contains(&m) {
            200.0
        } else {
            50.0
        }
    });
    let r = rule(&format!("{ABOVE_100}cooldown = \"10m\"\n"));
    let events = replay(&h, vec![r], 24, 10_000);
    assert_eq!(
        events,
        ev(&[
            (0, "firing"),
            (2 * MIN, "resolved"),
            (4 * MIN, "suppressed"),
            (20 * MIN, "firing"),
            (22 * MIN, "resolved")
        ])
    );
    let suppressed: i64 = h
        .conn()
        .query_row(
            "SELECT count(*) FROM alerts WHERE event = 'suppressed'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(suppressed, 1, "one suppressed episode is recorded once");
}

#[test]
fn a_suppressed_condition_that_outlasts_the_cooldown_fires_when_it_ends() {
    let h = History::new();
    history(&h, 20, |m| {
        if !(1.0..3.0).contains(&m) {
            200.0
        } else {
            50.0
        }
    });
    let r = rule(&format!("{ABOVE_100}cooldown = \"5m\"\n"));
    let events = replay(&h, vec![r], 8, 10_000);
    assert_eq!(
        events,
        ev(&[
            (0, "firing"),
            (MIN, "resolved"),
            (3 * MIN, "suppressed"),
            (5 * MIN, "firing")
        ])
    );
}

#[test]
fn for_delays_firing_until_the_condition_has_held_that_long() {
    let h = History::new();
    // Above briefly at minute 1 (30 s), then from minute 3 on.
    history(&h, 10, |m| {
        if (1.0..1.5).contains(&m) || m >= 3.0 {
            200.0
        } else {
            50.0
        }
    });
    let r = rule(&format!("{ABOVE_100}for = \"1m\"\n"));
    let events = replay(&h, vec![r], 10, 10_000);
    assert_eq!(
        events,
        ev(&[(4 * MIN, "firing")]),
        "the 30 s blip never fires"
    );
}

#[test]
fn hysteresis_keeps_an_alert_from_flapping() {
    let h = History::new();
    // 200, then 95 (below the threshold but inside the 10 margin), then 85.
    history(&h, 6, |m| {
        if m < 2.0 {
            200.0
        } else if m < 4.0 {
            95.0
        } else {
            85.0
        }
    });
    let r = rule(&format!("{ABOVE_100}hysteresis = 10\n"));
    let events = replay(&h, vec![r], 6, 10_000);
    assert_eq!(events, ev(&[(0, "firing"), (4 * MIN, "resolved")]));
}

#[test]
fn repeat_renotifies_while_firing() {
    let h = History::new();
    history(&h, 5, |_| 200.0);
    let r = rule(&format!("{ABOVE_100}repeat = \"2m\"\n"));
    let events = replay(&h, vec![r], 5, 10_000);
    assert_eq!(
        events,
        ev(&[(0, "firing"), (2 * MIN, "repeat"), (4 * MIN, "repeat")])
    );
}

#[test]
fn a_target_that_goes_away_resolves() {
    let h = History::new();
    history(&h, 3, |_| 200.0);
    h.conn()
        .execute("UPDATE targets SET gone_ms = ?1", [T0 + 3 * MIN])
        .expect("gone");
    let events = replay(&h, vec![rule(ABOVE_100)], 5, 30_000);
    assert_eq!(events, ev(&[(0, "firing"), (3 * MIN, "resolved")]));
}

#[test]
fn alert_rows_carry_the_audit_fields() {
    let h = History::new();
    history(&h, 1, |_| 2.0 * 1024.0 * 1024.0 * 1024.0);
    let r = rule(
        "metric = \"rss\"\ncomparison = \"greater_than\"\nvalue = \"1GiB\"\nseverity = \"critical\"\n",
    );
    install(h.conn(), std::slice::from_ref(&r)).expect("install");
    let events = Engine::new(vec![r])
        .evaluate(h.conn(), T0)
        .expect("evaluate");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.event.as_str(), e.severity.as_str(), e.target.as_str()),
        ("firing", "critical", "app")
    );
    assert_eq!(e.threshold, 1024.0 * 1024.0 * 1024.0);
    assert_eq!(
        e.message,
        "r: rss of process app (pid 4242) is 2.0 GiB (above 1.0 GiB)"
    );
    let (observed, cmp): (f64, String) = h
        .conn()
        .query_row(
            "SELECT observed, comparison FROM alerts WHERE id = ?1",
            [e.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(
        (observed, cmp.as_str()),
        (2.0 * 1024.0 * 1024.0 * 1024.0, "greater_than")
    );
}

fn growth_rule_only() -> Vec<Rule> {
    default_rules(&NotifySection::default())
        .into_iter()
        .filter(|r| r.name == "process_rss_growth")
        .collect()
}

#[test]
fn default_growth_rule_fires_on_growth_that_goes_on() {
    let h = History::new();
    // 100 MB flat for 30 min, then +2.5 % a minute, compounding, for good.
    let mb = 1024.0 * 1024.0;
    history(&h, 60, |m| mb * 100.0 * 1.025f64.powf((m - 30.0).max(0.0)));
    let events = replay(&h, growth_rule_only(), 60, MIN);
    // Each end is the median of its 2-minute slice: at minute m, the level at m - 1 against the
    // level at m - 9. That is above +20 % from minute 39 on (1.025^8 = +21.8 %); held 15 minutes,
    // it fires at minute 54.
    assert_eq!(events, ev(&[(54 * MIN, "firing")]));
}

#[test]
fn default_growth_rule_stays_quiet_on_growth_that_stops() {
    let h = History::new();
    // 100 MB flat for 30 min, then +15 MB a minute to 175 MB at minute 35, then flat: a cache
    // filled once. +20 % in 10 minutes holds for under 15 minutes, so it never fires.
    let mb = 1024.0 * 1024.0;
    history(&h, 60, |m| mb * (100.0 + 15.0 * (m - 30.0).clamp(0.0, 5.0)));
    assert_eq!(replay(&h, growth_rule_only(), 60, MIN), ev(&[]));
    // One sample 3x as high (a spike) moves neither end's median.
    let h = History::new();
    history(&h, 60, |m| {
        if (40.0..40.1).contains(&m) {
            300.0 * mb
        } else {
            100.0 * mb
        }
    });
    assert_eq!(replay(&h, growth_rule_only(), 60, MIN), ev(&[]));
}

#[test]
fn malformed_rules_are_config_errors_naming_them() {
    let cases = [
        (
            "metric = \"rsss\"\ncomparison = \"greater_than\"\nvalue = 1",
            "unknown metric \"rsss\"",
        ),
        (
            "metric = \"rss\"\ncomparison = \"bigger\"\nvalue = 1",
            "unknown comparison \"bigger\"",
        ),
        (
            "metric = \"rss\"\ncomparison = \"percent_change\"\nvalue = 20\nwindow = \"0s\"",
            "window must be longer than 0",
        ),
        (
            "metric = \"rss\"\ncomparison = \"greater_than\"\nvalue = 1\nseverity = \"meh\"",
            "unknown severity",
        ),
        (
            "metric = \"rss\"\ncomparison = \"greater_than\"\nvalue = 1\nactions = [\"webhook\"]",
            "needs [notify] webhook",
        ),
        (
            "metric = \"mem_used_percent\"\nkind = \"process\"\ncomparison = \"greater_than\"\nvalue = 1",
            "belongs to system targets",
        ),
    ];
    for (body, needle) in cases {
        let err = rules(&format!("[[rules]]\nname = \"bad\"\n{body}\n"))
            .expect_err(body)
            .to_string();
        assert!(
            err.contains("rule \"bad\"") && err.contains(needle),
            "{err}"
        );
    }
    // A negative window is caught by the parser, with its line.
    let err = rules("[[rules]]\nname = \"bad\"\nmetric = \"rss\"\ncomparison = \"percent_change\"\nvalue = 20\nwindow = \"-5m\"\n")
        .expect_err("negative")
        .to_string();
    assert!(
        err.contains("line 6") && err.contains("invalid duration '-5m'"),
        "{err}"
    );
    // A field no rule has.
    let err = rules("[[rules]]\nname = \"bad\"\nmetric = \"rss\"\ncomparison = \"greater_than\"\nvalue = 1\nthreshhold = 3\n")
        .expect_err("unknown field")
        .to_string();
    assert!(
        err.contains("unknown field `threshhold`") && err.contains("line 6"),
        "{err}"
    );
}

#[test]
fn config_rules_replace_defaults_by_name() {
    let file = FileConfig::parse(
        "[[rules]]\nname = \"system_memory_high\"\nmetric = \"mem_used_percent\"\ncomparison = \"greater_than\"\nvalue = 95\n",
        std::path::Path::new("x.toml"),
    )
    .expect("parse");
    let all = build_rules(&file.rules, true, &file.notify).expect("valid");
    assert_eq!(all.len(), default_rules(&file.notify).len());
    let sys = all
        .iter()
        .find(|r| r.name == "system_memory_high")
        .expect("rule");
    assert_eq!(sys.threshold, 95.0);
    assert_eq!(
        build_rules(&file.rules, false, &file.notify)
            .expect("valid")
            .len(),
        1
    );
}

#[test]
fn the_commented_rule_example_in_the_default_config_is_valid() {
    // Switch on the example rule and the webhook it names.
    let text = crate::config::default_config_with_examples("# [[rules]]")
        .replace("# webhook = ", "webhook = ");
    let file = FileConfig::parse(&text, std::path::Path::new("default.toml")).expect("parses");
    let all = build_rules(&file.rules, true, &file.notify).expect("valid");
    let r = all
        .iter()
        .find(|r| r.name == "api_leak")
        .expect("example rule");
    assert_eq!(r.comparison, Comparison::Slope);
    assert_eq!(
        (r.threshold, r.window_ms, r.for_ms),
        (5.0, 3_600_000, 300_000)
    );
    assert_eq!(r.limit, None);
    assert_eq!(r.actions, vec!["log".to_string(), "webhook".to_string()]);
}

#[test]
fn cgroup_metrics_and_shared_names() {
    // swap belongs to processes and cgroups: the kind chooses, no kind means process.
    let r = rule(
        "metric = \"swap\"\nkind = \"cgroup\"\ncomparison = \"greater_than\"\nvalue = \"1GiB\"\n",
    );
    assert_eq!(r.kind.map(|k| k.as_str()), Some("cgroup"));
    let r = rule("metric = \"swap\"\ncomparison = \"greater_than\"\nvalue = 1\n");
    assert_eq!(r.kind.map(|k| k.as_str()), Some("process"));
    let r = rule("metric = \"oom_kill\"\ncomparison = \"increase\"\nvalue = 0\n");
    assert_eq!(
        (r.kind.map(|k| k.as_str()), r.comparison, r.window_ms),
        (Some("cgroup"), Comparison::Increase, 300_000)
    );
    let err = rules("[[rules]]\nname = \"r\"\nmetric = \"rss\"\nkind = \"cgroup\"\ncomparison = \"greater_than\"\nvalue = 1\n")
        .expect_err("rss is not a cgroup metric")
        .to_string();
    assert!(
        err.contains("belongs to process targets, not cgroup"),
        "{err}"
    );
    // The defaults watch every cgroup's limit and OOM kills.
    let defaults = default_rules(&Default::default());
    let oom = defaults
        .iter()
        .find(|r| r.name == "cgroup_oom_kill")
        .expect("oom rule");
    assert_eq!((oom.comparison, oom.threshold), (Comparison::Increase, 0.0));
    let near = defaults
        .iter()
        .find(|r| r.name == "cgroup_near_limit")
        .expect("limit rule");
    assert_eq!(
        (near.metric.as_str(), near.threshold),
        ("limit_percent", 90.0)
    );
}

#[test]
fn default_cgroup_rules_fire_near_the_limit_and_on_a_new_oom_kill() {
    let h = History::new();
    // A group at 80 % of its limit, 95 % from minute 5; one OOM kill at minute 10.
    let pts = |f: &dyn Fn(f64) -> f64| -> Vec<(i64, f64)> {
        (0..=20 * 6)
            .map(|i| (T0 + i * 10_000, f(i as f64 / 6.0)))
            .collect()
    };
    h.series(
        "cgroup",
        "/app",
        "limit_percent",
        "percent",
        &pts(&|m| if m < 5.0 { 80.0 } else { 95.0 }),
    );
    h.series(
        "cgroup",
        "/app",
        "oom_kill",
        "count",
        &pts(&|m| if m < 10.0 { 2.0 } else { 3.0 }),
    );
    let rules: Vec<Rule> = default_rules(&Default::default())
        .into_iter()
        .filter(|r| r.kind.map(|k| k.as_str()) == Some("cgroup"))
        .collect();
    install(h.conn(), &rules).expect("install");
    let mut engine = Engine::new(rules);
    let mut fired = Vec::new();
    let mut now = T0;
    while now <= T0 + 20 * MIN {
        for e in engine.evaluate(h.conn(), now).expect("evaluate") {
            fired.push((now - T0, e.rule.clone(), e.event.as_str().to_string()));
        }
        now += 10_000;
    }
    let at = |rule: &str| -> Vec<(i64, String)> {
        fired
            .iter()
            .filter(|(_, r, _)| r == rule)
            .map(|(t, _, e)| (*t, e.clone()))
            .collect()
    };
    assert_eq!(at("cgroup_near_limit"), ev(&[(5 * MIN, "firing")]));
    // The counter already at 2 is not news; the kill seen at minute 10 (the rise from the sample
    // at 9:50) is, until 9:50 leaves the 5-minute window at minute 15.
    assert_eq!(
        at("cgroup_oom_kill"),
        ev(&[(10 * MIN, "firing"), (15 * MIN, "resolved")])
    );
}

#[test]
fn a_rule_is_skipped_exactly_when_its_query_would_select_no_series() {
    let h = History::new();
    let fresh = [(T0, 1.0)];
    h.series("process", "app", "rss", "bytes", &fresh);
    h.series("process", "app", "fds", "count", &fresh);
    h.series("system", "system", "mem_used_percent", "percent", &fresh);
    h.series("cgroup", "/a.service", "limit_percent", "percent", &fresh);
    let facts = series_facts(
        h.conn(),
        &["rss", "swap", "mem_used_percent", "limit_percent"],
    )
    .expect("facts");
    // Only the metrics rules read: the `fds` series is not among the facts.
    assert_eq!(facts.len(), 3, "rss, mem_used_percent, limit_percent");
    assert!(facts.values().all(|f| f.metric != "fds"));
    let selectors = [
        "metric = \"rss\"",
        "metric = \"rss\"\nkind = \"process\"",
        "metric = \"rss\"\ntarget = \"app\"",
        "metric = \"rss\"\ntarget = \"App\"",
        "metric = \"rss\"\npid = 4242",
        "metric = \"rss\"\npid = 4243",
        "metric = \"swap\"",
        "metric = \"mem_used_percent\"\nkind = \"system\"",
        "metric = \"limit_percent\"\nkind = \"cgroup\"\ntarget = \"/a.service\"",
        "metric = \"limit_percent\"\ntarget = \"/b.service\"",
    ];
    let mut selected_some = 0;
    for body in selectors {
        let r = rule(&format!(
            "{body}\ncomparison = \"greater_than\"\nvalue = 0\n"
        ));
        let by_rust: std::collections::BTreeSet<i64> = facts
            .iter()
            .filter(|(_, f)| f.selected_by(&r))
            .map(|(sid, _)| *sid)
            .collect();
        let by_sql: std::collections::BTreeSet<i64> = observe(h.conn(), &r, Share::ALL, T0)
            .expect("observe")
            .into_iter()
            .map(|(sid, _)| sid)
            .collect();
        assert_eq!(by_rust, by_sql, "selector {body:?}");
        selected_some += usize::from(!by_sql.is_empty());
    }
    assert_eq!(selected_some, 6, "the selectors cover both outcomes");
}

/// The ticks a grid evaluates after, as the recorder asks it: due, then evaluated.
fn evaluated_ticks(mut grid: EvaluationGrid, ticks: &[i64]) -> Vec<i64> {
    ticks
        .iter()
        .copied()
        .filter(|&t| {
            let due = grid.due(t);
            if due {
                grid.evaluated(t);
            }
            due
        })
        .collect()
}

#[test]
fn evaluation_grid_keeps_its_own_points() {
    // Issue 20.3: scheduling the next evaluation from the tick's own time made 1 s evaluations at
    // 1 s ticks run every 1-2 s (a tick 3 ms early missed its turn).
    let grid = EvaluationGrid::new(Duration::from_secs(1), Duration::from_secs(1));
    let ticks = [0, 997, 2001, 2999, 4002, 5000, 5998];
    let evaluated = evaluated_ticks(grid, &ticks);
    assert_eq!(evaluated, ticks, "every 1 s tick is evaluated");

    // 10 s evaluations at 100 ms ticks: on the first tick at or past each 10 s point of the grid
    // from the first tick, whatever the jitter; a skipped stretch is not made up.
    let grid = EvaluationGrid::new(Duration::from_secs(10), Duration::from_millis(100));
    let mut ticks: Vec<i64> = (0..400)
        .map(|i| 40 + i * 100 + (i * 37 % 23) - 11)
        .collect();
    ticks.retain(|&t| !(12_000..=24_000).contains(&t));
    let evaluated = evaluated_ticks(grid, &ticks);
    let points: Vec<i64> = evaluated.iter().map(|t| (t - 29 + 50) / 10_000).collect();
    assert_eq!(points, [0, 1, 2, 3], "{evaluated:?}");
    assert!(
        evaluated[2] > 24_000 && evaluated[2] < 24_200,
        "{evaluated:?}"
    );
}

/// Evaluate every `step_ms` from T0 to T0 + `minutes`; returns (ms since T0, event, message).
fn replay_messages(
    h: &History,
    rules: Vec<Rule>,
    minutes: i64,
    step_ms: i64,
) -> Vec<(i64, String, String)> {
    install(h.conn(), &rules).expect("install");
    let mut engine = Engine::new(rules);
    let mut out = Vec::new();
    let mut now = T0;
    while now <= T0 + minutes * MIN {
        for e in engine.evaluate(h.conn(), now).expect("evaluate") {
            out.push((now - T0, e.event.as_str().to_string(), e.message));
        }
        now += step_ms;
    }
    out
}

#[test]
fn a_resolution_says_why_it_resolved() {
    // Issue 20.5: resolutions kept the firing's words ("is 85 (above 100) — resolved").
    let h = History::new();
    history(&h, 6, |m| if m < 2.0 { 200.0 } else { 85.0 });
    let events = replay_messages(&h, vec![rule(ABOVE_100)], 6, 30_000);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0].2,
        "r: rss of process app (pid 4242) is 200 B (above 100 B)"
    );
    assert_eq!(
        events[1].2,
        "r: rss of process app (pid 4242) is back down to 85 B, no longer above 100 B — resolved"
    );

    let h = History::new();
    history(&h, 3, |_| 200.0);
    h.conn()
        .execute("UPDATE targets SET gone_ms = ?1", [T0 + 3 * MIN])
        .expect("gone");
    let events = replay_messages(&h, vec![rule(ABOVE_100)], 5, 30_000);
    assert_eq!(
        events.last().map(|e| e.2.as_str()),
        Some(
            "r: rss of process app (pid 4242) has no current value: the process exited — resolved"
        ),
        "{events:?}"
    );
}

#[test]
fn a_time_to_limit_alert_resolves_when_the_growth_stops_not_as_gone() {
    // Issue 20.5: a time_to_limit rule resolved with "has no current value (stopped or gone)"
    // while its target was alive and had merely stopped growing.
    const MIB: f64 = 1024.0 * 1024.0;
    let h = History::new();
    // +200 MiB/h from 100 MiB for 90 minutes, then flat for two hours.
    history(&h, 210, |m| (100.0 + 200.0 * m.min(90.0) / 60.0) * MIB);
    let r = rule(
        "metric = \"rss\"\ncomparison = \"time_to_limit\"\nvalue = \"4h\"\nlimit = \"1GiB\"\nwindow = \"30m\"\n",
    );
    let events = replay_messages(&h, vec![r], 210, MIN);
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["firing", "resolved"], "{events:?}");
    assert!(
        events[0].0 < 90 * MIN && events[1].0 > 90 * MIN,
        "{events:?}"
    );
    assert_eq!(
        events[1].2,
        "r: rss of process app (pid 4242) is no longer heading for its limit: its 30m trend is not increasing — resolved"
    );
}

/// A trend rule is observed again only every tenth of a slice of its window (1 h: 30 s); a
/// threshold rule at every evaluation; between observations the last value stands.
#[test]
fn trend_rules_are_observed_every_tenth_of_a_slice() {
    let h = History::new();
    history(&h, 120, |m| 100.0 * (1.0 + 0.2 * m / 60.0));
    let slope = rule("metric = \"rss\"\ncomparison = \"slope\"\nvalue = 1\nwindow = \"1h\"\n");
    let above = rules(
        "[[rules]]\nname = \"above\"\nmetric = \"rss\"\ncomparison = \"greater_than\"\nvalue = 100\n",
    )
    .expect("rule")
    .remove(0);
    assert_eq!(observe_every_ms(&slope), 30_000);
    assert_eq!(observe_every_ms(&above), 0);
    install(h.conn(), &[slope.clone(), above.clone()]).expect("install");
    let mut engine = Engine::new(vec![slope, above]);
    let evaluated = |rule: &str| -> i64 {
        h.conn()
            .query_row(
                "SELECT max(evaluated_ms) FROM alert_state WHERE rule = ?1",
                [rule],
                |r| r.get(0),
            )
            .expect("state")
    };
    let start = T0 + 90 * MIN;
    for (dt, slope_seen) in [
        (0, 0),
        (10_000, 0),
        (20_000, 0),
        (30_000, 30_000),
        (40_000, 30_000),
    ] {
        engine.evaluate(h.conn(), start + dt).expect("evaluate");
        assert_eq!(evaluated("r"), start + slope_seen, "slope rule at +{dt} ms");
        assert_eq!(evaluated("above"), start + dt, "threshold rule at +{dt} ms");
    }
    let observed: f64 = h
        .conn()
        .query_row(
            "SELECT observed FROM alert_state WHERE rule = 'r'",
            [],
            |r| r.get(0),
        )
        .expect("observed");
    assert!(
        observed > 1.0,
        "the leak's slope stands between observations: {observed}"
    );
}

#[test]
fn an_engine_on_an_interval_spreads_a_trend_rules_series_over_the_evaluations_between_observations()
{
    let h = History::new();
    let mut ids = Vec::new();
    for k in 0..6 {
        let pts: Vec<_> = (0..=120 * 6)
            .map(|i| (T0 + i * 10_000, 100.0 * (1.0 + 0.2 * i as f64 / 360.0)))
            .collect();
        ids.push(h.series("process", &format!("app{k}"), "rss", "bytes", &pts));
        // Two more series a target, as a recorder writes: the rss series' ids then come in
        // strides of three (a share by series id would hold all of them or none).
        h.series("process", &format!("app{k}"), "vms", "bytes", &pts);
        h.series("process", &format!("app{k}"), "threads", "count", &pts);
    }
    let slope = rule("metric = \"rss\"\ncomparison = \"slope\"\nvalue = 1\nwindow = \"1h\"\n");
    // Observed every 30 s; evaluated every 10 s: a third of the series at each evaluation.
    assert_eq!(observe_every_ms(&slope), 30_000);
    install(h.conn(), std::slice::from_ref(&slope)).expect("install");
    let mut engine = Engine::evaluated_every(vec![slope], Duration::from_secs(10));
    let observed_at = |now: i64| -> Vec<i64> {
        let mut stmt = h
            .conn()
            .prepare("SELECT series_id FROM alert_state WHERE rule = 'r' AND evaluated_ms = ?1 ORDER BY 1")
            .expect("prepare");
        stmt.query_map([now], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let target_of = |id: i64| -> i64 {
        h.conn()
            .query_row("SELECT target_id FROM series WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .expect("target")
    };
    let start = T0 + 90 * MIN;
    let mut seen = Vec::new();
    let mut rounds = Vec::new();
    for dt in [0, 10_000, 20_000] {
        engine.evaluate(h.conn(), start + dt).expect("evaluate");
        let now = observed_at(start + dt);
        assert_eq!(
            now.len(),
            2,
            "a third of the six series at +{dt} ms: {now:?}"
        );
        let shares: Vec<i64> = now.iter().map(|id| target_of(*id) % 3).collect();
        assert!(shares.iter().all(|s| *s == shares[0]), "{now:?}");
        seen.extend(now.iter().copied());
        rounds.push(now);
    }
    seen.sort();
    assert_eq!(seen, ids, "every series observed once in three evaluations");
    // Each series' leak stands between its observations: all six hold a slope now.
    let rising: i64 = h
        .conn()
        .query_row(
            "SELECT count(*) FROM alert_state WHERE rule = 'r' AND observed > 1.0",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(rising, 6);
    // The fourth evaluation starts the round again, with the first evaluation's series.
    engine.evaluate(h.conn(), start + 30_000).expect("evaluate");
    assert_eq!(observed_at(start + 30_000), rounds[0]);
}

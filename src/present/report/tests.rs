//! Reports on a fixed synthetic history, compared with golden files in `tests/golden/`
//! (MEMTRAIL_UPDATE_GOLDEN=1 rewrites them; review the diff before committing).

use super::*;
use crate::analyze::analysis::tests::History;

const T0: i64 = 1_790_000_000_000;
const MIN: i64 = 60_000;
const MB: f64 = 1024.0 * 1024.0;

/// One hour at one sample a minute, with the recorder stopped from minute 26 to 34.
fn history() -> History {
    let h = History::new();
    let minutes: Vec<i64> = (0..=60).filter(|m| !(26..35).contains(m)).collect();
    let at = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        minutes.iter().map(|&m| (T0 + m * MIN, f(m))).collect()
    };
    h.series(
        "process",
        "api",
        "rss",
        "bytes",
        &at(&|m| 100.0 * MB + m as f64 * MB),
    );
    h.series(
        "process",
        "worker",
        "rss",
        "bytes",
        &at(&|m| 50.0 * MB + ((m * 7) % 5) as f64 * 0.1 * MB),
    );
    h.series(
        "system",
        "system",
        "mem_used",
        "bytes",
        &at(&|m| 4096.0 * MB + ((m * 3) % 4) as f64 * MB),
    );
    h.series(
        "system",
        "system",
        "mem_total",
        "bytes",
        &at(&|_| 16384.0 * MB),
    );
    let c = h.conn();
    c.execute_batch(&format!(
        "UPDATE targets SET pid = 5151 WHERE name = 'worker';
         INSERT INTO runs (started_ms, stopped_ms, last_tick_ms, stop_reason, version, interval_ms, retention_ms, host, pid)
           VALUES ({t0}, {r1}, {r1}, 'signal', '0.1.0', 60000, 86400000, 'host', 1),
                  ({r2}, {end}, {end}, 'duration', '0.1.0', 60000, 86400000, 'host', 2);
         INSERT INTO alerts (ts_ms, rule, series_id, event, kind, target, pid, metric, observed, threshold, comparison, severity, message)
           VALUES ({a1}, 'process_rss_growth', 1, 'firing', 'process', 'api', 4242, 'rss', 21.0, 20.0, 'percent_change', 'warning', 'rss of process api changed +21.0 % in 10m'),
                  ({a2}, 'process_rss_growth', 1, 'resolved', 'process', 'api', 4242, 'rss', 9.0, 20.0, 'percent_change', 'warning', 'rss of process api changed +9.0 % in 10m — resolved');
         INSERT INTO cleanup_runs (trigger, level, pid, start_time_ms, target, actions, started_ms, ended_ms, outcome, rss_before, rss_after, freed_bytes)
           VALUES ('manual', 'normal', 4242, {t0}, 'api', 'signal SIGUSR1', {c1}, {c1e}, 'ok', {b}, {a}, {f});",
        t0 = T0,
        r1 = T0 + 25 * MIN,
        r2 = T0 + 35 * MIN,
        end = T0 + 60 * MIN,
        a1 = T0 + 40 * MIN,
        a2 = T0 + 50 * MIN,
        c1 = T0 + 45 * MIN,
        c1e = T0 + 45 * MIN + 2000,
        b = 145.0 * MB,
        a = 125.0 * MB,
        f = 20.0 * MB,
    ))
    .expect("fixtures");
    h
}

fn options(target: Option<&str>) -> Options {
    Options {
        from_ms: T0,
        to_ms: T0 + 60 * MIN,
        target: target.map(str::to_string),
        generated_ms: T0 + 61 * MIN,
        database: "golden.db".into(),
    }
}

/// Compare `actual` with `tests/golden/NAME` (MEMTRAIL_UPDATE_GOLDEN=1 writes it); the top tests
/// use it too.
pub(crate) fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("MEMTRAIL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{name} differs from the golden file at line {}:\n  golden: {:?}\n  actual: {:?}\n(MEMTRAIL_UPDATE_GOLDEN=1 rewrites it)",
            first.map_or(
                expected.lines().count().min(actual.lines().count()) + 1,
                |l| l + 1
            ),
            first.and_then(|l| expected.lines().nth(l)),
            first.and_then(|l| actual.lines().nth(l))
        );
    }
}

#[test]
fn markdown_matches_the_golden_file() {
    let h = history();
    let r = build(&h.path(), &options(None)).expect("report");
    golden("report.md", &markdown(&r));
}

#[test]
fn json_matches_the_golden_file() {
    let h = history();
    let r = build(&h.path(), &options(None)).expect("report");
    golden("report.json", &json(&r));
}

#[test]
fn verdicts_gaps_and_markers_come_from_the_history() {
    let h = history();
    let r = build(&h.path(), &options(None)).expect("report");
    let api = r.series.iter().find(|s| s.target == "api").expect("api");
    assert_eq!(
        api.trend.classification,
        Some(crate::analyze::overview::Verdict::Increasing)
    );
    assert!(api.verdict.starts_with("leak suspected"), "{}", api.verdict);
    assert_eq!(
        (api.min, api.max, api.last),
        (100.0 * MB, 160.0 * MB, 160.0 * MB)
    );
    let worker = r
        .series
        .iter()
        .find(|s| s.target == "worker")
        .expect("worker");
    assert_eq!(worker.verdict, "stable");
    assert_eq!(
        r.gaps,
        vec![Gap {
            from_ms: T0 + 25 * MIN,
            to_ms: T0 + 35 * MIN
        }]
    );
    assert_eq!((r.alerts.len(), r.cleanups.len()), (2, 1));
    // Charts: the system, then one per process; buckets skip the gap rather than bridging it.
    let titles: Vec<&str> = r.charts.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "system memory used (of 16.0 GiB)",
            "process api (pid 4242)",
            "process worker (pid 5151)"
        ]
    );
    let api_line = &r.charts[1].lines[0];
    assert!(
        api_line
            .buckets
            .iter()
            .all(|b| b.0 < T0 + 26 * MIN || b.0 >= T0 + 35 * MIN)
    );
    let page = html(&r);
    assert_eq!(page.matches("<svg class=\"chart\"").count(), 3);
    assert_eq!(
        page.matches("class=\"marker alert\"").count(),
        1,
        "the firing, on the api chart only (issue 20.16: alerts were drawn on the system chart too)"
    );
    assert_eq!(page.matches("class=\"marker resolved\"").count(), 1);
    assert_eq!(page.matches("class=\"marker cleanup\"").count(), 1);
    // Each marker says what it is in visible text, not only in a tooltip.
    for label in [
        ">alert: process_rss_growth<",
        ">resolved: process_rss_growth<",
        ">cleanup: freed 20.0 MiB<",
    ] {
        assert!(page.contains(label), "{label}");
    }
    assert!(
        !page.contains("<script") && !page.contains("http://") && !page.contains("https://"),
        "self-contained"
    );
}

#[test]
fn a_target_filter_keeps_only_that_target() {
    let h = history();
    let r = build(&h.path(), &options(Some("worker"))).expect("report");
    assert!(r.series.iter().all(|s| s.target == "worker"));
    assert!(r.alerts.is_empty() && r.cleanups.is_empty());
    let r = build(&h.path(), &options(Some("4242"))).expect("by pid");
    assert!(r.series.iter().all(|s| s.target == "api") && r.alerts.len() == 2);
}

#[test]
fn csv_is_rfc_4180_with_one_row_per_sample_or_bucket() {
    let h = history();
    let mut raw = Vec::new();
    let n = csv(h.conn(), &options(Some("api")), true, MIN, &mut raw).expect("csv");
    let text = String::from_utf8(raw).expect("utf8");
    assert_eq!(
        n, 52,
        "52 samples of api: minutes 0..=60 less the 9-minute gap"
    );
    let mut lines = text.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("ts_ms,time,kind,target,pid,metric,unit,value")
    );
    assert_eq!(
        lines.next(),
        Some("1790000000000,2026-09-21T14:13:20.000Z,process,api,4242,rss,bytes,104857600")
    );
    let mut buckets = Vec::new();
    let n = csv(
        h.conn(),
        &options(Some("api")),
        false,
        10 * MIN,
        &mut buckets,
    )
    .expect("csv");
    assert_eq!(
        n,
        6 + 1,
        "six 10-minute buckets, and the one holding the last sample"
    );
}

/// Issue 20.15: a 10 s recording headlined "Leak suspected: system mem_used +4427 %/h". A span
/// too short to support a verdict gets none, and says why.
#[test]
fn a_span_too_short_for_a_verdict_suspects_no_leak() {
    let h = History::new();
    let pts = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..=100).map(|i| (T0 + i * 100, f(i))).collect()
    };
    h.series(
        "system",
        "system",
        "mem_used",
        "bytes",
        &pts(&|i| 4096.0 * MB + i as f64 * 2.0 * MB),
    );
    // A process that grew and was freed.
    h.series(
        "process",
        "app",
        "rss",
        "bytes",
        &pts(&|i| {
            if i < 60 {
                50.0 * MB + i as f64 * MB
            } else {
                50.0 * MB
            }
        }),
    );
    let r = build(
        &h.path(),
        &Options {
            from_ms: T0,
            to_ms: T0 + 10_000,
            target: None,
            generated_ms: T0 + 11_000,
            database: "short.db".into(),
        },
    )
    .expect("report");
    for s in &r.series {
        assert!(
            s.verdict.starts_with("not enough data for a verdict: "),
            "{} {}: {}",
            s.target,
            s.metric,
            s.verdict
        );
    }
    assert!(leak_headline(&r.series).is_empty());
    assert!(markdown(&r).contains("No memory series is growing steadily"));
}

/// The headline names a leaking target once, by its leading metric, not once per rss, tree_rss,
/// vms and tree_vms.
#[test]
fn the_headline_names_a_target_once_by_its_leading_metric() {
    let h = History::new();
    let rising: Vec<(i64, f64)> = (0..=60)
        .map(|m| (T0 + m * MIN, 100.0 * MB + m as f64 * MB))
        .collect();
    for metric in ["vms", "tree_vms", "tree_rss", "rss"] {
        h.series("process", "api", metric, "bytes", &rising);
    }
    let r = build(&h.path(), &options(None)).expect("report");
    let leaking = r
        .series
        .iter()
        .filter(|s| s.verdict.starts_with("leak suspected"))
        .count();
    assert_eq!(
        leaking,
        4,
        "{:?}",
        r.series.iter().map(|s| &s.verdict).collect::<Vec<_>>()
    );
    let headline = leak_headline(&r.series);
    assert_eq!(headline.len(), 1);
    assert_eq!(headline[0].metric, "rss");
    let md = markdown(&r);
    assert!(
        md.contains("**Leak suspected in 1:** process api (4242): rss +"),
        "{md}"
    );
}

/// Issue 20.16: `rss` was hidden under an equal `tree_rss`; the tree is drawn only when the process
/// has children. PSS, read once every few minutes, is drawn as points.
#[test]
fn the_tree_is_drawn_only_with_children_and_sparse_series_as_points() {
    for (children, tree_drawn) in [(0.0, false), (2.0, true)] {
        let h = History::new();
        let minutes = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
            (0..=60).map(|m| (T0 + m * MIN, f(m))).collect()
        };
        let rss = minutes(&|m| 100.0 * MB + m as f64 * 0.1 * MB);
        h.series("process", "api", "rss", "bytes", &rss);
        let tree: Vec<(i64, f64)> = rss
            .iter()
            .map(|(t, v)| (*t, v + children * 10.0 * MB))
            .collect();
        h.series("process", "api", "tree_rss", "bytes", &tree);
        h.series(
            "process",
            "api",
            "tree_procs",
            "count",
            &minutes(&|_| 1.0 + children),
        );
        let pss: Vec<(i64, f64)> = (0..=6).map(|i| (T0 + i * 10 * MIN, 90.0 * MB)).collect();
        h.series("process", "api", "pss", "bytes", &pss);
        let r = build(&h.path(), &options(None)).expect("report");
        let chart = r
            .charts
            .iter()
            .find(|c| c.target == "api")
            .expect("api chart");
        let metrics: Vec<&str> = chart.lines.iter().map(|l| l.metric.as_str()).collect();
        assert_eq!(metrics.contains(&"tree_rss"), tree_drawn, "{metrics:?}");
        assert!(metrics.contains(&"rss"), "{metrics:?}");
        let page = html(&r);
        assert!(
            page.contains("class=\"line\" data-metric=\"rss\""),
            "rss is drawn"
        );
        assert_eq!(
            page.matches("class=\"point\" data-metric=\"pss\"").count(),
            7,
            "PSS as points"
        );
        assert!(!page.contains("class=\"line\" data-metric=\"pss\""));
    }
}

/// A run whose recorder still runs is shown as recording, not as "stopped" at its last tick.
#[test]
fn a_run_still_recording_is_shown_as_recording() {
    let h = history();
    // This test process stands in for the recorder: its command line names memtrail.
    h.conn()
        .execute(
            "UPDATE runs SET stopped_ms = NULL, stop_reason = NULL, host = ?1, pid = ?2 WHERE id = 2",
            rusqlite::params![crate::collect::procfs::hostname(), std::process::id()],
        )
        .expect("open run");
    let r = build(&h.path(), &options(None)).expect("report");
    let states: Vec<&str> = r
        .runs
        .iter()
        .filter_map(|x| x.get("state").and_then(Value::as_str))
        .collect();
    assert_eq!(states, ["stopped", "recording"]);
    assert!(
        markdown(&r).contains("| recording (last tick 2026-09-21 15:13:20 UTC) |"),
        "{}",
        markdown(&r)
    );
    h.conn()
        .execute("UPDATE runs SET pid = 999999999 WHERE id = 2", [])
        .expect("gone recorder");
    let r = build(&h.path(), &options(None)).expect("report");
    assert!(markdown(&r).contains("not closed (its recorder is gone)"));
}

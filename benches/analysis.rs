//! Analysis benchmark: on a generated 24 h history at 1 Hz for 10 series (864,000 rows), how long
//! evaluating all default rules once and `trend` for one series take, against a baseline measured
//! in the same run (a bare index range scan over the same rows), with each query's plan.
//!
//! Run: `cargo bench --bench analysis` (targets from the issue: rules < 20 ms, trend < 5 ms).

use std::time::{Duration, Instant};

#[path = "support/timing.rs"]
mod timing;
use timing::time;

use memtrail::analyze::alerts::{Engine, default_rules, install};
use memtrail::analyze::analysis;
use memtrail::config::NotifySection;
use memtrail::model::ImportedSeries;
use memtrail::model::{Cell, Kind, TargetKey, Unit};
use memtrail::present::report;
use memtrail::store::{self, Store};

const T0: i64 = 1_790_000_000_000;
const DAY_S: i64 = 86_400;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let mut store = Store::open(&path, Duration::from_secs(5)).expect("open");

    let started = Instant::now();
    let mut series = Vec::new();
    for p in 0..9u32 {
        let key = TargetKey {
            kind: Kind::Process,
            pid: Some(1000 + p),
            start_time_ms: Some(T0 - 3_600_000),
            name: format!("worker{p}"),
        };
        let base = 200e6 + p as f64 * 50e6;
        let points = (0..DAY_S)
            .map(|s| {
                (
                    T0 + s * 1000,
                    base * (1.0 + 0.02 * ((s % 600) as f64 / 600.0)),
                )
            })
            .collect();
        series.push(ImportedSeries {
            key,
            cmdline: String::new(),
            metric: "rss".into(),
            unit: Unit::Bytes,
            points,
        });
    }
    series.push(ImportedSeries {
        key: TargetKey::system(),
        cmdline: String::new(),
        metric: "mem_used_percent".into(),
        unit: Unit::Percent,
        points: (0..DAY_S)
            .map(|s| (T0 + s * 1000, 40.0 + (s % 300) as f64 / 30.0))
            .collect(),
    });
    let rows = store.import(&series).expect("import").new;
    let load = started.elapsed();
    let (pages, _) = store.page_stats().expect("pages");
    let conn = store.connection();
    let now = T0 + (DAY_S - 1) * 1000;

    println!(
        "history: {rows} rows in 10 series, generated and written in {:.2} s ({:.0} rows/s), {:.1} MiB ({:.1} bytes/row)",
        load.as_secs_f64(),
        rows as f64 / load.as_secs_f64(),
        pages as f64 * 4096.0 / 1048576.0,
        pages as f64 * 4096.0 / rows as f64
    );

    // Baselines: the bare index range scans the queries cannot beat.
    let scan =
        |sql: &str, params: &[(&str, Cell)]| store::query_table(conn, sql, params).expect("scan");
    let base_rules = time(50, || {
        scan(
            "SELECT series_id, count(*), sum(value) FROM samples
             WHERE series_id IN (SELECT id FROM series) AND ts_ms >= :from AND ts_ms <= :now GROUP BY series_id",
            &[("from", Cell::Int(now - 600_000)), ("now", Cell::Int(now))],
        )
    });
    let sid = series_id(conn);
    let base_trend = time(50, || {
        scan(
            "SELECT count(*), sum(value) FROM samples WHERE series_id = :sid AND ts_ms >= :from AND ts_ms <= :now",
            &[
                ("sid", Cell::Int(sid)),
                ("from", Cell::Int(now - 3_600_000)),
                ("now", Cell::Int(now)),
            ],
        )
    });

    let rules = default_rules(&NotifySection::default());
    install(conn, &rules).expect("install");
    // A whole evaluation each time: a new engine observes every rule (a running one observes a
    // trend rule again only every tenth of its slice, `observe_every_ms`).
    let mut step = 0;
    let rules_time = time(30, || {
        step += 1000;
        Engine::new(rules.clone())
            .evaluate(conn, now + step)
            .expect("evaluate")
    });
    let trend_one = time(50, || {
        analysis::run(conn, "trend", &[("series_id", Cell::Int(sid))], now).expect("trend")
    });
    let trend_all = time(20, || {
        analysis::run(conn, "trend", &[], now).expect("trend")
    });
    let base_all = time(5, || {
        scan(
            "SELECT count(*), sum(value) FROM samples
             WHERE series_id IN (SELECT id FROM series) AND ts_ms >= :from AND ts_ms <= :now",
            &[("from", Cell::Int(T0)), ("now", Cell::Int(now))],
        )
    });
    let options = report::Options {
        from_ms: T0,
        to_ms: now,
        target: None,
        generated_ms: now,
        database: "bench.db".into(),
    };
    if std::env::var_os("MEMTRAIL_BENCH_PARTS").is_some() {
        let day = [("window_ms", Cell::Int(DAY_S * 1000))];
        let range = [("from_ms", Cell::Int(T0)), ("to_ms", Cell::Int(now))];
        let one = [
            ("series_id", Cell::Int(sid)),
            ("from_ms", Cell::Int(T0)),
            ("to_ms", Cell::Int(now)),
            ("bucket_ms", Cell::Int(144_000)),
        ];
        for (name, params) in [
            ("summary", &range[..]),
            ("trend", &day[..]),
            ("time_to_limit", &day[..]),
            ("downsample", &one[..]),
        ] {
            let d = time(3, || analysis::run(conn, name, params, now).expect("part"));
            println!("part {name}: {:.1} ms", d.as_secs_f64() * 1e3);
        }
        for rule in default_rules(&NotifySection::default()) {
            let name = rule.name.clone();
            let mut at = now;
            let d = time(10, || {
                at += 1000;
                Engine::new(vec![rule.clone()])
                    .evaluate(conn, at)
                    .expect("evaluate")
            });
            println!("part rule {name}: {:.2} ms", d.as_secs_f64() * 1e3);
        }
    }
    let report_html = time(5, || {
        report::html(&report::build(&path, &options).expect("report"))
    });
    let report_json = time(5, || {
        report::json(&report::build(&path, &options).expect("report"))
    });
    let built = report::build(&path, &options).expect("report");
    let (html_bytes, json_bytes) = (report::html(&built).len(), report::json(&built).len());

    println!();
    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "measure", "median", "baseline", "ratio"
    );
    let row = |name: &str, d: Duration, base: Duration, target: Option<f64>| {
        let ms = d.as_secs_f64() * 1e3;
        let verdict = target.map_or(String::new(), |t| {
            format!(
                "  (target < {t} ms: {})",
                if ms < t { "met" } else { "MISSED" }
            )
        });
        println!(
            "{:<44} {:>7.3} ms {:>7.3} ms {:>7.1}x{verdict}",
            name,
            ms,
            base.as_secs_f64() * 1e3,
            d.as_secs_f64() / base.as_secs_f64()
        );
    };
    row(
        "all default rules, one evaluation",
        rules_time,
        base_rules,
        Some(20.0),
    );
    row(
        "trend, one series, 1 h window (3,600 rows)",
        trend_one,
        base_trend,
        Some(5.0),
    );
    row("trend, all 10 series", trend_all, base_trend * 10, None);
    row(
        "report over 24 h, all series, as HTML",
        report_html,
        base_all,
        Some(1000.0),
    );
    row(
        "report over 24 h, all series, as JSON",
        report_json,
        base_all,
        None,
    );
    println!(
        "baselines: a bare range scan summing the same rows (10-min windows of all series; the 1 h window of one series; all 864,000 rows for the report)"
    );
    println!(
        "report sizes: HTML {:.0} KiB (target < 2048 KiB: {}), JSON {:.0} KiB",
        html_bytes as f64 / 1024.0,
        if html_bytes < 2 << 20 {
            "met"
        } else {
            "MISSED"
        },
        json_bytes as f64 / 1024.0
    );

    println!("\nquery plans (EXPLAIN QUERY PLAN):");
    for name in ["threshold", "percent_change", "trend"] {
        let sql = store::query_sql(name).expect("query");
        let plan = store::query_table(
            conn,
            &format!("EXPLAIN QUERY PLAN {sql}"),
            &bind_all(name, now),
        )
        .expect("plan");
        println!("  {name}:");
        for r in 0..plan.rows.len() {
            if let Some(detail) = plan.get(r, "detail").as_str() {
                println!("    {detail}");
            }
        }
    }
}

fn series_id(conn: &rusqlite::Connection) -> i64 {
    conn.query_row(
        "SELECT id FROM series WHERE metric = 'rss' LIMIT 1",
        [],
        |r| r.get(0),
    )
    .expect("series")
}

fn bind_all(name: &str, now: i64) -> Vec<(String, Cell)> {
    let q = analysis::find(name).expect("query");
    let given = vec![("threshold".to_string(), Cell::Int(1))];
    let given: Vec<(String, Cell)> = given
        .into_iter()
        .filter(|(n, _)| q.params.iter().any(|p| &p.name == n))
        .collect();
    q.bind(&given, now).expect("bind")
}

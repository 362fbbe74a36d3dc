//! The self-watch soak (issue #8): memtrail records itself every 100 ms for 10 minutes while
//! clients keep its API busy, and its own trend query must call its RSS `stable`: a memory monitor
//! must not leak. The trend is judged over the 10 minutes after a minute of warm-up: in its first
//! half minute a fresh recorder's RSS rises ~2 MiB (page caches, the API's threads and their malloc
//! arenas, code first run) and then holds within ±0.3 MiB, and a leak is growth that goes on. The
//! module's name sorts last on purpose: libtest starts tests in name order, so the soak runs once
//! the rest of the suite is (nearly) done. Started first, it shared the machine with the other
//! tests for its first minutes, and its RSS high-water mark under that load (more API threads at
//! once) was judged as growth once (`increasing`, R² 0.65). `MEMTRAIL_SOAK_SECS` shortens it for a
//! local try (the test then says so).

use std::time::{Duration, Instant};

use crate::util::*;

/// Run (under the same load) before the judged window starts.
const WARMUP: Duration = Duration::from_secs(60);

#[test]
fn ten_minutes_of_self_watch_under_api_load_keep_rss_stable() {
    let secs: u64 = std::env::var("MEMTRAIL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    if secs != 600 {
        eprintln!(
            "NOTE: the soak runs {secs} s (MEMTRAIL_SOAK_SECS), not the 10 minutes #8 asks for"
        );
    }
    let s = Scratch::new();
    let db = s.db();
    let api = ApiRecorder::start(&db, &["--self", "--interval", "100ms"], &[], None);
    wait_for_samples(&db, 2);
    let started = Instant::now();
    let until = started + WARMUP + Duration::from_secs(secs);
    // Steady clients: every endpoint that reads, plus custom pushes, about 10 requests a second.
    let mut failures = Vec::new();
    let mut requests = 0u64;
    let mut pushes = 0u64;
    while Instant::now() < until {
        for path in [
            "/internal/memory/status",
            "/internal/memory/metrics",
            "/metrics",
            "/healthz",
        ] {
            let (code, body) = http("GET", &api.url(path), None, None);
            requests += 1;
            if code != 200 {
                failures.push(format!("{path}: {code} {body}"));
            }
        }
        pushes += 1;
        let body = format!(
            r#"{{"metrics": {{"sessions": {}, "cache_items": {}}}, "source": "soak"}}"#,
            pushes % 100,
            pushes % 7
        );
        let (code, text) = http(
            "POST",
            &api.url("/internal/memory/custom"),
            Some(&body),
            None,
        );
        requests += 1;
        if code != 200 && code != 202 {
            failures.push(format!("custom: {code} {text}"));
        }
        std::thread::sleep(Duration::from_millis(450));
    }
    let pid = api.child.id();
    let log = api.stop();
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let conn = open(&db);
    let rss = series(&conn, "memtrail", "rss");
    let ticks = rss.len() as f64;
    let expected = (WARMUP.as_secs() + secs) as f64 * 10.0;
    assert!(
        ticks >= expected * 0.8,
        "{ticks} ticks of {expected} due\n{log}"
    );
    let last = rss.last().expect("samples").0;
    let out = run(
        memtrail()
            .args(["query", "trend", "--format", "json", "--db"])
            .arg(&db)
            .args([
                "-p",
                "metric=rss",
                "-p",
                "kind=process",
                "-p",
                "target=memtrail",
            ])
            .args(["-p", &format!("pid={pid}"), "-p", &format!("now_ms={last}")])
            .args(["-p", &format!("window_ms={}", secs * 1000)]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(&String::from_utf8_lossy(&out.stdout));
    let row = &rows.as_array().expect("rows")[0];
    let mib = |b: f64| b / 1048576.0;
    let at = |frac: f64| rss[((rss.len() - 1) as f64 * frac) as usize].1;
    eprintln!(
        "soak: {secs} s, {requests} requests, {} ticks; memtrail RSS {:.2} MiB at 1 %, {:.2} at 50 %, {:.2} at the end (max {:.2}); trend {} ({} %/h, R² {})",
        rss.len(),
        mib(at(0.01)),
        mib(at(0.5)),
        mib(at(1.0)),
        mib(rss.iter().map(|r| r.1).fold(0.0, f64::max)),
        row["classification"],
        row["pct_per_hour"],
        row["r2"],
    );
    assert_eq!(row["classification"], "stable", "memtrail's own RSS: {row}");
}

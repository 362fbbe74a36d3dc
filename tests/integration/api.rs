//! The HTTP API of a real recorder on an ephemeral loopback port, driven by a real HTTP client.

use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn status_metrics_and_healthz_match_the_database() {
    let s = Scratch::new();
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "200ms"], &[], None);
    wait_for_samples(&s.db(), 3);
    let (code, body) = http("GET", &api.url("/healthz"), None, None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["status"], "ok");

    let (code, body) = http("GET", &api.url("/internal/memory/status"), None, None);
    assert_eq!(code, 200, "{body}");
    let status = json(&body);
    let conn = open(&s.db());
    let series = status["series"].as_array().expect("series");
    let rss = series
        .iter()
        .find(|x| x["metric"] == "rss" && x["kind"] == "process")
        .expect("the recorder's own rss");
    let in_db: f64 = conn
        .query_row(
            "SELECT value FROM samples WHERE series_id = ?1 AND ts_ms = ?2",
            (
                rss["series_id"].as_i64().expect("id"),
                rss["ts_ms"].as_i64().expect("ts"),
            ),
            |r| r.get(0),
        )
        .expect("the same sample in the database");
    assert_eq!(rss["value"].as_f64(), Some(in_db));
    assert!(rss["trend"]["classification"].is_string());
    let rows = status["history"]["rows"].as_i64().expect("rows");
    assert!(rows > 0 && rows <= count(&conn, "SELECT count(*) FROM samples"));
    let rules: Vec<&str> = status["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert!(
        rules.contains(&"process_rss_high") && rules.contains(&"system_memory_high"),
        "{rules:?}"
    );
    let me = status["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["kind"] == "process")
        .expect("process");
    assert!(me["metrics"]["rss"].as_f64().expect("rss") > 1e6);

    let (code, body) = http("GET", &api.url("/internal/memory/metrics"), None, None);
    assert_eq!(code, 200);
    let live = json(&body);
    assert_eq!(live["processes"][0]["pid"], api.child.id());
    let live_rss = live["processes"][0]["rss_bytes"].as_f64().expect("rss");
    assert!(live_rss > 1e6, "{body}");
    assert_eq!(
        live["processes"][0]["metrics"]["rss"].as_f64(),
        Some(live_rss)
    );
    assert!(live["system"]["mem_total"].as_f64().expect("total") > 0.0);
    // The recorder's own reading of a tick, not a second reading of /proc: the same value is
    // stored at the same time stamp.
    let tick = live["ts_ms"].as_i64().expect("the tick's time");
    let stored = eventually(Duration::from_secs(10), "the tick in the database", || {
        conn.query_row(
            "SELECT value FROM samples JOIN series_info USING (series_id)
              WHERE kind = 'process' AND metric = 'rss' AND ts_ms = ?1",
            [tick],
            |r| r.get::<_, f64>(0),
        )
        .ok()
    });
    assert_eq!(stored, live_rss);
    api.stop();
}

#[test]
fn prometheus_exposition_is_valid_and_carries_the_latest_values() {
    let s = Scratch::new();
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "200ms"], &[], None);
    wait_for_samples(&s.db(), 3);
    let (code, text) = http("GET", &api.url("/metrics"), None, None);
    assert_eq!(code, 200);
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("invalid exposition ({e:?}):\n{text}"));
    for family in [
        "memtrail_rss_bytes",
        "memtrail_mem_used_percent",
        "memtrail_alert_firing",
        "memtrail_recorder_samples_total",
        "memtrail_recorder_tick_duration_seconds",
    ] {
        assert!(
            parsed.families.contains_key(family),
            "{family} missing:\n{text}"
        );
    }
    let pid = api.child.id();
    assert!(
        text.contains(&format!(
            "memtrail_rss_bytes{{kind=\"process\",target=\"memtrail\",pid=\"{pid}\"}}"
        )),
        "{text}"
    );
    api.stop();
}

#[test]
fn custom_metrics_are_pushed_stored_and_read_back() {
    let s = Scratch::new();
    let api = ApiRecorder::start(
        &s.db(),
        &["--no-system", "--self", "--interval", "200ms"],
        &[],
        None,
    );
    let (code, body) = http(
        "POST",
        &api.url("/internal/memory/custom"),
        Some(r#"{"metrics": {"chat_sessions": 12, "heap_objects": 183422}, "source": "web"}"#),
        None,
    );
    assert_eq!(code, 202, "{body}");
    assert_eq!(json(&body)["accepted"], 2);
    let conn = open(&s.db());
    let stored = eventually(
        Duration::from_secs(10),
        "the pushed metric in the database",
        || {
            conn.query_row(
                "SELECT value FROM samples JOIN series_info USING (series_id)
             WHERE kind = 'custom' AND target = 'web' AND metric = 'heap_objects'",
                [],
                |r| r.get::<_, f64>(0),
            )
            .ok()
        },
    );
    assert_eq!(stored, 183422.0);
    let (_, text) = http("GET", &api.url("/metrics"), None, None);
    assert!(
        text.contains(
            "memtrail_custom{kind=\"custom\",target=\"web\",pid=\"\",metric=\"chat_sessions\"} 12"
        ),
        "{text}"
    );
    let (_, live) = http("GET", &api.url("/internal/memory/metrics"), None, None);
    assert_eq!(json(&live)["custom"]["web"]["chat_sessions"], 12.0);
    // Analysed like any other series: the named queries see it.
    let out = run(
        memtrail()
            .args([
                "query",
                "latest",
                "--param",
                "kind=custom",
                "--format",
                "json",
                "--db",
            ])
            .arg(s.db()),
        Duration::from_secs(20),
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&out.stdout))
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    api.stop();
}

#[test]
fn bad_requests_get_json_errors_with_the_right_status_and_change_nothing() {
    let s = Scratch::new();
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "200ms"], &[], None);
    wait_for_samples(&s.db(), 2);
    let big = format!(
        r#"{{"metrics": {{"x": 1}}, "pad": "{}"}}"#,
        "a".repeat(70_000)
    );
    let deep = format!(
        r#"{{"metrics": {}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let cases = [
        ("POST", "/internal/memory/custom", "not json", 400),
        (
            "POST",
            "/internal/memory/custom",
            r#"{"metrics": {"x": "12"}}"#,
            400,
        ),
        (
            "POST",
            "/internal/memory/custom",
            r#"{"metrics": {"bad name": 1}}"#,
            400,
        ),
        (
            "POST",
            "/internal/memory/custom",
            r#"{"metrics": {"x": 1}, "pid": 4000000}"#,
            400,
        ),
        ("POST", "/internal/memory/custom", deep.as_str(), 400),
        ("POST", "/internal/memory/custom", big.as_str(), 413),
        (
            "POST",
            "/internal/memory/cleanup",
            r#"{"level": "nuclear"}"#,
            400,
        ),
        ("GET", "/no/such/thing", "", 404),
        ("PUT", "/internal/memory/status", "{}", 405),
        ("DELETE", "/healthz", "", 405),
    ];
    for (method, path, body, want) in cases {
        let (code, text) = http(method, &api.url(path), Some(body), None);
        assert_eq!(code, want, "{method} {path}: {text}");
        assert!(json(&text)["error"].is_string(), "{method} {path}: {text}");
    }
    let conn = open(&s.db());
    assert_eq!(
        count(&conn, "SELECT count(*) FROM targets WHERE kind = 'custom'"),
        0,
        "nothing was stored"
    );
    let (code, _) = http("GET", &api.url("/healthz"), None, None);
    assert_eq!(code, 200, "the recorder is still healthy");
    api.stop();
}

#[test]
fn posts_need_the_token_when_one_is_set() {
    let s = Scratch::new();
    let api = ApiRecorder::start(
        &s.db(),
        &["--self", "--interval", "200ms"],
        &[("MEMTRAIL_TOKEN", "s3cret")],
        None,
    );
    let push = Some(r#"{"metrics": {"x": 1}}"#);
    let url = api.url("/internal/memory/custom");
    let (code, body) = http("POST", &url, push, None);
    assert_eq!(code, 401, "{body}");
    assert_eq!(http("POST", &url, push, Some("guess")).0, 401);
    assert_eq!(
        http(
            "POST",
            &api.url("/internal/memory/cleanup"),
            Some("{}"),
            None
        )
        .0,
        401
    );
    assert_eq!(http("POST", &url, push, Some("s3cret")).0, 202);
    assert_eq!(
        http("GET", &api.url("/healthz"), None, None).0,
        200,
        "GETs stay open"
    );
    api.stop();
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let s = Scratch::new();
    let out = run(
        memtrail()
            .args(["record", "--self", "--listen", "0.0.0.0:0", "--db"])
            .arg(s.db()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("refusing to serve the API on 0.0.0.0:0 without a token"),
        "{err}"
    );
    assert!(!s.db().exists(), "nothing started");
}

#[test]
fn cleanup_over_the_api_returns_the_audit_row_and_409_while_one_runs() {
    let s = Scratch::new();
    let (mut hog, _) = spawn_hog(96, false);
    let cfg = s.path("memtrail.toml");
    std::fs::write(
        &cfg,
        "[cleanup]\nperiodic = \"off\"\nsettle = \"1500ms\"\n[[cleanup.actions]]\nsignal = \"SIGUSR1\"\n",
    )
    .expect("config");
    let pid = hog.id().to_string();
    let cfg_arg = cfg.to_string_lossy().to_string();
    let api = ApiRecorder::start(
        &s.db(),
        &["--pid", &pid, "--interval", "200ms", "--config", &cfg_arg],
        &[],
        None,
    );
    wait_for_samples(&s.db(), 2);
    let url = api.url("/internal/memory/cleanup");
    let first = {
        let url = url.clone();
        std::thread::spawn(move || http("POST", &url, Some(r#"{"level": "normal"}"#), None))
    };
    let conn = open(&s.db());
    eventually(Duration::from_secs(10), "the first cleanup's claim", || {
        (count(&conn, "SELECT count(*) FROM cleanup_runs") > 0).then_some(())
    });
    let (code, body) = http("POST", &url, Some("{}"), None);
    assert_eq!(code, 409, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .expect("error")
            .contains("already running")
    );
    let (code, body) = first.join().expect("first request");
    assert_eq!(code, 200, "{body}");
    let run = &json(&body)["runs"][0];
    assert_eq!(run["trigger"], "manual");
    let freed = run["freed_bytes"].as_f64().expect("freed") / 1048576.0;
    assert!((freed - 96.0).abs() <= 9.6, "freed {freed:.1} MiB");
    assert_eq!(
        count(&conn, "SELECT count(*) FROM cleanup_runs"),
        1,
        "the 409 recorded nothing"
    );
    kill(&mut hog);
    api.stop();
}

#[test]
fn healthz_turns_503_when_the_database_cannot_be_written() {
    let s = Scratch::new();
    // A 1 MiB file-size limit: the WAL outgrows it after a few seconds of 100 ms ticks, and every
    // write after that fails as on a full disk.
    let api = ApiRecorder::start(
        &s.db(),
        &["--self", "--interval", "100ms"],
        &[],
        Some(1 << 20),
    );
    // Healthy once the first ticks are written (before that it says "no tick yet").
    eventually(Duration::from_secs(20), "/healthz to be 200 first", || {
        (http("GET", &api.url("/healthz"), None, None).0 == 200).then_some(())
    });
    let reason = eventually(Duration::from_secs(30), "/healthz to turn 503", || {
        let (code, body) = http("GET", &api.url("/healthz"), None, None);
        (code == 503).then(|| json(&body)["reason"].as_str().unwrap_or("").to_string())
    });
    assert!(reason.contains("the last write failed"), "{reason}");
    // The recorder is alive and still ticking; the status endpoint still answers.
    assert_eq!(
        http("GET", &api.url("/internal/memory/status"), None, None).0,
        200
    );
    let log = api.stop();
    assert!(log.contains("could not write this tick"), "{log}");
}

#[test]
fn idle_connections_and_many_requests_do_not_delay_ticks() {
    let s = Scratch::new();
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "100ms"], &[], None);
    wait_for_samples(&s.db(), 2);
    let addr = api.base.trim_start_matches("http://").to_string();
    // 100 connections that never send a request, held open.
    let idle: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert_eq!(idle.len(), 100);
    let conn = open(&s.db());
    let before = count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples");
    let started = Instant::now();
    // Meanwhile, 4 clients ask for the (query-heavy) status as fast as they can.
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let url = api.url("/internal/memory/status");
            std::thread::spawn(move || {
                let mut n = 0;
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    assert_eq!(http("GET", &url, None, None).0, 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let served: i32 = busy.into_iter().map(|h| h.join().expect("client")).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let ticks = count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples") - before;
    drop(idle);
    api.stop();
    assert!(served > 4, "only {served} status answers");
    // 10 ticks a second were due; allow a few to be skipped on a 2-core machine.
    assert!(
        ticks as f64 >= elapsed * 10.0 * 0.7,
        "{ticks} ticks in {elapsed:.1} s"
    );
}

#[test]
fn the_python_example_pushes_heap_and_gc_counts() {
    let s = Scratch::new();
    let api = ApiRecorder::start(
        &s.db(),
        &["--no-system", "--self", "--interval", "200ms"],
        &[],
        None,
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/push_python_metrics.py"
    );
    let out = run(
        std::process::Command::new("python3")
            .args([script, "--url", &api.base, "--source", "pyapp", "--once"]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "python3 (installed by .ci/run) failed: {}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("202"));
    let conn = open(&s.db());
    let metrics: Vec<String> = eventually(Duration::from_secs(10), "the pushed series", || {
        let mut stmt = conn
            .prepare("SELECT metric FROM series_info WHERE kind = 'custom' AND target = 'pyapp' ORDER BY metric")
            .ok()?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .ok()?
            .filter_map(Result::ok)
            .collect();
        (names.len() >= 6).then_some(names)
    });
    for m in [
        "demo_cache_entries",
        "gc_collections",
        "gc_gen0",
        "heap_objects",
    ] {
        assert!(
            metrics.iter().any(|x| x == m),
            "{m} missing from {metrics:?}"
        );
    }
    let heap: f64 = conn
        .query_row(
            "SELECT value FROM samples JOIN series_info USING (series_id) WHERE target = 'pyapp' AND metric = 'heap_objects'",
            [],
            |r| r.get(0),
        )
        .expect("heap_objects");
    assert!(
        heap > 1000.0,
        "a Python interpreter tracks thousands of objects: {heap}"
    );
    api.stop();
}

/// The recorder's open file descriptors.
fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Many more connections than the API serves at once: those over the bound get a 503 and are
/// closed at once, the recorder's descriptors stay bounded, ticks go on, and the API answers
/// again once the crowd leaves.
#[test]
fn connections_beyond_the_bound_are_refused_and_ticks_go_on() {
    use std::io::Read;
    let s = Scratch::new();
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "100ms"], &[], None);
    wait_for_samples(&s.db(), 2);
    let addr = api.base.trim_start_matches("http://").to_string();
    let pid = api.child.id();
    let fds_before = fds_of(pid);
    let conn = open(&s.db());
    let ticks_before = count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples");
    let mut crowd: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    for c in &mut crowd {
        c.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        if let Ok(n) = c.read(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    let fds_during = fds_of(pid);
    std::thread::sleep(Duration::from_secs(1));
    let ticks = count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples") - ticks_before;
    drop(crowd);
    // 200 - 128 served at once; a few of the test's own earlier connections may still count.
    assert!(
        (72..=80).contains(&refused),
        "{refused} of 200 connections refused"
    );
    assert!(
        fds_during <= fds_before + 128 + 8,
        "descriptors grew from {fds_before} to {fds_during}"
    );
    assert!(ticks >= 10, "only {ticks} ticks while the crowd was there");
    eventually(Duration::from_secs(10), "the API to answer again", || {
        (http("GET", &api.url("/healthz"), None, None).0 == 200).then_some(())
    });
    api.stop();
}

/// A client that sends half a request and then nothing, and one that connects and never sends:
/// both are disconnected once the header deadline (10 s) passes, not held forever.
#[test]
fn slow_and_silent_clients_are_disconnected_at_the_header_deadline() {
    use std::io::{Read, Write};
    let s = Scratch::new();
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "100ms"], &[], None);
    wait_for_samples(&s.db(), 2);
    let addr = api.base.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: memtrail\r\nX-Slow: ")
        .expect("half a request");
    let silent = std::net::TcpStream::connect(&addr).expect("connect");
    let started = Instant::now();
    let closed_after = move |mut c: std::net::TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = Vec::new();
        // Ends at EOF (or a reset) when the server lets go; a timeout means it never did.
        match c.read_to_end(&mut buf) {
            Ok(_) => started.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => started.elapsed(),
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    };
    let silent_after = std::thread::spawn(move || closed_after(silent));
    let slow_after = closed_after(slow);
    let silent_after = silent_after.join().expect("silent client");
    // The recorder still answers well-behaved clients.
    assert_eq!(http("GET", &api.url("/healthz"), None, None).0, 200);
    api.stop();
    for (who, after) in [("slow", slow_after), ("silent", silent_after)] {
        assert!(
            after >= Duration::from_secs(9) && after <= Duration::from_secs(15),
            "the {who} client was let go after {after:?} (deadline 10 s)"
        );
    }
}

/// Send a POST's headers (and `body`, if any) on a raw connection, and leave the rest unsent.
fn stalled_post(addr: &str, token: Option<&str>, head: &str, body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST /internal/memory/custom HTTP/1.1\r\nHost: memtrail\r\ncontent-type: application/json\r\n{auth}{head}\r\n"
    );
    c.write_all(request.as_bytes()).expect("headers");
    c.write_all(body).expect("body");
    c
}

/// The status line a server sent on `c`, within `limit` (None: nothing came).
fn answer_within(c: &mut std::net::TcpStream, limit: Duration) -> Option<String> {
    use std::io::Read;
    c.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).ok().filter(|&n| n > 0)?;
    Some(
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()?
            .to_string(),
    )
}

/// Issue 23.5: 130 POSTs that sent their headers and stalled their bodies held every connection
/// slot (`/healthz` 503), and with a token set the body was read before the token was checked.
/// Now: a wrong token is refused from the headers alone, at most 16 bodies are received at once
/// (more are refused at once), a stalled or endless chunked body is cut at the body deadline
/// (10 s), and `/healthz` and `/metrics` answer throughout.
#[test]
fn stalled_bodies_neither_starve_scrapes_nor_outwait_the_token() {
    let s = Scratch::new();
    let api = ApiRecorder::start(
        &s.db(),
        &["--self", "--interval", "200ms"],
        &[("MEMTRAIL_TOKEN", "s3cret")],
        None,
    );
    let url = api.url("/");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // The wrong token, a body promised and never sent: 401 at once.
    let mut wrong = stalled_post(&addr, Some("guess"), "content-length: 100\r\n", b"");
    let said = answer_within(&mut wrong, Duration::from_secs(3));
    assert!(
        said.as_deref().is_some_and(|l| l.contains(" 401 ")),
        "{said:?}"
    );
    // One endless chunked body, then 130 authorised POSTs whose bodies stall.
    let started = Instant::now();
    let mut endless = stalled_post(
        &addr,
        Some("s3cret"),
        "transfer-encoding: chunked\r\n",
        b"5\r\n{\"met\r\n",
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut stalled: Vec<_> = (0..130)
        .map(|_| stalled_post(&addr, Some("s3cret"), "content-length: 100\r\n", b"{\"metr"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for path in ["/healthz", "/metrics"] {
        let (code, body) = http("GET", &api.url(path), None, None);
        assert_eq!(code, 200, "{path} while 130 bodies stall: {body}");
    }
    // Those beyond the 16 slots were refused at once.
    let refused = stalled
        .iter_mut()
        .filter_map(|c| answer_within(c, Duration::from_millis(50)))
        .filter(|l| l.contains(" 503 "))
        .count();
    assert!(refused >= 130 - 15, "{refused} of 130 refused at once");
    // The rest, and the endless one, are cut at the deadline.
    let cut = answer_within(&mut endless, Duration::from_secs(15));
    assert!(
        cut.as_deref().is_some_and(|l| l.contains(" 408 ")),
        "{cut:?}"
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(14)).contains(&waited),
        "cut after {waited:?}"
    );
    let (code, _) = http(
        "POST",
        &api.url("/internal/memory/custom"),
        Some(r#"{"metrics": {"x": 1}}"#),
        Some("s3cret"),
    );
    assert_eq!(code, 202, "a whole POST is served afterwards");
    drop(stalled);
    api.stop();
}

/// Issue 23.9: a pushed custom metric left `/metrics` about 10 s after its push (the freshness
/// sampled series get), though applications push when they have news and Prometheus scrapes every
/// 15-60 s. Pushed series stay for 5 minutes (Prometheus' own lookback), then leave.
#[test]
fn pushed_custom_metrics_stay_in_metrics_for_five_minutes() {
    let s = Scratch::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let csv = format!(
        "timestamp,series,metric,value\n{},app,queue_depth,7\n{},old,queue_depth,9\n",
        now - 20_000,
        now - 6 * 60_000
    );
    std::fs::write(s.path("pushed.csv"), csv).expect("write");
    let out = run(
        memtrail()
            .args(["import", "--db"])
            .arg(s.db())
            .arg(s.path("pushed.csv")),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "200ms"], &[], None);
    // The two imported samples are there already: wait for the recorder's own.
    let conn = open(&s.db());
    eventually(Duration::from_secs(10), "a tick of the recorder", || {
        (count(&conn, "SELECT count(*) FROM samples JOIN series_info USING (series_id) WHERE kind = 'process'") > 0).then_some(())
    });
    let (code, text) = http("GET", &api.url("/metrics"), None, None);
    assert_eq!(code, 200);
    let line = |target: &str| {
        text.lines().any(|l| {
            l.starts_with("memtrail_custom{")
                && l.contains(&format!("target=\"{target}\""))
                && l.contains("metric=\"queue_depth\"")
        })
    };
    assert!(
        line("app"),
        "a push 20 s old (past 3 intervals) is gone:\n{text}"
    );
    assert!(!line("old"), "a push 6 min old is still there:\n{text}");
    // Sampled series keep their own freshness: the recorder's own RSS is there.
    assert!(text.contains("target=\"memtrail\""), "{text}");
    api.stop();
}

/// Issue 24.3: a real Python program that leaks one kind of object (`Session`, 8 KiB each),
/// pushing its counts through the example client while the recorder watches it: the regression of
/// its RSS on each pushed metric finds `py_objects:Session` with a line near 8 KiB per object.
#[test]
fn the_regression_names_the_python_object_that_leaks() {
    let s = Scratch::new();
    let url_file = s.path("url");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/leaky_sessions.py"
    );
    let py = std::process::Command::new("python3")
        .args([script, url_file.to_str().expect("utf8"), "12"])
        .spawn()
        .expect("python3 (installed by .ci/run)");
    let pid = py.id().to_string();
    let api = ApiRecorder::start(
        &s.db(),
        &["--no-system", "--pid", &pid, "--interval", "200ms"],
        &[],
        None,
    );
    std::fs::write(&url_file, &api.base).expect("url");
    let waited = wait_output(py, Duration::from_secs(60));
    assert!(waited.status.success(), "{}", stderr(&waited));
    api.stop();
    let out = run(
        memtrail()
            .args(["query", "regression", "--format", "json"])
            .args(["--param", "window_ms=1m", "--param", &format!("pid={pid}")])
            .arg("--db")
            .arg(s.db()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let session = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["metric"] == "py_objects:Session")
        .unwrap_or_else(|| panic!("no line for py_objects:Session: {rows}"));
    let r2 = session["r2"].as_f64().expect("r2");
    let per_object = session["bytes_per_unit"].as_f64().expect("slope");
    assert!(r2 > 0.9, "{session}");
    assert!(
        (8192.0..16384.0).contains(&per_object),
        "{per_object} bytes per Session: {session}"
    );
    assert!(
        session["metric_per_hour"].as_f64().expect("rate") > 0.0,
        "{session}"
    );
}

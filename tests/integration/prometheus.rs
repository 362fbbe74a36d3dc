//! Fleet scale on Prometheus (#26): Debian's real `prometheus` scrapes two real recorders on
//! loopback (two "hosts"), and through its HTTP API the analysis metrics arrive with their labels,
//! every panel of the Grafana dashboard returns data, and the exported rules load and fire on a
//! leaking target; `promtool` checks the exposition and the rule files (`.ci/test` installs it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        Path::new(&path).exists(),
        "this test runs Debian's {name}, which is not installed: run the tests with \
         `bash .ci/test` (it installs it) or `apt-get install prometheus`"
    );
    path
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `promtool ARGS` succeeds (its output in the message when not).
fn promtool(args: &[&str], stdin: Option<&str>) {
    let mut cmd = Command::new(tool("promtool"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("promtool");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = wait_output(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// The rule file `memtrail rules export` writes for the defaults is the one shipped in
/// contrib/prometheus, it loads, and its tests (each rule fires, a look-alike stays quiet) pass.
#[test]
fn the_exported_rules_are_the_shipped_ones_and_pass_promtool() {
    let out = run(
        memtrail().args(["rules", "export", "--format", "prometheus"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shipped = std::fs::read_to_string(repo("contrib/prometheus/memtrail-rules.yml"))
        .expect("contrib/prometheus/memtrail-rules.yml");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        shipped,
        "contrib/prometheus/memtrail-rules.yml is not what `memtrail rules export` writes: regenerate it"
    );
    let file = repo("contrib/prometheus/memtrail-rules.yml");
    promtool(&["check", "rules", file.to_str().expect("path")], None);
    let tests = repo("contrib/prometheus/memtrail-rules.test.yml");
    promtool(&["test", "rules", tests.to_str().expect("path")], None);
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Percent-encoding for a PromQL query in a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl Prometheus {
    fn start(dir: &Path, targets: &[String], rules: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - '{}'\nscrape_configs:\n  - job_name: memtrail\n    static_configs:\n      - targets: [{}]\n",
                rules.display(),
                targets.join(", ")
            ),
        )
        .expect("config");
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus");
        let p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        eventually(Duration::from_secs(60), "prometheus ready", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            (http("GET", &format!("{}/-/ready", p.base), None, None).0 == 200).then_some(())
        });
        p
    }

    /// An instant query's result vector (empty while there is none).
    fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/api/v1/query?query={}", self.base, encode(q));
        let (code, body) = http("GET", &url, None, None);
        assert_eq!(code, 200, "{q}: {body}");
        json(&body)["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Two hours of a process leaking 20 %/h, ending now: the recorder's trend judges it increasing.
fn leaking_history(s: &Scratch) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut text = String::from("timestamp,series,metric,value\n");
    for i in 0..240 {
        let ts = now - 2 * 3_600_000 + i * 30_000;
        let mib = 200.0 * (1.0 + 0.2 * i as f64 / 120.0);
        text.push_str(&format!("{ts},api,rss,{}\n", mib * 1024.0 * 1024.0));
    }
    let file = s.path("history.csv");
    std::fs::write(&file, text).expect("csv");
    let out = run(
        memtrail().args(["import", "--db"]).arg(s.db()).arg(&file),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_real_prometheus_scrapes_two_recorders_and_alerts_on_a_leak() {
    let (a, b) = (Scratch::new(), Scratch::new());
    leaking_history(&a);
    // Host A also has a rule held for no time, so the exported rule fires within the test; the
    // defaults' leak rule (held 3 minutes) is pending meanwhile.
    let config = a.path("memtrail.toml");
    std::fs::write(
        &config,
        "[[rules]]\nname = \"leak_now\"\nmetric = \"rss\"\ncomparison = \"slope\"\nvalue = 1\nfor = \"0s\"\n",
    )
    .expect("config");
    let config = config.to_str().expect("path").to_string();
    let host_a = ApiRecorder::start(
        &a.db(),
        &["--self", "--interval", "1s", "--config", &config],
        &[],
        None,
    );
    let host_b = ApiRecorder::start(&b.db(), &["--self", "--interval", "1s"], &[], None);
    wait_for_samples(&a.db(), 2);

    // The exposition itself passes promtool's lint.
    let (code, text) = http("GET", &host_a.url("/metrics"), None, None);
    assert_eq!(code, 200);
    promtool(&["check", "metrics"], Some(&text));

    let rules = a.path("rules.yml");
    let out = run(
        memtrail()
            .args(["rules", "export", "--config", &config, "-o"])
            .arg(&rules),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let hosts: Vec<String> = [&host_a, &host_b]
        .iter()
        .map(|h| h.base.trim_start_matches("http://").to_string())
        .collect();
    let prom = Prometheus::start(a.dir.path(), &hosts, &rules);

    // Both hosts' raw series arrive.
    let own = eventually(Duration::from_secs(60), "both recorders scraped", || {
        let r = prom.query("memtrail_rss_bytes{target=\"memtrail\"}");
        (r.len() == 2).then_some(r)
    });
    let instances: std::collections::BTreeSet<&str> = own
        .iter()
        .filter_map(|r| r["metric"]["instance"].as_str())
        .collect();
    assert_eq!(instances.len(), 2, "{own:?}");

    // The analysis arrives with the raw series' identity labels.
    let verdict = eventually(Duration::from_secs(60), "the leak's verdict", || {
        let r = prom.query(
            "memtrail_trend_verdict{target=\"api\",metric=\"rss\",verdict=\"increasing\"} == 1",
        );
        r.into_iter().next()
    });
    let labels = &verdict["metric"];
    assert_eq!(labels["kind"], "process", "{verdict}");
    assert_eq!(labels["instance"], hosts[0].as_str(), "{verdict}");
    let slope =
        prom.query("memtrail_trend_slope_ratio_per_second{target=\"api\",metric=\"rss\"} * 360000");
    let pct: f64 = slope[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("slope");
    assert!(
        (10.0..25.0).contains(&pct),
        "{pct} %/h for a leak of 20 % of its start per hour"
    );
    assert_eq!(
        prom.query("memtrail_time_to_limit_seconds{target=\"api\"}")
            .len(),
        1
    );

    // The exported rule fires on the leaking target.
    eventually(Duration::from_secs(60), "MemtrailLeakNow firing", || {
        let (_, body) = http("GET", &format!("{}/api/v1/alerts", prom.base), None, None);
        let alerts = json(&body)["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        alerts
            .iter()
            .any(|al| {
                al["labels"]["alertname"] == "MemtrailLeakNow"
                    && al["labels"]["target"] == "api"
                    && al["state"] == "firing"
            })
            .then_some(())
    });

    // Every panel of the dashboard returns data from the two hosts.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("contrib/grafana/memtrail.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    std::thread::sleep(Duration::from_secs(3));
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let q = expr.replace("$instance", ".*").replace("$target", ".*");
            let found = eventually(Duration::from_secs(30), expr, || {
                let r = prom.query(&q);
                (!r.is_empty()).then_some(r)
            });
            assert!(!found.is_empty(), "{}: {q}", panel["title"]);
        }
    }
    host_a.stop();
    host_b.stop();
}

/// #26 item 2: a name group sums its processes into one target of kind group that outlives them
/// (one restarts: a new pid, the same series), a `[[groups]]` pattern selects by command line,
/// and with `pid_label = false` `/metrics` has one series per name and passes promtool.
#[test]
fn name_groups_keep_one_series_across_restarts() {
    let s = Scratch::new();
    // A copy of memhog with a name of its own: no other test's memhog joins the group.
    let name = format!("grp{}", std::process::id() % 100_000);
    let program = s.path(&name);
    std::fs::copy(MEMHOG, &program).expect("copy memhog");
    let hog = |mib: u64| {
        let c = hog_command(&program, mib).spawn().expect("hog");
        wait_resident(c.id(), mib);
        c
    };
    let (mut first, mut second) = (hog(16), hog(16));
    let config = s.path("memtrail.toml");
    std::fs::write(
        &config,
        "[api]\npid_label = false\n\n[[groups]]\nname = \"sixteens\"\ncmdline = \"--step 16MiB\"\n",
    )
    .expect("config");
    let config = config.to_str().expect("path").to_string();
    let rec = ApiRecorder::start(
        &s.db(),
        &[
            "--group",
            &name,
            "--no-system",
            "--interval",
            "200ms",
            "--discovery-interval",
            "200ms",
            "--config",
            &config,
        ],
        &[],
        None,
    );
    let conn = open(&s.db());
    let procs = |target: &str| -> Option<f64> {
        conn.query_row(
            "SELECT value FROM samples JOIN series_info USING (series_id)
              WHERE kind = 'group' AND target = ?1 AND metric = 'procs'
              ORDER BY ts_ms DESC LIMIT 1",
            [target],
            |r| r.get(0),
        )
        .ok()
    };
    eventually(Duration::from_secs(20), "two members", || {
        (procs(&name)? == 2.0).then_some(())
    });
    let rss: f64 = conn
        .query_row(
            "SELECT value FROM samples JOIN series_info USING (series_id)
              WHERE kind = 'group' AND target = ?1 AND metric = 'rss' ORDER BY ts_ms DESC LIMIT 1",
            [&name],
            |r| r.get(0),
        )
        .expect("the group's rss");
    assert!(
        rss >= 32.0 * 1024.0 * 1024.0,
        "two 16 MiB members sum to {rss}"
    );
    // The pattern group holds the same two (their command lines say --step 16MiB).
    eventually(Duration::from_secs(20), "the pattern's members", || {
        (procs("sixteens")? >= 2.0).then_some(())
    });

    // A restart: one member exits, a new pid takes its place; the group is still one series.
    kill(&mut first);
    eventually(Duration::from_secs(20), "one member", || {
        (procs(&name)? == 1.0).then_some(())
    });
    let mut third = hog(16);
    eventually(Duration::from_secs(20), "two members again", || {
        (procs(&name)? == 2.0).then_some(())
    });
    assert_eq!(
        count(
            &conn,
            &format!("SELECT count(*) FROM targets WHERE kind = 'group' AND name = '{name}'")
        ),
        1,
        "one target across the restart"
    );

    let (code, text) = http("GET", &rec.url("/metrics"), None, None);
    assert_eq!(code, 200);
    assert!(!text.contains("pid=\""), "pid_label = false");
    assert!(
        text.contains(&format!(
            "memtrail_rss_bytes{{kind=\"group\",target=\"{name}\"}}"
        )),
        "{text}"
    );
    promtool(&["check", "metrics"], Some(&text));
    rec.stop();
    kill(&mut second);
    kill(&mut third);
}

/// `GET /metrics` as a scraper asks for it: OpenMetrics when accepted (its content type, `# EOF`,
/// valid to a parser), gzip when accepted; the plain text format otherwise.
#[test]
fn scrapes_get_openmetrics_and_gzip_when_they_ask() {
    use std::io::{Read, Write};
    let s = Scratch::new();
    let rec = ApiRecorder::start(&s.db(), &["--self", "--interval", "200ms"], &[], None);
    wait_for_samples(&s.db(), 2);
    let addr = rec.base.trim_start_matches("http://").to_string();
    let get = |headers: &str| -> (String, Vec<u8>) {
        let mut c = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            c,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
        )
        .expect("request");
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).expect("answer");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        (
            String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(),
            raw[split + 4..].to_vec(),
        )
    };
    let (head, body) = get(
        "Accept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\nAccept-Encoding: gzip\r\n",
    );
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE memtrail_build info\n"), "{text}");
    openmetrics_parser::openmetrics::parse_openmetrics(&text).expect("valid OpenMetrics");

    let (head, body) = get("");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!head.contains("content-encoding"), "{head}");
    let text = String::from_utf8(body).expect("plain text");
    assert!(
        !text.contains("# EOF") && text.contains("memtrail_build_info{version="),
        "{text}"
    );
    rec.stop();
}

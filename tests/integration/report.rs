//! `memtrail report` on a real recording: the HTML opened in a real headless browser (Debian's
//! chromium, which `.ci/test` installs), the JSON checked against what happened.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// Record memhog growing past a rule's threshold, which fires and triggers a cleanup.
/// memhog holds 64 MiB for 2.5 s; the rule fires (and its cleanup frees the memory) only once the
/// whole step is resident (above 64 MiB), so the recorded peak is the full step: at 40 MiB a tick
/// mid-allocation fired it and the cleanup freed the memory before the peak was sampled.
fn recording(s: &Scratch) {
    let cfg = s.path("memtrail.toml");
    std::fs::write(
        &cfg,
        "[alerts]\ndefault_rules = false\n[[rules]]\nname = \"hog_big\"\nmetric = \"rss\"\ntarget = \"memhog\"\n\
         comparison = \"greater_than\"\nvalue = \"64MiB\"\nactions = [\"log\", \"cleanup\"]\n\
         [cleanup]\nperiodic = \"off\"\nsettle = \"300ms\"\n[[cleanup.actions]]\nlevel = \"aggressive\"\nsignal = \"SIGUSR1\"\n",
    )
    .expect("config");
    let out = run(
        memtrail()
            .args(["record", "--interval", "100ms", "--config"])
            .arg(&cfg)
            .arg("--db")
            .arg(s.db())
            .args([
                "--",
                MEMHOG,
                "--baseline",
                "800ms",
                "--steps",
                "1",
                "--step",
                "64MiB",
                "--hold",
                "2500ms",
                "--free-on-sigusr1",
            ]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

pub(crate) fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    assert!(
        Path::new(path).exists(),
        "this test opens the HTML report in Debian's chromium, which is not installed: \
         run the tests with `bash .ci/test` (it installs it) or `apt-get install chromium`"
    );
    path
}

pub(crate) fn headless(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args);
    run(&mut cmd, Duration::from_secs(90))
}

#[test]
fn html_report_renders_in_a_real_browser_with_charts_and_markers() {
    let s = Scratch::new();
    recording(&s);
    let html = s.path("report.html");
    let out = run(
        memtrail()
            .args(["report", "--since", "1h", "-o"])
            .arg(&html)
            .arg("--db")
            .arg(s.db()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let size = std::fs::metadata(&html).expect("html").len();
    assert!(size < 2 * 1024 * 1024, "{size} bytes");
    let url = format!("file://{}", html.display());

    let dom = headless(&["--dump-dom", &url]);
    assert!(dom.status.success(), "{}", stderr(&dom));
    let rendered = String::from_utf8_lossy(&dom.stdout);
    assert!(
        rendered.matches("<svg class=\"chart\"").count() >= 2,
        "system and memhog charts"
    );
    assert!(
        rendered.contains("<h2>process memhog (pid"),
        "the target's chart"
    );
    assert!(
        rendered.contains("class=\"marker alert\""),
        "the alert is marked"
    );
    assert!(
        rendered.contains("class=\"marker cleanup\""),
        "the cleanup is marked"
    );
    assert!(
        rendered.contains("<polyline class=\"line\""),
        "a drawn line"
    );
    // The page fetches nothing and runs nothing: chromium logs no console message and no load error.
    let log = stderr(&dom);
    for bad in ["CONSOLE", "Uncaught", "Failed to load resource", "net::ERR"] {
        assert!(!log.contains(bad), "{bad} in chromium's log:\n{log}");
    }

    // Issue 20.16: the charts as drawn, measured in the browser: full width, axis titles, round
    // ticks, labelled markers on their own chart, and no two labels on top of each other.
    let g = geometry(&html);
    let charts = g["charts"].as_array().expect("charts");
    assert!(charts.len() >= 2, "{g}");
    let page_width = g["content_width"].as_f64().expect("width");
    for c in charts {
        let width = c["width"].as_f64().expect("chart width");
        assert!(
            width >= 0.95 * page_width,
            "a chart {width} px wide on a {page_width} px page: {c}"
        );
        assert_eq!(c["axis_titles"].as_array().map(Vec::len), Some(2), "{c}");
        assert_eq!(
            c["overlaps"].as_array().map(Vec::len),
            Some(0),
            "labels on top of each other: {c}"
        );
        assert_eq!(
            c["outside"].as_array().map(Vec::len),
            Some(0),
            "labels outside the chart: {c}"
        );
        let ticks: Vec<f64> = c["yticks"]
            .as_array()
            .expect("y ticks")
            .iter()
            .filter_map(|t| t.as_str()?.split(' ').next()?.parse().ok())
            .collect();
        assert!(ticks.len() >= 3, "{c}");
        let step = ticks[1] - ticks[0];
        let mantissa = step / 10f64.powf(step.log10().floor());
        assert!(
            [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9)
                && ticks
                    .windows(2)
                    .all(|w| ((w[1] - w[0]) - step).abs() < 1e-9),
            "y ticks in 1-2-5 steps: {ticks:?}"
        );
        // A few seconds of recording: HH:MM:SS ticks a round number of seconds apart, each on a
        // multiple of that step.
        let secs: Vec<i64> = c["xticks"]
            .as_array()
            .expect("x ticks")
            .iter()
            .filter_map(|t| {
                let p: Vec<i64> = t
                    .as_str()?
                    .split(':')
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (p.len() == 3).then(|| p[0] * 3600 + p[1] * 60 + p[2])
            })
            .collect();
        assert!(secs.len() >= 2, "{c}");
        let step = secs[1] - secs[0];
        assert!(
            [1, 2, 5, 10, 15, 30].contains(&step)
                && secs.windows(2).all(|w| w[1] - w[0] == step)
                && secs.iter().all(|t| t % step == 0),
            "x ticks on round seconds: {c}"
        );
    }
    let hog = charts
        .iter()
        .find(|c| {
            c["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("process memhog"))
        })
        .expect("memhog chart");
    let labels: Vec<&str> = hog["marker_labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(labels.contains(&"alert: hog_big"), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("cleanup: freed")),
        "{labels:?}"
    );
    let lines: Vec<&str> = hog["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        lines.contains(&"rss") && !lines.contains(&"tree_rss"),
        "memhog has no children: rss, and no tree_rss over it: {lines:?}"
    );
    let system = charts
        .iter()
        .find(|c| {
            c["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("system memory"))
        })
        .expect("system chart");
    assert_eq!(
        system["marker_labels"],
        serde_json::json!([]),
        "memhog's markers stay on its chart"
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let out = headless(&[
        "--window-size=1200,1600",
        &format!("--screenshot={}", shot.display()),
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot: {} bytes",
        png.len()
    );
    eprintln!("report screenshot: {}", shot.display());
}

/// Open a copy of the report with a measuring script added (the report itself runs none) and
/// return what it measured: per chart its rendered width, titles, tick and marker labels, and
/// which labels overlap each other or leave the chart.
fn geometry(html: &Path) -> serde_json::Value {
    const MEASURE: &str = r#"<script>
const box = e => e.getBoundingClientRect();
const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
  const s = box(svg);
  const texts = [...svg.querySelectorAll('text')];
  const overlaps = [];
  texts.forEach((a, i) => texts.slice(i + 1).forEach(b => { if (hit(box(a), box(b))) overlaps.push([a.textContent, b.textContent]); }));
  const outside = texts.filter(t => { const r = box(t); return r.left < s.left - 1 || r.right > s.right + 1 || r.top < s.top - 1 || r.bottom > s.bottom + 1; }).map(t => t.textContent);
  const text = sel => [...svg.querySelectorAll(sel)].map(t => t.childNodes[0].textContent);
  return { title: svg.getAttribute('aria-label'), width: s.width, overlaps, outside,
           axis_titles: text('text.axis-title'), yticks: text('text.ytick'), xticks: text('text.xtick'),
           marker_labels: text('text.marker-label'),
           lines: [...new Set([...svg.querySelectorAll('[data-metric]')].map(e => e.dataset.metric))] };
});
const out = document.createElement('pre');
out.id = 'geometry';
out.textContent = JSON.stringify({ content_width: box(document.querySelector('table')).width, charts });
document.body.appendChild(out);
</script>"#;
    let page = std::fs::read_to_string(html).expect("html");
    let measured = html.with_extension("measured.html");
    std::fs::write(
        &measured,
        page.replace("</body>", &format!("{MEASURE}</body>")),
    )
    .expect("copy");
    let out = headless(&[
        "--window-size=1280,2000",
        "--dump-dom",
        &format!("file://{}", measured.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom
        .split("<pre id=\"geometry\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no measurement in the page: {}", stderr(&out)));
    let json = json
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn json_report_holds_what_happened() {
    let s = Scratch::new();
    recording(&s);
    let out = run(
        memtrail()
            .args([
                "report", "--since", "1h", "--format", "json", "--target", "memhog", "--db",
            ])
            .arg(s.db()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(r["schema_version"], 1);
    let rss = r["series"]
        .as_array()
        .expect("series")
        .iter()
        .find(|x| x["metric"] == "rss")
        .expect("rss");
    let mib = |v: &serde_json::Value| v.as_f64().expect("number") / 1048576.0;
    assert!(mib(&rss["max"]) > 64.0 && mib(&rss["min"]) < 16.0, "{rss}");
    let events: Vec<&str> = r["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["event"].as_str())
        .collect();
    assert_eq!(events.first(), Some(&"firing"));
    let cleanup = &r["cleanups"][0];
    assert_eq!(
        (cleanup["trigger"].as_str(), cleanup["outcome"].as_str()),
        (Some("alert"), Some("ok"))
    );
    assert!(mib(&cleanup["freed_bytes"]) > 57.0, "{cleanup}");
    assert_eq!(r["runs"].as_array().map(Vec::len), Some(1));
    assert!(
        r["charts"][0]["lines"][0]["buckets"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    );
}

#[test]
fn csv_export_and_an_empty_range() {
    let s = Scratch::new();
    recording(&s);
    let out = run(
        memtrail()
            .args([
                "report", "--since", "1h", "--format", "csv", "--raw", "--target", "memhog", "--db",
            ])
            .arg(s.db()),
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let conn = open(&s.db());
    let samples = count(
        &conn,
        "SELECT count(*) FROM samples JOIN series_info USING (series_id) WHERE target = 'memhog'",
    );
    assert_eq!(
        text.lines().count() as i64,
        samples + 1,
        "a header and one row per sample"
    );
    let out = run(
        memtrail()
            .args([
                "report",
                "--from",
                "2026-01-02T00:00:00Z",
                "--to",
                "2026-01-01T00:00:00Z",
                "--db",
            ])
            .arg(s.db()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--from must be before --to"),
        "{}",
        stderr(&out)
    );
}

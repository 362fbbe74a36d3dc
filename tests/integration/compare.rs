//! `memtrail compare` (#25 item 3) on real recordings: a leaking and a fixed build of a small
//! program (memhog: one allocates 4 MiB every 150 ms for 3 s and holds it, like a leak until it
//! stops; the fixed one allocates what it needs at once and holds it), each recorded as a run and
//! into a file of its own, then compared both ways.

use std::time::Duration;

use crate::util::*;

const LEAKING: [&str; 8] = [
    "--step", "4MiB", "--steps", "20", "--every", "150ms", "--hold", "300ms",
];
const FIXED: [&str; 8] = [
    "--step", "80MiB", "--steps", "1", "--every", "10ms", "--hold", "3300ms",
];

fn record_build(db: &std::path::Path, build: &[&str]) {
    let mut args = vec![
        "--interval",
        "100ms",
        "--no-api",
        "--no-system",
        "--",
        MEMHOG,
    ];
    args.extend_from_slice(build);
    record_ok(db, &args);
}

fn compare(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    run(
        memtrail().arg("compare").arg("--db").arg(db).args(args),
        Duration::from_secs(60),
    )
}

#[test]
fn a_leak_fixed_is_fixed_and_a_leak_brought_back_fails_the_build() {
    let s = Scratch::new();
    let db = s.db();
    record_build(&db, &LEAKING);
    record_build(&db, &FIXED);

    // The fix: A leaks, B does not.
    let out = compare(
        &db,
        &[
            "run:previous",
            "run:last",
            "--fail-if-worse",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c = json(&String::from_utf8_lossy(&out.stdout));
    let rows = c["rows"].as_array().expect("rows");
    let memhog = rows
        .iter()
        .find(|r| r["target"] == "memhog" && r["metric"] == "rss")
        .unwrap_or_else(|| panic!("memhog's rss compared: {c}"));
    assert_eq!(memhog["change"], "fixed", "{memhog}");
    let (sa, sb) = (
        memhog["a"]["slope_per_hour"].as_f64().expect("slope A"),
        memhog["b"]["slope_per_hour"].as_f64().expect("slope B"),
    );
    // 4 MiB per 150 ms is ~94 GiB/h while it grows; the fixed build holds still.
    assert!(sa > 20.0 * 1024f64.powi(3), "A grows {sa} B/h");
    assert!(sb.abs() < sa / 20.0, "B grows {sb} B/h");
    assert!(memhog["a"]["peak"].as_f64().expect("peak") > 70.0 * 1024f64.powi(2));
    assert!(
        c["a"]["label"]
            .as_str()
            .expect("label")
            .starts_with("run:previous (run 1)")
    );

    // The regression: the leak comes back in B. Exit 3 with --fail-if-worse, 0 without.
    let out = compare(&db, &["run:2", "run:1", "--fail-if-worse"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("process memhog") && l.contains(" rss "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("worse"), "{line}");
    assert_eq!(compare(&db, &["run:2", "run:1"]).status.code(), Some(0));

    // The same as two database files, in Markdown.
    let (a, b) = (s.path("leaking.db"), s.path("fixed.db"));
    record_build(&a, &LEAKING);
    record_build(&b, &FIXED);
    let out = compare(
        &db,
        &[
            a.to_str().expect("path"),
            b.to_str().expect("path"),
            "--format",
            "md",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("| process memhog | rss |") && md.contains("| fixed |"),
        "{md}"
    );
}

#[test]
fn the_html_page_overlays_both_runs_in_a_real_browser() {
    let s = Scratch::new();
    let db = s.db();
    record_build(&db, &LEAKING);
    record_build(&db, &FIXED);
    let html = s.path("compare.html");
    let out = compare(&db, &["run:1", "run:2", "-o", html.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = format!("file://{}", html.display());
    let dom = crate::report::headless(&["--dump-dom", &url]);
    assert!(dom.status.success(), "{}", stderr(&dom));
    let page = String::from_utf8_lossy(&dom.stdout);
    assert!(page.contains("<h2>memhog rss — fixed</h2>"), "{page}");
    let chart = page
        .split("<h2>memhog rss — fixed</h2>")
        .nth(1)
        .expect("the chart after its title");
    for side in ["side-A", "side-B"] {
        let points = chart
            .split(&format!("class=\"{side}\""))
            .nth(1)
            .and_then(|p| p.split("points=\"").nth(1))
            .and_then(|p| p.split('"').next())
            .unwrap_or_else(|| panic!("{side} drawn"));
        assert!(points.split(' ').count() >= 10, "{side}: {points}");
    }
    let log = stderr(&dom);
    for bad in ["CONSOLE", "Uncaught", "Failed to load resource", "net::ERR"] {
        assert!(!log.contains(bad), "{bad} in chromium's log:\n{log}");
    }
}

#[test]
fn sides_that_are_not_understood_are_usage_errors() {
    let s = Scratch::new();
    let db = s.db();
    record_ok(
        &db,
        &[
            "--self",
            "--duration",
            "500ms",
            "--interval",
            "100ms",
            "--no-api",
        ],
    );
    for (args, says) in [
        (vec!["run:9", "run:1"], "has no run 9"),
        (vec!["run:x", "run:1"], "is not a side to compare"),
        (vec!["nothing.db", "run:1"], "is not a side to compare"),
        (
            vec!["run:1", "run:1", "--target", "nobody"],
            "holds no samples of \"nobody\"",
        ),
    ] {
        let out = compare(&db, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

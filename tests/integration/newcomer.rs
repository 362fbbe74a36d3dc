//! A newcomer's first ten minutes (issue 27): what `status`, `query trend` and `report` show after
//! a short recording is short and says why, the top-N default does not churn on short jobs, and
//! the files left beside the database are the ones the README names.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::util::*;

/// `memtrail ARGS... --db DB` to completion; its standard output (the run must succeed).
fn stdout_of(s: &Scratch, args: &[&str]) -> String {
    let out = run(
        memtrail().args(args).arg("--db").arg(s.db()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Records two hogs at 200 ms, one of which exits a second in, and the mappings of both.
/// Returns (the pid that exited, the pid that lived to the end).
fn record_one_exit(s: &Scratch) -> (u32, u32) {
    let (mut early, _) = spawn_hog(8, false);
    let (mut late, _) = spawn_hog(8, false);
    let (a, b) = (early.id().to_string(), late.id().to_string());
    let rec = spawn_recorder(
        &s.db(),
        &[
            "--interval",
            "200ms",
            "--maps-interval",
            "200ms",
            "--no-system",
            "--duration",
            "4s",
            "--pid",
            &a,
            "--pid",
            &b,
        ],
    );
    wait_for_samples(&s.db(), 3);
    kill(&mut early);
    let out = wait_output(rec, Duration::from_secs(30));
    kill(&mut late);
    assert!(out.status.success(), "{}", stderr(&out));
    (early.id(), late.id())
}

#[test]
fn status_shows_the_targets_the_run_ended_with_and_all_shows_the_rest() {
    let s = Scratch::new();
    let (gone, live) = record_one_exit(&s);
    let table = stdout_of(&s, &["status"]);
    assert!(table.contains(&format!("(pid {live})")), "{table}");
    assert!(!table.contains(&format!("(pid {gone})")), "{table}");
    assert!(
        table.contains("1 target(s) that exited before the newest run ended are not shown"),
        "{table}"
    );
    // The per-mapping series are counted, not listed.
    assert!(!table.contains("map_rss:[heap]"), "{table}");
    assert!(table.contains("map_rss:* series by mapping"), "{table}");

    let all = stdout_of(&s, &["status", "--all"]);
    assert!(all.contains(&format!("(pid {gone})")), "{all}");
    assert!(all.contains("map_rss:[heap]"), "{all}");
    assert!(!all.contains("not shown"), "{all}");

    let pids = |v: &serde_json::Value| -> BTreeSet<u64> {
        v["series"]
            .as_array()
            .expect("series")
            .iter()
            .filter_map(|s| s["pid"].as_u64())
            .collect()
    };
    let json = json(&stdout_of(&s, &["status", "--format", "json"]));
    assert_eq!(pids(&json), BTreeSet::from([u64::from(live)]));
    assert_eq!(json["hidden_gone_targets"], 1);
    let json = json_all(&s);
    assert_eq!(pids(&json), BTreeSet::from([gone, live].map(u64::from)));
}

fn json_all(s: &Scratch) -> serde_json::Value {
    json(&stdout_of(s, &["status", "--all", "--format", "json"]))
}

/// The README's own example: the command a run watched exits as the run ends, and is shown.
#[test]
fn the_command_a_run_watched_is_shown_after_it_exits() {
    let s = Scratch::new();
    record_ok(
        &s.db(),
        &[
            "--interval",
            "200ms",
            "--no-system",
            "--",
            MEMHOG,
            "--steps",
            "2",
            "--step",
            "8MiB",
            "--every",
            "300ms",
            "--hold",
            "600ms",
        ],
    );
    let table = stdout_of(&s, &["status"]);
    assert!(table.contains("process memhog (pid"), "{table}");
    assert!(table.contains(" - exited "), "{table}");
    assert!(!table.contains("not shown"), "{table}");
}

#[test]
fn query_trend_is_narrow_and_says_why_there_is_no_verdict() {
    let s = Scratch::new();
    record_one_exit(&s);
    let narrow = stdout_of(&s, &["query", "trend", "--param", "metric=rss"]);
    let header = narrow.lines().next().expect("a header");
    for col in ["target", "metric", "classification", "pct_per_hour", "r2"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(header.contains("seconds_to_limit") && header.contains("reason"));
    assert!(!header.contains("slope_low_per_hour"), "{header}");
    let widest = narrow.lines().map(str::len).max().unwrap_or(0);
    assert!(widest <= 140, "{widest} columns wide:\n{narrow}");
    // A few seconds of history: no verdict, and why.
    assert!(narrow.contains("insufficient_data"), "{narrow}");
    assert!(narrow.contains("needs 20 samples, has "), "{narrow}");

    let wide = stdout_of(&s, &["query", "trend", "--param", "metric=rss", "--wide"]);
    assert!(
        wide.lines()
            .next()
            .expect("a header")
            .contains("slope_low_per_hour")
    );
    // Scripts get every column whatever the table shows.
    let rows = json(&stdout_of(
        &s,
        &[
            "query",
            "trend",
            "--param",
            "metric=rss",
            "--format",
            "json",
        ],
    ));
    assert!(rows[0].get("slope_low_per_hour").is_some(), "{rows}");
}

#[test]
fn a_report_without_a_range_covers_the_data_and_its_title_names_it() {
    let s = Scratch::new();
    let (_, live) = record_one_exit(&s);
    let report = json(&stdout_of(&s, &["report", "--format", "json"]));
    let (from, to) = (
        report["from_ms"].as_i64().expect("from"),
        report["to_ms"].as_i64().expect("to"),
    );
    assert!(
        (3_000..10_000).contains(&(to - from)),
        "the range is the data's 4 s, not a day: {} ms",
        to - from
    );
    let html = stdout_of(&s, &["report", "--format", "html"]);
    let title = html
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .expect("a title");
    assert!(
        title.starts_with("memtrail report: memhog, ") && title.contains(" to "),
        "{title}"
    );
    let md = stdout_of(&s, &["report", "--target", &live.to_string()]);
    assert!(
        md.starts_with(&format!("# memtrail report: {live}, ")),
        "{}",
        md.lines().next().unwrap_or("")
    );
    // A range given is the range shown.
    let asked = json(&stdout_of(
        &s,
        &["report", "--format", "json", "--since", "2h"],
    ));
    let asked_span =
        asked["to_ms"].as_i64().expect("to") - asked["from_ms"].as_i64().expect("from");
    assert_eq!(asked_span, 2 * 3_600_000);
}

/// Short jobs that flash through the top of the host are not watched (they are younger than
/// `--min-age`, 30 s for the top N), and the top N's changes are one line each, not a line per
/// process.
#[test]
fn short_jobs_do_not_churn_the_top_n() {
    let s = Scratch::new();
    let rec = spawn_recorder(
        &s.db(),
        &[
            "--interval",
            "200ms",
            "--discovery-interval",
            "200ms",
            "--top",
            "3",
            "--duration",
            "4s",
        ],
    );
    // Eight jobs of 96 MiB each, one after another, each living 400 ms: each is the host's
    // largest process while it lives.
    for _ in 0..8 {
        let mut job = std::process::Command::new(MEMHOG)
            .args(["--steps", "1", "--step", "96MiB", "--hold", "400ms"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("memhog");
        let _ = job.wait();
    }
    let out = wait_output(rec, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(!log.contains("memhog"), "a short job was watched:\n{log}");
    let changes = log
        .lines()
        .filter(|l| l.contains("largest processes: "))
        .count();
    assert!(
        (1..=2).contains(&changes),
        "{changes} change lines (one at the start, at most one more):\n{log}"
    );
    assert!(
        !log.contains("recorded as gone"),
        "no watched process came and went:\n{log}"
    );
    let conn = open(&s.db());
    assert_eq!(
        count(&conn, "SELECT count(*) FROM targets WHERE name = 'memhog'"),
        0
    );
}

/// The README's table of the files beside a database is what a recording and a reader leave.
#[test]
fn the_files_beside_the_database_are_the_ones_the_readme_names() {
    let s = Scratch::new();
    let files = |s: &Scratch| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(s.dir.path())
            .expect("dir")
            .flatten()
            .map(|e| {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .collect();
        v.sort();
        v
    };
    let names = |v: &[(String, u64)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    record_ok(
        &s.db(),
        &["--interval", "200ms", "--duration", "1s", "--no-api"],
    );
    assert_eq!(names(&files(&s)), ["memtrail.db", "memtrail.db.lock"]);
    stdout_of(&s, &["status"]);
    let after_reader = files(&s);
    assert_eq!(
        names(&after_reader),
        [
            "memtrail.db",
            "memtrail.db-shm",
            "memtrail.db-wal",
            "memtrail.db.lock"
        ]
    );
    assert_eq!(after_reader[2].1, 0, "the -wal a reader leaves is empty");
    record_ok(
        &s.db(),
        &["--interval", "200ms", "--duration", "1s", "--no-api"],
    );
    assert_eq!(names(&files(&s)), ["memtrail.db", "memtrail.db.lock"]);

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for f in [
        "`memtrail.db-wal`",
        "`memtrail.db-shm`",
        "`memtrail.db.lock`",
    ] {
        assert!(
            readme.contains(&format!("| {f} |")),
            "the README's table names {f}"
        );
    }
}

/// The commands of the README's Usage block, in a fresh directory with the built `memtrail` and
/// `memhog` on PATH, as written, one after another. What a reader supplies is supplied: pid 4242
/// is a live memhog, `psrecord.log` a psrecord log, `./my-service` a short program. A recorder
/// that would run until stopped gets Ctrl-C (SIGINT) after two seconds; every command must exit 0.
#[test]
fn the_readme_usage_commands_run_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let block = readme
        .split("## Usage")
        .nth(1)
        .and_then(|u| u.split("```sh\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("the Usage block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(commands.len() >= 15, "{commands:?}");

    let s = Scratch::new();
    let dir = s.dir.path();
    let (mut hog, _) = spawn_hog(8, false);
    std::fs::write(
        dir.join("psrecord.log"),
        "# Elapsed time   CPU (%)     Real (MB)   Virtual (MB)\n 0.0 1.0 10.0 20.0\n 1.0 2.0 11.0 20.0\n",
    )
    .expect("psrecord.log");
    let service = dir.join("my-service");
    std::fs::write(
        &service,
        "#!/bin/sh\nexec memhog --steps 2 --step 8MiB --every 300ms --hold 500ms\n",
    )
    .expect("my-service");
    std::fs::set_permissions(
        &service,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let bin_dir = std::path::Path::new(MEMTRAIL).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in &commands {
        let line = line.replace("4242", &hog.id().to_string());
        if line.starts_with("memtrail top") {
            // It draws on a terminal (tests/integration/top.rs runs it in tmux); here, with its
            // output piped, it must say so and point to status.
            let top = sh_line(&line, dir, &path);
            assert_eq!(top.status.code(), Some(2), "{}", stderr(&top));
            assert!(stderr(&top).contains("use `memtrail status`"));
            continue;
        }
        if line.starts_with("memtrail cleanup") {
            // The line's comment: the actions are the reader's to configure (memhog frees on
            // SIGUSR1). Without one, the command says so and exits 2 (checked below).
            let cleanup = sh_line(&line, dir, &path);
            assert_eq!(cleanup.status.code(), Some(2), "{}", stderr(&cleanup));
            assert!(stderr(&cleanup).contains("add [[cleanup.actions]]"));
            let mut cfg = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("memtrail.toml"))
                .expect("memtrail.toml");
            std::io::Write::write_all(&mut cfg, b"\n[[cleanup.actions]]\nsignal = \"SIGUSR1\"\n")
                .expect("an action");
        }
        let runs_until_stopped = line.starts_with("memtrail record") && !line.contains(" -- ")
            || line.contains("--duration 10m");
        let child = shell(&line, dir, &path).spawn().expect("bash");
        if runs_until_stopped {
            std::thread::sleep(Duration::from_secs(2));
            // bash -c execs its one command: the signal reaches memtrail.
            signal(&child, libc::SIGINT);
        }
        let out = wait_output(child, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "`{line}` exited {:?}: {}",
            out.status.code(),
            stderr(&out)
        );
    }
    kill(&mut hog);
    assert!(dir.join("report.html").exists() && dir.join("memtrail.toml").exists());
}

/// `bash -c LINE` in `dir` with `path` as PATH and memtrail()'s environment (an API port of its
/// own), as a reader would type it.
fn shell(line: &str, dir: &std::path::Path, path: &str) -> std::process::Command {
    let env = memtrail();
    let mut sh = std::process::Command::new("bash");
    for (k, v) in env.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.args(["-c", line])
        .current_dir(dir)
        .env("PATH", path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    sh
}

/// `shell(...)` run to completion.
fn sh_line(line: &str, dir: &std::path::Path, path: &str) -> std::process::Output {
    wait_output(
        shell(line, dir, path).spawn().expect("bash"),
        Duration::from_secs(60),
    )
}

/// `--min-rss` and `--min-age` (issue 29.4): a process found by name is watched only while it
/// holds that much and once it has run that long, so short-lived or small namesakes (a
/// connection's backend) do not each become a series.
#[test]
fn min_rss_and_min_age_keep_small_and_young_namesakes_out() {
    let s = Scratch::new();
    let (mut small, _) = spawn_hog(8, false);
    let (mut big, _) = spawn_hog(64, false);
    record_ok(
        &s.db(),
        &[
            "--name",
            "memhog",
            "--min-rss",
            "32MiB",
            "--interval",
            "200ms",
            "--duration",
            "1s",
            "--no-api",
            "--no-system",
        ],
    );
    let conn = open(&s.db());
    let pids: Vec<i64> = conn
        .prepare("SELECT pid FROM targets WHERE name = 'memhog'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(pids, [i64::from(big.id())], "only the 64 MiB memhog");
    kill(&mut small);
    kill(&mut big);

    // A namesake started now is watched once it has run 1.5 s, not before.
    let s = Scratch::new();
    let (mut young, _) = spawn_hog(8, false);
    record_ok(
        &s.db(),
        &[
            "--name",
            "memhog",
            "--min-age",
            "1500ms",
            "--interval",
            "200ms",
            "--discovery-interval",
            "200ms",
            "--duration",
            "3s",
            "--no-api",
            "--no-system",
        ],
    );
    kill(&mut young);
    let (started, first_seen): (i64, i64) = open(&s.db())
        .query_row(
            "SELECT start_time_ms, first_seen_ms FROM targets WHERE name = 'memhog'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the young memhog was watched once old enough");
    assert!(
        first_seen - started >= 1500,
        "watched at {} ms of age",
        first_seen - started
    );
}

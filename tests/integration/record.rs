//! `memtrail record`: what it records, how it stops, and what it keeps.

use std::time::{Duration, Instant};

use crate::util::*;

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn recorded_rss_rises_by_what_the_child_allocated() {
    let s = Scratch::new();
    let db = s.db();
    let out = run(
        memtrail()
            .args([
                "record",
                "--interval",
                "100ms",
                "--smaps-interval",
                "off",
                "--db",
            ])
            .arg(&db)
            .args([
                "--",
                MEMHOG,
                "--baseline",
                "600ms",
                "--step",
                "64MiB",
                "--steps",
                "4",
                "--every",
                "300ms",
                "--hold",
                "800ms",
            ]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let conn = open(&db);
    let rss = series(&conn, "memhog", "rss");
    assert!(rss.len() >= 15, "only {} rss samples", rss.len());
    let first = rss[0].1;
    let peak = rss.iter().map(|(_, v)| *v).fold(f64::MIN, f64::max);
    let grown = (peak - first) / MIB;
    assert!(
        (256.0 * 0.9..=256.0 * 1.1).contains(&grown),
        "RSS grew by {grown:.1} MiB for 256 MiB allocated"
    );
    // A launched command is watched with its children summed.
    let tree = series(&conn, "memhog", "tree_rss");
    assert_eq!(tree.len(), rss.len());
    // The run is closed with the reason.
    assert_eq!(stop_reason(&conn), "command exited");
    // The last tick, after the command exited, records it as gone.
    let gone: Option<i64> = conn
        .query_row(
            "SELECT gone_ms FROM targets WHERE name = 'memhog'",
            [],
            |r| r.get(0),
        )
        .expect("target");
    assert!(gone.expect("marked gone") >= rss.last().expect("rss").0);
}

#[test]
fn samples_follow_the_interval_without_drift() {
    let s = Scratch::new();
    let db = s.db();
    record_ok(&db, &["--self", "--interval", "100ms", "--duration", "3s"]);
    let conn = open(&db);
    let rss = series(&conn, "memtrail", "rss");
    let mut gaps: Vec<i64> = rss.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    assert!((90..=110).contains(&median), "median gap {median} ms");
    // Fixed cadence: tick n is at start + n * interval, so every timestamp sits near the grid
    // laid from the first one (work time does not push later ticks off it).
    let t0 = rss[0].0;
    let on_grid = rss
        .iter()
        .filter(|(ts, _)| {
            let phase = (ts - t0).rem_euclid(100);
            phase.min(100 - phase) <= 20
        })
        .count();
    assert!(
        on_grid * 10 >= rss.len() * 9,
        "{on_grid} of {} ticks on the grid",
        rss.len()
    );
    assert_eq!(stop_reason(&conn), "duration");
}

#[test]
fn command_exit_code_is_returned() {
    let s = Scratch::new();
    let out = run(
        memtrail()
            .args(["record", "--interval", "100ms", "--db"])
            .arg(s.db())
            .args([
                "--",
                MEMHOG,
                "--steps",
                "1",
                "--step",
                "1MiB",
                "--hold",
                "200ms",
                "--exit-code",
                "7",
            ]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
}

#[test]
fn missing_command_exits_127() {
    let s = Scratch::new();
    let out = run(
        memtrail()
            .args(["record", "--db"])
            .arg(s.db())
            .args(["--", "/no/such/program"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("cannot run \"/no/such/program\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "the cause is said once: {}",
        stderr(&out)
    );
}

/// Issue 20.7: with the API port taken, `record -- CMD` exited 1 but left the command running.
/// What can fail is started first: the command is never launched.
#[test]
fn a_taken_api_port_fails_before_the_command_is_launched() {
    let s = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let marker = s.path("launched");
    let out = run(
        memtrail()
            .args(["record", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(s.db())
            .args(["--", "sh", "-c"])
            .arg(format!("touch {}; sleep 30", marker.display())),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot serve the API on 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "the command was launched anyway");
}

/// Issue 20.9: `--duration` ending a still-running `-- CMD` says so (it was silent).
#[test]
fn a_duration_stop_says_it_ends_the_running_command() {
    let s = Scratch::new();
    let out = run(
        memtrail()
            .args([
                "record",
                "--interval",
                "100ms",
                "--duration",
                "1s",
                "--no-system",
                "--db",
            ])
            .arg(s.db())
            .args(["--", "sleep", "30"]),
        Duration::from_secs(30),
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("the recording ends (duration) while the launched command still runs: sending it SIGTERM"),
        "{log}"
    );
}

#[test]
fn sigterm_finishes_the_tick_marks_the_run_and_exits_0() {
    let s = Scratch::new();
    let db = s.db();
    let child = spawn_recorder(&db, &["--self", "--interval", "100ms"]);
    wait_for_samples(&db, 3);
    signal(&child, libc::SIGTERM);
    let out = wait_output(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let conn = open(&db);
    let (stopped, reason, last): (Option<i64>, String, i64) = conn
        .query_row(
            "SELECT stopped_ms, stop_reason, last_tick_ms FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("run");
    assert_eq!(reason, "signal");
    assert!(stopped.expect("stopped") >= last);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
}

#[test]
fn sigterm_is_passed_to_a_launched_command() {
    let s = Scratch::new();
    let db = s.db();
    let child = spawn_recorder(
        &db,
        &[
            "--interval",
            "100ms",
            "--",
            MEMHOG,
            "--steps",
            "1",
            "--step",
            "1MiB",
            "--hold",
            "60s",
        ],
    );
    wait_for_samples(&db, 3);
    signal(&child, libc::SIGTERM);
    let out = wait_output(child, Duration::from_secs(10));
    // The command died of SIGTERM: reported as a shell would, 128 + 15.
    assert_eq!(out.status.code(), Some(143), "stderr: {}", stderr(&out));
    let reason: String = open(&db)
        .query_row("SELECT stop_reason FROM runs", [], |r| r.get(0))
        .expect("run");
    assert_eq!(reason, "command exited");
}

#[test]
fn a_process_that_exits_is_marked_gone_and_the_rest_is_still_recorded() {
    let s = Scratch::new();
    let db = s.db();
    let mut short = std::process::Command::new("sleep")
        .arg("1")
        .spawn()
        .expect("sleep");
    let mut long = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let out = run(
        memtrail()
            .args([
                "record",
                "--interval",
                "100ms",
                "--duration",
                "2500ms",
                "--no-system",
            ])
            .args([
                "--pid",
                &short.id().to_string(),
                "--pid",
                &long.id().to_string(),
                "--db",
            ])
            .arg(&db),
        Duration::from_secs(20),
    );
    let _ = short.wait();
    let _ = long.kill();
    let _ = long.wait();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("process exited"), "{}", stderr(&out));
    let conn = open(&db);
    let gone: i64 = conn
        .query_row(
            "SELECT gone_ms FROM targets WHERE pid = ?1",
            [short.id()],
            |r| r.get(0),
        )
        .expect("short target gone");
    let after: i64 = conn
        .query_row(
            "SELECT count(*) FROM samples JOIN series s ON s.id = series_id
             JOIN targets t ON t.id = s.target_id WHERE t.pid = ?1 AND ts_ms > ?2",
            rusqlite::params![long.id(), gone],
            |r| r.get(0),
        )
        .expect("count");
    assert!(
        after >= 5,
        "only {after} samples of the other process after the first one exited"
    );
    let still_alive: Option<i64> = conn
        .query_row(
            "SELECT gone_ms FROM targets WHERE pid = ?1",
            [long.id()],
            |r| r.get(0),
        )
        .expect("long target");
    assert_eq!(still_alive, None);
}

#[test]
fn a_name_that_matches_later_is_picked_up() {
    let s = Scratch::new();
    let db = s.db();
    // A uniquely named copy of memhog: the kernel names the process after the file it runs.
    let name = "memhog-late";
    let program = s.path(name);
    std::os::unix::fs::symlink(MEMHOG, &program).expect("symlink");
    let recorder = spawn_recorder(
        &db,
        &[
            "--name",
            name,
            "--interval",
            "100ms",
            "--discovery-interval",
            "200ms",
            "--duration",
            "4s",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let mut late = std::process::Command::new(&program)
        .args(["--steps", "1", "--step", "8MiB", "--hold", "5s"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("late process");
    let out = wait_output(recorder, Duration::from_secs(20));
    let _ = late.kill();
    let _ = late.wait();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no process with this name yet"), "{err}");
    let conn = open(&db);
    let pid: u32 = conn
        .query_row("SELECT pid FROM targets WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .expect("late target recorded");
    assert_eq!(pid, late.id());
    assert!(series(&conn, name, "rss").len() >= 10);
}

#[test]
fn retention_prunes_old_rows_and_a_restart_keeps_history() {
    let s = Scratch::new();
    let db = s.db();
    record_ok(&db, &["--self", "--interval", "100ms", "--duration", "1s"]);
    let now = chrono::Utc::now().timestamp_millis();
    let kept_before;
    {
        let conn = open(&db);
        kept_before = count(&conn, "SELECT count(*) FROM samples");
        // Samples from two hours ago, outside a one-hour retention.
        conn.execute(
            "INSERT INTO samples (series_id, ts_ms, value)
             SELECT id, ?1 - 7200000 + id, 1.0 FROM series",
            [now],
        )
        .expect("old rows");
        assert!(count(&conn, "SELECT count(*) FROM samples") > kept_before);
    }
    record_ok(
        &db,
        &[
            "--self",
            "--interval",
            "100ms",
            "--duration",
            "1s",
            "--retention",
            "1h",
        ],
    );
    let conn = open(&db);
    assert_eq!(
        count(
            &conn,
            &format!("SELECT count(*) FROM samples WHERE ts_ms < {now} - 3600000")
        ),
        0,
        "rows older than the retention window are gone"
    );
    // The first run's samples (inside the window) are still there, plus the second run's.
    assert!(count(&conn, "SELECT count(*) FROM samples") > kept_before);
    assert_eq!(count(&conn, "SELECT count(*) FROM runs"), 2);
    // Each migration file applied exactly once, though the database was opened twice.
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .count() as i64;
    assert_eq!(
        count(&conn, "SELECT count(*) FROM refinery_schema_history"),
        migrations
    );
}

#[test]
fn a_second_recorder_on_the_same_database_is_refused() {
    let s = Scratch::new();
    let db = s.db();
    let mut first = spawn_recorder(&db, &["--self", "--interval", "200ms"]);
    wait_for_samples(&db, 1);
    let started = Instant::now();
    let second = run(
        memtrail().args(["record", "--self", "--db"]).arg(&db),
        Duration::from_secs(20),
    );
    signal(&first, libc::SIGTERM);
    let _ = first.wait();
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(err.contains("already recording"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn children_are_summed_when_asked() {
    let s = Scratch::new();
    let db = s.db();
    let script = format!(
        "{MEMHOG} --steps 1 --step 32MiB --hold 3s >/dev/null & {MEMHOG} --steps 1 --step 32MiB --hold 3s >/dev/null & wait"
    );
    let mut sh = std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .expect("sh");
    let out = run(
        memtrail()
            .args([
                "record",
                "--interval",
                "100ms",
                "--duration",
                "2500ms",
                "--include-children",
                "--no-system",
            ])
            .args(["--pid", &sh.id().to_string(), "--db"])
            .arg(&db),
        Duration::from_secs(20),
    );
    let _ = sh.wait();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let conn = open(&db);
    let procs = series(&conn, "sh", "tree_procs");
    assert_eq!(procs.iter().map(|(_, v)| *v).fold(0.0, f64::max), 3.0);
    let tree = series(&conn, "sh", "tree_rss");
    let own = series(&conn, "sh", "rss");
    let gap = (tree.last().expect("tree").1 - own.last().expect("own").1) / MIB;
    assert!(
        (64.0 * 0.9..=64.0 * 1.25).contains(&gap),
        "children add {gap:.1} MiB"
    );
}

/// `--commit-interval 1s` at 100 ms ticks: a reader sees ticks arrive about ten at a time, and a
/// SIGTERM still writes every tick taken (the count matches the recorder's own).
#[test]
fn ticks_committed_together_arrive_in_batches_and_none_is_lost_at_the_stop() {
    let s = Scratch::new();
    let db = s.db();
    let rec = spawn_recorder(
        &db,
        &[
            "--self",
            "--interval",
            "100ms",
            "--commit-interval",
            "1s",
            "--no-api",
        ],
    );
    wait_for_samples(&db, 1);
    // Watch the count of ticks a reader sees for 3 s: it moves in steps of about ten.
    let conn = open(&db);
    let mut seen = vec![count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples")];
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        let n = count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples");
        if n != *seen.last().unwrap_or(&0) {
            seen.push(n);
        }
    }
    let steps: Vec<i64> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.len() >= 2 && steps.iter().all(|&d| d >= 5),
        "ticks should arrive in batches: {seen:?}"
    );
    std::thread::sleep(Duration::from_millis(450));
    signal(&rec, libc::SIGTERM);
    let out = wait_output(rec, Duration::from_secs(20));
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    let logged = logged_ticks(&log);
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples"),
        logged,
        "{log}"
    );
}

#[test]
fn rules_are_evaluated_every_10_s_by_default() {
    // Evaluation time of the default rules, as ms after the first tick of a 3 s run at 100 ms.
    let evaluated_after_first_tick = |flags: &[&str]| {
        let s = Scratch::new();
        let db = s.db();
        let mut args = vec![
            "--self",
            "--interval",
            "100ms",
            "--duration",
            "3s",
            "--no-api",
        ];
        args.extend_from_slice(flags);
        let out = run(
            memtrail()
                .env_remove("MEMTRAIL_EVALUATION_INTERVAL")
                .arg("record")
                .arg("--db")
                .arg(&db)
                .args(&args),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        count(
            &open(&db),
            "SELECT max(evaluated_ms) - (SELECT min(ts_ms) FROM samples) FROM alert_state",
        )
    };
    // The default: once at the first tick, next due 10 s later (after this run's end).
    assert_eq!(evaluated_after_first_tick(&[]), 0);
    // Every 500 ms: the last evaluation comes near the run's end.
    let late = evaluated_after_first_tick(&["--evaluation-interval", "500ms"]);
    assert!(
        late >= 2_000,
        "last evaluation {late} ms after the first tick"
    );
}

/// Watched processes keep their `/proc` files open, but never more than a quarter of the
/// descriptor limit: under `ulimit -n 48`, recording every process still watches them all (the
/// rest are read by path) and the database still opens its WAL and spool.
#[test]
fn every_process_is_recorded_under_a_low_descriptor_limit() {
    let s = Scratch::new();
    let db = s.db();
    let mut cmd = std::process::Command::new("bash");
    for (k, v) in memtrail().get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.args(["-c", "ulimit -n 48 && exec \"$0\" \"$@\"", MEMTRAIL])
        .args([
            "record",
            "--top",
            "100000",
            "--interval",
            "200ms",
            "--duration",
            "1s",
            "--no-api",
            "--smaps-interval",
            "off",
            // Every process, however young (the top N's default waits 30 s).
            "--min-age",
            "0s",
            "--db",
        ])
        .arg(&db);
    // More processes than the descriptor limit can hold files for (a quiet host may have few).
    let mut sleepers: Vec<std::process::Child> = (0..30)
        .map(|_| {
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("sleep")
        })
        .collect();
    // The processes the top N ranks: those with memory of their own (not kernel threads).
    let before = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| rss_of(*pid).is_some_and(|r| r > 0))
        .count() as i64;
    let out = run(&mut cmd, Duration::from_secs(30));
    for sleeper in &mut sleepers {
        kill(sleeper);
    }
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let conn = open(&db);
    let watched = count(&conn, "SELECT count(*) FROM targets WHERE kind = 'process'");
    // Far more than 48 descriptors' worth of held files (three each), and most of the machine.
    assert!(
        watched >= 20 && watched * 4 >= before * 3,
        "{watched} processes recorded, {before} in /proc"
    );
    let with_fds = count(
        &conn,
        "SELECT count(DISTINCT series_id) FROM samples JOIN series_info USING (series_id)
         WHERE metric = 'fds'",
    );
    assert!(with_fds >= 10, "{with_fds} processes with an fd count");
}

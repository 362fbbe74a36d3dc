//! Faults injected into a real recorder (issue #8, in progress): each test asserts what survived.

use std::time::{Duration, Instant};

use crate::util::*;

/// Every tick committed before a `kill -9` is still there afterwards.
fn ticks(db: &std::path::Path) -> Vec<i64> {
    let conn = open(db);
    let mut stmt = conn
        .prepare("SELECT DISTINCT ts_ms FROM samples ORDER BY ts_ms")
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// `kill -9` the recorder repeatedly mid-write at a 100 ms interval: afterwards the database passes
/// `PRAGMA integrity_check`, every tick a reader saw before a kill is still there, each killed run
/// was closed as crashed by the next recorder, and a new run starts.
#[test]
fn kill_9_mid_write_loses_nothing_committed() {
    let s = Scratch::new();
    let db = s.db();
    let (mut hog, _) = spawn_hog(16, false);
    let pid = hog.id().to_string();
    let kills = 5;
    let mut seen_before_kill: Vec<i64> = Vec::new();
    for round in 0..kills {
        let rec = spawn_recorder(&db, &["--pid", &pid, "--interval", "100ms"]);
        let before = seen_before_kill.len();
        // Let it write a few ticks of this run, then kill it at an uneven moment within a tick.
        eventually(Duration::from_secs(20), "new ticks", || {
            let n = rusqlite::Connection::open(&db)
                .ok()?
                .query_row("SELECT count(DISTINCT ts_ms) FROM samples", [], |r| {
                    r.get::<_, i64>(0)
                })
                .ok()?;
            (n as usize >= before + 5).then_some(())
        });
        std::thread::sleep(Duration::from_millis(13 * (round as u64 + 1)));
        seen_before_kill = ticks(&db);
        let started = Instant::now();
        signal(&rec, libc::SIGKILL);
        let out = wait_output(rec, Duration::from_secs(10));
        assert!(!out.status.success(), "round {round}: killed");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // A last, clean run closes the killed one and records on.
    record_ok(
        &db,
        &["--pid", &pid, "--interval", "100ms", "--duration", "1s"],
    );
    kill(&mut hog);

    let conn = open(&db);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let after = ticks(&db);
    let missing: Vec<_> = seen_before_kill
        .iter()
        .filter(|t| !after.contains(t))
        .collect();
    assert!(missing.is_empty(), "committed ticks lost: {missing:?}");
    let runs: Vec<(Option<String>, Option<i64>)> = {
        let mut stmt = conn
            .prepare("SELECT stop_reason, stopped_ms FROM runs ORDER BY id")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(runs.len(), kills + 1, "{runs:?}");
    for (reason, stopped) in &runs[..kills] {
        assert_eq!(reason.as_deref(), Some("crashed"), "{runs:?}");
        assert!(stopped.is_some(), "{runs:?}");
    }
    assert_eq!(runs[kills].0.as_deref(), Some("duration"), "{runs:?}");
    // The last run recorded too: ticks after the last kill.
    let last_seen = seen_before_kill.last().copied().unwrap_or(0);
    assert!(after.iter().filter(|&&t| t > last_seen).count() >= 5);
}

/// Another user's process: memtrail running as `nobody` watches a root process whose
/// `/proc/PID/fd` it may not read. What is readable is recorded, what is not is left out (no
/// `fds` series), and nothing panics.
#[test]
fn another_users_process_is_recorded_without_what_cannot_be_read() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED another_users_process_is_recorded_without_what_cannot_be_read: not root, so the recorder cannot be started as another user"
        );
        return;
    }
    let s = Scratch::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let db = s.db();
    let (mut hog, _) = spawn_hog(8, false);
    let mut cmd = memtrail();
    cmd.args([
        "record",
        "--pid",
        &hog.id().to_string(),
        "--interval",
        "200ms",
    ])
    .args(["--duration", "1s", "--no-system", "--db"])
    .arg(&db)
    .current_dir(s.dir.path());
    // SAFETY: setgid/setuid are async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(&mut cmd, Duration::from_secs(30));
    kill(&mut hog);
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = open(&db);
    let metric_count = |metric: &str| {
        count(
            &conn,
            &format!(
                "SELECT count(*) FROM samples JOIN series_info USING (series_id) WHERE metric = '{metric}'"
            ),
        )
    };
    assert!(metric_count("rss") >= 3, "{}", stderr(&out));
    assert_eq!(
        metric_count("fds"),
        0,
        "root's fd directory is not readable by nobody"
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

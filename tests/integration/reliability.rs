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

/// Ticks held between commits (`--commit-interval 5s` here) are appended to the spool: a `kill -9`
/// loses none of them but the tick in flight, and the next recorder writes them to the killed run.
#[test]
fn kill_9_between_commits_loses_no_spooled_tick() {
    let s = Scratch::new();
    let db = s.db();
    let args = ["--self", "--interval", "100ms", "--no-api"];
    // Rules due commit what waits first: at 10 s they leave the 5 s commit interval alone.
    let rec = spawn_recorder(
        &db,
        &[
            &args[..],
            &["--commit-interval", "5s", "--evaluation-interval", "10s"],
        ]
        .concat(),
    );
    wait_for_samples(&db, 1);
    std::thread::sleep(Duration::from_secs(3));
    let visible = count(&open(&db), "SELECT count(DISTINCT ts_ms) FROM samples");
    signal(&rec, libc::SIGKILL);
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let out = wait_output(rec, Duration::from_secs(10));
    assert!(!out.status.success(), "killed");
    // Before 5 s only the first tick is committed: the rest exists in the spool alone.
    assert!(visible <= 2, "{visible} ticks committed before the kill");

    let out = record_ok(&db, &[&args[..], &["--duration", "500ms"]].concat());
    let log = stderr(&out);
    assert!(
        log.contains("wrote the ticks a crashed recorder held"),
        "{log}"
    );
    let conn = open(&db);
    let (first_tick, last_tick, reason): (i64, i64, String) = conn
        .query_row(
            "SELECT (SELECT min(ts_ms) FROM samples), stopped_ms, stop_reason FROM runs WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the killed run");
    assert_eq!(reason, "crashed");
    let kept = count(
        &conn,
        &format!("SELECT count(DISTINCT ts_ms) FROM samples WHERE ts_ms <= {last_tick}"),
    );
    // Ticks on a 100 ms grid from the first to the kill: all there but the one in flight (and
    // one or two a loaded machine may skip).
    let expected = (killed_ms - first_tick) / 100;
    assert!(
        kept >= expected - 3 && kept > visible + 20,
        "{kept} ticks of the killed run kept, {expected} taken, {visible} committed before the kill"
    );
    assert!(
        !std::path::PathBuf::from(format!("{}-spool", db.display())).exists(),
        "a clean stop removes the spool"
    );
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}

/// Another user's process: memtrail running as `nobody` watches a root process whose
/// `/proc/PID/fd` it may not read. What is readable is recorded, what is not is left out (no
/// `fds` series), and nothing panics.
#[test]
fn another_users_process_is_recorded_without_what_cannot_be_read() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test starts the recorder as another user and needs root (run as root, as CI does, or pass `--skip another_users`)"
    );
    let s = Scratch::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let db = s.db();
    let (mut hog, _) = spawn_hog(8, false);
    // nobody may not be able to enter the checkout (a clone in a 0700 temporary directory): run a
    // copy of the binary from the scratch directory, which everyone may enter.
    let bin = s.path("memtrail");
    std::fs::copy(MEMTRAIL, &bin).expect("copy memtrail");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = memtrail_from(&bin);
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

/// The distinct tick times of the system target, oldest first.
fn system_ticks(db: &std::path::Path) -> Vec<i64> {
    let conn = open(db);
    let mut stmt = conn
        .prepare(
            "SELECT DISTINCT ts_ms FROM samples JOIN series_info USING (series_id)
             WHERE kind = 'system' ORDER BY ts_ms",
        )
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The longest gap allowed between 100 ms ticks where nothing may be lost: a loaded 2-core machine
/// may skip a few ticks, while a lost stretch of held ticks (the faults below last 3 s or more)
/// leaves a hole of seconds.
const MAX_HOLE_MS: i64 = 2_000;

/// The longest gap between consecutive ticks, in ms.
fn longest_gap(ticks: &[i64]) -> i64 {
    ticks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

fn held_ticks(api: &ApiRecorder) -> i64 {
    let (_, body) = http("GET", &api.url("/internal/memory/status"), None, None);
    json(&body)["recorder"]["held_ticks"]
        .as_i64()
        .unwrap_or_else(|| panic!("held_ticks in {body}"))
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    /// Mount it, or fail the test saying why: a disk-full test that cannot fill a disk must not
    /// pass (it needs root, as CI runs; elsewhere `--skip disk` leaves these tests out).
    fn mount(test: &str, at: std::path::PathBuf, size: &str) -> SmallDisk {
        // SAFETY: geteuid has no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "{test} mounts a small tmpfs to fill and needs root (run as root, or pass `--skip disk` to leave the disk-full tests out)"
        );
        std::fs::create_dir_all(&at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .unwrap_or_else(|e| panic!("{test}: cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "{test}: mounting a tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        SmallDisk { dir: at }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Fill the filesystem holding `path` with one file until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
}

/// The database's filesystem fills up: the recorder holds the newest ticks in memory, logs the
/// failure once (not once per tick), `/healthz` says so; when space returns the held ticks are
/// written, so the history has no hole, and the file passes `integrity_check`.
#[test]
fn a_full_disk_holds_ticks_in_memory_and_writes_them_when_space_returns() {
    let test = "a_full_disk_holds_ticks_in_memory_and_writes_them_when_space_returns";
    let s = Scratch::new();
    let disk = SmallDisk::mount(test, s.path("small"), "16m");
    let db = disk.dir.join("memtrail.db");
    let api = ApiRecorder::start(&db, &["--self", "--interval", "100ms"], &[], None);
    wait_for_samples(&db, 10);
    let filler = disk.dir.join("filler");
    fill(&filler);
    let reason = eventually(Duration::from_secs(60), "/healthz to turn 503", || {
        let (code, body) = http("GET", &api.url("/healthz"), None, None);
        (code == 503).then(|| json(&body)["reason"].as_str().unwrap_or("").to_string())
    });
    assert!(reason.contains("full"), "{reason}");
    assert!(reason.contains("held in memory"), "{reason}");
    // Keep it full for a while: ticks pile up in memory and the recorder keeps sampling.
    let held_a = held_ticks(&api);
    std::thread::sleep(Duration::from_secs(3));
    let held_b = held_ticks(&api);
    assert!(
        held_b >= held_a + 15,
        "held ticks should grow at ~10/s while the disk is full: {held_a} then {held_b}"
    );
    std::fs::remove_file(&filler).expect("space returns");
    eventually(Duration::from_secs(20), "/healthz to recover", || {
        (http("GET", &api.url("/healthz"), None, None).0 == 200 && held_ticks(&api) == 0)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let log = api.stop();
    assert_eq!(
        log.matches("could not write this tick").count(),
        1,
        "logged once a minute, not per tick: {log}"
    );
    assert!(log.contains("accepts writes again"), "{log}");
    let conn = open(&db);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let ticks = system_ticks(&db);
    // 100 ms ticks with nothing lost across several seconds of a full disk: no hole longer than a
    // few skipped ticks (a loaded 2-core machine may skip some).
    assert!(
        longest_gap(&ticks) < MAX_HOLE_MS,
        "a hole of {} ms in {} ticks",
        longest_gap(&ticks),
        ticks.len()
    );
    drop(disk);
}

/// Long readers (an ad-hoc query, a report export, a read transaction held open) and another
/// writer holding the write lock for 3 s: sampling never waits (ticks taken meanwhile are held and
/// written once the lock is free), and the readers are never blocked by the recorder.
#[test]
fn long_readers_and_a_lock_holder_neither_stall_ticks_nor_lose_them() {
    let s = Scratch::new();
    let db = s.db();
    let api = ApiRecorder::start(&db, &["--self", "--interval", "100ms"], &[], None);
    wait_for_samples(&db, 10);

    // A reader keeps a read transaction open across everything below.
    let reader = open(&db);
    reader.execute_batch("BEGIN").expect("begin");
    let frozen = count(&reader, "SELECT count(*) FROM samples");

    // A slow ad-hoc query and a report export run meanwhile.
    let slow_query = {
        let db = db.clone();
        std::thread::spawn(move || {
            run(
                memtrail().args(["query", "--db"]).arg(&db).args([
                    "--sql",
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)
                     SELECT count(*) AS n, (SELECT count(*) FROM samples) > 0 AS has_samples FROM n",
                ]),
                Duration::from_secs(60),
            )
        })
    };
    let export = {
        let db = db.clone();
        let out = s.path("report.html");
        std::thread::spawn(move || {
            run(
                memtrail()
                    .args(["report", "--format", "html", "--db"])
                    .arg(&db)
                    .arg("--output")
                    .arg(&out),
                Duration::from_secs(60),
            )
        })
    };

    // Another writer takes the write lock and holds it for 3 s.
    let writer = open(&db);
    let locked_at = Instant::now();
    writer.execute_batch("BEGIN IMMEDIATE").expect("write lock");
    let mut held_max = 0;
    while locked_at.elapsed() < Duration::from_secs(3) {
        held_max = held_max.max(held_ticks(&api));
        std::thread::sleep(Duration::from_millis(200));
    }
    writer.execute_batch("COMMIT").expect("release");
    let lock_ms = locked_at.elapsed().as_millis();

    let q = slow_query.join().expect("query thread");
    assert!(q.status.success(), "{}", stderr(&q));
    assert!(String::from_utf8_lossy(&q.stdout).contains("3000000"));
    let r = export.join().expect("report thread");
    assert!(r.status.success(), "{}", stderr(&r));
    // The reader's snapshot stayed put while the recorder wrote.
    assert_eq!(count(&reader, "SELECT count(*) FROM samples"), frozen);
    reader.execute_batch("COMMIT").expect("end read");

    eventually(
        Duration::from_secs(10),
        "the held ticks to be written",
        || (held_ticks(&api) == 0).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let log = api.stop();
    assert!(
        held_max >= 10,
        "ticks taken during the {lock_ms} ms lock were held (at most {held_max} seen): {log}"
    );
    let ticks = system_ticks(&db);
    assert!(
        longest_gap(&ticks) < MAX_HOLE_MS,
        "a hole of {} ms in {} ticks: the lock stalled sampling\n{log}",
        longest_gap(&ticks),
        ticks.len()
    );
}

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A recorder whose wall clock (only: the monotonic clock is real) is set from `clock_file`.
fn recorder_with_fake_wall_clock(
    db: &std::path::Path,
    clock_file: &std::path::Path,
    args: &[&str],
) -> std::process::Child {
    memtrail()
        .arg("record")
        .arg("--db")
        .arg(db)
        .args(args)
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", clock_file)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn recorder")
}

/// The wall clock jumps back an hour, returns, then jumps forward an hour (libfaketime moves the
/// recorder's wall clock only). Every tick is kept, none stamped before an earlier one (no sample
/// overwritten), the forward jump is one gap, both jumps are logged, and no growth alert fires for
/// a steady process. A second run started while the clock is behind writes nothing before the
/// first run's newest tick.
#[test]
fn wall_clock_jumps_neither_reorder_history_nor_fire_alerts() {
    let test = "wall_clock_jumps_neither_reorder_history_nor_fire_alerts";
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{test}: {LIBFAKETIME} is missing: apt-get install faketime (bash .ci/test installs it)"
    );
    let s = Scratch::new();
    let db = s.db();
    let clock = s.path("clock");
    std::fs::write(&clock, "+0\n").expect("clock file");
    let (mut hog, _) = spawn_hog(16, false);
    let pid = hog.id().to_string();
    let recorder_for = |duration: &str| {
        recorder_with_fake_wall_clock(
            &db,
            &clock,
            &[
                "--pid",
                &pid,
                "--interval",
                "100ms",
                "--no-api",
                "--duration",
                duration,
            ],
        )
    };
    let rec = recorder_for("6s");
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&clock, "-3600\n").expect("back an hour");
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&clock, "+0\n").expect("back to now");
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(&clock, "+3600\n").expect("forward an hour");
    let out = wait_output(rec, Duration::from_secs(30));
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("behind the last tick (it jumped back)"),
        "{log}"
    );
    assert!(log.contains("jumped 3600"), "{log}");
    let logged_ticks = logged_ticks(&log) as usize;

    let first = system_ticks(&db);
    // Every tick has its own time: none overwrote another.
    assert_eq!(first.len(), logged_ticks, "{log}");
    let gaps: Vec<i64> = first.windows(2).map(|w| w[1] - w[0]).collect();
    // A loaded machine may stall a tick or two; the jump is an hour.
    let big: Vec<i64> = gaps.iter().copied().filter(|&g| g >= 10_000).collect();
    assert_eq!(big.len(), 1, "one gap, the forward jump: {big:?}");
    assert!((3_600_000..3_602_000).contains(&big[0]), "{big:?}");
    let conn = open(&db);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM alerts WHERE event = 'firing'"),
        0,
        "a steady process fired an alert"
    );

    // A second run while the wall clock is an hour behind the history (a clock that ran ahead and
    // was put right looks the same) stamps at the wall clock: it writes nothing at or before the
    // newest tick, so nothing lands in the future or out of order, and says so.
    std::fs::write(&clock, "-3600\n").expect("behind");
    let rec = recorder_for("1s");
    let out = wait_output(rec, Duration::from_secs(30));
    kill(&mut hog);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("ahead of the wall clock"), "{log}");
    let skipped: i64 = log
        .split("skipped_ticks=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("skipped_ticks in the stop line");
    assert!(skipped >= 5, "{skipped} ticks skipped\n{log}");
    assert_eq!(
        system_ticks(&db),
        first,
        "the first run's ticks alone, untouched"
    );
}

/// Issue 23.1: each run started a second past the newest tick, so quick restarts pushed history
/// ahead of the wall clock (five 1 s runs: 3.6 s). After 20 quick restarts the newest tick is
/// within one interval of the wall clock, and no tick was stamped twice.
#[test]
fn quick_restarts_keep_ticks_on_the_wall_clock() {
    let s = Scratch::new();
    let db = s.db();
    let mut runs = 0;
    for _ in 0..20 {
        let out = run(
            memtrail()
                .args([
                    "record",
                    "--interval",
                    "100ms",
                    "--duration",
                    "300ms",
                    "--no-api",
                ])
                .arg("--db")
                .arg(&db),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        runs += 1;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let ticks = system_ticks(&db);
    let newest = *ticks.last().expect("ticks");
    assert!(
        newest <= now + 100,
        "after {runs} runs the newest tick is {} ms ahead of the wall clock",
        newest - now
    );
    assert!(
        ticks.windows(2).all(|w| w[0] < w[1]),
        "ticks in order, none twice"
    );
}

/// Start `program` (a copy of memhog) holding `mib` MiB and wait until it is resident.
fn hog_at(program: &std::path::Path, mib: u64) -> std::process::Child {
    let child = hog_command(program, mib).spawn().expect("hog");
    wait_resident(child.id(), mib);
    child
}

/// Start `program` as pid `pid`, by setting the kernel's last-given pid just below it (root only;
/// other tests fork too, so it is retried). None when the machine does not allow it.
fn hog_with_pid(program: &std::path::Path, mib: u64, pid: u32) -> Option<std::process::Child> {
    for _ in 0..50 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let mut child = hog_command(program, mib).spawn().expect("hog");
        if child.id() == pid {
            wait_resident(pid, mib);
            return Some(child);
        }
        kill(&mut child);
    }
    None
}

/// A pid reused by a new process: a recorder following a name records the old and the new process
/// as two targets (same pid, different start times), the old one marked gone; a recorder following
/// the pid stops with the old process and never records the newcomer's memory as the old one's.
#[test]
fn a_reused_pid_is_a_new_process_not_the_old_one() {
    let test = "a_reused_pid_is_a_new_process_not_the_old_one";
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "{test} chooses the next pid (ns_last_pid) and needs root (run as root, as CI does, or pass `--skip reused_pid`)"
    );
    let s = Scratch::new();
    // A name of its own, so other tests' memhogs are not matched.
    let program = s.path("reusehog");
    std::fs::copy(MEMHOG, &program).expect("copy memhog");
    let mut old = hog_at(&program, 8);
    let pid = old.id();
    let by_name = s.path("by-name.db");
    let by_pid = s.path("by-pid.db");
    let name_rec = spawn_recorder(
        &by_name,
        &[
            "--name",
            "reusehog",
            "--interval",
            "100ms",
            "--discovery-interval",
            "100ms",
            "--no-system",
        ],
    );
    let pid_rec = spawn_recorder(
        &by_pid,
        &[
            "--pid",
            &pid.to_string(),
            "--interval",
            "100ms",
            "--no-system",
            "--no-api",
        ],
    );
    wait_for_samples(&by_name, 5);
    wait_for_samples(&by_pid, 5);
    // The old process dies and, before the next tick most likely, a new one takes its pid.
    kill(&mut old);
    let Some(mut new) = hog_with_pid(&program, 40, pid) else {
        for rec in [name_rec, pid_rec] {
            signal(&rec, libc::SIGTERM);
            wait_output(rec, Duration::from_secs(20));
        }
        panic!("{test}: pid {pid} could not be given to a new process in 50 tries (ns_last_pid)");
    };
    // The pid recorder has nothing left to watch and stops by itself.
    let pid_out = wait_output(pid_rec, Duration::from_secs(20));
    assert!(pid_out.status.success(), "{}", stderr(&pid_out));
    eventually(
        Duration::from_secs(20),
        "the new process to be recorded",
        || {
            let conn = rusqlite::Connection::open(&by_name).ok()?;
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM samples JOIN series_info USING (series_id)
                 WHERE metric = 'rss' AND value > 32 * 1048576",
                    [],
                    |r| r.get(0),
                )
                .ok()?;
            (n >= 3).then_some(())
        },
    );
    signal(&name_rec, libc::SIGTERM);
    let name_out = wait_output(name_rec, Duration::from_secs(20));
    kill(&mut new);
    assert!(name_out.status.success(), "{}", stderr(&name_out));

    // Following the name: two targets with the one pid, told apart by start time.
    let conn = open(&by_name);
    let mut stmt = conn
        .prepare(
            "SELECT id, start_time_ms, gone_ms,
                    (SELECT max(value) FROM samples JOIN series_info i USING (series_id)
                     WHERE i.target_id = t.id AND i.metric = 'rss')
             FROM targets t WHERE kind = 'process' AND pid = ?1 ORDER BY start_time_ms",
        )
        .expect("prepare");
    let targets: Vec<(i64, i64, Option<i64>, f64)> = stmt
        .query_map([pid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(targets.len(), 2, "{targets:?}\n{}", stderr(&name_out));
    let (old_t, new_t) = (&targets[0], &targets[1]);
    assert!(new_t.1 > old_t.1, "start times differ: {targets:?}");
    assert!(old_t.2.is_some(), "the old process is gone: {targets:?}");
    let mib = |b: f64| b / 1048576.0;
    assert!(
        mib(old_t.3) < 24.0,
        "the old target holds the new one's memory: {targets:?}"
    );
    assert!(mib(new_t.3) >= 40.0, "{targets:?}");

    // Following the pid: only the old process, never the newcomer's 40 MiB.
    let conn = open(&by_pid);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM targets WHERE kind = 'process'"),
        1
    );
    let max_rss: f64 = conn
        .query_row(
            "SELECT max(value) FROM samples JOIN series_info USING (series_id) WHERE metric = 'rss'",
            [],
            |r| r.get(0),
        )
        .expect("rss");
    assert!(mib(max_rss) < 24.0, "{} MiB", mib(max_rss));
    assert_eq!(stop_reason(&conn), "targets gone");
}

/// Ticks spooled for the next commit (`--commit-interval 2s` at 100 ms ticks) are not held: a
/// healthy recorder reports no held ticks or samples in `/healthz`, the status and `/metrics`,
/// and counts what waits for the commit as spooled.
#[test]
fn spooled_ticks_are_not_counted_as_held() {
    let s = Scratch::new();
    let db = s.db();
    let api = ApiRecorder::start(
        &db,
        &["--self", "--interval", "100ms", "--commit-interval", "2s"],
        &[],
        None,
    );
    let mut spooled_seen = 0;
    for _ in 0..20 {
        let (code, body) = http("GET", &api.url("/healthz"), None, None);
        let health = json(&body);
        if code == 200 {
            assert_eq!(health["held_ticks"], 0, "{body}");
        }
        let (_, body) = http("GET", &api.url("/internal/memory/status"), None, None);
        let rec = &json(&body)["recorder"];
        assert_eq!(rec["held_ticks"], 0, "{body}");
        assert_eq!(rec["held_samples"], 0, "{body}");
        spooled_seen = spooled_seen.max(rec["spooled_ticks"].as_i64().unwrap_or(0));
        let (_, metrics) = http("GET", &api.url("/metrics"), None, None);
        assert!(
            metrics.contains("\nmemtrail_recorder_held_samples 0\n"),
            "{metrics}"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    api.stop();
    assert!(
        spooled_seen >= 3,
        "ticks between 2 s commits are reported as spooled (most seen: {spooled_seen})"
    );
}

/// Ticks held only to be committed together (a long commit interval) are committed when the next
/// would push them past the write buffer, never dropped: a large host's ticks between commits
/// (8,500 samples a tick for 1,000 processes) can outgrow the buffer sized for a failing disk.
#[test]
fn ticks_between_commits_that_fill_the_write_buffer_are_committed_not_dropped() {
    let s = Scratch::new();
    let db = s.db();
    // About ten samples a tick (the recorder's own process and the system): a buffer of 25 holds
    // two ticks, a 1-minute commit interval would hold all thirty.
    let out = run(
        memtrail()
            .args([
                "record",
                "--self",
                "--interval",
                "100ms",
                "--duration",
                "3s",
            ])
            .args([
                "--commit-interval",
                "1m",
                "--write-buffer",
                "25",
                "--no-api",
            ])
            .arg("--db")
            .arg(&db),
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("write buffer is full"), "{err}");
    let written = ticks(&db);
    assert!(
        written.len() >= 28,
        "{} ticks: {written:?}\n{err}",
        written.len()
    );
}

/// A pipe's two ends; `nonblock` sets O_NONBLOCK on both (so the recorder's writes get EAGAIN
/// once the buffer is full rather than waiting for a reader).
fn pipe(nonblock: bool) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    let flags = if nonblock { libc::O_NONBLOCK } else { 0 } | libc::O_CLOEXEC;
    // SAFETY: pipe2 fills the two descriptors, which are then owned here alone.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) }, 0, "pipe2");
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// Record 3 s at 100 ms logging into `stderr`; the recorder must exit 0 having closed
/// its run normally with every tick written, and `/metrics` must count dropped log lines while it
/// runs. Returns what `/metrics` said then.
fn record_with_stderr(stderr: std::process::Stdio) {
    let s = Scratch::new();
    let db = s.db();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = memtrail();
    cmd.args([
        "record",
        "--self",
        "--interval",
        "100ms",
        "--duration",
        "3s",
    ])
    .args(["--listen", &listen, "--db"])
    .arg(&db)
    .stdout(std::process::Stdio::null())
    .stderr(stderr);
    let child = cmd.spawn().expect("spawn");
    let metrics = eventually(
        Duration::from_secs(10),
        "/metrics counts dropped lines",
        || {
            std::thread::sleep(Duration::from_millis(200));
            std::net::TcpStream::connect(&listen).ok()?;
            let (code, body) = http("GET", &format!("http://{listen}/metrics"), None, None);
            (code == 200
                && body.contains("memtrail_log_lines_dropped_total")
                && dropped(&body) > 0.0)
                .then_some(body)
        },
    );
    let out = wait_output(child, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "exit status {:?}", out.status);
    let conn = open(&db);
    assert_eq!(stop_reason(&conn), "duration");
    let ticks = count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples");
    assert!(ticks >= 25, "{ticks} ticks of 30 written");
    assert!(dropped(&metrics) > 0.0);
}

fn dropped(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("memtrail_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("memtrail_log_lines_dropped_total")
}

#[test]
fn a_full_stderr_neither_panics_nor_stops_recording() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    record_with_stderr(full.into());
}

#[test]
fn a_closed_stderr_pipe_neither_panics_nor_stops_recording() {
    let (read, write) = pipe(false);
    drop(read);
    record_with_stderr(write.into());
}

#[test]
fn a_nonblocking_stderr_pipe_nobody_reads_neither_blocks_nor_stops_recording() {
    let (read, write) = pipe(true);
    // Fill the pipe's buffer first: every line the recorder logs then meets EAGAIN.
    let mut filler = std::fs::File::from(write.try_clone().expect("dup"));
    while std::io::Write::write(&mut filler, &[b'.'; 4096]).is_ok() {}
    record_with_stderr(write.into());
    drop(read);
}

/// Issue 23.4: a FIFO where the spool goes hung start-up forever, and a 2 GiB spool was read whole
/// (2.1 GB RSS). Each is refused at once, naming the file, and the database is left alone.
#[test]
fn a_spool_that_is_a_fifo_or_oversized_is_refused_at_start_without_reading_it() {
    let s = Scratch::new();
    let db = s.db();
    let spool = std::path::PathBuf::from(format!("{}-spool", db.display()));
    let made = std::process::Command::new("mkfifo")
        .arg(&spool)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let record = |db: &std::path::Path| {
        let started = Instant::now();
        let out = record_run(db, &["--interval", "100ms", "--duration", "1s", "--no-api"]);
        (out, started.elapsed())
    };
    let (out, took) = record(&db);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(10), "start-up took {took:?}");
    std::fs::remove_file(&spool).expect("rm fifo");
    // A sparse 2 GiB file: refused by its size, not read.
    std::fs::File::create(&spool)
        .and_then(|f| f.set_len(2 << 30))
        .expect("sparse spool");
    let (out, _) = record(&db);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than a spool ever holds"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::metadata(&spool).expect("kept").len(),
        2 << 30,
        "the spool is left for the operator"
    );
}

/// Issue 23.9: a process whose name holds a newline split a text log line in two, the second
/// reading as a line of its own. It is escaped: the name (15 bytes at most) shows as
/// `e\nERROR forged`, on one line.
#[test]
fn a_newline_in_a_process_name_does_not_split_a_log_line() {
    let mut evil = std::process::Command::new("python3")
        .args([
            "-c",
            "import time\nopen('/proc/self/comm', 'w').write('e\\nERROR forged')\nprint('ok', flush=True)\ntime.sleep(30)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(evil.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("ready");
    let s = Scratch::new();
    let pid = evil.id().to_string();
    let out = run(
        memtrail()
            .args([
                "record",
                "--pid",
                &pid,
                "--interval",
                "100ms",
                "--duration",
                "1s",
            ])
            .args(["--no-api", "--db"])
            .arg(s.db()),
        Duration::from_secs(20),
    );
    kill(&mut evil);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("e\\nERROR forged"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged")),
        "a forged line:\n{log}"
    );
}

/// Issue 23.8: a recorder whose every write failed exited 0 (`samples=0 failed_ticks=15`). Under a
/// range of file-size limits (some fail start-up, some the first tick on, some later ticks), a run
/// that kept none of its ticks exits non-zero, and says so.
#[test]
fn a_run_that_writes_nothing_it_sampled_exits_non_zero() {
    let s = Scratch::new();
    let db = s.db();
    record_ok(
        &db,
        &["--interval", "100ms", "--duration", "300ms", "--no-api"],
    );
    let mut nothing_written = 0;
    for kib in [16u64, 24, 28, 32, 36, 40, 48, 64] {
        let copy = s.path(&format!("limited-{kib}.db"));
        std::fs::copy(&db, &copy).expect("copy");
        let before = count(&open(&copy), "SELECT count(*) FROM samples");
        let mut cmd = memtrail();
        cmd.args([
            "record",
            "--interval",
            "100ms",
            "--duration",
            "1500ms",
            "--no-api",
            "--db",
        ])
        .arg(&copy);
        limit_file_size(&mut cmd, kib * 1024);
        let out = run(&mut cmd, Duration::from_secs(30));
        let written = count(&open(&copy), "SELECT count(*) FROM samples") - before;
        if written == 0 {
            assert_ne!(
                out.status.code(),
                Some(0),
                "{kib} KiB: nothing written, exit 0\n{}",
                stderr(&out)
            );
            if stderr(&out).contains("no tick of this run could be written") {
                nothing_written += 1;
            }
        }
    }
    assert!(
        nothing_written > 0,
        "no limit let a run begin and then fail every tick"
    );
}

/// Issue 23.4: a recorder given `--busy-timeout 10s` failed after 2.5 s (half the default interval)
/// when the sqlite3 shell held the write lock for 5 s, saying "closing runs left open by a crashed
/// recorder" when there was none. The start now waits the whole busy timeout; past it, the message
/// names the lock.
#[test]
fn the_busy_timeout_is_honoured_at_start_and_a_lock_is_named() {
    let s = Scratch::new();
    let db = s.db();
    record_ok(
        &db,
        &["--interval", "100ms", "--duration", "300ms", "--no-api"],
    );
    // Hold the write lock for `secs` from another connection (as the sqlite3 shell would).
    let hold = |secs: u64| {
        let db = db.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let conn = open(&db);
            conn.execute_batch("BEGIN IMMEDIATE").expect("lock");
            tx.send(()).expect("locked");
            std::thread::sleep(Duration::from_secs(secs));
            conn.execute_batch("COMMIT").expect("unlock");
        });
        rx.recv().expect("locked");
        holder
    };
    let record = |timeout: &str| {
        run(
            memtrail()
                .args([
                    "record",
                    "--duration",
                    "1s",
                    "--no-api",
                    "--busy-timeout",
                    timeout,
                    "--db",
                ])
                .arg(&db),
            Duration::from_secs(30),
        )
    };
    let holder = hold(5);
    let out = record("10s");
    holder.join().expect("holder");
    assert!(
        out.status.success(),
        "a 5 s lock failed a 10 s busy timeout: {}",
        stderr(&out)
    );
    let holder = hold(4);
    let out = record("1s");
    holder.join().expect("holder");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("locked by another connection"), "{err}");
    assert!(!err.contains("crashed recorder"), "{err}");
}

/// Issue 23.8: a database with a damaged page was recorded into silently. A writer's start checks
/// it (`PRAGMA quick_check`, bounded in time) and refuses it with the command to recover it,
/// leaving the file as it was; `memtrail check` checks a file whole.
#[test]
fn a_damaged_database_is_refused_and_left_as_it_was() {
    use std::io::{Seek, Write};
    let s = Scratch::new();
    let db = s.db();
    record_ok(
        &db,
        &["--interval", "100ms", "--duration", "500ms", "--no-api"],
    );
    let check = |db: &std::path::Path| {
        run(
            memtrail().args(["check", "--db"]).arg(db),
            Duration::from_secs(20),
        )
    };
    assert!(check(&db).status.success(), "{}", stderr(&check(&db)));
    let (root, page): (i64, i64) = {
        let conn = open(&db);
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'series'",
                [],
                |r| r.get(0),
            )
            .expect("root page");
        let page = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        (root, page)
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open");
    f.seek(std::io::SeekFrom::Start(((root - 1) * page) as u64))
        .expect("seek");
    f.write_all(&vec![0x5a; page as usize]).expect("damage");
    drop(f);
    let damaged = std::fs::read(&db).expect("read");
    let out = record_run(
        &db,
        &["--interval", "100ms", "--duration", "500ms", "--no-api"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is damaged") && err.contains(".recover"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).expect("read"),
        damaged,
        "the file was written to"
    );
    let out = check(&db);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is damaged"), "{}", stderr(&out));
}

/// Issue 23.9: a SIGSTOP/SIGCONT of the recorder left two ticks 2 ms apart and an unlogged hole.
/// After the pause the next tick comes at least half an interval later, and the pause is logged.
#[test]
fn a_paused_recorder_logs_the_pause_and_takes_no_double_tick() {
    let s = Scratch::new();
    let db = s.db();
    let mut cmd = memtrail();
    cmd.args([
        "record",
        "--interval",
        "100ms",
        "--duration",
        "4s",
        "--no-api",
        "--db",
    ])
    .arg(&db)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_for_samples(&db, 2);
    // Stop it for 1.55 s: it resumes mid-way between two grid points of 100 ms or near one.
    signal(&child, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1550));
    signal(&child, libc::SIGCONT);
    let out = wait_output(child, Duration::from_secs(20));
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("late: the recorder was paused"), "{log}");
    let ticks = system_ticks(&db);
    let gaps: Vec<i64> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&g| g >= 50),
        "ticks closer than half an interval: {gaps:?}"
    );
    assert!(
        gaps.iter().any(|&g| g >= 1_400),
        "the pause's hole: {gaps:?}"
    );
}

/// Issue 23.9: readers on a read-only mount (a backup, a copied volume) failed for want of the
/// `-shm` file. They read the file as immutable there: status, queries and reports work.
#[test]
fn readers_work_on_a_read_only_mount() {
    let test = "readers_work_on_a_read_only_mount";
    let s = Scratch::new();
    let disk = SmallDisk::mount(test, s.path("ro"), "16m");
    let db = disk.dir.join("memtrail.db");
    record_ok(
        &db,
        &["--interval", "100ms", "--duration", "500ms", "--no-api"],
    );
    let remount = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&disk.dir)
        .status()
        .expect("mount");
    assert!(remount.success(), "{test}: remounting read-only failed");
    for args in [
        &["status"][..],
        &["query", "latest"][..],
        &["query", "--sql", "SELECT count(*) FROM samples"][..],
        &["report", "--format", "json", "-o"][..],
    ] {
        let mut cmd = memtrail();
        cmd.args(args);
        if args[0] == "report" {
            cmd.arg(s.path("report.json"));
        }
        let out = run(cmd.arg("--db").arg(&db), Duration::from_secs(20));
        assert!(
            out.status.success(),
            "{args:?} on a read-only mount: {}",
            stderr(&out)
        );
    }
    drop(disk);
}

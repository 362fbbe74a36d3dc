//! cgroups as targets, on real cgroups: a group is created under the machine's memory hierarchy
//! (v2, or v1's memory controller) with a limit, a memhog is moved into it, and memtrail must
//! record usage rising, the limit, and an OOM kill when an allocation goes past the limit, and the
//! default rule must fire. Without root or a writable hierarchy these tests fail and say why.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use memtrail::collect::cgroup::{Hierarchy, Version};

use crate::util::*;

const MIB: u64 = 1024 * 1024;

/// A cgroup made for one test, removed (its processes killed first) when dropped.
struct TestGroup {
    dir: PathBuf,
    /// Its path in the hierarchy: what memtrail names the target.
    name: String,
}

impl TestGroup {
    /// A new group at the top of the hierarchy, or None (with the reason printed) when this
    /// machine does not let the test create one.
    fn create(test: &str, limit: Option<u64>) -> Option<TestGroup> {
        // A live cgroup check that cannot make its group fails, saying why: it must not pass.
        let skip = |why: String| -> Option<TestGroup> {
            panic!(
                "{test}: {why}; the live cgroup checks need root and a writable cgroup hierarchy (as CI has; elsewhere pass `--skip cgroup::`)"
            )
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip("not root, so no cgroup can be created".into());
        }
        let h = match Hierarchy::detect() {
            Ok(h) => h,
            Err(e) => return skip(e.to_string()),
        };
        let name = format!("/memtrail-test-{}-{test}", std::process::id());
        let dir = h.mount.join(name.trim_start_matches('/'));
        if let Err(e) = std::fs::create_dir(&dir) {
            return skip(format!("cannot create {}: {e}", dir.display()));
        }
        let g = TestGroup { dir, name };
        if let Some(bytes) = limit {
            let files: &[&str] = match h.version {
                Version::V1 => &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
                Version::V2 => &["memory.max", "memory.swap.max"],
            };
            for (i, f) in files.iter().enumerate() {
                let value = if i == 1 && h.version == Version::V2 {
                    "0".to_string()
                } else {
                    bytes.to_string()
                };
                let path = g.dir.join(f);
                match std::fs::write(&path, value) {
                    Ok(()) => {}
                    // The swap file is absent without swap accounting: then the group could swap
                    // instead of reaching its limit, unless the machine has no swap at all.
                    Err(e) if i == 1 => {
                        if swap_total() > 0 {
                            return skip(format!(
                                "the machine has swap and {} cannot be set ({e}): an allocation past the limit would swap, not OOM",
                                path.display()
                            ));
                        }
                    }
                    // E.g. cgroup v2 where the parent does not delegate the memory controller.
                    Err(e) => {
                        return skip(format!("cannot set {}: {e}", path.display()));
                    }
                }
            }
        }
        Some(g)
    }

    /// Start memhog inside the group (a shell moves itself in, then becomes memhog).
    fn spawn_hog(&self, mib: u64) -> Child {
        let script = format!(
            "echo $$ > '{}' && exec '{MEMHOG}' --steps 1 --step {mib}MiB --hold 60s",
            self.dir.join("cgroup.procs").display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("sh")
    }
}

/// SwapTotal from /proc/meminfo, in KiB.
fn swap_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("SwapTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) on processes this test put in its own group.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// The newest value of a target's metric; None until it is recorded (or the schema exists).
fn latest(conn: &rusqlite::Connection, name: &str, metric: &str) -> Option<f64> {
    conn.query_row(
        "SELECT value FROM samples JOIN series_info USING (series_id)
         WHERE target = ?1 AND metric = ?2 ORDER BY ts_ms DESC LIMIT 1",
        [name, metric],
        |r| r.get(0),
    )
    .ok()
}

#[test]
fn limited_group_usage_limit_and_oom_kill() {
    let Some(g) = TestGroup::create("oom", Some(64 * MIB)) else {
        return;
    };
    let s = Scratch::new();
    let db = s.db();
    let api = ApiRecorder::start(
        &db,
        &["--cgroup", &g.name, "--no-system", "--interval", "200ms"],
        &[],
        None,
    );
    // Usage rises by what memhog holds, and the group's own limit is recorded.
    let mut hog = g.spawn_hog(40);
    eventually(Duration::from_secs(20), "usage of 40 MiB", || {
        let conn = rusqlite::Connection::open(&db).ok()?;
        (latest(&conn, &g.name, "usage")? >= 40.0 * MIB as f64).then_some(())
    });
    let conn = open(&db);
    assert_eq!(latest(&conn, &g.name, "limit"), Some((64 * MIB) as f64));
    assert_eq!(latest(&conn, &g.name, "has_limit"), Some(1.0));
    let pct = latest(&conn, &g.name, "limit_percent").expect("limit_percent");
    assert!((60.0..100.0).contains(&pct), "{pct} % of the limit");
    let kills_before = latest(&conn, &g.name, "oom_kill").expect("oom_kill counter");

    // Past the limit: the kernel kills inside the group; memtrail records the event and the
    // default rule fires.
    let mut big = g.spawn_hog(100);
    let status = big.wait().expect("wait");
    assert!(
        !status.success(),
        "the 100 MiB memhog must be OOM-killed in a 64 MiB group"
    );
    let kills = eventually(Duration::from_secs(20), "a recorded OOM kill", || {
        let conn = rusqlite::Connection::open(&db).ok()?;
        let k = latest(&conn, &g.name, "oom_kill")?;
        (k > kills_before).then_some(k)
    });
    assert!(kills >= kills_before + 1.0);
    let fired = eventually(Duration::from_secs(20), "the cgroup_oom_kill alert", || {
        let conn = rusqlite::Connection::open(&db).ok()?;
        conn.query_row(
            "SELECT message FROM alerts WHERE rule = 'cgroup_oom_kill' AND event = 'firing'",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
    });
    assert!(fired.contains(&g.name), "{fired}");
    // The API shows usage against the limit, live and from the history.
    let (code, body) = http("GET", &api.url("/internal/memory/status"), None, None);
    assert_eq!(code, 200, "{body}");
    let status = json(&body);
    let group = status["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["kind"] == "cgroup"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(group["target"], g.name.as_str(), "{body}");
    assert_eq!(group["memory_limit"]["limit"], (64 * MIB) as f64, "{body}");
    assert_eq!(group["memory_limit"]["own_limit"], true, "{body}");
    let (code, body) = http("GET", &api.url("/internal/memory/metrics"), None, None);
    assert_eq!(code, 200, "{body}");
    let live = json(&body);
    assert_eq!(live["cgroups"][0]["cgroup"], g.name.as_str(), "{body}");
    assert_eq!(
        live["cgroups"][0]["metrics"]["limit"],
        (64 * MIB) as f64,
        "{body}"
    );
    let log = api.stop();
    assert!(
        log.contains("cgroup_oom_kill"),
        "the alert is logged: {log}"
    );
    kill(&mut hog);

    let out = run(
        memtrail().args(["status", "--db"]).arg(&db),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("of its 64.0 MiB limit"), "{text}");
    let out = run(
        memtrail()
            .args(["status", "--format", "json", "--db"])
            .arg(&db),
        Duration::from_secs(20),
    );
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["limits"][0]["target"], g.name.as_str());
    assert_eq!(v["limits"][0]["own_limit"], true);
    assert_eq!(v["limits"][0]["limit"], (64 * MIB) as f64);
    // The report's chart for the group says the same.
    let out = run(
        memtrail()
            .args(["report", "--since", "1h", "--format", "json", "--db"])
            .arg(&db),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let titles: Vec<String> = report["charts"]
        .as_array()
        .map(|c| c.iter().map(|c| c["title"].to_string()).collect())
        .unwrap_or_default();
    assert!(
        titles
            .iter()
            .any(|t| t.contains(&g.name) && t.contains("of its 64.0 MiB limit")),
        "{titles:?}"
    );
}

#[test]
fn unit_and_pid_resolve_to_their_groups_and_no_limit_is_said() {
    let Some(unit_group) = TestGroup::create("svc.service", None) else {
        return;
    };
    let Some(limited) = TestGroup::create("pidgroup", Some(256 * MIB)) else {
        return;
    };
    let mut hog = limited.spawn_hog(8);
    let pid = hog.id();
    // Wait for the shell to have moved itself in and become memhog.
    eventually(Duration::from_secs(10), "memhog in its group", || {
        let procs = std::fs::read_to_string(limited.dir.join("cgroup.procs")).ok()?;
        procs
            .split_whitespace()
            .any(|p| p == pid.to_string())
            .then_some(())
    });
    let unit = unit_group.name.trim_start_matches('/').to_string();
    let s = Scratch::new();
    let db = s.db();
    // --unit NAME finds NAME.service in the hierarchy (systemctl does not answer here, or knows
    // no such unit); --pid brings the process's limited group along.
    let unit_arg = unit.trim_end_matches(".service");
    let out = record_ok(
        &db,
        &[
            "--unit",
            unit_arg,
            "--pid",
            &pid.to_string(),
            "--duration",
            "1s",
            "--interval",
            "200ms",
        ],
    );
    kill(&mut hog);
    let conn = open(&db);
    assert_eq!(
        latest(&conn, &unit_group.name, "has_limit"),
        Some(0.0),
        "{}",
        stderr(&out)
    );
    let total: f64 = conn
        .query_row(
            "SELECT value FROM samples JOIN series_info USING (series_id)
             WHERE kind = 'system' AND metric = 'mem_total' ORDER BY ts_ms DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("mem_total");
    assert_eq!(latest(&conn, &unit_group.name, "limit"), Some(total));
    assert!(
        stderr(&out).contains("no memory limit of its own"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        latest(&conn, &limited.name, "limit"),
        Some((256 * MIB) as f64)
    );
    let out = run(
        memtrail().args(["status", "--db"]).arg(&db),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no memory limit of its own (max): measured against the host's"),
        "{text}"
    );
    assert!(text.contains("of its 256.0 MiB limit"), "{text}");
}

#[test]
fn missing_cgroup_and_unit_are_usage_errors() {
    if Hierarchy::detect().is_err() {
        // Then the error is that no hierarchy is readable: still a usage error, and said.
        let out = run(
            memtrail()
                .args(["record", "--cgroup", "/x", "--duration", "1s", "--db"])
                .arg(Scratch::new().db()),
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("no memory cgroup hierarchy is readable"));
        return;
    }
    let s = Scratch::new();
    for (flag, value, said) in [
        ("--cgroup", "/memtrail-no-such-group", "not found"),
        (
            "--unit",
            "memtrail-no-such-unit",
            "no cgroup found for unit memtrail-no-such-unit.service",
        ),
    ] {
        let out = run(
            memtrail()
                .args(["record", flag, value, "--duration", "1s", "--db"])
                .arg(s.db()),
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(said), "{}", stderr(&out));
    }
}

#[test]
fn a_removed_group_is_recorded_as_gone() {
    let Some(g) = TestGroup::create("removed", Some(32 * MIB)) else {
        return;
    };
    let s = Scratch::new();
    let db = s.db();
    let rec = spawn_recorder(
        &db,
        &["--cgroup", &g.name, "--no-system", "--interval", "200ms"],
    );
    eventually(Duration::from_secs(20), "the group's samples", || {
        let conn = rusqlite::Connection::open(&db).ok()?;
        latest(&conn, &g.name, "usage").map(|_| ())
    });
    // Removing the group (the test's own) ends the only target: the recorder stops by itself.
    drop(g);
    let out = wait_output(rec, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = open(&db);
    let gone: Option<i64> = conn
        .query_row(
            "SELECT gone_ms FROM targets WHERE kind = 'cgroup'",
            [],
            |r| r.get(0),
        )
        .expect("the group's target row");
    assert!(gone.is_some(), "{}", stderr(&out));
    assert_eq!(stop_reason(&conn), "targets gone");
}

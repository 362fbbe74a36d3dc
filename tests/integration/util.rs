//! Shared helpers for the integration tests: paths to the real binaries, a scratch directory per
//! test, running memtrail with a time limit, and reading what it recorded from the real database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub const MEMTRAIL: &str = env!("CARGO_BIN_EXE_memtrail");
pub const MEMHOG: &str = env!("CARGO_BIN_EXE_memhog");

pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn db(&self) -> PathBuf {
        self.path("memtrail.db")
    }
}

pub fn memtrail() -> Command {
    memtrail_from(std::path::Path::new(MEMTRAIL))
}

/// `memtrail()`, run from a copy of the binary at `bin` (a test that drops privileges cannot reach
/// a build directory inside a checkout only root may enter).
pub fn memtrail_from(bin: &std::path::Path) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("MEMTRAIL_DB")
        .env_remove("MEMTRAIL_CONFIG")
        .env_remove("MEMTRAIL_LOG")
        .env_remove("MEMTRAIL_TOKEN")
        // Tests run recorders side by side: each API on a port of its own.
        .env("MEMTRAIL_LISTEN", "127.0.0.1:0")
        // Tests wait for alerts in seconds: rules every second, not every 10 s (the default,
        // which `rules_are_evaluated_every_10_s_by_default` checks without this).
        .env("MEMTRAIL_EVALUATION_INTERVAL", "1s");
    c
}

/// Run to completion, killing it if it outlives `limit` (then the test fails).
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn memtrail");
    wait_output(child, limit)
}

/// Wait for `child` (killing it past `limit`, then the test fails), reading its piped output as
/// it comes: a child that writes more than a pipe holds is not left blocked on a full pipe.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    fn drain(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break (status, false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break (child.wait().expect("wait"), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        !timed_out,
        "timed out after {limit:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn open(db: &Path) -> Connection {
    Connection::open(db).expect("open db")
}

/// Poll until `f` returns Some, or fail after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Samples of one metric of the process targets called `name`: (ts_ms, value) in time order.
pub fn series(conn: &Connection, name: &str, metric: &str) -> Vec<(i64, f64)> {
    let mut stmt = conn
        .prepare(
            "SELECT ts_ms, value FROM samples
             JOIN series s ON s.id = samples.series_id JOIN targets t ON t.id = s.target_id
             WHERE t.name = ?1 AND s.metric = ?2 ORDER BY ts_ms",
        )
        .expect("prepare");
    stmt.query_map([name, metric], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

pub fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Send a signal to a child process.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a pid this test spawned.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill failed");
}

/// Start a recorder in the background with the given extra arguments.
pub fn spawn_recorder(db: &Path, args: &[&str]) -> Child {
    memtrail()
        .arg("record")
        .arg("--db")
        .arg(db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recorder")
}

/// Wait until the recorder has written at least `n` ticks (its current run's last_tick_ms is set).
pub fn wait_for_samples(db: &Path, n: i64) {
    eventually(Duration::from_secs(20), "samples", || {
        if !db.exists() {
            return None;
        }
        let conn = Connection::open(db).ok()?;
        let got: i64 = conn
            .query_row("SELECT count(DISTINCT ts_ms) FROM samples", [], |r| {
                r.get(0)
            })
            .ok()?;
        (got >= n).then_some(())
    })
}

/// Run `memtrail record --db DB ARGS...` to completion and check that it succeeded.
pub fn record_ok(db: &Path, args: &[&str]) -> Output {
    let out = record_run(db, args);
    assert!(
        out.status.success(),
        "memtrail record {args:?}: {}",
        stderr(&out)
    );
    out
}

/// Run `memtrail record --db DB ARGS...` to completion, however it ends.
pub fn record_run(db: &Path, args: &[&str]) -> Output {
    run(
        memtrail().arg("record").arg("--db").arg(db).args(args),
        Duration::from_secs(30),
    )
}

/// Start `cmd` with a file-size limit of `bytes` (RLIMIT_FSIZE): writes past it fail.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Why the (only or first) recorder run stopped.
pub fn stop_reason(conn: &Connection) -> String {
    conn.query_row(
        "SELECT stop_reason FROM runs ORDER BY id LIMIT 1",
        [],
        |r| r.get(0),
    )
    .expect("a run row")
}

/// A memhog that holds `mib` MiB until killed (or `hold` passes) and frees it on SIGUSR1 (and on
/// POST /cleanup when `http` is set; its URL is returned). Returns once the memory is resident.
pub fn spawn_hog(mib: u64, http: bool) -> (Child, Option<String>) {
    use std::io::{BufRead, BufReader};
    let mut cmd = hog_command(Path::new(MEMHOG), mib);
    cmd.arg("--free-on-sigusr1").stdout(Stdio::piped());
    if http {
        cmd.args(["--cleanup-port", "0"]);
    }
    let mut child = cmd.spawn().expect("memhog");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut url = None;
    if http {
        let first = lines.next().expect("a line").expect("utf8");
        url = first.strip_prefix("cleanup endpoint ").map(str::to_string);
    }
    // Keep reading (and discarding) so memhog never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    wait_resident(child.id(), mib);
    (child, url)
}

/// `program` (memhog or a copy of it) set to hold `mib` MiB for a minute.
pub fn hog_command(program: &Path, mib: u64) -> Command {
    let mut cmd = Command::new(program);
    cmd.args([
        "--steps",
        "1",
        "--step",
        &format!("{mib}MiB"),
        "--hold",
        "60s",
    ])
    .stdout(Stdio::null());
    cmd
}

/// Wait until the process holds at least `mib` MiB resident.
pub fn wait_resident(pid: u32, mib: u64) {
    eventually(Duration::from_secs(10), "the hog's allocation", || {
        (rss_of(pid)? >= mib * 1024 * 1024).then_some(())
    });
}

/// The tick count of a recorder's last line (`stopped ... ticks=N`).
pub fn logged_ticks(log: &str) -> i64 {
    log.rfind(" ticks=")
        .and_then(|i| log[i + 7..].split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no tick count in {log}"))
}

/// A process's RSS in bytes, from /proc.
pub fn rss_of(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A recorder with its HTTP API on an ephemeral loopback port.
pub struct ApiRecorder {
    pub child: Child,
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ApiRecorder {
    /// Start `memtrail record --db DB ARGS...` and wait until its API listens.
    pub fn start(
        db: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        limit_file_size: Option<u64>,
    ) -> ApiRecorder {
        use std::io::{BufRead, BufReader};
        let mut cmd = memtrail();
        cmd.arg("record")
            .arg("--db")
            .arg(db)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(bytes) = limit_file_size {
            self::limit_file_size(&mut cmd, bytes);
        }
        let mut child = cmd.spawn().expect("spawn recorder");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("API listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the API did not start: {}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
        };
        ApiRecorder { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn stop(mut self) -> String {
        // SAFETY: kill(2) on the child this helper started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// A real HTTP request: (status, body).
pub fn http(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    );
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match method {
        "GET" => {
            let mut req = agent.get(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        _ => {
            let mut req = match method {
                "POST" => agent.post(url),
                "PUT" => agent.put(url),
                _ => agent.delete(url).force_send_body(),
            };
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.content_type("application/json")
                .send(body.unwrap_or(""))
        }
    };
    let mut resp = result.expect("an HTTP answer");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

//! The store against real SQLite files: opening, migrations, writes, prunes, readers, audits.

use super::*;
use crate::model::{Kind, TargetSample, Value};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("m.db"), Duration::from_secs(1)).expect("open")
}

fn proc_key(pid: u32) -> TargetKey {
    TargetKey {
        kind: Kind::Process,
        pid: Some(pid),
        start_time_ms: Some(1000 + pid as i64),
        name: format!("p{pid}"),
    }
}

fn snapshot(ts_ms: i64, targets: &[TargetKey], metrics: usize) -> Snapshot {
    const NAMES: [&str; 4] = ["rss", "vms", "swap", "threads"];
    Snapshot {
        ts_ms,
        targets: targets
            .iter()
            .map(|k| TargetSample {
                key: k.clone(),
                cmdline: "x --y".into(),
                values: NAMES[..metrics]
                    .iter()
                    .map(|m| Value::new(m, Unit::Bytes, ts_ms as f64))
                    .collect(),
            })
            .collect(),
        gone: vec![],
    }
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[test]
fn every_named_query_prepares_on_a_fresh_schema() {
    let dir = tmp();
    let store = open(&dir);
    for (name, sql) in QUERIES {
        store
            .connection()
            .prepare(sql)
            .unwrap_or_else(|e| panic!("query {name} does not prepare: {e}"));
    }
}

#[test]
fn pragmas_are_set() {
    let dir = tmp();
    let store = open(&dir);
    let c = store.connection();
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let sync: i64 = c
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .expect("sync");
    assert_eq!(sync, 1, "NORMAL");
    let av: i64 = c
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .expect("av");
    assert_eq!(av, 2, "INCREMENTAL");
}

#[test]
fn reopening_applies_no_migration_twice_and_keeps_history() {
    let dir = tmp();
    {
        let mut s = open(&dir);
        s.write_tick(0, &snapshot(1, &[proc_key(1)], 2))
            .expect("tick");
    }
    let s = open(&dir);
    let c = s.connection();
    assert!(migration_count() >= 2);
    // build.rs's count is refinery's: the newest version, and one migration per version.
    let embedded = open::embedded::migrations::runner()
        .get_migrations()
        .clone();
    assert_eq!(embedded.len(), migration_count());
    assert_eq!(
        embedded.iter().map(|m| m.version() as usize).max(),
        Some(migration_count())
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM refinery_schema_history") as usize,
        migration_count()
    );
    assert_eq!(count(c, "SELECT count(*) FROM samples"), 2);
}

/// Every schema object's SQL as SQLite keeps it, tables first, then indexes, views and
/// triggers, each group by name: the same text for the same schema however it was built.
fn schema_dump(conn: &Connection) -> String {
    let mut stmt = conn
        .prepare(
            "SELECT sql FROM sqlite_schema
             WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2
                      ELSE 3 END, name",
        )
        .expect("prepare dump");
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("dump")
        .map(|r| r.expect("row") + ";\n\n")
        .collect::<String>();
    rows.trim_end().to_string() + "\n"
}

/// A database built by refinery, migration by migration.
fn migrated_by_refinery(path: &Path) -> Connection {
    let mut c = Connection::open(path).expect("open");
    c.pragma_update(None, "foreign_keys", false).expect("fk");
    open::embedded::migrations::runner()
        .run(&mut c)
        .expect("migrate");
    c
}

/// A new database gets refinery's history of every migration, so a later build's new
/// migration applies on top of it.
#[test]
fn a_new_database_is_migrated_by_refinery() {
    let dir = tmp();
    let migrated = migrated_by_refinery(&dir.path().join("migrated.db"));
    let path = dir.path().join("m.db");
    drop(Store::open(&path, Duration::from_secs(1)).expect("create"));
    let mut created = Connection::open(&path).expect("reopen");
    assert_eq!(schema_dump(&created), schema_dump(&migrated));
    let report = open::embedded::migrations::runner()
        .run(&mut created)
        .expect("refinery accepts its own history");
    assert!(report.applied_migrations().is_empty());
    assert_eq!(applied_version(&created) as usize, migration_count());
}

/// Version 4 rebuilds targets and rules: history written under version 3 survives it (foreign
/// keys are on in this build, so a careless rebuild would cascade into series and samples).
#[test]
fn upgrade_to_v4_keeps_history_and_accepts_cgroups() {
    let dir = tmp();
    let path = dir.path().join("old.db");
    {
        let mut c = Connection::open(&path).expect("open");
        c.pragma_update(None, "foreign_keys", true).expect("fk");
        open::embedded::migrations::runner()
            .set_target(refinery::Target::Version(3))
            .run(&mut c)
            .expect("migrate to v3");
        c.execute_batch(
            "INSERT INTO targets (id, kind, pid, start_time_ms, name, first_seen_ms, last_seen_ms)
               VALUES (1, 'process', 7, 1000, 'app', 0, 10);
             INSERT INTO series (id, target_id, metric, unit) VALUES (1, 1, 'rss', 'bytes');
             INSERT INTO samples VALUES (1, 0, 1.0), (1, 10, 2.0);
             INSERT INTO rules VALUES ('r', 'rss', 'process', NULL, NULL, 'greater_than', 1, 0,
               0, 0, 0, NULL, 0, NULL, 'warning', '[\"log\"]');",
        )
        .expect("v3 history");
        let err = c.execute(
            "INSERT INTO targets (kind, name, first_seen_ms, last_seen_ms) VALUES ('cgroup', '/a', 0, 0)",
            [],
        );
        assert!(err.is_err(), "v3 refuses cgroup targets");
    }
    let s = Store::open(&path, Duration::from_secs(1)).expect("upgrade");
    let c = s.connection();
    assert_eq!(count(c, "SELECT count(*) FROM samples"), 2);
    assert_eq!(
        count(c, "SELECT count(*) FROM series_info WHERE target = 'app'"),
        1
    );
    assert_eq!(count(c, "SELECT count(*) FROM rules"), 1);
    assert_eq!(
        count(c, "PRAGMA foreign_keys"),
        1,
        "restored after migrating"
    );
    c.execute(
        "INSERT INTO targets (kind, name, first_seen_ms, last_seen_ms) VALUES ('cgroup', '/a', 0, 0)",
        [],
    )
    .expect("v4 takes cgroup targets");
    let mut check = c.prepare("PRAGMA foreign_key_check").expect("prepare");
    assert!(
        check
            .query([])
            .expect("check")
            .next()
            .expect("row")
            .is_none()
    );
}

#[test]
fn tick_rows_and_identity() {
    let dir = tmp();
    let mut s = open(&dir);
    let sys = TargetKey::system();
    let n = s
        .write_tick(0, &snapshot(10, &[proc_key(7), sys.clone()], 3))
        .expect("tick");
    assert_eq!(n, 6);
    // Same pid, different start time: a new target, not a continuation.
    let mut reused = proc_key(7);
    reused.start_time_ms = Some(99_999);
    s.write_tick(0, &snapshot(20, &[proc_key(7), reused, sys], 3))
        .expect("tick");
    let c = s.connection();
    assert_eq!(count(c, "SELECT count(*) FROM targets"), 3);
    assert_eq!(
        count(c, "SELECT count(*) FROM targets WHERE kind = 'system'"),
        1
    );
    assert_eq!(count(c, "SELECT count(*) FROM series"), 9);
    assert_eq!(count(c, "SELECT count(*) FROM samples"), 15);
}

#[test]
fn non_finite_values_are_not_stored() {
    let dir = tmp();
    let mut s = open(&dir);
    let mut snap = snapshot(1, &[proc_key(1)], 1);
    snap.targets[0].values[0].value = f64::NAN;
    assert_eq!(s.write_tick(0, &snap).expect("tick"), 0);
}

#[test]
fn gone_targets_are_marked_once() {
    let dir = tmp();
    let mut s = open(&dir);
    s.write_tick(0, &snapshot(1, &[proc_key(3)], 1))
        .expect("tick");
    let mut snap = snapshot(2, &[], 1);
    snap.gone = vec![proc_key(3)];
    s.write_tick(0, &snap).expect("tick");
    snap.ts_ms = 3;
    s.write_tick(0, &snap).expect("tick");
    assert_eq!(count(s.connection(), "SELECT gone_ms FROM targets"), 2);
}

#[test]
fn prune_is_bounded_and_removes_only_old_rows() {
    let dir = tmp();
    let mut s = open(&dir);
    let keys = [proc_key(1), proc_key(2)];
    for ts in 0..100 {
        s.write_tick(0, &snapshot(ts, &keys, 2)).expect("tick");
    }
    // 4 series x 60 rows are older than 60; a budget of 100 removes exactly 100.
    assert_eq!(s.prune(60, 100).expect("prune").samples, 100);
    let c = s.connection();
    assert_eq!(count(c, "SELECT count(*) FROM samples"), 400 - 100);
    // Oldest first within a series.
    assert_eq!(
        count(c, "SELECT count(*) FROM samples WHERE ts_ms >= 60"),
        4 * 40,
        "nothing inside the window is touched"
    );
    while s.prune(60, 100).expect("prune").samples > 0 {}
    let c = s.connection();
    assert_eq!(count(c, "SELECT count(*) FROM samples"), 4 * 40);
    assert_eq!(count(c, "SELECT min(ts_ms) FROM samples"), 60);
    // Targets stay while they were seen after the cutoff.
    assert_eq!(count(c, "SELECT count(*) FROM targets"), 2);
}

#[test]
fn targets_with_no_samples_left_are_dropped() {
    let dir = tmp();
    let mut s = open(&dir);
    s.write_tick(0, &snapshot(1, &[proc_key(1)], 2))
        .expect("tick");
    s.write_tick(0, &snapshot(500_000, &[proc_key(2)], 2))
        .expect("tick");
    // Seen at 1 ms: gone once even a minute-stale `last_seen_ms` is before the cutoff.
    let p = s.prune(60_001, 1000).expect("prune");
    assert_eq!((p.samples, p.targets), (2, 0));
    let p = s.prune(100_000, 1000).expect("prune");
    assert_eq!((p.samples, p.targets), (0, 1));
    // Writing again for a dropped target recreates it (caches were cleared).
    s.write_tick(0, &snapshot(600_000, &[proc_key(1)], 2))
        .expect("tick");
    assert_eq!(count(s.connection(), "SELECT count(*) FROM targets"), 2);
}

#[test]
fn file_stops_growing_under_retention() {
    // A week of 10 series at a 1-minute tick with a 24 h retention: the page count levels
    // off once the window is full, because pruned pages are reused.
    let dir = tmp();
    let mut s = open(&dir);
    let keys: Vec<_> = (0..5).map(proc_key).collect();
    let minute = 60_000;
    let day = 1440;
    let mut pages_after_two_days = 0;
    for tick in 0..(7 * day) {
        let ts = tick * minute;
        s.write_tick(0, &snapshot(ts, &keys, 2)).expect("tick");
        s.prune(ts - day * minute, 5_000).expect("prune");
        if tick == 2 * day {
            pages_after_two_days = s.page_stats().expect("pages").0;
        }
    }
    let (pages, _) = s.page_stats().expect("pages");
    assert!(
        pages as f64 <= pages_after_two_days as f64 * 1.1,
        "grew from {pages_after_two_days} to {pages} pages"
    );
    assert_eq!(
        count(s.connection(), "SELECT count(*) FROM samples"),
        10 * (day + 1)
    );
}

/// At 10 Hz a tick rewrites `runs.last_tick_ms` at most once a second and each target's
/// `last_seen_ms` at most once a minute; the end of the run writes the true last tick.
#[test]
fn bookkeeping_rows_are_rewritten_sparingly() {
    let dir = tmp();
    let mut s = open(&dir);
    let run = s
        .begin_run(&RunInfo {
            started_ms: 0,
            interval_ms: 100,
            retention_ms: 3_600_000,
            host: "h".into(),
            settings_json: "{}".into(),
        })
        .expect("run");
    let one = |s: &Store, sql: &str| count(s.connection(), sql);
    for ts in (0..=1_500).step_by(100) {
        s.write_tick(run, &snapshot(ts, &[proc_key(1)], 2))
            .expect("tick");
    }
    // Written at 0 and 1000, not at every tick since.
    assert_eq!(one(&s, "SELECT last_tick_ms FROM runs"), 1_000);
    assert_eq!(one(&s, "SELECT last_seen_ms FROM targets"), 0);
    assert_eq!(
        one(&s, "SELECT count(*) FROM samples"),
        32,
        "every sample is written"
    );
    s.write_tick(run, &snapshot(60_000, &[proc_key(1)], 2))
        .expect("tick");
    assert_eq!(one(&s, "SELECT last_seen_ms FROM targets"), 60_000);
    s.write_tick(run, &snapshot(60_100, &[proc_key(1)], 2))
        .expect("tick");
    s.end_run(run, 60_150, "signal").expect("end");
    assert_eq!(one(&s, "SELECT last_tick_ms FROM runs"), 60_100);
}

#[test]
fn a_retention_shorter_than_the_seen_interval_never_fails_a_tick() {
    // Issue 20.1: `--retention 10s --interval 100ms` failed a tick with `FOREIGN KEY
    // constraint failed`: `last_seen_ms` is written once a minute, so the prune took the live
    // target for gone, deleted its sparse (PSS-like) series, and the writer's cached id for it
    // pointed at nothing.
    let dir = tmp();
    let mut s = open(&dir);
    let run = s.begin_run(&RunInfo {
        started_ms: 0,
        interval_ms: 100,
        retention_ms: 10_000,
        host: "h".into(),
        settings_json: "{}".into(),
    });
    let run = run.expect("run");
    for i in 0..1_350i64 {
        let ts = i * 100;
        let mut snap = snapshot(ts, &[proc_key(1)], 1);
        if i % 300 == 0 {
            snap.targets[0]
                .values
                .push(Value::new("pss", Unit::Bytes, ts as f64));
        }
        s.write_tick(run, &snap)
            .unwrap_or_else(|e| panic!("tick at {ts} ms: {e}"));
        s.prune(ts - 10_000, 10_000)
            .unwrap_or_else(|e| panic!("prune at {ts} ms: {e}"));
    }
    let c = s.connection();
    assert_eq!(count(c, "SELECT count(*) FROM targets"), 1);
    // The sparse series' last sample (t = 120 s) is inside the retention at the end.
    assert_eq!(
        count(c, "SELECT count(*) FROM series WHERE metric = 'pss'"),
        1
    );
}

#[test]
fn crashed_run_is_closed_at_its_last_tick() {
    let dir = tmp();
    let info = RunInfo {
        started_ms: 100,
        interval_ms: 1000,
        retention_ms: 10_000,
        host: "h".into(),
        settings_json: "{}".into(),
    };
    {
        let mut s = open(&dir);
        let run = s.begin_run(&info).expect("run");
        s.write_tick(run, &snapshot(150, &[proc_key(1)], 1))
            .expect("tick");
        // No end_run: the recorder "crashed".
    }
    let mut s = open(&dir);
    let second = s.begin_run(&info).expect("run");
    let c = s.connection();
    let (stopped, reason): (i64, String) = c
        .query_row(
            "SELECT stopped_ms, stop_reason FROM runs WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("first run");
    assert_eq!((stopped, reason.as_str()), (150, "crashed"));
    assert_eq!(second, 2);
}

#[test]
fn second_writer_is_refused_with_the_holder_pid() {
    let dir = tmp();
    let db = dir.path().join("m.db");
    let _first = RecorderLock::acquire(&db).expect("first lock");
    let err = RecorderLock::acquire(&db)
        .expect_err("second lock")
        .to_string();
    assert!(err.contains("already recording"), "{err}");
    assert!(err.contains(&std::process::id().to_string()), "{err}");
}

#[test]
fn a_file_that_is_not_sqlite_is_named() {
    let dir = tmp();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "this is not a database, just some text that is long enough ".repeat(20),
    )
    .expect("write");
    let err = Store::open(&path, Duration::from_secs(1))
        .err()
        .expect("not sqlite");
    assert!(matches!(err, StoreError::NotDatabase { .. }), "{err}");
    let err = open_reader(&path, Duration::from_secs(1)).expect_err("not sqlite");
    assert!(matches!(err, StoreError::NotDatabase { .. }), "{err}");
}

#[test]
fn missing_directory_is_named() {
    let dir = tmp();
    let path = dir.path().join("no/such/dir/m.db");
    let err = Store::open(&path, Duration::from_secs(1))
        .err()
        .expect("no dir")
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn reader_cannot_write() {
    let dir = tmp();
    let path = dir.path().join("m.db");
    drop(Store::open(&path, Duration::from_secs(1)).expect("create"));
    let r = open_reader(&path, Duration::from_secs(1)).expect("reader");
    let err = r.execute("DELETE FROM samples", []).expect_err("read-only");
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::ReadOnly), "{err}");
}

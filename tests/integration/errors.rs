//! Bad input: each gives a one-line error naming the problem and a meaningful exit code
//! (2 for usage and config errors, 1 for runtime failures such as an unusable database).

use std::time::Duration;

use crate::util::*;

fn record(args: &[&str]) -> std::process::Output {
    run(memtrail().arg("record").args(args), Duration::from_secs(20))
}

fn error_line(out: &std::process::Output) -> String {
    let err = stderr(out);
    err.lines()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| panic!("no error line in: {err}"))
        .to_string()
}

#[test]
fn a_pid_that_does_not_exist() {
    let s = Scratch::new();
    let out = record(&["--pid", "4000000", "--db", s.db().to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let line = error_line(&out);
    assert!(line.contains("no process with pid 4000000"), "{line}");
    assert!(!s.db().exists(), "nothing is created for a failed start");
}

#[test]
fn bad_interval_and_retention_strings() {
    for (args, needle) in [
        (vec!["--interval", "5x"], "unknown unit 'x'"),
        (vec!["--interval", "fast"], "expected a number"),
        (vec!["--retention", "12"], "missing unit"),
        (vec!["--interval", "10ms"], "below the minimum of 100ms"),
        (
            vec!["--interval", "1m", "--retention", "30s"],
            "must be longer than the interval",
        ),
    ] {
        let s = Scratch::new();
        let mut all = args.clone();
        let db = s.db();
        all.extend(["--db", db.to_str().expect("utf8")]);
        let out = record(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_db_in_a_directory_that_does_not_exist() {
    let s = Scratch::new();
    let db = s.path("missing/dir/m.db");
    let out = record(&[
        "--self",
        "--duration",
        "1s",
        "--db",
        db.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(line.contains("does not exist"), "{line}");
}

#[test]
fn a_db_path_that_cannot_be_written() {
    // /proc refuses new files even to root.
    let out = record(&["--self", "--duration", "1s", "--db", "/proc/memtrail.db"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(line.contains("/proc/memtrail.db"), "{line}");
}

#[test]
fn a_db_that_is_not_sqlite() {
    let s = Scratch::new();
    let db = s.path("notes.txt");
    std::fs::write(&db, "shopping list: milk, eggs, more RAM\n".repeat(50)).expect("write");
    let out = record(&[
        "--self",
        "--duration",
        "1s",
        "--db",
        db.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(line.contains("is not a SQLite database"), "{line}");
    let text = std::fs::read_to_string(&db).expect("read");
    assert!(
        text.starts_with("shopping list"),
        "the file is left as it was"
    );
}

#[test]
fn status_on_a_missing_database() {
    let s = Scratch::new();
    let out = run(
        memtrail().args(["status", "--db"]).arg(s.db()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_line(&out).contains("no database at"),
        "{}",
        stderr(&out)
    );
    assert!(!s.db().exists(), "status never creates a database");
}

//! Events (#25 item 2): `memtrail annotate` and `POST /internal/memory/event` write them, a launched
//! command's start and exit are written by the recorder, and `query events` and the report show
//! them beside the alerts, cleanups and restarts the other tables hold.

use std::time::Duration;

use crate::util::*;

/// A recording of `-- memhog` has its command's start and exit as events, an annotation written
/// while it records and one written after lands beside them, and the report lists and marks them.
#[test]
fn annotations_and_a_commands_life_are_events_in_queries_and_reports() {
    let s = Scratch::new();
    let db = s.db();
    let db_arg = db.to_str().expect("utf-8 path");
    let rec = spawn_recorder(
        &db,
        &[
            "--interval",
            "200ms",
            "--no-api",
            "--",
            MEMHOG,
            "--step",
            "8MiB",
            "--steps",
            "3",
            "--every",
            "300ms",
            "--hold",
            "2s",
            "--exit-code",
            "3",
        ],
    );
    wait_for_samples(&db, 3);
    // While the recorder writes: the annotation waits its turn and lands.
    let out = run(
        memtrail().args([
            "annotate",
            "deploy v1.4",
            "--target",
            "memhog",
            "--db",
            db_arg,
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("\"deploy v1.4\" (memhog)"), "{said}");
    let done = wait_output(rec, Duration::from_secs(30));
    assert_eq!(
        done.status.code(),
        Some(3),
        "the command's own exit code: {}",
        stderr(&done)
    );

    let out = run(
        memtrail().args([
            "annotate",
            "load test",
            "--at",
            "-1s",
            "--db",
            db_arg,
            "--format",
            "json",
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&String::from_utf8_lossy(&out.stdout))["target"],
        serde_json::Value::Null
    );

    let out = run(
        memtrail().args(["query", "events", "--db", db_arg, "--format", "json"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(&String::from_utf8_lossy(&out.stdout));
    let kinds: Vec<(String, String)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or("").to_string(),
                r["label"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let started = kinds.iter().position(|(k, _)| k == "command_started");
    let annotated = kinds.iter().position(|(_, l)| l == "deploy v1.4");
    let exited = kinds.iter().position(|(k, _)| k == "command_exited");
    assert!(
        started < annotated && annotated < exited && started.is_some(),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|(_, l)| l == "exited with code 3"),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, l)| k == "command_started" && l.contains("memhog --step 8MiB")),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, l)| k == "annotation" && l == "load test"),
        "{kinds:?}"
    );
    let conn = open(&db);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM events WHERE kind LIKE 'command_%' AND target = 'memhog' AND pid IS NOT NULL"
        ),
        2
    );

    let md = s.path("r.md");
    let out = run(
        memtrail().args(["report", "--db", db_arg, "-o", md.to_str().expect("path")]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&md).expect("report");
    let section = text.split("## Events").nth(1).expect("an Events section");
    assert!(
        section.contains("| annotation | memhog | deploy v1.4 |"),
        "{section}"
    );
    assert!(
        section.contains("| annotation | the host | load test |"),
        "{section}"
    );
    let html = s.path("r.html");
    let out = run(
        memtrail().args(["report", "--db", db_arg, "-o", html.to_str().expect("path")]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(
        page.contains("class=\"marker event\"") && page.contains(">deploy v1.4<title>"),
        "the memhog chart marks the annotation"
    );
}

/// Bad annotations are refused with a clear error (exit 2) and write nothing; a missing database
/// is not created.
#[test]
fn bad_annotations_are_refused_and_write_nothing() {
    let s = Scratch::new();
    let db = s.db();
    let db_arg = db.to_str().expect("utf-8 path");
    let out = run(
        memtrail().args(["annotate", "deploy", "--db", db_arg]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no database at"), "{}", stderr(&out));
    assert!(!db.exists(), "an annotation never creates a database");
    record_ok(
        &db,
        &[
            "--self",
            "--duration",
            "400ms",
            "--interval",
            "100ms",
            "--no-api",
        ],
    );
    let long = "x".repeat(201);
    for (args, says) in [
        (vec!["annotate", "", "--db", db_arg], "label"),
        (vec!["annotate", &long, "--db", db_arg], "label"),
        (vec!["annotate", "a\nb", "--db", db_arg], "control"),
        (
            vec!["annotate", "x", "--at", "yesterday-ish", "--db", db_arg],
            "not a time",
        ),
    ] {
        let out = run(memtrail().args(&args), Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(count(&open(&db), "SELECT count(*) FROM events"), 0);
}

/// `POST /internal/memory/event`: the token before the body, a checked body, 201 with the id, and
/// the event in the database at once.
#[test]
fn events_are_posted_with_the_token_and_written_at_once() {
    let s = Scratch::new();
    let api = ApiRecorder::start(
        &s.db(),
        &["--self", "--interval", "200ms"],
        &[("MEMTRAIL_TOKEN", "s3cret")],
        None,
    );
    wait_for_samples(&s.db(), 2);
    let url = api.url("/internal/memory/event");
    let body = Some(r#"{"label": "deploy v2", "pid": 0}"#);
    assert_eq!(http("POST", &url, body, None).0, 401);
    for bad in [
        "not json",
        r#"{"label": ""}"#,
        r#"{"label": 3}"#,
        r#"{"label": "x", "colour": "red"}"#,
        r#"{"label": "x", "ts_ms": -5}"#,
        r#"{"label": "x", "pid": "twelve"}"#,
    ] {
        let (code, answer) = http("POST", &url, Some(bad), Some("s3cret"));
        assert_eq!(code, 400, "{bad}: {answer}");
        assert!(json(&answer)["error"].is_string(), "{answer}");
    }
    let me = api.child.id().to_string();
    let body = format!(r#"{{"label": "deploy v2", "pid": {me}}}"#);
    let (code, answer) = http("POST", &url, Some(&body), Some("s3cret"));
    assert_eq!(code, 201, "{answer}");
    let v = json(&answer);
    assert_eq!(v["target"], "memtrail", "the pid's name: {answer}");
    let id = v["id"].as_i64().expect("id");
    let conn = open(&s.db());
    let (label, kind): (String, String) = conn
        .query_row("SELECT label, kind FROM events WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the event is written before the answer");
    assert_eq!((label.as_str(), kind.as_str()), ("deploy v2", "annotation"));
    api.stop();
}

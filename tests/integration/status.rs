//! `memtrail status` reads the database while a recorder writes to it.

use std::time::Duration;

use crate::util::*;

#[test]
fn status_while_recording_and_after() {
    let s = Scratch::new();
    let db = s.db();
    let mut recorder = spawn_recorder(&db, &["--self", "--interval", "100ms"]);
    wait_for_samples(&db, 5);
    let out = run(
        memtrail()
            .args(["status", "--format", "json", "--db"])
            .arg(&db),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["recorder"]["running"], true, "{json}");
    assert_eq!(json["recorder"]["pid"], recorder.id());
    let series = json["series"].as_array().expect("series");
    let rss = series
        .iter()
        .find(|r| r["metric"] == "rss" && r["pid"] == recorder.id())
        .expect("rss of the recorder itself");
    assert!(rss["samples"].as_i64().expect("count") >= 5);
    assert!(rss["latest"].as_f64().expect("latest") > 1e6);
    assert!(rss["window_min"].as_f64().expect("min") <= rss["window_max"].as_f64().expect("max"));
    assert!(series.iter().any(|r| r["metric"] == "mem_used_percent"));

    let table = run(
        memtrail().args(["status", "--db"]).arg(&db),
        Duration::from_secs(20),
    );
    let text = String::from_utf8(table.stdout).expect("utf8");
    assert!(text.contains("recorder: running"), "{text}");
    assert!(
        text.contains(&format!("process memtrail (pid {})", recorder.id())),
        "{text}"
    );

    signal(&recorder, libc::SIGINT);
    let _ = recorder.wait();
    let out = run(
        memtrail().args(["status", "--db"]).arg(&db),
        Duration::from_secs(20),
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        text.contains("recorder: stopped") && text.contains("(signal)"),
        "{text}"
    );
}

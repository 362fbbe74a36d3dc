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

/// `memtrail status`, the API's status document and the report read one history the same way:
/// the same verdict, slope and words for a leaking series, and the same for a flat one.
#[test]
fn status_api_and_report_agree_on_each_verdict() {
    const MIB: f64 = 1024.0 * 1024.0;
    let s = Scratch::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // The last 150 minutes every 10 s (the trend judges a target older than its hour once the
    // hour is recorded, and its rise once an hour before that is): `leaky` grows 20 MiB/h from
    // 100 MiB, all of it anonymous memory over 30 MiB of flat file-backed pages; `steady` stays
    // at 50 MiB.
    let mut csv = String::from("timestamp,series,metric,value\n");
    for i in 0..=900 {
        let ts = now - 9_000_000 + i * 10_000;
        let hours = i as f64 / 360.0;
        csv.push_str(&format!(
            "{ts},leaky,rss,{}\n{ts},leaky,rss_anon,{}\n{ts},leaky,rss_file,{}\n",
            (100.0 + 20.0 * hours) * MIB,
            (70.0 + 20.0 * hours) * MIB,
            30.0 * MIB
        ));
        // What the application pushes for itself: one chat session per 1 MiB of the growth.
        if i % 3 == 0 {
            csv.push_str(&format!("{ts},leaky,chat_sessions,{}\n", 20.0 * hours));
        }
        // The mapping groups, on smaps' slower cadence (every 5 minutes): the heap grows.
        if i % 30 == 0 {
            csv.push_str(&format!(
                "{ts},leaky,map_rss:[heap],{}\n{ts},leaky,map_rss:/usr/lib/libc.so.6,{}\n",
                (60.0 + 20.0 * hours) * MIB,
                2.0 * MIB
            ));
        }
        csv.push_str(&format!(
            "{ts},steady,rss,{}\n",
            50.0 * MIB + (i % 3) as f64
        ));
    }
    std::fs::write(s.path("history.csv"), csv).expect("write");
    let out = run(
        memtrail()
            .args(["import", "--db"])
            .arg(s.db())
            .arg(s.path("history.csv")),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A recorder beside it, so every reader knows the host's memory (the limit of a process).
    let api = ApiRecorder::start(&s.db(), &["--self", "--interval", "200ms"], &[], None);
    eventually(Duration::from_secs(20), "the host's memory", || {
        let n = count(
            &open(&s.db()),
            "SELECT count(*) FROM series_info WHERE kind = 'system' AND metric = 'mem_total'",
        );
        (n > 0).then_some(())
    });

    let out = run(
        memtrail()
            .args(["status", "--format", "json", "--db"])
            .arg(s.db()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cli = json(&String::from_utf8_lossy(&out.stdout));
    // To a file: the JSON is larger than a pipe holds, and `run` reads it after the exit.
    let out = run(
        memtrail()
            .args(["report", "--since", "3h", "-o"])
            .arg(s.path("report.json"))
            .arg("--db")
            .arg(s.db()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&std::fs::read_to_string(s.path("report.json")).expect("report"));
    let table = run(
        memtrail().args(["status", "--db"]).arg(s.db()),
        Duration::from_secs(20),
    );
    let table = String::from_utf8_lossy(&table.stdout).to_string();

    let (code, body) = http("GET", &api.url("/internal/memory/status"), None, None);
    api.stop();
    assert_eq!(code, 200, "{body}");
    let api = json(&body);

    let find = |doc: &serde_json::Value, target: &str| {
        doc["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|r| r["target"] == target && r["metric"] == "rss")
            .cloned()
            .unwrap_or_else(|| panic!("no rss of {target} in {doc}"))
    };
    for (target, verdict) in [("leaky", "increasing"), ("steady", "stable")] {
        let (c, a, r) = (
            find(&cli, target),
            find(&api, target),
            find(&report, target),
        );
        assert_eq!(c["trend"]["classification"], verdict, "{c}");
        assert_eq!(a["trend"]["classification"], verdict, "{a}");
        assert_eq!(r["trend"]["classification"], verdict, "{r}");
        assert_eq!(
            c["trend"]["pct_per_hour"], a["trend"]["pct_per_hour"],
            "{c}\n{a}"
        );
        let words = c["verdict"].as_str().expect("words");
        assert_eq!(a["verdict"], words);
        if verdict == "increasing" {
            assert!(words.starts_with("leak suspected: +1"), "{words}");
            let pct = |v: &serde_json::Value| v["trend"]["pct_per_hour"].as_f64().expect("pct");
            assert!((pct(&c) - pct(&r)).abs() < 2.0, "{c}\n{r}");
            assert!(table.contains(&format!("leaky: rss {words}")), "{table}");
            // Which kind of memory grows: the anonymous part, all of the growth.
            let diagnosis = c["diagnosis"]["words"].as_str().expect("a diagnosis");
            assert_eq!(a["diagnosis"]["words"], diagnosis);
            assert!(
                diagnosis.starts_with("grows in rss_anon (anonymous memory"),
                "{diagnosis}"
            );
            assert!(
                diagnosis.contains(" MiB/h, 100 % of the growth; in the mapping [heap]: +"),
                "{diagnosis}"
            );
            assert!(
                diagnosis.contains(
                    "; tracks chat_sessions: 1.0 MiB per unit, R\u{b2} 1.00, chat_sessions +20/h"
                ),
                "{diagnosis}"
            );
            // The heap's rate from samples 5 minutes apart: near the 20 MiB/h it grows.
            let heap = c["diagnosis"]["parts"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["part"] == "map_rss:[heap]"))
                .and_then(|p| p["change_per_hour"].as_f64())
                .expect("the heap's part");
            assert!((heap / MIB - 20.0).abs() < 3.0, "{heap}");
            let share = c["diagnosis"]["parts"][0]["share_pct"]
                .as_f64()
                .expect("share");
            assert!((share - 100.0).abs() < 1.0, "{c}");
            assert_eq!(c["diagnosis"]["parts"][1]["part"], "rss_file", "{c}");
            assert!(table.contains(&format!("\n  {diagnosis}\n")), "{table}");
            // The report, over its own range, finds the same part growing.
            let in_report = r["diagnosis"]["words"]
                .as_str()
                .expect("the report's diagnosis");
            assert!(in_report.starts_with("grows in rss_anon ("), "{r}");
        } else {
            assert_eq!(a["verdict"], words);
            assert!(c["diagnosis"].is_null(), "{c}");
            assert!(r["diagnosis"].is_null(), "{r}");
        }
    }
    assert!(table.contains("increasing +1"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("rss") && l.ends_with("stable")),
        "{table}"
    );
}

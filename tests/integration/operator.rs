//! Operator experience: the example configs load, completions and man pages generate, the systemd
//! unit verifies, logs come as JSON on request, and the database follows $STATE_DIRECTORY.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rule names a config file declares in its `[[rules]]` tables.
fn rule_names(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("read example");
    let value: toml::Value = toml::from_str(&text).expect("example is TOML");
    value
        .get("rules")
        .and_then(|r| r.as_array())
        .map(|rules| {
            rules
                .iter()
                .map(|r| r["name"].as_str().expect("rule name").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_example_config_loads_with_its_rules() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 4, "examples: {examples:?}");
    for file in &examples {
        let out = run(
            memtrail().args(["config", "check"]).arg(file),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        let shown = stdout(&out);
        assert!(shown.contains(": ok"), "{shown}");
        // The effective rules: the defaults and every rule the file declares.
        for name in ["process_rss_high", "system_memory_high"]
            .into_iter()
            .map(String::from)
            .chain(rule_names(file))
        {
            assert!(
                shown.contains(&format!("rule {name} = ")),
                "{}: rule {name} missing from\n{shown}",
                file.display()
            );
        }
    }
}

#[test]
fn completions_generate_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef memtrail"),
        ("fish", "complete -c memtrail"),
    ] {
        let out = run(
            memtrail().args(["completions", shell]),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for word in [
            "record",
            "report",
            "interval",
            "log-format",
            "smaps-max-rss",
        ] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    // The bash script is valid bash.
    let s = Scratch::new();
    let out = run(
        memtrail().args(["completions", "bash"]),
        Duration::from_secs(20),
    );
    let script = s.path("memtrail.bash");
    std::fs::write(&script, &out.stdout).expect("write");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(check.status.success(), "{}", stderr(&check));
    // An unknown shell is a usage error.
    let out = run(
        memtrail().args(["completions", "tcsh"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_generate_and_render() {
    let out = run(memtrail().arg("man"), Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH memtrail 1"), "{page}");
    assert!(page.contains("Examples"), "the examples reach the man page");

    let s = Scratch::new();
    let dir = s.path("man1");
    let out = run(
        memtrail().args(["man", "--dir"]).arg(&dir),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for cmd in ["", "-record", "-report", "-config-check", "-query"] {
        let file = dir.join(format!("memtrail{cmd}.1"));
        assert!(file.exists(), "{} missing", file.display());
    }
    // man(1) renders the record page (when man is installed).
    if Command::new("man").arg("--version").output().is_ok() {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(dir.join("memtrail-record.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man");
        assert!(rendered.status.success(), "{}", stderr(&rendered));
        let text = stdout(&rendered);
        assert!(text.contains("--interval"), "{text}");
    } else {
        panic!(
            "man(1) is not installed to render the pages: apt-get install man-db (bash .ci/test installs it)"
        );
    }
}

/// `systemd-analyze verify` on contrib/memtrail.service, with ExecStart pointing at the binary
/// under test and MANPATH at freshly generated man pages (the unit's Documentation=man:memtrail(1)
/// is checked too). Any warning fails the test: verify exits 0 on unknown keys.
#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!(
            "systemd-analyze is not installed to verify the unit: apt-get install systemd \
             (bash .ci/test installs it)"
        );
    }
    let s = Scratch::new();
    let unit = std::fs::read_to_string(repo().join("contrib/memtrail.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/memtrail record"));
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=memtrail",
        "Restart=on-failure",
        "MemoryMax=",
    ] {
        assert!(unit.contains(hardening), "unit lacks {hardening}");
    }
    let unit = unit.replace("/usr/local/bin/memtrail", MEMTRAIL);
    let path = s.path("memtrail.service");
    std::fs::write(&path, unit).expect("write unit");
    let man = s.path("man");
    let out = run(
        memtrail().args(["man", "--dir"]).arg(man.join("man1")),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", &man)
        .output()
        .expect("systemd-analyze");
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let s = Scratch::new();
    let out = run(
        memtrail()
            .args([
                "--log-format",
                "json",
                "record",
                "--self",
                "--duration",
                "1s",
            ])
            .arg("--db")
            .arg(s.db()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty(), "the recorder logs its start");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    // Errors too, with the same exit code as in text mode.
    let out = run(
        memtrail()
            .args(["--log-format", "json", "status", "--db"])
            .arg(s.path("missing/none.db")),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let v: serde_json::Value = serde_json::from_str(err.trim()).expect("one JSON error line");
    assert_eq!(v["level"], "ERROR", "{err}");
}

#[test]
fn database_defaults_to_systemd_state_directory() {
    let s = Scratch::new();
    let state = s.path("state");
    std::fs::create_dir(&state).expect("mkdir");
    let cwd = s.path("cwd");
    std::fs::create_dir(&cwd).expect("mkdir");
    let out = run(
        memtrail()
            .args(["record", "--self", "--duration", "1s"])
            .env("STATE_DIRECTORY", &state)
            .current_dir(&cwd),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(state.join("memtrail.db").exists());
    assert!(!cwd.join("memtrail.db").exists());
    let out = run(
        memtrail()
            .args(["status", "--format", "json"])
            .env("STATE_DIRECTORY", &state)
            .current_dir(&cwd),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

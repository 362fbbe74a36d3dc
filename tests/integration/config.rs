//! The TOML config file: the default prints and loads, flags override it, and a bad file is an
//! error naming the key and line (exit code 2).

use std::time::Duration;

use crate::util::*;

#[test]
fn default_config_prints_and_checks() {
    let s = Scratch::new();
    let out = run(
        memtrail().args(["config", "--default"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        text.contains("interval = \"5s\"") && text.contains("retention = \"24h\""),
        "{text}"
    );
    let file = s.path("memtrail.toml");
    std::fs::write(&file, &text).expect("write");
    let out = run(
        memtrail().args(["config", "check"]).arg(&file),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        shown.contains("interval = 5s") && shown.contains("retention = 1d"),
        "{shown}"
    );
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let s = Scratch::new();
    let file = s.path("bad.toml");
    std::fs::write(&file, "[record]\ninterval = \"1s\"\nretension = \"2h\"\n").expect("write");
    let out = run(
        memtrail()
            .args(["record", "--config"])
            .arg(&file)
            .arg("--db")
            .arg(s.db()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("retension") && err.contains("line 3"), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
    assert!(!s.db().exists());
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let s = Scratch::new();
    let file = s.path("bad.toml");
    std::fs::write(&file, "[record]\npids = \"1234\"\n").expect("write");
    let out = run(
        memtrail().args(["config", "check"]).arg(&file),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("line 2") && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn flags_override_the_file() {
    let s = Scratch::new();
    let file = s.path("memtrail.toml");
    let db_in_file = s.path("from-file.db");
    std::fs::write(
        &file,
        format!(
            "db = {:?}\n[record]\ninterval = \"1h\"\nself = true\nsystem = false\n",
            db_in_file
        ),
    )
    .expect("write");
    let out = run(
        memtrail().args(["record", "--config"]).arg(&file).args([
            "--interval",
            "100ms",
            "--duration",
            "1s",
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = open(&db_in_file);
    let ticks = count(&conn, "SELECT count(DISTINCT ts_ms) FROM samples");
    assert!(
        ticks >= 5,
        "interval from the flag (100ms), not the file (1h): {ticks} ticks"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM targets WHERE kind = 'system'"),
        0
    );
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let s = Scratch::new();
    let out = run(
        memtrail()
            .args(["record", "--config"])
            .arg(s.path("nope.toml"))
            .arg("--db")
            .arg(s.db()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read config file"),
        "{}",
        stderr(&out)
    );
}

/// Issue 20.12: `record --help` said the commit interval defaulted to 0s (it is 1s). Every default
/// the help prints is compared with the one in force (`config check` on an empty file).
#[test]
fn every_default_record_help_prints_is_the_one_in_force() {
    use memtrail::units::{ByteSize, HumanDuration};
    let s = Scratch::new();
    let empty = s.path("empty.toml");
    std::fs::write(&empty, "").expect("config");
    let out = run(
        memtrail()
            .env_remove("MEMTRAIL_EVALUATION_INTERVAL")
            .env_remove("MEMTRAIL_LISTEN")
            .args(["config", "check"])
            .arg(&empty),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let in_force: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.trim().split_once(" = "))
        .collect();
    let help = run(
        memtrail().args(["record", "--help"]),
        Duration::from_secs(20),
    );
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // Defaults written as prose: what they say is checked by the tests of those options.
    let prose = ["db", "duration", "log-format"];
    let mut compared = 0;
    for line in help.lines() {
        let line = line.trim();
        let Some(flag) = line.split_whitespace().find_map(|w| w.strip_prefix("--")) else {
            continue;
        };
        let Some(default) = line
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
        else {
            continue;
        };
        if prose.contains(&flag) {
            continue;
        }
        let key = match flag {
            "listen" => "api".to_string(),
            f => f.replace('-', "_"),
        };
        let Some(actual) = in_force.get(key.as_str()) else {
            panic!(
                "--{flag} prints [default: {default}] but `config check` shows no {key}: {text}"
            );
        };
        // The help may add words after the value ("1s; 0s commits every tick").
        let shown = default.split([';', ',']).next().unwrap_or(default).trim();
        // ... and `config check` after it ("30s; 0s for names").
        let actual = actual.split(';').next().unwrap_or(actual).trim();
        let actual = actual.trim_end_matches(" samples");
        let same = match (
            shown.parse::<HumanDuration>(),
            actual.parse::<HumanDuration>(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => match (
                shown.parse::<ByteSize>(),
                actual
                    .replace(' ', "")
                    .replace(".0", "")
                    .parse::<ByteSize>(),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => shown == actual,
            },
        };
        assert!(same, "--{flag}: help says {default:?}, in force {actual:?}");
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} defaults compared: {help}");
}

/// Issue 20.12: `config --default` listed 3 of the built-in rules and left `increase` out of the
/// comparisons. Every rule in force by default, and every comparison, is named there.
#[test]
fn the_default_config_names_every_built_in_rule_and_comparison() {
    let out = run(
        memtrail().args(["config", "--default"]),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let s = Scratch::new();
    let empty = s.path("empty.toml");
    std::fs::write(&empty, "").expect("config");
    let check = run(
        memtrail().args(["config", "check"]).arg(&empty),
        Duration::from_secs(20),
    );
    let shown = String::from_utf8_lossy(&check.stdout).into_owned();
    let rules: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rule ")?.split(' ').next())
        .collect();
    assert!(rules.len() >= 7, "{shown}");
    for rule in rules {
        assert!(text.contains(rule), "config --default does not name {rule}");
    }
    for comparison in [
        "greater_than",
        "less_than",
        "percent_change",
        "slope",
        "time_to_limit",
        "increase",
    ] {
        assert!(
            text.contains(comparison),
            "config --default does not name {comparison}"
        );
    }
}

/// Issue 23.3: a `db` that is empty, a directory or a device recorded into nothing and exited 0.
/// Each is refused with exit 2 by `record`, `config check` and a reading command, naming why.
#[test]
fn a_db_that_is_empty_a_directory_or_a_device_is_refused() {
    let s = Scratch::new();
    let dir = s.path("a-dir");
    std::fs::create_dir(&dir).expect("mkdir");
    for (db, why) in [
        (String::new(), "is empty"),
        (dir.display().to_string(), "a directory"),
        ("/dev/null".to_string(), "not a regular file"),
    ] {
        let config = s.path("c.toml");
        std::fs::write(&config, format!("db = {db:?}\n")).expect("write");
        let record = [
            "record",
            "--self",
            "--duration",
            "1s",
            "--no-api",
            "--config",
        ];
        for args in [&record[..], &["config", "check"][..]] {
            let out = run(memtrail().args(args).arg(&config), Duration::from_secs(20));
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?} db={db:?}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(why),
                "{args:?} db={db:?}: {}",
                stderr(&out)
            );
        }
        let out = run(
            memtrail().args(["status", "--db", &db]),
            Duration::from_secs(20),
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "status db={db:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        !dir.join("memtrail.db").exists(),
        "nothing written into the directory"
    );
}

/// Issue 23.6: `--config /dev/zero` read until memory ran out, a FIFO blocked; an oversized file
/// is refused too.
#[test]
fn a_config_that_is_a_device_a_fifo_or_huge_is_refused_without_reading_it() {
    let s = Scratch::new();
    let fifo = s.path("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let huge = s.path("huge.toml");
    std::fs::write(&huge, format!("# {}\n", "x".repeat(2 << 20))).expect("write");
    for (config, why) in [
        (std::path::PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo, "not a regular file"),
        (huge, "larger than"),
    ] {
        let out = run(
            memtrail().args(["config", "check"]).arg(&config),
            Duration::from_secs(20),
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            config.display(),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(why),
            "{}: {}",
            config.display(),
            stderr(&out)
        );
    }
}

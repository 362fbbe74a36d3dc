//! The analysis queries on synthetic histories whose answers are known exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::store::Store;

/// Far from zero on purpose: squared Unix milliseconds would lose precision if a query used them.
const T0: i64 = 1_790_000_000_000;
const MB: f64 = 1024.0 * 1024.0;

pub struct History {
    _dir: tempfile::TempDir,
    pub store: Store,
}

impl History {
    pub fn new() -> History {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("h.db"), Duration::from_secs(1)).expect("open");
        History { _dir: dir, store }
    }

    pub fn conn(&self) -> &Connection {
        self.store.connection()
    }

    /// The database file, for code that opens its own connections.
    pub fn path(&self) -> std::path::PathBuf {
        self._dir.path().join("h.db")
    }

    /// Add a target (if new) and one series with the given points; returns the series id.
    pub fn series(
        &self,
        kind: &str,
        name: &str,
        metric: &str,
        unit: &str,
        points: &[(i64, f64)],
    ) -> i64 {
        let c = self.conn();
        let tx = c.unchecked_transaction().expect("tx");
        let first = points.first().map_or(T0, |p| p.0);
        let last = points.last().map_or(T0, |p| p.0);
        let target: i64 = match tx.query_row(
            "SELECT id FROM targets WHERE kind = ?1 AND name = ?2",
            (kind, name),
            |r| r.get(0),
        ) {
            Ok(id) => id,
            Err(_) => {
                tx.execute(
                    "INSERT INTO targets (kind, pid, start_time_ms, name, first_seen_ms, last_seen_ms)
                     VALUES (?1, CASE WHEN ?1 = 'process' THEN 4242 END, ?3, ?2, ?3, ?4)",
                    (kind, name, first, last),
                )
                .expect("target");
                tx.last_insert_rowid()
            }
        };
        tx.execute(
            "INSERT INTO series (target_id, metric, unit) VALUES (?1, ?2, ?3)",
            (target, metric, unit),
        )
        .expect("series");
        let sid = tx.last_insert_rowid();
        {
            let mut ins = tx
                .prepare("INSERT INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for (ts, v) in points {
                ins.execute((sid, ts, v)).expect("sample");
            }
        }
        tx.commit().expect("commit");
        sid
    }
}

fn one(table: &Table, series_id: i64) -> usize {
    (0..table.rows.len())
        .find(|&r| table.get(r, "series_id").as_i64() == Some(series_id))
        .unwrap_or_else(|| panic!("series {series_id} not in result: {:?}", table.rows))
}

fn f(table: &Table, row: usize, col: &str) -> f64 {
    table
        .get(row, col)
        .as_f64()
        .unwrap_or_else(|| panic!("{col} is {:?}", table.get(row, col)))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-12)
}

#[test]
fn headers_declare_every_parameter_each_query_uses() {
    let h = History::new();
    for q in catalog() {
        assert!(!q.summary.is_empty(), "{} has no summary line", q.name);
        let used = store::statement_parameters(h.conn(), q.sql).expect("prepare");
        for name in &used {
            assert!(
                q.params.iter().any(|p| &p.name == name),
                "{} uses :{name} but its header does not declare it",
                q.name
            );
        }
        for p in &q.params {
            assert!(
                used.contains(&p.name),
                "{} declares :{} but never uses it",
                q.name,
                p.name
            );
        }
    }
}

#[test]
fn parameter_text_is_read_by_kind() {
    let now = T0;
    let v = |k, t| parse_value(k, t, now);
    assert_eq!(v(Kind::Duration, "10m"), Some(Cell::Int(600_000)));
    assert_eq!(v(Kind::Duration, "600000"), Some(Cell::Int(600_000)));
    assert_eq!(v(Kind::Time, "-1h"), Some(Cell::Int(T0 - 3_600_000)));
    assert_eq!(
        v(Kind::Time, "2026-01-01T00:00:00Z"),
        Some(Cell::Int(1_767_225_600_000))
    );
    assert_eq!(
        v(Kind::Time, "2026-01-01 01:00:00+01:00"),
        Some(Cell::Int(1_767_225_600_000))
    );
    assert_eq!(v(Kind::Size, "1GiB"), Some(Cell::Int(1 << 30)));
    assert_eq!(v(Kind::Size, "85.5"), Some(Cell::Real(85.5)));
    assert_eq!(v(Kind::Text, "rss"), Some(Cell::Text("rss".into())));
    assert_eq!(v(Kind::Integer, "NULL"), Some(Cell::Null));
    // Issue 20.10: these ran as text and matched nothing.
    assert_eq!(v(Kind::Duration, "10minutes"), None);
    assert_eq!(v(Kind::Time, "yesterday"), None);
    assert_eq!(v(Kind::Integer, "12.5"), None);
    assert_eq!(v(Kind::Number, "lots"), None);
    assert_eq!(v(Kind::Size, "1 GiBs"), None);
}

#[test]
fn every_parameter_declares_its_kind() {
    for q in catalog() {
        for p in &q.params {
            assert!(
                p.kind.is_some(),
                "{}: :{} names no kind after its default (time, duration, size, integer, number, text)",
                q.name,
                p.name
            );
        }
    }
}

#[test]
fn a_value_of_the_wrong_kind_is_refused_naming_the_parameter() {
    let q = find("trend").expect("trend");
    let err = q
        .parse_params(&["window_ms=10minutes".to_string()], T0)
        .expect_err("not a duration")
        .to_string();
    assert!(
        err.contains("--param window_ms=\"10minutes\" is not a duration"),
        "{err}"
    );
    let err = q
        .parse_params(&["now_ms=yesterday".to_string()], T0)
        .expect_err("not a time")
        .to_string();
    assert!(err.contains("now_ms") && err.contains("RFC 3339"), "{err}");
}

#[test]
fn unknown_and_missing_parameters_are_named() {
    let q = find("threshold").expect("exists");
    let err = q
        .bind(&[("treshold".into(), Cell::Int(1))], T0)
        .expect_err("unknown")
        .to_string();
    assert!(
        err.contains("\"treshold\"") && err.contains("threshold, comparison"),
        "{err}"
    );
    let err = q.bind(&[], T0).expect_err("missing").to_string();
    assert!(err.contains("needs --param threshold=VALUE"), "{err}");
    let err = find("trends").expect_err("no such query").to_string();
    assert!(err.contains("trend,") || err.contains("trend"), "{err}");
}

#[test]
fn latest_is_the_newest_value_at_or_before_now() {
    let h = History::new();
    let s = h.series(
        "process",
        "app",
        "rss",
        "bytes",
        &[(T0, 1.0), (T0 + 1000, 2.0), (T0 + 2000, 3.0)],
    );
    let t = run(h.conn(), "latest", &[], T0 + 1500).expect("run");
    let r = one(&t, s);
    assert_eq!(t.get(r, "ts_ms"), &Cell::Int(T0 + 1000));
    assert_eq!(f(&t, r, "value"), 2.0);
    let t = run(
        h.conn(),
        "latest",
        &[("max_age_ms", Cell::Int(100))],
        T0 + 5000,
    )
    .expect("run");
    assert!(
        t.rows.is_empty(),
        "stale series are left out with max_age_ms"
    );
}

#[test]
fn percent_change_against_the_earliest_value_in_the_window() {
    let h = History::new();
    // 100 -> 200 over exactly 10 minutes, a sample every 10 s.
    let pts: Vec<_> = (0..=60)
        .map(|i| (T0 + i * 10_000, 100.0 + i as f64 * 100.0 / 60.0))
        .collect();
    let grow = h.series("process", "a", "rss", "bytes", &pts);
    // Only the last 5 minutes recorded: under 90 % coverage, not reported.
    let late: Vec<_> = pts
        .iter()
        .filter(|p| p.0 >= T0 + 300_000)
        .cloned()
        .collect();
    let young = h.series("process", "b", "rss", "bytes", &late);
    // Starts at zero (its whole first fifth): no percentage.
    let zero: Vec<_> = pts
        .iter()
        .map(|&(t, v)| (t, (v - 150.0).max(0.0)))
        .collect();
    let from_zero = h.series("process", "c", "rss", "bytes", &zero);

    let now = T0 + 600_000;
    let t = run(h.conn(), "percent_change", &[], now).expect("run");
    let r = one(&t, grow);
    // Each end is the median of 15 instants over its fifth of the window: the start's middle
    // instant is 60 s in (110), the end's 60 s before now (190).
    assert!(
        close(f(&t, r, "percent_change"), 80.0 / 110.0 * 100.0, 1e-12),
        "{:?}",
        t.rows[r]
    );
    assert_eq!(f(&t, r, "first_value"), 110.0);
    assert_eq!(f(&t, r, "value"), 190.0);
    assert_eq!(f(&t, r, "coverage"), 1.0);
    assert!(
        t.rows.iter().all(|row| row[0] != Cell::Int(young)),
        "young series reported"
    );
    assert_eq!(t.get(one(&t, from_zero), "percent_change"), &Cell::Null);

    // Half way: the window reaches back before the first sample, so coverage is 0.5: not reported.
    let t = run(h.conn(), "percent_change", &[], T0 + 300_000).expect("run");
    assert!(t.rows.is_empty(), "{:?}", t.rows);
    // A 5-minute window at the end: its ends' middle instants are 30 s in (155) and 30 s before
    // now (195).
    let t = run(
        h.conn(),
        "percent_change",
        &[("window_ms", Cell::Int(300_000))],
        now,
    )
    .expect("run");
    let r = one(&t, grow);
    assert!(close(
        f(&t, r, "percent_change"),
        (195.0 - 155.0) / 155.0 * 100.0,
        1e-12
    ));
}

/// Theil-Sen and Mann-Kendall on levels known exactly: a line sampled at exactly the grid's
/// spacing (each of the 240 instants finds the sample 60 ms after it), so every slice's level is
/// the line at its centre plus 60 ms. Then one slice 10x as high: 11 of the 66 pairwise slopes
/// change, the median does not.
#[test]
fn theil_sen_and_mann_kendall_on_known_levels() {
    let h = History::new();
    // 120 ms a sample over 28.8 s (240 samples and one more): 1000 + 10 per second.
    let pts: Vec<_> = (0..=240)
        .map(|i| (T0 + i * 120, 1000.0 + 10.0 * (i as f64 * 0.12)))
        .collect();
    let s = h.series("process", "app", "rss", "bytes", &pts);
    let params = [
        ("window_ms", Cell::Int(28_800)),
        ("min_span_ms", Cell::Int(0)),
    ];
    let t = run(h.conn(), "trend", &params, T0 + 28_800).expect("run");
    let r = one(&t, s);
    assert!(
        close(f(&t, r, "slope_per_hour"), 36_000.0, 1e-12),
        "{:?}",
        t.rows[r]
    );
    // Every pair rises: S = 66, z = (66 - 1) / sqrt(12 * 11 * 29 / 18).
    assert!(close(
        f(&t, r, "mk_z"),
        65.0 / (12.0f64 * 11.0 * 29.0 / 18.0).sqrt(),
        1e-9
    ));
    assert!(close(f(&t, r, "r2"), 1.0, 1e-12));
    // Sen's range of an exact line is the line's slope itself.
    assert!(close(f(&t, r, "slope_low_per_hour"), 36_000.0, 1e-12));
    assert!(close(f(&t, r, "slope_high_per_hour"), 36_000.0, 1e-12));
    assert_eq!(t.get(r, "classification").as_str(), Some("increasing"));

    // Slice 5 (samples 101..=120 are its instants' finds) ten times as high.
    let h = History::new();
    let spiked: Vec<_> = pts
        .iter()
        .enumerate()
        .map(|(i, &(ts, v))| {
            (
                ts,
                if (101..=120).contains(&i) {
                    v * 10.0
                } else {
                    v
                },
            )
        })
        .collect();
    let s = h.series("process", "app", "rss", "bytes", &spiked);
    let t = run(h.conn(), "trend", &params, T0 + 28_800).expect("run");
    let r = one(&t, s);
    assert!(
        close(f(&t, r, "slope_per_hour"), 36_000.0, 1e-12),
        "{:?}",
        t.rows[r]
    );
}

#[test]
fn trend_of_an_exact_line_at_unix_scale() {
    let h = History::new();
    // 1 GB + 2 bytes per second, a sample every 10 s for an hour.
    let pts: Vec<_> = (0..=360)
        .map(|i| (T0 + i * 10_000, 1e9 + 2.0 * (i * 10) as f64))
        .collect();
    let s = h.series("process", "app", "rss", "bytes", &pts);
    let t = run(h.conn(), "trend", &[], T0 + 3_600_000).expect("run");
    let r = one(&t, s);
    assert!(
        close(f(&t, r, "slope_per_hour"), 7200.0, 1e-9),
        "{:?}",
        t.rows[r]
    );
    assert!(close(f(&t, r, "r2"), 1.0, 1e-9));
    // Each slice's 15 instants (20 s apart, from 10 s in) find samples on them; the middle one is
    // the slice's centre, so the levels lie on the line and the fit is exact.
    assert!(close(f(&t, r, "intercept"), 1e9, 1e-15), "{:?}", t.rows[r]);
    assert_eq!(
        t.get(r, "classification").as_str(),
        Some("stable"),
        "7.2 kB/h on 1 GB"
    );
}

#[test]
fn time_to_limit_extends_the_fitted_line() {
    let h = History::new();
    // 1000 + 10/s for 10 minutes: at the last sample the line is at 7000.
    let pts: Vec<_> = (0..=60)
        .map(|i| (T0 + i * 10_000, 1000.0 + 10.0 * (i * 10) as f64))
        .collect();
    let rising = h.series("process", "leaky", "rss", "bytes", &pts);
    let flat: Vec<_> = pts.iter().map(|&(t, _)| (t, 5000.0)).collect();
    let steady = h.series("process", "steady", "rss", "bytes", &flat);
    let total: Vec<_> = pts.iter().map(|&(t, _)| (t, 13_000.0)).collect();
    h.series("system", "system", "mem_total", "bytes", &total);
    let now = T0 + 600_000;
    let params = [("window_ms", Cell::Int(600_000))];
    let t = run(h.conn(), "time_to_limit", &params, now).expect("run");
    let r = one(&t, rising);
    // Limit defaults to the system total: (13000 - 7000) / 10 per second = 600 s.
    assert_eq!(f(&t, r, "limit_value"), 13_000.0);
    assert!(
        close(f(&t, r, "seconds_to_limit"), 600.0, 1e-9),
        "{:?}",
        t.rows[r]
    );
    assert_eq!(t.get(r, "limit_at_ms"), &Cell::Int(now + 600_000));
    assert_eq!(t.get(one(&t, steady), "seconds_to_limit"), &Cell::Null);
    let t = run(
        h.conn(),
        "time_to_limit",
        &[
            ("window_ms", Cell::Int(600_000)),
            ("limit", Cell::Real(8000.0)),
        ],
        now,
    )
    .expect("run");
    assert!(close(
        f(&t, one(&t, rising), "seconds_to_limit"),
        100.0,
        1e-9
    ));
}

#[test]
fn time_to_limit_uses_a_cgroups_own_limit() {
    let h = History::new();
    // A group using 1000 + 10/s against its own 8000 limit; the host has 13000.
    let pts: Vec<_> = (0..=60)
        .map(|i| (T0 + i * 10_000, 1000.0 + 10.0 * (i * 10) as f64))
        .collect();
    let usage = h.series("cgroup", "/app", "usage", "bytes", &pts);
    let limit: Vec<_> = pts.iter().map(|&(t, _)| (t, 8000.0)).collect();
    h.series("cgroup", "/app", "limit", "bytes", &limit);
    let total: Vec<_> = pts.iter().map(|&(t, _)| (t, 13_000.0)).collect();
    h.series("system", "system", "mem_total", "bytes", &total);
    let now = T0 + 600_000;
    let params = [
        ("window_ms", Cell::Int(600_000)),
        ("metric", Cell::Text("usage".into())),
    ];
    let t = run(h.conn(), "time_to_limit", &params, now).expect("run");
    let r = one(&t, usage);
    // (8000 - 7000) / 10 per second = 100 s, not the 600 s the host's total would give.
    assert_eq!(f(&t, r, "limit_value"), 8000.0);
    assert!(
        close(f(&t, r, "seconds_to_limit"), 100.0, 1e-9),
        "{:?}",
        t.rows[r]
    );
}

/// `trend` and `time_to_limit` pick the same limit for every series; `trend` projects its robust
/// line to it, only for a series it calls `increasing`.
#[test]
fn trend_time_to_limit_matches_time_to_limit() {
    let h = History::new();
    let pts: Vec<_> = (0..=60)
        .map(|i| {
            (
                T0 + i * 10_000,
                1000.0 + 10.0 * (i * 10) as f64 + (i % 3) as f64,
            )
        })
        .collect();
    let at = |v: f64| pts.iter().map(|&(t, _)| (t, v)).collect::<Vec<_>>();
    let ids = [
        h.series("process", "leaky", "rss", "bytes", &pts),
        h.series("process", "steady", "rss", "bytes", &at(5000.0)),
        h.series("cgroup", "/app", "usage", "bytes", &pts),
        h.series("cgroup", "/app", "limit", "bytes", &at(8000.0)),
        h.series(
            "system",
            "system",
            "mem_used_percent",
            "percent",
            &pts[..40],
        ),
    ];
    h.series("system", "system", "mem_total", "bytes", &at(13_000.0));
    let available = h.series("system", "system", "mem_available", "bytes", &pts);
    let now = T0 + 600_000;
    let params = [("window_ms", Cell::Int(600_000))];
    let trend = run(h.conn(), "trend", &params, now).expect("trend");
    let ttl = run(h.conn(), "time_to_limit", &params, now).expect("ttl");
    for id in ids {
        let (a, b) = (one(&trend, id), one(&ttl, id));
        // A limit itself has none (nor has what is available: #20 item 14).
        if id == ids[3] {
            assert_eq!(trend.get(a, "limit_value"), &Cell::Null);
            assert_eq!(ttl.get(b, "limit_value"), &Cell::Null);
            continue;
        }
        // The same limit for every other series, whichever applies.
        assert_eq!(
            trend.get(a, "limit_value"),
            ttl.get(b, "limit_value"),
            "series {id}"
        );
        // trend projects its own robust line: from the fitted level now, at the Theil-Sen slope,
        // with the range from Sen's slopes around it.
        if let Some(secs) = trend.get(a, "seconds_to_limit").as_f64() {
            let per_s = f(&trend, a, "slope_per_hour") / 3600.0;
            let want = (f(&trend, a, "limit_value") - f(&trend, a, "fitted_now")) / per_s;
            assert!(
                close(secs, want.max(0.0), 1e-9),
                "series {id}: {secs} vs {want}"
            );
            let (lo, hi) = (
                f(&trend, a, "seconds_to_limit_low"),
                f(&trend, a, "seconds_to_limit_high"),
            );
            assert!(
                lo <= secs && secs <= hi,
                "series {id}: {lo} <= {secs} <= {hi}"
            );
            let last = trend.get(a, "last_ts_ms").as_i64().expect("last");
            assert_eq!(
                trend.get(a, "limit_at_ms").as_i64(),
                Some(last + (secs * 1000.0) as i64),
                "series {id}"
            );
        }
    }
    // The rising series gets a time to limit (so the checks above ran), the steady one none.
    assert!(
        trend
            .get(one(&trend, ids[0]), "seconds_to_limit")
            .as_f64()
            .is_some()
    );
    assert_eq!(
        trend.get(one(&trend, ids[1]), "seconds_to_limit"),
        &Cell::Null
    );
    assert_eq!(f(&trend, one(&trend, ids[2]), "limit_value"), 8000.0);
    // What is available does not "reach its limit" (#20 item 14), in either query.
    assert_eq!(
        trend.get(one(&trend, available), "limit_value"),
        &Cell::Null
    );
    assert_eq!(
        ttl.get(one(&ttl, available), "seconds_to_limit"),
        &Cell::Null
    );
}

#[test]
fn increase_counts_new_counter_growth_in_the_window() {
    let h = History::new();
    // oom_kill: 3 before memtrail saw it, one kill at +120 s, one at +240 s; then a reset (the
    // counter starts again at 0 and reaches 1).
    let at = |s: i64| T0 + s * 1000;
    let mut pts = Vec::new();
    for s in (0..=300).step_by(10) {
        let v = 3.0 + f64::from(s >= 120) + f64::from(s >= 240);
        pts.push((at(s), v));
    }
    pts.extend([(at(310), 0.0), (at(320), 1.0)]);
    let kills = h.series("cgroup", "/app", "oom_kill", "count", &pts);
    let quiet: Vec<_> = pts.iter().map(|&(t, _)| (t, 7.0)).collect();
    let calm = h.series("cgroup", "/other", "oom_kill", "count", &quiet);
    let q = |now: i64, window: i64| {
        run(
            h.conn(),
            "increase",
            &[
                ("window_ms", Cell::Int(window)),
                ("metric", Cell::Text("oom_kill".into())),
            ],
            now,
        )
        .expect("run")
    };
    // The whole history: 2 rises + the reset's 0 + 1 = 3; the starting 3 is not growth.
    let t = q(at(320), 400_000);
    assert_eq!(f(&t, one(&t, kills), "increase"), 3.0);
    assert_eq!(f(&t, one(&t, calm), "increase"), 0.0);
    // A 5-minute window ending at 230 s holds the kill at 120 s only.
    let t = q(at(230), 300_000);
    assert_eq!(f(&t, one(&t, kills), "increase"), 1.0);
    assert_eq!(f(&t, one(&t, kills), "last_value"), 4.0);
    // 100 s to 230 s later (130..230): no new kill (the one at 120 s fell out of the window).
    let t = q(at(230), 100_000);
    assert_eq!(f(&t, one(&t, kills), "increase"), 0.0);
}

#[test]
fn threshold_compares_the_newest_value() {
    let h = History::new();
    let big = h.series("process", "big", "rss", "bytes", &[(T0, 2e9)]);
    let small = h.series("process", "small", "rss", "bytes", &[(T0, 1e8)]);
    let p = |cmp: &str| {
        vec![
            ("threshold", Cell::Int(1 << 30)),
            ("comparison", Cell::Text(cmp.into())),
        ]
    };
    let t = run(h.conn(), "threshold", &p("greater_than"), T0 + 1000).expect("run");
    assert_eq!(t.get(one(&t, big), "holds"), &Cell::Int(1));
    assert_eq!(t.get(one(&t, small), "holds"), &Cell::Int(0));
    let t = run(h.conn(), "threshold", &p("less_than"), T0 + 1000).expect("run");
    assert_eq!(t.get(one(&t, small), "holds"), &Cell::Int(1));
    let t = run(h.conn(), "threshold", &p("greater_than"), T0 + 600_000).expect("run");
    assert!(
        t.rows.is_empty(),
        "samples older than max_age_ms are not judged"
    );
}

#[test]
fn downsampling_keeps_true_extremes_per_bucket() {
    let h = History::new();
    // 1 Hz for 10 minutes with one spike and one dip.
    let mut pts: Vec<_> = (0..600)
        .map(|i| (T0 + i * 1000, 100.0 + (i % 7) as f64))
        .collect();
    pts[125].1 = 9_999.0;
    pts[430].1 = -5.0;
    let s = h.series("process", "app", "rss", "bytes", &pts);
    let params = [
        ("from_ms", Cell::Int(T0)),
        ("to_ms", Cell::Int(T0 + 600_000)),
        ("bucket_ms", Cell::Int(60_000)),
    ];
    let t = run(h.conn(), "downsample", &params, T0 + 600_000).expect("run");
    assert_eq!(t.rows.len(), 10);
    for r in 0..10 {
        assert_eq!(t.get(r, "series_id"), &Cell::Int(s));
        let start = T0 + r as i64 * 60_000;
        assert_eq!(t.get(r, "bucket_ms"), &Cell::Int(start));
        let inside: Vec<f64> = pts
            .iter()
            .filter(|p| p.0 >= start && p.0 < start + 60_000)
            .map(|p| p.1)
            .collect();
        assert_eq!(
            f(&t, r, "min"),
            inside.iter().cloned().fold(f64::MAX, f64::min)
        );
        assert_eq!(
            f(&t, r, "max"),
            inside.iter().cloned().fold(f64::MIN, f64::max)
        );
        assert_eq!(t.get(r, "samples"), &Cell::Int(60));
    }
    assert_eq!(f(&t, 2, "max"), 9_999.0);
    assert_eq!(f(&t, 7, "min"), -5.0);
}

/// A repeatable noise source in [-1, 1].
pub struct Noise(u64);
impl Noise {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// A history sampled every 5 s for `minutes`, value = f(seconds since start) * (1 + noise).
pub fn shape(minutes: i64, noise: f64, f: impl Fn(f64) -> f64) -> Vec<(i64, f64)> {
    let mut n = Noise(7);
    (0..=minutes * 12)
        .map(|i| {
            let t = i as f64 * 5.0;
            (T0 + i * 5000, f(t) * (1.0 + noise * n.next()))
        })
        .collect()
}

pub fn classify(points: &[(i64, f64)], at_minute: i64) -> (String, Table) {
    let h = History::new();
    let s = h.series("process", "app", "rss", "bytes", points);
    let t = run(h.conn(), "trend", &[], T0 + at_minute * 60_000).expect("run");
    let r = one(&t, s);
    if std::env::var_os("MEMTRAIL_SHOW_FITS").is_some() {
        let cols = [
            "pct_per_hour",
            "r2",
            "growth_pct",
            "floor_pct_per_hour",
            "floor_r2",
            "classification",
        ];
        let shown: Vec<String> = cols
            .iter()
            .map(|c| format!("{c}={:?}", t.get(r, c)))
            .collect();
        eprintln!("{}", shown.join(" "));
    }
    (
        t.get(r, "classification")
            .as_str()
            .unwrap_or("?")
            .to_string(),
        t,
    )
}

const BASE: f64 = 500.0 * MB;

#[test]
fn steady_leak_with_noise_is_increasing_within_an_hour() {
    // Flat for 30 min, then +5 %/h of the base, with ±1 % noise.
    let leak = |t: f64| BASE * (1.0 + 0.05 * ((t - 1800.0).max(0.0) / 3600.0));
    let pts = shape(150, 0.01, leak);
    let (c, t) = classify(&pts, 30 + 60);
    assert_eq!(c, "increasing", "{:?}", t.rows);
    let (c, _) = classify(&pts, 150);
    assert_eq!(c, "increasing");
}

#[test]
fn flat_and_noisy_flat_are_stable() {
    for noise in [0.0, 0.01, 0.03] {
        let (c, t) = classify(&shape(90, noise, |_| BASE), 90);
        assert_eq!(c, "stable", "noise {noise}: {:?}", t.rows);
    }
}

/// A flat series skips the fits (pairs, halves, scatter, step test, lookback): its figures must
/// be the flat line's, the ones the fits give a series whose levels never move.
#[test]
fn a_flat_series_gets_the_flat_lines_figures_without_the_fits() {
    let (c, t) = classify(&shape(90, 0.0, |_| BASE), 90);
    assert_eq!(c, "stable");
    let r = 0;
    for zero in [
        "slope_per_hour",
        "slope_low_per_hour",
        "slope_high_per_hour",
        "pct_per_hour",
        "growth_pct",
        "mk_z",
        "step_pct",
        "early_pct_per_hour",
        "late_pct_per_hour",
    ] {
        assert_eq!(t.get(r, zero).as_f64(), Some(0.0), "{zero}: {:?}", t.rows);
    }
    for level in ["mean", "intercept", "fitted_now"] {
        assert_eq!(t.get(r, level).as_f64(), Some(BASE), "{level}");
    }
    // No variance to explain, no residual to compare, no rise to compare with the past.
    for none in ["r2", "step_ratio", "prior_high", "seconds_to_limit"] {
        assert_eq!(t.get(r, none), &Cell::Null, "{none}");
    }
}

#[test]
fn only_a_rising_series_is_compared_with_its_prior_high() {
    // Flat for 30 min, then +5 %/h: at minute 90 the window's 30 minutes before are its lookback.
    let leak = |t: f64| BASE * (1.0 + 0.05 * ((t - 1800.0).max(0.0) / 3600.0));
    let (c, t) = classify(&shape(90, 0.01, leak), 90);
    assert_eq!(c, "increasing");
    let high = t
        .get(0, "prior_high")
        .as_f64()
        .expect("a rising series' prior high");
    assert!((high / BASE - 1.0).abs() < 0.01, "{high}");
    let (c, t) = classify(&shape(90, 0.01, |_| BASE), 90);
    assert_eq!(c, "stable");
    assert_eq!(t.get(0, "prior_high"), &Cell::Null);
}

/// The alert rules count a window's samples only up to min_samples: every other figure is the same.
#[test]
fn counting_samples_only_up_to_min_samples_changes_nothing_else() {
    let leak = |t: f64| BASE * (1.0 + 0.05 * ((t - 1800.0).max(0.0) / 3600.0));
    let h = History::new();
    // 15 samples in the window's last 75 s: fewer than min_samples.
    let young: Vec<(i64, f64)> = shape(2, 0.01, leak)[..15]
        .iter()
        .map(|&(t, v)| (t + 88 * 60_000, v))
        .collect();
    let s = h.series("process", "app", "rss", "bytes", &shape(90, 0.01, leak));
    let y = h.series("process", "young", "rss", "bytes", &young);
    let now = T0 + 90 * 60_000;
    let all = run(h.conn(), "trend", &[], now).expect("trend");
    let capped = run(h.conn(), "trend", &[("count_all", Cell::Int(0))], now).expect("trend");
    assert_eq!(all.get(one(&all, s), "samples"), &Cell::Int(721));
    assert_eq!(capped.get(one(&capped, s), "samples"), &Cell::Int(20));
    // Under min_samples the count is exact either way (the reason says how many there are).
    assert_eq!(capped.get(one(&capped, y), "samples"), &Cell::Int(15));
    for (sid, col) in [s, y]
        .into_iter()
        .flat_map(|sid| all.columns.iter().map(move |c| (sid, c)))
    {
        if col != "samples" {
            assert_eq!(
                all.get(one(&all, sid), col),
                capped.get(one(&capped, sid), col),
                "{col}"
            );
        }
    }
}

#[test]
fn warm_up_then_flat_is_stable_once_the_warm_up_left_the_window() {
    // Rises from 100 MB towards 500 MB with a 4-minute time constant, then stays.
    let warm = |t: f64| 100.0 * MB + 400.0 * MB * (1.0 - (-t / 240.0).exp());
    let pts = shape(120, 0.005, warm);
    let (c, t) = classify(&pts, 20 + 61);
    assert_eq!(c, "stable", "{:?}", t.rows);
}

/// #22 item 2: a cache warming up from the process's start, logarithmically over 3 h (+40 %, time
/// constant 20 min), grows for hours at rates a leak would show, but ever more slowly. While the
/// process is younger than the window, growth that is slower in the window's second half than in
/// its first is a warm-up; once older, the rate's fall over the recorded history is significant
/// (Spearman). Neither is `increasing`; a leak at a steady rate after a flat stretch still is.
#[test]
fn a_warm_up_whose_growth_keeps_slowing_is_levelling_off_at_every_age() {
    let warm = |t: f64| {
        let t = t.min(3.0 * 3600.0);
        BASE * (1.0 + 0.4 * (1.0 + t / 1200.0).ln() / 10f64.ln())
    };
    let pts = shape(180, 0.005, warm);
    for minute in [15, 25, 45, 72, 100, 132, 170] {
        let (c, t) = classify(&pts, minute);
        assert_eq!(c, "levelling_off", "minute {minute}: {:?}", t.rows);
        assert!(
            f(&t, 0, "pct_per_hour") > 1.0,
            "minute {minute}: still growing"
        );
    }
    // The same rate held after a flat stretch: a leak, not a warm-up, at the same ages.
    let leak = |t: f64| BASE * (1.0 + 0.1 * ((t - 600.0).max(0.0) / 3600.0));
    let pts = shape(180, 0.005, leak);
    for minute in [25, 45, 72, 100, 132, 170] {
        let (c, t) = classify(&pts, minute);
        assert_eq!(c, "increasing", "minute {minute}: {:?}", t.rows);
    }
}

/// #22 item 2: a 2-hour cycle of ±10 % in a service that ran long before the recording. Its first
/// rising half fills the 1 h window like a leak; an hour of history before the window holds the
/// previous peak, whatever the phase the recording starts at, so no minute of it is `increasing`.
#[test]
fn a_two_hour_cycle_is_never_increasing_from_the_recordings_start() {
    for phase in [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] {
        let cycle = move |t: f64| {
            BASE * (1.0 + 0.1 * (2.0 * std::f64::consts::PI * t / 7200.0 + phase).sin())
        };
        let h = History::new();
        let s = h.series("process", "app", "rss", "bytes", &shape(300, 0.005, cycle));
        h.conn()
            .execute("UPDATE targets SET start_time_ms = ?1", [T0 - 86_400_000])
            .expect("age");
        for minute in (60..=300).step_by(5) {
            let t = run(h.conn(), "trend", &[], T0 + minute * 60_000).expect("run");
            let r = one(&t, s);
            assert_ne!(
                t.get(r, "classification").as_str(),
                Some("increasing"),
                "phase {phase}, minute {minute}: {:?}",
                t.rows[r]
            );
        }
    }
}

#[test]
fn saw_tooth_on_a_flat_floor_is_stable() {
    for period in [180.0, 300.0, 420.0] {
        let gc = move |t: f64| BASE * (1.0 + 0.2 * ((t % period) / period));
        let (c, t) = classify(&shape(90, 0.005, gc), 90);
        assert_eq!(c, "stable", "period {period}: {:?}", t.rows);
    }
}

/// A saw-tooth whose teeth rise for 70 minutes, in a service that ran a day before the recording:
/// seen from the recording's start, the first tooth fills the 1 h window like a leak, and nothing
/// before the window shows the range it will fall back into. With 5 minutes of prior history there
/// is no verdict yet (it used to be increasing); once the window holds a drop, it is not a leak. A
/// process that started with the recording has no prior to wait for: its rise is judged.
#[test]
fn the_first_rise_of_a_long_saw_tooth_waits_for_prior_history() {
    let tooth = |t: f64| BASE * (1.0 + 0.3 * ((t % 4200.0) / 4200.0));
    let pts = shape(150, 0.005, tooth);
    let h = History::new();
    let s = h.series("process", "app", "rss", "bytes", &pts);
    let at = |minute: i64| {
        let t = run(h.conn(), "trend", &[], T0 + minute * 60_000).expect("run");
        let r = one(&t, s);
        let c = t
            .get(r, "classification")
            .as_str()
            .unwrap_or("?")
            .to_string();
        let reason = t.get(r, "reason").as_str().unwrap_or_default().to_string();
        (c, reason)
    };
    assert_eq!(at(65).0, "increasing", "started with the recording");
    h.conn()
        .execute("UPDATE targets SET start_time_ms = ?1", [T0 - 86_400_000])
        .expect("age");
    let (c, reason) = at(65);
    assert_eq!(c, "insufficient_data", "{reason}");
    assert!(
        reason.starts_with("rising, but needs 3600 s of history before the window"),
        "{reason}"
    );
    for minute in [100, 130, 150] {
        let (c, reason) = at(minute);
        assert_ne!(c, "increasing", "at minute {minute}: {reason}");
    }
}

/// A leak under a garbage collector's saw-tooth: the slice medians ride the teeth, and the leak
/// lifts the level clear of the highest level seen before the window (the prior high).
#[test]
fn saw_tooth_on_a_rising_floor_is_increasing() {
    for period in [180.0, 300.0] {
        let leaky_gc =
            move |t: f64| BASE * (1.0 + 0.05 * t / 3600.0) * (1.0 + 0.2 * ((t % period) / period));
        let (c, t) = classify(&shape(90, 0.005, leaky_gc), 90);
        assert_eq!(c, "increasing", "period {period}: {:?}", t.rows);
    }
}

#[test]
fn step_then_flat_is_stable_after_the_window() {
    let step = |t: f64| if t < 1800.0 { BASE } else { BASE * 1.3 };
    let pts = shape(120, 0.005, step);
    let (c, t) = classify(&pts, 30 + 61);
    assert_eq!(c, "stable", "{:?}", t.rows);
}

#[test]
fn shrinking_is_decreasing() {
    let shrink = |t: f64| BASE * (1.0 - 0.05 * t / 3600.0);
    let (c, t) = classify(&shape(90, 0.01, shrink), 90);
    assert_eq!(c, "decreasing", "{:?}", t.rows);
}

#[test]
fn too_little_history_is_insufficient_data_and_says_why() {
    // A process that started a day before the recording: 20 minutes do not cover the window.
    let h = History::new();
    let s = h.series(
        "process",
        "app",
        "rss",
        "bytes",
        &shape(20, 0.0, |t| BASE + t),
    );
    h.conn()
        .execute("UPDATE targets SET start_time_ms = ?1", [T0 - 86_400_000])
        .expect("age");
    let t = run(h.conn(), "trend", &[], T0 + 20 * 60_000).expect("run");
    let r = one(&t, s);
    assert_eq!(
        t.get(r, "classification").as_str(),
        Some("insufficient_data")
    );
    assert_eq!(
        t.get(r, "reason").as_str(),
        Some("needs 3600 s of history (older than the window), has 1200 s")
    );
    // A process 2 minutes old: under the 3 minutes any verdict needs.
    let (c, t) = classify(&shape(2, 0.0, |t| BASE + t), 2);
    assert_eq!(c, "insufficient_data");
    assert_eq!(
        t.get(0, "reason").as_str(),
        Some("needs 180 s of history, has 120 s")
    );
}

/// #22 item 4: a process younger than the window is judged over the life it has. Flat 2 minutes,
/// then 3 MiB a minute, sampled every second: `increasing` 2 minutes after the onset.
#[test]
fn a_young_process_that_leaks_is_increasing_within_minutes() {
    let pts: Vec<_> = (0..=240)
        .map(|s| {
            let t = s as f64;
            (
                T0 + s * 1000,
                20.0 * MB + 3.0 * MB * ((t - 120.0).max(0.0) / 60.0),
            )
        })
        .collect();
    let (c, t) = classify(&pts, 4);
    assert_eq!(c, "increasing", "{:?}", t.rows);
    // The same process without the leak is stable.
    let flat: Vec<_> = pts.iter().map(|&(ts, _)| (ts, 20.0 * MB)).collect();
    let (c, _) = classify(&flat, 4);
    assert_eq!(c, "stable");
}

/// `trend`'s levels and slope, computed plainly: each slice's level is the median of the samples
/// found at or after its `:points` evenly spaced instants, the slope the median of the pairwise
/// slopes between slice levels. Returns (mean of the levels, slope per hour).
fn reference_trend(all: &[(i64, f64)], inside: &[(i64, f64)], buckets: i64) -> (f64, f64) {
    let points_default = find("trend")
        .expect("trend")
        .params
        .iter()
        .find(|p| p.name == "points")
        .map(|p| p.default.clone());
    let points: i64 = match points_default {
        Some(Default::Value(Cell::Int(n))) => n,
        other => panic!("trend's :points default: {other:?}"),
    };
    let (first, last) = (inside[0].0, inside[inside.len() - 1].0);
    let span = last - first;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        (v[n.div_ceil(2) - 1] + v[(n + 2) / 2 - 1]) / 2.0
    };
    let levels: Vec<f64> = (0..buckets)
        .map(|b| {
            median(
                (b * points..(b + 1) * points)
                    .filter_map(|i| {
                        let at = first
                            + ((i as f64 + 0.5) * span as f64 / (buckets * points) as f64) as i64;
                        all.iter().find(|p| p.0 >= at).map(|p| p.1)
                    })
                    .collect(),
            )
        })
        .collect();
    let mut slopes = Vec::new();
    for a in 0..levels.len() {
        for b in a + 1..levels.len() {
            slopes.push((levels[b] - levels[a]) / (b - a) as f64);
        }
    }
    let slice_s = span as f64 / 1000.0 / buckets as f64;
    let mean = levels.iter().sum::<f64>() / levels.len() as f64;
    (mean, median(slopes) / slice_s * 3600.0)
}

/// Irregular histories (jittered intervals, gaps) in three series, and windows that do not line up
/// with the samples: `trend` and `downsample` must agree with a plain reference computation, so
/// the slice and bucket edges (each walked as a primary-key range) never drop or double a sample.
#[test]
fn slices_and_buckets_match_a_reference_on_irregular_histories() {
    let mut noise = Noise(11);
    let mut checked = 0;
    for case in 0..12 {
        let h = History::new();
        let mut all = Vec::new();
        for s in 0..3 {
            let mut pts = Vec::new();
            // Half the cases dense (a sample every few ms, so edges are hit exactly), half sparse.
            let step = if case % 2 == 0 { 4.0 } else { 9_000.0 };
            let mut ts = T0 + (noise.next().abs() * step * 5.0) as i64;
            for i in 0..(5 + (noise.next().abs() * 400.0) as usize) {
                ts += 1 + (noise.next().abs() * step) as i64;
                if noise.next() > 0.95 {
                    ts += (step * 30.0) as i64;
                }
                let v = 1e6 * (1.0 + s as f64) + i as f64 * 100.0 * noise.next();
                pts.push((ts, v + 5000.0 * noise.next()));
            }
            all.push((
                h.series("process", &format!("p{case}_{s}"), "rss", "bytes", &pts),
                pts,
            ));
        }
        for _ in 0..4 {
            let scale = if case % 2 == 0 { 1_000.0 } else { 1_000_000.0 };
            let now = T0 + (noise.next().abs() * 4.0 * scale) as i64;
            let window = 1 + (noise.next().abs() * 3.0 * scale) as i64;
            let buckets = 1 + (noise.next().abs() * 30.0) as i64;
            let bucket_ms = 1 + (noise.next().abs() * scale / 5.0) as i64;
            let params = [
                ("window_ms", Cell::Int(window)),
                ("buckets", Cell::Int(buckets)),
                ("min_samples", Cell::Int(1)),
                ("min_span_ms", Cell::Int(0)),
                ("min_coverage", Cell::Real(0.0)),
            ];
            let t = run(h.conn(), "trend", &params, now).expect("trend");
            let from = now - window;
            let ranged = [
                ("from_ms", Cell::Int(from)),
                ("to_ms", Cell::Int(now)),
                ("bucket_ms", Cell::Int(bucket_ms)),
            ];
            let d = run(h.conn(), "downsample", &ranged, now).expect("downsample");
            for (sid, pts) in &all {
                // trend: counts per slice and the least-squares slope over the window.
                let inside: Vec<(i64, f64)> = pts
                    .iter()
                    .copied()
                    .filter(|p| p.0 >= from && p.0 <= now)
                    .collect();
                let row = (0..t.rows.len()).find(|&r| t.get(r, "series_id").as_i64() == Some(*sid));
                let Some(r) = row else {
                    assert!(inside.is_empty(), "series {sid} missing from trend");
                    continue;
                };
                assert_eq!(t.get(r, "samples").as_i64(), Some(inside.len() as i64));
                if buckets >= 2 && inside.len() >= 2 && inside[inside.len() - 1].0 > inside[0].0 {
                    let (mean, slope_h) = reference_trend(pts, &inside, buckets);
                    assert!(close(f(&t, r, "mean"), mean, 1e-9), "mean of {sid}");
                    let got = f(&t, r, "slope_per_hour");
                    assert!(
                        close(got, slope_h, 1e-9) || (got - slope_h).abs() < 1e-6,
                        "{got} vs {slope_h}"
                    );
                }
                // downsample: per bucket, the true count, min and max.
                let mut want: BTreeMap<i64, (i64, f64, f64)> = BTreeMap::new();
                for p in pts.iter().filter(|p| p.0 >= from && p.0 < now) {
                    let b = from + (p.0 - from) / bucket_ms * bucket_ms;
                    let e = want.entry(b).or_insert((0, f64::MAX, f64::MIN));
                    *e = (e.0 + 1, e.1.min(p.1), e.2.max(p.1));
                }
                let got: BTreeMap<i64, (i64, f64, f64)> = (0..d.rows.len())
                    .filter(|&r| d.get(r, "series_id").as_i64() == Some(*sid))
                    .map(|r| {
                        let b = d.get(r, "bucket_ms").as_i64().unwrap_or(-1);
                        let c = d.get(r, "samples").as_i64().unwrap_or(-1);
                        (b, (c, f(&d, r, "min"), f(&d, r, "max")))
                    })
                    .collect();
                assert_eq!(got, want, "series {sid}, bucket {bucket_ms} ms");
                checked += 1;
            }
        }
    }
    assert!(checked >= 80, "only {checked} series checked");
}

/// The queries rules run look up each series' samples by primary key: none may step through the
/// samples table (SQLite's planner, with no statistics, once chose to scan every sample for
/// `threshold`: 0.5 ms became 100 ms on a 24 h history). SQLite's FULLSCAN_STEP counter also counts
/// steps through a query's own small tables (the grids of `trend` and `percent_change`), so the
/// check is that the count does not grow with the samples: the same histories, 4x as dense.
#[test]
fn rule_queries_never_scan_the_samples_table() {
    let steps_for = |n: i64| {
        let h = History::new();
        let step = 3_000_000 / n;
        let pts: Vec<_> = (0..n).map(|i| (T0 + i * step, 100.0 + i as f64)).collect();
        h.series("process", "app", "rss", "bytes", &pts);
        h.series("system", "system", "mem_used_percent", "percent", &pts);
        h.series("cgroup", "/a.service", "oom_kill", "count", &pts);
        let now = T0 + (n - 1) * step;
        let runs: [(&str, Vec<(&str, Cell)>); 6] = [
            ("threshold", vec![("threshold", Cell::Real(1.0))]),
            ("percent_change", vec![("window_ms", Cell::Int(600_000))]),
            ("increase", vec![("window_ms", Cell::Int(300_000))]),
            ("time_to_limit", vec![("window_ms", Cell::Int(600_000))]),
            ("trend", vec![("window_ms", Cell::Int(600_000))]),
            ("alerts_due", vec![]),
        ];
        runs.map(|(name, params)| {
            run(h.conn(), name, &params, now).expect(name);
            let stmt = h
                .conn()
                .prepare_cached(find(name).expect(name).sql)
                .expect("cached");
            (
                name,
                stmt.get_status(rusqlite::StatementStatus::FullscanStep),
            )
        })
    };
    let (sparse, dense) = (steps_for(3_000), steps_for(12_000));
    for ((name, a), (_, b)) in sparse.into_iter().zip(dense) {
        assert!(
            b <= a + 20,
            "{name}: {a} full-scan steps over 9,000 samples, {b} over 36,000: it scans samples"
        );
    }
}

#[test]
fn the_table_columns_a_header_names_are_result_columns() {
    let h = History::new();
    let mut named = 0;
    for q in catalog() {
        let Some(cols) = &q.table_columns else {
            continue;
        };
        named += 1;
        let stmt = h.conn().prepare(q.sql).expect("prepare");
        let result: Vec<&str> = stmt.column_names().collect();
        for c in cols {
            assert!(
                result.contains(&c.as_str()),
                "{}: table column {c} is not a result column ({result:?})",
                q.name
            );
        }
    }
    assert!(named >= 1, "trend names its table columns");
}

/// #25 item 1: a leak that starts after 10 h flat (+3 %/h, 0.5 % noise, a sample every 30 s) has its
/// onset found within 15 minutes, with a range that holds it; a leak from the start has its onset at
/// the start; a flat series has none.
#[test]
fn onset_finds_when_a_leak_began() {
    let mut n = Noise(11);
    let onset_s = 10 * 3600 + 17 * 60;
    let pts: Vec<(i64, f64)> = (0..14 * 120)
        .map(|i| {
            let t = i as f64 * 30.0;
            let v = BASE * (1.0 + 0.03 * ((t - onset_s as f64).max(0.0) / 3600.0));
            (T0 + i * 30_000, v * (1.0 + 0.005 * n.next()))
        })
        .collect();
    let now = pts[pts.len() - 1].0;
    let h = History::new();
    let s = h.series("process", "app", "rss", "bytes", &pts);
    let t = run(h.conn(), "onset", &[], now).expect("onset");
    let r = one(&t, s);
    let at = |c: &str| t.get(r, c).as_i64().expect(c);
    let truth = T0 + onset_s * 1000;
    assert!(
        (at("onset_ms") - truth).abs() <= 15 * 60_000,
        "onset {} min from the truth",
        (at("onset_ms") - truth) / 60_000
    );
    assert!(
        at("onset_low_ms") <= truth && truth <= at("onset_high_ms"),
        "truth {} min, range {} .. {} min, best {} min",
        (truth - T0) / 60_000,
        (at("onset_low_ms") - T0) / 60_000,
        (at("onset_high_ms") - T0) / 60_000,
        (at("onset_ms") - T0) / 60_000
    );
    assert!(
        at("onset_high_ms") - at("onset_low_ms") <= 3 * 3_600_000,
        "a range of hours"
    );
    let pct = t.get(r, "pct_per_hour").as_f64().expect("pct");
    assert!((pct - 3.0).abs() < 0.6, "{pct} %/h after the onset");

    // A leak from the first sample: its onset is the start.
    let h = History::new();
    let early: Vec<(i64, f64)> = (0..4 * 120)
        .map(|i| (T0 + i * 30_000, BASE * (1.0 + 0.03 * i as f64 / 120.0)))
        .collect();
    let s = h.series("process", "app", "rss", "bytes", &early);
    let t = run(h.conn(), "onset", &[], early[early.len() - 1].0).expect("onset");
    let r = one(&t, s);
    assert!(t.get(r, "onset_ms").as_i64().expect("onset") - T0 <= 15 * 60_000);

    // Flat with noise: nothing rises after any breakpoint by much, and no onset is claimed
    // with a gain: either no row, or a hinge that removes little of a flat line's residual.
    let h = History::new();
    let mut n = Noise(5);
    let flat: Vec<(i64, f64)> = (0..4 * 120)
        .map(|i| (T0 + i * 30_000, BASE * (1.0 + 0.005 * n.next())))
        .collect();
    h.series("process", "app", "rss", "bytes", &flat);
    let t = run(h.conn(), "onset", &[], flat[flat.len() - 1].0).expect("onset");
    for r in 0..t.rows.len() {
        let gain = t.get(r, "sse_gain").as_f64().unwrap_or(0.0);
        assert!(gain < 0.3, "a flat series' hinge explains {gain} of it");
    }
}

/// #25 item 2: the timeline holds the events table, alerts firing and resolved, cleanups, and
/// restarts — a process that takes the name of one last seen alive before it was first seen; a
/// second process beside the first (both alive at once) is no restart.
#[test]
fn the_timeline_holds_events_alerts_cleanups_and_restarts() {
    let h = History::new();
    let c = h.conn();
    let target = |pid: i64, first: i64, last: i64, gone: Option<i64>| {
        c.execute(
            "INSERT INTO targets (kind, pid, start_time_ms, name, first_seen_ms, last_seen_ms, gone_ms)
             VALUES ('process', ?1, ?2, 'api', ?2, ?3, ?4)",
            (pid, first, last, gone),
        )
        .expect("target");
    };
    target(100, T0, T0 + 3_600_000, Some(T0 + 3_605_000)); // lives an hour
    target(200, T0 + 3_605_000, T0 + 7_200_000, None); // takes its place: a restart
    target(300, T0 + 1_800_000, T0 + 7_200_000, None); // beside 100 before 200: no restart
    c.execute(
        "INSERT INTO events (ts_ms, kind, label, target, pid) VALUES (?1, 'annotation', 'deploy v1.4', NULL, NULL)",
        [T0 + 600_000],
    )
    .expect("event");
    c.execute(
        "INSERT INTO alerts (ts_ms, rule, series_id, event, target, pid, threshold, comparison, severity, message)
         VALUES (?1, 'leak', 1, 'firing', 'api', 200, 0, 'greater_than', 'warning', 'm'),
                (?1 + 1, 'leak', 1, 'repeat', 'api', 200, 0, 'greater_than', 'warning', 'm')",
        [T0 + 5_000_000],
    )
    .expect("alerts");
    let t = run(
        c,
        "events",
        &[
            ("from_ms", Cell::Int(T0)),
            ("target", Cell::Text("api".into())),
        ],
        T0 + 7_200_000,
    )
    .expect("events");
    let rows: Vec<(i64, String, String)> = (0..t.rows.len())
        .map(|r| {
            (
                t.get(r, "ts_ms").as_i64().expect("ts") - T0,
                t.get(r, "kind").as_str().expect("kind").to_string(),
                t.get(r, "label").as_str().expect("label").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (600_000, "annotation".into(), "deploy v1.4".into()),
            (
                3_605_000,
                "restart".into(),
                "restart: pid 100 -> 200".into()
            ),
            (5_000_000, "alert".into(), "leak firing".into()),
        ]
    );
    // Another target's view still holds the host's annotation, not api's restart.
    let t = run(
        c,
        "events",
        &[
            ("from_ms", Cell::Int(T0)),
            ("target", Cell::Text("db".into())),
        ],
        T0 + 7_200_000,
    )
    .expect("events");
    assert_eq!(t.rows.len(), 1);
}

/// #25 item 2: the onset is told relative to the latest event before it that could cause it (an
/// annotation 10 minutes before the leak began), not an alert, and not an event after its range.
#[test]
fn an_onset_is_told_relative_to_the_event_before_it() {
    use crate::analyze::overview::Onset;
    use crate::model::{EventKind, NewEvent};
    let onset_s = 6 * 3600;
    let pts: Vec<(i64, f64)> = (0..10 * 120)
        .map(|i| {
            let t = i as f64 * 30.0;
            (
                T0 + i * 30_000,
                BASE * (1.0 + 0.05 * ((t - onset_s as f64).max(0.0) / 3600.0)),
            )
        })
        .collect();
    let now = pts[pts.len() - 1].0;
    let mut h = History::new();
    let s = h.series("process", "app", "rss", "bytes", &pts);
    let event = |ts_ms: i64, label: &str, target: Option<&str>| NewEvent {
        ts_ms,
        kind: EventKind::Annotation,
        label: label.into(),
        target: target.map(str::to_string),
        pid: None,
    };
    let truth = T0 + onset_s * 1000;
    for e in [
        event(truth - 3 * 3_600_000, "an older deploy", None),
        event(truth - 600_000, "deploy v1.4", Some("app")),
        event(truth - 300_000, "another service's deploy", Some("db")),
        event(truth + 3 * 3_600_000, "after the onset", None),
    ] {
        h.store.add_event(&e).expect("event");
    }
    let o = Onset::of_series(h.conn(), s, 86_400_000, now)
        .expect("onset")
        .expect("a leak has an onset");
    let near = o.after_event.clone().expect("an event before the onset");
    assert_eq!(near.label, "deploy v1.4");
    assert_eq!(near.kind, EventKind::Annotation);
    assert!(
        (near.before_onset_ms - 600_000).abs() <= 15 * 60_000,
        "{} ms before the onset",
        near.before_onset_ms
    );
    assert!(o.words().contains("after \"deploy v1.4\""), "{}", o.words());
}

/// The patterns a series has, as (pattern, period in minutes, amplitude %, at_hour).
fn patterns_of(h: &History, now: i64) -> Vec<(String, i64, f64, Option<i64>)> {
    let t = run(h.conn(), "patterns", &[], now).expect("patterns");
    (0..t.rows.len())
        .map(|r| {
            (
                t.get(r, "pattern").as_str().expect("pattern").to_string(),
                t.get(r, "period_ms").as_i64().expect("period") / 60_000,
                t.get(r, "amplitude_pct").as_f64().expect("amplitude"),
                t.get(r, "at_hour").as_i64(),
            )
        })
        .collect()
}

/// #25 item 4: known schedules are found with their period and size; a flat series, a leak, short
/// spikes and a step have none.
#[test]
fn recurring_patterns_are_found_with_their_period_and_size() {
    let day = 86_400_000;
    let every = |secs: i64, span_ms: i64, f: &dyn Fn(f64) -> f64| -> Vec<(i64, f64)> {
        let mut n = Noise(7);
        (0..span_ms / (secs * 1000))
            .map(|i| {
                let t = (i * secs) as f64;
                (T0 + i * secs * 1000, f(t) * (1.0 + 0.003 * n.next()))
            })
            .collect()
    };
    let one = |pts: Vec<(i64, f64)>| {
        let h = History::new();
        h.series("process", "app", "rss", "bytes", &pts);
        let now = pts[pts.len() - 1].0;
        patterns_of(&h, now)
    };
    // A 2 h cycle of ±10 % over a day.
    let cycle = one(every(30, day, &|t| {
        BASE * (1.0 + 0.1 * (t / 7200.0 * std::f64::consts::TAU).sin())
    }));
    assert_eq!(cycle.len(), 1, "{cycle:?}");
    let (p, period, amp, _) = &cycle[0];
    assert_eq!(p, "cycle");
    assert!((period - 120).abs() <= 15, "period {period} min");
    assert!((amp - 10.0).abs() <= 2.0, "±{amp} %");

    // The same cycle over a leak of 2 %/h: the line is taken out first, the cycle stays.
    let over_leak = one(every(30, day, &|t| {
        BASE * (1.0 + 0.02 * t / 3600.0 + 0.1 * (t / 7200.0 * std::f64::consts::TAU).sin())
    }));
    assert_eq!(over_leak.len(), 1, "{over_leak:?}");
    assert_eq!(over_leak[0].0, "cycle");
    assert!((over_leak[0].1 - 120).abs() <= 15, "{over_leak:?}");

    // A saw-tooth: +30 % over 20 minutes, then back to the floor.
    let saw = one(every(10, 6 * 3_600_000, &|t| {
        BASE * (1.0 + 0.3 * (t % 1200.0) / 1200.0)
    }));
    assert_eq!(saw.len(), 1, "{saw:?}");
    let (p, period, amp, _) = &saw[0];
    assert_eq!(p, "sawtooth");
    assert!((period - 20).abs() <= 2, "period {period} min");
    assert!(
        (amp - 30.0 / 1.15).abs() <= 4.0,
        "rise {amp} % of the mean level"
    );

    // Three days, each with a rise of 20 % from 02:00 to 03:00 UTC, back down by 08:00.
    let start_hour = (T0 / 3_600_000) % 24;
    let daily = one(every(60, 3 * day, &|t| {
        let hour = ((t / 3600.0) as i64 + start_hour) % 24;
        let frac = (t % 3600.0) / 3600.0;
        BASE * match hour {
            2 => 1.0 + 0.2 * frac,
            3..=7 => 1.2 - 0.2 * ((hour - 3) as f64 + frac) / 5.0,
            _ => 1.0,
        }
    }));
    let d: Vec<_> = daily.iter().filter(|p| p.0 == "daily").collect();
    assert_eq!(d.len(), 1, "{daily:?}");
    assert_eq!(d[0].3, Some(2), "rises at 02:00: {daily:?}");
    assert!((d[0].2 - 20.0).abs() <= 5.0, "{daily:?}");

    // None: flat noise, a linear leak, short 3x spikes every 20 min, a step.
    for (name, pts) in [
        ("flat", every(30, day, &|_| BASE)),
        (
            "leak",
            every(30, day, &|t| BASE * (1.0 + 0.02 * t / 3600.0)),
        ),
        (
            "spikes",
            every(10, day, &|t| {
                BASE * if t % 1200.0 < 30.0 { 3.0 } else { 1.0 }
            }),
        ),
        (
            "step",
            every(30, day, &|t| BASE * if t > 43_200.0 { 1.3 } else { 1.0 }),
        ),
    ] {
        let found = one(pts);
        assert!(found.is_empty(), "{name}: {found:?}");
    }
}

//! The comparison's verdicts on histories with known answers, and how sides are written.

use super::*;
use crate::analyze::analysis::tests::History;

const T0: i64 = 1_764_000_000_000;
const MIB: f64 = 1024.0 * 1024.0;

/// A noise that repeats: a linear congruential generator in [-1, 1].
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// Two hours of a process at `mib` MiB growing `mib_per_hour`, a sample every 10 s with ±1 %
/// noise, from `start`.
fn leak(start: i64, mib: f64, mib_per_hour: f64, seed: u64) -> Vec<(i64, f64)> {
    let mut n = Noise(seed);
    (0..720)
        .map(|i| {
            let h = i as f64 * 10.0 / 3600.0;
            (
                start + i * 10_000,
                (mib + mib_per_hour * h) * MIB * (1.0 + 0.01 * n.next()),
            )
        })
        .collect()
}

/// The same history file holds A (the first two hours) and B (two hours from the fourth); each
/// case is a pair of growth rates with its known verdict.
#[test]
fn verdicts_follow_the_slopes_and_their_uncertainty() {
    let cases = [
        (20.0, 0.0, Change::Fixed),
        (20.0, 8.0, Change::Improved),
        (20.0, 20.0, Change::Unchanged),
        (0.0, 0.0, Change::Unchanged),
        (5.0, 20.0, Change::Worse),
        (0.0, 10.0, Change::Worse),
        // 0.2 MiB/h on 200 MiB is 0.1 %/h: measurable perhaps, but under a leak's least rate.
        (0.0, 0.2, Change::Unchanged),
    ];
    for (i, (ra, rb, want)) in cases.into_iter().enumerate() {
        let h = History::new();
        let b_start = T0 + 4 * 3_600_000;
        let mut pts = leak(T0, 200.0, ra, 1 + i as u64);
        pts.extend(leak(b_start, 200.0, rb, 100 + i as u64));
        h.series("process", "app", "rss", "bytes", &pts);
        let a = Side {
            label: "A".into(),
            db: h.path(),
            from_ms: T0,
            to_ms: T0 + 2 * 3_600_000,
        };
        let b = Side {
            label: "B".into(),
            db: h.path(),
            from_ms: b_start,
            to_ms: b_start + 2 * 3_600_000,
        };
        let c = compare(a, b, &Filter::default()).expect("compare");
        assert_eq!(c.rows.len(), 1);
        let r = &c.rows[0];
        assert_eq!(r.change, want, "A {ra} MiB/h, B {rb} MiB/h: {}", r.why);
        let sa = r.a.slope_per_hour.expect("slope") / MIB;
        assert!((sa - ra).abs() < 1.0, "A's slope {sa} MiB/h, truth {ra}");
        assert!(r.a.peak >= r.a.avg && r.a.avg > 190.0 * MIB);
        assert_eq!(c.any_worse(), want == Change::Worse);
    }
}

/// Targets are matched by kind and name; one side only is said; a filter that leaves nothing is an
/// error naming the side.
#[test]
fn targets_are_matched_by_name_and_the_rest_is_listed() {
    let h = History::new();
    let b_start = T0 + 4 * 3_600_000;
    h.series("process", "app", "rss", "bytes", &leak(T0, 100.0, 0.0, 1));
    h.series("process", "old", "rss", "bytes", &leak(T0, 100.0, 0.0, 2));
    h.series(
        "process",
        "new",
        "rss",
        "bytes",
        &leak(b_start, 100.0, 0.0, 3),
    );
    // app restarted between the sides: another target of the same name.
    h.store
        .connection()
        .execute(
            "INSERT INTO targets (kind, pid, start_time_ms, name, first_seen_ms, last_seen_ms)
             VALUES ('process', 777, ?1, 'app', ?1, ?1)",
            [b_start],
        )
        .expect("target");
    let id = h.store.connection().last_insert_rowid();
    h.store
        .connection()
        .execute(
            "INSERT INTO series (target_id, metric, unit) VALUES (?1, 'rss', 'bytes')",
            [id],
        )
        .expect("series");
    let sid = h.store.connection().last_insert_rowid();
    for (ts, v) in leak(b_start, 100.0, 30.0, 4) {
        h.store
            .connection()
            .execute("INSERT INTO samples VALUES (?1, ?2, ?3)", (sid, ts, v))
            .expect("sample");
    }
    let side = |from_ms| Side {
        label: "x".into(),
        db: h.path(),
        from_ms,
        to_ms: from_ms + 2 * 3_600_000,
    };
    let c = compare(side(T0), side(b_start), &Filter::default()).expect("compare");
    assert_eq!(c.rows.len(), 1);
    assert_eq!(
        (c.rows[0].target.as_str(), c.rows[0].b.pid),
        ("app", Some(777))
    );
    assert_eq!(c.rows[0].change, Change::Worse);
    assert_eq!(c.only_in_a, ["process old rss"]);
    assert_eq!(c.only_in_b, ["process new rss"]);
    let none = Filter {
        metrics: vec![],
        target: Some("nobody".into()),
    };
    let err = compare(side(T0), side(b_start), &none).expect_err("nothing to compare");
    assert!(err.to_string().contains("\"nobody\""), "{err}");
}

#[test]
fn sides_are_runs_ranges_or_files() {
    let now = T0;
    assert_eq!(
        SideSpec::parse("run:3", now).expect("run"),
        SideSpec::Run(RunRef::Id(3))
    );
    assert_eq!(
        SideSpec::parse("run:last", now).expect("run"),
        SideSpec::Run(RunRef::Back(0))
    );
    assert_eq!(
        SideSpec::parse("run:previous", now).expect("run"),
        SideSpec::Run(RunRef::Back(1))
    );
    assert_eq!(
        SideSpec::parse("2026-12-01T10:00:00Z..2026-12-01T12:00:00Z", now).expect("range"),
        SideSpec::Range {
            from_ms: 1_796_119_200_000,
            to_ms: 1_796_126_400_000
        }
    );
    for bad in [
        "run:x",
        "run:",
        "12:00..10:00",
        "no-such-file.db",
        "-2h..soon",
    ] {
        assert!(SideSpec::parse(bad, now).is_err(), "{bad}");
    }
}

/// A side too short for a growth rate (one sample: a recorder stopped after its first tick) is
/// still compared by its peak and average, its verdict `unchanged` for want of a rate.
#[test]
fn a_side_too_short_for_a_rate_is_compared_by_its_levels() {
    let h = History::new();
    let b_at = T0 + 4 * 3_600_000;
    let mut pts = leak(T0, 200.0, 20.0, 1);
    pts.push((b_at, 230.0 * MIB));
    h.series("process", "app", "rss", "bytes", &pts);
    let a = Side {
        label: "A".into(),
        db: h.path(),
        from_ms: T0,
        to_ms: T0 + 2 * 3_600_000,
    };
    let b = Side {
        label: "B".into(),
        db: h.path(),
        from_ms: b_at - 1000,
        to_ms: b_at + 1000,
    };
    let c = compare(a, b, &Filter::default()).expect("compared");
    let r = &c.rows[0];
    assert_eq!(r.b.samples, 1);
    assert_eq!(r.b.peak, 230.0 * MIB);
    assert!(r.b.slope_per_hour.is_none());
    assert_eq!(r.change, Change::Unchanged);
    assert!(r.why.contains("too few samples"), "{}", r.why);
}

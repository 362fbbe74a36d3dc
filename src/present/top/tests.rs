//! `memtrail top`'s screen against a known history, drawn on ratatui's test backend and compared
//! with the screen kept as text in `tests/golden/top.txt`; and its keys.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::analyze::analysis::tests::History;
use crate::present::report::tests::golden;

const T0: i64 = 1_790_000_000_000;
const MIB: f64 = 1024.0 * 1024.0;
const MIN: i64 = 60_000;

/// Two hours at 10 s: the system flat at 2 GiB of 8; `api` leaking 60 MiB/h from 100 MiB (its
/// anonymous memory grows), `worker` flat at 1.5 GiB. `process_rss_leak` fires on api, and
/// `process_rss_high` is pending on worker.
fn history() -> (History, i64) {
    let h = History::new();
    let pts = |f: &dyn Fn(f64) -> f64| -> Vec<(i64, f64)> {
        (0..=720)
            .map(|i| (T0 + i * 10_000, f(i as f64 * 10.0)))
            .collect()
    };
    h.series(
        "system",
        "system",
        "mem_used",
        "bytes",
        &pts(&|_| 2048.0 * MIB),
    );
    h.series(
        "system",
        "system",
        "mem_total",
        "bytes",
        &pts(&|_| 8192.0 * MIB),
    );
    let leak = |t: f64| (100.0 + 60.0 * t / 3600.0) * MIB;
    let api = h.series("process", "api", "rss", "bytes", &pts(&leak));
    h.series(
        "process",
        "api",
        "rss_anon",
        "bytes",
        &pts(&|t| leak(t) - 10.0 * MIB),
    );
    h.series("process", "api", "rss_file", "bytes", &pts(&|_| 10.0 * MIB));
    let worker = h.series("process", "worker", "rss", "bytes", &pts(&|_| 1536.0 * MIB));
    crate::analyze::alerts::install(
        h.conn(),
        &crate::analyze::alerts::default_rules(&Default::default()),
    )
    .expect("rules");
    let now = T0 + 120 * MIN;
    h.conn()
        .execute(
            "INSERT INTO alert_state (rule, series_id, evaluated_ms, observed, pending_since_ms, firing_since_ms)
             VALUES ('process_rss_leak', ?1, ?3, 40.0, ?3 - 600000, ?3 - 300000),
                    ('process_rss_high', ?2, ?3, ?4, ?3 - 60000, NULL)",
            (api, worker, now, 1536.0 * MIB),
        )
        .expect("states");
    h.conn()
        .execute(
            "INSERT INTO alerts (ts_ms, rule, series_id, event, kind, target, pid, metric, observed,
                                 threshold, comparison, severity, message)
             VALUES (?2 - 300000, 'process_rss_leak', ?1, 'firing', 'process', 'api', 4242, 'rss',
                     40.0, 1.0, 'slope', 'warning', 'leak')",
            (api, now),
        )
        .expect("an alert");
    (h, now)
}

/// The board of the history at its end, verdicts included.
fn board_at(h: &History, now: i64, buckets: usize) -> Board {
    let mut b = board(h.conn(), now, 10 * MIN, buckets).expect("board");
    let ids: Vec<i64> = b.targets.iter().map(|t| t.series_id).collect();
    b.attach_verdicts(&verdicts(h.conn(), &ids, now).expect("verdicts"));
    b.recorder = "recorder: not running; run 1 ended 2026-09-21 16:13:20 UTC".into();
    b
}

/// The screen as text, a line per row, trailing blanks cut.
fn screen(board: &Board, view: &View, detail: Option<&Detail>, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| draw(f, board, view, detail, 0.4))
        .expect("draw");
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn the_list_matches_the_golden_screen() {
    let (h, now) = history();
    let b = board_at(&h, now, 20);
    let s = screen(&b, &View::new(false), None, 110, 8);
    golden("top.txt", &s);
    // What the golden screen must say, whatever its layout.
    assert!(
        s.contains("process api (4242)") && s.contains("LEAK +"),
        "{s}"
    );
    assert!(s.contains("rss_leak!"), "{s}");
    assert!(s.contains("rss_high?"), "{s}");
    assert!(s.contains("1.5 GiB") && s.contains("2.0 GiB"), "{s}");
}

#[test]
fn the_sparkline_follows_the_values() {
    assert_eq!(
        sparkline(&[Some(1.0), Some(2.0), None, Some(8.0)], 4),
        "▁▂ █"
    );
    assert_eq!(sparkline(&[Some(5.0), Some(5.0)], 2), "▁▁");
    // The newest buckets when the screen is narrower than the history.
    assert_eq!(sparkline(&[Some(0.0), Some(1.0), Some(2.0)], 2), "▁█");
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn keys_select_sort_filter_open_and_quit() {
    let (h, now) = history();
    let b = board_at(&h, now, 20);
    let mut v = View::new(false);
    let names = |v: &View| -> Vec<String> { v.rows(&b).iter().map(|t| t.name.clone()).collect() };
    // The system first, then by memory: worker (1.5 GiB) before api.
    assert_eq!(names(&v), ["system", "worker", "api"]);
    assert_eq!(v.on_key(key(KeyCode::Char('j')), 3), Action::None);
    assert_eq!(v.on_key(key(KeyCode::Down), 3), Action::None);
    assert_eq!(v.on_key(key(KeyCode::Down), 3), Action::None);
    assert_eq!(v.selected, 2, "stops at the last row");
    v.on_key(key(KeyCode::Char('k')), 3);
    assert_eq!(v.selected, 1);
    // s: by growth, the leaking api first after the system.
    v.on_key(key(KeyCode::Char('s')), 3);
    assert_eq!(v.sort, Sort::Growth);
    assert_eq!(names(&v), ["system", "api", "worker"]);
    // /: a filter, typed; Enter keeps it.
    v.on_key(key(KeyCode::Char('/')), 3);
    for c in "wor".chars() {
        v.on_key(key(KeyCode::Char(c)), 3);
    }
    v.on_key(key(KeyCode::Enter), 3);
    assert_eq!(
        (v.screen, names(&v)),
        (Screen::List, vec!["worker".to_string()])
    );
    // Enter opens the chart, Esc goes back, q quits.
    assert_eq!(v.on_key(key(KeyCode::Enter), 1), Action::OpenDetail);
    assert_eq!(v.screen, Screen::Detail);
    v.on_key(key(KeyCode::Esc), 1);
    assert_eq!(v.screen, Screen::List);
    v.on_key(key(KeyCode::Char('?')), 1);
    assert_eq!(v.screen, Screen::Help);
    v.on_key(key(KeyCode::Char('x')), 1);
    assert_eq!(v.screen, Screen::List);
    assert_eq!(v.on_key(key(KeyCode::Char('q')), 1), Action::Quit);
}

#[test]
fn the_chart_shows_the_kinds_of_memory_and_fits_80_columns() {
    let (h, now) = history();
    let b = board_at(&h, now, 20);
    let api = b.targets.iter().find(|t| t.name == "api").expect("api");
    let d = detail(h.conn(), &b, api, 80).expect("detail");
    let names: Vec<&str> = d.lines.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["rss", "rss_anon", "rss_file"]);
    assert_eq!(
        d.marks,
        [(now - 300_000, "process_rss_leak firing".to_string())]
    );
    let mut v = View::new(false);
    v.screen = Screen::Detail;
    let s = screen(&b, &v, Some(&d), 80, 24);
    assert!(s.contains("process api (4242) — by kind of memory"), "{s}");
    assert!(s.contains("rss_anon") && s.contains("rss_file"), "{s}");
    assert!(
        s.contains("process_rss_leak firing"),
        "the alert in the legend: {s}"
    );
    // The list at 80 x 24 (an ssh session's default) keeps every column.
    let s = screen(&b, &View::new(false), None, 80, 24);
    for col in ["TARGET", "NOW", "VERDICT", "LIMIT IN", "RULES"] {
        assert!(s.contains(col), "{col} at 80 columns:\n{s}");
    }
}

//! Scrape benchmark (#26 item 6): what one `/metrics` scrape costs memtrail for 1,000 series — the
//! `latest` query (a primary-key seek per series) and the text exposition with the cached
//! analysis — against a baseline measured in the same run: reading the 1,000 rows of the
//! `series_info` view into a table, the least a database-backed scrape must do. Also the cost of
//! refreshing the analysis export, which the recorder pays at most every 30 s, not per scrape.
//!
//! Run: `cargo bench --bench scrape` (target from the issue: a scrape under 5 ms).

use std::time::{Duration, Instant};

#[path = "support/timing.rs"]
mod timing;
use timing::time;

use memtrail::analyze::analysis;
use memtrail::analyze::export::Export;
use memtrail::model::{Cell, ImportedSeries, Kind, TargetKey, Unit};
use memtrail::serve::prometheus::{Options, RecorderFigures, exposition};
use memtrail::store::{self, Store};

const METRICS: [(&str, Unit); 10] = [
    ("rss", Unit::Bytes),
    ("rss_anon", Unit::Bytes),
    ("rss_file", Unit::Bytes),
    ("rss_shmem", Unit::Bytes),
    ("vms", Unit::Bytes),
    ("swap", Unit::Bytes),
    ("threads", Unit::Count),
    ("fds", Unit::Count),
    ("tree_rss", Unit::Bytes),
    ("uss", Unit::Bytes),
];

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store =
        Store::open(&dir.path().join("scrape.db"), Duration::from_secs(5)).expect("open");
    // 100 processes x 10 metrics, an hour at 5 s each, ending now.
    let now = memtrail::units::now_ms();
    let mut series = Vec::new();
    for p in 0..100u32 {
        let key = TargetKey {
            kind: Kind::Process,
            pid: Some(10_000 + p),
            start_time_ms: Some(now - 7_200_000),
            name: format!("worker{p}"),
        };
        for (metric, unit) in METRICS {
            let base = 100e6 + p as f64 * 1e6;
            let points = (0..720)
                .map(|i| (now - 3_600_000 + i * 5000, base * (1.0 + 0.0001 * i as f64)))
                .collect();
            series.push(ImportedSeries {
                key: key.clone(),
                cmdline: String::new(),
                metric: metric.into(),
                unit,
                points,
            });
        }
    }
    store.import(&series).expect("import");
    let conn = store.connection();

    let export_time = {
        let t = Instant::now();
        let e = Export::default().refresh(conn, now).expect("export");
        (t.elapsed(), e)
    };
    let (refresh, export) = export_time;
    let latest =
        analysis::run(conn, "latest", &[("max_age_ms", Cell::Int(600_000))], now).expect("latest");
    assert_eq!(latest.rows.len(), 1000, "1,000 series");
    let figures = RecorderFigures::default();

    let baseline = time(200, || {
        store::query_table(conn, "SELECT * FROM series_info", &[] as &[(&str, Cell)])
            .expect("baseline")
    });
    let query = time(200, || {
        analysis::run(conn, "latest", &[("max_age_ms", Cell::Int(600_000))], now).expect("latest")
    });
    let render = time(200, || {
        exposition(&latest, &export, figures, Options::text())
    });
    let scrape = time(200, || {
        let t = analysis::run(conn, "latest", &[("max_age_ms", Cell::Int(600_000))], now)
            .expect("latest");
        exposition(&t, &export, figures, Options::text())
    });
    let text = exposition(&latest, &export, figures, Options::text());
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "1,000 series ({} exported trends), exposition {} lines, {:.0} KiB",
        export.trends.len(),
        text.lines().count(),
        text.len() as f64 / 1024.0
    );
    println!(
        "baseline (series_info into a table):  {:>7.3} ms",
        ms(baseline)
    );
    println!(
        "latest query:                         {:>7.3} ms  {:>5.2}x the baseline",
        ms(query),
        ms(query) / ms(baseline)
    );
    println!(
        "exposition (render):                  {:>7.3} ms",
        ms(render)
    );
    println!(
        "scrape (query + render):              {:>7.3} ms  {:>5.2}x the baseline  (target: under 5 ms)",
        ms(scrape),
        ms(scrape) / ms(baseline)
    );
    println!(
        "export refresh (trend of rss, tree_rss, usage, mem_used; once per 30 s, not per scrape): {:.1} ms",
        ms(refresh)
    );
}

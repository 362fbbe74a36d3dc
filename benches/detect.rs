//! Detection benchmark (issue #22): a generated corpus of 24 h memory histories, each with a known
//! truth (no leak, or a leak from a known onset), replayed through memtrail's default rules as a
//! live recorder would evaluate them (every minute), beside two baselines computed on the same
//! points: the seed monitor's rule (newest sample vs the sample 10 minutes earlier, +20 %, 15-minute
//! cooldown) and a Prometheus-style rule (`deriv(rss[1h]) > 0 and predict_linear(rss[1h], 4h) >
//! limit`, `for: 15m`, the limit twice the trace's base level). Per trace: memtrail's verdict at the
//! end, the first firing after the onset (minutes) and every firing that is a false alarm (before
//! the onset, or anywhere in a trace without a leak), for each of the three; then totals.
//!
//! Run: `cargo bench --bench detect` (`DETECT_SEED=N` draws other noise, phases and sizes, so the
//! rules are judged on histories they were not tuned on; `DETECT_ONLY=name` runs one trace and
//! lists its every firing; `DETECT_AT=0.2,1.5` prints the trend's figures at those hours).

use std::time::{Duration, Instant};

use memtrail::analyze::alerts::{Engine, default_rules, install};
use memtrail::analyze::analysis;
use memtrail::config::NotifySection;
use memtrail::model::ImportedSeries;
use memtrail::model::{Cell, Kind, TargetKey, Unit};
use memtrail::store::Store;

const T0: i64 = 1_790_000_000_000;
const STEP_S: i64 = 10;
const HOURS: i64 = 24;
const EVAL_S: i64 = 60;
const MIB: f64 = 1024.0 * 1024.0;

/// A repeatable random source.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of four uniforms), unit variance.
    fn normal(&mut self) -> f64 {
        (self.next() + self.next() + self.next() + self.next() - 2.0) * 3f64.sqrt()
    }
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// One life of a process: its points (seconds from the trace start, value).
type Life = Vec<(i64, f64)>;

struct Trace {
    name: &'static str,
    /// The process started with the first life (a warm-up, a restart), not a day before it.
    young: bool,
    /// What a correct detector says: the onset of the leak (seconds), or None.
    onset_s: Option<i64>,
    base: f64,
    lives: Vec<Life>,
}

fn sample(r: &mut Rng, from_s: i64, to_s: i64, noise: f64, f: impl Fn(f64) -> f64) -> Life {
    (from_s / STEP_S..to_s / STEP_S)
        .map(|i| {
            let t = (i * STEP_S) as f64;
            (i * STEP_S, f(t) * (1.0 + noise * r.normal()))
        })
        .collect()
}

fn corpus(seed: u64) -> Vec<Trace> {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let end = HOURS * 3600;
    let mut traces = Vec::new();
    let mut add = |name: &'static str, onset_s, base, lives: Vec<Life>| {
        traces.push(Trace {
            young: name.starts_with("cache_warmup") || lives.len() > 1,
            name,
            onset_s,
            base,
            lives,
        })
    };
    let noise = r.between(0.002, 0.01);
    let b = r.between(150.0, 400.0) * MIB;
    let ph = r.between(0.0, 1.0);

    // --- quiet: normal behaviour, no leak ---
    add("flat", None, b, vec![sample(&mut r, 0, end, noise, |_| b)]);
    let (every, dur) = (1200.0, 30.0);
    add(
        "spikes_3x_30s_every_20m",
        None,
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            if (t + ph * every) % every < dur {
                3.0 * b
            } else {
                b
            }
        })],
    );
    let mut heavy = Rng(seed ^ 0xABCD);
    add(
        "heavy_tailed_noise",
        None,
        b,
        vec![
            (0..end / STEP_S)
                .map(|i| {
                    let c = (std::f64::consts::PI * (heavy.next() - 0.5)).tan();
                    (i * STEP_S, b * (1.0 + (0.01 * c).clamp(-0.5, 2.0)))
                })
                .collect(),
        ],
    );
    let p = r.between(200.0, 600.0);
    add(
        "gc_sawtooth",
        None,
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            b * (1.0 + 0.25 * ((t + ph * p) % p) / p)
        })],
    );
    let p = r.between(3000.0, 4200.0);
    add(
        "gc_sawtooth_hour_long_rises",
        None,
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            b * (1.0 + 0.3 * ((t + ph * p) % p) / p)
        })],
    );
    let tau = r.between(600.0, 1800.0);
    add(
        "cache_warmup_log_3h",
        None,
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            let t = t.min(3.0 * 3600.0);
            b * (1.0 + 0.4 * (1.0 + t / tau).ln() / (1.0 + 10800.0 / tau).ln())
        })],
    );
    let at = r.between(4.0, 12.0) * 3600.0;
    add(
        "one_time_step_up",
        None,
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            if t < at { b } else { b * 1.3 }
        })],
    );
    let (period, phase) = (r.between(6000.0, 8400.0), r.between(0.0, 6.3));
    // Ends at any phase of the cycle.
    let cut = end - r.between(0.0, 7200.0) as i64;
    add(
        "cycle_2h_10pct",
        None,
        b,
        vec![sample(&mut r, 0, cut, noise, move |t| {
            b * (1.0 + 0.1 * (2.0 * std::f64::consts::PI * t / period + phase).sin())
        })],
    );
    let life = r.between(2.5, 4.0) * 3600.0;
    let lives = (0..(end as f64 / life).ceil() as i64)
        .map(|k| {
            let start = (k as f64 * life) as i64;
            let stop = (((k + 1) as f64 * life) as i64).min(end);
            sample(&mut r, start, stop, noise, move |t| {
                let age = t - start as f64;
                b * (0.5 + 0.5 * (1.0 - (-age / 120.0).exp()))
            })
        })
        .collect();
    add("restarted_every_few_hours", None, b, lives);
    let bp = r.between(6000.0, 8000.0);
    add(
        "batch_job_10m_peak",
        None,
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            if (t + ph * bp) % bp < 600.0 {
                1.6 * b
            } else {
                b
            }
        })],
    );
    let mut ou = 0.0;
    let mut walk = Rng(seed ^ 0x5EED);
    add(
        "mean_reverting_wander",
        None,
        b,
        vec![
            (0..end / STEP_S)
                .map(|i| {
                    // Ornstein-Uhlenbeck: 30-minute time constant, 4 % standard deviation.
                    let a = (STEP_S as f64) / 1800.0;
                    ou += -a * ou + 0.04 * (2.0 * a).sqrt() * walk.normal();
                    (i * STEP_S, b * (1.0 + ou) * (1.0 + noise * walk.normal()))
                })
                .collect(),
        ],
    );
    let fill_every = r.between(5.0 * 3600.0, 7.0 * 3600.0);
    add(
        "cache_fill_then_evicted",
        None,
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            let x = (t + ph * fill_every) % fill_every;
            if x < 2400.0 {
                b * (1.0 + 0.3 * x / 2400.0)
            } else {
                b
            }
        })],
    );

    // --- leaks, each from a known onset ---
    let onset = (r.between(1.5, 3.0) * 3600.0) as i64;
    for (name, pct) in [
        ("leak_1pct_h", 1.0),
        ("leak_3pct_h", 3.0),
        ("leak_10pct_h", 10.0),
        ("leak_25pct_h", 25.0),
        ("leak_50pct_h", 50.0),
    ] {
        let o = onset as f64;
        add(
            name,
            Some(onset),
            b,
            vec![sample(&mut r, 0, end, noise, move |t| {
                b * (1.0 + pct / 100.0 * ((t - o).max(0.0) / 3600.0))
            })],
        );
    }
    let o = onset as f64;
    add(
        "staircase_4pct_every_30m",
        Some(onset),
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            b * (1.0 + 0.04 * ((t - o).max(0.0) / 1800.0).floor())
        })],
    );
    add(
        "leak_3pct_h_under_2h_cycle",
        Some(onset),
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            b * (1.0 + 0.03 * ((t - o).max(0.0) / 3600.0))
                * (1.0 + 0.1 * (2.0 * std::f64::consts::PI * t / period + phase).sin())
        })],
    );
    let late = (10.0 * 3600.0 + r.between(0.0, 1800.0)) as i64;
    let lo = late as f64;
    add(
        "leak_3pct_h_after_10h_flat",
        Some(late),
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            b * (1.0 + 0.03 * ((t - lo).max(0.0) / 3600.0))
        })],
    );
    add(
        "leak_with_plateaus",
        Some(onset),
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            // 8 %/h for an hour, then an hour flat, again and again.
            let x = (t - o).max(0.0) / 3600.0;
            let rises = x.floor() / 2.0;
            let within = x - 2.0 * rises.floor();
            b * (1.0 + 0.08 * (rises.floor() + within.min(1.0)))
        })],
    );
    add(
        "leak_under_gc_sawtooth",
        Some(onset),
        b,
        vec![sample(&mut r, 0, end, noise, move |t| {
            b * (1.0 + 0.05 * ((t - o).max(0.0) / 3600.0)) * (1.0 + 0.2 * (t % 300.0) / 300.0)
        })],
    );
    // Restarted every 4 h, and every life leaks 10 %/h from its start (after a 2-minute warm-up):
    // the truth is the first life's start; a firing in any life is a true one.
    let lives = (0..HOURS / 4)
        .map(|k| {
            let start = k * 4 * 3600;
            sample(&mut r, start, start + 4 * 3600, noise, move |t| {
                let age = t - start as f64;
                b * (0.5 + 0.5 * (1.0 - (-age / 120.0).exp())) * (1.0 + 0.1 * age / 3600.0)
            })
        })
        .collect();
    add("restarted_every_4h_each_life_leaks", Some(0), b, lives);
    traces
}

/// When each detector fired (seconds from the trace start).
struct Firings {
    memtrail: Vec<(i64, String)>,
    seed: Vec<i64>,
    prometheus: Vec<i64>,
}

fn value_at(life: &Life, t: i64) -> Option<f64> {
    let i = life.partition_point(|p| p.0 <= t);
    (i > 0).then(|| life[i - 1].1)
}

/// The seed monitor's rule on one life: newest vs 10 minutes earlier > +20 %, 15-minute cooldown.
fn seed_rule(life: &Life, evals: &[i64], out: &mut Vec<i64>) {
    let mut last: Option<i64> = None;
    let start = life.first().map_or(0, |p| p.0);
    for &t in evals.iter().filter(|&&t| t >= start + 600) {
        let (Some(now), Some(then)) = (value_at(life, t), value_at(life, t - 600)) else {
            continue;
        };
        if t > life.last().map_or(0, |p| p.0) {
            continue;
        }
        if now > then * 1.2 && last.is_none_or(|l| t - l >= 900) {
            out.push(t);
            last = Some(t);
        }
    }
}

/// `deriv(x[1h]) > 0 and predict_linear(x[1h], 4h) > limit`, `for: 15m`; one firing per episode.
fn prometheus_rule(life: &Life, evals: &[i64], limit: f64, out: &mut Vec<i64>) {
    let (first, last) = (
        life.first().map_or(0, |p| p.0),
        life.last().map_or(0, |p| p.0),
    );
    let mut pending: Option<i64> = None;
    let mut firing = false;
    for &t in evals.iter().filter(|&&t| t >= first && t <= last) {
        let lo = life.partition_point(|p| p.0 < t - 3600);
        let hi = life.partition_point(|p| p.0 <= t);
        let pts = &life[lo..hi];
        let holds = pts.len() >= 2 && {
            let n = pts.len() as f64;
            let mx = pts.iter().map(|p| p.0 as f64).sum::<f64>() / n;
            let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
            let sxy: f64 = pts.iter().map(|p| (p.0 as f64 - mx) * (p.1 - my)).sum();
            let sxx: f64 = pts.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
            let slope = sxy / sxx;
            slope > 0.0 && my + slope * (t as f64 + 4.0 * 3600.0 - mx) > limit
        };
        if holds {
            let since = *pending.get_or_insert(t);
            if !firing && t - since >= 900 {
                out.push(t);
                firing = true;
            }
        } else {
            pending = None;
            firing = false;
        }
    }
}

fn run_trace(trace: &Trace) -> (Firings, String, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("d.db"), Duration::from_secs(5)).expect("open");
    let mut series = vec![ImportedSeries {
        key: TargetKey::system(),
        cmdline: String::new(),
        metric: "mem_total".into(),
        unit: Unit::Bytes,
        points: vec![
            (T0, 16.0 * 1024.0 * MIB),
            (T0 + HOURS * 3_600_000, 16.0 * 1024.0 * MIB),
        ],
    }];
    for (k, life) in trace.lives.iter().enumerate() {
        let start = life.first().map_or(0, |p| p.0);
        series.push(ImportedSeries {
            key: TargetKey {
                kind: Kind::Process,
                pid: Some(1000 + k as u32),
                // A service that was running long before the recording started, unless it starts
                // with the trace (a warm-up) or restarts in it.
                start_time_ms: Some(if trace.young {
                    T0 + start * 1000
                } else {
                    T0 - 86_400_000
                }),
                name: "service".into(),
            },
            cmdline: String::new(),
            metric: "rss".into(),
            unit: Unit::Bytes,
            points: life.iter().map(|&(t, v)| (T0 + t * 1000, v)).collect(),
        });
    }
    store.import(&series).expect("import");
    let conn = store.connection();
    let rules: Vec<_> = default_rules(&NotifySection::default())
        .into_iter()
        .filter(|r| r.kind == Some(memtrail::model::Kind::Process))
        .collect();
    install(conn, &rules).expect("install");
    let mut engine = Engine::new(rules);
    let evals: Vec<i64> = (1..=HOURS * 3600 / EVAL_S).map(|i| i * EVAL_S).collect();
    let mut f = Firings {
        memtrail: Vec::new(),
        seed: Vec::new(),
        prometheus: Vec::new(),
    };
    let started = Instant::now();
    for &t in &evals {
        for e in engine.evaluate(conn, T0 + t * 1000).expect("evaluate") {
            if e.event == memtrail::model::AlertEventKind::Firing {
                f.memtrail.push((t, e.rule));
            }
        }
    }
    let took = started.elapsed();
    // DETECT_AT=h1,h2,...: the trend's figures at those hours (to see why a rule fired).
    for h in std::env::var("DETECT_AT")
        .unwrap_or_default()
        .split(',')
        .filter_map(|h| h.parse::<f64>().ok())
    {
        let t = analysis::run(
            conn,
            "trend",
            &[("metric", Cell::Text("rss".into()))],
            T0 + (h * 3_600_000.0) as i64,
        )
        .expect("trend");
        for r in 0..t.rows.len() {
            let col = |c: &str| format!("{}={:?}", c, t.get(r, c));
            println!(
                "at {h} h: {}",
                [
                    "pid",
                    "classification",
                    "pct_per_hour",
                    "mk_z",
                    "early_pct_per_hour",
                    "late_pct_per_hour",
                    "growth_pct",
                    "coverage",
                    "prior_high",
                    "fitted_now",
                    "mean"
                ]
                .map(col)
                .join(" ")
            );
        }
    }
    for life in &trace.lives {
        seed_rule(life, &evals, &mut f.seed);
        prometheus_rule(life, &evals, 2.0 * trace.base, &mut f.prometheus);
    }
    f.seed.sort();
    f.prometheus.sort();
    let end_ms = T0 + trace.lives.last().and_then(|l| l.last()).map_or(0, |p| p.0) * 1000;
    let t = analysis::run(
        conn,
        "trend",
        &[("metric", Cell::Text("rss".into()))],
        end_ms,
    )
    .expect("trend");
    let verdict = (0..t.rows.len())
        .filter_map(|r| t.get(r, "classification").as_str().map(String::from))
        .next()
        .unwrap_or_else(|| "-".into());
    (f, verdict, took)
}

/// (first firing after the onset, in minutes; false alarms) for one detector.
fn score(times: &[i64], onset: Option<i64>) -> (Option<f64>, usize) {
    match onset {
        None => (None, times.len()),
        Some(o) => (
            times
                .iter()
                .find(|&&t| t >= o)
                .map(|&t| (t - o) as f64 / 60.0),
            times.iter().filter(|&&t| t < o).count(),
        ),
    }
}

fn cell((latency, false_alarms): (Option<f64>, usize), leak: bool) -> String {
    let hit = match (leak, latency) {
        (false, _) => "-".to_string(),
        (true, Some(m)) => format!("{m:.0} min"),
        (true, None) => "missed".to_string(),
    };
    format!("{hit} / {false_alarms}")
}

fn main() {
    let seed = std::env::var("DETECT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64);
    let only = std::env::var("DETECT_ONLY").ok();
    println!(
        "detect: corpus seed {seed}, {HOURS} h per trace, a sample every {STEP_S} s, rules evaluated every {EVAL_S} s"
    );
    println!();
    println!(
        "| trace | truth | memtrail verdict at end | memtrail: first firing after onset / false alarms | rules that fired | seed rule | Prometheus-style |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut totals: [(usize, usize, Vec<f64>); 3] = Default::default();
    let (mut leaks, mut quiet) = (0, 0);
    let mut eval_time = Duration::ZERO;
    let mut evals = 0u32;
    for trace in corpus(seed) {
        if only.as_deref().is_some_and(|o| o != trace.name) {
            continue;
        }
        let (f, verdict, took) = run_trace(&trace);
        eval_time += took;
        evals += (HOURS * 3600 / EVAL_S) as u32;
        let leak = trace.onset_s.is_some();
        if leak {
            leaks += 1;
        } else {
            quiet += 1;
        }
        let mt: Vec<i64> = f.memtrail.iter().map(|x| x.0).collect();
        let scores = [
            score(&mt, trace.onset_s),
            score(&f.seed, trace.onset_s),
            score(&f.prometheus, trace.onset_s),
        ];
        for (tot, s) in totals.iter_mut().zip(scores) {
            if let Some(l) = s.0 {
                tot.0 += 1;
                tot.2.push(l);
            }
            if s.1 > 0 {
                tot.1 += 1;
            }
        }
        if only.is_some() {
            // One trace asked for: every firing, to see what fired when.
            for (t, rule) in &f.memtrail {
                println!("firing: {rule} at {:.2} h", *t as f64 / 3600.0);
            }
        }
        // Each rule that fired, with when it first fired (hours from the trace start).
        let mut fired: Vec<String> = Vec::new();
        for (t, rule) in &f.memtrail {
            if !fired.iter().any(|x| x.starts_with(&format!("{rule} "))) {
                fired.push(format!("{rule} {:.1} h", *t as f64 / 3600.0));
            }
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            trace.name,
            trace.onset_s.map_or("no leak".into(), |o| format!(
                "leak from {:.1} h",
                o as f64 / 3600.0
            )),
            verdict,
            cell(scores[0], leak),
            if fired.is_empty() {
                "-".into()
            } else {
                fired.join(", ")
            },
            cell(scores[1], leak),
            cell(scores[2], leak),
        );
    }
    println!();
    println!("| detector | leaks caught | median latency | traces with a false alarm |");
    println!("| --- | --- | --- | --- |");
    for (name, (caught, false_traces, mut lat)) in
        ["memtrail defaults", "seed rule", "Prometheus-style"]
            .into_iter()
            .zip(totals)
    {
        lat.sort_by(f64::total_cmp);
        let median = lat
            .get(lat.len() / 2)
            .map_or("-".into(), |m| format!("{m:.0} min"));
        println!(
            "| {name} | {caught} of {leaks} | {median} | {false_traces} of {} |",
            leaks + quiet
        );
    }
    println!();
    println!(
        "memtrail's rule evaluation: {:.2} ms on average over {evals} evaluations",
        eval_time.as_secs_f64() * 1000.0 / evals.max(1) as f64
    );
}

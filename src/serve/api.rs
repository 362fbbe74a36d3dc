//! The HTTP API the recorder serves while it records: the seed's three endpoints (status, a live
//! snapshot, a manual cleanup), custom metrics pushed by an application, a Prometheus scrape
//! endpoint and a health check. The recorder thread shares a small `Shared` state with it (health,
//! the watched targets, pushed custom metrics); everything else is read from the database on
//! read-only connections inside `spawn_blocking`, so neither slow clients nor queries ever delay a
//! tick. Errors are JSON (`{"error": ...}`) with their status; POSTs need the bearer token when one
//! is configured (it must be, to listen beyond loopback).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::act::cleanup::{self, CleanupError, Level, Target, Trigger};
use crate::analyze::analysis;
use crate::analyze::overview::{Overview, Pattern, SeriesState};
use crate::model::{Cell, Kind, Table, TargetKey, TargetSample, Unit, Value as Reading};
use crate::record::live::Shared;
use crate::store;
use crate::units::now_ms;

/// Bodies larger than this are refused with 413.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// `/healthz` calls the sampling loop stuck after three intervals without a tick, or this long.
pub(crate) const STUCK_AT_LEAST: Duration = Duration::from_secs(2);
/// A POST's body must arrive within this (a body that stalls, or a chunked one that never ends,
/// is cut with 408 and the connection closed).
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// POST bodies being received at once; more are answered 503 at once, so a flood of stalled
/// uploads holds at most these connection slots and scrapes (`/metrics`, `/healthz`) keep theirs.
pub(crate) const MAX_BODIES_IN_FLIGHT: usize = 16;
/// A pushed custom metric stays in `/metrics` and the status this long after its last push (the
/// lookback Prometheus itself gives a series): an application pushes when it has news, not every
/// tick, and a scrape every 15-60 s must still find it. Sampled series leave after three intervals.
pub(crate) const CUSTOM_METRIC_TTL: Duration = Duration::from_secs(300);
/// At most this many metrics in one custom push.
pub(crate) const MAX_CUSTOM_METRICS: usize = 256;

/// An error answer: `{"error": message}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

type ApiResult = Result<Response, ApiError>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let bodies = Arc::new(tokio::sync::Semaphore::new(MAX_BODIES_IN_FLIGHT));
    Router::new()
        .route("/internal/memory/cleanup", post(cleanup_now))
        .route("/internal/memory/custom", post(custom))
        .route("/internal/memory/event", post(event))
        // Only the routes above (the POSTs): the token before the body, then the body on a deadline.
        .route_layer(axum::middleware::from_fn_with_state(
            (shared.clone(), bodies),
            guard_post,
        ))
        .route("/internal/memory/status", get(status))
        .route("/internal/memory/metrics", get(live_metrics))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint".into(),
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(Arc::new(StatusCache::default())))
        .with_state(shared)
}

/// In front of every POST: check the token from the headers alone, take one of the
/// `MAX_BODIES_IN_FLIGHT` slots, and receive the body within `BODY_TIMEOUT` (bounded by
/// `BODY_LIMIT`) before the handler sees it. Unauthorised clients never get to send a body.
async fn guard_post(
    State((shared, bodies)): State<(Arc<Shared>, Arc<tokio::sync::Semaphore>)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let closing = |e: ApiError| {
        let mut r = e.into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    if let Err(e) = authorize(&shared, request.headers()) {
        return closing(e);
    }
    let Ok(slot) = bodies.try_acquire_owned() else {
        return closing(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_BODIES_IN_FLIGHT} request bodies are being received already: try again"),
        ));
    };
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, BODY_LIMIT);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return closing(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body too large (at most {BODY_LIMIT} bytes), or cut short"),
            ));
        }
        Err(_) => {
            return closing(ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    drop(slot);
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(s: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &s.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token".into(),
        )),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs `Authorization: Bearer <token>`".into(),
        )),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let answer = tokio::task::spawn_blocking(|| {
        let answer = f();
        // A request's working set is freed by now: let it leave the RSS too.
        crate::allocator::release_freed();
        answer
    });
    answer.await.map_err(internal)?
}

fn recorder_json(s: &Shared) -> Value {
    let l = s.live();
    json!({
        "pid": std::process::id(),
        "interval_ms": s.interval.as_millis() as u64,
        "ticks": l.ticks,
        "samples": l.samples,
        "failed_ticks": l.failed_ticks,
        "last_tick_ms": l.last_tick_ms,
        "last_tick_seconds": l.tick_seconds,
        "last_error": l.last_error,
        "held_ticks": l.held.ticks,
        "held_samples": l.held.samples,
        "dropped_ticks": l.held.dropped_ticks,
        "spooled_ticks": l.held.spooled_ticks,
        "spooled_samples": l.held.spooled_samples,
    })
}

/// The status document's analysis, built at most once a tick and one at a time, on one reader
/// connection kept for it. Clients asking at once wait for one build and share it, so the RSS
/// holds one working set, not one per blocking thread (bench/api-rss at 4 clients: 14.5 MiB with
/// two in flight). The connection is kept because compiling `trend` and `patterns` takes SQLite
/// about 4 MiB each (the `sqlite3` shell's `.stats` on `EXPLAIN`): a new connection per build
/// compiled them afresh and the recorder's RSS jumped 7-8 MiB at every status request; its
/// statement cache now holds them compiled (about 1 MiB kept).
#[derive(Default)]
pub(crate) struct StatusCache(tokio::sync::Mutex<StatusBuilder>);

#[derive(Default)]
struct StatusBuilder {
    conn: Option<rusqlite::Connection>,
    patterns: Option<FoundPatterns>,
    last: Option<BuiltStatus>,
}

/// The recurring patterns (`patterns.sql`: cycles of 45 minutes and more, saw-teeth on a 3-minute
/// grid, daily rises) as last found. They describe hours of history, so a status build looks for
/// them again only after `PATTERNS_FRESH`; the query's working set (about 8 MiB of SQLite memory
/// over the soak's series) is then paid once a minute, not once a second.
struct FoundPatterns {
    found: std::time::Instant,
    by_series: BTreeMap<i64, Vec<Pattern>>,
}

const PATTERNS_FRESH: Duration = Duration::from_secs(60);

struct BuiltStatus {
    ticks: u64,
    built: std::time::Instant,
    body: Value,
}

/// A status document is reused while no tick has been recorded since, for at most this long
/// (rule states and cleanups change between ticks too).
const STATUS_FRESH: Duration = Duration::from_secs(1);

async fn status(
    State(s): State<Arc<Shared>>,
    axum::Extension(cache): axum::Extension<Arc<StatusCache>>,
) -> ApiResult {
    let ticks = s.live().ticks;
    let mut held = cache.0.lock().await;
    let reusable = held
        .last
        .as_ref()
        .filter(|b| b.ticks == ticks && b.built.elapsed() < STATUS_FRESH);
    let mut body = match reusable {
        Some(b) => b.body.clone(),
        None => {
            let max_age_ms = sampled_max_age_ms(&s);
            let db = s.db.clone();
            let conn = held.conn.take();
            let patterns = held.patterns.take();
            let (conn, patterns, body) = blocking(move || {
                let conn = match conn {
                    Some(c) => c,
                    None => store::open_reader(&db, Duration::from_secs(5)).map_err(internal)?,
                };
                // On an error the connection goes with it: the next build opens a new one.
                let now = now_ms();
                let patterns = match patterns.filter(|p| p.found.elapsed() < PATTERNS_FRESH) {
                    Some(p) => p,
                    None => FoundPatterns {
                        found: std::time::Instant::now(),
                        by_series: Pattern::by_series(&conn, now, None).map_err(internal)?,
                    },
                };
                let o = Overview::gather_with_patterns(
                    &conn,
                    &db.display().to_string(),
                    now,
                    3_600_000,
                    &patterns.by_series,
                )
                .map_err(internal)?;
                let body = status_json(&o, now, max_age_ms);
                Ok((conn, patterns, body))
            })
            .await?;
            held.conn = Some(conn);
            held.patterns = Some(patterns);
            held.last = Some(BuiltStatus {
                ticks,
                built: std::time::Instant::now(),
                body: body.clone(),
            });
            body
        }
    };
    drop(held);
    body["recorder"] = recorder_json(&s);
    Ok(axum::Json(body).into_response())
}

/// The status document: current usage, per-series analysis, rule states, history size, last
/// cleanup: the `Overview` that `memtrail status` shows, of the series sampled lately (pushed
/// custom metrics: within `CUSTOM_METRIC_TTL`), grouped by target. Its `recorder` is left null
/// for the handler to fill in at each request: a built document is shared, the recorder's counters
/// are not.
pub(crate) fn status_json(o: &Overview, now: i64, max_age_ms: i64) -> Value {
    let custom_ms = CUSTOM_METRIC_TTL.as_millis() as i64;
    let fresh = |s: &SeriesState| {
        let st = &s.status;
        now - st.latest_ts_ms
            <= if st.kind == Kind::Custom {
                custom_ms
            } else {
                max_age_ms
            }
    };
    let mut targets: BTreeMap<(Kind, &str, i64), Map<String, Value>> = BTreeMap::new();
    let mut series = Vec::new();
    for state in o.series.iter().filter(|s| fresh(s)) {
        let st = &state.status;
        let target = targets
            .entry((st.kind, st.target.as_str(), st.pid.map_or(-1, i64::from)))
            .or_insert_with(|| {
                let mut m = Map::new();
                m.insert("kind".into(), json!(st.kind));
                m.insert("target".into(), json!(st.target));
                m.insert("pid".into(), json!(st.pid));
                m.insert("metrics".into(), json!({}));
                if let Some(l) = o
                    .limits
                    .iter()
                    .find(|l| st.kind == Kind::Cgroup && l.target == st.target)
                {
                    m.insert("memory_limit".into(), json!(l));
                }
                m
            });
        if let Some(metrics) = target.get_mut("metrics").and_then(Value::as_object_mut) {
            metrics.insert(st.metric.clone(), json!(st.latest));
        }
        series.push(series_json(state));
    }
    json!({
        "generated_ms": now,
        "recorder": Value::Null,
        "targets": targets.into_values().collect::<Vec<_>>(),
        "series": series,
        "rules": o.rules,
        "history": o.history,
        "last_cleanup": o.last_cleanup,
    })
}

/// One series in the status document: its latest value, its trend and its recent growth.
fn series_json(state: &SeriesState) -> Value {
    let (st, t) = (&state.status, state.trend.as_ref());
    json!({
        "series_id": st.series_id,
        "kind": st.kind,
        "target": st.target,
        "pid": st.pid,
        "metric": st.metric,
        "unit": st.unit,
        "value": st.latest,
        "ts_ms": st.latest_ts_ms,
        "trend": {
            "classification": t.map(|t| t.classification),
            "slope_per_hour": t.and_then(|t| t.slope_per_hour),
            "pct_per_hour": t.and_then(|t| t.pct_per_hour),
            "r2": t.and_then(|t| t.r2),
            "mk_z": t.and_then(|t| t.mk_z),
            "accelerating": t.map(|t| t.accelerating),
            "reason": t.and_then(|t| t.reason.clone()),
        },
        "verdict": state.verdict,
        "diagnosis": state.diagnosis,
        // For a leaking series: since when (with its 95 % range and the event nearest before it).
        "onset": state.onset.as_ref().map(|o| {
            let mut v = json!(o);
            if let Some(m) = v.as_object_mut() {
                m.insert("words".into(), json!(o.words()));
            }
            v
        }),
        // Growth that repeats on a schedule: cycle, sawtooth, daily.
        "patterns": state.patterns.iter().map(|p| {
            let mut v = json!(p);
            if let Some(m) = v.as_object_mut() {
                m.insert("words".into(), json!(p.words()));
            }
            v
        }).collect::<Vec<_>>(),
        "percent_change": state.percent_change,
        // From the trend's robust slope, only while the verdict is `increasing`.
        "seconds_to_limit": t.and_then(|t| t.seconds_to_limit),
        "seconds_to_limit_low": t.and_then(|t| t.seconds_to_limit_low),
        "seconds_to_limit_high": t.and_then(|t| t.seconds_to_limit_high),
        "limit_at_ms": t.and_then(|t| t.limit_at_ms),
    })
}

/// The recorder's last tick as it read it (no second reading of `/proc` beside the sampler), plus
/// the latest pushed custom metrics. Before the first tick: `ts_ms` null and nothing read.
async fn live_metrics(State(s): State<Arc<Shared>>) -> ApiResult {
    let (ts_ms, readings, custom) = {
        let l = s.live();
        (
            l.last_tick_ms,
            Arc::clone(&l.readings),
            l.custom_latest.clone(),
        )
    };
    let metrics = |t: &TargetSample| -> Map<String, Value> {
        t.values
            .iter()
            .map(|v| (v.metric.to_string(), json!(v.value)))
            .collect()
    };
    let of_kind = |kind: Kind| readings.iter().filter(move |t| t.key.kind == kind);
    let system = of_kind(Kind::System)
        .next()
        .map(metrics)
        .unwrap_or_default();
    let processes: Vec<Value> = of_kind(Kind::Process)
        .map(|t| {
            let m = metrics(t);
            json!({
                "pid": t.key.pid,
                "name": t.key.name,
                "start_time_ms": t.key.start_time_ms,
                "rss_bytes": m.get("rss"),
                "vms_bytes": m.get("vms"),
                "swap_bytes": m.get("swap"),
                "threads": m.get("threads"),
                "fds": m.get("fds"),
                "metrics": m,
            })
        })
        .collect();
    let cgroups: Vec<Value> = of_kind(Kind::Cgroup)
        .map(|t| json!({ "cgroup": t.key.name, "metrics": metrics(t) }))
        .collect();
    let mut by_source: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for ((source, metric), value) in custom {
        by_source
            .entry(source)
            .or_default()
            .insert(metric, json!(value));
    }
    let body = json!({ "ts_ms": ts_ms, "system": system, "processes": processes, "cgroups": cgroups, "custom": by_source });
    Ok(axum::Json(body).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupRequest {
    level: Option<Level>,
    pid: Option<u32>,
}

/// Behind `guard_post`: the token is checked and the body received, bounded, before this runs.
async fn cleanup_now(State(s): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let req: CleanupRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CleanupRequest {
            level: None,
            pid: None,
        }
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            bad_request(format!(
                "body must be {{\"level\": \"normal\"|\"aggressive\", \"pid\": N}}: {e}"
            ))
        })?
    };
    if s.cleanup.actions.is_empty() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "no cleanup actions are configured: add [[cleanup.actions]] to the recorder's config"
                .into(),
        ));
    }
    let targets: Vec<Target> = s
        .live()
        .cleanup_targets
        .iter()
        .filter(|t| req.pid.is_none_or(|p| p == t.pid))
        .cloned()
        .collect();
    if targets.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            match req.pid {
                Some(p) => format!("pid {p} is not a cleanup target of this recorder"),
                None => "this recorder has no cleanup targets (watch a process with --pid, --name or -- CMD)".into(),
            },
        ));
    }
    let (db, settings, level) = (
        s.db.clone(),
        s.cleanup.clone(),
        req.level.unwrap_or(Level::Normal),
    );
    let runs = blocking(move || {
        let mut runs = Vec::new();
        for t in &targets {
            match cleanup::run(&db, &settings, Trigger::Manual, level, t) {
                Ok(r) => {
                    cleanup::log_run(&r);
                    runs.push(r);
                }
                Err(e @ CleanupError::Busy { .. }) => {
                    return Err(ApiError(StatusCode::CONFLICT, e.to_string()));
                }
                Err(e) => return Err(internal(e)),
            }
        }
        Ok(runs)
    })
    .await?;
    Ok(axum::Json(json!({ "runs": runs })).into_response())
}

/// A validated custom push.
#[derive(Debug, PartialEq)]
pub(crate) struct CustomPush {
    pub metrics: Vec<(String, f64)>,
    pub pid: Option<u32>,
    pub source: Option<String>,
}

use crate::model::valid_name;

/// A body's optional `"pid"`: a process id, or absent / null.
fn pid_field(obj: &Map<String, Value>) -> Result<Option<u32>, String> {
    match obj.get("pid") {
        None | Some(Value::Null) => Ok(None),
        Some(p) => p
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .map(Some)
            .ok_or_else(|| "\"pid\" must be a process id".to_string()),
    }
}

/// Check a custom-metrics body: `{"metrics": {"name": number, ...}, "pid": N?, "source": "name"?}`.
pub(crate) fn parse_custom(bytes: &[u8]) -> Result<CustomPush, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("body must be a JSON object with \"metrics\"")?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "metrics" | "pid" | "source"))
    {
        return Err(format!(
            "unknown field {k:?}: expected metrics, pid, source"
        ));
    }
    let metrics = obj
        .get("metrics")
        .and_then(Value::as_object)
        .ok_or("\"metrics\" must be an object of name: number")?;
    if metrics.is_empty() || metrics.len() > MAX_CUSTOM_METRICS {
        return Err(format!(
            "\"metrics\" must hold 1 to {MAX_CUSTOM_METRICS} values"
        ));
    }
    let mut out = Vec::new();
    for (name, value) in metrics {
        if !valid_name(name) {
            return Err(format!(
                "metric name {name:?} is not allowed: start with a letter or _, then letters, digits, _ . : -, at most 64 bytes"
            ));
        }
        let n = value
            .as_f64()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("metric {name:?} must be a finite number, not {value}"))?;
        out.push((name.clone(), n));
    }
    let pid = pid_field(obj)?;
    let source = match obj.get("source") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_name(s) => Some(s.clone()),
        Some(_) => {
            return Err(
                "\"source\" must be a name (letters, digits, _ . : -, at most 64 bytes)".into(),
            );
        }
    };
    Ok(CustomPush {
        metrics: out,
        pid,
        source,
    })
}

/// Behind `guard_post`: the token is checked and the body received, bounded, before this runs.
async fn custom(State(s): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let push = parse_custom(&bytes).map_err(bad_request)?;
    let key = match push.pid {
        Some(pid) => {
            let target = Target::of_pid(pid)
                .ok_or_else(|| bad_request(format!("no process with pid {pid}")))?;
            TargetKey {
                kind: Kind::Custom,
                pid: Some(pid),
                start_time_ms: Some(target.start_time_ms),
                name: push.source.clone().unwrap_or(target.name),
            }
        }
        None => TargetKey {
            kind: Kind::Custom,
            pid: None,
            start_time_ms: None,
            name: push.source.clone().unwrap_or_else(|| "custom".into()),
        },
    };
    let accepted = push.metrics.len();
    let name = key.name.clone();
    s.push_custom(TargetSample {
        key,
        cmdline: String::new(),
        values: push
            .metrics
            .into_iter()
            .map(|(m, v)| Reading {
                metric: m.into(),
                unit: Unit::Count,
                value: v,
            })
            .collect(),
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(
            json!({ "accepted": accepted, "source": name, "written": "with the next tick" }),
        ),
    )
        .into_response())
}

/// Check an event body: `{"label": "deploy v1.4", "target": "name"?, "pid": N?, "ts_ms": N?}`.
pub(crate) fn parse_event(bytes: &[u8], now_ms: i64) -> Result<crate::model::NewEvent, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("body must be a JSON object with \"label\"")?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "label" | "target" | "pid" | "ts_ms"))
    {
        return Err(format!(
            "unknown field {k:?}: expected label, target, pid, ts_ms"
        ));
    }
    let label = obj
        .get("label")
        .and_then(Value::as_str)
        .ok_or("\"label\" must be a string: what happened")?;
    crate::model::check_event_label(label)?;
    let target = match obj.get("target") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if crate::model::valid_target_name(t) => Some(t.clone()),
        Some(_) => return Err("\"target\" must be a target's name".into()),
    };
    let pid = pid_field(obj)?;
    let ts_ms = match obj.get("ts_ms") {
        None | Some(Value::Null) => now_ms,
        Some(t) => t
            .as_i64()
            .filter(|t| (0..=now_ms + 86_400_000).contains(t))
            .ok_or("\"ts_ms\" must be a Unix time in milliseconds, at most a day ahead")?,
    };
    Ok(crate::model::NewEvent {
        ts_ms,
        kind: crate::model::EventKind::Annotation,
        label: label.trim().to_string(),
        target,
        pid,
    })
}

/// Behind `guard_post`: the token is checked and the body received, bounded, before this runs.
/// The event is written at once (201 with its id), by the recorder's rules for a second writer.
async fn event(State(s): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let mut ev = parse_event(&bytes, crate::units::now_ms()).map_err(bad_request)?;
    if ev.target.is_none() {
        ev.target = ev.pid.and_then(Target::of_pid).map(|t| t.name);
    }
    let db = s.db.clone();
    let (id, target, ev) = blocking(move || {
        crate::store::record_event(&db, &ev, std::time::Duration::from_secs(5))
            .map(|(id, target)| (id, target, ev))
            .map_err(internal)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": id, "ts_ms": ev.ts_ms, "kind": ev.kind, "label": ev.label, "target": target,
            "pid": ev.pid,
        })),
    )
        .into_response())
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let l = s.live();
    // Three intervals, but never under STUCK_AT_LEAST: a 100 ms loop delayed a few hundred ms by
    // a busy machine is late, not stuck (the soak saw a 349 ms gap with the test suite running).
    let limit = (s.interval * 3).max(STUCK_AT_LEAST);
    let problem = match (&l.last_tick, &l.last_error) {
        (None, _) => Some("no tick yet".to_string()),
        (Some(t), _) if t.elapsed() > limit => Some(format!(
            "the last tick was {:.1} s ago (interval {:.1} s): the sampling loop is stuck",
            t.elapsed().as_secs_f64(),
            s.interval.as_secs_f64()
        )),
        (_, Some(e)) => Some(format!(
            "the last write failed: {e}; {} ticks ({} samples) are held in memory until the database accepts writes",
            l.held.ticks, l.held.samples
        )),
        _ => None,
    };
    let age_ms = l.last_tick.map(|t| t.elapsed().as_millis() as u64);
    match problem {
        None => axum::Json(json!({
            "status": "ok",
            "last_tick_age_ms": age_ms,
            "ticks": l.ticks,
            "held_ticks": l.held.ticks,
            "spooled_ticks": l.held.spooled_ticks,
        }))
        .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "status": "unhealthy", "reason": reason, "last_tick_age_ms": age_ms }),
            ),
        )
            .into_response(),
    }
}

/// `/metrics`: the latest values (one read of the `latest` query) and the analysis the recorder
/// exported last (no analysis query runs here), in the format asked for, gzipped when accepted.
async fn prometheus(State(s): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    use crate::serve::prometheus::{Format, Options, RecorderFigures, exposition};
    let (recorder, analysis) = {
        let l = s.live();
        let figures = RecorderFigures {
            ticks: l.ticks,
            samples: l.samples,
            failed_ticks: l.failed_ticks,
            tick_seconds: l.tick_seconds,
            last_tick_ms: l.last_tick_ms,
            held: l.held,
        };
        (figures, l.analysis.clone())
    };
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let max_age_ms = sampled_max_age_ms(&s);
    let (db, pid_label) = (s.db.clone(), s.pid_label);
    let body = blocking(move || {
        let conn = store::open_reader(&db, Duration::from_secs(5)).map_err(internal)?;
        let latest = latest_fresh(&conn, now_ms(), max_age_ms).map_err(internal)?;
        let options = Options { format, pid_label };
        let text = exposition(&latest, &analysis, recorder, options);
        if gzip {
            gzipped(text.as_bytes()).map_err(internal)
        } else {
            Ok(text.into_bytes())
        }
    })
    .await?;
    let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

fn gzipped(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes)?;
    gz.finish()
}

/// How old a sampled series' newest sample may be and still count as current: three intervals,
/// at least 10 s.
fn sampled_max_age_ms(s: &Shared) -> i64 {
    (s.interval.as_millis() as i64 * 3).max(10_000)
}

/// The newest value of each series still current: sampled ones no older than `max_age_ms`, pushed
/// custom ones no older than `CUSTOM_METRIC_TTL`.
fn latest_fresh(
    conn: &rusqlite::Connection,
    now: i64,
    max_age_ms: i64,
) -> Result<Table, analysis::AnalysisError> {
    let custom_ms = CUSTOM_METRIC_TTL.as_millis() as i64;
    let widest = Cell::Int(max_age_ms.max(custom_ms));
    let mut t = analysis::run(conn, "latest", &[("max_age_ms", widest)], now)?;
    let (kind, ts) = (t.column("kind"), t.column("ts_ms"));
    t.rows.retain(|row| {
        let custom = kind.is_some_and(|k| matches!(&row[k], Cell::Text(s) if s == "custom"));
        let age = ts.and_then(|i| match row[i] {
            Cell::Int(v) => Some(now - v),
            _ => None,
        });
        age.is_none_or(|a| a <= if custom { custom_ms } else { max_age_ms })
    });
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_bodies_are_checked() {
        let ok = parse_custom(br#"{"metrics": {"chat_sessions": 12, "heap.objects": 1.5e5}, "pid": 42, "source": "web"}"#)
            .expect("valid");
        assert_eq!(
            ok.metrics,
            vec![
                ("chat_sessions".into(), 12.0),
                ("heap.objects".into(), 150000.0)
            ]
        );
        assert_eq!((ok.pid, ok.source.as_deref()), (Some(42), Some("web")));
        for (body, why) in [
            (
                &br#"{"metrics": {"x": "12"}}"#[..],
                "must be a finite number",
            ),
            (br#"{"metrics": {"x": null}}"#, "must be a finite number"),
            (br#"{"metrics": {"1abc": 1}}"#, "is not allowed"),
            (br#"{"metrics": {"a b": 1}}"#, "is not allowed"),
            (br#"{"metrics": {}}"#, "1 to 256"),
            (br#"{"metrics": {"x": 1}, "extra": 1}"#, "unknown field"),
            (br#"{"metrics": {"x": 1}, "pid": -1}"#, "process id"),
            (br#"[1, 2]"#, "JSON object"),
            (br#"{"metrics": {"x": 1e999}}"#, "not valid JSON"),
            (b"not json", "not valid JSON"),
        ] {
            let err = parse_custom(body).expect_err(std::str::from_utf8(body).unwrap_or("?"));
            assert!(
                err.contains(why),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(r#"{{"metrics": {{"{}": 1}}}}"#, "a".repeat(65));
        assert!(parse_custom(long.as_bytes()).is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(
            parse_custom(deep.as_bytes())
                .expect_err("deep")
                .contains("not valid JSON")
        );
    }

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
    }
}

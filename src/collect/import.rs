//! `memtrail import`: loads a recording made elsewhere so every query, rule and backtest works on
//! it. Three formats: memtrail's CSV (`timestamp,series,metric,value[,unit]`), a psrecord log
//! (`# Elapsed time  CPU (%)  Real (MB)  Virtual (MB)`), and a memory_profiler `mprofile_*.dat`
//! (`CMDLINE ...` then `MEM <MiB> <unix seconds>` lines). Parsing is separate from writing, and
//! every parse error names the line and what was expected.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::{ImportedSeries, SYSTEM_METRICS, is_process_metric, shown};
use crate::model::{Kind, TargetKey, Unit};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{path}, line {line}: {why}")]
    Parse {
        path: String,
        line: usize,
        why: String,
    },
    #[error("{path}: {why}")]
    Format { path: String, why: String },
    #[error("{path} is {size} bytes: import takes files up to {} (split it, or import a downsampled export)", crate::units::format_bytes(MAX_IMPORT_BYTES as f64))]
    TooLarge { path: String, size: u64 },
}

/// The largest file `import` reads (it is read whole): 256 MiB, about ten million CSV samples.
pub(crate) const MAX_IMPORT_BYTES: u64 = 256 * 1024 * 1024;

/// Read a file to import, refusing one over `MAX_IMPORT_BYTES`, or one that is not a regular file,
/// before reading it (`config::read_bounded`).
pub(crate) fn read_bounded(path: &std::path::Path) -> Result<String, ImportError> {
    use crate::config::ReadError;
    let path_shown = path.display().to_string();
    crate::config::read_bounded(path, MAX_IMPORT_BYTES).map_err(|e| match e {
        ReadError::TooLarge { size, .. } => ImportError::TooLarge {
            path: path_shown,
            size,
        },
        ReadError::Io(cause) => ImportError::Read {
            path: path_shown,
            cause,
        },
        ReadError::NotAFile => ImportError::Read {
            path: path_shown,
            cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    Auto,
    Csv,
    Psrecord,
    Mprof,
}

const MIB: f64 = 1024.0 * 1024.0;

pub fn detect(text: &str) -> Option<ImportFormat> {
    let first = text.lines().find(|l| !l.trim().is_empty())?.trim_start();
    if first.starts_with("# Elapsed time") {
        Some(ImportFormat::Psrecord)
    } else if first.starts_with("CMDLINE") || first.starts_with("MEM ") {
        Some(ImportFormat::Mprof)
    } else if first.to_ascii_lowercase().starts_with("timestamp,") {
        Some(ImportFormat::Csv)
    } else {
        None
    }
}

/// What a file held: its series, and what of it was not imported, for the summary.
#[derive(Debug, Default)]
pub struct Parsed {
    pub series: Vec<ImportedSeries>,
    /// Samples whose series and time an earlier line of the file already had (the last one is kept).
    pub duplicates: usize,
    /// Lines read but not imported (mprof's FUNC/CHLD markers, lines of kinds it does not know).
    pub skipped_lines: usize,
    /// The file's last line was cut short (no newline, and it does not parse): left out.
    pub cut_last_line: bool,
}

/// The longest line an import reads, in bytes (a CSV sample is under 200).
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// Refuse a line longer than `MAX_LINE_BYTES` before anything copies it.
fn bounded_line(path: &str, i: usize, line: &str) -> Result<(), ImportError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ImportError::Parse {
            path: path.into(),
            line: i + 1,
            why: format!("the line is {} bytes: at most {MAX_LINE_BYTES}", line.len()),
        });
    }
    Ok(())
}

/// The latest time an import takes: the end of year 9999 (Unix ms). Earlier than 1970 is refused too.
pub(crate) const MAX_TS_MS: i64 = 253_402_300_799_999;

/// A time in seconds (a float in the file) as Unix ms, if it is finite and in range.
fn ms_of(seconds: f64) -> Option<i64> {
    let ms = (seconds * 1000.0).round();
    (ms.is_finite() && (0.0..=MAX_TS_MS as f64).contains(&ms)).then_some(ms as i64)
}

/// Parse a file's text. `target` names the target where the format has no name of its own;
/// `start_ms` is when a psrecord log began (its times are relative). A last line cut short (a log
/// copied while it was written) is left out and said so; any other bad line fails the import.
pub fn parse(
    path: &str,
    text: &str,
    format: ImportFormat,
    target: Option<&str>,
    start_ms: Option<i64>,
) -> Result<Parsed, ImportError> {
    let mut parsed = match parse_whole(path, text, format, target, start_ms) {
        Err(ImportError::Parse { line, .. })
            if !text.ends_with('\n') && line == text.lines().count() && line > 1 =>
        {
            let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            let mut p = parse_whole(path, whole, format, target, start_ms)?;
            p.cut_last_line = true;
            p
        }
        other => other?,
    };
    for s in &mut parsed.series {
        // Stable: among equal times the file's last line comes last, and is the one kept.
        s.points.sort_by_key(|p| p.0);
        let before = s.points.len();
        s.points.reverse();
        s.points.dedup_by_key(|p| p.0);
        s.points.reverse();
        parsed.duplicates += before - s.points.len();
    }
    Ok(parsed)
}

fn parse_whole(
    path: &str,
    text: &str,
    format: ImportFormat,
    target: Option<&str>,
    start_ms: Option<i64>,
) -> Result<Parsed, ImportError> {
    let stem = Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    let (series, skipped_lines) = match format {
        ImportFormat::Csv => (parse_csv(path, text)?, 0),
        ImportFormat::Psrecord => (
            parse_psrecord(path, text, target.unwrap_or(&stem), start_ms)?,
            0,
        ),
        ImportFormat::Mprof => parse_mprof(path, text, target)?,
        // detect() only ever names a concrete format.
        ImportFormat::Auto => match detect(text) {
            Some(found) if found != ImportFormat::Auto => {
                return parse_whole(path, text, found, target, start_ms);
            }
            _ => {
                return Err(ImportError::Format {
                    path: path.into(),
                    why: "cannot tell the format: expected a CSV header `timestamp,series,metric,value`, a psrecord log (`# Elapsed time ...`) or an mprof file (`CMDLINE ...` / `MEM ...`); or give --format".into(),
                });
            }
        },
    };
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(ImportError::Format {
            path: path.into(),
            why: "no samples found".into(),
        });
    }
    Ok(Parsed {
        series,
        skipped_lines,
        ..Parsed::default()
    })
}

/// A metric's unit when the file gives none: memtrail's own (`model::unit_of`).
fn unit_of(metric: &str) -> Unit {
    crate::model::unit_of(metric)
}

fn key(kind: Kind, name: &str) -> TargetKey {
    TargetKey {
        kind,
        pid: None,
        start_time_ms: None,
        name: name.to_string(),
    }
}

/// Split one CSV line (RFC 4180 quoting; no line breaks inside fields).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if cur.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// A timestamp in a file: any absolute form of the one time grammar (`units::parse_instant`).
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    crate::units::parse_instant(s)
}

fn parse_csv(path: &str, text: &str) -> Result<Vec<ImportedSeries>, ImportError> {
    let mut by_series: BTreeMap<(String, String), ImportedSeries> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        bounded_line(path, i, raw)?;
        let line = raw.trim_end_matches('\r');
        let err = |why: String| ImportError::Parse {
            path: path.into(),
            line: i + 1,
            why,
        };
        if line.trim().is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("timestamp,"))
        {
            continue;
        }
        let f = csv_fields(line).map_err(err)?;
        if !(4..=5).contains(&f.len()) {
            return Err(err(format!(
                "expected 4 or 5 fields (timestamp,series,metric,value[,unit]), found {}",
                f.len()
            )));
        }
        let ts = parse_timestamp(&f[0]).ok_or_else(|| {
            err(format!(
                "bad timestamp {}: use Unix ms, Unix seconds, RFC 3339, YYYY-MM-DD[ HH:MM[:SS]] (UTC unless an offset follows) or memtrail's own form (2026-12-01 20:10:26 UTC)",
                shown(&f[0])
            ))
        })?;
        if !(0..=MAX_TS_MS).contains(&ts) {
            return Err(err(format!(
                "timestamp {} is out of range: 1970 to the end of 9999",
                shown(&f[0])
            )));
        }
        let (series, metric) = (f[1].trim().to_string(), f[2].trim().to_string());
        if !crate::model::valid_target_name(&series) {
            return Err(err(format!(
                "bad series name {}: 1 to {} bytes, no control characters",
                shown(&series),
                crate::model::MAX_TARGET_NAME
            )));
        }
        if !crate::model::valid_metric_name(&metric) {
            return Err(err(format!(
                "bad metric name {}: a letter or _, then letters, digits, _ . : -; at most 64 bytes (or map_rss: and a mapping)",
                shown(&metric)
            )));
        }
        let value: f64 = f[3]
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                err(format!(
                    "bad value {}: expected a finite number",
                    shown(&f[3])
                ))
            })?;
        let unit = match f.get(4).map(|u| u.trim()) {
            None | Some("") => unit_of(&metric),
            Some("bytes") => Unit::Bytes,
            Some("percent") => Unit::Percent,
            Some("count") => Unit::Count,
            Some(other) => {
                return Err(err(format!(
                    "unknown unit {}: use bytes, percent or count",
                    shown(other)
                )));
            }
        };
        let kind = if SYSTEM_METRICS.contains(&metric.as_str()) {
            Kind::System
        } else if is_process_metric(&metric) {
            Kind::Process
        } else {
            Kind::Custom
        };
        by_series
            .entry((series.clone(), metric.clone()))
            .or_insert_with(|| ImportedSeries {
                key: key(kind, &series),
                cmdline: String::new(),
                metric,
                unit,
                points: Vec::new(),
            })
            .points
            .push((ts, value));
    }
    Ok(by_series.into_values().collect())
}

fn parse_psrecord(
    path: &str,
    text: &str,
    name: &str,
    start_ms: Option<i64>,
) -> Result<Vec<ImportedSeries>, ImportError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        bounded_line(path, i, line)?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let nums: Vec<f64> = line
            .split_whitespace()
            .map(|t| t.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| ImportError::Parse {
                path: path.into(),
                line: i + 1,
                why: format!(
                    "expected 4 numbers (elapsed s, CPU %, real MB, virtual MB), found {}",
                    shown(line)
                ),
            })?;
        let why = if nums.len() != 4 {
            Some(format!("expected 4 numbers, found {}", nums.len()))
        } else if nums.iter().any(|n| !n.is_finite()) || nums[0] < 0.0 {
            Some(format!(
                "expected finite numbers and elapsed >= 0, found {}",
                shown(line)
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ImportError::Parse {
                path: path.into(),
                line: i + 1,
                why,
            });
        }
        rows.push((i + 1, nums));
    }
    let last_elapsed = rows.last().map_or(0.0, |r| r.1[0]);
    // psrecord writes elapsed seconds only: without --start, assume the log ended when the file
    // was last written.
    let start = start_ms.unwrap_or_else(|| {
        let end = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        end - (last_elapsed * 1000.0) as i64
    });
    let mut times = Vec::with_capacity(rows.len());
    for (line, r) in &rows {
        let ts = ms_of(start as f64 / 1000.0 + r[0]).ok_or_else(|| ImportError::Parse {
            path: path.into(),
            line: *line,
            why: format!(
                "elapsed {} s from the start puts it out of range (1970 to 9999)",
                r[0]
            ),
        })?;
        times.push(ts);
    }
    let make = |metric: &str, unit, col: usize, scale: f64| ImportedSeries {
        key: key(Kind::Process, name),
        cmdline: String::new(),
        metric: metric.into(),
        unit,
        points: times
            .iter()
            .zip(&rows)
            .map(|(&ts, r)| (ts, r.1[col] * scale))
            .collect(),
    };
    Ok(vec![
        make("cpu_percent", Unit::Percent, 1, 1.0),
        make("rss", Unit::Bytes, 2, MIB),
        make("vms", Unit::Bytes, 3, MIB),
    ])
}

fn parse_mprof(
    path: &str,
    text: &str,
    target: Option<&str>,
) -> Result<(Vec<ImportedSeries>, usize), ImportError> {
    let mut cmdline = String::new();
    let mut points = Vec::new();
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        let err = |why: String| ImportError::Parse {
            path: path.into(),
            line: i + 1,
            why,
        };
        bounded_line(path, i, line)?;
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("CMDLINE") => cmdline = parts.collect::<Vec<_>>().join(" "),
            Some("MEM") => {
                let (Some(mem), Some(t)) = (parts.next(), parts.next()) else {
                    return Err(err("expected `MEM <MiB> <unix seconds>`".into()));
                };
                let mem: f64 = mem
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m >= 0.0)
                    .ok_or_else(|| err(format!("bad memory {}: expected MiB, >= 0", shown(mem))))?;
                let t = t.parse().ok().and_then(ms_of).ok_or_else(|| {
                    err(format!(
                        "bad time {}: expected Unix seconds, 1970 to 9999",
                        shown(t)
                    ))
                })?;
                points.push((t, mem * MIB));
            }
            None => {}
            // Function markers and children (FUNC, CHLD), and kinds this reader does not know,
            // are not imported: counted for the summary.
            Some(_) => skipped += 1,
        }
    }
    let name = target.map(str::to_string).unwrap_or_else(|| {
        cmdline
            .split_whitespace()
            .find(|w| !w.starts_with('-') && !w.contains("python"))
            .or_else(|| cmdline.split_whitespace().next())
            .and_then(|w| w.rsplit('/').next())
            .unwrap_or("mprof")
            .to_string()
    });
    let series = ImportedSeries {
        key: key(Kind::Process, &name),
        cmdline,
        metric: "rss".into(),
        unit: Unit::Bytes,
        points,
    };
    Ok((vec![series], skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header_quotes_and_units() {
        let text = "timestamp,series,metric,value\n1790000000000,app,rss,100\n1790000001,app,rss,200\n\
                    2026-01-01T00:00:00Z,\"my, app\",sessions,3,count\n";
        let s = parse("x.csv", text, ImportFormat::Auto, None, None)
            .expect("parses")
            .series;
        assert_eq!(s.len(), 2);
        let app = s.iter().find(|x| x.key.name == "app").expect("app");
        assert_eq!(
            app.points,
            vec![(1_790_000_000_000, 100.0), (1_790_000_001_000, 200.0)]
        );
        assert_eq!((app.unit, app.key.kind), (Unit::Bytes, Kind::Process));
        let custom = s
            .iter()
            .find(|x| x.key.name == "my, app")
            .expect("quoted name");
        assert_eq!(
            (custom.key.kind, custom.points[0].0),
            (Kind::Custom, 1_767_225_600_000)
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        for (text, why) in [
            (
                "timestamp,series,metric,value\n1,a,rss,1\nnope,a,rss,2\n",
                "line 3: bad timestamp",
            ),
            (
                "timestamp,series,metric,value\n1,a,rss,NaN\n",
                "line 2: bad value",
            ),
            (
                "timestamp,series,metric,value\n1,a,rss\n",
                "line 2: expected 4 or 5 fields",
            ),
            (
                "timestamp,series,metric,value\n1,\"a,rss,1\n",
                "line 2: unterminated",
            ),
        ] {
            let err = parse("x.csv", text, ImportFormat::Auto, None, None)
                .expect_err(text)
                .to_string();
            assert!(err.contains(why), "{err}");
        }
        let err = parse("x.txt", "hello\n", ImportFormat::Auto, None, None)
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("cannot tell the format"), "{err}");
    }

    #[test]
    fn psrecord_log() {
        let text = "# Elapsed time   CPU (%)     Real (MB)   Virtual (MB)\n       0.000        0.000       10.000       20.000\n       1.000       50.000       12.500       20.000\n";
        let s = parse("run.log", text, ImportFormat::Auto, None, Some(1_000_000))
            .expect("parses")
            .series;
        let rss = s.iter().find(|x| x.metric == "rss").expect("rss");
        assert_eq!(rss.key.name, "run");
        assert_eq!(
            rss.points,
            vec![(1_000_000, 10.0 * MIB), (1_001_000, 12.5 * MIB)]
        );
        let cpu = s.iter().find(|x| x.metric == "cpu_percent").expect("cpu");
        assert_eq!(cpu.points[1].1, 50.0);
    }

    #[test]
    fn mprof_dat() {
        let text = "CMDLINE python3 server.py --port 80\nMEM 10.5 1790000000.2500\nFUNC x 1 2 3 4\nMEM 11.0 1790000001.0\n";
        let s = parse("mprofile_1.dat", text, ImportFormat::Auto, None, None)
            .expect("parses")
            .series;
        assert_eq!(s[0].key.name, "server.py");
        assert_eq!(
            s[0].points,
            vec![
                (1_790_000_000_250, 10.5 * MIB),
                (1_790_000_001_000, 11.0 * MIB)
            ]
        );
        let err = parse("m.dat", "MEM 1.0\n", ImportFormat::Mprof, None, None)
            .expect_err("short")
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}

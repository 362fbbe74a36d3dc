//! Human-written quantities: durations (`100ms`, `5s`, `1h30m`, `7d`), sizes (`512MiB`, `2GB`,
//! `1048576`) and points in time (one grammar for `--from/--to`, `--param`, import: RFC 3339,
//! `YYYY-MM-DD[ HH:MM[:SS]]`, memtrail's printed form, Unix seconds or ms, `now`, `-2h`). Used by
//! the command line and the config file alike, so both reject the same malformed input with the
//! same message.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// A duration written by a person: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let bad = |why: &str| {
            ParseError(format!(
                "invalid duration '{text}': {why} (write e.g. 500ms, 5s, 10m, 1h30m, 7d)"
            ))
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut total_ms: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let number: f64 = rest[..digits].parse().map_err(|_| bad("bad number"))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit_ms: f64 = match &rest[..unit_len] {
                "ms" => 1.0,
                "s" => 1_000.0,
                "m" | "min" => 60_000.0,
                "h" => 3_600_000.0,
                "d" => 86_400_000.0,
                "" => return Err(bad("missing unit")),
                other => return Err(bad(&format!("unknown unit '{other}'"))),
            };
            rest = rest[unit_len..].trim_start();
            total_ms += (number * unit_ms).round() as u128;
        }
        let ms = u64::try_from(total_ms).map_err(|_| bad("too large"))?;
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A size in bytes: a plain number of bytes or with a unit (`KiB`, `MiB`, `GiB`, `TiB`, or the
/// decimal `KB`, `MB`, `GB`, `TB`; `K`/`M`/`G` mean the binary ones, as in `ps` and `free`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let bad = |why: &str| {
            ParseError(format!(
                "invalid size '{text}': {why} (write e.g. 512MiB, 2GiB, 1500000000)"
            ))
        };
        let s = text.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        if split == 0 {
            return Err(bad("expected a number"));
        }
        let number: f64 = s[..split].parse().map_err(|_| bad("bad number"))?;
        let mult: f64 = match s[split..].trim() {
            "" | "B" => 1.0,
            "K" | "KiB" => 1024.0,
            "M" | "MiB" => 1024.0 * 1024.0,
            "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
            "T" | "TiB" => 1024.0f64.powi(4),
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            other => return Err(bad(&format!("unknown unit '{other}'"))),
        };
        let bytes = number * mult;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(bad("too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A long duration for people, to two units: `11d 6h`, `3h 20m`, `3m 34s`, `45m`, `30s`.
pub(crate) fn format_duration_rough(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60, s % 60);
    match (d, h, m) {
        (d, 0, _) if d > 0 => format!("{d}d"),
        (d, h, _) if d > 0 => format!("{d}d {h}h"),
        (_, h, 0) if h > 0 => format!("{h}h"),
        (_, h, m) if h > 0 => format!("{h}h {m}m"),
        (_, _, m) if m > 0 && sec == 0 => format!("{m}m"),
        (_, _, m) if m > 0 => format!("{m}m {sec}s"),
        _ => format!("{s}s"),
    }
}

/// Bytes for people: `1.5 GiB`, `312.0 MiB`, `812 B`.
pub(crate) fn format_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// The wall clock, as Unix ms. Read straight from `SystemTime`: chrono's `Utc::now` also works out
/// the calendar date, which a recorder reading the clock every tick does not need.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now();
    match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// A time as memtrail prints it: `2026-12-01 20:10:26 UTC`.
pub(crate) fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A value in its unit, for people: bytes as `1.5 GiB`, percent with two decimals.
pub(crate) fn format_value(unit: &str, v: f64) -> String {
    match unit {
        "bytes" => format_bytes(v),
        "percent" => format!("{v:.2} %"),
        _ if v.fract() == 0.0 => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}

/// The time forms every time input takes, for error messages.
pub(crate) const TIME_FORMS: &str = "RFC 3339 (2026-12-01T20:10:26Z, any offset), YYYY-MM-DD, \
     YYYY-MM-DD HH:MM[:SS] (UTC unless an offset follows), memtrail's own form \
     (2026-12-01 20:10:26 UTC), Unix seconds or ms, or relative (now, -2h, 2h ago)";

/// A point in time written by a person, as Unix ms: an absolute time (see `parse_instant`), or
/// one relative to `now_ms`: `now`, `-2h`, `now-2h`, `2h ago`.
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Option<i64> {
    let s = text.trim();
    if s.eq_ignore_ascii_case("now") {
        return Some(now_ms);
    }
    let ago = s
        .strip_prefix("now-")
        .or_else(|| s.strip_prefix("now -"))
        .or_else(|| s.strip_prefix('-'))
        .or_else(|| s.strip_suffix(" ago"));
    if let Some(d) = ago.and_then(|d| d.trim().parse::<HumanDuration>().ok()) {
        return Some(now_ms.saturating_sub(d.0.as_millis() as i64));
    }
    parse_instant(s)
}

/// An absolute point in time, as Unix ms: Unix ms (an integer from 10^11 up) or seconds (with a
/// fraction, too); RFC 3339 with any offset; `YYYY-MM-DD` (midnight UTC); `YYYY-MM-DD HH:MM[:SS]`
/// with `T` or a space, UTC unless an offset follows; memtrail's printed `... UTC`.
pub(crate) fn parse_instant(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let s = text.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(if i.abs() >= 100_000_000_000 {
            i
        } else {
            i.checked_mul(1000)?
        });
    }
    if let Ok(f) = s.parse::<f64>() {
        return (f.is_finite() && f.abs() < 1e14).then(|| (f * 1000.0).round() as i64);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let utc = s
        .strip_suffix(" UTC")
        .or_else(|| s.strip_suffix("Z"))
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s)
        .trim_end();
    if let Ok(d) = NaiveDate::parse_from_str(utc, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    for form in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(utc, form) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    // With an offset (`+02:00`, `+0200`, after a space or not).
    for form in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M:%S%.f %#z",
        "%Y-%m-%d %H:%M %#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, form) {
            return Some(t.timestamp_millis());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<u128, ParseError> {
        s.parse::<HumanDuration>().map(|h| h.0.as_millis())
    }

    #[test]
    fn now_ms_is_the_wall_clock_chrono_reads() {
        let before = chrono::Utc::now().timestamp_millis();
        let now = now_ms();
        let after = chrono::Utc::now().timestamp_millis();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(d("100ms"), Ok(100));
        assert_eq!(d("5s"), Ok(5_000));
        assert_eq!(d("1.5s"), Ok(1_500));
        assert_eq!(d("10m"), Ok(600_000));
        assert_eq!(d("1h30m"), Ok(5_400_000));
        assert_eq!(d("7d"), Ok(604_800_000));
        assert_eq!(d(" 24h "), Ok(86_400_000));
        assert_eq!(d("1h 30m"), Ok(5_400_000));
        assert_eq!(d("2 s"), Ok(2_000));
    }

    #[test]
    fn bad_durations_say_why() {
        for (input, why) in [
            ("", "empty"),
            ("5", "missing unit"),
            ("5x", "unknown unit 'x'"),
            ("s", "expected a number"),
            ("-5s", "expected a number"),
            ("1..2s", "bad number"),
        ] {
            let err = d(input).expect_err(input).to_string();
            assert!(err.contains(why), "{input}: {err}");
            assert!(err.contains("e.g."), "{input}: {err}");
        }
    }

    #[test]
    fn duration_display_round_trips() {
        for s in ["100ms", "5s", "10m", "24h", "7d", "1500ms", "1h30m", "90s"] {
            let d = s.parse::<HumanDuration>().expect(s);
            assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d), "{s}");
        }
        let shown = |s: &str| s.parse::<HumanDuration>().expect(s).to_string();
        assert_eq!(shown("1500ms"), "1500ms");
        assert_eq!(shown("90s"), "90s");
        assert_eq!(shown("24h"), "1d");
        assert_eq!(shown("120m"), "2h");
    }

    #[test]
    fn sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("1048576"), Ok(1_048_576));
        assert_eq!(b("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(b("512M"), Ok(512 * 1024 * 1024));
        assert_eq!(b("1.5KiB"), Ok(1536));
        assert_eq!(b("2GB"), Ok(2_000_000_000));
        assert!(b("12 parsecs").is_err());
        assert!(b("GiB").is_err());
    }

    #[test]
    fn rough_durations() {
        assert_eq!(format_duration_rough(16224.0 * 60.0), "11d 6h");
        assert_eq!(format_duration_rough(12_000.0), "3h 20m");
        assert_eq!(format_duration_rough(2_700.0), "45m");
        assert_eq!(format_duration_rough(214.089), "3m 34s");
        assert_eq!(format_duration_rough(3_600.0), "1h");
        assert_eq!(format_duration_rough(86_400.0), "1d");
        assert_eq!(format_duration_rough(30.4), "30s");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(format_bytes(812.0), "812 B");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }

    #[test]
    fn every_time_form_parses_to_the_same_instant() {
        // 2026-12-01 20:10:26 UTC
        const T: i64 = 1_796_155_826_000;
        for text in [
            "2026-12-01T20:10:26Z",
            "2026-12-01T21:10:26+01:00",
            "2026-12-01T15:10:26-05:00",
            "2026-12-01 20:10:26",
            "2026-12-01T20:10:26",
            "2026-12-01 20:10:26 UTC",
            "2026-12-01 22:10:26+02:00",
            "2026-12-01 22:10:26 +0200",
            "1796155826",
            "1796155826000",
            "1796155826.0",
        ] {
            assert_eq!(parse_time(text, 0), Some(T), "{text}");
        }
        assert_eq!(parse_time("2026-12-01 20:10", 0), Some(T - 26_000));
        assert_eq!(
            parse_time("2026-12-01", 0),
            Some(T - (20 * 3600 + 10 * 60 + 26) * 1000)
        );
        assert_eq!(parse_time("2026-12-01T20:10:26.5Z", 0), Some(T + 500));
        for text in ["now", "-2h", "now-2h", "2h ago", "now - 90m"] {
            assert!(parse_time(text, T).is_some_and(|t| t <= T), "{text}");
        }
        assert_eq!(parse_time("-2h", T), Some(T - 7_200_000));
        assert_eq!(parse_time("2h ago", T), Some(T - 7_200_000));
        for bad in [
            "yesterday",
            "10minutes",
            "2026-13-01",
            "2026-12-01 25:00",
            "",
            "-",
            "1e300",
        ] {
            assert_eq!(parse_time(bad, T), None, "{bad}");
        }
        // Files (import) take absolute times only.
        assert_eq!(parse_instant("-2h"), None);
    }
}

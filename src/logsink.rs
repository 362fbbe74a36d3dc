//! Where log lines go: stderr, never fatally. A recorder whose stderr is a closed pipe, `/dev/full`
//! or a non-blocking pipe nobody reads must keep recording, so a log line that cannot be written
//! is dropped and counted (`memtrail_log_lines_dropped_total` on `/metrics`), never retried, never
//! a panic (tracing-subscriber's own "unable to write" report is an `eprintln!`, which panics
//! when stderr fails; memtrail's writer never reports an error to it). Each line is kept one line:
//! control characters in its fields (a process named with a newline) are escaped.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines (or parts of them) that could not be written since the process started.
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A `tracing_subscriber` writer for stderr that drops what it cannot write.
#[derive(Clone, Copy, Default)]
pub(crate) struct Stderr;

impl Write for Stderr {
    /// One log line (tracing-subscriber writes each event whole), its control characters escaped.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_raw(&escape_controls(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

/// Write one line to stderr outside the log (the binary's last error, a progress line), dropping
/// it when stderr fails, as the log does.
pub fn line(text: &str) {
    write_raw(text.as_bytes());
}

fn write_raw(buf: &[u8]) {
    if io::stderr().lock().write_all(buf).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// A log line as one line: a newline or carriage return inside it (a process named "a\nb", a
/// pushed source's text) is written as `\n` / `\r`, other control characters as `\xNN`, so one
/// event never reads as two. The final newline, tabs and ANSI colour escapes (ESC) stay.
fn escape_controls(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let plain = |b: u8| b >= 0x20 || b == b'\t' || b == 0x1b;
    if body.iter().all(|&b| plain(b) && b != 0x7f) {
        return buf.into();
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if plain(b) && b != 0x7f => out.push(b),
            b => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    if body.len() < buf.len() {
        out.push(b'\n');
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn a_log_line_stays_one_line() {
        let line = b"INFO target came name=\"evil\nFAKE ERROR\rx\x07\" pid=3\n";
        let out = escape_controls(line);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "INFO target came name=\"evil\\nFAKE ERROR\\rx\\x07\" pid=3\n"
        );
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        // Plain lines, tabs and colours pass untouched (and are not copied).
        let plain = b"\x1b[32m INFO\x1b[0m a\tb\n";
        assert!(matches!(
            escape_controls(plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}

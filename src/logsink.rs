//! Where log lines go: stderr, never fatally. A recorder whose stderr is a closed pipe, `/dev/full`
//! or a non-blocking pipe nobody reads must keep recording, so a log line that cannot be written
//! is dropped and counted (`memtrail_log_lines_dropped_total` on `/metrics`), never retried, never
//! a panic (tracing-subscriber's own "unable to write" report is an `eprintln!`, which panics
//! when stderr fails; memtrail's writer never reports an error to it).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines (or parts of them) that could not be written since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A `tracing_subscriber` writer for stderr that drops what it cannot write.
#[derive(Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if io::stderr().lock().write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
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
    let mut s = Stderr;
    let _ = s.write(text.as_bytes());
}

//! Running things outside memtrail on its behalf: a shell command (in its own process group, with
//! environment variables, a timeout that kills the whole group, and its output captured up to a
//! limit) and an HTTP POST of JSON (with a timeout; any status is returned, not treated as an
//! error). Used by alert notifications and cleanup actions.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How much of a command's output (or a response body) is kept.
pub(crate) const OUTPUT_LIMIT: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ShellOutcome {
    Exited(ExitStatus),
    TimedOut,
    /// `sh` itself could not be started.
    NotStarted(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ShellResult {
    pub outcome: ShellOutcome,
    /// stdout then stderr, trimmed and truncated to OUTPUT_LIMIT.
    pub output: String,
}

/// Run `sh -c CMD` with extra environment variables; kill its whole process group at `timeout`.
pub fn shell(cmd: &str, env: &[(&str, String)], timeout: Duration) -> ShellResult {
    let mut c = Command::new("sh");
    c.process_group(0)
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = match c.spawn() {
        Ok(child) => child,
        Err(e) => {
            return ShellResult {
                outcome: ShellOutcome::NotStarted(format!("cannot run sh: {e}")),
                output: String::new(),
            };
        }
    };
    // Read output on threads so a chatty command cannot block on a full pipe.
    let pipes: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r
                    .by_ref()
                    .take(OUTPUT_LIMIT as u64 * 4)
                    .read_to_end(&mut buf);
                // Drain the rest so the command never blocks on a full pipe.
                let _ = std::io::copy(&mut r, &mut std::io::sink());
                String::from_utf8_lossy(&buf).into_owned()
            })
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break ShellOutcome::Exited(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                // The process group created for this command.
                let _ = crate::sys::kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                break ShellOutcome::TimedOut;
            }
        }
    };
    let output: String = readers.into_iter().filter_map(|h| h.join().ok()).collect();
    ShellResult {
        outcome,
        output: truncate(output.trim(), OUTPUT_LIMIT),
    }
}

/// POST a JSON body. `Ok((status, body))` for any HTTP answer; `Err` when none came.
pub(crate) fn post_json(url: &str, body: &str, timeout: Duration) -> Result<(u16, String), String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build(),
    );
    match agent.post(url).content_type("application/json").send(body) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            Ok((status, truncate(text.trim(), OUTPUT_LIMIT)))
        }
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_environment() {
        let r = shell(
            "echo \"$GREETING\"; echo oops >&2; exit 3",
            &[("GREETING", "hi".into())],
            Duration::from_secs(5),
        );
        assert!(matches!(r.outcome, ShellOutcome::Exited(s) if s.code() == Some(3)));
        assert_eq!(r.output, "hi\noops");
    }

    #[test]
    fn a_hanging_command_and_its_children_are_killed_at_the_timeout() {
        let started = Instant::now();
        let r = shell("sleep 30 & sleep 30; wait", &[], Duration::from_millis(300));
        assert_eq!(r.outcome, ShellOutcome::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn long_output_is_truncated() {
        let r = shell("yes x | head -c 100000", &[], Duration::from_secs(5));
        assert!(
            r.output.len() < OUTPUT_LIMIT + 100 && r.output.contains("bytes cut"),
            "{}",
            r.output.len()
        );
    }
}

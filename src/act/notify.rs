//! Alert delivery beyond the log line: a webhook (POST of the alert as JSON, with a timeout and
//! retries with doubling back-off) and a command (`sh -c`, the alert in `MEMTRAIL_ALERT_*`
//! environment variables, killed at its timeout). Deliveries run on a thread of their own so a slow
//! receiver never delays a tick; their outcomes come back to the recorder, which writes them to the
//! `notifications` table.

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use crate::act::exec::{self, ShellOutcome};
use crate::analyze::alerts::AlertEvent;
use crate::config::NotifySection;
use crate::model::Delivery;

pub(crate) struct Notifier {
    /// One queue per configured channel, each drained by a thread of its own.
    channels: Vec<Sender<AlertEvent>>,
    results: Receiver<Delivery>,
}

/// Where an alert goes besides the log.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Channel {
    Webhook,
    Command,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Command => "command",
        }
    }

    fn configured(self, cfg: &NotifySection) -> bool {
        match self {
            Channel::Webhook => cfg.webhook.is_some(),
            Channel::Command => cfg.command.is_some(),
        }
    }
}

impl Notifier {
    /// `None` when no webhook or command is configured. Each channel delivers on its own thread,
    /// so a webhook retrying with back-off never delays the command, nor the other way round.
    pub fn start(cfg: &NotifySection) -> Option<Notifier> {
        let (outbox, results) = mpsc::channel();
        let mut channels = Vec::new();
        for channel in [Channel::Webhook, Channel::Command] {
            if !channel.configured(cfg) {
                continue;
            }
            let (events, inbox) = mpsc::channel::<AlertEvent>();
            let (cfg, outbox) = (cfg.clone(), outbox.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("notify-{}", channel.name()))
                .spawn(move || {
                    for ev in inbox {
                        let Some(d) = deliver_to(channel, &cfg, &ev) else {
                            continue;
                        };
                        if outbox.send(d).is_err() {
                            return;
                        }
                    }
                });
            match spawned {
                Ok(_) => channels.push(events),
                Err(e) => tracing::error!(
                    "cannot start the {} notifier thread: {e}; those alerts go to the log only",
                    channel.name()
                ),
            }
        }
        (!channels.is_empty()).then_some(Notifier { channels, results })
    }

    pub fn send(&self, ev: AlertEvent) {
        for ch in &self.channels {
            let _ = ch.send(ev.clone());
        }
    }

    /// Outcomes finished since the last call.
    pub(crate) fn finished(&self) -> Vec<Delivery> {
        self.results.try_iter().collect()
    }

    /// At the stop: no more alerts come; wait at most `within` for the deliveries under way (an
    /// alert of the last tick's evaluation is still running its command), and return every
    /// outcome not yet taken, and whether some delivery was still running when the wait ended.
    pub fn finish(self, within: Duration) -> (Vec<Delivery>, bool) {
        let Notifier { channels, results } = self;
        // Each thread delivers what is queued, then ends; the last one closes `results`.
        drop(channels);
        let deadline = std::time::Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match results.recv_timeout(left) {
                Ok(d) => out.push(d),
                Err(mpsc::RecvTimeoutError::Disconnected) => return (out, false),
                Err(mpsc::RecvTimeoutError::Timeout) => return (out, true),
            }
        }
    }
}

/// Deliver one alert to `channel` if its rule names it (blocking; on that channel's thread).
fn deliver_to(channel: Channel, cfg: &NotifySection, ev: &AlertEvent) -> Option<Delivery> {
    if !ev.actions.iter().any(|a| a == channel.name()) {
        return None;
    }
    match channel {
        Channel::Webhook => {
            let url = cfg.webhook.as_deref()?;
            let timeout = cfg.webhook_timeout.map_or(Duration::from_secs(5), |d| d.0);
            Some(webhook(url, timeout, cfg.webhook_retries.unwrap_or(3), ev))
        }
        Channel::Command => {
            let cmd = cfg.command.as_deref()?;
            let timeout = cfg.command_timeout.map_or(Duration::from_secs(30), |d| d.0);
            Some(command(cmd, timeout, ev))
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn webhook(url: &str, timeout: Duration, retries: u32, ev: &AlertEvent) -> Delivery {
    let body = serde_json::to_string(ev).unwrap_or_default();
    let mut attempts = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        attempts += 1;
        let (ok, detail) = match exec::post_json(url, &body, timeout) {
            Ok((status, _)) if (200..300).contains(&status) => (true, format!("HTTP {status}")),
            Ok((status, text)) => (
                false,
                format!("HTTP {status}: {}", exec::truncate(&text, 200)),
            ),
            Err(e) => (false, e),
        };
        if ok || attempts > retries {
            if !ok {
                tracing::warn!(url, attempts, "webhook delivery failed: {detail}");
            }
            return Delivery {
                alert_id: ev.id,
                ts_ms: now_ms(),
                channel: "webhook",
                ok,
                attempts,
                detail,
            };
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

fn command(cmd: &str, timeout: Duration, ev: &AlertEvent) -> Delivery {
    let env = [
        ("MEMTRAIL_ALERT_ID", ev.id.to_string()),
        ("MEMTRAIL_ALERT_RULE", ev.rule.clone()),
        ("MEMTRAIL_ALERT_EVENT", ev.event.as_str().into()),
        ("MEMTRAIL_ALERT_SEVERITY", ev.severity.clone()),
        ("MEMTRAIL_ALERT_TARGET", ev.target.clone()),
        (
            "MEMTRAIL_ALERT_PID",
            ev.pid.map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("MEMTRAIL_ALERT_METRIC", ev.metric.clone()),
        (
            "MEMTRAIL_ALERT_VALUE",
            ev.observed.map(|v| v.to_string()).unwrap_or_default(),
        ),
        ("MEMTRAIL_ALERT_THRESHOLD", ev.threshold.to_string()),
        ("MEMTRAIL_ALERT_MESSAGE", ev.message.clone()),
    ];
    let r = exec::shell(cmd, &env, timeout);
    let (ok, detail) = match r.outcome {
        ShellOutcome::Exited(s) if s.success() => (true, r.output),
        ShellOutcome::Exited(s) => (
            false,
            format!("exit {}: {}", s.code().unwrap_or(-1), r.output),
        ),
        ShellOutcome::TimedOut => (
            false,
            format!("timed out after {}s; killed", timeout.as_secs_f64()),
        ),
        ShellOutcome::NotStarted(why) => (false, why),
    };
    if !ok {
        tracing::warn!(
            cmd,
            alert = ev.id,
            "alert command failed: {}",
            exec::truncate(&detail, 200)
        );
    }
    Delivery {
        alert_id: ev.id,
        ts_ms: now_ms(),
        channel: "command",
        ok,
        attempts: 1,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    fn event() -> AlertEvent {
        AlertEvent {
            id: 7,
            ts_ms: 1,
            rule: "r".into(),
            event: crate::model::AlertEventKind::Firing,
            severity: "warning".into(),
            series_id: 1,
            kind: Some(crate::model::Kind::Process),
            target: "app".into(),
            pid: Some(42),
            metric: "rss".into(),
            observed: Some(2.5),
            threshold: 1.0,
            comparison: "greater_than".into(),
            message: "r: rss of process app is high".into(),
            actions: vec!["log".into(), "webhook".into(), "command".into()],
        }
    }

    /// A one-shot HTTP server on 127.0.0.1 answering each request with the given statuses in turn.
    fn server(statuses: Vec<u16>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for status in statuses {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("line");
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().expect("length");
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("body");
                bodies.push(String::from_utf8(body).expect("utf8"));
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                )
                .expect("write");
            }
            bodies
        });
        (url, handle)
    }

    #[test]
    fn webhook_posts_json_and_retries_after_a_failure() {
        let (url, server) = server(vec![500, 200]);
        let d = webhook(&url, Duration::from_secs(5), 3, &event());
        assert!(d.ok, "{d:?}");
        assert_eq!(d.attempts, 2);
        let bodies = server.join().expect("server");
        let json: serde_json::Value = serde_json::from_str(&bodies[1]).expect("json");
        assert_eq!(json["rule"], "r");
        assert_eq!(json["event"], "firing");
        assert_eq!(json["observed"], 2.5);
    }

    #[test]
    fn webhook_failure_is_recorded_after_the_retries() {
        let (url, server) = server(vec![503, 503]);
        let d = webhook(&url, Duration::from_secs(5), 1, &event());
        assert!(!d.ok);
        assert_eq!(d.attempts, 2);
        assert!(d.detail.starts_with("HTTP 503"), "{}", d.detail);
        server.join().expect("server");
    }

    #[test]
    fn command_gets_the_alert_in_its_environment() {
        let d = command(
            "echo \"$MEMTRAIL_ALERT_RULE $MEMTRAIL_ALERT_EVENT $MEMTRAIL_ALERT_PID\"",
            Duration::from_secs(5),
            &event(),
        );
        assert!(d.ok, "{d:?}");
        assert_eq!(d.detail, "r firing 42");
    }

    #[test]
    fn the_stop_waits_for_a_delivery_under_way() {
        let cfg = NotifySection {
            command: Some("sleep 0.3; echo done".into()),
            ..NotifySection::default()
        };
        let n = Notifier::start(&cfg).expect("notifier");
        n.send(event());
        assert!(n.finished().is_empty(), "still running");
        let (done, cut_short) = n.finish(Duration::from_secs(10));
        assert_eq!((done.len(), cut_short), (1, false), "{done:?}");
        assert!(done[0].ok && done[0].detail == "done", "{:?}", done[0]);
        // A delivery that outlasts the wait is reported, not waited for.
        let n = Notifier::start(&NotifySection {
            command: Some("sleep 5".into()),
            ..NotifySection::default()
        })
        .expect("notifier");
        n.send(event());
        let (done, cut_short) = n.finish(Duration::from_millis(200));
        assert_eq!((done.len(), cut_short), (0, true));
    }

    #[test]
    fn a_failing_webhook_does_not_delay_the_command() {
        // Issue 20.8: both channels ran on one thread, so the command waited out the webhook's
        // retries (1 s + 2 s back-off here).
        let (url, server) = server(vec![503, 503, 503]);
        let n = Notifier::start(&NotifySection {
            webhook: Some(url),
            webhook_retries: Some(2),
            command: Some("echo delivered".into()),
            ..NotifySection::default()
        })
        .expect("notifier");
        let started = Instant::now();
        n.send(event());
        let mut got = Vec::new();
        while got.is_empty() && started.elapsed() < Duration::from_secs(10) {
            got = n.finished();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].channel, got[0].ok), ("command", true), "{got:?}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "the command waited {:?}",
            started.elapsed()
        );
        let (rest, cut_short) = n.finish(Duration::from_secs(20));
        assert!(!cut_short);
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(
            (rest[0].channel, rest[0].ok, rest[0].attempts),
            ("webhook", false, 3)
        );
        server.join().expect("server");
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_timeout() {
        let started = Instant::now();
        let d = command("sleep 30", Duration::from_millis(300), &event());
        assert!(!d.ok);
        assert!(d.detail.contains("timed out"), "{}", d.detail);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

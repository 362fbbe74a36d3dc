//! `memtrail top` for real, in tmux: started on a live recorder, its screen read with
//! `capture-pane`, keys sent with `send-keys`, and what changes checked; and what it says when
//! standard output is not a terminal.

use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// A tmux server of its own (its socket in the scratch directory), killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn start(s: &Scratch, w: u16, h: u16, command: &str) -> Tmux {
        let t = Tmux {
            socket: s.path("tmux.sock"),
        };
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", "top", "-x", &w.to_string()])
            .args(["-y", &h.to_string(), command])
            .output()
            .expect("tmux: install it (apt-get install tmux); .ci/test does");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    /// The screen as text (`escapes`: with its colour codes).
    fn screen(&self, escapes: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", "top"]);
        if escapes {
            c.arg("-e");
        }
        String::from_utf8_lossy(&c.output().expect("capture").stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = self
                .cmd()
                .args(["send-keys", "-t", "top", k])
                .status()
                .expect("send-keys");
            assert!(ok.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Wait until the screen shows `what`; the screen.
    fn wait_for(&self, what: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            last = self.screen(false);
            if last.contains(what) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the screen never showed {what:?}:\n{last}");
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "top"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// A recorder on a memhog that grows, and `memtrail top` on its database in tmux.
fn top_on_a_live_recorder(s: &Scratch, env: &str) -> (std::process::Child, Tmux) {
    let rec = spawn_recorder(
        &s.db(),
        &[
            "--interval",
            "200ms",
            "--no-api",
            "--",
            MEMHOG,
            "--steps",
            "30",
            "--step",
            "4MiB",
            "--every",
            "500ms",
            "--hold",
            "60s",
        ],
    );
    wait_for_samples(&s.db(), 3);
    let command = format!(
        "env {env} {MEMTRAIL} top --refresh 300ms --db {}; sleep 5",
        s.db().display()
    );
    (rec, Tmux::start(s, 100, 30, &command))
}

#[test]
fn top_shows_a_live_recording_and_answers_its_keys() {
    let s = Scratch::new();
    let (mut rec, tmux) = top_on_a_live_recorder(&s, "MEMTRAIL_DB=");
    let screen = tmux.wait_for("process memhog (");
    assert!(screen.contains("recorder: running"), "{screen}");
    assert!(screen.contains("system"), "{screen}");
    assert!(screen.contains("sort: memory"), "{screen}");
    // The value moves: memhog grows 4 MiB every half second.
    let value = |screen: &str| -> String {
        screen
            .lines()
            .find(|l| l.contains("process memhog ("))
            .map(|l| l.split_whitespace().nth(3).unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let first = value(&screen);
    std::thread::sleep(Duration::from_millis(1500));
    let later = value(&tmux.screen(false));
    assert_ne!(first, later, "the memhog row did not refresh");

    // s sorts by growth; / filters; Enter opens the chart; Esc comes back.
    tmux.keys(&["s"]);
    tmux.wait_for("sort: growth");
    tmux.keys(&["/", "m", "e", "m", "Enter"]);
    let filtered = tmux.wait_for("filter: mem");
    assert!(
        !filtered.lines().any(|l| l.starts_with("system")),
        "{filtered}"
    );
    tmux.keys(&["Enter"]);
    let chart = tmux.wait_for("by kind of memory");
    assert!(chart.contains("rss_anon"), "{chart}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("RECENT");
    tmux.keys(&["?"]);
    tmux.wait_for("any key closes this help");
    tmux.keys(&["x"]);

    // A smaller window, as over ssh: the list is laid out again.
    let ok = tmux
        .cmd()
        .args(["resize-window", "-t", "top", "-x", "80", "-y", "24"])
        .status()
        .expect("resize");
    assert!(ok.success());
    std::thread::sleep(Duration::from_millis(800));
    let small = tmux.wait_for("LIMIT IN");
    assert!(small.lines().all(|l| l.chars().count() <= 80), "{small}");
    assert!(small.contains("process memhog ("), "{small}");

    // Colour on a terminal.
    assert!(tmux.screen(true).contains("\u{1b}["), "no colour codes");

    tmux.keys(&["q"]);
    // top has quit: the pane runs the `sleep 5` after it.
    std::thread::sleep(Duration::from_millis(500));
    let after = tmux.screen(false);
    assert!(!after.contains("RECENT"), "top is still drawing:\n{after}");
    assert!(tmux.alive());
    let _ = rec.kill();
    let _ = rec.wait();
}

#[test]
fn no_color_turns_the_colours_off() {
    let s = Scratch::new();
    let (mut rec, tmux) = top_on_a_live_recorder(&s, "NO_COLOR=1");
    tmux.wait_for("process memhog (");
    std::thread::sleep(Duration::from_millis(700));
    let coloured = tmux.screen(true);
    // No foreground colour (30-37, 90-97, 38;5;N): reverse video for the selection may remain.
    for code in [
        "[31m", "[32m", "[33m", "[36m", "[38;5", "[90m", "[91m", "[96m",
    ] {
        assert!(
            !coloured.contains(code),
            "{code:?} under NO_COLOR:\n{coloured:?}"
        );
    }
    tmux.keys(&["q"]);
    let _ = rec.kill();
    let _ = rec.wait();
}

#[test]
fn without_a_terminal_top_says_to_use_status() {
    let s = Scratch::new();
    record_ok(
        &s.db(),
        &["--interval", "200ms", "--duration", "1s", "--no-api"],
    );
    let out = run(
        memtrail().args(["top", "--db"]).arg(s.db()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("use `memtrail status`"),
        "{}",
        stderr(&out)
    );
}

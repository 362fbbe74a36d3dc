//! `memtrail top`: a full-screen live view of the database while a recorder writes it, on a
//! read-only connection. Each refresh reads the board (newest values, sparklines, rule states:
//! primary-key seeks); the `trend` verdicts, the expensive part, every `--analysis-interval`.
//! Drawing and keys are `present::top`'s; this is the terminal and the clock.

use std::io::IsTerminal;
use std::time::Instant;

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use super::*;
use crate::analyze::overview::RecorderState;
use crate::present::top::{self, Action, Board, Detail, Screen, View};

#[derive(Debug, Args)]
pub(super) struct TopArgs {
    #[command(flatten)]
    db: DbArg,
    /// How often the screen is read again from the database.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    refresh: HumanDuration,
    /// How much history the sparklines and charts show.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    span: HumanDuration,
    /// How often the trend verdicts (the 1 h `trend` query, the costly part) are computed again.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    analysis_interval: HumanDuration,
}

/// The recorder's state in one short line (the status table's is too wide for 80 columns).
fn recorder_line(conn: &rusqlite::Connection) -> String {
    match crate::analyze::overview::recorder_state(conn) {
        Ok(Some(RecorderState { running: true, run })) => format!(
            "recorder: running (pid {}, every {}), last tick {}",
            run.pid,
            HumanDuration(Duration::from_millis(run.interval_ms.max(0) as u64)),
            run.last_tick_ms
                .map_or("none".into(), crate::units::format_time)
        ),
        Ok(Some(RecorderState { run, .. })) => format!(
            "recorder: not running; run {} ended {}",
            run.id,
            crate::units::format_time(
                run.stopped_ms
                    .or(run.last_tick_ms)
                    .unwrap_or(run.started_ms)
            )
        ),
        Ok(None) => "recorder: no run recorded yet".into(),
        Err(e) => format!("recorder: {e}"),
    }
}

/// What the loop keeps between frames.
struct Live {
    board: Board,
    detail: Option<Detail>,
    verdicts: std::collections::BTreeMap<i64, crate::analyze::overview::Trend>,
    verdicts_at: Option<Instant>,
    /// (when, this process's CPU time then), for the footer's figure.
    cpu_mark: (Instant, Duration),
    cpu_pct: f64,
}

impl Live {
    /// Read the board again (and the verdicts when they are due), for a list `width` wide.
    fn refresh(
        &mut self,
        conn: &rusqlite::Connection,
        args: &TopArgs,
        width: u16,
    ) -> anyhow::Result<()> {
        let now = crate::units::now_ms();
        let span = args.span.0.as_millis() as i64;
        let mut board = top::board(conn, now, span, top::spark_width(width))?;
        if self
            .verdicts_at
            .is_none_or(|at| at.elapsed() >= args.analysis_interval.0)
        {
            let ids: Vec<i64> = board.targets.iter().map(|t| t.series_id).collect();
            self.verdicts = top::verdicts(conn, &ids, now)?;
            self.verdicts_at = Some(Instant::now());
        }
        board.attach_verdicts(&self.verdicts);
        board.recorder = recorder_line(conn);
        self.board = board;
        let (at, cpu) = (Instant::now(), crate::sys::cpu_time());
        let wall = at.duration_since(self.cpu_mark.0).as_secs_f64();
        if wall >= 5.0 {
            self.cpu_pct = (cpu - self.cpu_mark.1).as_secs_f64() / wall * 100.0;
            self.cpu_mark = (at, cpu);
        }
        Ok(())
    }
}

/// `memtrail top`: until `q`.
pub(super) fn run_top(args: TopArgs) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() {
        return Err(UsageError(
            "memtrail top draws on a terminal and standard output is not one: use `memtrail status` (or `memtrail status --format json`) instead".into(),
        )
        .into());
    }
    let db = db_path(args.db.db.clone())?;
    let conn = crate::store::open_reader(&db, Duration::from_secs(5))?;
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut terminal = ratatui::try_init()?;
    let result = run_loop(&mut terminal, &conn, &args, color);
    ratatui::try_restore()?;
    result?;
    Ok(ExitCode::SUCCESS)
}

fn run_loop(
    terminal: &mut ratatui::DefaultTerminal,
    conn: &rusqlite::Connection,
    args: &TopArgs,
    color: bool,
) -> anyhow::Result<()> {
    let mut view = View::new(color);
    let mut live = Live {
        board: Board::default(),
        detail: None,
        verdicts: Default::default(),
        verdicts_at: None,
        cpu_mark: (Instant::now(), crate::sys::cpu_time()),
        cpu_pct: 0.0,
    };
    let mut next = Instant::now();
    loop {
        let width = terminal.size()?.width;
        if Instant::now() >= next {
            live.refresh(conn, args, width)?;
            if view.screen == Screen::Detail {
                live.detail = selected_detail(conn, &live.board, &view, width)?;
            }
            next = Instant::now() + args.refresh.0;
        }
        terminal.draw(|f| top::draw(f, &live.board, &view, live.detail.as_ref(), live.cpu_pct))?;
        if !event::poll(next.saturating_duration_since(Instant::now()))? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            // A resize: the next draw lays out for the new size.
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let listed = view.rows(&live.board).len();
        match view.on_key(key, listed) {
            Action::Quit => return Ok(()),
            Action::OpenDetail => {
                live.detail = selected_detail(conn, &live.board, &view, width)?;
            }
            Action::None => {}
        }
    }
}

/// The chart of the selected target, if any.
fn selected_detail(
    conn: &rusqlite::Connection,
    board: &Board,
    view: &View,
    width: u16,
) -> anyhow::Result<Option<Detail>> {
    let rows = view.rows(board);
    let Some(t) = rows.get(view.selected.min(rows.len().saturating_sub(1))) else {
        return Ok(None);
    };
    Ok(Some(top::detail(
        conn,
        board,
        t,
        usize::from(width.max(20)) * 2,
    )?))
}

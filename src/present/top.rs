//! `memtrail top`'s screen, without the terminal: what the database says now (`Board`, one target a
//! row: its newest value, a sparkline of the last minutes, its verdict and the rules firing or
//! pending on it; `Detail`, one target's metrics by kind with its alerts and cleanups), what the
//! user chose (`View`: selection, sort, filter, which screen) and how keys change it, and `draw`,
//! which renders both into a ratatui frame. `cli/top.rs` runs the terminal and the refreshes.

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::{Marker, bar};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Cell as TableCell, Chart, Clear, Dataset, GraphType, LegendPosition, Paragraph,
    Row, Table, TableState,
};
use rusqlite::Connection;

use crate::analyze::analysis::{self, AnalysisError};
use crate::analyze::overview::{RuleState, RuleStateKind, Trend, Verdict};
use crate::model::{Cell, Kind};
use crate::units::{format_duration_rough, format_time, format_value};

/// One target on the board, by its leading series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub series_id: i64,
    pub kind: Kind,
    pub name: String,
    pub pid: Option<u32>,
    pub metric: String,
    pub unit: String,
    pub value: f64,
    /// The largest value of each sparkline bucket, oldest first (None: no sample in it).
    pub spark: Vec<Option<f64>>,
    pub trend: Option<Trend>,
    /// Rules firing or pending on the target's series: (rule, state).
    pub rules: Vec<(String, RuleStateKind)>,
}

impl Target {
    /// "process app (4242)", "system".
    pub(crate) fn label(&self) -> String {
        match (self.kind, self.pid) {
            (Kind::System, _) => "system".into(),
            (kind, Some(pid)) => format!("{} {} ({pid})", kind.as_str(), self.name),
            (kind, None) => format!("{} {}", kind.as_str(), self.name),
        }
    }

    /// Growth in %/h while the verdict rises, for sorting.
    fn growth(&self) -> f64 {
        self.trend
            .as_ref()
            .filter(|t| matches!(t.classification, Verdict::Increasing))
            .and_then(|t| t.pct_per_hour)
            .unwrap_or(f64::NEG_INFINITY)
    }

    fn seconds_to_limit(&self) -> f64 {
        self.trend
            .as_ref()
            .and_then(|t| t.seconds_to_limit)
            .unwrap_or(f64::INFINITY)
    }
}

/// What the database says now: the recorder's state and every live target.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Board {
    /// The newest sample's time: "now" for the sparklines (a stopped recording shows its end).
    pub now_ms: i64,
    /// The sparklines' span.
    pub span_ms: i64,
    pub recorder: String,
    pub targets: Vec<Target>,
}

impl Board {
    /// Give each target its verdict from `verdicts` (read on a slower cadence than the board:
    /// `trend` is the expensive query).
    pub(crate) fn attach_verdicts(&mut self, verdicts: &BTreeMap<i64, Trend>) {
        for t in &mut self.targets {
            t.trend = verdicts.get(&t.series_id).cloned();
        }
    }
}

/// Read the board: the `top` query's targets, a `downsample` of each leading series over the
/// last `span_ms` in `buckets` buckets, and the rules' states; no verdicts (`attach_verdicts`).
pub(crate) fn board(
    conn: &Connection,
    wall_now_ms: i64,
    span_ms: i64,
    buckets: usize,
) -> Result<Board, AnalysisError> {
    let top = analysis::run(conn, "top", &[], wall_now_ms)?;
    let now_ms = (0..top.rows.len())
        .filter_map(|r| top.get(r, "ts_ms").as_i64())
        .max()
        .unwrap_or(wall_now_ms);
    let rules: Vec<RuleState> = analysis::run(conn, "rule_states", &[], wall_now_ms)?
        .typed_rows()
        .map_err(|e| AnalysisError::Rows {
            query: "rule_states".into(),
            source: e,
        })?;
    let buckets = buckets.max(1);
    let bucket_ms = (span_ms / buckets as i64).max(1);
    let from_ms = now_ms - bucket_ms * buckets as i64 + 1;
    let mut targets = Vec::new();
    for r in 0..top.rows.len() {
        let Some(series_id) = top.get(r, "series_id").as_i64() else {
            continue;
        };
        let down = analysis::run(
            conn,
            "downsample",
            &[
                ("series_id", Cell::Int(series_id)),
                ("from_ms", Cell::Int(from_ms)),
                ("to_ms", Cell::Int(now_ms + 1)),
                ("bucket_ms", Cell::Int(bucket_ms)),
            ],
            wall_now_ms,
        )?;
        let mut spark = vec![None; buckets];
        for d in 0..down.rows.len() {
            let (Some(at), Some(max)) = (
                down.get(d, "bucket_ms").as_i64(),
                down.get(d, "max").as_f64(),
            ) else {
                continue;
            };
            let i = ((at - from_ms) / bucket_ms) as usize;
            if let Some(slot) = spark.get_mut(i) {
                *slot = Some(max);
            }
        }
        targets.push(Target {
            series_id,
            kind: top
                .get(r, "kind")
                .as_str()
                .and_then(Kind::parse)
                .unwrap_or(Kind::Custom),
            name: top.get(r, "target").as_str().unwrap_or("").to_string(),
            pid: top
                .get(r, "pid")
                .as_i64()
                .and_then(|p| u32::try_from(p).ok()),
            metric: top.get(r, "metric").as_str().unwrap_or("").to_string(),
            unit: top.get(r, "unit").as_str().unwrap_or("").to_string(),
            value: top.get(r, "value").as_f64().unwrap_or(0.0),
            spark,
            trend: None,
            rules: rules
                .iter()
                .filter(|s| {
                    s.series_id == Some(series_id)
                        && matches!(s.state, RuleStateKind::Firing | RuleStateKind::Pending)
                })
                .map(|s| (s.rule.clone(), s.state))
                .collect(),
        });
    }
    Ok(Board {
        now_ms,
        span_ms: bucket_ms * buckets as i64,
        recorder: String::new(),
        targets,
    })
}

/// The `trend` verdict of each series given, over the default hour.
pub(crate) fn verdicts(
    conn: &Connection,
    series: &[i64],
    now_ms: i64,
) -> Result<BTreeMap<i64, Trend>, AnalysisError> {
    let mut out = BTreeMap::new();
    for &id in series {
        let t = analysis::run(conn, "trend", &[("series_id", Cell::Int(id))], now_ms)?;
        out.extend(Trend::by_series(&t)?);
    }
    Ok(out)
}

/// One target's chart: its memory by kind over the span, and what happened to it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Detail {
    pub title: String,
    pub unit: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// (metric, points (ms, value)).
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
    /// (ms, label): alerts and cleanups.
    pub marks: Vec<(i64, String)>,
}

/// The metrics a target's chart shows, by kind of target.
fn chart_metrics(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Process | Kind::Group => &["rss", "rss_anon", "rss_file", "rss_shmem", "swap"],
        Kind::System => &["mem_used", "mem_available", "swap_used"],
        Kind::Cgroup => &["usage", "anon", "file", "limit"],
        _ => &[],
    }
}

/// Read the chart of `t` over the board's span.
pub(crate) fn detail(
    conn: &Connection,
    board: &Board,
    t: &Target,
    buckets: usize,
) -> Result<Detail, AnalysisError> {
    let from_ms = board.now_ms - board.span_ms;
    let bucket_ms = (board.span_ms / buckets.max(1) as i64).max(1);
    let mut metrics: Vec<&str> = chart_metrics(t.kind).to_vec();
    if !metrics.contains(&t.metric.as_str()) {
        metrics.insert(0, &t.metric);
    }
    let mut filters = vec![
        ("from_ms", Cell::Int(from_ms)),
        ("to_ms", Cell::Int(board.now_ms + 1)),
        ("bucket_ms", Cell::Int(bucket_ms)),
        ("kind", Cell::Text(t.kind.as_str().into())),
        ("target", Cell::Text(t.name.clone())),
    ];
    if let Some(pid) = t.pid {
        filters.push(("pid", Cell::Int(pid.into())));
    }
    let mut lines = Vec::new();
    for metric in metrics {
        let mut p = filters.clone();
        p.push(("metric", Cell::Text(metric.into())));
        let down = analysis::run(conn, "downsample", &p, board.now_ms)?;
        let points: Vec<(f64, f64)> = (0..down.rows.len())
            .filter_map(|r| {
                Some((
                    down.get(r, "bucket_ms").as_i64()? as f64,
                    down.get(r, "avg").as_f64()?,
                ))
            })
            .collect();
        if !points.is_empty() {
            lines.push((metric.to_string(), points));
        }
    }
    let mut m = vec![
        ("from_ms", Cell::Int(from_ms)),
        ("to_ms", Cell::Int(board.now_ms)),
        ("target", Cell::Text(t.name.clone())),
    ];
    if let Some(pid) = t.pid {
        m.push(("pid", Cell::Int(pid.into())));
    }
    let marks_table = analysis::run(conn, "marks", &m, board.now_ms)?;
    let marks = (0..marks_table.rows.len())
        .filter_map(|r| {
            Some((
                marks_table.get(r, "ts_ms").as_i64()?,
                marks_table.get(r, "label").as_str()?.to_string(),
            ))
        })
        .collect();
    Ok(Detail {
        title: t.label(),
        unit: t.unit.clone(),
        from_ms,
        to_ms: board.now_ms,
        lines,
        marks,
    })
}

/// How the list is ordered (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sort {
    Memory,
    Growth,
    TimeToLimit,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Memory => Sort::Growth,
            Sort::Growth => Sort::TimeToLimit,
            Sort::TimeToLimit => Sort::Memory,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Sort::Memory => "memory",
            Sort::Growth => "growth",
            Sort::TimeToLimit => "time to limit",
        }
    }
}

/// Which screen is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Screen {
    List,
    /// Typing a filter after `/`.
    Filter,
    Detail,
    Help,
}

/// What the user chose.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct View {
    pub selected: usize,
    pub sort: Sort,
    pub filter: String,
    pub screen: Screen,
    pub color: bool,
}

/// What a key asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    None,
    Quit,
    /// Read the selected target's chart.
    OpenDetail,
}

impl View {
    pub(crate) fn new(color: bool) -> View {
        View {
            selected: 0,
            sort: Sort::Memory,
            filter: String::new(),
            screen: Screen::List,
            color,
        }
    }

    /// The board's targets as the view lists them: the system first, then by the sort, filtered.
    pub(crate) fn rows<'b>(&self, board: &'b Board) -> Vec<&'b Target> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Target> = board
            .targets
            .iter()
            .filter(|t| needle.is_empty() || t.label().to_lowercase().contains(&needle))
            .collect();
        let key = |t: &Target| match self.sort {
            Sort::Memory => -t.value,
            Sort::Growth => -t.growth(),
            Sort::TimeToLimit => t.seconds_to_limit(),
        };
        rows.sort_by(|a, b| {
            (a.kind != Kind::System)
                .cmp(&(b.kind != Kind::System))
                .then(key(a).total_cmp(&key(b)))
                .then(a.name.cmp(&b.name))
        });
        rows
    }

    /// Apply a key; `listed` is how many rows the list shows now.
    pub(crate) fn on_key(&mut self, key: KeyEvent, listed: usize) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match self.screen {
            Screen::Filter => self.on_filter_key(key.code),
            Screen::Help => {
                self.screen = Screen::List;
                if key.code == KeyCode::Char('q') {
                    return Action::Quit;
                }
            }
            Screen::Detail => match key.code {
                KeyCode::Char('q') => return Action::Quit,
                KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace | KeyCode::Left => {
                    self.screen = Screen::List
                }
                _ => {}
            },
            Screen::List => return self.on_list_key(key.code, listed),
        }
        Action::None
    }

    fn on_list_key(&mut self, code: KeyCode, listed: usize) -> Action {
        match code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(listed.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = listed.saturating_sub(1),
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('/') => self.screen = Screen::Filter,
            KeyCode::Char('?') | KeyCode::Char('h') => self.screen = Screen::Help,
            KeyCode::Enter | KeyCode::Right if listed > 0 => {
                self.screen = Screen::Detail;
                return Action::OpenDetail;
            }
            _ => {}
        }
        Action::None
    }

    fn on_filter_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Enter => self.screen = Screen::List,
            KeyCode::Esc => {
                self.filter.clear();
                self.screen = Screen::List;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if self.filter.len() < 64 => self.filter.push(c),
            _ => {}
        }
        self.selected = 0;
    }

    fn style(&self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }
}

/// The sparkline of a target's buckets, one character each, scaled from the smallest to the
/// largest value shown (a flat line sits on the bottom).
pub(crate) fn sparkline(values: &[Option<f64>], width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let known: Vec<f64> = shown.iter().flatten().copied().collect();
    let lo = known.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = known.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let levels = [
        bar::ONE_EIGHTH,
        bar::ONE_QUARTER,
        bar::THREE_EIGHTHS,
        bar::HALF,
        bar::FIVE_EIGHTHS,
        bar::THREE_QUARTERS,
        bar::SEVEN_EIGHTHS,
        bar::FULL,
    ];
    shown
        .iter()
        .map(|v| match v {
            None => " ",
            Some(v) if hi > lo => {
                let i = ((v - lo) / (hi - lo) * (levels.len() - 1) as f64).round() as usize;
                levels[i.min(levels.len() - 1)]
            }
            Some(_) => levels[0],
        })
        .collect()
}

/// A verdict in a few characters, with its slope when it moves.
fn verdict_cell(t: &Target) -> String {
    let Some(tr) = &t.trend else {
        return "…".into();
    };
    let pct = tr.pct_per_hour.unwrap_or(0.0);
    match tr.classification {
        Verdict::Increasing if t.unit == "bytes" => format!("LEAK {pct:+.1}%/h"),
        Verdict::Increasing => format!("rising {pct:+.1}%/h"),
        Verdict::Decreasing => format!("falling {pct:+.1}%/h"),
        Verdict::LevellingOff => "levelling off".into(),
        Verdict::Step => format!("step {:+.1}%", tr.step_pct.unwrap_or(0.0)),
        Verdict::Fluctuating => "fluctuating".into(),
        Verdict::Stable => "stable".into(),
        Verdict::InsufficientData => "no verdict yet".into(),
    }
}

/// Draw the whole screen. `cpu` is this process's own CPU use (% of a core).
pub(crate) fn draw(f: &mut Frame, board: &Board, view: &View, detail: Option<&Detail>, cpu: f64) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_head(f, head, board, view);
    match (view.screen, detail) {
        (Screen::Detail, Some(d)) => draw_detail(f, body, d, view),
        _ => draw_list(f, body, board, view),
    }
    draw_foot(f, foot, view, cpu);
    if view.screen == Screen::Help {
        draw_help(f, body);
    }
}

fn draw_head(f: &mut Frame, area: Rect, board: &Board, view: &View) {
    let mut first = vec![Span::styled(
        "memtrail top",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    first.push(Span::raw(format!(
        " · {} · {} targets · last {} · sort: {}",
        format_time(board.now_ms),
        board.targets.len(),
        format_duration_rough(board.span_ms as f64 / 1000.0),
        view.sort.as_str()
    )));
    if !view.filter.is_empty() || view.screen == Screen::Filter {
        first.push(Span::styled(
            format!(" · filter: {}", view.filter),
            view.style(Color::Yellow),
        ));
    }
    let lines = vec![Line::from(first), Line::raw(board.recorder.clone())];
    f.render_widget(Paragraph::new(lines), area);
}

/// The list's fixed columns (target, value, -, verdict, limit, rules); the sparkline takes the rest.
const WIDTHS: [u16; 6] = [22, 10, 0, 15, 8, 10];

/// How many characters (buckets) the sparkline column has on a screen this wide.
pub(crate) fn spark_width(screen_width: u16) -> usize {
    let fixed: u16 = WIDTHS.iter().sum::<u16>() + WIDTHS.len() as u16 - 1;
    screen_width.saturating_sub(fixed + 8).max(8) as usize
}

/// A rule's name without the kind of target it watches (`process_rss_leak` -> `rss_leak`).
fn short_rule(name: &str) -> &str {
    ["process_", "system_", "cgroup_"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

fn draw_list(f: &mut Frame, area: Rect, board: &Board, view: &View) {
    let rows = view.rows(board);
    let widths = WIDTHS;
    let spark_w = spark_width(area.width);
    let header = Row::new(["TARGET", "NOW", "RECENT", "VERDICT", "LIMIT IN", "RULES"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let table_rows = rows.iter().map(|t| {
        let limit = t
            .trend
            .as_ref()
            .and_then(|tr| tr.seconds_to_limit)
            .map_or("-".to_string(), format_duration_rough);
        let rules = t
            .rules
            .iter()
            .map(|(name, state)| match state {
                RuleStateKind::Firing => format!("{}!", short_rule(name)),
                _ => format!("{}?", short_rule(name)),
            })
            .collect::<Vec<_>>();
        // The first rule and how many more, where all of them do not fit.
        let rules = match rules.join(" ") {
            all if all.chars().count() > usize::from(WIDTHS[5]) && rules.len() > 1 => {
                format!("{} +{}", rules[0], rules.len() - 1)
            }
            all => all,
        };
        let verdict = verdict_cell(t);
        let alarm =
            verdict.starts_with("LEAK") || t.rules.iter().any(|r| r.1 == RuleStateKind::Firing);
        Row::new([
            TableCell::from(t.label()),
            TableCell::from(format_value(&t.unit, t.value)),
            TableCell::from(sparkline(&t.spark, spark_w)).style(view.style(Color::Cyan)),
            TableCell::from(verdict).style(if alarm {
                view.style(Color::Red)
            } else {
                Style::default()
            }),
            TableCell::from(limit),
            TableCell::from(rules).style(view.style(Color::Red)),
        ])
    });
    let constraints = [
        Constraint::Length(widths[0]),
        Constraint::Length(widths[1]),
        Constraint::Length(spark_w as u16),
        Constraint::Length(widths[3]),
        Constraint::Length(widths[4]),
        Constraint::Min(widths[5]),
    ];
    let selected = Style::default().add_modifier(Modifier::REVERSED);
    let table = Table::new(table_rows, constraints)
        .header(header)
        .row_highlight_style(selected);
    let mut state = TableState::default()
        .with_selected((!rows.is_empty()).then(|| view.selected.min(rows.len().saturating_sub(1))));
    f.render_stateful_widget(table, area, &mut state);
    if rows.is_empty() {
        let why = if board.targets.is_empty() {
            "nothing recorded yet: start `memtrail record` on this database"
        } else {
            "no target matches the filter"
        };
        let [_, msg] = Layout::vertical([Constraint::Length(2), Constraint::Length(1)]).areas(area);
        f.render_widget(Paragraph::new(why), msg);
    }
}

fn draw_detail(f: &mut Frame, area: Rect, d: &Detail, view: &View) {
    let colors = [
        Color::Cyan,
        Color::Green,
        Color::Yellow,
        Color::Magenta,
        Color::Blue,
    ];
    let top = d
        .lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let mark_lines: Vec<Vec<(f64, f64)>> = d
        .marks
        .iter()
        .map(|(ts, _)| vec![(*ts as f64, 0.0), (*ts as f64, top)])
        .collect();
    let mut sets: Vec<Dataset> = d
        .lines
        .iter()
        .enumerate()
        .map(|(i, (name, points))| {
            Dataset::default()
                .name(name.clone())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(view.style(colors[i % colors.len()]))
                .data(points)
        })
        .collect();
    for (points, (_, label)) in mark_lines.iter().zip(&d.marks) {
        // A long label (a command line) would push the legend off the chart.
        let short: String = match label.char_indices().nth(24) {
            Some((i, _)) => format!("{}…", &label[..i]),
            None => label.clone(),
        };
        sets.push(
            Dataset::default()
                .name(short)
                .marker(Marker::Dot)
                .graph_type(GraphType::Line)
                .style(view.style(Color::Red))
                .data(points),
        );
    }
    // From the first point when the history is shorter than the span.
    let from = d
        .lines
        .iter()
        .filter_map(|(_, p)| p.first().map(|x| x.0))
        .fold(d.to_ms as f64, f64::min)
        .max(d.from_ms as f64);
    let x_labels = vec![
        Line::raw(format_time(from as i64)),
        Line::raw(format_time(d.to_ms)),
    ];
    let y_labels = vec![
        Line::raw(format_value(&d.unit, 0.0)),
        Line::raw(format_value(&d.unit, top / 2.0)),
        Line::raw(format_value(&d.unit, top)),
    ];
    let chart = Chart::new(sets)
        .block(Block::bordered().title(format!(
            "{} — by kind of memory; events marked (Esc: back)",
            d.title
        )))
        .legend_position(Some(LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)))
        .x_axis(
            Axis::default()
                .bounds([from, (d.to_ms as f64).max(from + 1.0)])
                .labels(x_labels),
        )
        .y_axis(Axis::default().bounds([0.0, top]).labels(y_labels));
    f.render_widget(chart, area);
}

fn draw_foot(f: &mut Frame, area: Rect, view: &View, cpu: f64) {
    let keys = match view.screen {
        Screen::Filter => "type to filter · Enter keep · Esc clear",
        Screen::Detail => "Esc back · q quit",
        _ => "↑↓ jk select · Enter chart · s sort · / filter · ? help · q quit",
    };
    let line = Line::from(vec![
        Span::raw(keys),
        Span::styled(
            format!(" · own CPU {cpu:.1} %"),
            view.style(Color::DarkGray),
        ),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

fn draw_help(f: &mut Frame, area: Rect) {
    let text = vec![
        Line::raw("↑ ↓ or j k   select a target (g, G: first, last)"),
        Line::raw("Enter        its chart: memory by kind, alerts and cleanups"),
        Line::raw("s            sort by memory, growth, time to limit"),
        Line::raw("/            filter by name (Enter keeps it, Esc clears it)"),
        Line::raw("q            quit (Esc too, on the list)"),
        Line::raw(""),
        Line::raw("VERDICT: the 1 h trend (LEAK: rising like a leak)"),
        Line::raw("RULES: ! firing, ? pending (process_rss_leak shown as rss_leak)"),
        Line::raw("any key closes this help"),
    ];
    let w = area.width.min(84);
    let h = area.height.min(text.len() as u16 + 2);
    let popup = Rect::new(area.x + (area.width - w) / 2, area.y + 1, w, h);
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(text).block(Block::bordered().title("keys")),
        popup,
    );
}

#[cfg(test)]
mod tests;

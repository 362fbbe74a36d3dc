//! Query results for people and programs: an aligned text table, JSON (an array of objects, one
//! per row), or CSV (RFC 4180: a header row, fields quoted when they hold a comma, quote or line
//! break, quotes doubled).

use std::fmt::Write as _;
use std::io;

use crate::model::{Cell, Rows, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    Table,
    Json,
    Csv,
}

pub fn render(t: &Table, format: OutFormat) -> String {
    match format {
        OutFormat::Table => table(t),
        OutFormat::Json => json(t),
        OutFormat::Csv => csv(t),
    }
}

fn plain(c: &Cell) -> String {
    match c {
        Cell::Null => String::new(),
        Cell::Int(v) => v.to_string(),
        Cell::Real(v) => v.to_string(),
        Cell::Text(s) => s.clone(),
    }
}

fn shown(c: &Cell) -> String {
    match c {
        Cell::Null => "NULL".into(),
        Cell::Real(v) if v.fract() != 0.0 && v.abs() < 1e15 => {
            let s = format!("{v:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        other => plain(other),
    }
}

fn column_widths(t: &Table) -> Vec<usize> {
    (0..t.columns.len())
        .map(|i| {
            t.rows
                .iter()
                .map(|r| shown(&r[i]).chars().count())
                .chain([t.columns[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect()
}

fn numeric_columns(t: &Table) -> Vec<bool> {
    (0..t.columns.len())
        .map(|i| {
            t.rows
                .iter()
                .all(|r| matches!(r[i], Cell::Int(_) | Cell::Real(_) | Cell::Null))
        })
        .collect()
}

/// One line of a table: numbers right-aligned, text left-aligned, two spaces between columns.
fn aligned(row: &[String], widths: &[usize], numeric: &[bool]) -> String {
    let parts: Vec<String> = row
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let w = widths.get(i).copied().unwrap_or(0);
            if numeric.get(i).copied().unwrap_or(false) {
                format!("{s:>w$}")
            } else {
                format!("{s:<w$}")
            }
        })
        .collect();
    parts.join("  ").trim_end().to_string()
}

pub fn table(t: &Table) -> String {
    let (widths, numeric) = (column_widths(t), numeric_columns(t));
    table_body(t, &widths, &numeric) + &row_count(t.rows.len())
}

/// A table's head, rule and rows, in the given columns.
fn table_body(t: &Table, widths: &[usize], numeric: &[bool]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", aligned(&t.columns, widths, numeric));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "{}", aligned(&rule, widths, numeric));
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(shown).collect();
        let _ = writeln!(out, "{}", aligned(&cells, widths, numeric));
    }
    out
}

/// A table's last line: `(N rows)`.
fn row_count(n: usize) -> String {
    format!("({n} row{})\n", if n == 1 { "" } else { "s" })
}

pub fn json(t: &Table) -> String {
    serde_json::to_string_pretty(&t.json_rows()).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// One CSV field, quoted as RFC 4180 requires.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv(t: &Table) -> String {
    let mut out = String::new();
    let row = |cells: Vec<String>| {
        cells
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",")
            + "\r\n"
    };
    out.push_str(&row(t.columns.clone()));
    for r in &t.rows {
        out.push_str(&row(r.iter().map(plain).collect()));
    }
    out
}

/// Rows a text table lays out from before it writes: their widths set the columns', and later
/// rows are written as they come, in those columns (a wider value pushes its row out of line).
const TABLE_LAYOUT_ROWS: usize = 1000;

/// Query rows written as they are read, in any format, to `out`: memory stays one row (a table's
/// first `TABLE_LAYOUT_ROWS`), whatever the result's size. The output equals `render`'s.
pub(crate) struct Stream<W: io::Write> {
    format: OutFormat,
    out: W,
    columns: Vec<String>,
    rows: usize,
    /// A table's first rows, until its layout is known.
    layout: Option<Table>,
    widths: Vec<usize>,
    numeric: Vec<bool>,
}

impl<W: io::Write> Stream<W> {
    pub fn new(format: OutFormat, out: W) -> Stream<W> {
        Stream {
            format,
            out,
            columns: Vec::new(),
            rows: 0,
            layout: (format == OutFormat::Table).then(|| Table {
                columns: Vec::new(),
                rows: Vec::new(),
            }),
            widths: Vec::new(),
            numeric: Vec::new(),
        }
    }

    /// Write what is left (a short table whole, the closing of a JSON array) and flush.
    pub fn finish(mut self) -> io::Result<()> {
        match self.format {
            OutFormat::Table => {
                if let Some(t) = self.layout.take() {
                    self.out.write_all(table(&t).as_bytes())?;
                } else {
                    self.out.write_all(row_count(self.rows).as_bytes())?;
                }
            }
            OutFormat::Json if self.rows == 0 => self.out.write_all(b"[]\n")?,
            OutFormat::Json => self.out.write_all(b"\n]\n")?,
            OutFormat::Csv => {}
        }
        self.out.flush()
    }

    fn table_row(&mut self, cells: &[Cell]) -> io::Result<()> {
        let shown: Vec<String> = cells.iter().map(shown).collect();
        let line = aligned(&shown, &self.widths, &self.numeric);
        writeln!(self.out, "{line}")
    }

    /// The first rows decided the layout: write the head and them, and go on row by row.
    fn lay_out(&mut self, t: Table) -> io::Result<()> {
        self.widths = column_widths(&t);
        self.numeric = numeric_columns(&t);
        let body = table_body(&t, &self.widths, &self.numeric);
        self.out.write_all(body.as_bytes())
    }
}

impl<W: io::Write> Rows for Stream<W> {
    fn columns(&mut self, names: &[String]) -> io::Result<()> {
        self.columns = names.to_vec();
        match self.format {
            OutFormat::Table => {
                if let Some(t) = self.layout.as_mut() {
                    t.columns = names.to_vec();
                }
            }
            OutFormat::Csv => {
                let head: Vec<String> = names.iter().map(|c| csv_field(c)).collect();
                write!(self.out, "{}\r\n", head.join(","))?;
            }
            OutFormat::Json => {}
        }
        Ok(())
    }

    fn row(&mut self, cells: Vec<Cell>) -> io::Result<()> {
        self.rows += 1;
        match self.format {
            OutFormat::Table => match self.layout.as_mut() {
                Some(t) if t.rows.len() < TABLE_LAYOUT_ROWS => t.rows.push(cells),
                Some(_) => {
                    let t = self.layout.take().unwrap_or_else(|| Table {
                        columns: Vec::new(),
                        rows: Vec::new(),
                    });
                    self.lay_out(t)?;
                    self.table_row(&cells)?;
                }
                None => self.table_row(&cells)?,
            },
            OutFormat::Csv => {
                let fields: Vec<String> = cells.iter().map(|c| csv_field(&plain(c))).collect();
                write!(self.out, "{}\r\n", fields.join(","))?;
            }
            OutFormat::Json => {
                let object: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .zip(&cells)
                    .map(|(c, v)| (c.clone(), serde_json::to_value(v).unwrap_or_default()))
                    .collect();
                let text = serde_json::to_string_pretty(&object).map_err(io::Error::other)?;
                self.out
                    .write_all(if self.rows == 1 { b"[\n" } else { b",\n" })?;
                let indented: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
                self.out.write_all(indented.join("\n").as_bytes())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        Table {
            columns: vec!["name".into(), "value".into()],
            rows: vec![
                vec![Cell::Text("plain".into()), Cell::Int(3)],
                vec![Cell::Text("a, \"quoted\"\nname".into()), Cell::Real(1.5)],
                vec![Cell::Null, Cell::Null],
            ],
        }
    }

    fn streamed(t: &Table, format: OutFormat) -> String {
        let mut out = Vec::new();
        let mut s = Stream::new(format, &mut out);
        s.columns(&t.columns).expect("columns");
        for r in &t.rows {
            s.row(r.clone()).expect("row");
        }
        s.finish().expect("finish");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn streamed_output_equals_the_rendered_one_in_every_format() {
        let empty = Table {
            columns: vec!["a".into()],
            rows: vec![],
        };
        // Past the table's layout rows, with every value as wide as the first ones.
        let long = Table {
            columns: vec!["n".into(), "name".into()],
            rows: (0..2500)
                .map(|i| {
                    vec![
                        Cell::Int(1000 + i % 9000),
                        Cell::Text(format!("x{}", i % 10)),
                    ]
                })
                .collect(),
        };
        for t in [sample(), empty, long] {
            for f in [OutFormat::Table, OutFormat::Json, OutFormat::Csv] {
                assert_eq!(
                    streamed(&t, f),
                    render(&t, f),
                    "{f:?}, {} rows",
                    t.rows.len()
                );
            }
        }
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        assert_eq!(
            csv(&sample()),
            "name,value\r\nplain,3\r\n\"a, \"\"quoted\"\"\nname\",1.5\r\n,\r\n"
        );
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let v: serde_json::Value = serde_json::from_str(&json(&sample())).expect("json");
        assert_eq!(v[0]["name"], "plain");
        assert_eq!(v[1]["value"], 1.5);
        assert!(v[2]["value"].is_null());
    }

    #[test]
    fn table_aligns_numbers_right() {
        let t = table(&Table {
            columns: vec!["n".into(), "word".into()],
            rows: vec![
                vec![Cell::Int(5), Cell::Text("a".into())],
                vec![Cell::Int(123), Cell::Text("bcd".into())],
            ],
        });
        assert_eq!(t, "  n  word\n---  ----\n  5  a\n123  bcd\n(2 rows)\n");
    }
}

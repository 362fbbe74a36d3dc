//! Query results for people and programs: an aligned text table, JSON (an array of objects, one
//! per row), or CSV (RFC 4180: a header row, fields quoted when they hold a comma, quote or line
//! break, quotes doubled).

use std::fmt::Write as _;

use crate::model::{Cell, Table};

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

pub fn table(t: &Table) -> String {
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(shown).collect())
        .collect();
    let widths: Vec<usize> = (0..t.columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([t.columns[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..t.columns.len())
        .map(|i| {
            t.rows
                .iter()
                .all(|r| matches!(r[i], Cell::Int(_) | Cell::Real(_) | Cell::Null))
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if numeric[i] {
                    format!("{s:>w$}", w = widths[i])
                } else {
                    format!("{s:<w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &t.columns);
    line(
        &mut out,
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    );
    for r in &cells {
        line(&mut out, r);
    }
    let _ = writeln!(
        out,
        "({} row{})",
        t.rows.len(),
        if t.rows.len() == 1 { "" } else { "s" }
    );
    out
}

pub fn json(t: &Table) -> String {
    serde_json::to_string_pretty(&t.json_rows()).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// One CSV field, quoted as RFC 4180 requires.
pub fn csv_field(s: &str) -> String {
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

//! The analysis catalog: the named queries of `queries/*.sql`, their parameters as declared in each
//! file's header (`--   :name = default  kind  what it means`), and turning parameter text from
//! the command line (`window_ms=10m`, `threshold=1GiB`, `now_ms=2026-11-25T04:00:00Z`) into values
//! of the declared kind, or a clear error naming the parameter.
//! The SQL does the analysis; this module only finds, fills and runs it.

use rusqlite::Connection;

use crate::model::{Cell, Table};
use crate::store::{self, StoreError};
use crate::units::{ByteSize, HumanDuration};

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("no query named {name:?}: the named queries are {}", names().join(", "))]
    UnknownQuery { name: String },
    #[error("query {query} has no parameter {param:?}: it takes {}", takes.join(", "))]
    UnknownParam {
        query: String,
        param: String,
        takes: Vec<String>,
    },
    #[error("query {query} needs --param {param}=VALUE ({doc})")]
    MissingParam {
        query: String,
        param: String,
        doc: String,
    },
    #[error("--param {0:?} is not NAME=VALUE")]
    BadParam(String),
    #[error("--param {param}={value:?} is not {}: {param} takes {}", kind.article(), kind.forms())]
    BadValue {
        param: String,
        value: String,
        kind: Kind,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("query {query} returned a row memtrail cannot read: {source}")]
    Rows {
        query: String,
        source: serde_json::Error,
    },
}

/// A parameter's default as written in a query header.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    Now,
    Required,
    Value(Cell),
}

/// What a parameter's value is, as its header declares it (the word after the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A point in time, stored as Unix ms (`now`, `-2h`, RFC 3339, ...: `units::parse_time`).
    Time,
    /// A length of time, stored as ms (`10m`, or a plain number of ms).
    Duration,
    /// A number in the series' unit, which may carry a size unit (`1GiB`, `85.5`).
    Size,
    /// A whole number (an id, a count).
    Integer,
    /// Any number.
    Number,
    Text,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        Some(match word {
            "time" => Kind::Time,
            "duration" => Kind::Duration,
            "size" => Kind::Size,
            "integer" => Kind::Integer,
            "number" => Kind::Number,
            "text" => Kind::Text,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Time => "time",
            Kind::Duration => "duration",
            Kind::Size => "size",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Text => "text",
        }
    }

    fn article(self) -> &'static str {
        match self {
            Kind::Time => "a time",
            Kind::Duration => "a duration",
            Kind::Size => "a size or number",
            Kind::Integer => "a whole number",
            Kind::Number => "a number",
            Kind::Text => "text",
        }
    }

    fn forms(self) -> &'static str {
        match self {
            Kind::Time => crate::units::TIME_FORMS,
            Kind::Duration => "a duration (500ms, 10m, 1h30m) or a number of ms",
            Kind::Size => "a number in the series' unit, with a size unit for bytes (1GiB, 512MB)",
            Kind::Integer => "a whole number (e.g. 4242)",
            Kind::Number => "a number (e.g. 0.5, 2.33)",
            Kind::Text => "any text",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub default: Default,
    /// `None` when the header names no kind (a test keeps every header declaring one).
    pub kind: Option<Kind>,
    pub doc: String,
}

#[derive(Debug, Clone)]
pub struct NamedQuery {
    pub name: &'static str,
    pub sql: &'static str,
    pub summary: String,
    pub params: Vec<Param>,
    /// The columns a table for people shows (`-- Table columns: a, b, c`); `None`: all of them.
    pub table_columns: Option<Vec<String>>,
}

pub fn names() -> Vec<&'static str> {
    store::QUERIES.iter().map(|(n, _)| *n).collect()
}

/// Every named query with its header parsed, once per process (rules run them at every evaluation).
pub(crate) fn catalog() -> &'static [NamedQuery] {
    static CATALOG: std::sync::OnceLock<Vec<NamedQuery>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| {
        store::QUERIES
            .iter()
            .map(|(name, sql)| parse_header(name, sql))
            .collect()
    })
}

pub fn find(name: &str) -> Result<&'static NamedQuery, AnalysisError> {
    catalog()
        .iter()
        .find(|q| q.name == name)
        .ok_or_else(|| AnalysisError::UnknownQuery {
            name: name.to_string(),
        })
}

/// Read the summary (first line, after `-- name:`) and the `--   :param = default  doc` lines.
pub(crate) fn parse_header(name: &'static str, sql: &'static str) -> NamedQuery {
    let mut summary = String::new();
    let mut params = Vec::new();
    let mut table_columns = None;
    for line in sql.lines().take_while(|l| l.starts_with("--")) {
        let text = line.trim_start_matches('-').trim();
        if let Some(cols) = text.strip_prefix("Table columns:") {
            table_columns = Some(cols.split(',').map(|c| c.trim().to_string()).collect());
            continue;
        }
        if summary.is_empty() {
            summary = text
                .strip_prefix(&format!("{name}:"))
                .unwrap_or(text)
                .trim()
                .to_string();
            continue;
        }
        let Some(rest) = text.strip_prefix(':') else {
            continue;
        };
        let Some((pname, after)) = rest.split_once('=') else {
            continue;
        };
        let after = after.trim();
        let (default, rest) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
        let rest = rest.trim();
        let (word, doc) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let kind = Kind::parse(word);
        params.push(Param {
            name: pname.trim().to_string(),
            default: match default {
                "now" => Default::Now,
                "required" => Default::Required,
                other => Default::Value(literal(other)),
            },
            kind,
            doc: if kind.is_some() { doc } else { rest }.trim().to_string(),
        });
    }
    NamedQuery {
        name,
        sql,
        summary,
        params,
        table_columns,
    }
}

fn literal(text: &str) -> Cell {
    if text.eq_ignore_ascii_case("null") {
        Cell::Null
    } else if let Ok(i) = text.parse::<i64>() {
        Cell::Int(i)
    } else if let Ok(f) = text.parse::<f64>() {
        Cell::Real(f)
    } else {
        Cell::Text(text.to_string())
    }
}

/// A parameter value written by a person, read as its declared kind; `NULL` clears any parameter.
/// `None` when the text is not of that kind.
pub(crate) fn parse_value(kind: Kind, text: &str, now_ms: i64) -> Option<Cell> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("null") {
        return Some(Cell::Null);
    }
    let number = || match literal(text) {
        Cell::Int(i) => Some(Cell::Int(i)),
        Cell::Real(f) if f.is_finite() => Some(Cell::Real(f)),
        _ => None,
    };
    match kind {
        Kind::Time => crate::units::parse_time(text, now_ms).map(Cell::Int),
        Kind::Duration => match literal(text) {
            Cell::Int(ms) if ms >= 0 => Some(Cell::Int(ms)),
            _ => text
                .parse::<HumanDuration>()
                .ok()
                .map(|d| Cell::Int(d.0.as_millis() as i64)),
        },
        Kind::Size => {
            number().or_else(|| text.parse::<ByteSize>().ok().map(|b| Cell::Int(b.0 as i64)))
        }
        Kind::Integer => text.parse::<i64>().ok().map(Cell::Int),
        Kind::Number => number(),
        Kind::Text => Some(Cell::Text(text.to_string())),
    }
}

impl NamedQuery {
    /// Fill every parameter: given values first, then header defaults.
    pub fn bind(
        &self,
        given: &[(String, Cell)],
        now_ms: i64,
    ) -> Result<Vec<(String, Cell)>, AnalysisError> {
        for (name, _) in given {
            if !self.params.iter().any(|p| &p.name == name) {
                return Err(AnalysisError::UnknownParam {
                    query: self.name.to_string(),
                    param: name.clone(),
                    takes: self.params.iter().map(|p| p.name.clone()).collect(),
                });
            }
        }
        self.params
            .iter()
            .map(|p| {
                let value = match (given.iter().find(|(n, _)| *n == p.name), &p.default) {
                    (Some((_, v)), _) => v.clone(),
                    (None, Default::Now) => Cell::Int(now_ms),
                    (None, Default::Value(v)) => v.clone(),
                    (None, Default::Required) => {
                        return Err(AnalysisError::MissingParam {
                            query: self.name.to_string(),
                            param: p.name.clone(),
                            doc: p.doc.clone(),
                        });
                    }
                };
                Ok((p.name.clone(), value))
            })
            .collect()
    }

    /// Parse `NAME=VALUE` texts (from `--param`) into values for this query.
    pub(crate) fn parse_params(
        &self,
        texts: &[String],
        now_ms: i64,
    ) -> Result<Vec<(String, Cell)>, AnalysisError> {
        texts
            .iter()
            .map(|t| {
                let (name, value) = t
                    .split_once('=')
                    .ok_or_else(|| AnalysisError::BadParam(t.clone()))?;
                let name = name.trim().trim_start_matches(':').to_string();
                // An unknown name is reported by `bind`, with the names the query takes.
                let Some(p) = self.params.iter().find(|p| p.name == name) else {
                    return Ok((name, Cell::Text(value.to_string())));
                };
                let kind = p.kind.unwrap_or(Kind::Text);
                let cell =
                    parse_value(kind, value, now_ms).ok_or_else(|| AnalysisError::BadValue {
                        param: name.clone(),
                        value: value.trim().to_string(),
                        kind,
                    })?;
                Ok((name, cell))
            })
            .collect()
    }

    pub fn run(
        &self,
        conn: &Connection,
        given: &[(String, Cell)],
        now_ms: i64,
    ) -> Result<Table, AnalysisError> {
        let bound = self.bind(given, now_ms)?;
        Ok(store::query_table(conn, self.sql, &bound)?)
    }
}

/// Run a named query with some parameters set (the rest take their defaults).
pub fn run(
    conn: &Connection,
    name: &str,
    given: &[(&str, Cell)],
    now_ms: i64,
) -> Result<Table, AnalysisError> {
    let given: Vec<(String, Cell)> = given
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    find(name)?.run(conn, &given, now_ms)
}

#[cfg(test)]
pub(crate) mod tests;

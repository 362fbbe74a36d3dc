//! The analysis catalog: the named queries of `queries/*.sql`, their parameters as declared in each
//! file's header (`--   :name = default   what it means`), and turning parameter text from the
//! command line (`window_ms=10m`, `threshold=1GiB`, `now_ms=2026-11-25T04:00:00Z`) into values.
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A parameter's default as written in a query header.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    Now,
    Required,
    Value(Cell),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub default: Default,
    pub doc: String,
}

#[derive(Debug, Clone)]
pub struct NamedQuery {
    pub name: &'static str,
    pub sql: &'static str,
    pub summary: String,
    pub params: Vec<Param>,
}

pub fn names() -> Vec<&'static str> {
    store::QUERIES.iter().map(|(n, _)| *n).collect()
}

/// Every named query with its header parsed, once per process (rules run them at every evaluation).
pub fn catalog() -> &'static [NamedQuery] {
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
pub fn parse_header(name: &'static str, sql: &'static str) -> NamedQuery {
    let mut summary = String::new();
    let mut params = Vec::new();
    for line in sql.lines().take_while(|l| l.starts_with("--")) {
        let text = line.trim_start_matches('-').trim();
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
        let (default, doc) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
        params.push(Param {
            name: pname.trim().to_string(),
            default: match default {
                "now" => Default::Now,
                "required" => Default::Required,
                other => Default::Value(literal(other)),
            },
            doc: doc.trim().to_string(),
        });
    }
    NamedQuery {
        name,
        sql,
        summary,
        params,
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

/// A parameter value written by a person. `*_ms` parameters take durations (`10m`) or, for
/// points in time (`now_ms`, `from_ms`, `to_ms`), RFC 3339 times or a duration ago (`-2h`);
/// other numbers may carry a size unit (`1GiB`).
pub fn parse_value(name: &str, text: &str, now_ms: i64) -> Cell {
    let text = text.trim();
    let plain = literal(text);
    if !matches!(plain, Cell::Text(_)) {
        return plain;
    }
    let is_time = matches!(name, "now_ms" | "from_ms" | "to_ms");
    if name.ends_with("_ms") {
        if is_time {
            if text == "now" {
                return Cell::Int(now_ms);
            }
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
                return Cell::Int(t.timestamp_millis());
            }
            if let Some(ago) = text.strip_prefix('-')
                && let Ok(d) = ago.parse::<HumanDuration>()
            {
                return Cell::Int(now_ms - d.0.as_millis() as i64);
            }
        } else if let Ok(d) = text.parse::<HumanDuration>() {
            return Cell::Int(d.0.as_millis() as i64);
        }
    }
    if let Ok(b) = text.parse::<ByteSize>() {
        return Cell::Int(b.0 as i64);
    }
    plain
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
    pub fn parse_params(
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
                let cell = parse_value(&name, value, now_ms);
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

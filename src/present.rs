//! Present: output for people and tools. Tables, JSON and CSV of query results, and reports (Markdown, HTML with SVG charts, JSON, CSV).

pub mod compare;
pub mod output;
pub mod prometheus_rules;
pub mod report;
pub mod status;
pub(crate) mod top;

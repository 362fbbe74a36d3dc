//! Analyze: what the history means. The catalog of named queries and their parameters, the alert rules and their engine, replays of the rules over history, and the per-target overview. The SQL itself lives in `queries/`.

pub mod alerts;
pub mod analysis;
pub mod backtest;
pub mod compare;
pub mod export;
pub(crate) mod overview;

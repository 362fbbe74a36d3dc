//! memtrail: an embedded SQLite time-series recorder for memory. The sampler reads `/proc`, the
//! recorder moves each tick into the store, and the analysis reads the store. See ARCHITECTURE.md.

pub mod alerts;
pub mod analysis;
pub mod api;
pub mod backtest;
pub mod cgroup;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod exec;
pub mod http;
pub mod import;
pub mod layers;
pub mod live;
pub mod model;
pub mod notify;
pub mod output;
pub mod procfs;
#[cfg(test)]
mod proptests;
pub mod recorder;
pub mod report;
pub mod sampler;
pub mod settings;
pub mod spool;
pub mod status;
pub mod store;
pub mod units;

//! memtrail: an embedded SQLite time-series recorder for memory. The sampler reads `/proc`, the
//! recorder moves each tick into the store, and the analysis reads the store. See ARCHITECTURE.md.

// The stages, bottom first, as the data flows (src/layers.rs keeps imports running down them).
pub mod act;
pub mod allocator;
pub mod analyze;
pub mod cli;
pub mod collect;
pub mod config;
pub mod logsink;
pub mod model;
pub mod present;
pub mod record;
pub mod serve;
pub mod store;
pub mod units;

pub mod layers;
#[cfg(test)]
mod proptests;

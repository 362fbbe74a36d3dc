//! memtrail: an embedded SQLite time-series recorder for memory. The sampler reads `/proc`, the
//! recorder moves each tick into the store, and the analysis reads the store. See ARCHITECTURE.md.

// The stages, bottom first, as the data flows (src/layers.rs keeps imports running down them).
pub(crate) mod act;
pub(crate) mod allocator;
pub mod analyze;
pub mod cli;
pub mod collect;
pub mod config;
pub(crate) mod logsink;
pub mod model;
pub mod present;
pub mod record;
pub mod serve;
pub mod store;
pub mod units;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod proptests;

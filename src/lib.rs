//! memtrail: an embedded SQLite time-series recorder for memory. The sampler reads `/proc`, the
//! recorder moves each tick into the store, and the analysis reads the store. See ARCHITECTURE.md.

// The layers, bottom first, as the data flows (src/layers.rs keeps imports running down them).

// Base: plain types and helpers every stage may use; `sys` holds every libc call.
pub(crate) mod allocator;
pub(crate) mod logsink;
pub mod model;
pub(crate) mod sys;
pub mod units;

// Settings as read from flags and the config file.
pub mod config;

// Collect: read /proc, cgroups and imported files into plain samples.
pub mod collect;

// Store: the SQLite file, its migrations, writes, reads and the named queries.
pub mod store;

// Analyze: the queries' verdicts, the alert rules, the overview, backtests.
pub mod analyze;

// Act: run commands, deliver notifications, clean up.
pub(crate) mod act;

// Record: the tick loop that moves samples into the store and runs the rules.
pub mod record;

// Serve: the HTTP API.
pub mod serve;

// Present: tables, status, reports.
pub mod present;

// Cli: one module per subcommand.
pub mod cli;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod proptests;

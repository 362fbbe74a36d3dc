//! Record: the long-running recorder. Its checked settings, the tick loop (clock, backlog, spool of ticks between commits) and what it shares live with whoever serves it.

pub mod live;
pub mod recorder;
pub(crate) mod settings;
pub mod spool;

//! Integration tests: drive the real `memtrail` binary against real processes (the `memhog`
//! helper allocates known amounts of memory) and real SQLite files, and check what was recorded.

mod analysis;
mod api;
mod cgroup;
mod cleanup;
mod compare;
mod config;
mod errors;
mod events;
mod newcomer;
mod operator;
mod prometheus;
mod record;
mod reliability;
mod report;
mod status;
mod top;
mod util;
mod z_soak;

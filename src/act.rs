//! Act: what memtrail does about it. Shell commands and POSTs with timeouts, alert deliveries (webhook and command, each on its own thread), and cleanup runs with their audit rows.

pub mod cleanup;
pub mod exec;
pub mod notify;

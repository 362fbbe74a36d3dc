//! Serve: the HTTP API the recorder serves while it records, and the connection limits of its server.

pub mod api;
pub mod http;
pub mod prometheus;

//! Collect: reading what is measured. `/proc` and cgroup files parsed into plain data, the sampler that turns the watched targets into one snapshot a tick, and the importers of other tools' files. Nothing here touches the database.

pub mod cgroup;
pub mod import;
pub(crate) mod namegroup;
pub(crate) mod procfs;
pub(crate) mod sampler;

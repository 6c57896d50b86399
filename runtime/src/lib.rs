//! Streamjob's runtime: keyed, event-time windowed stream jobs declared in a
//! YAML spec, with state in RocksDB.
//!
//! The modules follow the data: `spec` (what a job is) → `connectors`
//! (sources and sinks) → `record` (events and keys) → `time` (event time and
//! watermarks) → `window` (assigning, firing) with `aggregate` → `state`
//! (keyed state in RocksDB) → `engine` (workers and the keyed exchange).

pub mod aggregate;
pub mod bench;
pub mod checkpoint;
pub mod connectors;
pub mod control;
pub mod engine;
pub mod enrich;
pub mod failpoint;
pub mod fsutil;
pub mod record;
pub mod spec;
pub mod state;
pub mod time;
pub mod window;

pub use engine::{run, run_with_restarts, JobError, RestoreFrom, RunOptions, RunSummary};
pub use spec::JobSpec;

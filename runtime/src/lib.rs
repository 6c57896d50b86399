//! Streamjob's runtime: keyed, event-time windowed stream jobs declared in a
//! YAML spec, with state in RocksDB.
//!
//! The modules follow the data: `spec` (what a job is) → `connectors`
//! (sources and sinks) → `record` (events and keys) → `time` (event time and
//! watermarks) → `window` (assigning, firing) with `aggregate` → `state`
//! (keyed state in RocksDB) → `engine` (workers and the keyed exchange).

pub mod aggregate;
pub mod checkpoint;
pub mod connectors;
pub mod control;
pub mod engine;
pub mod enrich;
pub mod failpoint;
pub mod record;
pub mod state;
pub mod time;
pub mod window;

/// The tracing target of messages meant for the person running the job
/// (a restart, a restore that drops state): `streamjob` prints them on
/// stderr as `streamjob: <message>` whatever the log filter.
pub const NOTICE: &str = "streamjob::notice";

/// Tells the person running the job something (see [`NOTICE`]).
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => {
        tracing::warn!(target: "streamjob::notice", $($arg)*)
    };
}

pub use streamjob_spec as spec;
pub use streamjob_storage::fsutil;

pub use engine::{run, run_with_restarts, JobError, Pods, RestoreFrom, RunOptions, RunSummary};
pub use spec::JobSpec;

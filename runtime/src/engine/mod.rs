//! Runs a job: builds the workers, the keyed exchange between them and the
//! sink thread, and waits for the job to finish.
//!
//! - `run`: one run of a job, from its start (or a snapshot) to its end.
//! - `build`: the workers of a run, with their state restored.
//! - `restore`: which snapshot a run starts from, and whether it fits.
//! - `coordinator`: triggers checkpoints and completes them.
//! - `restarts`: runs again after a failure, as the restart strategy says.
//! - `exchange`: the ways between workers, in this process and across pods.
//! - `worker`, `operator`, `collector`, `sinks`, `upload`: what runs on the
//!   worker threads and the sink thread.

mod activity;
mod build;
mod collector;
mod coordinator;
mod exchange;
mod operator;
mod parallel_decode;
mod restarts;
mod restore;
mod routing;
mod run;
mod sinks;
mod upload;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::{RestoreError, StorageError};
use crate::connectors::Malformed;
use crate::control::JobControl;
use crate::state::StateError;
use crate::window::WindowResult;

pub use build::key_group_owners;
pub use exchange::Pods;
pub use restarts::run_with_restarts;
pub use run::run;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("source: {0}")]
    Source(std::io::Error),
    #[error("sink: {0}")]
    Sink(std::io::Error),
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("malformed record at {} ({}), and sideOutputs.failOnMalformed is true: {}", .0.location, .0.error, .0.raw)]
    Malformed(Malformed),
    #[error("worker thread failed: {0}")]
    Panic(String),
    #[error(
        "could not start thread {name} ({source}): a job of parallelism {parallelism} runs about \
         {} threads; lower `parallelism`, or raise the limits on threads (ulimit -u, a \
         container's pids limit) and memory",
        2 * .parallelism + 2
    )]
    Thread {
        name: String,
        parallelism: u32,
        source: std::io::Error,
    },
    #[error("checkpoint storage: {0}")]
    Storage(#[from] StorageError),
    #[error("restore: {0}")]
    Restore(#[from] RestoreError),
    /// The job's pods could not form, or lost one another.
    #[error("across pods: {0}")]
    Pods(String),
    #[error("checkpoint {id} failed: {error}")]
    Checkpoint { id: u64, error: String },
}

/// Where a job's state comes from when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// The newest completed checkpoint in the job's checkpoint storage (or a
    /// savepoint taken after it, see `CheckpointStorage::newest`).
    LatestCheckpoint,
    /// A checkpoint or savepoint folder, or its URI.
    Path(PathBuf),
    /// A restart after a failure: the newest snapshot completed since this
    /// process first started (ids from `since` on), else where it first
    /// started from. An older run's checkpoint is never picked up by a
    /// restart.
    Recovery {
        since: u64,
        started_from: Option<Box<RestoreFrom>>,
    },
}

/// How to run a job, beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Folder that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    /// Overrides `state.dir`.
    pub state_dir: Option<PathBuf>,
    /// Set to stop the job (it stops without firing open windows). With a
    /// `control`, the control's flag is the one that counts (see `stop_flag`).
    pub stop: Arc<AtomicBool>,
    /// Keep every window result in memory and return it in the summary.
    pub capture_results: bool,
    /// Start from a snapshot instead of from nothing.
    pub restore: Option<RestoreFrom>,
    /// Live metrics, savepoint requests and stop, for the control API.
    pub control: Option<Arc<JobControl>>,
    /// Restore a snapshot whose window state does not fit the job: drop the
    /// state, keep the source positions (Flink's allowNonRestoredState).
    pub allow_non_restored_state: bool,
    /// The deployment this process belongs to (the operator sets one per
    /// rollout). Its first process starts from `restore`; a later one (the
    /// container restarted, the pod recreated) resumes like an in-process
    /// restart: from the newest snapshot the deployment completed, never by
    /// rewinding to where the deployment started. Needs checkpoint storage,
    /// where the deployment is recorded.
    pub deployment: Option<String>,
    /// The job runs over several processes (pods), and this is one of
    /// them: it runs its share of the workers.
    pub pods: Option<Pods>,
}

/// What a finished job did.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub records_in: u64,
    pub results: u64,
    pub late: u64,
    pub malformed: u64,
    /// Records an enrich lookup found no entry for.
    pub unmatched: u64,
    pub keys_spilled: u64,
    pub elapsed: Duration,
    /// With `capture_results`, every result, worker by worker.
    pub captured: Vec<WindowResult>,
    /// Checkpoints completed during the run.
    pub checkpoints: u64,
    /// The snapshot the run started from.
    pub restored_from: Option<String>,
    /// Restarts after failures (with a restart strategy).
    pub restarts: u32,
    /// Time until every worker was running: reading and loading the
    /// snapshot, when the run restores one.
    pub startup: Duration,
}

impl RunOptions {
    /// The flag that stops the run: the control's when there is one (the
    /// control API and stop-with-savepoint set it), else `stop`.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        match &self.control {
            Some(control) => control.stop.clone(),
            None => self.stop.clone(),
        }
    }
}

impl JobError {
    /// Whether running again could go differently: not for a job or a
    /// snapshot that does not fit, nor for a malformed record the job is
    /// told to fail on (it would be read again). Storage that could not be
    /// reached may answer next time.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::Restore(RestoreError::Storage(_)) => true,
            JobError::Restore(_) | JobError::Malformed(_) => false,
            _ => true,
        }
    }
}

/// What a panic said: its message, for [`JobError::Panic`].
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Starts thread `name` of a job of `parallelism`; a failure to start it
/// (out of threads or memory) names the thread and the way out.
pub(crate) fn start_thread<T: Send + 'static>(
    name: String,
    parallelism: u32,
    run: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, JobError> {
    let spawned = match crate::failpoint::armed_for("thread-start", &name) {
        true => Err(std::io::Error::other("failpoint thread-start")),
        false => std::thread::Builder::new().name(name.clone()).spawn(run),
    };
    spawned.map_err(|source| JobError::Thread {
        name,
        parallelism,
        source,
    })
}

//! The job's control surface: live metrics, checkpoint history, savepoint
//! requests and stop, shared between the running job and the HTTP control
//! API (`http.rs`). It outlives restarts, so probes and clients see one job.

mod dashboard;
mod http;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use streamjob_api::{JobStatus, PodPlace, SnapshotKind, SnapshotRef};

pub use http::{serve, ControlServer, ControlToken};
pub use streamjob_api::{JobState, SavepointStatus, SnapshotRecord};

/// A request for the checkpoint coordinator.
pub struct SavepointRequest {
    /// Stop the job once the savepoint is complete.
    pub then_stop: bool,
    /// The id the savepoint gets, or why there will be none.
    pub reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

/// Counters and gauges, as Prometheus exposes them.
#[derive(Default)]
pub struct Metrics {
    pub records_in: Counter,
    pub results: Counter,
    pub late: Counter,
    pub malformed: Counter,
    pub unmatched: Counter,
    pub checkpoints_completed: Counter,
    pub checkpoints_failed: Counter,
    pub restarts: Counter,
    pub last_checkpoint_id: Gauge,
    pub last_checkpoint_bytes: Gauge,
    pub last_checkpoint_duration_ms: Gauge,
    pub watermark_ms: Gauge,
    /// Kafka records not read yet, over all partitions (absent until the
    /// consumers first report end offsets).
    pub consumer_lag: Gauge,
}

impl Metrics {
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("streamjob");
        r.register(
            "records_in",
            "Records read from the source",
            self.records_in.clone(),
        );
        r.register("results", "Window results emitted", self.results.clone());
        r.register(
            "late_records",
            "Elements later than the allowed lateness",
            self.late.clone(),
        );
        r.register(
            "malformed_records",
            "Records that could not be read",
            self.malformed.clone(),
        );
        r.register(
            "unmatched_records",
            "Records an enrich lookup found no entry for",
            self.unmatched.clone(),
        );
        r.register(
            "checkpoints_completed",
            "Checkpoints and savepoints completed",
            self.checkpoints_completed.clone(),
        );
        r.register(
            "checkpoints_failed",
            "Checkpoints that failed",
            self.checkpoints_failed.clone(),
        );
        r.register("restarts", "Restarts after failures", self.restarts.clone());
        r.register(
            "last_checkpoint_id",
            "Id of the last completed checkpoint",
            self.last_checkpoint_id.clone(),
        );
        r.register(
            "last_checkpoint_size_bytes",
            "Size of the last completed checkpoint",
            self.last_checkpoint_bytes.clone(),
        );
        r.register(
            "last_checkpoint_duration_milliseconds",
            "Time from trigger to completion of the last checkpoint",
            self.last_checkpoint_duration_ms.clone(),
        );
        r.register(
            "watermark_milliseconds",
            "The job's event-time watermark",
            self.watermark_ms.clone(),
        );
        r.register(
            "consumer_lag_records",
            "Kafka records behind the end of the source partitions (last stable offset minus next offset to read)",
            self.consumer_lag.clone(),
        );
        r
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry())
            .expect("writing to a String cannot fail");
        text
    }
}

struct Shared {
    state: JobState,
    error: Option<String>,
    checkpoints: VecDeque<SnapshotRecord>,
    savepoints: BTreeMap<u64, SavepointStatus>,
}

/// What the running job and the control API share.
pub struct JobControl {
    pub job: String,
    pub metrics: Metrics,
    /// Per-worker watermarks; the job's is their minimum.
    watermarks: Vec<AtomicI64>,
    /// Per-worker consumer lag (-1: not known yet); the job's is their sum.
    lags: Vec<AtomicI64>,
    shared: Mutex<Shared>,
    requests: (
        crossbeam_channel::Sender<SavepointRequest>,
        crossbeam_channel::Receiver<SavepointRequest>,
    ),
    /// Set to stop the job (shared with the run's workers).
    pub stop: Arc<AtomicBool>,
    /// A `POST /stop` is under way or done: a second one is refused.
    stop_claimed: AtomicBool,
    savepoints_supported: AtomicBool,
    /// Over several pods, this one's place.
    pod: Mutex<Option<PodPlace>>,
    /// When the process started, epoch milliseconds.
    started_at: i64,
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobControl")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

/// Checkpoints listed by `/checkpoints`.
const HISTORY: usize = 50;

impl JobControl {
    pub fn new(job: &str, parallelism: usize) -> Arc<Self> {
        Arc::new(JobControl {
            job: job.to_string(),
            metrics: Metrics::default(),
            watermarks: (0..parallelism).map(|_| AtomicI64::new(i64::MIN)).collect(),
            lags: (0..parallelism).map(|_| AtomicI64::new(-1)).collect(),
            shared: Mutex::new(Shared {
                state: JobState::Starting,
                error: None,
                checkpoints: VecDeque::new(),
                savepoints: BTreeMap::new(),
            }),
            requests: crossbeam_channel::unbounded(),
            stop: Arc::new(AtomicBool::new(false)),
            stop_claimed: AtomicBool::new(false),
            savepoints_supported: AtomicBool::new(false),
            pod: Mutex::new(None),
            started_at: crate::time::now_millis(),
        })
    }

    /// The job runs over several pods, this one pod `index` of `pods`.
    pub fn set_pod(&self, index: u32, pods: u32) {
        *self.pod.lock().unwrap_or_else(|p| p.into_inner()) = Some(PodPlace { index, pods });
    }

    /// Whether the job can take savepoints (it has checkpoint storage).
    pub fn savepoints_supported(&self) -> bool {
        self.savepoints_supported.load(Ordering::Relaxed)
    }

    pub fn set_savepoints_supported(&self, yes: bool) {
        self.savepoints_supported.store(yes, Ordering::Relaxed);
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_state(&self, state: JobState, error: Option<String>) {
        let mut s = self.shared();
        s.state = state;
        s.error = error;
    }

    pub fn state(&self) -> JobState {
        self.shared().state
    }

    pub fn set_watermark(&self, worker: usize, watermark: i64) {
        if let Some(w) = self.watermarks.get(worker) {
            w.store(watermark, Ordering::Relaxed);
        }
        let min = self.watermark();
        if let Some(min) = min {
            self.metrics.watermark_ms.set(min);
        }
    }

    pub fn set_lag(&self, worker: usize, lag: u64) {
        if let Some(l) = self.lags.get(worker) {
            l.store(lag as i64, Ordering::Relaxed);
        }
        if let Some(total) = self.lag() {
            self.metrics.consumer_lag.set(total as i64);
        }
    }

    /// The job's consumer lag: the sum over the workers that know theirs
    /// (`None` before any Kafka consumer reported end offsets).
    pub fn lag(&self) -> Option<u64> {
        self.lags
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .filter(|l| *l >= 0)
            .fold(None, |sum, l| Some(sum.unwrap_or(0) + l as u64))
    }

    /// The job's watermark, once every worker has one.
    pub fn watermark(&self) -> Option<i64> {
        let min = self
            .watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()?;
        (min > i64::MIN).then_some(min)
    }

    pub fn checkpoint_completed(&self, record: SnapshotRecord) {
        self.metrics.checkpoints_completed.inc();
        let mut s = self.shared();
        match record.kind {
            SnapshotKind::Savepoint => {
                s.savepoints.insert(
                    record.id,
                    SavepointStatus::Completed {
                        path: record.path.clone(),
                    },
                );
            }
            SnapshotKind::Checkpoint => {
                // The last_checkpoint gauges describe one checkpoint.
                self.metrics.last_checkpoint_id.set(record.id as i64);
                self.metrics.last_checkpoint_bytes.set(record.bytes as i64);
                self.metrics
                    .last_checkpoint_duration_ms
                    .set(record.duration_ms as i64);
            }
        }
        s.checkpoints.push_back(record);
        if s.checkpoints.len() > HISTORY {
            s.checkpoints.pop_front();
        }
    }

    pub fn savepoint_started(&self, id: u64) {
        self.shared()
            .savepoints
            .insert(id, SavepointStatus::InProgress);
    }

    pub fn savepoint_failed(&self, id: u64, error: String) {
        self.metrics.checkpoints_failed.inc();
        self.shared()
            .savepoints
            .insert(id, SavepointStatus::Failed { error });
    }

    pub fn savepoint(&self, id: u64) -> Option<SavepointStatus> {
        self.shared().savepoints.get(&id).cloned()
    }

    pub fn checkpoints(&self) -> Vec<SnapshotRecord> {
        self.shared().checkpoints.iter().cloned().collect()
    }

    /// Asks the coordinator for a savepoint.
    /// Claims the job's stop for one request. False when another stop is
    /// under way or done, or the job was stopped otherwise.
    pub fn claim_stop(&self) -> bool {
        !self.stop.load(Ordering::SeqCst) && !self.stop_claimed.swap(true, Ordering::SeqCst)
    }

    /// A stop with a savepoint that failed: the job keeps running, and may
    /// be stopped again.
    pub fn release_stop(&self) {
        self.stop_claimed.store(false, Ordering::SeqCst);
    }

    pub fn request_savepoint(&self, request: SavepointRequest) {
        // The receiver lives in this struct, so the send cannot fail.
        let _ = self.requests.0.send(request);
    }

    /// The next savepoint request, for the coordinator.
    pub fn next_request(&self) -> Option<SavepointRequest> {
        self.requests.1.try_recv().ok()
    }

    /// `/status`.
    pub fn status(&self) -> JobStatus {
        let s = self.shared();
        let last = |kind| {
            s.checkpoints
                .iter()
                .rev()
                .find(|c| c.kind == kind)
                .map(|c| SnapshotRef {
                    id: c.id,
                    path: c.path.clone(),
                    time: Some(crate::time::format_time(c.completed_at)),
                })
        };
        JobStatus {
            job: self.job.clone(),
            state: s.state,
            error: s.error.clone(),
            last_checkpoint: last(SnapshotKind::Checkpoint),
            last_savepoint: last(SnapshotKind::Savepoint),
            watermark: self.watermark().map(crate::time::format_time),
            records_in: self.metrics.records_in.get(),
            records_out: self.metrics.results.get(),
            late: self.metrics.late.get(),
            malformed: self.metrics.malformed.get(),
            unmatched: self.metrics.unmatched.get(),
            restarts: self.metrics.restarts.get(),
            lag: self.lag(),
            parallelism: self.watermarks.len() as u32,
            pod: *self.pod.lock().unwrap_or_else(|p| p.into_inner()),
            started_at: Some(crate::time::format_time(self.started_at)),
        }
    }
}

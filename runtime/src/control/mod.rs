//! The job's control surface: live metrics, checkpoint history, savepoint
//! requests and stop, shared between the running job and the HTTP control
//! API (`http.rs`). It outlives restarts, so probes and clients see one job.

mod dashboard;
mod http;
mod metrics;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use streamjob_api::{
    CheckpointFailure, Failure, JobStatus, MalformedRecord, PodPlace, SnapshotKind, SnapshotRef,
};

pub use http::{serve, ControlServer, ControlToken};
pub use metrics::Metrics;
pub use streamjob_api::{
    CheckpointPhases, JobState, PartitionState, PartitionStatus, SavepointStatus, SnapshotRecord,
    StageTime, WorkerStatus, WorkerTime,
};

/// A request for the checkpoint coordinator.
pub struct SavepointRequest {
    /// Stop the job once the savepoint is complete.
    pub then_stop: bool,
    /// The id the savepoint gets, or why there will be none.
    pub reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

struct Shared {
    state: JobState,
    error: Option<String>,
    checkpoints: VecDeque<SnapshotRecord>,
    savepoints: BTreeMap<u64, SavepointStatus>,
    restored_from: Option<String>,
    recent_malformed: VecDeque<MalformedRecord>,
    recent_restarts: VecDeque<Failure>,
    checkpoint_failures: VecDeque<CheckpointFailure>,
}

/// A source partition as a worker reports it each second.
pub struct PartitionReport {
    pub id: String,
    pub state: PartitionState,
    /// Records read from it.
    pub records: u64,
    /// Its watermark, epoch milliseconds (`i64::MIN`: none yet).
    pub watermark: i64,
    /// Kafka records not read yet, when known.
    pub lag: Option<u64>,
}

/// Pushes `item` onto a list that keeps the newest `keep`.
fn keep_newest<T>(list: &mut VecDeque<T>, item: T, keep: usize) {
    list.push_back(item);
    while list.len() > keep {
        list.pop_front();
    }
}

/// What the running job and the control API share.
pub struct JobControl {
    pub job: String,
    pub metrics: Metrics,
    /// Per-worker watermarks; the job's is their minimum.
    watermarks: Vec<AtomicI64>,
    /// What each of this process's workers last published (once a second).
    workers: Vec<Mutex<Option<WorkerStatus>>>,
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
/// Malformed records, restarts and checkpoint failures `/status` lists.
pub const RECENT: usize = 5;
/// Bytes of a malformed record's reason (and location) `/status` shows.
const REASON_SHOWN: usize = 300;

impl JobControl {
    pub fn new(job: &str, parallelism: usize) -> Arc<Self> {
        Arc::new(JobControl {
            job: job.to_string(),
            metrics: Metrics::default(),
            watermarks: (0..parallelism).map(|_| AtomicI64::new(i64::MIN)).collect(),
            workers: (0..parallelism).map(|_| Mutex::new(None)).collect(),
            shared: Mutex::new(Shared {
                state: JobState::Starting,
                error: None,
                checkpoints: VecDeque::new(),
                savepoints: BTreeMap::new(),
                restored_from: None,
                recent_malformed: VecDeque::new(),
                recent_restarts: VecDeque::new(),
                checkpoint_failures: VecDeque::new(),
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

    /// The job's consumer lag: the sum over this process's partitions that
    /// know theirs (`None` before any Kafka consumer reported end offsets).
    pub fn lag(&self) -> Option<u64> {
        let mut known = None;
        for worker in &self.workers {
            let worker = worker.lock().unwrap_or_else(|p| p.into_inner());
            for lag in worker
                .iter()
                .flat_map(|w| &w.partitions)
                .filter_map(|p| p.lag)
            {
                *known.get_or_insert(0) += lag;
            }
        }
        known
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

    /// A worker's last second: the seconds it spent on each activity and
    /// stage, its watermark and its partitions.
    pub fn worker_second(
        &self,
        index: usize,
        (spent, stages): (WorkerTime, StageTime),
        watermark: i64,
        partitions: Vec<PartitionReport>,
    ) {
        let m = &self.metrics;
        let worker = index as u32;
        for (activity, seconds) in spent.by_activity() {
            let labels = metrics::WorkerActivity { worker, activity };
            m.worker_time.get_or_create(&labels).inc_by(seconds);
        }
        for (stage, seconds) in stages.by_stage() {
            let labels = metrics::WorkerStage { worker, stage };
            m.worker_stage_time.get_or_create(&labels).inc_by(seconds);
        }
        let shown = |wm: i64| (wm > i64::MIN).then(|| crate::time::format_time(wm));
        let partitions = partitions
            .into_iter()
            .map(|p| {
                let label = metrics::PartitionLabel {
                    partition: p.id.clone(),
                };
                if p.watermark > i64::MIN {
                    m.partition_watermark_ms
                        .get_or_create(&label)
                        .set(p.watermark);
                }
                if let Some(lag) = p.lag {
                    m.partition_lag.get_or_create(&label).set(lag as i64);
                }
                PartitionStatus {
                    id: p.id,
                    state: p.state,
                    records: p.records,
                    watermark: shown(p.watermark),
                    lag: p.lag,
                }
            })
            .collect();
        let total: f64 = spent.by_activity().iter().map(|(_, s)| s).sum();
        let total = if total > 0.0 { total } else { 1.0 };
        let status = WorkerStatus {
            index: worker,
            time: spent.divided_by(total),
            stages: stages.divided_by(total),
            watermark: shown(watermark),
            partitions,
        };
        if let Some(slot) = self.workers.get(index) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
        }
        if let Some(lag) = self.lag() {
            m.consumer_lag.set(lag as i64);
        }
    }

    /// What this run restored its state from.
    pub fn set_restored_from(&self, from: Option<String>) {
        self.shared().restored_from = from;
    }

    /// A record that could not be read at `at` (epoch milliseconds),
    /// counted by the worker's metrics; workers hand theirs over once a
    /// second, so the list is kept in time order. A reason quoting a huge
    /// field is cut short: `/status` stays small.
    pub fn malformed(&self, at: i64, location: &str, error: &str) {
        use crate::connectors::truncated;
        let shown = |text: &str| match truncated(text, REASON_SHOWN) {
            cut if cut.len() < text.len() => format!("{cut}…"),
            whole => whole.to_string(),
        };
        // RFC 3339 with milliseconds orders as text does.
        let record = MalformedRecord {
            at: crate::time::format_time(at),
            location: shown(location),
            error: shown(error),
        };
        let mut s = self.shared();
        let list = &mut s.recent_malformed;
        let place = list
            .iter()
            .rposition(|m| m.at <= record.at)
            .map_or(0, |i| i + 1);
        list.insert(place, record);
        while list.len() > RECENT {
            list.pop_front();
        }
    }

    /// The job failed with `error` and is restarting.
    pub fn restarting(&self, error: String) {
        self.metrics.restarts.inc();
        let failure = Failure {
            at: crate::time::format_time(crate::time::now_millis()),
            error: error.clone(),
        };
        let mut s = self.shared();
        keep_newest(&mut s.recent_restarts, failure, RECENT);
        s.state = JobState::Restarting;
        s.error = Some(error);
    }

    /// A checkpoint or savepoint failed.
    pub fn snapshot_failed(&self, id: u64, kind: SnapshotKind, error: String) {
        self.metrics.checkpoints_failed.inc();
        let mut s = self.shared();
        if kind == SnapshotKind::Savepoint {
            s.savepoints.insert(
                id,
                SavepointStatus::Failed {
                    error: error.clone(),
                },
            );
        }
        let failure = CheckpointFailure {
            id,
            kind,
            at: crate::time::format_time(crate::time::now_millis()),
            error,
        };
        keep_newest(&mut s.checkpoint_failures, failure, RECENT);
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
                let phases = record.phases.unwrap_or_default();
                for (phase, ms) in [
                    ("alignment", phases.alignment_ms),
                    ("sync", phases.sync_ms),
                    ("upload", phases.upload_ms),
                    ("commit", phases.commit_ms),
                ] {
                    self.metrics
                        .last_checkpoint_phase_ms
                        .get_or_create(&metrics::PhaseLabel { phase })
                        .set(ms as i64);
                }
            }
        }
        keep_newest(&mut s.checkpoints, record, HISTORY);
    }

    pub fn savepoint_started(&self, id: u64) {
        self.shared()
            .savepoints
            .insert(id, SavepointStatus::InProgress);
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
            restored_from: s.restored_from.clone(),
            workers: self
                .workers
                .iter()
                .filter_map(|w| w.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .collect(),
            recent_malformed: s.recent_malformed.iter().cloned().collect(),
            recent_restarts: s.recent_restarts.iter().cloned().collect(),
            checkpoint_failures: s.checkpoint_failures.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(id: &str, lag: Option<u64>) -> PartitionReport {
        PartitionReport {
            id: id.into(),
            state: PartitionState::Active,
            records: 0,
            watermark: i64::MIN,
            lag,
        }
    }

    /// The job's lag is the sum over the partitions that know theirs, as
    /// the workers last reported them; none before any does.
    #[test]
    fn the_lag_adds_up_the_partitions_that_know_theirs() {
        let control = JobControl::new("j", 2);
        let idle = (WorkerTime::default(), StageTime::default());
        control.worker_second(0, idle, i64::MIN, vec![partition("t-0", None)]);
        assert_eq!(control.lag(), None);
        control.worker_second(
            0,
            idle,
            i64::MIN,
            vec![partition("t-0", Some(3)), partition("t-2", None)],
        );
        control.worker_second(1, idle, i64::MIN, vec![partition("t-1", Some(4))]);
        assert_eq!(control.status().lag, Some(7));
        assert_eq!(control.metrics.consumer_lag.get(), 7);
        // A worker's new report replaces its last one.
        control.worker_second(1, idle, i64::MIN, vec![partition("t-1", Some(1))]);
        assert_eq!(control.lag(), Some(4));
    }

    /// `/status` keeps the newest five malformed records, and cuts a
    /// reason that quotes a huge field short (at a character boundary).
    #[test]
    fn the_last_malformed_records_are_kept_short() {
        let control = JobControl::new("j", 1);
        // Worker 1's records 1 to 5 are handed over after worker 0's 6 and
        // 7, which came later: the list stays in time order.
        control.malformed(6_000, "in.jsonl:6", "not a JSON object");
        control.malformed(7_000, "in.jsonl:7", "not a JSON object");
        for line in 1..=5 {
            control.malformed(
                line * 1_000,
                &format!("in.jsonl:{line}"),
                "not a JSON object",
            );
        }
        let huge = format!(
            "event-time field \"t\": \"{}\" is not a time",
            "é".repeat(1000)
        );
        control.malformed(8_000, "in.jsonl:8", &huge);
        let kept = control.status().recent_malformed;
        let locations: Vec<_> = kept.iter().map(|m| m.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "in.jsonl:4",
                "in.jsonl:5",
                "in.jsonl:6",
                "in.jsonl:7",
                "in.jsonl:8"
            ]
        );
        let last = &kept[4].error;
        assert!(
            last.len() <= REASON_SHOWN + '…'.len_utf8(),
            "{}",
            last.len()
        );
        assert!(last.starts_with("event-time field \"t\": \"éé") && last.ends_with('…'));
        assert_eq!(kept[3].error, "not a JSON object");
    }
}

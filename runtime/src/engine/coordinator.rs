//! The checkpoint coordinator: triggers a checkpoint every interval (or a
//! savepoint on request), collects every worker's acknowledgement, and
//! completes the snapshot: `_pending`, the sinks' commit, `_metadata`. A
//! checkpoint that fails or times out is abandoned, and more than
//! `tolerableFailures` of them in a row fail the job.

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use super::collector::{ask_sink, SinkMsg};
use super::restore::source_kind;
use super::worker::WorkerReport;
use super::JobError;
use crate::checkpoint::{CheckpointStorage, Layout, Metadata, SnapshotKind, METADATA, PENDING};
use crate::control::{CheckpointPhases, JobControl, SnapshotRecord};
use crate::spec::JobSpec;
use crate::time::{now_millis, MIN_WATERMARK};

/// What a worker (or its uploader) tells the coordinator about a snapshot
/// (from another pod, over the exchange).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Ack {
    Done {
        worker: usize,
        id: u64,
        bytes: u64,
        /// The worker's watermark at the snapshot.
        watermark: i64,
        /// How long the worker's phases took (no commit: that is the
        /// coordinator's).
        phases: CheckpointPhases,
    },
    Failed {
        worker: usize,
        id: u64,
        error: String,
    },
}

/// What a worker reported of a snapshot it wrote.
#[derive(Clone, Copy)]
struct Written {
    bytes: u64,
    watermark: i64,
    phases: CheckpointPhases,
}

/// The checkpoint under way: what each worker reported.
pub(super) struct InFlight {
    id: u64,
    kind: SnapshotKind,
    /// Stop the job when this savepoint completes.
    then_stop: bool,
    started: Instant,
    acks: Vec<Option<Written>>,
}

/// Triggers checkpoints on the interval, collects the workers' acks, and
/// completes each checkpoint by writing its `_metadata` last.
pub(super) struct Coordinator<'a> {
    pub(super) spec: &'a JobSpec,
    pub(super) control: Option<&'a JobControl>,
    pub(super) savepoint: &'a std::sync::atomic::AtomicU64,
    pub(super) sink: &'a crossbeam_channel::Sender<SinkMsg>,
    pub(super) storage: &'a CheckpointStorage,
    pub(super) layout: &'a Layout,
    pub(super) interval: Duration,
    pub(super) min_pause: Duration,
    pub(super) tolerable_failures: u32,
    /// A checkpoint not complete this long after its trigger is abandoned.
    pub(super) timeout: Duration,
    pub(super) retained: usize,
    pub(super) next_id: u64,
    pub(super) trigger: &'a std::sync::atomic::AtomicU64,
    /// The newest snapshot abandoned: the uploaders stop its uploads, so
    /// one stalled upload does not hold the next snapshot behind it.
    pub(super) abandoned: &'a std::sync::atomic::AtomicU64,
    /// Checkpoints failed in a row.
    pub(super) failures: u32,
    /// The job's other pods, when it runs over several: they get each
    /// trigger, send their workers' acknowledgements, and commit on this
    /// coordinator's word.
    pub(super) exchange: Option<&'a super::exchange::Exchange>,
}

impl Coordinator<'_> {
    /// Runs until the workers finish; returns the checkpoints completed and
    /// the next unused checkpoint id.
    pub(super) fn run(
        mut self,
        workers: &[thread::JoinHandle<Result<WorkerReport, JobError>>],
        acks: &crossbeam_channel::Receiver<Ack>,
        abort: &AtomicBool,
    ) -> Result<(u64, u64), JobError> {
        use std::sync::atomic::Ordering;
        let parallelism = self.spec.parallelism as usize;
        let mut completed = 0;
        let mut next_trigger = Instant::now() + self.interval;
        let mut in_flight: Option<InFlight> = None;
        let mut requests = std::collections::VecDeque::new();
        loop {
            if workers.iter().any(|w| w.is_finished()) || abort.load(Ordering::Relaxed) {
                // A worker that finished (its input ended, or it failed)
                // takes no more checkpoints; an unfinished one is abandoned.
                if let (Some(f), Some(control)) = (&in_flight, self.control) {
                    if f.kind == SnapshotKind::Savepoint {
                        control.snapshot_failed(
                            f.id,
                            f.kind,
                            "the job ended before it completed".into(),
                        );
                    }
                }
                return Ok((completed, self.next_id));
            }
            if let Some(control) = self.control {
                while let Some(request) = control.next_request() {
                    requests.push_back(request);
                }
            }
            // A request whose caller stopped waiting (the control API gave
            // up on it) is not taken any more: it might stop the job.
            requests.retain(|r| !r.reply.is_closed());
            if in_flight.is_none() {
                let request = requests.pop_front();
                if request.is_some() || Instant::now() >= next_trigger {
                    let id = self.next_id;
                    self.next_id += 1;
                    let kind = if request.is_some() {
                        SnapshotKind::Savepoint
                    } else {
                        SnapshotKind::Checkpoint
                    };
                    let flight = InFlight {
                        id,
                        kind,
                        then_stop: request.as_ref().is_some_and(|r| r.then_stop),
                        started: Instant::now(),
                        acks: vec![None; parallelism],
                    };
                    if let Some(request) = request {
                        self.savepoint.store(id, Ordering::Release);
                        if let Some(control) = self.control {
                            control.savepoint_started(id);
                        }
                        let _ = request.reply.send(Ok(id));
                    }
                    match self.storage.reserve(&self.layout.snapshot_dir(kind, id)) {
                        Ok(()) => {
                            in_flight = Some(flight);
                            if let Some(exchange) = self.exchange {
                                exchange.trigger(id, kind == SnapshotKind::Savepoint);
                            }
                            self.trigger.store(id, Ordering::Release);
                        }
                        Err(e) => {
                            next_trigger = self.failed(&flight, e.to_string())?;
                        }
                    }
                }
            }
            if let Some(flight) = in_flight.take_if(|f| f.started.elapsed() > self.timeout) {
                // Its late acknowledgements are ignored; the workers align on
                // the next barrier.
                let error = format!(
                    "not complete after {:?} (checkpoints.timeout)",
                    self.timeout
                );
                next_trigger = self.failed(&flight, error)?;
                continue;
            }
            let wait = next_trigger
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20));
            let (id, outcome) = match acks.recv_timeout(wait.max(Duration::from_millis(1))) {
                Ok(Ack::Done {
                    worker,
                    id,
                    bytes,
                    watermark,
                    phases,
                }) => match &mut in_flight {
                    Some(flight) if flight.id == id => {
                        flight.acks[worker] = Some(Written {
                            bytes,
                            watermark,
                            phases,
                        });
                        if !flight.acks.iter().all(Option::is_some) {
                            continue;
                        }
                        (id, self.complete(flight, parallelism)?)
                    }
                    _ => continue,
                },
                Ok(Ack::Failed { worker, id, error }) => {
                    (id, Err(format!("worker {worker}: {error}")))
                }
                Err(_) => continue,
            };
            // A late answer for a snapshot already abandoned is ignored.
            let Some(flight) = in_flight.take_if(|f| f.id == id) else {
                continue;
            };
            next_trigger = match outcome {
                Ok(()) => {
                    completed += 1;
                    self.failures = 0;
                    if flight.then_stop {
                        if let Some(control) = self.control {
                            control.set_state(crate::control::JobState::Stopping, None);
                            control.stop.store(true, Ordering::SeqCst);
                        }
                    }
                    self.next_trigger(flight.started)
                }
                Err(error) => self.failed(&flight, error)?,
            };
        }
    }

    /// A snapshot failed. A savepoint is reported and the job goes on. A
    /// checkpoint is abandoned (it never gets `_metadata`; its output is
    /// committed with the next one), and more than `tolerableFailures` in a
    /// row fail the job. Returns when to trigger the next checkpoint.
    fn failed(&mut self, flight: &InFlight, error: String) -> Result<Instant, JobError> {
        let id = flight.id;
        self.abandoned
            .fetch_max(id, std::sync::atomic::Ordering::Release);
        if let Some(control) = self.control {
            control.snapshot_failed(id, flight.kind, error.clone());
        }
        match flight.kind {
            SnapshotKind::Savepoint => {}
            SnapshotKind::Checkpoint if self.failures < self.tolerable_failures => {
                self.failures += 1;
                crate::notice!(
                    "checkpoint {id} failed ({} of {} tolerated in a row): {error}",
                    self.failures,
                    self.tolerable_failures
                );
            }
            SnapshotKind::Checkpoint => return Err(JobError::Checkpoint { id, error }),
        }
        Ok(self.next_trigger(flight.started))
    }

    /// The next trigger: an interval after the last one started, and at
    /// least the minimum pause after it ended.
    fn next_trigger(&self, last_started: Instant) -> Instant {
        (last_started + self.interval).max(Instant::now() + self.min_pause)
    }

    /// Completes a snapshot every worker has written. The protocol of
    /// docs/architecture.md#exactly-once-commit-protocol: the metadata is written as `_pending`, the sink commits the
    /// snapshot's output, then `_metadata` is written. Storage that fails is
    /// a failed snapshot (`Ok(Err(..))`, tolerated as configured); a sink
    /// that cannot commit fails the job (`Err`), which restarts from its
    /// last commit.
    fn complete(
        &self,
        flight: &InFlight,
        parallelism: usize,
    ) -> Result<Result<(), String>, JobError> {
        let id = flight.id;
        let written = flight.acks.iter().flatten();
        let bytes = written.clone().map(|a| a.bytes).sum();
        let watermark = written
            .clone()
            .map(|a| a.watermark)
            .min()
            .unwrap_or(MIN_WATERMARK);
        let slowest = |phase: fn(&CheckpointPhases) -> u64| {
            written.clone().map(|a| phase(&a.phases)).max().unwrap_or(0)
        };
        let mut phases = CheckpointPhases {
            alignment_ms: slowest(|p| p.alignment_ms),
            sync_ms: slowest(|p| p.sync_ms),
            upload_ms: slowest(|p| p.upload_ms),
            commit_ms: 0,
        };
        let committing = Instant::now();
        let dir = self.layout.snapshot_dir(flight.kind, id);
        let metadata = Metadata {
            id,
            kind: flight.kind,
            job: self.spec.name.clone(),
            completed_at: now_millis(),
            parallelism: parallelism as u32,
            max_parallelism: self.spec.max_parallelism,
            watermark,
            source: source_kind(self.spec)?.into(),
            state_shape: self.spec.state_shape(),
            workers: (0..parallelism).map(Layout::worker_file).collect(),
            lookups: match self.spec.enrich.is_empty() {
                true => Vec::new(),
                false => (0..parallelism).map(Layout::lookups_file).collect(),
            },
            bytes,
        };
        if let Err(e) = self.storage.write_metadata(&dir, PENDING, &metadata) {
            return Ok(Err(e.to_string()));
        }
        crate::failpoint::fail_at("before-commit", id);
        ask_sink(self.sink, |reply| SinkMsg::Commit {
            checkpoint: id,
            reply,
        })
        .map_err(|e| JobError::Checkpoint {
            id,
            error: format!("the sink could not commit: {e}"),
        })?;
        if let Some(exchange) = self.exchange {
            exchange
                .commit(id, self.timeout)
                .map_err(|error| JobError::Checkpoint { id, error })?;
        }
        crate::failpoint::fail_at("after-commit", id);
        // The output is committed: if `_metadata` cannot be written, a
        // restore rolls the checkpoint forward from `_pending`.
        if let Err(e) = self.storage.write_metadata(&dir, METADATA, &metadata) {
            return Ok(Err(e.to_string()));
        }
        // Old checkpoints that cannot be removed now are removed next time.
        if let Err(e) = self.storage.retain(self.layout, self.retained) {
            tracing::warn!(%e, "could not remove old checkpoints");
        }
        phases.commit_ms = committing.elapsed().as_millis() as u64;
        if let Some(control) = self.control {
            control.checkpoint_completed(SnapshotRecord {
                id,
                kind: flight.kind,
                path: self.storage.location(&dir),
                completed_at: metadata.completed_at,
                bytes,
                duration_ms: flight.started.elapsed().as_millis() as u64,
                phases: Some(phases),
            });
        }
        tracing::info!(id, bytes, "checkpoint completed");
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    //! The coordinator against fake workers that answer each trigger as a
    //! test says, and a sink that commits whatever it is asked to.
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use crossbeam_channel::{Receiver, Sender};

    use super::*;

    struct Harness {
        _dir: tempfile::TempDir,
        spec: JobSpec,
        storage: CheckpointStorage,
        layout: Layout,
        trigger: Arc<AtomicU64>,
        savepoint: AtomicU64,
        abandoned: AtomicU64,
        sink: Sender<SinkMsg>,
        acks: (Sender<Ack>, Receiver<Ack>),
        abort: AtomicBool,
        /// Ends the fake workers.
        done: Arc<AtomicBool>,
    }

    impl Harness {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let uri = format!("file://{}", dir.path().display());
            let spec = JobSpec::from_yaml(&format!(
                "name: coordinated\nsource: {{file: {{path: in.jsonl}}}}\n\
                 eventTime: {{field: t}}\nkey: k\nwindow: {{tumbling: {{size: 1m}}}}\n\
                 aggregates: [{{name: n, function: count}}]\nsink: {{discard: {{}}}}\n\
                 checkpoints: {{interval: 5ms, storage: \"{uri}\"}}\n"
            ))
            .unwrap();
            let storage = CheckpointStorage::from_uri(&uri, std::path::Path::new("/")).unwrap();
            // A sink thread that commits every checkpoint it is asked to.
            let (sink, inbox) = crossbeam_channel::unbounded::<SinkMsg>();
            thread::spawn(move || {
                for msg in inbox {
                    if let SinkMsg::Commit { reply, .. } = msg {
                        let _ = reply.send(Ok(()));
                    }
                }
            });
            Harness {
                _dir: dir,
                layout: Layout::new(&spec.name),
                spec,
                storage,
                trigger: Arc::new(AtomicU64::new(0)),
                savepoint: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
                sink,
                acks: crossbeam_channel::unbounded(),
                abort: AtomicBool::new(false),
                done: Arc::new(AtomicBool::new(false)),
            }
        }

        fn coordinator(&self, tolerable_failures: u32, timeout: Duration) -> Coordinator<'_> {
            Coordinator {
                spec: &self.spec,
                control: None,
                savepoint: &self.savepoint,
                sink: &self.sink,
                storage: &self.storage,
                layout: &self.layout,
                interval: Duration::from_millis(5),
                min_pause: Duration::ZERO,
                tolerable_failures,
                timeout,
                retained: 100,
                next_id: 1,
                trigger: &self.trigger,
                abandoned: &self.abandoned,
                failures: 0,
                exchange: None,
            }
        }

        /// One fake worker: `answer(id)` is its acknowledgement of each
        /// checkpoint it is triggered for (`None`: it never answers). It
        /// ends when `done` is set or after checkpoint `last`.
        fn worker(
            &self,
            last: u64,
            answer: impl Fn(u64) -> Option<Ack> + Send + 'static,
        ) -> thread::JoinHandle<Result<WorkerReport, JobError>> {
            let (trigger, done, acks) =
                (self.trigger.clone(), self.done.clone(), self.acks.0.clone());
            thread::spawn(move || {
                let mut seen = 0;
                while !done.load(Ordering::SeqCst) {
                    let id = trigger.load(Ordering::Acquire);
                    if id > seen {
                        seen = id;
                        if let Some(ack) = answer(id) {
                            let _ = acks.send(ack);
                        }
                        if id >= last {
                            // Let the coordinator take the last answer in.
                            thread::sleep(Duration::from_millis(50));
                            break;
                        }
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(WorkerReport::default())
            })
        }
    }

    fn failed(id: u64) -> Option<Ack> {
        Some(Ack::Failed {
            worker: 0,
            id,
            error: "disk full".into(),
        })
    }

    fn done(id: u64) -> Option<Ack> {
        Some(Ack::Done {
            worker: 0,
            id,
            bytes: 10,
            watermark: 0,
            phases: CheckpointPhases {
                alignment_ms: 1,
                sync_ms: 2,
                upload_ms: 3,
                commit_ms: 0,
            },
        })
    }

    #[test]
    fn more_failures_in_a_row_than_tolerated_fail_the_job() {
        let h = Harness::new();
        let worker = h.worker(u64::MAX, failed);
        let outcome = h
            .coordinator(2, Duration::from_secs(60))
            .run(&[worker], &h.acks.1, &h.abort);
        h.done.store(true, Ordering::SeqCst);
        match outcome {
            // Checkpoints 1 and 2 were tolerated; 3 is one too many.
            Err(JobError::Checkpoint { id, error }) => {
                assert_eq!(id, 3);
                assert_eq!(error, "worker 0: disk full");
            }
            other => panic!("expected checkpoint 3 to fail the job, got {other:?}"),
        }
        assert!(h
            .storage
            .completed(&h.layout.checkpoints())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_completed_checkpoint_resets_the_failures_in_a_row() {
        let h = Harness::new();
        // Odd checkpoints fail, even ones complete: never two failures in a
        // row, so one tolerated failure is enough for six checkpoints.
        let worker = h.worker(6, |id| if id % 2 == 1 { failed(id) } else { done(id) });
        let control = JobControl::new("coordinated", 1);
        let mut coordinator = h.coordinator(1, Duration::from_secs(60));
        coordinator.control = Some(&control);
        let (completed, next_id) = coordinator
            .run(&[worker], &h.acks.1, &h.abort)
            .expect("no more than one failure in a row");
        assert_eq!(completed, 3);
        // The control API lists each failure with its reason, and each
        // completed checkpoint with the worker's phases.
        let status = control.status();
        let failures: Vec<_> = status
            .checkpoint_failures
            .iter()
            .map(|f| (f.id, f.kind, f.error.as_str()))
            .collect();
        let disk_full = "worker 0: disk full";
        assert_eq!(
            failures,
            [1, 3, 5].map(|id| (id, SnapshotKind::Checkpoint, disk_full))
        );
        assert_eq!(control.metrics.checkpoints_failed.get(), 3);
        for record in control.checkpoints() {
            let phases = record.phases.expect("phases");
            assert_eq!(
                (phases.alignment_ms, phases.sync_ms, phases.upload_ms),
                (1, 2, 3)
            );
        }
        // Ids are never reused: a checkpoint triggered after 6 took 7.
        assert!(next_id >= 7, "{next_id}");
        assert_eq!(
            h.storage.completed(&h.layout.checkpoints()).unwrap(),
            vec![2, 4, 6]
        );
    }

    #[test]
    fn a_checkpoint_not_complete_within_the_timeout_fails() {
        let h = Harness::new();
        let worker = h.worker(u64::MAX, |_| None);
        let started = Instant::now();
        let outcome =
            h.coordinator(0, Duration::from_millis(100))
                .run(&[worker], &h.acks.1, &h.abort);
        h.done.store(true, Ordering::SeqCst);
        match outcome {
            Err(JobError::Checkpoint { id, error }) => {
                assert_eq!(id, 1);
                assert!(error.contains("checkpoints.timeout"), "{error}");
            }
            other => panic!("expected checkpoint 1 to time out, got {other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_late_answer_for_an_abandoned_checkpoint_is_ignored() {
        let h = Harness::new();
        // Checkpoint 1 is answered only after its timeout; 2 and 3 in time.
        let worker = h.worker(3, |id| {
            if id == 1 {
                thread::sleep(Duration::from_millis(150));
            }
            done(id)
        });
        let (completed, _) = h
            .coordinator(1, Duration::from_millis(100))
            .run(&[worker], &h.acks.1, &h.abort)
            .expect("one tolerated timeout");
        assert_eq!(completed, 2);
        assert_eq!(
            h.storage.completed(&h.layout.checkpoints()).unwrap(),
            vec![2, 3]
        );
        // The uploaders are told: checkpoint 1's uploads stop.
        assert_eq!(h.abandoned.load(Ordering::Acquire), 1);
    }
}

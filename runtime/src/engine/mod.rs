//! Runs a job: builds the workers, the keyed exchange between them and the
//! sink thread, and waits for the job to finish.

mod collector;
mod operator;
mod sinks;
mod upload;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use collector::SinkMsg;
use worker::WorkerReport;

use crate::checkpoint::{
    read_snapshot, CheckpointStorage, Layout, Metadata, Restore, RestoreError, SnapshotKind,
    StorageError, METADATA, PENDING,
};
use crate::connectors::{create_splits, read_commit_log, Malformed, OutputFormat};
use crate::control::{JobControl, SnapshotRecord};
use crate::enrich::Enricher;
use crate::spec::{CheckpointMode, JobSpec};
use crate::state::StateError;
use crate::time::{now_millis, MinWatermark, PartitionWatermarks, SourceStatus, MIN_WATERMARK};
use crate::window::{EarlyFiring, WindowOperator, WindowResult};
use collector::{ask_sink, Collector};
use operator::Operator;
use sinks::Sinks;
use upload::Uploader;
use worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
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
    #[error("checkpoint storage: {0}")]
    Storage(#[from] StorageError),
    #[error("restore: {0}")]
    Restore(#[from] RestoreError),
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

impl JobSpec {
    /// Where worker state lives unless overridden.
    pub fn state_dir(&self, base_dir: &Path) -> PathBuf {
        match &self.state.dir {
            Some(dir) => base_dir.join(dir),
            None => base_dir.join(".streamjob").join("state").join(&self.name),
        }
    }

    fn early_firing(&self) -> (EarlyFiring, Option<Duration>) {
        let Some(e) = &self.trigger.early else {
            return (EarlyFiring::None, None);
        };
        // Validation leaves exactly one of the three set.
        if let Some(interval) = e.every_event_time {
            (EarlyFiring::EventTime(interval.as_millis()), None)
        } else if let Some(interval) = e.every_processing_time {
            (EarlyFiring::ProcessingTime, Some(interval.as_std()))
        } else if let Some(n) = e.every_elements {
            (EarlyFiring::Elements(n), None)
        } else {
            (EarlyFiring::None, None)
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

/// Runs the job, and after a failure restarts it from its latest checkpoint
/// as its restart strategy allows.
pub fn run_with_restarts(spec: &JobSpec, opts: &RunOptions) -> Result<RunSummary, JobError> {
    let mut opts = opts.clone();
    // Snapshots this process completes get ids from here on: a restart
    // resumes from one of them, or from where the process started.
    let layout = Layout::new(&spec.name);
    let storage = match &spec.checkpoints {
        Some(c) => Some(CheckpointStorage::from_uri(&c.storage, &opts.base_dir)?),
        None => None,
    };
    // Under a supervisor the deployment's first process sets it, for every
    // process of the deployment (see `RunOptions::deployment`).
    let since = match (&storage, &opts.deployment) {
        (Some(storage), Some(deployment)) => {
            let own = storage.last_id(&layout)? + 1;
            Some(deployment_start(storage, &layout, deployment, own)?)
        }
        (Some(storage), None) => Some(storage.last_id(&layout)? + 1),
        (None, _) => None,
    };
    let started_from = opts.restore.clone();
    let recovery = since.map(|since| RestoreFrom::Recovery {
        since,
        started_from: started_from.clone().map(Box::new),
    });
    if opts.deployment.is_some() {
        opts.restore = recovery.clone().or(opts.restore);
    }
    let mut attempt = 0;
    loop {
        let error = match run(spec, &opts) {
            Ok(mut summary) => {
                summary.restarts = attempt;
                return Ok(summary);
            }
            Err(e) => e,
        };
        attempt += 1;
        let delay = spec
            .restart_strategy
            .as_ref()
            .and_then(|r| r.delay(attempt));
        let (Some(delay), true) = (delay, error.is_retryable()) else {
            return Err(error);
        };
        // Only to say where the restart resumes; `run` decides the same way.
        let resumes_from = match (&storage, since) {
            (Some(storage), Some(since)) => {
                opts.restore = recovery.clone();
                match storage.newest(&layout) {
                    Ok(Some((_, id))) if id >= since => "the latest checkpoint",
                    Ok(_) if started_from.is_some() => "where it started",
                    Ok(_) => "the start (no checkpoint yet)",
                    Err(_) => "the latest checkpoint, once its storage answers",
                }
            }
            _ => "the start (no checkpoints)",
        };
        if let Some(control) = &opts.control {
            control.metrics.restarts.inc();
            control.set_state(
                crate::control::JobState::Restarting,
                Some(error.to_string()),
            );
        }
        tracing::info!(%error, attempt, ?delay, resumes_from, "job failed; restarting");
        eprintln!(
            "streamjob: job {} failed: {error}; restart {attempt} in {delay:?} from {resumes_from}",
            spec.name
        );
        thread::sleep(delay);
    }
}

/// The first snapshot id of `deployment`: recorded by its first process
/// (as `since`), read back by every later one.
fn deployment_start(
    storage: &CheckpointStorage,
    layout: &Layout,
    deployment: &str,
    since: u64,
) -> Result<u64, JobError> {
    let key = layout.deployment_marker(deployment);
    let recorded = storage.get(&key)?.and_then(|bytes| {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()?
            .get("since")?
            .as_u64()
    });
    if let Some(since) = recorded {
        eprintln!("streamjob: deployment {deployment} started before: resuming from its newest snapshot (ids from {since})");
        return Ok(since);
    }
    storage.write(
        &key,
        serde_json::json!({ "since": since }).to_string().as_bytes(),
    )?;
    Ok(since)
}

/// The snapshot to start from, after rolling forward a checkpoint whose
/// output was committed (see `roll_forward`).
fn find_restore(
    from: &RestoreFrom,
    spec: &JobSpec,
    base: &Path,
    storage: Option<&CheckpointStorage>,
    layout: &Layout,
    kafka_sink: Option<&crate::connectors::TransactionalKafka>,
) -> Result<Option<Restore>, JobError> {
    let storage_or = |flag: &str| {
        storage.ok_or_else(|| RestoreError::Mismatch {
            path: flag.into(),
            reason: "the job has no checkpoints.storage to look in".into(),
        })
    };
    match from {
        RestoreFrom::Path(path) => Ok(Some(read_snapshot(&path.to_string_lossy(), base)?)),
        RestoreFrom::LatestCheckpoint => {
            let storage = storage_or("--from-latest-checkpoint")?;
            roll_forward(spec, base, storage, layout, kafka_sink)?;
            Ok(Some(storage.latest(layout)?))
        }
        RestoreFrom::Recovery {
            since,
            started_from,
        } => {
            let storage = storage_or("a restart")?;
            roll_forward(spec, base, storage, layout, kafka_sink)?;
            match storage.newest(layout)? {
                Some((kind, id)) if id >= *since => {
                    Ok(Some(storage.read_snapshot(&layout.snapshot_dir(kind, id))?))
                }
                _ => match started_from {
                    Some(from) => find_restore(from, spec, base, Some(storage), layout, kafka_sink),
                    None => Ok(None),
                },
            }
        }
    }
}

/// Runs the job to its end (a bounded source) or until `opts.stop` is set.
pub fn run(spec: &JobSpec, opts: &RunOptions) -> Result<RunSummary, JobError> {
    let started = Instant::now();
    let parallelism = spec.parallelism as usize;
    let base = &opts.base_dir;
    let state_root = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| spec.state_dir(base));

    let storage = match &spec.checkpoints {
        Some(c) => Some(CheckpointStorage::from_uri(&c.storage, base)?),
        None => None,
    };
    let layout = Layout::new(&spec.name);
    let kafka_sink = sinks::open_transactional_kafka(spec).map_err(JobError::Sink)?;
    let restore = match &opts.restore {
        None => None,
        Some(from) => find_restore(
            from,
            spec,
            base,
            storage.as_ref(),
            &layout,
            kafka_sink.as_ref(),
        )?,
    };
    match &restore {
        Some(r) => tracing::info!(from = %r.path, "job {} starting from a snapshot", spec.name),
        None => tracing::info!("job {} starting with empty state", spec.name),
    }
    if let Some(storage) = &storage {
        // Not essential to the run: a failure here only leaves the files.
        match storage.remove_unreferenced_shared_files(&layout) {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed state files no checkpoint references"),
            Err(e) => tracing::warn!(%e, "could not clean up unreferenced state files"),
        }
    }
    let mut restore_state = true;
    if let Some(r) = &restore {
        restore_state = check_fits(spec, r, opts.allow_non_restored_state)?;
    }

    let mut splits = create_splits(spec, base).map_err(JobError::Source)?;
    let sinks = Sinks::open(
        spec,
        base,
        restore.as_ref().map(|r| r.metadata.id),
        kafka_sink,
    )
    .map_err(JobError::Sink)?;
    let (keep, keyed) = (sinks.keeps(), sinks.keyed());
    let (sink_tx, sink_rx) = crossbeam_channel::unbounded::<SinkMsg>();

    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..parallelism).map(|_| worker::channel()).unzip();
    let (early, processing_interval) = spec.early_firing();
    let functions: Vec<_> = spec.aggregates.iter().map(|a| a.function).collect();
    let abort = Arc::new(AtomicBool::new(false));
    let stop = opts.stop_flag();
    let format = OutputFormat::new(spec);
    let now = now_millis();
    // A split with nothing to read (more workers than files) has ended before
    // it starts; every worker knows that from the outset, so no worker waits
    // for it, however the threads are scheduled.
    let initial: Vec<SourceStatus> = splits
        .iter()
        .map(|s| {
            if s.partitions() == 0 {
                SourceStatus::Ended
            } else {
                SourceStatus::Active(MIN_WATERMARK)
            }
        })
        .collect();

    let owners = key_group_owners(spec.max_parallelism, parallelism);
    // Names this run's folder of shared state files in storage.
    let run_id = format!(
        "{:x}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
        std::process::id()
    );
    let trigger = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let savepoint = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<worker::Ack>();
    // Every worker is built (state opened and restored, sources positioned)
    // before any thread starts: a failure here leaves nothing running.
    let mut workers = Vec::with_capacity(parallelism);
    for (index, (mut split, inbox)) in splits.drain(..).zip(receivers).enumerate() {
        let state_dir = state_root.join(format!("worker-{index}"));
        let max_keys = spec.state.max_keys_in_memory as usize;
        let op = if spec.select.is_empty() {
            Operator::Window(WindowOperator::new(
                spec.window_kind(),
                spec.allowed_lateness.as_millis(),
                early,
                functions.clone(),
                &state_dir,
                max_keys,
                spec.max_parallelism,
            )?)
        } else {
            let store =
                crate::state::KeyedStore::create(&state_dir, max_keys, spec.max_parallelism)?;
            Operator::Select(operator::Select::new(store))
        };
        let mut collector = Collector::new(index, format.clone(), sink_tx.clone(), keep, keyed);
        if opts.capture_results {
            collector.captured = Some(Vec::new());
        }
        let partitions = split.partitions();
        let mut split_watermarks = PartitionWatermarks::new(
            partitions,
            spec.watermark.out_of_orderness.as_millis(),
            spec.watermark.idle_timeout.map(|d| d.as_millis()),
            now,
        );
        let key_groups = key_group_range(&owners, index);
        let mut op = op;
        let mut decoder = Enricher::open(spec, index, base, |lookup| {
            state_root.join(format!("worker-{index}.lookup-{lookup}"))
        })
        .map_err(JobError::Source)?;
        if let Some(r) = &restore {
            decoder.restore(
                r,
                index,
                &state_root.join(format!("worker-{index}.restore")),
            )?;
            op.restore_watermark(r.metadata.watermark);
            if restore_state {
                let scratch = state_root.join(format!("worker-{index}.restore"));
                r.load_state(key_groups.0, key_groups.1, &scratch, |key, state| {
                    op.restore_key(key, state)
                })?;
            }
            for (p, id) in split.partition_ids().iter().enumerate() {
                if let Some(pos) = r.position(id) {
                    split
                        .seek(p, pos.offset, pos.records)
                        .map_err(JobError::Source)?;
                    split_watermarks.restore(p, pos.max_ts, pos.ended);
                }
            }
        }
        let checkpointing = match &storage {
            Some(storage) => {
                let uploads = state_root.join(format!("worker-{index}.uploads"));
                // RocksDB checkpoints a crashed run left behind.
                let _ = std::fs::remove_dir_all(&uploads);
                let uploader = Uploader::start(
                    index,
                    format!("{run_id}-w{index}"),
                    storage.clone(),
                    ack_tx.clone(),
                    abort.clone(),
                )
                .map_err(|e| JobError::Panic(e.to_string()))?;
                Some(worker::Checkpointing {
                    trigger: trigger.clone(),
                    injected: 0,
                    storage: storage.clone(),
                    layout: layout.clone(),
                    acks: ack_tx.clone(),
                    at_least_once: spec
                        .checkpoints
                        .as_ref()
                        .is_some_and(|c| c.mode == CheckpointMode::AtLeastOnce),
                    key_groups,
                    savepoint: savepoint.clone(),
                    uploader,
                    uploads,
                })
            }
            None => None,
        };
        let worker = Worker {
            index,
            max_parallelism: spec.max_parallelism,
            owners: owners.clone(),
            split,
            decoder,
            split_watermarks,
            split_done: partitions == 0,
            op,
            inputs: MinWatermark::with_statuses(initial.clone()),
            inbox,
            peers: senders.clone(),
            outgoing: (0..parallelism).map(|_| Vec::new()).collect(),
            sent_status: vec![None; parallelism],
            collector,
            fail_on_malformed: spec.side_outputs.fail_on_malformed,
            processing_time_interval: processing_interval,
            max_drift: spec.watermark.max_drift.map(|d| d.as_millis()),
            checkpointing,
            alignment: None,
            held: Default::default(),
            abort: abort.clone(),
            stop: stop.clone(),
            records_in: 0,
            control: opts.control.clone(),
            published: Default::default(),
        };
        workers.push(worker);
    }
    drop(senders);
    drop(ack_tx);
    let sink_thread = thread::Builder::new()
        .name("sink".into())
        .spawn(move || sinks.run(sink_rx))
        .map_err(|e| JobError::Panic(e.to_string()))?;
    let handles = workers
        .into_iter()
        .map(|worker| {
            thread::Builder::new()
                .name(format!("worker-{}", worker.index))
                .spawn(move || worker.run())
                .map_err(|e| JobError::Panic(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let startup = started.elapsed();
    // Every worker has its share of the snapshot: the whole of it need not
    // stay in memory while the job runs.
    let restored_from = restore.map(|r| r.path);

    let mut final_epoch = 0;
    let mut summary = RunSummary {
        startup,
        restored_from,
        ..Default::default()
    };
    if let Some(control) = &opts.control {
        control.set_savepoints_supported(storage.is_some());
        control.set_state(crate::control::JobState::Running, None);
    }
    if let (Some(storage), Some(config)) = (&storage, &spec.checkpoints) {
        let first_id = storage.last_id(&layout)? + 1;
        let coordinator = Coordinator {
            spec,
            control: opts.control.as_deref(),
            savepoint: &savepoint,
            sink: &sink_tx,
            storage,
            layout: &layout,
            interval: config.interval.as_std(),
            min_pause: config.min_pause.as_std(),
            tolerable_failures: config.tolerable_failures,
            timeout: config.timeout.as_std(),
            retained: config.retained as usize,
            next_id: first_id,
            trigger: &trigger,
            failures: 0,
        };
        match coordinator.run(&handles, &ack_rx, &abort) {
            Ok((n, next_id)) => {
                summary.checkpoints = n;
                final_epoch = next_id;
            }
            Err(e) => {
                // Nothing of this run may outlive it: a restart starts the
                // next one (and fences its Kafka producer) at once.
                abort.store(true, std::sync::atomic::Ordering::SeqCst);
                for h in handles {
                    let _ = h.join();
                }
                drop(sink_tx);
                let _ = sink_thread.join();
                return Err(e);
            }
        }
    }
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(report)) => {
                summary.records_in += report.records_in;
                summary.results += report.results;
                summary.late += report.late;
                summary.malformed += report.malformed;
                summary.unmatched += report.unmatched;
                summary.keys_spilled += report.keys_spilled;
                summary.captured.extend(report.captured);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                first_error.get_or_insert(JobError::Panic(msg));
            }
        }
    }
    // The input ended and every worker finished: what was written since the
    // last checkpoint is final too. (A stopped or failed job commits
    // nothing more; a restore produces it again.)
    let stopped = stop.load(std::sync::atomic::Ordering::SeqCst);
    if first_error.is_none() && !stopped && sinks::two_phase(spec) {
        // The final epoch gets an id of its own, reserved like a checkpoint's:
        // the Kafka sink's marker names it, and a later run must not reuse it
        // (a two-phase sink implies checkpoints, so there is a coordinator).
        let id = final_epoch;
        let reserved = match &storage {
            Some(storage) => storage.reserve(&layout.snapshot_dir(SnapshotKind::Checkpoint, id)),
            None => Ok(()),
        };
        if let Err(e) = reserved {
            first_error = Some(e.into());
        } else if let Err(e) = ask_sink(&sink_tx, |reply| SinkMsg::Finish {
            checkpoint: id,
            reply,
        }) {
            first_error = Some(JobError::Sink(e));
        }
    }
    drop(sink_tx);
    let sink_result = sink_thread
        .join()
        .map_err(|_| JobError::Panic("sink thread panicked".into()))?;
    if let Some(e) = first_error {
        return Err(e);
    }
    sink_result.map_err(JobError::Sink)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A checkpoint whose output the sink committed, but whose `_metadata` was
/// never written (the job died in between), is completed now: the output it
/// committed reflects its state, so that is the state to resume from. The
/// file sink's commit log, or the Kafka sink's committed offsets, say which
/// checkpoint committed last.
fn roll_forward(
    spec: &JobSpec,
    base: &Path,
    storage: &CheckpointStorage,
    layout: &Layout,
    kafka_sink: Option<&crate::connectors::TransactionalKafka>,
) -> Result<(), JobError> {
    let committed = match (&spec.sink.file, kafka_sink) {
        (_, Some(kafka)) => kafka.committed_checkpoint().map_err(JobError::Sink)?,
        (_, None) if sinks::two_phase(spec) && spec.sink.postgres.is_some() => {
            let pg = spec.sink.postgres.as_ref().expect("checked");
            crate::connectors::committed_epoch(pg, &spec.name).map_err(JobError::Sink)?
        }
        (Some(file), None) if sinks::transactional_file(spec) => {
            // Id 0 is a fresh run's starting length, not a checkpoint.
            read_commit_log(&base.join(&file.path))
                .map_err(JobError::Sink)?
                .last()
                .map(|(id, _)| *id)
                .filter(|id| *id > 0)
        }
        _ => return Ok(()),
    };
    let complete = storage.newest(layout)?.map(|(_, id)| id);
    if let Some(id) = committed {
        if complete.is_none_or(|c| id > c) && storage.roll_forward(layout, id)? {
            tracing::warn!(
                id,
                "rolled checkpoint forward: its output was committed before the job stopped"
            );
        }
    }
    Ok(())
}

/// Checks that a snapshot can be restored into this job; returns whether its
/// keyed state is restored too (false only with `allow_non_restored_state`
/// and a snapshot whose state was built for another window or aggregates).
fn check_fits(
    spec: &JobSpec,
    r: &Restore,
    allow_non_restored_state: bool,
) -> Result<bool, RestoreError> {
    let m = &r.metadata;
    let mismatch = |reason: String| RestoreError::Mismatch {
        path: r.path.clone(),
        reason,
    };
    if m.max_parallelism != spec.max_parallelism {
        return Err(mismatch(format!(
            "it was taken with maxParallelism {}, the job has {}; key groups cannot be remapped, so keep maxParallelism: {}",
            m.max_parallelism, spec.max_parallelism, m.max_parallelism
        )));
    }
    let source = source_kind(spec);
    if m.source != source {
        return Err(mismatch(format!(
            "it holds positions of a {} source, the job reads a {source} source",
            m.source
        )));
    }
    if source == "generator" && m.parallelism != spec.parallelism {
        return Err(mismatch(format!(
            "a generator source resumes only at the parallelism it was snapshotted at ({}), the job has {}",
            m.parallelism, spec.parallelism
        )));
    }
    let shape = spec.state_shape();
    if !m.state_shape.is_empty() && m.state_shape != shape {
        if allow_non_restored_state {
            tracing::warn!(snapshot = %m.state_shape, job = %shape, "window state dropped (allow non-restored state)");
            eprintln!(
                "streamjob: the snapshot's window state ({}) does not fit the job ({shape}); it is dropped, the source positions are kept",
                m.state_shape
            );
            return Ok(false);
        }
        return Err(mismatch(format!(
            "its window state was built for {}, the job has {shape}; restore it into a job with the same key, window and aggregates, or pass --allow-non-restored-state to drop that state and keep the source positions",
            m.state_shape
        )));
    }
    Ok(true)
}

fn source_kind(spec: &JobSpec) -> &'static str {
    if spec.source.generator.is_some() {
        "generator"
    } else if spec.source.kafka.is_some() {
        "kafka"
    } else {
        "file"
    }
}

/// Key groups `[first, last]` of worker `index`.
fn key_group_range(owners: &[u16], index: usize) -> (u16, u16) {
    let mine = owners
        .iter()
        .enumerate()
        .filter(|(_, o)| **o as usize == index);
    let first = mine.clone().map(|(g, _)| g).min().unwrap_or(0) as u16;
    let last = mine.map(|(g, _)| g).max().unwrap_or(0) as u16;
    (first, last)
}

/// The checkpoint under way: the bytes and watermark each worker reported.
struct InFlight {
    id: u64,
    kind: SnapshotKind,
    /// Stop the job when this savepoint completes.
    then_stop: bool,
    started: Instant,
    acks: Vec<Option<(u64, i64)>>,
}

/// Triggers checkpoints on the interval, collects the workers' acks, and
/// completes each checkpoint by writing its `_metadata` last.
struct Coordinator<'a> {
    spec: &'a JobSpec,
    control: Option<&'a JobControl>,
    savepoint: &'a std::sync::atomic::AtomicU64,
    sink: &'a crossbeam_channel::Sender<SinkMsg>,
    storage: &'a CheckpointStorage,
    layout: &'a Layout,
    interval: Duration,
    min_pause: Duration,
    tolerable_failures: u32,
    /// A checkpoint not complete this long after its trigger is abandoned.
    timeout: Duration,
    retained: usize,
    next_id: u64,
    trigger: &'a std::sync::atomic::AtomicU64,
    /// Checkpoints failed in a row.
    failures: u32,
}

impl Coordinator<'_> {
    /// Runs until the workers finish; returns the checkpoints completed and
    /// the next unused checkpoint id.
    fn run(
        mut self,
        workers: &[thread::JoinHandle<Result<WorkerReport, JobError>>],
        acks: &crossbeam_channel::Receiver<worker::Ack>,
        abort: &AtomicBool,
    ) -> Result<(u64, u64), JobError> {
        use std::sync::atomic::Ordering;
        let parallelism = workers.len();
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
                        control.savepoint_failed(f.id, "the job ended before it completed".into());
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
                Ok(worker::Ack::Done {
                    worker,
                    id,
                    bytes,
                    watermark,
                }) => match &mut in_flight {
                    Some(flight) if flight.id == id => {
                        flight.acks[worker] = Some((bytes, watermark));
                        if !flight.acks.iter().all(Option::is_some) {
                            continue;
                        }
                        (id, self.complete(flight, parallelism)?)
                    }
                    _ => continue,
                },
                Ok(worker::Ack::Failed { worker, id, error }) => {
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
        match self.control {
            Some(control) if flight.kind == SnapshotKind::Savepoint => {
                control.savepoint_failed(id, error);
            }
            _ if self.failures < self.tolerable_failures => {
                self.failures += 1;
                tracing::warn!(id, failures = self.failures, %error, "checkpoint failed; tolerated");
                eprintln!(
                    "streamjob: checkpoint {id} failed ({} of {} tolerated in a row): {error}",
                    self.failures, self.tolerable_failures
                );
                if let Some(control) = self.control {
                    control.metrics.checkpoints_failed.inc();
                }
            }
            _ => return Err(JobError::Checkpoint { id, error }),
        }
        Ok(self.next_trigger(flight.started))
    }

    /// The next trigger: an interval after the last one started, and at
    /// least the minimum pause after it ended.
    fn next_trigger(&self, last_started: Instant) -> Instant {
        (last_started + self.interval).max(Instant::now() + self.min_pause)
    }

    /// Completes a snapshot every worker has written. The protocol of
    /// DESIGN.md: the metadata is written as `_pending`, the sink commits the
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
        let bytes = written.clone().map(|a| a.0).sum();
        let watermark = written.map(|a| a.1).min().unwrap_or(MIN_WATERMARK);
        let dir = self.layout.snapshot_dir(flight.kind, id);
        let metadata = Metadata {
            id,
            kind: flight.kind,
            job: self.spec.name.clone(),
            completed_at: now_millis(),
            parallelism: parallelism as u32,
            max_parallelism: self.spec.max_parallelism,
            watermark,
            source: source_kind(self.spec).into(),
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
        if let Some(control) = self.control {
            control.checkpoint_completed(SnapshotRecord {
                id,
                kind: flight.kind,
                path: self.storage.location(&dir),
                completed_at: metadata.completed_at,
                bytes,
                duration_ms: flight.started.elapsed().as_millis() as u64,
            });
        }
        tracing::info!(id, bytes, "checkpoint completed");
        Ok(Ok(()))
    }
}

/// The worker that owns each key group: worker `i` of `p` owns the groups
/// `[i·max/p, (i+1)·max/p)` (Flink's assignment), so a worker's state is a
/// contiguous range of key groups.
pub fn key_group_owners(max_parallelism: u32, parallelism: usize) -> Vec<u16> {
    (0..max_parallelism as usize)
        .map(|group| (group * parallelism / max_parallelism as usize) as u16)
        .collect()
}

//! Runs a job: builds the workers, the keyed exchange between them and the
//! sink thread, and waits for the job to finish.

mod collector;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub use collector::{SinkBatch, Target};
pub use worker::WorkerReport;

use crate::connectors::{create_splits, Malformed, OutputFormat, SinkWriter};
use crate::spec::JobSpec;
use crate::state::StateError;
use crate::time::{now_millis, MinWatermark, PartitionWatermarks, SourceStatus, MIN_WATERMARK};
use crate::window::{EarlyFiring, WindowOperator, WindowResult};
use collector::Collector;
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
}

/// How to run a job, beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Folder that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    /// Overrides `state.dir`.
    pub state_dir: Option<PathBuf>,
    /// Set to stop the job (it stops without firing open windows).
    pub stop: Arc<AtomicBool>,
    /// Keep every window result in memory and return it in the summary.
    pub capture_results: bool,
}

/// What a finished job did.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub records_in: u64,
    pub results: u64,
    pub late: u64,
    pub malformed: u64,
    pub keys_spilled: u64,
    pub elapsed: Duration,
    /// With `capture_results`, every result, worker by worker.
    pub captured: Vec<WindowResult>,
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
        match &self.trigger.early {
            Some(e) if e.every_event_time.is_some() => (
                EarlyFiring::EventTime(e.every_event_time.unwrap_or_default().as_millis()),
                None,
            ),
            Some(e) if e.every_processing_time.is_some() => (
                EarlyFiring::ProcessingTime,
                e.every_processing_time.map(|d| d.as_std()),
            ),
            Some(e) if e.every_elements.is_some() => {
                (EarlyFiring::Elements(e.every_elements.unwrap_or(1)), None)
            }
            _ => (EarlyFiring::None, None),
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

    let splits = create_splits(spec, base).map_err(JobError::Source)?;
    let results = SinkWriter::open(&spec.sink, base).map_err(JobError::Sink)?;
    let late = match &spec.side_outputs.late {
        Some(s) => SinkWriter::open(s, base).map_err(JobError::Sink)?,
        None => SinkWriter::Discard,
    };
    let malformed = match &spec.side_outputs.malformed {
        Some(s) => SinkWriter::open(s, base).map_err(JobError::Sink)?,
        None => SinkWriter::Discard,
    };
    let keep = [!results.discards(), !late.discards(), !malformed.discards()];
    let (sink_tx, sink_rx) = crossbeam_channel::unbounded::<SinkBatch>();
    let sink_thread = thread::Builder::new()
        .name("sink".into())
        .spawn(move || write_sinks(sink_rx, [results, late, malformed]))
        .map_err(|e| JobError::Panic(e.to_string()))?;

    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..parallelism).map(|_| worker::channel()).unzip();
    let (early, processing_interval) = spec.early_firing();
    let functions: Vec<_> = spec.aggregates.iter().map(|a| a.function).collect();
    let abort = Arc::new(AtomicBool::new(false));
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
    let mut handles = Vec::with_capacity(parallelism);
    for (index, (split, inbox)) in splits.into_iter().zip(receivers).enumerate() {
        let op = WindowOperator::new(
            spec.window_kind(),
            spec.allowed_lateness.as_millis(),
            early,
            functions.clone(),
            &state_root.join(format!("worker-{index}")),
            spec.state.max_keys_in_memory as usize,
            spec.max_parallelism,
        )?;
        let mut collector =
            Collector::new(format.clone(), sink_tx.clone(), keep[0], keep[1], keep[2]);
        if opts.capture_results {
            collector.captured = Some(Vec::new());
        }
        let partitions = split.partitions();
        let worker = Worker {
            index,
            max_parallelism: spec.max_parallelism,
            owners: owners.clone(),
            split,
            split_watermarks: PartitionWatermarks::new(
                partitions,
                spec.watermark.out_of_orderness.as_millis(),
                spec.watermark.idle_timeout.map(|d| d.as_millis()),
                now,
            ),
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
            abort: abort.clone(),
            stop: opts.stop.clone(),
            records_in: 0,
        };
        handles.push(
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| JobError::Panic(e.to_string()))?,
        );
    }
    drop(senders);
    drop(sink_tx);

    let mut summary = RunSummary::default();
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(report)) => {
                summary.records_in += report.records_in;
                summary.results += report.results;
                summary.late += report.late;
                summary.malformed += report.malformed;
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

/// The worker that owns each key group: worker `i` of `p` owns the groups
/// `[i·max/p, (i+1)·max/p)` (Flink's assignment), so a worker's state is a
/// contiguous range of key groups.
pub fn key_group_owners(max_parallelism: u32, parallelism: usize) -> Vec<u16> {
    (0..max_parallelism as usize)
        .map(|group| (group * parallelism / max_parallelism as usize) as u16)
        .collect()
}

fn write_sinks(
    rx: crossbeam_channel::Receiver<SinkBatch>,
    mut writers: [SinkWriter; 3],
) -> std::io::Result<()> {
    for batch in rx {
        writers[batch.target as usize].write_lines(&batch.lines)?;
    }
    for w in &mut writers {
        w.flush()?;
    }
    Ok(())
}

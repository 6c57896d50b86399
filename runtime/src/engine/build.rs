//! Building a run's workers: each gets its source split, its window (or
//! select) operator on its own RocksDB state, its enrichment tables, its
//! share of the snapshot being restored, and its channels to the other
//! workers, the sink thread and the checkpoint coordinator.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::collector::{Collector, SinkMsg};
use super::coordinator::Ack;
use super::exchange::{Message, Peer};
use super::operator::{self, Operator};
use super::parallel_decode::{DecodeHelper, DecodeOffers, ParallelDecode};
use super::routing::Routing;
use super::upload::Uploader;
use super::worker::{self, Worker};
use super::{JobError, RunOptions};
use crate::checkpoint::{CheckpointStorage, Layout, Restore};
use crate::connectors::{OutputFormat, SourceSplit, TARGETS};
use crate::enrich::Enricher;
use crate::spec::{self, CheckpointMode, JobSpec, SpecError};
use crate::time::{now_millis, MinWatermark, PartitionWatermarks};
use crate::window::{EarlyFiring, WindowOperator};

/// What the workers of a run share: the job, where state and snapshots
/// are, what is restored, and the run's channels and flags.
pub(super) struct Wiring<'a> {
    pub spec: &'a JobSpec,
    pub opts: &'a RunOptions,
    pub state_root: &'a Path,
    pub storage: Option<&'a CheckpointStorage>,
    pub layout: &'a Layout,
    pub restore: Option<&'a Restore>,
    /// Whether the snapshot's keyed state is restored (see `check_fits`).
    pub restore_state: bool,
    pub sink: &'a Sender<SinkMsg>,
    /// Per sink target: whether the sink keeps results, and keyed ones.
    pub keep: [bool; TARGETS],
    pub keyed: [bool; TARGETS],
    /// The newest checkpoint the coordinator asked for.
    pub trigger: &'a Arc<AtomicU64>,
    /// The id of the savepoint under way.
    pub savepoint: &'a Arc<AtomicU64>,
    /// The newest snapshot the coordinator abandoned: its uploads stop.
    pub abandoned: &'a Arc<AtomicU64>,
    pub acks: &'a Sender<Ack>,
    /// Set when the run fails: every thread stops.
    pub abort: &'a Arc<AtomicBool>,
    /// Set to stop the job.
    pub stop: &'a Arc<AtomicBool>,
    /// The way to every worker of the job, by index.
    pub peers: &'a [Peer],
}

/// Builds this process's workers (`local`, with their splits and inboxes),
/// state restored and sources positioned.
pub(super) fn build_workers(
    w: &Wiring,
    local: Range<usize>,
    splits: Vec<Box<dyn SourceSplit>>,
    inboxes: Vec<Receiver<Message>>,
) -> Result<Vec<Worker>, JobError> {
    let spec = w.spec;
    let state_root = w.state_root;
    let base = &w.opts.base_dir;
    let parallelism = spec.parallelism as usize;
    let (early, processing_interval) = early_firing(spec)?;
    let functions: Vec<_> = spec.aggregates.iter().map(|a| a.function).collect();
    let format = OutputFormat::new(spec);
    let now = now_millis();
    let owners = key_group_owners(spec.max_parallelism, parallelism);
    let by_key = Routing::ByKey {
        owners: owners.clone().into(),
        max_parallelism: spec.max_parallelism,
    };
    // Names this run's folder of shared state files in storage.
    let run_id = format!(
        "{:x}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
        std::process::id()
    );
    let decode_offers = DecodeOffers::between(local.len());
    let mut workers = Vec::with_capacity(local.len());
    for (index, (mut split, inbox)) in local.zip(splits.into_iter().zip(inboxes)) {
        let state_dir = state_root.join(format!("worker-{index}"));
        let max_keys = spec.state.max_keys_in_memory as usize;
        let op = if spec.select.is_empty() {
            Operator::Window(WindowOperator::new(
                spec.window.choice().map_err(|e| e.at("window"))?.into(),
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
        let mut collector = Collector::new(index, format.clone(), w.sink.clone(), w.keep, w.keyed);
        if w.opts.capture_results {
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
        if let Some(r) = w.restore {
            decoder.restore(
                r,
                index,
                &state_root.join(format!("worker-{index}.restore")),
            )?;
            op.restore_watermark(r.metadata.watermark);
            if w.restore_state {
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
        let checkpointing = match w.storage {
            Some(storage) => {
                let uploads = state_root.join(format!("worker-{index}.uploads"));
                // RocksDB checkpoints a crashed run left behind.
                let _ = std::fs::remove_dir_all(&uploads);
                let uploader = Uploader::start(
                    index,
                    format!("{run_id}-w{index}"),
                    storage.clone(),
                    w.acks.clone(),
                    w.abort.clone(),
                    w.abandoned.clone(),
                )
                .map_err(|source| JobError::Thread {
                    name: format!("upload-{index}"),
                    parallelism: spec.parallelism,
                    source,
                })?;
                Some(worker::Checkpointing {
                    trigger: w.trigger.clone(),
                    injected: 0,
                    storage: storage.clone(),
                    layout: w.layout.clone(),
                    acks: w.acks.clone(),
                    at_least_once: spec
                        .checkpoints
                        .as_ref()
                        .is_some_and(|c| c.mode == CheckpointMode::AtLeastOnce),
                    key_groups,
                    savepoint: w.savepoint.clone(),
                    uploader,
                    uploads,
                })
            }
            None => None,
        };
        // A select job keeps no keyed state, and one worker owns every key
        // group: each event stays with the worker that read it.
        let routing = match op.is_local() || parallelism == 1 {
            true => Routing::Here,
            false => by_key.clone(),
        };
        // A worker that parses its records with lookups reads them whole;
        // it still helps the others parse theirs.
        let parallel_decode =
            decode_offers
                .clone()
                .zip(decoder.plain_parser())
                .map(|(offers, parser)| {
                    ParallelDecode::new(offers, parser, routing.clone(), index, parallelism)
                });
        let decode_helper = decode_offers.as_ref().map(DecodeHelper::new);
        let worker = Worker {
            index,
            max_parallelism: spec.max_parallelism,
            routing,
            split,
            raw: Default::default(),
            decoder,
            parallel_decode,
            decode_helper,
            split_watermarks,
            split_done: partitions == 0,
            op,
            // Inputs with nothing to read are marked ended before the
            // workers start (`run.rs`).
            inputs: MinWatermark::new(parallelism),
            inbox,
            peers: w.peers.to_vec(),
            outgoing: (0..parallelism).map(|_| Vec::new()).collect(),
            sent_status: vec![None; parallelism],
            collector,
            fail_on_malformed: spec.side_outputs.fail_on_malformed,
            processing_time_interval: processing_interval,
            max_drift: spec.watermark.max_drift.map(|d| d.as_millis()),
            checkpointing,
            alignment: None,
            held: Default::default(),
            abort: w.abort.clone(),
            stop: w.stop.clone(),
            records_in: 0,
            control: w.opts.control.clone(),
            published: Default::default(),
            recent_malformed: Default::default(),
            activity: super::activity::Activity::new(std::time::Instant::now()),
        };
        workers.push(worker);
    }
    Ok(workers)
}

/// The window operator's early firing, and the wall-clock interval at which
/// the worker fires processing-time ones.
fn early_firing(spec: &JobSpec) -> Result<(EarlyFiring, Option<Duration>), SpecError> {
    let Some(early) = &spec.trigger.early else {
        return Ok((EarlyFiring::None, None));
    };
    Ok(match early.choice().map_err(|e| e.at("trigger.early"))? {
        spec::EarlyFiring::EveryEventTime(interval) => {
            (EarlyFiring::EventTime(interval.as_millis()), None)
        }
        spec::EarlyFiring::EveryProcessingTime(interval) => {
            (EarlyFiring::ProcessingTime, Some(interval.as_std()))
        }
        spec::EarlyFiring::EveryElements(n) => (EarlyFiring::Elements(n), None),
    })
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

/// The worker that owns each key group: worker `i` of `p` owns the groups
/// `[i·max/p, (i+1)·max/p)` (Flink's assignment), so a worker's state is a
/// contiguous range of key groups.
pub fn key_group_owners(max_parallelism: u32, parallelism: usize) -> Vec<u16> {
    (0..max_parallelism as usize)
        .map(|group| (group * parallelism / max_parallelism as usize) as u16)
        .collect()
}

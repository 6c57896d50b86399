//! The job's Prometheus metrics: counters the workers add to, gauges they
//! set, and the per-worker and per-partition families behind the
//! dashboard's back-pressure and partition tables.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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
    /// Seconds each worker of this process spent busy, idle or blocked.
    pub worker_time: Family<WorkerActivity, Counter<f64, AtomicU64>>,
    /// What the busy seconds went to, by stage.
    pub worker_stage_time: Family<WorkerStage, Counter<f64, AtomicU64>>,
    pub partition_watermark_ms: Family<PartitionLabel, Gauge>,
    pub partition_lag: Family<PartitionLabel, Gauge>,
    /// The phases of the last completed checkpoint.
    pub last_checkpoint_phase_ms: Family<PhaseLabel, Gauge>,
}

/// One worker's activity: `busy`, `idle`, `blocked_on_exchange` or
/// `blocked_on_sink` or `blocked_on_decode`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerActivity {
    pub worker: u32,
    pub activity: &'static str,
}

/// One worker's stage: `read`, `decode`, `route` or `window`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerStage {
    pub worker: u32,
    pub stage: &'static str,
}

/// A source partition, by its id (`visits.jsonl`, `events[0]`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: String,
}

/// A checkpoint phase: `alignment`, `sync`, `upload` or `commit`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
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
        r.register(
            "worker_time_seconds",
            "Time each worker spent busy, idle, or blocked on the exchange or the sink (back-pressure)",
            self.worker_time.clone(),
        );
        r.register(
            "worker_stage_seconds",
            "Busy time of each worker by stage: read, decode, route, window",
            self.worker_stage_time.clone(),
        );
        r.register(
            "partition_watermark_milliseconds",
            "Each source partition's event-time watermark",
            self.partition_watermark_ms.clone(),
        );
        r.register(
            "partition_lag_records",
            "Kafka records behind the end of each source partition",
            self.partition_lag.clone(),
        );
        r.register(
            "last_checkpoint_phase_milliseconds",
            "Phases of the last completed checkpoint: alignment, sync, upload, commit (slowest worker's)",
            self.last_checkpoint_phase_ms.clone(),
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

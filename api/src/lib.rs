//! The contract between a running job and whoever controls it (a person
//! with `curl`, the operator): the control API's paths, request and answer
//! bodies, and the flags and environment variables `streamjob run` takes.
//! The runtime serves these types and the operator reads them, so neither
//! side copies the other's JSON by hand. See `docs/architecture.md#control-api`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Paths of the control API.
pub mod paths {
    /// Liveness: `ok` while the process serves requests.
    pub const HEALTHZ: &str = "/healthz";
    /// Readiness: 200 while the job runs, 503 otherwise; body [`super::StateAnswer`].
    pub const READYZ: &str = "/readyz";
    /// Prometheus text exposition.
    pub const METRICS: &str = "/metrics";
    /// [`super::JobStatus`].
    pub const STATUS: &str = "/status";
    /// The recent completed checkpoints and savepoints: [`super::SnapshotRecord`]s.
    pub const CHECKPOINTS: &str = "/checkpoints";
    /// `POST`: trigger a savepoint, answered with [`super::SavepointTriggered`].
    pub const SAVEPOINTS: &str = "/savepoints";
    /// `POST` [`super::StopRequest`], answered with [`super::StopAnswer`].
    pub const STOP: &str = "/stop";

    /// `GET`: one savepoint's [`super::SavepointStatus`].
    pub fn savepoint(id: u64) -> String {
        format!("{SAVEPOINTS}/{id}")
    }

    /// The route of [`savepoint`], as the server matches it.
    pub fn savepoint_route() -> String {
        format!("{SAVEPOINTS}/{{id}}")
    }
}

/// Command-line flags of `streamjob run` that a supervisor (the operator)
/// passes, with the environment variables that can set them instead.
pub mod flags {
    /// Where the control API listens (`off` for none).
    pub const CONTROL_ADDRESS: &str = "--control-address";
    pub const CONTROL_ADDRESS_ENV: &str = "STREAMJOB_CONTROL_ADDRESS";
    /// A file holding the token that `POST /savepoints` and `POST /stop`
    /// must present as `Authorization: Bearer <token>`.
    pub const CONTROL_TOKEN_FILE: &str = "--control-token-file";
    pub const CONTROL_TOKEN_FILE_ENV: &str = "STREAMJOB_CONTROL_TOKEN_FILE";
    /// Start from a checkpoint or savepoint folder or URI.
    pub const FROM_SAVEPOINT: &str = "--from-savepoint";
    pub const FROM_SAVEPOINT_ENV: &str = "STREAMJOB_FROM_SAVEPOINT";
    /// Start from the newest completed snapshot in the job's storage.
    pub const FROM_LATEST_CHECKPOINT: &str = "--from-latest-checkpoint";
    pub const FROM_LATEST_CHECKPOINT_ENV: &str = "STREAMJOB_FROM_LATEST_CHECKPOINT";
    /// Restore a snapshot whose window state does not fit the job.
    pub const ALLOW_NON_RESTORED_STATE: &str = "--allow-non-restored-state";
    pub const ALLOW_NON_RESTORED_STATE_ENV: &str = "STREAMJOB_ALLOW_NON_RESTORED_STATE";
    /// Overrides the job's `parallelism`.
    pub const PARALLELISM_ENV: &str = "STREAMJOB_PARALLELISM";
    /// Overrides the job's `state.dir`.
    pub const STATE_DIR_ENV: &str = "STREAMJOB_STATE_DIR";
    /// The rollout this process belongs to (see `streamjob run --help`).
    pub const DEPLOYMENT_ENV: &str = "STREAMJOB_DEPLOYMENT";
    /// The number of processes (pods) the job runs over.
    pub const PODS: &str = "--pods";
    pub const PODS_ENV: &str = "STREAMJOB_PODS";
    /// This process's pod, 0 to pods − 1 (a StatefulSet pod's ordinal).
    pub const POD_INDEX: &str = "--pod-index";
    pub const POD_INDEX_ENV: &str = "STREAMJOB_POD_INDEX";
    /// Every pod's exchange address, `HOST:PORT`, comma-separated, pod 0 first.
    pub const PEERS: &str = "--peers";
    pub const PEERS_ENV: &str = "STREAMJOB_PEERS";
    /// The log filter (`info`, `streamjob_runtime=debug`, …).
    pub const LOG_ENV: &str = "STREAMJOB_LOG";
}

/// Where the job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobState {
    Starting,
    Running,
    Restarting,
    Stopping,
    Finished,
    Failed,
}

/// A checkpoint (periodic, incremental, owned by the job) or a savepoint
/// (on request, full, owned by whoever asked for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

/// A checkpoint or savepoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRef {
    pub id: u64,
    pub path: String,
    /// RFC 3339.
    pub time: Option<String>,
}

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default)]
    pub job: String,
    /// The only field a reader may rely on: the others default when an
    /// older or newer runtime leaves them out.
    pub state: JobState,
    /// Why the job failed or is restarting.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub last_checkpoint: Option<SnapshotRef>,
    /// The newest savepoint this run took (a stopped job's is the one it
    /// stopped with).
    #[serde(default)]
    pub last_savepoint: Option<SnapshotRef>,
    /// The job's event-time watermark, RFC 3339, once every worker has one.
    #[serde(default)]
    pub watermark: Option<String>,
    #[serde(default)]
    pub records_in: u64,
    #[serde(default)]
    pub records_out: u64,
    #[serde(default)]
    pub late: u64,
    #[serde(default)]
    pub malformed: u64,
    #[serde(default)]
    pub unmatched: u64,
    #[serde(default)]
    pub restarts: u64,
    /// Kafka records not read yet, over all partitions.
    #[serde(default)]
    pub lag: Option<u64>,
    /// The job's workers, in all its pods.
    #[serde(default)]
    pub parallelism: u32,
    /// Over several pods, which one this is.
    #[serde(default)]
    pub pod: Option<PodPlace>,
    /// RFC 3339: when this process started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The checkpoint or savepoint this run restored its state from.
    #[serde(default)]
    pub restored_from: Option<String>,
    /// This process's workers: where their time went, and their source
    /// partitions.
    #[serde(default)]
    pub workers: Vec<WorkerStatus>,
    /// The last few malformed records, newest last.
    #[serde(default)]
    pub recent_malformed: Vec<MalformedRecord>,
    /// The failures that restarted the job in this process, newest last.
    #[serde(default)]
    pub recent_restarts: Vec<Failure>,
    /// Checkpoints and savepoints that failed, newest last.
    #[serde(default)]
    pub checkpoint_failures: Vec<CheckpointFailure>,
}

/// One worker of the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    pub index: u32,
    /// Where the worker's time went over the last second.
    pub time: WorkerTime,
    /// What its busy time went to, stage by stage (shares of the same
    /// second; the rest of `busy` is the worker's housekeeping).
    #[serde(default)]
    pub stages: StageTime,
    /// RFC 3339, once the worker has one.
    #[serde(default)]
    pub watermark: Option<String>,
    /// The source partitions this worker reads.
    #[serde(default)]
    pub partitions: Vec<PartitionStatus>,
}

/// Shares of a worker's time, adding up to 1. Time blocked is
/// back-pressure: the worker could have read more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerTime {
    /// Reading, decoding, routing and windowing.
    pub busy: f64,
    /// Waiting for records, or for other inputs' checkpoint barriers.
    pub idle: f64,
    /// Not reading because a peer worker's inbox is full.
    pub blocked_on_exchange: f64,
    /// Waiting for the sink to make the output durable.
    pub blocked_on_sink: f64,
    /// Waiting for the parts of what it read that other workers of its
    /// process are parsing (parallelism above 1): they are short of CPU.
    #[serde(default)]
    pub blocked_on_decode: f64,
}

impl WorkerTime {
    /// Each activity with its metric label.
    pub fn by_activity(&self) -> [(&'static str, f64); 5] {
        [
            ("busy", self.busy),
            ("idle", self.idle),
            ("blocked_on_exchange", self.blocked_on_exchange),
            ("blocked_on_sink", self.blocked_on_sink),
            ("blocked_on_decode", self.blocked_on_decode),
        ]
    }

    /// Every activity divided by `total`.
    pub fn divided_by(self, total: f64) -> Self {
        WorkerTime {
            busy: self.busy / total,
            idle: self.idle / total,
            blocked_on_exchange: self.blocked_on_exchange / total,
            blocked_on_sink: self.blocked_on_sink / total,
            blocked_on_decode: self.blocked_on_decode / total,
        }
    }
}

/// The stages a worker runs on what its source read, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageTime {
    /// Taking records from the source (its waits for records are idle).
    pub read: f64,
    /// Reading the job's fields from each record, looking them up in the
    /// `enrich` tables and making its key; at parallelism above 1 also
    /// parsing parts of other workers' batches, and joining the parts
    /// others parsed of its own.
    pub decode: f64,
    /// Sending each event to the worker that owns its key, and windowing
    /// the ones this worker owns.
    pub route: f64,
    /// Windowing the events other workers sent, and firing timers.
    pub window: f64,
}

impl StageTime {
    /// Each stage with its metric label.
    pub fn by_stage(&self) -> [(&'static str, f64); 4] {
        [
            ("read", self.read),
            ("decode", self.decode),
            ("route", self.route),
            ("window", self.window),
        ]
    }

    /// Every stage divided by `total`.
    pub fn divided_by(self, total: f64) -> Self {
        StageTime {
            read: self.read / total,
            decode: self.decode / total,
            route: self.route / total,
            window: self.window / total,
        }
    }
}

/// One source partition (a file, a Kafka partition, a generator stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    pub id: String,
    pub state: PartitionState,
    /// Records read from it.
    pub records: u64,
    /// RFC 3339, once it has records.
    #[serde(default)]
    pub watermark: Option<String>,
    /// Kafka records not read yet, once the end offset is known.
    #[serde(default)]
    pub lag: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PartitionState {
    /// Its watermark holds the job's back until it advances.
    Active,
    /// No records for `watermark.idleTimeout`: it holds nothing back.
    Idle,
    Ended,
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MalformedRecord {
    /// RFC 3339.
    pub at: String,
    /// Where it was read: `visits.jsonl:12`, `events[0]@41`.
    pub location: String,
    pub error: String,
}

/// Why the job failed at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// RFC 3339.
    pub at: String,
    pub error: String,
}

/// A checkpoint or savepoint that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointFailure {
    pub id: u64,
    pub kind: SnapshotKind,
    /// RFC 3339.
    pub at: String,
    pub error: String,
}

/// A pod's place in a job over several pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlace {
    pub index: u32,
    pub pods: u32,
}

/// One completed checkpoint or savepoint (`GET /checkpoints`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    pub id: u64,
    pub kind: SnapshotKind,
    pub path: String,
    /// Epoch milliseconds.
    pub completed_at: i64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// Where the duration went (absent from older runtimes).
    #[serde(default)]
    pub phases: Option<CheckpointPhases>,
}

/// The phases of a checkpoint, in milliseconds; each is the slowest
/// worker's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointPhases {
    /// From a worker's barrier until every input's barrier reached it.
    pub alignment_ms: u64,
    /// Making the output durable and writing the state, while the worker
    /// waits.
    pub sync_ms: u64,
    /// Uploading the state, while the worker goes on.
    pub upload_ms: u64,
    /// The sink's commit and the metadata.
    pub commit_ms: u64,
}

/// `GET /savepoints/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum SavepointStatus {
    InProgress,
    Completed { path: String },
    Failed { error: String },
}

/// The answer to `POST /savepoints`: the id the savepoint will have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointTriggered {
    pub id: u64,
}

/// The body of `POST /stop`; an empty body is a plain stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Take a savepoint first, commit the output up to it, then stop.
    #[serde(default)]
    pub savepoint: bool,
}

/// The answer to `POST /stop`: the savepoint stopped with, if one was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopAnswer {
    pub savepoint: Option<SavepointRef>,
}

/// A savepoint a stop took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointRef {
    pub id: u64,
    pub path: String,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAnswer {
    pub state: JobState,
}

/// The body of every answer that is not 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_kinds_have_their_wire_names() {
        let json = serde_json::to_string(&[JobState::Running, JobState::Finished]).unwrap();
        assert_eq!(json, r#"["running","finished"]"#);
        let json = serde_json::to_string(&SnapshotKind::Savepoint).unwrap();
        assert_eq!(json, r#""savepoint""#);
    }

    #[test]
    fn savepoint_status_is_tagged_by_state() {
        let done = SavepointStatus::Completed {
            path: "s3://b/j/savepoints/sp-3".into(),
        };
        let json = serde_json::to_string(&done).unwrap();
        assert_eq!(
            json,
            r#"{"state":"completed","path":"s3://b/j/savepoints/sp-3"}"#
        );
        let back: SavepointStatus = serde_json::from_str(r#"{"state":"inProgress"}"#).unwrap();
        assert_eq!(back, SavepointStatus::InProgress);
    }

    #[test]
    fn stop_request_refuses_unknown_fields() {
        assert!(serde_json::from_str::<StopRequest>(r#"{"savepoint": true, "drain": 1}"#).is_err());
        let stop: StopRequest = serde_json::from_str(r#"{"savepoint": true}"#).unwrap();
        assert!(stop.savepoint);
    }
}

//! The job spec: what a job is, as a user writes it in YAML (and as the
//! operator embeds it in the `StreamJob` CRD). Parsing is strict: unknown
//! fields are rejected, and every error names the field it is about.

mod choice;
mod duration;
mod env_refs;
mod storage_uri;
mod validate;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

pub use choice::{Changelog, EarlyFiring, OneOfError, RestartStrategy, Sink, Source, Window};
pub use duration::{Duration, ParseDurationError};
pub use storage_uri::StorageUri;
pub use validate::{FieldError, SpecError};

/// A keyed, event-time windowed job: source → key → window → aggregate →
/// sink; or a select job: source → the selected fields of each record → sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// Job name: names the local state directory (and the checkpoint prefix).
    /// In a StreamJob the operator sets it to the StreamJob's name.
    #[serde(default)]
    pub name: String,
    /// Number of workers (threads) the keyed work is spread over.
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Number of key groups: the unit in which keyed state is spread and
    /// redistributed. Fixed for the life of a job's state.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u32,
    pub source: SourceSpec,
    #[serde(default)]
    pub event_time: EventTimeSpec,
    #[serde(default)]
    pub watermark: WatermarkSpec,
    /// Enrichment, before the record is keyed or selected: each lookup adds
    /// the latest entry of a table built from a changelog (users, items) to
    /// the record. A record without a match goes to `sideOutputs.unmatched`.
    #[serde(default)]
    pub enrich: Vec<LookupSpec>,
    /// The field(s) the stream is keyed by; dotted paths reach nested fields.
    /// Required unless the job is a select job.
    #[serde(default, deserialize_with = "one_or_many")]
    pub key: Vec<String>,
    /// Required unless the job is a select job.
    #[serde(default)]
    pub window: WindowSpec,
    #[serde(default)]
    pub trigger: TriggerSpec,
    /// How long after a window's end late elements still update it.
    #[serde(default)]
    pub allowed_lateness: Duration,
    /// Required unless the job is a select job.
    #[serde(default)]
    pub aggregates: Vec<AggregateSpec>,
    /// A select job: instead of key, window and aggregates, each record's
    /// fields at these dotted paths pass straight to the sink (a missing one
    /// as null), as `{"<path>": value, …}`.
    #[serde(default)]
    pub select: Vec<String>,
    pub sink: SinkSpec,
    #[serde(default)]
    pub side_outputs: SideOutputsSpec,
    #[serde(default)]
    pub state: StateSpec,
    /// Periodic snapshots of state and source positions, to restore from.
    pub checkpoints: Option<CheckpointSpec>,
    /// What `streamjob run` does when the job fails: without one it exits
    /// with the error.
    pub restart_strategy: Option<RestartStrategySpec>,
}

fn default_parallelism() -> u32 {
    1
}

fn default_max_parallelism() -> u32 {
    128
}

/// Accepts `key: visit_id` as well as `key: [a, b]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a field name or a list of field names"))?
    {
        OneOrMany::One(field) => Ok(vec![field]),
        OneOrMany::Many(fields) => Ok(fields),
    }
}

/// Where records come from. Set exactly one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    pub file: Option<FileSourceSpec>,
    pub generator: Option<GeneratorSpec>,
    pub kafka: Option<KafkaSourceSpec>,
}

/// Kafka topics with JSON values. Each partition is a partition of the job,
/// with its own watermark; positions are kept in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSourceSpec {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    /// Consumer group (default `streamjob-<job name>`); offsets are kept in
    /// checkpoints, not committed to the group by the source.
    pub group_id: Option<String>,
    /// Where a job without a snapshot starts reading.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Read up to the end offsets found at start, then end (for tests,
    /// demos and backfills); an unbounded source runs until stopped.
    #[serde(default)]
    pub bounded: bool,
    /// More librdkafka consumer settings.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

/// JSON-lines files, read to their end (a bounded source). Each file is a
/// partition with its own watermark.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSourceSpec {
    /// One file; relative paths are resolved against the job file's folder.
    pub path: Option<String>,
    /// Several files, one partition each.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// Generated events for demos and benchmarks: `keys` integer keys, `eventsPerMs`
/// events per millisecond of event time, each with an integer `value` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorSpec {
    /// Total events; absent means unbounded.
    pub events: Option<u64>,
    #[serde(default = "default_generator_keys")]
    pub keys: u64,
    #[serde(default = "default_events_per_ms")]
    pub events_per_ms: u32,
    /// Event time of the first event, epoch milliseconds.
    #[serde(default = "default_generator_start")]
    pub start_time: i64,
    /// Events are shuffled by up to this much event time (0 = in order).
    #[serde(default)]
    pub disorder: Duration,
    /// Wall-clock pacing in events per second; absent means as fast as possible.
    pub rate: Option<u64>,
    #[serde(default)]
    pub seed: u64,
    /// The share of events (0 to 1) stamped `lateBy` earlier than their
    /// place in the stream: behind the watermark, so the job's late
    /// handling (allowed lateness, the late side output) gets work.
    #[serde(default)]
    pub late_fraction: f64,
    /// How far back a late event is stamped (on top of `disorder`).
    #[serde(default = "default_late_by")]
    pub late_by: Duration,
}

fn default_late_by() -> Duration {
    Duration::from_millis(60 * 60_000)
}

fn default_generator_keys() -> u64 {
    10_000
}
fn default_events_per_ms() -> u32 {
    10
}
fn default_generator_start() -> i64 {
    1_735_689_600_000 // 2025-01-01T00:00:00Z
}

/// A lookup table built from a changelog: the latest record per key (a
/// Kafka record without a value deletes its key). Every worker keeps the
/// whole table in its RocksDB state, so lookups need no exchange of the
/// records; its changelog positions and contents are in every checkpoint,
/// so a restore takes the table from the checkpoint instead of reading the
/// changelog again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupSpec {
    /// The field the matching entry is added to the record as (an object of
    /// the entry's `fields`); later lookups and the key may use its fields,
    /// e.g. `user.country`. Letters, digits, `_` and `-`.
    pub name: String,
    /// The changelog: a Kafka topic (read from `startFrom`, then followed;
    /// `bounded: true` reads it once) or a JSON-lines file.
    pub from: ChangelogSpec,
    /// Dotted path of the changelog record's key field, e.g. `id`.
    pub key: String,
    /// Dotted path of the field of the record whose value is looked up,
    /// e.g. `user_id`. Keys match by their text: `42` matches `"42"`.
    pub on: String,
    /// Fields of the changelog record to keep (default: all of them).
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Where a lookup table's changelog is. Set exactly one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangelogSpec {
    pub file: Option<FileSourceSpec>,
    pub kafka: Option<KafkaSourceSpec>,
}

/// Which field holds a record's event time, and how it is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTimeSpec {
    /// Dotted path of the event-time field (required for file sources).
    pub field: Option<String>,
    #[serde(default)]
    pub format: TimeFormat,
    /// A record stamped more than this ahead of the wall clock (a clock
    /// gone wrong, a mistyped year) goes to the malformed output instead of
    /// moving event time: one such record would make every later record
    /// late. Default 1d.
    #[serde(default = "default_max_ahead")]
    pub max_ahead: Duration,
}

impl Default for EventTimeSpec {
    fn default() -> Self {
        EventTimeSpec {
            field: None,
            format: TimeFormat::default(),
            max_ahead: default_max_ahead(),
        }
    }
}

fn default_max_ahead() -> Duration {
    Duration::from_millis(86_400_000)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimeFormat {
    /// ISO-8601 strings or epoch-millisecond numbers, whichever the value is.
    #[default]
    Auto,
    /// ISO-8601 / RFC 3339 text; without an offset it is taken as UTC.
    Iso8601,
    /// Milliseconds since the Unix epoch.
    EpochMillis,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatermarkSpec {
    /// Bounded out-of-orderness: the watermark trails the highest event time
    /// seen by this much.
    #[serde(default)]
    pub out_of_orderness: Duration,
    /// A partition that has no records for this long (processing time) stops
    /// holding the watermark back until it has records again.
    pub idle_timeout: Option<Duration>,
    /// Watermark alignment: a worker stops reading its partitions while
    /// their watermark is more than this ahead of the job's (Flink's
    /// maxAllowedWatermarkDrift). Keeps state from piling up behind a slow
    /// partition.
    pub max_drift: Option<Duration>,
}

/// The window kind. Set exactly one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    pub tumbling: Option<TumblingSpec>,
    pub sliding: Option<SlidingSpec>,
    pub session: Option<SessionSpec>,
}

impl WindowSpec {
    /// e.g. `tumbling 15m`, `sliding 1h every 1m`, `session gap 30s`.
    pub fn describe(&self) -> String {
        let offset = |o: Duration| {
            if o == Duration::ZERO {
                String::new()
            } else {
                format!(" offset {o}")
            }
        };
        match self.choice() {
            Ok(Window::Tumbling(t)) => format!("tumbling {}{}", t.size, offset(t.offset)),
            Ok(Window::Sliding(s)) => {
                format!("sliding {} every {}{}", s.size, s.slide, offset(s.offset))
            }
            Ok(Window::Session(s)) => format!("session gap {}", s.gap),
            Err(_) => "none".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TumblingSpec {
    pub size: Duration,
    #[serde(default)]
    pub offset: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlidingSpec {
    pub size: Duration,
    pub slide: Duration,
    #[serde(default)]
    pub offset: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSpec {
    pub gap: Duration,
}

/// When windows emit. The final result is always emitted when the watermark
/// passes the window's end; early firings add partial results before that.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    pub early: Option<EarlyFiringSpec>,
}

/// Early (partial) results. Set exactly one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EarlyFiringSpec {
    /// Every time the watermark passes a multiple of this much event time.
    pub every_event_time: Option<Duration>,
    /// Every this much wall-clock time.
    pub every_processing_time: Option<Duration>,
    /// Every this many elements added to a window.
    pub every_elements: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregateSpec {
    /// Name of the value in the output record.
    pub name: String,
    pub function: AggregateFunction,
    /// Dotted path of the input field (all functions but `count`).
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AggregateFunction {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
}

impl AggregateFunction {
    pub fn needs_field(self) -> bool {
        self != AggregateFunction::Count
    }

    /// The name users write in the spec.
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
            AggregateFunction::Avg => "avg",
            AggregateFunction::CountDistinct => "countDistinct",
        }
    }
}

/// Where results go. Set exactly one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkSpec {
    pub stdout: Option<StdoutSinkSpec>,
    pub file: Option<FileSinkSpec>,
    /// Discards records (they are still counted): for benchmarks.
    pub discard: Option<DiscardSinkSpec>,
    pub kafka: Option<KafkaSinkSpec>,
    pub postgres: Option<PostgresSinkSpec>,
}

/// Window results as rows of a PostgreSQL table. With exactly-once
/// checkpoints each checkpoint's rows are inserted in one transaction that
/// also records the checkpoint in `streamjob_commits`, the commit point of
/// the checkpoint (docs/architecture.md, "Two-phase sinks").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresSinkSpec {
    /// libpq connection string or URL, e.g.
    /// `host=127.0.0.1 port=5432 user=streamjob dbname=analytics`; the
    /// password may come from `PGPASSWORD`.
    pub url: String,
    /// The table, optionally `schema.table`.
    pub table: String,
    /// Result fields to write, each to the column of the same name (default:
    /// the key fields, `window_start`, `window_end`, the aggregates and
    /// `partial`). `emit_time` may be added.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Create the table when it does not exist (keys as `text`, window
    /// bounds as `timestamptz`, counts as `bigint`, other aggregates as
    /// `double precision`, `partial` as `boolean`).
    #[serde(default)]
    pub create_table: bool,
    /// Columns that identify a row: a row with the same values is updated
    /// instead of inserted again (`ON CONFLICT … DO UPDATE`); the table needs
    /// a unique index on them (a created table gets them as primary key).
    #[serde(default)]
    pub upsert_key: Vec<String>,
}

/// JSON records to a Kafka topic, keyed by the record's key. With
/// exactly-once checkpoints they are written in Kafka transactions that
/// commit with each checkpoint (docs/architecture.md, "Two-phase sinks"):
/// consumers read them with `isolation.level=read_committed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSinkSpec {
    pub bootstrap_servers: String,
    pub topic: String,
    /// Prefix of the producer's `transactional.id` (default
    /// `streamjob-<job name>`). A restarted job uses the same ids, which
    /// fences the crashed run and aborts its open transaction; two jobs must
    /// never share a prefix.
    pub transactional_id_prefix: Option<String>,
    /// More librdkafka producer settings, e.g. `transaction.timeout.ms`
    /// (default 900000; it must exceed the checkpoint interval plus a
    /// minute to recover).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdoutSinkSpec {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscardSinkSpec {}

/// JSON lines appended to a file; relative paths are resolved against the
/// job file's folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSinkSpec {
    pub path: String,
}

/// Records that do not make it into a window result. Without a destination
/// they are dropped and counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SideOutputsSpec {
    /// Elements later than the window's end plus the allowed lateness.
    pub late: Option<SinkSpec>,
    /// Records that cannot be read: bad JSON, a missing or mistyped field.
    pub malformed: Option<SinkSpec>,
    /// Records an `enrich` lookup found no entry for, with the reason.
    pub unmatched: Option<SinkSpec>,
    /// Fail the job on the first malformed record instead.
    #[serde(default)]
    pub fail_on_malformed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateSpec {
    /// Folder for the workers' RocksDB instances; default `.streamjob/state/<name>`.
    pub dir: Option<String>,
    /// Keys whose windows each worker keeps in memory before it spills the
    /// rest to RocksDB.
    #[serde(default = "default_hot_keys")]
    pub max_keys_in_memory: u64,
}

impl Default for StateSpec {
    fn default() -> Self {
        StateSpec {
            dir: None,
            max_keys_in_memory: default_hot_keys(),
        }
    }
}

fn default_hot_keys() -> u64 {
    1_000_000
}

/// Checkpoints: every `interval`, each worker writes its state and source
/// positions to `storage`; the newest `retained` completed ones are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointSpec {
    pub interval: Duration,
    /// `file:///abs/dir`, `file://dir` relative to the job file, or
    /// `s3://bucket/prefix` (settings from the usual AWS environment).
    pub storage: String,
    #[serde(default = "default_retained")]
    pub retained: u32,
    #[serde(default)]
    pub mode: CheckpointMode,
    /// Least time between the end of one checkpoint and the start of the
    /// next (the interval counts from trigger to trigger, as in Flink).
    #[serde(default)]
    pub min_pause: Duration,
    /// Consecutive failed checkpoints tolerated before the job fails.
    #[serde(default)]
    pub tolerable_failures: u32,
    /// A checkpoint not complete this long after its trigger is abandoned
    /// and counts as failed (default 10m, as in Flink).
    #[serde(default = "default_checkpoint_timeout")]
    pub timeout: Duration,
}

fn default_retained() -> u32 {
    10
}

fn default_checkpoint_timeout() -> Duration {
    Duration::from_secs(600)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckpointMode {
    /// Barriers are aligned: each record is in exactly one checkpoint's
    /// state.
    #[default]
    ExactlyOnce,
    /// Records behind a barrier are not held back; after a restore some may
    /// count twice.
    AtLeastOnce,
}

/// Restarts after a failure, from the latest checkpoint (or from the start
/// when there is none yet). Set exactly one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartStrategySpec {
    pub fixed_delay: Option<FixedDelaySpec>,
    pub exponential_backoff: Option<ExponentialBackoffSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedDelaySpec {
    /// Restarts before the job is given up.
    pub attempts: u32,
    pub delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExponentialBackoffSpec {
    pub initial: Duration,
    pub max: Duration,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Restarts before the job is given up; absent means no limit.
    pub attempts: Option<u32>,
}

fn default_multiplier() -> f64 {
    2.0
}

impl RestartStrategySpec {
    /// The delay before restart number `attempt` (1-based), or None when the
    /// attempts are used up.
    pub fn delay(&self, attempt: u32) -> Option<std::time::Duration> {
        match self.choice().ok()? {
            RestartStrategy::FixedDelay(f) => (attempt <= f.attempts).then(|| f.delay.as_std()),
            RestartStrategy::ExponentialBackoff(b) => {
                if b.attempts.is_some_and(|a| attempt > a) {
                    return None;
                }
                let factor = b.multiplier.powi(attempt.saturating_sub(1) as i32);
                let millis = (b.initial.as_millis() as f64 * factor).min(b.max.as_millis() as f64);
                Some(std::time::Duration::from_millis(millis as u64))
            }
        }
    }
}

impl JobSpec {
    /// Parses and validates a job from YAML text.
    pub fn from_yaml(text: &str) -> Result<JobSpec, SpecError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let spec: JobSpec = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let path = if path == "." { String::new() } else { path };
            yaml_error(path, err.into_inner())
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads, parses and validates a job file, with `${env:NAME}`
    /// references replaced from the process's environment.
    pub fn from_file(path: &std::path::Path) -> Result<JobSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            SpecError::single(
                String::new(),
                format!("cannot read {}: {err}", path.display()),
            )
        })?;
        JobSpec::from_yaml_with_env(&text, &|name| std::env::var(name).ok())
    }

    /// Parses a job whose string values may reference environment
    /// variables (`${env:NAME}`, looked up with `env`), and validates it.
    pub fn from_yaml_with_env(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<JobSpec, SpecError> {
        if !text.contains("${") {
            return JobSpec::from_yaml(text);
        }
        // Syntax errors with their line and column, as without references.
        let deserializer = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize::<_, JobSpec>(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let path = if path == "." { String::new() } else { path };
            yaml_error(path, err.into_inner())
        })?;
        let mut value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| SpecError::single("", e.to_string()))?;
        let mut problems = Vec::new();
        env_refs::resolve(&mut value, env, "", &mut problems);
        if !problems.is_empty() {
            return Err(SpecError { errors: problems });
        }
        let spec: JobSpec = serde_path_to_error::deserialize(value)
            .map_err(|err| SpecError::single(err.path().to_string(), err.inner().to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Where worker state lives unless overridden: `state.dir`, or
    /// `.streamjob/state/<name>`, relative to `base_dir`.
    pub fn state_dir(&self, base_dir: &std::path::Path) -> std::path::PathBuf {
        match &self.state.dir {
            Some(dir) => base_dir.join(dir),
            None => base_dir.join(".streamjob").join("state").join(&self.name),
        }
    }

    /// Whether the job writes its results exactly once: under exactly-once
    /// checkpoints, every sink commits with them.
    pub fn exactly_once(&self) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| c.mode == CheckpointMode::ExactlyOnce)
    }

    /// Why the job cannot run over `pods` pods, if it cannot: every pod
    /// runs at least one worker. The runtime checks this at start, the
    /// operator before a rollout.
    pub fn pods_problem(&self, pods: u32) -> Option<String> {
        (pods > self.parallelism).then(|| {
            format!(
                "{pods} pods need at least {pods} workers, and parallelism is {}: raise \
                 parallelism or use fewer pods",
                self.parallelism
            )
        })
    }

    /// What the keyed window state depends on: restoring state built for
    /// another shape would give wrong results, so snapshots record it.
    pub fn state_shape(&self) -> String {
        if !self.select.is_empty() {
            // A select job keeps no state: any select list fits.
            return "select".into();
        }
        let window = self.window.describe();
        let aggregates: Vec<String> = self
            .aggregates
            .iter()
            .map(|a| {
                let f = a.function.name();
                match &a.field {
                    Some(field) => format!("{f}({field})"),
                    None => f.to_string(),
                }
            })
            .collect();
        format!(
            "key {:?}, window {window}, aggregates [{}]",
            self.key,
            aggregates.join(", ")
        )
    }

    /// The fields of a result record, in output order: a select job's
    /// paths, or the key fields, the window bounds, the aggregates,
    /// `partial` and `emit_time`.
    pub fn result_fields(&self) -> Vec<String> {
        if !self.select.is_empty() {
            return self.select.clone();
        }
        let mut fields = self.key.clone();
        fields.extend(["window_start".into(), "window_end".into()]);
        fields.extend(self.aggregates.iter().map(|a| a.name.clone()));
        fields.extend(["partial".into(), "emit_time".into()]);
        fields
    }
}

/// A parse error with the exact field path (serde_path_to_error's), the
/// message without serde_yaml's own, shorter path, and the position.
fn yaml_error(mut path: String, err: serde_yaml::Error) -> SpecError {
    let mut message = err.to_string();
    if let Some((prefix, rest)) = message.split_once(": ") {
        if !prefix.contains(' ') && path.starts_with(prefix) {
            message = rest.to_string();
        }
    }
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // An unknown field is a problem of the object that holds it.
    if message.starts_with("unknown field") {
        path = path
            .rsplit_once('.')
            .map_or(String::new(), |(parent, _)| parent.to_string());
    }
    if let Some(loc) = err.location() {
        message = format!("{message} (line {}, column {})", loc.line(), loc.column());
    }
    SpecError::single(path, message)
}

impl SideOutputsSpec {
    /// Each side output with its name in the spec.
    pub fn named(&self) -> [(&'static str, &Option<SinkSpec>); 3] {
        [
            ("late", &self.late),
            ("malformed", &self.malformed),
            ("unmatched", &self.unmatched),
        ]
    }
}

impl SinkSpec {
    pub fn discard() -> Self {
        SinkSpec {
            discard: Some(DiscardSinkSpec {}),
            ..Default::default()
        }
    }
}

impl PostgresSinkSpec {
    /// The result fields the sink writes, each to the column of the same
    /// name: `columns`, or every result field but `emit_time` (a select
    /// job's all).
    pub fn fields(&self, job: &JobSpec) -> Vec<String> {
        if self.columns.is_empty() {
            let mut fields = job.result_fields();
            if job.select.is_empty() {
                fields.retain(|f| f != "emit_time");
            }
            fields
        } else {
            self.columns.clone()
        }
    }
}

impl KafkaSourceSpec {
    /// The job's consumer group: `groupId`, or `streamjob-<job name>`.
    pub fn group(&self, job: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("streamjob-{job}"))
    }
}

impl KafkaSinkSpec {
    /// `transaction.timeout.ms` when the properties do not set it: Kafka's
    /// default upper bound on brokers (`transaction.max.timeout.ms`).
    pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 900_000;

    /// The `transaction.timeout.ms` the producer will use.
    pub fn transaction_timeout_ms(&self) -> Result<u64, String> {
        match self.properties.get("transaction.timeout.ms") {
            None => Ok(Self::DEFAULT_TRANSACTION_TIMEOUT_MS),
            Some(v) => v
                .parse()
                .map_err(|_| format!("must be a number of milliseconds, got {v:?}")),
        }
    }

    pub fn transactional_id_prefix(&self, job: &str) -> String {
        self.transactional_id_prefix
            .clone()
            .unwrap_or_else(|| format!("streamjob-{job}"))
    }
}

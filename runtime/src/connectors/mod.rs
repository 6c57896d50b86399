//! Sources and sinks, a folder (or file) per connector with its source and
//! sink side by side. A source is cut into splits, one per worker; each split
//! reads some partitions and turns their records into events. A sink is a
//! plain writer (`plain`: at least once) or, for exactly-once results, a
//! [`TwoPhaseCommitter`] (file, Kafka, PostgreSQL).

mod file;
mod format;
mod generator;
mod kafka;
mod plain;
mod postgres;
mod raw;
mod two_phase;

use std::ops::Range;
use std::path::Path;

pub use file::{FileSplit, TransactionalFile};
pub use format::{format_late, format_malformed, format_result, truncated, OutputFormat};
pub use generator::GeneratorSplit;
pub use kafka::{
    partitions as kafka_partitions, KafkaSplit, KafkaWriter, TransactionalKafka, READER_TUNING,
    TARGETS,
};
pub use plain::SinkWriter;
pub use postgres::{PostgresSink, PostgresTable};
pub use raw::{LineRun, PartItems, RawBatch, RawEntry, Unlocated};
pub use two_phase::TwoPhaseCommitter;

use crate::record::{Event, RecordError};
use crate::spec::{FileSourceSpec, JobSpec, KafkaSourceSpec, Source};

/// A record that could not be read, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub error: RecordError,
    pub raw: String,
    /// e.g. `visits.jsonl:12`
    pub location: String,
}

/// What a split hands the worker.
#[derive(Debug)]
pub enum SourceItem {
    Record {
        partition: usize,
        event: Event,
    },
    Malformed(Malformed),
    /// The partition has no more records.
    PartitionEnd(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Items were added (or may be added by the next poll at once).
    Ready,
    /// Nothing to read right now.
    Pending,
    /// Every partition of the split has ended.
    Ended,
}

/// Turns a job's record as read into an event (parsed, and enriched). A
/// split only reads; the worker that polls it decodes, with a decoder that
/// may hold state. (A lookup table's changelog decodes its records into
/// changes of the table instead: `RawBatch::decode_records_into`.)
pub trait Decode {
    /// `value` is the record's text (None: a Kafka record without a value,
    /// a tombstone), `key` its Kafka key. The outer error fails the job
    /// (state that cannot be read); the inner one is the record's fault.
    fn decode(
        &mut self,
        value: Option<&str>,
        key: Option<&[u8]>,
    ) -> std::io::Result<Result<Event, RecordError>>;
}

/// One worker's share of a source.
pub trait SourceSplit: Send {
    /// Number of partitions in this split (each has its own watermark).
    fn partitions(&self) -> usize;
    /// Appends up to `max` records as read (and the ends of partitions).
    fn poll(&mut self, out: &mut RawBatch, max: usize) -> std::io::Result<Poll>;
    /// Where a record is, for people: `visits.jsonl:12`, `events[0]@41`.
    /// `at` is what the split gave the record in the batch.
    fn location(&self, partition: usize, at: u64) -> String;
    /// Names of the partitions, stable across runs, in partition order.
    fn partition_ids(&self) -> Vec<String>;
    /// Where each partition is: (offset to resume at, records read).
    fn positions(&self) -> Vec<(u64, u64)>;
    /// Resumes a partition where a snapshot left it.
    fn seek(&mut self, partition: usize, offset: u64, records: u64) -> std::io::Result<()>;
    /// The Kafka partitions read so far as (topic, partition, next offset):
    /// the offsets a transactional Kafka sink commits. Empty for other
    /// sources.
    fn kafka_offsets(&self) -> Vec<(String, i32, i64)> {
        Vec::new()
    }
    /// How long the polls since the last call waited for records to
    /// arrive: idle time, however the poll ended.
    fn take_waited(&mut self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Records in each partition not read yet (Kafka consumer lag), where
    /// known; in partition order.
    fn lags(&self) -> Vec<Option<u64>> {
        vec![None; self.partitions()]
    }
}

/// Cuts the job's source into `parallelism` splits and opens those of
/// `workers` (this process's: all of them, or a pod's share), in order.
/// Relative file paths are resolved against `base_dir` (the job file's
/// folder).
pub fn create_splits(
    spec: &JobSpec,
    base_dir: &Path,
    workers: Range<usize>,
) -> std::io::Result<Vec<Box<dyn SourceSplit>>> {
    let parallelism = spec.parallelism as usize;
    let source = spec
        .source
        .choice()
        .map_err(|e| std::io::Error::other(e.at("source")))?;
    match source {
        Source::File(file) => file_splits(file, base_dir, parallelism, workers, "source.file"),
        Source::Kafka(k) => kafka_splits(k, &spec.name, parallelism, workers),
        Source::Generator(gen) => Ok(workers
            .map(|i| {
                Box::new(GeneratorSplit::new(
                    gen,
                    spec.aggregates.len(),
                    i,
                    parallelism,
                )) as Box<dyn SourceSplit>
            })
            .collect()),
    }
}

/// The files, dealt out round-robin to `parallelism` splits, of which those
/// of `workers` are opened; `field` names the spec field in the error for a
/// missing file (any file of the job, not only the opened ones).
pub fn file_splits(
    file: &FileSourceSpec,
    base_dir: &Path,
    parallelism: usize,
    workers: Range<usize>,
    field: &str,
) -> std::io::Result<Vec<Box<dyn SourceSplit>>> {
    let paths: Vec<String> = file
        .path
        .iter()
        .cloned()
        .chain(file.paths.iter().cloned())
        .collect();
    let mut assigned: Vec<Vec<(String, std::path::PathBuf)>> = vec![Vec::new(); parallelism];
    for (i, p) in paths.iter().enumerate() {
        let path = base_dir.join(p);
        if !path.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{field}: no file at {}", path.display()),
            ));
        }
        assigned[i % parallelism].push((p.clone(), path));
    }
    assigned
        .drain(workers)
        .map(|files| FileSplit::open(files).map(|s| Box::new(s) as Box<dyn SourceSplit>))
        .collect()
}

/// The topics' partitions, dealt out round-robin to `parallelism` splits, of
/// which those of `workers` get a consumer.
pub fn kafka_splits(
    spec: &KafkaSourceSpec,
    job: &str,
    parallelism: usize,
    workers: Range<usize>,
) -> std::io::Result<Vec<Box<dyn SourceSplit>>> {
    let mut assigned: Vec<Vec<(String, i32)>> = vec![Vec::new(); parallelism];
    for (i, tp) in kafka::partitions(spec, job, "source.kafka.topics")?
        .into_iter()
        .enumerate()
    {
        assigned[i % parallelism].push(tp);
    }
    assigned
        .drain(workers)
        .map(|tps| KafkaSplit::new(spec, job, tps).map(|s| Box::new(s) as Box<dyn SourceSplit>))
        .collect()
}

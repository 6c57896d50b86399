//! Kafka as a sink: JSON records keyed by the record's key.
//!
//! [`KafkaWriter`] is the plain producer (idempotent; flushed at every
//! barrier, so at-least-once). [`TransactionalKafka`] is the exactly-once
//! sink (docs/architecture.md#two-phase-sinks): one Kafka transaction per checkpoint, committed as the
//! checkpoint's commit point, carrying the source offsets and a marker with
//! the checkpoint id, so that a restore can tell which checkpoint the
//! committed output reflects.
//!
//! The marker is an offset the job's consumer group commits for partition 0
//! of the output topic: its value is the checkpoint id (and its metadata
//! says `streamjob-checkpoint=<id>` for people). The id is kept in the
//! offset, not only in the metadata, because every Kafka-compatible broker
//! stores offsets, and not all store metadata sent in a transaction.
//!
//! One producer serves the whole job (all output goes through the sink
//! thread), so one transaction holds a checkpoint's output. A worker that
//! passed barrier `n` already emits output that belongs to checkpoint `n+1`;
//! that output is held in memory until `n` commits and the next transaction
//! begins.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{client_config, kafka_error};
use crate::connectors::TwoPhaseCommitter;
use crate::spec::KafkaSinkSpec;

/// Which of the job's outputs a record is for: results, late, malformed,
/// unmatched.
pub const TARGETS: usize = 4;

/// Time allowed for one call to the transaction coordinator.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether Kafka says a newer producer with the same transactional id took
/// over: the broker's answer, or librdkafka's fatal error that follows it.
fn is_fencing(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{Fenced, InvalidProducerEpoch, ProducerFenced};
    matches!(code, Fenced | ProducerFenced | InvalidProducerEpoch)
}

/// The committed-offset metadata that names a checkpoint.
const CHECKPOINT_METADATA_PREFIX: &str = "streamjob-checkpoint=";

/// Remembers the first failed delivery, so that a flush can report it.
#[derive(Default)]
pub struct DeliveryErrors {
    first: Mutex<Option<String>>,
}

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.first.lock().expect("not poisoned");
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

fn producer_config(spec: &KafkaSinkSpec) -> ClientConfig {
    client_config(
        &spec.bootstrap_servers,
        &[("enable.idempotence", "true")],
        &spec.properties,
    )
}

/// A producer that writes each target's lines to its topic.
pub struct KafkaWriter {
    producer: ThreadedProducer<DeliveryErrors>,
    /// Topic per target (results, late, malformed); None: not Kafka.
    topics: [Option<String>; TARGETS],
}

impl KafkaWriter {
    /// A plain (non-transactional) writer of one topic, as target 0.
    pub fn plain(spec: &KafkaSinkSpec) -> std::io::Result<Self> {
        Self::create(
            producer_config(spec),
            [Some(spec.topic.clone()), None, None, None],
        )
    }

    fn create(config: ClientConfig, topics: [Option<String>; TARGETS]) -> std::io::Result<Self> {
        let producer = config
            .create_with_context(DeliveryErrors::default())
            .map_err(|e| kafka_error("sink: producer", e))?;
        Ok(KafkaWriter { producer, topics })
    }

    pub fn writes(&self, target: usize) -> bool {
        self.topics[target].is_some()
    }

    /// Produces the lines, keyed by `keys` when given (one per line).
    pub fn produce(&self, target: usize, lines: &[String], keys: &[String]) -> std::io::Result<()> {
        let topic = self.topics[target]
            .as_deref()
            .expect("only targets with a topic are produced");
        for (i, line) in lines.iter().enumerate() {
            let mut record = BaseRecord::<str, str>::to(topic).payload(line.as_str());
            if let Some(key) = keys.get(i) {
                record = record.key(key.as_str());
            }
            // A full local queue drains as the background thread delivers.
            while let Err((e, back)) = self.producer.send(record) {
                match e {
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                        std::thread::sleep(Duration::from_millis(5));
                        record = back;
                    }
                    e => return Err(kafka_error(&format!("sink: produce to {topic:?}"), e)),
                }
            }
        }
        Ok(())
    }

    /// Waits until everything sent is acknowledged; fails if anything was
    /// not delivered.
    pub fn flush(&self) -> std::io::Result<()> {
        self.producer
            .flush(TXN_CALL_TIMEOUT)
            .map_err(|e| kafka_error("sink: flush", e))?;
        self.delivery_error()
    }

    fn delivery_error(&self) -> std::io::Result<()> {
        let failed = self.producer.context().first.lock().expect("not poisoned");
        match failed.as_deref() {
            Some(e) => Err(std::io::Error::other(format!(
                "kafka sink: a record was not delivered: {e}"
            ))),
            None => Ok(()),
        }
    }
}

/// Output of a worker past its barrier: (target, lines, keys).
type HeldBatch = (usize, Vec<String>, Vec<String>);

/// One transactional producer: the exactly-once Kafka sink.
pub struct TransactionalKafka {
    writer: KafkaWriter,
    transactional_id: String,
    group: String,
    consumer: BaseConsumer,
    /// Per worker: the checkpoint whose barrier it passed, while that
    /// checkpoint has not committed; its later output waits in `held`.
    synced: Vec<Option<u64>>,
    held: Vec<Vec<HeldBatch>>,
    /// Source offsets at the barrier, per topic partition: committed with
    /// the transaction.
    offsets: BTreeMap<(String, i32), i64>,
}

/// The consumer that reads (and whose group receives) committed offsets.
/// It gets the sink's properties too: on a secured cluster it needs the
/// same credentials.
fn group_consumer(spec: &KafkaSinkSpec, group: &str) -> std::io::Result<BaseConsumer> {
    client_config(
        &spec.bootstrap_servers,
        &[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            // Offsets of a transaction still being committed are not read.
            ("isolation.level", "read_committed"),
        ],
        &spec.properties,
    )
    .create()
    .map_err(|e| kafka_error("sink: consumer for the job's group", e))
}

impl TransactionalKafka {
    /// Opens the producer with transactional id `<prefix>-0` and calls
    /// `init_transactions`: any transaction a crashed run left open with
    /// that id is aborted (or finished, if its commit was under way), and
    /// the crashed producer is fenced. `group` is the job's consumer group,
    /// which receives the offsets.
    pub fn open(
        spec: &KafkaSinkSpec,
        job: &str,
        group: &str,
        side_topics: [Option<String>; TARGETS - 1],
        workers: usize,
    ) -> std::io::Result<Self> {
        let transactional_id = format!("{}-0", spec.transactional_id_prefix(job));
        let mut config = producer_config(spec);
        config.set("transactional.id", &transactional_id).set(
            "transaction.timeout.ms",
            spec.transaction_timeout_ms()
                .map_err(std::io::Error::other)?
                .to_string(),
        );
        let [late, malformed, unmatched] = side_topics;
        let writer = KafkaWriter::create(
            config,
            [Some(spec.topic.clone()), late, malformed, unmatched],
        )?;
        writer
            .producer
            .init_transactions(TXN_CALL_TIMEOUT)
            .map_err(|e| kafka_error("sink: init_transactions", e))?;
        writer
            .producer
            .begin_transaction()
            .map_err(|e| kafka_error("sink: begin_transaction", e))?;
        Ok(TransactionalKafka {
            writer,
            transactional_id,
            group: group.to_string(),
            consumer: group_consumer(spec, group)?,
            synced: vec![None; workers],
            held: vec![Vec::new(); workers],
            offsets: BTreeMap::new(),
        })
    }

    /// Where the checkpoint marker is committed: the result topic's first
    /// partition. Restore reads the checkpoint id from there.
    fn marker(&self) -> (&str, i32) {
        let results = self.writer.topics[0].as_deref();
        (results.expect("a Kafka sink writes results"), 0)
    }

    fn release(&mut self, worker: usize) -> std::io::Result<()> {
        for (target, lines, keys) in std::mem::take(&mut self.held[worker]) {
            self.writer.produce(target, &lines, &keys)?;
        }
        Ok(())
    }

    /// A failed transaction cannot be committed any more: abort it when
    /// Kafka asks for that, so the job restarts from its last checkpoint
    /// with nothing half-written. A fatal error (this producer was fenced by
    /// a newer run) leaves nothing to abort: the newer run did.
    fn abort_after(&self, step: &str, e: KafkaError) -> std::io::Error {
        let KafkaError::Transaction(txn) = &e else {
            return kafka_error(&format!("sink: {step}"), e);
        };
        let fatal = self.writer.producer.client().fatal_error();
        if is_fencing(txn.code()) || fatal.as_ref().is_some_and(|(code, _)| is_fencing(*code)) {
            // A newer run took over: it aborted what this one had open, so
            // there is nothing left to abort. Which request the broker
            // refuses first (adding the offsets' partitions, or the commit)
            // is a race, so the error says what happened, not which step.
            return std::io::Error::other(format!(
                "kafka sink: fenced: a newer run of this job took over its transactional id \
                 {:?}; this run's open transaction was aborted and it must stop ({step}: {e})",
                self.transactional_id
            ));
        }
        if txn.txn_requires_abort() && !txn.is_fatal() && fatal.is_none() {
            // Best effort: the next run's init_transactions aborts it too.
            let _ = self
                .writer
                .producer
                .abort_transaction(Duration::from_secs(5));
        }
        kafka_error(&format!("sink: {step}"), e)
    }
}

/// The commit record is the marker: an offset the job's group commits in
/// the transaction, whose value is the checkpoint id.
impl TwoPhaseCommitter for TransactionalKafka {
    /// The marker's committed offset. `open` waited for a crashed run's
    /// commit to finish, so this is final.
    fn last_committed(&mut self) -> std::io::Result<Option<u64>> {
        let mut tpl = TopicPartitionList::new();
        let (topic, partition) = self.marker();
        tpl.add_partition(topic, partition);
        let committed = self
            .consumer
            .committed_offsets(tpl, TXN_CALL_TIMEOUT)
            .map_err(|e| {
                kafka_error(
                    &format!("sink: committed offsets of group {:?}", self.group),
                    e,
                )
            })?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(id) => u64::try_from(id).ok(),
                _ => None,
            })
            .max())
    }

    /// Nothing to cut back: `open` already aborted what a crashed run left
    /// open, and what is committed in Kafka stays (a restore from before the
    /// last commit writes that output again).
    fn begin(&mut self, _restored: Option<u64>) -> std::io::Result<()> {
        Ok(())
    }

    /// Side outputs to Kafka join the results' transactions.
    fn takes(&self, target: usize) -> bool {
        self.writer.writes(target)
    }

    fn write(
        &mut self,
        worker: usize,
        target: usize,
        lines: Vec<String>,
        keys: Vec<String>,
    ) -> std::io::Result<()> {
        if self.synced[worker].is_some() {
            self.held[worker].push((target, lines, keys));
            return Ok(());
        }
        self.writer.produce(target, &lines, &keys)
    }

    /// What the worker emits from now on belongs to the next transaction;
    /// the offsets are committed with this one.
    fn pre_commit(
        &mut self,
        worker: usize,
        id: u64,
        offsets: Vec<(String, i32, i64)>,
    ) -> std::io::Result<()> {
        if self.synced[worker].is_some_and(|earlier| earlier < id) {
            // The earlier checkpoint was abandoned: what the worker emitted
            // after its barrier is before this one, so it is in this
            // transaction.
            self.release(worker)?;
        }
        self.synced[worker] = Some(id);
        for (topic, partition, offset) in offsets {
            self.offsets.insert((topic, partition), offset);
        }
        Ok(())
    }

    /// Commits checkpoint `id`'s transaction with the source offsets and the
    /// marker, then begins the next one with the output held back.
    fn commit(&mut self, id: u64) -> std::io::Result<()> {
        let metadata = format!("{CHECKPOINT_METADATA_PREFIX}{id}");
        // The source offsets and the marker (validation keeps the output
        // topic out of the sources, so they never collide).
        let mut entries = self.offsets.clone();
        let (topic, partition) = self.marker();
        entries.insert((topic.to_string(), partition), id as i64);
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in entries {
            let mut element = offsets.add_partition(&topic, partition);
            element
                .set_offset(Offset::Offset(offset))
                .map_err(|e| kafka_error("sink: offsets", e))?;
            element.set_metadata(&metadata);
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| std::io::Error::other("kafka sink: no consumer group metadata"))?;
        let producer = &self.writer.producer;
        producer
            .send_offsets_to_transaction(&offsets, &group, TXN_CALL_TIMEOUT)
            .map_err(|e| self.abort_after("send_offsets_to_transaction", e))?;
        crate::failpoint::fail_at("mid-commit", id);
        producer
            .commit_transaction(TXN_CALL_TIMEOUT)
            .map_err(|e| self.abort_after("commit_transaction", e))?;
        // (A record that was not delivered fails commit_transaction.)
        producer
            .begin_transaction()
            .map_err(|e| kafka_error("sink: begin_transaction", e))?;
        for worker in 0..self.synced.len() {
            if self.synced[worker].is_some_and(|s| s <= id) {
                self.synced[worker] = None;
                self.release(worker)?;
            }
        }
        Ok(())
    }

    fn workers(&self) -> usize {
        self.synced.len()
    }

    /// A stopped job's output since its last checkpoint is produced again
    /// from that checkpoint: abort it now rather than at the timeout.
    fn abort(&mut self) -> std::io::Result<()> {
        self.writer
            .producer
            .abort_transaction(TXN_CALL_TIMEOUT)
            .map_err(|e| kafka_error("sink: abort_transaction", e))
    }
}

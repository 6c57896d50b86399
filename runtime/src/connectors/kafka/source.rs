//! Kafka as a source: each worker's split is a set of topic partitions,
//! assigned explicitly (no consumer-group rebalancing: the job decides who
//! reads what), read with librdkafka's consumer. A partition's position is
//! its next offset, so a restored job resumes from the checkpoint's offsets,
//! not from the group's committed offsets or `earliest`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use super::{client_config, kafka_error};
use crate::connectors::{Poll, RawBatch, SourceSplit};
use crate::spec::{KafkaSourceSpec, StartFrom};

/// Settings of the job's readers. Partitions are assigned and offsets live
/// in checkpoints, so their group is never joined nor committed to; it is
/// kept apart from the job's group, which only the exactly-once Kafka sink
/// commits to.
fn consumer_config(spec: &KafkaSourceSpec, job: &str) -> ClientConfig {
    let group = format!("{}.readers", spec.group(job));
    let settings = [
        ("group.id", group.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("isolation.level", "read_committed"),
        ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
    ];
    let settings: Vec<_> = settings
        .into_iter()
        .chain(READER_TUNING.iter().copied())
        .collect();
    client_config(&spec.bootstrap_servers, &settings, &spec.properties)
}

/// Settings for throughput that every reader of the job has, unless the
/// job's properties set them. `fetch.queue.backoff.ms` is how long
/// librdkafka waits before fetching more for a partition once its queue of
/// fetched records is full. Its default, 1 s, idles a reader that empties
/// the queue faster than that, as the job does: one reader of librdkafka's
/// in-process broker got 150k records/s with it, 680k with 10 ms.
pub const READER_TUNING: &[(&str, &str)] = &[("fetch.queue.backoff.ms", "10")];

/// How often librdkafka reports partition end offsets (for consumer lag),
/// unless the job's properties set `statistics.interval.ms`.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// Keeps the end offset of each partition from librdkafka's statistics: the
/// last stable offset, as a `read_committed` reader can read up to it.
/// Consumer lag is that minus the next offset to read.
#[derive(Default)]
pub struct EndOffsets(Mutex<HashMap<String, HashMap<i32, i64>>>);

impl ClientContext for EndOffsets {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (name, topic) in statistics.topics {
            let topic_ends = ends.entry(name).or_default();
            for (id, partition) in topic.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue.
                if id >= 0 && partition.ls_offset >= 0 {
                    topic_ends.insert(id, partition.ls_offset);
                }
            }
        }
    }
}

impl ConsumerContext for EndOffsets {}

/// The topic partitions to read, in a stable order; `field` is the spec
/// path of the topics, for the error about a missing one.
pub fn partitions(
    spec: &KafkaSourceSpec,
    job: &str,
    field: &str,
) -> std::io::Result<Vec<(String, i32)>> {
    let consumer: BaseConsumer = consumer_config(spec, job)
        .create()
        .map_err(|e| kafka_error("client", e))?;
    let mut found = Vec::new();
    for topic in &spec.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| kafka_error(&format!("metadata of topic {topic:?}"), e))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{field}: topic {topic:?} does not exist on {}",
                        spec.bootstrap_servers
                    ),
                )
            })?;
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        found.extend(ids.into_iter().map(|p| (topic.clone(), p)));
    }
    Ok(found)
}

struct Partition {
    topic: String,
    id: i32,
    /// Next offset to read (None: where `startFrom` says).
    next: Option<i64>,
    records: u64,
    /// Bounded reading stops here (the end offset when the job started).
    end: Option<i64>,
    ended: bool,
}

pub struct KafkaSplit {
    consumer: BaseConsumer<EndOffsets>,
    partitions: Vec<Partition>,
    /// Topic → partition → index in `partitions` (looked up by `&str`, so
    /// no allocation per message).
    index: HashMap<String, HashMap<i32, usize>>,
    /// How long a poll waits for a first record.
    wait: Duration,
    /// Time spent waiting for records since `take_waited`.
    waited: Duration,
    start_from: StartFrom,
    bounded: bool,
    assigned: bool,
}

impl KafkaSplit {
    pub fn new(
        spec: &KafkaSourceSpec,
        job: &str,
        assigned: Vec<(String, i32)>,
    ) -> std::io::Result<Self> {
        let consumer: BaseConsumer<EndOffsets> = consumer_config(spec, job)
            .create_with_context(EndOffsets::default())
            .map_err(|e| kafka_error("consumer", e))?;
        let mut index: HashMap<String, HashMap<i32, usize>> = HashMap::new();
        for (i, (topic, partition)) in assigned.iter().enumerate() {
            index
                .entry(topic.clone())
                .or_default()
                .insert(*partition, i);
        }
        Ok(KafkaSplit {
            consumer,
            partitions: assigned
                .into_iter()
                .map(|(topic, id)| Partition {
                    topic,
                    id,
                    next: None,
                    records: 0,
                    end: None,
                    ended: false,
                })
                .collect(),
            index,
            wait: Duration::from_millis(50),
            waited: Duration::ZERO,
            start_from: spec.start_from,
            bounded: spec.bounded,
            assigned: false,
        })
    }

    /// Assigns the partitions at their positions (restored, or `startFrom`),
    /// and for a bounded source notes where each one ends.
    fn assign(&mut self) -> std::io::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for p in &mut self.partitions {
            let offset = match (p.next, self.start_from) {
                (Some(o), _) => Offset::Offset(o),
                (None, StartFrom::Earliest) => Offset::Beginning,
                (None, StartFrom::Latest) => Offset::End,
            };
            tpl.add_partition_offset(&p.topic, p.id, offset)
                .map_err(|e| kafka_error("assign", e))?;
            if self.bounded {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&p.topic, p.id, Duration::from_secs(10))
                    .map_err(|e| kafka_error("end offsets", e))?;
                p.end = Some(high);
                let start = p.next.unwrap_or(match self.start_from {
                    StartFrom::Earliest => low,
                    StartFrom::Latest => high,
                });
                p.ended = start >= high;
            }
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("assign", e))?;
        self.assigned = true;
        Ok(())
    }
}

impl KafkaSplit {
    /// Polls return at once when there is nothing to read (a split polled
    /// between the reads of another source must not hold them up).
    pub fn without_waiting(mut self) -> Self {
        self.wait = Duration::ZERO;
        self
    }

    /// A bounded partition whose consumer position reached its end offset
    /// has ended, even if its last record was never delivered: in a topic
    /// written with transactions the last offsets are commit markers,
    /// which consumers skip.
    fn end_at_position(&mut self, out: &mut RawBatch) -> std::io::Result<()> {
        let positions = self
            .consumer
            .position()
            .map_err(|e| kafka_error("position", e))?;
        for (i, p) in self.partitions.iter_mut().enumerate() {
            if p.ended {
                continue;
            }
            let position = positions
                .find_partition(&p.topic, p.id)
                .and_then(|e| e.offset().to_raw());
            if let (Some(position), Some(end)) = (position, p.end) {
                if position >= end {
                    p.ended = true;
                    out.push_end(i);
                }
            }
        }
        Ok(())
    }
}

impl SourceSplit for KafkaSplit {
    fn partitions(&self) -> usize {
        self.partitions.len()
    }

    fn poll(&mut self, out: &mut RawBatch, max: usize) -> std::io::Result<Poll> {
        if !self.assigned {
            self.assign()?;
            for (i, p) in self.partitions.iter().enumerate() {
                if p.ended {
                    out.push_end(i);
                }
            }
        }
        if self.partitions.iter().all(|p| p.ended) {
            return Ok(Poll::Ended);
        }
        let mut got = 0;
        while got < max {
            // Wait a little for the first record only.
            let result = match got {
                0 => {
                    let waiting = std::time::Instant::now();
                    let result = self.consumer.poll(self.wait);
                    self.waited += waiting.elapsed();
                    result
                }
                _ => self.consumer.poll(Duration::ZERO),
            };
            let Some(result) = result else {
                break;
            };
            let message = result.map_err(|e| kafka_error("poll", e))?;
            let Some(&i) = self
                .index
                .get(message.topic())
                .and_then(|partitions| partitions.get(&message.partition()))
            else {
                continue;
            };
            let p = &mut self.partitions[i];
            if p.ended {
                continue;
            }
            p.next = Some(message.offset() + 1);
            p.records += 1;
            got += 1;
            out.push_record(i, message.payload(), message.key(), message.offset() as u64);
            if p.end.is_some_and(|end| message.offset() + 1 >= end) {
                p.ended = true;
                out.push_end(i);
            }
        }
        if got == 0 && self.bounded {
            self.end_at_position(out)?;
        }
        Ok(if got > 0 { Poll::Ready } else { Poll::Pending })
    }

    fn location(&self, partition: usize, offset: u64) -> String {
        let p = &self.partitions[partition];
        format!("{}[{}]@{offset}", p.topic, p.id)
    }

    fn partition_ids(&self) -> Vec<String> {
        self.partitions
            .iter()
            .map(|p| format!("kafka:{}:{}", p.topic, p.id))
            .collect()
    }

    fn positions(&self) -> Vec<(u64, u64)> {
        self.partitions
            .iter()
            // u64::MAX: nothing read yet (resume where `startFrom` says).
            .map(|p| (p.next.map_or(u64::MAX, |o| o as u64), p.records))
            .collect()
    }

    fn take_waited(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }

    fn lags(&self) -> Vec<Option<u64>> {
        let ends = self
            .consumer
            .context()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.partitions
            .iter()
            .map(|p| {
                let end = *ends.get(p.topic.as_str())?.get(&p.id)?;
                // Nothing read yet: all of it is behind (from `startFrom`).
                Some((end - p.next.unwrap_or(0)).max(0) as u64)
            })
            .collect()
    }

    fn kafka_offsets(&self) -> Vec<(String, i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|p| Some((p.topic.clone(), p.id, p.next?)))
            .collect()
    }

    fn seek(&mut self, partition: usize, offset: u64, records: u64) -> std::io::Result<()> {
        let p = &mut self.partitions[partition];
        // u64::MAX encodes "nothing read yet": start where startFrom says.
        p.next = (offset != u64::MAX).then_some(offset as i64);
        p.records = records;
        self.assigned = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_tuned_unless_the_job_says_otherwise() {
        let mut spec = KafkaSourceSpec {
            bootstrap_servers: "127.0.0.1:9092".into(),
            ..Default::default()
        };
        let config = consumer_config(&spec, "job");
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(config.get("isolation.level"), Some("read_committed"));
        spec.properties
            .insert("fetch.queue.backoff.ms".into(), "500".into());
        let config = consumer_config(&spec, "job");
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("500"));
    }
}

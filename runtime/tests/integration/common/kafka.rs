//! Kafka helpers for the tests: topics, input records with known windows,
//! and reading a topic back as a `read_committed` consumer.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::Windows;

/// Creates topics (a topic that exists already is fine).
pub fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap();
    for r in results {
        if let Err((topic, e)) = r {
            assert_eq!(
                e,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "create topic {topic}"
            );
        }
    }
}

/// Produces `records` records `{"k", "t", "a"}` to `topic` (partition
/// `i % partitions`, times in order within each partition). Returns the
/// expected (count, sum) per 1 s window.
pub fn produce_events(bootstrap: &str, topic: &str, partitions: i32, records: u64) -> Windows {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut expected = Windows::new();
    for i in 0..records {
        let key = format!("k{}", i % 7);
        let ts = i as i64 * 3;
        let amount = (i % 11) as i64;
        let payload = format!(r#"{{"k": "{key}", "t": {ts}, "a": {amount}}}"#);
        loop {
            match producer.send(
                BaseRecord::<(), String>::to(topic)
                    .partition((i % partitions as u64) as i32)
                    .payload(&payload),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        let e = expected
            .entry((key, ts.div_euclid(1000) * 1000))
            .or_default();
        e.0 += 1;
        e.1 += amount;
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    expected
}

/// Every record of `topic` visible to a `read_committed` consumer, as
/// (key, payload), partition by partition: read until every partition
/// reports its end.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<(Option<String>, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut remaining: std::collections::BTreeSet<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &remaining {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
        }
    }
    assert!(remaining.is_empty(), "timed out reading {topic}");
    out
}

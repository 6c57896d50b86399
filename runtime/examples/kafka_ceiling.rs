//! How fast one reader takes records from librdkafka's in-process mock
//! broker, under each consumer setting that could matter: the measurement
//! behind the job's reader tuning (`READER_TUNING` in
//! `connectors/kafka/source.rs`).
//!
//! Produces N records of the Kafka benchmark's shape (`{"key","ts"}`, 40,000
//! a partition), then reads them all once per setting, two ways: one
//! `poll` a record (what rust-rdkafka offers, and what the job does), and
//! librdkafka's `rd_kafka_consume_batch_queue`, 1,024 at a time, through
//! the raw bindings (for comparison only: rust-rdkafka has no safe batch
//! call).
//!
//! Usage: cargo run --release -p streamjob-runtime --example kafka_ceiling [N, default 2000000]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const SETTINGS: &[(&str, &[(&str, &str)])] = &[
    ("librdkafka's defaults", &[]),
    (
        "fetch.queue.backoff.ms=10",
        &[("fetch.queue.backoff.ms", "10")],
    ),
    (
        "fetch.queue.backoff.ms=0",
        &[("fetch.queue.backoff.ms", "0")],
    ),
    (
        "queued.min.messages=1000000",
        &[("queued.min.messages", "1000000")],
    ),
    ("fetch.wait.max.ms=10", &[("fetch.wait.max.ms", "10")]),
];

fn main() {
    let records: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N is a number of records"))
        .unwrap_or(2_000_000);
    let partitions = records.div_ceil(40_000) as i32;
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("events", partitions, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, records, partitions);
    for (name, settings) in SETTINGS {
        let rate = read(&bootstrap, settings, partitions, records, poll_one);
        println!("one poll a record, {name}: {rate:.0} records/s");
    }
    for (name, settings) in SETTINGS {
        let rate = read(&bootstrap, settings, partitions, records, poll_batch);
        println!("batches of 1024,   {name}: {rate:.0} records/s");
    }
}

fn produce(bootstrap: &str, records: u64, partitions: i32) {
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for i in 0..records {
        let payload = format!(
            r#"{{"key":"k{}","ts":{}}}"#,
            i % 10_000,
            1_735_689_600_000 + i / 10
        );
        let mut record = BaseRecord::<(), str>::to("events")
            .payload(&payload)
            .partition((i % partitions as u64) as i32);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(300)).unwrap();
}

/// Reads every record with a new consumer set as the job's readers are,
/// plus `settings`; returns records per second.
fn read(
    bootstrap: &str,
    settings: &[(&str, &str)],
    partitions: i32,
    records: u64,
    take: fn(&BaseConsumer) -> u64,
) -> f64 {
    let mut config = rdkafka::config::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ceiling")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset("events", p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let started = Instant::now();
    let mut read = 0;
    while read < records {
        read += take(&consumer);
        assert!(started.elapsed() < Duration::from_secs(300), "too slow");
    }
    records as f64 / started.elapsed().as_secs_f64()
}

fn poll_one(consumer: &BaseConsumer) -> u64 {
    match consumer.poll(Duration::from_millis(100)) {
        Some(message) => {
            message.unwrap();
            1
        }
        None => 0,
    }
}

fn poll_batch(consumer: &BaseConsumer) -> u64 {
    use rdkafka::bindings as rd;
    let mut messages = [std::ptr::null_mut(); 1024];
    // SAFETY: the queue handle is the consumer's own and released here;
    // each message returned is read, then destroyed once.
    unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
        let got = rd::rd_kafka_consume_batch_queue(queue, 100, messages.as_mut_ptr(), 1024);
        let mut read = 0;
        for &message in &messages[..got.max(0) as usize] {
            if (*message).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                read += 1;
            }
            rd::rd_kafka_message_destroy(message);
        }
        rd::rd_kafka_queue_destroy(queue);
        read
    }
}

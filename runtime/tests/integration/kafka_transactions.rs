//! The exactly-once Kafka sink's protocol against nisshi, a broker that
//! commits and aborts transactions, fences producers and stores offsets sent
//! in a transaction (librdkafka's mock cluster does neither of the last
//! two). nisshi, like the mock, shows aborted records to `read_committed`
//! readers, so these tests check the protocol's decisions (what is
//! committed, which checkpoint a restore starts from, who is fenced), not
//! the absence of aborted records in the output.
//!
//! Not here yet: the restore decision at each crash point of a whole job.
//! On nisshi 0.7.0-pre.2 a running job's transactional offset commits are
//! sometimes not applied (the marker stays at an older checkpoint although
//! the commit succeeded), so that test is not reliable there; the same
//! decision is tested with the file sink's commit log (checkpoints.rs).

use crate::common;

use common::kafka::create_topics;
use common::nisshi::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};
use std::time::Duration;
use streamjob_runtime::connectors::{TransactionalKafka, TwoPhaseCommitter};
use streamjob_runtime::spec::KafkaSinkSpec;
use streamjob_runtime::{run, JobSpec};

/// The committed offset (and metadata, which nisshi does not keep) of
/// `topic`/`partition` in `group`.
fn committed(bootstrap: &str, group: &str, topic: &str, partition: i32) -> (i64, String) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = consumer
        .committed_offsets(tpl, std::time::Duration::from_secs(30))
        .unwrap();
    let e = &got.elements()[0];
    (e.offset().to_raw().unwrap_or(-1), e.metadata().to_string())
}

fn sink_spec(bootstrap: &str) -> KafkaSinkSpec {
    JobSpec::from_yaml(&format!(
        "name: t\nsource: {{file: {{path: x}}}}\neventTime: {{field: t}}\nkey: k\n\
         window: {{tumbling: {{size: 1s}}}}\naggregates: [{{name: n, function: count}}]\n\
         sink: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: out}}}}\n"
    ))
    .unwrap()
    .sink
    .kafka
    .unwrap()
}

/// A commit carries the source offsets and the checkpoint id (the marker); a second
/// producer with the same transactional id aborts the first one's open
/// transaction and fences it: its next commit fails.
#[test]
fn commits_carry_offsets_and_a_zombie_is_fenced() {
    let broker = Broker::start();
    let b = &broker.bootstrap;
    create_topics(b, &[("out", 1), ("events", 1)]);
    let spec = sink_spec(b);
    let lines = |s: &str| vec![s.to_string()];

    let mut first = TransactionalKafka::open(&spec, "job", "g", [None, None, None], 1).unwrap();
    first.write(0, 0, lines("a"), vec![]).unwrap();
    first
        .pre_commit(0, 7, vec![("events".into(), 0, 1234)])
        .unwrap();
    first.commit(7).unwrap();
    assert_eq!(committed(b, "g", "events", 0).0, 1234);
    assert_eq!(committed(b, "g", "out", 0).0, 7);
    assert_eq!(first.last_committed().unwrap(), Some(7));
    // The next transaction of the same producer.
    first.write(0, 0, lines("b"), vec![]).unwrap();
    first
        .pre_commit(0, 8, vec![("events".into(), 0, 1500)])
        .unwrap();
    first.commit(8).unwrap();
    assert_eq!(committed(b, "g", "events", 0).0, 1500);
    assert_eq!(committed(b, "g", "out", 0).0, 8);

    // Output of the next epoch, then a new run with the same id.
    first.write(0, 0, lines("c"), vec![]).unwrap();
    first
        .pre_commit(0, 9, vec![("events".into(), 0, 2000)])
        .unwrap();
    let started = std::time::Instant::now();
    let mut second = TransactionalKafka::open(&spec, "job", "g", [None, None, None], 1).unwrap();
    eprintln!(
        "init_transactions of the new run took {:?}",
        started.elapsed()
    );
    // The broker refuses either the offsets' partitions or the commit,
    // whichever reaches it first: the error is the same either way.
    let err = first.commit(9).unwrap_err().to_string();
    assert!(
        err.starts_with("kafka sink: fenced: a newer run of this job took over its transactional id \"streamjob-job-0\""),
        "{err}"
    );
    // Checkpoint 9 never committed: its offsets are not the group's.
    assert_eq!(second.last_committed().unwrap(), Some(8));
    assert_eq!(committed(b, "g", "events", 0).0, 1500);
}

/// A zombie that writes after a newer run took over is told so, whichever
/// of its requests the broker refuses first (here the output's partition is
/// added to its transaction only after the fence).
#[test]
fn a_zombie_writing_after_the_fence_is_told_it_was_fenced() {
    let broker = Broker::start();
    let b = &broker.bootstrap;
    create_topics(b, &[("out", 1), ("events", 1)]);
    let spec = sink_spec(b);
    let mut zombie = TransactionalKafka::open(&spec, "job", "g", [None, None, None], 1).unwrap();
    let mut successor = TransactionalKafka::open(&spec, "job", "g", [None, None, None], 1).unwrap();
    let err = zombie
        .write(0, 0, vec!["late".into()], vec![])
        .and_then(|()| zombie.pre_commit(0, 1, vec![("events".into(), 0, 10)]))
        .and_then(|()| zombie.commit(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("kafka sink: fenced: a newer run of this job took over"),
        "{err}"
    );
    assert_eq!(successor.last_committed().unwrap(), None);
    // No offset was ever committed for the group (librdkafka's "invalid").
    assert_eq!(committed(b, "g", "events", 0).0, -1001);
}

/// A bounded source over a topic written with transactions ends, although
/// its last offset is a commit marker no consumer ever receives.
#[test]
fn bounded_reading_of_a_transactional_topic_ends() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let broker = Broker::start();
    let bootstrap = broker.bootstrap.clone();
    create_topics(&bootstrap, &[("events", 1)]);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "writer")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(10)).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..100 {
        let payload = format!(r#"{{"k": "k{}", "t": {}, "a": 1}}"#, i % 3, i * 10);
        producer
            .send(BaseRecord::<(), String>::to("events").payload(&payload))
            .unwrap();
    }
    producer
        .commit_transaction(Duration::from_secs(10))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = JobSpec::from_yaml(&bounded_job(&bootstrap)).unwrap();
    let opts = common::opts(dir.path());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            run(&spec, &opts)
                .map(|s| s.records_in)
                .map_err(|e| e.to_string()),
        );
    });
    let records = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the bounded job never ended");
    assert_eq!(records, Ok(100));
}

fn bounded_job(bootstrap: &str) -> String {
    format!(
        "name: kb\nsource: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [events], bounded: true}}}}\n\
         eventTime: {{field: t}}\nkey: k\nwindow: {{tumbling: {{size: 1s}}}}\n\
         aggregates: [{{name: n, function: count}}]\nsink: {{discard: {{}}}}\n"
    )
}

//! The Kafka sink on librdkafka's in-process mock cluster: exact windows
//! through Kafka in and out, keyed records, side outputs in the same
//! transactions, and the checks on the transaction timeout.
//!
//! The mock cluster accepts the whole transactional API but shows aborted
//! records to `read_committed` readers and neither stores transactional
//! offsets nor fences; those properties are tested against nisshi
//! (`kafka_transactions.rs`).

use crate::common;

use common::check_window_lines;
use common::kafka::{produce_events, read_topic};
use common::Windows;
use rdkafka::mocking::MockCluster;
use streamjob_runtime::{run, JobSpec, RunSummary};

fn job_yaml(bootstrap: &str, parallelism: u32, checkpoints: &str) -> String {
    format!(
        "name: ks\nparallelism: {parallelism}\n\
         source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [events], bounded: true}}}}\n\
         eventTime: {{field: t}}\nkey: k\nwindow: {{tumbling: {{size: 1s}}}}\n\
         aggregates: [{{name: n, function: count}}, {{name: s, function: sum, field: a}}]\n\
         sink: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: out}}}}\n{checkpoints}"
    )
}

fn run_job(yaml: &str) -> RunSummary {
    let dir = tempfile::tempdir().unwrap();
    let spec = JobSpec::from_yaml(yaml).unwrap();
    let opts = common::opts(dir.path());
    run(&spec, &opts).unwrap()
}

/// Results as payloads; checks each record's Kafka key is its `k` field.
fn results(bootstrap: &str, topic: &str) -> Vec<String> {
    read_topic(bootstrap, topic)
        .into_iter()
        .map(|(key, payload)| {
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(key.as_deref(), v["k"].as_str(), "record key of {payload}");
            payload
        })
        .collect()
}

type Cluster = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A mock cluster with `records` events on `events` (3 partitions) and an
/// empty `out`; returns it, its address and the expected windows.
fn cluster_with_events(out_partitions: i32, records: u64) -> (Cluster, String, Windows) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 3, 1).unwrap();
    cluster.create_topic("out", out_partitions, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let expected = produce_events(&bootstrap, "events", 3, records);
    (cluster, bootstrap, expected)
}

/// `out` holds every result of the run once, with the expected windows.
fn check_out(bootstrap: &str, summary: &RunSummary, expected: &Windows) {
    let lines = results(bootstrap, "out");
    assert_eq!(lines.len() as u64, summary.results);
    check_window_lines(&lines, expected);
}

#[test]
fn exactly_once_kafka_sink_writes_every_window_once() {
    let (_cluster, bootstrap, expected) = cluster_with_events(3, 30_000);
    let summary = run_job(&job_yaml(
        &bootstrap,
        2,
        "checkpoints: {interval: 20ms, storage: file://ckpt}\n",
    ));
    assert_eq!(summary.records_in, 30_000);
    assert!(summary.checkpoints >= 1, "no checkpoint committed");
    check_out(&bootstrap, &summary, &expected);
}

#[test]
fn kafka_sink_without_checkpoints_writes_every_window_once() {
    let (_cluster, bootstrap, expected) = cluster_with_events(2, 10_000);
    let summary = run_job(&job_yaml(&bootstrap, 1, ""));
    check_out(&bootstrap, &summary, &expected);
}

/// Late records go to a Kafka topic in the same transactions as results.
#[test]
fn late_side_output_to_kafka_is_in_the_transaction() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 1, 1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    cluster.create_topic("late", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    // k0 at 0, 1500 (closes [0,1s)), then 200: late.
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for (t, a) in [(0, 1), (1500, 2), (200, 3), (2100, 4)] {
        let payload = format!(r#"{{"k": "k0", "t": {t}, "a": {a}}}"#);
        producer
            .send(rdkafka::producer::BaseRecord::<(), String>::to("events").payload(&payload))
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(10)).unwrap();
    let yaml = job_yaml(
        &bootstrap,
        1,
        "checkpoints: {interval: 20ms, storage: file://ckpt}\n",
    ) + &format!(
        "sideOutputs: {{late: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: late}}}}}}\n"
    );
    let summary = run_job(&yaml);
    assert_eq!((summary.records_in, summary.late), (4, 1));
    let late = read_topic(&bootstrap, "late");
    assert_eq!(
        late,
        vec![(
            Some("k0".to_string()),
            r#"{"k": "k0", "t": 200, "a": 3}"#.to_string()
        )]
    );
    let finals: Vec<(String, i64, i64)> = results(&bootstrap, "out")
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            (
                v["window_start"].as_str().unwrap().to_string(),
                v["n"].as_i64().unwrap(),
                v["s"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        finals,
        vec![
            ("1970-01-01T00:00:00Z".to_string(), 1, 1),
            ("1970-01-01T00:00:01Z".to_string(), 1, 2),
            ("1970-01-01T00:00:02Z".to_string(), 1, 4),
        ]
    );
}

/// EndTxn answered with errors by the broker: transient ones (coordinator
/// loading, moved) are retried and the output is exact; one that cannot be
/// retried fails the job, and the checkpoint it was committing never gets
/// `_metadata`, so a restore starts before it.
#[test]
fn failing_end_txn_is_retried_or_fails_the_checkpoint() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let transient = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
    ];
    let fatal = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE];
    for (errors, retried) in [(&transient[..], true), (&fatal[..], false)] {
        let (cluster, bootstrap, expected) = cluster_with_events(3, 30_000);
        cluster.request_errors(RDKafkaApiKey::EndTxn, errors);
        let dir = tempfile::tempdir().unwrap();
        let spec = JobSpec::from_yaml(&job_yaml(
            &bootstrap,
            2,
            "checkpoints: {interval: 20ms, storage: file://ckpt}\n",
        ))
        .unwrap();
        let opts = common::opts(dir.path());
        let result = run(&spec, &opts);
        let completed = common::completed_checkpoints(&dir.path().join("ckpt/ks/checkpoints"));
        if retried {
            let summary = result.unwrap();
            assert!(summary.checkpoints >= 1);
            check_out(&bootstrap, &summary, &expected);
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("commit_transaction"), "{err}");
            assert_eq!(completed, 0, "the failed commit completed a checkpoint");
        }
    }
}

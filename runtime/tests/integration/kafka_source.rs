//! The Kafka source against librdkafka's in-process mock cluster (a real
//! Kafka protocol peer on 127.0.0.1): partitions spread over workers, exact
//! windows, and a `kill -9` after which the job resumes from the offsets in
//! its checkpoint, with exactly-once file output.

use crate::common;

use common::kafka::produce_events;
use common::{check_windows, Windows};

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use streamjob_runtime::{run, JobSpec};

const PARTITIONS: i32 = 3;

/// Creates topic `events` with 3 partitions and produces `records` to it.
fn produce(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    records: u64,
) -> Windows {
    cluster.create_topic("events", PARTITIONS, 1).unwrap();
    produce_events(&cluster.bootstrap_servers(), "events", PARTITIONS, records)
}

fn job_yaml(bootstrap: &str, parallelism: u32, checkpoints: bool) -> String {
    let mut yaml = format!(
        "name: kf\nparallelism: {parallelism}\n\
         source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [events], bounded: true}}}}\n\
         eventTime: {{field: t}}\nkey: k\nwindow: {{tumbling: {{size: 1s}}}}\n\
         aggregates: [{{name: n, function: count}}, {{name: s, function: sum, field: a}}]\n\
         sink: {{file: {{path: out.jsonl}}}}\n"
    );
    if checkpoints {
        yaml.push_str("checkpoints: {interval: 30ms, storage: file://ckpt}\n");
    }
    yaml
}

#[test]
fn kafka_partitions_spread_over_workers_give_exact_windows() {
    let cluster = MockCluster::new(1).unwrap();
    let expected = produce(&cluster, 30_000);
    let dir = tempfile::tempdir().unwrap();
    let spec = JobSpec::from_yaml(&job_yaml(&cluster.bootstrap_servers(), 2, false)).unwrap();
    let opts = common::opts(dir.path());
    let summary = run(&spec, &opts).unwrap();
    assert_eq!((summary.records_in, summary.late), (30_000, 0));
    check_windows(dir.path(), &expected);
}

#[test]
fn a_missing_topic_is_named() {
    let cluster = MockCluster::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = job_yaml(&cluster.bootstrap_servers(), 1, false).replace("[events]", "[nope]");
    let spec = JobSpec::from_yaml(&yaml).unwrap();
    let opts = common::opts(dir.path());
    let err = run(&spec, &opts).unwrap_err().to_string();
    assert!(err.contains("topic \"nope\" does not exist"), "{err}");
}

/// `kill -9` after a checkpoint; the restored run reads on from the offsets
/// in the checkpoint (not from the start), and the output is exact.
#[test]
fn kill_9_resumes_from_the_checkpointed_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    let expected = produce(&cluster, 300_000);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, job_yaml(&cluster.bootstrap_servers(), 2, true)).unwrap();
    let mut child = common::spawn_run(&job, &[], &[]);
    let checkpoints = dir.path().join("ckpt/kf/checkpoints");
    assert!(
        common::wait_until(Duration::from_secs(60), || common::completed_checkpoints(
            &checkpoints
        ) >= 2),
        "no checkpoint completed"
    );
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "killed before the end");

    let (ok, stderr) = common::run_to_end(&job, &["--from-latest-checkpoint"], &[]);
    assert!(ok, "{stderr}");
    let resumed = common::records_in(&stderr);
    assert!(
        resumed < 300_000,
        "resumed from the checkpoint's offsets, read {resumed}"
    );
    check_windows(dir.path(), &expected);
}

/// Consumer lag is the records in a partition not read yet: the end offset
/// librdkafka reports in its statistics minus the split's next offset.
#[test]
fn consumer_lag_is_what_is_not_read_yet() {
    use streamjob_runtime::connectors::{KafkaSplit, RawBatch, SourceItem, SourceSplit};
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 1, 1).unwrap();
    produce_events(&cluster.bootstrap_servers(), "events", 1, 1000);
    let yaml = job_yaml(&cluster.bootstrap_servers(), 1, false).replace(
        "bounded: true",
        "properties: {statistics.interval.ms: \"100\"}",
    );
    let spec = JobSpec::from_yaml(&yaml).unwrap();
    let kafka = spec.source.kafka.as_ref().unwrap();
    let mut parser = streamjob_runtime::record::RecordParser::new(&spec);
    let mut split = KafkaSplit::new(kafka, &spec.name, vec![("events".into(), 0)]).unwrap();
    let mut read = 0;
    let mut read_up_to = |split: &mut KafkaSplit, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while read < n {
            assert!(std::time::Instant::now() < deadline, "read {read} of {n}");
            let mut raw = RawBatch::default();
            let mut out = Vec::new();
            split.poll(&mut raw, n - read).unwrap();
            raw.decode_each(&mut parser, &*split, &mut out).unwrap();
            read += out
                .iter()
                .filter(|i| matches!(i, SourceItem::Record { .. }))
                .count();
        }
    };
    read_up_to(&mut split, 100);
    // Statistics come every 100 ms, and are taken in by the next polls.
    std::thread::sleep(Duration::from_millis(300));
    read_up_to(&mut split, 200);
    assert_eq!(split.lags(), vec![Some(800)]);
}

//! The PostgreSQL sink against a real PostgreSQL 15 server on 127.0.0.1:
//! the visit counter as rows, upserts, a table that does not fit
//! named column by column, a fresh start over committed rows refused, and
//! exactly-once rows across repeated `kill -9`s.

use crate::common;

use std::path::Path;

use common::postgres::PgServer;
use common::{kill_repeatedly, kill_test_records, opts, run_to_end, write_input, Kills};
use streamjob_runtime::{run, JobSpec};

type MockCluster =
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

const VISITS: &str = include_str!("../../../examples/visits.jsonl");

/// The visit counter writing to `sink` (with exactly-once
/// checkpoints when `checkpoints`).
fn visit_counter(dir: &Path, sink: &str, checkpoints: bool) -> JobSpec {
    std::fs::write(dir.join("visits.jsonl"), VISITS).unwrap();
    let mut yaml = format!(
        "name: visit-counter\nsource: {{file: {{path: visits.jsonl}}}}\n\
         eventTime: {{field: event_time}}\nwatermark: {{outOfOrderness: 5m}}\nkey: visit_id\n\
         window: {{tumbling: {{size: 15m}}}}\ntrigger: {{early: {{everyEventTime: 2m}}}}\n\
         aggregates: [{{name: visits, function: count}}]\nsink: {sink}\n"
    );
    if checkpoints {
        yaml.push_str("checkpoints: {interval: 1s, storage: file://ckpt}\n");
    }
    JobSpec::from_yaml(&yaml).unwrap()
}

fn run_error(spec: &JobSpec, dir: &Path) -> String {
    match run(spec, &opts(dir)) {
        Ok(_) => panic!("the run should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_visit_counter_writes_its_results_as_rows() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "{{postgres: {{url: \"{}\", table: visits_counter, createTable: true}}}}",
        pg.url()
    );
    let summary = run(&visit_counter(dir.path(), &sink, true), &opts(dir.path())).unwrap();
    assert_eq!(summary.results, 4);
    assert_eq!(
        pg.rows(
            "SELECT visit_id, to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), \
             to_char(window_end AT TIME ZONE 'UTC', 'HH24:MI'), visits::text, partial::text \
             FROM visits_counter ORDER BY visits_counter.visits, partial"
        ),
        [
            "1|10:00|10:15|8|true",
            "1|10:00|10:15|10|true",
            "1|10:00|10:15|12|false",
            "1|10:00|10:15|12|true",
        ]
    );
    // The created table's types, and the commit record.
    assert_eq!(
        pg.rows(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = 'visits_counter' ORDER BY ordinal_position"
        ),
        [
            "visit_id|text",
            "window_start|timestamp with time zone",
            "window_end|timestamp with time zone",
            "visits|bigint",
            "partial|boolean",
        ]
    );
    assert_eq!(
        pg.rows("SELECT job FROM streamjob_commits"),
        ["visit-counter"]
    );

    // Run again from scratch: the table holds this job's committed rows, so
    // the fresh start is refused, naming the way out.
    let error = run_error(&visit_counter(dir.path(), &sink, true), dir.path());
    assert!(
        error.contains("holds rows job visit-counter committed up to checkpoint")
            && error.contains("--from-latest-checkpoint"),
        "{error}"
    );
    assert_eq!(pg.rows("SELECT count(*)::text FROM visits_counter"), ["4"]);
}

/// examples/visit-counter-postgres.yaml, pointed at the test's server.
#[test]
fn the_postgres_example_runs() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("visits.jsonl"), VISITS).unwrap();
    let text = include_str!("../../../examples/visit-counter-postgres.yaml");
    let mut spec = JobSpec::from_yaml(text).unwrap();
    spec.sink.postgres.as_mut().unwrap().url = pg.url();
    run(&spec, &opts(dir.path())).unwrap();
    assert_eq!(
        pg.rows("SELECT visits::text FROM visits_counter WHERE NOT partial"),
        ["12"]
    );
}

#[test]
fn an_upsert_key_keeps_one_row_per_window() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "{{postgres: {{url: \"{}\", table: public.visit_windows, createTable: true, \
         columns: [visit_id, window_start, visits, partial], upsertKey: [visit_id, window_start]}}}}",
        pg.url()
    );
    for _ in 0..2 {
        // Twice, from scratch: upserts make the rows idempotent.
        let dir = tempfile::tempdir().unwrap();
        run(&visit_counter(dir.path(), &sink, true), &opts(dir.path())).unwrap();
    }
    drop(dir);
    assert_eq!(
        pg.rows("SELECT visit_id, visits::text, partial::text FROM visit_windows"),
        ["1|12|false"]
    );
}

#[test]
fn a_table_that_does_not_fit_is_named_column_by_column() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The error of the visit counter writing to `table`, made by `ddl`.
    let error_with = |table: &str, ddl: Option<&str>| {
        if let Some(ddl) = ddl {
            pg.client().batch_execute(ddl).unwrap();
        }
        let sink = format!("{{postgres: {{url: \"{}\", table: {table}}}}}", pg.url());
        run_error(&visit_counter(dir.path(), &sink, false), dir.path())
    };
    let error = error_with("missing", None);
    assert!(
        error.contains("sink.postgres.table: table missing does not exist: create it, or set createTable: true"),
        "{error}"
    );

    let error = error_with(
        "no_partial",
        Some(
            "CREATE TABLE no_partial (visit_id text, window_start timestamptz, \
             window_end timestamptz, visits bigint)",
        ),
    );
    assert!(
        error.contains(
            "table no_partial has no column \"partial\" (it has visit_id, window_start, \
             window_end, visits): add it, or leave partial out with sink.postgres.columns"
        ),
        "{error}"
    );

    let error = error_with(
        "int_start",
        Some(
            "CREATE TABLE int_start (visit_id text, window_start integer, \
             window_end timestamptz, visits bigint, partial boolean)",
        ),
    );
    assert!(
        error.contains(
            "column \"window_start\" of table int_start is integer, which cannot hold the \
             field's values: make it timestamptz (or text)"
        ),
        "{error}"
    );
    let counted = pg.rows("SELECT count(*)::text FROM int_start");
    assert_eq!(counted, ["0"], "nothing half-written");

    // A date would drop the time of day: refused too.
    let error = error_with(
        "date_start",
        Some(
            "CREATE TABLE date_start (visit_id text, window_start date, \
             window_end timestamptz, visits bigint, partial boolean)",
        ),
    );
    assert!(
        error.contains("column \"window_start\" of table date_start is date"),
        "{error}"
    );
}

#[test]
fn columns_must_be_result_fields() {
    let yaml = "name: j\nsource: {file: {path: in.jsonl}}\neventTime: {field: t}\nkey: k\n\
                window: {tumbling: {size: 1s}}\naggregates: [{name: n, function: count}]\n\
                sink: {postgres: {url: \"host=x\", table: t, columns: [k, total], upsertKey: [k, window_start]}}\n";
    let error = JobSpec::from_yaml(yaml).unwrap_err().to_string();
    assert!(
        error.contains("sink.postgres.columns[1]: \"total\" is not a field of the results; they have k, window_start, window_end, n, partial, emit_time"),
        "{error}"
    );
    assert!(
        error.contains("sink.postgres.upsertKey[1]: \"window_start\" is not among the columns written (k, total)"),
        "{error}"
    );
}

/// Final window rows `(key, window start ms) -> (count, sum)` of table
/// `windows`, checked against `expected`: each exactly once, none missing.
/// The job file of the kill tests: `write_input`'s records, 1 s windows,
/// checkpoints every 30 ms, rows to table `windows`.
fn kill_test_job(dir: &Path, pg: &PgServer) -> std::path::PathBuf {
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: pg\nparallelism: 2\nsource: {{file: {{path: in.jsonl}}}}\neventTime: {{field: t}}\n\
             watermark: {{outOfOrderness: 500ms}}\nkey: k\nwindow: {{tumbling: {{size: 1s}}}}\n\
             aggregates: [{{name: n, function: count}}, {{name: s, function: sum, field: a}}]\n\
             sink: {{postgres: {{url: \"{}\", table: windows, createTable: true}}}}\n\
             checkpoints: {{interval: 30ms, storage: file://ckpt, retained: 3}}\n",
            pg.url()
        ),
    )
    .unwrap();
    job
}

/// The job dies at each point of the commit protocol for checkpoint 3:
/// before the transaction, in the middle of it (rows sent, not committed:
/// PostgreSQL drops them), and after it but before `_metadata` (the
/// checkpoint is rolled forward). The rows are exact every time.
#[test]
fn every_crash_point_of_the_commit_protocol() {
    for point in ["before-commit", "mid-commit", "after-commit"] {
        let pg = PgServer::start();
        let dir = tempfile::tempdir().unwrap();
        let expected = write_input(dir.path(), 300_000);
        let job = kill_test_job(dir.path(), &pg);
        let env = [("STREAMJOB_FAILPOINT", format!("{point}:3"))];
        let (ok, stderr) = run_to_end(&job, &[], &env);
        assert!(
            !ok && stderr.contains(&format!("failpoint {point}:3 reached")),
            "{stderr}"
        );
        let (ok, stderr) = run_to_end(&job, &["--from-latest-checkpoint"], &[]);
        assert!(ok, "{point}: {stderr}");
        assert_eq!(
            stderr.contains("chk-3"),
            point == "after-commit",
            "{point}: {stderr}"
        );
        pg.check_window_rows(&expected);
    }
}

/// The exactly-once proof for PostgreSQL: the job is killed (`kill -9`)
/// again and again while it inserts, each run restoring from the latest
/// checkpoint; the table then holds every window's final row exactly once.
#[test]
fn exactly_once_rows_across_kills() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A finished run is final here (the table cannot take rows back), so
    // the input must outlast the kills: three times the file tests' input
    // (at parallelism 2 the job reads 400,000 records in well under a
    // second).
    let expected = write_input(dir.path(), 3 * kill_test_records());
    let job = kill_test_job(dir.path(), &pg);
    if let Kills::FinishedAfter(kills) = kill_repeatedly(&job, &[], (150, 300)) {
        // Finishing early proves little: the input must outlast the kills.
        assert!(
            kills * 4 >= common::kills() * 3,
            "the job finished after only {kills} kills: give it more input"
        );
    }
    pg.check_window_rows(&expected);
}

/// The events-to-PostgreSQL example's events: `n` records with more fields than the table wants,
/// produced to `events` (two partitions).
fn produce_page_events(cluster: &MockCluster, n: u64, partitions: u64) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    cluster
        .create_topic("events", partitions as i32, 1)
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..n {
        let payload = format!(
            r#"{{"event_id": "e{i}", "user_name": "user{}", "location": "city{}", "amount": {i}, "device": {{"os": "linux"}}}}"#,
            i % 10,
            i % 5
        );
        while producer
            .send(
                BaseRecord::<(), String>::to("events")
                    .partition((i % partitions) as i32)
                    .payload(&payload),
            )
            .is_err()
        {
            producer.poll(std::time::Duration::from_millis(10));
        }
    }
    producer.flush(std::time::Duration::from_secs(30)).unwrap();
}

/// The events-to-PostgreSQL example: Kafka events, three fields each, into the
/// example's `events` table (its own `id SERIAL`, `NOT NULL` columns).
fn events_to_postgres_job(bootstrap: &str, pg: &PgServer) -> String {
    format!(
        "name: events-to-postgres\nparallelism: 2\n\
         source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [events], bounded: true}}}}\n\
         select: [event_id, user_name, location]\n\
         sink: {{postgres: {{url: \"{}\", table: events}}}}\n\
         checkpoints: {{interval: 50ms, storage: file://ckpt}}\n",
        pg.url()
    )
}

fn create_events_table(pg: &PgServer) {
    pg.client()
        .batch_execute(
            "CREATE TABLE events (id SERIAL PRIMARY KEY, event_id VARCHAR(50) NOT NULL, \
             user_name VARCHAR(50) NOT NULL, location VARCHAR(100) NOT NULL)",
        )
        .unwrap();
}

#[test]
fn kafka_events_parsed_and_selected_into_a_table() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce_page_events(&cluster, 1_000, 2);
    let pg = PgServer::start();
    create_events_table(&pg);
    let dir = tempfile::tempdir().unwrap();
    let spec = JobSpec::from_yaml(&events_to_postgres_job(&bootstrap, &pg)).unwrap();
    let summary = run(&spec, &opts(dir.path())).unwrap();
    assert_eq!((summary.records_in, summary.results), (1_000, 1_000));
    assert_eq!(
        pg.rows("SELECT count(*)::text, count(DISTINCT event_id)::text, count(DISTINCT id)::text FROM events"
        ),
        ["1000|1000|1000"]
    );
    assert_eq!(
        pg.rows("SELECT event_id, user_name, location FROM events WHERE event_id IN ('e0', 'e17') ORDER BY event_id"
        ),
        ["e0|user0|city0", "e17|user7|city2"]
    );
}

/// The events-to-PostgreSQL example under five `kill -9`s: every event's row exactly once.
#[test]
fn events_into_postgres_exactly_once_across_kills() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    // librdkafka's mock broker keeps only the newest ~5 MB of a partition
    // (1.2M of these events in 2 partitions left 84,000): 10 partitions
    // of 30,000 stay whole.
    let events = 300_000;
    produce_page_events(&cluster, events, 10);
    let pg = PgServer::start();
    create_events_table(&pg);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, events_to_postgres_job(&bootstrap, &pg)).unwrap();
    common::kill_after_checkpoints(
        &job,
        &dir.path().join("ckpt/events-to-postgres/checkpoints"),
        5,
    );
    assert_eq!(
        pg.rows("SELECT count(*)::text, count(DISTINCT event_id)::text FROM events"),
        [format!("{events}|{events}")]
    );
}

/// A select job's object and string values into a `jsonb` column arrive as
/// JSON (the string as a JSON string), other columns as text.
#[test]
fn values_for_json_columns_go_as_json() {
    let pg = PgServer::start();
    pg.client()
        .batch_execute("CREATE TABLE profiles (event_id text, \"user\" jsonb)")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"event_id\": \"e1\", \"user\": {\"name\": \"ann\"}}\n{\"event_id\": \"e2\", \"user\": \"bo\"}\n",
    )
    .unwrap();
    let spec = JobSpec::from_yaml(&format!(
        "name: sel\nsource: {{file: {{path: in.jsonl}}}}\nselect: [event_id, user]\n\
         sink: {{postgres: {{url: \"{}\", table: profiles}}}}\n",
        pg.url()
    ))
    .unwrap();
    run(&spec, &opts(dir.path())).unwrap();
    assert_eq!(
        pg.rows("SELECT event_id, \"user\"::text, jsonb_typeof(\"user\") FROM profiles ORDER BY event_id"
        ),
        ["e1|{\"name\": \"ann\"}|object", "e2|\"bo\"|string"]
    );
}

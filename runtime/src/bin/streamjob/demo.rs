//! `streamjob demo`: the visit-counter scenario end to end with no set-up
//! (an embedded Kafka cluster, files in a temporary folder), step by step.

use std::path::{Path, PathBuf};

use streamjob_runtime::control::JobControl;
use streamjob_runtime::{JobSpec, RestoreFrom, RunOptions};

/// The visits of the visit-counter example, shipped in the binary so the
/// demo needs no files.
const DEMO_VISITS: &str = include_str!("../../../../examples/visits.jsonl");

/// The visit counter (examples/visit-counter-local.yaml), reading Kafka.
fn demo_job(bootstrap: &str, bounded: bool) -> String {
    format!(
        "name: visit-counter\n\
         source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [visits], bounded: {bounded}}}}}\n\
         eventTime: {{field: event_time}}\nwatermark: {{outOfOrderness: 5m}}\nkey: visit_id\n\
         window: {{tumbling: {{size: 15m}}}}\ntrigger: {{early: {{everyEventTime: 2m}}}}\n\
         aggregates: [{{name: visits, function: count}}]\n\
         sink: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: visits_counter}}}}\n\
         checkpoints: {{interval: 200ms, storage: file://checkpoints}}\n"
    )
}

/// A producer to the demo's cluster.
fn demo_producer(bootstrap: &str) -> Result<rdkafka::producer::BaseProducer, String> {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("demo producer: {e}"))
}

/// Produces lines to the `visits` topic of the demo's cluster.
fn demo_produce(bootstrap: &str, lines: &[&str]) -> Result<(), String> {
    use rdkafka::producer::{BaseRecord, Producer};
    let producer = demo_producer(bootstrap)?;
    for line in lines {
        producer
            .send(BaseRecord::<(), str>::to("visits").payload(*line))
            .map_err(|(e, _)| format!("demo produce: {e}"))?;
    }
    producer
        .flush(std::time::Duration::from_secs(10))
        .map_err(|e| format!("demo flush: {e}"))
}

/// Prints the records of `visits_counter` from the `from`th on, as a
/// `read_committed` consumer sees them; returns how many there are now.
fn demo_show_output(bootstrap: &str, from: usize) -> Result<usize, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    /// Reaching the end of the partition is how the reader knows it is done,
    /// not an error worth a log line.
    struct EndIsNotAnError;
    impl rdkafka::ClientContext for EndIsNotAnError {
        fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
            let eof = rdkafka::types::RDKafkaErrorCode::PartitionEOF;
            if error.rdkafka_error_code() != Some(eof) {
                eprintln!("demo consumer: {error}: {reason}");
            }
        }
    }
    impl rdkafka::consumer::ConsumerContext for EndIsNotAnError {}
    let consumer: BaseConsumer<EndIsNotAnError> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "streamjob-demo-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(EndIsNotAnError)
        .map_err(|e| format!("demo consumer: {e}"))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("visits_counter", 0, rdkafka::Offset::Beginning)
        .map_err(|e| format!("demo consumer: {e}"))?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("demo consumer: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut count = 0;
    while std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(count),
            Some(Err(e)) => return Err(format!("reading visits_counter: {e}")),
            Some(Ok(m)) => {
                if count >= from {
                    let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
                    println!("    {value}");
                }
                count += 1;
            }
            None => {}
        }
    }
    Err("timed out reading visits_counter".into())
}

/// The visit counter and its fault tolerance end to end, with no set-up: Kafka (librdkafka's
/// in-process mock cluster), checkpoints, a crash, and a restore that resumes
/// from the checkpointed offsets.
pub fn demo(dir: Option<PathBuf>, ui: Option<&str>) -> Result<(), String> {
    use std::time::{Duration, Instant};
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("streamjob-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let visits: Vec<&str> = DEMO_VISITS.lines().collect();
    let (first, second) = visits.split_at(10);

    let cluster =
        rdkafka::mocking::MockCluster::new(1).map_err(|e| format!("mock cluster: {e}"))?;
    for topic in ["visits", "visits_counter"] {
        cluster
            .create_topic(topic, 1, 1)
            .map_err(|e| format!("create topic {topic}: {e}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    println!("[demo 1/8] an in-process Kafka cluster (librdkafka's mock broker) listens on {bootstrap}; topics visits and visits_counter created");

    demo_produce(&bootstrap, first)?;
    println!(
        "[demo 2/8] produced the first {} visits (visit_id 1, 10:01 to 10:10) to visits",
        first.len()
    );

    let spec = JobSpec::from_yaml(&demo_job(&bootstrap, false)).map_err(|e| e.to_string())?;
    let control = JobControl::new(&spec.name, 1);
    let opts = RunOptions {
        base_dir: dir.clone(),
        control: Some(control.clone()),
        ..Default::default()
    };
    println!("[demo 3/8] running visit-counter: 15-minute tumbling windows, watermark 5 minutes behind, a partial count every");
    println!("           2 minutes of event time, checkpoints every 200 ms; results go to visits_counter in a Kafka transaction");
    println!("           that commits with each checkpoint. visits_counter as a read_committed consumer sees it:");
    let job = {
        let (spec, opts) = (spec.clone(), opts.clone());
        std::thread::spawn(move || streamjob_runtime::run(&spec, &opts))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while control.metrics.records_in.get() < first.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = control.metrics.checkpoints_completed.get();
    while control.metrics.checkpoints_completed.get() < seen + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let shown = demo_show_output(&bootstrap, 0)?;
    let last = control
        .checkpoints()
        .last()
        .map(|c| c.path.clone())
        .unwrap_or_default();
    control
        .stop
        .store(true, std::sync::atomic::Ordering::SeqCst);
    job.join()
        .map_err(|_| "the demo job panicked".to_string())?
        .map_err(|e| format!("the demo job failed: {e}"))?;
    println!("[demo 4/8] checkpoint {last} completed, holding the window's count and the offset of visits; its transaction");
    println!("           committed the results above. The job stops here without a savepoint, as if its pod died. (Its open");
    println!("           transaction is empty: librdkafka's mock broker would show an aborted transaction's records to");
    println!("           read_committed consumers, a real broker hides them.)");

    demo_produce(&bootstrap, second)?;
    println!("[demo 5/8] produced {} more visits (10:11, 10:12); restarting from the latest checkpoint (--from-latest-checkpoint),", second.len());
    println!("           reading visits up to its current end:");
    let spec = JobSpec::from_yaml(&demo_job(&bootstrap, true)).map_err(|e| e.to_string())?;
    let opts = RunOptions {
        base_dir: dir.clone(),
        restore: Some(RestoreFrom::LatestCheckpoint),
        ..Default::default()
    };
    let summary = streamjob_runtime::run(&spec, &opts)
        .map_err(|e| format!("the restored job failed: {e}"))?;
    demo_show_output(&bootstrap, shown)?;
    println!(
        "[demo 6/8] the restored job read {} records: it resumed from the checkpointed offset, not from the start of visits,",
        summary.records_in
    );
    println!("           and its count went on from the checkpointed state to the final visits=12 (partial=false).");
    demo_generated(&dir)?;
    demo_enrichment(&dir, &cluster)?;
    println!(
        "           Checkpoints, state and output files are in {}",
        dir.display()
    );
    match ui {
        Some(address) => demo_ui(&dir, &bootstrap, address),
        None => Ok(()),
    }
}

/// Visit ids the `--ui` producer spreads its visits over.
const UI_VISITORS: u64 = 50;
/// Visits a second the `--ui` producer sends, each 300 ms of event time
/// after the last: a minute of event time a second, so that windows close
/// and early results come while someone watches.
const UI_VISITS_PER_SECOND: u64 = 200;
const UI_EVENT_TIME_STEP_MS: i64 = 300;

/// `demo --ui`: the visit counter again, from its latest checkpoint, on a
/// stream of new visits (now and then a malformed one), with its
/// dashboard, until the process is stopped.
fn demo_ui(dir: &Path, bootstrap: &str, address: &str) -> Result<(), String> {
    let spec = JobSpec::from_yaml(&demo_job(bootstrap, false)).map_err(|e| e.to_string())?;
    let control = JobControl::new(&spec.name, 1);
    // A busy port must not end the demo: take a free one and say which.
    let server = streamjob_runtime::control::serve(address, control.clone(), None)
        .or_else(|_| streamjob_runtime::control::serve("127.0.0.1:0", control.clone(), None))
        .map_err(|e| format!("cannot serve the dashboard: {e}"))?;
    let producer = {
        let bootstrap = bootstrap.to_string();
        std::thread::spawn(move || demo_ui_visits(&bootstrap))
    };
    println!("[demo ui] visit-counter runs on from its latest checkpoint, reading the visits a producer adds:");
    println!("           {UI_VISITS_PER_SECOND} a second, a minute of event time each second, one in 500 malformed.");
    println!(
        "           Its dashboard: http://{}/ (Ctrl-C stops the demo)",
        server.address
    );
    let opts = RunOptions {
        base_dir: dir.to_path_buf(),
        restore: Some(RestoreFrom::LatestCheckpoint),
        control: Some(control.clone()),
        ..Default::default()
    };
    let outcome = streamjob_runtime::run(&spec, &opts);
    if producer.is_finished() {
        if let Ok(Err(e)) = producer.join() {
            return Err(e);
        }
    }
    outcome
        .map(drop)
        .map_err(|e| format!("the demo job failed: {e}"))
}

/// Produces visits to the demo's `visits` topic for `--ui`, forever.
fn demo_ui_visits(bootstrap: &str) -> Result<(), String> {
    use rdkafka::producer::BaseRecord;
    use std::time::{Duration, Instant};
    let producer = demo_producer(bootstrap)?;
    // After the shipped visits (which end at 10:12 on 2025-09-04).
    let start = streamjob_runtime::time::parse_iso8601("2025-09-04T11:00:00Z")?;
    let started = Instant::now();
    for n in 0u64.. {
        let event_time =
            streamjob_runtime::time::format_time(start + n as i64 * UI_EVENT_TIME_STEP_MS);
        let visit = if n % 500 == 499 {
            // A malformed visit, for the dashboard's list of them.
            format!(
                r#"{{"event_id": "ui-{n}", "visit_id": {}, "event_time": "soon"}}"#,
                n % UI_VISITORS
            )
        } else {
            format!(
                r#"{{"event_id": "ui-{n}", "visit_id": {}, "event_time": "{event_time}", "page": "page{}"}}"#,
                n % UI_VISITORS,
                n % 7
            )
        };
        producer
            .send(BaseRecord::<(), _>::to("visits").payload(&visit))
            .map_err(|(e, _)| format!("demo produce: {e}"))?;
        producer.poll(Duration::ZERO);
        let due = started + Duration::from_micros((n + 1) * 1_000_000 / UI_VISITS_PER_SECOND);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    Ok(())
}

/// The visit generator: many visits, some out of order, some late.
fn demo_generated(dir: &Path) -> Result<(), String> {
    const VISITS: u64 = 100_000;
    let spec = JobSpec::from_yaml(&format!(
        "name: generated-visits\nparallelism: 2\n\
         source: {{generator: {{events: {VISITS}, keys: 100, eventsPerMs: 10, disorder: 2s, lateFraction: 0.01, lateBy: 10m}}}}\n\
         watermark: {{outOfOrderness: 2s}}\nkey: visitor\nwindow: {{tumbling: {{size: 10s}}}}\nallowedLateness: 5s\n\
         aggregates: [{{name: visits, function: count}}]\nsink: {{discard: {{}}}}\n\
         sideOutputs: {{late: {{file: {{path: late-visits.jsonl}}}}}}\n"
    ))
    .map_err(|e| e.to_string())?;
    let opts = RunOptions {
        base_dir: dir.to_path_buf(),
        capture_results: true,
        ..Default::default()
    };
    let summary = streamjob_runtime::run(&spec, &opts)
        .map_err(|e| format!("the generated job failed: {e}"))?;
    let counted: i64 = summary
        .captured
        .iter()
        .filter(|r| !r.partial)
        .filter_map(|r| r.values.first()?.to_json().as_i64())
        .sum();
    println!(
        "[demo 7/8] the visit generator: {VISITS} visits of 100 visitors, shuffled by up to 2 s, 1% stamped 10 minutes late;"
    );
    println!(
        "           10-second windows with 5 s allowed lateness counted {counted} in {} windows, and {} late visits went to",
        summary.captured.len(),
        summary.late
    );
    println!(
        "           late-visits.jsonl: {counted} + {} = {} visits, each in exactly one place.",
        summary.late,
        counted + summary.late as i64
    );
    Ok(())
}

/// The order enrichment's data: users and items changelogs and orders, shipped in the
/// binary.
const DEMO_USERS: &str = include_str!("../../../../examples/orders/users.jsonl");
const DEMO_ITEMS: &str = include_str!("../../../../examples/orders/items.jsonl");
const DEMO_ORDERS: &str = include_str!("../../../../examples/orders/orders.jsonl");

/// Order enrichment on the demo's cluster: users and items
/// changelog topics as lookup tables, enriched orders and unmatched ones.
fn demo_enrichment(
    dir: &Path,
    cluster: &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
) -> Result<(), String> {
    use rdkafka::producer::{BaseRecord, Producer};
    for topic in ["users", "items", "orders"] {
        cluster
            .create_topic(topic, 1, 1)
            .map_err(|e| format!("create topic {topic}: {e}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let producer = demo_producer(&bootstrap)?;
    for (topic, lines) in [
        ("users", DEMO_USERS),
        ("items", DEMO_ITEMS),
        ("orders", DEMO_ORDERS),
    ] {
        for line in lines.lines() {
            // Changelog records are keyed by their id, as in a compacted topic.
            let id = serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| format!("demo data: {e}"))?["id"]
                .to_string();
            producer
                .send(BaseRecord::to(topic).payload(line).key(&id))
                .map_err(|(e, _)| format!("demo produce: {e}"))?;
        }
    }
    producer
        .flush(std::time::Duration::from_secs(10))
        .map_err(|e| format!("demo flush: {e}"))?;
    let changelog = |topic: &str| {
        format!("{{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [{topic}]}}}}")
    };
    let spec = JobSpec::from_yaml(&format!(
        "name: order-enrichment\n\
         source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [orders], bounded: true}}}}\n\
         enrich:\n\
         \x20 - {{name: user, from: {}, key: id, on: user_id, fields: [email]}}\n\
         \x20 - {{name: item, from: {}, key: id, on: item_id, fields: [name, price]}}\n\
         select: [invoice_id, user.email, item.name, item.price, quantity]\n\
         sink: {{file: {{path: orders-enriched.jsonl}}}}\n\
         sideOutputs: {{unmatched: {{file: {{path: orders-unmatched.jsonl}}}}}}\n",
        changelog("users"),
        changelog("items"),
    ))
    .map_err(|e| e.to_string())?;
    for file in ["orders-enriched.jsonl", "orders-unmatched.jsonl"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    let opts = RunOptions {
        base_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let summary = streamjob_runtime::run(&spec, &opts)
        .map_err(|e| format!("the enrichment job failed: {e}"))?;
    println!(
        "[demo 8/8] order enrichment: {} orders joined with the latest user and item from the users and items",
        DEMO_ORDERS.lines().count()
    );
    println!("           changelog topics (lookup tables in RocksDB, in every checkpoint); user 34502 changed their email:");
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    for line in read("orders-enriched.jsonl").lines() {
        println!("    order {line}");
    }
    println!(
        "           {} orders without a user or item went to orders-unmatched.jsonl with the reason:",
        summary.unmatched
    );
    for line in read("orders-unmatched.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        println!(
            "    unmatched: {} ({})",
            v["error"].as_str().unwrap_or_default(),
            v["source"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

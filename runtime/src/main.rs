//! `streamjob`: run a job, run the demo, or run the benchmark.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamjob_runtime::bench::{
    peak_rss_mib, run_bench, run_kafka_bench, run_recovery, BenchConfig, BenchWindow,
};
use streamjob_runtime::control::{serve, JobControl, JobState};
use streamjob_runtime::{run_with_restarts, JobSpec, RestoreFrom, RunOptions, RunSummary};

#[derive(Parser)]
#[command(
    name = "streamjob",
    version,
    about = "Keyed event-time windowed stream jobs, declared in YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job until its input ends (or the process is stopped).
    Run {
        /// The job file (YAML).
        job: PathBuf,
        /// Number of workers; overrides the job's `parallelism`.
        #[arg(long, env = "STREAMJOB_PARALLELISM")]
        parallelism: Option<u32>,
        /// Folder for RocksDB state; overrides the job's `state.dir`.
        #[arg(long, env = "STREAMJOB_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Start from a checkpoint or savepoint: a folder (relative to the
        /// working directory) or its `file://` / `s3://` URI.
        #[arg(
            long,
            env = "STREAMJOB_FROM_SAVEPOINT",
            conflicts_with = "from_latest_checkpoint"
        )]
        from_savepoint: Option<PathBuf>,
        /// Start from the newest completed checkpoint in the job's
        /// checkpoint storage.
        #[arg(long, env = "STREAMJOB_FROM_LATEST_CHECKPOINT")]
        from_latest_checkpoint: bool,
        /// Restore a snapshot whose window state does not fit the job (other
        /// window or aggregates): drop that state, keep the source positions.
        #[arg(long, env = "STREAMJOB_ALLOW_NON_RESTORED_STATE")]
        allow_non_restored_state: bool,
        /// Where the control API listens (`off` for none); port 0 picks a
        /// free port.
        #[arg(
            long,
            env = "STREAMJOB_CONTROL_ADDRESS",
            default_value = "127.0.0.1:8081"
        )]
        control_address: String,
        /// The deployment this process belongs to, for a supervisor that
        /// restarts processes (the operator sets one per rollout). A later
        /// process of the same deployment resumes from the newest snapshot
        /// the deployment completed instead of starting over from
        /// `--from-savepoint`; and once the job stops or finishes, the
        /// process stays up (control API answering, state `finished`)
        /// instead of exiting, so a pod's restart policy does not start the
        /// job again. A failed job still exits non-zero.
        #[arg(long, env = "STREAMJOB_DEPLOYMENT")]
        deployment: Option<String>,
    },
    /// Run the visit-counter scenario end to end, with no set-up.
    Demo {
        /// Folder for the demo's input, output and state (default: a new
        /// temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Measure throughput: generated events, keyed windowed COUNT, results
    /// discarded. Prints `events_per_second=N` last.
    Bench {
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        #[arg(long, default_value_t = 10)]
        events_per_ms: u32,
        #[arg(long, default_value_t = 1)]
        parallelism: u32,
        #[arg(long, value_enum, default_value_t = BenchWindow::Tumbling)]
        window: BenchWindow,
        /// Take checkpoints at this interval (e.g. 10s) to a local folder.
        #[arg(long)]
        checkpoint_interval: Option<streamjob_runtime::spec::Duration>,
        /// Then restore from the latest checkpoint and report the time to
        /// recover (needs --checkpoint-interval).
        #[arg(long, requires = "checkpoint_interval")]
        recover: bool,
        /// End to end through Kafka with exactly-once output (librdkafka's
        /// in-process mock cluster): events are produced to a topic first
        /// (untimed), results go to a topic in transactions; tumbling
        /// windows, checkpoints every --checkpoint-interval (default 10s).
        #[arg(long, conflicts_with_all = ["recover", "window"])]
        kafka: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STREAMJOB_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a pod's log or a file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run {
            job,
            parallelism,
            state_dir,
            from_savepoint,
            from_latest_checkpoint,
            allow_non_restored_state,
            control_address,
            deployment,
        } => {
            let restore = match (from_savepoint, from_latest_checkpoint) {
                // A path on the command line is relative to where the
                // command runs (a URI is left as it is).
                (Some(path), _) if !path.to_string_lossy().contains("://") => {
                    match std::path::absolute(&path) {
                        Ok(path) => Some(RestoreFrom::Path(path)),
                        Err(e) => {
                            eprintln!("streamjob: --from-savepoint {}: {e}", path.display());
                            return ExitCode::from(2);
                        }
                    }
                }
                (Some(uri), _) => Some(RestoreFrom::Path(uri)),
                (None, true) => Some(RestoreFrom::LatestCheckpoint),
                (None, false) => None,
            };
            let restore = restore.map(|from| (from, allow_non_restored_state));
            run_job(
                &job,
                parallelism,
                state_dir,
                restore,
                Some(&control_address),
                deployment,
            )
        }
        Command::Demo { dir } => demo(dir),
        Command::Bench {
            events,
            keys,
            events_per_ms,
            parallelism,
            window,
            checkpoint_interval,
            recover,
            kafka,
        } => bench(
            BenchConfig {
                events,
                keys,
                events_per_ms,
                parallelism,
                window,
                state_dir: std::env::temp_dir()
                    .join(format!("streamjob-bench-{}", std::process::id())),
                checkpoint_interval,
            },
            recover,
            kafka,
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("streamjob: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_job(path: &Path, parallelism: Option<u32>) -> Result<JobSpec, String> {
    let mut spec = JobSpec::from_file(path).map_err(|e| {
        let lines: Vec<String> = e.to_string().lines().map(|l| format!("  {l}")).collect();
        format!(
            "{} is not a valid job:\n{}",
            path.display(),
            lines.join("\n")
        )
    })?;
    if let Some(p) = parallelism {
        spec.parallelism = p;
        spec.validate()
            .map_err(|e| format!("--parallelism {p}: {e}"))?;
    }
    Ok(spec)
}

fn summary_line(spec: &JobSpec, s: &RunSummary) -> String {
    let mut line = format!(
        "job {} finished in {:.2}s: {} records in, {} results out, {} late, {} malformed",
        spec.name,
        s.elapsed.as_secs_f64(),
        s.records_in,
        s.results,
        s.late,
        s.malformed
    );
    if !spec.enrich.is_empty() {
        line.push_str(&format!(", {} unmatched", s.unmatched));
    }
    if spec.checkpoints.is_some() {
        line.push_str(&format!(", {} checkpoints", s.checkpoints));
    }
    if s.restarts > 0 {
        line.push_str(&format!(", {} restarts", s.restarts));
    }
    line
}

fn run_job(
    path: &Path,
    parallelism: Option<u32>,
    state_dir: Option<PathBuf>,
    restore: Option<(RestoreFrom, bool)>,
    control_address: Option<&str>,
    deployment: Option<String>,
) -> Result<(), String> {
    let spec = load_job(path, parallelism)?;
    let control = JobControl::new(&spec.name, spec.parallelism as usize);
    let mut server = None;
    if let Some(address) = control_address.filter(|a| *a != "off") {
        // A busy port must not stop a local run: say so and go on.
        match serve(address, control.clone()) {
            Ok(s) => {
                eprintln!("streamjob: control API on http://{}", s.address);
                server = Some(s);
            }
            Err(e) => eprintln!("streamjob: control API not started on {address}: {e}"),
        }
    }
    let opts = RunOptions {
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        state_dir,
        allow_non_restored_state: restore.as_ref().is_some_and(|r| r.1),
        restore: restore.map(|r| r.0),
        control: Some(control.clone()),
        deployment: deployment.clone(),
        ..Default::default()
    };
    let outcome = run_with_restarts(&spec, &opts);
    match &outcome {
        Ok(_) => control.set_state(JobState::Finished, None),
        Err(e) => control.set_state(JobState::Failed, Some(e.to_string())),
    }
    if let Ok(summary) = &outcome {
        if let Some(from) = &summary.restored_from {
            eprintln!("streamjob: job {} restored from {from}", spec.name);
        }
        eprintln!("streamjob: {}", summary_line(&spec, summary));
        if let Some(deployment) = deployment {
            // Exiting would have the pod's container started again, and
            // the job with it: stay up, answering `finished`, until
            // terminated.
            eprintln!("streamjob: deployment {deployment} done; waiting to be terminated");
            loop {
                std::thread::park();
            }
        }
    }
    if let Some(server) = server {
        server.shutdown(std::time::Duration::from_secs(5));
    }
    outcome
        .map(drop)
        .map_err(|e| format!("job {} failed: {e}", spec.name))
}

/// The seed's visits (../shared/seeds/000), shipped in the binary so the demo
/// needs no files.
const DEMO_VISITS: &str = include_str!("../../examples/visits.jsonl");

/// The visit counter of seeds 000 and 001, reading Kafka.
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

/// Produces lines to the `visits` topic of the demo's cluster.
fn demo_produce(bootstrap: &str, lines: &[&str]) -> Result<(), String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("demo producer: {e}"))?;
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

/// Seeds 000 and 001 end to end, with no set-up: Kafka (librdkafka's
/// in-process mock cluster), checkpoints, a crash, and a restore that resumes
/// from the checkpointed offsets.
fn demo(dir: Option<PathBuf>) -> Result<(), String> {
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
        "[demo 2/8] produced the seed's first {} visits (visit_id 1, 10:01 to 10:10) to visits",
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
    Ok(())
}

/// Seed 001's data generator: many visits, some out of order, some late.
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
        "[demo 7/8] seed 001's data generator: {VISITS} visits of 100 visitors, shuffled by up to 2 s, 1% stamped 10 minutes late;"
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

/// Seed 002's data: users and items changelogs and orders, shipped in the
/// binary.
const DEMO_USERS: &str = include_str!("../../examples/orders/users.jsonl");
const DEMO_ITEMS: &str = include_str!("../../examples/orders/items.jsonl");
const DEMO_ORDERS: &str = include_str!("../../examples/orders/orders.jsonl");

/// Seed 002's order enrichment on the demo's cluster: users and items
/// changelog topics as lookup tables, enriched orders and unmatched ones.
fn demo_enrichment(
    dir: &Path,
    cluster: &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
) -> Result<(), String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    for topic in ["users", "items", "orders"] {
        cluster
            .create_topic(topic, 1, 1)
            .map_err(|e| format!("create topic {topic}: {e}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .map_err(|e| format!("demo producer: {e}"))?;
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
        "[demo 8/8] seed 002's order enrichment: {} orders joined with the latest user and item from the users and items",
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

fn bench(config: BenchConfig, recover: bool, kafka: bool) -> Result<(), String> {
    if kafka {
        eprintln!(
            "bench: {} events through Kafka (mock cluster), {} keys, parallelism {}, exactly-once output",
            config.events, config.keys, config.parallelism
        );
        let summary = run_kafka_bench(&config)?;
        let _ = std::fs::remove_dir_all(&config.state_dir);
        let secs = summary.elapsed.as_secs_f64();
        println!("elapsed_seconds={secs:.3}");
        println!("results={}", summary.results);
        println!("checkpoints={}", summary.checkpoints);
        println!(
            "events_per_second={}",
            (summary.records_in as f64 / secs) as u64
        );
        return Ok(());
    }
    eprintln!(
        "bench: {} events, {} keys, {} events per event-time ms, {:?} windows, parallelism {}{}",
        config.events,
        config.keys,
        config.events_per_ms,
        config.window,
        config.parallelism,
        config
            .checkpoint_interval
            .map(|i| format!(", checkpoints every {i}"))
            .unwrap_or_default()
    );
    let report = run_bench(&config).map_err(|e| format!("bench failed: {e}"))?;
    let summary = &report.summary;
    let secs = summary.elapsed.as_secs_f64();
    println!("elapsed_seconds={secs:.3}");
    println!("results={}", summary.results);
    if let Some(rss) = peak_rss_mib() {
        println!("peak_rss_mib={rss:.1}");
    }
    if config.checkpoint_interval.is_some() {
        let m = &report.control.metrics;
        println!("checkpoints={}", summary.checkpoints);
        println!("last_checkpoint_ms={}", m.last_checkpoint_duration_ms.get());
        println!("last_checkpoint_bytes={}", m.last_checkpoint_bytes.get());
    }
    if recover {
        let recovery = run_recovery(&config).map_err(|e| format!("recovery failed: {e}"))?;
        println!("recovery_seconds={:.3}", recovery.startup.as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&config.state_dir);
    println!(
        "events_per_second={}",
        (summary.records_in as f64 / secs) as u64
    );
    Ok(())
}

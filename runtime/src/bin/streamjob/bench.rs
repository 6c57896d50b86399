//! The benchmark workload compared side by side with Flink: generated events,
//! keyed windowed COUNT per key, results discarded.

use std::path::PathBuf;

use streamjob_runtime::control::JobControl;
use streamjob_runtime::engine::{run, JobError, RestoreFrom, RunOptions, RunSummary};
use streamjob_runtime::spec::{
    AggregateFunction, AggregateSpec, CheckpointMode, CheckpointSpec, Duration, EventTimeSpec,
    GeneratorSpec, JobSpec, SessionSpec, SinkSpec, SlidingSpec, SourceSpec, StateSpec,
    TumblingSpec, WatermarkSpec, WindowSpec,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchWindow {
    /// 1-minute tumbling windows.
    Tumbling,
    /// 1-hour windows sliding by 1 minute.
    Sliding,
    /// Sessions closed by a 1-second gap.
    Session,
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub events: u64,
    pub keys: u64,
    pub events_per_ms: u32,
    pub parallelism: u32,
    pub window: BenchWindow,
    pub state_dir: PathBuf,
    /// Take checkpoints (to `state_dir/checkpoints`) at this interval.
    pub checkpoint_interval: Option<Duration>,
}

impl BenchConfig {
    /// The job the benchmark runs.
    pub fn job(&self) -> JobSpec {
        let window = match self.window {
            BenchWindow::Tumbling => WindowSpec {
                tumbling: Some(TumblingSpec {
                    size: Duration::from_secs(60),
                    offset: Duration::ZERO,
                }),
                ..Default::default()
            },
            BenchWindow::Sliding => WindowSpec {
                sliding: Some(SlidingSpec {
                    size: Duration::from_secs(3600),
                    slide: Duration::from_secs(60),
                    offset: Duration::ZERO,
                }),
                ..Default::default()
            },
            BenchWindow::Session => WindowSpec {
                session: Some(SessionSpec {
                    gap: Duration::from_secs(1),
                }),
                ..Default::default()
            },
        };
        JobSpec {
            name: "bench".into(),
            parallelism: self.parallelism,
            max_parallelism: 128,
            source: SourceSpec {
                generator: Some(GeneratorSpec {
                    events: Some(self.events),
                    keys: self.keys,
                    events_per_ms: self.events_per_ms,
                    start_time: 1_735_689_600_000,
                    disorder: Duration::ZERO,
                    rate: None,
                    seed: 42,
                    late_fraction: 0.0,
                    late_by: Duration::ZERO,
                }),
                ..Default::default()
            },
            event_time: EventTimeSpec::default(),
            enrich: Vec::new(),
            // The generator's splits run at whatever pace their cores give
            // them; alignment keeps them within a second of event time of
            // each other, as Flink's watermark alignment would.
            watermark: WatermarkSpec {
                max_drift: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            key: vec!["key".into()],
            window,
            trigger: Default::default(),
            allowed_lateness: Duration::ZERO,
            aggregates: vec![AggregateSpec {
                name: "count".into(),
                function: AggregateFunction::Count,
                field: None,
            }],
            sink: SinkSpec::discard(),
            side_outputs: Default::default(),
            state: StateSpec {
                dir: Some(self.state_dir.display().to_string()),
                ..Default::default()
            },
            checkpoints: self.checkpoint_interval.map(|interval| CheckpointSpec {
                interval,
                storage: format!("file://{}", self.state_dir.join("checkpoints").display()),
                retained: 2,
                mode: CheckpointMode::ExactlyOnce,
                min_pause: Duration::ZERO,
                tolerable_failures: 0,
                timeout: Duration::from_secs(600),
            }),
            restart_strategy: None,
            select: Vec::new(),
        }
    }
}

/// Peak resident memory of this process, from /proc (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// What a bench run measured besides throughput.
pub struct BenchReport {
    pub summary: RunSummary,
    pub control: std::sync::Arc<JobControl>,
}

pub fn run_bench(config: &BenchConfig) -> Result<BenchReport, JobError> {
    let spec = config.job();
    spec.validate().expect("the bench job is valid");
    let control = JobControl::new(&spec.name, spec.parallelism as usize);
    let opts = RunOptions {
        control: Some(control.clone()),
        ..Default::default()
    };
    Ok(BenchReport {
        summary: run(&spec, &opts)?,
        control,
    })
}

/// Restores the bench job from its latest checkpoint and runs it to the end
/// of the input; the summary's `startup` is the time to recover.
pub fn run_recovery(config: &BenchConfig) -> Result<RunSummary, JobError> {
    let spec = config.job();
    let opts = RunOptions {
        restore: Some(RestoreFrom::LatestCheckpoint),
        ..Default::default()
    };
    run(&spec, &opts)
}

/// The Kafka benchmark's settings beyond the workload's.
pub struct KafkaBench {
    pub broker: BenchBroker,
    /// librdkafka settings for the job's transactional producer.
    pub sink_properties: std::collections::BTreeMap<String, String>,
}

/// Where the Kafka benchmark's topics live.
pub enum BenchBroker {
    /// librdkafka's mock cluster, in this process: it shares the cores
    /// with the job.
    InProcess,
    /// A broker at this address, in its own process; the run's topics are
    /// named after this process, so runs do not meet.
    External(String),
}

/// End to end through Kafka with exactly-once output: the events are first
/// produced to topic `events` (40,000 per partition), untimed; then the job
/// reads them to their end, counts per key in 1-minute tumbling windows,
/// and writes the results to topic `results` in transactions committed
/// with its checkpoints. The summary's `elapsed` is the job's run alone.
pub fn run_kafka_bench(
    config: &BenchConfig,
    kafka: &KafkaBench,
) -> Result<(RunSummary, f64), String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    // The mock broker keeps only the newest 100,000 messages (5 MB) of a
    // partition: enough partitions that none holds more than 40,000.
    let partitions = (config.events.div_ceil(40_000) as i32).max(config.parallelism as i32);
    let (_cluster, bootstrap, events, results) = match &kafka.broker {
        BenchBroker::InProcess => {
            let cluster = rdkafka::mocking::MockCluster::new(1).map_err(|e| e.to_string())?;
            for topic in ["events", "results"] {
                cluster
                    .create_topic(topic, partitions, 1)
                    .map_err(|e| e.to_string())?;
            }
            let bootstrap = cluster.bootstrap_servers();
            (
                Some(cluster),
                bootstrap,
                "events".to_string(),
                "results".to_string(),
            )
        }
        BenchBroker::External(bootstrap) => {
            let run = std::process::id();
            let (events, results) = (format!("events-{run}"), format!("results-{run}"));
            create_topics(bootstrap, &[&events, &results], partitions)?;
            (None, bootstrap.clone(), events, results)
        }
    };
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .set("linger.ms", "20")
        .create()
        .map_err(|e| e.to_string())?;
    let start = 1_735_689_600_000u64;
    for i in 0..config.events {
        // A multiplicative hash spreads consecutive events over the keys.
        let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % config.keys.max(1);
        let ts = start + i / u64::from(config.events_per_ms.max(1));
        let payload = format!("{{\"key\":\"k{key}\",\"ts\":{ts}}}");
        let mut record = BaseRecord::<(), str>::to(&events)
            .payload(&payload)
            .partition((i % partitions as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    // The queue is full: let deliveries make room.
                    record = back;
                    producer.poll(std::time::Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(std::time::Duration::from_secs(300))
        .map_err(|e| e.to_string())?;
    let ceiling = consume_only(
        &bootstrap,
        &events,
        partitions,
        config.events,
        config.parallelism,
    )?;
    let interval = config
        .checkpoint_interval
        .unwrap_or(Duration::from_secs(10));
    let yaml = format!(
        "name: bench-kafka\nparallelism: {p}\n\
         source: {{kafka: {{bootstrapServers: \"{bootstrap}\", topics: [{events}], bounded: true}}}}\n\
         eventTime: {{field: ts}}\nkey: key\nwindow: {{tumbling: {{size: 1m}}}}\n\
         aggregates: [{{name: count, function: count}}]\n\
         sink: {{kafka: {{bootstrapServers: \"{bootstrap}\", topic: {results}}}}}\n\
         state: {{dir: \"{state}\"}}\n\
         checkpoints: {{interval: {interval}, storage: \"file://{state}/checkpoints\"}}\n",
        p = config.parallelism,
        state = config.state_dir.display(),
    );
    let mut spec = JobSpec::from_yaml(&yaml).map_err(|e| e.to_string())?;
    if let Some(sink) = &mut spec.sink.kafka {
        sink.properties = kafka.sink_properties.clone();
    }
    let summary = run(&spec, &RunOptions::default()).map_err(|e| e.to_string())?;
    Ok((summary, ceiling))
}

/// Creates the benchmark's topics on an external broker.
fn create_topics(bootstrap: &str, names: &[&str], partitions: i32) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .map_err(|e| e.to_string())?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let created = runtime
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .map_err(|e| format!("creating topics on {bootstrap}: {e}"))?;
    for result in created {
        result.map_err(|(topic, e)| format!("creating topic {topic} on {bootstrap}: {e}"))?;
    }
    Ok(())
}

/// The broker's ceiling for the job's source: events per second that
/// `readers` consumers, one a thread, set as the job's readers are
/// (`read_committed`, the same tuning, each assigned its share of the
/// partitions, one `poll` a message), receive when they do nothing with
/// them.
fn consume_only(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    events: u64,
    readers: u32,
) -> Result<f64, String> {
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..readers as i32)
            .map(|reader| {
                let mine: Vec<i32> = (reader..partitions).step_by(readers as usize).collect();
                // Event i went to partition i % partitions.
                let expected = mine
                    .iter()
                    .map(|&p| (events + (partitions - 1 - p) as u64) / partitions as u64)
                    .sum();
                scope.spawn(move || consume_partitions(bootstrap, topic, &mine, expected))
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().map_err(|_| "a reader panicked".to_string())?)
    })?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Reads `expected` events from `partitions` of `topic`.
fn consume_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    expected: u64,
) -> Result<(), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = rdkafka::config::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-ceiling")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    for (k, v) in streamjob_runtime::connectors::READER_TUNING {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for &p in partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let mut received = 0u64;
    while received < expected {
        if started.elapsed() > std::time::Duration::from_secs(300) {
            return Err(format!(
                "consume-only: {received} of {expected} events in 300 s"
            ));
        }
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(_)) => received += 1,
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    Ok(())
}

/// `streamjob bench`: runs the workload and prints its figures as
/// `name=value` lines, `events_per_second` last.
pub fn bench(config: BenchConfig, recover: bool, kafka: Option<KafkaBench>) -> Result<(), String> {
    if let Some(kafka) = kafka {
        let at = match &kafka.broker {
            BenchBroker::InProcess => "librdkafka's mock cluster in this process".to_string(),
            BenchBroker::External(bootstrap) => format!("the broker at {bootstrap}"),
        };
        eprintln!(
            "bench: {} events through Kafka ({at}), {} keys, parallelism {}, exactly-once output",
            config.events, config.keys, config.parallelism
        );
        let (summary, ceiling) = run_kafka_bench(&config, &kafka)?;
        let _ = std::fs::remove_dir_all(&config.state_dir);
        let secs = summary.elapsed.as_secs_f64();
        println!("consume_only_events_per_second={}", ceiling as u64);
        println!("elapsed_seconds={secs:.3}");
        println!("records_in={}", summary.records_in);
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

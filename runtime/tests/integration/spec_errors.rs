//! Every way a job file can be wrong gets an error that names the field and
//! says what is accepted.

use streamjob_runtime::JobSpec;

const VALID: &str = r#"
name: visit-counter
source:
  file:
    path: visits.jsonl
eventTime:
  field: event_time
watermark:
  outOfOrderness: 5m
key: visit_id
window:
  tumbling:
    size: 15m
trigger:
  early:
    everyEventTime: 2m
aggregates:
  - name: visits
    function: count
sink:
  stdout: {}
"#;

/// The valid job with one line replaced.
fn with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from:?} is not in the valid job");
    VALID.replacen(from, to, 1)
}

fn error_of(yaml: &str) -> String {
    match JobSpec::from_yaml(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_valid_job_parses() {
    let spec = JobSpec::from_yaml(VALID).unwrap();
    assert_eq!(spec.key, vec!["visit_id"]);
    assert_eq!(spec.parallelism, 1);
    assert_eq!(spec.max_parallelism, 128);
    assert_eq!(spec.watermark.out_of_orderness.as_millis(), 300_000);
}

#[test]
fn zero_window_size() {
    assert_eq!(
        error_of(&with("size: 15m", "size: 0s")),
        "window.tumbling.size: must be greater than 0, got \"0s\""
    );
}

#[test]
fn bad_duration_names_the_field_and_the_format() {
    let e = error_of(&with("size: 15m", "size: 15x"));
    assert!(e.starts_with("window.tumbling.size: invalid duration \"15x\": expected a number followed by ms, s, m, h or d"), "{e}");
}

/// Durations that would overflow window arithmetic later are refused where
/// they are written, with the limit; so are sliding windows that put each
/// element in more windows than a job can fire.
#[test]
fn durations_and_window_counts_are_bounded() {
    assert_eq!(
        error_of(&with("size: 15m", "size: 99999999999d")),
        "window.tumbling.size: duration \"99999999999d\" is too long: at most 3650000d (10000 years) (line 13, column 5)"
    );
    let e = error_of(&with("outOfOrderness: 5m", "outOfOrderness: 3650001d"));
    assert!(
        e.starts_with("watermark.outOfOrderness: duration \"3650001d\" is too long"),
        "{e}"
    );
    let sliding = |size: &str, slide: &str| {
        with(
            "  tumbling:\n    size: 15m",
            &format!("  sliding:\n    size: {size}\n    slide: {slide}"),
        )
    };
    assert_eq!(
        error_of(&sliding("1d", "1ms")),
        "window.sliding.slide: a window of 1d every 1ms puts each element in 86400000 windows, more than the 10000 allowed: make the slide at least 8640ms"
    );
    JobSpec::from_yaml(&sliding("1d", "8640ms")).unwrap();
    assert_eq!(
        error_of(&with(
            "field: event_time",
            "field: event_time\n  maxAhead: 0s"
        )),
        "eventTime.maxAhead: must be greater than 0, got \"0s\""
    );
}

#[test]
fn unknown_fields_are_rejected() {
    let e = error_of(&with("size: 15m", "sise: 15m"));
    assert!(
        e.starts_with("window.tumbling: unknown field `sise`, expected `size` or `offset`"),
        "{e}"
    );
    let e = error_of(&with(
        "name: visit-counter",
        "name: visit-counter\nparalelism: 2",
    ));
    assert!(e.starts_with("unknown field `paralelism`"), "{e}");
}

#[test]
fn missing_required_field() {
    let e = error_of(&with("sink:\n  stdout: {}\n", ""));
    assert!(e.contains("missing field `sink`"), "{e}");
    // Required of windowed jobs only (a select job has none).
    let e = error_of(&with("key: visit_id\n", ""));
    assert!(e.contains("key: name at least one field to key by"), "{e}");
}

#[test]
fn exactly_one_window_kind() {
    assert_eq!(
        error_of(&with(
            "  tumbling:\n    size: 15m",
            "  tumbling:\n    size: 15m\n  session:\n    gap: 1m"
        )),
        "window: set only one of tumbling, sliding, session, got tumbling and session"
    );
    assert_eq!(
        error_of(&with("  tumbling:\n    size: 15m", "  {}"))
            .lines()
            .next()
            .unwrap(),
        "window: set one of tumbling, sliding, session"
    );
}

#[test]
fn sliding_rules() {
    let sliding = |size: &str, slide: &str| {
        with(
            "  tumbling:\n    size: 15m",
            &format!("  sliding:\n    size: {size}\n    slide: {slide}"),
        )
    };
    assert_eq!(
        error_of(&sliding("1m", "5m")),
        "window.sliding.slide: must not exceed the size (1m), got \"5m\""
    );
    assert_eq!(
        error_of(&sliding("1m", "0s")),
        "window.sliding.slide: must be greater than 0, got \"0s\""
    );
}

#[test]
fn tumbling_offset_must_be_smaller_than_size() {
    assert_eq!(
        error_of(&with("size: 15m", "size: 15m\n    offset: 15m")),
        "window.tumbling.offset: must be smaller than the size (15m), got \"15m\""
    );
}

#[test]
fn session_gap_must_be_positive() {
    assert_eq!(
        error_of(&with(
            "  tumbling:\n    size: 15m",
            "  session:\n    gap: 0ms"
        )),
        "window.session.gap: must be greater than 0, got \"0s\""
    );
}

#[test]
fn watermark_rules() {
    assert_eq!(
        error_of(&with("outOfOrderness: 5m", "outOfOrderness: 5m\n  maxDrift: 0s\n  idleTimeout: 0s")),
        "watermark.idleTimeout: must be greater than 0, got \"0s\"\nwatermark.maxDrift: must be greater than 0, got \"0s\""
    );
}

#[test]
fn job_name_rules() {
    // The name names folders and storage prefixes: it cannot escape them.
    for bad in ["..", ".hidden", "a/b"] {
        assert_eq!(
            error_of(&with("name: visit-counter", &format!("name: \"{bad}\""))),
            format!("name: may contain only letters, digits, '-', '_' and '.', and must start with a letter or digit, got {bad:?}")
        );
    }
}

#[test]
fn parallelism_rules() {
    assert_eq!(
        error_of(&with(
            "name: visit-counter",
            "name: visit-counter\nparallelism: 0"
        )),
        "parallelism: must be at least 1, got 0"
    );
    assert_eq!(
        error_of(&with(
            "name: visit-counter",
            "name: visit-counter\nparallelism: 8\nmaxParallelism: 4"
        )),
        "parallelism: must not exceed maxParallelism (4), got 8"
    );
}

#[test]
fn aggregate_rules() {
    let agg = |text: &str| with("  - name: visits\n    function: count", text);
    assert_eq!(
        error_of(&agg("  - name: total\n    function: sum")),
        "aggregates[0].field: required for function sum"
    );
    assert_eq!(
        error_of(&agg(
            "  - name: visits\n    function: count\n    field: page"
        )),
        "aggregates[0].field: count takes no field; remove it"
    );
    assert_eq!(
        error_of(&agg(
            "  - name: n\n    function: count\n  - name: n\n    function: count"
        )),
        "aggregates[1].name: \"n\" is used by an earlier aggregate"
    );
    let e = error_of(&agg("  - name: partial\n    function: count"));
    assert!(
        e.starts_with("aggregates[0].name: \"partial\" is already a field of the output record"),
        "{e}"
    );
    let e = error_of(&agg("  - name: x\n    function: median\n    field: a"));
    assert!(e.starts_with("aggregates[0].function: unknown variant `median`, expected one of `count`, `sum`, `min`, `max`, `avg`, `countDistinct`"), "{e}");
}

#[test]
fn file_source_needs_an_event_time_field() {
    assert_eq!(
        error_of(&with("eventTime:\n  field: event_time\n", "")),
        "eventTime.field: required for a file source: name the field that holds each record's event time"
    );
}

#[test]
fn early_firing_rules() {
    assert_eq!(
        error_of(&with("everyEventTime: 2m", "everyEventTime: 2m\n    everyElements: 3")),
        "trigger.early: set only one of everyEventTime, everyProcessingTime, everyElements, got everyEventTime and everyElements"
    );
    assert_eq!(
        error_of(&with("everyEventTime: 2m", "everyElements: 0")),
        "trigger.early.everyElements: must be at least 1, got 0"
    );
}

#[test]
fn sink_rules() {
    assert_eq!(
        error_of(&with(
            "  stdout: {}",
            "  stdout: {}\n  file:\n    path: out.jsonl"
        )),
        "sink: set only one of stdout, file, discard, kafka, postgres, got stdout and file"
    );
    assert_eq!(
        error_of(&with("  stdout: {}", "  stdout: {}\nsideOutputs:\n  malformed:\n    stdout: {}\n  failOnMalformed: true")),
        "sideOutputs.failOnMalformed: cannot be true while sideOutputs.malformed is set: choose one"
    );
}

#[test]
fn kafka_sink_rules() {
    let kafka = |sink: &str, rest: &str| {
        with(
            "sink:\n  stdout: {}",
            &format!("sink:\n  kafka: {sink}\n{rest}"),
        )
    };
    assert_eq!(
        error_of(&kafka("{bootstrapServers: \"\", topic: out}", "")),
        "sink.kafka.bootstrapServers: must not be empty, e.g. \"localhost:9092\""
    );
    // A transaction must outlive a checkpoint interval plus a recovery.
    assert_eq!(
        error_of(&kafka(
            "{bootstrapServers: \"b:9092\", topic: out, properties: {transaction.timeout.ms: \"60000\"}}",
            "checkpoints: {interval: 30s, storage: file:///tmp/ck}"
        )),
        "sink.kafka.properties.transaction.timeout.ms: is 60000 ms, but a transaction stays open for a checkpoint interval (30s) plus the time to recover; set it above 90000 ms (interval + 60 s), or shorten checkpoints.interval"
    );
    assert_eq!(
        error_of(&kafka(
            "{bootstrapServers: \"b:9092\", topic: out, properties: {transaction.timeout.ms: soon}}",
            "checkpoints: {interval: 30s, storage: file:///tmp/ck}"
        )),
        "sink.kafka.properties.transaction.timeout.ms: must be a number of milliseconds, got \"soon\""
    );
    // The default (15 min) is too short for a 15 min interval.
    assert!(error_of(&kafka(
        "{bootstrapServers: \"b:9092\", topic: out}",
        "checkpoints: {interval: 15m, storage: file:///tmp/ck}"
    ))
    .starts_with("sink.kafka.properties.transaction.timeout.ms: is 900000 ms"));
    // At-least-once takes no transactions: no check.
    assert!(JobSpec::from_yaml(&kafka(
        "{bootstrapServers: \"b:9092\", topic: out}",
        "checkpoints: {interval: 15m, storage: file:///tmp/ck, mode: atLeastOnce}"
    ))
    .is_ok());
    assert_eq!(
        error_of(&kafka(
            "{bootstrapServers: \"b:9092\", topic: out}",
            "checkpoints: {interval: 10s, storage: file:///tmp/ck}\nsideOutputs: {late: {kafka: {bootstrapServers: \"other:9092\", topic: late}}}"
        )),
        "sideOutputs.late.kafka.bootstrapServers: must be the sink's (\"b:9092\"): side outputs are written in the sink's transactions, got \"other:9092\""
    );
}

#[test]
fn checkpoint_rules() {
    let ck = |text: &str| {
        with(
            "sink:\n  stdout: {}",
            &format!("sink:\n  stdout: {{}}\ncheckpoints: {text}"),
        )
    };
    assert_eq!(
        error_of(&ck("{interval: 0s, storage: file:///tmp/ck}")),
        "checkpoints.interval: must be greater than 0, got \"0s\""
    );
    assert_eq!(
        error_of(&ck(
            "{interval: 10s, timeout: 0ms, storage: file:///tmp/ck}"
        )),
        "checkpoints.timeout: must be greater than 0, got \"0s\""
    );
    assert_eq!(
        error_of(&ck("{interval: 10s, storage: /tmp/ck}")),
        "checkpoints.storage: expected file:///path/to/dir or s3://bucket/prefix, got \"/tmp/ck\""
    );
    // The same parser opens the storage: what passes here opens there.
    assert_eq!(
        error_of(&ck("{interval: 10s, storage: \"s3:///ck\"}")),
        "checkpoints.storage: expected file:///path/to/dir or s3://bucket/prefix, got \"s3:///ck\": the bucket is missing"
    );
    assert_eq!(
        error_of(&ck("{interval: 10s, storage: \"s3a://bucket/ck\"}")),
        "checkpoints.storage: expected file:///path/to/dir or s3://bucket/prefix, got \"s3a://bucket/ck\"; Hadoop's s3a://, s3n:// and Flink's s3p:// are spelled s3:// here"
    );
    assert_eq!(
        error_of(&ck("{interval: 10s, storage: file:///tmp/ck, retained: 0}")),
        "checkpoints.retained: must be at least 1, got 0"
    );
    let spec = JobSpec::from_yaml(&ck(
        "{interval: 10s, storage: file:///tmp/ck, minPause: 2s, tolerableFailures: 3}",
    ))
    .unwrap();
    let c = spec.checkpoints.unwrap();
    assert_eq!(
        (c.min_pause.as_millis(), c.tolerable_failures, c.retained),
        (2000, 3, 10)
    );
    let e = error_of(&ck("{interval: 10s, storage: file:///tmp/ck, mode: twice}"));
    assert!(
        e.starts_with(
            "checkpoints.mode: unknown variant `twice`, expected `exactlyOnce` or `atLeastOnce`"
        ),
        "{e}"
    );
}

#[test]
fn restart_strategy_rules_and_delays() {
    let rs = |text: &str| {
        with(
            "sink:\n  stdout: {}",
            &format!("sink:\n  stdout: {{}}\nrestartStrategy: {text}"),
        )
    };
    assert_eq!(
        error_of(&rs("{}")),
        "restartStrategy: set one of fixedDelay, exponentialBackoff"
    );
    assert_eq!(
        error_of(&rs("{exponentialBackoff: {initial: 10s, max: 1s}}")),
        "restartStrategy.exponentialBackoff.max: must be at least initial (10s), got \"1s\""
    );
    let spec = JobSpec::from_yaml(&rs(
        "{exponentialBackoff: {initial: 1s, max: 10s, attempts: 5}}",
    ))
    .unwrap();
    let r = spec.restart_strategy.unwrap();
    let delays: Vec<Option<u64>> = (1..=6)
        .map(|a| r.delay(a).map(|d| d.as_millis() as u64))
        .collect();
    assert_eq!(
        delays,
        vec![
            Some(1000),
            Some(2000),
            Some(4000),
            Some(8000),
            Some(10000),
            None
        ]
    );
    let spec = JobSpec::from_yaml(&rs("{fixedDelay: {attempts: 2, delay: 5s}}")).unwrap();
    let r = spec.restart_strategy.unwrap();
    assert_eq!(
        (r.delay(2), r.delay(3)),
        (Some(std::time::Duration::from_secs(5)), None)
    );
}

#[test]
fn kafka_source_rules() {
    let kafka = |text: &str| {
        with(
            "  file:\n    path: visits.jsonl",
            &format!("  kafka: {text}"),
        )
    };
    assert_eq!(
        error_of(&kafka("{bootstrapServers: \"\", topics: []}")),
        "source.kafka.bootstrapServers: must not be empty, e.g. \"127.0.0.1:9092\"\nsource.kafka.topics: name at least one topic"
    );
    let spec = JobSpec::from_yaml(&kafka("{bootstrapServers: \"127.0.0.1:9092\", topics: [visits], startFrom: latest, properties: {fetch.min.bytes: \"1\"}}")).unwrap();
    let k = spec.source.kafka.unwrap();
    assert_eq!((k.topics, k.bounded), (vec!["visits".to_string()], false));
    let e = error_of(&kafka(
        "{bootstrapServers: x, topics: [a], startFrom: middle}",
    ));
    assert!(
        e.starts_with(
            "source.kafka.startFrom: unknown variant `middle`, expected `earliest` or `latest`"
        ),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = with("size: 15m", "size: 0s").replace("everyEventTime: 2m", "everyElements: 0");
    let e = error_of(&yaml);
    assert_eq!(e.lines().count(), 2, "{e}");
}

#[test]
fn a_late_fraction_outside_zero_to_one() {
    let yaml = with(
        "  file:\n    path: visits.jsonl\n",
        "  generator: {keys: 10, lateFraction: 1.5}\n",
    )
    .replace("eventTime:\n  field: event_time\n", "");
    assert_eq!(
        error_of(&yaml),
        "source.generator.lateFraction: must be between 0 and 1 (a share of the events, e.g. 0.01), got 1.5"
    );
}

#[test]
fn a_select_job_has_no_key_window_or_aggregates() {
    let yaml = VALID.replace(
        "key: visit_id\n",
        "key: visit_id\nselect: [visit_id, \"\"]\n",
    );
    let e = error_of(&yaml);
    for expected in [
        "select[1]: must not be empty",
        "key: a select job passes records through unkeyed and unwindowed",
        "window: a select job passes records through unkeyed and unwindowed",
        "trigger: a select job passes records through unkeyed and unwindowed",
        "aggregates: a select job passes records through unkeyed and unwindowed",
    ] {
        assert!(e.contains(expected), "{expected:?} not in:\n{e}");
    }
}

#[test]
fn a_windowed_job_still_needs_key_window_and_aggregates() {
    let yaml =
        "name: j\nsource: {file: {path: in.jsonl}}\neventTime: {field: t}\nsink: {stdout: {}}\n";
    let e = error_of(yaml);
    for expected in [
        "key: name at least one field to key by",
        "window: set one of tumbling, sliding, session",
        "aggregates: name at least one aggregate",
    ] {
        assert!(e.contains(expected), "{expected:?} not in:\n{e}");
    }
}

/// The examples in examples/ are valid jobs.
#[test]
fn the_example_jobs_are_valid() {
    for text in [
        include_str!("../../../examples/visit-counter-local.yaml"),
        include_str!("../../../examples/visit-counter-postgres.yaml"),
        include_str!("../../../examples/events-to-postgres.yaml"),
        include_str!("../../../examples/generated-visits.yaml"),
        include_str!("../../../examples/order-enrichment.yaml"),
        include_str!("../../../examples/category-revenue.yaml"),
    ] {
        JobSpec::from_yaml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

#[test]
fn enrich_rules() {
    let job = |enrich: &str| {
        format!("name: e\nsource: {{file: {{path: o.jsonl}}}}\nenrich:\n{enrich}\nselect: [a]\nsink: {{stdout: {{}}}}\n")
    };
    assert_eq!(
        error_of(&job("  - {name: \"user id\", from: {}, key: \"\", on: \"\", fields: [\"\"]}")),
        [
            "enrich[0].name: \"user id\" may hold only letters, digits, '_' and '-' (it names the field added and the table's state)",
            "enrich[0].key: name the changelog record's key field, e.g. \"id\"",
            "enrich[0].on: name the record's field to look up, e.g. \"user_id\"",
            "enrich[0].fields[0]: must not be empty",
            "enrich[0].from: set one of file, kafka",
        ]
        .join("\n")
    );
    let user = "  - {name: user, from: {file: {path: u.jsonl}}, key: id, on: user_id}";
    assert_eq!(
        error_of(&job(&format!("{user}\n{user}"))),
        "enrich[1].name: \"user\" is used by an earlier lookup"
    );
    assert_eq!(
        error_of(&job("  - {name: user, from: {kafka: {bootstrapServers: \"\", topics: [], startFrom: latest, properties: {auto.offset.reset: latest}}, file: {paths: [a, b]}}, key: id, on: user_id}")),
        [
            "enrich[0].from: set only one of file, kafka, got file and kafka",
            // Each option's own problems, in the options' order.
            "enrich[0].from.file: set path, one file: a changelog's lines are applied in order (paths would interleave files)",
            "enrich[0].from.kafka.startFrom: a changelog is read from its start (the entries written before the job are the table): remove startFrom: latest",
            "enrich[0].from.kafka.properties.auto.offset.reset: \"latest\" would skip entries of the changelog after an offset it no longer has; a changelog is reread from its start (earliest): remove it",
            "enrich[0].from.kafka.bootstrapServers: must not be empty, e.g. \"127.0.0.1:9092\"",
            "enrich[0].from.kafka.topics: name at least one topic",
        ]
        .join("\n")
    );
    let item = "  - {name: item, from: {file: {path: i.jsonl}}, key: id, on: item_id}";
    assert_eq!(
        error_of(&job(&format!("{}\n{item}", user.replace("on: user_id", "on: item.owner")))),
        "enrich[0].on: \"item.owner\" is the entry of lookup \"item\", which is added after this one: only earlier lookups' fields can be looked up by"
    );
    JobSpec::from_yaml(&job(&format!(
        "{item}\n{}",
        user.replace("on: user_id", "on: item.owner")
    )))
    .unwrap();
    assert_eq!(
        error_of(&job(&format!("{user}, fieldz: [a]}}").replace("user_id}, fieldz", "user_id, fieldz"))),
        "enrich[0]: unknown field `fieldz`, expected one of `name`, `from`, `key`, `on`, `fields` (line 4, column 71)"
    );
    let generated = "name: g\nsource: {generator: {keys: 5}}\nenrich:\n  - {name: user, from: {file: {path: u.jsonl}}, key: id, on: value}\nkey: value\nwindow: {tumbling: {size: 1m}}\naggregates: [{name: n, function: count}]\nsink: {stdout: {}}\n";
    assert_eq!(
        error_of(generated),
        "enrich: a generator's events have no fields to look up by: use a file or kafka source"
    );
    let unmatched_without_enrich = "name: e\nsource: {file: {path: o.jsonl}}\nselect: [a]\nsink: {stdout: {}}\nsideOutputs: {unmatched: {stdout: {}}}\n";
    assert_eq!(
        error_of(unmatched_without_enrich),
        "sideOutputs.unmatched: only records of an enrich lookup can be unmatched, and the job has no enrich: remove it"
    );
}

#[test]
fn a_generator_has_nothing_to_select() {
    let yaml = "name: g\nsource: {generator: {keys: 5}}\nselect: [value]\nsink: {stdout: {}}\n";
    assert_eq!(
        error_of(yaml),
        "select: a generator's events have no fields to select: use a file or kafka source, or window the generated stream"
    );
}

/// Over several pods each pod runs a worker at least: the runtime and the
/// operator both ask.
#[test]
fn a_job_over_pods_needs_a_worker_per_pod() {
    let job = JobSpec::from_yaml(&format!("{VALID}parallelism: 2\n")).unwrap();
    assert_eq!(job.pods_problem(1), None);
    assert_eq!(job.pods_problem(2), None);
    assert_eq!(
        job.pods_problem(3).as_deref(),
        Some("3 pods need at least 3 workers, and parallelism is 2: raise parallelism or use fewer pods")
    );
}

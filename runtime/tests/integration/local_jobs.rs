//! Whole jobs on one machine: file in, file or stdout out, through the
//! engine's workers and the `streamjob` binary.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{opts, sum_field};
use serde_json::Value;
use streamjob_runtime::{run, JobSpec};

/// Output lines as JSON, without `emit_time` (wall-clock).
fn results_of(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            let emit_time = v.as_object_mut().unwrap().remove("emit_time");
            assert!(
                emit_time.is_some_and(|t| t.is_string()),
                "every result has an emit_time: {l}"
            );
            v
        })
        .collect()
}

fn visit(count: u64, partial: bool) -> Value {
    serde_json::json!({
        "visit_id": 1,
        "window_start": "2025-09-04T10:00:00Z",
        "window_end": "2025-09-04T10:15:00Z",
        "visits": count,
        "partial": partial,
    })
}

/// The visit-counter example, exactly: `streamjob run
/// examples/visit-counter-local.yaml` prints a partial count every time the
/// watermark (5 minutes behind) passes a 2-minute mark, then the final count
/// when the bounded input ends.
#[test]
fn the_visit_counter_example_prints_the_expected_windows() {
    let root = common::repo_root();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamjob"))
        .arg("run")
        .arg(root.join("examples/visit-counter-local.yaml"))
        .args(["--control-address", "off"])
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        results_of(&String::from_utf8_lossy(&out.stdout)),
        vec![
            visit(8, true),
            visit(10, true),
            visit(12, true),
            visit(12, false)
        ]
    );
    assert!(
        stderr.contains("12 records in, 4 results out, 0 late, 0 malformed"),
        "{stderr}"
    );
}

/// `streamjob demo`: the visit counter, generated visits and order enrichment on an in-process Kafka cluster. The
/// first run counts 10 visits (partials 8 and 10, committed to the
/// `visits_counter` topic with its checkpoints), is stopped after a
/// checkpoint, and the restored run reads only the 2 new visits and carries
/// the count on to the final 12; the results are read back from
/// `visits_counter`.
#[test]
fn demo_runs_with_no_setup() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamjob"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix('{').map(|rest| format!("{{{rest}")))
        .map(|l| {
            let mut v: Value = serde_json::from_str(&l).unwrap();
            v.as_object_mut().unwrap().remove("emit_time");
            v
        })
        .collect();
    assert_eq!(
        results,
        vec![
            visit(8, true),
            visit(10, true),
            visit(12, true),
            visit(12, false)
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("the restored job read 2 records"),
        "{stdout}"
    );
    assert!(stdout.contains("[demo 6/8]"), "{stdout}");
    // The generator step: every generated visit counted once or late.
    assert!(
        stdout.contains(" = 100000 visits, each in exactly one place."),
        "{stdout}"
    );
    // The enrichment step: the order enrichment's orders with their user's latest
    // email, and the two without a user or item, each with its reason.
    let orders: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("order "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(orders.len(), 6, "{stdout}");
    assert_eq!(orders[4]["invoice_id"], 343211);
    assert_eq!(orders[4]["user.email"], "s.adebayo@example.org");
    for reason in [
        "unmatched: no item with id 930 (orders[0]@5)",
        "unmatched: no user with id 182477 (orders[0]@6)",
    ] {
        assert!(stdout.contains(reason), "{stdout}");
    }
}

#[test]
fn an_invalid_job_file_fails_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "name: x\nsource: {file: {path: in.jsonl}}\neventTime: {field: t}\nkey: k\nwindow: {tumbling: {size: 0s}}\naggregates: [{name: n, function: count}]\nsink: {stdout: {}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamjob"))
        .arg("run")
        .arg(&job)
        .args(["--control-address", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "is not a valid job:\n  window.tumbling.size: must be greater than 0, got \"0s\""
        ),
        "{stderr}"
    );
}

/// `${env:NAME}` in a job file's string values comes from the environment
/// when the job loads (how secrets reach a job without being in its file);
/// a variable that is not set stops the start with the field named.
#[test]
fn a_job_file_takes_values_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"k\": \"a\", \"t\": 1000}\n{\"k\": \"a\", \"t\": 2000}\n",
    )
    .unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "name: x\nsource: {file: {path: in.jsonl}}\neventTime: {field: t}\nkey: k\n\
         window: {tumbling: {size: 10s}}\naggregates: [{name: n, function: count}]\n\
         sink: {file: {path: '${env:STREAMJOB_TEST_OUT}.jsonl'}}\n",
    )
    .unwrap();
    let run = |env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_streamjob"));
        command
            .arg("run")
            .arg(&job)
            .args(["--control-address", "off"])
            .env_remove("STREAMJOB_TEST_OUT");
        if let Some(value) = env {
            command.env("STREAMJOB_TEST_OUT", value);
        }
        command.output().unwrap()
    };
    let out = run(Some("counts"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = std::fs::read_to_string(dir.path().join("counts.jsonl")).unwrap();
    assert_eq!(results_of(&counts).len(), 1);
    assert_eq!(results_of(&counts)[0]["n"], 2);

    let out = run(None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "sink.file.path: ${env:STREAMJOB_TEST_OUT}: the environment has no STREAMJOB_TEST_OUT"
        ),
        "{stderr}"
    );
}

fn write_job(dir: &Path, extra: &str, body: &str) -> JobSpec {
    let yaml = format!(
        "name: t\nsource: {{file: {{path: in.jsonl}}}}\neventTime: {{field: ts}}\nkey: user\n\
         window: {{tumbling: {{size: 10s}}}}\n\
         aggregates: [{{name: n, function: count}}, {{name: total, function: sum, field: amount}}]\n\
         sink: {{file: {{path: out.jsonl}}}}\n{extra}"
    );
    std::fs::write(dir.join("in.jsonl"), body).unwrap();
    JobSpec::from_yaml(&yaml).unwrap()
}

/// Bad records go to the malformed side output with their reason and line;
/// the good ones are all counted.
#[test]
fn malformed_records_go_to_the_side_output_and_good_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let body = [
        r#"{"user": "a", "ts": 1000, "amount": 5}"#,
        r#"{"user": "a", "ts": 2000, "amount": 7"#,
        r#"{"ts": 3000, "amount": 1}"#,
        r#"{"user": "a", "amount": 1}"#,
        r#"{"user": "a", "ts": "soon", "amount": 1}"#,
        r#"{"user": "a", "ts": 4000, "amount": "ten"}"#,
        r#"{"user": 1.5, "ts": 4000, "amount": 1}"#,
        r#"[1, 2]"#,
        r#"{"user": "a", "ts": "1970-01-01T00:00:05Z", "amount": 2.5}"#,
        r#"{"user": "b", "ts": 6000}"#,
    ]
    .join("\n");
    let spec = write_job(
        dir.path(),
        "sideOutputs: {malformed: {file: {path: bad.jsonl}}}\n",
        &body,
    );
    let summary = run(&spec, &opts(dir.path())).unwrap();
    assert_eq!(
        (summary.records_in, summary.malformed, summary.results),
        (3, 7, 2)
    );

    let out = results_of(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    let mut out: Vec<String> = out.iter().map(|v| v.to_string()).collect();
    out.sort();
    assert_eq!(
        out,
        vec![
            r#"{"user":"a","window_start":"1970-01-01T00:00:00Z","window_end":"1970-01-01T00:00:10Z","n":2,"total":7.5,"partial":false}"#,
            r#"{"user":"b","window_start":"1970-01-01T00:00:00Z","window_end":"1970-01-01T00:00:10Z","n":1,"total":null,"partial":false}"#,
        ]
    );

    let bad: Vec<Value> = std::fs::read_to_string(dir.path().join("bad.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<(&str, &str)> = bad
        .iter()
        .map(|b| (b["source"].as_str().unwrap(), b["error"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 7);
    assert_eq!(reasons[0].0, "in.jsonl:2");
    assert!(reasons[0].1.starts_with("not valid JSON"), "{reasons:?}");
    assert_eq!(reasons[1], ("in.jsonl:3", "missing key field \"user\""));
    assert_eq!(
        reasons[2],
        ("in.jsonl:4", "missing event-time field \"ts\"")
    );
    assert!(
        reasons[3]
            .1
            .starts_with("event-time field \"ts\": expected an ISO-8601 timestamp"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[4],
        (
            "in.jsonl:6",
            "field \"amount\" must be a number for sum, got the string \"ten\""
        )
    );
    assert_eq!(
        reasons[5],
        (
            "in.jsonl:7",
            "key field \"user\" must be a string, an integer or a boolean, got the number 1.5"
        )
    );
    assert_eq!(reasons[6], ("in.jsonl:8", "not a JSON object"));
    assert_eq!(
        bad[4]["record"],
        r#"{"user": "a", "ts": 4000, "amount": "ten"}"#
    );
}

#[test]
fn fail_on_malformed_stops_the_job_with_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let body = "{\"user\": \"a\", \"ts\": 1000}\nnot json\n";
    let spec = write_job(dir.path(), "sideOutputs: {failOnMalformed: true}\n", body);
    let err = run(&spec, &opts(dir.path())).unwrap_err().to_string();
    assert!(
        err.starts_with("malformed record at in.jsonl:2 (not valid JSON"),
        "{err}"
    );
}

/// Elements later than end + allowed lateness go to the late output as they
/// were read; elements within it re-fire their window.
#[test]
fn late_elements_refire_or_go_to_the_late_output() {
    let dir = tempfile::tempdir().unwrap();
    let body = [
        r#"{"user": "a", "ts": 1000, "amount": 1}"#,
        r#"{"user": "a", "ts": 12000, "amount": 1}"#, // watermark 11999: [0,10s) fires
        r#"{"user": "a", "ts": 3000, "amount": 1}"#,  // within 5 s lateness: re-fires
        r#"{"user": "a", "ts": 16000, "amount": 1}"#, // watermark 15999: [0,10s) is gone
        r#"{"user": "a", "ts": 4000, "amount": 1}"#,  // late
    ]
    .join("\n");
    let spec = write_job(
        dir.path(),
        "allowedLateness: 5s\nsideOutputs: {late: {file: {path: late.jsonl}}}\n",
        &body,
    );
    let summary = run(&spec, &opts(dir.path())).unwrap();
    assert_eq!(summary.late, 1);
    let out = results_of(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    let counts: Vec<(String, u64)> = out
        .iter()
        .map(|v| {
            (
                v["window_start"].as_str().unwrap().to_string(),
                v["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("1970-01-01T00:00:00Z".to_string(), 1),
            ("1970-01-01T00:00:00Z".to_string(), 2),
            ("1970-01-01T00:00:10Z".to_string(), 2),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("late.jsonl")).unwrap(),
        "{\"user\": \"a\", \"ts\": 4000, \"amount\": 1}\n"
    );
}

/// A pseudo-random, out-of-order input with many keys.
fn shuffled_input(events: u64, keys: u64) -> String {
    let mut lines = Vec::new();
    let mut x: u64 = 7;
    for i in 0..events {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = (x >> 40) % 4000;
        let ts = i as i64 * 10 - jitter as i64;
        lines.push(format!(
            r#"{{"user": "u{}", "ts": {}, "amount": {}}}"#,
            (x >> 20) % keys,
            ts,
            (x >> 10) % 50
        ));
    }
    lines.join("\n")
}

fn sorted_results(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = results_of(&std::fs::read_to_string(dir.join("out.jsonl")).unwrap())
        .iter()
        .map(|v| v.to_string())
        .collect();
    out.sort();
    out
}

/// Keyed work spread over 4 workers gives exactly what 1 worker gives
/// (partial results included: watermarks travel in-band with the records),
/// and so does a state budget so small that every key lives in RocksDB.
#[test]
fn parallelism_and_spilling_do_not_change_results() {
    // One file: at parallelism above 1 one worker reads it and its records
    // are parsed on several threads, in order. Malformed lines in between
    // must come out in the order read, and the late ones be the same.
    let body: String = shuffled_input(20_000, 300)
        .lines()
        .enumerate()
        .map(|(i, line)| match i % 997 {
            13 => format!("{{\"user\": \"u{i}\", \"ts\": \"not a time\"}}\n"),
            500 => format!("line {i} is not JSON\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    let extra = "watermark: {outOfOrderness: 2s}\nallowedLateness: 1s\ntrigger: {early: {everyEventTime: 3s}}\n\
                 sideOutputs: {late: {file: {path: late.jsonl}}, malformed: {file: {path: bad.jsonl}}}\n";
    let mut outputs = Vec::new();
    for (parallelism, hot_keys) in [(1, 1_000_000), (4, 1_000_000), (3, 5)] {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = write_job(dir.path(), extra, &body);
        spec.parallelism = parallelism;
        spec.state.max_keys_in_memory = hot_keys;
        let summary = run(&spec, &opts(dir.path())).unwrap();
        assert_eq!(summary.records_in + summary.malformed, 20_000);
        if hot_keys == 5 {
            assert!(
                summary.keys_spilled > 1000,
                "spilled {}",
                summary.keys_spilled
            );
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let mut late: Vec<String> = read("late.jsonl").lines().map(str::to_string).collect();
        late.sort();
        outputs.push((sorted_results(dir.path()), late, read("bad.jsonl")));
    }
    assert!(outputs[0].0.len() > 1000, "results: {}", outputs[0].0.len());
    assert!(!outputs[0].1.is_empty(), "the input has late elements");
    assert_eq!(outputs[0].2.lines().count(), 41, "{}", outputs[0].2);
    assert!(
        outputs[0].2.contains(":14\"") && outputs[0].2.contains(":501\""),
        "{}",
        outputs[0].2
    );
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

/// Several files are several partitions: the watermark is their minimum, so
/// a file that is behind holds windows open for its records.
#[test]
fn files_are_partitions_with_their_own_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    // File a races ahead; file b's records are 25 s behind but not late,
    // because the watermark waits for b.
    let a: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"user": "x", "ts": {}}}"#, 30_000 + i * 1000))
        .collect();
    let b: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"user": "x", "ts": {}}}"#, 5_000 + i * 1000))
        .collect();
    std::fs::write(dir.path().join("a.jsonl"), a.join("\n")).unwrap();
    std::fs::write(dir.path().join("b.jsonl"), b.join("\n")).unwrap();
    let yaml =
        "name: t\nsource: {file: {paths: [a.jsonl, b.jsonl]}}\neventTime: {field: ts}\nkey: user\n\
                window: {tumbling: {size: 10s}}\naggregates: [{name: n, function: count}]\n\
                sink: {file: {path: out.jsonl}}\n";
    for parallelism in [1, 2] {
        let mut spec = JobSpec::from_yaml(yaml).unwrap();
        spec.parallelism = parallelism;
        let _ = std::fs::remove_file(dir.path().join("out.jsonl"));
        let summary = run(&spec, &opts(dir.path())).unwrap();
        assert_eq!(summary.late, 0, "parallelism {parallelism}");
        let total: u64 = sum_field(&sorted_results(dir.path()), "n");
        assert_eq!(total, 80, "parallelism {parallelism}");
    }
}

/// Generated events over two splits, with watermark alignment holding the
/// faster split back, give the same final windows as one split.
#[test]
fn generator_splits_with_alignment_give_the_same_windows() {
    let yaml =
        "name: g\nsource: {generator: {events: 200000, keys: 50, eventsPerMs: 10}}\nkey: key\n\
                watermark: {maxDrift: 2s}\nwindow: {tumbling: {size: 1s}}\n\
                aggregates: [{name: n, function: count}, {name: s, function: sum, field: value}]\n\
                sink: {file: {path: out.jsonl}}\n";
    let mut outputs = Vec::new();
    for parallelism in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = JobSpec::from_yaml(yaml).unwrap();
        spec.parallelism = parallelism;
        let summary = run(&spec, &opts(dir.path())).unwrap();
        assert_eq!((summary.records_in, summary.late), (200_000, 0));
        outputs.push(sorted_results(dir.path()));
    }
    // 200,000 events at 10 per ms span 20 s: 20 windows of 50 keys.
    assert_eq!(outputs[0].len(), 20 * 50);
    let total: u64 = sum_field(&outputs[0], "n");
    assert_eq!(total, 200_000);
    assert_eq!(outputs[0], outputs[1]);
}

/// A generator's late fraction: that share of events is stamped an hour
/// back, behind the watermark, and goes to the late side output; every event
/// is either counted in a window or written there, never both, never lost.
#[test]
fn a_generators_late_fraction_goes_to_the_late_output() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: g\nsource: {generator: {events: 100000, keys: 20, eventsPerMs: 10, \
                lateFraction: 0.1, lateBy: 1h}}\nkey: key\nwindow: {tumbling: {size: 1s}}\n\
                aggregates: [{name: n, function: count}]\nsink: {file: {path: out.jsonl}}\n\
                sideOutputs: {late: {file: {path: late.jsonl}}}\n";
    let spec = JobSpec::from_yaml(yaml).unwrap();
    let summary = run(&spec, &opts(dir.path())).unwrap();
    let late = std::fs::read_to_string(dir.path().join("late.jsonl")).unwrap();
    let late = late.lines().count() as u64;
    assert_eq!(late, summary.late);
    let counted = sum_field(&sorted_results(dir.path()), "n");
    assert_eq!(counted + late, 100_000);
    // 10% of 100,000, give or take (the first events, before any
    // watermark, are not late yet).
    assert!((9_000..=11_000).contains(&late), "{late} late");
}

/// The generated-visits example runs as the README shows (unpaced here):
/// every visit counted or late, about 1% late.
#[test]
fn the_generated_visits_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let text = include_str!("../../../examples/generated-visits.yaml");
    let mut spec = JobSpec::from_yaml(text).unwrap();
    spec.source.generator.as_mut().unwrap().rate = None;
    let summary = run(&spec, &opts(dir.path())).unwrap();
    let out = std::fs::read_to_string(dir.path().join("generated-visits.out.jsonl")).unwrap();
    let counted = sum_field(
        &results_of(&out)
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>(),
        "visits",
    );
    assert_eq!(counted + summary.late, 200_000);
    assert_eq!(summary.results, 3_000, "1,000 visitors in 3 windows");
    assert!((1_600..=2_400).contains(&summary.late), "{}", summary.late);
}

/// A select job: each record's selected fields (a dotted path reaches into
/// an object; a missing field is null) pass straight to the sink, no key,
/// no window, no event time needed.
#[test]
fn a_select_job_passes_the_selected_fields_through() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"event_id\": \"e1\", \"user\": {\"name\": \"ann\"}, \"location\": \"oslo\", \"extra\": 1}\n\
         {\"event_id\": \"e2\", \"user\": {\"name\": \"bo\"}}\n\
         not json\n",
    )
    .unwrap();
    let spec = JobSpec::from_yaml(
        "name: sel\nsource: {file: {path: in.jsonl}}\nselect: [event_id, user.name, location]\n\
         sink: {file: {path: out.jsonl}}\nsideOutputs: {malformed: {file: {path: bad.jsonl}}}\n",
    )
    .unwrap();
    let summary = run(&spec, &opts(dir.path())).unwrap();
    assert_eq!((summary.results, summary.malformed), (2, 1));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(),
        "{\"event_id\":\"e1\",\"user.name\":\"ann\",\"location\":\"oslo\"}\n\
         {\"event_id\":\"e2\",\"user.name\":\"bo\",\"location\":null}\n"
    );
}

/// A select job reading one file at parallelism 2: the other worker parses
/// parts of its batches while the reading worker reads on, yet the output is
/// parallelism 1's, line for line and in order (a select job keeps each
/// record on the worker that read it), malformed records included.
#[test]
fn a_select_job_at_parallelism_2_writes_what_parallelism_1_writes() {
    let mut input = String::new();
    for i in 0..5_000 {
        if i % 97 == 13 {
            input.push_str(&format!("{{\"event_id\": \"e{i}\", broken\n"));
        } else {
            input.push_str(&format!(
                "{{\"event_id\": \"e{i}\", \"user\": {{\"name\": \"u{}\"}}, \"n\": {i}}}\n",
                i % 7
            ));
        }
    }
    let output = |parallelism: u32| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.jsonl"), &input).unwrap();
        let spec = JobSpec::from_yaml(&format!(
            "name: sel\nparallelism: {parallelism}\nsource: {{file: {{path: in.jsonl}}}}\n\
             select: [event_id, user.name, n]\nsink: {{file: {{path: out.jsonl}}}}\n\
             sideOutputs: {{malformed: {{file: {{path: bad.jsonl}}}}}}\n"
        ))
        .unwrap();
        let summary = run(&spec, &opts(dir.path())).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        (summary.results, read("out.jsonl"), read("bad.jsonl"))
    };
    let (results, out, bad) = output(1);
    assert_eq!(results, 5_000 - 52);
    assert_eq!(bad.lines().count(), 52);
    assert_eq!(output(2), (results, out, bad));
}

/// `streamjob demo --ui`: after the demo, the visit counter runs on from its
/// latest checkpoint, reading the visits a producer keeps adding (one in
/// 500 malformed), with its dashboard at the address it prints, until the
/// process is stopped.
#[test]
fn demo_ui_keeps_the_visit_counter_running_with_its_dashboard() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_streamjob"))
        .args(["demo", "--ui", "--ui-address", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Killed<'a>(&'a mut std::process::Child);
    impl Drop for Killed<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let demo = Killed(&mut demo);
    let stdout = std::io::BufReader::new(demo.0.stdout.take().unwrap());
    let mut said = String::new();
    let mut address = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if let Some(rest) = line.split_once("Its dashboard: http://") {
            address = rest.1.split_once('/').map(|(a, _)| a.to_string());
            break;
        }
    }
    let api = address.unwrap_or_else(|| panic!("no dashboard address in:\n{said}"));
    assert!(said.contains("[demo 8/8]"), "the demo ran first:\n{said}");

    let (code, page) = common::http::http(&api, "GET", "/", None);
    assert_eq!(code, 200);
    assert!(page.contains("<title>Streamjob</title>"), "{page}");
    let status = || -> streamjob_api::JobStatus {
        serde_json::from_str(&common::http::http(&api, "GET", "/status", None).1).unwrap()
    };
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            let s = status();
            // The workers hand their malformed records over once a second.
            s.records_in >= 600 && s.malformed >= 1 && !s.recent_malformed.is_empty()
        }),
        "{:?}",
        status()
    );
    let s = status();
    assert_eq!(s.job, "visit-counter");
    assert_eq!(s.state, streamjob_api::JobState::Running);
    let from = s
        .restored_from
        .expect("restored from the demo's checkpoint");
    assert!(from.contains("/checkpoints/chk-"), "{from}");
    // 200 visits a second leave the worker waiting for Kafka most of the
    // time: that wait, inside the source's poll, is idle time.
    let [worker] = s.workers.as_slice() else {
        panic!("{:?}", s.workers);
    };
    assert!(worker.time.idle > 0.5, "{worker:?}");
    assert_eq!(worker.partitions[0].id, "kafka:visits:0");
    let bad = &s.recent_malformed[0];
    assert!(
        bad.error.contains("event_time") && bad.location.starts_with("visits[0]@"),
        "{bad:?}"
    );
    // The demo's job has no control token (it listens on loopback): the
    // page's savepoint request, as the page sends it, is taken.
    let (code, body) = common::http::http(&api, "POST", "/savepoints", Some("{}"));
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].clone();
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let (_, sp) = common::http::http(&api, "GET", &format!("/savepoints/{id}"), None);
            sp.contains("\"completed\"")
        }),
        "savepoint {id} did not complete"
    );
}

//! One record must never hang, crash or fail a job: event times at the
//! edges of the number range, far in the future, or too far ahead of the
//! wall clock each go where they belong, and the rest of the output stays
//! exact.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::opts;
use serde_json::Value;
use streamjob_runtime::{run, JobSpec, RunSummary};

/// A job counting records per user in 1-minute windows over `in.jsonl`,
/// with malformed records to `bad.jsonl` and late ones to `late.jsonl`.
fn job(dir: &Path, event_time: &str, records: &[&str]) -> JobSpec {
    job_over_bytes(dir, event_time, records.join("\n").as_bytes())
}

/// The same job over an input file holding `input`.
fn job_over_bytes(dir: &Path, event_time: &str, input: &[u8]) -> JobSpec {
    std::fs::write(dir.join("in.jsonl"), input).unwrap();
    JobSpec::from_yaml(&format!(
        "name: t\nsource: {{file: {{path: in.jsonl}}}}\neventTime: {{field: ts{event_time}}}\n\
         key: user\nwindow: {{tumbling: {{size: 1m}}}}\naggregates: [{{name: n, function: count}}]\n\
         sink: {{file: {{path: out.jsonl}}}}\n\
         sideOutputs: {{malformed: {{file: {{path: bad.jsonl}}}}, late: {{file: {{path: late.jsonl}}}}}}\n"
    ))
    .unwrap()
}

/// Runs the job on a thread; a job that has not ended within `limit` fails
/// the test instead of hanging it.
fn run_within(spec: JobSpec, dir: &Path, limit: Duration) -> RunSummary {
    let opts = opts(dir);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(run(&spec, &opts).map_err(|e| e.to_string()));
    });
    match done_rx.recv_timeout(limit) {
        Ok(result) => result.unwrap(),
        Err(_) => panic!("the job did not end within {limit:?}"),
    }
}

/// `(user, window_start, n)` of each result, sorted.
fn counts(dir: &Path) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    let mut counts: Vec<_> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["user"].as_str().unwrap().to_string(),
                v["window_start"].as_str().unwrap().to_string(),
                v["n"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    counts
}

/// `(line, error)` of each malformed record.
fn malformed(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("bad.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["source"].as_str().unwrap().to_string(),
                v["error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count(user: &str, start: &str, n: u64) -> (String, String, u64) {
    (user.into(), start.into(), n)
}

/// A key's panes years apart: the window operator jumps the gap between
/// them instead of stepping across it a minute at a time (which never
/// ended). The year-9999 record is valid here (`maxAhead` allows it).
#[test]
fn a_far_future_event_time_does_not_hang_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let spec = job(
        dir.path(),
        ", maxAhead: 3650000d",
        &[
            r#"{"user": "a", "ts": "2025-09-04T10:00:10Z"}"#,
            r#"{"user": "b", "ts": "2025-09-04T10:00:20Z"}"#,
            r#"{"user": "a", "ts": "2025-09-04T10:00:30Z"}"#,
            r#"{"user": "a", "ts": "2025-09-04T10:01:10Z"}"#,
            r#"{"user": "b", "ts": "2025-09-04T10:01:20Z"}"#,
            r#"{"user": "a", "ts": "2025-09-04T10:02:30Z"}"#,
            r#"{"user": "a", "ts": "9999-12-31T23:58:30Z"}"#,
        ],
    );
    let summary = run_within(spec, dir.path(), Duration::from_secs(120));
    assert_eq!(
        (summary.records_in, summary.malformed, summary.late),
        (7, 0, 0)
    );
    assert_eq!(
        counts(dir.path()),
        [
            count("a", "2025-09-04T10:00:00Z", 2),
            count("a", "2025-09-04T10:01:00Z", 1),
            count("a", "2025-09-04T10:02:00Z", 1),
            count("a", "9999-12-31T23:58:00Z", 1),
            count("b", "2025-09-04T10:00:00Z", 1),
            count("b", "2025-09-04T10:01:00Z", 1),
        ]
    );
}

/// Event times at the edges of the number range overflowed window
/// assignment (a panic in every restart); they are the record's fault.
#[test]
fn event_times_at_the_edge_of_the_range_go_to_the_malformed_output() {
    let dir = tempfile::tempdir().unwrap();
    let spec = job(
        dir.path(),
        "",
        &[
            r#"{"user": "a", "ts": "2025-09-04T10:00:10Z"}"#,
            r#"{"user": "a", "ts": 9223372036854775807}"#,
            r#"{"user": "a", "ts": 18446744073709551615}"#,
            r#"{"user": "a", "ts": 1e300}"#,
            r#"{"user": "a", "ts": -9223372036854775808}"#,
            r#"{"user": "a", "ts": "2000000000000000000"}"#,
            r#"{"user": "a", "ts": "2025-09-04T10:00:20Z"}"#,
        ],
    );
    let summary = run_within(spec, dir.path(), Duration::from_secs(120));
    assert_eq!(
        (summary.records_in, summary.malformed, summary.late),
        (2, 5, 0)
    );
    assert_eq!(counts(dir.path()), [count("a", "2025-09-04T10:00:00Z", 2)]);
    let bad = malformed(dir.path());
    let lines: Vec<&str> = bad.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "in.jsonl:2",
            "in.jsonl:3",
            "in.jsonl:4",
            "in.jsonl:5",
            "in.jsonl:6"
        ]
    );
    for (line, error) in &bad {
        assert!(
            error.starts_with("event-time field \"ts\": ")
                && error.contains("is outside the supported range, years 0001 to 9999"),
            "{line}: {error}"
        );
    }
}

/// A record stamped years ahead (a mistyped year) would move the watermark
/// so far that every later record is late; by default (`maxAhead: 1d`) it
/// goes to the malformed output and time does not move.
#[test]
fn an_event_time_too_far_ahead_of_the_wall_clock_is_malformed_not_time() {
    let dir = tempfile::tempdir().unwrap();
    let spec = job(
        dir.path(),
        "",
        &[
            r#"{"user": "a", "ts": "2025-09-04T10:00:10Z"}"#,
            r#"{"user": "a", "ts": "9025-09-04T10:00:40Z"}"#,
            r#"{"user": "a", "ts": "2025-09-04T10:00:50Z"}"#,
            r#"{"user": "b", "ts": "2025-09-04T10:00:30Z"}"#,
        ],
    );
    let summary = run_within(spec, dir.path(), Duration::from_secs(120));
    assert_eq!(
        (summary.records_in, summary.malformed, summary.late),
        (3, 1, 0)
    );
    assert_eq!(
        counts(dir.path()),
        [
            count("a", "2025-09-04T10:00:00Z", 2),
            count("b", "2025-09-04T10:00:00Z", 1),
        ]
    );
    let bad = malformed(dir.path());
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, "in.jsonl:2");
    assert!(
        bad[0].1.starts_with(
            "event-time field \"ts\": 9025-09-04T10:00:40Z is more than eventTime.maxAhead (1d) ahead of the wall clock ("
        ),
        "{}",
        bad[0].1
    );
}

/// A line that is not UTF-8 failed the whole job (with no file or line
/// named); now it is malformed, with where its first bad byte is, as a Kafka
/// record's bytes are. A byte-order mark at the start of the file no longer
/// costs the first record.
#[test]
fn invalid_utf8_is_a_malformed_record_and_a_bom_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = b"\xEF\xBB\xBF".to_vec();
    input.extend_from_slice(br#"{"user": "a", "ts": "2025-09-04T10:00:10Z"}"#);
    input.extend_from_slice(b"\n{\"user\": \"a\xff\", \"ts\": \"2025-09-04T10:00:20Z\"}\n");
    input.extend_from_slice(br#"{"user": "a", "ts": "2025-09-04T10:00:30Z"}"#);
    let spec = job_over_bytes(dir.path(), "", &input);
    let summary = run_within(spec, dir.path(), Duration::from_secs(120));
    assert_eq!(
        (summary.records_in, summary.malformed, summary.late),
        (2, 1, 0)
    );
    assert_eq!(counts(dir.path()), [count("a", "2025-09-04T10:00:00Z", 2)]);
    assert_eq!(
        malformed(dir.path()),
        [(
            "in.jsonl:2".to_string(),
            "not valid UTF-8 (from byte 11 of the record)".to_string()
        )]
    );
    let bad = std::fs::read_to_string(dir.path().join("bad.jsonl")).unwrap();
    let record: Value = serde_json::from_str(bad.trim()).unwrap();
    assert_eq!(
        record["record"],
        "{\"user\": \"a\u{FFFD}\", \"ts\": \"2025-09-04T10:00:20Z\"}"
    );
}

mod properties {
    //! Arbitrary input through the whole record path (decode, key, window,
    //! sink): nothing panics or hangs, and no record is lost: every line is
    //! counted in a result, late, or malformed.

    use super::*;
    use proptest::prelude::*;

    fn any_json() -> impl Strategy<Value = Value> {
        crate::common::json::any_json("[a-z]{1,4}")
    }

    /// An event time: mostly near each other (so windows fill and fire),
    /// sometimes anything at all.
    fn event_time() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => (1_756_980_000_000i64..1_756_980_600_000).prop_map(Value::from),
            1 => (1_756_980_000i64..1_756_980_600).prop_map(|s| {
                Value::from(streamjob_runtime::time::format_time(s * 1000))
            }),
            1 => any_json(),
        ]
    }

    /// One input line: a record with arbitrary fields, or arbitrary text.
    fn line() -> impl Strategy<Value = String> {
        let user = prop_oneof![
            4 => "[ab]".prop_map(Value::from),
            1 => any_json(),
        ];
        let record = (
            prop::option::weighted(0.95, user),
            prop::option::weighted(0.95, event_time()),
            prop::option::of(any_json()),
        )
            .prop_map(|(user, ts, amount)| {
                let mut m = serde_json::Map::new();
                if let Some(user) = user {
                    m.insert("user".into(), user);
                }
                if let Some(ts) = ts {
                    m.insert("ts".into(), ts);
                }
                if let Some(amount) = amount {
                    m.insert("amount".into(), amount);
                }
                Value::Object(m).to_string()
            });
        prop_oneof![
            8 => record,
            1 => any_json().prop_map(|v| v.to_string()),
            1 => "[^\n]{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn every_line_is_counted_late_or_malformed(lines in prop::collection::vec(line(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let input = lines.join("\n");
            std::fs::write(dir.path().join("in.jsonl"), &input).unwrap();
            let spec = JobSpec::from_yaml(
                "name: t\nsource: {file: {path: in.jsonl}}\neventTime: {field: ts}\n\
                 watermark: {outOfOrderness: 1m}\nkey: user\nwindow: {tumbling: {size: 1m}}\n\
                 aggregates: [{name: n, function: count}, {name: total, function: sum, field: amount}, \
                 {name: top, function: max, field: amount}]\n\
                 sink: {file: {path: out.jsonl}}\n\
                 sideOutputs: {malformed: {file: {path: bad.jsonl}}, late: {file: {path: late.jsonl}}}\n",
            )
            .unwrap();
            let summary = run_within(spec, dir.path(), Duration::from_secs(60));
            // Blank lines (ASCII whitespace, after a byte-order mark at the
            // start) are no records.
            let non_empty = input
                .strip_prefix('\u{FEFF}')
                .unwrap_or(&input)
                .lines()
                .filter(|l| !l.trim_ascii().is_empty())
                .count() as u64;
            prop_assert_eq!(summary.records_in + summary.malformed, non_empty);
            let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default();
            let counted: u64 = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["n"].as_u64().unwrap())
                .sum();
            prop_assert_eq!(counted + summary.late, summary.records_in);
            let bad = std::fs::read_to_string(dir.path().join("bad.jsonl")).unwrap_or_default();
            prop_assert_eq!(bad.lines().count() as u64, summary.malformed);
        }
    }
}

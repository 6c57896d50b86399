//! Whole jobs over many partitions and workers against a brute-force model.
//!
//! Each partition (a file) is out of order by less than the out-of-orderness
//! bound, so no element is late whatever order the workers interleave in,
//! and every window's final result is fixed: the model computes it by
//! brute force from all elements. Parallelism, the number of partitions and
//! the window kind are random.

use crate::common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;
use streamjob_runtime::{run, JobSpec};

#[derive(Debug, Clone)]
struct Rec {
    key: u8,
    ts: i64,
    amount: i64,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

const OUT_OF_ORDERNESS: i64 = 50;

/// Final (count, sum, min) per (key, start, end), by brute force.
fn model(kind: Kind, partitions: &[Vec<Rec>]) -> BTreeMap<(String, i64, i64), (u64, i64, i64)> {
    let mut by_key: BTreeMap<String, Vec<&Rec>> = BTreeMap::new();
    for r in partitions.iter().flatten() {
        by_key.entry(format!("k{}", r.key)).or_default().push(r);
    }
    let mut out = BTreeMap::new();
    for (key, mut recs) in by_key {
        let mut windows: Vec<(i64, i64)> = Vec::new();
        match kind {
            Kind::Tumbling(size) => {
                for r in &recs {
                    let start = r.ts.div_euclid(size) * size;
                    windows.push((start, start + size));
                }
            }
            Kind::Sliding(size, slide) => {
                for r in &recs {
                    let mut start = r.ts.div_euclid(slide) * slide;
                    while start > r.ts - size {
                        windows.push((start, start + size));
                        start -= slide;
                    }
                }
            }
            Kind::Session(gap) => {
                recs.sort_by_key(|r| r.ts);
                let mut cur: Option<(i64, i64)> = None;
                for r in &recs {
                    cur = match cur {
                        Some((s, e)) if r.ts <= e => Some((s, e.max(r.ts + gap))),
                        Some(done) => {
                            windows.push(done);
                            Some((r.ts, r.ts + gap))
                        }
                        None => Some((r.ts, r.ts + gap)),
                    };
                }
                windows.extend(cur);
            }
        }
        windows.sort();
        windows.dedup();
        for (s, e) in windows {
            let inside: Vec<&&Rec> = recs.iter().filter(|r| r.ts >= s && r.ts < e).collect();
            let sum = inside.iter().map(|r| r.amount).sum();
            let min = inside.iter().map(|r| r.amount).min().unwrap();
            out.insert((key.clone(), s, e), (inside.len() as u64, sum, min));
        }
    }
    out
}

fn partitions() -> impl Strategy<Value = Vec<Vec<Rec>>> {
    // Each partition walks forward in time and jitters each element back by
    // less than the out-of-orderness bound. Times are even and session gaps
    // odd, so no element lands exactly on the end of a session that has
    // already fired and been cleaned up (it would start a new session, as in
    // Flink, where this model would merge).
    let partition = prop::collection::vec(
        (0u8..5, 0i64..15, 0i64..OUT_OF_ORDERNESS / 2, -20i64..100),
        0..80,
    )
    .prop_map(|steps| {
        let mut clock = 0;
        steps
            .into_iter()
            .map(|(key, advance, jitter, amount)| {
                clock += advance;
                Rec {
                    key,
                    ts: 2 * (clock - jitter).max(0),
                    amount,
                }
            })
            .collect::<Vec<_>>()
    });
    prop::collection::vec(partition, 1..6)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (5i64..200).prop_map(Kind::Tumbling),
        (1i64..5, 5i64..60).prop_map(|(factor, slide)| Kind::Sliding(slide * factor, slide)),
        (0i64..40).prop_map(|g| Kind::Session(2 * g + 1)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn final_results_match_the_model(parts in partitions(), kind in kind(), parallelism in 1u32..5, hot in prop_oneof![Just(2u64), Just(1_000_000u64)]) {
        let dir = tempfile::tempdir().unwrap();
        let mut names = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let name = format!("p{i}.jsonl");
            let lines: Vec<String> = p
                .iter()
                .map(|r| format!(r#"{{"k": "k{}", "t": {}, "a": {}}}"#, r.key, r.ts, r.amount))
                .collect();
            std::fs::write(dir.path().join(&name), lines.join("\n")).unwrap();
            names.push(name);
        }
        let window = match kind {
            Kind::Tumbling(size) => format!("{{tumbling: {{size: {size}ms}}}}"),
            Kind::Sliding(size, slide) => format!("{{sliding: {{size: {size}ms, slide: {slide}ms}}}}"),
            Kind::Session(gap) => format!("{{session: {{gap: {gap}ms}}}}"),
        };
        let yaml = format!(
            "name: m\nparallelism: {parallelism}\nsource: {{file: {{paths: [{}]}}}}\neventTime: {{field: t}}\n\
             watermark: {{outOfOrderness: {OUT_OF_ORDERNESS}ms}}\nkey: k\nwindow: {window}\n\
             aggregates: [{{name: n, function: count}}, {{name: s, function: sum, field: a}}, {{name: lo, function: min, field: a}}]\n\
             sink: {{file: {{path: out.jsonl}}}}\nstate: {{maxKeysInMemory: {hot}}}\n",
            names.join(", ")
        );
        let spec = JobSpec::from_yaml(&yaml).unwrap();
        let opts = common::opts(dir.path());
        let summary = run(&spec, &opts).unwrap();
        prop_assert_eq!(summary.late, 0);

        let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default();
        let mut actual = BTreeMap::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            prop_assert_eq!(&v["partial"], &Value::Bool(false));
            let time = |f: &str| chrono::DateTime::parse_from_rfc3339(v[f].as_str().unwrap()).unwrap().timestamp_millis();
            let window = (v["k"].as_str().unwrap().to_string(), time("window_start"), time("window_end"));
            let values = (v["n"].as_u64().unwrap(), v["s"].as_i64().unwrap(), v["lo"].as_i64().unwrap());
            prop_assert!(actual.insert(window.clone(), values).is_none(), "window {:?} fired twice", window);
        }
        prop_assert_eq!(actual, model(kind, &parts));
    }
}

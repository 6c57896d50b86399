//! What reading a record costs, by parser, on the records the JSON
//! benchmarks send (`scripts/bench-json.sh`'s visits, and a wider nested
//! order like those the enrichment examples read).
//!
//! - `whole_value`: the record parsed into a `serde_json::Value`, then the
//!   job's paths read from it (the path before `record::decode`).
//! - `decoded`: `RecordParser::parse`, the whole event as the runtime
//!   builds it (the scanner, falling back to serde_json).
//! - `fields_serde`: only the job's paths' values, serde_json's parser
//!   driven to keep them and skip the rest (`record/decode/serde_path.rs`).
//! - `fields_scan`: the same values by the purpose-built scanner
//!   (`record/decode/scan.rs`).
//! - `sonic_get_many`: sonic-rs finding the key's and the time's values
//!   with its SIMD skipping; key and event time are then read as `decoded`
//!   reads them.
//!
//! Before timing, each parser is shown a record cut short after the job's
//! fields: a parser that stops once it has found them accepts it, and the
//! runtime would count a truncated record instead of sending it to the
//! malformed output.
//!
//! Run: `cargo bench -p streamjob-runtime --bench decode`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use streamjob_runtime::record::{parse_object, RecordParser, Slots, WantedFields};
use streamjob_runtime::spec::TimeFormat;
use streamjob_runtime::time::parse_event_time_str;
use streamjob_runtime::JobSpec;

const RECORDS: usize = 10_000;

fn visits() -> Vec<String> {
    (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"event_id":{},"visit_id":"v{:05}","event_time":{},"page":"/p/{:03}"}}"#,
                10_000_000 + i,
                (i * 7919) % 1_000,
                1_767_225_600_000u64 + i as u64,
                i % 1000
            )
        })
        .collect()
}

fn orders() -> Vec<String> {
    (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"order_id":"o-{i:08}","customer":{{"id":"c{:04}","name":"Customer {i}","tier":"gold","address":{{"city":"Lisbon","zip":"1000-{:03}"}}}},"event_time":"2026-01-01T00:{:02}:{:02}.{:03}Z","items":[{{"sku":"s1","qty":2,"price":9.99}},{{"sku":"s2","qty":1,"price":120.5}}],"amount":{}.25,"currency":"EUR","channel":"web"}}"#,
                i % 5000,
                i % 1000,
                (i / 60_000) % 60,
                (i / 1000) % 60,
                i % 1000,
                i % 500
            )
        })
        .collect()
}

fn job(key: &str, time: &str, amount: Option<&str>) -> RecordParser {
    let aggregates = match amount {
        Some(field) => format!(
            "[{{name: n, function: count}}, {{name: total, function: sum, field: {field}}}]"
        ),
        None => "[{name: n, function: count}]".to_string(),
    };
    let spec = JobSpec::from_yaml(&format!(
        "name: b\nsource: {{file: {{path: x}}}}\neventTime: {{field: {time}}}\nkey: {key}\n\
         window: {{tumbling: {{size: 1m}}}}\naggregates: {aggregates}\nsink: {{discard: {{}}}}\n"
    ))
    .expect("a valid job");
    RecordParser::new(&spec)
}

/// sonic-rs: the key and the event time at their paths.
fn sonic(tree: &sonic_rs::PointerTree, text: &str) -> Option<(String, i64)> {
    use sonic_rs::JsonValueTrait;
    let found = sonic_rs::get_many(text, tree).ok()?;
    let key = found.first()?.as_ref()?.as_str()?.to_string();
    let time = found.get(1)?.as_ref()?;
    let ts = match time.as_i64() {
        Some(ts) => ts,
        None => parse_event_time_str(time.as_str()?, TimeFormat::Auto).ok()?,
    };
    Some((key, ts))
}

fn bench(c: &mut Criterion) {
    let sets = [
        (
            "visits",
            visits(),
            job("visit_id", "event_time", None),
            vec![vec!["visit_id"], vec!["event_time"]],
            WantedFields::of_dotted(&["visit_id", "event_time"]),
        ),
        (
            "orders",
            orders(),
            job("customer.id", "event_time", Some("amount")),
            vec![vec!["customer", "id"], vec!["event_time"]],
            WantedFields::of_dotted(&["customer.id", "event_time", "amount"]),
        ),
    ];
    for (name, records, parser, paths, wanted) in &sets {
        let mut tree = sonic_rs::PointerTree::new();
        for path in paths {
            tree.add_path(path.iter());
        }
        let truncated = &records[0][..records[0].len() - 3];
        println!(
            "{name}: a record cut short ({truncated:?}): decoded {}, fields_scan {}, sonic_get_many {}",
            verdict(parser.parse(truncated).is_ok()),
            verdict(wanted.scan(truncated, &mut Slots::new())),
            verdict(sonic(&tree, truncated).is_some()),
        );
        let bytes: usize = records.iter().map(String::len).sum();
        let mut group = c.benchmark_group(*name);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function("whole_value", |b| {
            b.iter_batched(
                || (),
                |()| {
                    for r in records {
                        let value = parse_object(r).expect("valid");
                        std::hint::black_box(parser.from_value(&value).expect("an event"));
                    }
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("decoded", |b| {
            b.iter(|| {
                for r in records {
                    std::hint::black_box(parser.parse(r).expect("an event"));
                }
            })
        });
        group.bench_function("fields_serde", |b| {
            b.iter(|| {
                let mut slots = Slots::new();
                for r in records {
                    wanted.decode_with_serde(r, &mut slots).expect("valid");
                    std::hint::black_box(&slots);
                }
            })
        });
        group.bench_function("fields_scan", |b| {
            b.iter(|| {
                let mut slots = Slots::new();
                for r in records {
                    assert!(wanted.scan(r, &mut slots), "scanned");
                    std::hint::black_box(&slots);
                }
            })
        });
        group.bench_function("sonic_get_many", |b| {
            b.iter(|| {
                for r in records {
                    std::hint::black_box(sonic(&tree, r).expect("found"));
                }
            })
        });
        group.finish();
    }
}

fn verdict(accepted: bool) -> &'static str {
    if accepted {
        "ACCEPTS it"
    } else {
        "refuses it"
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

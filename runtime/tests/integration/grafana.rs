//! The chart's Grafana dashboard is valid JSON, and every runtime series its
//! queries name is one the runtime exports. The operator's series
//! (`streamjob_operator_…`) are checked in the operator's own tests.

use std::collections::BTreeSet;

use serde_json::Value;
use streamjob_runtime::control::{
    JobControl, PartitionReport, PartitionState, StageTime, WorkerTime,
};

/// Included at build time: cargo rebuilds the test when it changes.
const DASHBOARD: &str =
    include_str!("../../../charts/streamjob-operator/dashboards/streamjob.json");

/// Labels, not series, that start like one: the job's name the chart's
/// PodMonitor gives every series, and the job's namespace on the
/// operator's event counts.
const LABELS: [&str; 2] = ["streamjob_io_job", "streamjob_namespace"];

fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", Value::String(q)) => out.push(q.clone()),
                    _ => queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

/// A series name as exposed: a counter's `_total`, a family's labels
/// dropped.
fn exposed(line: &str) -> Option<&str> {
    let name = line.split(['{', ' ']).next()?;
    (!line.starts_with('#') && !name.is_empty()).then_some(name)
}

#[test]
fn the_grafana_dashboard_names_only_series_the_runtime_exports() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "streamjob");
    let mut found = Vec::new();
    queries(&dashboard, &mut found);
    let named: BTreeSet<&str> = found
        .iter()
        .flat_map(|q| q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("streamjob_") && !LABELS.contains(w))
        .filter(|w| !w.starts_with("streamjob_operator_"))
        .collect();
    assert!(named.len() >= 10, "{named:?}");

    // A job's metrics with every family filled in once.
    let control = JobControl::new("j", 1);
    let partition = PartitionReport {
        id: "events-0".into(),
        state: PartitionState::Active,
        records: 1,
        watermark: 1,
        lag: Some(3),
    };
    let spent = (WorkerTime::default(), StageTime::default());
    control.worker_second(0, spent, 1, vec![partition]);
    control.checkpoint_completed(streamjob_api::SnapshotRecord {
        id: 1,
        kind: streamjob_api::SnapshotKind::Checkpoint,
        path: "chk-1".into(),
        completed_at: 0,
        bytes: 1,
        duration_ms: 1,
        phases: Some(Default::default()),
    });
    let text = control.metrics.encode();
    let exported: BTreeSet<&str> = text.lines().filter_map(exposed).collect();
    let missing: Vec<_> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard names {missing:?}, which the runtime does not export:\n{text}"
    );
}

//! The JSON shape of what sinks write: window results, late elements and
//! malformed records.

use serde_json::{Map, Value};

use super::Malformed;
use crate::record::Event;
use crate::spec::JobSpec;
use crate::time::format_time;
use crate::window::WindowResult;

/// Names used when records are turned into JSON.
#[derive(Debug, Clone)]
pub struct OutputFormat {
    key_fields: Vec<String>,
    time_field: String,
    aggregate_names: Vec<String>,
}

impl OutputFormat {
    pub fn new(spec: &JobSpec) -> Self {
        OutputFormat {
            key_fields: spec.key.clone(),
            time_field: spec
                .event_time
                .field
                .clone()
                .unwrap_or_else(|| "event_time".into()),
            aggregate_names: spec.aggregates.iter().map(|a| a.name.clone()).collect(),
        }
    }
}

/// A window result as a JSON line: the key field(s), `window_start`,
/// `window_end`, one field per aggregate, `partial` and `emit_time`.
pub fn format_result(f: &OutputFormat, r: &WindowResult, emit_time: i64) -> String {
    let mut m = Map::new();
    for (name, value) in f.key_fields.iter().zip(r.key.json_parts()) {
        m.insert(name.clone(), value);
    }
    m.insert("window_start".into(), Value::from(format_time(r.start)));
    m.insert("window_end".into(), Value::from(format_time(r.end)));
    for (name, value) in f.aggregate_names.iter().zip(&r.values) {
        m.insert(name.clone(), value.to_json());
    }
    m.insert("partial".into(), Value::from(r.partial));
    m.insert("emit_time".into(), Value::from(format_time(emit_time)));
    Value::Object(m).to_string()
}

/// A late element: the record as read, or (for generated events) its key and
/// time.
pub fn format_late(f: &OutputFormat, e: &Event) -> String {
    if let Some(raw) = &e.raw {
        return raw.to_string();
    }
    let mut m = Map::new();
    for (name, value) in f.key_fields.iter().zip(e.key.json_parts()) {
        m.insert(name.clone(), value);
    }
    m.insert(f.time_field.clone(), Value::from(format_time(e.ts)));
    Value::Object(m).to_string()
}

/// How much of a malformed record its side output shows: a huge bad line
/// must not make a huge side-output record.
pub const MALFORMED_RECORD_SHOWN: usize = 64 * 1024;

/// A malformed record with the reason and where it came from. A record
/// longer than [`MALFORMED_RECORD_SHOWN`] bytes is cut there, and
/// `record_bytes` says how long it was.
/// At most `max` bytes of `text`, cut at a character boundary.
pub fn truncated(text: &str, max: usize) -> &str {
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

pub fn format_malformed(m: &Malformed) -> String {
    if m.raw.len() <= MALFORMED_RECORD_SHOWN {
        return serde_json::json!({
            "error": m.error.to_string(),
            "source": m.location,
            "record": m.raw,
        })
        .to_string();
    }
    serde_json::json!({
        "error": m.error.to_string(),
        "source": m.location,
        "record": truncated(&m.raw, MALFORMED_RECORD_SHOWN),
        "record_bytes": m.raw.len(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordError;

    #[test]
    fn a_huge_malformed_record_is_cut_and_its_length_given() {
        let raw = format!("{{\"a\": \"{}\"", "é".repeat(MALFORMED_RECORD_SHOWN));
        let line = format_malformed(&Malformed {
            error: RecordError::NotAnObject,
            raw: raw.clone(),
            location: "in.jsonl:1".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let shown = v["record"].as_str().unwrap();
        assert!(raw.starts_with(shown));
        assert!(shown.len() <= MALFORMED_RECORD_SHOWN && shown.len() > MALFORMED_RECORD_SHOWN - 4);
        assert_eq!(v["record_bytes"], raw.len());
        let small = format_malformed(&Malformed {
            error: RecordError::NotAnObject,
            raw: "[1]".into(),
            location: "in.jsonl:2".into(),
        });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&small).unwrap(),
            serde_json::json!({"error": "not a JSON object", "record": "[1]", "source": "in.jsonl:2"})
        );
    }
}

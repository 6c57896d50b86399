//! Sinks for local runs (stdout, a file, or nothing) and the JSON shape of
//! what is written to them.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{Map, Value};

use super::{KafkaWriter, Malformed};
use crate::record::Event;
use crate::spec::{JobSpec, Sink, SinkSpec};
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

/// A malformed record with the reason and where it came from.
pub fn format_malformed(m: &Malformed) -> String {
    serde_json::json!({
        "error": m.error.to_string(),
        "source": m.location,
        "record": m.raw,
    })
    .to_string()
}

/// Writes JSON lines to one destination.
pub enum SinkWriter {
    Stdout(std::io::Stdout),
    File(BufWriter<File>),
    Kafka(KafkaWriter),
    Discard,
}

impl SinkWriter {
    /// Opens a sink; files are appended to, never truncated.
    pub fn open(spec: &SinkSpec, base_dir: &Path) -> std::io::Result<Self> {
        let sink = spec.choice().map_err(std::io::Error::other)?;
        match sink {
            Sink::Kafka(kafka) => Ok(SinkWriter::Kafka(KafkaWriter::plain(kafka)?)),
            Sink::Stdout => Ok(SinkWriter::Stdout(std::io::stdout())),
            Sink::Discard => Ok(SinkWriter::Discard),
            Sink::Postgres(_) => Err(std::io::Error::other(
                "postgres takes a job's results only, through the PostgreSQL sink",
            )),
            Sink::File(file) => {
                let path = base_dir.join(&file.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot open {}: {e}", path.display()),
                        )
                    })?;
                Ok(SinkWriter::File(BufWriter::new(f)))
            }
        }
    }

    /// Whether records need formatting at all.
    pub fn discards(&self) -> bool {
        matches!(self, SinkWriter::Discard)
    }

    /// Writes lines; `keys` (one per line, or empty) only matter to Kafka.
    pub fn write_lines(&mut self, lines: &[String], keys: &[String]) -> std::io::Result<()> {
        match self {
            SinkWriter::Kafka(k) => k.produce(0, lines, keys),
            SinkWriter::Stdout(out) => {
                let mut lock = out.lock();
                for line in lines {
                    writeln!(lock, "{line}")?;
                }
                lock.flush()
            }
            SinkWriter::File(w) => {
                for line in lines {
                    writeln!(w, "{line}")?;
                }
                Ok(())
            }
            SinkWriter::Discard => Ok(()),
        }
    }

    /// Flushes, and waits until the data is on disk (a file) or
    /// acknowledged (Kafka).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        if let SinkWriter::Kafka(k) = self {
            k.flush()?;
        }
        if let SinkWriter::File(w) = self {
            w.get_ref().sync_data()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SinkWriter::Stdout(out) => out.flush(),
            SinkWriter::File(w) => w.flush(),
            SinkWriter::Kafka(_) | SinkWriter::Discard => Ok(()),
        }
    }
}

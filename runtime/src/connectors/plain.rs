//! Plain sinks: stdout, a file appended to, a Kafka topic through the
//! idempotent producer, or nothing. They are made durable at each checkpoint
//! (at least once); exactly-once results go through a two-phase sink instead.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use super::KafkaWriter;
use crate::spec::{Sink, SinkSpec};

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

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
                let cannot_open = |e: std::io::Error| {
                    std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                };
                let f = OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(&path)
                    .map_err(cannot_open)?;
                cut_partial_line(&f).map_err(cannot_open)?;
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

/// Cuts a line that a killed run left half-written at the end of `file`
/// (its writes reach the file in buffer-sized pieces), so that the next
/// line starts on a line of its own. Only what followed the last
/// checkpoint's sync can be cut, and a restored run writes that again.
fn cut_partial_line(file: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let piece = &mut chunk[..(end - start) as usize];
        let mut reader = file;
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(piece)?;
        if let Some(newline) = piece.iter().rposition(|&b| b == b'\n') {
            end = start + newline as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(
            bytes = len - end,
            "a file sink ended in a half-written line; cut it before appending"
        );
        file.set_len(end)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_sink(dir: &Path) -> SinkWriter {
        let spec: SinkSpec = serde_yaml::from_str("file: {path: out.jsonl}").unwrap();
        SinkWriter::open(&spec, dir).unwrap()
    }

    #[test]
    fn a_half_written_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        for (before, after) in [
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n{\"c\":3}\n"),
            ("{\"a\":1}\n", "{\"a\":1}\n{\"c\":3}\n"),
            ("{\"half", "{\"c\":3}\n"),
            ("", "{\"c\":3}\n"),
        ] {
            std::fs::write(&path, before).unwrap();
            let mut sink = file_sink(dir.path());
            sink.write_lines(&["{\"c\":3}".to_string()], &[]).unwrap();
            sink.sync().unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                after,
                "after {before:?}"
            );
        }
        // A line longer than the search's chunk.
        let long = format!("{{\"x\":\"{}\"}}\n", "x".repeat(10_000));
        std::fs::write(&path, format!("{long}{}", "y".repeat(9_000))).unwrap();
        file_sink(dir.path()).sync().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), long);
    }
}

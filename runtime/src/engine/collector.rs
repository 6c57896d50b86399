//! The operator's `Output` inside a worker: formats results and side-output
//! records and hands them to the sink thread in batches.

use crossbeam_channel::Sender;

use crate::connectors::{
    format_late, format_malformed, format_result, Malformed, OutputFormat, TARGETS,
};
use crate::record::Event;
use crate::time::now_millis;
use crate::window::{Output, WindowResult};

/// Which destination a batch of lines is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    Results,
    Late,
    Malformed,
    Unmatched,
}

/// What workers (and the checkpoint coordinator) send the sink thread.
pub enum SinkMsg {
    Lines {
        worker: usize,
        target: Target,
        lines: Vec<String>,
        /// One key per line for a keyed destination (Kafka), else empty.
        keys: Vec<String>,
    },
    /// Worker `worker` reached the barrier of `checkpoint` with its Kafka
    /// source partitions at `offsets`: make what it sent so far durable
    /// (sealed, for a transactional sink), then answer.
    Sync {
        worker: usize,
        checkpoint: u64,
        offsets: Vec<(String, i32, i64)>,
        reply: Sender<std::io::Result<()>>,
    },
    /// Checkpoint `checkpoint` has every worker's state: commit its output.
    Commit {
        checkpoint: u64,
        reply: Sender<std::io::Result<()>>,
    },
    /// The input ended and every worker finished: commit the rest.
    Finish {
        checkpoint: u64,
        reply: Sender<std::io::Result<()>>,
    },
}

/// Sends `make(reply)` to the sink thread and waits for its answer.
pub fn ask_sink(
    sink: &Sender<SinkMsg>,
    make: impl FnOnce(Sender<std::io::Result<()>>) -> SinkMsg,
) -> std::io::Result<()> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let stopped = || std::io::Error::other("the sink thread has stopped");
    sink.send(make(tx)).map_err(|_| stopped())?;
    rx.recv().unwrap_or_else(|_| Err(stopped()))
}

/// Counts of what left a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounts {
    pub results: u64,
    pub late: u64,
    pub malformed: u64,
    pub unmatched: u64,
}

pub struct Collector {
    worker: usize,
    format: OutputFormat,
    sink: Sender<SinkMsg>,
    /// Which targets are written somewhere (the others are only counted).
    keep: [bool; TARGETS],
    /// Which targets' destinations take a key with each record.
    keyed: [bool; TARGETS],
    buffers: [Vec<String>; TARGETS],
    keys: [Vec<String>; TARGETS],
    pub counts: OutputCounts,
    /// When the oldest line still buffered was added.
    buffered_since: Option<std::time::Instant>,
    /// Results kept in memory instead, for tests and the bench harness.
    pub captured: Option<Vec<WindowResult>>,
}

const FLUSH_AT: usize = 1024;

impl Collector {
    pub fn new(
        worker: usize,
        format: OutputFormat,
        sink: Sender<SinkMsg>,
        keep: [bool; TARGETS],
        keyed: [bool; TARGETS],
    ) -> Self {
        Collector {
            worker,
            format,
            sink,
            keep,
            keyed,
            buffers: Default::default(),
            keys: Default::default(),
            counts: OutputCounts::default(),
            buffered_since: None,
            captured: None,
        }
    }

    fn push(&mut self, target: Target, line: String, key: impl FnOnce() -> String) {
        if self.keyed[target as usize] {
            self.keys[target as usize].push(key());
        }
        if self.buffered_since.is_none() {
            self.buffered_since = Some(std::time::Instant::now());
        }
        let buf = &mut self.buffers[target as usize];
        buf.push(line);
        if buf.len() >= FLUSH_AT {
            self.flush_target(target);
        }
    }

    fn flush_target(&mut self, target: Target) {
        let lines = std::mem::take(&mut self.buffers[target as usize]);
        let keys = std::mem::take(&mut self.keys[target as usize]);
        if !lines.is_empty() {
            // The sink thread outlives the workers; a send error means it
            // failed, which the job reports when it joins it.
            let _ = self.sink.send(SinkMsg::Lines {
                worker: self.worker,
                target,
                lines,
                keys,
            });
        }
    }

    /// Flushes when the oldest buffered line has waited `age`: a slow
    /// stream's output must not wait for a full batch (or a checkpoint).
    pub fn flush_older_than(&mut self, age: std::time::Duration) {
        if self
            .buffered_since
            .is_some_and(|since| since.elapsed() >= age)
        {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        self.buffered_since = None;
        for target in [
            Target::Results,
            Target::Late,
            Target::Malformed,
            Target::Unmatched,
        ] {
            self.flush_target(target);
        }
    }

    /// Flushes buffered lines and waits until the sink has made them (and
    /// everything before them) durable, as part of `checkpoint`.
    pub fn sync(
        &mut self,
        checkpoint: u64,
        offsets: Vec<(String, i32, i64)>,
    ) -> std::io::Result<()> {
        self.flush();
        let worker = self.worker;
        ask_sink(&self.sink, |reply| SinkMsg::Sync {
            worker,
            checkpoint,
            offsets,
            reply,
        })
    }

    /// A select job's record: its projection, made by the parser.
    pub fn record(&mut self, event: Event) {
        self.counts.results += 1;
        if self.keep[Target::Results as usize] {
            let line = event.raw.map(String::from).unwrap_or_default();
            self.push(Target::Results, line, String::new);
        }
    }

    /// A record an enrich lookup found no entry for.
    pub fn unmatched(&mut self, m: &Malformed) {
        self.counts.unmatched += 1;
        if self.keep[Target::Unmatched as usize] {
            self.push(Target::Unmatched, format_malformed(m), String::new);
        }
    }

    pub fn malformed(&mut self, m: &Malformed) {
        self.counts.malformed += 1;
        if self.keep[Target::Malformed as usize] {
            self.push(Target::Malformed, format_malformed(m), String::new);
        }
    }
}

impl Output for Collector {
    fn result(&mut self, result: WindowResult) {
        self.counts.results += 1;
        if self.keep[Target::Results as usize] {
            let line = format_result(&self.format, &result, now_millis());
            self.push(Target::Results, line, || result.key.to_string());
        }
        if let Some(captured) = &mut self.captured {
            captured.push(result);
        }
    }

    fn late(&mut self, event: Event) {
        self.counts.late += 1;
        if self.keep[Target::Late as usize] {
            let line = format_late(&self.format, &event);
            self.push(Target::Late, line, || event.key.to_string());
        }
    }
}

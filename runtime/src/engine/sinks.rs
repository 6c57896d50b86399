//! The sink thread: writes what workers emit to the job's sink and side
//! outputs, and takes part in checkpoints (sync at barriers, commit when a
//! checkpoint completes).

use std::path::Path;

use crossbeam_channel::Receiver;

use super::collector::{SinkMsg, Target};
use crate::connectors::{SinkWriter, TransactionalFile};
use crate::spec::{CheckpointMode, JobSpec};

/// Where results go: a plain writer, or a transactional file when the job
/// takes exactly-once checkpoints and writes to a file.
enum ResultsWriter {
    Plain(SinkWriter),
    Transactional(TransactionalFile),
}

pub(crate) struct Sinks {
    results: ResultsWriter,
    late: SinkWriter,
    malformed: SinkWriter,
}

/// Whether the job's results go through the two-phase file sink.
pub(crate) fn transactional(spec: &JobSpec) -> bool {
    spec.sink.file.is_some()
        && spec
            .checkpoints
            .as_ref()
            .is_some_and(|c| c.mode == CheckpointMode::ExactlyOnce)
}

impl Sinks {
    /// Opens every sink. `restored` is the checkpoint the run starts from.
    pub fn open(spec: &JobSpec, base: &Path, restored: Option<u64>) -> std::io::Result<Self> {
        let results = match &spec.sink.file {
            Some(file) if transactional(spec) => {
                ResultsWriter::Transactional(TransactionalFile::open(
                    &base.join(&file.path),
                    spec.parallelism as usize,
                    restored,
                )?)
            }
            _ => ResultsWriter::Plain(SinkWriter::open(&spec.sink, base)?),
        };
        let side = |s: &Option<crate::spec::SinkSpec>| match s {
            Some(s) => SinkWriter::open(s, base),
            None => Ok(SinkWriter::Discard),
        };
        Ok(Sinks {
            results,
            late: side(&spec.side_outputs.late)?,
            malformed: side(&spec.side_outputs.malformed)?,
        })
    }

    /// Which targets are written anywhere (the rest are only counted).
    pub fn keeps(&self) -> [bool; 3] {
        let results = match &self.results {
            ResultsWriter::Plain(w) => !w.discards(),
            ResultsWriter::Transactional(_) => true,
        };
        [results, !self.late.discards(), !self.malformed.discards()]
    }

    fn side(&mut self, target: Target) -> &mut SinkWriter {
        match target {
            Target::Late => &mut self.late,
            _ => &mut self.malformed,
        }
    }

    /// The thread's body: runs until every sender is gone.
    pub fn run(mut self, rx: Receiver<SinkMsg>) -> std::io::Result<()> {
        for msg in rx {
            match msg {
                SinkMsg::Lines {
                    worker,
                    target,
                    lines,
                } => match (target, &mut self.results) {
                    (Target::Results, ResultsWriter::Plain(w)) => w.write_lines(&lines)?,
                    (Target::Results, ResultsWriter::Transactional(t)) => {
                        t.write(worker, &lines)?
                    }
                    (side, _) => self.side(side).write_lines(&lines)?,
                },
                SinkMsg::Sync {
                    worker,
                    checkpoint,
                    reply,
                } => {
                    let done = self.sync(worker, checkpoint);
                    answer(reply, done)?;
                }
                SinkMsg::Commit { checkpoint, reply } => {
                    let done = match &mut self.results {
                        ResultsWriter::Transactional(t) => t.commit(checkpoint),
                        ResultsWriter::Plain(_) => Ok(()),
                    };
                    answer(reply, done)?;
                }
                SinkMsg::Finish { checkpoint, reply } => {
                    let done = match &mut self.results {
                        ResultsWriter::Transactional(t) => t.finish(checkpoint),
                        ResultsWriter::Plain(_) => Ok(()),
                    };
                    answer(reply, done)?;
                }
            }
        }
        if let ResultsWriter::Plain(w) = &mut self.results {
            w.flush()?;
        }
        self.late.flush()?;
        self.malformed.flush()
    }

    fn sync(&mut self, worker: usize, checkpoint: u64) -> std::io::Result<()> {
        match &mut self.results {
            ResultsWriter::Plain(w) => w.sync()?,
            ResultsWriter::Transactional(t) => t.seal(worker, checkpoint)?,
        }
        self.late.sync()?;
        self.malformed.sync()
    }
}

/// Replies to a waiting worker or coordinator; a failure also stops the
/// sink thread, and the job with it.
fn answer(
    reply: crossbeam_channel::Sender<std::io::Result<()>>,
    done: std::io::Result<()>,
) -> std::io::Result<()> {
    let failed = done
        .as_ref()
        .err()
        .map(|e| std::io::Error::new(e.kind(), e.to_string()));
    let _ = reply.send(done);
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

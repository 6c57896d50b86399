//! The sink thread: writes what workers emit to the job's sink and side
//! outputs, and takes part in checkpoints (sync at barriers, commit when a
//! checkpoint completes).

use std::path::Path;

use crossbeam_channel::Receiver;

use super::collector::{SinkMsg, Target};
use crate::connectors::{PostgresSink, SinkWriter, TransactionalFile, TransactionalKafka, TARGETS};
use crate::spec::{CheckpointMode, JobSpec, Sink, SinkSpec, Source};

/// Where results go: a plain writer, or a two-phase sink when the job takes
/// exactly-once checkpoints and writes to a file or to Kafka. PostgreSQL is
/// two-phase with exactly-once checkpoints, at-least-once without.
enum ResultsWriter {
    Plain(SinkWriter),
    File(TransactionalFile),
    Kafka(TransactionalKafka),
    Postgres(Box<PostgresSink>),
}

/// Where a side output goes: a writer of its own, or the results' Kafka
/// transactions (a Kafka side output of an exactly-once Kafka job).
enum SideWriter {
    Own(SinkWriter),
    InTransaction,
}

impl SideWriter {
    /// Flushes and syncs a writer of its own (a transaction is committed
    /// with the results).
    fn sync(&mut self) -> std::io::Result<()> {
        match self {
            SideWriter::Own(w) => w.sync(),
            SideWriter::InTransaction => Ok(()),
        }
    }
}

pub(crate) struct Sinks {
    results: ResultsWriter,
    late: SideWriter,
    malformed: SideWriter,
    unmatched: SideWriter,
    /// Whether results have a key to send with them (a select job's
    /// records have none).
    results_have_keys: bool,
}

fn exactly_once(spec: &JobSpec) -> bool {
    spec.checkpoints
        .as_ref()
        .is_some_and(|c| c.mode == CheckpointMode::ExactlyOnce)
}

/// Whether results go through a two-phase sink (file or Kafka), which
/// commits with each checkpoint and once more when the input ends.
pub(crate) fn two_phase(spec: &JobSpec) -> bool {
    let two_phase = match spec.sink.choice() {
        Ok(Sink::File(_) | Sink::Kafka(_) | Sink::Postgres(_)) => true,
        Ok(Sink::Stdout | Sink::Discard) | Err(_) => false,
    };
    two_phase && exactly_once(spec)
}

/// Opens the exactly-once Kafka sink, when the job has one. This fences a
/// crashed run's producer and settles its open transaction, so it comes
/// before the restore decision, which reads what that run committed.
pub(crate) fn open_transactional_kafka(
    spec: &JobSpec,
) -> std::io::Result<Option<TransactionalKafka>> {
    let (Ok(Sink::Kafka(kafka)), true) = (spec.sink.choice(), exactly_once(spec)) else {
        return Ok(None);
    };
    let group = match spec.source.choice() {
        Ok(Source::Kafka(source)) => source.group(&spec.name),
        _ => format!("streamjob-{}", spec.name),
    };
    let topic = |s: &Option<SinkSpec>| match s.as_ref().map(SinkSpec::choice) {
        Some(Ok(Sink::Kafka(k))) => Some(k.topic.clone()),
        _ => None,
    };
    TransactionalKafka::open(
        kafka,
        &spec.name,
        &group,
        spec.side_outputs.named().map(|(_, side)| topic(side)),
        spec.parallelism as usize,
    )
    .map(Some)
}

impl Sinks {
    /// Opens every sink. `restored` is the checkpoint the run starts from;
    /// `kafka` the exactly-once Kafka sink opened before the restore.
    pub fn open(
        spec: &JobSpec,
        base: &Path,
        restored: Option<u64>,
        kafka: Option<TransactionalKafka>,
    ) -> std::io::Result<Self> {
        let workers = spec.parallelism as usize;
        let sink = spec
            .sink
            .choice()
            .map_err(|e| std::io::Error::other(e.at("sink")))?;
        let results =
            match (sink, kafka) {
                (_, Some(kafka)) => ResultsWriter::Kafka(kafka),
                (Sink::Postgres(pg), None) => ResultsWriter::Postgres(Box::new(
                    PostgresSink::open(spec, pg, workers, restored, exactly_once(spec))?,
                )),
                (Sink::File(file), None) if exactly_once(spec) => {
                    ResultsWriter::File(TransactionalFile::open(
                        &base.join(&file.path),
                        spec.parallelism as usize,
                        restored,
                    )?)
                }
                _ => ResultsWriter::Plain(SinkWriter::open(&spec.sink, base)?),
            };
        // Side outputs to Kafka join the results' transactions.
        let side = |s: &Option<SinkSpec>, target: Target| match (s, &results) {
            (Some(_), ResultsWriter::Kafka(k)) if k.writes(target as usize) => {
                Ok(SideWriter::InTransaction)
            }
            (Some(s), _) => SinkWriter::open(s, base).map(SideWriter::Own),
            (None, _) => Ok(SideWriter::Own(SinkWriter::Discard)),
        };
        Ok(Sinks {
            late: side(&spec.side_outputs.late, Target::Late)?,
            malformed: side(&spec.side_outputs.malformed, Target::Malformed)?,
            unmatched: side(&spec.side_outputs.unmatched, Target::Unmatched)?,
            results_have_keys: spec.select.is_empty(),
            results,
        })
    }

    /// Which targets are written anywhere (the rest are only counted).
    pub fn keeps(&self) -> [bool; TARGETS] {
        let results = match &self.results {
            ResultsWriter::Plain(w) => !w.discards(),
            ResultsWriter::File(_) | ResultsWriter::Kafka(_) | ResultsWriter::Postgres(_) => true,
        };
        let side = |s: &SideWriter| match s {
            SideWriter::Own(w) => !w.discards(),
            SideWriter::InTransaction => true,
        };
        [
            results,
            side(&self.late),
            side(&self.malformed),
            side(&self.unmatched),
        ]
    }

    /// Which targets go to Kafka, where records carry their key (malformed
    /// and unmatched records have none).
    pub fn keyed(&self) -> [bool; TARGETS] {
        let results = self.results_have_keys
            && match &self.results {
                ResultsWriter::Plain(w) => matches!(w, SinkWriter::Kafka(_)),
                ResultsWriter::File(_) | ResultsWriter::Postgres(_) => false,
                ResultsWriter::Kafka(_) => true,
            };
        let late = matches!(
            self.late,
            SideWriter::Own(SinkWriter::Kafka(_)) | SideWriter::InTransaction
        );
        [results, late, false, false]
    }

    /// The thread's body: runs until every sender is gone.
    pub fn run(mut self, rx: Receiver<SinkMsg>) -> std::io::Result<()> {
        for msg in rx {
            match msg {
                SinkMsg::Lines {
                    worker,
                    target,
                    lines,
                    keys,
                } => self.write(worker, target, lines, keys)?,
                SinkMsg::Sync {
                    worker,
                    checkpoint,
                    offsets,
                    reply,
                } => {
                    let done = self.sync(worker, checkpoint, offsets);
                    answer(reply, done)?;
                }
                SinkMsg::Commit { checkpoint, reply } => {
                    let done = self.commit(checkpoint);
                    answer(reply, done)?;
                }
                SinkMsg::Finish { checkpoint, reply } => {
                    let done = match &mut self.results {
                        ResultsWriter::File(t) => t.finish(checkpoint),
                        ResultsWriter::Kafka(k) => k.finish(checkpoint),
                        ResultsWriter::Postgres(p) => p.finish(checkpoint),
                        ResultsWriter::Plain(_) => Ok(()),
                    };
                    answer(reply, done)?;
                }
            }
        }
        match &mut self.results {
            ResultsWriter::Plain(w) => w.sync()?,
            // What is open was written after the last commit: a restore
            // produces it again.
            ResultsWriter::Kafka(k) => k.abort()?,
            // Rows not committed are dropped: a restore produces them again.
            ResultsWriter::File(_) | ResultsWriter::Postgres(_) => {}
        }
        self.late.sync()?;
        self.malformed.sync()?;
        self.unmatched.sync()
    }

    fn write(
        &mut self,
        worker: usize,
        target: Target,
        lines: Vec<String>,
        keys: Vec<String>,
    ) -> std::io::Result<()> {
        let side = match target {
            Target::Results => None,
            Target::Late => Some(&mut self.late),
            Target::Malformed => Some(&mut self.malformed),
            Target::Unmatched => Some(&mut self.unmatched),
        };
        match (side, &mut self.results) {
            (Some(SideWriter::Own(w)), _) => w.write_lines(&lines, &keys),
            (None, ResultsWriter::Plain(w)) => w.write_lines(&lines, &keys),
            (None, ResultsWriter::File(t)) => t.write(worker, &lines),
            (None, ResultsWriter::Postgres(p)) => p.write(worker, &lines),
            (None | Some(SideWriter::InTransaction), ResultsWriter::Kafka(k)) => {
                k.write(worker, target as usize, lines, keys)
            }
            (Some(SideWriter::InTransaction), _) => {
                unreachable!("side outputs join only a Kafka results writer's transactions")
            }
        }
    }

    /// Worker `worker` reached barrier `checkpoint`: a two-phase sink seals
    /// what it wrote so far. (Plain writers are synced once, at the commit.)
    fn sync(
        &mut self,
        worker: usize,
        checkpoint: u64,
        offsets: Vec<(String, i32, i64)>,
    ) -> std::io::Result<()> {
        match &mut self.results {
            ResultsWriter::Plain(_) => Ok(()),
            ResultsWriter::File(t) => t.seal(worker, checkpoint),
            ResultsWriter::Kafka(k) => k.seal(worker, checkpoint, offsets),
            ResultsWriter::Postgres(p) => {
                p.seal(worker, checkpoint);
                Ok(())
            }
        }
    }

    /// Every worker has passed the barrier and written its state: commit
    /// the checkpoint's output, and make what plain writers (stdout, files,
    /// non-transactional Kafka) hold durable: at-least-once, before the
    /// checkpoint completes.
    fn commit(&mut self, checkpoint: u64) -> std::io::Result<()> {
        match &mut self.results {
            ResultsWriter::Plain(w) => w.sync()?,
            ResultsWriter::File(t) => t.commit(checkpoint)?,
            ResultsWriter::Kafka(k) => k.commit(checkpoint)?,
            ResultsWriter::Postgres(p) => p.commit(checkpoint)?,
        }
        self.late.sync()?;
        self.malformed.sync()?;
        self.unmatched.sync()
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

//! The sink thread: writes what workers emit to the job's sink and side
//! outputs, and takes part in checkpoints (sync at barriers, commit when a
//! checkpoint completes).

use std::path::Path;

use crossbeam_channel::Receiver;

use super::collector::{SinkMsg, Target};
use crate::connectors::{
    PostgresSink, PostgresTable, SinkWriter, TransactionalFile, TransactionalKafka,
    TwoPhaseCommitter, TARGETS,
};
use crate::spec::{JobSpec, Sink, SinkSpec, Source};

/// Where results go: a plain writer; PostgreSQL without exactly-once
/// checkpoints (rows inserted as they come); or, with exactly-once
/// checkpoints and a file, Kafka or PostgreSQL sink, a two-phase sink that
/// commits with each checkpoint.
enum ResultsWriter {
    Plain(SinkWriter),
    Postgres(Box<PostgresTable>),
    TwoPhase(Box<dyn TwoPhaseCommitter>),
}

/// Where a side output goes: a writer of its own, or the results' two-phase
/// sink (a Kafka side output of an exactly-once Kafka job).
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
}

/// Whether only pod 0 writes the job's output when the job runs over
/// several pods: a Kafka or PostgreSQL sink under exactly-once checkpoints
/// commits one transaction per checkpoint for the whole job, which would
/// otherwise be one per pod, and a pod's open transaction dies with it. The
/// other pods relay their workers' output to pod 0 (`OutputRelay`), so the
/// commit point and the restore decision are one process's.
pub(crate) fn written_by_pod_0(spec: &JobSpec) -> bool {
    spec.exactly_once() && matches!(spec.sink.choice(), Ok(Sink::Kafka(_) | Sink::Postgres(_)))
}

/// The targets the job's workers emit (the results, and each side output
/// with a destination; the rest are only counted) and which of them carry
/// their keys (those bound for Kafka). A function of the spec, so a pod
/// that relays its output to pod 0 emits what pod 0's sinks write.
pub(crate) fn output_targets(spec: &JobSpec) -> ([bool; TARGETS], [bool; TARGETS]) {
    fn kind(s: &Option<SinkSpec>) -> Option<Sink<'_>> {
        s.as_ref().and_then(|s| s.choice().ok())
    }
    let kept = |s: &Option<SinkSpec>| kind(s).is_some_and(|k| !matches!(k, Sink::Discard));
    let to_kafka = |s: &Option<SinkSpec>| matches!(kind(s), Some(Sink::Kafka(_)));
    let outputs = &spec.side_outputs;
    let results = spec.sink.choice().ok();
    let results_keyed = spec.select.is_empty() && matches!(results, Some(Sink::Kafka(_)));
    (
        [
            !matches!(results, Some(Sink::Discard)),
            kept(&outputs.late),
            kept(&outputs.malformed),
            kept(&outputs.unmatched),
        ],
        [results_keyed, to_kafka(&outputs.late), false, false],
    )
}

/// Opens the job's two-phase sink, when it has one: results to a file, Kafka
/// or PostgreSQL under exactly-once checkpoints. This comes before the
/// restore decision, which asks the sink what it committed last; opening
/// the Kafka sink fences a crashed run's producer and settles its open
/// transaction, so that answer is final.
pub(crate) fn open_two_phase(
    spec: &JobSpec,
    base: &Path,
) -> std::io::Result<Option<Box<dyn TwoPhaseCommitter>>> {
    if !spec.exactly_once() {
        return Ok(None);
    }
    let workers = spec.parallelism as usize;
    let sink = spec
        .sink
        .choice()
        .map_err(|e| std::io::Error::other(e.at("sink")))?;
    Ok(Some(match sink {
        Sink::File(file) => Box::new(TransactionalFile::new(&base.join(&file.path), workers)),
        Sink::Kafka(kafka) => {
            let group = match spec.source.choice() {
                Ok(Source::Kafka(source)) => source.group(&spec.name),
                _ => format!("streamjob-{}", spec.name),
            };
            let topic = |s: &Option<SinkSpec>| match s.as_ref().map(SinkSpec::choice) {
                Some(Ok(Sink::Kafka(k))) => Some(k.topic.clone()),
                _ => None,
            };
            Box::new(TransactionalKafka::open(
                kafka,
                &spec.name,
                &group,
                spec.side_outputs.named().map(|(_, side)| topic(side)),
                workers,
            )?)
        }
        Sink::Postgres(pg) => Box::new(PostgresSink::open(spec, pg, workers)?),
        Sink::Stdout | Sink::Discard => return Ok(None),
    }))
}

impl Sinks {
    /// Opens every sink. `restored` is the checkpoint the run starts from;
    /// `two_phase` the job's two-phase sink, opened before the restore.
    pub fn open(
        spec: &JobSpec,
        base: &Path,
        restored: Option<u64>,
        two_phase: Option<Box<dyn TwoPhaseCommitter>>,
    ) -> std::io::Result<Self> {
        let sink = spec
            .sink
            .choice()
            .map_err(|e| std::io::Error::other(e.at("sink")))?;
        let results = match (two_phase, sink) {
            (Some(mut committer), _) => {
                committer.begin(restored)?;
                ResultsWriter::TwoPhase(committer)
            }
            (None, Sink::Postgres(pg)) => {
                ResultsWriter::Postgres(Box::new(PostgresTable::open(spec, pg)?))
            }
            (None, _) => ResultsWriter::Plain(SinkWriter::open(&spec.sink, base)?),
        };
        let side = |s: &Option<SinkSpec>, target: Target| match (s, &results) {
            (Some(_), ResultsWriter::TwoPhase(c)) if c.takes(target as usize) => {
                Ok(SideWriter::InTransaction)
            }
            (Some(s), _) => SinkWriter::open(s, base).map(SideWriter::Own),
            (None, _) => Ok(SideWriter::Own(SinkWriter::Discard)),
        };
        Ok(Sinks {
            late: side(&spec.side_outputs.late, Target::Late)?,
            malformed: side(&spec.side_outputs.malformed, Target::Malformed)?,
            unmatched: side(&spec.side_outputs.unmatched, Target::Unmatched)?,
            results,
        })
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
                        ResultsWriter::TwoPhase(c) => c.finish(checkpoint),
                        ResultsWriter::Plain(_) | ResultsWriter::Postgres(_) => Ok(()),
                    };
                    answer(reply, done)?;
                }
            }
        }
        match &mut self.results {
            ResultsWriter::Plain(w) => w.sync()?,
            ResultsWriter::Postgres(_) => {}
            // What is open was written after the last commit: a restore
            // produces it again.
            ResultsWriter::TwoPhase(c) => c.abort()?,
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
            (None, ResultsWriter::Postgres(t)) => t.write(&lines),
            (None | Some(SideWriter::InTransaction), ResultsWriter::TwoPhase(c)) => {
                c.write(worker, target as usize, lines, keys)
            }
            (Some(SideWriter::InTransaction), _) => {
                unreachable!("a side output joins only a two-phase sink's transactions")
            }
        }
    }

    /// Worker `worker` reached barrier `checkpoint`: a two-phase sink seals
    /// what it wrote so far (phase one). Plain writers are synced once, at
    /// the commit.
    fn sync(
        &mut self,
        worker: usize,
        checkpoint: u64,
        offsets: Vec<(String, i32, i64)>,
    ) -> std::io::Result<()> {
        match &mut self.results {
            ResultsWriter::Plain(_) | ResultsWriter::Postgres(_) => Ok(()),
            ResultsWriter::TwoPhase(c) => c.pre_commit(worker, checkpoint, offsets),
        }
    }

    /// Every worker has passed the barrier and written its state: commit
    /// the checkpoint's output (phase two), and make what plain writers
    /// (stdout, files, non-transactional Kafka) hold durable: at-least-once,
    /// before the checkpoint completes. (At-least-once PostgreSQL rows are
    /// committed as they are inserted.)
    fn commit(&mut self, checkpoint: u64) -> std::io::Result<()> {
        match &mut self.results {
            ResultsWriter::Plain(w) => w.sync()?,
            ResultsWriter::Postgres(_) => {}
            ResultsWriter::TwoPhase(c) => c.commit(checkpoint)?,
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

//! Choosing what a run restores: the snapshot a restore flag or a restart
//! names, a checkpoint rolled forward when its output was committed, and the
//! checks that the snapshot fits the job.

use std::path::Path;

use super::{sinks, JobError, RestoreFrom};
use crate::checkpoint::{read_snapshot, CheckpointStorage, Layout, Restore, RestoreError};
use crate::connectors::read_commit_log;
use crate::spec::{JobSpec, Sink, SpecError};

/// The snapshot to start from, after rolling forward a checkpoint whose
/// output was committed (see `roll_forward`).
pub(super) fn find_restore(
    from: &RestoreFrom,
    spec: &JobSpec,
    base: &Path,
    storage: Option<&CheckpointStorage>,
    layout: &Layout,
    kafka_sink: Option<&crate::connectors::TransactionalKafka>,
) -> Result<Option<Restore>, JobError> {
    let storage_or = |flag: &str| {
        storage.ok_or_else(|| RestoreError::Mismatch {
            path: flag.into(),
            reason: "the job has no checkpoints.storage to look in".into(),
        })
    };
    match from {
        RestoreFrom::Path(path) => Ok(Some(read_snapshot(&path.to_string_lossy(), base)?)),
        RestoreFrom::LatestCheckpoint => {
            let storage = storage_or("--from-latest-checkpoint")?;
            roll_forward(spec, base, storage, layout, kafka_sink)?;
            Ok(Some(storage.latest(layout)?))
        }
        RestoreFrom::Recovery {
            since,
            started_from,
        } => {
            let storage = storage_or("a restart")?;
            roll_forward(spec, base, storage, layout, kafka_sink)?;
            match storage.newest(layout)? {
                Some((kind, id)) if id >= *since => {
                    Ok(Some(storage.read_snapshot(&layout.snapshot_dir(kind, id))?))
                }
                _ => match started_from {
                    Some(from) => find_restore(from, spec, base, Some(storage), layout, kafka_sink),
                    None => Ok(None),
                },
            }
        }
    }
}

/// A checkpoint whose output the sink committed, but whose `_metadata` was
/// never written (the job died in between), is completed now: the output it
/// committed reflects its state, so that is the state to resume from. The
/// file sink's commit log, or the Kafka sink's committed offsets, say which
/// checkpoint committed last.
fn roll_forward(
    spec: &JobSpec,
    base: &Path,
    storage: &CheckpointStorage,
    layout: &Layout,
    kafka_sink: Option<&crate::connectors::TransactionalKafka>,
) -> Result<(), JobError> {
    if !sinks::two_phase(spec) {
        return Ok(());
    }
    let committed = match (spec.sink.choice().map_err(|e| e.at("sink"))?, kafka_sink) {
        (_, Some(kafka)) => kafka.committed_checkpoint().map_err(JobError::Sink)?,
        (Sink::Postgres(pg), None) => {
            crate::connectors::committed_epoch(pg, &spec.name).map_err(JobError::Sink)?
        }
        (Sink::File(file), None) => {
            // Id 0 is a fresh run's starting length, not a checkpoint.
            read_commit_log(&base.join(&file.path))
                .map_err(JobError::Sink)?
                .last()
                .map(|(id, _)| *id)
                .filter(|id| *id > 0)
        }
        _ => return Ok(()),
    };
    let complete = storage.newest(layout)?.map(|(_, id)| id);
    if let Some(id) = committed {
        if complete.is_none_or(|c| id > c) && storage.roll_forward(layout, id)? {
            tracing::warn!(
                id,
                "rolled checkpoint forward: its output was committed before the job stopped"
            );
        }
    }
    Ok(())
}

/// Checks that a snapshot can be restored into this job; returns whether its
/// keyed state is restored too (false only with `allow_non_restored_state`
/// and a snapshot whose state was built for another window or aggregates).
pub(super) fn check_fits(
    spec: &JobSpec,
    r: &Restore,
    allow_non_restored_state: bool,
) -> Result<bool, RestoreError> {
    let m = &r.metadata;
    let mismatch = |reason: String| RestoreError::Mismatch {
        path: r.path.clone(),
        reason,
    };
    if m.max_parallelism != spec.max_parallelism {
        return Err(mismatch(format!(
            "it was taken with maxParallelism {}, the job has {}; key groups cannot be remapped, so keep maxParallelism: {}",
            m.max_parallelism, spec.max_parallelism, m.max_parallelism
        )));
    }
    let source = source_kind(spec).map_err(|e| mismatch(e.to_string()))?;
    if m.source != source {
        return Err(mismatch(format!(
            "it holds positions of a {} source, the job reads a {source} source",
            m.source
        )));
    }
    if source == "generator" && m.parallelism != spec.parallelism {
        return Err(mismatch(format!(
            "a generator source resumes only at the parallelism it was snapshotted at ({}), the job has {}",
            m.parallelism, spec.parallelism
        )));
    }
    let shape = spec.state_shape();
    if !m.state_shape.is_empty() && m.state_shape != shape {
        if allow_non_restored_state {
            crate::notice!(
                "the snapshot's window state ({}) does not fit the job ({shape}); it is dropped, the source positions are kept",
                m.state_shape
            );
            return Ok(false);
        }
        return Err(mismatch(format!(
            "its window state was built for {}, the job has {shape}; restore it into a job with the same key, window and aggregates, or pass --allow-non-restored-state to drop that state and keep the source positions",
            m.state_shape
        )));
    }
    Ok(true)
}

/// The name of the job's kind of source, as snapshots record it.
pub(super) fn source_kind(spec: &JobSpec) -> Result<&'static str, SpecError> {
    Ok(spec.source.choice().map_err(|e| e.at("source"))?.name())
}

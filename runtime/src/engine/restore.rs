//! Choosing what a run restores: the snapshot a restore flag or a restart
//! names, a checkpoint rolled forward when its output was committed, and the
//! checks that the snapshot fits the job.

use std::path::Path;

use super::{JobError, RestoreFrom};
use crate::checkpoint::{read_snapshot, CheckpointStorage, Layout, Restore, RestoreError};
use crate::connectors::TwoPhaseCommitter;
use crate::spec::{JobSpec, SpecError};

/// The snapshot to start from, after rolling forward a checkpoint whose
/// output was committed (see `roll_forward`).
pub(super) fn find_restore(
    from: &RestoreFrom,
    base: &Path,
    storage: Option<&CheckpointStorage>,
    layout: &Layout,
    mut two_phase: Option<&mut (dyn TwoPhaseCommitter + 'static)>,
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
            roll_forward(storage, layout, two_phase)?;
            Ok(Some(storage.latest(layout)?))
        }
        RestoreFrom::Recovery {
            since,
            started_from,
        } => {
            let storage = storage_or("a restart")?;
            roll_forward(storage, layout, two_phase.as_deref_mut())?;
            match storage.newest(layout)? {
                Some((kind, id)) if id >= *since => {
                    Ok(Some(storage.read_snapshot(&layout.snapshot_dir(kind, id))?))
                }
                _ => match started_from {
                    Some(from) => find_restore(from, base, Some(storage), layout, two_phase),
                    None => Ok(None),
                },
            }
        }
    }
}

/// A checkpoint whose output the two-phase sink committed, but whose
/// `_metadata` was never written (the job died in between), is completed
/// now: the output it committed reflects its state, so that is the state to
/// resume from. The sink's commit record says which checkpoint committed
/// last.
fn roll_forward(
    storage: &CheckpointStorage,
    layout: &Layout,
    two_phase: Option<&mut (dyn TwoPhaseCommitter + 'static)>,
) -> Result<(), JobError> {
    let Some(sink) = two_phase else {
        return Ok(());
    };
    let committed = sink.last_committed().map_err(JobError::Sink)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Metadata, SnapshotKind, PENDING};

    /// A two-phase sink that has committed up to `committed`.
    struct Committed(Option<u64>);

    impl TwoPhaseCommitter for Committed {
        fn last_committed(&mut self) -> std::io::Result<Option<u64>> {
            Ok(self.0)
        }
        fn begin(&mut self, _: Option<u64>) -> std::io::Result<()> {
            Ok(())
        }
        fn write(
            &mut self,
            _: usize,
            _: usize,
            _: Vec<String>,
            _: Vec<String>,
        ) -> std::io::Result<()> {
            Ok(())
        }
        fn pre_commit(
            &mut self,
            _: usize,
            _: u64,
            _: Vec<(String, i32, i64)>,
        ) -> std::io::Result<()> {
            Ok(())
        }
        fn commit(&mut self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn workers(&self) -> usize {
            1
        }
        fn abort(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Checkpoint 1 complete, checkpoint 2 with its state written
    /// (`_pending`) but no `_metadata`.
    fn storage_with_pending_checkpoint(dir: &Path) -> (CheckpointStorage, Layout) {
        let storage = CheckpointStorage::from_uri("file://checkpoints", dir).unwrap();
        let layout = Layout::new("job");
        let metadata = |id| Metadata {
            id,
            kind: SnapshotKind::Checkpoint,
            job: "job".into(),
            completed_at: 0,
            parallelism: 1,
            max_parallelism: 128,
            watermark: 0,
            source: "file".into(),
            state_shape: String::new(),
            workers: Vec::new(),
            lookups: Vec::new(),
            bytes: 0,
        };
        let checkpoint = |id| layout.snapshot_dir(SnapshotKind::Checkpoint, id);
        storage
            .write_metadata(&checkpoint(1), crate::checkpoint::METADATA, &metadata(1))
            .unwrap();
        storage
            .write_metadata(&checkpoint(2), PENDING, &metadata(2))
            .unwrap();
        (storage, layout)
    }

    #[test]
    fn a_checkpoint_the_sink_committed_is_rolled_forward() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, layout) = storage_with_pending_checkpoint(dir.path());
        roll_forward(&storage, &layout, Some(&mut Committed(Some(2)))).unwrap();
        assert_eq!(
            storage.newest(&layout).unwrap(),
            Some((SnapshotKind::Checkpoint, 2))
        );
    }

    #[test]
    fn a_checkpoint_the_sink_did_not_commit_stays_incomplete() {
        for committed in [None, Some(1)] {
            let dir = tempfile::tempdir().unwrap();
            let (storage, layout) = storage_with_pending_checkpoint(dir.path());
            roll_forward(&storage, &layout, Some(&mut Committed(committed))).unwrap();
            assert_eq!(
                storage.newest(&layout).unwrap(),
                Some((SnapshotKind::Checkpoint, 1)),
                "sink committed {committed:?}"
            );
        }
        // Without a two-phase sink there is nothing to roll forward.
        let dir = tempfile::tempdir().unwrap();
        let (storage, layout) = storage_with_pending_checkpoint(dir.path());
        roll_forward(&storage, &layout, None).unwrap();
        assert_eq!(
            storage.newest(&layout).unwrap(),
            Some((SnapshotKind::Checkpoint, 1))
        );
    }
}

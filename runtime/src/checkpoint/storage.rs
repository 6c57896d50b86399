//! Checkpoint storage. `file://` for now; `s3://` comes with the S3 backend.
//! Writes are atomic (a temporary file renamed into place), so a crash never
//! leaves a half-written file under its final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{
    snapshot_id, Layout, Metadata, Restore, RestoreError, SnapshotKind, WorkerSnapshot, METADATA,
    PENDING,
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("checkpoint storage {uri:?}: {reason}")]
    Uri { uri: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: cannot decode ({reason})")]
    Decode { path: String, reason: String },
}

/// A storage root: the folder a `file://` URI names.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl CheckpointStorage {
    /// Parses `file:///abs/dir`, or `file://rel/dir` relative to `base_dir`.
    pub fn from_uri(uri: &str, base_dir: &Path) -> Result<Self, StorageError> {
        match uri.split_once("://") {
            Some(("file", path)) if !path.is_empty() => Ok(CheckpointStorage {
                root: base_dir.join(path),
            }),
            Some(("s3", _)) => Err(StorageError::Uri {
                uri: uri.into(),
                reason: "s3:// storage is not available yet in this build; use file://".into(),
            }),
            _ => Err(StorageError::Uri {
                uri: uri.into(),
                reason: "expected file:///path/to/dir".into(),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `bytes` to `rel` atomically, durably.
    pub fn write(&self, rel: &Path, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.root.join(rel);
        let dir = path.parent().expect("snapshot files live in a folder");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Creates a snapshot's folder: it reserves the id, so that no later
    /// run reuses it even if this snapshot never completes.
    pub fn reserve(&self, rel: &Path) -> Result<(), StorageError> {
        let path = self.root.join(rel);
        std::fs::create_dir_all(&path).map_err(io(&path))
    }

    pub fn read(&self, rel: &Path) -> Result<Vec<u8>, StorageError> {
        let path = self.root.join(rel);
        std::fs::read(&path).map_err(io(&path))
    }

    pub fn write_worker(&self, dir: &Path, snapshot: &WorkerSnapshot) -> Result<u64, StorageError> {
        let bytes = postcard::to_allocvec(snapshot).map_err(|e| StorageError::Decode {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        self.write(&dir.join(Layout::worker_file(snapshot.index)), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Writes `_metadata`: from now on the snapshot is complete.
    pub fn complete(&self, dir: &Path, metadata: &Metadata) -> Result<(), StorageError> {
        let json = serde_json::to_vec_pretty(metadata).expect("metadata serialises");
        self.write(&dir.join(METADATA), &json)
    }

    /// Writes the metadata as `_pending`: the state is all there, the sink
    /// has not committed yet. A restore rolls it forward if the sink did.
    pub fn prepare(&self, dir: &Path, metadata: &Metadata) -> Result<(), StorageError> {
        let json = serde_json::to_vec_pretty(metadata).expect("metadata serialises");
        self.write(&dir.join(PENDING), &json)
    }

    /// Completes checkpoint `id` from its `_pending` metadata, when its
    /// output was committed but the job died before `_metadata` was written.
    /// Returns whether there was one to complete.
    pub fn roll_forward(&self, layout: &Layout, id: u64) -> Result<bool, StorageError> {
        let dir = layout.snapshot_dir(SnapshotKind::Checkpoint, id);
        let pending = self.root.join(&dir).join(PENDING);
        if !pending.is_file() {
            return Ok(false);
        }
        let bytes = std::fs::read(&pending).map_err(io(&pending))?;
        self.write(&dir.join(METADATA), &bytes)?;
        Ok(true)
    }

    /// Completed snapshot ids in `dir` (checkpoints or savepoints), ascending.
    pub fn completed(&self, dir: &Path) -> Result<Vec<u64>, StorageError> {
        let path = self.root.join(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        let mut ids: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(METADATA).is_file())
            .filter_map(|e| snapshot_id(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Keeps the newest `retained` completed checkpoints; removes older ones
    /// and abandoned (incomplete) ones older than the newest complete one.
    pub fn retain(&self, layout: &Layout, retained: usize) -> Result<(), StorageError> {
        let dir = self.root.join(layout.checkpoints());
        let completed = self.completed(&layout.checkpoints())?;
        let Some(&newest) = completed.last() else {
            return Ok(());
        };
        let keep_from = completed
            .len()
            .checked_sub(retained)
            .map_or(0, |i| completed[i]);
        for entry in std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(Result::ok)
        {
            let Some(id) = snapshot_id(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let complete = completed.contains(&id);
            if (complete && id < keep_from) || (!complete && id < newest) {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// The newest id used by any checkpoint or savepoint of the job, so that
    /// a restored job numbers on from there.
    pub fn last_id(&self, layout: &Layout) -> Result<u64, StorageError> {
        let mut last = 0;
        for dir in [layout.checkpoints(), layout.savepoints()] {
            let path = self.root.join(dir);
            if let Ok(entries) = std::fs::read_dir(&path) {
                for e in entries.filter_map(Result::ok) {
                    if let Some(id) = snapshot_id(&e.file_name().to_string_lossy()) {
                        last = last.max(id);
                    }
                }
            }
        }
        Ok(last)
    }

    /// The newest completed checkpoint of the job.
    pub fn latest(&self, layout: &Layout) -> Result<Restore, RestoreError> {
        let ids = self.completed(&layout.checkpoints())?;
        let Some(&id) = ids.last() else {
            return Err(RestoreError::NoCheckpoint {
                job: layout.job().to_string(),
                root: self.root.display().to_string(),
            });
        };
        read_snapshot(
            &self
                .root
                .join(layout.snapshot_dir(SnapshotKind::Checkpoint, id)),
        )
    }
}

/// Reads a snapshot folder (a checkpoint or a savepoint) in full.
pub fn read_snapshot(dir: &Path) -> Result<Restore, RestoreError> {
    let not = |reason: String| RestoreError::NotASnapshot {
        path: dir.display().to_string(),
        reason,
    };
    let meta_path = dir.join(METADATA);
    let bytes = std::fs::read(&meta_path).map_err(|e| {
        not(format!(
            "no readable {METADATA} ({e}); an incomplete checkpoint is never restored"
        ))
    })?;
    let metadata: Metadata =
        serde_json::from_slice(&bytes).map_err(|e| not(format!("{METADATA} is not valid: {e}")))?;
    let mut workers = Vec::with_capacity(metadata.workers.len());
    for file in &metadata.workers {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| not(format!("{file}: {e}")))?;
        let snapshot: WorkerSnapshot = postcard::from_bytes(&bytes)
            .map_err(|e| not(format!("{file} cannot be decoded: {e}")))?;
        workers.push(snapshot);
    }
    Ok(Restore {
        path: dir.display().to_string(),
        metadata,
        workers,
    })
}

//! Checkpoints and savepoints: what a snapshot holds, where it is stored,
//! and how a job finds the one to restore.
//!
//! The layout and the snapshot protocol (`_pending`, `_metadata`, ids)
//! are `streamjob-storage`'s, shared with the operator; this module adds
//! what a worker's files hold and reads a snapshot back for a restore.

mod storage;

use serde::{Deserialize, Serialize};

use crate::record::Key;
use crate::state::StateError;
use crate::window::KeyState;

pub use storage::{read_snapshot, CheckpointStorage};
pub use streamjob_storage::{
    resolve_key, snapshot_id, Layout, Metadata, SnapshotKind, SnapshotStore, StateFile,
    StorageError, StorageUri, METADATA, PENDING,
};

/// Where one partition of a source was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionPosition {
    /// Names the partition across runs (a file's path, a generator split).
    pub id: String,
    /// Where to resume reading (a byte offset, or an event index).
    pub offset: u64,
    /// Records read so far (line number of a file).
    pub records: u64,
    /// Highest event time seen: the partition's watermark resumes from it.
    pub max_ts: i64,
    pub ended: bool,
}

/// One worker's part of a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    pub index: usize,
    /// Key groups `[first, last]` this worker owned.
    pub key_groups: (u16, u16),
    pub positions: Vec<PartitionPosition>,
    /// Keyed window state, sorted by key group (savepoints).
    pub entries: Vec<(u16, Key, KeyState)>,
    /// Keyed window state as a RocksDB checkpoint's files (checkpoints).
    pub state_files: Vec<StateFile>,
}

/// One worker's lookup tables (a job with `enrich`), beside its worker
/// file as `worker-<i>.lookups`. Every worker holds whole tables, each at
/// its own changelog positions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LookupsSnapshot {
    pub index: usize,
    pub tables: Vec<TableSnapshot>,
}

/// A lookup table: where its changelog was read up to, and its entries
/// (savepoints) or RocksDB files (checkpoints).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableSnapshot {
    pub name: String,
    /// The changelog key and kept fields it was built with: it restores
    /// only into a lookup with the same (else it is built again).
    pub shape: String,
    pub positions: Vec<PartitionPosition>,
    pub entries: Vec<(Key, String)>,
    pub state_files: Vec<StateFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no completed checkpoint for job {job} under {root}")]
    NoCheckpoint { job: String, root: String },
    #[error("{path} is not a snapshot: {reason}")]
    NotASnapshot { path: String, reason: String },
    #[error("the snapshot at {path} does not fit this job: {reason}")]
    Mismatch { path: String, reason: String },
    #[error("cannot read the state of the snapshot at {path}: {source}")]
    State { path: String, source: StateError },
}

/// A snapshot chosen for restore: its metadata and worker files, read in
/// full; state files are fetched by `load_state`.
#[derive(Debug, Clone)]
pub struct Restore {
    /// Folder of the snapshot (for messages).
    pub path: String,
    pub metadata: Metadata,
    pub workers: Vec<WorkerSnapshot>,
    /// The workers' lookup tables, in worker order (empty without `enrich`).
    pub lookups: Vec<LookupsSnapshot>,
    storage: CheckpointStorage,
    /// The snapshot's folder in `storage`.
    dir: String,
}

impl Restore {
    /// The positions of every partition, from all workers.
    pub fn position(&self, id: &str) -> Option<&PartitionPosition> {
        self.workers
            .iter()
            .flat_map(|w| &w.positions)
            .find(|p| p.id == id)
    }

    /// Calls `f` with every key and state in key groups `[first, last]`,
    /// from every old worker whose range overlaps it: this is how state
    /// moves between parallelisms. A worker's RocksDB files are downloaded
    /// to `scratch` (removed again) and read from there.
    pub fn load_state(
        &self,
        first: u16,
        last: u16,
        scratch: &std::path::Path,
        mut f: impl FnMut(Key, KeyState) -> Result<(), StateError>,
    ) -> Result<(), RestoreError> {
        let overlapping = self
            .workers
            .iter()
            .filter(move |w| w.key_groups.0 <= last && w.key_groups.1 >= first);
        for w in overlapping {
            for (group, key, state) in &w.entries {
                if (first..=last).contains(group) {
                    f(key.clone(), state.clone()).map_err(|e| self.state_error(e))?;
                }
            }
            if w.state_files.is_empty() {
                continue;
            }
            let local = scratch.join(format!("from-worker-{}", w.index));
            self.download(&w.state_files, &format!("worker {}", w.index), &local)?;
            let read = crate::state::read_checkpoint(&local, first, last, &mut f);
            let _ = std::fs::remove_dir_all(&local);
            read.map_err(|e| self.state_error(e))?;
        }
        Ok(())
    }

    /// The lookup tables for new worker `index`: those of old worker
    /// `index mod old parallelism` (every worker held whole tables).
    pub fn tables_for(&self, index: usize) -> &[TableSnapshot] {
        match self.lookups.len() {
            0 => &[],
            n => &self.lookups[index % n].tables,
        }
    }

    /// Calls `f` with every entry of a lookup table: its savepoint entries,
    /// or its RocksDB files, downloaded to `scratch` (removed again).
    pub fn load_table(
        &self,
        table: &TableSnapshot,
        scratch: &std::path::Path,
        mut f: impl FnMut(Key, String) -> Result<(), StateError>,
    ) -> Result<(), RestoreError> {
        for (key, value) in &table.entries {
            f(key.clone(), value.clone()).map_err(|e| self.state_error(e))?;
        }
        if table.state_files.is_empty() {
            return Ok(());
        }
        let local = scratch.join(format!("lookup-{}", table.name));
        self.download(
            &table.state_files,
            &format!("lookup {}", table.name),
            &local,
        )?;
        let read = crate::state::read_checkpoint(&local, 0, u16::MAX, &mut f);
        let _ = std::fs::remove_dir_all(&local);
        read.map_err(|e| self.state_error(e))
    }

    fn state_error(&self, source: StateError) -> RestoreError {
        RestoreError::State {
            path: self.path.clone(),
            source,
        }
    }

    /// Fetches the state files of `owner` (an old worker, a lookup table)
    /// into `local` (made afresh).
    fn download(
        &self,
        files: &[StateFile],
        owner: &str,
        local: &std::path::Path,
    ) -> Result<(), RestoreError> {
        let io = |source| StorageError::Io {
            path: local.display().to_string(),
            source,
        };
        let _ = std::fs::remove_dir_all(local);
        std::fs::create_dir_all(local).map_err(io)?;
        for file in files {
            let key = resolve_key(&self.dir, &file.key);
            let bytes = self
                .storage
                .get(&key)?
                .ok_or_else(|| RestoreError::NotASnapshot {
                    path: self.path.clone(),
                    reason: format!(
                        "state file {} of {owner} is missing",
                        self.storage.location(&key),
                    ),
                })?;
            std::fs::write(local.join(&file.name), bytes).map_err(io)?;
        }
        Ok(())
    }
}

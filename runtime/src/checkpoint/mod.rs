//! Checkpoints and savepoints: what a snapshot holds, where it is stored,
//! and how a job finds the one to restore.
//!
//! Layout under `<storage>/<job>/` (DESIGN.md):
//!
//! ```text
//! checkpoints/chk-<id>/worker-<i>.snapshot   one per worker: positions, and
//!                                            the list of its state files
//! checkpoints/chk-<id>/worker-<i>/…          its RocksDB descriptor files
//! checkpoints/chk-<id>/_metadata             written last: the checkpoint is complete
//! shared/<run>/<n>.sst                       RocksDB SST files, uploaded once
//!                                            and referenced by every checkpoint
//!                                            that still contains them
//! savepoints/sp-<id>/…                        self-contained: every key and
//!                                            value in the worker files, kept
//!                                            until deleted
//! ```
//!
//! A checkpoint without `_metadata` is incomplete and is never restored.
//! Checkpoints are incremental (an SST file is immutable, so one uploaded
//! for an earlier checkpoint is referenced, not uploaded again); savepoints
//! are full and portable, so that deleting checkpoints never breaks them.

mod s3_store;
mod storage;
mod store;

use serde::{Deserialize, Serialize};

use crate::record::Key;
use crate::state::StateError;
use crate::window::KeyState;

pub use storage::{read_snapshot, CheckpointStorage, StorageError, StorageUri};

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

/// One file of a worker's RocksDB checkpoint, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Its name in the RocksDB folder.
    pub name: String,
    /// Its key relative to the snapshot's folder: `worker-<i>/<name>` for
    /// the checkpoint's own files, `../../shared/<run>/<name>` for SST
    /// files shared with other checkpoints.
    pub key: String,
    pub bytes: u64,
}

impl StateFile {
    pub fn is_shared(&self) -> bool {
        self.key.starts_with("../")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

/// `_metadata`: what the snapshot is, and which files make it up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: u64,
    pub kind: SnapshotKind,
    pub job: String,
    /// Wall-clock time the snapshot completed, epoch milliseconds.
    pub completed_at: i64,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// The job's watermark at the snapshot (the same in every worker:
    /// barriers are aligned and watermarks travel in-band).
    pub watermark: i64,
    /// Source kind the positions belong to (`file`, `generator`).
    pub source: String,
    /// What the keyed state was built for (key fields, window and
    /// aggregates): state restores only into a job with the same.
    #[serde(default)]
    pub state_shape: String,
    /// Snapshot files, one per worker, relative to the snapshot's folder.
    pub workers: Vec<String>,
    /// The workers' lookup tables files (jobs with `enrich`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookups: Vec<String>,
    pub bytes: u64,
}

pub const METADATA: &str = "_metadata";
/// Metadata of a checkpoint whose state is written but whose output is not
/// yet known to be committed.
pub const PENDING: &str = "_pending";

/// Paths of a job's snapshots under the storage root.
#[derive(Debug, Clone)]
pub struct Layout {
    job: String,
}

impl Layout {
    pub fn new(job: &str) -> Self {
        Layout {
            job: job.to_string(),
        }
    }

    pub fn job(&self) -> &str {
        &self.job
    }

    pub fn checkpoints(&self) -> String {
        format!("{}/checkpoints", self.job)
    }

    pub fn savepoints(&self) -> String {
        format!("{}/savepoints", self.job)
    }

    /// The folder (key prefix) of a snapshot under the storage root.
    pub fn snapshot_dir(&self, kind: SnapshotKind, id: u64) -> String {
        match kind {
            SnapshotKind::Checkpoint => format!("{}/chk-{id}", self.checkpoints()),
            SnapshotKind::Savepoint => format!("{}/sp-{id}", self.savepoints()),
        }
    }

    pub fn worker_file(index: usize) -> String {
        format!("worker-{index}.snapshot")
    }

    pub fn lookups_file(index: usize) -> String {
        format!("worker-{index}.lookups")
    }

    /// Where a deployment records the first snapshot id its processes may
    /// resume from (see `RunOptions::deployment`).
    pub fn deployment_marker(&self, deployment: &str) -> String {
        format!("{}/deployments/{deployment}.json", self.job)
    }

    /// The folder of the SST files checkpoints share.
    pub fn shared(&self) -> String {
        format!("{}/shared", self.job)
    }

    /// The key of a worker's own state file, relative to its snapshot folder.
    pub fn private_state_file(index: usize, name: &str) -> String {
        format!("worker-{index}/{name}")
    }

    /// The key of a file of a worker's lookup table, relative to its
    /// snapshot folder.
    pub fn private_table_file(index: usize, table: &str, name: &str) -> String {
        format!("worker-{index}.lookup-{table}/{name}")
    }

    /// The key of a shared SST file of worker run `run`, relative to a
    /// checkpoint's folder (`<job>/checkpoints/chk-<id>`).
    pub fn shared_state_file(run: &str, name: &str) -> String {
        format!("../../shared/{run}/{name}")
    }
}

/// `dir/key` with `.` and `..` segments resolved, as far as the root allows
/// (a key above the root keeps its leading `..`).
pub fn resolve_key(dir: &str, key: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/').chain(key.split('/')) {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// Parses `chk-<id>` / `sp-<id>`.
pub fn snapshot_id(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")
        .or_else(|| name.strip_prefix("sp-"))
        .and_then(|id| id.parse().ok())
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

//! Checkpoints and savepoints: what a snapshot holds, where it is stored,
//! and how a job finds the one to restore.
//!
//! Layout under `<storage>/<job>/` (DESIGN.md):
//!
//! ```text
//! checkpoints/chk-<id>/worker-<i>.snapshot   one per worker
//! checkpoints/chk-<id>/_metadata             written last: the checkpoint is complete
//! savepoints/sp-<id>/…                        the same, kept until deleted
//! ```
//!
//! A checkpoint without `_metadata` is incomplete and is never restored.

mod s3_store;
mod storage;
mod store;

use serde::{Deserialize, Serialize};

use crate::record::Key;
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
    /// Keyed window state, sorted by key group.
    pub entries: Vec<(u16, Key, KeyState)>,
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
}

/// A snapshot chosen for restore, read in full.
#[derive(Debug, Clone)]
pub struct Restore {
    /// Folder of the snapshot (for messages).
    pub path: String,
    pub metadata: Metadata,
    pub workers: Vec<WorkerSnapshot>,
}

impl Restore {
    /// The positions of every partition, from all workers.
    pub fn position(&self, id: &str) -> Option<&PartitionPosition> {
        self.workers
            .iter()
            .flat_map(|w| &w.positions)
            .find(|p| p.id == id)
    }

    /// State entries in key groups `[first, last]`, from every old worker
    /// whose range overlaps it: this is how state moves between
    /// parallelisms.
    pub fn entries_for(
        &self,
        first: u16,
        last: u16,
    ) -> impl Iterator<Item = &(u16, Key, KeyState)> {
        self.workers
            .iter()
            .filter(move |w| w.key_groups.0 <= last && w.key_groups.1 >= first)
            .flat_map(|w| &w.entries)
            .filter(move |(group, _, _)| *group >= first && *group <= last)
    }
}

//! Checkpoint storage: where a job's snapshots live and how they are laid
//! out, shared by the runtime (which writes and restores them) and the
//! operator (which finds the newest one and disposes of savepoints). The
//! runtime adds what is inside a worker's files; nothing here knows about
//! RocksDB or Kafka. See `docs/architecture.md#storage-layout`.
//!
//! Layout under `<storage>/<job>/`:
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

pub mod fsutil;
mod s3_store;
mod snapshots;
mod store;

use serde::{Deserialize, Serialize};

pub use snapshots::{SnapshotStore, StorageError};
pub use store::{FileStore, ObjectStore};
pub use streamjob_api::SnapshotKind;
pub use streamjob_spec::StorageUri;

/// One file of a worker's RocksDB checkpoint, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Its name in the RocksDB folder.
    pub name: String,
    /// Its key relative to the snapshot's folder: `worker-<i>/<name>` for
    /// the checkpoint's own files; for SST files shared with other
    /// checkpoints, a key that climbs out of the snapshot's folder into the
    /// job's shared-state folder ([`Layout::shared_state_file`]; the
    /// storage layout is in docs/architecture.md).
    pub key: String,
    pub bytes: u64,
}

impl StateFile {
    pub fn is_shared(&self) -> bool {
        self.key.starts_with("../")
    }
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

/// The folder of a job's checkpoint storage that holds the SST files
/// checkpoints share (as Flink's checkpoint storage names it).
const SHARED_STATE_FOLDER: &str = "shared";

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
        format!("{}/{SHARED_STATE_FOLDER}", self.job)
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
        format!("../../{SHARED_STATE_FOLDER}/{run}/{name}")
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

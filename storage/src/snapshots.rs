//! The snapshot protocol on an object store (`file://` or `s3://`):
//! snapshot folders, `_pending` and `_metadata`, ids, and the newest
//! completed snapshot. `_metadata` is written last; `_pending` holds the
//! metadata of a checkpoint whose state is written but whose output is not
//! known to be committed yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::s3_store::S3Store;
use crate::store::{FileStore, ObjectStore};
use crate::{snapshot_id, Layout, Metadata, SnapshotKind, StorageUri, METADATA, PENDING};

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
    #[error("{location}: {reason}")]
    S3 { location: String, reason: String },
}

/// Marks a snapshot's folder as taken: it reserves the id, so that no later
/// run reuses it even if this snapshot never completes.
const STARTED: &str = "_started";

/// A storage root with the snapshot protocol on top.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    store: Arc<dyn ObjectStore>,
}

impl SnapshotStore {
    fn new(store: Arc<dyn ObjectStore>) -> Self {
        SnapshotStore { store }
    }

    /// Opens `file:///abs/dir`, `file://rel/dir` (relative to `base_dir`)
    /// or `s3://bucket/prefix`.
    pub fn from_uri(uri: &str, base_dir: &Path) -> Result<Self, StorageError> {
        let parsed = StorageUri::parse(uri).map_err(|reason| StorageError::Uri {
            uri: uri.into(),
            reason,
        })?;
        let store: Arc<dyn ObjectStore> = match parsed {
            StorageUri::File(path) => Arc::new(FileStore::new(base_dir.join(path))),
            StorageUri::S3 { bucket, prefix } => Arc::new(S3Store::open(bucket, prefix)?),
        };
        Ok(SnapshotStore::new(store))
    }

    /// The storage holding the snapshot folder at `location` (a URI, or a
    /// plain path relative to `base_dir`), and the folder's key in it. The
    /// storage is rooted at the bucket or the file system's root, so that
    /// keys relative to the folder (a shared state file's climbs out of it,
    /// see `Layout::shared_state_file`) stay inside it.
    pub fn locate(location: &str, base_dir: &Path) -> Result<(Self, String), StorageError> {
        let uri_error = |reason| StorageError::Uri {
            uri: location.into(),
            reason,
        };
        let path = match StorageUri::parse(location) {
            Ok(StorageUri::S3 { bucket, prefix }) => {
                let store = Arc::new(S3Store::open(bucket, "")?);
                return Ok((SnapshotStore::new(store), prefix.to_string()));
            }
            Ok(StorageUri::File(path)) => path,
            Err(reason) if location.contains("://") => return Err(uri_error(reason)),
            Err(_) => location,
        };
        let absolute =
            std::path::absolute(base_dir.join(path)).map_err(|source| StorageError::Io {
                path: location.into(),
                source,
            })?;
        let dir = absolute
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        let store = Arc::new(FileStore::new(PathBuf::from("/")));
        Ok((SnapshotStore::new(store), dir))
    }

    /// Where `key` is, as users see it.
    pub fn location(&self, key: &str) -> String {
        self.store.location(key)
    }

    /// Writes `bytes` to `key` atomically, durably.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.store.put(key, bytes)
    }

    /// Deletes a snapshot folder, `_metadata` first: a deletion cut short
    /// leaves an incomplete snapshot, never restored, rather than a broken
    /// complete one.
    pub fn delete_snapshot(&self, dir: &str) -> Result<(), StorageError> {
        self.store.delete(&format!("{dir}/{METADATA}"))?;
        self.store.delete_prefix(&format!("{dir}/"))
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.store.get(key)
    }

    pub fn reserve(&self, dir: &str) -> Result<(), StorageError> {
        self.store.put(&format!("{dir}/{STARTED}"), b"")
    }

    /// Writes a snapshot's metadata as `name`: `_pending` once its state is
    /// all written (the sink has not committed yet; a restore rolls it
    /// forward if the sink did), then `_metadata`, which completes it.
    pub fn write_metadata(
        &self,
        dir: &str,
        name: &str,
        metadata: &Metadata,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_vec_pretty(metadata).expect("metadata serialises");
        self.write(&format!("{dir}/{name}"), &json)
    }

    /// Completes snapshot `id` from its `_pending` metadata, when its output
    /// was committed but the job died before `_metadata` was written.
    /// Returns whether there was one to complete.
    pub fn roll_forward(&self, layout: &Layout, id: u64) -> Result<bool, StorageError> {
        for kind in [SnapshotKind::Checkpoint, SnapshotKind::Savepoint] {
            let dir = layout.snapshot_dir(kind, id);
            if let Some(bytes) = self.store.get(&format!("{dir}/{PENDING}"))? {
                self.write(&format!("{dir}/{METADATA}"), &bytes)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Snapshot ids in `dir` (checkpoints or savepoints), each with whether
    /// it is complete, ascending.
    pub fn snapshots(&self, dir: &str) -> Result<Vec<(u64, bool)>, StorageError> {
        let mut found = std::collections::BTreeMap::new();
        for key in self.store.list(&format!("{dir}/"))? {
            let Some(rest) = key.strip_prefix(dir).and_then(|k| k.strip_prefix('/')) else {
                continue;
            };
            let (folder, file) = rest.split_once('/').unwrap_or((rest, ""));
            if let Some(id) = snapshot_id(folder) {
                *found.entry(id).or_insert(false) |= file == METADATA;
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Completed snapshot ids in `dir` (checkpoints or savepoints), ascending.
    pub fn completed(&self, dir: &str) -> Result<Vec<u64>, StorageError> {
        Ok(self
            .snapshots(dir)?
            .into_iter()
            .filter(|(_, complete)| *complete)
            .map(|(id, _)| id)
            .collect())
    }

    /// The newest id used by any checkpoint or savepoint of the job, so that
    /// a restored job numbers on from there.
    pub fn last_id(&self, layout: &Layout) -> Result<u64, StorageError> {
        let mut last = 0;
        for dir in [layout.checkpoints(), layout.savepoints()] {
            if let Some((id, _)) = self.snapshots(&dir)?.last() {
                last = last.max(*id);
            }
        }
        Ok(last)
    }

    /// The newest completed snapshot of the job: its newest checkpoint, or a
    /// savepoint taken after it. A savepoint commits the sink's output like a
    /// checkpoint, so recovery never goes back behind one (as in Flink
    /// before 1.15, "if there is no checkpoint after the last savepoint, the
    /// savepoint is used for recovery").
    pub fn newest(&self, layout: &Layout) -> Result<Option<(SnapshotKind, u64)>, StorageError> {
        let newest = |kind, dir: String| -> Result<_, StorageError> {
            Ok(self.completed(&dir)?.last().map(|id| (kind, *id)))
        };
        let checkpoint = newest(SnapshotKind::Checkpoint, layout.checkpoints())?;
        let savepoint = newest(SnapshotKind::Savepoint, layout.savepoints())?;
        Ok(checkpoint.into_iter().chain(savepoint).max_by_key(|s| s.1))
    }

    /// Every key under `prefix` (a folder: `a/b/`).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.store.list(prefix)
    }

    /// Removes `key`; nothing happens when it does not exist.
    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.store.delete(key)
    }
}

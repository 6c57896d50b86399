//! Checkpoint storage: the layout of DESIGN.md on an object store (`file://`
//! or `s3://`). `_metadata` is written last; `_pending` holds the metadata of
//! a checkpoint whose state is written but whose output is not known to be
//! committed yet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::s3_store::S3Store;
use super::store::{FileStore, ObjectStore};
use super::{
    resolve_key, snapshot_id, Layout, LookupsSnapshot, Metadata, Restore, RestoreError,
    SnapshotKind, StateFile, WorkerSnapshot, METADATA, PENDING,
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
    #[error("{location}: {reason}")]
    S3 { location: String, reason: String },
}

/// A storage URI, parsed once for validation and for opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageUri<'a> {
    /// A folder (relative paths are resolved against the job file's).
    File(&'a str),
    /// A bucket and a key prefix (possibly empty).
    S3 { bucket: &'a str, prefix: &'a str },
}

impl<'a> StorageUri<'a> {
    /// Parses `file://dir` or `s3://bucket[/prefix]`; the error says what
    /// would be accepted.
    pub fn parse(uri: &'a str) -> Result<Self, String> {
        let expected =
            || format!("expected file:///path/to/dir or s3://bucket/prefix, got {uri:?}");
        match uri.split_once("://") {
            Some(("file", path)) if !path.is_empty() => Ok(StorageUri::File(path)),
            Some(("s3", rest)) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!("{}: the bucket is missing", expected()));
                }
                Ok(StorageUri::S3 {
                    bucket,
                    prefix: prefix.trim_matches('/'),
                })
            }
            Some(("s3a" | "s3n" | "s3p", _)) => Err(format!(
                "{}; Hadoop's s3a://, s3n:// and Flink's s3p:// are spelled s3:// here",
                expected()
            )),
            _ => Err(expected()),
        }
    }
}

/// Marks a snapshot's folder as taken: it reserves the id, so that no later
/// run reuses it even if this snapshot never completes.
const STARTED: &str = "_started";

/// A storage root with the checkpoint protocol on top.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    /// The shared files each completed checkpoint references, by folder:
    /// retention needs them after every checkpoint, and a completed
    /// checkpoint's files never change, so each is read once.
    shared_refs: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl CheckpointStorage {
    fn new(store: Arc<dyn ObjectStore>) -> Self {
        CheckpointStorage {
            store,
            shared_refs: Default::default(),
        }
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
        Ok(CheckpointStorage::new(store))
    }

    /// The storage holding the snapshot folder at `location` (a URI, or a
    /// plain path relative to `base_dir`), and the folder's key in it. The
    /// storage is rooted at the bucket or the file system's root, so that
    /// keys relative to the folder (`../../shared/…`) stay inside it.
    fn locate(location: &str, base_dir: &Path) -> Result<(Self, String), StorageError> {
        let uri_error = |reason| StorageError::Uri {
            uri: location.into(),
            reason,
        };
        let path = match StorageUri::parse(location) {
            Ok(StorageUri::S3 { bucket, prefix }) => {
                let store = Arc::new(S3Store::open(bucket, "")?);
                return Ok((CheckpointStorage::new(store), prefix.to_string()));
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
        Ok((CheckpointStorage::new(store), dir))
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

    /// Writes a worker's part of snapshot `id` (its last file: the worker's
    /// part is complete once this is there).
    pub fn write_worker(
        &self,
        dir: &str,
        id: u64,
        snapshot: &WorkerSnapshot,
    ) -> Result<u64, StorageError> {
        if crate::failpoint::error_at("snapshot-write", id) {
            return Err(StorageError::Io {
                path: self.location(dir),
                source: std::io::Error::other(format!("failpoint snapshot-write:{id} reached")),
            });
        }
        self.write_encoded(dir, &Layout::worker_file(snapshot.index), snapshot)
    }

    /// Writes a worker's lookup tables file of snapshot `id` (before its
    /// worker file, which completes the worker's part).
    pub fn write_lookups(
        &self,
        dir: &str,
        snapshot: &LookupsSnapshot,
    ) -> Result<u64, StorageError> {
        self.write_encoded(dir, &Layout::lookups_file(snapshot.index), snapshot)
    }

    /// Writes `value`, postcard-encoded, as `dir/file`; returns its size.
    fn write_encoded(
        &self,
        dir: &str,
        file: &str,
        value: &impl serde::Serialize,
    ) -> Result<u64, StorageError> {
        let bytes = postcard::to_allocvec(value).map_err(|e| StorageError::Decode {
            path: self.location(dir),
            reason: e.to_string(),
        })?;
        self.write(&format!("{dir}/{file}"), &bytes)?;
        Ok(bytes.len() as u64)
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
    fn snapshots(&self, dir: &str) -> Result<Vec<(u64, bool)>, StorageError> {
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

    /// Keeps the newest `retained` completed checkpoints; removes older ones
    /// and abandoned (incomplete) ones older than the newest complete one.
    pub fn retain(&self, layout: &Layout, retained: usize) -> Result<(), StorageError> {
        let all = self.snapshots(&layout.checkpoints())?;
        let completed: Vec<u64> = all.iter().filter(|s| s.1).map(|s| s.0).collect();
        let Some(&newest) = completed.last() else {
            return Ok(());
        };
        let keep_from = completed
            .len()
            .checked_sub(retained)
            .map_or(0, |i| completed[i]);
        let (dropped, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|&(id, complete)| {
            (complete && id < keep_from) || (!complete && id < newest)
        });
        if dropped.is_empty() {
            return Ok(());
        }
        // Shared state files that only dropped checkpoints use go with them.
        // A checkpoint still being written never needs one of those: a file
        // it shares with a dropped checkpoint was live in between, so the
        // newest completed checkpoint (always kept) references it too.
        let mut unused = std::collections::BTreeSet::new();
        for &(id, complete) in &dropped {
            let dir = layout.snapshot_dir(SnapshotKind::Checkpoint, id);
            unused.extend(self.shared_files(&dir, complete)?);
        }
        for &(id, complete) in &kept {
            if complete && !unused.is_empty() {
                let dir = layout.snapshot_dir(SnapshotKind::Checkpoint, id);
                for key in self.shared_files(&dir, true)? {
                    unused.remove(&key);
                }
            }
        }
        for (id, _) in dropped {
            let dir = layout.snapshot_dir(SnapshotKind::Checkpoint, id);
            self.delete_snapshot(&dir)?;
            self.refs().remove(&dir);
        }
        for key in unused {
            self.store.delete(&key)?;
        }
        Ok(())
    }

    /// Removes the shared state files no checkpoint folder references: what
    /// a run that died in the middle of an upload left behind. Call before a
    /// run uploads anything (a job has one writer: a live run's files not yet
    /// listed would look unreferenced too). Returns how many were removed.
    pub fn remove_unreferenced_shared_files(&self, layout: &Layout) -> Result<usize, StorageError> {
        let stored = self.store.list(&format!("{}/", layout.shared()))?;
        if stored.is_empty() {
            return Ok(0);
        }
        let mut referenced = std::collections::HashSet::new();
        for (id, complete) in self.snapshots(&layout.checkpoints())? {
            let dir = layout.snapshot_dir(SnapshotKind::Checkpoint, id);
            referenced.extend(self.shared_files(&dir, complete)?);
        }
        let mut removed = 0;
        for key in stored.iter().filter(|k| !referenced.contains(*k)) {
            self.store.delete(key)?;
            removed += 1;
        }
        Ok(removed)
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.shared_refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared state files the worker files in `dir` reference (keys from
    /// the storage root); remembered for a `complete` checkpoint.
    fn shared_files(&self, dir: &str, complete: bool) -> Result<Vec<String>, StorageError> {
        if let Some(keys) = self.refs().get(dir) {
            return Ok(keys.clone());
        }
        let keys = self.read_shared_files(dir)?;
        if complete {
            self.refs().insert(dir.to_string(), keys.clone());
        }
        Ok(keys)
    }

    fn read_shared_files(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        for key in self.store.list(&format!("{dir}/"))? {
            let (worker, lookups) = (key.ends_with(".snapshot"), key.ends_with(".lookups"));
            if !worker && !lookups {
                continue;
            }
            let Some(bytes) = self.store.get(&key)? else {
                continue;
            };
            let decode_error = |e: postcard::Error| StorageError::Decode {
                path: self.location(&key),
                reason: e.to_string(),
            };
            let files: Vec<StateFile> = if worker {
                postcard::from_bytes::<WorkerSnapshot>(&bytes)
                    .map_err(decode_error)?
                    .state_files
            } else {
                postcard::from_bytes::<LookupsSnapshot>(&bytes)
                    .map_err(decode_error)?
                    .tables
                    .into_iter()
                    .flat_map(|t| t.state_files)
                    .collect()
            };
            keys.extend(
                files
                    .iter()
                    .filter(|f| f.is_shared())
                    .map(|f| resolve_key(dir, &f.key)),
            );
        }
        Ok(keys)
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

    /// Reads the newest completed snapshot of the job (see `newest`).
    pub fn latest(&self, layout: &Layout) -> Result<Restore, RestoreError> {
        let Some((kind, id)) = self.newest(layout)? else {
            return Err(RestoreError::NoCheckpoint {
                job: layout.job().to_string(),
                root: self.location(""),
            });
        };
        self.read_snapshot(&layout.snapshot_dir(kind, id))
    }

    /// Reads a snapshot folder (a checkpoint or a savepoint) in full.
    pub fn read_snapshot(&self, dir: &str) -> Result<Restore, RestoreError> {
        let key = |file: &str| resolve_key(dir, file);
        let not = |reason: String| RestoreError::NotASnapshot {
            path: self.location(dir),
            reason,
        };
        let bytes = match self.store.get(&key(METADATA)) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(not(format!(
                    "no {METADATA}; an incomplete checkpoint is never restored"
                )))
            }
            Err(e) => return Err(not(format!("no readable {METADATA} ({e})"))),
        };
        let metadata: Metadata = serde_json::from_slice(&bytes)
            .map_err(|e| not(format!("{METADATA} is not valid: {e}")))?;
        // The worker files, then the lookup tables files, as listed.
        fn read_all<T: serde::de::DeserializeOwned>(
            storage: &CheckpointStorage,
            files: &[String],
            key: impl Fn(&str) -> String,
            not: impl Fn(String) -> RestoreError,
        ) -> Result<Vec<T>, RestoreError> {
            files
                .iter()
                .map(|file| {
                    let bytes = storage
                        .store
                        .get(&key(file))
                        .map_err(|e| not(format!("{file}: {e}")))?
                        .ok_or_else(|| not(format!("{file} is missing")))?;
                    postcard::from_bytes(&bytes)
                        .map_err(|e| not(format!("{file} cannot be decoded: {e}")))
                })
                .collect()
        }
        let workers: Vec<WorkerSnapshot> = read_all(self, &metadata.workers, key, not)?;
        let lookups: Vec<LookupsSnapshot> = read_all(self, &metadata.lookups, key, not)?;
        Ok(Restore {
            path: self.location(dir),
            metadata,
            workers,
            lookups,
            storage: self.clone(),
            dir: dir.to_string(),
        })
    }
}

/// Reads the snapshot at `location` (a folder path, relative to `base_dir`,
/// or a `file://` / `s3://` URI).
pub fn read_snapshot(location: &str, base_dir: &Path) -> Result<Restore, RestoreError> {
    let (storage, dir) = CheckpointStorage::locate(location, base_dir)?;
    storage.read_snapshot(&dir)
}

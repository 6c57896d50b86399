//! The runtime's side of checkpoint storage: what a worker's files hold
//! (its positions, state files, lookup tables), retention of shared state
//! files, and reading a snapshot in full for a restore. The layout and the
//! snapshot protocol are `streamjob-storage`'s.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{
    resolve_key, Layout, LookupsSnapshot, Metadata, Restore, RestoreError, SnapshotKind,
    SnapshotStore, StateFile, StorageError, WorkerSnapshot, METADATA,
};

/// A job's checkpoint storage: the snapshot protocol (`SnapshotStore`,
/// reached through `Deref`) and the runtime's files inside snapshots.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    store: SnapshotStore,
    /// The shared files each completed checkpoint references, by folder:
    /// retention needs them after every checkpoint, and a completed
    /// checkpoint's files never change, so each is read once.
    shared_refs: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl std::ops::Deref for CheckpointStorage {
    type Target = SnapshotStore;

    fn deref(&self) -> &SnapshotStore {
        &self.store
    }
}

impl CheckpointStorage {
    fn new(store: SnapshotStore) -> Self {
        CheckpointStorage {
            store,
            shared_refs: Default::default(),
        }
    }

    /// Opens `file:///abs/dir`, `file://rel/dir` (relative to `base_dir`)
    /// or `s3://bucket/prefix`.
    pub fn from_uri(uri: &str, base_dir: &Path) -> Result<Self, StorageError> {
        SnapshotStore::from_uri(uri, base_dir).map(CheckpointStorage::new)
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

    /// Keeps the newest `retained` completed checkpoints; removes older ones
    /// and abandoned (incomplete) checkpoints and savepoints older than the
    /// newest complete checkpoint.
    pub fn retain(&self, layout: &Layout, retained: usize) -> Result<(), StorageError> {
        let all = self.snapshots(&layout.checkpoints())?;
        let completed: Vec<u64> = all.iter().filter(|s| s.1).map(|s| s.0).collect();
        let Some(&newest) = completed.last() else {
            return Ok(());
        };
        // A savepoint that failed, or whose run died, never completes once
        // a later checkpoint has (a restore rolls a committed one forward
        // before its run checkpoints). Savepoints hold all their files.
        for (id, complete) in self.snapshots(&layout.savepoints())? {
            if !complete && id < newest {
                self.delete_snapshot(&layout.snapshot_dir(SnapshotKind::Savepoint, id))?;
            }
        }
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
    let (store, dir) = SnapshotStore::locate(location, base_dir)?;
    CheckpointStorage::new(store).read_snapshot(&dir)
}

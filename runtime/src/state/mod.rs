//! Keyed state: a worker's per-key values, held in memory while hot and
//! written to RocksDB beyond a memory budget and at every checkpoint.
//! RocksDB is the store of record: after a checkpoint's write, it holds every key's
//! value, and a RocksDB checkpoint of it (hard links to immutable SST files)
//! is what a checkpoint uploads, file by file, skipping files uploaded before.
//!
//! At a barrier the worker only encodes the changed values; writing them to
//! RocksDB and the RocksDB checkpoint run on the upload thread
//! (`StateCheckpoint`). Until that is done the worker writes nothing to
//! RocksDB (evictions and deletions wait), so the checkpoint holds exactly
//! the state at the barrier and reads never miss a value still being written.
//!
//! Storage keys start with the key group (big-endian u16), so a key group's
//! state is one contiguous range: that is what lets state taken at one
//! parallelism be split up again at another.

mod changes;
mod rocks;

use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};
use hashbrown::{HashMap, HashSet};
use serde::{de::DeserializeOwned, Serialize};

use crate::record::{Key, KeyHashBuilder};
use changes::ChangeSet;

pub use rocks::{read_key_groups, RocksState, StateError, StateWrite};

/// How a checkpoint's state write ended.
type WriteResult = Result<(), String>;

/// A key's value in memory, and how it stands against RocksDB.
struct Slot<V> {
    value: V,
    /// Changed since it was last written to RocksDB (or never written).
    dirty: bool,
    /// RocksDB has a (possibly older) value for the key.
    in_db: bool,
}

/// Values keyed by record key, with a bounded number kept in memory.
pub struct KeyedStore<V> {
    hot: HashMap<Key, Slot<V>, KeyHashBuilder>,
    db: RocksState,
    /// Keys whose value is only in RocksDB (evicted from `hot`). A miss in
    /// `hot` needs a RocksDB read only when this is non-zero.
    cold: u64,
    /// Removed keys whose RocksDB value is deleted at the next checkpoint
    /// (in one batch: a delete per removal would cost a write each).
    deleted: HashSet<Key, KeyHashBuilder>,
    /// Removed keys whose deletion is in a checkpoint write still running:
    /// RocksDB may still hold their old values.
    deleting: HashSet<Key, KeyHashBuilder>,
    /// Checkpoint writes handed out and not finished yet.
    writes_running: u64,
    writes_done: (Sender<WriteResult>, Receiver<WriteResult>),
    /// Rows and bytes of the last checkpoint's changes: the next one's
    /// buffer starts that size.
    last_changes: (usize, usize),
    max_hot: usize,
    max_parallelism: u32,
    key_buf: Vec<u8>,
    spills: u64,
}

impl<V: Serialize + DeserializeOwned + Default> KeyedStore<V> {
    /// Opens a fresh store in `dir`; anything already there is discarded.
    pub fn create(dir: &Path, max_hot: usize, max_parallelism: u32) -> Result<Self, StateError> {
        Ok(KeyedStore {
            hot: HashMap::default(),
            db: RocksState::create(dir)?,
            cold: 0,
            deleted: HashSet::default(),
            deleting: HashSet::default(),
            writes_running: 0,
            writes_done: crossbeam_channel::unbounded(),
            last_changes: (0, 0),
            max_hot: max_hot.max(1),
            max_parallelism,
            key_buf: Vec::with_capacity(64),
            spills: 0,
        })
    }

    fn storage_key(buf: &mut Vec<u8>, key: &Key, max_parallelism: u32) {
        buf.clear();
        Self::append_storage_key(buf, key, max_parallelism);
    }

    fn append_storage_key(buf: &mut Vec<u8>, key: &Key, max_parallelism: u32) {
        buf.extend_from_slice(&key.key_group(max_parallelism).to_be_bytes());
        key.encode(buf);
    }

    /// Reads a key's value from RocksDB into memory, if only RocksDB has it.
    fn load(&mut self, key: &Key) -> Result<(), StateError> {
        if self.cold == 0 || self.hot.contains_key(key) || self.is_removed(key) {
            return Ok(());
        }
        Self::storage_key(&mut self.key_buf, key, self.max_parallelism);
        if let Some(bytes) = self.db.get(&self.key_buf)? {
            let value = postcard::from_bytes(&bytes).map_err(StateError::decode)?;
            self.cold -= 1;
            self.hot.insert(
                key.clone(),
                Slot {
                    value,
                    dirty: false,
                    in_db: true,
                },
            );
        }
        Ok(())
    }

    /// The key's value, created with `Default` if it has none. Taking it
    /// mutably marks it changed.
    pub fn get_or_default(&mut self, key: &Key) -> Result<&mut V, StateError> {
        self.load(key)?;
        let slot = self.hot.entry_ref(key).or_insert_with(|| Slot {
            value: V::default(),
            dirty: true,
            in_db: false,
        });
        slot.dirty = true;
        Ok(&mut slot.value)
    }

    /// The key's value, read without marking it changed.
    pub fn get(&mut self, key: &Key) -> Result<Option<&V>, StateError> {
        self.load(key)?;
        Ok(self.hot.get(key).map(|slot| &slot.value))
    }

    pub fn get_mut(&mut self, key: &Key) -> Result<Option<&mut V>, StateError> {
        self.load(key)?;
        Ok(self.hot.get_mut(key).map(|slot| {
            slot.dirty = true;
            &mut slot.value
        }))
    }

    /// Removed, with the deletion of its RocksDB value still to come.
    fn is_removed(&self, key: &Key) -> bool {
        self.deleted.contains(key) || self.deleting.contains(key)
    }

    pub fn remove(&mut self, key: &Key) -> Result<(), StateError> {
        match self.hot.remove(key) {
            Some(slot) if slot.in_db => {
                self.deleted.insert(key.clone());
            }
            Some(_) => {}
            // Not in memory: RocksDB may have it.
            None if self.cold > 0 && !self.is_removed(key) => {
                Self::storage_key(&mut self.key_buf, key, self.max_parallelism);
                if self.db.get(&self.key_buf)?.is_some() {
                    self.cold -= 1;
                    self.deleted.insert(key.clone());
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Keys in memory plus keys only in RocksDB.
    pub fn len(&self) -> u64 {
        self.hot.len() as u64 + self.cold
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys have been written out to RocksDB to keep within the
    /// memory budget so far.
    pub fn spill_count(&self) -> u64 {
        self.spills
    }

    /// Adds a key's value (restoring from a snapshot).
    pub fn insert(&mut self, key: Key, value: V) -> Result<(), StateError> {
        self.remove(&key)?;
        self.hot.insert(
            key,
            Slot {
                value,
                dirty: true,
                in_db: false,
            },
        );
        Ok(())
    }

    /// Every key and value, in memory or only in RocksDB, for a savepoint.
    pub fn for_each(&mut self, mut f: impl FnMut(&Key, &V)) -> Result<(), StateError> {
        for (key, slot) in &self.hot {
            f(key, &slot.value);
        }
        if self.cold > 0 {
            let (hot, deleted, deleting) = (&self.hot, &self.deleted, &self.deleting);
            self.db.for_each(|storage_key, bytes| {
                let key = decode_key(storage_key)?;
                if !hot.contains_key(&key) && !deleted.contains(&key) && !deleting.contains(&key) {
                    f(
                        &key,
                        &postcard::from_bytes(bytes).map_err(StateError::decode)?,
                    );
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Adds a put of `key`'s value to `changes`.
    fn encode(
        changes: &mut ChangeSet,
        key: &Key,
        value: &V,
        max_parallelism: u32,
    ) -> Result<(), StateError> {
        changes.put(
            |buf| Self::append_storage_key(buf, key, max_parallelism),
            |buf| {
                postcard::to_io(value, buf)
                    .map(|_| ())
                    .map_err(StateError::encode)
            },
        )
    }

    /// Writes keys out to RocksDB until the memory budget holds again. Called
    /// between batches, never while a value is borrowed.
    pub fn enforce_budget(&mut self) -> Result<(), StateError> {
        if self.hot.len() <= self.max_hot {
            return Ok(());
        }
        self.poll_writes()?;
        if self.writes_running > 0 {
            // RocksDB is being written for a checkpoint: hold evictions back
            // unless memory is far over budget.
            if !self.must_wait_for_writes() {
                return Ok(());
            }
            self.wait_for_writes()?;
        }
        // Evict down to 90% of the budget so that the next few new keys do
        // not each cause a write.
        let target = self.max_hot - self.max_hot / 10;
        let excess = self.hot.len() - target;
        let victims: Vec<Key> = self.hot.keys().take(excess).cloned().collect();
        let mut batch = ChangeSet::default();
        for key in victims {
            let slot = self.hot.remove(&key).expect("listed above");
            // A clean value is in RocksDB already: dropping it is enough.
            if slot.dirty {
                Self::encode(&mut batch, &key, &slot.value, self.max_parallelism)?;
                // Written now: a pending delete of its old value must not
                // remove it at the next checkpoint.
                self.deleted.remove(&key);
            }
            self.cold += 1;
        }
        self.spills += batch.len() as u64;
        self.db.write(&batch)
    }

    /// Whether evictions held back by a running checkpoint write have let
    /// memory grow to twice its budget, so that processing must wait.
    pub(crate) fn must_wait_for_writes(&self) -> bool {
        self.writes_running > 0 && self.hot.len() >= 2 * self.max_hot
    }

    /// Counts the checkpoint writes that finished; a failed one leaves
    /// RocksDB without values the store counts as written, so it fails the
    /// store (and the job, which restarts from a checkpoint).
    fn poll_writes(&mut self) -> Result<(), StateError> {
        while let Ok(result) = self.writes_done.1.try_recv() {
            self.finish_write(result)?;
        }
        Ok(())
    }

    fn finish_write(&mut self, result: WriteResult) -> Result<(), StateError> {
        self.writes_running -= 1;
        if self.writes_running == 0 {
            self.deleting.clear();
        }
        result.map_err(StateError::CheckpointWrite)
    }

    /// Waits until no checkpoint write is running.
    pub fn wait_for_writes(&mut self) -> Result<(), StateError> {
        while self.writes_running > 0 {
            let result = self.writes_done.1.recv().expect("the store holds a sender");
            self.finish_write(result)?;
        }
        Ok(())
    }

    /// Takes the checkpoint at a barrier: encodes the values changed since
    /// the last one and the deletions, and returns them as a write to run on
    /// another thread, which then makes a RocksDB checkpoint (see
    /// `StateCheckpoint::run`). Processing goes on meanwhile.
    pub fn checkpoint(&mut self) -> Result<StateCheckpoint, StateError> {
        let started = std::time::Instant::now();
        self.poll_writes()?;
        let (rows, bytes) = self.last_changes;
        let mut changes = ChangeSet::with_capacity(rows, bytes);
        let max_parallelism = self.max_parallelism;
        for key in self.deleted.drain() {
            // A key written again since is overwritten by its put below.
            if !self.hot.contains_key(&key) {
                changes.delete(|buf| Self::append_storage_key(buf, &key, max_parallelism));
                self.deleting.insert(key);
            }
        }
        for (key, slot) in self.hot.iter_mut().filter(|(_, slot)| slot.dirty) {
            Self::encode(&mut changes, key, &slot.value, max_parallelism)?;
            slot.dirty = false;
            slot.in_db = true;
        }
        self.last_changes = (changes.len(), changes.byte_len());
        // What processing waits for at a barrier (STREAMJOB_LOG=debug).
        tracing::debug!(
            keys_written = changes.len(),
            ms = started.elapsed().as_millis() as u64,
            "state checkpointed at the barrier"
        );
        self.writes_running += 1;
        Ok(StateCheckpoint {
            write: Some(self.db.prepare_write(changes)),
            done: self.writes_done.0.clone(),
        })
    }
}

/// The part of a checkpoint of a `KeyedStore` that runs off the worker's
/// thread: writing the changed values to RocksDB and making a RocksDB
/// checkpoint. The store learns when it is done, or dropped unrun.
pub struct StateCheckpoint {
    write: Option<StateWrite>,
    done: Sender<WriteResult>,
}

impl StateCheckpoint {
    /// Writes the changes and makes the RocksDB checkpoint in `dir`;
    /// returns its files.
    pub fn run(mut self, dir: &Path) -> Result<Vec<PathBuf>, StateError> {
        let write = self.write.take().expect("run once");
        let result = write.run(dir);
        let _ = self
            .done
            .send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        result
    }
}

impl Drop for StateCheckpoint {
    fn drop(&mut self) {
        if self.write.is_some() {
            let _ = self
                .done
                .send(Err("a checkpoint's state write was abandoned".into()));
        }
    }
}

/// Calls `f` with every key and value of key groups `[first, last]` in a
/// checkpoint of a `KeyedStore` (its files, downloaded to `dir`).
pub fn read_checkpoint<V: DeserializeOwned>(
    dir: &Path,
    first: u16,
    last: u16,
    mut f: impl FnMut(Key, V) -> Result<(), StateError>,
) -> Result<(), StateError> {
    read_key_groups(dir, first, last, |storage_key, bytes| {
        f(
            decode_key(storage_key)?,
            postcard::from_bytes(bytes).map_err(StateError::decode)?,
        )
    })
}

/// The key of a storage key (which starts with its two-byte key group).
fn decode_key(storage_key: &[u8]) -> Result<Key, StateError> {
    Key::decode(&storage_key[2..])
        .ok_or_else(|| StateError::Decode("a storage key is not a key".into()))
}

#[cfg(test)]
mod tests;

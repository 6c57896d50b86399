//! Keyed state: a worker's per-key values, held in memory while hot and
//! written to RocksDB beyond a memory budget and at every checkpoint.
//! RocksDB is the store of record: after `persist`, it holds every key's
//! value, and a RocksDB checkpoint of it (hard links to immutable SST files)
//! is what a checkpoint uploads, file by file, skipping files uploaded before.
//!
//! Storage keys start with the key group (big-endian u16), so a key group's
//! state is one contiguous range: that is what lets state taken at one
//! parallelism be split up again at another.

mod rocks;

use std::path::{Path, PathBuf};

use hashbrown::{HashMap, HashSet};
use serde::{de::DeserializeOwned, Serialize};

use crate::record::{Key, KeyHashBuilder};

pub use rocks::{read_key_groups, RocksState, StateError};

/// A storage key and its encoded value.
type Row = (Vec<u8>, Vec<u8>);

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
    /// Removed keys whose RocksDB value is deleted at the next `persist`
    /// (in one batch: a delete per removal would cost a write each).
    deleted: HashSet<Key, KeyHashBuilder>,
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
            max_hot: max_hot.max(1),
            max_parallelism,
            key_buf: Vec::with_capacity(64),
            spills: 0,
        })
    }

    fn storage_key(buf: &mut Vec<u8>, key: &Key, max_parallelism: u32) {
        buf.clear();
        buf.extend_from_slice(&key.key_group(max_parallelism).to_be_bytes());
        key.encode(buf);
    }

    /// Reads a key's value from RocksDB into memory, if only RocksDB has it.
    fn load(&mut self, key: &Key) -> Result<(), StateError> {
        if self.cold == 0 || self.hot.contains_key(key) || self.deleted.contains(key) {
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

    pub fn get_mut(&mut self, key: &Key) -> Result<Option<&mut V>, StateError> {
        self.load(key)?;
        Ok(self.hot.get_mut(key).map(|slot| {
            slot.dirty = true;
            &mut slot.value
        }))
    }

    pub fn remove(&mut self, key: &Key) -> Result<(), StateError> {
        match self.hot.remove(key) {
            Some(slot) if slot.in_db => {
                self.deleted.insert(key.clone());
            }
            Some(_) => {}
            // Not in memory: RocksDB may have it.
            None if self.cold > 0 && !self.deleted.contains(key) => {
                Self::storage_key(&mut self.key_buf, key, self.max_parallelism);
                if self.db.take(&self.key_buf)?.is_some() {
                    self.cold -= 1;
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
            let (hot, deleted) = (&self.hot, &self.deleted);
            self.db.for_each(|storage_key, bytes| {
                let key = decode_key(storage_key)?;
                if !hot.contains_key(&key) && !deleted.contains(&key) {
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

    fn encode(key: &Key, value: &V, max_parallelism: u32) -> Result<Row, StateError> {
        let mut storage_key = Vec::with_capacity(32);
        Self::storage_key(&mut storage_key, key, max_parallelism);
        let bytes = postcard::to_allocvec(value).map_err(StateError::encode)?;
        Ok((storage_key, bytes))
    }

    /// Writes keys out to RocksDB until the memory budget holds again. Called
    /// between batches, never while a value is borrowed.
    pub fn enforce_budget(&mut self) -> Result<(), StateError> {
        if self.hot.len() <= self.max_hot {
            return Ok(());
        }
        // Evict down to 90% of the budget so that the next few new keys do
        // not each cause a write.
        let target = self.max_hot - self.max_hot / 10;
        let excess = self.hot.len() - target;
        let victims: Vec<Key> = self.hot.keys().take(excess).cloned().collect();
        let mut batch = Vec::with_capacity(victims.len());
        for key in victims {
            let slot = self.hot.remove(&key).expect("listed above");
            // A clean value is in RocksDB already: dropping it is enough.
            if slot.dirty {
                batch.push(Self::encode(&key, &slot.value, self.max_parallelism)?);
                // Written now: a pending delete of its old value must not
                // remove it at the next persist.
                self.deleted.remove(&key);
            }
            self.cold += 1;
        }
        self.spills += batch.len() as u64;
        self.db.write(Vec::new(), batch)
    }

    /// Makes RocksDB hold exactly the current keys and values (for a
    /// checkpoint): pending deletes, then changed values, in one batch.
    /// Returns how many values were written.
    pub fn persist(&mut self) -> Result<u64, StateError> {
        let mut deletes = Vec::with_capacity(self.deleted.len());
        for key in self.deleted.drain() {
            // A key written again since is overwritten by its put below.
            if !self.hot.contains_key(&key) {
                let mut storage_key = Vec::with_capacity(32);
                Self::storage_key(&mut storage_key, &key, self.max_parallelism);
                deletes.push(storage_key);
            }
        }
        let mut puts = Vec::new();
        for (key, slot) in self.hot.iter_mut().filter(|(_, slot)| slot.dirty) {
            puts.push(Self::encode(key, &slot.value, self.max_parallelism)?);
            slot.dirty = false;
            slot.in_db = true;
        }
        let written = puts.len() as u64;
        self.db.write_changes(deletes, puts)?;
        Ok(written)
    }

    /// Persists, then makes a RocksDB checkpoint in `dir` (hard links to the
    /// live files): the files a checkpoint uploads.
    pub fn checkpoint(&mut self, dir: &Path) -> Result<Vec<PathBuf>, StateError> {
        let started = std::time::Instant::now();
        let written = self.persist()?;
        let files = self.db.checkpoint(dir)?;
        // What processing waits for at a barrier (STREAMJOB_LOG=debug).
        tracing::debug!(
            keys_written = written,
            ms = started.elapsed().as_millis() as u64,
            "state checkpointed at the barrier"
        );
        Ok(files)
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

//! Keyed state: a worker's per-key values, held in memory while hot and
//! spilled to RocksDB beyond a memory budget. RocksDB is the store of record
//! for spilled keys (and, with checkpoints, for all of them).
//!
//! Storage keys start with the key group (big-endian u16), so a key group's
//! state is one contiguous range: that is what lets state taken at one
//! parallelism be split up again at another.

mod rocks;

use std::path::Path;

use hashbrown::HashMap;
use serde::{de::DeserializeOwned, Serialize};

use crate::record::{Key, KeyHashBuilder};

pub use rocks::{RocksState, StateError};

/// Values keyed by record key, with a bounded number kept in memory.
pub struct KeyedStore<V> {
    hot: HashMap<Key, V, KeyHashBuilder>,
    db: RocksState,
    /// Keys whose value is in RocksDB and not in `hot`. A key is in exactly one
    /// of the two places, so a miss in `hot` needs a RocksDB read only when
    /// this is non-zero.
    spilled: u64,
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
            spilled: 0,
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

    /// Moves a spilled key's value back into memory, if it has one.
    fn load(&mut self, key: &Key) -> Result<(), StateError> {
        if self.spilled == 0 || self.hot.contains_key(key) {
            return Ok(());
        }
        Self::storage_key(&mut self.key_buf, key, self.max_parallelism);
        if let Some(bytes) = self.db.take(&self.key_buf)? {
            let value = postcard::from_bytes(&bytes).map_err(StateError::decode)?;
            self.spilled -= 1;
            self.hot.insert(key.clone(), value);
        }
        Ok(())
    }

    /// The key's value, created with `Default` if it has none.
    pub fn get_or_default(&mut self, key: &Key) -> Result<&mut V, StateError> {
        self.load(key)?;
        Ok(self.hot.entry_ref(key).or_default())
    }

    pub fn get_mut(&mut self, key: &Key) -> Result<Option<&mut V>, StateError> {
        self.load(key)?;
        Ok(self.hot.get_mut(key))
    }

    pub fn remove(&mut self, key: &Key) -> Result<(), StateError> {
        if self.hot.remove(key).is_none() && self.spilled > 0 {
            Self::storage_key(&mut self.key_buf, key, self.max_parallelism);
            if self.db.take(&self.key_buf)?.is_some() {
                self.spilled -= 1;
            }
        }
        Ok(())
    }

    /// Keys in memory plus keys spilled to RocksDB.
    pub fn len(&self) -> u64 {
        self.hot.len() as u64 + self.spilled
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys have been written out to RocksDB so far.
    pub fn spill_count(&self) -> u64 {
        self.spills
    }

    /// Adds a key's value (restoring from a snapshot).
    pub fn insert(&mut self, key: Key, value: V) -> Result<(), StateError> {
        self.remove(&key)?;
        self.hot.insert(key, value);
        Ok(())
    }

    /// Every key and value, in memory or spilled, for a snapshot.
    pub fn for_each(&mut self, mut f: impl FnMut(&Key, &V)) -> Result<(), StateError> {
        for (key, value) in &self.hot {
            f(key, value);
        }
        if self.spilled > 0 {
            for (storage_key, bytes) in self.db.entries()? {
                let key = Key::decode(&storage_key[2..])
                    .ok_or_else(|| StateError::Decode("a storage key is not a key".into()))?;
                let value: V = postcard::from_bytes(&bytes).map_err(StateError::decode)?;
                f(&key, &value);
            }
        }
        Ok(())
    }

    /// Writes keys out to RocksDB until the memory budget holds again. Called
    /// between batches, never while a value is borrowed.
    pub fn enforce_budget(&mut self) -> Result<(), StateError> {
        if self.hot.len() <= self.max_hot {
            return Ok(());
        }
        // Spill down to 90% of the budget so that the next few new keys do
        // not each cause a write.
        let target = self.max_hot - self.max_hot / 10;
        let excess = self.hot.len() - target;
        let victims: Vec<Key> = self.hot.keys().take(excess).cloned().collect();
        let mut batch = Vec::with_capacity(victims.len());
        for key in victims {
            let value = self.hot.remove(&key).expect("listed above");
            let mut storage_key = Vec::with_capacity(32);
            Self::storage_key(&mut storage_key, &key, self.max_parallelism);
            let bytes = postcard::to_allocvec(&value).map_err(StateError::encode)?;
            batch.push((storage_key, bytes));
        }
        self.spilled += batch.len() as u64;
        self.spills += batch.len() as u64;
        self.db.put_all(batch)
    }
}

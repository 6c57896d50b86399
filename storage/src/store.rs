//! Where snapshot files live: a small object-store interface (put, get,
//! list, delete) with a local-folder and an S3 implementation. Checkpoint
//! logic (layout, `_metadata` last, retention) is written once on top of it,
//! in `storage.rs`.
//!
//! Keys are `/`-separated paths relative to the store's root. A put is
//! atomic: a reader sees the whole object or none of it.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::fsutil::absent_ok;
use crate::StorageError;

pub trait ObjectStore: Send + Sync + Debug {
    /// Writes `bytes` at `key`, atomically and durably.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Reads `key`; `Ok(None)` when there is no such object.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Every key under `prefix` (a folder: `a/b/`), in no particular order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Removes `key`; nothing happens when it does not exist.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Removes every key under `prefix`.
    fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError>;
    /// The location of `key` as users see it (a path, an `s3://` URI).
    fn location(&self, key: &str) -> String;
}

/// A local folder (`file://`).
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FileStore {
    pub fn new(root: PathBuf) -> Self {
        FileStore { root }
    }

    fn path(&self, key: &str) -> PathBuf {
        if key.is_empty() {
            self.root.clone()
        } else {
            self.root.join(key)
        }
    }
}

impl ObjectStore for FileStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key);
        crate::fsutil::write_atomic(&path, bytes).map_err(io(&path))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key);
        absent_ok(std::fs::read(&path)).map_err(io(&path))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut folders = vec![(self.path(prefix), prefix.trim_end_matches('/').to_string())];
        while let Some((dir, key)) = folders.pop() {
            let Some(entries) = absent_ok(std::fs::read_dir(&dir)).map_err(io(&dir))? else {
                continue;
            };
            for entry in entries {
                let entry = entry.map_err(io(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}/{name}")
                };
                if entry.file_type().map_err(io(&dir))?.is_dir() {
                    folders.push((entry.path(), child));
                } else if !child.ends_with(".tmp") {
                    keys.push(child);
                }
            }
        }
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key);
        absent_ok(std::fs::remove_file(&path)).map_err(io(&path))?;
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        let path = self.path(prefix);
        absent_ok(std::fs::remove_dir_all(&path)).map_err(io(&path))?;
        Ok(())
    }

    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }
}

//! The RocksDB instance behind one worker's keyed state.

use std::path::{Path, PathBuf};

use rocksdb::{Options, WriteBatch, DB};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("RocksDB at {path}: {source}")]
    Rocks {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("cannot prepare state folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state value cannot be encoded: {0}")]
    Encode(String),
    #[error("state value cannot be decoded (written by another version?): {0}")]
    Decode(String),
}

impl StateError {
    pub(crate) fn encode(e: postcard::Error) -> Self {
        StateError::Encode(e.to_string())
    }
    pub(crate) fn decode(e: postcard::Error) -> Self {
        StateError::Decode(e.to_string())
    }
}

/// A raw (key, value) pair as RocksDB stores it.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// Changes from this many rows on are ingested as an SST file.
const INGEST_THRESHOLD: usize = 10_000;

pub struct RocksState {
    db: DB,
    path: PathBuf,
}

impl RocksState {
    /// A new, empty database at `dir` (an old one there is removed: state of a
    /// previous run never leaks into a fresh one).
    pub fn create(dir: &Path) -> Result<Self, StateError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|source| StateError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Spilled state is read back by point lookups: bloom filters make a
        // miss cheap.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, dir).map_err(|source| StateError::Rocks {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(RocksState {
            db,
            path: dir.to_path_buf(),
        })
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(key).map_err(|e| self.err(e))
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.disable_wal(true);
        self.db.delete_opt(key, &opts).map_err(|e| self.err(e))
    }

    /// Flushes the memtable and makes a checkpoint of the database in `dir`
    /// (which must not exist): hard links to its immutable SST files plus
    /// copies of its small descriptor files. Returns the files, so that they
    /// can be uploaded while the database goes on changing.
    pub fn checkpoint(&self, dir: &Path) -> Result<Vec<PathBuf>, StateError> {
        // Writes skip the write-ahead log, so only flushed data is in files.
        self.db.flush().map_err(|e| self.err(e))?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StateError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| self.err(e))?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(|source| StateError::Rocks {
                path: dir.to_path_buf(),
                source,
            })?;
        let io = |source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            files.push(entry.map_err(io)?.path());
        }
        files.sort();
        Ok(files)
    }

    /// Reads and deletes a value.
    pub fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let value = self.get(key)?;
        if value.is_some() {
            self.delete(key)?;
        }
        Ok(value)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, StateError> {
        self.db
            .iterator(rocksdb::IteratorMode::Start)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    /// Writes a checkpoint's changes: the values of `puts` and deletions of
    /// `deletes` (disjoint). A large batch is written as an SST file and
    /// ingested: through the memtable, a million values would stall on its
    /// flushes for seconds.
    pub fn write_changes(
        &self,
        deletes: Vec<Vec<u8>>,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StateError> {
        if deletes.len() + puts.len() < INGEST_THRESHOLD {
            return self.write(deletes, puts);
        }
        let mut rows: Vec<(Vec<u8>, Option<Vec<u8>>)> = deletes
            .into_iter()
            .map(|k| (k, None))
            .chain(puts.into_iter().map(|(k, v)| (k, Some(v))))
            .collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let file = self.path.with_extension("ingest.sst");
        let opts = Options::default();
        let mut writer = rocksdb::SstFileWriter::create(&opts);
        let err = |source| StateError::Rocks {
            path: file.clone(),
            source,
        };
        writer.open(&file).map_err(err)?;
        for (k, v) in rows {
            match v {
                Some(v) => writer.put(k, v).map_err(err)?,
                None => writer.delete(k).map_err(err)?,
            }
        }
        writer.finish().map_err(err)?;
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.db
            .ingest_external_file_opts(&ingest, vec![&file])
            .map_err(|e| self.err(e))
    }

    /// Deletes `deletes`, then puts `puts`, in one batch (no write-ahead
    /// log: durability comes from checkpoints).
    pub fn write(
        &self,
        deletes: Vec<Vec<u8>>,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for k in deletes {
            batch.delete(k);
        }
        for (k, v) in puts {
            batch.put(k, v);
        }
        self.db.write_without_wal(batch).map_err(|e| self.err(e))
    }
}

/// Calls `f` with every entry of key groups `[first, last]` in the database
/// at `dir` (a checkpoint's files, downloaded), in key order. The database
/// is opened read-only and left as it is.
pub fn read_key_groups(
    dir: &Path,
    first: u16,
    last: u16,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let err = |source| StateError::Rocks {
        path: dir.to_path_buf(),
        source,
    };
    let db = DB::open_for_read_only(&Options::default(), dir, false).map_err(err)?;
    let start = first.to_be_bytes();
    let iter = db.iterator(rocksdb::IteratorMode::From(
        &start,
        rocksdb::Direction::Forward,
    ));
    for entry in iter {
        let (key, value) = entry.map_err(err)?;
        if key.len() < 2 {
            return Err(StateError::Decode("a storage key has no key group".into()));
        }
        let group = u16::from_be_bytes([key[0], key[1]]);
        if group > last {
            break;
        }
        f(&key, &value)?;
    }
    Ok(())
}

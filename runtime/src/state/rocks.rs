//! The RocksDB instance behind one worker's keyed state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{Options, WriteBatch, DB};

use super::changes::ChangeSet;

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
    #[error("writing a checkpoint's state to RocksDB failed: {0}")]
    CheckpointWrite(String),
}

impl StateError {
    pub(crate) fn encode(e: postcard::Error) -> Self {
        StateError::Encode(e.to_string())
    }
    pub(crate) fn decode(e: postcard::Error) -> Self {
        StateError::Decode(e.to_string())
    }
}

fn rocks_error(path: &Path) -> impl Fn(rocksdb::Error) -> StateError + '_ {
    move |source| StateError::Rocks {
        path: path.to_path_buf(),
        source,
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Options of the state databases and of the SST files ingested into them.
fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Evicted state is read back by point lookups: bloom filters make a
    // miss cheap.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts
}

/// Changes from this many rows on are ingested as an SST file.
const INGEST_THRESHOLD: usize = 10_000;

pub struct RocksState {
    /// Shared with the checkpoint writes running on the upload thread.
    db: Arc<DB>,
    path: PathBuf,
}

impl RocksState {
    /// A new, empty database at `dir` (an old one there is removed: state of a
    /// previous run never leaks into a fresh one).
    pub fn create(dir: &Path) -> Result<Self, StateError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let db = DB::open(&options(), dir).map_err(rocks_error(dir))?;
        Ok(RocksState {
            db: Arc::new(db),
            path: dir.to_path_buf(),
        })
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        rocks_error(&self.path)(source)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(key).map_err(|e| self.err(e))
    }

    /// Calls `f` with every entry, in key order.
    pub fn for_each(
        &self,
        f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        scan(&self.db, &self.path, 0, u16::MAX, f)
    }

    /// A checkpoint's changes to this database (keys distinct), to be
    /// written off this thread by `StateWrite::run`.
    pub fn prepare_write(&self, changes: ChangeSet) -> StateWrite {
        StateWrite {
            db: Arc::clone(&self.db),
            path: self.path.clone(),
            changes,
        }
    }

    /// Writes `changes` in one batch (no write-ahead log: durability comes
    /// from checkpoints).
    pub fn write(&self, changes: &ChangeSet) -> Result<(), StateError> {
        self.db
            .write_without_wal(batch(changes))
            .map_err(|e| self.err(e))
    }
}

/// A checkpoint's changes to a worker's database, written and then
/// checkpointed by the upload thread while the worker goes on. The worker
/// writes nothing to the database until this is done (see `KeyedStore`), so
/// the RocksDB checkpoint holds exactly the state at the barrier.
pub struct StateWrite {
    db: Arc<DB>,
    path: PathBuf,
    changes: ChangeSet,
}

impl StateWrite {
    /// Writes the changes, then makes a RocksDB checkpoint in `dir` (which
    /// must not exist): hard links to the immutable SST files plus copies of
    /// the small descriptor files. Returns the checkpoint's files.
    pub fn run(mut self, dir: &Path) -> Result<Vec<PathBuf>, StateError> {
        self.write_changes().map_err(rocks_error(&self.path))?;
        let err = rocks_error(&self.path);
        // Writes skip the write-ahead log, so only flushed data is in files.
        self.db.flush().map_err(&err)?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(&err)?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(rocks_error(dir))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            files.push(entry.map_err(io_error(dir))?.path());
        }
        files.sort();
        Ok(files)
    }

    /// A small change goes through the memtable; from `INGEST_THRESHOLD`
    /// rows on it is written as a sorted SST file and ingested: through the
    /// memtable, a million values stall on its flushes for seconds.
    fn write_changes(&mut self) -> Result<(), rocksdb::Error> {
        if self.changes.len() < INGEST_THRESHOLD {
            return self.db.write_without_wal(batch(&self.changes));
        }
        let file = self.path.with_extension("ingest.sst");
        let opts = options();
        let mut writer = rocksdb::SstFileWriter::create(&opts);
        writer.open(&file)?;
        for (key, value) in self.changes.sorted_rows() {
            match value {
                Some(value) => writer.put(key, value)?,
                None => writer.delete(key)?,
            }
        }
        writer.finish()?;
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.db.ingest_external_file_opts(&ingest, vec![&file])
    }
}

fn batch(changes: &ChangeSet) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for (key, value) in changes.rows() {
        match value {
            Some(value) => batch.put(key, value),
            None => batch.delete(key),
        }
    }
    batch
}

/// Calls `f` with every entry of key groups `[first, last]` in the database
/// at `dir` (a checkpoint's files, downloaded), in key order. The database
/// is opened read-only and left as it is.
pub fn read_key_groups(
    dir: &Path,
    first: u16,
    last: u16,
    f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let db = DB::open_for_read_only(&options(), dir, false).map_err(rocks_error(dir))?;
    scan(&db, dir, first, last, f)
}

/// Calls `f` with every entry of key groups `[first, last]` of `db`, in key
/// order.
fn scan(
    db: &DB,
    path: &Path,
    first: u16,
    last: u16,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let start = first.to_be_bytes();
    let iter = db.iterator(rocksdb::IteratorMode::From(
        &start,
        rocksdb::Direction::Forward,
    ));
    for entry in iter {
        let (key, value) = entry.map_err(rocks_error(path))?;
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

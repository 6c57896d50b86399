//! A worker's checkpoint upload, off the worker's thread: the worker encodes
//! its changed state at the barrier and goes on processing while this thread
//! writes it to RocksDB, makes a RocksDB checkpoint (hard links), uploads the
//! files and acknowledges the checkpoint to the coordinator. SST files are immutable, so one uploaded for an earlier
//! checkpoint of this run is referenced again, not uploaded again: the upload
//! is incremental.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::coordinator::Ack;
use crate::checkpoint::{
    resolve_key, CheckpointStorage, Layout, LookupsSnapshot, StateFile, StorageError,
    TableSnapshot, WorkerSnapshot,
};
use crate::control::CheckpointPhases;
use crate::state::StateCheckpoint;

/// One checkpoint's files to upload.
pub(crate) struct Upload {
    pub id: u64,
    /// The checkpoint's folder in storage.
    pub dir: String,
    /// Positions and key groups; `state_files` is filled in here.
    pub snapshot: WorkerSnapshot,
    /// Where the local RocksDB checkpoint is made; removed once uploaded.
    pub local: PathBuf,
    pub state: StateCheckpoint,
    /// The worker's lookup tables: where their changelogs are, and their
    /// changes to write.
    pub tables: Vec<(TableSnapshot, StateCheckpoint)>,
    pub watermark: i64,
    /// The worker's phases so far; the upload's is added here.
    pub phases: CheckpointPhases,
}

pub(crate) struct Uploader {
    jobs: Option<Sender<Upload>>,
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    /// Starts the upload thread of worker `index`. `run` names this run's
    /// folder of shared files: RocksDB numbers files from 1 in every new
    /// database, so runs must not share a folder.
    pub fn start(
        index: usize,
        run: String,
        storage: CheckpointStorage,
        acks: Sender<Ack>,
        abort: Arc<AtomicBool>,
        abandoned: Arc<AtomicU64>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Upload>();
        let thread = std::thread::Builder::new()
            .name(format!("upload-{index}"))
            .spawn(move || {
                let mut uploaded = HashSet::new();
                for job in queue {
                    if abort.load(Ordering::Relaxed) {
                        continue;
                    }
                    let (id, watermark, local) = (job.id, job.watermark, job.local.clone());
                    let (mut phases, started) = (job.phases, std::time::Instant::now());
                    let stop = Stop {
                        abort: &abort,
                        abandoned: &abandoned,
                    };
                    let result = upload(&storage, &run, &mut uploaded, job, stop);
                    let _ = std::fs::remove_dir_all(&local);
                    let ack = match result {
                        Ok(bytes) => Ack::Done {
                            worker: index,
                            id,
                            bytes,
                            watermark,
                            phases: {
                                phases.upload_ms = started.elapsed().as_millis() as u64;
                                phases
                            },
                        },
                        Err(e) => Ack::Failed {
                            worker: index,
                            id,
                            error: e.to_string(),
                        },
                    };
                    let _ = acks.send(ack);
                }
            })?;
        Ok(Uploader {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    pub fn submit(&self, job: Upload) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Waits for the uploads submitted so far (they stop early on abort).
    pub fn finish(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Writes the worker's state (window state and lookup tables) to RocksDB
/// and checkpoints it, uploads the files, then the worker file listing them
/// (after its lookup tables' file, if it has tables); returns the bytes
/// uploaded.
fn upload(
    storage: &CheckpointStorage,
    run: &str,
    uploaded: &mut HashSet<String>,
    mut job: Upload,
    stop: Stop<'_>,
) -> Result<u64, StorageError> {
    // Every state write runs before anything is uploaded: a write dropped
    // unrun (an upload failed first) would lose changes its store counts
    // as written.
    let window = write_state(job.state, &job.local);
    let locals: Vec<_> = job
        .tables
        .iter()
        .map(|(table, _)| job.local.with_extension(format!("lookup-{}", table.name)))
        .collect();
    let tables: Vec<_> = job
        .tables
        .into_iter()
        .zip(&locals)
        .map(|((table, state), local)| (table, write_state(state, local)))
        .collect();
    let result = (move || {
        let id = job.id;
        crate::failpoint::stall_until("upload-stall", id, || stop.reason(id).is_some());
        let index = job.snapshot.index;
        let mut files = StateFiles {
            storage,
            dir: &job.dir,
            uploaded,
            id,
            stop,
            bytes: 0,
        };
        job.snapshot.state_files = files.upload(&window?, |name, shared| {
            if shared {
                Layout::shared_state_file(run, name)
            } else {
                Layout::private_state_file(index, name)
            }
        })?;
        let mut lookups = LookupsSnapshot {
            index,
            tables: Vec::new(),
        };
        for (mut table, written) in tables {
            table.state_files = files.upload(&written?, |name, shared| {
                if shared {
                    Layout::shared_state_file(&format!("{run}-{}", table.name), name)
                } else {
                    Layout::private_table_file(index, &table.name, name)
                }
            })?;
            lookups.tables.push(table);
        }
        let mut bytes = files.bytes;
        if !lookups.tables.is_empty() {
            bytes += storage.write_lookups(&job.dir, &lookups)?;
        }
        Ok(bytes + storage.write_worker(&job.dir, job.id, &job.snapshot)?)
    })();
    for local in &locals {
        let _ = std::fs::remove_dir_all(local);
    }
    result
}

/// Writes a store's changes and makes its RocksDB checkpoint in `local`;
/// returns the checkpoint's files.
fn write_state(
    state: StateCheckpoint,
    local: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, StorageError> {
    state.run(local).map_err(|e| StorageError::Io {
        path: local.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Why an upload under way stops before it is done.
#[derive(Clone, Copy)]
struct Stop<'a> {
    /// The job is stopping.
    abort: &'a AtomicBool,
    /// The newest snapshot the coordinator abandoned.
    abandoned: &'a AtomicU64,
}

impl Stop<'_> {
    fn reason(&self, id: u64) -> Option<&'static str> {
        if self.abort.load(Ordering::Relaxed) {
            Some("the job is stopping")
        } else if self.abandoned.load(Ordering::Acquire) >= id {
            Some("the snapshot was abandoned")
        } else {
            None
        }
    }
}

/// Uploads the files of a snapshot's RocksDB checkpoints.
struct StateFiles<'a> {
    storage: &'a CheckpointStorage,
    /// The snapshot's folder.
    dir: &'a str,
    /// Keys of the shared files uploaded by this run so far.
    uploaded: &'a mut HashSet<String>,
    /// The snapshot's id.
    id: u64,
    stop: Stop<'a>,
    /// Bytes uploaded so far.
    bytes: u64,
}

impl StateFiles<'_> {
    /// Uploads each file of a RocksDB checkpoint to the key `key(name,
    /// shared)` gives it (relative to the snapshot's folder); SST files are
    /// shared, and uploaded once.
    fn upload(
        &mut self,
        paths: &[std::path::PathBuf],
        key: impl Fn(&str, bool) -> String,
    ) -> Result<Vec<StateFile>, StorageError> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            if let Some(reason) = self.stop.reason(self.id) {
                return Err(StorageError::Io {
                    path: self.storage.location(self.dir),
                    source: std::io::Error::other(reason),
                });
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shared = name.ends_with(".sst");
            let key = key(&name, shared);
            let size = std::fs::metadata(path)
                .map_err(|source| StorageError::Io {
                    path: path.display().to_string(),
                    source,
                })?
                .len();
            if !(shared && self.uploaded.contains(&key)) {
                let contents = std::fs::read(path).map_err(|source| StorageError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                self.storage
                    .write(&resolve_key(self.dir, &key), &contents)?;
                self.bytes += size;
                if shared {
                    self.uploaded.insert(key.clone());
                }
            }
            files.push(StateFile {
                name,
                key,
                bytes: size,
            });
        }
        Ok(files)
    }
}

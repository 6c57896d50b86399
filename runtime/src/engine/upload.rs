//! A worker's checkpoint upload, off the worker's thread: the worker encodes
//! its changed state at the barrier and goes on processing while this thread
//! writes it to RocksDB, makes a RocksDB checkpoint (hard links), uploads the
//! files and acknowledges the checkpoint to the coordinator. SST files are immutable, so one uploaded for an earlier
//! checkpoint of this run is referenced again, not uploaded again: the upload
//! is incremental.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::worker::Ack;
use crate::checkpoint::{
    resolve_key, CheckpointStorage, Layout, StateFile, StorageError, WorkerSnapshot,
};
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
    pub watermark: i64,
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
                    let result = upload(&storage, &run, &mut uploaded, job, &abort);
                    let _ = std::fs::remove_dir_all(&local);
                    let ack = match result {
                        Ok(bytes) => Ack::Done {
                            worker: index,
                            id,
                            bytes,
                            watermark,
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

/// Writes the worker's state to RocksDB and checkpoints it, uploads the
/// files, then the worker file listing them; returns the bytes uploaded.
fn upload(
    storage: &CheckpointStorage,
    run: &str,
    uploaded: &mut HashSet<String>,
    mut job: Upload,
    abort: &AtomicBool,
) -> Result<u64, StorageError> {
    let files = job.state.run(&job.local).map_err(|e| StorageError::Io {
        path: job.local.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::failpoint::stall_at("upload-stall", job.id, std::time::Duration::from_secs(1));
    let mut bytes = 0;
    for path in &files {
        if abort.load(Ordering::Relaxed) {
            return Err(StorageError::Io {
                path: storage.location(&job.dir),
                source: std::io::Error::other("the job is stopping"),
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shared = name.ends_with(".sst");
        let key = if shared {
            Layout::shared_state_file(run, &name)
        } else {
            Layout::private_state_file(job.snapshot.index, &name)
        };
        let size = std::fs::metadata(path)
            .map_err(|source| StorageError::Io {
                path: path.display().to_string(),
                source,
            })?
            .len();
        if !(shared && uploaded.contains(&name)) {
            let contents = std::fs::read(path).map_err(|source| StorageError::Io {
                path: path.display().to_string(),
                source,
            })?;
            storage.write(&resolve_key(&job.dir, &key), &contents)?;
            bytes += size;
            if shared {
                uploaded.insert(name.clone());
            }
        }
        job.snapshot.state_files.push(StateFile {
            name,
            key,
            bytes: size,
        });
    }
    Ok(bytes + storage.write_worker(&job.dir, job.id, &job.snapshot)?)
}

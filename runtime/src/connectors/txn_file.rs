//! A file sink with two-phase commit, so that a job with exactly-once
//! checkpoints writes each result to its file exactly once, across crashes.
//!
//! Each worker's output since its last barrier goes to an open file in
//! `<out>.pending/`. At barrier `n` it is sealed (flushed, synced, renamed
//! `<n>-w<worker>`). When checkpoint `n` has every worker's state, the
//! coordinator commits epoch `n`: the sealed files are appended to `<out>`,
//! synced, and `n <length>` is appended to the commit log `<out>.commits`,
//! which is the commit point. Only then is the checkpoint's `_metadata`
//! written.
//!
//! On restore from checkpoint `c`, `<out>` is cut back to the length the
//! log recorded for `c` (dropping any torn append after it) and pending files
//! are removed: what they held is produced again from `c`'s state.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct TransactionalFile {
    out: PathBuf,
    pending: PathBuf,
    log: PathBuf,
    /// Per worker, its output since its last barrier.
    open: Vec<Option<BufWriter<File>>>,
    /// Sealed files per checkpoint id.
    sealed: BTreeMap<u64, Vec<PathBuf>>,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Syncs a folder, so that a rename in it is durable. A bare file name's
/// folder is the working directory.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// The committed length of `out` for each committed checkpoint id, in order.
pub fn read_commit_log(out: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    let log = with_suffix(out, ".commits");
    let file = match File::open(&log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        // A torn last line (crash mid-append) is not a commit.
        let mut fields = line.split(' ');
        if let (Some(id), Some(len), None) = (fields.next(), fields.next(), fields.next()) {
            if let (Ok(id), Ok(len)) = (id.parse(), len.parse()) {
                records.push((id, len));
            }
        }
    }
    Ok(records)
}

impl TransactionalFile {
    /// Opens the sink for a run. `restored` is the checkpoint the run starts
    /// from: output committed after it is cut off. A fresh run (None) keeps
    /// what the file holds and commits after it.
    pub fn open(out: &Path, workers: usize, restored: Option<u64>) -> std::io::Result<Self> {
        let pending = with_suffix(out, ".pending");
        let log = with_suffix(out, ".commits");
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        if pending.exists() {
            std::fs::remove_dir_all(&pending)?;
        }
        std::fs::create_dir_all(&pending)?;
        let file = OpenOptions::new().create(true).append(true).open(out)?;
        let current = file.metadata()?.len();
        let keep = match restored {
            // The length committed with the restored checkpoint (or with the
            // newest commit before it).
            Some(id) => read_commit_log(out)?
                .iter()
                .rev()
                .find(|(c, _)| *c <= id)
                .map_or(0, |(_, len)| *len),
            // A fresh run keeps what earlier runs committed: up to the last
            // length in the log, which drops a torn append.
            None => read_commit_log(out)?
                .last()
                .map_or(current, |(_, len)| (*len).min(current)),
        };
        if keep < current {
            file.set_len(keep)?;
            file.sync_all()?;
        }
        // Start the log afresh at what is now committed.
        let mut sink = TransactionalFile {
            out: out.to_path_buf(),
            pending,
            log,
            open: (0..workers).map(|_| None).collect(),
            sealed: BTreeMap::new(),
        };
        sink.rewrite_log(restored.unwrap_or(0), keep)?;
        Ok(sink)
    }

    fn rewrite_log(&mut self, id: u64, len: u64) -> std::io::Result<()> {
        let tmp = with_suffix(&self.log, ".tmp");
        let mut f = File::create(&tmp)?;
        writeln!(f, "{id} {len}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.log)?;
        if let Some(dir) = self.log.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn open_path(&self, worker: usize) -> PathBuf {
        self.pending.join(format!("open-w{worker}"))
    }

    pub fn write(&mut self, worker: usize, lines: &[String]) -> std::io::Result<()> {
        if self.open[worker].is_none() {
            let f = File::create(self.open_path(worker))?;
            self.open[worker] = Some(BufWriter::new(f));
        }
        let w = self.open[worker].as_mut().expect("opened above");
        for line in lines {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// Seals the worker's output since its last barrier as part of
    /// checkpoint `id`: durable, not yet visible.
    pub fn seal(&mut self, worker: usize, id: u64) -> std::io::Result<()> {
        let Some(mut w) = self.open[worker].take() else {
            return Ok(());
        };
        w.flush()?;
        w.get_ref().sync_data()?;
        let sealed = self.pending.join(format!("{id}-w{worker}"));
        std::fs::rename(self.open_path(worker), &sealed)?;
        sync_dir(&self.pending)?;
        self.sealed.entry(id).or_default().push(sealed);
        Ok(())
    }

    /// Commits checkpoint `id`'s output, and that of any earlier checkpoint
    /// that never completed (its records are in `id`'s state): appends it to
    /// the file and records the commit.
    pub fn commit(&mut self, id: u64) -> std::io::Result<()> {
        let later = self.sealed.split_off(&(id + 1));
        let epochs = std::mem::replace(&mut self.sealed, later);
        let mut out = OpenOptions::new().append(true).open(&self.out)?;
        // Epoch by epoch, worker by worker.
        let files: Vec<PathBuf> = epochs
            .into_values()
            .flat_map(|mut files| {
                files.sort();
                files
            })
            .collect();
        for (i, path) in files.iter().enumerate() {
            std::io::copy(&mut File::open(path)?, &mut out)?;
            if i == 0 {
                // Part of the epoch is in the file, and no commit record.
                out.sync_data()?;
                crate::failpoint::fail_at("mid-commit", id);
            }
        }
        out.sync_data()?;
        let len = out.metadata()?.len();
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)?;
        writeln!(log, "{id} {len}")?;
        log.sync_data()?;
        for path in files {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// The input ended and the job finished: commits everything written
    /// since the last checkpoint as a final epoch.
    pub fn finish(&mut self, final_id: u64) -> std::io::Result<()> {
        for worker in 0..self.open.len() {
            self.seal(worker, final_id)?;
        }
        self.commit(final_id)
    }
}

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
//! are removed: what they held is produced again from `c`'s state. A restore
//! from a snapshot older than every commit in the log is refused rather
//! than guessed at.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::connectors::TwoPhaseCommitter;
use crate::fsutil::{absent_ok, folder, sync_dir, with_suffix, write_atomic};

pub struct TransactionalFile {
    out: PathBuf,
    pending: PathBuf,
    log: PathBuf,
    /// Per worker, its output since its last barrier.
    open: Vec<Option<BufWriter<File>>>,
    /// Sealed files per checkpoint id.
    sealed: BTreeMap<u64, Vec<PathBuf>>,
}

/// The committed length of `out` for each committed checkpoint id, in order.
pub fn read_commit_log(out: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    let log = with_suffix(out, ".commits");
    let Some(file) = absent_ok(File::open(&log))? else {
        return Ok(Vec::new());
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
    /// The sink for output file `out`, written by `workers` workers; it
    /// touches nothing before `begin`.
    pub fn new(out: &Path, workers: usize) -> Self {
        TransactionalFile {
            out: out.to_path_buf(),
            pending: with_suffix(out, ".pending"),
            log: with_suffix(out, ".commits"),
            open: (0..workers).map(|_| None).collect(),
            sealed: BTreeMap::new(),
        }
    }

    /// The sealed files in `<out>.pending/` of checkpoints up to `id`, by
    /// checkpoint.
    fn sealed_up_to(&self, id: u64) -> std::io::Result<BTreeMap<u64, Vec<PathBuf>>> {
        let mut sealed: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
        let Some(entries) = absent_ok(std::fs::read_dir(&self.pending))? else {
            return Ok(sealed);
        };
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let epoch = name
                .split_once("-w")
                .and_then(|(e, _)| e.parse::<u64>().ok());
            if let Some(epoch) = epoch.filter(|e| *e <= id) {
                sealed.entry(epoch).or_default().push(path);
            }
        }
        Ok(sealed)
    }

    fn rewrite_log(&mut self, commits: &[(u64, u64)]) -> std::io::Result<()> {
        let text: String = commits
            .iter()
            .map(|(id, len)| format!("{id} {len}\n"))
            .collect();
        write_atomic(&self.log, text.as_bytes())
    }

    fn open_path(&self, worker: usize) -> PathBuf {
        self.pending.join(format!("open-w{worker}"))
    }

    /// Seals the worker's output since its last barrier as part of
    /// checkpoint `id`: durable, not yet visible.
    fn seal(&mut self, worker: usize, id: u64) -> std::io::Result<()> {
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
}

/// The commit record is a line `<checkpoint> <length>` appended to the log
/// `<out>.commits` after the output is appended and synced.
impl TwoPhaseCommitter for TransactionalFile {
    fn last_committed(&mut self) -> std::io::Result<Option<u64>> {
        // Id 0 is a fresh run's starting length, not a checkpoint.
        Ok(read_commit_log(&self.out)?
            .last()
            .map(|(id, _)| *id)
            .filter(|id| *id > 0))
    }

    /// Output committed after `restored` is cut off. A fresh run (None)
    /// keeps what the file holds and commits after it. Output sealed for
    /// `restored` (or before it) and not committed yet is committed now: in
    /// a job over several pods, pod 0 may have completed the checkpoint
    /// while this pod's commit was cut short.
    fn begin(&mut self, restored: Option<u64>) -> std::io::Result<()> {
        let out = self.out.as_path();
        let pending = self.pending.clone();
        std::fs::create_dir_all(folder(out))?;
        let mut sealed = match restored {
            Some(id) => self.sealed_up_to(id)?,
            None => BTreeMap::new(),
        };
        let file = OpenOptions::new().create(true).append(true).open(out)?;
        let current = file.metadata()?.len();
        let mut commits = read_commit_log(out)?;
        let keep = match restored {
            // The length committed with the restored checkpoint (or with the
            // newest commit before it); later commits are undone.
            Some(id) => {
                let first = commits.first().map(|(c, _)| *c);
                commits.retain(|(c, _)| *c <= id);
                match (commits.last(), first) {
                    (Some((_, len)), _) => *len,
                    (None, None) => 0,
                    // Never guess: cutting the file to 0 would drop output
                    // committed by other runs.
                    (None, Some(first)) => {
                        return Err(std::io::Error::other(format!(
                            "{}: its commit log has no commit at or before checkpoint {id} (the first is {first}), so the output cannot be cut back to that checkpoint; restore a newer snapshot, or move {} away to start the output afresh",
                            out.display(),
                            out.display()
                        )))
                    }
                }
            }
            // A fresh run keeps what earlier runs committed: up to the last
            // length in the log, which drops a torn append. A file without
            // commits is kept as it is, and that is recorded (as commit 0),
            // so that an append this run makes and never commits is dropped
            // by the next run.
            None => match commits.last_mut() {
                Some((_, len)) => {
                    *len = (*len).min(current);
                    *len
                }
                None => {
                    commits.push((0, current));
                    current
                }
            },
        };
        if keep < current {
            file.set_len(keep)?;
            file.sync_all()?;
        }
        // The log keeps its history up to what is now committed, so that an
        // older snapshot can still be restored later.
        self.rewrite_log(&commits)?;
        let committed = commits.last().map(|(c, _)| *c);
        let roll_forward = match (restored, committed) {
            (Some(id), Some(c)) => c < id && sealed.keys().any(|e| *e > c),
            (Some(_), None) => !sealed.is_empty(),
            (None, _) => false,
        };
        if let (true, Some(id)) = (roll_forward, restored) {
            self.sealed = sealed.split_off(&(committed.unwrap_or(0) + 1));
            tracing::info!(
                checkpoint = id,
                "committing output sealed for the restored checkpoint"
            );
            self.commit(id)?;
        }
        self.sealed.clear();
        if pending.exists() {
            std::fs::remove_dir_all(&pending)?;
        }
        std::fs::create_dir_all(&pending)
    }

    fn write(
        &mut self,
        worker: usize,
        _target: usize,
        lines: Vec<String>,
        _keys: Vec<String>,
    ) -> std::io::Result<()> {
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

    fn pre_commit(
        &mut self,
        worker: usize,
        checkpoint: u64,
        _positions: Vec<(String, i32, i64)>,
    ) -> std::io::Result<()> {
        self.seal(worker, checkpoint)
    }

    /// Appends the checkpoints' sealed files to the file, then the record.
    fn commit(&mut self, id: u64) -> std::io::Result<()> {
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
            if i == 0 && crate::failpoint::armed("mid-commit", id) {
                // A crash with part of the epoch in the file and no commit
                // record, made durable so that the restore sees it.
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

    fn workers(&self) -> usize {
        self.open.len()
    }

    /// Open and sealed files stay in `<out>.pending/`, which the next run's
    /// `begin` removes.
    fn abort(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn an_older_snapshot_cuts_the_output_back_to_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        write(&out, "a\nb\nc\n");
        write(&with_suffix(&out, ".commits"), "1 2\n2 4\n3 6\n");
        // Restoring 3 keeps everything and the history.
        TransactionalFile::new(&out, 1).begin(Some(3)).unwrap();
        assert_eq!(read_commit_log(&out).unwrap(), [(1, 2), (2, 4), (3, 6)]);
        // Restoring 1 later still finds its commit.
        TransactionalFile::new(&out, 1).begin(Some(1)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\n");
        assert_eq!(read_commit_log(&out).unwrap(), [(1, 2)]);
    }

    /// A first run dies in the middle of its first commit (output appended,
    /// no commit record): the next fresh run drops that output.
    #[test]
    fn a_fresh_run_drops_an_append_no_run_committed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        write(&out, "before\n");
        TransactionalFile::new(&out, 1).begin(None).unwrap();
        assert_eq!(read_commit_log(&out).unwrap(), [(0, 7)]);
        // The crashed commit's append.
        write(&out, "before\ntorn\n");
        TransactionalFile::new(&out, 1).begin(None).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "before\n");
    }

    #[test]
    fn a_snapshot_older_than_every_commit_is_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        write(&out, "a\nb\n");
        write(&with_suffix(&out, ".commits"), "50 4\n");
        let err = TransactionalFile::new(&out, 1)
            .begin(Some(40))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no commit at or before checkpoint 40 (the first is 50)"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nb\n");
    }

    /// A pod of a job over several restarts from a checkpoint that pod 0
    /// completed while this pod's commit of it was cut short: the output it
    /// sealed for that checkpoint (and an abandoned one before) is committed
    /// now; what it sealed for a later one is dropped.
    #[test]
    fn output_sealed_for_the_restored_checkpoint_is_committed_on_restore() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        write(&out, "a\n");
        write(&with_suffix(&out, ".commits"), "2 2\n");
        let pending = with_suffix(&out, ".pending");
        std::fs::create_dir_all(&pending).unwrap();
        write(&pending.join("3-w1"), "c\n");
        write(&pending.join("4-w0"), "d\n");
        write(&pending.join("4-w1"), "e\n");
        write(&pending.join("5-w0"), "later\n");
        write(&pending.join("open-w0"), "unsealed\n");
        TransactionalFile::new(&out, 2).begin(Some(4)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nc\nd\ne\n");
        assert_eq!(read_commit_log(&out).unwrap(), [(2, 2), (4, 8)]);
        assert_eq!(std::fs::read_dir(&pending).unwrap().count(), 0);
        // Restoring 4 again changes nothing.
        TransactionalFile::new(&out, 2).begin(Some(4)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nc\nd\ne\n");
    }
}

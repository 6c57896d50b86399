//! The one shape of every exactly-once sink (file, Kafka, PostgreSQL).
//!
//! A checkpoint's output becomes visible when, and only when, the checkpoint
//! completes: each worker's output is sealed at its barrier (phase one), and
//! once every worker has written its state the sink commits the
//! checkpoint's output together with a record of the commit (phase two).
//! That record is the checkpoint's commit point: `_metadata` is written
//! after it, and a job that dies in between completes the checkpoint on its
//! next start, because the output it committed reflects that checkpoint's
//! state (docs/architecture.md, "Two-phase sinks").
//!
//! A run drives a sink in this order: it is opened (which fences a crashed
//! run, where the sink has such a thing), asked for `last_committed` while
//! the run decides what to restore, told where the run starts (`begin`),
//! then `write`s and `pre_commit`s per worker with a `commit` per completed
//! checkpoint, and at the end either `finish` (the input ended) or `abort`
//! (the run stops or fails).

use std::io;

/// A sink that writes each checkpoint's output exactly once.
pub trait TwoPhaseCommitter: Send {
    /// The newest checkpoint whose output this sink committed, as its commit
    /// record says; None before the first commit.
    fn last_committed(&mut self) -> io::Result<Option<u64>>;

    /// The run starts from checkpoint `restored` (None: from no snapshot):
    /// output a crashed run left uncommitted is dropped, and output
    /// committed after `restored` is cut off or, where it cannot be, the
    /// run is refused with the way out.
    fn begin(&mut self, restored: Option<u64>) -> io::Result<()>;

    /// Whether output `target` (0 results, then late, malformed, unmatched)
    /// goes into this sink's transactions. Results always do.
    fn takes(&self, target: usize) -> bool {
        target == 0
    }

    /// Output of `worker` for `target`, with a key per line (or none).
    fn write(
        &mut self,
        worker: usize,
        target: usize,
        lines: Vec<String>,
        keys: Vec<String>,
    ) -> io::Result<()>;

    /// Phase one: `worker` passed the barrier of `checkpoint` with its
    /// Kafka sources at `positions` (topic, partition, next offset); what it
    /// wrote before belongs to that checkpoint.
    fn pre_commit(
        &mut self,
        worker: usize,
        checkpoint: u64,
        positions: Vec<(String, i32, i64)>,
    ) -> io::Result<()>;

    /// Phase two: `checkpoint` has every worker's state. Its output, and
    /// that of earlier checkpoints that never completed (their records are
    /// in its state), becomes visible with the commit record.
    fn commit(&mut self, checkpoint: u64) -> io::Result<()>;

    /// The input ended and every worker finished: everything written is
    /// committed as the final epoch `checkpoint`, as if every worker had
    /// passed its barrier.
    fn finish(&mut self, checkpoint: u64) -> io::Result<()> {
        for worker in 0..self.workers() {
            self.pre_commit(worker, checkpoint, Vec::new())?;
        }
        self.commit(checkpoint)
    }

    /// How many workers write to the sink.
    fn workers(&self) -> usize;

    /// The run ends without committing what is open; a restore produces it
    /// again.
    fn abort(&mut self) -> io::Result<()>;
}

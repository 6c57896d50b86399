//! The decode stage on the job's decode threads: while they parse one batch
//! of a split's records, the worker that read it reads the next batch and
//! routes the one before. One busy partition is so parsed on every core,
//! and reading, parsing and routing overlap instead of taking turns.
//!
//! Batches are finished in the order read, each joined from its parts in
//! order, so each partition's records reach the watermark in the order
//! read. The worker finishes every batch in flight before anything that
//! must follow every record read so far: a checkpoint barrier (it records
//! the split's positions) and the split's end.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::connectors::{Poll, RawBatch, SourceItem, SourceSplit, Unlocated};
use crate::record::RecordParser;

/// Batches parsing at once: the one just read and the one the worker is
/// waiting for. More would only hold more records back from the operator.
pub(crate) const MAX_IN_FLIGHT: usize = 2;

/// A part's items, in order, and its malformed records to locate.
type Parsed = (Vec<SourceItem>, Vec<Unlocated>);

pub(crate) struct ParallelDecode {
    pool: Arc<rayon::ThreadPool>,
    parser: Arc<RecordParser>,
    /// Oldest first.
    in_flight: VecDeque<InFlight>,
    /// A finished batch's buffers, emptied, for the next read.
    spare: Vec<RawBatch>,
    /// Time the worker waited for parts since `take_waited`.
    waited: std::time::Duration,
}

/// A batch whose parts are being parsed.
struct InFlight {
    batch: Arc<RawBatch>,
    /// What the poll that read the batch returned: the worker acts on it
    /// once the batch's records are routed, as it would have at once.
    poll: Poll,
    parts: Receiver<(usize, Parsed)>,
    count: usize,
}

impl ParallelDecode {
    pub fn new(pool: Arc<rayon::ThreadPool>, parser: Arc<RecordParser>) -> Self {
        Self {
            pool,
            parser,
            in_flight: VecDeque::with_capacity(MAX_IN_FLIGHT),
            spare: Vec::new(),
            waited: std::time::Duration::ZERO,
        }
    }

    /// How long the worker waited for the decode threads since the last
    /// call.
    pub fn take_waited(&mut self) -> std::time::Duration {
        std::mem::take(&mut self.waited)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// An empty batch to read into, in place of one handed to
    /// [`ParallelDecode::submit`].
    pub fn empty_batch(&mut self) -> RawBatch {
        self.spare.pop().unwrap_or_default()
    }

    /// Starts parsing `batch`, read by a poll that returned `poll`: one
    /// part on each decode thread.
    pub fn submit(&mut self, batch: RawBatch, poll: Poll) {
        let batch = Arc::new(batch);
        let count = self.pool.current_num_threads().max(1);
        let size = batch.len().div_ceil(count).max(1);
        let (done, parts) = crossbeam_channel::bounded(count);
        for part in 0..count {
            let start = (part * size).min(batch.len());
            let end = (start + size).min(batch.len());
            let (batch, parser, done): (_, _, Sender<_>) =
                (batch.clone(), self.parser.clone(), done.clone());
            self.pool.spawn(move || {
                let (mut items, mut unlocated) = (Vec::new(), Vec::new());
                batch.parse_part(start..end, &parser, &mut items, &mut unlocated);
                // The batch goes back to the worker whole once every part
                // has let go of it.
                drop(batch);
                let _ = done.send((part, (items, unlocated)));
            });
        }
        self.in_flight.push_back(InFlight {
            batch,
            poll,
            parts,
            count,
        });
    }

    /// Waits for the oldest batch in flight and turns it into items in
    /// `out`, in the order read; returns its poll. None when no batch is in
    /// flight.
    pub fn finish_oldest(
        &mut self,
        split: &dyn SourceSplit,
        out: &mut Vec<SourceItem>,
    ) -> Option<Poll> {
        let flight = self.in_flight.pop_front()?;
        let mut parts: Vec<Option<Parsed>> = (0..flight.count).map(|_| None).collect();
        let waiting = std::time::Instant::now();
        for _ in 0..flight.count {
            let (part, decoded) = flight
                .parts
                .recv()
                .expect("a decode thread ends only with the pool");
            parts[part] = Some(decoded);
        }
        self.waited += waiting.elapsed();
        // The parts' items are moved over whole: the worker, which reads
        // and routes every record, does not go through them one by one.
        for (mut items, unlocated) in parts.into_iter().flatten() {
            for malformed in &unlocated {
                malformed.locate(split, &mut items);
            }
            out.append(&mut items);
        }
        let mut batch = Arc::into_inner(flight.batch).expect("every part has let go");
        batch.clear();
        self.spare.push(batch);
        Some(flight.poll)
    }
}

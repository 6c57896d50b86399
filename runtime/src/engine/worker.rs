//! A worker: one thread that reads its source split, sends each record to
//! the worker that owns the record's key group, and runs the window operator
//! for its own key groups.
//!
//! Watermarks travel in-band: before a record goes to another worker, the
//! sender's watermark as of that record goes first, so every worker sees the
//! same sequence a single-threaded run would for the same split. Channels are
//! unbounded, and a worker stops reading its source (but never stops draining
//! its inbox) while any peer's inbox is long: that is the back-pressure, and
//! it cannot deadlock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::activity::{Activity, Stage, Wait};
use super::collector::{Collector, OutputCounts};
use super::coordinator::Ack;
use super::exchange::{EventBlock, Item, Message, Peer};
use super::operator::Operator;
use super::parallel_decode::{DecodeHelper, ParallelDecode, MAX_IN_FLIGHT};
use super::routing::{DealtPart, Routing, Step};
use super::upload::{Upload, Uploader};
use super::JobError;
use crate::checkpoint::{
    CheckpointStorage, Layout, LookupsSnapshot, PartitionPosition, SnapshotKind, WorkerSnapshot,
};
use crate::connectors::{Poll, RawBatch, SourceItem, SourceSplit};
use crate::control::{CheckpointPhases, JobControl, PartitionReport, PartitionState};
use crate::enrich::Enricher;
use crate::record::Event;
use crate::time::{now_millis, MinWatermark, PartitionWatermarks, SourceStatus};
use crate::window::WindowResult;

/// Records read from a split per poll, and per turn of a worker's loop.
const POLL_BATCH: usize = 1024;
/// Records a worker that decodes them itself reads, decodes and routes at
/// a time: few enough that their bytes and items (about 14 KiB) stay in
/// the core's first-level cache between the stages. Counted with
/// cachegrind on whole runs (the README's "Read, decoded and routed in
/// parts"): reading 1024 at a time missed that cache 20 times a JSON
/// record and 13 times a generated event; parts of 64, 11 and 5; parts of
/// 32, 8 and 5, but for about 28 more instructions a record than 64 (each
/// part reads the clock for its stages).
const READ_PART: usize = 64;
/// Fewer records than this are parsed by the worker itself: offering them
/// to the other workers would cost more than it saves.
const PARALLEL_DECODE_MIN: usize = 128;
/// Events per message to a peer, about (a part's block goes whole): small
/// enough (16 KiB) to stay in cache between the core that writes it and
/// the core that reads it; measured best among 32..1024 with
/// `streamjob bench --parallelism 2`.
const SEND_BATCH: usize = 128;
/// Messages waiting in a peer's inbox before this worker pauses its source.
const HIGH_WATER: usize = 512;
/// Longest an output line waits in the worker for more to batch with.
const OUTPUT_DELAY: Duration = Duration::from_millis(100);

/// A worker's part in checkpointing.
pub(crate) struct Checkpointing {
    /// The newest checkpoint the coordinator asked for.
    pub trigger: Arc<std::sync::atomic::AtomicU64>,
    /// The newest checkpoint this worker injected a barrier for.
    pub injected: u64,
    pub storage: CheckpointStorage,
    pub layout: Layout,
    pub acks: Sender<Ack>,
    /// At-least-once: records after a barrier are not held back while the
    /// other barriers arrive.
    pub at_least_once: bool,
    pub key_groups: (u16, u16),
    /// The id of the newest savepoint: a barrier with this id writes to
    /// the savepoints folder.
    pub savepoint: Arc<std::sync::atomic::AtomicU64>,
    /// Uploads checkpoints in the background.
    pub uploader: Uploader,
    /// Local folder for RocksDB checkpoints waiting to be uploaded.
    pub uploads: std::path::PathBuf,
}

/// A checkpoint whose barriers are arriving.
pub(crate) struct Alignment {
    id: u64,
    /// When this worker injected its barrier.
    started: Instant,
    /// Inputs whose barrier has arrived (or which have ended).
    got: Vec<bool>,
    positions: Vec<PartitionPosition>,
    /// The split's Kafka offsets at the barrier, for a transactional sink.
    kafka_offsets: Vec<(String, i32, i64)>,
}

/// What a worker did, reported when it finishes.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub records_in: u64,
    pub results: u64,
    pub late: u64,
    pub malformed: u64,
    pub unmatched: u64,
    pub keys_spilled: u64,
    pub captured: Vec<WindowResult>,
}

pub(crate) struct Worker {
    pub index: usize,
    pub max_parallelism: u32,
    /// Which worker each event goes to.
    pub routing: Routing,
    pub split: Box<dyn SourceSplit>,
    /// What the split read, before it is decoded.
    pub raw: RawBatch,
    /// Turns the split's records into events, enriching them from the
    /// worker's lookup tables.
    pub decoder: Enricher,
    /// Offers the split's batches to the process's other workers to parse
    /// while this one reads and routes (more than one worker here, no
    /// lookups).
    pub parallel_decode: Option<ParallelDecode>,
    /// Parses parts of the other workers' batches when this one has
    /// nothing to read (more than one worker here).
    pub decode_helper: Option<DecodeHelper>,
    pub split_watermarks: PartitionWatermarks,
    pub split_done: bool,
    pub op: Operator,
    pub inputs: MinWatermark,
    pub inbox: Receiver<Message>,
    /// The way to every worker of the job, by index (this one's unused).
    pub peers: Vec<Peer>,
    pub outgoing: Vec<Vec<Item>>,
    pub sent_status: Vec<Option<SourceStatus>>,
    pub collector: Collector,
    pub fail_on_malformed: bool,
    pub processing_time_interval: Option<Duration>,
    /// Watermark alignment (`watermark.maxDrift`), in milliseconds.
    pub max_drift: Option<i64>,
    pub checkpointing: Option<Checkpointing>,
    pub(crate) alignment: Option<Alignment>,
    /// Items from inputs whose barrier has arrived, held until the others'.
    pub(crate) held: std::collections::VecDeque<(usize, Item)>,
    pub abort: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
    pub records_in: u64,
    /// Live metrics for the control API.
    pub control: Option<Arc<JobControl>>,
    pub published: Published,
    /// Where this worker's time goes, for the control API.
    pub activity: Activity,
    /// The newest malformed records since the last publish, with when
    /// they were read.
    pub recent_malformed: std::collections::VecDeque<(i64, crate::connectors::Malformed)>,
}

/// Counts already added to the live metrics.
#[derive(Debug, Default)]
pub(crate) struct Published {
    records_in: u64,
    outputs: OutputCounts,
}

impl Worker {
    /// Whether its split has nothing to read (more workers than files or
    /// partitions): it has ended before it starts.
    pub fn has_nothing_to_read(&self) -> bool {
        self.split.partitions() == 0
    }

    /// Worker `input` (this one, or another in any pod) has nothing to
    /// read: it never holds this worker's watermark back, from the first
    /// record on.
    pub fn input_has_nothing_to_read(&mut self, input: usize) {
        self.inputs.update(input, SourceStatus::Ended);
    }

    pub fn run(mut self) -> Result<WorkerReport, JobError> {
        let result = self.run_loop();
        self.publish(true);
        if result.is_err() {
            self.abort.store(true, Ordering::SeqCst);
        }
        // Checkpoints taken so far are acknowledged (or abandoned on abort)
        // before the worker counts as finished.
        if let Some(c) = &mut self.checkpointing {
            c.uploader.finish();
        }
        self.collector.flush();
        result?;
        Ok(WorkerReport {
            records_in: self.records_in,
            results: self.collector.counts.results,
            late: self.collector.counts.late,
            malformed: self.collector.counts.malformed,
            unmatched: self.collector.counts.unmatched,
            keys_spilled: self.op.spill_count(),
            captured: self.collector.captured.take().unwrap_or_default(),
        })
    }

    fn run_loop(&mut self) -> Result<(), JobError> {
        let mut items = Vec::with_capacity(POLL_BATCH);
        let mut next_tick = self.processing_time_interval.map(|i| Instant::now() + i);
        // The own split's status counts from the start: after a restore its
        // watermark is the snapshot's, and an input view still at MIN would
        // look far behind it (watermark alignment would then never read).
        self.on_split_status()?;
        // The inputs may start out ended (splits with nothing to read).
        let start = self.inputs.current();
        self.op.advance_watermark(start, &mut self.collector)?;
        loop {
            if self.abort.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut busy = false;
            self.maybe_inject()?;
            // Held back by a peer's full inbox: time waiting now is
            // back-pressure, not idleness.
            let exchange_full = !self.split_done && self.alignment.is_none() && self.congested();
            if self.decoder.has_lookups() {
                busy |= self
                    .decoder
                    .poll_changelogs(&mut items)
                    .map_err(JobError::Source)?;
                self.take_items(&mut items)?;
            }
            let read = if !self.may_read() {
                self.finish_decoding(0)?;
                false
            } else if self.parallel_decode.is_some() {
                self.read_for_others_to_parse(&mut items)?
            } else {
                self.read_in_parts(&mut items)?
            };
            busy |= read;
            while let Ok(msg) = self.inbox.try_recv() {
                busy = true;
                self.handle(msg)?;
            }
            // With nothing of its own read, the worker's core helps parse
            // another worker's busy split.
            if !read {
                busy |= self.help_parse();
            }
            self.flush_peers();
            if let (Some(tick), Some(interval)) = (next_tick, self.processing_time_interval) {
                if Instant::now() >= tick {
                    let firing = self.activity.mark();
                    self.op.fire_processing_time(&mut self.collector)?;
                    next_tick = Some(Instant::now() + interval);
                    self.activity.spent(Stage::Window, firing);
                }
            }
            self.op.maintain()?;
            self.collector.flush_older_than(OUTPUT_DELAY);
            self.publish(false);
            if self.inputs.status() == SourceStatus::Ended {
                return Ok(());
            }
            if !busy {
                let wait = match exchange_full {
                    true => Wait::Exchange,
                    false => Wait::Idle,
                };
                let (inbox, helper) = (&self.inbox, &mut self.decode_helper);
                let next = self.activity.time(wait, || {
                    wait_for_work(inbox, helper, Duration::from_millis(5))
                });
                match next {
                    Work::Message(msg) => self.handle(msg)?,
                    // Parsed on the next turn, after the inbox.
                    Work::Offer | Work::None => {}
                    Work::InboxClosed => return Ok(()),
                }
            }
        }
    }

    /// Whether the split may be read now: not while a checkpoint barrier
    /// is being aligned, a peer's inbox is full, this split's watermark is
    /// too far ahead of the job's, or lookup tables are still loading.
    fn may_read(&self) -> bool {
        !self.split_done
            && self.alignment.is_none()
            && !self.congested()
            && !self.ahead_of_the_job()
            && self.decoder.ready()
    }

    /// Polls the split for at most `max` records, timed as the read stage.
    fn poll_split(&mut self, max: usize) -> Result<Poll, JobError> {
        let reading = self.activity.mark();
        let poll = self
            .split
            .poll(&mut self.raw, max)
            .map_err(JobError::Source)?;
        // A source that waited for records was idle meanwhile.
        self.activity.waited(Wait::Idle, self.split.take_waited());
        self.activity.spent(Stage::Read, reading);
        Ok(poll)
    }

    /// Reads, decodes and routes up to [`POLL_BATCH`] records on this
    /// thread, [`READ_PART`] at a time: a part's bytes and items are still
    /// in the core's first-level cache when they are decoded and routed.
    /// Whether anything was read.
    fn read_in_parts(&mut self, items: &mut Vec<SourceItem>) -> Result<bool, JobError> {
        let mut read = 0;
        loop {
            let poll = self.poll_split(READ_PART)?;
            // Items, not records: a generated event is read but is no
            // record, and a split that read fewer than asked has no more.
            let part = self.raw.items();
            read += part;
            self.decode_and_route(poll, items)?;
            // A part short of what was asked is all the source had: it is
            // polled again next turn, after the inbox.
            if part < READ_PART || poll != Poll::Ready || read >= POLL_BATCH || !self.may_read() {
                return Ok(read > 0);
            }
        }
    }

    /// Parses one part of a batch another worker offered; whether there
    /// was one.
    fn help_parse(&mut self) -> bool {
        let Some(helper) = &mut self.decode_helper else {
            return false;
        };
        let parsing = self.activity.mark();
        let helped = helper.help();
        if helped {
            self.activity.spent(Stage::Decode, parsing);
        }
        helped
    }

    /// Reads a batch and offers it to the other workers to parse, and
    /// routes the batches finished. A small batch is decoded here, after
    /// those before it. Whether anything was read.
    fn read_for_others_to_parse(&mut self, items: &mut Vec<SourceItem>) -> Result<bool, JobError> {
        let poll = self.poll_split(POLL_BATCH)?;
        let read = !self.raw.is_empty();
        match &mut self.parallel_decode {
            Some(parallel) if self.raw.records() >= PARALLEL_DECODE_MIN => {
                let batch = std::mem::replace(&mut self.raw, parallel.empty_batch());
                parallel.submit(batch, poll);
                let keep = match poll {
                    Poll::Ended => 0,
                    Poll::Pending | Poll::Ready => MAX_IN_FLIGHT - 1,
                };
                self.finish_decoding(keep)?;
            }
            _ => {
                // Batches read before this one go first.
                self.finish_decoding(0)?;
                self.decode_and_route(poll, items)?;
            }
        }
        Ok(read)
    }

    /// Decodes what a poll read on this thread, routes it, then acts on
    /// the poll.
    fn decode_and_route(
        &mut self,
        poll: Poll,
        items: &mut Vec<SourceItem>,
    ) -> Result<(), JobError> {
        self.decode(items)?;
        self.take_items(items)?;
        self.after_poll(poll)
    }

    /// The decode stage on this thread: what the split read, as events and
    /// malformed records, in the order read.
    fn decode(&mut self, items: &mut Vec<SourceItem>) -> Result<(), JobError> {
        let decoding = self.activity.mark();
        let decoded = self
            .raw
            .decode_each(&mut self.decoder, &*self.split, items)
            .map_err(JobError::Source);
        self.activity.spent(Stage::Decode, decoding);
        decoded
    }

    /// Routes the batches in flight, oldest first, each part once it and
    /// those before it are parsed, and acts on the polls that read them,
    /// until at most `keep` are in flight.
    fn finish_decoding(&mut self, keep: usize) -> Result<(), JobError> {
        loop {
            // Taken out while its parts are routed, which needs the worker.
            let Some(mut parallel) = self.parallel_decode.take_if(|p| p.in_flight() > keep) else {
                return Ok(());
            };
            let decoding = self.activity.mark();
            let finished = parallel.finish_oldest(|parsed| {
                let part = parsed.located(&*self.split);
                // Routing is timed on its own, and not as decoding.
                let routing = self.activity.mark();
                let routed = self.route_dealt(part);
                self.activity.spent(Stage::Route, routing);
                routed
            });
            self.activity.waited(Wait::Decode, parallel.take_waited());
            self.parallel_decode = Some(parallel);
            self.activity.spent(Stage::Decode, decoding);
            let Some(poll) = finished? else {
                return Ok(());
            };
            self.after_poll(poll)?;
        }
    }

    /// Acts on what a poll of the split returned, once the records it read
    /// are routed.
    fn after_poll(&mut self, poll: Poll) -> Result<(), JobError> {
        match poll {
            Poll::Ended => {
                self.split_done = true;
                self.on_split_status()
            }
            // Idleness is checked on every poll: a busy partition must not
            // keep a silent one in the same split from being marked idle.
            Poll::Pending | Poll::Ready => {
                let before = self.split_watermarks.status();
                self.split_watermarks.check_idle(now_millis());
                if self.split_watermarks.status() != before {
                    self.on_split_status()?;
                }
                Ok(())
            }
        }
    }

    /// The route stage: each event to the worker that owns its key (this
    /// one's windowed here), each malformed record to its side output.
    fn take_items(&mut self, items: &mut Vec<SourceItem>) -> Result<(), JobError> {
        if items.is_empty() {
            return Ok(());
        }
        let routing = self.activity.mark();
        let routed = self.route_items(items);
        self.activity.spent(Stage::Route, routing);
        routed
    }

    fn route_items(&mut self, items: &mut Vec<SourceItem>) -> Result<(), JobError> {
        let now = now_millis();
        for item in items.drain(..) {
            self.route_item(item, now)?;
        }
        Ok(())
    }

    /// The route stage for a part dealt out by owner as it was parsed:
    /// this worker's events to its operator, and each peer's events on in
    /// one block, with the split's status where it changed between them,
    /// as [`Worker::route`] would have sent them one by one.
    fn route_dealt(&mut self, part: DealtPart) -> Result<(), JobError> {
        let DealtPart {
            steps,
            mut events,
            others,
        } = part;
        let now = now_millis();
        // The dealer put one event in `events[owner]` for each record step
        // of that owner, and one item in `others` for each other step.
        let mut own = std::mem::take(&mut events[self.index]).into_iter();
        let mut others = others.into_iter();
        let mut blocks: Vec<EventBlock> = events
            .into_iter()
            .map(|events| EventBlock {
                events,
                statuses: Vec::new(),
            })
            .collect();
        // Each peer's events passed so far.
        let mut passed = vec![0u32; blocks.len()];
        for step in steps {
            match step {
                Step::Record {
                    partition,
                    owner,
                    ts,
                } => {
                    self.records_in += 1;
                    let owner = owner as usize;
                    if owner == self.index {
                        if let Some(event) = own.next() {
                            self.op.process(event, &mut self.collector)?;
                        }
                    } else {
                        if let Some(status) = self.status_news(owner) {
                            let block = &mut blocks[owner];
                            if block.statuses.capacity() == 0 {
                                // At most one a record (times rising record by
                                // record move the watermark at each): room for
                                // them all at once, not grown again and again.
                                let left = block.events.len() - passed[owner] as usize;
                                block.statuses.reserve(left);
                            }
                            block.statuses.push((passed[owner], status));
                        }
                        passed[owner] += 1;
                    }
                    self.on_record(partition as usize, ts, now)?;
                }
                Step::Other => {
                    if let Some(item) = others.next() {
                        self.route_item(item, now)?;
                    }
                }
            }
        }
        for (peer, block) in blocks.into_iter().enumerate() {
            if block.events.is_empty() {
                continue;
            }
            self.outgoing[peer].push(Item::Events(block));
            if self.outgoing[peer].iter().map(Item::events).sum::<usize>() >= SEND_BATCH {
                self.send(peer);
            }
        }
        Ok(())
    }

    /// The split read a record with event time `ts` from `partition`.
    fn on_record(&mut self, partition: usize, ts: i64, now: i64) -> Result<(), JobError> {
        if self
            .split_watermarks
            .on_record(partition, ts, now)
            .is_some()
        {
            self.on_split_status()?;
        }
        Ok(())
    }

    /// Routes one item the split read at processing time `now`.
    fn route_item(&mut self, item: SourceItem, now: i64) -> Result<(), JobError> {
        match item {
            SourceItem::Record { partition, event } => {
                self.records_in += 1;
                let ts = event.ts;
                self.route(event)?;
                self.on_record(partition, ts, now)?;
            }
            SourceItem::Malformed(m) if m.error.is_unmatched() => {
                self.collector.unmatched(&m);
            }
            SourceItem::Malformed(m) => {
                if self.fail_on_malformed {
                    return Err(JobError::Malformed(m));
                }
                self.collector.malformed(&m);
                // Kept for the control API's list, handed over once a
                // second: no lock or formatting per record.
                if self.control.is_some() {
                    if self.recent_malformed.len() == crate::control::RECENT {
                        self.recent_malformed.pop_front();
                    }
                    self.recent_malformed.push_back((now, m));
                }
            }
            SourceItem::PartitionEnd(p) => {
                if self.split_watermarks.end_partition(p).is_some() {
                    self.on_split_status()?;
                }
            }
        }
        Ok(())
    }

    fn split_status(&self) -> SourceStatus {
        if self.split_done {
            SourceStatus::Ended
        } else {
            self.split_watermarks.status()
        }
    }

    /// The split's status changed: the local operator learns at once; peers
    /// learn in-band with the next record or flush.
    fn on_split_status(&mut self) -> Result<(), JobError> {
        let status = self.split_status();
        if let Some(wm) = self.inputs.update(self.index, status) {
            self.op.advance_watermark(wm, &mut self.collector)?;
        }
        Ok(())
    }

    fn route(&mut self, event: Event) -> Result<(), JobError> {
        let owner = self.routing.owner(&event, self.index);
        if owner == self.index {
            self.op.process(event, &mut self.collector)?;
            return Ok(());
        }
        if let Some(status) = self.status_news(owner) {
            self.outgoing[owner].push(Item::Status(status));
        }
        self.outgoing[owner].push(Item::Record(event));
        if self.outgoing[owner].len() >= SEND_BATCH {
            self.send(owner);
        }
        Ok(())
    }

    /// The split's status, if `peer` has not been sent it yet: it goes
    /// before the next event for `peer`, and counts as sent from now on.
    fn status_news(&mut self, peer: usize) -> Option<SourceStatus> {
        let status = self.split_status();
        (self.sent_status[peer] != Some(status)).then(|| {
            self.sent_status[peer] = Some(status);
            status
        })
    }

    fn send(&mut self, peer: usize) {
        let items = std::mem::replace(&mut self.outgoing[peer], Vec::with_capacity(SEND_BATCH));
        self.peers[peer].send(Message {
            from: self.index,
            items,
        });
    }

    fn flush_peers(&mut self) {
        for peer in 0..self.peers.len() {
            if peer == self.index {
                continue;
            }
            if let Some(status) = self.status_news(peer) {
                self.outgoing[peer].push(Item::Status(status));
            }
            if !self.outgoing[peer].is_empty() {
                self.send(peer);
            }
        }
    }

    /// Adds what happened since the last call to the live metrics; once a
    /// second, and `last`, the worker's activity and partitions too.
    fn publish(&mut self, last: bool) {
        let Some(control) = &self.control else {
            return;
        };
        let m = &control.metrics;
        let (now, then) = (self.collector.counts, self.published.outputs);
        m.records_in
            .inc_by(self.records_in - self.published.records_in);
        m.results.inc_by(now.results - then.results);
        m.late.inc_by(now.late - then.late);
        m.malformed.inc_by(now.malformed - then.malformed);
        m.unmatched.inc_by(now.unmatched - then.unmatched);
        self.published = Published {
            records_in: self.records_in,
            outputs: now,
        };
        control.set_watermark(self.index, self.op.watermark());
        let now = Instant::now();
        if !last && !self.activity.due(now) {
            return;
        }
        let spent = self.activity.take(now);
        for (at, m) in self.recent_malformed.drain(..) {
            control.malformed(at, &m.location, &m.error.to_string());
        }
        control.worker_second(self.index, spent, self.op.watermark(), self.partitions());
    }

    /// Each partition of the split, for the control API.
    fn partitions(&self) -> Vec<PartitionReport> {
        self.split
            .partition_ids()
            .into_iter()
            .zip(self.split.positions())
            .zip(self.split.lags())
            .enumerate()
            .map(|(p, ((id, (_, records)), lag))| PartitionReport {
                id,
                state: match self.split_watermarks.partition_status(p) {
                    _ if self.split_done => PartitionState::Ended,
                    SourceStatus::Active(_) => PartitionState::Active,
                    SourceStatus::Idle => PartitionState::Idle,
                    SourceStatus::Ended => PartitionState::Ended,
                },
                records,
                watermark: self.split_watermarks.watermark(p),
                lag,
            })
            .collect()
    }

    /// Whether this split's watermark is too far ahead of the job's: then
    /// it waits for the others. The slowest split is never ahead, so the job
    /// always makes progress.
    fn ahead_of_the_job(&self) -> bool {
        self.max_drift.is_some_and(|drift| {
            self.split_watermarks.current() > self.inputs.current().saturating_add(drift)
        })
    }

    fn congested(&self) -> bool {
        self.peers
            .iter()
            .enumerate()
            .any(|(i, p)| i != self.index && p.backlog(self.index) > HIGH_WATER)
    }

    /// The window stage for what a peer sent.
    fn handle(&mut self, msg: Message) -> Result<(), JobError> {
        let windowing = self.activity.mark();
        self.peers[msg.from].taken(self.index);
        for item in msg.items {
            self.handle_item(msg.from, item)?;
        }
        self.activity.spent(Stage::Window, windowing);
        Ok(())
    }

    fn handle_item(&mut self, from: usize, item: Item) -> Result<(), JobError> {
        // Exactly-once alignment: an input whose barrier has arrived waits.
        if let Some(a) = &self.alignment {
            let at_least_once = self.checkpointing.as_ref().is_some_and(|c| c.at_least_once);
            if a.got[from] && !at_least_once {
                self.held.push_back((from, item));
                return Ok(());
            }
        }
        match item {
            Item::Record(event) => self.op.process(event, &mut self.collector)?,
            Item::Events(EventBlock { events, statuses }) => {
                let mut statuses = statuses.into_iter().peekable();
                for (i, event) in events.into_iter().enumerate() {
                    while let Some((_, status)) = statuses.next_if(|(at, _)| *at as usize <= i) {
                        self.input_status(from, status)?;
                    }
                    self.op.process(event, &mut self.collector)?;
                }
                for (_, status) in statuses {
                    self.input_status(from, status)?;
                }
            }
            Item::Status(status) => self.input_status(from, status)?,
            Item::Barrier(id) => {
                if self.alignment.as_ref().is_none_or(|a| a.id < id) {
                    self.inject(id)?;
                }
                self.barrier_from(from)?;
            }
        }
        Ok(())
    }

    /// Input `from`'s status is now `status`.
    fn input_status(&mut self, from: usize, status: SourceStatus) -> Result<(), JobError> {
        if let Some(wm) = self.inputs.update(from, status) {
            self.op.advance_watermark(wm, &mut self.collector)?;
        }
        if status == SourceStatus::Ended {
            self.barrier_from(from)?;
        }
        Ok(())
    }

    /// Starts a checkpoint the coordinator asked for, if none is under way.
    fn maybe_inject(&mut self) -> Result<(), JobError> {
        let Some(c) = &self.checkpointing else {
            return Ok(());
        };
        let wanted = c.trigger.load(Ordering::Acquire);
        if wanted > c.injected && self.alignment.is_none() {
            self.inject(wanted)?;
        }
        Ok(())
    }

    /// Records the split's position and sends barrier `id` to every peer,
    /// behind everything read so far.
    fn inject(&mut self, id: u64) -> Result<(), JobError> {
        let Some(c) = &mut self.checkpointing else {
            return Ok(());
        };
        if id <= c.injected {
            return Ok(());
        }
        // The barrier follows every record read so far: those still being
        // parsed are routed first.
        self.finish_decoding(0)?;
        let Some(c) = &mut self.checkpointing else {
            return Ok(());
        };
        c.injected = id;
        let ids = self.split.partition_ids();
        let positions = self
            .split
            .positions()
            .into_iter()
            .zip(ids)
            .enumerate()
            .map(|(p, ((offset, records), id))| PartitionPosition {
                id,
                offset,
                records,
                max_ts: self.split_watermarks.max_ts(p),
                ended: self.split_done || self.split_watermarks.is_ended(p),
            })
            .collect();
        self.flush_peers();
        for peer in 0..self.peers.len() {
            if peer != self.index {
                self.outgoing[peer].push(Item::Barrier(id));
                self.send(peer);
            }
        }
        let mut got = vec![false; self.peers.len()];
        got[self.index] = true;
        let superseded = self.alignment.replace(Alignment {
            id,
            started: Instant::now(),
            got,
            positions,
            kafka_offsets: self.split.kafka_offsets(),
        });
        self.barrier_from(self.index)?;
        if superseded.is_some() {
            // The checkpoint being aligned was abandoned (a peer skipped to
            // this one). What was held for it, which may include other
            // inputs' barriers for this one, is handled again under the new
            // alignment, in order; left held, it would wait forever.
            let held = std::mem::take(&mut self.held);
            for (from, item) in held {
                self.handle_item(from, item)?;
            }
        }
        Ok(())
    }

    /// Input `from` delivered its barrier (or ended); completes the
    /// checkpoint when every input has.
    fn barrier_from(&mut self, from: usize) -> Result<(), JobError> {
        let Some(a) = &mut self.alignment else {
            return Ok(());
        };
        a.got[from] = true;
        for (input, got) in a.got.iter_mut().enumerate() {
            if self.inputs.input_status(input) == SourceStatus::Ended {
                *got = true;
            }
        }
        if a.got.iter().all(|g| *g) {
            let a = self.alignment.take().expect("aligning");
            self.snapshot(a)?;
            // Release what was held back, in order; it may hold the next
            // checkpoint's barriers.
            let held = std::mem::take(&mut self.held);
            for (from, item) in held {
                self.handle_item(from, item)?;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, a: Alignment) -> Result<(), JobError> {
        let Some(c) = &self.checkpointing else {
            return Ok(());
        };
        let mut phases = CheckpointPhases {
            alignment_ms: a.started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        let sync_started = Instant::now();
        // Output emitted before the barrier must be durable before the
        // checkpoint can complete; otherwise a crash after it loses that
        // output for good.
        let collector = &mut self.collector;
        self.activity
            .time(Wait::Sink, || collector.sync(a.id, a.kafka_offsets))
            .map_err(JobError::Sink)?;
        if crate::failpoint::error_at("worker-error", a.id) {
            return Err(JobError::Source(std::io::Error::other(format!(
                "failpoint worker-error:{} reached",
                a.id
            ))));
        }
        let is_savepoint = c.savepoint.load(Ordering::Acquire) == a.id;
        let mut snapshot = WorkerSnapshot {
            index: self.index,
            key_groups: c.key_groups,
            positions: a.positions,
            ..Default::default()
        };
        let failed = |error: String| Ack::Failed {
            worker: self.index,
            id: a.id,
            error,
        };
        if !is_savepoint {
            // A checkpoint: the changed state, written to RocksDB and
            // uploaded in the background.
            let dir = c.layout.snapshot_dir(SnapshotKind::Checkpoint, a.id);
            let local = c.uploads.join(format!("chk-{}", a.id));
            let state = self
                .op
                .checkpoint_state()
                .and_then(|state| Ok((state, self.decoder.checkpoint()?)));
            phases.sync_ms = sync_started.elapsed().as_millis() as u64;
            match state {
                Ok((state, tables)) => c.uploader.submit(Upload {
                    id: a.id,
                    dir,
                    snapshot,
                    local,
                    state,
                    tables,
                    watermark: self.op.watermark(),
                    phases,
                }),
                // An earlier checkpoint's state write failed: the store
                // no longer holds what it counts as written. Only a restore
                // from a completed checkpoint is sound.
                Err(e @ crate::state::StateError::CheckpointWrite(_)) => return Err(e.into()),
                Err(e) => {
                    let _ = c.acks.send(failed(e.to_string()));
                }
            }
            return Ok(());
        }
        // A savepoint: every key and value in the worker file, so that it
        // stands alone. Rare, and taken here (processing waits for it).
        snapshot.entries = self.op.snapshot(self.max_parallelism)?;
        let tables = self.decoder.savepoint()?;
        phases.sync_ms = sync_started.elapsed().as_millis() as u64;
        let writing = Instant::now();
        let dir = c.layout.snapshot_dir(SnapshotKind::Savepoint, a.id);
        let lookups = LookupsSnapshot {
            index: self.index,
            tables,
        };
        let written = match lookups.tables.is_empty() {
            true => Ok(0),
            false => c.storage.write_lookups(&dir, &lookups),
        }
        .and_then(|tables| Ok(tables + c.storage.write_worker(&dir, a.id, &snapshot)?));
        let ack = match written {
            Ok(bytes) => Ack::Done {
                worker: self.index,
                id: a.id,
                bytes,
                watermark: self.op.watermark(),
                phases: CheckpointPhases {
                    upload_ms: writing.elapsed().as_millis() as u64,
                    ..phases
                },
            },
            Err(e) => failed(e.to_string()),
        };
        let _ = c.acks.send(ack);
        Ok(())
    }
}

/// What a waiting worker woke up to.
enum Work {
    Message(Message),
    /// A batch to help parse, taken up by the worker's helper.
    Offer,
    /// Nothing within the wait.
    None,
    /// Every sender of the inbox is gone: the job is over.
    InboxClosed,
}

/// Waits up to `timeout` for a message, or for a batch to help parse.
fn wait_for_work(
    inbox: &Receiver<Message>,
    helper: &mut Option<DecodeHelper>,
    timeout: Duration,
) -> Work {
    let Some(helper) = helper else {
        return match inbox.recv_timeout(timeout) {
            Ok(msg) => Work::Message(msg),
            Err(RecvTimeoutError::Timeout) => Work::None,
            Err(RecvTimeoutError::Disconnected) => Work::InboxClosed,
        };
    };
    crossbeam_channel::select! {
        recv(inbox) -> msg => msg.map_or(Work::InboxClosed, Work::Message),
        recv(helper.offers()) -> offer => match offer {
            Ok(offer) => {
                helper.take(offer);
                Work::Offer
            }
            // Not while the helper holds the offers' sender.
            Err(_) => Work::None,
        },
        default(timeout) => Work::None,
    }
}

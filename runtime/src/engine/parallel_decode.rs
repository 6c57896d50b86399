//! The decode stage shared between a process's workers: a worker that
//! reads a busy split offers each batch it read to the others, and a worker
//! with nothing to read of its own parses parts of it meanwhile. The worker
//! that read the batch reads the next one, then routes the one before part
//! by part, each as soon as it and those before it are parsed, parsing
//! meanwhile whatever parts nobody took. One busy partition is
//! so parsed on every core, with no threads beyond the workers: when every
//! worker has its own split to read, each parses its own batches.
//!
//! Batches are finished in the order read, each joined from its parts in
//! order, so each partition's records reach the watermark in the order
//! read. The worker finishes every batch in flight before anything that
//! must follow every record read so far: a checkpoint barrier (it records
//! the split's positions) and the split's end.

use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::routing::{Dealer, DealtPart, Routing};
use super::{panic_message, JobError};
use crate::connectors::{Poll, RawBatch, SourceSplit, Unlocated};
use crate::record::RecordParser;

/// Batches parsing at once: the one just read and the one the worker is
/// waiting for. More would only hold more records back from the operator.
pub(crate) const MAX_IN_FLIGHT: usize = 2;

/// Finished batches kept for their buffers.
const MAX_REUSABLE: usize = 4;

/// Items in a part, at least (a run of lines is not cut: see
/// `RawBatch::parts`): small enough that the workers parsing a batch end
/// close together, large enough that claiming one costs nothing next to
/// parsing it.
const PART: usize = 128;

/// A part's items, dealt out by owner, with its malformed records still
/// to locate: only the split that read them knows where they are.
pub(crate) struct Parsed {
    part: DealtPart,
    unlocated: Vec<Unlocated>,
}

impl Parsed {
    /// The part, its malformed records located by `split`.
    pub fn located(self, split: &dyn SourceSplit) -> DealtPart {
        let Parsed {
            mut part,
            unlocated,
        } = self;
        for malformed in &unlocated {
            malformed.locate(split, &mut part.others);
        }
        part
    }
}

/// A part a helper parsed, or the panic that stopped it.
type Finished = Result<(usize, Parsed), String>;

/// The offers of a process's workers to one another; one for the process.
#[derive(Clone)]
pub(crate) struct DecodeOffers {
    send: Sender<Offer>,
    take: Receiver<Offer>,
    /// Workers that may take an offer: all but the one that makes it.
    helpers: usize,
}

impl DecodeOffers {
    /// Offers between `workers` workers; None for one, which has nobody to
    /// share with.
    pub fn between(workers: usize) -> Option<Self> {
        if workers < 2 {
            return None;
        }
        // Offers nobody took (every worker busy reading) are stale by the
        // time one is free; a few are kept, the rest not made.
        let (send, take) = crossbeam_channel::bounded(workers * MAX_IN_FLIGHT);
        Some(Self {
            send,
            take,
            helpers: workers - 1,
        })
    }
}

/// A batch offered for parsing, and where its parts go back to.
pub(crate) struct Offer {
    batch: Arc<SharedBatch>,
    done: Sender<Finished>,
}

/// A batch and which of its parts is next to parse, shared by every worker
/// that parses it.
struct SharedBatch {
    batch: RawBatch,
    /// The batch's entries, by part.
    parts: Vec<Range<usize>>,
    parser: Arc<RecordParser>,
    dealing: Arc<Dealing>,
    next: AtomicUsize,
}

/// How the worker that reads a batch has its parts dealt out.
struct Dealing {
    routing: Routing,
    reader: usize,
    workers: usize,
}

impl SharedBatch {
    fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Claims the next part nobody has claimed; None when none is left.
    fn claim(&self) -> Option<usize> {
        let part = self.next.fetch_add(1, Ordering::Relaxed);
        (part < self.parts()).then_some(part)
    }

    fn parse(&self, part: usize) -> Parsed {
        let (mut dealt, mut unlocated) = (DealtPart::new(self.dealing.workers), Vec::new());
        let mut dealer = Dealer {
            part: &mut dealt,
            routing: &self.dealing.routing,
            reader: self.dealing.reader,
        };
        let entries = self.parts[part].clone();
        self.batch
            .parse_part(entries, &self.parser, &mut dealer, &mut unlocated);
        Parsed {
            part: dealt,
            unlocated,
        }
    }
}

/// The side of a worker that reads: its batches in flight.
pub(crate) struct ParallelDecode {
    offers: DecodeOffers,
    parser: Arc<RecordParser>,
    dealing: Arc<Dealing>,
    /// Oldest first.
    in_flight: VecDeque<InFlight>,
    /// Finished batches, whose buffers the next reads reuse once no other
    /// worker holds them.
    reusable: Vec<Arc<SharedBatch>>,
    /// Time the worker waited for parts since `take_waited`.
    waited: Duration,
}

/// A batch whose parts are being parsed.
struct InFlight {
    batch: Arc<SharedBatch>,
    /// What the poll that read the batch returned: the worker acts on it
    /// once the batch's records are routed.
    poll: Poll,
    /// The parts other workers parsed.
    from_others: Receiver<Finished>,
    /// The parts parsed so far, by index, as they come back from the other
    /// workers or are parsed here (some ahead, while this worker waited
    /// for another's part of an older batch).
    parts: Vec<Option<Parsed>>,
}

impl ParallelDecode {
    /// The side that reads of worker `reader` of `workers`, whose parts
    /// are parsed with `parser` and dealt out by `routing`.
    pub fn new(
        offers: DecodeOffers,
        parser: Arc<RecordParser>,
        routing: Routing,
        reader: usize,
        workers: usize,
    ) -> Self {
        Self {
            offers,
            parser,
            dealing: Arc::new(Dealing {
                routing,
                reader,
                workers,
            }),
            in_flight: VecDeque::with_capacity(MAX_IN_FLIGHT),
            reusable: Vec::new(),
            waited: Duration::ZERO,
        }
    }

    /// How long the worker waited for other workers' parts since the last
    /// call.
    pub fn take_waited(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// An empty batch to read into, in place of one handed to
    /// [`ParallelDecode::submit`].
    pub fn empty_batch(&mut self) -> RawBatch {
        // A helper lets go of a batch a moment after its last part, or on
        // its next turn; an offer nobody took holds it until taken.
        let free = self
            .reusable
            .iter()
            .position(|batch| Arc::strong_count(batch) == 1);
        let Some(batch) = free.and_then(|i| Arc::into_inner(self.reusable.swap_remove(i))) else {
            return RawBatch::default();
        };
        let mut batch = batch.batch;
        batch.clear();
        batch
    }

    /// Offers `batch`, read by a poll that returned `poll`, to the other
    /// workers.
    pub fn submit(&mut self, batch: RawBatch, poll: Poll) {
        let batch = Arc::new(SharedBatch {
            parts: batch.parts(PART),
            batch,
            parser: self.parser.clone(),
            dealing: self.dealing.clone(),
            next: AtomicUsize::new(0),
        });
        let parts = batch.parts();
        let (done, from_others) = crossbeam_channel::bounded(parts);
        // An offer for each worker that could help, but not more than the
        // parts this one leaves (it parses at least one), while there is
        // room: a full queue means nobody is taking offers.
        for _ in 0..self.offers.helpers.min(parts.saturating_sub(1)) {
            let offer = Offer {
                batch: batch.clone(),
                done: done.clone(),
            };
            if self.offers.send.try_send(offer).is_err() {
                break;
            }
        }
        self.in_flight.push_back(InFlight {
            batch,
            poll,
            from_others,
            parts: (0..parts).map(|_| None).collect(),
        });
    }

    /// Finishes the oldest batch in flight: hands `route` each of its parts
    /// in the order read, with the part's malformed records to locate, as
    /// soon as it and those before it are parsed. While the next part is
    /// still being parsed by another worker, this one parses a part nobody
    /// claimed, of this batch or a later one, and only with none left does
    /// it wait. So the other workers parse the batch's later parts while
    /// this one routes its first. The poll that read the batch; None when
    /// no batch is in flight.
    pub fn finish_oldest(
        &mut self,
        mut route: impl FnMut(Parsed) -> Result<(), JobError>,
    ) -> Result<Option<Poll>, JobError> {
        let Some(mut flight) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        for next in 0..flight.parts.len() {
            loop {
                while let Ok(finished) = flight.from_others.try_recv() {
                    let (part, parsed) = finished.map_err(JobError::Panic)?;
                    flight.parts[part] = Some(parsed);
                }
                if let Some(parsed) = flight.parts[next].take() {
                    route(parsed)?;
                    break;
                }
                if let Some(part) = flight.batch.claim() {
                    flight.parts[part] = Some(flight.batch.parse(part));
                } else if !self.parse_ahead() {
                    let waiting = Instant::now();
                    let finished = flight.from_others.recv();
                    self.waited += waiting.elapsed();
                    let (part, parsed) = finished
                        .map_err(|_| stopped_parsing())?
                        .map_err(JobError::Panic)?;
                    flight.parts[part] = Some(parsed);
                }
            }
        }
        if self.reusable.len() == MAX_REUSABLE {
            self.reusable.remove(0);
        }
        self.reusable.push(flight.batch);
        Ok(Some(flight.poll))
    }

    /// Parses one unclaimed part of the oldest batch in flight that has
    /// one, and keeps it with the batch; whether there was one.
    fn parse_ahead(&mut self) -> bool {
        for flight in &mut self.in_flight {
            if let Some(part) = flight.batch.claim() {
                flight.parts[part] = Some(flight.batch.parse(part));
                return true;
            }
        }
        false
    }
}

/// A helper's channel closed with a part of the batch still out.
fn stopped_parsing() -> JobError {
    JobError::Panic("a worker stopped parsing a batch".into())
}

/// The side of a worker that helps: the offer it is parsing parts of.
pub(crate) struct DecodeHelper {
    /// Held whole, its sender included: a channel whose senders are all
    /// gone (no worker offers: every one parses with lookups, or the
    /// readers ended) is always ready, and a worker waiting on it would
    /// spin instead of waiting.
    offers: DecodeOffers,
    current: Option<Offer>,
}

impl DecodeHelper {
    pub fn new(offers: &DecodeOffers) -> Self {
        Self {
            offers: offers.clone(),
            current: None,
        }
    }

    /// Where offers arrive, for a worker waiting for work of any kind.
    pub fn offers(&self) -> &Receiver<Offer> {
        &self.offers.take
    }

    /// Takes `offer` up: the next [`DecodeHelper::help`] parses it.
    pub fn take(&mut self, offer: Offer) {
        self.current = Some(offer);
    }

    /// Parses one part of an offered batch, a short turn between the
    /// worker's own work. Whether there was a part to parse.
    pub fn help(&mut self) -> bool {
        loop {
            let offer = match self.current.take() {
                Some(offer) => offer,
                None => match self.offers.take.try_recv() {
                    Ok(offer) => offer,
                    Err(_) => return false,
                },
            };
            let Some(part) = offer.batch.claim() else {
                // Finished by others: the next offer.
                continue;
            };
            match catch_unwind(AssertUnwindSafe(|| offer.batch.parse(part))) {
                Ok(parsed) => {
                    let _ = offer.done.send(Ok((part, parsed)));
                }
                Err(panic) => {
                    // The worker waiting for the part fails with the
                    // panic's message, as this one does.
                    let _ = offer.done.send(Err(panic_message(&*panic)));
                    resume_unwind(panic);
                }
            }
            self.current = Some(offer);
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{GeneratorSplit, SourceItem};
    use crate::spec::JobSpec;

    /// `records` visit lines, every 50th broken.
    fn read(records: usize) -> RawBatch {
        let mut batch = RawBatch::default();
        for i in 0..records {
            let line = match i % 50 {
                7 => format!("{{\"visit_id\": \"v{i}\", broken"),
                _ => format!(
                    "{{\"visit_id\": \"v{}\", \"event_time\": {}}}",
                    i % 9,
                    1000 * i
                ),
            };
            batch.push_record(0, Some(line.as_bytes()), None, i as u64);
        }
        batch
    }

    fn parser() -> Arc<RecordParser> {
        let spec = JobSpec::from_yaml(
            "name: t\nsource: {file: {path: in.jsonl}}\neventTime: {field: event_time}\n\
             key: visit_id\nwindow: {tumbling: {size: 1m}}\nsink: {discard: {}}\n\
             aggregates: [{name: visits, function: count}]\n",
        )
        .unwrap();
        Arc::new(RecordParser::new(&spec))
    }

    /// Two workers' key groups, for the reader's parts to be dealt out
    /// by.
    fn by_key() -> Routing {
        Routing::ByKey {
            owners: crate::engine::build::key_group_owners(128, 2).into(),
            max_parallelism: 128,
        }
    }

    /// A reader, worker 0 of 2.
    fn reader(offers: &DecodeOffers, parser: &Arc<RecordParser>) -> ParallelDecode {
        ParallelDecode::new(offers.clone(), parser.clone(), by_key(), 0, 2)
    }

    /// The parts' items in the order read, after checking that each event
    /// was dealt to the worker that owns its key.
    fn joined(parts: Vec<DealtPart>) -> Vec<SourceItem> {
        let routing = by_key();
        let mut dealt = [0, 0];
        for part in &parts {
            for (worker, events) in part.events.iter().enumerate() {
                for event in events {
                    assert_eq!(routing.owner(event, 0), worker, "{event:?}");
                    dealt[worker] += 1;
                }
            }
        }
        assert!(dealt[0] > 0 && dealt[1] > 0, "dealt {dealt:?}");
        parts.into_iter().flat_map(DealtPart::in_order).collect()
    }

    fn split() -> GeneratorSplit {
        let spec = serde_yaml::from_str("{keys: 5}").unwrap();
        GeneratorSplit::new(&spec, 0, 0, 1)
    }

    /// The oldest batch's parts in the order handed on, their malformed
    /// records located, and its poll.
    fn finish(reader: &mut ParallelDecode) -> Option<(Vec<DealtPart>, Poll)> {
        let mut parts = Vec::new();
        let poll = reader
            .finish_oldest(|parsed| {
                parts.push(parsed.located(&split()));
                Ok(())
            })
            .unwrap()?;
        Some((parts, poll))
    }

    /// A helper's part `part` of `offer`, parsed and sent back to its reader.
    fn hand_back(offer: &Offer, part: usize) {
        offer
            .done
            .send(Ok((part, offer.batch.parse(part))))
            .unwrap();
    }

    /// What one thread makes of `records` records, parsing them in one go.
    fn parsed_whole(records: usize, parser: &RecordParser) -> String {
        let (mut items, mut unlocated) = (Vec::new(), Vec::new());
        read(records).parse_part(0..records, parser, &mut items, &mut unlocated);
        for malformed in &unlocated {
            malformed.locate(&split(), &mut items);
        }
        format!("{items:?}")
    }

    #[test]
    fn parts_a_helper_parsed_are_joined_in_the_order_read() {
        let (parser, offers) = (parser(), DecodeOffers::between(2).unwrap());
        let mut reader = reader(&offers, &parser);
        let mut helper = DecodeHelper::new(&offers);
        let records = 3 * PART + 5;
        reader.submit(read(records), Poll::Ready);
        // The helper takes the first two parts; the reader parses the rest.
        assert!(helper.help());
        assert!(helper.help());
        let (parts, poll) = finish(&mut reader).unwrap();
        assert_eq!(poll, Poll::Ready);
        assert_eq!(parts.len(), 4);
        let out = joined(parts);
        assert_eq!(out.len(), records);
        assert_eq!(format!("{out:?}"), parsed_whole(records, &parser));
        assert!(!helper.help(), "every part is parsed");
        // The helper has let go of the batch: its buffers are read into
        // next.
        assert!(reader.empty_batch().is_empty());
        assert!(reader.reusable.is_empty());
    }

    #[test]
    fn a_reader_waiting_for_a_helpers_part_parses_the_next_batch_meanwhile() {
        let (parser, offers) = (parser(), DecodeOffers::between(2).unwrap());
        let mut reader = reader(&offers, &parser);
        let records = 3 * PART;
        reader.submit(read(records), Poll::Ready);
        reader.submit(read(records), Poll::Pending);
        let next = reader.in_flight[1].batch.clone();
        // A helper claims the first batch's first part and holds on to it.
        let offer = offers.take.try_recv().unwrap();
        let held = offer.batch.claim().unwrap();
        let finishing = std::thread::spawn(move || {
            let first = finish(&mut reader).unwrap();
            (reader, first)
        });
        // The reader parses the first batch's other parts, then claims
        // every part of the next batch, and finds none left to claim,
        // before it waits for the part held.
        let deadline = Instant::now() + Duration::from_secs(10);
        while next.next.load(Ordering::Relaxed) <= next.parts() {
            assert!(
                Instant::now() < deadline,
                "the reader did not parse the next batch while it waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            !finishing.is_finished(),
            "the reader waits for the part held"
        );
        hand_back(&offer, held);
        let (mut reader, (first, poll)) = finishing.join().unwrap();
        assert_eq!(poll, Poll::Ready);
        let first = joined(first);
        assert_eq!(format!("{first:?}"), parsed_whole(records, &parser));
        // The next batch is finished from the parts parsed ahead, in order.
        let (parts, poll) = finish(&mut reader).unwrap();
        assert_eq!(poll, Poll::Pending);
        assert_eq!(parts.len(), 3);
        let second = joined(parts);
        assert_eq!(format!("{second:?}"), parsed_whole(records, &parser));
    }

    #[test]
    fn a_reader_hands_on_the_first_parts_while_a_helper_parses_a_later_one() {
        let (parser, offers) = (parser(), DecodeOffers::between(2).unwrap());
        let mut reader = reader(&offers, &parser);
        let records = 4 * PART;
        reader.submit(read(records), Poll::Ready);
        // A helper parses the first part, and holds on to the second.
        let offer = offers.take.try_recv().unwrap();
        let first = offer.batch.claim().unwrap();
        hand_back(&offer, first);
        let held = offer.batch.claim().unwrap();
        let (handed_on, parts_handed_on) = crossbeam_channel::unbounded();
        let finishing = std::thread::spawn(move || {
            let mut parts = Vec::new();
            let poll = reader.finish_oldest(|parsed| {
                let _ = handed_on.send(parts.len());
                parts.push(parsed.located(&split()));
                Ok(())
            });
            (parts, poll.unwrap())
        });
        // The first part goes on to be routed while the second is parsed;
        // the parts after it wait for it.
        let wait = Duration::from_secs(10);
        assert_eq!(
            parts_handed_on.recv_timeout(wait),
            Ok(0),
            "the first part waited for the second"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(parts_handed_on.try_recv().is_err(), "a part went on early");
        hand_back(&offer, held);
        let (parts, poll) = finishing.join().unwrap();
        assert_eq!(poll, Some(Poll::Ready));
        assert_eq!(parts.len(), 4);
        let out = joined(parts);
        assert_eq!(format!("{out:?}"), parsed_whole(records, &parser));
    }

    #[test]
    fn a_helper_with_no_reader_left_waits_for_offers_instead_of_spinning() {
        let offers = DecodeOffers::between(2).unwrap();
        let helper = DecodeHelper::new(&offers);
        // No worker offers (every one parses with lookups), or the readers
        // are gone.
        drop(offers);
        let wait = Duration::from_millis(20);
        assert_eq!(
            helper.offers().recv_timeout(wait).err(),
            Some(crossbeam_channel::RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn a_reader_nobody_helps_parses_every_part_itself() {
        let (parser, offers) = (parser(), DecodeOffers::between(2).unwrap());
        let mut reader = reader(&offers, &parser);
        let records = 2 * PART;
        let mut out = Vec::new();
        for _ in 0..10 {
            reader.submit(read(records), Poll::Pending);
            let (parts, poll) = finish(&mut reader).unwrap();
            assert_eq!(poll, Poll::Pending);
            out.extend(joined(parts));
        }
        assert_eq!(out.len(), 10 * records);
        assert_eq!(
            format!("{:?}", &out[..records]),
            parsed_whole(records, &parser)
        );
        // Offers nobody took are bounded; the batches they hold go with
        // them once taken, and the reader keeps only a few for reuse.
        assert_eq!(offers.take.len(), 2 * MAX_IN_FLIGHT);
        assert!(reader.reusable.len() <= MAX_REUSABLE);
        assert!(finish(&mut reader).is_none());
    }
}

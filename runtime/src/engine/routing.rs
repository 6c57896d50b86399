//! Which worker each event goes to. Workers route the events they decode
//! themselves; a part another worker parses for the reader is dealt out by
//! that worker (`parallel_decode`), so both ask the same [`Routing`].

use std::sync::Arc;

use crate::connectors::{PartItems, SourceItem};
use crate::record::Event;

/// Where a job's events go.
#[derive(Clone, Debug)]
pub(crate) enum Routing {
    /// Each event stays with the worker that read it: a select job (no
    /// keyed state, so no exchange), or a job of one worker.
    Here,
    /// Each event goes to the worker that owns its key's key group.
    ByKey {
        /// Worker that owns each key group.
        owners: Arc<[u16]>,
        max_parallelism: u32,
    },
}

impl Routing {
    /// The worker that processes `event`, read by worker `reader`.
    pub fn owner(&self, event: &Event, reader: usize) -> usize {
        match self {
            Routing::Here => reader,
            Routing::ByKey {
                owners,
                max_parallelism,
            } => owners[event.key.key_group(*max_parallelism) as usize] as usize,
        }
    }
}

/// A part of a batch parsed and dealt out by owner: each worker's events
/// apart, so that the worker that read the batch hands each peer its
/// share whole instead of moving every event again.
#[derive(Debug)]
pub(crate) struct DealtPart {
    /// Every item of the part in the order read: what the reader needs to
    /// keep the split's watermark in step with the events.
    pub steps: Vec<Step>,
    /// Each worker's events, by worker index, each in the order read.
    pub events: Vec<Vec<Event>>,
    /// The malformed records and partition ends, in the order read.
    pub others: Vec<SourceItem>,
}

/// One item of a [`DealtPart`], in the order read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// The next of `events[owner]`, read from `partition` with event time
    /// `ts`.
    Record { partition: u32, owner: u16, ts: i64 },
    /// The next of `others`.
    Other,
}

impl DealtPart {
    /// An empty part for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            steps: Vec::new(),
            events: (0..workers).map(|_| Vec::new()).collect(),
            others: Vec::new(),
        }
    }
}

/// Deals the items of a part that worker `reader` read into `part`.
pub(crate) struct Dealer<'a> {
    pub part: &'a mut DealtPart,
    pub routing: &'a Routing,
    pub reader: usize,
}

impl PartItems for Dealer<'_> {
    fn reserve(&mut self, items: usize) {
        self.part.steps.reserve(items);
        // Each worker's share, with room for keys that are not spread
        // evenly: a list that grows moves its events again.
        let workers = self.part.events.len();
        let share = items.div_ceil(workers) + items / (2 * workers) + 4;
        for events in &mut self.part.events {
            events.reserve(share);
        }
    }

    fn record(&mut self, partition: usize, event: Event) {
        let owner = self.routing.owner(&event, self.reader);
        self.part.steps.push(Step::Record {
            partition: partition as u32,
            owner: owner as u16,
            ts: event.ts,
        });
        self.part.events[owner].push(event);
    }

    fn other(&mut self, item: SourceItem) -> usize {
        self.part.steps.push(Step::Other);
        self.part.others.push(item);
        self.part.others.len() - 1
    }
}

#[cfg(test)]
impl DealtPart {
    /// The part's items as one list in the order read, as the split read
    /// them.
    pub fn in_order(self) -> Vec<SourceItem> {
        let mut events: Vec<_> = self.events.into_iter().map(Vec::into_iter).collect();
        let mut others = self.others.into_iter();
        self.steps
            .into_iter()
            .filter_map(|step| match step {
                Step::Record {
                    partition, owner, ..
                } => events[owner as usize]
                    .next()
                    .map(|event| SourceItem::Record {
                        partition: partition as usize,
                        event,
                    }),
                Step::Other => others.next(),
            })
            .collect()
    }
}

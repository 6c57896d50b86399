//! The keyed window operator: assigns elements to windows, keeps their
//! accumulators in keyed state, and fires them as the watermark advances.
//!
//! Semantics (Flink's, with two deliberate refinements noted below):
//! - A window `[start, end)` fires its final result when the watermark
//!   reaches `end - 1`.
//! - An element is late for a window when `end - 1 + allowedLateness <=
//!   watermark`; it is dropped for that window. When it is late for every
//!   window it belongs to, it goes to the late side output.
//! - An element that lands in a window that has already fired (but is within
//!   the allowed lateness) re-fires that window at once (`partial: false`).
//! - Early firings emit partial results. With `everyEventTime`, a window's
//!   first early point is the first multiple of the interval after its first
//!   element's time, then every interval after (Flink's
//!   ContinuousEventTimeTrigger).
//! - Refinement 1: when one watermark advance passes several early points of a
//!   window, or an early point and its end, the window emits once (the final
//!   result if the end was passed).
//! - Refinement 2: an early firing emits only when the window changed since
//!   its last result.
//!
//! Each key has at most one entry in the timer queue: the earliest time at
//! which anything can happen to it.

use std::path::Path;

use hashbrown::HashSet;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::timers::TimerQueue;
use super::{align_down, Aligned, WindowKind};
use crate::aggregate::{Accumulator, AggregateValue};
use crate::record::{Event, Key, KeyHashBuilder};
use crate::spec::AggregateFunction;
use crate::state::{KeyedStore, StateCheckpoint, StateError};
use crate::time::MIN_WATERMARK;

/// When partial results are emitted before a window's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyFiring {
    None,
    /// Every multiple of this many milliseconds of event time.
    EventTime(i64),
    /// When the worker's processing-time ticker calls `fire_processing_time`.
    ProcessingTime,
    /// Every this many elements added to a window.
    Elements(u64),
}

/// One emitted window result.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub key: Key,
    pub start: i64,
    pub end: i64,
    pub values: Vec<AggregateValue>,
    pub partial: bool,
}

/// Where the operator sends what it produces.
pub trait Output {
    fn result(&mut self, result: WindowResult);
    fn late(&mut self, event: Event);
}

/// A slice of a key's elements: for aligned windows a pane of gcd(size,
/// slide); for sessions one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pane {
    start: i64,
    end: i64,
    acc: Accumulator,
    /// Sequence number and event time of the first element that arrived in
    /// this pane: a window's first element decides its first early point.
    first_seq: u64,
    first_ts: i64,
    /// Sequence number of the last element added.
    seq: u64,
}

/// What a window last emitted, for early firings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Emission {
    start: i64,
    end: i64,
    /// Key sequence number covered by the last emission.
    seq: u64,
    /// Elements in the window at the last emission.
    count: u64,
    /// Event time after which the next early point falls.
    anchor: i64,
}

/// All window state of one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    /// Bumped for every element the key accepts.
    seq: u64,
    /// Sorted by start. One pane is kept inline: the common case (a key
    /// with one open tumbling window) then needs no second memory access.
    panes: SmallVec<[Pane; 1]>,
    emissions: Vec<Emission>,
    /// The key's entry in the timer queue.
    timer: Option<i64>,
}

/// A window's content, combined from its panes.
struct Content {
    acc: Accumulator,
    seq: u64,
    first_ts: i64,
}

/// Counters the operator keeps for metrics and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorCounters {
    pub elements: u64,
    pub late: u64,
    pub results: u64,
}

/// The pane arithmetic of the last element: in-order streams hit it almost
/// always, which saves the divisions of window alignment.
#[derive(Debug, Clone, Copy)]
struct PaneCache {
    start: i64,
    end: i64,
    first_end: i64,
    last_end: i64,
}

/// How elements are assigned to windows: aligned windows by their pane
/// arithmetic, sessions by their gap.
#[derive(Debug, Clone, Copy)]
enum Assigner {
    Aligned(Aligned),
    Session { gap: i64 },
}

impl Assigner {
    /// The pane arithmetic of aligned windows; None for sessions.
    fn aligned(self) -> Option<Aligned> {
        match self {
            Assigner::Aligned(a) => Some(a),
            Assigner::Session { .. } => None,
        }
    }
}

pub struct WindowOperator {
    assigner: Assigner,
    pane_cache: PaneCache,
    lateness: i64,
    early: EarlyFiring,
    functions: Vec<AggregateFunction>,
    store: KeyedStore<KeyState>,
    timers: TimerQueue,
    watermark: i64,
    /// Keys changed since the last processing-time firing.
    dirty: HashSet<Key, KeyHashBuilder>,
    pub counters: OperatorCounters,
}

impl WindowOperator {
    pub fn new(
        kind: WindowKind,
        lateness: i64,
        early: EarlyFiring,
        functions: Vec<AggregateFunction>,
        state_dir: &Path,
        max_keys_in_memory: usize,
        max_parallelism: u32,
    ) -> Result<Self, StateError> {
        let assigner = match kind {
            WindowKind::Aligned {
                size,
                slide,
                offset,
            } => Assigner::Aligned(Aligned::new(size, slide, offset)),
            WindowKind::Session { gap } => Assigner::Session { gap },
        };
        Ok(WindowOperator {
            assigner,
            pane_cache: PaneCache {
                start: 0,
                end: 0,
                first_end: 0,
                last_end: 0,
            },
            lateness,
            early,
            functions,
            store: KeyedStore::create(state_dir, max_keys_in_memory, max_parallelism)?,
            timers: TimerQueue::default(),
            watermark: MIN_WATERMARK,
            dirty: HashSet::default(),
            counters: OperatorCounters::default(),
        })
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Keys with state (in memory or spilled).
    pub fn key_count(&self) -> u64 {
        self.store.len()
    }

    pub fn spill_count(&self) -> u64 {
        self.store.spill_count()
    }

    /// Timer entries, stale ones included.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// All keyed state, sorted by key group, for a snapshot.
    pub fn snapshot(
        &mut self,
        max_parallelism: u32,
    ) -> Result<Vec<(u16, Key, KeyState)>, StateError> {
        let mut entries = Vec::with_capacity(self.store.len() as usize);
        self.store.for_each(|key, state| {
            entries.push((key.key_group(max_parallelism), key.clone(), state.clone()));
        })?;
        entries.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(entries)
    }

    /// Starts a restore from a snapshot taken at `watermark`.
    pub fn restore_watermark(&mut self, watermark: i64) {
        self.watermark = watermark;
    }

    /// Loads one key's state from a snapshot.
    pub fn restore_key(&mut self, key: Key, state: KeyState) -> Result<(), StateError> {
        if let Some(due) = state.timer {
            self.timers.push(due, key.clone());
        }
        self.store.insert(key, state)?;
        self.store.enforce_budget()
    }

    /// Takes the keyed state's part of a checkpoint; its RocksDB write and
    /// checkpoint run on the upload thread (see `KeyedStore::checkpoint`).
    pub fn checkpoint_state(&mut self) -> Result<StateCheckpoint, StateError> {
        self.store.checkpoint()
    }

    /// Keeps the in-memory state within budget; call between batches.
    pub fn maintain(&mut self) -> Result<(), StateError> {
        self.store.enforce_budget()
    }

    /// `end - 1 + lateness <= watermark`: the window is gone.
    fn cleaned(&self, end: i64, watermark: i64) -> bool {
        (end - 1).saturating_add(self.lateness) <= watermark
    }

    pub fn process(&mut self, event: Event, out: &mut impl Output) -> Result<(), StateError> {
        match self.assigner {
            Assigner::Aligned(a) => self.process_aligned(a, event, out),
            Assigner::Session { gap } => self.process_session(gap, event, out),
        }
    }

    fn pane_of(&mut self, a: Aligned, ts: i64) -> PaneCache {
        let c = self.pane_cache;
        if ts >= c.start && ts < c.end {
            return c;
        }
        let start = a.pane_start(ts);
        self.pane_cache = PaneCache {
            start,
            end: start + a.pane,
            first_end: a.first_end(start),
            last_end: a.last_end(start),
        };
        self.pane_cache
    }

    fn process_aligned(
        &mut self,
        a: Aligned,
        event: Event,
        out: &mut impl Output,
    ) -> Result<(), StateError> {
        let w = self.watermark;
        let rules = self.rules();
        let pane = self.pane_of(a, event.ts);
        if self.cleaned(pane.last_end, w) {
            self.counters.late += 1;
            out.late(event);
            return Ok(());
        }
        self.counters.elements += 1;
        let state = self.store.get_or_default(&event.key)?;
        state.seq += 1;
        let seq = state.seq;
        let pane_start = pane.start;
        // Elements mostly arrive in order: look from the back.
        let idx = match state.panes.iter().rposition(|p| p.start <= pane_start) {
            Some(i) if state.panes[i].start == pane_start => i,
            found => {
                let at = found.map_or(0, |i| i + 1);
                state.panes.insert(
                    at,
                    Pane {
                        start: pane_start,
                        end: pane_start + a.pane,
                        acc: Accumulator::new(&self.functions),
                        first_seq: seq,
                        first_ts: event.ts,
                        seq,
                    },
                );
                at
            }
        };
        let new_pane = state.panes[idx].seq == seq && state.panes[idx].first_seq == seq;
        let slot = &mut state.panes[idx];
        slot.acc.add(&event.values);
        slot.seq = seq;

        // Windows of this element that already fired re-fire now; with
        // element-count early firing, open windows may fire too.
        let counting = matches!(self.early, EarlyFiring::Elements(_));
        if pane.first_end - 1 <= w || counting {
            for (start, end) in a.windows_of(event.ts) {
                if (end - 1).saturating_add(self.lateness) <= w {
                    continue;
                }
                if end - 1 <= w {
                    let content =
                        aligned_content(state, start, end).expect("holds the new element");
                    self.counters.results += 1;
                    emit(out, &event.key, start, end, &content, false);
                } else if let EarlyFiring::Elements(n) = self.early {
                    let content =
                        aligned_content(state, start, end).expect("holds the new element");
                    if content.acc.count() - emission_count(state, start, end) >= n {
                        record_emission(state, start, end, &content, w);
                        self.counters.results += 1;
                        emit(out, &event.key, start, end, &content, true);
                    }
                }
            }
        }
        if new_pane {
            let due = next_due(rules, state, w);
            schedule(&mut self.timers, state, &event.key, due);
        }
        if self.early == EarlyFiring::ProcessingTime {
            self.dirty.insert(event.key);
        }
        Ok(())
    }

    fn process_session(
        &mut self,
        gap: i64,
        event: Event,
        out: &mut impl Output,
    ) -> Result<(), StateError> {
        let w = self.watermark;
        let rules = self.rules();
        let (mut start, mut end) = (event.ts, event.ts.saturating_add(gap));
        let state = self.store.get_or_default(&event.key)?;
        // Sessions that touch the new one merge with it (Flink's
        // TimeWindow.intersects is inclusive at both ends).
        let touching: SmallVec<[usize; 2]> = state
            .panes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.start <= end && p.end >= start)
            .map(|(i, _)| i)
            .collect();
        for &i in &touching {
            start = start.min(state.panes[i].start);
            end = end.max(state.panes[i].end);
        }
        if (end - 1).saturating_add(self.lateness) <= w {
            let empty = state.panes.is_empty();
            if empty {
                self.store.remove(&event.key)?;
            }
            self.counters.late += 1;
            out.late(event);
            return Ok(());
        }
        self.counters.elements += 1;
        state.seq += 1;
        let seq = state.seq;
        let at = if let [only] = touching[..] {
            // The common case: the element extends one session in place.
            let pane = &mut state.panes[only];
            if pane.start != start || pane.end != end {
                // A grown session is a new window for early firings.
                let (old_start, old_end) = (pane.start, pane.end);
                state
                    .emissions
                    .retain(|e| !(e.start == old_start && e.end == old_end));
            }
            let pane = &mut state.panes[only];
            pane.start = start;
            pane.end = end;
            pane.acc.add(&event.values);
            pane.seq = seq;
            only
        } else {
            let mut merged = Pane {
                start,
                end,
                acc: Accumulator::new(&self.functions),
                first_seq: seq,
                first_ts: event.ts,
                seq,
            };
            for &i in touching.iter().rev() {
                let old = state.panes.remove(i);
                merged.acc.merge(&old.acc);
                if old.first_seq < merged.first_seq {
                    merged.first_seq = old.first_seq;
                    merged.first_ts = old.first_ts;
                }
                state
                    .emissions
                    .retain(|e| !(e.start == old.start && e.end == old.end));
            }
            merged.acc.add(&event.values);
            let at = state.panes.partition_point(|p| p.start < start);
            state.panes.insert(at, merged);
            at
        };

        let content = session_content(&state.panes[at]);
        if end - 1 <= w {
            self.counters.results += 1;
            emit(out, &event.key, start, end, &content, false);
        } else if let EarlyFiring::Elements(n) = self.early {
            if content.acc.count() - emission_count(state, start, end) >= n {
                record_emission(state, start, end, &content, w);
                self.counters.results += 1;
                emit(out, &event.key, start, end, &content, true);
            }
        }
        let due = next_due(rules, state, w);
        schedule(&mut self.timers, state, &event.key, due);
        if self.early == EarlyFiring::ProcessingTime {
            self.dirty.insert(event.key);
        }
        Ok(())
    }

    /// Advances the watermark, firing and cleaning up what it passes.
    pub fn advance_watermark(
        &mut self,
        watermark: i64,
        out: &mut impl Output,
    ) -> Result<(), StateError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        let prev = self.watermark;
        self.watermark = watermark;
        // Firing may register timers that are already due (an early point
        // behind the watermark): the loop picks those up too.
        while let Some((due, keys)) = self.timers.pop_due(watermark) {
            for key in keys {
                self.on_timer(key, due, prev, watermark, out)?;
            }
        }
        Ok(())
    }

    /// Emits partial results for every window changed since its last result.
    pub fn fire_processing_time(&mut self, out: &mut impl Output) -> Result<(), StateError> {
        let w = self.watermark;
        let keys: Vec<Key> = self.dirty.drain().collect();
        for key in keys {
            let Some(state) = self.store.get_mut(&key)? else {
                continue;
            };
            for (start, end, content) in open_windows(self.assigner.aligned(), state, w) {
                if content.seq > emission_seq(state, start, end) {
                    record_emission(state, start, end, &content, w);
                    self.counters.results += 1;
                    emit(out, &key, start, end, &content, true);
                }
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        key: Key,
        due: i64,
        prev: i64,
        w: i64,
        out: &mut impl Output,
    ) -> Result<(), StateError> {
        let rules = self.rules();
        let Rules {
            aligned,
            lateness,
            early,
        } = rules;
        let Some(state) = self.store.get_mut(&key)? else {
            return Ok(());
        };
        if state.timer != Some(due) {
            return Ok(()); // stale: the timer was moved earlier
        }
        state.timer = None;

        // Final results for windows whose end the watermark just passed.
        for (start, end, content) in windows_ending_between(aligned, state, prev, w) {
            self.counters.results += 1;
            emit(out, &key, start, end, &content, false);
        }
        // Early results for windows still open.
        if let EarlyFiring::EventTime(interval) = early {
            for (start, end, content) in open_windows(aligned, state, w) {
                let anchor = emission_anchor(state, start, end).unwrap_or(content.first_ts);
                if align_down(anchor, interval) + interval > w {
                    continue;
                }
                if content.seq > emission_seq(state, start, end) {
                    self.counters.results += 1;
                    emit(out, &key, start, end, &content, true);
                }
                record_emission(state, start, end, &content, w);
            }
        }
        // Clean up what no late element can reach any more.
        state.emissions.retain(|e| e.end - 1 > w);
        match aligned {
            Some(a) => state
                .panes
                .retain(|p| (a.last_end(p.start) - 1).saturating_add(lateness) > w),
            None => state
                .panes
                .retain(|p| (p.end - 1).saturating_add(lateness) > w),
        }
        if state.panes.is_empty() {
            self.store.remove(&key)?;
            return Ok(());
        }
        let due = next_due(rules, state, w);
        schedule(&mut self.timers, state, &key, due);
        Ok(())
    }

    fn rules(&self) -> Rules {
        Rules {
            aligned: self.assigner.aligned(),
            lateness: self.lateness,
            early: self.early,
        }
    }
}

/// The operator's configuration, copied out so that functions can take it
/// while a key's state is borrowed from the store.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// `None` for session windows.
    aligned: Option<Aligned>,
    lateness: i64,
    early: EarlyFiring,
}

/// Registers the key's timer at `due`. A timer is only ever moved earlier:
/// one that fires too early finds nothing due and registers again (sessions
/// push their end with every element, and moving the timer each time would
/// cost a heap operation per element).
fn schedule(timers: &mut TimerQueue, state: &mut KeyState, key: &Key, due: i64) {
    if state.timer.is_some_and(|t| t <= due) {
        return;
    }
    state.timer = Some(due);
    timers.push(due, key.clone());
}

/// The earliest time anything can happen to the key: a window's end, an
/// early point, or a clean-up.
fn next_due(rules: Rules, state: &KeyState, w: i64) -> i64 {
    let Rules {
        aligned,
        lateness,
        early,
    } = rules;
    let mut due = i64::MAX;
    match aligned {
        Some(a) => {
            // Panes are sorted, so the first pane with an open window gives
            // the earliest final firing, and the first pane the earliest
            // clean-up.
            if let Some(p) = state.panes.first() {
                due = due.min((a.last_end(p.start) - 1).saturating_add(lateness));
            }
            if let Some(p) = state.panes.iter().find(|p| a.last_end(p.start) - 1 > w) {
                due = due.min(a.first_end(p.start).max(a.end_after(w.saturating_add(1))) - 1);
            }
        }
        None => {
            for p in &state.panes {
                if p.end - 1 > w {
                    due = due.min(p.end - 1);
                }
                due = due.min((p.end - 1).saturating_add(lateness));
            }
        }
    }
    if let EarlyFiring::EventTime(interval) = early {
        for (start, end, content) in open_windows(aligned, state, w) {
            let anchor = emission_anchor(state, start, end).unwrap_or(content.first_ts);
            due = due.min(align_down(anchor, interval) + interval);
        }
    }
    due
}

fn emit(out: &mut impl Output, key: &Key, start: i64, end: i64, content: &Content, partial: bool) {
    out.result(WindowResult {
        key: key.clone(),
        start,
        end,
        values: content.acc.results(),
        partial,
    });
}

/// Combines the panes of aligned window `[start, end)`; `None` if it has none.
fn aligned_content(state: &KeyState, start: i64, end: i64) -> Option<Content> {
    let from = state.panes.partition_point(|p| p.start < start);
    let mut content: Option<(Content, u64)> = None;
    for p in state.panes[from..].iter().take_while(|p| p.start < end) {
        match &mut content {
            None => {
                content = Some((
                    Content {
                        acc: p.acc.clone(),
                        seq: p.seq,
                        first_ts: p.first_ts,
                    },
                    p.first_seq,
                ))
            }
            Some((c, first_seq)) => {
                c.acc.merge(&p.acc);
                c.seq = c.seq.max(p.seq);
                if p.first_seq < *first_seq {
                    *first_seq = p.first_seq;
                    c.first_ts = p.first_ts;
                }
            }
        }
    }
    content.map(|(c, _)| c)
}

fn session_content(p: &Pane) -> Content {
    Content {
        acc: p.acc.clone(),
        seq: p.seq,
        first_ts: p.first_ts,
    }
}

/// Windows with `after < end - 1 <= up_to`, with their content: those the
/// watermark passed on its way from `after` to `up_to`, or (with `up_to =
/// i64::MAX`) those still open at `after`.
fn windows_ending_between(
    aligned: Option<Aligned>,
    state: &KeyState,
    after: i64,
    up_to: i64,
) -> Vec<(i64, i64, Content)> {
    let mut found = Vec::new();
    match aligned {
        Some(a) => {
            let (Some(first), Some(last)) = (state.panes.first(), state.panes.last()) else {
                return found;
            };
            let mut end = a
                .end_after(after.saturating_add(1))
                .max(a.first_end(first.start));
            let last_end = a.last_end(last.start);
            while end <= last_end && end - 1 <= up_to {
                match aligned_content(state, end - a.size, end) {
                    Some(content) => {
                        found.push((end - a.size, end, content));
                        end += a.slide;
                    }
                    // No pane in this window: the next window with content
                    // is the first one holding the next pane. Jump there
                    // instead of stepping across the gap a slide at a time
                    // (a key's panes may be years apart).
                    None => {
                        let next = state.panes.partition_point(|p| p.start < end);
                        let Some(pane) = state.panes.get(next) else {
                            break;
                        };
                        end = (end + a.slide).max(a.first_end(pane.start));
                    }
                }
            }
        }
        None => {
            for p in &state.panes {
                if p.end - 1 > after && p.end - 1 <= up_to {
                    found.push((p.start, p.end, session_content(p)));
                }
            }
        }
    }
    found
}

/// Windows with `end - 1 > w` that have content.
fn open_windows(aligned: Option<Aligned>, state: &KeyState, w: i64) -> Vec<(i64, i64, Content)> {
    windows_ending_between(aligned, state, w, i64::MAX)
}

fn find_emission(state: &KeyState, start: i64, end: i64) -> Option<&Emission> {
    state
        .emissions
        .iter()
        .find(|e| e.start == start && e.end == end)
}

fn emission_seq(state: &KeyState, start: i64, end: i64) -> u64 {
    find_emission(state, start, end).map_or(0, |e| e.seq)
}

fn emission_count(state: &KeyState, start: i64, end: i64) -> u64 {
    find_emission(state, start, end).map_or(0, |e| e.count)
}

fn emission_anchor(state: &KeyState, start: i64, end: i64) -> Option<i64> {
    find_emission(state, start, end).map(|e| e.anchor)
}

fn record_emission(state: &mut KeyState, start: i64, end: i64, content: &Content, anchor: i64) {
    let record = Emission {
        start,
        end,
        seq: content.seq,
        count: content.acc.count(),
        anchor,
    };
    match state
        .emissions
        .iter_mut()
        .find(|e| e.start == start && e.end == end)
    {
        Some(e) => *e = record,
        None => state.emissions.push(record),
    }
}

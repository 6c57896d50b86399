//! The window operator against a small, obviously-correct model.
//!
//! The model keeps every accepted element in a list and recomputes each
//! window's content from scratch, with no panes, timers or key state; it is
//! the semantics in `window/operator.rs`'s module comment, written down
//! directly. Random out-of-order streams with random watermarks run through
//! both, and every step's output must agree: final and partial results,
//! late elements, for tumbling, sliding and session windows, with allowed
//! lateness and each kind of early firing, with state in memory or spilled
//! to RocksDB after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;
use smallvec::smallvec;
use streamjob_runtime::aggregate::AggregateValue;
use streamjob_runtime::record::{Event, FieldValue, Key, Num};
use streamjob_runtime::spec::AggregateFunction;
use streamjob_runtime::time::MAX_WATERMARK;
use streamjob_runtime::window::{
    align_down, EarlyFiring, Output, WindowKind, WindowOperator, WindowResult,
};

#[derive(Debug, Clone)]
enum Input {
    Element {
        key: i64,
        ts: i64,
        value: i64,
    },
    Watermark(i64),
    /// A processing-time tick (only meaningful with processing-time firing).
    Tick,
}

/// What one input produced, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Emitted {
    Result {
        key: i64,
        start: i64,
        end: i64,
        count: u64,
        sum: i64,
        max: i64,
        partial: bool,
    },
    Late {
        key: i64,
        ts: i64,
    },
}

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone)]
struct Elem {
    ts: i64,
    value: i64,
    seq: u64,
}

#[derive(Debug, Clone, Default)]
struct Emission {
    seq: u64,
    count: u64,
    anchor: Option<i64>,
}

struct Model {
    kind: WindowKind,
    lateness: i64,
    early: EarlyFiring,
    watermark: i64,
    seq: u64,
    /// Aligned windows: every accepted element of each key.
    elements: BTreeMap<i64, Vec<Elem>>,
    /// Sessions: each key's live sessions with their elements.
    sessions: BTreeMap<i64, Vec<(i64, i64, Vec<Elem>)>>,
    emissions: BTreeMap<(i64, i64, i64), Emission>,
}

fn result_of(key: i64, start: i64, end: i64, elems: &[&Elem], partial: bool) -> Emitted {
    Emitted::Result {
        key,
        start,
        end,
        count: elems.len() as u64,
        sum: elems.iter().map(|e| e.value).sum(),
        max: elems.iter().map(|e| e.value).max().unwrap_or(i64::MIN),
        partial,
    }
}

impl Model {
    fn new(kind: WindowKind, lateness: i64, early: EarlyFiring) -> Self {
        Model {
            kind,
            lateness,
            early,
            watermark: i64::MIN,
            seq: 0,
            elements: BTreeMap::new(),
            sessions: BTreeMap::new(),
            emissions: BTreeMap::new(),
        }
    }

    fn gone(&self, end: i64, w: i64) -> bool {
        (end - 1).saturating_add(self.lateness) <= w
    }

    /// Every aligned window holding `ts`, by brute force.
    fn windows_of(&self, ts: i64) -> Vec<(i64, i64)> {
        let WindowKind::Aligned {
            size,
            slide,
            offset,
        } = self.kind
        else {
            unreachable!()
        };
        (ts - size - slide..=ts + slide)
            .filter(|s| (s - offset).rem_euclid(slide) == 0 && *s <= ts && ts < s + size)
            .map(|s| (s, s + size))
            .collect()
    }

    fn content(&self, key: i64, start: i64, end: i64) -> Vec<&Elem> {
        match self.kind {
            WindowKind::Aligned { .. } => self
                .elements
                .get(&key)
                .map(|v| v.iter().filter(|e| e.ts >= start && e.ts < end).collect())
                .unwrap_or_default(),
            WindowKind::Session { .. } => self
                .sessions
                .get(&key)
                .and_then(|s| s.iter().find(|s| s.0 == start && s.1 == end))
                .map(|s| s.2.iter().collect())
                .unwrap_or_default(),
        }
    }

    /// All windows of `key` that have content.
    fn windows_with_content(&self, key: i64) -> Vec<(i64, i64)> {
        match self.kind {
            WindowKind::Aligned { .. } => {
                let mut all: Vec<(i64, i64)> = self
                    .elements
                    .get(&key)
                    .map(|v| v.iter().flat_map(|e| self.windows_of(e.ts)).collect())
                    .unwrap_or_default();
                all.sort();
                all.dedup();
                all
            }
            WindowKind::Session { .. } => self
                .sessions
                .get(&key)
                .map(|s| s.iter().map(|s| (s.0, s.1)).collect())
                .unwrap_or_default(),
        }
    }

    fn maybe_count_fire(&mut self, key: i64, start: i64, end: i64, out: &mut Vec<Emitted>) {
        if let EarlyFiring::Elements(n) = self.early {
            let content = self.content(key, start, end);
            let last = self
                .emissions
                .get(&(key, start, end))
                .map_or(0, |e| e.count);
            if content.len() as u64 - last >= n {
                let seq = content.iter().map(|e| e.seq).max().unwrap_or(0);
                let count = content.len() as u64;
                out.push(result_of(key, start, end, &content, true));
                self.emissions.insert(
                    (key, start, end),
                    Emission {
                        seq,
                        count,
                        anchor: Some(self.watermark),
                    },
                );
            }
        }
    }

    fn element(&mut self, key: i64, ts: i64, value: i64, out: &mut Vec<Emitted>) {
        let w = self.watermark;
        match self.kind {
            WindowKind::Aligned { .. } => {
                let live: Vec<(i64, i64)> = self
                    .windows_of(ts)
                    .into_iter()
                    .filter(|(_, e)| !self.gone(*e, w))
                    .collect();
                if live.is_empty() {
                    out.push(Emitted::Late { key, ts });
                    return;
                }
                self.seq += 1;
                let elem = Elem {
                    ts,
                    value,
                    seq: self.seq,
                };
                self.elements.entry(key).or_default().push(elem);
                for (start, end) in live {
                    if end - 1 <= w {
                        let content = self.content(key, start, end);
                        out.push(result_of(key, start, end, &content, false));
                    } else {
                        self.maybe_count_fire(key, start, end, out);
                    }
                }
            }
            WindowKind::Session { gap } => {
                let sessions = self.sessions.entry(key).or_default();
                let (mut start, mut end) = (ts, ts + gap);
                for s in sessions.iter() {
                    if s.0 <= ts + gap && s.1 >= ts {
                        start = start.min(s.0);
                        end = end.max(s.1);
                    }
                }
                if (end - 1).saturating_add(self.lateness) <= w {
                    out.push(Emitted::Late { key, ts });
                    return;
                }
                self.seq += 1;
                let mut elems = vec![Elem {
                    ts,
                    value,
                    seq: self.seq,
                }];
                let mut kept = Vec::new();
                for s in sessions.drain(..) {
                    if s.0 <= ts + gap && s.1 >= ts {
                        // A session that keeps its bounds is the same window.
                        if (s.0, s.1) != (start, end) {
                            self.emissions.remove(&(key, s.0, s.1));
                        }
                        elems.extend(s.2);
                    } else {
                        kept.push(s);
                    }
                }
                kept.push((start, end, elems));
                *sessions = kept;
                if end - 1 <= w {
                    let content = self.content(key, start, end);
                    out.push(result_of(key, start, end, &content, false));
                } else {
                    self.maybe_count_fire(key, start, end, out);
                }
            }
        }
    }

    fn advance(&mut self, to: i64, out: &mut Vec<Emitted>) {
        let prev = self.watermark;
        if to <= prev {
            return;
        }
        self.watermark = to;
        let keys: Vec<i64> = self
            .elements
            .keys()
            .chain(self.sessions.keys())
            .copied()
            .collect();
        for key in keys {
            for (start, end) in self.windows_with_content(key) {
                if self.gone(end, prev) {
                    continue;
                }
                let content = self.content(key, start, end);
                if end - 1 > prev && end - 1 <= to {
                    out.push(result_of(key, start, end, &content, false));
                } else if end - 1 > to {
                    if let EarlyFiring::EventTime(interval) = self.early {
                        let first = content.iter().min_by_key(|e| e.seq).expect("content").ts;
                        let last = self
                            .emissions
                            .get(&(key, start, end))
                            .cloned()
                            .unwrap_or_default();
                        let anchor = last.anchor.unwrap_or(first);
                        if align_down(anchor, interval) + interval <= to {
                            let seq = content.iter().map(|e| e.seq).max().unwrap_or(0);
                            if seq > last.seq {
                                out.push(result_of(key, start, end, &content, true));
                            }
                            let count = content.len() as u64;
                            self.emissions.insert(
                                (key, start, end),
                                Emission {
                                    seq,
                                    count,
                                    anchor: Some(to),
                                },
                            );
                        }
                    }
                }
            }
            if let Some(sessions) = self.sessions.get_mut(&key) {
                let lateness = self.lateness;
                sessions.retain(|s| (s.1 - 1).saturating_add(lateness) > to);
            }
        }
        self.emissions.retain(|(_, _, end), _| end - 1 > to);
    }

    fn tick(&mut self, out: &mut Vec<Emitted>) {
        let w = self.watermark;
        let keys: Vec<i64> = self
            .elements
            .keys()
            .chain(self.sessions.keys())
            .copied()
            .collect();
        for key in keys {
            for (start, end) in self.windows_with_content(key) {
                if end - 1 <= w {
                    continue;
                }
                let content = self.content(key, start, end);
                let seq = content.iter().map(|e| e.seq).max().unwrap_or(0);
                let last = self
                    .emissions
                    .get(&(key, start, end))
                    .cloned()
                    .unwrap_or_default();
                if seq > last.seq {
                    out.push(result_of(key, start, end, &content, true));
                    let count = content.len() as u64;
                    self.emissions.insert(
                        (key, start, end),
                        Emission {
                            seq,
                            count,
                            anchor: Some(w),
                        },
                    );
                }
            }
        }
    }
}

// ------------------------------------------------------- the real operator

#[derive(Default)]
struct Collect(Vec<Emitted>);

impl Output for Collect {
    fn result(&mut self, r: WindowResult) {
        let key = match r.key.parts()[0] {
            streamjob_runtime::record::KeyPart::Int(k) => k,
            _ => unreachable!(),
        };
        let num = |v: &AggregateValue| match v {
            AggregateValue::Count(n) => *n as i64,
            AggregateValue::Num(Num::Int(n)) => *n,
            other => panic!("unexpected {other:?}"),
        };
        self.0.push(Emitted::Result {
            key,
            start: r.start,
            end: r.end,
            count: num(&r.values[0]) as u64,
            sum: num(&r.values[1]),
            max: num(&r.values[2]),
            partial: r.partial,
        });
    }

    fn late(&mut self, e: Event) {
        let key = match e.key.parts()[0] {
            streamjob_runtime::record::KeyPart::Int(k) => k,
            _ => unreachable!(),
        };
        self.0.push(Emitted::Late { key, ts: e.ts });
    }
}

fn run_both(kind: WindowKind, lateness: i64, early: EarlyFiring, max_hot: usize, inputs: &[Input]) {
    let dir = tempfile::tempdir().unwrap();
    let functions = vec![
        AggregateFunction::Count,
        AggregateFunction::Sum,
        AggregateFunction::Max,
    ];
    let mut op =
        WindowOperator::new(kind, lateness, early, functions, dir.path(), max_hot, 128).unwrap();
    let mut model = Model::new(kind, lateness, early);
    for (step, input) in inputs.iter().enumerate() {
        let mut expected = Vec::new();
        let mut actual = Collect::default();
        match *input {
            Input::Element { key, ts, value } => {
                model.element(key, ts, value, &mut expected);
                let v = FieldValue::Num(Num::Int(value));
                let event = Event {
                    key: Key::int(key),
                    ts,
                    values: smallvec![FieldValue::Missing, v, v],
                    raw: None,
                };
                op.process(event, &mut actual).unwrap();
            }
            Input::Watermark(w) => {
                model.advance(w, &mut expected);
                op.advance_watermark(w, &mut actual).unwrap();
            }
            Input::Tick => {
                if early == EarlyFiring::ProcessingTime {
                    model.tick(&mut expected);
                    op.fire_processing_time(&mut actual).unwrap();
                }
            }
        }
        op.maintain().unwrap();
        let mut actual = actual.0;
        expected.sort();
        actual.sort();
        assert_eq!(
            actual, expected,
            "step {step}: {input:?}\ninputs: {inputs:?}"
        );
    }
    assert_eq!(
        op.key_count(),
        0,
        "all state is cleaned up after the final watermark"
    );
    assert_eq!(
        op.timer_count(),
        0,
        "all timers are gone after the final watermark"
    );
}

// ------------------------------------------------------------- strategies

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    // A moving clock: elements scatter around it (some late), watermarks
    // follow it with jumps.
    prop::collection::vec((0u8..10, 0i64..4, -25i64..30, 0i64..100, 0i64..25), 1..60).prop_map(
        |steps| {
            let mut clock = 0i64;
            let mut inputs = Vec::new();
            for (what, key, offset, value, jump) in steps {
                match what {
                    0..=5 => inputs.push(Input::Element {
                        key,
                        ts: clock + offset,
                        value,
                    }),
                    6..=8 => {
                        clock += jump;
                        inputs.push(Input::Watermark(clock));
                    }
                    _ => inputs.push(Input::Tick),
                }
            }
            inputs.push(Input::Tick);
            inputs.push(Input::Watermark(MAX_WATERMARK));
            inputs
        },
    )
}

fn early_firing() -> impl Strategy<Value = EarlyFiring> {
    prop_oneof![
        Just(EarlyFiring::None),
        (2i64..9).prop_map(EarlyFiring::EventTime),
        Just(EarlyFiring::ProcessingTime),
        (1u64..4).prop_map(EarlyFiring::Elements),
    ]
}

fn lateness() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), 1i64..15, Just(40i64)]
}

fn max_hot() -> impl Strategy<Value = usize> {
    // 1: every key goes through RocksDB between steps.
    prop_oneof![Just(1usize), Just(1_000_000usize)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_matches_model(size in 3i64..20, offset in 0i64..3, lateness in lateness(), early in early_firing(), hot in max_hot(), inputs in inputs()) {
        run_both(WindowKind::tumbling(size, offset % size), lateness, early, hot, &inputs);
    }

    #[test]
    fn sliding_matches_model(slide in 2i64..8, factor in 1i64..4, extra in 0i64..3, lateness in lateness(), early in early_firing(), hot in max_hot(), inputs in inputs()) {
        // Sizes that are and are not multiples of the slide.
        let size = slide * factor + extra;
        run_both(WindowKind::sliding(size, slide, 1 % slide), lateness, early, hot, &inputs);
    }

    #[test]
    fn session_matches_model(gap in 1i64..12, lateness in lateness(), early in early_firing(), hot in max_hot(), inputs in inputs()) {
        run_both(WindowKind::Session { gap }, lateness, early, hot, &inputs);
    }
}

/// A late element within the allowed lateness that bridges two sessions that
/// have both fired merges them and re-fires the merged session.
#[test]
fn late_element_bridges_two_fired_sessions() {
    let inputs = vec![
        Input::Element {
            key: 1,
            ts: 0,
            value: 1,
        },
        Input::Element {
            key: 1,
            ts: 20,
            value: 2,
        },
        Input::Watermark(100),
        Input::Element {
            key: 1,
            ts: 10,
            value: 4,
        },
        Input::Watermark(MAX_WATERMARK),
    ];
    run_both(
        WindowKind::Session { gap: 10 },
        100,
        EarlyFiring::None,
        1_000_000,
        &inputs,
    );

    // And the exact output, for the record.
    let dir = tempfile::tempdir().unwrap();
    let functions = vec![
        AggregateFunction::Count,
        AggregateFunction::Sum,
        AggregateFunction::Max,
    ];
    let mut op = WindowOperator::new(
        WindowKind::Session { gap: 10 },
        100,
        EarlyFiring::None,
        functions,
        dir.path(),
        10,
        128,
    )
    .unwrap();
    let mut out = Collect::default();
    for input in &inputs {
        match *input {
            Input::Element { key, ts, value } => {
                let v = FieldValue::Num(Num::Int(value));
                let values = smallvec![FieldValue::Missing, v, v];
                op.process(
                    Event {
                        key: Key::int(key),
                        ts,
                        values,
                        raw: None,
                    },
                    &mut out,
                )
                .unwrap();
            }
            Input::Watermark(w) => op.advance_watermark(w, &mut out).unwrap(),
            Input::Tick => {}
        }
    }
    let r = |start, end, count, sum, max| Emitted::Result {
        key: 1,
        start,
        end,
        count,
        sum,
        max,
        partial: false,
    };
    assert_eq!(
        out.0,
        vec![r(0, 10, 1, 1, 1), r(20, 30, 1, 2, 2), r(0, 30, 3, 7, 4)]
    );
}

//! Aggregate functions as mergeable accumulators, so that window panes can be
//! combined into sliding windows and sessions can merge.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smallvec::SmallVec;

use crate::record::{FieldValue, Num};
use crate::spec::AggregateFunction;

/// The running state of one aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Slot {
    Count,
    Sum(Option<Num>),
    Min(Option<Num>),
    Max(Option<Num>),
    Avg {
        sum: f64,
        n: u64,
    },
    // Boxed on purpose: a bare HashSet is 48 bytes inline in every slot of
    // every pane; boxed, the slot stays small for jobs without it.
    #[allow(clippy::box_collection)]
    Distinct(Box<HashSet<u64>>),
}

/// The state of all of a job's aggregates over some set of elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    /// Elements added (every aggregate sees the same elements).
    count: u64,
    slots: SmallVec<[Slot; 2]>,
}

/// One aggregate's result in an output record.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateValue {
    Count(u64),
    Num(Num),
    Null,
}

impl AggregateValue {
    pub fn to_json(&self) -> Value {
        match self {
            AggregateValue::Count(n) => Value::from(*n),
            AggregateValue::Num(n) => n.to_json(),
            AggregateValue::Null => Value::Null,
        }
    }
}

fn add_nums(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x
            .checked_add(y)
            .map_or(Num::Float(x as f64 + y as f64), Num::Int),
        _ => Num::Float(a.as_f64() + b.as_f64()),
    }
}

fn pick(a: Option<Num>, b: Num, want_less: bool) -> Option<Num> {
    match a {
        None => Some(b),
        Some(a) => {
            let b_wins = if want_less {
                b.as_f64() < a.as_f64()
            } else {
                b.as_f64() > a.as_f64()
            };
            Some(if b_wins { b } else { a })
        }
    }
}

impl Accumulator {
    pub fn new(functions: &[AggregateFunction]) -> Self {
        Accumulator {
            count: 0,
            slots: functions
                .iter()
                .map(|f| match f {
                    AggregateFunction::Count => Slot::Count,
                    AggregateFunction::Sum => Slot::Sum(None),
                    AggregateFunction::Min => Slot::Min(None),
                    AggregateFunction::Max => Slot::Max(None),
                    AggregateFunction::Avg => Slot::Avg { sum: 0.0, n: 0 },
                    AggregateFunction::CountDistinct => Slot::Distinct(Box::default()),
                })
                .collect(),
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds one element's values (one per aggregate, in order).
    #[inline]
    pub fn add(&mut self, values: &[FieldValue]) {
        self.count += 1;
        for (slot, value) in self.slots.iter_mut().zip(values) {
            match (slot, *value) {
                (Slot::Count, _) | (_, FieldValue::Missing) => {}
                (Slot::Sum(s), FieldValue::Num(v)) => *s = Some(s.map_or(v, |s| add_nums(s, v))),
                (Slot::Min(m), FieldValue::Num(v)) => *m = pick(*m, v, true),
                (Slot::Max(m), FieldValue::Num(v)) => *m = pick(*m, v, false),
                (Slot::Avg { sum, n }, FieldValue::Num(v)) => {
                    *sum += v.as_f64();
                    *n += 1;
                }
                (Slot::Distinct(set), FieldValue::Distinct(h)) => {
                    set.insert(h);
                }
                // A value of the wrong kind cannot reach here: the parser
                // produces the kind each function needs.
                _ => {}
            }
        }
    }

    /// Folds another accumulator over the same functions into this one.
    pub fn merge(&mut self, other: &Accumulator) {
        self.count += other.count;
        for (a, b) in self.slots.iter_mut().zip(&other.slots) {
            match (a, b) {
                (Slot::Sum(a), Slot::Sum(Some(b))) => *a = Some(a.map_or(*b, |a| add_nums(a, *b))),
                (Slot::Min(a), Slot::Min(Some(b))) => *a = pick(*a, *b, true),
                (Slot::Max(a), Slot::Max(Some(b))) => *a = pick(*a, *b, false),
                (Slot::Avg { sum, n }, Slot::Avg { sum: s2, n: n2 }) => {
                    *sum += s2;
                    *n += n2;
                }
                (Slot::Distinct(a), Slot::Distinct(b)) => a.extend(b.iter().copied()),
                _ => {}
            }
        }
    }

    /// The results, one per aggregate.
    pub fn results(&self) -> Vec<AggregateValue> {
        self.slots
            .iter()
            .map(|slot| match slot {
                Slot::Count => AggregateValue::Count(self.count),
                Slot::Sum(v) | Slot::Min(v) | Slot::Max(v) => {
                    v.map_or(AggregateValue::Null, AggregateValue::Num)
                }
                Slot::Avg { n: 0, .. } => AggregateValue::Null,
                Slot::Avg { sum, n } => AggregateValue::Num(Num::Float(sum / *n as f64)),
                Slot::Distinct(set) => AggregateValue::Count(set.len() as u64),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AggregateFunction::*;

    fn acc_of(values: &[Option<i64>]) -> Accumulator {
        let mut acc = Accumulator::new(&[Count, Sum, Min, Max, Avg, CountDistinct]);
        for v in values {
            let fv = v.map_or(FieldValue::Missing, |v| FieldValue::Num(Num::Int(v)));
            let dv = v.map_or(FieldValue::Missing, |v| FieldValue::Distinct(v as u64));
            acc.add(&[FieldValue::Missing, fv, fv, fv, fv, dv]);
        }
        acc
    }

    #[test]
    fn computes_every_function_and_ignores_missing_values() {
        let acc = acc_of(&[Some(3), Some(-1), None, Some(3), Some(10)]);
        assert_eq!(
            acc.results(),
            vec![
                AggregateValue::Count(5),
                AggregateValue::Num(Num::Int(15)),
                AggregateValue::Num(Num::Int(-1)),
                AggregateValue::Num(Num::Int(10)),
                AggregateValue::Num(Num::Float(3.75)),
                AggregateValue::Count(3),
            ]
        );
    }

    #[test]
    fn merge_equals_adding_everything_to_one() {
        let mut a = acc_of(&[Some(1), Some(7)]);
        let b = acc_of(&[Some(7), None, Some(-4)]);
        a.merge(&b);
        assert_eq!(
            a.results(),
            acc_of(&[Some(1), Some(7), Some(7), None, Some(-4)]).results()
        );
    }

    #[test]
    fn empty_inputs_give_nulls() {
        let acc = acc_of(&[None]);
        let r = acc.results();
        assert_eq!(r[0], AggregateValue::Count(1));
        assert_eq!(
            &r[1..5],
            &[
                AggregateValue::Null,
                AggregateValue::Null,
                AggregateValue::Null,
                AggregateValue::Null
            ]
        );
        assert_eq!(r[5], AggregateValue::Count(0));
    }

    #[test]
    fn a_sum_beyond_doubles_is_infinity_not_null() {
        let mut acc = Accumulator::new(&[AggregateFunction::Sum, AggregateFunction::Sum]);
        acc.add(&[
            FieldValue::Num(Num::Float(1e308)),
            FieldValue::Num(Num::Float(-1e308)),
        ]);
        acc.add(&[
            FieldValue::Num(Num::Float(1e308)),
            FieldValue::Num(Num::Float(-1e308)),
        ]);
        let values: Vec<Value> = acc.results().iter().map(AggregateValue::to_json).collect();
        assert_eq!(values, [Value::from("Infinity"), Value::from("-Infinity")]);
    }

    #[test]
    fn integer_sum_overflow_falls_back_to_float() {
        let mut acc = Accumulator::new(&[Sum]);
        acc.add(&[FieldValue::Num(Num::Int(i64::MAX))]);
        acc.add(&[FieldValue::Num(Num::Int(1))]);
        assert!(matches!(
            acc.results()[0],
            AggregateValue::Num(Num::Float(_))
        ));
    }
}

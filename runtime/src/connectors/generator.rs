//! Generated events for demos and benchmarks. Split `i` of `n` produces the
//! events with global index i, i+n, i+2n, … so that together the splits make
//! `eventsPerMs` events per millisecond of event time.

use std::time::Instant;

use smallvec::SmallVec;

use super::{Poll, SourceSplit};
use crate::record::{Event, FieldValue, Key, Num};
use crate::spec::GeneratorSpec;

pub struct GeneratorSplit {
    next: u64,
    step: u64,
    end: Option<u64>,
    keys: u64,
    events_per_ms: u64,
    start_time: i64,
    disorder: u64,
    /// Events whose hash falls below this are stamped `late_by` earlier.
    late_below: u64,
    late_by: i64,
    seed: u64,
    aggregates: usize,
    /// `next / events_per_ms` and its remainder, kept incrementally.
    ms: u64,
    ms_rem: u64,
    /// Events per second for this split, and when this run's pacing
    /// started.
    pace: Option<(f64, Instant)>,
    /// Events produced in all (kept in snapshots), and by this run (what
    /// the pacing counts: a restored split must not wait until this run's
    /// clock catches up with what earlier runs produced).
    produced: u64,
    paced: u64,
    id: String,
}

/// Decorrelates the "is it late" draw from the other draws of an event.
const LATE_SALT: u64 = 0x6c61_7465_2d64_7261;

/// A fast, well-mixed hash of an index (SplitMix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl GeneratorSplit {
    pub fn new(spec: &GeneratorSpec, aggregates: usize, index: usize, splits: usize) -> Self {
        GeneratorSplit {
            next: index as u64,
            step: splits as u64,
            end: spec.events,
            keys: spec.keys,
            events_per_ms: spec.events_per_ms as u64,
            start_time: spec.start_time,
            disorder: spec.disorder.as_millis() as u64,
            late_below: (spec.late_fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            late_by: spec.late_by.as_millis(),
            seed: spec.seed,
            aggregates,
            ms: index as u64 / spec.events_per_ms as u64,
            ms_rem: index as u64 % spec.events_per_ms as u64,
            pace: spec
                .rate
                .map(|r| (r as f64 / splits as f64, Instant::now())),
            produced: 0,
            paced: 0,
            id: format!("generator-{index}-of-{splits}"),
        }
    }

    /// The event with global index `i`, which is `ms` event-time
    /// milliseconds after the start.
    #[inline]
    fn event(&self, i: u64, ms: u64) -> Event {
        let h = mix(i ^ self.seed.rotate_left(17));
        let mut ts = self.start_time + ms as i64;
        if self.disorder > 0 {
            ts -= (mix(h) % (self.disorder + 1)) as i64;
        }
        if self.late_below > 0 && mix(h ^ LATE_SALT) < self.late_below {
            ts -= self.late_by;
        }
        let value = FieldValue::Num(Num::Int(((h >> 32) % 100) as i64));
        Event {
            // Multiply-shift maps the hash onto 0..keys without a division.
            key: Key::int(((h as u128 * self.keys as u128) >> 64) as i64),
            ts,
            values: SmallVec::from_elem(value, self.aggregates),
            raw: None,
        }
    }
}

impl SourceSplit for GeneratorSplit {
    fn partitions(&self) -> usize {
        1
    }

    /// Generated events need no decoding.
    fn poll(&mut self, out: &mut super::RawBatch, max: usize) -> std::io::Result<Poll> {
        let mut budget = max as u64;
        if let Some((rate, started)) = self.pace {
            let allowed = (started.elapsed().as_secs_f64() * rate) as u64;
            budget = budget.min(allowed.saturating_sub(self.paced));
            if budget == 0 {
                return Ok(Poll::Pending);
            }
        }
        for _ in 0..budget {
            if self.end.is_some_and(|end| self.next >= end) {
                out.push_end(0);
                return Ok(Poll::Ended);
            }
            let event = self.event(self.next, self.ms);
            out.push_event(0, event);
            self.next += self.step;
            self.ms_rem += self.step;
            while self.ms_rem >= self.events_per_ms {
                self.ms_rem -= self.events_per_ms;
                self.ms += 1;
            }
            self.produced += 1;
            self.paced += 1;
        }
        Ok(Poll::Ready)
    }

    /// Generated events are never malformed.
    fn location(&self, _: usize, at: u64) -> String {
        format!("generated event {at}")
    }

    fn partition_ids(&self) -> Vec<String> {
        vec![self.id.clone()]
    }

    fn positions(&self) -> Vec<(u64, u64)> {
        vec![(self.next, self.produced)]
    }

    fn seek(&mut self, _partition: usize, offset: u64, records: u64) -> std::io::Result<()> {
        self.next = offset;
        self.produced = records;
        self.ms = offset / self.events_per_ms;
        self.ms_rem = offset % self.events_per_ms;
        // The pacing starts over from here.
        self.paced = 0;
        if let Some((_, started)) = &mut self.pace {
            *started = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rate-limited split restored after a million events goes on at its
    /// rate at once: it used to wait until its new clock allowed a million.
    #[test]
    fn a_restored_rate_limited_split_does_not_wait_for_its_past() {
        let spec: GeneratorSpec = serde_yaml::from_str("{keys: 5, rate: 1000}").unwrap();
        let mut split = GeneratorSplit::new(&spec, 1, 0, 1);
        split.seek(0, 1_000_000, 1_000_000).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut out = super::super::RawBatch::default();
        let poll = split.poll(&mut out, 1000).unwrap();
        assert_eq!(poll, Poll::Ready);
        // 50 ms at 1000 events/s, give or take the scheduler.
        let n = out.len();
        assert!((40..=1000).contains(&n), "{n}");
        assert_eq!(
            split.positions(),
            vec![(1_000_000 + n as u64, 1_000_000 + n as u64)]
        );
    }

    /// A late event is its on-time self (same key, same value) stamped
    /// exactly `lateBy` earlier; about `lateFraction` of them are late.
    #[test]
    fn late_events_are_on_time_events_stamped_late_by_earlier() {
        let late: GeneratorSpec = serde_yaml::from_str(
            "{keys: 50, eventsPerMs: 1, disorder: 20ms, lateFraction: 0.25, lateBy: 1h}",
        )
        .unwrap();
        let on_time = GeneratorSpec {
            late_fraction: 0.0,
            ..late.clone()
        };
        let (late, on_time) = (
            GeneratorSplit::new(&late, 1, 0, 1),
            GeneratorSplit::new(&on_time, 1, 0, 1),
        );
        let mut stamped_late = 0;
        for i in 0..10_000 {
            let (a, b) = (on_time.event(i, i), late.event(i, i));
            assert_eq!((a.key.clone(), a.values.clone()), (b.key, b.values));
            match a.ts - b.ts {
                0 => {}
                3_600_000 => stamped_late += 1,
                d => panic!("event {i} moved by {d} ms"),
            }
        }
        assert!((2_300..=2_700).contains(&stamped_late), "{stamped_late}");
    }
}

//! Watermarks: bounded out-of-orderness per partition, combined by minimum,
//! with idle inputs left out so they do not stall the job.

use super::{MAX_WATERMARK, MIN_WATERMARK};

/// What an input (a partition, or an upstream worker) says about its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceStatus {
    /// Records so far are complete up to this watermark.
    Active(i64),
    /// No records lately: do not wait for this input.
    Idle,
    /// No more records, ever.
    Ended,
}

/// The minimum over several inputs' watermarks, leaving out idle and ended
/// inputs. Never goes backwards.
#[derive(Debug, Clone)]
pub struct MinWatermark {
    inputs: Vec<SourceStatus>,
    current: i64,
    /// The combined status, kept with `current`: workers read it for every
    /// record they send on, so it is not recomputed from the inputs.
    status: SourceStatus,
}

impl MinWatermark {
    pub fn new(inputs: usize) -> Self {
        MinWatermark {
            inputs: vec![SourceStatus::Active(MIN_WATERMARK); inputs],
            current: MIN_WATERMARK,
            status: SourceStatus::Active(MIN_WATERMARK),
        }
    }

    pub fn current(&self) -> i64 {
        self.current
    }

    /// Updates one input; returns the combined watermark if it advanced.
    pub fn update(&mut self, input: usize, status: SourceStatus) -> Option<i64> {
        self.set(input, status);
        self.recompute()
    }

    /// Changes an input without recomputing: for changes that happen at the
    /// same instant, so that no in-between state is ever published.
    fn set(&mut self, input: usize, status: SourceStatus) {
        if self.inputs[input] != SourceStatus::Ended {
            self.inputs[input] = status;
        }
    }

    pub fn input_status(&self, input: usize) -> SourceStatus {
        self.inputs[input]
    }

    /// The combined status: ended when every input is, idle when every input
    /// not ended is idle.
    pub fn status(&self) -> SourceStatus {
        self.status
    }

    fn recompute(&mut self) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut all_ended = true;
        for s in &self.inputs {
            match s {
                SourceStatus::Active(wm) => {
                    all_ended = false;
                    min = Some(min.map_or(*wm, |m| m.min(*wm)));
                }
                SourceStatus::Idle => all_ended = false,
                SourceStatus::Ended => {}
            }
        }
        let candidate = match (all_ended, min) {
            (true, _) => MAX_WATERMARK,
            (false, Some(min)) => min,
            (false, None) => {
                // All idle: hold the watermark where it is.
                self.status = SourceStatus::Idle;
                return None;
            }
        };
        let advanced = candidate > self.current;
        if advanced {
            self.current = candidate;
        }
        self.status = if all_ended {
            SourceStatus::Ended
        } else {
            SourceStatus::Active(self.current)
        };
        advanced.then_some(candidate)
    }
}

/// Per-partition watermarks of one source split: each partition's watermark
/// trails the highest event time it has seen by the out-of-orderness bound;
/// a partition with no records for `idle_timeout` is marked idle.
#[derive(Debug, Clone)]
pub struct PartitionWatermarks {
    out_of_orderness: i64,
    idle_timeout: Option<i64>,
    max_ts: Vec<i64>,
    last_record_at: Vec<i64>,
    combined: MinWatermark,
}

impl PartitionWatermarks {
    pub fn new(
        partitions: usize,
        out_of_orderness: i64,
        idle_timeout: Option<i64>,
        now: i64,
    ) -> Self {
        PartitionWatermarks {
            out_of_orderness,
            idle_timeout,
            max_ts: vec![MIN_WATERMARK; partitions],
            last_record_at: vec![now; partitions],
            combined: if partitions == 0 {
                // A split with nothing to read holds nothing back.
                let mut m = MinWatermark::new(1);
                m.update(0, SourceStatus::Idle);
                m
            } else {
                MinWatermark::new(partitions)
            },
        }
    }

    pub fn current(&self) -> i64 {
        self.combined.current()
    }

    pub fn status(&self) -> SourceStatus {
        self.combined.status()
    }

    /// A record with event time `ts` from `partition` at processing time
    /// `now`; returns the split's new watermark if it advanced.
    pub fn on_record(&mut self, partition: usize, ts: i64, now: i64) -> Option<i64> {
        self.last_record_at[partition] = now;
        if ts > self.max_ts[partition] {
            self.max_ts[partition] = ts;
        }
        let wm = self.watermark(partition);
        self.combined.update(partition, SourceStatus::Active(wm))
    }

    /// Resumes a partition from a snapshot: its highest event time so far, or
    /// that it had ended.
    pub fn restore(&mut self, partition: usize, max_ts: i64, ended: bool) {
        self.max_ts[partition] = max_ts;
        if ended {
            self.combined.set(partition, SourceStatus::Ended);
        } else if max_ts > MIN_WATERMARK {
            let wm = self.watermark(partition);
            self.combined.set(partition, SourceStatus::Active(wm));
        }
        self.combined.recompute();
    }

    pub fn max_ts(&self, partition: usize) -> i64 {
        self.max_ts[partition]
    }

    /// A partition's own watermark (`MIN_WATERMARK` before its first
    /// record): Flink's bounded out-of-orderness, complete up to the
    /// highest event time less the bound, less 1.
    pub fn watermark(&self, partition: usize) -> i64 {
        match self.max_ts[partition] {
            MIN_WATERMARK => MIN_WATERMARK,
            max => max.saturating_sub(self.out_of_orderness).saturating_sub(1),
        }
    }

    /// Whether a partition holds the split's watermark back, is idle or
    /// has ended.
    pub fn partition_status(&self, partition: usize) -> SourceStatus {
        self.combined.inputs[partition]
    }

    pub fn is_ended(&self, partition: usize) -> bool {
        self.combined.inputs[partition] == SourceStatus::Ended
    }

    /// Marks partitions idle that have had no records for the idle timeout.
    pub fn check_idle(&mut self, now: i64) -> Option<i64> {
        let timeout = self.idle_timeout?;
        for p in 0..self.max_ts.len() {
            if now - self.last_record_at[p] >= timeout {
                self.combined.set(p, SourceStatus::Idle);
            }
        }
        self.combined.recompute()
    }

    /// The partition has no more records.
    pub fn end_partition(&mut self, partition: usize) -> Option<i64> {
        self.combined.update(partition, SourceStatus::Ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_partitions_with_out_of_orderness() {
        let mut w = PartitionWatermarks::new(2, 100, None, 0);
        assert_eq!(
            w.on_record(0, 1_000, 0),
            None,
            "partition 1 has seen nothing yet"
        );
        assert_eq!(w.on_record(1, 500, 0), Some(399));
        assert_eq!(
            w.on_record(1, 2_000, 0),
            Some(899),
            "now partition 0 is the minimum"
        );
        assert_eq!(w.on_record(0, 50, 0), None, "never backwards");
        assert_eq!(w.current(), 899);
    }

    #[test]
    fn idle_partition_stops_holding_back_and_rejoins() {
        let mut w = PartitionWatermarks::new(2, 0, Some(1_000), 0);
        w.on_record(0, 10_000, 0);
        assert_eq!(w.current(), MIN_WATERMARK);
        assert_eq!(w.check_idle(999), None);
        // Both partitions are idle now: nothing holds them, nothing advances.
        assert_eq!(w.check_idle(1_000), None);
        assert_eq!(w.status(), SourceStatus::Idle);
        // Partition 0 speaks again; partition 1 is still idle.
        assert_eq!(w.on_record(0, 20_000, 1_500), Some(19_999));
        assert_eq!(
            w.on_record(1, 5_000, 1_600),
            None,
            "a rejoining partition cannot pull it back"
        );
        assert_eq!(
            w.on_record(0, 30_000, 1_700),
            None,
            "partition 1 holds it again"
        );
        assert_eq!(w.on_record(1, 40_000, 1_800), Some(29_999));
    }

    #[test]
    fn ended_partitions_release_everything() {
        let mut w = PartitionWatermarks::new(2, 0, None, 0);
        w.on_record(0, 100, 0);
        assert_eq!(w.end_partition(1), Some(99));
        assert_eq!(w.end_partition(0), Some(MAX_WATERMARK));
        assert_eq!(w.status(), SourceStatus::Ended);
    }

    #[test]
    fn empty_split_is_idle() {
        let w = PartitionWatermarks::new(0, 0, None, 0);
        assert_eq!(w.status(), SourceStatus::Idle);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Record {
            partition: usize,
            ts: i64,
        },
        /// Processing time passes, then the idle check runs.
        Wait(i64),
        End(usize),
    }

    fn ops(partitions: usize) -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            6 => (0..partitions, 0i64..1_000).prop_map(|(partition, ts)| Op::Record { partition, ts }),
            2 => (0i64..400).prop_map(Op::Wait),
            1 => (0..partitions).prop_map(Op::End),
        ];
        prop::collection::vec(op, 0..80)
    }

    proptest! {
        /// The tracker against a from-scratch computation over the history:
        /// per partition the highest time seen, whether it ended, and when it
        /// last had a record; the watermark is the running maximum of the
        /// minimum over partitions that are neither ended nor idle.
        #[test]
        fn matches_a_from_scratch_model(partitions in 1usize..6, bound in 0i64..50, idle in prop::option::of(100i64..300), ops in ops(6)) {
            let mut w = PartitionWatermarks::new(partitions, bound, idle, 0);
            let mut max_ts = vec![i64::MIN; partitions];
            let mut ended = vec![false; partitions];
            let mut idle_now = vec![false; partitions];
            let mut last_record = vec![0i64; partitions];
            let mut now = 0;
            let mut expected = i64::MIN;
            for op in ops {
                match op {
                    Op::Record { partition, ts } => {
                        let p = partition % partitions;
                        if ended[p] { continue; }
                        w.on_record(p, ts, now);
                        max_ts[p] = max_ts[p].max(ts);
                        last_record[p] = now;
                        idle_now[p] = false;
                    }
                    Op::Wait(d) => {
                        now += d;
                        w.check_idle(now);
                        if let Some(timeout) = idle {
                            for p in 0..partitions {
                                if !ended[p] && now - last_record[p] >= timeout {
                                    idle_now[p] = true;
                                }
                            }
                        }
                    }
                    Op::End(partition) => {
                        let p = partition % partitions;
                        w.end_partition(p);
                        ended[p] = true;
                    }
                }
                let active: Vec<usize> = (0..partitions).filter(|p| !ended[*p] && !idle_now[*p]).collect();
                if ended.iter().all(|e| *e) {
                    expected = MAX_WATERMARK;
                } else if !active.is_empty() {
                    let min = active
                        .iter()
                        .map(|p| max_ts[*p].saturating_sub(bound).saturating_sub(1))
                        .min()
                        .unwrap();
                    expected = expected.max(min);
                }
                prop_assert_eq!(w.current(), expected);
            }
        }
    }
}

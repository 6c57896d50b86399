//! The operator's timers: keys by the event time at which something is due
//! for them. Aligned windows put most timers on a few shared instants (window
//! ends), so keys are kept in one bucket per instant: registering is a short
//! tree lookup and an append, firing drains a bucket in order. (A binary
//! heap of a million entries costs a cache miss per level on every pop.)
//!
//! Entries are never removed early: one whose time is not the key's current
//! timer is stale, and the operator skips it when it fires.

use std::collections::BTreeMap;

use crate::record::Key;

#[derive(Debug)]
pub(crate) struct TimerQueue {
    buckets: BTreeMap<i64, Vec<Key>>,
    len: usize,
    /// The earliest bucket's time (`i64::MAX` with none): the watermark
    /// moves on with nearly every record, and is checked against this
    /// without a walk down the tree.
    earliest: i64,
}

impl Default for TimerQueue {
    fn default() -> Self {
        TimerQueue {
            buckets: BTreeMap::new(),
            len: 0,
            earliest: i64::MAX,
        }
    }
}

impl TimerQueue {
    pub fn push(&mut self, due: i64, key: Key) {
        self.buckets.entry(due).or_default().push(key);
        self.len += 1;
        self.earliest = self.earliest.min(due);
    }

    /// The earliest bucket if it is due at `watermark`, taken out.
    #[inline]
    pub fn pop_due(&mut self, watermark: i64) -> Option<(i64, Vec<Key>)> {
        if self.earliest > watermark {
            return None;
        }
        let (due, keys) = self.buckets.pop_first()?;
        self.len -= keys.len();
        self.earliest = self
            .buckets
            .first_key_value()
            .map_or(i64::MAX, |(due, _)| *due);
        Some((due, keys))
    }

    /// Entries, stale ones included.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_buckets_in_time_order_up_to_the_watermark() {
        let mut q = TimerQueue::default();
        q.push(20, Key::int(1));
        q.push(10, Key::int(2));
        q.push(20, Key::int(3));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(25), Some((10, vec![Key::int(2)])));
        assert_eq!(q.pop_due(25), Some((20, vec![Key::int(1), Key::int(3)])));
        assert_eq!(q.len(), 0);
        assert_eq!(q.pop_due(i64::MAX), None);
    }

    /// The earliest time is kept as buckets come and go, up to the last
    /// instant there is (the watermark at the end of the input).
    #[test]
    fn a_bucket_earlier_than_the_rest_is_due_first() {
        let mut q = TimerQueue::default();
        q.push(30, Key::int(1));
        assert_eq!(q.pop_due(29), None);
        q.push(15, Key::int(2));
        assert_eq!(q.pop_due(20), Some((15, vec![Key::int(2)])));
        assert_eq!(q.pop_due(29), None);
        q.push(i64::MAX, Key::int(3));
        assert_eq!(q.pop_due(30), Some((30, vec![Key::int(1)])));
        assert_eq!(q.pop_due(i64::MAX - 1), None);
        assert_eq!(q.pop_due(i64::MAX), Some((i64::MAX, vec![Key::int(3)])));
        assert_eq!(q.len(), 0);
    }
}

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

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    buckets: BTreeMap<i64, Vec<Key>>,
    len: usize,
}

impl TimerQueue {
    pub fn push(&mut self, due: i64, key: Key) {
        self.buckets.entry(due).or_default().push(key);
        self.len += 1;
    }

    /// The earliest bucket if it is due at `watermark`, taken out.
    pub fn pop_due(&mut self, watermark: i64) -> Option<(i64, Vec<Key>)> {
        let entry = self.buckets.first_entry()?;
        if *entry.key() > watermark {
            return None;
        }
        let (due, keys) = entry.remove_entry();
        self.len -= keys.len();
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
    }
}

//! Where a worker's time goes: busy, idle, or blocked on the exchange or
//! the sink (back-pressure). The worker times its waits; the rest of its
//! time is busy. Taken once a second for the control API, so the dashboard
//! and Prometheus see the same shares.

use std::time::{Duration, Instant};

use crate::control::WorkerTime;

/// How often the worker publishes its activity.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// Why a worker waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Nothing to read: no records, or inputs that have not sent their
    /// checkpoint barrier yet.
    Idle,
    /// Its source is paused because a peer's inbox is full.
    Exchange,
    /// The sink is making the worker's output durable.
    Sink,
}

pub(crate) struct Activity {
    since: Instant,
    idle: Duration,
    exchange: Duration,
    sink: Duration,
}

impl Activity {
    pub fn new(now: Instant) -> Self {
        Activity {
            since: now,
            idle: Duration::ZERO,
            exchange: Duration::ZERO,
            sink: Duration::ZERO,
        }
    }

    pub fn waited(&mut self, wait: Wait, time: Duration) {
        match wait {
            Wait::Idle => self.idle += time,
            Wait::Exchange => self.exchange += time,
            Wait::Sink => self.sink += time,
        }
    }

    /// Runs `f` as a wait.
    pub fn time<T>(&mut self, wait: Wait, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.waited(wait, started.elapsed());
        out
    }

    /// Whether a period has passed since the last `take`.
    pub fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) >= PERIOD
    }

    /// The seconds spent on each activity since the last time; a new
    /// period starts.
    pub fn take(&mut self, now: Instant) -> WorkerTime {
        let total = now.saturating_duration_since(self.since);
        let waited = self.idle + self.exchange + self.sink;
        let spent = WorkerTime {
            busy: total.saturating_sub(waited).as_secs_f64(),
            idle: self.idle.as_secs_f64(),
            blocked_on_exchange: self.exchange.as_secs_f64(),
            blocked_on_sink: self.sink.as_secs_f64(),
        };
        *self = Activity::new(now);
        spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_not_waited_is_busy() {
        let start = Instant::now();
        let mut a = Activity::new(start);
        a.waited(Wait::Idle, Duration::from_millis(300));
        a.waited(Wait::Exchange, Duration::from_millis(200));
        a.waited(Wait::Idle, Duration::from_millis(100));
        a.waited(Wait::Sink, Duration::from_millis(50));
        assert!(!a.due(start + Duration::from_millis(999)));
        assert!(a.due(start + Duration::from_millis(1000)));
        let spent = a.take(start + Duration::from_millis(1500));
        assert_eq!(
            spent,
            WorkerTime {
                busy: 0.85,
                idle: 0.4,
                blocked_on_exchange: 0.2,
                blocked_on_sink: 0.05,
            }
        );
        // A new period starts with nothing waited.
        let next = a.take(start + Duration::from_millis(2500));
        assert_eq!(next.busy, 1.0);
        assert_eq!(next.idle, 0.0);
    }
}

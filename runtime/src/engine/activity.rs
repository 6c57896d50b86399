//! Where a worker's time goes: busy, idle, or blocked on the exchange or
//! the sink (back-pressure). The worker times its waits; the rest of its
//! time is busy. Taken once a second for the control API, so the dashboard
//! and Prometheus see the same shares.

use std::time::{Duration, Instant};

use crate::control::{StageTime, WorkerTime};

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
    /// Other workers are parsing parts of what the worker read.
    Decode,
}

/// The stages of a worker's busy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Read,
    Decode,
    Route,
    Window,
}

/// A stage's start, with the time counted so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    at: Instant,
    accounted: Duration,
}

pub(crate) struct Activity {
    since: Instant,
    idle: Duration,
    exchange: Duration,
    sink: Duration,
    decode: Duration,
    /// Busy time by stage, indexed by `Stage`.
    stages: [Duration; 4],
}

impl Activity {
    pub fn new(now: Instant) -> Self {
        Activity {
            since: now,
            idle: Duration::ZERO,
            exchange: Duration::ZERO,
            sink: Duration::ZERO,
            decode: Duration::ZERO,
            stages: [Duration::ZERO; 4],
        }
    }

    /// Where a stage starts: see [`Activity::spent`].
    pub fn mark(&self) -> Mark {
        Mark {
            at: Instant::now(),
            accounted: self.accounted(),
        }
    }

    /// The time since `mark` was spent in `stage`, less what was counted
    /// meanwhile (waits, and stages run inside this one: a barrier handled
    /// in the window stage waits for the sink and decodes what is in
    /// flight), so that no time counts twice.
    pub fn spent(&mut self, stage: Stage, mark: Mark) {
        let inner = self.accounted().saturating_sub(mark.accounted);
        self.stages[stage as usize] += mark.at.elapsed().saturating_sub(inner);
    }

    fn accounted(&self) -> Duration {
        self.total_waited() + self.stages.iter().sum::<Duration>()
    }

    fn total_waited(&self) -> Duration {
        self.idle + self.exchange + self.sink + self.decode
    }

    pub fn waited(&mut self, wait: Wait, time: Duration) {
        match wait {
            Wait::Idle => self.idle += time,
            Wait::Exchange => self.exchange += time,
            Wait::Sink => self.sink += time,
            Wait::Decode => self.decode += time,
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

    /// The seconds spent on each activity and in each stage since the last
    /// time; a new period starts.
    pub fn take(&mut self, now: Instant) -> (WorkerTime, StageTime) {
        let total = now.saturating_duration_since(self.since);
        let waited = self.total_waited();
        let spent = WorkerTime {
            busy: total.saturating_sub(waited).as_secs_f64(),
            idle: self.idle.as_secs_f64(),
            blocked_on_exchange: self.exchange.as_secs_f64(),
            blocked_on_sink: self.sink.as_secs_f64(),
            blocked_on_decode: self.decode.as_secs_f64(),
        };
        let [read, decode, route, window] = self.stages.map(|d| d.as_secs_f64());
        let stages = StageTime {
            read,
            decode,
            route,
            window,
        };
        *self = Activity::new(now);
        (spent, stages)
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
        a.waited(Wait::Decode, Duration::from_millis(100));
        a.stages[Stage::Decode as usize] += Duration::from_millis(500);
        a.stages[Stage::Route as usize] += Duration::from_millis(250);
        assert!(!a.due(start + Duration::from_millis(999)));
        assert!(a.due(start + Duration::from_millis(1000)));
        let (spent, stages) = a.take(start + Duration::from_millis(1500));
        assert_eq!((stages.decode, stages.route, stages.read), (0.5, 0.25, 0.0));
        assert_eq!(
            spent,
            WorkerTime {
                busy: 0.75,
                idle: 0.4,
                blocked_on_exchange: 0.2,
                blocked_on_sink: 0.05,
                blocked_on_decode: 0.1,
            }
        );
        // A new period starts with nothing waited.
        let (next, stages) = a.take(start + Duration::from_millis(2500));
        assert_eq!(stages.decode, 0.0);
        assert_eq!(next.busy, 1.0);
        assert_eq!(next.idle, 0.0);
    }

    /// A wait, or a stage, inside a stage counts once: in itself.
    #[test]
    fn time_inside_a_stage_counts_once() {
        let mut a = Activity::new(Instant::now());
        let outer = a.mark();
        let inner = a.mark();
        a.time(Wait::Sink, || std::thread::sleep(Duration::from_millis(30)));
        std::thread::sleep(Duration::from_millis(20));
        a.spent(Stage::Decode, inner);
        std::thread::sleep(Duration::from_millis(10));
        a.spent(Stage::Window, outer);
        let [_, decode, _, window] = a.stages;
        assert!(a.sink >= Duration::from_millis(30));
        // Decode: its 20 ms, not the sink's 30; window: its 10 ms only.
        assert!(
            decode >= Duration::from_millis(20) && decode < Duration::from_millis(30),
            "{decode:?}"
        );
        assert!(
            window >= Duration::from_millis(10) && window < Duration::from_millis(20),
            "{window:?}"
        );
    }
}

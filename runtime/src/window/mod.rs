//! Event-time windows: which windows an element belongs to, and the operator
//! that keeps their state and fires them.
//!
//! Tumbling and sliding windows are both "aligned" windows: a window of
//! `size` starts every `slide` (tumbling: slide = size), at `offset` from the
//! epoch, as Flink aligns them. Their state is kept in panes of
//! gcd(size, slide): each element updates one pane, and a window's result
//! combines the panes it covers, so a sliding window does not copy each
//! element size/slide times.

mod operator;
mod timers;

pub use operator::{EarlyFiring, KeyState, Output, WindowOperator, WindowResult};

use crate::spec::Window;

/// Times are clamped into this range before window arithmetic, so that the
/// watermark's extremes (i64::MIN/MAX) cannot overflow it. Real event times
/// (±36 million years) are far inside.
const TIME_LIMIT: i64 = 1 << 60;

fn clamp(t: i64) -> i64 {
    t.clamp(-TIME_LIMIT, TIME_LIMIT)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Windows `[start, start + size)` with `start ≡ offset (mod slide)`.
    Aligned { size: i64, slide: i64, offset: i64 },
    /// Windows that grow while elements come closer than `gap` apart.
    Session { gap: i64 },
}

impl WindowKind {
    pub fn tumbling(size: i64, offset: i64) -> Self {
        WindowKind::Aligned {
            size,
            slide: size,
            offset,
        }
    }

    pub fn sliding(size: i64, slide: i64, offset: i64) -> Self {
        WindowKind::Aligned {
            size,
            slide,
            offset,
        }
    }
}

impl From<Window<'_>> for WindowKind {
    fn from(window: Window<'_>) -> Self {
        match window {
            Window::Tumbling(t) => WindowKind::tumbling(t.size.as_millis(), t.offset.as_millis()),
            Window::Sliding(s) => WindowKind::sliding(
                s.size.as_millis(),
                s.slide.as_millis(),
                s.offset.as_millis(),
            ),
            Window::Session(s) => WindowKind::Session {
                gap: s.gap.as_millis(),
            },
        }
    }
}

/// Arithmetic of aligned windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aligned {
    pub size: i64,
    pub slide: i64,
    pub offset: i64,
    pub pane: i64,
}

impl Aligned {
    pub fn new(size: i64, slide: i64, offset: i64) -> Self {
        Aligned {
            size,
            slide,
            offset,
            pane: gcd(size, slide),
        }
    }

    /// Start of the pane holding `ts`.
    pub fn pane_start(&self, ts: i64) -> i64 {
        ts - (ts - self.offset).rem_euclid(self.pane)
    }

    /// Start of the latest window holding `ts` (Flink's
    /// `getWindowStartWithOffset`).
    pub fn last_start(&self, ts: i64) -> i64 {
        ts - (ts - self.offset).rem_euclid(self.slide)
    }

    /// End of the latest window holding `ts`.
    pub fn last_end(&self, ts: i64) -> i64 {
        self.last_start(ts) + self.size
    }

    /// Smallest window end strictly greater than `t`.
    pub fn end_after(&self, t: i64) -> i64 {
        let t = clamp(t);
        t + self.slide - (t - self.offset - self.size).rem_euclid(self.slide)
    }

    /// End of the earliest window holding `ts`.
    pub fn first_end(&self, ts: i64) -> i64 {
        self.end_after(ts)
    }

    /// All windows `(start, end)` holding `ts`, latest first.
    pub fn windows_of(&self, ts: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let last = self.last_start(ts);
        (0..)
            .map(move |k| last - k * self.slide)
            .take_while(move |start| *start > ts - self.size)
            .map(move |start| (start, start + self.size))
    }
}

/// `t` rounded down to a multiple of `interval`.
pub fn align_down(t: i64, interval: i64) -> i64 {
    let t = clamp(t);
    t - t.rem_euclid(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_alignment_matches_flink() {
        let w = Aligned::new(900_000, 900_000, 0);
        // 10:01 in the visit counter example → window [10:00, 10:15)
        let ts = 1_756_980_060_000;
        let windows: Vec<_> = w.windows_of(ts).collect();
        assert_eq!(windows, vec![(1_756_980_000_000, 1_756_980_900_000)]);
        assert_eq!(w.first_end(ts), 1_756_980_900_000);
        // Negative times align downwards, as Flink does.
        let w = Aligned::new(10, 10, 0);
        assert_eq!(w.windows_of(-1).collect::<Vec<_>>(), vec![(-10, 0)]);
        // With an offset.
        let w = Aligned::new(10, 10, 3);
        assert_eq!(w.windows_of(12).collect::<Vec<_>>(), vec![(3, 13)]);
        assert_eq!(w.windows_of(13).collect::<Vec<_>>(), vec![(13, 23)]);
    }

    #[test]
    fn sliding_windows_and_panes() {
        let w = Aligned::new(10, 4, 0);
        assert_eq!(w.pane, 2);
        assert_eq!(
            w.windows_of(9).collect::<Vec<_>>(),
            vec![(8, 18), (4, 14), (0, 10)]
        );
        assert_eq!(w.first_end(9), 10);
        assert_eq!(w.last_end(9), 18);
        assert_eq!(w.pane_start(9), 8);
        assert_eq!(w.end_after(10), 14);
        assert_eq!(w.end_after(9), 10);
    }

    #[test]
    fn end_after_survives_extreme_watermarks() {
        let w = Aligned::new(60_000, 60_000, 0);
        assert!(w.end_after(i64::MIN) < 0);
        assert!(w.end_after(i64::MAX) > 0);
        assert_eq!(align_down(i64::MIN, 7) % 7, 0);
    }
}

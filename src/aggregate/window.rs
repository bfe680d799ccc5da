//! Windows on event time: which windows a match's time falls in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pattern::format_duration;

/// A window kind, with its sizes in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Fixed windows of `size`, one after the other: `[k·size, (k+1)·size)`.
    Tumbling {
        /// The window's length.
        size: u64,
    },
    /// Windows of `size` starting every `slide`: a time falls in `size / slide` of them.
    Sliding {
        /// The window's length.
        size: u64,
        /// The time between two windows' starts.
        slide: u64,
    },
    /// A window per burst of matches: it ends `gap` after the last match of its group, and
    /// two windows closer than `gap` merge.
    Session {
        /// The quiet time that ends a session.
        gap: u64,
    },
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowSpec::Tumbling { size } => write!(f, "tumbling({})", format_duration(*size)),
            WindowSpec::Sliding { size, slide } => write!(
                f,
                "sliding({}, {})",
                format_duration(*size),
                format_duration(*slide)
            ),
            WindowSpec::Session { gap } => write!(f, "session({})", format_duration(*gap)),
        }
    }
}

/// A window: `[start, end)` in event time (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// Its first millisecond.
    pub start: i64,
    /// The millisecond after its last.
    pub end: i64,
}

impl Span {
    /// The one window over all time (an aggregate without `window`).
    pub const ALL: Span = Span {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// The watermark at which every match of the window has come: its last millisecond.
    pub fn last_ms(&self) -> i64 {
        self.end.saturating_sub(1)
    }
}

fn as_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX).max(1)
}

/// The fixed windows (tumbling or sliding) that time `t` falls in, oldest first; a session
/// window is `[t, t + gap)` before merging.
pub fn windows_of(spec: &WindowSpec, t: i64, out: &mut Vec<Span>) {
    out.clear();
    match *spec {
        WindowSpec::Tumbling { size } => {
            let size = as_i64(size);
            let start = t.div_euclid(size).saturating_mul(size);
            out.push(Span {
                start,
                end: start.saturating_add(size),
            });
        }
        WindowSpec::Sliding { size, slide } => {
            let (size, slide) = (as_i64(size), as_i64(slide));
            // Starts k·slide with start <= t < start + size.
            let last = t.div_euclid(slide);
            let first = t.saturating_sub(size).div_euclid(slide).saturating_add(1);
            let mut k = first;
            while k <= last {
                let start = k.saturating_mul(slide);
                out.push(Span {
                    start,
                    end: start.saturating_add(size),
                });
                k += 1;
            }
            if out.is_empty() {
                // Only at the very beginning of time, where earlier starts do not exist.
                let start = last.saturating_mul(slide);
                out.push(Span {
                    start,
                    end: start.saturating_add(size),
                });
            }
        }
        WindowSpec::Session { gap } => out.push(Span {
            start: t,
            end: t.saturating_add(as_i64(gap)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(spec: WindowSpec, t: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        windows_of(&spec, t, &mut v);
        v.into_iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn tumbling_windows_cover_time_once() {
        let w = WindowSpec::Tumbling { size: 60_000 };
        assert_eq!(spans(w, 0), [(0, 60_000)]);
        assert_eq!(spans(w, 59_999), [(0, 60_000)]);
        assert_eq!(spans(w, 60_000), [(60_000, 120_000)]);
        assert_eq!(spans(w, -1), [(-60_000, 0)]);
    }

    #[test]
    fn sliding_windows_hold_a_time_size_over_slide_times() {
        let w = WindowSpec::Sliding { size: 10, slide: 5 };
        assert_eq!(spans(w, 7), [(0, 10), (5, 15)]);
        assert_eq!(spans(w, 5), [(0, 10), (5, 15)]);
        assert_eq!(spans(w, 10), [(5, 15), (10, 20)]);
        let w = WindowSpec::Sliding { size: 10, slide: 3 };
        for t in -20..20 {
            for (s, e) in spans(w, t) {
                assert!(s <= t && t < e && s % 3 == 0, "{t}: [{s},{e})");
            }
            let n = spans(w, t).len();
            assert!((3..=4).contains(&n), "{t}: {n}");
        }
    }

    #[test]
    fn extreme_times_saturate() {
        let w = WindowSpec::Tumbling { size: 7 };
        assert_eq!(spans(w, i64::MAX).len(), 1);
        assert_eq!(spans(w, i64::MIN).len(), 1);
        let w = WindowSpec::Sliding { size: 10, slide: 5 };
        assert!(!spans(w, i64::MAX).is_empty());
        assert!(!spans(w, i64::MIN).is_empty());
    }
}

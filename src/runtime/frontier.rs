//! Watermarks over several source partitions (files, Kafka partitions): each partition's
//! watermark is its max event time − lateness − 1 ms (Flink's bounded out-of-orderness); the
//! combined watermark is the minimum over partitions that are not idle. A partition that has
//! sent nothing for the idle timeout (processing time, given by the caller) stops holding the
//! watermark back until it sends again.

use serde::{Deserialize, Serialize};

/// Per-partition event-time progress and the combined watermark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frontier {
    lateness: i64,
    idle_timeout_ms: Option<u64>,
    parts: Vec<SourcePart>,
    /// The combined watermark so far; never goes back.
    watermark: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SourcePart {
    max_time: i64,
    last_seen_ms: u64,
    idle: bool,
    /// The partition has ended: it never holds the watermark back again.
    #[serde(default)]
    ended: bool,
}

impl Frontier {
    /// A frontier over `partitions` sources (at least one).
    pub fn new(partitions: usize, lateness: i64, idle_timeout_ms: Option<u64>) -> Frontier {
        Frontier {
            lateness,
            idle_timeout_ms,
            parts: vec![
                SourcePart {
                    max_time: i64::MIN,
                    last_seen_ms: 0,
                    idle: false,
                    ended: false,
                };
                partitions.max(1)
            ],
            watermark: i64::MIN,
        }
    }

    /// This frontier, saved by an earlier run, continued in a run over `partitions` source
    /// partitions with `idle_timeout_ms`: processing times start again from 0 (each run's
    /// clock starts at 0) and no partition is idle. `None` if the partition count differs.
    pub fn resumed(mut self, partitions: usize, idle_timeout_ms: Option<u64>) -> Option<Frontier> {
        if self.parts.len() != partitions.max(1) {
            return None;
        }
        self.idle_timeout_ms = idle_timeout_ms;
        for p in &mut self.parts {
            // Idle again only after a quiet idle timeout of this run: a partition that was
            // idle when the checkpoint was taken may have a backlog now.
            p.last_seen_ms = 0;
            p.idle = false;
        }
        Some(self)
    }

    /// The idle timeout it was made with.
    pub fn idle_timeout_ms(&self) -> Option<u64> {
        self.idle_timeout_ms
    }

    /// Number of source partitions.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// The combined watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// How far the watermark trails the newest event time seen (`None` before any event or
    /// after the end of input).
    pub fn lag(&self) -> Option<i64> {
        let newest = self.parts.iter().map(|p| p.max_time).max()?;
        if newest == i64::MIN || self.watermark == i64::MIN || self.watermark == i64::MAX {
            return None;
        }
        Some(newest.saturating_sub(self.watermark))
    }

    /// Event-time alignment (Flink's watermark alignment, as a preference): per partition,
    /// how far (ms) its newest event time runs past that of the slowest partition still
    /// holding the watermark back (neither idle nor ended) among those that have sent an
    /// event (one that has sent nothing may have nothing to send: a partition another
    /// process of the group reads). `None` for an ended partition or one that has sent
    /// nothing, and for every partition when nothing can be said (one partition, nothing
    /// holding the watermark back, the end of input). A source that reads the partitions
    /// far ahead last keeps the events that must wait for the watermark few.
    pub fn leads(&self) -> impl Iterator<Item = Option<i64>> + '_ {
        let seen = |p: &&SourcePart| p.max_time != i64::MIN;
        let holding = self
            .parts
            .iter()
            .filter(|p| !p.idle && !p.ended)
            .filter(seen);
        let slowest = holding.map(|p| p.max_time).min();
        let slowest = slowest.filter(|_| self.parts.len() > 1 && self.watermark != i64::MAX);
        self.parts.iter().map(move |p| {
            let s = slowest?;
            (!p.ended && seen(&p)).then(|| p.max_time.saturating_sub(s))
        })
    }

    /// Whether an event at `time` is late (not after the watermark).
    pub fn is_late(&self, time: i64) -> bool {
        time <= self.watermark
    }

    /// Records an event of `partition` at `time`, seen at processing time `now_ms`; returns
    /// the new combined watermark if it advanced.
    #[inline]
    pub fn observe(&mut self, partition: usize, time: i64, now_ms: u64) -> Option<i64> {
        let i = partition.min(self.parts.len() - 1);
        let p = &mut self.parts[i];
        p.last_seen_ms = now_ms;
        if time <= p.max_time && !p.idle {
            // Not newer than what this partition has shown: nothing moves.
            return None;
        }
        p.max_time = p.max_time.max(time);
        p.idle = false;
        let (max_time, ended) = (p.max_time, p.ended);
        if self.parts.len() == 1 && !ended {
            // One partition (the usual case): its watermark is the watermark.
            return self.advance_to(max_time);
        }
        self.recompute()
    }

    /// Moves the watermark to what `max_time` allows, if that is later.
    #[inline]
    fn advance_to(&mut self, max_time: i64) -> Option<i64> {
        if max_time == i64::MIN {
            return None;
        }
        let wm = max_time.saturating_sub(self.lateness).saturating_sub(1);
        if wm > self.watermark {
            self.watermark = wm;
            Some(wm)
        } else {
            None
        }
    }

    /// Marks partitions idle whose last event is older than the idle timeout at `now_ms`;
    /// returns the new watermark if that let it advance.
    pub fn tick(&mut self, now_ms: u64) -> Option<i64> {
        let timeout = self.idle_timeout_ms?;
        for p in &mut self.parts {
            if !p.idle && now_ms.saturating_sub(p.last_seen_ms) >= timeout {
                p.idle = true;
            }
        }
        self.recompute()
    }

    /// `partition` has ended (its file is read to the end): it stops holding the watermark
    /// back; returns the new watermark if that let it advance. When every partition has
    /// ended, the watermark stays where the events put it until [`Frontier::finish`].
    pub fn end(&mut self, partition: usize) -> Option<i64> {
        let i = partition.min(self.parts.len() - 1);
        self.parts[i].ended = true;
        self.recompute()
    }

    /// The caller says no event at or before `to` is still to come (a heartbeat, or
    /// processing time standing in for a quiet stream): the watermark moves to `to` if that
    /// is later, and events at or before it are late from now on. `i64::MAX` is the end of
    /// input's ([`Frontier::finish`]), not this; returns the new watermark if it moved.
    pub fn advance(&mut self, to: i64) -> Option<i64> {
        let to = to.min(i64::MAX - 1);
        if to > self.watermark {
            self.watermark = to;
            Some(to)
        } else {
            None
        }
    }

    /// The input has been silent for `quiet_ms` of processing time since its last record:
    /// the watermark moves as if an event `quiet_ms` after the newest one seen had come on
    /// every partition (event time taken to pass with processing time while nothing
    /// arrives). Nothing moves before the first event. Returns the new watermark if it moved.
    pub fn advance_quiet(&mut self, quiet_ms: u64) -> Option<i64> {
        let newest = self.parts.iter().map(|p| p.max_time).max()?;
        if newest == i64::MIN || self.watermark == i64::MAX {
            return None;
        }
        let quiet = i64::try_from(quiet_ms).unwrap_or(i64::MAX);
        let to = newest
            .saturating_add(quiet)
            .saturating_sub(self.lateness)
            .saturating_sub(1);
        self.advance(to)
    }

    /// End of all input: the watermark moves to +∞.
    pub fn finish(&mut self) -> i64 {
        self.watermark = i64::MAX;
        self.watermark
    }

    fn recompute(&mut self) -> Option<i64> {
        let active = self.parts.iter().filter(|p| !p.idle && !p.ended);
        let min_max = active.map(|p| p.max_time).min()?;
        self.advance_to(min_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_partition_is_max_minus_lateness_minus_one() {
        let mut f = Frontier::new(1, 5, None);
        assert_eq!(f.lag(), None);
        assert_eq!(f.observe(0, 100, 0), Some(94));
        assert_eq!(f.lag(), Some(6));
        assert_eq!(f.observe(0, 90, 0), None, "out of order: no change");
        assert!(f.is_late(94));
        assert!(!f.is_late(95));
    }

    #[test]
    fn quiet_time_moves_the_watermark_from_the_newest_event() {
        let mut f = Frontier::new(2, 5, None);
        assert_eq!(
            f.advance_quiet(1000),
            None,
            "no event yet: nothing to go from"
        );
        assert_eq!(f.observe(0, 100, 0), None, "partition 1 holds it back");
        assert_eq!(
            f.advance_quiet(1000),
            Some(1094),
            "newest + quiet − lateness − 1"
        );
        assert_eq!(f.advance_quiet(500), None, "less quiet time: never back");
        assert_eq!(f.advance_quiet(2000), Some(2094));
        assert!(f.is_late(2094) && !f.is_late(2095));
        assert_eq!(
            f.advance_quiet(u64::MAX),
            Some(i64::MAX - 6),
            "saturates short of +∞"
        );
        f.finish();
        assert_eq!(f.advance_quiet(10), None, "after the end nothing moves");
    }

    #[test]
    fn minimum_over_partitions_and_idle_ones_stop_holding_it_back() {
        let mut f = Frontier::new(2, 0, Some(1000));
        assert_eq!(
            f.observe(0, 100, 0),
            None,
            "partition 1 has sent nothing yet"
        );
        assert_eq!(f.observe(1, 50, 10), Some(49));
        assert_eq!(f.observe(0, 200, 20), None, "held back by partition 1");
        assert_eq!(f.tick(500), None, "not idle yet");
        assert_eq!(f.tick(1010), Some(199), "partition 1 idle");
        assert_eq!(
            f.observe(1, 60, 1020),
            None,
            "back, but the watermark never goes back"
        );
        assert_eq!(f.finish(), i64::MAX);
    }

    #[test]
    fn partitions_more_than_the_drift_past_the_slowest_are_ahead() {
        let marked = |f: &Frontier, drift: i64| -> Vec<bool> {
            f.leads().map(|l| l.is_some_and(|l| l > drift)).collect()
        };
        let mut f = Frontier::new(3, 0, Some(1000));
        assert_eq!(marked(&f, 0), [false; 3], "nothing seen: nothing ahead");
        f.observe(0, 100, 0);
        assert_eq!(
            marked(&f, 0),
            [false; 3],
            "partitions 1 and 2 have sent nothing: no lead over them"
        );
        f.observe(1, 130, 0);
        f.observe(2, 180, 0);
        assert_eq!(marked(&f, 50), [false, false, true], "180 > 100 + 50");
        assert_eq!(marked(&f, 80), [false; 3], "within the drift");
        assert_eq!(marked(&f, 0), [false, true, true]);
        f.end(0);
        assert_eq!(
            marked(&f, 0),
            [false, false, true],
            "an ended partition is neither the slowest nor ahead"
        );
        f.observe(1, 190, 500);
        f.tick(1100);
        assert_eq!(
            marked(&f, 0),
            [false; 3],
            "partition 2, idle, holds nothing back; partition 1 alone is left"
        );
        let mut one = Frontier::new(1, 0, None);
        one.observe(0, 100, 0);
        assert_eq!(marked(&one, 0), [false], "one partition is never ahead");
    }

    #[test]
    fn an_ended_partition_stops_holding_the_watermark_back() {
        let mut f = Frontier::new(2, 0, None);
        assert_eq!(
            f.observe(0, 100, 0),
            None,
            "partition 1 has sent nothing yet"
        );
        assert_eq!(f.observe(1, 40, 0), Some(39));
        assert_eq!(f.observe(0, 200, 0), None, "held back by partition 1 at 40");
        assert_eq!(
            f.end(1),
            Some(199),
            "partition 1 ended: partition 0 alone decides"
        );
        assert_eq!(f.observe(1, 300, 0), None, "an ended partition stays ended");
        assert_eq!(
            f.end(0),
            None,
            "all ended: the watermark waits for finish()"
        );
        assert_eq!(f.finish(), i64::MAX);
    }
}

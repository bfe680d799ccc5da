//! A shard: the partitions (keys) of every pattern that hash to it, each with its matcher and
//! its reorder buffer, plus the timers that feed them when the watermark passes.
//!
//! A shard receives events already judged on time (not late) and watermark advances, in
//! input order; it owns its keys, so shards run in parallel with no locks. Its whole state is
//! data: [`Shard::snapshot`] serialises it and [`Shard::restore`] rebuilds it exactly.

mod index;
mod state;
mod timers;

use std::sync::Arc;

use hashbrown::HashTable;

use crate::event::Event;
use crate::key::{self, KeyBytes};
use crate::nfa::matcher::{Scratch, StartProbe};
use crate::nfa::{Match, Matcher, Nfa};
use crate::runtime::front::KeyedEvent;
use crate::value::Value;
use index::{head_mut, Entry, Found, Handle, Head, Partition, Slot, SpareQueues};
pub use state::{PatternShardState, PatternShardsView, StateError};
use timers::Timers;

/// What a shard produces when the watermark passes: matches and timed-out partial matches.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardOutput {
    /// Index of the pattern.
    pub pattern: usize,
    /// The partition key as JSON, if the pattern is keyed.
    pub key: Option<Arc<str>>,
    /// The match.
    pub m: Match,
}

/// Idle matchers kept for reuse, so a key that comes and goes does not allocate each time.
const MATCHER_POOL: usize = 256;

/// Idle partitions a pattern shard keeps before sweeping them (at least; it also keeps as
/// many as it has partitions with state), so that a key whose partial matches come and go
/// does not pay a removal and an insertion each time, while memory stays bounded.
const IDLE_KEEP: usize = 4096;

/// The per-pattern part of a shard.
struct PatternShard {
    nfa: Arc<Nfa>,
    key_slots: Vec<usize>,
    /// The one key of an unkeyed pattern.
    unkeyed: KeyBytes,
    max_runs: Option<usize>,
    /// Cap on open partial matches over all keys: at the cap, keys without state start no
    /// new partial matches (counted in `dropped_runs`) until some end.
    max_total: Option<usize>,
    /// Open partial matches over all keys.
    open_runs: usize,
    /// (key hash, slot) of every partition; keys are compared in the slots.
    index: HashTable<Entry>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Matchers are moved between the pool and partitions as boxes: a pointer, not the
    /// matcher's few hundred bytes.
    #[allow(clippy::vec_box)]
    pool: Vec<Box<Matcher>>,
    /// Emptied queues of waiting events, for the next key that buffers.
    spare_queues: SpareQueues,
    timers: Timers<Handle>,
    watermark: i64,
    dropped_runs: u64,
    /// Partitions in `slots`, idle ones included.
    live: usize,
    /// Idle partitions in `slots`.
    idle: usize,
    matches: Vec<Match>,
    timeouts: Vec<Match>,
    probe: StartProbe,
    scratch: Scratch,
    /// The pattern has no per-state windows (`within` of the whole pattern, if any): then a
    /// partition's earliest deadline never moves earlier while a timer is registered for it
    /// (see [`PatternShard::schedule`]).
    deadlines_only_grow: bool,
}

/// The keys of every pattern assigned to one worker.
pub struct Shard {
    patterns: Vec<PatternShard>,
    timeouts: bool,
}

/// An event's partition key, borrowed: the one the front built, or the event's own single
/// string key field (the common case, not copied).
#[derive(Clone, Copy)]
enum KeyRef<'a> {
    Built(&'a KeyBytes),
    Field(&'a Arc<str>),
}

impl KeyRef<'_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            KeyRef::Built(k) => k,
            KeyRef::Field(s) => s.as_bytes(),
        }
    }

    /// The key to keep in a partition (shares the string's or the built key's allocation).
    fn to_owned(self) -> KeyBytes {
        match self {
            KeyRef::Built(k) => Arc::clone(k),
            KeyRef::Field(s) => KeyBytes::from(Arc::clone(s)),
        }
    }
}

/// An event's partition key: the one the front built (`given`), else the event's own single
/// string key field, or `unkeyed` for a pattern without key.
#[inline]
fn event_key<'a>(
    given: &'a Option<KeyBytes>,
    key_slots: &[usize],
    unkeyed: &'a KeyBytes,
    event: &'a Event,
) -> Option<KeyRef<'a>> {
    match (given, key_slots) {
        (Some(k), _) => Some(KeyRef::Built(k)),
        (None, []) => Some(KeyRef::Built(unkeyed)),
        (None, [one]) => match event.slot(*one) {
            Value::Str(s) => Some(KeyRef::Field(s)),
            _ => None,
        },
        (None, _) => None,
    }
}

/// The key as it appears in matches (see [`key::to_json`]).
fn key_json(key_fields: usize, key: &[u8]) -> Option<Arc<str>> {
    key::to_json(key_fields, key).map(Arc::from)
}

impl Shard {
    /// A shard for these patterns (each with its key field slots); `max_total` caps the
    /// partial matches of each pattern in this shard.
    pub fn new(
        patterns: &[(Arc<Nfa>, Vec<usize>)],
        timeouts: bool,
        max_runs: Option<usize>,
        max_total: Option<usize>,
    ) -> Shard {
        Shard {
            patterns: patterns
                .iter()
                .map(|(nfa, key_slots)| PatternShard {
                    nfa: Arc::clone(nfa),
                    key_slots: key_slots.clone(),
                    unkeyed: KeyBytes::from(Vec::new()),
                    max_runs,
                    max_total,
                    open_runs: 0,
                    index: HashTable::new(),
                    slots: Vec::new(),
                    free_slots: Vec::new(),
                    pool: Vec::new(),
                    spare_queues: SpareQueues::default(),
                    timers: Timers::default(),
                    watermark: i64::MIN,
                    dropped_runs: 0,
                    live: 0,
                    idle: 0,
                    matches: Vec::new(),
                    timeouts: Vec::new(),
                    probe: StartProbe::new(nfa),
                    scratch: Scratch::default(),
                    deadlines_only_grow: nfa.state_windows.iter().all(Option::is_none),
                })
                .collect(),
            timeouts,
        }
    }

    /// An on-time event of `pattern` for key `key` (whose [`key_hash`] is `hash`); `watermark`
    /// is the pattern's watermark
    /// once the event is counted. The event is fed at once when nothing can come before it
    /// (its key has nothing buffered and it is not after `watermark + 1`), else buffered
    /// until the watermark passes it. Outputs of an immediate feed go to `out`.
    #[inline]
    pub fn on_event(&mut self, e: KeyedEvent, out: &mut Vec<ShardOutput>) {
        let Some(p) = self.patterns.get_mut(e.pattern) else {
            return;
        };
        p.on_event(e, self.timeouts, out);
    }

    /// The watermark of `pattern` moved to `wm`: feed and time out what is due.
    #[inline]
    pub fn on_watermark(&mut self, pattern: usize, wm: i64, out: &mut Vec<ShardOutput>) {
        let timeouts = self.timeouts;
        let Some(p) = self.patterns.get_mut(pattern) else {
            return;
        };
        // The usual case, inline: no timer due yet.
        if wm > p.watermark && p.timers.peek().is_none_or(|(t, _)| t > wm) {
            p.watermark = wm;
            return;
        }
        p.on_watermark(pattern, wm, timeouts, out);
    }

    /// Partitions holding state, over all patterns.
    pub fn live_partitions(&self) -> usize {
        self.patterns.iter().map(|p| p.live - p.idle).sum()
    }

    /// Open partial matches over all patterns and partitions.
    pub fn open_partial_matches(&self) -> usize {
        self.patterns
            .iter()
            .flat_map(|p| p.slots.iter().filter_map(|s| s.partition.as_ref()))
            .filter_map(|p| p.matcher.as_ref())
            .map(|m| m.partial_matches())
            .sum()
    }

    /// Partial matches dropped at the per-key cap.
    pub fn dropped_runs(&self) -> u64 {
        self.patterns.iter().map(|p| p.dropped_runs).sum()
    }

    /// The state of each pattern, as data.
    pub fn snapshot(&self) -> Vec<PatternShardState> {
        self.patterns.iter().map(PatternShard::snapshot).collect()
    }

    /// Replaces pattern `pattern`'s state with `state` (taken from a shard of the same
    /// pattern and checked with [`PatternShardState::validate`]).
    pub fn restore_pattern(&mut self, pattern: usize, state: PatternShardState) {
        if let Some(p) = self.patterns.get_mut(pattern) {
            p.restore(state);
        }
    }
}

impl PatternShard {
    #[allow(clippy::too_many_arguments)]
    fn on_event(&mut self, e: KeyedEvent, timeouts: bool, out: &mut Vec<ShardOutput>) {
        let KeyedEvent {
            pattern: index,
            key,
            hash,
            arrival,
            watermark,
            event,
        } = e;
        let time = event.time;
        let immediate = time <= watermark.saturating_add(1);
        let found = match event_key(&key, &self.key_slots, &self.unkeyed, &event) {
            Some(k) => self.find(hash, k.bytes()),
            None => return,
        };
        let (slot, idle) = match found {
            Some(found) => {
                let nfa = &*self.nfa;
                if immediate {
                    if found.idle {
                        // As for a key without state (an idle partition has nothing pending).
                        if !self.may_start(&event) {
                            return;
                        }
                    } else if found.quiet_before > time
                        && nfa.skip_tests.skips_all(found.waiting_states, &event)
                    {
                        // Nothing due or waiting, and every run surely stays put: nothing to
                        // load or settle.
                        return;
                    }
                }
                (found.slot, found.idle)
            }
            None if immediate => {
                if !self.may_start(&event) {
                    return;
                }
                // Run the event on a spare matcher and keep a partition only if something is
                // left pending.
                let Some(key) =
                    event_key(&key, &self.key_slots, &self.unkeyed, &event).map(KeyRef::to_owned)
                else {
                    return;
                };
                let mut matcher = self.spare_matcher();
                matcher.process(&self.nfa, &mut self.scratch, event, &mut self.matches);
                let key_json = if self.matches.is_empty() {
                    None
                } else {
                    key_json(self.key_slots.len(), &key)
                };
                for m in self.matches.drain(..) {
                    out.push(ShardOutput {
                        pattern: index,
                        key: key_json.clone(),
                        m,
                    });
                }
                if matcher.is_idle() {
                    self.recycle(matcher);
                    return;
                }
                if self.max_total.is_some() {
                    self.open_runs += matcher.partial_matches();
                }
                let slot = self.insert_partition(key, hash, matcher);
                self.schedule(slot);
                return;
            }
            None => {
                let Some(key) =
                    event_key(&key, &self.key_slots, &self.unkeyed, &event).map(KeyRef::to_owned)
                else {
                    return;
                };
                let matcher = self.spare_matcher();
                (self.insert_partition(key, hash, matcher), false)
            }
        };
        if idle {
            self.wake(slot, hash);
        }
        let Some(head) = head_mut(&mut self.index, hash, slot) else {
            return;
        };
        let s = &mut self.slots[slot as usize];
        let nfa = &*self.nfa;
        if immediate && head.pending.is_empty() {
            let timer_due = time >= head.timer_at;
            let Some(matcher) = s.partition.as_mut().and_then(|p| p.matcher.as_deref_mut()) else {
                return;
            };
            let dropped_before = matcher.dropped_runs();
            let open_before = if self.max_total.is_some() {
                matcher.partial_matches()
            } else {
                0
            };
            // `timer_at` is never later than the partition's next deadline (set after every
            // feed), so before it nothing can time out.
            if timer_due {
                // Flink reaches this event's watermark (one before it) first, and only then,
                // when a later watermark releases the event, the event's time: a run whose
                // windows both end by then times out at the earlier deadline.
                let (sc, ms, ts) = (&mut self.scratch, &mut self.matches, &mut self.timeouts);
                matcher.advance_to_watermark(nfa, sc, watermark, timeouts, ms, ts);
                matcher.advance_before_event(nfa, sc, time, timeouts, ms, ts);
            }
            matcher.process(nfa, &mut self.scratch, event, &mut self.matches);
            self.settle(slot, index, dropped_before, open_before, out);
            return;
        }
        head.pending
            .insert(time, arrival, event, &mut self.spare_queues);
        if time < head.timer_at {
            head.timer_at = time;
            self.timers.push(time, (slot, s.generation));
        }
    }

    /// An idle partition gets state again: it takes a matcher from the pool.
    fn wake(&mut self, slot: u32, hash: u64) {
        let matcher = self.spare_matcher();
        let part = self.slots[slot as usize].partition.as_mut();
        if let (Some(part), Some(head)) = (part, head_mut(&mut self.index, hash, slot)) {
            part.matcher = Some(matcher);
            head.idle = false;
            self.idle -= 1;
        }
    }

    fn spare_matcher(&mut self) -> Box<Matcher> {
        let mut m = match self.pool.pop() {
            Some(m) => m,
            None => Box::new(Matcher::new(&self.nfa)),
        };
        if let Some(cap) = self.max_runs {
            m.set_max_runs(cap);
        }
        m
    }

    fn recycle(&mut self, mut matcher: Box<Matcher>) {
        if self.pool.len() < MATCHER_POOL {
            matcher.reset(&self.nfa);
            self.pool.push(matcher);
        }
    }

    /// For a key without state: whether `event` starts a partial match (one probe of the
    /// start state) and the cap on open partial matches lets it (a refusal is counted).
    #[inline]
    fn may_start(&mut self, event: &Event) -> bool {
        if !self.probe.starts_on(&self.nfa, event) {
            return false;
        }
        if self.max_total.is_some_and(|cap| self.open_runs >= cap) {
            self.dropped_runs += 1;
            return false;
        }
        true
    }

    /// The partition of `key`, if it has one: its slot and what decides an event that
    /// changes nothing, read from its index entry.
    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<Found> {
        let slots = &self.slots;
        self.index
            .find(hash, |e| e.hash == hash && e.has_key(slots, key))
            .map(|e| Found {
                slot: e.slot,
                idle: e.head.idle,
                // With events waiting, every event waits behind them.
                quiet_before: if e.head.pending.is_empty() {
                    e.head.timer_at
                } else {
                    i64::MIN
                },
                waiting_states: e.head.waiting_states,
            })
    }

    fn insert_partition(&mut self, key: KeyBytes, hash: u64, matcher: Box<Matcher>) -> u32 {
        let head = Head::new(&key, matcher.waiting_states());
        let part = Partition {
            matcher: Some(matcher),
            key_json: None,
            key,
            hash,
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize].partition = Some(part);
                s
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    partition: Some(part),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index
            .insert_unique(hash, Entry { hash, slot, head }, |e| e.hash);
        self.live += 1;
        slot
    }

    fn remove_partition(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if let Some(p) = s.partition.take() {
            if let Ok(entry) = self.index.find_entry(p.hash, |e| e.slot == slot) {
                let (entry, _) = entry.remove();
                if entry.head.idle {
                    self.idle -= 1;
                }
            }
            s.generation = s.generation.wrapping_add(1);
            self.free_slots.push(slot);
            self.live -= 1;
            if let Some(m) = p.matcher {
                self.recycle(m);
            }
        }
    }

    /// Removes every idle partition.
    fn sweep_idle(&mut self) {
        let idle: Vec<u32> = self
            .index
            .iter()
            .filter(|e| e.head.idle)
            .map(|e| e.slot)
            .collect();
        for slot in idle {
            self.remove_partition(slot);
        }
    }

    /// After feeding a partition: counters, its outputs, and then either its next timer or,
    /// with nothing pending, the idle mark: an idle partition holds no state (its matcher,
    /// left with only the start run, goes back to the pool); it stays in place while idle ones
    /// are few, so a key that comes back soon reuses it, and is swept when they are not.
    fn settle(
        &mut self,
        slot: u32,
        index: usize,
        dropped_before: u64,
        open_before: usize,
        out: &mut Vec<ShardOutput>,
    ) {
        let s = &mut self.slots[slot as usize];
        let Some(part) = s.partition.as_mut() else {
            return;
        };
        let Some(head) = head_mut(&mut self.index, part.hash, slot) else {
            return;
        };
        let Some(matcher) = part.matcher.as_deref() else {
            return;
        };
        head.waiting_states = matcher.waiting_states();
        self.dropped_runs += matcher.dropped_runs() - dropped_before;
        if self.max_total.is_some() {
            // Kept only for the cap on open partial matches (counting costs a pass over the
            // runs).
            self.open_runs =
                (self.open_runs + matcher.partial_matches()).saturating_sub(open_before);
        }
        let goes_idle = head.pending.is_empty() && matcher.is_idle();
        if !(self.matches.is_empty() && self.timeouts.is_empty()) {
            if part.key_json.is_none() {
                part.key_json = key_json(self.key_slots.len(), &part.key);
            }
            let key = part.key_json.clone();
            for m in self.matches.drain(..).chain(self.timeouts.drain(..)) {
                out.push(ShardOutput {
                    pattern: index,
                    key: key.clone(),
                    m,
                });
            }
        }
        if goes_idle {
            if !head.idle {
                head.idle = true;
                self.idle += 1;
                if let Some(m) = part.matcher.take() {
                    self.recycle(m);
                }
                if self.idle > IDLE_KEEP.max(self.live - self.idle) {
                    self.sweep_idle();
                }
            }
        } else {
            self.schedule(slot);
        }
    }

    /// Registers the next timer of a partition (its first pending event or its next window
    /// deadline, whichever comes first) unless an earlier one is already registered.
    fn schedule(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let generation = s.generation;
        let Some(part) = s.partition.as_mut() else {
            return;
        };
        let Some(head) = head_mut(&mut self.index, part.hash, slot) else {
            return;
        };
        if self.deadlines_only_grow && head.timer_at != i64::MAX && head.pending.is_empty() {
            // The registered timer is still early enough: with only the pattern's window, a
            // run's deadline is its start plus the window, runs keep their start, and a new
            // run starts at an on-time event (after the watermark, in time order), so no
            // deadline can come before a timer set for an earlier one (or for the watermark).
            // A timer that fires early finds nothing due and schedules the next.
            return;
        }
        let next = head
            .pending
            .first_time()
            .into_iter()
            .chain(
                part.matcher
                    .as_ref()
                    .and_then(|m| m.next_deadline(&self.nfa)),
            )
            .min();
        if let Some(n) = next {
            // A deadline at the end of time (`i64::MAX`, saturated) is registered just before
            // it, as `i64::MAX` means "no timer": no watermark but the end of input's reaches
            // `i64::MAX - 1` (event times are below `i64::MAX`, watermarks below them).
            let n = n.min(i64::MAX - 1).max(self.watermark.saturating_add(1));
            if n < head.timer_at {
                head.timer_at = n;
                self.timers.push(n, (slot, generation));
            }
        }
    }

    fn on_watermark(&mut self, index: usize, wm: i64, timeouts: bool, out: &mut Vec<ShardOutput>) {
        if wm <= self.watermark {
            return;
        }
        self.watermark = wm;
        while let Some((t, (slot, generation))) = self.timers.peek() {
            if t > wm {
                break;
            }
            self.timers.pop();
            let s = &mut self.slots[slot as usize];
            if s.generation != generation {
                continue;
            }
            let Some(part) = s.partition.as_mut() else {
                continue;
            };
            let Some(head) = head_mut(&mut self.index, part.hash, slot) else {
                continue;
            };
            if t != head.timer_at {
                // Superseded by an earlier timer, or the partition fired since.
                continue;
            }
            head.timer_at = i64::MAX;
            if head.idle {
                // Registered before the partition went idle: nothing can time out.
                continue;
            }
            let Some(matcher) = part.matcher.as_deref_mut() else {
                continue;
            };
            let nfa = &*self.nfa;
            let dropped_before = matcher.dropped_runs();
            let open_before = if self.max_total.is_some() {
                matcher.partial_matches()
            } else {
                0
            };
            // Feed every buffered event up to the watermark, one timestamp at a time: first
            // expire runs against that time, then the events at it in arrival order.
            while let Some(t) = head.pending.first_time() {
                if t > wm {
                    break;
                }
                // Before the first event of `t`, never between two (an event at `t` may have
                // been fed at once, before these were buffered).
                let (sc, ms, ts) = (&mut self.scratch, &mut self.matches, &mut self.timeouts);
                matcher.advance_before_event(nfa, sc, t, timeouts, ms, ts);
                while let Some(ev) = head.pending.pop_at(t, &mut self.spare_queues) {
                    matcher.process(nfa, &mut self.scratch, ev, &mut self.matches);
                }
            }
            let (sc, ms, ts) = (&mut self.scratch, &mut self.matches, &mut self.timeouts);
            matcher.advance_to_watermark(nfa, sc, wm, timeouts, ms, ts);
            self.settle(slot, index, dropped_before, open_before, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::key_hash;
    use crate::runtime::compile_all;

    fn feed(
        shard: &mut Shard,
        schema: &crate::event::Schema,
        key: &str,
        t: i64,
        ty: &str,
    ) -> usize {
        let raw = format!(r#"{{"key":"{key}","ts":{t},"type":"{ty}"}}"#);
        let event = Event {
            time: t,
            fields: schema.decode_row(&raw).expect("test JSON decodes"),
            raw: Arc::from(raw.as_str()),
        };
        let mut out = Vec::new();
        let keyed = KeyedEvent {
            pattern: 0,
            key: None,
            hash: key_hash(key.as_bytes()),
            arrival: t as u64,
            watermark: t,
            event,
        };
        shard.on_event(keyed, &mut out);
        out.len()
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_index_entry_with_its_head_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        assert_eq!(std::mem::align_of::<Entry>(), 64);
    }

    /// A shard of the one pattern in `source` (reporting timed-out partial matches when
    /// `timeouts`), with the schema its events are decoded with.
    fn shard_of_pattern(source: &str, timeouts: bool) -> (Shard, crate::event::Schema) {
        let decls = crate::syntax::load_str("<test>", source).expect("pattern loads");
        let c = compile_all(
            &decls,
            false,
            None,
            crate::nfa::CompileOptions {
                reports_timeouts: timeouts,
                compact_matcher: true,
            },
        )
        .expect("pattern compiles");
        (Shard::new(&c.patterns, timeouts, None, None), c.schema)
    }

    #[test]
    fn each_partial_match_times_out_when_the_watermark_passes_its_own_window() {
        let (mut shard, schema) = shard_of_pattern(
            r#"pattern p key key time ts = begin("a").where(type == "A").followedBy("b").where(type == "B").within(10ms);"#,
            true,
        );
        // Two partial matches of one key, ending at 10 and 15; a second key's at 17. Later
        // runs never need an earlier timer than the one registered for the first.
        assert_eq!(feed(&mut shard, &schema, "k", 0, "A"), 0);
        assert_eq!(feed(&mut shard, &schema, "k", 5, "A"), 0);
        assert_eq!(feed(&mut shard, &schema, "j", 7, "A"), 0);
        let mut timed_out_at = |wm: i64| {
            let mut out = Vec::new();
            shard.on_watermark(0, wm, &mut out);
            out.iter()
                .map(|o| o.m.timed_out.expect("only time-outs"))
                .collect::<Vec<_>>()
        };
        assert_eq!(timed_out_at(9), Vec::<i64>::new());
        assert_eq!(timed_out_at(10), vec![10]);
        assert_eq!(timed_out_at(14), Vec::<i64>::new());
        assert_eq!(timed_out_at(15), vec![15]);
        assert_eq!(timed_out_at(16), Vec::<i64>::new());
        assert_eq!(timed_out_at(17), vec![17]);
    }

    #[test]
    fn idle_partitions_are_kept_for_reuse_then_swept() {
        let (mut shard, schema) = shard_of_pattern(
            r#"pattern p key key time ts = begin("a").where(type == "A").next("b").where(type == "B");"#,
            false,
        );
        // Each key starts a partial match (A) and loses it (C): its partition goes idle.
        let keys = 3 * IDLE_KEEP;
        for i in 0..keys {
            let key = format!("k{i}");
            assert_eq!(feed(&mut shard, &schema, &key, 2 * i as i64, "A"), 0);
            assert_eq!(
                shard.live_partitions(),
                1,
                "key {key} holds a partial match"
            );
            assert_eq!(feed(&mut shard, &schema, &key, 2 * i as i64 + 1, "C"), 0);
            assert_eq!(shard.live_partitions(), 0, "key {key} holds nothing");
        }
        let p = &shard.patterns[0];
        assert!(p.live <= IDLE_KEEP, "{} idle partitions kept", p.live);
        assert!(p.slots.len() <= IDLE_KEEP + 1, "{} slots", p.slots.len());
        assert_eq!(p.live, p.idle);
        assert!(shard.snapshot()[0].partitions.is_empty());
        // A key whose idle partition is still there matches as a new key would.
        let t = 2 * keys as i64;
        let last = format!("k{}", keys - 1);
        assert_eq!(feed(&mut shard, &schema, &last, t, "A"), 0);
        assert_eq!(feed(&mut shard, &schema, &last, t + 1, "B"), 1);
        assert_eq!(shard.live_partitions(), 0);
    }
}

//! Runs an [`Nfa`] over one partition's events, as Flink's `NFA.process` / `advanceTime`.
//!
//! A [`Run`] is one partial match (Flink's ComputationState): the NFA state it is in, the
//! last node of its path in the [`SharedBuffer`], when and with which event it started, and
//! the running aggregates its conditions read. Each event is offered to every run; the edges
//! whose guards hold decide the runs that follow (TAKE extends the path, IGNORE keeps it,
//! PROCEED moves without consuming). Runs reaching the Final state are matches; runs reaching
//! a Stop state kill every run born from the same parent in that step.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::event::{field_of_json, Event};
use crate::expr::compile::{AggAcc, CExpr};
use crate::nfa::buffer::{Expected, PathStep, SharedBuffer, NIL};
use crate::nfa::compact::Compact;
use crate::nfa::heap;
use crate::nfa::validate::{InvalidState, RunRef, COUNTER_LIMIT};
use crate::nfa::{Action, CondBody, Guard, Nfa, Skip, StateId, StateKind};
use crate::pattern::PartialMatch;
use crate::value::Value;

/// `start_seq` of a run that has taken nothing yet (sorts after every real event).
const NO_START: u64 = u64::MAX;

/// Upper bound on PROCEED expansions per run and event: a guard against pathological
/// patterns, far above what any valid pattern needs.
const MAX_PROCEED_EXPANSIONS: usize = 4096;

/// Default cap on partial matches per partition ([`crate::runtime::EngineOptions::max_runs_per_key`]).
pub const DEFAULT_MAX_RUNS: usize = 100_000;

/// One partial match.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    state: StateId,
    node: u32,
    start_ts: i64,
    prev_ts: i64,
    start_seq: u64,
    aggs: SmallVec<[AggAcc; 2]>,
}

/// An event of a match, with the variable that took it.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedEvent {
    /// Variable index (into [`Nfa::variables`]).
    pub var: usize,
    /// Event time.
    pub time: i64,
    /// The event as it arrived.
    pub raw: Arc<str>,
    /// The event's decoded fields by schema slot, when the engine carries them
    /// ([`EngineOptions::match_fields`]); empty otherwise.
    ///
    /// [`EngineOptions::match_fields`]: crate::runtime::EngineOptions::match_fields
    pub fields: Box<[Value]>,
}

impl MatchedEvent {
    /// The decoded field in schema slot `slot` ([`Schema::get`]), `null` when the engine
    /// does not carry fields or the event has none there. Unlike [`MatchedEvent::field`],
    /// nothing is parsed.
    ///
    /// [`Schema::get`]: crate::event::Schema::get
    #[inline]
    pub fn get(&self, slot: usize) -> &Value {
        self.fields.get(slot).unwrap_or(&Value::Null)
    }

    /// Reads a field by dotted path (`"user.id"`) from the event's JSON text, as
    /// [`Event::field`] does: `null` when a step of the path is missing, and for objects and
    /// arrays. It parses the text on each call; to read several fields, [`deserialize`] the
    /// event once instead.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use motif::nfa::MatchedEvent;
    /// use motif::Value;
    ///
    /// let e = MatchedEvent { var: 0, time: 7, raw: Arc::from(r#"{"user":{"id":42},"ok":true}"#), fields: Box::new([]) };
    /// assert!(matches!(e.field("user.id"), Value::Int(42)));
    /// assert!(e.field("ok").is_true());
    /// assert!(e.field("user.name").is_null());
    /// ```
    ///
    /// [`deserialize`]: MatchedEvent::deserialize
    pub fn field(&self, path: &str) -> Value {
        field_of_json(&self.raw, path)
    }

    /// The event as a value of your own type, deserialised from its JSON text; `T` may
    /// borrow from the text (`&str` fields, where the text needs no unescaping).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use motif::nfa::MatchedEvent;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Txn<'a> {
    ///     card: &'a str,
    ///     amount: f64,
    /// }
    ///
    /// let e = MatchedEvent { var: 0, time: 1, raw: Arc::from(r#"{"card":"c1","amount":9.5,"ts":1}"#), fields: Box::new([]) };
    /// let txn: Txn = e.deserialize().unwrap();
    /// assert_eq!((txn.card, txn.amount), ("c1", 9.5));
    /// ```
    pub fn deserialize<'de, T: Deserialize<'de>>(&'de self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.raw)
    }
}

/// A completed match, or a timed-out partial match.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The events in the order they were taken.
    pub events: Vec<MatchedEvent>,
    /// For a timed-out partial match, the time it timed out.
    pub timed_out: Option<i64>,
}

impl Match {
    /// The time of its first event (0 for a match of no events).
    pub fn start(&self) -> i64 {
        self.events.first().map_or(0, |e| e.time)
    }

    /// The time of its last event (0 for a match of no events).
    pub fn end(&self) -> i64 {
        self.events.last().map_or(0, |e| e.time)
    }
}

/// The matcher state of one partition.
///
/// `repr(C)` keeps the declared order: what [`Matcher::skips`] reads and writes first, so
/// an event the runs skip touches one cache line of the matcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[repr(C)]
pub struct Matcher {
    /// The states the runs are in, one bit each ([`UNKNOWN_STATES`]: not known).
    #[serde(skip, default = "unknown_states")]
    waiting: u64,
    /// The earliest time a run times out ([`Matcher::next_deadline`]), noted with the states
    /// after every change of the runs; runs dropped since only make it earlier than the
    /// truth, never later. Not known after a restore (`due_known` false).
    #[serde(skip)]
    next_due: Option<i64>,
    #[serde(skip)]
    due_known: bool,
    next_seq: u64,
    /// Runs in Flink's order: the array of Flink's `PriorityQueue` of partial matches (by
    /// start event), kept by [`heap`]. On the heap: offering an event swaps this vector with
    /// the scratch's (a pointer each), instead of moving every run out and back.
    runs: Vec<Run>,
    /// Completed matches waiting for the skip strategy, as Flink's `PriorityQueue` of them.
    completed: Vec<Run>,
    max_runs: usize,
    dropped: u64,
    buffer: SharedBuffer,
    /// The time of the last event offered; `i64::MIN` before the first
    /// ([`Matcher::advance_before_event`], [`Matcher::advance_to_watermark`]).
    last_time: i64,
    /// The runs grouped by state, when there are many and the pattern allows it (then
    /// `runs` is empty; see [`Groups`]).
    groups: Option<Box<Groups>>,
    /// The compact matcher's state, for patterns it runs ([`crate::nfa::compact`]); then
    /// the fields above hold no runs.
    #[serde(default)]
    compact: Option<Box<Compact>>,
}

/// The grouped layout of a partition's runs, for patterns whose results do not depend on
/// the order of runs that share their first event ([`crate::nfa::Grouping::ByState`]: no
/// skip strategy, or runs that never share a first event).
///
/// Flink keeps every partial match in one priority queue and offers each event to each of
/// them. The queue's order among runs with the same start event only orders the output
/// unless a skip strategy picks between their matches. So runs can be kept by the state
/// they wait in, each group in [`group_order`]: an event is tested once per state
/// ([`crate::nfa::skip`]), the groups it cannot move are not visited at all, and time-outs
/// come off the heads of the groups. A run costs something only when the event concerns
/// it: a partition waiting with a hundred thousand partial matches for a rare event skips
/// the others in time independent of them.
///
/// A partition switches to this layout when it holds more than [`Nfa::group_runs_at`]
/// runs, and back to the list below half of that (the list is cheaper for few runs).
///
/// [`Nfa::group_runs_at`]: crate::nfa::Nfa
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Groups {
    /// Per state (by [`StateId`]): its runs.
    by_state: Vec<Group>,
}

/// One state's runs, by [`group_order`]: those that arrived in order, first first, and a
/// heap of those that did not. Runs usually arrive in order (a run that starts now starts
/// after every other, a deadline set now is later than those set before), so the head is
/// usually taken off the front of a queue, not sifted out of a heap of large runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Group {
    in_order: VecDeque<Run>,
    heap: Vec<Run>,
}

impl Group {
    fn len(&self) -> usize {
        self.in_order.len() + self.heap.len()
    }

    fn is_empty(&self) -> bool {
        self.in_order.is_empty() && self.heap.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Run> {
        self.in_order.iter().chain(&self.heap)
    }

    fn push(&mut self, run: Run, order: &impl Fn(&Run) -> u64) {
        match self.in_order.back() {
            Some(last) if order(&run) < order(last) => heap::push(&mut self.heap, run, order),
            _ => self.in_order.push_back(run),
        }
    }

    /// Whether the head is in the heap rather than at the front of the queue.
    fn head_in_heap(&self, order: &impl Fn(&Run) -> u64) -> bool {
        match (self.in_order.front(), self.heap.first()) {
            (Some(a), Some(b)) => order(b) < order(a),
            (None, Some(_)) => true,
            _ => false,
        }
    }

    /// The first run by [`group_order`].
    fn head(&self, order: &impl Fn(&Run) -> u64) -> Option<&Run> {
        if self.head_in_heap(order) {
            self.heap.first()
        } else {
            self.in_order.front()
        }
    }

    fn pop(&mut self, order: &impl Fn(&Run) -> u64) -> Option<Run> {
        if self.head_in_heap(order) {
            heap::poll(&mut self.heap, order)
        } else {
            self.in_order.pop_front()
        }
    }

    /// Moves every run to `out` (the group keeps its allocations).
    fn drain_into(&mut self, out: &mut Vec<Run>) {
        out.extend(self.in_order.drain(..));
        out.append(&mut self.heap);
    }

    fn retain(&mut self, mut keep: impl FnMut(&Run) -> bool, order: &impl Fn(&Run) -> u64) {
        self.in_order.retain(|r| keep(r));
        heap::remove_where(&mut self.heap, |r| !keep(r), order);
    }

    fn is_ordered(&self, order: &impl Fn(&Run) -> u64) -> bool {
        let queue_sorted = (self.in_order.iter().zip(self.in_order.iter().skip(1)))
            .all(|(a, b)| order(a) <= order(b));
        queue_sorted && heap::is_heap(&self.heap, order)
    }
}

/// [`Matcher`]'s state bits when they are not known (or a state is past bit 62).
const UNKNOWN_STATES: u64 = u64::MAX;

fn unknown_states() -> u64 {
    UNKNOWN_STATES
}

/// Buffers reused from event to event (and shared by all partitions of a shard) so the hot
/// path neither allocates nor grows each partition's footprint.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    event_cache: CondCache,
    /// The runs being offered an event or a time, swapped out of the matcher while it
    /// collects what follows them in their place.
    /// (On the heap: moving it in and out is a pointer, not two inline runs.)
    current: Vec<Run>,
    /// Runs completed by this event or time, as Flink's queue of potential matches.
    potential: Vec<Run>,
    /// The runs of a group being offered an event (grouped layout).
    visiting: Vec<Run>,
}

/// The key runs are ordered by, as Flink's comparator orders computation states: by start
/// event (sequence numbers follow Flink's (timestamp, id) order); the start run last.
#[inline]
fn by_start(r: &Run) -> u64 {
    r.start_seq
}

struct View<'a> {
    buffer: &'a SharedBuffer,
    node: u32,
    nfa: &'a Nfa,
}

impl PartialMatch for View<'_> {
    fn events_of(&self, var: &str) -> Vec<&Event> {
        match self.nfa.variables.iter().position(|v| v == var) {
            Some(i) => self.buffer.events_of(self.node, i),
            None => Vec::new(),
        }
    }
}

impl Matcher {
    /// A matcher with only the start run (or the compact matcher's empty state).
    pub fn new(nfa: &Nfa) -> Matcher {
        // The compact matcher keeps its chains instead of runs (not even the start run).
        let compact = nfa.compact.as_ref().ok().map(|plan| Box::new(Compact::new(plan)));
        let mut m = Matcher {
            waiting: UNKNOWN_STATES,
            next_due: None,
            due_known: false,
            next_seq: 0,
            runs: if compact.is_some() {
                Vec::new()
            } else {
                vec![Run::start(nfa)]
            },
            completed: Vec::new(),
            max_runs: DEFAULT_MAX_RUNS,
            dropped: 0,
            buffer: SharedBuffer::new(),
            last_time: i64::MIN,
            groups: None,
            compact,
        };
        if m.compact.is_none() {
            m.note_states(nfa);
        }
        m
    }

    /// Returns an idle matcher to its initial state, keeping its allocations (for reuse by
    /// another partition).
    pub fn reset(&mut self, nfa: &Nfa) {
        if let Some(c) = self.compact.as_deref_mut() {
            c.reset();
            self.dropped = 0;
            self.last_time = i64::MIN;
            return;
        }
        if self.is_idle() {
            // Only the start run, as it was made (it takes nothing itself): nothing to redo.
            self.next_seq = 0;
            self.dropped = 0;
            self.last_time = i64::MIN;
            return;
        }
        let mut grouped = Vec::new();
        for mut group in self.groups.take().map(|g| g.by_state).unwrap_or_default() {
            group.drain_into(&mut grouped);
        }
        for r in (self.runs.drain(..))
            .chain(self.completed.drain(..))
            .chain(grouped)
        {
            self.buffer.release(r.node);
        }
        self.runs.push(Run::start(nfa));
        self.next_seq = 0;
        self.dropped = 0;
        self.last_time = i64::MIN;
        self.note_states(nfa);
    }

    /// Records which states the runs are in, for [`Matcher::skips`], and when the first of
    /// them times out.
    fn note_states(&mut self, nfa: &Nfa) {
        if let Some(groups) = &self.groups {
            (self.waiting, self.next_due) = groups.states_and_due(nfa);
            self.due_known = true;
            return;
        }
        let mut bits = 0u64;
        for r in &self.runs {
            if r.state >= 63 {
                bits = UNKNOWN_STATES;
                break;
            }
            bits |= 1 << r.state;
        }
        self.waiting = bits;
        self.next_due = if nfa.step_windows {
            self.runs.iter().filter_map(|r| deadline(nfa, r)).min()
        } else {
            // Only the pattern's window: the earliest deadline is the earliest start's, and
            // the heap's head is the run that started first (events come in time order, so
            // start times grow with start sequence numbers); the start run sorts last.
            self.runs.first().and_then(|r| deadline(nfa, r))
        };
        self.due_known = true;
    }

    /// The states the runs are in, one bit each (all bits set: not known), for
    /// [`crate::nfa::skip::SkipTests::skips_all`]: when every run surely stays where it is on
    /// an event and no time-out is due (see [`Matcher::next_deadline`]), the event need not be
    /// offered at all. (Skipping it uses up no sequence number; numbers are only compared.)
    #[inline]
    pub fn waiting_states(&self) -> u64 {
        self.waiting
    }

    /// Caps the partial matches of this partition. When an event leaves more, the runs that
    /// started earliest are dropped (they are the closest to timing out) and counted in
    /// [`Matcher::dropped_runs`]; memory stays bounded whatever the pattern and input.
    /// (The cap is kept below `usize::MAX`, which the check of the cap would overflow.)
    pub fn set_max_runs(&mut self, max: usize) {
        self.max_runs = max.clamp(1, usize::MAX - 1);
    }

    /// Partial matches dropped because of the cap.
    pub fn dropped_runs(&self) -> u64 {
        self.dropped
    }

    /// [`Matcher::enforce_cap`] in the grouped layout.
    #[inline(never)]
    fn enforce_cap_grouped(&mut self, nfa: &Nfa) {
        if let Some(groups) = self.groups.as_deref_mut() {
            let excess = groups.len().saturating_sub(self.max_runs + 1);
            for _ in 0..excess {
                // Oldest first; the start run (NO_START) sorts last and is never dropped.
                match groups.pop_oldest(nfa) {
                    Some(run) => self.buffer.release(run.node),
                    None => break,
                }
                self.dropped += 1;
            }
        }
    }

    fn enforce_cap(&mut self) {
        if self.runs.len() <= self.max_runs + 1 {
            return;
        }
        let excess = self.runs.len() - (self.max_runs + 1);
        // Oldest first; the start run (NO_START) sorts last and is never dropped.
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by_key(|&i| self.runs[i].start_seq);
        let mut drop = vec![false; self.runs.len()];
        for &i in order.iter().take(excess) {
            drop[i] = true;
            self.buffer.release(self.runs[i].node);
        }
        let mut i = 0;
        heap::remove_where(
            &mut self.runs,
            |_| {
                let gone = drop[i];
                i += 1;
                gone
            },
            by_start,
        );
        self.dropped += excess as u64;
    }

    /// Whether nothing is pending: only the start run, no buffered completed matches. Such a
    /// partition can be dropped and recreated later with no change in results.
    pub fn is_idle(&self) -> bool {
        let list_idle = self.completed.is_empty()
            && self.groups.is_none()
            && self.runs.len() == 1
            && self.runs[0].start_seq == NO_START
            && self.buffer.live_nodes() == 0;
        // The compact matcher holds no runs (not even the start run).
        list_idle || self.compact.as_ref().is_some_and(|c| c.is_empty())
    }

    /// Calls `f` on every event the matcher holds.
    pub fn for_each_event_mut(&mut self, f: &mut dyn FnMut(&mut Event)) {
        if let Some(c) = self.compact.as_deref_mut() {
            c.for_each_event_mut(f);
        }
        self.buffer.for_each_event_mut(f);
    }

    /// Number of partial matches (runs that have taken at least one event). The compact
    /// matcher counts those its chains of events hold (in time linear in its events).
    pub fn partial_matches(&self) -> usize {
        if let Some(c) = &self.compact {
            return c.waiting_partial_matches();
        }
        if let Some(groups) = &self.groups {
            // Exactly one of them is the start run (checked on restore).
            return groups.len().saturating_sub(1);
        }
        self.runs.iter().filter(|r| r.start_seq != NO_START).count()
    }

    /// The earliest time at which [`Matcher::advance_time`] would time a run out.
    /// (Noted after every change of the runs; after runs were dropped it may be earlier
    /// than the truth: a timer set for it finds nothing due and asks again.)
    pub fn next_deadline(&self, nfa: &Nfa) -> Option<i64> {
        if self.due_known {
            // (Never known for the compact matcher.)
            return self.next_due;
        }
        if let Some(c) = &self.compact {
            return c.next_deadline(nfa.window);
        }
        self.all_runs().filter_map(|r| deadline(nfa, r)).min()
    }

    /// Times out runs whose window has passed at `time` (Flink's `advanceTime`): their partial
    /// matches go to `timeouts` when `handle_timeouts`; Pending runs (trailing
    /// `notFollowedBy`) complete and go to `matches`.
    #[allow(clippy::too_many_arguments)]
    pub fn advance_time(
        &mut self,
        nfa: &Nfa,
        scratch: &mut Scratch,
        time: i64,
        handle_timeouts: bool,
        matches: &mut Vec<Match>,
        timeouts: &mut Vec<Match>,
    ) {
        if self.compact.is_some() {
            self.advance_compact(nfa, time, handle_timeouts, timeouts);
            return;
        }
        if self.due_known && self.next_due.is_none_or(|due| time < due) {
            // Nothing times out: Flink's rebuilding of its queue in array order would give
            // the same array, and no completed match waits on a run that could go.
            return;
        }
        if self.groups.is_some() {
            self.advance_grouped(nfa, scratch, time, handle_timeouts, matches, timeouts);
            return;
        }
        let mut runs = std::mem::take(&mut scratch.current);
        std::mem::swap(&mut runs, &mut self.runs);
        // The scratch vector comes back drained; clearing keeps that true whatever happened.
        self.runs.clear();
        let mut potential = std::mem::take(&mut scratch.potential);
        for run in runs.drain(..) {
            let state = &nfa.states[run.state];
            if state.is_start {
                heap::push(&mut self.runs, run, by_start);
                continue;
            }
            let Some(at) = timed_out_at(nfa, &run, time) else {
                heap::push(&mut self.runs, run, by_start);
                continue;
            };
            if state.kind == StateKind::Pending {
                heap::push(&mut potential, run, by_start);
                continue;
            }
            if handle_timeouts {
                let path = self.buffer.extract(run.node);
                timeouts.push(materialize(&self.buffer, &path, Some(at)));
            }
            self.buffer.release(run.node);
        }
        scratch.current = runs;
        self.emit_completed(nfa, &mut potential, matches);
        scratch.potential = potential;
        self.regroup(nfa);
        self.note_states(nfa);
    }

    /// [`Matcher::advance_time`] before an event at `time`, as Flink's operator does before
    /// the first event of each timestamp: nothing when an event at `time` (or later) was
    /// already offered. Flink never expires partial matches between two events of one
    /// timestamp: a run that an event at `t` moves into a waiting state whose window has
    /// passed (a pending `notFollowedBy`, say) is still there for the next event at `t`.
    #[allow(clippy::too_many_arguments)]
    pub fn advance_before_event(
        &mut self,
        nfa: &Nfa,
        scratch: &mut Scratch,
        time: i64,
        handle_timeouts: bool,
        matches: &mut Vec<Match>,
        timeouts: &mut Vec<Match>,
    ) {
        if time > self.last_time {
            self.advance_time(nfa, scratch, time, handle_timeouts, matches, timeouts);
        }
    }

    /// [`Matcher::advance_time`] to a watermark `wm`: nothing when an event after `wm` was
    /// already offered (fed at once, one past the watermark). Flink reaches such a
    /// watermark before that event: what it expires was expired before the event, and what
    /// the event moved into a passed window waits for a later time.
    #[allow(clippy::too_many_arguments)]
    pub fn advance_to_watermark(
        &mut self,
        nfa: &Nfa,
        scratch: &mut Scratch,
        wm: i64,
        handle_timeouts: bool,
        matches: &mut Vec<Match>,
        timeouts: &mut Vec<Match>,
    ) {
        if wm >= self.last_time {
            self.advance_time(nfa, scratch, wm, handle_timeouts, matches, timeouts);
        }
    }

    /// Offers one event to every run (Flink's `process`); completed matches go to `matches`.
    /// Events must come in time order; call [`Matcher::advance_time`] with the event's time
    /// first, as Flink's operator does.
    pub fn process(
        &mut self,
        nfa: &Nfa,
        scratch: &mut Scratch,
        event: Event,
        matches: &mut Vec<Match>,
    ) {
        self.last_time = event.time;
        if self.compact.is_some() {
            self.process_compact(nfa, event, matches);
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        // The event gets a buffer slot only when some run takes it.
        let mut eid: Option<u32> = None;
        let sc = scratch;
        sc.event_cache = CondCache::default();
        if self.groups.is_some() {
            self.process_grouped(nfa, sc, event, seq, matches);
            return;
        }
        if nfa.ignore_loops && self.ignores_in_place(nfa, &event, &mut sc.event_cache) {
            // Every run stays as it is: the event changes nothing (its number is used up, as
            // in the general case).
            return;
        }
        let mut current = std::mem::take(&mut sc.current);
        std::mem::swap(&mut current, &mut self.runs);
        // The scratch vector comes back drained; clearing keeps that true whatever happened.
        self.runs.clear();
        let buffer = &mut self.buffer;
        let offer = Offer {
            nfa,
            event: &event,
            seq,
        };
        for run in current.drain(..) {
            if nfa.skip_tests.skips(run.state, &event) {
                // The run surely stays as it is (see `crate::nfa::skip`), where its IGNORE
                // loop (or, for the start run, starting nothing) would leave it.
                heap::push(&mut self.runs, run, by_start);
                continue;
            }
            // A run's successors are appended, then sifted into the heap.
            let first_retained = self.runs.len();
            offer.to_run(run, buffer, &mut eid, sc, &mut self.runs);
            for k in first_retained..self.runs.len() {
                heap::sift_up(&mut self.runs, k, by_start);
            }
        }
        sc.current = current;
        if let Some(eid) = eid {
            let mut event = event;
            if !nfa.keep_event_fields {
                // Dropped now while warm, not when the partial match ends.
                event.fields = Box::default();
            }
            self.buffer.fill_event(eid, event);
        }
        self.enforce_cap();
        if !(sc.potential.is_empty() && self.completed.is_empty()) {
            let mut potential = std::mem::take(&mut sc.potential);
            self.emit_completed(nfa, &mut potential, matches);
            sc.potential = potential;
        }
        self.regroup(nfa);
        self.note_states(nfa);
    }

    /// [`Matcher::process`] on the compact matcher (out of line: the list's path stays as
    /// it was).
    #[inline(never)]
    fn process_compact(&mut self, nfa: &Nfa, event: Event, matches: &mut Vec<Match>) {
        if let (Some(c), Ok(plan)) = (self.compact.as_deref_mut(), &nfa.compact) {
            c.process(nfa, plan, event, self.max_runs, &mut self.dropped, matches);
        }
    }

    /// [`Matcher::advance_time`] on the compact matcher.
    #[inline(never)]
    fn advance_compact(&mut self, nfa: &Nfa, time: i64, report: bool, timeouts: &mut Vec<Match>) {
        if let (Some(c), Ok(plan)) = (self.compact.as_deref_mut(), &nfa.compact) {
            c.advance_time(nfa, plan, time, report, timeouts);
        }
    }

    /// Whether `event` leaves every run exactly as it is: the start run takes nothing (no TAKE
    /// or PROCEED edge of the start state holds) and each other run has only its IGNORE loop
    /// back to its own state holding. Then [`Matcher::process`] would rebuild the same runs,
    /// so it skips the rebuilding (the common case of an event a waiting run skips over).
    fn ignores_in_place(&self, nfa: &Nfa, event: &Event, event_cache: &mut CondCache) -> bool {
        for run in &self.runs {
            let state = &nfa.states[run.state];
            let view = View {
                buffer: &self.buffer,
                node: run.node,
                nfa,
            };
            let mut eval = Eval::new(nfa, event, run, &view, &mut *event_cache);
            // The start run stays whatever holds; any other run only through its loop.
            let mut stays = state.is_start;
            for e in &state.edges {
                let in_place = match e.action {
                    Action::Ignore => state.is_start || e.target == run.state,
                    Action::Take | Action::Proceed => false,
                };
                if in_place {
                    if !stays && eval.holds(&e.guard) {
                        stays = true;
                    }
                } else if eval.holds(&e.guard) {
                    return false;
                }
            }
            if !stays {
                return false;
            }
        }
        true
    }

    /// Moves newly completed runs through the skip strategy and emits those that may go out:
    /// with a skip strategy, a match waits while a partial match that started earlier could
    /// still complete (Flink's `processMatchesAccordingToSkipStrategy`).
    ///
    /// The completed matches come out as Flink's queue gives them: the earliest start event
    /// first and, among matches with the same start, in the order the heap's array holds
    /// them (see [`heap`]), pruning after each.
    fn emit_completed(&mut self, nfa: &Nfa, potential: &mut Vec<Run>, out: &mut Vec<Match>) {
        if nfa.skip == Skip::NoSkip && self.groups.is_some() && self.completed.is_empty() {
            // Nothing waits without a skip strategy, and in the grouped layout the order of
            // matches with the same first event is not Flink's anyway: one stable sort by
            // first event (the groups give them mostly sorted) instead of a heap.
            potential.sort_by_key(by_start);
            for m in potential.drain(..) {
                let path = self.buffer.extract(m.node);
                self.emit(m, &path, out);
            }
            return;
        }
        // Flink's `completedMatches.addAll(potentialMatches)`: in the potential heap's order.
        for r in potential.drain(..) {
            heap::push(&mut self.completed, r, by_start);
        }
        while let Some(first) = self.completed.first() {
            // The runs' head is the earliest partial match (the start run, which is always
            // there, sorts last).
            if nfa.skip != Skip::NoSkip
                && self
                    .earliest_start(nfa)
                    .is_some_and(|p| first.start_seq > p)
            {
                break;
            }
            let Some(m) = heap::poll(&mut self.completed, by_start) else {
                break;
            };
            let path = self.buffer.extract(m.node);
            if let Some(pruning) = pruning_id(nfa.skip, &path) {
                self.prune(nfa, pruning);
            }
            self.emit(m, &path, out);
        }
    }

    /// Emits a completed run (`path` is its path) and frees what only it held.
    fn emit(&mut self, m: Run, path: &[PathStep], out: &mut Vec<Match>) {
        out.push(materialize(&self.buffer, path, None));
        self.buffer.release(m.node);
    }

    fn prune(&mut self, nfa: &Nfa, p: Pruning) {
        let buffer = &mut self.buffer;
        let mut keep = |r: &Run| {
            let drop = r.start_seq != NO_START
                && match p {
                    Pruning::AtOrBefore(id) => r.start_seq <= id,
                    Pruning::Before(id) => r.start_seq < id,
                };
            if drop {
                buffer.release(r.node);
            }
            !drop
        };
        // Flink's `removeAll` on both queues: survivors keep their order, then heapify.
        heap::remove_where(&mut self.runs, |r| !keep(r), by_start);
        heap::remove_where(&mut self.completed, |r| !keep(r), by_start);
        if let Some(groups) = self.groups.as_deref_mut() {
            let order = group_order(nfa);
            for group in &mut groups.by_state {
                if nfa.step_windows {
                    group.retain(&mut keep, &order);
                } else {
                    // By start event: what goes is at the head.
                    while group.head(&order).is_some_and(|r| !keep(r)) {
                        group.pop(&order);
                    }
                }
            }
        }
    }

    /// The start event of the earliest partial match (the start run's [`NO_START`] when it
    /// is the only run).
    fn earliest_start(&self, nfa: &Nfa) -> Option<u64> {
        match &self.groups {
            // Heads are the earliest starts unless groups are ordered by deadline.
            Some(groups) if !nfa.step_windows => (groups.by_state.iter())
                .filter_map(|g| g.head(&by_start))
                .map(by_start)
                .min(),
            Some(groups) => groups.by_state.iter().flat_map(Group::iter).map(by_start).min(),
            None => self.runs.first().map(by_start),
        }
    }

    /// Every partial match (the start run included), in either layout.
    fn all_runs(&self) -> impl Iterator<Item = &Run> {
        let grouped = self.groups.as_deref().map(|g| &g.by_state[..]).unwrap_or(&[]);
        self.runs.iter().chain(grouped.iter().flat_map(Group::iter))
    }

}

/// The grouped layout ([`Groups`]).
impl Matcher {
    /// Switches between the layouts: to groups when the runs outgrow the pattern's
    /// threshold, back to the list when fewer than half of it remain. For a pattern that
    /// may group, the order of runs with the same start event decides nothing, so the list
    /// is rebuilt sorted by start event (a sorted array is a heap).
    #[inline]
    fn regroup(&mut self, nfa: &Nfa) {
        let Some(at) = nfa.group_runs_at else {
            return;
        };
        if self.groups.is_some() || self.runs.len() > at {
            self.regroup_now(nfa, at);
        }
    }

    #[inline(never)]
    fn regroup_now(&mut self, nfa: &Nfa, at: usize) {
        match &mut self.groups {
            None if self.runs.len() > at => {
                let mut groups = Groups {
                    by_state: vec![Group::default(); nfa.states.len()],
                };
                for run in self.runs.drain(..) {
                    groups.push(nfa, run);
                }
                self.groups = Some(Box::new(groups));
            }
            Some(groups) if groups.len() < at / 2 => {
                self.runs.clear();
                for group in &mut groups.by_state {
                    group.drain_into(&mut self.runs);
                }
                self.runs.sort_by_key(by_start);
                self.groups = None;
            }
            _ => {}
        }
    }

    /// [`Matcher::process`] in the grouped layout: each state's group is offered the event
    /// only when the state's tests say it may move a run there; the runs that follow are
    /// placed in their groups once every group has seen the event.
    fn process_grouped(
        &mut self,
        nfa: &Nfa,
        sc: &mut Scratch,
        event: Event,
        seq: u64,
        matches: &mut Vec<Match>,
    ) {
        let Some(mut groups) = self.groups.take() else {
            return;
        };
        let mut eid: Option<u32> = None;
        let mut fresh = std::mem::take(&mut sc.current);
        fresh.clear();
        let mut runs = std::mem::take(&mut sc.visiting);
        runs.clear();
        let offer = Offer {
            nfa,
            event: &event,
            seq,
        };
        for state in 0..groups.by_state.len() {
            if groups.by_state[state].is_empty() || nfa.skip_tests.skips(state, &event) {
                continue;
            }
            groups.by_state[state].drain_into(&mut runs);
            for run in runs.drain(..) {
                offer.to_run(run, &mut self.buffer, &mut eid, sc, &mut fresh);
            }
        }
        for run in fresh.drain(..) {
            groups.push(nfa, run);
        }
        sc.current = fresh;
        sc.visiting = runs;
        self.groups = Some(groups);
        if let Some(eid) = eid {
            let mut event = event;
            if !nfa.keep_event_fields {
                event.fields = Box::default();
            }
            self.buffer.fill_event(eid, event);
        }
        self.enforce_cap_grouped(nfa);
        if !(sc.potential.is_empty() && self.completed.is_empty()) {
            let mut potential = std::mem::take(&mut sc.potential);
            self.emit_completed(nfa, &mut potential, matches);
            sc.potential = potential;
        }
        self.regroup(nfa);
        self.note_states(nfa);
    }

    /// [`Matcher::advance_time`] in the grouped layout: the runs that time out are at the
    /// heads of the groups ([`group_order`]).
    fn advance_grouped(
        &mut self,
        nfa: &Nfa,
        scratch: &mut Scratch,
        time: i64,
        handle_timeouts: bool,
        matches: &mut Vec<Match>,
        timeouts: &mut Vec<Match>,
    ) {
        let Some(mut groups) = self.groups.take() else {
            return;
        };
        let mut potential = std::mem::take(&mut scratch.potential);
        let order = group_order(nfa);
        for group in &mut groups.by_state {
            // The head is the first of its group to time out.
            while let Some(at) = (group.head(&order)).and_then(|head| timed_out_at(nfa, head, time))
            {
                let Some(run) = group.pop(&order) else {
                    break;
                };
                if nfa.states[run.state].kind == StateKind::Pending {
                    heap::push(&mut potential, run, by_start);
                    continue;
                }
                if handle_timeouts {
                    let path = self.buffer.extract(run.node);
                    timeouts.push(materialize(&self.buffer, &path, Some(at)));
                }
                self.buffer.release(run.node);
            }
        }
        self.groups = Some(groups);
        self.emit_completed(nfa, &mut potential, matches);
        scratch.potential = potential;
        self.regroup(nfa);
        self.note_states(nfa);
    }
}

impl Groups {
    /// The number of runs in all groups, the start run included.
    fn len(&self) -> usize {
        self.by_state.iter().map(Group::len).sum()
    }

    /// Adds a run to its state's group.
    fn push(&mut self, nfa: &Nfa, run: Run) {
        if let Some(group) = self.by_state.get_mut(run.state) {
            group.push(run, &group_order(nfa));
        }
    }

    /// Removes the partial match that started first (never the start run).
    fn pop_oldest(&mut self, nfa: &Nfa) -> Option<Run> {
        let order = group_order(nfa);
        if !nfa.step_windows {
            // The heads are the earliest starts.
            let oldest = (self.by_state.iter().enumerate())
                .filter_map(|(s, g)| g.head(&order).map(|r| (r.start_seq, s)))
                .filter(|(seq, _)| *seq != NO_START)
                .min()?
                .1;
            return self.by_state[oldest].pop(&order);
        }
        // Ordered by deadline: look through them all (this is for the cap, rarely reached).
        let (oldest, state) = (self.by_state.iter().enumerate())
            .flat_map(|(s, g)| g.iter().map(move |r| (r.start_seq, s)))
            .filter(|(seq, _)| *seq != NO_START)
            .min()?;
        let mut taken = None;
        self.by_state[state].retain(
            |r| {
                let this = taken.is_none() && r.start_seq == oldest;
                if this {
                    taken = Some(r.clone());
                }
                !this
            },
            &order,
        );
        taken
    }

    /// The states with runs, one bit each (all bits set past bit 62), and the earliest
    /// deadline: a group's head is the first of its runs to time out.
    fn states_and_due(&self, nfa: &Nfa) -> (u64, Option<i64>) {
        let mut bits = 0u64;
        let mut due: Option<i64> = None;
        let order = group_order(nfa);
        for (state, group) in self.by_state.iter().enumerate() {
            let Some(head) = group.head(&order) else {
                continue;
            };
            bits = if state >= 63 {
                UNKNOWN_STATES
            } else {
                bits | (1 << state)
            };
            if let Some(d) = deadline(nfa, head) {
                due = Some(due.map_or(d, |x| x.min(d)));
            }
        }
        (bits, due)
    }
}

/// Checking a restored matcher (see [`crate::nfa::validate`]).
impl Matcher {
    /// Checks that this matcher, typically just deserialised from a checkpoint, is
    /// consistent with `nfa`, the pattern it is to run with: after `Ok`, none of its
    /// operations ([`Matcher::process`], [`Matcher::advance_time`], the emitting of matches,
    /// the dropping of runs, [`Matcher::reset`], ...) can panic, overflow or loop for ever
    /// on the restored state, and every count it keeps is the true one.
    ///
    /// Besides what [`SharedBuffer::validate`] checks of the buffer:
    ///
    /// - the cap on runs is in `1..usize::MAX` (the cap check adds one to it), and the
    ///   event and dropped-run counters are at most [`COUNTER_LIMIT`] (they cannot overflow);
    /// - every run is in a state of `nfa`, of a kind its list holds: a partial match in a
    ///   Normal or Pending state, a completed run in a Final or Pending one;
    /// - exactly one run is in the start state (it is never dropped); it has taken nothing
    ///   (no node, no start sequence number), and every run elsewhere has taken an event;
    /// - a run's start sequence number and start time are those of the first event of its
    ///   path, its previous-event time that of the last;
    /// - a run has one accumulator per aggregate of `nfa`, of its function, and agreeing
    ///   with the events of the aggregated variable on the run's path: empty when there is
    ///   none, a `count` equal to them, an `avg` over at most them, a `first` set;
    /// - every node is of a variable some (non-Stop) state of `nfa` takes events for.
    ///
    /// The check takes time and memory linear in the size of the state (the buffer's tables
    /// times the pattern's aggregates, plus the runs); it is meant for restoring, not for the
    /// event path.
    pub fn validate(&self, nfa: &Nfa) -> Result<(), InvalidState> {
        if self.max_runs == 0 || self.max_runs == usize::MAX {
            return Err(InvalidState::MaxRuns { max: self.max_runs });
        }
        for (counter, value) in [
            ("next event sequence number", self.next_seq),
            ("dropped-run count", self.dropped),
        ] {
            if value > COUNTER_LIMIT {
                return Err(InvalidState::CounterTooLarge { counter, value });
            }
        }
        match (&self.compact, &nfa.compact) {
            (Some(c), Ok(plan)) => {
                if !(self.runs.is_empty() && self.completed.is_empty() && self.groups.is_none())
                    || self.buffer.live_nodes() > 0
                {
                    return Err(InvalidState::Compact {
                        what: "it holds runs besides its chains",
                    });
                }
                return c.validate(plan);
            }
            (Some(_), Err(_)) => {
                return Err(InvalidState::Compact {
                    what: "it is the compact matcher's, and the pattern runs on the list matcher",
                })
            }
            (None, Ok(_)) => {
                return Err(InvalidState::Compact {
                    what: "it is the list matcher's, and the pattern runs on the compact matcher",
                })
            }
            (None, Err(_)) => {}
        }

        self.validate_groups(nfa)?;
        let all_runs = || {
            let at = |completed| move |(index, run)| (RunRef { completed, index }, run);
            // Grouped runs are numbered after the list's (which is then empty).
            (self.all_runs().enumerate().map(at(false)))
                .chain(self.completed.iter().enumerate().map(at(true)))
        };
        let mut start_run: Option<usize> = None;
        for (at, run) in all_runs() {
            let Some(state) = nfa.states.get(run.state) else {
                return Err(InvalidState::StateOutOfRange {
                    run: at,
                    state: run.state,
                    states: nfa.states.len(),
                });
            };
            let kind_fits = match state.kind {
                StateKind::Normal => !at.completed,
                StateKind::Final => at.completed,
                StateKind::Pending => true,
                StateKind::Stop => false,
            };
            if !kind_fits {
                return Err(InvalidState::WrongStateKind {
                    run: at,
                    state: run.state,
                    kind: state.kind,
                });
            }
            if state.is_start {
                // Normal, hence a partial match.
                if let Some(first) = start_run {
                    return Err(InvalidState::TwoStartRuns {
                        first,
                        second: at.index,
                    });
                }
                start_run = Some(at.index);
                if run.node != NIL {
                    return Err(InvalidState::StartRunWithPath {
                        run: at,
                        node: run.node,
                    });
                }
                if run.start_seq != NO_START {
                    return Err(InvalidState::StartRunStarted {
                        run: at,
                        start_seq: run.start_seq,
                    });
                }
            } else if run.node == NIL {
                return Err(InvalidState::RunWithoutPath {
                    run: at,
                    state: run.state,
                });
            }
            if run.aggs.len() != nfa.aggs.len() {
                return Err(InvalidState::AggCount {
                    run: at,
                    found: run.aggs.len(),
                    expected: nfa.aggs.len(),
                });
            }
            for (agg, (acc, spec)) in run.aggs.iter().zip(&nfa.aggs).enumerate() {
                let empty = AggAcc::empty(spec.func);
                if std::mem::discriminant(acc) != std::mem::discriminant(&empty) {
                    return Err(InvalidState::AggKind {
                        run: at,
                        agg,
                        func: spec.func.name(),
                    });
                }
            }
        }

        if start_run.is_none() {
            return Err(InvalidState::NoStartRun);
        }

        // Nodes are made by TAKE edges, of the taking state's variable; those of Stop states
        // are released at once.
        let mut taken_vars = vec![false; nfa.variables.len()];
        for s in &nfa.states {
            let takes = s.edges.iter().any(|e| e.action == Action::Take);
            if let (true, Some(v)) = (takes && s.kind != StateKind::Stop, s.var) {
                if let Some(t) = taken_vars.get_mut(v) {
                    *t = true;
                }
            }
        }
        let holders: Vec<(RunRef, u32)> = all_runs().map(|(at, r)| (at, r.node)).collect();
        let agg_vars: Vec<usize> = nfa.aggs.iter().map(|a| a.var).collect();
        let facts = self.buffer.validate(&Expected {
            taken_vars: &taken_vars,
            next_seq: self.next_seq,
            holders: &holders,
            agg_vars: &agg_vars,
        })?;

        for (at, run) in all_runs() {
            if run.node != NIL {
                let (first_seq, first_ts) = facts.first_event(run.node);
                if run.start_seq != first_seq {
                    return Err(InvalidState::StartSeqMismatch {
                        run: at,
                        start_seq: run.start_seq,
                        first_seq,
                    });
                }
                if run.start_ts != first_ts {
                    return Err(InvalidState::StartTimeMismatch {
                        run: at,
                        start_ts: run.start_ts,
                        first_ts,
                    });
                }
                let last_ts = facts.last_time(run.node);
                if run.prev_ts != last_ts {
                    return Err(InvalidState::PrevTimeMismatch {
                        run: at,
                        prev_ts: run.prev_ts,
                        last_ts,
                    });
                }
            }
            for (agg, (acc, spec)) in run.aggs.iter().zip(&nfa.aggs).enumerate() {
                let on_path = u64::from(facts.events_of(run.node, agg));
                let mismatch = |counted| InvalidState::AggEventsMismatch {
                    run: at,
                    agg,
                    var: spec.var,
                    counted,
                    on_path,
                };
                if on_path == 0 {
                    if *acc != AggAcc::empty(spec.func) {
                        return Err(InvalidState::AggNotEmpty {
                            run: at,
                            agg,
                            var: spec.var,
                        });
                    }
                    continue;
                }
                match acc {
                    AggAcc::Count(n) if *n != on_path => return Err(mismatch(*n)),
                    AggAcc::Avg { n, .. } if *n > on_path => return Err(mismatch(*n)),
                    AggAcc::First(None) => return Err(mismatch(0)),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl Matcher {
    /// The checks of the grouped layout: allowed for the pattern, the list empty, one group
    /// per state, each run in its state's group, each group in order.
    fn validate_groups(&self, nfa: &Nfa) -> Result<(), InvalidState> {
        let Some(groups) = &self.groups else {
            return Ok(());
        };
        let fail = |what| Err(InvalidState::Groups { what });
        if nfa.group_runs_at.is_none() {
            return fail("this pattern keeps its runs in Flink's order, not grouped");
        }
        if !self.runs.is_empty() {
            return fail("runs are both grouped and listed");
        }
        if groups.by_state.len() != nfa.states.len() {
            return fail("the number of groups is not the number of states");
        }
        for (state, group) in groups.by_state.iter().enumerate() {
            if group.iter().any(|r| r.state != state) {
                return fail("a run is in the group of another state");
            }
            if !group.is_ordered(&group_order(nfa)) {
                return fail("a group is not in order (a sorted queue and a heap)");
            }
        }
        Ok(())
    }
}

/// The match a path of `buffer` stands for.
fn materialize(buffer: &SharedBuffer, path: &[PathStep], timed_out: Option<i64>) -> Match {
    Match {
        events: path
            .iter()
            .filter_map(|s| {
                buffer.event(s.event).map(|e| MatchedEvent {
                    var: s.var,
                    time: e.time,
                    raw: Arc::clone(&e.raw),
                    // Empty (no allocation) unless the pattern keeps its events' fields.
                    fields: e.fields.clone(),
                })
            })
            .collect(),
        timed_out,
    }
}

/// The runs that follow `run` on `event` (the start run itself excepted: the caller keeps
/// it), in Flink's order.
#[allow(clippy::too_many_arguments)]
fn next_runs(
    nfa: &Nfa,
    buffer: &mut SharedBuffer,
    run: &Run,
    event: &Event,
    seq: u64,
    eid: &mut Option<u32>,
    event_cache: &mut CondCache,
    outs: &mut Successors,
) {
    let view = View {
        buffer: &*buffer,
        node: run.node,
        nfa,
    };
    let mut eval = Eval::new(nfa, event, run, &view, event_cache);

    // The decision graph: follow PROCEED edges whose guards hold; collect TAKE and IGNORE
    // edges whose guards hold, with the state they leave from and, for a TAKE, the Final
    // state its target reaches through PROCEED edges right away, if any (judged with the
    // run as it was before taking, as Flink does).
    let mut edges: SmallVec<[Followed; 8]> = SmallVec::new();
    if nfa.proceed_cycles {
        follow_without_cycles(nfa, &mut eval, run.state, &mut edges);
    } else {
        let mut collect = |eval: &mut Eval, s: StateId, stack: &mut SmallVec<[StateId; 8]>| {
            for (i, e) in nfa.states[s].edges.iter().enumerate() {
                if eval.holds(&e.guard) {
                    match e.action {
                        Action::Proceed => stack.push(e.target),
                        Action::Ignore | Action::Take => edges.push(followed(eval, s, i, e)),
                    }
                }
            }
        };
        let mut stack: SmallVec<[StateId; 8]> = SmallVec::new();
        collect(&mut eval, run.state, &mut stack);
        let mut expansions = 1;
        while let Some(s) = stack.pop() {
            expansions += 1;
            if expansions > MAX_PROCEED_EXPANSIONS {
                break;
            }
            collect(&mut eval, s, &mut stack);
        }
    }

    let is_start = nfa.states[run.state].is_start;
    for f in &edges {
        let e = &nfa.states[f.state].edges[f.edge];
        match e.action {
            Action::Ignore => {
                if !is_start {
                    buffer.lock(run.node);
                    outs.push(
                        nfa,
                        buffer,
                        Run {
                            state: e.target,
                            node: run.node,
                            ..run.clone()
                        },
                    );
                }
            }
            Action::Take => {
                let var = nfa.states[f.state].var.unwrap_or(usize::MAX);
                let id = match *eid {
                    Some(id) => id,
                    None => {
                        let id = buffer.reserve_event(seq);
                        *eid = Some(id);
                        id
                    }
                };
                let node = buffer.put(var, id, run.node);
                let (start_ts, start_seq) = if is_start {
                    (event.time, seq)
                } else {
                    (run.start_ts, run.start_seq)
                };
                let mut aggs = copy_aggs(&run.aggs);
                for (acc, spec) in aggs.iter_mut().zip(&nfa.aggs) {
                    if spec.var == var {
                        match spec.slot {
                            Some(slot) => acc.add(event.slot(slot)),
                            None => acc.add(&crate::value::Value::Null),
                        }
                    }
                }
                let taken = Run {
                    state: e.target,
                    node,
                    start_ts,
                    prev_ts: event.time,
                    start_seq,
                    aggs,
                };
                buffer.lock(node);
                if let Some(fin) = f.fin {
                    let fin = Run {
                        state: fin,
                        ..taken.clone()
                    };
                    outs.push(nfa, buffer, taken);
                    buffer.lock(node);
                    outs.push(nfa, buffer, fin);
                } else {
                    outs.push(nfa, buffer, taken);
                }
            }
            Action::Proceed => {}
        }
    }
}

/// The decision graph of [`next_runs`] for a pattern whose PROCEED edges form a cycle (a
/// looping group that can take no event, [`Nfa::proceed_cycles`]): a PROCEED path never
/// comes back to a state it passed. Flink follows such a cycle for ever, so where Flink
/// gives an answer its PROCEED paths never come back either, and cutting them changes
/// nothing; elsewhere the matcher ends where Flink hangs.
#[inline(never)]
fn follow_without_cycles(
    nfa: &Nfa,
    eval: &mut Eval,
    from: StateId,
    edges: &mut SmallVec<[Followed; 8]>,
) {
    // A state, and the length of the path before it.
    let mut stack: SmallVec<[(StateId, usize); 8]> = SmallVec::new();
    stack.push((from, 0));
    let mut path: SmallVec<[StateId; 8]> = SmallVec::new();
    let mut expansions = 0;
    while let Some((s, depth)) = stack.pop() {
        expansions += 1;
        if expansions > MAX_PROCEED_EXPANSIONS {
            break;
        }
        path.truncate(depth);
        path.push(s);
        for (i, e) in nfa.states[s].edges.iter().enumerate() {
            if eval.holds(&e.guard) {
                match e.action {
                    Action::Proceed => {
                        if !path.contains(&e.target) {
                            stack.push((e.target, path.len()));
                        }
                    }
                    Action::Ignore | Action::Take => edges.push(followed(eval, s, i, e)),
                }
            }
        }
    }
}

/// Edge `i` of state `s`, a TAKE or IGNORE edge whose guard holds, as a run follows it: a
/// TAKE with the Final state its target reaches through PROCEED edges right away, if any.
#[inline(always)]
fn followed(eval: &mut Eval, s: StateId, i: usize, e: &crate::nfa::Edge) -> Followed {
    let fin = match e.action {
        Action::Take => eval.final_after_proceed(e.target),
        Action::Ignore | Action::Proceed => None,
    };
    Followed {
        state: s,
        edge: i,
        fin,
    }
}

/// A copy of a run's aggregates, pushed one by one (the generic `SmallVec` clone goes through
/// an iterator adapter and a growth check; there are usually one or two).
#[inline]
fn copy_aggs(aggs: &SmallVec<[AggAcc; 2]>) -> SmallVec<[AggAcc; 2]> {
    let mut out = SmallVec::new();
    for a in aggs {
        out.push(a.clone());
    }
    out
}

#[derive(Clone, Copy)]
enum Pruning {
    AtOrBefore(u64),
    Before(u64),
}

fn pruning_id(skip: Skip, path: &[PathStep]) -> Option<Pruning> {
    match skip {
        Skip::NoSkip => None,
        Skip::ToNext => path.iter().map(|s| s.seq).min().map(Pruning::AtOrBefore),
        Skip::PastLast => path.iter().map(|s| s.seq).max().map(Pruning::AtOrBefore),
        Skip::ToFirst(v) => path
            .iter()
            .find(|s| s.var == v)
            .map(|s| Pruning::Before(s.seq)),
        Skip::ToLast(v) => path
            .iter()
            .rev()
            .find(|s| s.var == v)
            .map(|s| Pruning::Before(s.seq)),
    }
}

/// When `r` times out: its start plus the pattern's window, or its previous event plus its
/// state's window, whichever comes first; never for the start run.
#[inline]
fn deadline(nfa: &Nfa, r: &Run) -> Option<i64> {
    if nfa.states[r.state].is_start {
        return None;
    }
    let whole = (nfa.window > 0).then(|| r.start_ts.saturating_add(nfa.window));
    let step = nfa.state_windows[r.state]
        .filter(|w| *w > 0)
        .map(|w| r.prev_ts.saturating_add(w));
    match (whole, step) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether `r` has timed out at `time`, and the time reported for it: its previous event
/// plus its state's window when that one has passed (even when the whole match's window
/// passed earlier, as Flink reports it), else its start plus the pattern's window.
/// Deadlines saturate: one past the end of time is `i64::MAX`, the end of input's watermark
/// (no event has that time), which decides every window.
#[inline]
fn timed_out_at(nfa: &Nfa, r: &Run, time: i64) -> Option<i64> {
    if nfa.states[r.state].is_start {
        return None;
    }
    let step = nfa.state_windows[r.state]
        .filter(|w| *w > 0)
        .map(|w| r.prev_ts.saturating_add(w))
        .filter(|at| time >= *at);
    let whole = (nfa.window > 0)
        .then(|| r.start_ts.saturating_add(nfa.window))
        .filter(|at| time >= *at);
    step.or(whole)
}

/// The order of runs within a group ([`Groups`]): by start event, whose order is that of
/// their deadlines when only the whole match's window applies; by deadline where states
/// have windows of their own (the group's head is then the first to time out; runs that
/// never time out last).
fn group_order(nfa: &Nfa) -> impl Fn(&Run) -> u64 + '_ {
    move |r: &Run| {
        if nfa.step_windows {
            // i64 to u64 keeping the order.
            deadline(nfa, r).map_or(u64::MAX, |d| (d as u64) ^ (1 << 63))
        } else {
            r.start_seq
        }
    }
}

impl Run {
    fn start(nfa: &Nfa) -> Run {
        Run {
            state: nfa.start,
            node: NIL,
            start_ts: -1,
            prev_ts: -1,
            start_seq: NO_START,
            aggs: nfa.aggs.iter().map(|a| AggAcc::empty(a.func)).collect(),
        }
    }
}

/// Answers, for a key with no state, whether an event would start anything: some TAKE
/// edge of the start state (or of states PROCEED reaches from it) holds. When it does not,
/// feeding the event to a fresh matcher changes nothing, so the event can be skipped.
#[derive(Debug, Clone)]
pub struct StartProbe {
    start: Run,
    buffer: SharedBuffer,
    /// The start state has no PROCEED edge: only its own TAKE edges need checking.
    direct: bool,
    /// When every TAKE edge of such a start state is guarded by one expression on the event
    /// alone (the usual `begin(..).where(type == "X")`): those expressions, tested directly.
    plain: Option<Vec<CExpr>>,
}

impl StartProbe {
    /// A probe for `nfa`.
    pub fn new(nfa: &Nfa) -> StartProbe {
        let edges = &nfa.states[nfa.start].edges;
        let direct = edges.iter().all(|e| e.action != Action::Proceed);
        let plain = if direct {
            edges
                .iter()
                .filter(|e| e.action == Action::Take)
                .map(|e| match &e.guard {
                    Guard::Cond(i) => match nfa.conditions.get(*i) {
                        Some(c) if !c.iterative => match &c.body {
                            CondBody::Expr(x) => Some(x.clone()),
                            _ => None,
                        },
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Option<Vec<CExpr>>>()
        } else {
            None
        };
        StartProbe {
            start: Run::start(nfa),
            buffer: SharedBuffer::new(),
            direct,
            plain,
        }
    }

    /// Whether a fresh partition would take `event` into some run.
    pub fn starts_on(&mut self, nfa: &Nfa, event: &Event) -> bool {
        if let Some(exprs) = &self.plain {
            return exprs.iter().any(|x| x.test(event, &[]));
        }
        let mut event_cache = CondCache::default();
        let view = View {
            buffer: &self.buffer,
            node: NIL,
            nfa,
        };
        let mut eval = Eval::new(nfa, event, &self.start, &view, &mut event_cache);
        if self.direct {
            return nfa.states[nfa.start]
                .edges
                .iter()
                .any(|e| e.action == Action::Take && eval.holds(&e.guard));
        }
        let mut stack: SmallVec<[StateId; 8]> = SmallVec::new();
        stack.push(nfa.start);
        let mut expansions = 0;
        while let Some(s) = stack.pop() {
            expansions += 1;
            if expansions > MAX_PROCEED_EXPANSIONS {
                return true;
            }
            for e in &nfa.states[s].edges {
                match e.action {
                    Action::Ignore => {}
                    Action::Take => {
                        if eval.holds(&e.guard) {
                            return true;
                        }
                    }
                    Action::Proceed => {
                        if eval.holds(&e.guard) {
                            stack.push(e.target);
                        }
                    }
                }
            }
        }
        false
    }
}

/// One event offered to the runs of a partition, in either layout.
struct Offer<'a> {
    nfa: &'a Nfa,
    event: &'a Event,
    seq: u64,
}

impl Offer<'_> {
    /// Offers the event to `run`: the runs that follow it (and the start run itself, which
    /// stays, after the runs it started: Flink re-adds it last) are appended to `next`,
    /// completed ones go to the scratch's potential matches; when one of them reached a Stop
    /// state, those appended are dropped again (Flink's `statesToRetain`). `eid` is the
    /// event's buffer slot, reserved by the first run that takes it.
    #[inline(always)]
    fn to_run(
        &self,
        run: Run,
        buffer: &mut SharedBuffer,
        eid: &mut Option<u32>,
        sc: &mut Scratch,
        next: &mut Vec<Run>,
    ) {
        let first_retained = next.len();
        let mut succ = Successors {
            next,
            potential: &mut sc.potential,
            discard: false,
        };
        next_runs(
            self.nfa,
            buffer,
            &run,
            self.event,
            self.seq,
            eid,
            &mut sc.event_cache,
            &mut succ,
        );
        let discard = succ.discard;
        if self.nfa.states[run.state].is_start {
            next.push(run);
        } else {
            buffer.release(run.node);
        }
        if discard {
            for r in next.drain(first_retained..) {
                buffer.release(r.node);
            }
        }
    }
}

/// Where the runs that follow a run go, by the kind of state they are in: partial matches to
/// `next`, completed ones to `potential`; reaching a Stop state marks the whole step for
/// discarding (Flink's `shouldDiscardPath`).
struct Successors<'a> {
    next: &'a mut Vec<Run>,
    potential: &'a mut Vec<Run>,
    discard: bool,
}

impl Successors<'_> {
    #[inline]
    fn push(&mut self, nfa: &Nfa, buffer: &mut SharedBuffer, run: Run) {
        match nfa.states[run.state].kind {
            StateKind::Final => heap::push(self.potential, run, by_start),
            StateKind::Stop => {
                self.discard = true;
                buffer.release(run.node);
            }
            StateKind::Normal | StateKind::Pending => self.next.push(run),
        }
    }
}

/// A TAKE or IGNORE edge that holds for a run: the state it leaves from, its index there and,
/// for a TAKE, the Final state reached right after it through PROCEED edges.
struct Followed {
    state: StateId,
    edge: usize,
    fin: Option<StateId>,
}

/// Results of conditions already evaluated, one bit each for the first 64 conditions (later
/// ones, rare, are evaluated every time).
#[derive(Debug, Clone, Copy, Default)]
struct CondCache {
    known: u64,
    value: u64,
}

impl CondCache {
    #[inline]
    fn get(&self, i: usize) -> Option<bool> {
        let bit = 1u64.checked_shl(i as u32)?;
        (self.known & bit != 0).then_some(self.value & bit != 0)
    }

    #[inline]
    fn set(&mut self, i: usize, v: bool) {
        if let Some(bit) = 1u64.checked_shl(i as u32) {
            self.known |= bit;
            if v {
                self.value |= bit;
            }
        }
    }
}

/// Guard evaluation for one run and one event, with caches: conditions that read only the
/// event are evaluated once per event for all runs, iterative ones once per run.
struct Eval<'a> {
    nfa: &'a Nfa,
    event: &'a Event,
    run: &'a Run,
    view: &'a View<'a>,
    event_cache: &'a mut CondCache,
    run_cache: CondCache,
}

impl<'a> Eval<'a> {
    fn new(
        nfa: &'a Nfa,
        event: &'a Event,
        run: &'a Run,
        view: &'a View<'a>,
        event_cache: &'a mut CondCache,
    ) -> Eval<'a> {
        Eval {
            nfa,
            event,
            run,
            view,
            event_cache,
            run_cache: CondCache::default(),
        }
    }

    #[inline(always)]
    fn cond(&mut self, i: usize) -> bool {
        let c = &self.nfa.conditions[i];
        let cache = if c.iterative {
            &mut self.run_cache
        } else {
            &mut *self.event_cache
        };
        if let Some(v) = cache.get(i) {
            return v;
        }
        let r = c.body.test(self.event, &self.run.aggs, self.view);
        cache.set(i, r);
        r
    }

    /// Whether a guard holds. The shapes the compiler makes most (a condition, its negation,
    /// a conjunction of those) are evaluated here without recursion.
    #[inline]
    fn holds(&mut self, g: &Guard) -> bool {
        match g {
            Guard::And(a, b) => self.holds_literal(a) && self.holds_literal(b),
            other => self.holds_literal(other),
        }
    }

    #[inline]
    fn holds_literal(&mut self, g: &Guard) -> bool {
        match g {
            Guard::True => true,
            Guard::Cond(i) => self.cond(*i),
            Guard::Not(x) => match &**x {
                Guard::Cond(i) => !self.cond(*i),
                other => !self.holds_nested(other),
            },
            Guard::And(..) => self.holds_nested(g),
        }
    }

    #[inline(never)]
    fn holds_nested(&mut self, g: &Guard) -> bool {
        match g {
            Guard::True => true,
            Guard::Cond(i) => self.cond(*i),
            Guard::Not(x) => !self.holds_nested(x),
            Guard::And(a, b) => self.holds_nested(a) && self.holds_nested(b),
        }
    }

    #[inline]
    fn final_after_proceed(&mut self, from: StateId) -> Option<StateId> {
        let nfa = self.nfa;
        let mut stack: SmallVec<[StateId; 8]> = SmallVec::new();
        stack.push(from);
        let mut expansions = 0;
        while let Some(s) = stack.pop() {
            expansions += 1;
            if expansions > MAX_PROCEED_EXPANSIONS {
                return None;
            }
            for e in &nfa.states[s].edges {
                if e.action == Action::Proceed && self.holds(&e.guard) {
                    if nfa.states[e.target].kind == StateKind::Final {
                        return Some(e.target);
                    }
                    stack.push(e.target);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Schema;
    use crate::expr::ast::{BinaryOp, Expr, ExprKind};
    use crate::pattern::Pattern;
    use crate::value::Value;

    fn name_is(n: &str) -> Expr {
        Expr::new(ExprKind::Binary(
            BinaryOp::Eq,
            Box::new(Expr::new(ExprKind::Path(vec!["name".into()]))),
            Box::new(Expr::new(ExprKind::Literal(Value::from(n)))),
        ))
    }

    fn run(p: Pattern, names: &[&str]) -> Vec<Vec<usize>> {
        run_grouped(p, names, None).0
    }

    /// Matches (sorted) and timed-out partial matches (sorted), runs grouped by state above
    /// `group_at` runs; also after how many events the runs were grouped, and how many times
    /// the layout changed.
    fn run_grouped(
        p: Pattern,
        names: &[&str],
        group_at: Option<usize>,
    ) -> (Vec<Vec<usize>>, Vec<Vec<usize>>, usize, usize) {
        let decl = p.declare("p");
        let mut schema = Schema::new();
        let mut nfa = crate::nfa::compiler::compile_for_list(&decl, &mut schema).unwrap();
        if let Some(at) = group_at {
            nfa.set_group_runs_at(at);
        }
        let mut m = Matcher::new(&nfa);
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let mut timeouts = Vec::new();
        let mut grouped = 0;
        let (mut switches, mut was_grouped) = (0, false);
        for (i, n) in names.iter().enumerate() {
            let raw = format!(r#"{{"id":{i},"name":"{n}"}}"#);
            let ev = Event {
                time: i as i64,
                fields: schema.decode_row(&raw).unwrap(),
                raw: Arc::from(raw.as_str()),
            };
            m.advance_time(&nfa, &mut scratch, i as i64, true, &mut out, &mut timeouts);
            m.process(&nfa, &mut scratch, ev, &mut out);
            if m.groups.is_some() != was_grouped {
                switches += 1;
                was_grouped = !was_grouped;
            }
            grouped += usize::from(was_grouped);
            assert_eq!(m.validate(&nfa), Ok(()));
            // A checkpoint of either layout restores to the same state.
            let bytes = postcard::to_allocvec(&m).unwrap();
            let restored: Matcher = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(restored.validate(&nfa), Ok(()));
            assert_eq!(restored.partial_matches(), m.partial_matches());
        }
        m.advance_time(&nfa, &mut scratch, i64::MAX, true, &mut out, &mut timeouts);
        let ids = |ms: &[Match]| {
            let mut r: Vec<Vec<usize>> = ms
                .iter()
                .map(|m| {
                    m.events
                        .iter()
                        .map(|e| {
                            let v: serde_json::Value = serde_json::from_str(&e.raw).unwrap();
                            v["id"].as_u64().unwrap() as usize
                        })
                        .collect()
                })
                .collect();
            r.sort();
            r
        };
        (ids(&out), ids(&timeouts), grouped, switches)
    }

    /// Grouped by state, from the first run on or switching back and forth around a small
    /// threshold, the runs give the same matches and time-outs as the list; patterns with a
    /// skip strategy never group.
    #[test]
    fn grouped_runs_give_the_lists_results() {
        let names: Vec<&str> = (0..240u64)
            .map(|i| {
                // Busy stretches (many runs) and quiet ones (runs time out).
                let r = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) % 6;
                if (i / 40) % 2 == 0 {
                    ["a", "a", "b", "b", "c", "x"][r as usize]
                } else {
                    ["x", "x", "x", "x", "c", "a"][r as usize]
                }
            })
            .collect();
        let patterns = || {
            vec![
                Pattern::begin("a")
                    .where_(name_is("a"))
                    .followed_by_any("b")
                    .where_(name_is("b"))
                    .followed_by("c")
                    .where_(name_is("c"))
                    .within_ms(25),
                Pattern::begin("a")
                    .where_(name_is("a"))
                    .next("b")
                    .where_(name_is("b"))
                    .followed_by("c")
                    .where_(name_is("c"))
                    .within_ms(40),
                Pattern::begin("a")
                    .where_(name_is("a"))
                    .one_or_more()
                    .followed_by("c")
                    .where_(name_is("c"))
                    .within_ms(12),
                Pattern::begin("a")
                    .where_(name_is("a"))
                    .not_followed_by("x")
                    .where_(name_is("x"))
                    .within_ms(6),
                // Windows of their own: groups ordered by deadline.
                Pattern::begin("a")
                    .where_(name_is("a"))
                    .followed_by_any("b")
                    .where_(name_is("b"))
                    .followed_by("c")
                    .where_(name_is("c"))
                    .within_previous_ms(9),
                Pattern::begin("a")
                    .where_(name_is("a"))
                    .one_or_more_within(std::time::Duration::from_millis(4))
                    .followed_by("c")
                    .where_(name_is("c"))
                    .within_ms(30),
            ]
        };
        for (k, (p, q, r)) in patterns()
            .into_iter()
            .zip(patterns())
            .zip(patterns())
            .map(|((p, q), r)| (p, q, r))
            .enumerate()
        {
            let list = run_grouped(p, &names, None);
            let always = run_grouped(q, &names, Some(0));
            // Thresholds at which each pattern's runs go grouped and back.
            let switching = run_grouped(r, &names, Some([12, 4, 8, 4, 12, 16][k]));
            assert!(!list.0.is_empty(), "pattern {k} matches");
            assert!(always.2 > 200, "pattern {k}: grouped {} times", always.2);
            assert!(
                switching.3 >= 2,
                "pattern {k}: the layout changed {} times",
                switching.3
            );
            assert_eq!((&always.0, &always.1), (&list.0, &list.1), "pattern {k}");
            assert_eq!((&switching.0, &switching.1), (&list.0, &list.1), "pattern {k}");
        }
        let skipping = Pattern::begin_with("a", crate::pattern::SkipStrategy::SkipPastLastEvent)
            .where_(name_is("a"))
            .followed_by_any("b")
            .where_(name_is("b"));
        assert_eq!(run_grouped(skipping, &names, Some(0)).2, 0);
    }

    #[test]
    fn end_with_one_or_more() {
        let p = Pattern::begin("start")
            .where_(name_is("c"))
            .followed_by("middle")
            .where_(name_is("a"))
            .one_or_more();
        let got = run(p, &["c", "a", "a", "a"]);
        assert_eq!(got, vec![vec![0, 1], vec![0, 1, 2], vec![0, 1, 2, 3]]);
    }

    #[test]
    fn strict_next_and_buffer_frees() {
        let p = Pattern::begin("a")
            .where_(name_is("a"))
            .next("b")
            .where_(name_is("b"));
        let got = run(p, &["a", "b", "a", "c", "b", "a", "b"]);
        assert_eq!(got, vec![vec![0, 1], vec![5, 6]]);
    }
}

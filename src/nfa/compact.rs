//! The compact matcher: partial matches of a chain of single steps kept as the events they
//! share, not one run each (the idea of CORE's shared event structure, Bucchi et al., VLDB
//! 2022).
//!
//! It runs the patterns [`plan`] accepts: single steps (no quantifier, `optional`, group or
//! negation) linked by `next`, `followedBy` and `followedByAny`, conditions that read the
//! current event alone, no after-match skip strategy (`noSkip`: every match is reported, so
//! nothing depends on the order of Flink's queue), and at most a window over the whole match.
//! For such a pattern a partial match is a chain of events `x1 < x2 < … < xk` (positions in
//! the key's stream), each satisfying its step's condition, and it exists exactly when every
//! link allows the gap before its event:
//! - `followedByAny`: any gap;
//! - `followedBy`: no event between `x(j-1)` and `xj` satisfies step `j`'s condition (the
//!   run took the first one);
//! - `next`: `xj` is the event right after `x(j-1)`;
//!
//! and, with a window `W`, its last event is less than `W` after its first (Flink expires the
//! run before the first event at or past `first + W`). It still waits at step `k + 1` unless
//! that step's link made it move on: a `followedBy` run once an event satisfying the step came,
//! a `next` run once any event came; a `followedByAny` run waits until it times out.
//!
//! So instead of runs the matcher keeps, per step but the last, the events that end some
//! chain (a [`Node`] each, in stream order), and for each node the nodes of the step before
//! that can precede it — a range, since every link's rule above selects a contiguous run of
//! the previous step's nodes. Each node also notes the latest first event of a chain ending
//! in it; that is non-decreasing along a step's nodes, which makes the chains still inside
//! the window a suffix of every range. An event costs one test per step and one node per
//! step it can extend; the state holds the window's events, not the product of their
//! choices. Matches are enumerated from the ranges when an event completes the chain — every
//! node visited leads to at least one match — and timed-out partial matches when their first
//! event's window passes, walking forward from it.
//!
//! The results are Flink's (the same matches and timed-out partial matches as the list
//! matcher in [`super::matcher`], which `tests/it/compact.rs` checks on random patterns and
//! streams); matches completed by one event come out by first event, as Flink's queue orders
//! them (among matches with the same first event, in an order of their own).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::event::Event;
use crate::nfa::matcher::{Match, MatchedEvent};
use crate::nfa::validate::{InvalidState, COUNTER_LIMIT};
use crate::nfa::{Condition, Nfa};
use crate::pattern::{
    Contiguity, Pattern, PartialMatch, Repeat, SkipStrategy, Step, StepNode,
};

/// How a step follows the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Link {
    /// `next`: the very next event.
    Next,
    /// `followedBy`: the first event satisfying the step after the previous one.
    FollowedBy,
    /// `followedByAny`: any later event satisfying the step.
    FollowedByAny,
}

/// One step of a pattern the compact matcher runs.
#[derive(Debug, Clone)]
pub(crate) struct CompactStep {
    /// The variable it binds (index into [`Nfa::variables`]).
    pub var: usize,
    /// Its condition (index into [`Nfa::conditions`]); `None`: every event.
    pub cond: Option<usize>,
    /// How it follows the step before (not used for the first).
    pub link: Link,
}

/// The steps of a pattern the compact matcher runs ([`plan`]).
#[derive(Debug, Clone)]
pub(crate) struct CompactPlan {
    pub steps: Vec<CompactStep>,
    /// Some step follows by `next`.
    pub has_next_links: bool,
}

/// Whether the compact matcher can run `p`, and its plan if so; otherwise why not, for
/// `motif explain`. `cond_of` gives a step's compiled `where` condition, `conditions` are
/// the pattern's compiled conditions.
pub(crate) fn plan(
    p: &Pattern,
    conditions: &[Condition],
    cond_of: impl Fn(&Step) -> Option<usize>,
    variables: &[String],
    step_windows: bool,
) -> Result<CompactPlan, &'static str> {
    if p.skip != SkipStrategy::NoSkip {
        return Err("an after-match skip strategy picks between matches in the order of \
                    Flink's queue of partial matches");
    }
    if p.steps.len() < 2 {
        return Err("a single step: every event it takes is a match at once");
    }
    let mut steps = Vec::with_capacity(p.steps.len());
    for s in &p.steps {
        let StepNode::Variable(name) = &s.node else {
            return Err("a group pattern");
        };
        if s.quantifier.repeat != Repeat::Once
            || s.quantifier.optional
            || s.quantifier.window_ms.is_some()
            || s.until.is_some()
        {
            return Err("a quantifier or optional step");
        }
        if s.within_previous.is_some() {
            return Err("a window between consecutive events");
        }
        let link = match s.contiguity {
            Contiguity::Strict => Link::Next,
            Contiguity::Relaxed => Link::FollowedBy,
            Contiguity::NonDeterministic => Link::FollowedByAny,
            Contiguity::NotNext | Contiguity::NotFollowedBy => return Err("a negation"),
        };
        let Some(var) = variables.iter().position(|v| v == name) else {
            return Err("a step whose variable is not the pattern's");
        };
        steps.push(CompactStep {
            var,
            cond: cond_of(s),
            link,
        });
    }
    if step_windows {
        return Err("a window between consecutive events");
    }
    if conditions.iter().any(|c| c.iterative) {
        return Err("a condition reads the partial match (earlier events, aggregates or a \
                    Rust closure)");
    }
    let has_next_links = steps.iter().skip(1).any(|s| s.link == Link::Next);
    Ok(CompactPlan {
        steps,
        has_next_links,
    })
}

/// An event that ends at least one chain of the steps up to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Node {
    /// The event's position in the key's stream (every event offered counts).
    pos: u64,
    /// The event, by its index in [`Compact::events`] (absolute).
    ev: u64,
    /// The latest first event of a chain ending here: its position and time.
    start_pos: u64,
    start_time: i64,
    /// The nodes of the step before that may precede this one: absolute indexes
    /// `lo..hi` of that step's [`Level`] (the first step's nodes: empty).
    lo: u64,
    hi: u64,
}

/// One step's nodes, in stream order; `base` is the absolute index of the first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Level {
    base: u64,
    nodes: VecDeque<Node>,
}

impl Level {
    fn end(&self) -> u64 {
        self.base + self.nodes.len() as u64
    }

    fn get(&self, at: u64) -> Option<&Node> {
        let i = at.checked_sub(self.base)?;
        self.nodes.get(usize::try_from(i).ok()?)
    }

    /// The absolute index of the first node at or after position `pos`.
    fn first_at_or_after(&self, pos: u64) -> u64 {
        self.base + self.nodes.partition_point(|n| n.pos < pos) as u64
    }

    /// The first of the nodes `lo..hi` (clamped to those kept) that `live` accepts; `live`
    /// is false then true along the nodes (their latest first events only grow).
    fn first_live(&self, lo: u64, hi: u64, live: &impl Fn(&Node) -> bool) -> u64 {
        let (mut a, mut b) = (lo.max(self.base), hi.min(self.end()));
        while a < b {
            let mid = a + (b - a) / 2;
            match self.get(mid) {
                Some(n) if !live(n) => a = mid + 1,
                _ => b = mid,
            }
        }
        a
    }

    fn pop_front_while(&mut self, mut gone: impl FnMut(&Node) -> bool) {
        while self.nodes.front().is_some_and(&mut gone) {
            self.nodes.pop_front();
            self.base += 1;
        }
    }
}

/// A partial match that reads nothing (conditions of the compact class read the event alone).
struct NoPartialMatch;

impl PartialMatch for NoPartialMatch {
    fn events_of(&self, _var: &str) -> Vec<&Event> {
        Vec::new()
    }
}

/// Absolute node indexes of a chain, one per step.
type Chain = SmallVec<[u64; 8]>;

/// The compact matcher's state for one partition (see the module's documentation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Compact {
    /// Per step, how it follows the one before (the plan's, kept with the state so that
    /// the state tells its partial matches on its own).
    links: Vec<Link>,
    /// The position the next event offered gets.
    next_pos: u64,
    /// Per step but the last: its nodes.
    levels: Vec<Level>,
    /// Per step: the position of the last event that satisfied its condition.
    last_hit: Vec<Option<u64>>,
    /// The events nodes refer to, in stream order; `events_base` is the first's index.
    events: VecDeque<Event>,
    events_base: u64,
    /// Chains whose first event is before this position were dropped at the cap.
    floor: u64,
}

impl Compact {
    /// An empty state for `plan`.
    pub(crate) fn new(plan: &CompactPlan) -> Compact {
        let n = plan.steps.len();
        Compact {
            levels: vec![Level::default(); n.saturating_sub(1)],
            last_hit: vec![None; n],
            links: plan.steps.iter().map(|s| s.link).collect(),
            ..Compact::default()
        }
    }

    /// Back to empty, keeping allocations.
    pub(crate) fn reset(&mut self) {
        for l in &mut self.levels {
            l.nodes.clear();
            l.base = 0;
        }
        self.last_hit.iter_mut().for_each(|h| *h = None);
        self.events.clear();
        self.events_base = 0;
        self.next_pos = 0;
        self.floor = 0;
    }

    /// Whether no chain is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.levels.iter().all(|l| l.nodes.is_empty())
    }

    /// Nodes held: events ending an open chain, counted once per step.
    pub(crate) fn nodes(&self) -> usize {
        self.levels.iter().map(|l| l.nodes.len()).sum()
    }

    /// The partial matches waiting (as many as the list matcher would hold as runs): per
    /// node, the chains ending in it (summed over its range, step by step) when the next
    /// step can still take an event after it. Takes time in the nodes held.
    pub(crate) fn waiting_partial_matches(&self) -> usize {
        let last_pos = self.next_pos.checked_sub(1);
        let mut total = 0u64;
        // Per node of the step before: the chains ending in it or before it (prefix sums).
        let mut before: Vec<u64> = Vec::new();
        let mut before_base = 0;
        for (j, level) in self.levels.iter().enumerate() {
            let mut sums = Vec::with_capacity(level.nodes.len() + 1);
            sums.push(0u64);
            for (i, node) in level.nodes.iter().enumerate() {
                let chains = if j == 0 {
                    1
                } else {
                    let clamp = |at: u64| {
                        let i = at.saturating_sub(before_base) as usize;
                        before.get(i).copied().or(before.last().copied()).unwrap_or(0)
                    };
                    clamp(node.hi).saturating_sub(clamp(node.lo))
                };
                let waits = match self.links.get(j + 1) {
                    Some(Link::FollowedByAny) => true,
                    Some(Link::FollowedBy) => self.last_hit[j + 1].is_none_or(|h| h <= node.pos),
                    Some(Link::Next) => last_pos == Some(node.pos),
                    None => false,
                };
                if waits {
                    total = total.saturating_add(chains);
                }
                sums.push(sums[i].saturating_add(chains));
            }
            before = sums;
            before_base = level.base;
        }
        usize::try_from(total).unwrap_or(usize::MAX)
    }

    /// Calls `f` on every event held.
    pub(crate) fn for_each_event_mut(&mut self, f: &mut dyn FnMut(&mut Event)) {
        self.events.iter_mut().for_each(f);
    }

    /// When the oldest chain's window ends (`None` without a window or chains).
    pub(crate) fn next_deadline(&self, window: i64) -> Option<i64> {
        if window <= 0 {
            return None;
        }
        (self.levels.iter())
            .filter_map(|l| l.nodes.front())
            .map(|n| n.start_time.saturating_add(window))
            .min()
    }

    fn event(&self, ev: u64) -> Option<&Event> {
        let i = ev.checked_sub(self.events_base)?;
        self.events.get(usize::try_from(i).ok()?)
    }

    /// The match (or timed-out partial match) of the chain `chain` of stored nodes, then
    /// `last`, if any (the event completing it).
    fn materialize(
        &self,
        plan: &CompactPlan,
        chain: &[u64],
        last: Option<&Event>,
        timed_out: Option<i64>,
    ) -> Match {
        let mut events = Vec::with_capacity(chain.len() + usize::from(last.is_some()));
        for (level, &at) in chain.iter().enumerate() {
            let stored = (self.levels.get(level))
                .and_then(|l| l.get(at))
                .and_then(|n| self.event(n.ev));
            if let (Some(e), Some(step)) = (stored, plan.steps.get(level)) {
                events.push(matched(step.var, e));
            }
        }
        if let (Some(e), Some(step)) = (last, plan.steps.last()) {
            events.push(matched(step.var, e));
        }
        Match { events, timed_out }
    }

    /// The nodes of step `j - 1` that an event at `pos` satisfying step `j` may follow,
    /// as absolute indexes `lo..hi` (before the event's own nodes are added).
    fn range(&self, plan: &CompactPlan, j: usize, pos: u64) -> (u64, u64) {
        let prev = &self.levels[j - 1];
        let hi = prev.end();
        let lo = match plan.steps[j].link {
            Link::FollowedByAny => prev.base,
            Link::FollowedBy => match self.last_hit[j] {
                Some(h) => prev.first_at_or_after(h),
                None => prev.base,
            },
            Link::Next => match prev.nodes.back() {
                Some(b) if b.pos.checked_add(1) == Some(pos) => hi - 1,
                _ => hi,
            },
        };
        (lo, hi)
    }

    /// Offers one event (in time order, after [`Compact::advance_time`] to its time); the
    /// matches it completes go to `out`, by first event.
    pub(crate) fn process(
        &mut self,
        nfa: &Nfa,
        plan: &CompactPlan,
        mut event: Event,
        max_nodes: usize,
        dropped: &mut u64,
        out: &mut Vec<Match>,
    ) {
        let pos = self.next_pos;
        self.next_pos += 1;
        let n = plan.steps.len();
        let hits: SmallVec<[bool; 8]> = (plan.steps.iter())
            .map(|s| {
                s.cond.is_none_or(|c| {
                    (nfa.conditions.get(c)).is_some_and(|c| c.body.test(&event, &[], &NoPartialMatch))
                })
            })
            .collect();
        if !hits.contains(&true) {
            if plan.has_next_links {
                // A `next` step waiting for this position waits no more.
                self.drop_finished(plan);
                self.release_events();
            }
            return;
        }
        if !nfa.keep_event_fields {
            event.fields = Box::default();
        }
        let time = event.time;
        let window = nfa.window;
        let floor = self.floor;
        let live = move |node: &Node| {
            node.start_pos >= floor && (window <= 0 || time < node.start_time.saturating_add(window))
        };
        // Matches this event completes: chains through every stored step, then it.
        if hits[n - 1] {
            let (lo, hi) = self.range(plan, n - 1, pos);
            let mut chains: Vec<Chain> = Vec::new();
            let mut chain: Chain = SmallVec::from_elem(0, n - 1);
            self.chains_ending(n - 2, lo, hi, &live, &mut chain, &mut chains);
            let first_pos = |c: &Chain| {
                (self.levels[0].get(c[0])).map_or(u64::MAX, |node| node.pos)
            };
            chains.sort_by_key(first_pos);
            for c in &chains {
                out.push(self.materialize(plan, c, Some(&event), None));
            }
        }
        // Nodes of this event, last step first so that each range is taken before the event
        // joins the step before.
        let mut new_nodes: SmallVec<[(usize, Node); 8]> = SmallVec::new();
        for j in (0..n - 1).rev() {
            if !hits[j] {
                continue;
            }
            let node = if j == 0 {
                Some((pos, time, 0, 0))
            } else {
                let (lo, hi) = self.range(plan, j, pos);
                let last = (lo < hi)
                    .then(|| self.levels[j - 1].get(hi - 1))
                    .flatten()
                    .filter(|last| live(last));
                last.map(|l| (l.start_pos, l.start_time, lo, hi))
            };
            if let Some((start_pos, start_time, lo, hi)) = node {
                new_nodes.push((
                    j,
                    Node {
                        pos,
                        ev: self.events_base + self.events.len() as u64,
                        start_pos,
                        start_time,
                        lo,
                        hi,
                    },
                ));
            }
        }
        for (j, hit) in hits.iter().enumerate() {
            if *hit {
                self.last_hit[j] = Some(pos);
            }
        }
        if new_nodes.is_empty() {
            self.drop_finished(plan);
            self.release_events();
            return;
        }
        for (j, node) in new_nodes {
            self.levels[j].nodes.push_back(node);
        }
        self.events.push_back(event);
        self.drop_finished(plan);
        self.enforce_cap(max_nodes, dropped);
    }

    /// Forgets the nodes no chain needs any more: those the next step can no longer take
    /// an event after (a `next` step once a later event came, a `followedBy` step once an
    /// event satisfied it) and that no node of the next step follows. Both hold for a
    /// prefix of a step's nodes, so the oldest go first; the last steps go first, as a
    /// node they drop may be the last that followed one of the step before.
    fn drop_finished(&mut self, plan: &CompactPlan) {
        let last_pos = self.next_pos.checked_sub(1);
        for j in (0..self.levels.len()).rev() {
            let next = j + 1;
            let Some(step) = plan.steps.get(next) else {
                continue;
            };
            // Nodes before `followed_from` are followed by a node of the next step.
            let followed_from = (self.levels.get(next))
                .and_then(|l| l.nodes.front())
                .map_or(u64::MAX, |n| n.lo);
            let last_hit = self.last_hit[next];
            let base = self.levels[j].base;
            let finished = |at: u64, n: &Node| {
                at < followed_from
                    && match step.link {
                        Link::FollowedByAny => false,
                        Link::FollowedBy => last_hit.is_some_and(|h| h > n.pos),
                        Link::Next => last_pos.is_some_and(|p| p > n.pos),
                    }
            };
            let level = &mut self.levels[j];
            let mut at = base;
            level.pop_front_while(|n| {
                let gone = finished(at, n);
                at += 1;
                gone
            });
        }
    }

    /// Pushes to `found` every chain through steps `0..=level` whose node at `level` is in
    /// `lo..hi` and whose first event is `live` (`chain` holds the nodes after `level`).
    fn chains_ending(
        &self,
        level: usize,
        lo: u64,
        hi: u64,
        live: &impl Fn(&Node) -> bool,
        chain: &mut Chain,
        found: &mut Vec<Chain>,
    ) {
        let l = &self.levels[level];
        // Every live node leads to a live first event: its latest one is.
        for at in l.first_live(lo, hi, live)..hi.min(l.end()) {
            chain[level] = at;
            if level == 0 {
                found.push(chain.clone());
            } else if let Some(node) = l.get(at) {
                self.chains_ending(level - 1, node.lo, node.hi, live, chain, found);
            }
        }
    }

    /// Drops the oldest first events until at most `max_nodes` nodes are held, counting each
    /// in `dropped` (the list matcher drops its oldest partial matches the same way).
    fn enforce_cap(&mut self, max_nodes: usize, dropped: &mut u64) {
        while self.nodes() > max_nodes {
            let Some(first) = self.levels[0].nodes.pop_front() else {
                break;
            };
            self.levels[0].base += 1;
            *dropped += 1;
            self.floor = first.pos + 1;
            let floor = self.floor;
            for l in &mut self.levels[1..] {
                l.pop_front_while(|n| n.start_pos < floor);
            }
        }
        self.release_events();
    }

    /// Frees the events no node refers to any more (those before every step's first node).
    fn release_events(&mut self) {
        let oldest = (self.levels.iter())
            .filter_map(|l| l.nodes.front())
            .map(|n| n.ev)
            .min();
        match oldest {
            None => {
                self.events_base += self.events.len() as u64;
                self.events.clear();
            }
            Some(ev) => {
                while self.events_base < ev && self.events.pop_front().is_some() {
                    self.events_base += 1;
                }
            }
        }
    }

    /// Times out the chains whose window has passed at `time` (their partial matches go to
    /// `timeouts` when `report`) and forgets what no chain can use any more.
    pub(crate) fn advance_time(
        &mut self,
        nfa: &Nfa,
        plan: &CompactPlan,
        time: i64,
        report: bool,
        timeouts: &mut Vec<Match>,
    ) {
        let window = nfa.window;
        if window <= 0 {
            return;
        }
        let expired = |start_time: i64| time >= start_time.saturating_add(window);
        if report {
            let level0 = &self.levels[0];
            let mut chain: Chain = SmallVec::new();
            for at in level0.base..level0.end() {
                let Some(first) = level0.get(at) else { break };
                if !expired(first.start_time) {
                    break;
                }
                let at_time = first.start_time.saturating_add(window);
                self.waiting_from(plan, 0, at, at_time, &mut chain, timeouts);
            }
        }
        for l in &mut self.levels {
            l.pop_front_while(|n| expired(n.start_time));
        }
        self.drop_finished(plan);
        self.release_events();
    }

    /// Pushes to `out`, timed out at `at_time`, every partial match that extends `chain`
    /// with node `at` of step `level` and still waits (see the module's documentation).
    fn waiting_from(
        &self,
        plan: &CompactPlan,
        level: usize,
        at: u64,
        at_time: i64,
        chain: &mut Chain,
        out: &mut Vec<Match>,
    ) {
        let Some(node) = self.levels[level].get(at) else {
            return;
        };
        chain.push(at);
        let next = level + 1;
        let link = plan.steps[next].link;
        let last_pos = self.next_pos.saturating_sub(1);
        let waits = match link {
            Link::FollowedByAny => true,
            Link::FollowedBy => self.last_hit[next].is_none_or(|h| h <= node.pos),
            Link::Next => node.pos == last_pos,
        };
        if waits {
            out.push(self.materialize(plan, chain, None, Some(at_time)));
        }
        if let Some(l) = self.levels.get(next) {
            let first = l.first_at_or_after(node.pos + 1);
            let followers = match link {
                Link::FollowedByAny => first..l.end(),
                Link::FollowedBy => {
                    let ok = l.get(first).is_some_and(|w| w.lo <= at && at < w.hi);
                    first..if ok { first + 1 } else { first }
                }
                Link::Next => {
                    let ok = l.get(first).is_some_and(|w| w.pos == node.pos + 1);
                    first..if ok { first + 1 } else { first }
                }
            };
            for w in followers {
                self.waiting_from(plan, next, w, at_time, chain, out);
            }
        }
        chain.pop();
    }

    /// Whether this state can be run with `plan` (see [`crate::nfa::Matcher::validate`]).
    pub(crate) fn validate(&self, plan: &CompactPlan) -> Result<(), InvalidState> {
        let bad = |what: &'static str| Err(InvalidState::Compact { what });
        let n = plan.steps.len();
        if self.levels.len() + 1 != n
            || self.last_hit.len() != n
            || self.links.iter().ne(plan.steps.iter().map(|s| &s.link))
        {
            return bad("its steps are not the pattern's");
        }
        if self.next_pos > COUNTER_LIMIT || self.floor > self.next_pos {
            return bad("its position counters are out of range");
        }
        if self.last_hit.iter().flatten().any(|h| *h >= self.next_pos) {
            return bad("an event satisfied a step after the last event offered");
        }
        let events_end = self.events_base.checked_add(self.events.len() as u64);
        let Some(events_end) = events_end.filter(|e| *e <= COUNTER_LIMIT) else {
            return bad("its event indexes are out of range");
        };
        for (j, l) in self.levels.iter().enumerate() {
            if l.end() > COUNTER_LIMIT {
                return bad("a step's node indexes are out of range");
            }
            let mut before: Option<&Node> = None;
            for node in &l.nodes {
                if node.pos >= self.next_pos || node.ev < self.events_base || node.ev >= events_end
                {
                    return bad("a node refers to an event it does not hold");
                }
                if self.event(node.ev).is_none_or(|e| e.time < node.start_time) {
                    return bad("a chain starts after its last event");
                }
                if node.start_pos > node.pos || node.start_pos < self.floor {
                    return bad("a chain's first event is out of place");
                }
                if j == 0 && (node.start_pos != node.pos || node.lo != 0 || node.hi != 0) {
                    return bad("a first step's node has predecessors");
                }
                if j > 0 && (node.lo > node.hi || node.hi > self.levels[j - 1].end()) {
                    return bad("a node's predecessors are not its step's before");
                }
                if let Some(b) = before {
                    if b.pos >= node.pos
                        || b.ev > node.ev
                        || b.start_pos > node.start_pos
                        || b.start_time > node.start_time
                        || b.lo > node.lo
                        || b.hi > node.hi
                    {
                        return bad("a step's nodes are out of order");
                    }
                }
                before = Some(node);
            }
        }
        Ok(())
    }
}

fn matched(var: usize, e: &Event) -> MatchedEvent {
    MatchedEvent {
        var,
        time: e.time,
        raw: Arc::clone(&e.raw),
        fields: e.fields.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Schema;

    fn compiled(source: &str) -> (Nfa, Schema) {
        let decls = crate::syntax::load_str("<test>", source).expect("pattern loads");
        let mut schema = Schema::new();
        let nfa = crate::nfa::compile(&decls[0], &mut schema).expect("compiles");
        (nfa, schema)
    }

    fn event(schema: &Schema, i: i64, t: &str) -> Event {
        let raw = format!(r#"{{"id":{i},"t":"{t}","ts":{i}}}"#);
        Event {
            time: i,
            fields: schema.decode_row(&raw).expect("test JSON decodes"),
            raw: Arc::from(raw.as_str()),
        }
    }

    #[test]
    fn a_window_holds_its_events_once_per_step() {
        let (nfa, schema) = compiled("pattern p\n    time ts\n= begin(\"v1\").where(t == \"a\")\n  .followedByAny(\"v2\").where(t == \"b\")\n  .followedByAny(\"v3\").where(t == \"z\")\n  .within(30ms);\n");
        let Ok(plan) = &nfa.compact else {
            panic!("not compact: {:?}", nfa.compact.err());
        };
        let mut c = Compact::new(plan);
        let (mut out, mut timeouts, mut dropped) = (Vec::new(), Vec::new(), 0);
        for i in 0..300 {
            c.advance_time(&nfa, plan, i, true, &mut timeouts);
            let t = if i % 100 == 99 { "z" } else { ["a", "b"][(i % 2) as usize] };
            c.process(&nfa, plan, event(&schema, i, t), 1_000, &mut dropped, &mut out);
            assert!(c.nodes() <= 31, "{} nodes at {i}: {:?}", c.nodes(), c.levels.iter().map(|l| l.nodes.len()).collect::<Vec<_>>());
        }
        // Each z completes (15 a's) × (their b's) chains within 30 ms.
        assert!(!out.is_empty());
        assert!(!timeouts.is_empty());
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_damaged_state_is_rejected_not_run() {
        let (nfa, schema) = compiled("pattern p\n    time ts\n= begin(\"v1\").where(t == \"a\")\n  .followedBy(\"v2\").where(t == \"b\")\n  .next(\"v3\").where(t == \"c\")\n  .within(30ms);\n");
        let Ok(plan) = &nfa.compact else {
            panic!("not compact: {:?}", nfa.compact.err());
        };
        let mut c = Compact::new(plan);
        let (mut out, mut dropped) = (Vec::new(), 0);
        for (i, t) in ["a", "x", "b", "a", "b"].into_iter().enumerate() {
            c.process(&nfa, plan, event(&schema, i as i64, t), 1_000, &mut dropped, &mut out);
        }
        assert_eq!(c.validate(plan), Ok(()));
        assert!(c.nodes() >= 2);
        let damaged = |f: &dyn Fn(&mut Compact)| {
            let mut d = c.clone();
            f(&mut d);
            d.validate(plan).expect_err("damaged state accepted").to_string()
        };
        assert!(damaged(&|d| d.levels.pop().map_or((), drop)).contains("steps are not"));
        assert!(damaged(&|d| d.links.reverse()).contains("steps are not"));
        assert!(damaged(&|d| d.events.clear()).contains("does not hold"));
        assert!(damaged(&|d| d.next_pos = COUNTER_LIMIT + 1).contains("out of range"));
        assert!(damaged(&|d| d.last_hit[0] = Some(9)).contains("after the last event"));
        assert!(damaged(&|d| d.levels[1].nodes[0].hi = 99).contains("predecessors"));
        assert!(damaged(&|d| d.levels[0].nodes[0].start_pos = 7).contains("first event"));
    }
}

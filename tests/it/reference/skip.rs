//! After-match skip strategies in the reference: which of the candidates (the matches
//! without a skip strategy, [`super::reference_assignments`]) Flink reports under
//! `skipToNext()`, `skipPastLastEvent()`, `skipToFirst(v)` and `skipToLast(v)`.
//!
//! # Flink's rule
//!
//! With a skip strategy, `NFA.processMatchesAccordingToSkipStrategy` does not report a
//! completed match at once. Completed matches wait in a queue ordered by their first event
//! (time, then arrival), and after every step of the NFA — `advanceTime` before the events
//! of a new timestamp, and each event — the earliest waiting match is reported while it
//! starts no later than the earliest *partial* match (a run still going on); after each
//! report the strategy prunes every partial and waiting match whose first event is
//!
//! * `skipToNext()`: at or before the reported match's first event;
//! * `skipPastLastEvent()`: at or before its last event;
//! * `skipToFirst(v)` / `skipToLast(v)`: before the first / last event `v` took in it
//!   (nothing when `v` took none).
//!
//! A pruned run is gone with every run that shares its first event, so the reference keeps
//! the set of *killed first events*.
//!
//! # Partial runs, from the rules
//!
//! Which runs are still going on is read off the candidate rules of the module docs, with
//! a stand-in for the future ([`Ev::magic`]): a run that has taken the prefix `P` (its
//! events and steps) is alive after the first `upto` events, at time `now`, when `P`
//! followed by stand-ins at time `now` — one taken by `P`'s last step or a later one,
//! then the fewest that complete the pattern — is a candidate over the events before
//! `upto` (the gap after `P`'s last event is then one its run survives: every rule that
//! could kill it is checked on those events, and none holds on a stand-in; `within` is
//! checked at `now`, as `advanceTime` prunes). A complete `P` ending in a trailing
//! `notFollowedBy` is a run too (Flink's Pending state) until its deadline.
//!
//! # Ties
//!
//! Waiting matches with the same first event leave the queue in the order of Java's binary
//! heap, which depends on the order the NFA created its runs in — an operational detail
//! this reference does not model. It follows every order instead and returns every
//! possible result; motif (which reproduces the heap) must give one of them, and the
//! conformance cases with Flink's own answers pin the order itself
//! (`tests/conformance/cases/agree__*`). One class has a rule (R7,
//! [`earliest_chain_first`]): `skipPastLastEvent()` over a chain of single steps linked by
//! `followedBy`/`followedByAny` reports the chain of earliest events.

use std::collections::BTreeSet;

use super::{
    reference_assignments, satisfies_rules, AfterMatch, Contiguity, Ev, NegKind, PatternSpec,
    Quantifier,
};

/// Most distinct states of the emission followed at once before the reference gives up
/// (ties in many places).
const MAX_STATES: usize = 4096;

/// The possible results of `spec` over `events` with its skip strategy: each a multiset of
/// matches (sorted lists of event indices), sorted. `None` when the ties allow more
/// orders than the reference follows ([`MAX_STATES`]). Without a skip strategy the one
/// result is every candidate.
pub fn reference_outcomes(spec: &PatternSpec, events: &[Ev]) -> Option<Vec<Vec<Vec<usize>>>> {
    let vars: Vec<&str> = spec.steps.iter().map(|s| s.name.as_str()).collect();
    let ties = if earliest_chain_first(spec) {
        Ties::EarliestChain
    } else {
        Ties::AnyOrder
    };
    outcomes_with(std::slice::from_ref(spec), &vars, spec.skip, events, ties)
}

/// How waiting matches with the same first event leave the queue.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ties {
    /// In any order (see the module docs): every order is followed.
    AnyOrder,
    /// Rule R7: the one whose events are the earliest at every step first.
    EarliestChain,
}

/// Rule R7: with `skipPastLastEvent()`, a chain of single steps linked by `followedBy` and
/// `followedByAny` (no quantifier, `optional`, negation or window between steps) — every
/// condition here reads the event alone — reports, of the waiting matches with the earliest
/// first event, the one that took the earliest event at every step. (Flink's heap holds
/// them in the order its NFA made them, and the chain of earliest events is made first:
/// 120 random cases of the class answered by Flink, `tests/conformance/random/
/// any_as_next__*`, and motif's list in Flink's heap order on every generated case.)
fn earliest_chain_first(spec: &PatternSpec) -> bool {
    spec.skip == AfterMatch::PastLastEvent
        && spec.negation.is_none()
        && spec.gap_windows.is_empty()
        && !spec.within_previous
        && spec.steps.len() >= 2
        && spec
            .steps
            .iter()
            .all(|s| s.quantifier == Quantifier::One && !s.optional && s.until.is_none())
        && (spec.steps.iter().skip(1)).all(|s| {
            matches!(
                s.contiguity,
                Contiguity::FollowedBy | Contiguity::FollowedByAny
            )
        })
}

/// The variable a step of a chain stands for: module `groups` names the copies of a
/// variable `v~…`.
pub fn variable_of(step: &str) -> &str {
    step.split('~').next().unwrap_or(step)
}

/// [`reference_outcomes`] for a pattern read as several chains (module `groups`: one per
/// choice of iteration counts), whose candidates and partial runs together are the
/// pattern's. `vars` are the pattern's variables; `skip` names one by its index there.
pub fn outcomes_of_chains(
    chains: &[PatternSpec],
    vars: &[&str],
    skip: AfterMatch,
    events: &[Ev],
) -> Option<Vec<Vec<Vec<usize>>>> {
    outcomes_with(chains, vars, skip, events, Ties::AnyOrder)
}

/// [`outcomes_of_chains`] with ties left as `ties` says.
fn outcomes_with(
    chains: &[PatternSpec],
    vars: &[&str],
    skip: AfterMatch,
    events: &[Ev],
    ties: Ties,
) -> Option<Vec<Vec<Vec<usize>>>> {
    let mut points = timeline(events);
    let mut alive = vec![BTreeSet::new(); points.len()];
    // Each candidate as (event, variable index) pairs.
    let mut assignments: Vec<Vec<(usize, usize)>> = Vec::new();
    for chain in chains {
        let var_of: Vec<usize> = (chain.steps.iter())
            .map(|s| {
                let v = variable_of(&s.name);
                vars.iter()
                    .position(|&x| x == v)
                    .expect("a variable of the pattern")
            })
            .collect();
        for taken in reference_assignments(chain, events) {
            if skip != AfterMatch::NoSkip {
                let at = completion(chain, events, &points, &taken);
                points[at].completing.push(assignments.len());
            }
            assignments.push(taken.iter().map(|&(e, s)| (e, var_of[s])).collect());
        }
        if skip != AfterMatch::NoSkip {
            for (all, some) in alive.iter_mut().zip(alive_starts(chain, events, &points)) {
                all.extend(some);
            }
        }
    }
    let as_events = |a: &[(usize, usize)]| a.iter().map(|&(e, _)| e).collect::<Vec<usize>>();
    if skip == AfterMatch::NoSkip {
        let mut all: Vec<Vec<usize>> = assignments.iter().map(|a| as_events(a)).collect();
        all.sort();
        return Some(vec![all]);
    }
    let mut states = vec![Emission::new(events.len())];
    for (point, alive) in points.iter().zip(&alive) {
        let mut next = BTreeSet::new();
        for mut state in states {
            for &m in &point.completing {
                if !state.killed[assignments[m][0].0] {
                    state.waiting.push(m);
                }
            }
            state.waiting.sort_unstable();
            if !state.report(skip, ties, &assignments, alive, &mut next) {
                return None;
            }
        }
        states = next.into_iter().collect();
    }
    let mut outcomes: Vec<Vec<Vec<usize>>> = states
        .into_iter()
        .map(|s| {
            let mut out: Vec<Vec<usize>> = s
                .reported
                .iter()
                .map(|&m| as_events(&assignments[m]))
                .collect();
            out.sort();
            out
        })
        .collect();
    outcomes.sort();
    outcomes.dedup();
    Some(outcomes)
}

/// One step of the NFA: `advanceTime` before the events of a timestamp, one event, or the
/// end of the input (the watermark at +infinity).
struct Point {
    /// Events processed so far (`events[..upto]`).
    upto: usize,
    /// The time of this step.
    now: i64,
    /// `advanceTime` (before the events of a timestamp, or the end), not an event.
    advance: bool,
    /// Candidates (indices into the assignments) completed by this step.
    completing: Vec<usize>,
}

/// The NFA's steps over `events`, no candidate completed yet.
fn timeline(events: &[Ev]) -> Vec<Point> {
    let mut points = Vec::new();
    let mut lo = 0;
    while lo < events.len() {
        let now = events[lo].ts;
        let hi = lo + events[lo..].iter().take_while(|e| e.ts == now).count();
        points.push(Point {
            upto: lo,
            now,
            advance: true,
            completing: Vec::new(),
        });
        for i in lo..hi {
            points.push(Point {
                upto: i + 1,
                now,
                advance: false,
                completing: Vec::new(),
            });
        }
        lo = hi;
    }
    points.push(Point {
        upto: events.len(),
        now: i64::MAX,
        advance: true,
        completing: Vec::new(),
    });
    points
}

/// The point a candidate completes at: its last event, or — ending in a trailing
/// `notFollowedBy` (Flink's Pending state) — the first `advanceTime` at or after its
/// deadline, else the end.
fn completion(
    spec: &PatternSpec,
    events: &[Ev],
    points: &[Point],
    taken: &[(usize, usize)],
) -> usize {
    let first = taken[0].0;
    let last = taken[taken.len() - 1].0;
    if trailing_negation(spec) {
        let deadline = deadline(spec, events, first);
        points
            .iter()
            .position(|p| p.advance && p.now >= deadline)
            .unwrap_or(points.len() - 1)
    } else {
        event_point(points, last)
    }
}

/// The point of event `e`.
fn event_point(points: &[Point], e: usize) -> usize {
    points
        .iter()
        .position(|p| !p.advance && p.upto == e + 1)
        .expect("an event point for every event")
}

fn trailing_negation(spec: &PatternSpec) -> bool {
    spec.negation
        .as_ref()
        .is_some_and(|n| n.before == spec.steps.len() && n.kind == NegKind::NotFollowedBy)
}

/// The time a Pending run started at `first` is reported (first-and-last window: a skip
/// strategy with a PREVIOUS_AND_CURRENT window is outside the subset).
fn deadline(spec: &PatternSpec, events: &[Ev], first: usize) -> i64 {
    debug_assert!(!spec.within_previous);
    spec.within_ms
        .map_or(i64::MAX, |w| events[first].ts.saturating_add(w))
}

/// For each point, the first events of the runs alive after it (see the module docs).
fn alive_starts(spec: &PatternSpec, events: &[Ev], points: &[Point]) -> Vec<BTreeSet<usize>> {
    let mut alive = vec![BTreeSet::new(); points.len()];
    let mut taken = Vec::new();
    for e in 0..events.len() {
        for y in 0..spec.steps.len() {
            if spec.steps[..y].iter().all(|s| s.is_optional()) && spec.steps[y].takes(&events[e]) {
                taken.push((e, y));
                extend(spec, events, points, &mut taken, &mut alive);
                taken.pop();
            }
        }
    }
    alive
}

/// Records where the run of prefix `taken` is alive, then tries every longer prefix (a
/// prefix whose run is dead right after its last event has no longer one).
fn extend(
    spec: &PatternSpec,
    events: &[Ev],
    points: &[Point],
    taken: &mut Vec<(usize, usize)>,
    alive: &mut [BTreeSet<usize>],
) {
    let (last, j) = taken[taken.len() - 1];
    let start = taken[0].0;
    // The step of `last` itself, then every later one.
    let own = event_point(points, last);
    if !is_alive(spec, events, taken, last + 1, points[own].now) {
        return;
    }
    alive[own].insert(start);
    for (p, point) in points.iter().enumerate().skip(own + 1) {
        if !alive[p].contains(&start) && is_alive(spec, events, taken, point.upto, point.now) {
            alive[p].insert(start);
        }
    }
    let count = taken.iter().rev().take_while(|&&(_, s)| s == j).count();
    for e in last + 1..events.len() {
        for y in j..spec.steps.len() {
            if can_take_next(spec, j, count, y) && spec.steps[y].takes(&events[e]) {
                taken.push((e, y));
                extend(spec, events, points, taken, alive);
                taken.pop();
            }
        }
    }
}

/// Whether, after `count` events of step `j`, step `y` may take the next one.
fn can_take_next(spec: &PatternSpec, j: usize, count: usize, y: usize) -> bool {
    let steps = &spec.steps;
    if y == j {
        steps[j].max().is_none_or(|m| count < m)
    } else {
        count >= steps[j].min() && steps[j + 1..y].iter().all(|s| s.is_optional())
    }
}

/// Whether the run of prefix `taken` is alive after `events[..upto]` at time `now`.
fn is_alive(
    spec: &PatternSpec,
    events: &[Ev],
    taken: &[(usize, usize)],
    upto: usize,
    now: i64,
) -> bool {
    let steps = &spec.steps;
    let (_, j) = taken[taken.len() - 1];
    let count = taken.iter().rev().take_while(|&&(_, s)| s == j).count();
    let seen = &events[..upto];
    // Pending: complete, waiting for the trailing `notFollowedBy`'s deadline.
    if trailing_negation(spec)
        && count >= steps[j].min()
        && steps[j + 1..].iter().all(|s| s.is_optional())
        && deadline(spec, events, taken[0].0) > now
        && satisfies_rules(spec, seen, taken)
    {
        return true;
    }
    // Going on: one stand-in taken by step `y`, then the fewest that complete the pattern.
    (j..steps.len())
        .filter(|&y| can_take_next(spec, j, count, y))
        .any(|y| {
            let mut full = taken.to_vec();
            let mut ext = seen.to_vec();
            let mut take = |step: usize, n: usize, full: &mut Vec<(usize, usize)>| {
                for _ in 0..n {
                    full.push((ext.len(), step));
                    ext.push(Ev::magic(now));
                }
            };
            let first_count = if y == j { count + 1 } else { 1 };
            take(y, 1 + steps[y].min().saturating_sub(first_count), &mut full);
            for (z, s) in steps.iter().enumerate().skip(y + 1) {
                if !s.is_optional() {
                    take(z, s.min(), &mut full);
                }
            }
            satisfies_rules(spec, &ext, &full)
        })
}

/// One way the reports can have gone so far.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Emission {
    /// Completed matches waiting (assignment indices, sorted).
    waiting: Vec<usize>,
    /// First events whose runs were pruned.
    killed: Vec<bool>,
    /// Matches reported (assignment indices).
    reported: Vec<usize>,
}

impl Emission {
    fn new(events: usize) -> Emission {
        Emission {
            waiting: Vec::new(),
            killed: vec![false; events],
            reported: Vec::new(),
        }
    }

    /// Reports waiting matches as Flink does after one step, following every order of
    /// ties (states reached by several orders are followed once); each end state goes to
    /// `out`. `false` when there are more than [`MAX_STATES`].
    fn report(
        self,
        skip: AfterMatch,
        ties: Ties,
        assignments: &[Vec<(usize, usize)>],
        alive: &BTreeSet<usize>,
        out: &mut BTreeSet<Emission>,
    ) -> bool {
        let start = |m: usize| assignments[m][0].0;
        let mut frontier = BTreeSet::from([self]);
        while let Some(state) = frontier.pop_first() {
            if frontier.len() + out.len() > MAX_STATES {
                return false;
            }
            let Some(earliest) = state.waiting.iter().map(|&m| start(m)).min() else {
                out.insert(state);
                continue;
            };
            let partial = alive.iter().copied().find(|&s| !state.killed[s]);
            if partial.is_some_and(|s| s < earliest) {
                out.insert(state);
                continue;
            }
            // Rule R7: only the chain of earliest events (assignments list their events in
            // order, so the least list is the earliest at every step).
            let first_chain = (ties == Ties::EarliestChain)
                .then(|| {
                    (state.waiting.iter().copied())
                        .filter(|&m| start(m) == earliest)
                        .min_by(|&a, &b| assignments[a].cmp(&assignments[b]))
                })
                .flatten();
            for (i, &m) in state.waiting.iter().enumerate() {
                if start(m) != earliest || first_chain.is_some_and(|f| f != m) {
                    continue;
                }
                let mut next = state.clone();
                next.waiting.remove(i);
                next.reported.push(m);
                next.reported.sort_unstable();
                next.prune(skip, &assignments[m]);
                next.waiting.retain(|&w| !next.killed[start(w)]);
                frontier.insert(next);
            }
        }
        true
    }

    /// The strategy's pruning after reporting `matched` (events with variable indices).
    fn prune(&mut self, skip: AfterMatch, matched: &[(usize, usize)]) {
        let of = |v: usize| {
            matched
                .iter()
                .filter(move |&&(_, s)| s == v)
                .map(|&(e, _)| e)
        };
        let (id, inclusive) = match skip {
            AfterMatch::NoSkip => return,
            AfterMatch::ToNext => (Some(matched[0].0), true),
            AfterMatch::PastLastEvent => (Some(matched[matched.len() - 1].0), true),
            AfterMatch::ToFirst(v) => (of(v).next(), false),
            AfterMatch::ToLast(v) => (of(v).next_back(), false),
        };
        let Some(id) = id else { return };
        for (s, killed) in self.killed.iter_mut().enumerate() {
            if s < id || (inclusive && s == id) {
                *killed = true;
            }
        }
    }
}

//! A brute-force reference matcher for a subset of the motif pattern language, written
//! straight from Apache Flink CEP's semantics instead of as an automaton.
//!
//! [`reference_matches`] enumerates every *candidate assignment* — a choice of events
//! and, for each chosen event, the pattern variable (step) that takes it — and keeps the
//! candidates that satisfy the declarative rules below. Every surviving assignment is one
//! match; two different assignments over the same events are two matches (Flink reports
//! both, see `nfa__testMultipleTakesVersionCollision`), so the result is a multiset.
//!
//! # Supported patterns
//!
//! A chain of steps `begin`, `next`, `followedBy`, `followedByAny`, each with an optional
//! quantifier (`times(n)`, `times(n, m)`, `oneOrMore()`, `timesOrMore(n)`), the modifiers
//! `optional()`, `greedy()`, `consecutive()`, `allowCombinations()`, `until(..)` on loops,
//! a condition on the event's `name` (see [`Cond`]) and an optional `within(N ms)`
//! (first-and-last), `within(N ms, PREVIOUS_AND_CURRENT)` on a single step right after a
//! single step (R6) or on a trailing `notFollowedBy` (T2), one `notNext` / `notFollowedBy`
//! (see [`Negation`]) and an after-match skip strategy (module [`skip`], which picks from
//! the candidates below what Flink reports). Groups: module [`groups`] reads a pattern
//! with groups as chains of this kind. See [`PatternSpec::validate`] for the combinations
//! Flink rejects and those the reference leaves out.
//!
//! # Terms
//!
//! Steps are `S_0 .. S_{k-1}`. For a step `S`:
//! * `C_S` is its condition;
//! * `min(S)`/`max(S)` its counts: 1/1 without a quantifier, `n`/`n` for `times(n)`,
//!   `max(n,1)`/`m` for `times(n, m)`, `1`/∞ for `oneOrMore()`, `n`/∞ for
//!   `timesOrMore(n)`;
//! * `S` is *optional* when `optional()` was called or it is `times(0, m)` (Flink turns
//!   `times(0, m)` into an optional `times(1, m)`);
//! * its *contiguity* is how its first event relates to the event taken before it:
//!   `next` (strict), `followedBy` (skip till next) or `followedByAny` (skip till any);
//! * its *inner contiguity* is how its 2nd, 3rd, ... event relates to its previous one:
//!   relaxed (default, skip till next), `consecutive()` (strict) or `allowCombinations()`
//!   (skip till any);
//! * `U_S` is its `until` condition (loops only); without `until`, `U_S` is false.
//!
//! The *greedy guard* `G_S` of a step `S` with predecessor `P` is `C_P` when `P` is greedy
//! and *effectively* greedy — `P` is a loop (`oneOrMore`, `timesOrMore`), or `P` is a
//! `times(n, m)` whose normalized bounds differ — and is absent otherwise. This mirrors
//! `NFACompiler.updateWithGreedyCondition`, which ANDs `NOT(C_P)` onto every transition
//! (take, ignore and proceed) of the *first* state of `S` — and only that state, not the
//! state an optional `S` moves to after ignoring an event, nor the states of later
//! elements of `S`. (For `times(n, m)` the compiler only does it when `from != to`, after
//! `times(0, m)` became `times(1, m)`; `greedy()` on `times(n)` or `times(0, 1)` therefore
//! changes nothing.) The guard is *active at* an event `e` unless `U_P(e)` holds: a greedy
//! loop with `until` PROCEEDs on an event satisfying `U_P` into an unguarded copy of `S`'s
//! first state (`originalStateMap` in the compiler), and the run stays in that copy.
//!
//! A *gap* is the (possibly empty) run of events strictly between two consecutive
//! events of the candidate.
//!
//! # The rules
//!
//! A candidate is a non-empty, strictly increasing list of events, each labelled with a
//! step, the labels non-decreasing in pattern order, such that:
//!
//! * **(R0) counts and conditions.** Every step `S` takes either no event (only when `S` is
//!   optional) or between `min(S)` and `max(S)` events, and every event satisfies the
//!   condition of the step that takes it and not its `until`: `C_S AND NOT U_S`.
//! * **(R1) inner contiguity.** Between two consecutive events of the same step `S`:
//!   strict — the gap is empty; relaxed — no gap event satisfies `C_S` or `U_S`;
//!   combinations — no gap event satisfies `U_S`. (`until` is ANDed onto the inner
//!   IGNORE edges, not onto the IGNORE edge before the first element.)
//! * **(R2) between steps.** Let `p` be the last event of step `X` and `f` the first event
//!   of the next step `Y` that takes any event (the steps strictly between are skipped,
//!   which R0 only allows when they are optional). Let `e*` be the event right after `p`
//!   (the first gap event, or `f` when the gap is empty). Then
//!   - every skipped step `Z` whose guard is active at `e*` must have `NOT G_Z(e*)` (the
//!     skip is Flink's PROCEED edge out of `Z`'s first state, evaluated on `e*`);
//!   - contiguity of `Y` over the gap: `next` — the gap is empty; `followedBy` — no gap
//!     event satisfies `C_Y`; `followedByAny` — anything;
//!   - greedy guard of `Y`, if active at `e*`: when `Y` is not optional, neither the gap
//!     events nor `f` satisfy `G_Y` (the first state of `Y` ignores into itself); when
//!     `Y` is optional, only `e*` must not satisfy `G_Y` (after one ignore the run sits
//!     in `Y`'s unguarded ignore-state).
//! * **(R3) the first event.** Any event may start a match (Flink's start state never
//!   ignores, it is re-created for every event). If the first event `f` is taken by step
//!   `Y`, every earlier (skipped) step `Z` and `Y` itself must have `NOT G(f)` where
//!   their guard is active at `f`.
//! * **(R4) the end.** Let `p` be the last event, taken by step `X`. Every later step is
//!   skipped (so optional, by R0), and every such step `Z` whose guard is active at `p`
//!   must have `NOT G_Z(p)`: Flink reports a match only when, right after a take, PROCEED
//!   edges evaluated on the taken event lead to the final state. A consequence: when `X` itself
//!   is effectively greedy and a later optional step is skipped, no match ends at `p`.
//!   A pattern ending in a loop reports every accepted prefix (each take reaches the final
//!   state through the loop's PROCEED edge), and a match is reported as soon as it is
//!   complete, so what is still pending at the end of the input never matters here.
//! * **(R5) within.** With `within(W ms)`: `ts(last) - ts(first) < W` (Flink prunes a run
//!   before processing an event whose time is `>= start + W`).
//! * **(R6) gap windows.** With `within(W ms, PREVIOUS_AND_CURRENT)` on a step `Y` that
//!   takes one event `f`, right after a step `X` that takes one event `p` (neither
//!   optional, no `notNext` between them): `ts(f) - ts(p) < W`. Flink prunes a run by the
//!   window of the state it waits in, before the first event of each new timestamp; after
//!   `p` the run waits in `Y`'s state (so an event at a time equal to `ts(p) + W - 1` or
//!   less is in time). Elsewhere the run waits in another state — a loop's, an optional
//!   step's, `notNext`'s — and reaches `Y`'s only within an event's step, where no window
//!   is checked (so `begin("a").notNext("n").followedBy("b").within(1ms,
//!   PREVIOUS_AND_CURRENT)` matches a@1, b@2, as the differential test found); the
//!   reference leaves those out.
//! * **(R7) ties under `skipPastLastEvent`.** Where a skip strategy must choose between
//!   waiting matches with the same first event, the reference follows every order (module
//!   `skip`), except for `skipPastLastEvent()` over a chain of single steps linked by
//!   `followedBy`/`followedByAny`: there the match that took the earliest event at every
//!   step is reported (`skip::earliest_chain_first`).
//!
//! Why one assignment gives at most one match: in Flink's compiled NFA at most one PROCEED
//! edge of a state can hold on a given event (a greedy loop with `until` has two, on `U`
//! and on `NOT U`), and a state that ignored an event while skipping towards a later
//! element can no longer PROCEED (loops and optional states ignore into a copy without the
//! PROCEED edge). So for a given assignment the run through the NFA is unique: gap events
//! after `p` are ignored either by the state waiting for the next element of `X` (R1) or,
//! after PROCEEDing on `e*`, by the first state of `Y` (R2).
//!
//! # How it was checked
//!
//! * `reference_cases` (a test) reads every conformance case whose pattern lies in this
//!   subset ([`from_motif`], with groups through [`groups`]) and compares the reference
//!   with Flink's own answers: 148 of Flink's test scenarios (30 with groups, 18 with a
//!   skip strategy) and 264 of the random cases Flink 2.3 answered (55 with groups, 191
//!   with a skip strategy) agree.
//! * Hand translations of 87 conformance cases (Flink's own test scenarios) give exactly
//!   their `expected.jsonl` (`tests/conformance_reference.rs` in the scratch crate
//!   `/work/refdev`).
//! * Tens of thousands of random patterns agree with an operational transcription of
//!   Flink's `NFACompiler` / `NFA` (the scratch crate's stand-in for `match_lines`).
//! * Random cases from this test's generator (about 870, with and without `until`) and
//!   probes of the quirks above (greedy guard on a skipped or optional step, R4,
//!   `greedy()` on `times(0, 1)`) were run through real Flink 2.3 with
//!   `../shared/flinkcheck`: all agreed.

#![allow(dead_code)]

use std::fmt::Write as _;

pub mod from_motif;
pub mod groups;
pub mod skip;

/// How a step's first event relates to the event taken before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contiguity {
    /// `next`: strict contiguity, no event in between.
    Next,
    /// `followedBy`: skip till next; no event in between satisfies the step's condition.
    FollowedBy,
    /// `followedByAny`: skip till any; anything may be in between.
    FollowedByAny,
}

/// The quantifier of a step, as written in the pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantifier {
    /// No quantifier: exactly one event.
    One,
    /// `times(from, to)` (`times(n)` is `from == to`); `from == 0` makes the step optional.
    Times {
        /// Lower bound as written (0 allowed).
        from: u32,
        /// Upper bound.
        to: u32,
    },
    /// `oneOrMore()`.
    OneOrMore,
    /// `timesOrMore(n)`.
    TimesOrMore(u32),
}

/// Inner contiguity of a quantified step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// Default: skip till next (no skipped event satisfies the step's condition).
    Relaxed,
    /// `consecutive()`: no event between two elements.
    Consecutive,
    /// `allowCombinations()`: anything between two elements.
    Combinations,
}

/// A step condition over the event's `name` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// No `where`: every event.
    Any,
    /// `name == "x" or name == "y" ...`: the name is one of these.
    Names(Vec<String>),
    /// `id == "x" or ...`: the event is one of these. Only for hand translations of
    /// conformance cases whose conditions look at other fields (the generator never
    /// produces it).
    Ids(Vec<String>),
}

impl Cond {
    /// Whether the event satisfies the condition.
    pub fn holds(&self, ev: &Ev) -> bool {
        if ev.is_magic() {
            // A stand-in for "some future event" (see `skip`): it satisfies no condition
            // that could block a run; only `Step::takes` lets it be taken.
            return false;
        }
        match self {
            Cond::Any => true,
            Cond::Names(names) => names.contains(&ev.name),
            Cond::Ids(ids) => ids.contains(&ev.id),
        }
    }

    /// The condition as a motif expression (`None` for [`Cond::Any`]).
    pub fn to_motif(&self) -> Option<String> {
        let (field, values) = match self {
            Cond::Any => return None,
            Cond::Names(v) => ("name", v),
            Cond::Ids(v) => ("id", v),
        };
        let parts: Vec<String> = values
            .iter()
            .map(|v| format!("{field} == {}", json_str(v)))
            .collect();
        Some(parts.join(" or "))
    }

    /// Condition on one name.
    pub fn name(n: &str) -> Cond {
        Cond::Names(vec![n.to_string()])
    }

    /// Condition on a set of names.
    pub fn names(ns: &[&str]) -> Cond {
        Cond::Names(ns.iter().map(|s| s.to_string()).collect())
    }
}

/// One variable of the pattern chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Variable name.
    pub name: String,
    /// Contiguity to the previous step (ignored for the first step).
    pub contiguity: Contiguity,
    /// The step's condition.
    pub cond: Cond,
    /// The quantifier as written.
    pub quantifier: Quantifier,
    /// `optional()` was called.
    pub optional: bool,
    /// `greedy()` was called.
    pub greedy: bool,
    /// Inner contiguity (only meaningful for quantified steps).
    pub inner: Inner,
    /// `until(..)`: stop condition of a loop.
    pub until: Option<Cond>,
}

impl Step {
    /// A step with no quantifier or modifier.
    pub fn new(name: &str, contiguity: Contiguity, cond: Cond) -> Step {
        Step {
            name: name.to_string(),
            contiguity,
            cond,
            quantifier: Quantifier::One,
            optional: false,
            greedy: false,
            inner: Inner::Relaxed,
            until: None,
        }
    }

    /// Fewest events when the step is not skipped (`times(0, m)` counts as `times(1, m)`).
    pub fn min(&self) -> usize {
        match self.quantifier {
            Quantifier::One => 1,
            Quantifier::Times { from, .. } => from.max(1) as usize,
            Quantifier::OneOrMore => 1,
            Quantifier::TimesOrMore(n) => n as usize,
        }
    }

    /// Most events, `None` for unbounded loops.
    pub fn max(&self) -> Option<usize> {
        match self.quantifier {
            Quantifier::One => Some(1),
            Quantifier::Times { to, .. } => Some(to as usize),
            Quantifier::OneOrMore | Quantifier::TimesOrMore(_) => None,
        }
    }

    /// Optional: `optional()` or `times(0, m)`.
    pub fn is_optional(&self) -> bool {
        self.optional || matches!(self.quantifier, Quantifier::Times { from: 0, .. })
    }

    /// Whether `greedy()` changes anything: a greedy loop, or a greedy `times(n, m)` whose
    /// normalized bounds differ (Flink's `from != to` test in `createTimesState`).
    pub fn effectively_greedy(&self) -> bool {
        self.greedy
            && match self.quantifier {
                Quantifier::One => false,
                Quantifier::OneOrMore | Quantifier::TimesOrMore(_) => true,
                Quantifier::Times { from, to } => from.max(1) != to,
            }
    }

    /// Writes the calls after the step's name: `where`, quantifier, modifiers, `until`.
    pub fn render_calls(&self, out: &mut String) {
        if let Some(expr) = self.cond.to_motif() {
            let _ = write!(out, ".where({expr})");
        }
        render_quantifier(self.quantifier, out);
        if self.optional {
            out.push_str(".optional()");
        }
        render_inner(self.inner, out);
        if self.greedy {
            out.push_str(".greedy()");
        }
        if let Some(expr) = self.until.as_ref().and_then(Cond::to_motif) {
            let _ = write!(out, ".until({expr})");
        }
    }

    /// Quantified without optional elements: a loop or `times(n)` (what the reference
    /// models before a `notFollowedBy`, besides a single step).
    pub fn repeats_without_optional_elements(&self) -> bool {
        match self.quantifier {
            Quantifier::OneOrMore | Quantifier::TimesOrMore(_) => true,
            Quantifier::Times { from, to } => from == to,
            Quantifier::One => false,
        }
    }

    fn is_quantified(&self) -> bool {
        self.quantifier != Quantifier::One
    }

    fn is_loop(&self) -> bool {
        matches!(
            self.quantifier,
            Quantifier::OneOrMore | Quantifier::TimesOrMore(_)
        )
    }

    /// `U_S(e)`.
    fn until_holds(&self, ev: &Ev) -> bool {
        self.until.as_ref().is_some_and(|u| u.holds(ev))
    }

    /// Whether the step can take the event: `C_S AND NOT U_S`.
    fn takes(&self, ev: &Ev) -> bool {
        if ev.is_magic() {
            return true;
        }
        self.cond.holds(ev) && !self.until_holds(ev)
    }
}

/// A pattern: the chain of steps and an optional `within` (first-and-last, in ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternSpec {
    /// The steps in pattern order.
    pub steps: Vec<Step>,
    /// `within(N ms)` on the last step.
    pub within_ms: Option<i64>,
    /// The window is `PREVIOUS_AND_CURRENT` (only on a trailing `notFollowedBy`, rule T2);
    /// else first-and-last.
    pub within_previous: bool,
    /// `within(N ms, PREVIOUS_AND_CURRENT)` on positive steps: `(step, N)`, each step
    /// taking one event, not optional and not the first (rule R6).
    pub gap_windows: Vec<(usize, i64)>,
    /// A negation between two steps (see [`Negation`]).
    pub negation: Option<Negation>,
    /// The after-match skip strategy (module `skip` says how the reference applies it).
    pub skip: AfterMatch,
}

/// Writes a quantifier's call (nothing for [`Quantifier::One`]).
pub fn render_quantifier(q: Quantifier, out: &mut String) {
    match q {
        Quantifier::One => {}
        Quantifier::Times { from, to } if from == to => {
            let _ = write!(out, ".times({from})");
        }
        Quantifier::Times { from, to } => {
            let _ = write!(out, ".times({from}, {to})");
        }
        Quantifier::OneOrMore => out.push_str(".oneOrMore()"),
        Quantifier::TimesOrMore(n) => {
            let _ = write!(out, ".timesOrMore({n})");
        }
    }
}

/// Writes an inner contiguity's call (nothing for [`Inner::Relaxed`]).
pub fn render_inner(inner: Inner, out: &mut String) {
    match inner {
        Inner::Relaxed => {}
        Inner::Consecutive => out.push_str(".consecutive()"),
        Inner::Combinations => out.push_str(".allowCombinations()"),
    }
}

impl AfterMatch {
    /// The strategy as the second argument of `begin` (`, skipToNext()`; empty for
    /// `noSkip()`), `name_of` giving the name of the variable it names.
    pub fn render<'a>(self, name_of: impl Fn(usize) -> &'a str) -> String {
        match self {
            AfterMatch::NoSkip => String::new(),
            AfterMatch::ToNext => ", skipToNext()".to_string(),
            AfterMatch::PastLastEvent => ", skipPastLastEvent()".to_string(),
            AfterMatch::ToFirst(v) => format!(", skipToFirst({})", json_str(name_of(v))),
            AfterMatch::ToLast(v) => format!(", skipToLast({})", json_str(name_of(v))),
        }
    }
}

/// The after-match skip strategy, given on the first `begin`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AfterMatch {
    /// `noSkip()`: every match is reported.
    #[default]
    NoSkip,
    /// `skipToNext()`.
    ToNext,
    /// `skipPastLastEvent()`.
    PastLastEvent,
    /// `skipToFirst(v)`, `v` the index of a step.
    ToFirst(usize),
    /// `skipToLast(v)`, `v` the index of a step.
    ToLast(usize),
}

impl Negation {
    /// The negation as motif source text, on a line of its own.
    fn render(&self, out: &mut String) {
        let call = match self.kind {
            NegKind::NotNext => "notNext",
            NegKind::NotFollowedBy => "notFollowedBy",
        };
        let _ = write!(out, "\n  .{call}(\"n\")");
        if let Some(expr) = self.cond.to_motif() {
            let _ = write!(out, ".where({expr})");
        }
    }
}

/// Whether a negation forbids the next event or every event until the next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegKind {
    /// `notNext`.
    NotNext,
    /// `notFollowedBy`.
    NotFollowedBy,
}

/// A negated step `N` written between steps `before - 1` (`P`) and `before` (`Y`). This
/// reference models it where `Y` takes exactly one event (no quantifier, not optional) and
/// `P` does too — or, before a `notFollowedBy`, is a loop or `times(n)` that is not
/// optional — by the rules N1/N2 below; `validate` rejects anything else.
///
/// * **(N2) `notNext`.** The event right after `p` (P's event) must not satisfy `C_N`: the
///   state of N PROCEEDs on it to Flink's Stop state (dropping the run) or on to `Y`'s
///   state. `Y`'s contiguity is measured from `p`, as without N.
/// * **(N1) `notFollowedBy`.** No event `e` with `p < e <= f` (`p`: P's first event, `f`:
///   Y's event) may satisfy `C_N` — `Y`'s states carry a PROCEED edge to Stop on `C_N`,
///   tested on every event they see, the one `Y` takes included, and so do the states of a
///   quantified `P` after its first element (`addStopStateToLooping`), so a forbidden event
///   between two of P's events kills the run too — except the candidate's last event: a
///   match completed by an event is emitted even when that same event also reaches Stop
///   (Flink's `doProcess` collects final states before it looks at stop states).
/// * **(T2) A trailing `notFollowedBy`** (`before` = the number of steps), only with the
///   pattern's `within(W)` and after a step `X` that takes one event `p`, the last of the
///   match: Flink compiles it to a Pending state, whose run is reported as a match when it
///   times out — before the first event at or after `ts(first) + W`, or `ts(p) + W` for
///   `within(W, PREVIOUS_AND_CURRENT)` (then the only window: nothing else limits the
///   match; Flink sets no timer for it, so without a later event of the key it never
///   reports the match — motif does, at the watermark: a documented deviation) (equal timestamps:
///   `advanceTime` runs before the first event of a timestamp), or at the end of the input
///   (the watermark goes to +infinity) — unless an event after `p` and before that time
///   satisfies `C_N` (the Pending state's PROCEED edge to Stop).
///
/// Derived from `NFACompiler.createMiddleStates` / `addStopStates` and `NFA.doProcess`
/// (docs/notes/reference-negation-rules.md, rules N1 and N2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negation {
    /// Index of `Y`, the step after the negation (at least 1).
    pub before: usize,
    /// Which negation.
    pub kind: NegKind,
    /// Its condition `C_N`.
    pub cond: Cond,
}

/// An input event: `{"id": .., "name": .., "ts": ..}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ev {
    /// Unique id.
    pub id: String,
    /// The field conditions look at.
    pub name: String,
    /// Event time in ms.
    pub ts: i64,
}

impl Ev {
    /// The id of the stand-in for a future event (module `skip`).
    const MAGIC: &'static str = "\u{1}future";

    /// A stand-in for an event not seen yet, at time `ts`: every step takes it and no
    /// condition that could stop a run (contiguity, `until`, greedy guard, negation)
    /// holds on it. Used to ask whether a partial run can still go on.
    pub fn magic(ts: i64) -> Ev {
        Ev {
            id: Ev::MAGIC.to_string(),
            name: String::new(),
            ts,
        }
    }

    /// Whether this is [`Ev::magic`].
    pub fn is_magic(&self) -> bool {
        self.id == Ev::MAGIC
    }

    /// The event as one JSON line.
    pub fn to_json_line(&self) -> String {
        format!(
            "{{\"id\":{},\"name\":{},\"ts\":{}}}",
            json_str(&self.id),
            json_str(&self.name),
            self.ts
        )
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl PatternSpec {
    /// The greedy guard `G_j` of step `j` (see the module docs).
    pub fn guard(&self, j: usize) -> Option<&Cond> {
        if j == 0 {
            return None;
        }
        let prev = &self.steps[j - 1];
        prev.effectively_greedy().then_some(&prev.cond)
    }

    /// Whether the guard of step `j` exists and is active at `e` (not switched off by the
    /// predecessor's `until`).
    pub fn guard_active(&self, j: usize, e: &Ev) -> bool {
        self.guard(j).is_some() && !self.steps[j - 1].until_holds(e)
    }

    /// Checks the combinations Flink (and so motif) rejects, or that this reference does
    /// not model:
    /// * no step;
    /// * duplicate variable names;
    /// * `times(n, m)` with `m < max(n, 1)`, `times(0, 0)`, `timesOrMore(0)`;
    /// * `optional()` on `times(0, m)` ("Optional already applied");
    /// * `greedy()`, `consecutive()` or `allowCombinations()` on a step without quantifier;
    /// * `greedy()` together with `allowCombinations()`;
    /// * `until` on a step that is not a loop, or `until` without a condition;
    /// * `optional()` on a step right after a greedy step ("Optional pattern cannot be
    ///   preceded by greedy pattern" — `times(0, m)` does not go through that check);
    /// * `within` of 0 ms or less, a `PREVIOUS_AND_CURRENT` window longer than the
    ///   pattern's;
    ///
    /// and what the reference leaves out: a negation other than where [`Negation`] says,
    /// `PREVIOUS_AND_CURRENT` windows other than R6's and T2's (and both at once), and a
    /// skip strategy together with a `PREVIOUS_AND_CURRENT` window.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("no step".into());
        }
        for (i, s) in self.steps.iter().enumerate() {
            if self.steps[..i].iter().any(|t| t.name == s.name) {
                return Err(format!("duplicate variable {}", s.name));
            }
            match s.quantifier {
                Quantifier::Times { from, to } => {
                    if to == 0 || to < from.max(1) {
                        return Err(format!("bad times({from}, {to})"));
                    }
                    if from == 0 && s.optional {
                        return Err("optional() on times(0, m)".into());
                    }
                }
                Quantifier::TimesOrMore(0) => return Err("timesOrMore(0)".into()),
                _ => {}
            }
            if !s.is_quantified() && (s.greedy || s.inner != Inner::Relaxed) {
                return Err(format!("modifier on unquantified step {}", s.name));
            }
            match &s.until {
                Some(Cond::Any) => return Err("until without condition".into()),
                Some(_) if !s.is_loop() => return Err("until on a step that is not a loop".into()),
                _ => {}
            }
            if s.greedy && s.inner == Inner::Combinations {
                return Err("greedy with allowCombinations".into());
            }
            if i > 0 && s.optional && self.steps[i - 1].greedy {
                return Err("optional() after a greedy step".into());
            }
        }
        if matches!(self.within_ms, Some(w) if w <= 0) {
            return Err("within must be positive".into());
        }
        if let AfterMatch::ToFirst(v) | AfterMatch::ToLast(v) = self.skip {
            if v >= self.steps.len() {
                return Err("the skip strategy names no step".into());
            }
        }
        let previous_window = self.within_previous || !self.gap_windows.is_empty();
        if previous_window && self.skip != AfterMatch::NoSkip {
            return Err(
                "the reference does not model a skip strategy with a PREVIOUS_AND_CURRENT window"
                    .into(),
            );
        }
        if self.within_previous && !self.gap_windows.is_empty() {
            return Err("the reference does not model two PREVIOUS_AND_CURRENT windows".into());
        }
        for &(y, w) in &self.gap_windows {
            let s = self.steps.get(y).ok_or("a window on no step")?;
            let single = |s: &Step| s.quantifier == Quantifier::One && !s.is_optional();
            let not_next_before = (self.negation.as_ref())
                .is_some_and(|n| n.before == y && n.kind == NegKind::NotNext);
            if y == 0 || !single(s) || !single(&self.steps[y - 1]) || not_next_before || w <= 0 {
                return Err("the reference models PREVIOUS_AND_CURRENT windows only on a single step right after a single step".into());
            }
            if self.within_ms.is_some_and(|f| w > f) {
                return Err("a PREVIOUS_AND_CURRENT window longer than the pattern's".into());
            }
        }
        let trailing = (self.negation.as_ref()).is_some_and(|n| n.before == self.steps.len());
        if self.within_previous && (self.within_ms.is_none() || !trailing) {
            return Err("PREVIOUS_AND_CURRENT only on a trailing notFollowedBy".into());
        }
        if let Some(n) = &self.negation {
            let last = self.steps.len();
            if n.before == last {
                // (T2) A trailing `notFollowedBy`, with the pattern's window.
                let x = &self.steps[last - 1];
                if n.kind != NegKind::NotFollowedBy
                    || self.within_ms.is_none()
                    || x.quantifier != Quantifier::One
                    || x.is_optional()
                {
                    return Err("the reference does not model this trailing negation".into());
                }
                return Ok(());
            }
            if n.before == 0 || n.before > last {
                return Err("a negation must sit between two steps".into());
            }
            let single = |s: &Step| s.quantifier == Quantifier::One && !s.is_optional();
            // Before a `notFollowedBy`: also a loop or `times(n)` (no optional elements).
            let p = &self.steps[n.before - 1];
            let p_ok = single(p)
                || (n.kind == NegKind::NotFollowedBy
                    && !p.is_optional()
                    && p.repeats_without_optional_elements());
            if !p_ok || !single(&self.steps[n.before]) {
                return Err("the reference does not model this negation".into());
            }
        }
        Ok(())
    }

    /// Whether every step is optional, so that the pattern could match the empty
    /// sequence. Flink accepts such patterns (and never reports an empty match; see
    /// `nfa__testStartAndEndWithZeroOrMore`), but motif rejects them, so the differential
    /// test never generates them. The reference handles them like Flink.
    pub fn can_match_empty(&self) -> bool {
        self.steps.iter().all(Step::is_optional)
    }

    /// The pattern as motif source text (one declaration named `p`, event time `ts`).
    pub fn to_motif(&self) -> String {
        let mut out = String::from("pattern p\n    time ts\n= ");
        for (i, s) in self.steps.iter().enumerate() {
            if let Some(n) = self.negation.as_ref().filter(|n| n.before == i) {
                n.render(&mut out);
            }
            if i == 0 {
                let strategy = self.skip.render(|v| &self.steps[v].name);
                let _ = write!(out, "begin({}{strategy})", json_str(&s.name));
            } else {
                let call = match s.contiguity {
                    Contiguity::Next => "next",
                    Contiguity::FollowedBy => "followedBy",
                    Contiguity::FollowedByAny => "followedByAny",
                };
                let _ = write!(out, "\n  .{call}({})", json_str(&s.name));
            }
            s.render_calls(&mut out);
            for &(_, w) in self.gap_windows.iter().filter(|&&(y, _)| y == i) {
                let _ = write!(out, ".within({w}ms, PREVIOUS_AND_CURRENT)");
            }
        }
        if let Some(n) = (self.negation.as_ref()).filter(|n| n.before == self.steps.len()) {
            n.render(&mut out);
        }
        match self.within_ms {
            Some(w) if self.within_previous => {
                let _ = write!(out, "\n  .within({w}ms, PREVIOUS_AND_CURRENT)");
            }
            Some(w) => {
                let _ = write!(out, "\n  .within({w}ms)");
            }
            None => {}
        }
        out.push_str(";\n");
        out
    }
}

/// All matches of `spec` over `events` (fed in order), each as the sorted list of the
/// indices of its events; a multiset, in no particular order. `spec` must pass
/// [`PatternSpec::validate`].
pub fn reference_matches(spec: &PatternSpec, events: &[Ev]) -> Vec<Vec<usize>> {
    reference_assignments(spec, events)
        .iter()
        .map(|taken| taken.iter().map(|&(e, _)| e).collect())
        .collect()
}

/// Every candidate that satisfies the rules, as `(event index, step index)` pairs in input
/// order: the matches without a skip strategy.
pub fn reference_assignments(spec: &PatternSpec, events: &[Ev]) -> Vec<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    enumerate(spec, events, 0, 0, &mut taken, &mut out);
    out
}

/// Enumerates the candidates of rule R0: for step `j`, a count (0 only when optional,
/// else `min..=max`) and that many increasing events from `pos` on that satisfy `C_j`;
/// complete candidates are checked with [`satisfies_rules`].
fn enumerate(
    spec: &PatternSpec,
    events: &[Ev],
    j: usize,
    pos: usize,
    taken: &mut Vec<(usize, usize)>,
    out: &mut Vec<Vec<(usize, usize)>>,
) {
    if j == spec.steps.len() {
        if !taken.is_empty() && satisfies_rules(spec, events, taken) {
            out.push(taken.clone());
        }
        return;
    }
    let step = &spec.steps[j];
    if step.is_optional() {
        enumerate(spec, events, j + 1, pos, taken, out);
    }
    let max = step.max().unwrap_or(usize::MAX);
    choose(spec, events, j, pos, step.min(), max, 0, taken, out);
}

/// Picks the elements of step `j` one by one (`count` so far), then moves to step `j + 1`.
#[allow(clippy::too_many_arguments)]
fn choose(
    spec: &PatternSpec,
    events: &[Ev],
    j: usize,
    pos: usize,
    min: usize,
    max: usize,
    count: usize,
    taken: &mut Vec<(usize, usize)>,
    out: &mut Vec<Vec<(usize, usize)>>,
) {
    if count >= min {
        enumerate(spec, events, j + 1, pos, taken, out);
    }
    if count == max {
        return;
    }
    for e in pos..events.len() {
        if spec.steps[j].takes(&events[e]) {
            taken.push((e, j));
            choose(spec, events, j, e + 1, min, max, count + 1, taken, out);
            taken.pop();
        }
    }
}

/// Rules R1–R6, T2, N1 and N2 for one candidate (`taken`: `(event index, step index)` in
/// input order).
pub(super) fn satisfies_rules(spec: &PatternSpec, events: &[Ev], taken: &[(usize, usize)]) -> bool {
    let steps = &spec.steps;
    // Guard of step z, active at event `at`, holding on event e.
    let guarded_at = |z: usize, at: usize, e: usize| {
        spec.guard_active(z, &events[at]) && spec.guard(z).is_some_and(|g| g.holds(&events[e]))
    };
    let guarded = |z: usize, e: usize| guarded_at(z, e, e);

    // R5: within (first-and-last).
    let (first, first_step) = taken[0];
    let (last, last_step) = taken[taken.len() - 1];
    if let Some(w) = spec.within_ms.filter(|_| !spec.within_previous) {
        if events[last].ts.saturating_sub(events[first].ts) >= w {
            return false;
        }
    }

    // R6: a PREVIOUS_AND_CURRENT window on a single step: from the event taken before.
    for &(y, w) in &spec.gap_windows {
        if let Some(k) = taken.iter().position(|&(_, s)| s == y) {
            if k > 0 && events[taken[k].0].ts - events[taken[k - 1].0].ts >= w {
                return false;
            }
        }
    }

    // R3: the first event, reached through the PROCEED edges of skipped leading steps.
    if (0..=first_step).any(|z| guarded(z, first)) {
        return false;
    }

    for pair in taken.windows(2) {
        let ((p, x), (f, y)) = (pair[0], pair[1]);
        let gap = p + 1..f;
        if x == y {
            // R1: inner contiguity of step x.
            let ok = match steps[x].inner {
                Inner::Consecutive => gap.is_empty(),
                Inner::Relaxed => !gap
                    .clone()
                    .any(|g| steps[x].cond.holds(&events[g]) || steps[x].until_holds(&events[g])),
                Inner::Combinations => !gap.clone().any(|g| steps[x].until_holds(&events[g])),
            };
            if !ok {
                return false;
            }
            continue;
        }
        // R2: from the last event of step x to the first event of step y.
        let e_star = p + 1;
        if (x + 1..y).any(|z| guarded(z, e_star)) {
            return false;
        }
        let contiguity_ok = match steps[y].contiguity {
            Contiguity::Next => gap.is_empty(),
            Contiguity::FollowedBy => !gap.clone().any(|g| steps[y].cond.holds(&events[g])),
            Contiguity::FollowedByAny => true,
        };
        if !contiguity_ok {
            return false;
        }
        let guard_ok = if gap.is_empty() || !steps[y].is_optional() {
            // The first state of y (or, when the guard is off at e*, its unguarded copy)
            // ignores into itself and takes f.
            !(p + 1..=f).any(|g| guarded_at(y, e_star, g))
        } else {
            // One guarded ignore, then y's ignore-state (unguarded) takes over.
            !guarded(y, e_star)
        };
        if !guard_ok {
            return false;
        }
    }

    // T2: a trailing `notFollowedBy` (see [`Negation`]).
    if let Some(n) = spec.negation.as_ref().filter(|n| n.before == steps.len()) {
        // First-and-last: from the first event; previous-and-current: from `p`.
        let base = if spec.within_previous { last } else { first };
        let deadline = spec.within_ms.map_or(i64::MAX, |w| events[base].ts + w);
        let forbidden = events[last + 1..]
            .iter()
            .take_while(|e| e.ts < deadline)
            .any(|e| n.cond.holds(e));
        if forbidden {
            return false;
        }
    }

    // N1 / N2: a negation between two steps (see [`Negation`]); `p` is the first event of
    // the step before it.
    if let Some(n) = spec.negation.as_ref().filter(|n| n.before < steps.len()) {
        let event_of = |j: usize| taken.iter().find(|&&(_, s)| s == j).map(|&(e, _)| e);
        if let (Some(p), Some(f)) = (event_of(n.before - 1), event_of(n.before)) {
            let ok = match n.kind {
                NegKind::NotNext => !n.cond.holds(&events[p + 1]),
                NegKind::NotFollowedBy => {
                    !(p + 1..=f).any(|e| e != last && n.cond.holds(&events[e]))
                }
            };
            if !ok {
                return false;
            }
        }
    }

    // R4: the end; later steps are skipped through PROCEED edges evaluated on `last`.
    !(last_step + 1..steps.len()).any(|z| guarded(z, last))
}

/// Events named `names` at times `times` (non-decreasing; equal times allowed: Flink expires
/// runs only before the first event of a timestamp, which (R5) already says).
pub fn events_at(names: &[&str], times: &[i64]) -> Vec<Ev> {
    names
        .iter()
        .zip(times)
        .enumerate()
        .map(|(i, (n, t))| Ev {
            id: format!("e{i}"),
            name: n.to_string(),
            ts: *t,
        })
        .collect()
}

/// Events named by `names`, with ids `e0, e1, ...` and `ts` = index.
pub fn events_from_names(names: &[&str]) -> Vec<Ev> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| Ev {
            id: format!("e{i}"),
            name: n.to_string(),
            ts: i as i64,
        })
        .collect()
}

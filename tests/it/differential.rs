//! Differential test: motif's matcher against a brute-force reference written straight
//! from Flink CEP's semantics (`reference/mod.rs`, which documents the rules).
//!
//! Proptest generates random patterns — 1 to 4 variables `a`..`d`, each `begin`, `next`,
//! `followedBy` or `followedByAny`, with or without a quantifier (`times(n)`,
//! `times(n, m)`, `oneOrMore()`, `timesOrMore(n)`), `optional()`, `greedy()`,
//! `consecutive()` / `allowCombinations()`, `until(..)` on loops, a condition on `name`,
//! maybe a `within`, in a quarter a `within(.., PREVIOUS_AND_CURRENT)` on a step right
//! after a single step, and in about a third of them a `notNext` or `notFollowedBy` between
//! two steps that take one event each (before a `notFollowedBy` also a loop or `times(n)`),
//! or, with a `within` (either kind), a `notFollowedBy` ending the pattern — and event
//! sequences of 0 to 10 events
//! `{"id":"eN","name":"a|b|c","ts":T}`, a third of them with equal timestamps. The pattern
//! is rendered as motif source, the events as JSON lines, and the matches of
//! `motif::output::match_lines` are compared with the reference's as multisets of
//! event-id lists.
//!
//! A second property gives the same patterns an after-match skip strategy
//! (`skipToNext()`, `skipPastLastEvent()`, `skipToFirst(v)`, `skipToLast(v)`; half of them
//! with every step skipping till any event, for matches that share their first event) and
//! checks that motif gives one of the results the reference allows (`reference::skip`:
//! several only where waiting matches tie on their first event).
//!
//! On a mismatch the failure message holds a ready-made case folder (`case.motif`,
//! `events.jsonl` and the reference's answer as `expected.jsonl`) to run through
//! `../shared/flinkcheck` when it is unclear which side is right.
//!
//! Proptest's default of 256 cases a run applies; `PROPTEST_CASES=N` changes it. Patterns
//! Flink rejects are never generated (see `PatternSpec::validate`), nor patterns whose
//! every step is optional (the reference does not model them; conformance cases
//! `agree__q4a*` hold Flink's answers for some). Outside the generated subset: negations
//! next to optional steps, after `times(n, m)`, before quantified steps or ending a pattern
//! after a quantified step; groups; a skip strategy together with a `PREVIOUS_AND_CURRENT`
//! window; the order of tied matches under a skip strategy (but rule R7's); conditions on other fields or on other variables,
//! `PREVIOUS_AND_CURRENT` windows other than on a trailing `notFollowedBy` or on a single step
//! right after a single step, timed-out matches
//! (docs/notes/reference-negation-rules.md has the rules for more of the negations).

use crate::reference::skip::reference_outcomes;
use crate::reference::{
    AfterMatch, Cond, Contiguity, Ev, Inner, NegKind, Negation, PatternSpec, Quantifier, Step,
};
use proptest::prelude::*;
use std::collections::HashMap;

const VARS: [&str; 4] = ["a", "b", "c", "d"];

pub(crate) fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        1 => Just(Cond::Any),
        4 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Cond::name),
        2 => prop::sample::subsequence(vec!["a", "b", "c"], 2).prop_map(|v| Cond::names(&v)),
    ]
}

pub(crate) fn quantifier() -> impl Strategy<Value = Quantifier> {
    prop_oneof![
        4 => Just(Quantifier::One),
        2 => (1u32..=3).prop_map(|n| Quantifier::Times { from: n, to: n }),
        3 => (0u32..=3, 1u32..=3).prop_map(|(from, to)| Quantifier::Times {
            from,
            to: to.max(from).max(1),
        }),
        3 => Just(Quantifier::OneOrMore),
        2 => (1u32..=2).prop_map(Quantifier::TimesOrMore),
    ]
}

pub(crate) fn contiguity() -> impl Strategy<Value = Contiguity> {
    prop_oneof![
        Just(Contiguity::Next),
        Just(Contiguity::FollowedBy),
        Just(Contiguity::FollowedByAny),
    ]
}

pub(crate) fn inner() -> impl Strategy<Value = Inner> {
    prop_oneof![
        3 => Just(Inner::Relaxed),
        1 => Just(Inner::Consecutive),
        1 => Just(Inner::Combinations),
    ]
}

/// An `until` condition (never [`Cond::Any`]: `until` needs an expression).
pub(crate) fn until() -> impl Strategy<Value = Option<Cond>> {
    prop::option::weighted(
        0.25,
        prop_oneof![
            3 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Cond::name),
            1 => prop::sample::subsequence(vec!["a", "b", "c"], 2).prop_map(|v| Cond::names(&v)),
        ],
    )
}

/// A raw step; [`repair`] turns a list of them into a pattern Flink and motif accept.
pub(crate) fn raw_step() -> impl Strategy<Value = Step> {
    (
        contiguity(),
        cond(),
        quantifier(),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
        inner(),
        until(),
    )
        .prop_map(
            |(contiguity, cond, quantifier, optional, greedy, inner, until)| Step {
                name: String::new(),
                contiguity,
                cond,
                quantifier,
                optional,
                greedy,
                inner,
                until,
            },
        )
}

/// Makes a generated pattern valid: names the variables `a`..`d`, drops modifiers a step
/// cannot have (`greedy`/`consecutive`/`allowCombinations` without quantifier, `greedy`
/// with `allowCombinations`, `until` on a step that is not a loop, `optional()` on
/// `times(0, m)` or right after a greedy step), and makes the first step mandatory when
/// every step is optional.
fn repair(
    mut steps: Vec<Step>,
    within_ms: Option<i64>,
    within_previous: bool,
    negation: Option<(usize, NegKind, Cond)>,
    gap_window: Option<(usize, i64)>,
) -> PatternSpec {
    // A negation goes between two steps made single (one event, not optional), or — a
    // `notFollowedBy` with a window — after the last step, made single.
    let len = steps.len();
    let trailing_ok = |kind: NegKind| kind == NegKind::NotFollowedBy && within_ms.is_some();
    let negation = negation
        .filter(|&(_, kind, _)| len >= 2 || trailing_ok(kind))
        .map(|(seed, kind, cond)| {
            let slots = if trailing_ok(kind) { len } else { len - 1 };
            let before = 1 + seed % slots;
            for (i, s) in steps[before - 1..(before + 1).min(len)]
                .iter_mut()
                .enumerate()
            {
                // Before a `notFollowedBy` in the middle a loop or `times(n)` may stay.
                let keep = i == 0
                    && before < len
                    && kind == NegKind::NotFollowedBy
                    && s.repeats_without_optional_elements();
                if !keep {
                    s.quantifier = Quantifier::One;
                }
                s.optional = false;
            }
            Negation { before, kind, cond }
        });
    for i in 0..steps.len() {
        let prev_greedy = i > 0 && steps[i - 1].greedy;
        steps[i].name = VARS[i].to_string();
        drop_impossible_modifiers(&mut steps[i], prev_greedy);
    }
    let trailing = negation.as_ref().is_some_and(|n| n.before == steps.len());
    let within_previous = within_previous && trailing;
    // A PREVIOUS_AND_CURRENT window on a single step right after a single step (rule R6),
    // no longer than the pattern's window.
    let single = |s: &Step| s.quantifier == Quantifier::One && !s.is_optional();
    let not_next_before =
        |y: usize| (negation.as_ref()).is_some_and(|n| n.before == y && n.kind == NegKind::NotNext);
    let eligible: Vec<usize> = (1..steps.len())
        .filter(|&y| single(&steps[y]) && single(&steps[y - 1]) && !not_next_before(y))
        .collect();
    let gap_windows = gap_window
        .filter(|_| !within_previous && !eligible.is_empty())
        .map(|(seed, w)| {
            (
                eligible[seed % eligible.len()],
                within_ms.map_or(w, |f| w.min(f)),
            )
        })
        .into_iter()
        .collect();
    let mut spec = PatternSpec {
        steps,
        within_ms,
        within_previous,
        gap_windows,
        negation,
        skip: AfterMatch::NoSkip,
    };
    if spec.can_match_empty() {
        let first = &mut spec.steps[0];
        first.optional = false;
        if let Quantifier::Times { from: 0, to } = first.quantifier {
            first.quantifier = Quantifier::Times { from: 1, to };
        }
    }
    spec
}

/// Drops the modifiers a step cannot have: `greedy`/`consecutive`/`allowCombinations`
/// without quantifier, `allowCombinations` with `greedy`, `until` on a step that is not a
/// loop, `optional()` on `times(0, m)` or right after a greedy step (`prev_greedy`).
pub(crate) fn drop_impossible_modifiers(s: &mut Step, prev_greedy: bool) {
    if s.quantifier == Quantifier::One {
        s.greedy = false;
        s.inner = Inner::Relaxed;
    }
    if !matches!(
        s.quantifier,
        Quantifier::OneOrMore | Quantifier::TimesOrMore(_)
    ) {
        s.until = None;
    }
    if s.greedy && s.inner == Inner::Combinations {
        s.inner = Inner::Relaxed;
    }
    if matches!(s.quantifier, Quantifier::Times { from: 0, .. }) || prev_greedy {
        s.optional = false;
    }
}

/// A negation: where (a seed for the position), which, and its condition.
fn negation() -> impl Strategy<Value = Option<(usize, NegKind, Cond)>> {
    prop::option::weighted(
        0.3,
        (
            0usize..4,
            prop_oneof![Just(NegKind::NotNext), Just(NegKind::NotFollowedBy)],
            prop_oneof![
                3 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Cond::name),
                1 => prop::sample::subsequence(vec!["a", "b", "c"], 2).prop_map(|v| Cond::names(&v)),
            ],
        ),
    )
}

fn pattern() -> impl Strategy<Value = PatternSpec> {
    (
        prop::collection::vec(raw_step(), 1..=4),
        prop::option::weighted(0.3, 1i64..=6),
        prop::bool::weighted(0.5),
        negation(),
        prop::option::weighted(0.25, (0usize..4, 1i64..=4)),
    )
        .prop_map(|(steps, within, previous, negation, gap)| {
            repair(steps, within, previous, negation, gap)
        })
}

/// 0 to 10 events; a third of the streams have equal timestamps (each event 0, 1 or 2 ms
/// after the one before), the others one event per millisecond.
pub(crate) fn events() -> impl Strategy<Value = Vec<Ev>> {
    events_of(0..=10)
}

/// `count` events, a third of the streams with equal timestamps (see [`events`]).
pub(crate) fn events_of(count: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<Ev>> {
    (
        prop::collection::vec((prop::sample::select(vec!["a", "b", "c"]), 0i64..=2), count),
        prop::bool::weighted(1.0 / 3.0),
    )
        .prop_map(|(evs, equal_times)| {
            let names: Vec<&str> = evs.iter().map(|(n, _)| *n).collect();
            let mut t = 0;
            let times: Vec<i64> = evs
                .iter()
                .map(|(_, step)| {
                    t += if equal_times { *step } else { 1 };
                    t
                })
                .collect();
            crate::reference::events_at(&names, &times)
        })
}

/// The matches (complete ones only) of motif's JSON output, each as its sorted list of
/// event indices.
fn engine_matches(out: &[serde_json::Value], events: &[Ev]) -> Result<Vec<Vec<usize>>, String> {
    let index: HashMap<&str, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let mut result = Vec::new();
    for m in out {
        if m.get("timed_out").and_then(|v| v.as_bool()) == Some(true) {
            continue;
        }
        let vars = m
            .get("events")
            .and_then(|v| v.as_object())
            .ok_or_else(|| format!("match without an `events` object: {m}"))?;
        let mut ids = Vec::new();
        for list in vars.values() {
            for ev in list
                .as_array()
                .ok_or_else(|| format!("not a list: {list}"))?
            {
                let id = ev
                    .get("id")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("event without id: {ev}"))?;
                ids.push(
                    *index
                        .get(id)
                        .ok_or_else(|| format!("unknown event id {id}"))?,
                );
            }
        }
        ids.sort_unstable();
        result.push(ids);
    }
    Ok(result)
}

fn expected_lines(matches: &[Vec<usize>], events: &[Ev]) -> String {
    let mut out = String::new();
    for m in matches {
        let ids: Vec<String> = m.iter().map(|&i| format!("\"{}\"", events[i].id)).collect();
        out.push_str(&format!("{{\"events\": [{}]}}\n", ids.join(", ")));
    }
    out
}

/// The failure report: a case folder's three files plus the differences.
fn report(
    source: &str,
    lines: &[String],
    events: &[Ev],
    outcomes: &[Vec<Vec<usize>>],
    engine: Result<&[Vec<usize>], &str>,
) -> String {
    let reference: &[Vec<usize>] = outcomes.first().map_or(&[], Vec::as_slice);
    let mut msg = String::from("motif and the reference disagree\n");
    msg.push_str("----- case.motif\n");
    msg.push_str(source);
    msg.push_str("----- events.jsonl\n");
    for l in lines {
        msg.push_str(l);
        msg.push('\n');
    }
    msg.push_str("----- expected.jsonl (reference)\n");
    msg.push_str(&expected_lines(reference, events));
    for (i, other) in outcomes.iter().enumerate().skip(1).take(5) {
        msg.push_str(&format!(
            "----- or, with waiting matches tied on their first event reported in another order ({i})\n"
        ));
        msg.push_str(&expected_lines(other, events));
    }
    match engine {
        Err(e) => msg.push_str(&format!("----- motif failed: {e}\n")),
        Ok(got) => {
            msg.push_str("----- motif\n");
            msg.push_str(&expected_lines(got, events));
            let (only_ref, only_motif) = multiset_difference(reference, got);
            msg.push_str("----- only in reference\n");
            msg.push_str(&expected_lines(&only_ref, events));
            msg.push_str("----- only in motif\n");
            msg.push_str(&expected_lines(&only_motif, events));
        }
    }
    msg
}

fn multiset_difference(a: &[Vec<usize>], b: &[Vec<usize>]) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let mut rest_b: Vec<Vec<usize>> = b.to_vec();
    let mut only_a = Vec::new();
    for m in a {
        if let Some(pos) = rest_b.iter().position(|x| x == m) {
            rest_b.swap_remove(pos);
        } else {
            only_a.push(m.clone());
        }
    }
    (only_a, rest_b)
}

/// Runs one case through both sides; `Err` carries the report, `Ok(false)` says the
/// reference gave up (ties allowing too many orders, see `reference::skip`).
fn check(spec: &PatternSpec, events: &[Ev]) -> Result<bool, String> {
    spec.validate().map_err(|e| {
        format!(
            "generator produced an invalid pattern ({e}):\n{}",
            spec.to_motif()
        )
    })?;
    let Some(outcomes) = reference_outcomes(spec, events) else {
        return Ok(false);
    };
    compare(&spec.to_motif(), events, &outcomes)?;
    Ok(true)
}

/// Runs `source` over `events` in motif, in both layouts of the runs (the list in Flink's
/// order, and grouped by state from the first run on where the pattern allows it), and
/// checks that each gives one of the reference's `outcomes`; `Err` carries the report.
pub(crate) fn compare(
    source: &str,
    events: &[Ev],
    outcomes: &[Vec<Vec<usize>>],
) -> Result<(), String> {
    let lines: Vec<String> = events.iter().map(Ev::to_json_line).collect();
    let line_refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    for group_runs_at in [None, Some(0)] {
        let options = motif::runtime::EngineOptions {
            group_runs_at,
            ..Default::default()
        };
        let engine = motif::output::match_lines_with(source, &line_refs, options)
            .and_then(|out| engine_matches(&out, events));
        match engine {
            Err(e) => return Err(report(source, &lines, events, outcomes, Err(&e))),
            Ok(mut got) => {
                got.sort();
                if !outcomes.contains(&got) {
                    let layout = if group_runs_at.is_some() {
                        "runs grouped by state"
                    } else {
                        "runs in one list"
                    };
                    return Err(format!(
                        "({layout})\n{}",
                        report(source, &lines, events, outcomes, Ok(&got))
                    ));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    /// motif reports exactly the reference's matches (as a multiset).
    #[test]
    fn motif_matches_the_reference(spec in pattern(), events in events()) {
        if let Err(report) = check(&spec, &events) {
            prop_assert!(false, "{}", report);
        }
    }

    /// The same with an after-match skip strategy (`reference::skip`): motif reports one
    /// of the results the reference allows (several only where waiting matches tie).
    #[test]
    fn motif_matches_the_reference_with_a_skip_strategy(
        spec in pattern(),
        (kind, var) in skip_strategy(),
        any in prop::bool::weighted(0.5),
        events in events(),
    ) {
        let mut spec = spec;
        // Half the patterns skip till any event everywhere: more matches that share their
        // first event, so more ties.
        if any {
            for s in &mut spec.steps {
                s.contiguity = Contiguity::FollowedByAny;
                if s.inner == Inner::Relaxed && !s.greedy && s.quantifier != Quantifier::One {
                    s.inner = Inner::Combinations;
                }
            }
        }
        let var = var % spec.steps.len();
        spec.skip = match kind {
            0 => AfterMatch::ToNext,
            1 => AfterMatch::PastLastEvent,
            2 => AfterMatch::ToFirst(var),
            _ => AfterMatch::ToLast(var),
        };
        // The reference models skip strategies with first-and-last windows only.
        spec.within_previous = false;
        spec.gap_windows.clear();
        match check(&spec, &events) {
            Err(report) => prop_assert!(false, "{}", report),
            Ok(compared) => prop_assume!(compared, "too many tie orders"),
        }
    }
}

/// Matches and timed-out partial matches of `source`, each rendered, sorted.
fn sorted_outputs(source: &str, lines: &[&str], group_runs_at: Option<usize>) -> Vec<String> {
    let options = motif::runtime::EngineOptions {
        timeouts: true,
        group_runs_at,
        ..Default::default()
    };
    let mut out: Vec<String> = match motif::output::match_lines_with(source, lines, options) {
        Ok(values) => values.iter().map(|v| v.to_string()).collect(),
        Err(e) => vec![format!("error: {e}")],
    };
    out.sort();
    out
}

fn skip_strategy() -> impl Strategy<Value = (u8, usize)> {
    (0u8..4, 0usize..4)
}

proptest! {
    /// With a skip strategy motif groups runs by state only where no two runs can share
    /// their first event (`motif::nfa::Grouping`): there the grouped layout gives exactly
    /// the list's matches and time-outs. (Outside the reference's subset: the two layouts
    /// are compared with each other.)
    #[test]
    fn with_a_skip_strategy_grouped_runs_give_the_lists_results(
        spec in pattern(),
        (kind, var) in skip_strategy(),
        events in events(),
    ) {
        let name = &spec.steps[var % spec.steps.len()].name;
        let strategy = match kind {
            0 => "skipToNext()".to_string(),
            1 => "skipPastLastEvent()".to_string(),
            2 => format!("skipToFirst(\"{name}\")"),
            _ => format!("skipToLast(\"{name}\")"),
        };
        let source = spec.to_motif().replacen(
            "begin(\"a\")",
            &format!("begin(\"a\", {strategy})"),
            1,
        );
        let lines: Vec<String> = events.iter().map(Ev::to_json_line).collect();
        let line_refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let list = sorted_outputs(&source, &line_refs, None);
        let grouped = sorted_outputs(&source, &line_refs, Some(0));
        prop_assert_eq!(list, grouped, "{}\n{}", source, lines.join("\n"));
    }
}

/// Rule R6: `within(2ms, PREVIOUS_AND_CURRENT)` on `b` right after `a` bounds the gap
/// between their events, decided before the first event of a later timestamp.
#[test]
fn smoke_gap_window() {
    let spec = PatternSpec {
        steps: vec![
            Step::new("a", Contiguity::Next, Cond::name("a")),
            Step::new("b", Contiguity::FollowedBy, Cond::name("b")),
        ],
        within_ms: None,
        within_previous: false,
        gap_windows: vec![(1, 2)],
        negation: None,
        skip: AfterMatch::NoSkip,
    };
    /// Event names, their times, the matches.
    type Timed = (&'static [&'static str], &'static [i64], Vec<Vec<usize>>);
    let cases: [Timed; 3] = [
        (&["a", "b"], &[1, 2], vec![vec![0, 1]]),
        (&["a", "b"], &[1, 3], vec![]),
        (&["a", "c", "b"], &[1, 2, 2], vec![vec![0, 2]]),
    ];
    for (names, times, want) in cases {
        let events = crate::reference::events_at(names, times);
        assert_eq!(crate::reference::reference_matches(&spec, &events), want);
        if let Err(report) = check(&spec, &events).and_then(compared) {
            panic!("{report}");
        }
    }
}

/// A fixed case's check: compared, not given up.
fn compared(done: bool) -> Result<(), String> {
    done.then_some(())
        .ok_or_else(|| "the reference gave up".to_string())
}

/// A fixed case, so that a broken harness (no match at all from either side) shows up
/// even if the random cases happened to produce no match.
#[test]
fn smoke_followed_by_loop() {
    let spec = PatternSpec {
        steps: vec![
            Step::new("a", Contiguity::Next, Cond::name("a")),
            Step {
                quantifier: Quantifier::OneOrMore,
                ..Step::new("b", Contiguity::FollowedBy, Cond::name("b"))
            },
        ],
        within_ms: None,
        within_previous: false,
        gap_windows: Vec::new(),
        negation: None,
        skip: AfterMatch::NoSkip,
    };
    let events = crate::reference::events_from_names(&["a", "c", "b", "b"]);
    let mut expected = crate::reference::reference_matches(&spec, &events);
    expected.sort();
    assert_eq!(expected, vec![vec![0, 2], vec![0, 2, 3]]);
    if let Err(report) = check(&spec, &events).and_then(compared) {
        panic!("{report}");
    }
}

/// Fixed cases for the negations (rules N1 and N2 of the reference), each checked against
/// motif too: a forbidden event between the two steps kills the match; `notNext` looks at
/// the next event only; the event that completes a match is exempt from `notFollowedBy`.
#[test]
fn smoke_negations() {
    let spec = |kind, cond: &str, y: &str| PatternSpec {
        steps: vec![
            Step::new("a", Contiguity::Next, Cond::name("a")),
            Step::new("b", Contiguity::FollowedBy, Cond::names(&[y])),
        ],
        within_ms: None,
        within_previous: false,
        gap_windows: Vec::new(),
        negation: Some(Negation {
            before: 1,
            kind,
            cond: Cond::name(cond),
        }),
        skip: AfterMatch::NoSkip,
    };
    /// A pattern, event names, the matches (event indices).
    type Case = (PatternSpec, &'static [&'static str], Vec<Vec<usize>>);
    let cases: [Case; 5] = [
        (
            spec(NegKind::NotFollowedBy, "c", "b"),
            &["a", "c", "b"],
            vec![],
        ),
        (
            spec(NegKind::NotFollowedBy, "c", "b"),
            &["a", "b", "c"],
            vec![vec![0, 1]],
        ),
        (
            spec(NegKind::NotNext, "c", "b"),
            &["a", "x", "c", "b"],
            vec![vec![0, 3]],
        ),
        (spec(NegKind::NotNext, "c", "b"), &["a", "c", "b"], vec![]),
        // The completing event is exempt: `b` is both forbidden and taken.
        (
            spec(NegKind::NotFollowedBy, "b", "b"),
            &["a", "b"],
            vec![vec![0, 1]],
        ),
    ];
    // (T2) A trailing `notFollowedBy` with a window of 3 ms from a@1: decided before the
    // first event at 4 ms or later, which is not looked at.
    let trailing = PatternSpec {
        steps: vec![Step::new("a", Contiguity::Next, Cond::name("a"))],
        within_ms: Some(3),
        within_previous: false,
        gap_windows: Vec::new(),
        negation: Some(Negation {
            before: 1,
            kind: NegKind::NotFollowedBy,
            cond: Cond::name("b"),
        }),
        skip: AfterMatch::NoSkip,
    };
    /// Event names, their times, the matches.
    type Timed = (&'static [&'static str], &'static [i64], Vec<Vec<usize>>);
    let timed: [Timed; 3] = [
        (&["a", "c", "b"], &[1, 2, 4], vec![vec![0]]),
        (&["a", "b"], &[1, 3], vec![]),
        (&["a", "c", "c"], &[1, 2, 2], vec![vec![0]]),
    ];
    // The same with `within(2ms, PREVIOUS_AND_CURRENT)`: 2 ms from the event before.
    let previous = PatternSpec {
        within_ms: Some(2),
        within_previous: true,
        gap_windows: Vec::new(),
        ..trailing.clone()
    };
    let timed_previous: [Timed; 3] = [
        (&["a", "c", "b"], &[1, 10, 10], vec![vec![0]]),
        (&["a", "b"], &[1, 2], vec![]),
        (&["a", "b"], &[1, 3], vec![vec![0]]),
    ];
    let all = (timed.into_iter().map(|t| (&trailing, t)))
        .chain(timed_previous.into_iter().map(|t| (&previous, t)));
    for (spec, (names, times, want)) in all {
        let events = crate::reference::events_at(names, times);
        let got = crate::reference::reference_matches(spec, &events);
        assert_eq!(got, want, "{}{names:?} {times:?}", spec.to_motif());
        if let Err(report) = check(spec, &events).and_then(compared) {
            panic!("{report}");
        }
    }
    for (spec, names, want) in cases {
        let events = crate::reference::events_from_names(names);
        let mut got = crate::reference::reference_matches(&spec, &events);
        got.sort();
        assert_eq!(got, want, "{}{names:?}", spec.to_motif());
        if let Err(report) = check(&spec, &events).and_then(compared) {
            panic!("{report}");
        }
    }
}

//! Which events a run surely skips in place, decided from the event alone.
//!
//! Most events a waiting partial match sees are not for it: a run waiting for a `B` skips the
//! `A`s and `C`s of its key (`followedBy`). Finding that out by evaluating the run's edges
//! means loading the run, its aggregates and its buffer, which with many keys are out of
//! cache. This module derives, per state and at compile time, tests on the event alone that
//! must hold for the run to do anything but stay: the parts of each moving edge's condition
//! that read only the event (`type == "B"` of `type == "B" and price > a.price`). When none
//! holds for any state a partition's runs are in, the event leaves them exactly as they are
//! and the partition can skip it without loading them.

use crate::event::Event;
use crate::expr::compile::CExpr;
use crate::nfa::{Action, CondBody, Condition, Guard, State, StateId};

/// Per state: the event tests, one per edge that would move a run out of the state (or, for
/// the start state, start a new one); `None` where the state cannot be decided this way.
#[derive(Debug, Clone, Default)]
pub struct SkipTests {
    per_state: Vec<Option<Vec<CExpr>>>,
}

impl SkipTests {
    /// Derives the tests of every state.
    pub fn new(states: &[State], conditions: &[Condition]) -> SkipTests {
        SkipTests {
            per_state: states
                .iter()
                .enumerate()
                .map(|(id, s)| state_tests(id, s, conditions))
                .collect(),
        }
    }

    /// Whether a run in `state` surely stays where it is on `event` (the start run: starts
    /// nothing).
    #[inline]
    pub fn skips(&self, state: StateId, event: &Event) -> bool {
        match self.per_state.get(state) {
            Some(Some(tests)) => !tests.iter().any(|t| t.test(event, &[])),
            _ => false,
        }
    }

    /// Whether runs in the states of `states` (bit `i` set: some run is in state `i`; all
    /// bits set: not known) all surely stay where they are on `event`.
    #[inline]
    pub fn skips_all(&self, states: u64, event: &Event) -> bool {
        if states == u64::MAX {
            return false;
        }
        let mut bits = states;
        while bits != 0 {
            if !self.skips(bits.trailing_zeros() as usize, event) {
                return false;
            }
            bits &= bits - 1;
        }
        true
    }
}

fn state_tests(id: StateId, s: &State, conditions: &[Condition]) -> Option<Vec<CExpr>> {
    // A run stays through an IGNORE loop back to its own state (the start run stays anyway).
    let stays = |e: &crate::nfa::Edge| e.action == Action::Ignore && (s.is_start || e.target == id);
    let moving: Vec<&Guard> = s
        .edges
        .iter()
        .filter(|e| !stays(e))
        .map(|e| &e.guard)
        .collect();
    if !s.is_start {
        // When every moving edge fails, some loop must surely hold.
        let held = s
            .edges
            .iter()
            .filter(|e| stays(e))
            .any(|e| holds_when_all_fail(&e.guard, &moving));
        if !held {
            return None;
        }
    }
    moving.iter().map(|g| necessary(g, conditions)).collect()
}

/// Whether `g` surely holds when every guard of `failing` is false.
fn holds_when_all_fail(g: &Guard, failing: &[&Guard]) -> bool {
    match g {
        Guard::True => true,
        Guard::Not(x) => failing.iter().any(|f| **f == **x),
        Guard::And(a, b) => holds_when_all_fail(a, failing) && holds_when_all_fail(b, failing),
        Guard::Cond(_) => false,
    }
}

/// A test on the event alone that holds whenever `g` does (`None`: no such test).
fn necessary(g: &Guard, conditions: &[Condition]) -> Option<CExpr> {
    match g {
        Guard::True | Guard::Not(_) => None,
        Guard::Cond(i) => body_necessary(&conditions.get(*i)?.body),
        Guard::And(a, b) => both(necessary(a, conditions), necessary(b, conditions)),
    }
}

fn body_necessary(body: &CondBody) -> Option<CExpr> {
    match body {
        CondBody::Expr(x) => event_part(x),
        CondBody::Native(_) => None,
        CondBody::And(a, b) => both(body_necessary(a), body_necessary(b)),
        CondBody::Or(a, b) => Some(CExpr::Or(
            Box::new(body_necessary(a)?),
            Box::new(body_necessary(b)?),
        )),
    }
}

/// The conjuncts of `x` that read the event alone (no aggregate of the partial match).
fn event_part(x: &CExpr) -> Option<CExpr> {
    if !reads_aggregates(x) {
        return Some(x.clone());
    }
    match x {
        CExpr::And(a, b) => both(event_part(a), event_part(b)),
        _ => None,
    }
}

fn both(a: Option<CExpr>, b: Option<CExpr>) -> Option<CExpr> {
    match (a, b) {
        (Some(a), Some(b)) => Some(CExpr::And(Box::new(a), Box::new(b))),
        (one, None) | (None, one) => one,
    }
}

fn reads_aggregates(x: &CExpr) -> bool {
    match x {
        CExpr::Lit(_) | CExpr::Slot(_) | CExpr::CmpSlotLit(..) | CExpr::StrEq(..) => false,
        CExpr::Agg(_) | CExpr::CmpSlotAgg(..) => true,
        CExpr::Cmp(_, a, b) | CExpr::Arith(_, a, b) | CExpr::And(a, b) | CExpr::Or(a, b) => {
            reads_aggregates(a) || reads_aggregates(b)
        }
        CExpr::Not(a) | CExpr::Neg(a) | CExpr::Matches(a, _) => reads_aggregates(a),
        CExpr::In(a, list) => reads_aggregates(a) || list.iter().any(reads_aggregates),
        CExpr::Call(_, args) => args.iter().any(reads_aggregates),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::event::{Event, Schema, StrCache};
    use crate::nfa::Nfa;

    fn compiled(source: &str) -> (Nfa, Schema) {
        let decls = crate::syntax::load_str("<test>", source).expect("pattern loads");
        let mut schema = Schema::new();
        let nfa = crate::nfa::compile(&decls[0], &mut schema).expect("pattern compiles");
        (nfa, schema)
    }

    fn event(schema: &Schema, json: &str) -> Event {
        let fields = schema
            .decode_row_with(json, &mut StrCache::new())
            .expect("test event decodes");
        Event {
            time: 0,
            fields,
            raw: Arc::from(json),
        }
    }

    #[test]
    fn a_waiting_run_skips_other_types_and_strict_steps_are_never_skipped() {
        let (n, schema) = compiled(
            r#"pattern p = begin("a").where(type == "A")
                .followedBy("b").where(type == "B" and price > a.price)
                .next("c").where(type == "C");"#,
        );
        let state = |name: &str| {
            n.states
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| panic!("no state {name}"))
        };
        let (a, b, c) = (state("a"), state("b"), state("c"));
        let ev_a = event(&schema, r#"{"type":"A","price":1}"#);
        let ev_b = event(&schema, r#"{"type":"B","price":1}"#);
        let ev_c = event(&schema, r#"{"type":"C","price":1}"#);
        // The start run starts something on an A only.
        assert!(!n.skip_tests.skips(a, &ev_a));
        assert!(n.skip_tests.skips(a, &ev_b));
        assert!(n.skip_tests.skips(a, &ev_c));
        // A run waiting for b: a B may move it (whatever its price: the comparison with
        // a.price is the run's), anything else surely not.
        assert!(!n.skip_tests.skips(b, &ev_b));
        assert!(n.skip_tests.skips(b, &ev_a));
        assert!(n.skip_tests.skips(b, &ev_c));
        // `next` has no loop: any event decides the run's fate.
        assert!(!n.skip_tests.skips(c, &ev_a));
        assert!(!n.skip_tests.skips(c, &ev_c));
    }

    #[test]
    fn conditions_on_the_partial_match_alone_are_never_skipped() {
        let (n, schema) = compiled(
            r#"pattern p = begin("a").where(type == "A")
                .followedBy("b").where(price > a.price);"#,
        );
        let b = n
            .states
            .iter()
            .position(|s| s.name == "b")
            .expect("state b");
        let ev = event(&schema, r#"{"type":"X","price":1}"#);
        assert!(!n.skip_tests.skips(b, &ev));
    }
}

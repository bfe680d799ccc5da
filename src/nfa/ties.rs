//! Whether two partial matches of a pattern can ever share their first event.
//!
//! Flink orders its partial and completed matches by first event; among matches with the
//! same first event its priority queue's array decides, and with a skip strategy that
//! order picks which of several matches completed by one event is emitted (the others are
//! pruned). The matcher keeps that order exactly in its single list of runs. Where no two
//! runs can ever share a first event there is nothing for the order to decide, and the
//! runs may be grouped by state ([`crate::nfa::Grouping`]) even with a skip strategy.
//!
//! Runs share a first event only when one run (or the start run, starting new ones) is
//! followed by two or more runs after one event; a run's descendants otherwise form a
//! chain, one at a time. So it suffices that from every state a run can wait in, at most
//! one TAKE or IGNORE edge that leaves a run behind can hold for any event, counting the
//! states PROCEED edges lead to, and no TAKE lands where a match also completes at once (a
//! run that goes on and a completed copy of it). Guards are compared as conjunctions: two
//! edges exclude each other when one requires `X` and the other `not X`. Edges into a Stop
//! state leave no run behind (reaching one discards everything the run led to).

use smallvec::SmallVec;

use crate::nfa::{Action, Guard, State, StateId, StateKind};

/// Upper bound on the states followed through PROCEED edges from one state (the compiler
/// makes far fewer); beyond it the answer is "they may share".
const MAX_VISITS: usize = 256;

/// Whether no two runs of the pattern with these states can ever have the same first event.
pub(crate) fn runs_never_share_a_start(states: &[State]) -> bool {
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.kind, StateKind::Normal | StateKind::Pending))
        .all(|(id, _)| at_most_one_successor(states, id))
}

/// An edge that can leave a run behind, with everything its path requires.
struct Leaving<'a> {
    requires: SmallVec<[&'a Guard; 4]>,
}

fn at_most_one_successor(states: &[State], from: StateId) -> bool {
    let is_start = states[from].is_start;
    let mut leaving: Vec<Leaving> = Vec::new();
    // (state, the conjuncts the PROCEED path to it requires)
    let mut stack: Vec<(StateId, SmallVec<[&Guard; 4]>)> = vec![(from, SmallVec::new())];
    let mut visits = 0;
    while let Some((s, path)) = stack.pop() {
        visits += 1;
        if visits > MAX_VISITS {
            return false;
        }
        for e in &states[s].edges {
            let mut requires = path.clone();
            conjuncts(&e.guard, &mut requires);
            let target = &states[e.target];
            match e.action {
                Action::Proceed => stack.push((e.target, requires)),
                // The start run stays whatever it ignores; other runs leave a run behind.
                Action::Ignore if is_start => {}
                Action::Ignore => leaving.push(Leaving { requires }),
                Action::Take if target.kind == StateKind::Stop => {}
                Action::Take => {
                    if target.kind != StateKind::Final && reaches_final(states, e.target) {
                        // A run that goes on and a completed copy of it.
                        return false;
                    }
                    leaving.push(Leaving { requires });
                }
            }
        }
    }
    leaving.iter().enumerate().all(|(i, a)| {
        leaving[i + 1..]
            .iter()
            .all(|b| excludes(&a.requires, &b.requires) || excludes(&b.requires, &a.requires))
    })
}

/// Whether some PROCEED edges form a cycle (a state reaches itself through PROCEED edges
/// alone).
pub(crate) fn has_proceed_cycle(states: &[State]) -> bool {
    // Depth-first colouring: 0 unseen, 1 on the current path, 2 done.
    let mut colour = vec![0u8; states.len()];
    for root in 0..states.len() {
        if colour[root] != 0 {
            continue;
        }
        let mut stack: Vec<(StateId, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some(&mut (s, ref mut next)) = stack.last_mut() {
            let proceeds: Vec<StateId> = (states[s].edges.iter())
                .filter(|e| e.action == Action::Proceed)
                .map(|e| e.target)
                .collect();
            if let Some(&t) = proceeds.get(*next) {
                *next += 1;
                match colour[t] {
                    1 => return true,
                    0 => {
                        colour[t] = 1;
                        stack.push((t, 0));
                    }
                    _ => {}
                }
            } else {
                colour[s] = 2;
                stack.pop();
            }
        }
    }
    false
}

/// Whether a Final state is reachable from `s` through PROCEED edges alone.
fn reaches_final(states: &[State], s: StateId) -> bool {
    let mut stack = vec![s];
    let mut seen = vec![false; states.len()];
    while let Some(x) = stack.pop() {
        if std::mem::replace(&mut seen[x], true) {
            continue;
        }
        for e in &states[x].edges {
            if e.action == Action::Proceed {
                if states[e.target].kind == StateKind::Final {
                    return true;
                }
                stack.push(e.target);
            }
        }
    }
    false
}

/// The conjuncts of `g` (`True` has none).
fn conjuncts<'a>(g: &'a Guard, out: &mut SmallVec<[&'a Guard; 4]>) {
    match g {
        Guard::True => {}
        Guard::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

/// Whether `a` requires `not X` for some `X` whose every conjunct `b` requires: then `a`
/// and `b` never hold together.
fn excludes(a: &[&Guard], b: &[&Guard]) -> bool {
    a.iter().any(|g| match g {
        Guard::Not(x) => {
            let mut xs = SmallVec::<[&Guard; 4]>::new();
            conjuncts(x, &mut xs);
            !xs.is_empty() && xs.iter().all(|c| b.contains(c))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use crate::event::Schema;

    fn shared(body: &str) -> bool {
        let source = format!("pattern p\n    time ts\n= {body};\n");
        let decls = crate::syntax::load_str("<test>", &source).expect("loads");
        let nfa = crate::nfa::compile(&decls[0], &mut Schema::new()).expect("compiles");
        nfa.starts_shared
    }

    #[test]
    fn chains_of_single_steps_never_share_a_start() {
        for body in [
            r#"begin("a").where(t == "a").next("b").where(t == "b").followedBy("z").where(t == "z")"#,
            r#"begin("a").where(t == "a").notNext("x").where(t == "x").followedBy("b").where(t == "b")"#,
            r#"begin("a").where(t == "a").times(3).consecutive().followedBy("b").where(t == "b")"#,
            r#"begin("a").where(t == "a").followedBy("b").where(t == "b").notFollowedBy("c").where(t == "c").within(5ms)"#,
        ] {
            assert!(!shared(body), "{body}");
        }
    }

    #[test]
    fn only_a_looping_group_that_can_take_no_event_makes_a_proceed_cycle() {
        let nfa = |body: &str| {
            let source = format!("pattern p\n    time ts\n= {body};\n");
            let decls = crate::syntax::load_str("<test>", &source).expect("loads");
            crate::nfa::compile(&decls[0], &mut Schema::new()).expect("compiles")
        };
        assert!(nfa(r#"begin("s").followedBy(begin("a").optional()).oneOrMore()"#).proceed_cycles);
        for body in [
            r#"begin("s").followedBy(begin("a").optional().next("b")).oneOrMore()"#,
            r#"begin("a").optional().followedBy("b").oneOrMore().optional().followedBy("c")"#,
            r#"begin("a").oneOrMore().greedy().followedBy("b").times(0, 3)"#,
        ] {
            assert!(!nfa(body).proceed_cycles, "{body}");
        }
    }

    #[test]
    fn branching_steps_may_share_a_start() {
        for body in [
            // followedByAny keeps the run that took `b` and the one that ignored it.
            r#"begin("a").where(t == "a").followedByAny("b").where(t == "b").followedBy("z").where(t == "z")"#,
            // A loop at the end: the run goes on and a completed copy is emitted.
            r#"begin("a").where(t == "a").followedBy("z").where(t == "z").oneOrMore()"#,
            // A relaxed loop before a step: take into the loop and wait for `b`.
            r#"begin("a").where(t == "a").oneOrMore().consecutive().followedBy("b").where(t == "b")"#,
            // An optional first step: the start run takes `a` or proceeds and takes `b`.
            r#"begin("a").where(t == "a").optional().followedBy("b").where(t == "b" or t == "a")"#,
        ] {
            assert!(shared(body), "{body}");
        }
    }
}

//! Pattern → NFA, following the structure of Flink's `NFACompiler`.
//!
//! The chain is translated back to front: first the Final state, then each step's states
//! pointing at what follows them, and last the start state. Quantifiers unroll as Flink
//! unrolls them (a `times(2, 4)` becomes two mandatory and two optional copies), `greedy`
//! adds ¬take to the following state's edges, `until` turns TAKE into ¬until ∧ cond, and
//! negations become Stop states reached by PROCEED edges. State names follow Flink's
//! (`var`, `var:0`, `var:1`, ...) so `explain` output can be compared with Flink's NFA.

use std::collections::HashMap;

use crate::event::Schema;
use crate::expr::compile::Compiler;
use crate::expr::resolve::resolve;
use crate::nfa::{Action, CondBody, Condition, Edge, Guard, Nfa, Skip, State, StateId, StateKind};
use crate::pattern::{
    self, Contiguity, InnerContiguity, Pattern, PatternDecl, Repeat, SkipStrategy, Step,
    StepNode,
};

/// Why a pattern could not be compiled (validation reports these with positions first).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The pattern failed validation.
    #[error("invalid pattern `{name}`: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The pattern's name.
        name: String,
        /// What is wrong.
        errors: Vec<crate::error::Diagnostic>,
    },
}

const ENDING_STATE_NAME: &str = "$endState$";
const NAME_DELIM: char = ':';

/// Compiles a validated declaration; field names are registered in `schema`.
pub fn compile(decl: &PatternDecl, schema: &mut Schema) -> Result<Nfa, CompileError> {
    compile_with(
        decl,
        schema,
        CompileOptions {
            reports_timeouts: true,
            compact_matcher: true,
        },
    )
}

/// [`compile`] on the list matcher whatever the pattern (tests of that matcher's state).
#[cfg(test)]
pub(crate) fn compile_for_list(decl: &PatternDecl, schema: &mut Schema) -> Result<Nfa, CompileError> {
    compile_with(
        decl,
        schema,
        CompileOptions {
            reports_timeouts: true,
            compact_matcher: false,
        },
    )
}

/// What a run does with a pattern besides reporting its matches, where that changes how the
/// pattern may be compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOptions {
    /// Timed-out partial matches are reported (`--timeouts`): then every partial match is
    /// output, so each `followedByAny` branch is kept (see [`Nfa::any_links_as_next`]).
    pub reports_timeouts: bool,
    /// Patterns the compact matcher can run get it ([`super::compact`]); `false` keeps every
    /// pattern on the list matcher (for comparing the two, or Flink's order among the
    /// matches one event completes with the same first event).
    pub compact_matcher: bool,
}

/// [`compile`] for a run that does what `options` says.
pub fn compile_with(
    decl: &PatternDecl,
    schema: &mut Schema,
    options: CompileOptions,
) -> Result<Nfa, CompileError> {
    if let Err(errors) = crate::validate::validate(decl) {
        return Err(CompileError::Invalid {
            name: decl.name.clone(),
            errors,
        });
    }
    let variables: Vec<String> = decl
        .pattern
        .variables()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut b = Builder {
        vars: variables.clone(),
        schema,
        aggs: Vec::new(),
        conditions: Vec::new(),
        step_conds: HashMap::new(),
        states: Vec::new(),
        used_names: HashMap::new(),
        stop_states: HashMap::new(),
        window_times: HashMap::new(),
        window: None,
        current_group: None,
        first_of_loop: HashMap::new(),
        original_states: HashMap::new(),
        cur: Cursor {
            chain: &decl.pattern,
            idx: decl.pattern.steps.len() - 1,
        },
        following: None,
        any_as_next: false,
    };
    b.compile_conditions(&decl.pattern)?;
    b.any_as_next = !options.reports_timeouts
        && only_earliest_chain_reported(&decl.pattern, &b.conditions);
    let end = b.create_ending_state();
    let sink = b.create_middle_states(end);
    let start = b.convert_pattern(sink);
    b.states[start].is_start = true;

    let state_windows: Vec<Option<i64>> = b
        .states
        .iter()
        .map(|s| b.window_times.get(&s.name).copied())
        .collect();
    let step_windows = state_windows.iter().flatten().any(|w| *w > 0);
    let ignore_loops = b.states.iter().enumerate().any(|(i, s)| {
        !s.is_start
            && s.edges
                .iter()
                .any(|e| e.action == Action::Ignore && e.target == i)
    });
    let keep_event_fields = b.conditions.iter().any(|c| c.body.has_native());
    let skip_tests = super::skip::SkipTests::new(&b.states, &b.conditions);
    let skip = Skip::from_model(&decl.pattern.skip, &variables);
    let starts_shared = !super::ties::runs_never_share_a_start(&b.states);
    let proceed_cycles = super::ties::has_proceed_cycle(&b.states);
    let compact = if options.compact_matcher {
        let cond_of = |s: &Step| b.step_conds.get(&(s as *const Step)).and_then(|c| c.0);
        super::compact::plan(&decl.pattern, &b.conditions, cond_of, &variables, step_windows)
    } else {
        Err("turned off (CompileOptions::compact_matcher)")
    };
    let group_runs_at = (super::Grouping::of(skip, starts_shared, step_windows)
        == super::Grouping::ByState)
        .then_some(super::DEFAULT_GROUP_RUNS_AT);
    Ok(Nfa {
        name: decl.name.clone(),
        any_links_as_next: b.any_as_next,
        ignore_loops,
        keep_event_fields,
        skip_tests,
        skip,
        starts_shared,
        proceed_cycles,
        group_runs_at,
        compact,
        variables,
        start,
        window: b.window.unwrap_or(0),
        state_windows,
        step_windows,
        conditions: b.conditions,
        aggs: b.aggs,
        states: b.states,
    })
}

/// A position in a chain: Flink's `currentPattern`, whose `getPrevious()` is `idx - 1`.
#[derive(Clone, Copy)]
struct Cursor<'p> {
    chain: &'p Pattern,
    idx: usize,
}

impl<'p> Cursor<'p> {
    fn step(&self) -> &'p Step {
        &self.chain.steps[self.idx]
    }
    fn previous(&self) -> Option<Cursor<'p>> {
        (self.idx > 0).then(|| Cursor {
            chain: self.chain,
            idx: self.idx - 1,
        })
    }
    fn name(&self) -> String {
        match &self.step().node {
            StepNode::Variable(n) => n.clone(),
            StepNode::Group(_) => "$group$".to_string(),
        }
    }
}

struct Builder<'p, 's> {
    vars: Vec<String>,
    schema: &'s mut Schema,
    aggs: Vec<crate::expr::compile::AggSpec>,
    conditions: Vec<Condition>,
    /// (where, until) condition ids by step address.
    step_conds: HashMap<*const Step, (Option<usize>, Option<usize>)>,
    states: Vec<State>,
    /// Every state name given so far, with, for a name used as a base, the next counter to
    /// try after it (so that naming the n-th copy of a state costs one probe, not n).
    used_names: HashMap<String, usize>,
    stop_states: HashMap<String, StateId>,
    window_times: HashMap<String, i64>,
    window: Option<i64>,
    current_group: Option<&'p Step>,
    first_of_loop: HashMap<*const Step, bool>,
    original_states: HashMap<String, StateId>,
    cur: Cursor<'p>,
    following: Option<Cursor<'p>>,
    /// `followedByAny` links are compiled as `followedBy` ([`only_earliest_chain_reported`]).
    any_as_next: bool,
}

/// Whether, of all the partial matches a `followedByAny` link branches into, only the one
/// that took the earliest event at every step can ever be reported — so that the link can
/// run as `followedBy`, which keeps only that one: one partial match per first event instead
/// of one per combination, as many as the window holds instead of their powers.
///
/// It holds for a chain of single steps (no quantifier, `optional`, negation or group) linked
/// by `followedBy` and `followedByAny` only, whose conditions read the current event alone,
/// with `skipPastLastEvent` and no window between consecutive events, when timed-out partial
/// matches are not reported:
/// - a chain from first event `s` exists iff the chain taking the earliest possible event at
///   each step does (taking a later one never leaves more room), and it is within the window
///   if any is (the window counts from `s`);
/// - so when an event completes a chain, every partial match that started earlier completes
///   too: none waits for an earlier one, and the match reported is one of those that started
///   first. Flink reports the one first in its priority queue among them, which is the chain
///   of earliest events (seen in every case compared: the property in
///   `tests/it/any_as_next.rs` against motif's list in Flink's heap order, and 120 cases
///   answered by Flink, `tests/conformance/random/any_as_next__*`);
/// - `skipPastLastEvent` then drops every partial match (all started at or before the match's
///   last event), so the other branches never show;
/// - without `--timeouts` nothing reports a partial match that ends without completing.
fn only_earliest_chain_reported(p: &Pattern, conditions: &[Condition]) -> bool {
    let single = |s: &Step| {
        matches!(s.node, StepNode::Variable(_))
            && s.quantifier.repeat == Repeat::Once
            && !s.quantifier.optional
            && s.quantifier.window_ms.is_none()
            && s.until.is_none()
            && s.within_previous.is_none()
    };
    let relaxed = |s: &Step| matches!(s.contiguity, Contiguity::Relaxed | Contiguity::NonDeterministic);
    p.skip == SkipStrategy::SkipPastLastEvent
        && p.steps.len() >= 2
        && p.steps.iter().all(single)
        && p.steps.iter().skip(1).all(relaxed)
        && p.steps.iter().any(|s| s.contiguity == Contiguity::NonDeterministic)
        && conditions.iter().all(|c| !c.iterative)
}

fn to_ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl<'p> Builder<'p, '_> {
    // ---- conditions -------------------------------------------------------------------

    fn compile_conditions(&mut self, p: &'p Pattern) -> Result<(), CompileError> {
        for step in &p.steps {
            let w = match &step.condition {
                Some(c) => Some(self.compile_condition(c)?),
                None => None,
            };
            let u = match &step.until {
                Some(c) => Some(self.compile_condition(c)?),
                None => None,
            };
            self.step_conds.insert(step as *const Step, (w, u));
            if let StepNode::Group(g) = &step.node {
                self.compile_conditions(g)?;
            }
        }
        Ok(())
    }

    fn compile_condition(&mut self, c: &pattern::Condition) -> Result<usize, CompileError> {
        let names = self.vars.clone();
        let vars: Vec<&str> = names.iter().map(String::as_str).collect();
        let (body, iterative, text) = self.lower_condition(c, &vars)?;
        self.conditions.push(Condition {
            body,
            iterative,
            text,
        });
        Ok(self.conditions.len() - 1)
    }

    fn lower_condition(
        &mut self,
        c: &pattern::Condition,
        vars: &[&str],
    ) -> Result<(CondBody, bool, String), CompileError> {
        Ok(match c {
            pattern::Condition::Expr(e) => {
                let r = resolve(e, vars).map_err(|errors| CompileError::Invalid {
                    name: String::new(),
                    errors,
                })?;
                let ce = Compiler {
                    schema: self.schema,
                    aggs: &mut self.aggs,
                }
                .compile(&r);
                let it = ce.is_iterative();
                (CondBody::Expr(ce), it, e.to_string())
            }
            pattern::Condition::Native(f) => {
                (CondBody::Native(f.clone()), true, "<rust closure>".into())
            }
            pattern::Condition::And(a, b) => {
                let (a, ia, ta) = self.lower_condition(a, vars)?;
                let (b, ib, tb) = self.lower_condition(b, vars)?;
                (
                    CondBody::And(Box::new(a), Box::new(b)),
                    ia || ib,
                    format!("({ta} and {tb})"),
                )
            }
            pattern::Condition::Or(a, b) => {
                let (a, ia, ta) = self.lower_condition(a, vars)?;
                let (b, ib, tb) = self.lower_condition(b, vars)?;
                (
                    CondBody::Or(Box::new(a), Box::new(b)),
                    ia || ib,
                    format!("({ta} or {tb})"),
                )
            }
        })
    }

    /// The step's own `where` as a guard (no condition accepts everything).
    fn condition_of(&self, step: &Step) -> Guard {
        match self.step_conds.get(&(step as *const Step)) {
            Some((Some(c), _)) => Guard::Cond(*c),
            _ => Guard::True,
        }
    }

    fn until_of(&self, step: &Step) -> Option<Guard> {
        match self.step_conds.get(&(step as *const Step)) {
            Some((_, Some(u))) => Some(Guard::Cond(*u)),
            _ => None,
        }
    }

    fn group_until(&self) -> Option<Guard> {
        self.current_group.and_then(|g| self.until_of(g))
    }

    // ---- states -----------------------------------------------------------------------

    /// Flink's naming of copies: `base`, then `base:0`, `base:1`, … (the first free one).
    fn unique_name(&mut self, base: &str) -> String {
        let Some(&first) = self.used_names.get(base) else {
            self.used_names.insert(base.to_string(), 0);
            return base.to_string();
        };
        let mut counter = first;
        let mut candidate = format!("{base}{NAME_DELIM}{counter}");
        while self.used_names.contains_key(&candidate) {
            counter += 1;
            candidate = format!("{base}{NAME_DELIM}{counter}");
        }
        self.used_names.insert(base.to_string(), counter + 1);
        self.used_names.insert(candidate.clone(), 0);
        candidate
    }

    fn var_of(&self, name: &str) -> Option<usize> {
        let original = name.split(NAME_DELIM).next().unwrap_or(name);
        self.vars.iter().position(|v| v == original)
    }

    fn new_state(&mut self, base: &str, kind: StateKind) -> StateId {
        let name = self.unique_name(base);
        let var = self.var_of(&name);
        self.states.push(State {
            name,
            var,
            kind,
            is_start: false,
            edges: Vec::new(),
        });
        self.states.len() - 1
    }

    /// Flink's `createState(type, isTake)`: a state of the current step; a taking state of an
    /// unquantified step carries the step's PREVIOUS_AND_CURRENT window.
    fn create_state(&mut self, kind: StateKind, is_take: bool) -> StateId {
        let base = self.cur.name();
        let id = self.new_state(&base, kind);
        if is_take {
            let step = self.cur.step();
            let name = &self.states[id].name;
            // As Flink: a step without a quantifier takes its PREVIOUS_AND_CURRENT window;
            // a quantified step ignores that one, and its quantifier's window goes on every
            // copy of it but the one made first (the last in the chain: Flink's names give
            // it no `:`), and so never on a loop state.
            let window = if !step.quantifier.is_repeated() {
                step.within_previous
            } else if name.contains(':') {
                step.quantifier.window_ms
            } else {
                None
            };
            if let Some(w) = window {
                self.window_times.insert(name.clone(), to_ms(w));
            }
        }
        id
    }

    fn add_edge(&mut self, from: StateId, action: Action, target: StateId, guard: Guard) {
        self.states[from].edges.push(Edge {
            action,
            target,
            guard,
        });
    }

    fn create_ending_state(&mut self) -> StateId {
        let end = self.new_state(ENDING_STATE_NAME, StateKind::Final);
        self.window = self.cur.step().within.map(to_ms);
        end
    }

    fn create_middle_states(&mut self, sink: StateId) -> StateId {
        let mut last_sink = sink;
        while let Some(prev) = self.cur.previous() {
            let step = self.cur.step();
            match step.contiguity {
                Contiguity::NotFollowedBy => {
                    // Skipped: turned into edge conditions of the states around it, except at
                    // the end of a windowed pattern, where it becomes a Pending state.
                    let windowed = step.within_previous.is_some() || self.window.unwrap_or(0) > 0;
                    if windowed && self.states[last_sink].kind == StateKind::Final {
                        let pending = self.create_state(StateKind::Pending, true);
                        let not_cond = self.take_condition(step);
                        let stop = self.create_stop_state(not_cond.clone(), &self.cur.name());
                        self.add_edge(pending, Action::Proceed, stop, not_cond.clone());
                        self.add_edge(
                            pending,
                            Action::Ignore,
                            pending,
                            Guard::Not(Box::new(not_cond)),
                        );
                        last_sink = pending;
                    }
                }
                Contiguity::NotNext => {
                    let not_next = self.create_state(StateKind::Normal, true);
                    let not_cond = self.take_condition(step);
                    let stop = self.create_stop_state(not_cond.clone(), &self.cur.name());
                    let negated = Guard::Not(Box::new(not_cond.clone()));
                    if self.states[last_sink].kind == StateKind::Final {
                        // So that the proceed to final is not fired.
                        self.add_edge(not_next, Action::Ignore, last_sink, negated);
                    } else {
                        self.add_edge(not_next, Action::Proceed, last_sink, negated);
                    }
                    self.add_edge(not_next, Action::Proceed, stop, not_cond);
                    last_sink = not_next;
                }
                _ => last_sink = self.convert_pattern(last_sink),
            }
            self.following = Some(self.cur);
            self.cur = prev;
            if let Some(w) = self.cur.step().within {
                let w = to_ms(w);
                if w < self.window.unwrap_or(i64::MAX) {
                    self.window = Some(w);
                }
            }
        }
        last_sink
    }

    fn convert_pattern(&mut self, sink: StateId) -> StateId {
        let step = self.cur.step();
        let last = match step.quantifier.repeat {
            Repeat::Looping { min } => {
                self.set_first_of_loop(false);
                let sink_copy = self.copy_without_transitive_nots(sink);
                let looping = self.create_looping(sink_copy);
                self.set_first_of_loop(true);
                self.create_times_state(looping, Some(sink), min, min)
            }
            Repeat::Times { from, to } => self.create_times_state(sink, Some(sink), from, to),
            Repeat::Once => {
                let take = self.take_condition(step);
                let ignore = self.ignore_condition(self.cur);
                let optional = step.quantifier.optional;
                self.create_singleton_state(sink, Some(sink), take, ignore, optional)
            }
        };
        self.add_stop_states(last);
        last
    }

    fn create_stop_state(&mut self, not_cond: Guard, name: &str) -> StateId {
        if let Some(&s) = self.stop_states.get(name) {
            return s;
        }
        let stop = self.new_state(name, StateKind::Stop);
        self.add_edge(stop, Action::Take, stop, not_cond);
        self.stop_states.insert(name.to_string(), stop);
        stop
    }

    /// Negations that still apply at the current step: `notFollowedBy` steps before it,
    /// reached back through optional steps.
    fn current_not_conditions(&self) -> Vec<(Guard, String)> {
        let mut out = Vec::new();
        let mut p = self.cur;
        while let Some(prev) = p.previous() {
            let ps = prev.step();
            if !(ps.quantifier.optional || ps.contiguity == Contiguity::NotFollowedBy) {
                break;
            }
            p = prev;
            if ps.contiguity == Contiguity::NotFollowedBy {
                out.push((self.take_condition(ps), p.name()));
            }
        }
        out
    }

    fn add_stop_states(&mut self, state: StateId) {
        for (cond, name) in self.current_not_conditions() {
            let stop = self.create_stop_state(cond.clone(), &name);
            self.add_edge(state, Action::Proceed, stop, cond);
        }
    }

    fn add_stop_state_to_looping(&mut self, state: StateId) {
        if let Some(f) = self.following {
            let fs = f.step();
            if fs.contiguity == Contiguity::NotFollowedBy {
                let cond = self.take_condition(fs);
                let stop = self.create_stop_state(cond.clone(), &f.name());
                self.add_edge(state, Action::Proceed, stop, cond);
            }
        }
    }

    /// An optional step after a `notFollowedBy`: once an event is taken, the negation no
    /// longer applies, so the taking edge leads to a copy of the sink without the Stop edges
    /// of that negation.
    fn copy_without_transitive_nots(&mut self, sink: StateId) -> StateId {
        let nots = self.current_not_conditions();
        if nots.is_empty() || !self.cur.step().quantifier.optional {
            return sink;
        }
        let not_names: Vec<String> = nots.into_iter().map(|(_, n)| n).collect();
        self.copy_without_nots(sink, &not_names, &mut HashMap::new())
    }

    /// The copy of [`Builder::copy_without_transitive_nots`], following PROCEED edges. A
    /// state already copied on the way is not copied again (`copies`): PROCEED edges can
    /// form a cycle (a looping group that can take no event), which Flink's compiler
    /// follows until its stack overflows.
    fn copy_without_nots(
        &mut self,
        sink: StateId,
        nots: &[String],
        copies: &mut HashMap<StateId, StateId>,
    ) -> StateId {
        if let Some(&copy) = copies.get(&sink) {
            return copy;
        }
        let name = self.states[sink].name.clone();
        let kind = self.states[sink].kind;
        let copy = self.new_state(&name, kind);
        copies.insert(sink, copy);
        let edges = self.states[sink].edges.clone();
        for e in edges {
            if e.action == Action::Proceed {
                let mut target = e.target;
                let mut remove = false;
                if self.states[target].kind == StateKind::Stop {
                    remove = nots.contains(&self.states[target].name);
                } else {
                    target = self.copy_without_nots(target, nots, copies);
                }
                if !remove {
                    self.add_edge(copy, e.action, target, e.guard);
                }
            } else {
                let target = if e.target == sink { copy } else { e.target };
                self.add_edge(copy, e.action, target, e.guard);
            }
        }
        copy
    }

    fn copy(&mut self, state: StateId) -> StateId {
        let name = self.states[state].name.clone();
        let original = name.split(NAME_DELIM).next().unwrap_or(&name).to_string();
        let kind = self.states[state].kind;
        let copy = self.new_state(&original, kind);
        let edges = self.states[state].edges.clone();
        for e in edges {
            let target = if e.target == state { copy } else { e.target };
            self.add_edge(copy, e.action, target, e.guard);
        }
        copy
    }

    fn create_times_state(
        &mut self,
        sink: StateId,
        proceed: Option<StateId>,
        from: u32,
        to: u32,
    ) -> StateId {
        let mut last_sink = sink;
        self.set_first_of_loop(false);
        let step = self.cur.step();
        let until = self.until_of(step);
        let inner_ignore = extend_with_until(self.inner_ignore_condition(self.cur), &until, false);
        let take =
            extend_with_until(Some(self.take_condition(step)), &until, true).unwrap_or(Guard::True);
        if step.quantifier.greedy && from != to {
            if until.is_some() {
                let copy = self.copy(sink);
                let name = self.states[sink].name.clone();
                self.original_states.insert(name, copy);
            }
            self.update_with_greedy_condition(sink, &take);
        }
        for _ in from..to {
            last_sink = self.create_singleton_state(
                last_sink,
                proceed,
                take.clone(),
                inner_ignore.clone(),
                true,
            );
            self.add_stop_state_to_looping(last_sink);
        }
        for _ in 0..from.saturating_sub(1) {
            last_sink = self.create_singleton_state(
                last_sink,
                None,
                take.clone(),
                inner_ignore.clone(),
                false,
            );
            self.add_stop_state_to_looping(last_sink);
        }
        self.set_first_of_loop(true);
        let ignore = self.ignore_condition(self.cur);
        let optional = step.quantifier.optional;
        self.create_singleton_state(last_sink, proceed, take, ignore, optional)
    }

    fn set_first_of_loop(&mut self, first: bool) {
        let step = self.cur.step();
        if matches!(step.node, StepNode::Group(_)) {
            self.first_of_loop.insert(step as *const Step, first);
        }
    }

    fn current_group_first_of_loop(&self) -> bool {
        match self.current_group {
            Some(g) => *self.first_of_loop.get(&(g as *const Step)).unwrap_or(&true),
            None => true,
        }
    }

    fn head_of_group(&self, c: Cursor<'p>) -> bool {
        self.current_group.is_some() && c.previous().is_none()
    }

    fn head_of_optional_group(&self, c: Cursor<'p>) -> bool {
        self.head_of_group(c)
            && self.current_group_first_of_loop()
            && self.current_group.is_some_and(|g| g.quantifier.optional)
    }

    fn create_singleton_state(
        &mut self,
        sink: StateId,
        proceed: Option<StateId>,
        take: Guard,
        ignore: Option<Guard>,
        optional: bool,
    ) -> StateId {
        let step = self.cur.step();
        if let StepNode::Group(g) = &step.node {
            return self.create_group_pattern_state(step, g, sink, proceed, optional);
        }
        let state = self.create_state(StateKind::Normal, true);
        // Once an event is accepted, earlier notFollowedBy conditions no longer apply.
        let sink_c = self.copy_without_transitive_nots(sink);
        self.add_edge(state, Action::Take, sink_c, take.clone());
        let proceed_cond = self.true_function();
        if optional {
            if let Some(proceed) = proceed {
                if step.quantifier.greedy {
                    let until = self.until_of(step);
                    if let Some(u) = &until {
                        let name = self.states[proceed].name.clone();
                        if let Some(&orig) = self.original_states.get(&name) {
                            self.add_edge(
                                state,
                                Action::Proceed,
                                orig,
                                and(proceed_cond.clone(), u.clone()),
                            );
                        }
                    }
                    let g = match until {
                        Some(u) => and(proceed_cond, Guard::Not(Box::new(u))),
                        None => proceed_cond,
                    };
                    self.add_edge(state, Action::Proceed, proceed, g);
                } else {
                    self.add_edge(state, Action::Proceed, proceed, proceed_cond);
                }
            }
        }
        if let Some(ignore) = ignore {
            let ignore_state = if optional || self.head_of_optional_group(self.cur) {
                let s = self.create_state(StateKind::Normal, false);
                self.add_edge(s, Action::Take, sink_c, take);
                self.add_edge(s, Action::Ignore, s, ignore.clone());
                self.add_stop_states(s);
                s
            } else {
                state
            };
            self.add_edge(state, Action::Ignore, ignore_state, ignore);
        }
        state
    }

    fn create_group_pattern_state(
        &mut self,
        group_step: &'p Step,
        group: &'p Pattern,
        sink: StateId,
        proceed: Option<StateId>,
        optional: bool,
    ) -> StateId {
        let proceed_cond = self.true_function();
        let (old_cur, old_following, old_group) = (self.cur, self.following, self.current_group);
        self.current_group = Some(group_step);
        self.cur = Cursor {
            chain: group,
            idx: group.steps.len() - 1,
        };
        let mut last_sink = self.create_middle_states(sink);
        last_sink = self.convert_pattern(last_sink);
        if optional {
            if let Some(p) = proceed {
                self.add_edge(last_sink, Action::Proceed, p, proceed_cond);
            }
        }
        self.cur = old_cur;
        self.following = old_following;
        self.current_group = old_group;
        last_sink
    }

    fn create_looping_group_pattern_state(
        &mut self,
        group_step: &'p Step,
        group: &'p Pattern,
        sink: StateId,
    ) -> StateId {
        let proceed_cond = self.true_function();
        let (old_cur, old_following, old_group) = (self.cur, self.following, self.current_group);
        let dummy = self.create_state(StateKind::Normal, true);
        self.current_group = Some(group_step);
        self.cur = Cursor {
            chain: group,
            idx: group.steps.len() - 1,
        };
        let mut last_sink = self.create_middle_states(dummy);
        last_sink = self.convert_pattern(last_sink);
        self.add_edge(last_sink, Action::Proceed, sink, proceed_cond.clone());
        self.add_edge(dummy, Action::Proceed, last_sink, proceed_cond);
        self.cur = old_cur;
        self.following = old_following;
        self.current_group = old_group;
        last_sink
    }

    fn create_looping(&mut self, sink: StateId) -> StateId {
        let step = self.cur.step();
        if let StepNode::Group(g) = &step.node {
            return self.create_looping_group_pattern_state(step, g, sink);
        }
        let until = self.until_of(step);
        let ignore = extend_with_until(self.inner_ignore_condition(self.cur), &until, false);
        let take =
            extend_with_until(Some(self.take_condition(step)), &until, true).unwrap_or(Guard::True);
        let proceed_cond = self.true_function();
        let looping = self.create_state(StateKind::Normal, true);
        if step.quantifier.greedy {
            if let Some(u) = &until {
                let copy = self.copy(sink);
                self.add_edge(
                    looping,
                    Action::Proceed,
                    copy,
                    and(proceed_cond.clone(), u.clone()),
                );
                let name = self.states[sink].name.clone();
                self.original_states.insert(name, copy);
            }
            let g = match &until {
                Some(u) => and(proceed_cond, Guard::Not(Box::new(u.clone()))),
                None => proceed_cond,
            };
            self.add_edge(looping, Action::Proceed, sink, g);
            let plain_take = self.take_condition(step);
            self.update_with_greedy_condition(sink, &plain_take);
        } else {
            self.add_edge(looping, Action::Proceed, sink, proceed_cond);
        }
        self.add_edge(looping, Action::Take, looping, take.clone());
        self.add_stop_state_to_looping(looping);
        if let Some(ignore) = ignore {
            let ignore_state = self.create_state(StateKind::Normal, false);
            self.add_edge(ignore_state, Action::Take, looping, take);
            self.add_edge(ignore_state, Action::Ignore, ignore_state, ignore.clone());
            self.add_edge(looping, Action::Ignore, ignore_state, ignore);
            self.add_stop_state_to_looping(ignore_state);
        }
        looping
    }

    fn update_with_greedy_condition(&mut self, state: StateId, take: &Guard) {
        for e in &mut self.states[state].edges {
            let g = std::mem::replace(&mut e.guard, Guard::True);
            e.guard = and(g, Guard::Not(Box::new(take.clone())));
        }
    }

    fn inner_ignore_condition(&self, c: Cursor<'p>) -> Option<Guard> {
        let step = c.step();
        let inner = if self.head_of_group(c) {
            self.current_group
                .map(|g| g.quantifier.inner)
                .unwrap_or_default()
        } else {
            step.quantifier.inner
        };
        let ignore = match inner {
            InnerContiguity::Consecutive => None,
            InnerContiguity::Relaxed => Some(Guard::Not(Box::new(self.condition_of(step)))),
            InnerContiguity::AllowCombinations => Some(Guard::True),
        };
        match self.group_until() {
            Some(u) => extend_with_until(ignore, &Some(u), false),
            None => ignore,
        }
    }

    fn ignore_condition(&self, c: Cursor<'p>) -> Option<Guard> {
        let step = c.step();
        // For the head of a group, the group's contiguity applies: its outer one on the first
        // pass of a loop, its inner one on later passes.
        enum S {
            Strict,
            Next,
            Any,
        }
        let from_contiguity = |ct: Contiguity| match ct {
            Contiguity::Strict => Some(S::Strict),
            Contiguity::Relaxed => Some(S::Next),
            Contiguity::NonDeterministic if self.any_as_next => Some(S::Next),
            Contiguity::NonDeterministic => Some(S::Any),
            Contiguity::NotNext | Contiguity::NotFollowedBy => None,
        };
        let from_inner = |i: InnerContiguity| match i {
            InnerContiguity::Consecutive => Some(S::Strict),
            InnerContiguity::Relaxed => Some(S::Next),
            InnerContiguity::AllowCombinations => Some(S::Any),
        };
        let strategy = match self.current_group {
            Some(g) if self.head_of_group(c) => {
                if self.current_group_first_of_loop() {
                    from_contiguity(g.contiguity)
                } else {
                    from_inner(g.quantifier.inner)
                }
            }
            _ => from_contiguity(step.contiguity),
        };
        let ignore = match strategy {
            None | Some(S::Strict) => None,
            Some(S::Next) => Some(Guard::Not(Box::new(self.condition_of(step)))),
            Some(S::Any) => Some(Guard::True),
        };
        match self.group_until() {
            Some(u) => extend_with_until(ignore, &Some(u), false),
            None => ignore,
        }
    }

    fn take_condition(&self, step: &Step) -> Guard {
        let cond = self.condition_of(step);
        match self.group_until() {
            Some(u) => extend_with_until(Some(cond), &Some(u), true).unwrap_or(Guard::True),
            None => cond,
        }
    }

    fn true_function(&self) -> Guard {
        match self.group_until() {
            Some(u) => extend_with_until(Some(Guard::True), &Some(u), true).unwrap_or(Guard::True),
            None => Guard::True,
        }
    }
}

fn and(a: Guard, b: Guard) -> Guard {
    match (a, b) {
        (Guard::True, b) => b,
        (a, Guard::True) => a,
        (a, b) => Guard::And(Box::new(a), Box::new(b)),
    }
}

fn extend_with_until(cond: Option<Guard>, until: &Option<Guard>, is_take: bool) -> Option<Guard> {
    match (until, cond) {
        (Some(u), Some(c)) => Some(and(Guard::Not(Box::new(u.clone())), c)),
        (Some(u), None) if is_take => Some(Guard::Not(Box::new(u.clone()))),
        (_, c) => c,
    }
}

#[cfg(test)]
mod tests {
    use crate::event::Schema;

    fn compiled(source: &str) -> crate::nfa::Nfa {
        let decls = crate::syntax::load_str("<test>", source).expect("pattern loads");
        crate::nfa::compile(&decls[0], &mut Schema::new()).expect("pattern compiles")
    }

    /// Copies of a state are named as Flink names them, and naming the n-th copy does not
    /// try the n names before it (a `timesOrMore(23333)` from the fuzzer took 31 s to compile).
    #[test]
    fn copies_of_a_state_are_numbered_in_order() {
        let nfa = compiled(
            r#"pattern p = begin("s").where(name == "c")
                .followedBy("m").where(name == "a").timesOrMore(9000)
                .followedBy("e").where(name == "b");"#,
        );
        let copies: Vec<&str> = nfa
            .states
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| *n == "m" || n.starts_with("m:"))
            .collect();
        assert!(copies.len() >= 9000, "{} copies of m", copies.len());
        let mut expected = vec!["m".to_string()];
        expected.extend((0..copies.len() - 1).map(|i| format!("m:{i}")));
        let mut sorted: Vec<String> = copies.iter().map(|s| s.to_string()).collect();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
    }
}

//! The NFA: compiled once per pattern ([`compiler`]), immutable and shared, run per
//! partition by a [`matcher::Matcher`] that keeps its partial matches in a
//! [`buffer::SharedBuffer`].
//!
//! The structure is Flink CEP's: states of kind Start/Normal/Final/Stop/Pending, edges
//! TAKE (consume the event and stay or move), IGNORE (skip the event) and PROCEED (move on
//! without consuming: an epsilon edge), each guarded by a condition.

pub mod buffer;
pub(crate) mod compact;
pub mod compiler;
pub mod explain;
mod heap;
pub mod matcher;
pub mod skip;
mod ties;
pub mod validate;

use crate::event::Event;
use crate::expr::compile::{AggAcc, AggSpec, CExpr};
use crate::pattern::{NativeCondition, PartialMatch, SkipStrategy};

pub use compiler::{compile, compile_with, CompileError, CompileOptions};
pub use matcher::{Match, MatchedEvent, Matcher};

/// Index of a state in [`Nfa::states`].
pub type StateId = usize;

/// What an edge does with the current event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Consume the event into the partial match.
    Take,
    /// Skip the event.
    Ignore,
    /// Move to another state without consuming (epsilon).
    Proceed,
}

/// Kinds of states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// An ordinary state (the start state is a Normal state flagged `is_start`).
    Normal,
    /// Reaching it completes a match.
    Final,
    /// Reaching it kills the partial match (a negation saw its event).
    Stop,
    /// Waits for a trailing `notFollowedBy` window to pass; completes when it times out.
    Pending,
}

/// An edge's guard: a tree over the pattern's compiled conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum Guard {
    /// Always holds.
    True,
    /// A condition of the pattern, by index into [`Nfa::conditions`].
    Cond(usize),
    /// Negation.
    Not(Box<Guard>),
    /// Conjunction.
    And(Box<Guard>, Box<Guard>),
}

/// One edge.
#[derive(Debug, Clone)]
pub struct Edge {
    /// TAKE, IGNORE or PROCEED.
    pub action: Action,
    /// Where it leads.
    pub target: StateId,
    /// When it may be followed.
    pub guard: Guard,
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Unique internal name (`var`, `var:0`, ... as Flink names them).
    pub name: String,
    /// The variable events taken from this state are assigned to.
    pub var: Option<usize>,
    /// Kind.
    pub kind: StateKind,
    /// Whether runs begin here.
    pub is_start: bool,
    /// Outgoing edges, in Flink's order.
    pub edges: Vec<Edge>,
}

/// The body of a compiled condition.
#[derive(Debug, Clone)]
pub enum CondBody {
    /// An expression.
    Expr(CExpr),
    /// A Rust closure.
    Native(NativeCondition),
    /// Both.
    And(Box<CondBody>, Box<CondBody>),
    /// Either.
    Or(Box<CondBody>, Box<CondBody>),
}

/// A step's `where` or `until` condition, compiled.
#[derive(Debug, Clone)]
pub struct Condition {
    /// What to evaluate.
    pub body: CondBody,
    /// Whether it reads the partial match (aggregates, other variables, Rust closures);
    /// otherwise its result depends on the event alone and is cached per event.
    pub iterative: bool,
    /// The source text, for `explain`.
    pub text: String,
}

impl CondBody {
    /// Whether a Rust closure is part of this condition.
    pub fn has_native(&self) -> bool {
        match self {
            CondBody::Expr(_) => false,
            CondBody::Native(_) => true,
            CondBody::And(a, b) | CondBody::Or(a, b) => a.has_native() || b.has_native(),
        }
    }

    /// Evaluates the condition for an event within a partial match.
    #[inline]
    pub fn test(&self, ev: &Event, aggs: &[AggAcc], partial: &dyn PartialMatch) -> bool {
        match self {
            CondBody::Expr(e) => e.test(ev, aggs),
            other => other.test_other(ev, aggs, partial),
        }
    }

    #[inline(never)]
    fn test_other(&self, ev: &Event, aggs: &[AggAcc], partial: &dyn PartialMatch) -> bool {
        match self {
            CondBody::Expr(e) => e.test(ev, aggs),
            CondBody::Native(f) => (f.0)(ev, partial),
            CondBody::And(a, b) => a.test(ev, aggs, partial) && b.test(ev, aggs, partial),
            CondBody::Or(a, b) => a.test(ev, aggs, partial) || b.test(ev, aggs, partial),
        }
    }
}

/// A compiled pattern: immutable, shared by every partition.
#[derive(Debug, Clone)]
pub struct Nfa {
    /// The pattern's name.
    pub(crate) name: String,
    /// Its `followedByAny` links run as `followedBy`: only the chain of earliest events can
    /// be reported (`skipPastLastEvent`, single steps, conditions on the event alone, no
    /// `--timeouts`; see `compiler::only_earliest_chain_reported`), so each first event
    /// keeps one partial match instead of one per combination of later events.
    pub(crate) any_links_as_next: bool,
    /// Variables in pattern order (the order of `events` in a match).
    pub(crate) variables: Vec<String>,
    /// All states; the final state is `final_state`.
    pub(crate) states: Vec<State>,
    /// The start state.
    pub(crate) start: StateId,
    /// The compiled conditions guards refer to.
    pub(crate) conditions: Vec<Condition>,
    /// Aggregates runs maintain for the conditions.
    pub(crate) aggs: Vec<AggSpec>,
    /// FIRST_AND_LAST window in ms (0: none).
    pub(crate) window: i64,
    /// PREVIOUS_AND_CURRENT windows by state.
    pub(crate) state_windows: Vec<Option<i64>>,
    /// Some state has a window of its own (`state_windows`): deadlines then depend on each
    /// run's previous event, not only on its start.
    pub(crate) step_windows: bool,
    /// After-match skip strategy, with the variable resolved to its index.
    pub(crate) skip: Skip,
    /// Some state other than the start has an IGNORE edge back to itself (runs can skip an
    /// event in place: `followedBy`-style waiting), which the matcher's fast path looks for.
    pub(crate) ignore_loops: bool,
    /// Some condition is a Rust closure, which may read any field of the events of the
    /// partial match; otherwise a stored event keeps only its time and text (expression
    /// conditions read earlier events through aggregates kept in the runs).
    pub(crate) keep_event_fields: bool,
    /// Per state, tests on the event alone that tell when a run there surely stays put
    /// (see [`skip::SkipTests`]).
    pub(crate) skip_tests: skip::SkipTests,
    /// Two runs may have the same first event ([`ties`]).
    pub(crate) starts_shared: bool,
    /// Some PROCEED edges form a cycle (a looping group that can take no event): the
    /// matcher then keeps the PROCEED path it follows and never comes back to a state on it.
    pub(crate) proceed_cycles: bool,
    /// Runs grouped by state ([`matcher`]'s grouped layout) once a partition holds more than
    /// this many; `None` where the pattern needs runs kept in Flink's exact order (see
    /// [`Nfa::grouping`]).
    pub(crate) group_runs_at: Option<usize>,
    /// The compact matcher's plan when it runs this pattern ([`compact`]), else why not.
    pub(crate) compact: Result<compact::CompactPlan, &'static str>,
}

/// Partitions hold their runs grouped by state once they have more than this many (by
/// default; [`crate::runtime::EngineOptions::group_runs_at`] changes it).
pub const DEFAULT_GROUP_RUNS_AT: usize = 8;

/// Whether a pattern's runs may be grouped by state, and why not when they may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Runs are grouped by state above the threshold: an event is tested once per state,
    /// and runs whose state it cannot move are not visited.
    ByState,
    /// A skip strategy decides between completed matches that share their first event in
    /// the order of Flink's priority queue, which only the single ordered list keeps (or,
    /// with windows of single steps, prunes by first event across runs kept by deadline).
    SkipStrategy,
}

impl Grouping {
    /// Decides for a pattern's skip strategy, whether its runs may share their first event
    /// ([`ties`]), and whether states have windows of their own.
    fn of(skip: Skip, starts_shared: bool, step_windows: bool) -> Grouping {
        if skip == Skip::NoSkip || !(starts_shared || step_windows) {
            Grouping::ByState
        } else {
            Grouping::SkipStrategy
        }
    }
}

impl Nfa {
    /// Whether this pattern's partitions may group their runs by state.
    pub fn grouping(&self) -> Grouping {
        Grouping::of(self.skip, self.starts_shared, self.step_windows)
    }

    /// Sets the number of runs above which a partition groups them by state (0: always),
    /// where the pattern allows it ([`Nfa::grouping`]).
    pub fn set_group_runs_at(&mut self, at: usize) {
        if self.grouping() == Grouping::ByState {
            self.group_runs_at = Some(at);
        }
    }

    /// Whether the compact matcher runs this pattern ([`compact`]: single steps, conditions
    /// on the event alone, no skip strategy), or why not.
    pub fn compact_matcher(&self) -> Result<(), &'static str> {
        self.compact.as_ref().map(|_| ())
            .map_err(|why| *why)
    }

    /// The pattern's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pattern's variables, in the order [`MatchedEvent::var`] indexes them.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// How long after its last event's time a completed match can still be emitted, in ms:
    /// a match ending in a `notFollowedBy` waits for its window to pass; others are emitted
    /// at their last event.
    pub fn completion_delay(&self) -> i64 {
        if !self.states.iter().any(|s| s.kind == StateKind::Pending) {
            return 0;
        }
        let per_step = self.state_windows.iter().flatten().copied().max().unwrap_or(0);
        self.window.max(per_step)
    }

    /// The longest a match can span from its first event to its last, in ms, when a
    /// whole-match window bounds it (`within` with FIRST_AND_LAST).
    pub fn max_span(&self) -> Option<i64> {
        (self.window > 0).then_some(self.window)
    }
}

/// The after-match skip strategy with variable indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// noSkip()
    NoSkip,
    /// skipToNext()
    ToNext,
    /// skipPastLastEvent()
    PastLast,
    /// skipToFirst(v)
    ToFirst(usize),
    /// skipToLast(v)
    ToLast(usize),
}

impl Skip {
    /// Resolves a model strategy against the variables; unknown names (rejected by validation)
    /// become `NoSkip`.
    pub fn from_model(s: &SkipStrategy, vars: &[String]) -> Skip {
        let idx = |v: &str| vars.iter().position(|x| x == v);
        match s {
            SkipStrategy::NoSkip => Skip::NoSkip,
            SkipStrategy::SkipToNext => Skip::ToNext,
            SkipStrategy::SkipPastLastEvent => Skip::PastLast,
            SkipStrategy::SkipToFirst(v) => idx(v).map(Skip::ToFirst).unwrap_or(Skip::NoSkip),
            SkipStrategy::SkipToLast(v) => idx(v).map(Skip::ToLast).unwrap_or(Skip::NoSkip),
        }
    }
}

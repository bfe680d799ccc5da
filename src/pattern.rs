//! The pattern model and the Rust builder API.
//!
//! A [`Pattern`] is a chain of [`Step`]s, exactly as Flink CEP's `Pattern` is a chain of
//! pattern nodes: each step names a variable (or nests a group), says how it relates to the
//! step before it ([`Contiguity`]), which events it accepts ([`Condition`]) and how often
//! ([`Quantifier`]). The pattern language lowers to this model; Rust code can build the same
//! model directly:
//!
//! ```
//! use std::time::Duration;
//! use motif::pattern::{Pattern, SkipStrategy};
//! use motif::syntax::parse_expr;
//!
//! let pattern = Pattern::begin_with("small", SkipStrategy::SkipPastLastEvent)
//!     .where_(parse_expr("amount < 10").unwrap())
//!     .times(3)
//!     .consecutive()
//!     .followed_by("large")
//!     .where_fn(|event, _partial| {
//!         event.field("amount").as_f64().is_some_and(|a| a > 500.0)
//!     })
//!     .within(Duration::from_secs(10 * 60));
//! let decl = pattern.declare("small_then_large").key(&["card_id"]).time("ts");
//! assert!(motif::validate::validate(&decl).is_ok());
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::event::Event;
use crate::expr::ast::{Expr, Span};

/// How a step relates to the step before it (Flink's consuming strategy of the step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contiguity {
    /// `next`: the very next event of the partition (STRICT).
    Strict,
    /// `begin`, `followedBy`: skip non-matching events, take the first match (SKIP_TILL_NEXT).
    Relaxed,
    /// `followedByAny`: every later match starts a branch (SKIP_TILL_ANY).
    NonDeterministic,
    /// `notNext`: the very next event must not match.
    NotNext,
    /// `notFollowedBy`: no matching event in between.
    NotFollowedBy,
}

impl Contiguity {
    /// Whether this step is a negation (`notNext`, `notFollowedBy`).
    pub fn is_negation(self) -> bool {
        matches!(self, Contiguity::NotNext | Contiguity::NotFollowedBy)
    }
}

/// Contiguity between the events of one looping or repeated step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InnerContiguity {
    /// Default: skip non-matching events between repetitions (SKIP_TILL_NEXT).
    #[default]
    Relaxed,
    /// `consecutive()`: repetitions must be adjacent (STRICT).
    Consecutive,
    /// `allowCombinations()`: every combination of matching events (SKIP_TILL_ANY).
    AllowCombinations,
}

/// How many events a step takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Exactly one event (no quantifier).
    Once,
    /// `times(n)` is `Times { from: n, to: n }`; `times(n, m)`; `times(0, m)` is stored as
    /// `Times { from: 1, to: m }` with `optional`, as Flink does.
    Times {
        /// Least number of events.
        from: u32,
        /// Greatest number of events.
        to: u32,
    },
    /// `oneOrMore()` is `Looping { min: 1 }`; `timesOrMore(n)` is `Looping { min: n }`.
    Looping {
        /// Least number of events.
        min: u32,
    },
}

/// The quantifier of a step and its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantifier {
    /// How many events.
    pub repeat: Repeat,
    /// `optional()`: the step may match no event at all.
    pub optional: bool,
    /// `greedy()`: a loop takes as many events as it can.
    pub greedy: bool,
    /// `consecutive()` / `allowCombinations()`.
    pub inner: InnerContiguity,
    /// The quantifier's window in milliseconds (Flink 1.16+: `times(n, d)`, `times(n, m,
    /// d)`, `timesOrMore(n, d)`, `oneOrMore(d)`): with Flink's meaning, the longest time
    /// from the event before the step to its first event, and between its events, except
    /// for the wait for its last fixed event and for the events of its loop (see
    /// grammar/README.md, "Quantifier windows").
    pub window_ms: Option<u64>,
}

impl Default for Quantifier {
    fn default() -> Self {
        Quantifier {
            repeat: Repeat::Once,
            optional: false,
            greedy: false,
            inner: InnerContiguity::Relaxed,
            window_ms: None,
        }
    }
}

impl Quantifier {
    /// Whether the step repeats (`times`, `oneOrMore`, `timesOrMore`).
    pub fn is_repeated(&self) -> bool {
        !matches!(self.repeat, Repeat::Once)
    }

    /// Whether the step loops without an upper bound.
    pub fn is_looping(&self) -> bool {
        matches!(self.repeat, Repeat::Looping { .. })
    }
}

/// The partial match a native (Rust) condition may look at.
pub trait PartialMatch {
    /// The events the variable `var` has matched so far in this partial match, oldest first.
    fn events_of(&self, var: &str) -> Vec<&Event>;
}

/// A condition written in Rust: sees the current event and the partial match so far.
pub type NativeFn = dyn Fn(&Event, &dyn PartialMatch) -> bool + Send + Sync;

/// A Rust closure used as a condition.
#[derive(Clone)]
pub struct NativeCondition(pub Arc<NativeFn>);

impl fmt::Debug for NativeCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<rust closure>")
    }
}

/// A condition on events: the `where`/`or`/`until` of a step.
#[derive(Debug, Clone)]
pub enum Condition {
    /// An expression of the pattern language.
    Expr(Expr),
    /// A Rust closure.
    Native(NativeCondition),
    /// Both must hold (`where(a).where(b)`).
    And(Box<Condition>, Box<Condition>),
    /// Either may hold (`where(a).or(b)`).
    Or(Box<Condition>, Box<Condition>),
}

impl From<Expr> for Condition {
    fn from(e: Expr) -> Self {
        Condition::Expr(e)
    }
}

impl Condition {
    /// Visits every expression inside this condition.
    pub fn for_each_expr<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        match self {
            Condition::Expr(e) => f(e),
            Condition::Native(_) => {}
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.for_each_expr(f);
                b.for_each_expr(f);
            }
        }
    }
}

/// What a step matches: one variable, or a nested group pattern.
#[derive(Debug, Clone)]
pub enum StepNode {
    /// A pattern variable, named by its string literal.
    Variable(String),
    /// A group pattern: a nested chain used as one unit.
    Group(Box<Pattern>),
}

/// Kinds of `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithinKind {
    /// The whole match: last.ts − first.ts < window (the default).
    FirstAndLast,
    /// The gap between the previously matched event and the event taken for this variable.
    PreviousAndCurrent,
}

/// One link of the chain.
#[derive(Debug, Clone)]
pub struct Step {
    /// Relation to the previous step (`Relaxed` for the first step, as Flink's `begin`).
    pub contiguity: Contiguity,
    /// The variable or group.
    pub node: StepNode,
    /// The accepting condition; `None` accepts every event.
    pub condition: Option<Condition>,
    /// The stop condition of a loop.
    pub until: Option<Condition>,
    /// Quantifier and modifiers.
    pub quantifier: Quantifier,
    /// `within(d)`: FIRST_AND_LAST window in milliseconds.
    pub within: Option<u64>,
    /// `within(d, PREVIOUS_AND_CURRENT)` window in milliseconds.
    pub within_previous: Option<u64>,
    /// Where the step was written (its name or group), for error messages.
    pub span: Span,
    /// Where each chain call was written, by call name, for error messages.
    pub call_spans: Vec<(&'static str, Span)>,
}

impl Step {
    fn new(contiguity: Contiguity, node: StepNode) -> Step {
        Step {
            contiguity,
            node,
            condition: None,
            until: None,
            quantifier: Quantifier::default(),
            within: None,
            within_previous: None,
            span: Span::default(),
            call_spans: Vec::new(),
        }
    }

    /// The variable name, or `None` for a group.
    pub fn name(&self) -> Option<&str> {
        match &self.node {
            StepNode::Variable(n) => Some(n),
            StepNode::Group(_) => None,
        }
    }

    /// The span of a chain call on this step (e.g. `"greedy"`), or the step's own span.
    pub fn call_span(&self, call: &str) -> Span {
        self.call_spans
            .iter()
            .rev()
            .find(|(c, _)| *c == call)
            .map(|(_, s)| *s)
            .unwrap_or(self.span)
    }
}

/// After-match skip strategies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SkipStrategy {
    /// Every match is reported (default).
    #[default]
    NoSkip,
    /// Drop partial matches that started with the emitted match's first event.
    SkipToNext,
    /// Drop partial matches that started at or before the emitted match's last event.
    SkipPastLastEvent,
    /// Drop partial matches that started before the first event of the variable.
    SkipToFirst(String),
    /// Drop partial matches that started before the last event of the variable.
    SkipToLast(String),
}

impl SkipStrategy {
    /// The variable a `skipToFirst`/`skipToLast` names.
    pub fn variable(&self) -> Option<&str> {
        match self {
            SkipStrategy::SkipToFirst(v) | SkipStrategy::SkipToLast(v) => Some(v),
            _ => None,
        }
    }
}

/// A chain of steps: Flink's `Pattern`.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The steps in order; the first is the `begin`.
    pub steps: Vec<Step>,
    /// The after-match skip strategy (given on `begin`).
    pub skip: SkipStrategy,
    /// Where `begin(...)` was written.
    pub span: Span,
}

/// A named pattern declaration: the chain plus how the stream is keyed and timed.
#[derive(Debug, Clone)]
pub struct PatternDecl {
    /// The pattern's name, echoed in every match.
    pub name: String,
    /// Partition key fields (dotted paths); empty means one partition.
    pub key: Vec<Vec<String>>,
    /// The event-time field; `None` means arrival order is time.
    pub time: Option<Vec<String>>,
    /// Bounded out-of-orderness in milliseconds.
    pub lateness_ms: u64,
    /// The chain.
    pub pattern: Pattern,
    /// Where the declaration's name was written.
    pub span: Span,
    /// Fields (dotted paths) of the matched events that a sink reads, decoded besides
    /// those the conditions read (see [`crate::runtime::EngineOptions::match_fields`]).
    pub output_fields: Vec<Vec<String>>,
}

impl PatternDecl {
    /// Asks for these fields (dotted paths) of the matched events to be decoded, for a sink
    /// that groups or aggregates by them (see
    /// [`crate::runtime::EngineOptions::match_fields`]).
    pub fn output_fields(mut self, fields: &[&str]) -> Self {
        self.output_fields = fields
            .iter()
            .map(|f| f.split('.').map(str::to_string).collect())
            .collect();
        self
    }

    /// Sets the partition key fields (each a dotted path).
    pub fn key(mut self, fields: &[&str]) -> Self {
        self.key = fields
            .iter()
            .map(|f| f.split('.').map(str::to_string).collect())
            .collect();
        self
    }

    /// Sets the event-time field (a dotted path).
    pub fn time(mut self, field: &str) -> Self {
        self.time = Some(field.split('.').map(str::to_string).collect());
        self
    }

    /// Sets the bounded out-of-orderness.
    pub fn lateness_ms(mut self, ms: u64) -> Self {
        self.lateness_ms = ms;
        self
    }

    /// Sets the bounded out-of-orderness: an event may arrive up to `lateness` behind the
    /// newest event time seen. Event times are whole milliseconds, so a fraction of a
    /// millisecond is dropped (which allows exactly the same events, as Flink's
    /// `Duration.toMillis()`); beyond `i64::MAX` milliseconds, the longest duration a pattern
    /// may have, it saturates.
    /// [`PatternDecl::lateness_ms`]
    /// with the milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use motif::Pattern;
    ///
    /// let d = Pattern::begin("a").declare("p").lateness(Duration::from_millis(2_500));
    /// assert_eq!(d.lateness_ms, 2_500);
    /// ```
    pub fn lateness(self, lateness: Duration) -> Self {
        let ms = u64::try_from(lateness.as_millis()).unwrap_or(u64::MAX);
        self.lateness_ms(ms.min(crate::validate::MAX_DURATION_MS))
    }
}

impl Pattern {
    /// Starts a pattern with the variable `name` (Flink's `Pattern.begin(name)`).
    pub fn begin(name: &str) -> Pattern {
        Pattern::begin_with(name, SkipStrategy::NoSkip)
    }

    /// Starts a pattern with a skip strategy (`Pattern.begin(name, strategy)`).
    pub fn begin_with(name: &str, skip: SkipStrategy) -> Pattern {
        Pattern {
            steps: vec![Step::new(
                Contiguity::Relaxed,
                StepNode::Variable(name.to_string()),
            )],
            skip,
            span: Span::default(),
        }
    }

    /// Starts a pattern with a group (`Pattern.begin(group)`).
    ///
    /// As in Flink, a group begun this way is strict: when it is itself the head of a
    /// group (`followedBy(begin(begin("b")...))`), its first event must come right after
    /// the event before the group, whatever contiguity the outer group was added with.
    pub fn begin_group(group: Pattern) -> Pattern {
        Pattern {
            steps: vec![Step::new(
                Contiguity::Strict,
                StepNode::Group(Box::new(group)),
            )],
            skip: SkipStrategy::NoSkip,
            span: Span::default(),
        }
    }

    /// Wraps this chain in a named declaration.
    pub fn declare(self, name: &str) -> PatternDecl {
        PatternDecl {
            name: name.to_string(),
            key: Vec::new(),
            time: None,
            lateness_ms: 0,
            pattern: self,
            span: Span::default(),
            output_fields: Vec::new(),
        }
    }

    /// Appends a step.
    pub fn push(mut self, contiguity: Contiguity, node: StepNode) -> Pattern {
        self.steps.push(Step::new(contiguity, node));
        self
    }

    /// `.next(name)`: strict contiguity.
    pub fn next(self, name: &str) -> Pattern {
        self.push(Contiguity::Strict, StepNode::Variable(name.into()))
    }
    /// `.followedBy(name)`: relaxed contiguity.
    pub fn followed_by(self, name: &str) -> Pattern {
        self.push(Contiguity::Relaxed, StepNode::Variable(name.into()))
    }
    /// `.followedByAny(name)`: non-deterministic relaxed contiguity.
    pub fn followed_by_any(self, name: &str) -> Pattern {
        self.push(
            Contiguity::NonDeterministic,
            StepNode::Variable(name.into()),
        )
    }
    /// `.notNext(name)`.
    pub fn not_next(self, name: &str) -> Pattern {
        self.push(Contiguity::NotNext, StepNode::Variable(name.into()))
    }
    /// `.notFollowedBy(name)`.
    pub fn not_followed_by(self, name: &str) -> Pattern {
        self.push(Contiguity::NotFollowedBy, StepNode::Variable(name.into()))
    }
    /// `.next(group)`.
    pub fn next_group(self, group: Pattern) -> Pattern {
        self.push(Contiguity::Strict, StepNode::Group(Box::new(group)))
    }
    /// `.followedBy(group)`.
    pub fn followed_by_group(self, group: Pattern) -> Pattern {
        self.push(Contiguity::Relaxed, StepNode::Group(Box::new(group)))
    }
    /// `.followedByAny(group)`.
    pub fn followed_by_any_group(self, group: Pattern) -> Pattern {
        self.push(
            Contiguity::NonDeterministic,
            StepNode::Group(Box::new(group)),
        )
    }

    fn last(&mut self) -> &mut Step {
        // A Pattern is only made by `begin*`, which pushes the first step.
        let n = self.steps.len();
        &mut self.steps[n - 1]
    }

    /// `.where(cond)`: AND-ed with the conditions before it.
    pub fn where_(mut self, cond: impl Into<Condition>) -> Pattern {
        let step = self.last();
        let cond = cond.into();
        step.condition = Some(match step.condition.take() {
            None => cond,
            Some(prev) => Condition::And(Box::new(prev), Box::new(cond)),
        });
        self
    }

    /// `.where` with a Rust closure.
    pub fn where_fn(
        self,
        f: impl Fn(&Event, &dyn PartialMatch) -> bool + Send + Sync + 'static,
    ) -> Pattern {
        self.where_(Condition::Native(NativeCondition(Arc::new(f))))
    }

    /// `.or(cond)`: OR-ed with the conditions before it.
    pub fn or(mut self, cond: impl Into<Condition>) -> Pattern {
        let step = self.last();
        let cond = cond.into();
        step.condition = Some(match step.condition.take() {
            None => cond,
            Some(prev) => Condition::Or(Box::new(prev), Box::new(cond)),
        });
        self
    }

    /// `.until(cond)`: stop condition of a loop.
    pub fn until(mut self, cond: impl Into<Condition>) -> Pattern {
        let step = self.last();
        let cond = cond.into();
        step.until = Some(match step.until.take() {
            None => cond,
            Some(prev) => Condition::Or(Box::new(prev), Box::new(cond)),
        });
        self
    }

    /// `.oneOrMore()`.
    pub fn one_or_more(mut self) -> Pattern {
        self.last().quantifier.repeat = Repeat::Looping { min: 1 };
        self
    }
    /// `.oneOrMore(d)`: [`Pattern::one_or_more`] with a quantifier window
    /// ([`Quantifier::window_ms`]).
    pub fn one_or_more_within(self, window: Duration) -> Pattern {
        self.one_or_more().quantifier_window(window)
    }
    /// `.timesOrMore(n, d)`: [`Pattern::times_or_more`] with a quantifier window
    /// ([`Quantifier::window_ms`]).
    pub fn times_or_more_within(self, n: u32, window: Duration) -> Pattern {
        self.times_or_more(n).quantifier_window(window)
    }
    /// `.times(n, d)`: [`Pattern::times`] with a quantifier window
    /// ([`Quantifier::window_ms`]).
    pub fn times_within(self, n: u32, window: Duration) -> Pattern {
        self.times(n).quantifier_window(window)
    }
    /// `.times(from, to, d)`: [`Pattern::times_range`] with a quantifier window
    /// ([`Quantifier::window_ms`]).
    pub fn times_range_within(self, from: u32, to: u32, window: Duration) -> Pattern {
        self.times_range(from, to).quantifier_window(window)
    }
    fn quantifier_window(self, window: Duration) -> Pattern {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.with_quantifier_window_ms(ms)
    }
    /// Sets the last step's quantifier window ([`Quantifier::window_ms`]).
    pub(crate) fn with_quantifier_window_ms(mut self, ms: u64) -> Pattern {
        self.last().quantifier.window_ms = Some(ms.min(crate::validate::MAX_DURATION_MS));
        self
    }
    /// `.timesOrMore(n)`.
    pub fn times_or_more(mut self, n: u32) -> Pattern {
        self.last().quantifier.repeat = Repeat::Looping { min: n };
        self
    }
    /// `.times(n)`.
    pub fn times(self, n: u32) -> Pattern {
        self.times_range(n, n)
    }
    /// `.times(from, to)`; `from == 0` makes the step optional, as in Flink.
    pub fn times_range(mut self, from: u32, to: u32) -> Pattern {
        let q = &mut self.last().quantifier;
        if from == 0 {
            q.optional = true;
            q.repeat = Repeat::Times { from: 1, to };
        } else {
            q.repeat = Repeat::Times { from, to };
        }
        self
    }
    /// `.optional()`.
    pub fn optional(mut self) -> Pattern {
        self.last().quantifier.optional = true;
        self
    }
    /// `.greedy()`.
    pub fn greedy(mut self) -> Pattern {
        self.last().quantifier.greedy = true;
        self
    }
    /// `.consecutive()`.
    pub fn consecutive(mut self) -> Pattern {
        self.last().quantifier.inner = InnerContiguity::Consecutive;
        self
    }
    /// `.allowCombinations()`.
    pub fn allow_combinations(mut self) -> Pattern {
        self.last().quantifier.inner = InnerContiguity::AllowCombinations;
        self
    }
    /// `.within(d)` in milliseconds (FIRST_AND_LAST).
    pub fn within_ms(mut self, ms: u64) -> Pattern {
        self.last().within = Some(ms);
        self
    }
    /// `.within(d, PREVIOUS_AND_CURRENT)` in milliseconds.
    pub fn within_previous_ms(mut self, ms: u64) -> Pattern {
        self.last().within_previous = Some(ms);
        self
    }

    /// `.within(d)` (FIRST_AND_LAST): the match's last event is less than `window` after
    /// its first. Event times are whole milliseconds, so a window with a fraction of a
    /// millisecond is rounded up (which keeps exactly the same matches: a gap of whole
    /// milliseconds is below 1.5 ms just when it is below 2 ms); beyond
    /// `i64::MAX` milliseconds, the longest duration a pattern may have, it saturates (as good
    /// as no window). [`Pattern::within_ms`] with the milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use motif::Pattern;
    ///
    /// let p = Pattern::begin("a").followed_by("b").within(Duration::from_secs(5));
    /// assert_eq!(p.steps[1].within, Some(5_000));
    /// let p = Pattern::begin("a").within(Duration::from_micros(1_500));
    /// assert_eq!(p.steps[0].within, Some(2));
    /// ```
    pub fn within(self, window: Duration) -> Pattern {
        self.within_ms(window_ms(window))
    }

    /// `.within(d, PREVIOUS_AND_CURRENT)`: the event taken for this step is less than
    /// `window` after the event matched before it; rounded and saturated as
    /// [`Pattern::within`]. [`Pattern::within_previous_ms`] with the milliseconds.
    pub fn within_previous(self, window: Duration) -> Pattern {
        self.within_previous_ms(window_ms(window))
    }

    /// Every variable name of the chain, groups flattened, in pattern order.
    pub fn variables(&self) -> Vec<&str> {
        let mut out = Vec::new();
        collect_variables(self, &mut out);
        out
    }
}

/// A window in whole milliseconds: rounded up (a gap of whole milliseconds is below a
/// window just when it is below the window rounded up), saturating at the longest duration
/// validation allows.
fn window_ms(window: Duration) -> u64 {
    let ms = window.as_millis();
    let ms = if window.subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    };
    u64::try_from(ms)
        .unwrap_or(u64::MAX)
        .min(crate::validate::MAX_DURATION_MS)
}

fn collect_variables<'a>(p: &'a Pattern, out: &mut Vec<&'a str>) {
    for s in &p.steps {
        match &s.node {
            StepNode::Variable(n) => out.push(n),
            StepNode::Group(g) => collect_variables(g, out),
        }
    }
}

/// A duration in the largest unit that divides it: `90s`, `2m`, `250ms`.
pub(crate) fn format_duration(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    if ms > 0 {
        for (size, unit) in UNITS {
            if ms.is_multiple_of(size) {
                return format!("{}{unit}", ms / size);
            }
        }
    }
    format!("{ms}ms")
}

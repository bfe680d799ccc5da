//! Validation of the pattern model: Flink CEP's rules, and more.
//!
//! [`validate`] works on the model, so it checks patterns written in the language and
//! patterns built with the Rust builder API alike (their spans are then `Span::default()`).
//! It collects every error instead of stopping at the first. The rules:
//!
//! - variable names are unique in the whole pattern, groups included, not empty, and free of
//!   `:` and `$` (the NFA's internal state names use them);
//! - every `where`/`or`/`until` condition passes [`crate::expr::resolve::check_condition`];
//! - a `notFollowedBy` at the end of the pattern needs a window (Flink: "NotFollowedBy is not
//!   supported without windowTime as a last part of a Pattern");
//! - a negation (`notNext`, `notFollowedBy`) takes no quantifier, `optional`, `greedy`,
//!   `consecutive`, `allowCombinations` or `until` (Flink: "Option not applicable to NOT
//!   pattern"), and cannot follow an optional step (Flink: "an optional path to NOT
//!   condition is not supported");
//! - a group takes no `greedy`, `where` or `or` (Flink's `GroupPattern`), no `within` and no
//!   skip strategy inside it (Flink ignores them there);
//! - `greedy` needs a quantifier and excludes `allowCombinations`; `consecutive` and
//!   `allowCombinations` need a quantifier; `until` needs a looping quantifier;
//! - quantifier counts are at least 1 and `times(n, m)` has n ≤ m; windows are positive;
//! - `skipToFirst`/`skipToLast` name a variable of the pattern;
//! - no PREVIOUS_AND_CURRENT window is longer than the smallest FIRST_AND_LAST window
//!   (Flink's `checkPatternWindowTimes`);
//! - the pattern unrolls to at most [`MAX_UNROLLED_STEPS`] steps (a `times(n)` or
//!   `times(m, n)` counts n, `timesOrMore(n)` n + 1, a group its steps times its count), so
//!   that a huge count is an error naming its quantifier, not an allocation without end;
//! - windows are at most [`MAX_DURATION_MS`];
//! - the pattern cannot match an empty sequence: some non-negated step is not optional.
//!   The one exception is a pattern whose only step is an optional loop
//!   (`begin("a").oneOrMore().optional()`), which Flink's own tests run as "every non-empty
//!   run of `a`" (NFAITCase#testStartAndEndWithZeroOrMore).

use hashbrown::HashMap;

use crate::error::{did_you_mean, Diagnostic};
use crate::expr::ast::Span;
use crate::expr::resolve::check_condition;
use crate::pattern::format_duration;
use crate::pattern::{
    Contiguity, InnerContiguity, Pattern, PatternDecl, Repeat, SkipStrategy, Step, StepNode,
};

/// The names under which the parser records the skip strategy among the first step's
/// `call_spans`.
pub(crate) const SKIP_CALLS: [&str; 5] = [
    "noSkip",
    "skipToNext",
    "skipPastLastEvent",
    "skipToFirst",
    "skipToLast",
];

/// The most steps a pattern may unroll to: each unrolled step is one NFA state or a few
/// (Flink's compiler, which motif follows, makes `times(n)` n states), so this bounds the
/// compiled size and the time and memory compiling takes.
pub const MAX_UNROLLED_STEPS: u64 = 10_000;

/// The longest duration (window or lateness) in milliseconds: event times are `i64`
/// milliseconds, so a longer one could not be added to any of them.
pub const MAX_DURATION_MS: u64 = i64::MAX as u64;

/// How many events' worth of steps a quantifier unrolls its step to.
fn copies(r: Repeat) -> u64 {
    match r {
        Repeat::Once => 1,
        Repeat::Times { to, .. } => u64::from(to),
        Repeat::Looping { min } => u64::from(min) + 1,
    }
}

/// The number of steps `p` unrolls to (saturating), with the step whose quantifier
/// contributes the most copies: the one to name in an error.
fn unrolled_steps(p: &Pattern) -> (u64, Option<&Step>) {
    let mut total = 0u64;
    let mut worst: Option<(&Step, u64)> = None;
    for step in &p.steps {
        let (inner, inner_worst) = match &step.node {
            StepNode::Variable(_) => (1, None),
            StepNode::Group(g) => unrolled_steps(g),
        };
        let n = copies(step.quantifier.repeat);
        total = total.saturating_add(inner.saturating_mul(n));
        if n > 1 && worst.is_none_or(|(_, w)| n > w) {
            worst = Some((step, n));
        }
        if let Some(s) = inner_worst {
            let w = copies(s.quantifier.repeat);
            if worst.is_none_or(|(_, ww)| w > ww) {
                worst = Some((s, w));
            }
        }
    }
    (total, worst.map(|(s, _)| s))
}

/// Checks a declaration; returns every problem found.
pub fn validate(decl: &PatternDecl) -> Result<(), Vec<Diagnostic>> {
    validate_in_source(decl, None)
}

/// [`validate`], with the source text when the declaration was parsed from one, so that
/// messages can name a second place by line and column.
pub(crate) fn validate_in_source(
    decl: &PatternDecl,
    source: Option<&str>,
) -> Result<(), Vec<Diagnostic>> {
    let variables = decl.pattern.variables();
    let mut v = Validator {
        source,
        variables: &variables,
        diags: Vec::new(),
        first_seen: HashMap::new(),
    };
    v.check_pattern(&decl.pattern);
    v.check_looping_empty_head(&decl.pattern);
    v.check_skip(&decl.pattern);
    v.check_trailing_not_followed_by(&decl.pattern);
    v.check_windows(&decl.pattern);
    v.check_size(&decl.pattern);
    for (what, path) in decl
        .key
        .iter()
        .map(|k| ("key", k))
        .chain(decl.time.iter().map(|t| ("time", t)))
    {
        if path.is_empty() || path.iter().any(String::is_empty) {
            v.error(Diagnostic::new(
                format!("the {what} field `{}` has an empty name", path.join(".")),
                decl.span,
            ));
        }
    }
    if decl.lateness_ms > MAX_DURATION_MS {
        v.error(Diagnostic::new(
            format!(
                "a lateness of {}ms is too long (at most {MAX_DURATION_MS}ms)",
                decl.lateness_ms
            ),
            decl.span,
        ));
    }
    if v.diags.is_empty() {
        Ok(())
    } else {
        Err(v.diags)
    }
}

struct Validator<'a> {
    source: Option<&'a str>,
    variables: &'a [&'a str],
    diags: Vec<Diagnostic>,
    first_seen: HashMap<&'a str, Span>,
}

impl<'a> Validator<'a> {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// "line:col" of a known span when the source is at hand.
    fn place(&self, span: Span) -> Option<String> {
        let src = self.source?;
        if !span.is_known() {
            return None;
        }
        let (l, c) = crate::error::line_col(src, span.start);
        Some(format!("{l}:{c}"))
    }

    /// Every rule that looks at one chain (the top one, or a group).
    fn check_pattern(&mut self, p: &'a Pattern) {
        if p.steps.is_empty() {
            self.error(Diagnostic::new("a pattern needs at least one step", p.span));
            return;
        }
        for (i, step) in p.steps.iter().enumerate() {
            self.check_name(step);
            self.check_conditions(step);
            if i == 0 && step.contiguity.is_negation() {
                self.error(Diagnostic::new(
                    "a pattern cannot begin with a negation (`notNext`/`notFollowedBy`)",
                    step.span,
                ));
            }
            if step.contiguity.is_negation() {
                self.check_negation(step);
                if i > 0 && p.steps[i - 1].quantifier.optional {
                    let prev = describe_step(&p.steps[i - 1]);
                    self.error(
                        Diagnostic::new(
                            format!(
                                "`{}` cannot follow the optional step {prev}",
                                negation_call(step)
                            ),
                            step.span,
                        )
                        .with_help(
                            "an optional path to a NOT condition is not supported (as in Flink); \
                             write two patterns, one with and one without the optional step",
                        ),
                    );
                }
            } else {
                self.check_modifiers(step);
            }
            if i > 0
                && !step.contiguity.is_negation()
                && p.steps[i - 1].quantifier.greedy
                && has_call(step, "optional")
            {
                self.error(
                    Diagnostic::new(
                        "an optional step cannot follow a greedy one",
                        step.call_span("optional"),
                    )
                    .with_help(format!(
                        "as in Flink (\"Optional pattern cannot be preceded by greedy pattern\"): \
                         {} is greedy",
                        describe_step(&p.steps[i - 1])
                    )),
                );
            }
            self.check_counts(step);
            if let StepNode::Group(g) = &step.node {
                self.check_pattern(g);
            }
        }
    }

    /// Variable names: not empty, no `:` or `$`, unique in the whole pattern.
    fn check_name(&mut self, step: &'a Step) {
        let StepNode::Variable(name) = &step.node else {
            return;
        };
        if name.is_empty() {
            self.error(Diagnostic::new(
                "a variable name cannot be empty",
                step.span,
            ));
            return;
        }
        if let Some(bad) = name.chars().find(|c| matches!(c, ':' | '$')) {
            self.error(
                Diagnostic::new(
                    format!("the variable name \"{name}\" contains `{bad}`"),
                    step.span,
                )
                .with_help("`:` and `$` are reserved for the NFA's internal state names; use letters, digits and `_`"),
            );
        }
        if let Some(first) = self.first_seen.get(name.as_str()).copied() {
            let help = match self.place(first) {
                Some(at) => {
                    format!("\"{name}\" is first defined at {at}; variable names must be unique")
                }
                None => format!(
                    "\"{name}\" is defined earlier in this pattern; variable names must be unique"
                ),
            };
            self.error(
                Diagnostic::new(
                    format!("the variable \"{name}\" is defined twice"),
                    step.span,
                )
                .with_help(help),
            );
        } else {
            self.first_seen.insert(name, step.span);
        }
    }

    /// Names inside `where`/`or`/`until`, through the resolver.
    fn check_conditions(&mut self, step: &Step) {
        for cond in [&step.condition, &step.until].into_iter().flatten() {
            let found = check_condition(cond, self.variables, step.name());
            self.diags.extend(found);
        }
    }

    /// A negated step takes no quantifier and no modifier.
    fn check_negation(&mut self, step: &Step) {
        if matches!(step.node, StepNode::Group(_)) {
            self.error(Diagnostic::new("a group cannot be negated", step.span));
        }
        let neg = negation_call(step);
        let refuse = |v: &mut Self, what: String, span: Span| {
            v.error(
                Diagnostic::new(format!("`{what}` cannot be applied to a `{neg}` step"), span)
                    .with_help("a negation matches no event, so it takes no quantifier or modifier (as in Flink)"),
            );
        };
        let q = &step.quantifier;
        if q.is_repeated() {
            refuse(self, quantifier_text(q.repeat), quantifier_span(step));
        }
        // `times(0, m)` makes a step optional by itself; its quantifier error is enough then.
        if q.optional && (step.call_spans.is_empty() || has_call(step, "optional")) {
            refuse(self, "optional()".into(), step.call_span("optional"));
        }
        if q.greedy {
            refuse(self, "greedy()".into(), step.call_span("greedy"));
        }
        match q.inner {
            InnerContiguity::Relaxed => {}
            InnerContiguity::Consecutive => {
                refuse(self, "consecutive()".into(), step.call_span("consecutive"))
            }
            InnerContiguity::AllowCombinations => refuse(
                self,
                "allowCombinations()".into(),
                step.call_span("allowCombinations"),
            ),
        }
        if step.until.is_some() {
            refuse(self, "until(...)".into(), step.call_span("until"));
        }
    }

    /// Modifiers of a step that is not negated.
    fn check_modifiers(&mut self, step: &Step) {
        let q = &step.quantifier;
        let group = matches!(step.node, StepNode::Group(_));
        if group {
            if q.greedy {
                self.error(
                    Diagnostic::new("`greedy()` cannot be applied to a group", step.call_span("greedy"))
                        .with_help("make a step inside the group greedy instead (Flink: option not applicable to group pattern)"),
                );
            }
            if step.condition.is_some() {
                let span = step
                    .call_spans
                    .iter()
                    .find(|(c, _)| *c == "where" || *c == "or")
                    .map_or(step.span, |(_, s)| *s);
                self.error(
                    Diagnostic::new("a group takes no `where` or `or`", span)
                        .with_help("put the condition on a step inside the group (as Flink's GroupPattern requires)"),
                );
            }
        } else if q.greedy {
            if !q.is_repeated() {
                self.error(
                    Diagnostic::new("`greedy()` needs a quantifier", step.call_span("greedy"))
                        .with_help(
                            "apply oneOrMore(), timesOrMore(n), times(n) or times(n, m) first",
                        ),
                );
            } else if q.inner == InnerContiguity::AllowCombinations
                && step.call_span("allowCombinations").start < step.call_span("greedy").start
            {
                // As Flink: `allowCombinations().greedy()` is refused ("Option not applicable
                // to FollowedByAny pattern"), `greedy().allowCombinations()` is taken.
                self.error(
                    Diagnostic::new(
                        "`greedy()` cannot be combined with `allowCombinations()`",
                        step.call_span("greedy"),
                    )
                    .with_help(
                        "a greedy loop takes as many events as it can; combinations skip some",
                    ),
                );
            }
        }
        if !q.is_repeated() {
            let inner = match q.inner {
                InnerContiguity::Relaxed => None,
                InnerContiguity::Consecutive => Some("consecutive"),
                InnerContiguity::AllowCombinations => Some("allowCombinations"),
            };
            if let Some(call) = inner {
                self.error(
                    Diagnostic::new(format!("`{call}()` needs a quantifier"), step.call_span(call))
                        .with_help("it sets how the repetitions of a step follow each other; apply oneOrMore(), timesOrMore(n), times(n) or times(n, m) first"),
                );
            }
        }
        if step.until.is_some() && !q.is_looping() {
            self.error(
                Diagnostic::new(
                    "`until(...)` applies only to a looping step",
                    step.call_span("until"),
                )
                .with_help("apply oneOrMore() or timesOrMore(n) to the step first"),
            );
        }
    }

    /// Quantifier counts and window lengths.
    fn check_counts(&mut self, step: &Step) {
        match step.quantifier.repeat {
            Repeat::Once => {}
            Repeat::Looping { min: 0 } => self.error(
                Diagnostic::new(
                    "`timesOrMore(0)`: a step must occur at least once",
                    step.call_span("timesOrMore"),
                )
                .with_help("use `oneOrMore().optional()` for zero or more"),
            ),
            Repeat::Looping { .. } => {}
            Repeat::Times { from: 0, .. } => self.error(Diagnostic::new(
                "`times`: a step must occur at least once",
                step.call_span("times"),
            )),
            Repeat::Times { from, to } if from > to => self.error(
                Diagnostic::new(
                    format!("`times({from}, {to})`: the least number of events is greater than the greatest"),
                    step.call_span("times"),
                )
                .with_help(format!("write `times({to}, {from})`")),
            ),
            Repeat::Times { .. } => {}
        }
        for w in [step.within, step.within_previous].into_iter().flatten() {
            if w > MAX_DURATION_MS {
                self.error(
                    Diagnostic::new(
                        format!("a window of {w}ms is too long (at most {MAX_DURATION_MS}ms)"),
                        step.call_span("within"),
                    )
                    .with_help("event times are i64 milliseconds; no span is longer than that"),
                );
            }
        }
        if step.quantifier.window_ms == Some(0) {
            self.error(
                Diagnostic::new(
                    "a quantifier window of 0ms lets no event follow",
                    step.span,
                )
                .with_help("give the window a positive duration, or leave it out"),
            );
        }
        if step.within == Some(0) || step.within_previous == Some(0) {
            self.error(
                Diagnostic::new("a window of 0ms matches nothing", step.call_span("within"))
                    .with_help("give `within(...)` a positive duration, or leave it out"),
            );
        }
    }

    /// The pattern's unrolled size is at most [`MAX_UNROLLED_STEPS`].
    fn check_size(&mut self, p: &Pattern) {
        let (total, worst) = unrolled_steps(p);
        if total <= MAX_UNROLLED_STEPS {
            return;
        }
        let (what, span) = match worst {
            Some(step) => (
                format!(
                    "`{}` on {}",
                    quantifier_text(step.quantifier.repeat),
                    describe_step(step)
                ),
                quantifier_span(step),
            ),
            None => ("the pattern".to_string(), p.span),
        };
        self.error(
            Diagnostic::new(
                format!(
                    "{what} makes the pattern too large: it unrolls to {total} steps, \
                     at most {MAX_UNROLLED_STEPS} are allowed"
                ),
                span,
            )
            .with_help(
                "every event a quantifier counts is a state of the compiled pattern, as in \
                 Flink; use a smaller count, or a loop (`oneOrMore()`) and test `count(v)` in \
                 the step after it",
            ),
        );
    }

    /// `skipToFirst("x")`/`skipToLast("x")` must name a variable of the pattern.
    fn check_skip(&mut self, p: &Pattern) {
        let Some(target) = p.skip.variable() else {
            return;
        };
        if self.variables.contains(&target) {
            return;
        }
        let call = match p.skip {
            SkipStrategy::SkipToFirst(_) => "skipToFirst",
            _ => "skipToLast",
        };
        let span = p.steps.first().map_or(p.span, |s| s.call_span(call));
        let mut d = Diagnostic::new(
            format!("`{call}` names \"{target}\", which is not a variable of this pattern"),
            span,
        );
        d = match did_you_mean(target, self.variables.iter().copied()) {
            Some(best) => d.with_help(format!("did you mean \"{best}\"?")),
            None => d.with_help(format!("the variables are {}", quoted_list(self.variables))),
        };
        self.error(d);
    }

    /// A trailing `notFollowedBy` needs a window (Flink's rule).
    fn check_trailing_not_followed_by(&mut self, p: &Pattern) {
        let has_window = p.steps.iter().any(|s| s.within.is_some());
        let Some(step) = p.steps.last() else { return };
        if step.contiguity == Contiguity::NotFollowedBy
            && !has_window
            && step.within_previous.is_none()
        {
            self.error(
                Diagnostic::new(
                    "notFollowedBy at the end of a pattern needs a within(...)",
                    step.span,
                )
                .with_help("without a window the absence could never be confirmed (as in Flink); add e.g. `.within(10s)`"),
            );
        }
    }

    /// No PREVIOUS_AND_CURRENT window may be longer than the smallest FIRST_AND_LAST one.
    fn check_windows(&mut self, p: &Pattern) {
        let Some(smallest) = p.steps.iter().filter_map(|s| s.within).min() else {
            return;
        };
        for step in &p.steps {
            let Some(prev) = step.within_previous else {
                continue;
            };
            if prev > smallest {
                let span = self.previous_window_span(step);
                self.window_too_long("PREVIOUS_AND_CURRENT", prev, smallest, span);
            }
        }
        self.check_quantifier_windows(p, smallest);
    }

    /// A window of a step (`what`: its kind) longer than the pattern's FIRST_AND_LAST one.
    fn window_too_long(&mut self, what: &str, window: u64, smallest: u64, span: Span) {
        self.error(
            Diagnostic::new(
                format!(
                    "this {what} window ({}) is longer than the pattern's FIRST_AND_LAST window ({})",
                    format_duration(window),
                    format_duration(smallest)
                ),
                span,
            )
            .with_help(
                "the gap between two events cannot exceed the whole match's window (as in Flink)",
            ),
        );
    }

    /// A pattern may not begin with a looping group that can take no event: Flink loops for
    /// ever on it (found by a random differential; such a group later in the pattern runs).
    fn check_looping_empty_head(&mut self, p: &Pattern) {
        let Some(step) = p.steps.first() else { return };
        if let StepNode::Group(g) = &step.node {
            if step.quantifier.is_looping() && can_be_empty(g) {
                self.error(
                    Diagnostic::new(
                        "a pattern cannot begin with a looping group whose every step is optional",
                        step.span,
                    )
                    .with_help(
                        "Flink loops for ever on such a pattern; make one step of the group non-optional",
                    ),
                );
            }
        }
    }

    /// No quantifier window, at any depth, may be longer than the pattern's FIRST_AND_LAST
    /// window (Flink counts them with the PREVIOUS_AND_CURRENT ones).
    fn check_quantifier_windows(&mut self, p: &Pattern, smallest: u64) {
        for step in &p.steps {
            // Flink's check reads the windows its compiler gave to states: a quantified
            // variable's copies but the first (so none for `times(1)`); a group's window goes
            // on no state it checks.
            let single = matches!(step.quantifier.repeat, Repeat::Times { to: 1, .. });
            let checked = matches!(step.node, StepNode::Variable(_)) && !single;
            if let Some(w) = step
                .quantifier
                .window_ms
                .filter(|w| checked && *w > smallest)
            {
                let span = ["times", "timesOrMore", "oneOrMore"]
                    .into_iter()
                    .find(|c| has_call(step, c))
                    .map_or(step.span, |c| step.call_span(c));
                self.window_too_long("quantifier", w, smallest, span);
            }
            if let StepNode::Group(g) = &step.node {
                self.check_quantifier_windows(g, smallest);
            }
        }
    }

    /// The `within(..., PREVIOUS_AND_CURRENT)` call of a step, when it can be told apart.
    fn previous_window_span(&self, step: &Step) -> Span {
        let mut calls = step
            .call_spans
            .iter()
            .filter(|(c, _)| *c == "within")
            .map(|(_, s)| *s);
        if let Some(src) = self.source {
            for s in calls.clone() {
                if src
                    .get(s.start..s.end)
                    .is_some_and(|t| t.contains("PREVIOUS_AND_CURRENT"))
                {
                    return s;
                }
            }
        }
        calls.next_back().unwrap_or(step.span)
    }
}

/// Whether every non-negated step of `p` may match no event.
pub(crate) fn can_be_empty(p: &Pattern) -> bool {
    p.steps.iter().all(|s| {
        s.contiguity.is_negation()
            || s.quantifier.optional
            || matches!(
                s.quantifier.repeat,
                Repeat::Looping { min: 0 } | Repeat::Times { from: 0, .. }
            )
            || matches!(&s.node, StepNode::Group(g) if can_be_empty(g))
    })
}

fn has_call(step: &Step, name: &str) -> bool {
    step.call_spans.iter().any(|(c, _)| *c == name)
}

fn negation_call(step: &Step) -> &'static str {
    if step.contiguity == Contiguity::NotNext {
        "notNext"
    } else {
        "notFollowedBy"
    }
}

fn describe_step(step: &Step) -> String {
    match &step.node {
        StepNode::Variable(n) => format!("\"{n}\""),
        StepNode::Group(_) => "(a group)".to_string(),
    }
}

fn quantifier_text(r: Repeat) -> String {
    match r {
        Repeat::Once => String::new(),
        Repeat::Looping { min: 1 } => "oneOrMore()".into(),
        Repeat::Looping { min } => format!("timesOrMore({min})"),
        Repeat::Times { from, to } if from == to => format!("times({from})"),
        Repeat::Times { from, to } => format!("times({from}, {to})"),
    }
}

fn quantifier_span(step: &Step) -> Span {
    ["oneOrMore", "timesOrMore", "times"]
        .into_iter()
        .find(|c| has_call(step, c))
        .map_or(step.span, |c| step.call_span(c))
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{load_str, parse_expr};

    /// The errors of loading `src`, each as "line:col: message".
    fn errors(src: &str) -> Vec<String> {
        match load_str("t.motif", src) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .to_string()
                .lines()
                .filter_map(|l| l.strip_prefix("t.motif:"))
                .map(|l| l.replacen(": error: ", ": ", 1))
                .collect(),
        }
    }

    /// Asserts that `src` fails with exactly these errors.
    #[track_caller]
    fn assert_errors(src: &str, expected: &[&str]) {
        assert_eq!(errors(src), expected, "for:\n{src}");
    }

    /// The rendered text of the errors of `src` (for help lines).
    fn rendered(src: &str) -> String {
        load_str("t.motif", src)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_pattern_passes() {
        assert_errors(
            "pattern p = begin(\"a\", skipToFirst(\"b\")).where(x > 1).oneOrMore().consecutive().greedy()\n\
             .followedBy(begin(\"b\").next(\"c\")).times(1, 3).allowCombinations()\n\
             .notFollowedBy(\"n\").followedBy(\"d\").timesOrMore(2).until(y)\n\
             .within(5s, PREVIOUS_AND_CURRENT).within(10s);",
            &[],
        );
    }

    #[test]
    fn duplicate_variables_even_in_groups() {
        let src = "pattern p = begin(\"a\")\n  .followedBy(begin(\"b\").next(\"a\"));";
        assert_errors(src, &["2:31: the variable \"a\" is defined twice"]);
        assert!(rendered(src)
            .contains("= help: \"a\" is first defined at 1:19; variable names must be unique"));
    }

    #[test]
    fn not_followed_by_at_the_end_needs_a_window() {
        assert_errors(
            "pattern p = begin(\"a\").notFollowedBy(\"b\");",
            &["1:38: notFollowedBy at the end of a pattern needs a within(...)"],
        );
        // A PREVIOUS_AND_CURRENT window elsewhere is not enough.
        assert_errors(
            "pattern p = begin(\"a\").within(5s, PREVIOUS_AND_CURRENT).notFollowedBy(\"b\");",
            &["1:71: notFollowedBy at the end of a pattern needs a within(...)"],
        );
        // A trailing group ending in notFollowedBy is taken: Flink drops that notFollowedBy
        // (a warning says so, crate::lint).
        assert_errors(
            "pattern p = begin(\"a\").next(begin(\"b\").notFollowedBy(\"c\"));",
            &[],
        );
        assert_errors(
            "pattern p = begin(\"a\").notFollowedBy(\"b\").within(1s);",
            &[],
        );
        assert_errors(
            "pattern p = begin(\"a\").within(1s).notFollowedBy(\"b\");",
            &[],
        );
        assert_errors(
            "pattern p = begin(\"a\").notFollowedBy(\"b\").within(1s, PREVIOUS_AND_CURRENT);",
            &[],
        );
        // notNext at the end is fine (Flink's testNotNextNoMatchesAtTheEnd).
        assert_errors("pattern p = begin(\"a\").notNext(\"b\");", &[]);
    }

    #[test]
    fn negations_take_no_quantifier_or_modifier() {
        let cases = [
            (
                ".oneOrMore()",
                "`oneOrMore()` cannot be applied to a `notNext` step",
            ),
            (
                ".timesOrMore(2)",
                "`timesOrMore(2)` cannot be applied to a `notNext` step",
            ),
            (
                ".times(2)",
                "`times(2)` cannot be applied to a `notNext` step",
            ),
            (
                ".times(2, 3)",
                "`times(2, 3)` cannot be applied to a `notNext` step",
            ),
            (
                ".times(0, 3)",
                "`times(1, 3)` cannot be applied to a `notNext` step",
            ),
            (
                ".optional()",
                "`optional()` cannot be applied to a `notNext` step",
            ),
            (
                ".greedy()",
                "`greedy()` cannot be applied to a `notNext` step",
            ),
            (
                ".consecutive()",
                "`consecutive()` cannot be applied to a `notNext` step",
            ),
            (
                ".allowCombinations()",
                "`allowCombinations()` cannot be applied to a `notNext` step",
            ),
            (
                ".until(x)",
                "`until(...)` cannot be applied to a `notNext` step",
            ),
        ];
        for (call, message) in cases {
            let src = format!("pattern p = begin(\"a\").notNext(\"b\"){call}.followedBy(\"c\");");
            assert_errors(&src, &[&format!("1:37: {message}")]);
        }
        assert_errors(
            "pattern p = begin(\"a\").notFollowedBy(\"b\").where(x).oneOrMore().followedBy(\"c\");",
            &["1:52: `oneOrMore()` cannot be applied to a `notFollowedBy` step"],
        );
    }

    #[test]
    fn negation_after_an_optional_step() {
        let src = "pattern p = begin(\"a\").optional().notNext(\"b\").followedBy(\"c\");";
        assert_errors(
            src,
            &["1:43: `notNext` cannot follow the optional step \"a\""],
        );
        assert!(rendered(src).contains("an optional path to a NOT condition is not supported"));
        assert_errors(
            "pattern p = begin(\"a\").next(\"x\").times(0, 2).notFollowedBy(\"b\").followedBy(\"c\");",
            &["1:60: `notFollowedBy` cannot follow the optional step \"x\""],
        );
        // After a loop that is not optional it is fine (Flink's testNotNextAfterOneOrMore...).
        assert_errors(
            "pattern p = begin(\"a\").oneOrMore().notNext(\"b\").followedBy(\"c\");",
            &[],
        );
    }

    #[test]
    fn groups_take_no_greedy_where_or_or() {
        assert_errors(
            "pattern p = begin(\"a\").followedBy(begin(\"b\").next(\"c\")).oneOrMore().greedy();",
            &["1:69: `greedy()` cannot be applied to a group"],
        );
        assert_errors(
            "pattern p = begin(\"a\").followedBy(begin(\"b\")).where(x);",
            &["1:47: a group takes no `where` or `or`"],
        );
        assert_errors(
            "pattern p = begin(\"a\").followedBy(begin(\"b\")).or(x);",
            &["1:47: a group takes no `where` or `or`"],
        );
        // Quantifiers, modifiers and until on a group are fine.
        assert_errors(
            "pattern p = begin(\"a\").followedBy(begin(\"b\")).oneOrMore().optional().consecutive().until(x).next(\"c\");",
            &[],
        );
    }

    #[test]
    fn modifiers_need_a_quantifier() {
        assert_errors(
            "pattern p = begin(\"a\").greedy();",
            &["1:24: `greedy()` needs a quantifier"],
        );
        assert_errors(
            "pattern p = begin(\"a\").oneOrMore().allowCombinations().greedy();",
            &["1:56: `greedy()` cannot be combined with `allowCombinations()`"],
        );
        assert_errors(
            "pattern p = begin(\"a\").consecutive();",
            &["1:24: `consecutive()` needs a quantifier"],
        );
        assert_errors(
            "pattern p = begin(\"a\").allowCombinations();",
            &["1:24: `allowCombinations()` needs a quantifier"],
        );
        assert_errors(
            "pattern p = begin(\"a\").until(x);",
            &["1:24: `until(...)` applies only to a looping step"],
        );
        assert_errors(
            "pattern p = begin(\"a\").times(2).until(x);",
            &["1:33: `until(...)` applies only to a looping step"],
        );
        assert_errors(
            "pattern p = begin(\"a\").times(2).greedy().consecutive();",
            &[],
        );
        assert_errors("pattern p = begin(\"a\").timesOrMore(3).until(x);", &[]);
    }

    #[test]
    fn skip_strategy_must_name_a_variable() {
        let src = "pattern p = begin(\"a\", skipToFirst(\"bb\")).next(\"b\");";
        assert_errors(
            src,
            &["1:24: `skipToFirst` names \"bb\", which is not a variable of this pattern"],
        );
        assert!(rendered(src).contains("= help: did you mean \"b\"?"));
        let src = "pattern p = begin(\"a\", skipToLast(\"zzz\")).next(\"b\");";
        assert_errors(
            src,
            &["1:24: `skipToLast` names \"zzz\", which is not a variable of this pattern"],
        );
        assert!(rendered(src).contains("= help: the variables are \"a\", \"b\""));
        // A variable inside a group counts.
        assert_errors(
            "pattern p = begin(\"a\", skipToLast(\"g\")).next(begin(\"g\"));",
            &[],
        );
    }

    #[test]
    fn previous_and_current_window_longer_than_first_and_last() {
        assert_errors(
            "pattern p = begin(\"a\").followedBy(\"b\").within(10s, PREVIOUS_AND_CURRENT).within(5s);",
            &["1:40: this PREVIOUS_AND_CURRENT window (10s) is longer than the pattern's FIRST_AND_LAST window (5s)"],
        );
        assert_errors(
            "pattern p = begin(\"a\").within(3s)\n  .followedBy(\"b\").within(4s, PREVIOUS_AND_CURRENT)\n  .followedBy(\"c\").within(9s);",
            &["2:20: this PREVIOUS_AND_CURRENT window (4s) is longer than the pattern's FIRST_AND_LAST window (3s)"],
        );
        assert_errors(
            "pattern p = begin(\"a\").followedBy(\"b\").within(5s, PREVIOUS_AND_CURRENT).within(5s);",
            &[],
        );
    }

    #[test]
    fn what_flink_refuses_after_a_greedy_step_in_a_looping_group_and_in_quantifier_windows() {
        // Flink: "Optional pattern cannot be preceded by greedy pattern".
        assert_errors(
            "pattern p = begin(\"a\").oneOrMore().greedy().followedBy(\"b\").optional();",
            &["1:61: an optional step cannot follow a greedy one"],
        );
        // `times(0, m)` is no `optional()` call, in Flink either.
        assert_errors(
            "pattern p = begin(\"a\").oneOrMore().greedy().followedBy(\"b\").times(0, 2);",
            &[],
        );
        // Flink loops for ever on a looping group that can take no event.
        assert_errors(
            "pattern p = begin(begin(\"a\").optional()).oneOrMore();",
            &["1:19: a pattern cannot begin with a looping group whose every step is optional"],
        );
        // Later in the pattern Flink runs it (and motif agrees with it).
        assert_errors(
            "pattern p = begin(\"s\").followedBy(begin(\"a\").optional()).oneOrMore();",
            &[],
        );
        // Flink's checkPatternWindowTimes counts quantifier windows.
        assert_errors(
            "pattern p = begin(\"a\").followedBy(\"b\").times(3, 10s).within(5s);",
            &["1:40: this quantifier window (10s) is longer than the pattern's FIRST_AND_LAST window (5s)"],
        );
        assert_errors(
            "pattern p = begin(\"a\").followedBy(\"b\").times(3, 5s).within(5s);",
            &[],
        );
    }

    #[test]
    fn a_pattern_of_optional_steps_only_is_taken_as_flink_takes_it() {
        // Flink accepts them (`begin("a").optional()` matches as `begin("a")`); a warning
        // says so (crate::lint).
        for src in [
            "pattern p = begin(\"a\").optional();",
            "pattern p = begin(\"a\").oneOrMore().optional()\n  .followedBy(\"b\").optional();",
            "pattern p = begin(\"a\").times(0, 2).followedBy(begin(\"b\").optional()).times(2);",
        ] {
            assert_errors(src, &[]);
        }
    }

    #[test]
    fn reserved_characters_and_empty_names() {
        assert_errors(
            "pattern p = begin(\"a:b\").next(\"c$\").next(\"\");",
            &[
                "1:19: the variable name \"a:b\" contains `:`",
                "1:31: the variable name \"c$\" contains `$`",
                "1:42: a variable name cannot be empty",
            ],
        );
    }

    #[test]
    fn counts_and_windows() {
        assert_errors(
            "pattern p = begin(\"a\").timesOrMore(0).next(\"b\");",
            &["1:24: `timesOrMore(0)`: a step must occur at least once"],
        );
        assert_errors(
            "pattern p = begin(\"a\").times(3, 2);",
            &["1:24: `times(3, 2)`: the least number of events is greater than the greatest"],
        );
        assert_errors(
            "pattern p = begin(\"a\").within(0ms);",
            &["1:24: a window of 0ms matches nothing"],
        );
        assert_errors(
            "pattern p = begin(\"a\").next(\"b\").within(0s, PREVIOUS_AND_CURRENT);",
            &["1:34: a window of 0ms matches nothing"],
        );
    }

    #[test]
    fn window_or_skip_strategy_inside_a_group() {
        // Taken with Flink's meaning (crate::lint warns where it surprises).
        assert_errors(
            "pattern p = begin(begin(\"a\").within(5s)).next(\"b\");",
            &[],
        );
        // A skip strategy inside a group is accepted (Flink ignores it; a warning says so).
        assert_errors(
            "pattern p = begin(\"x\").next(begin(\"a\", skipToNext()).next(\"b\"));",
            &[],
        );
    }

    #[test]
    fn every_error_is_collected() {
        let src = "pattern p = begin(\"a\").greedy()\n  .notNext(\"b\").optional()\n  .next(\"a\").until(x)\n  .notFollowedBy(\"c\");";
        assert_errors(
            src,
            &[
                "1:24: `greedy()` needs a quantifier",
                "2:17: `optional()` cannot be applied to a `notNext` step",
                "3:9: the variable \"a\" is defined twice",
                "3:14: `until(...)` applies only to a looping step",
                "4:18: notFollowedBy at the end of a pattern needs a within(...)",
            ],
        );
    }

    // ---------------------------------------------------------------------------------
    // Patterns built with the Rust API

    #[test]
    fn builder_patterns_are_validated_too() {
        let ok = Pattern::begin_with("small", SkipStrategy::SkipPastLastEvent)
            .where_(parse_expr("amount < 10").unwrap())
            .times(3)
            .consecutive()
            .followed_by("large")
            .where_fn(|_, _| true)
            .within_ms(600_000)
            .declare("small_then_large");
        assert!(validate(&ok).is_ok());

        let bad = Pattern::begin_with("a", SkipStrategy::SkipToFirst("nope".into()))
            .greedy()
            .followed_by("a")
            .not_followed_by("n")
            .one_or_more()
            .declare("bad");
        let errs = validate(&bad).unwrap_err();
        let messages: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "`greedy()` needs a quantifier",
                "the variable \"a\" is defined twice",
                "`oneOrMore()` cannot be applied to a `notFollowedBy` step",
                "`skipToFirst` names \"nope\", which is not a variable of this pattern",
                "notFollowedBy at the end of a pattern needs a within(...)",
            ]
        );
        assert!(errs.iter().all(|d| d.span == Span::default()));
        assert_eq!(
            errs[1].help.as_deref(),
            Some("\"a\" is defined earlier in this pattern; variable names must be unique")
        );
    }

    #[test]
    fn builder_only_shapes() {
        // `times(0)` through the builder: optional + Times { 1, 0 }.
        let p = Pattern::begin("a").times(0).followed_by("b").declare("p");
        let errs = validate(&p).unwrap_err();
        assert_eq!(
            errs[0].message,
            "`times(1, 0)`: the least number of events is greater than the greatest"
        );

        let mut p = Pattern::begin("a").followed_by("b");
        p.steps[0].contiguity = Contiguity::NotNext;
        let errs = validate(&p.declare("p")).unwrap_err();
        assert!(errs.iter().any(|d| d
            .message
            .starts_with("a pattern cannot begin with a negation")));

        let p = Pattern::begin("a")
            .push(
                Contiguity::NotNext,
                StepNode::Group(Box::new(Pattern::begin("b"))),
            )
            .followed_by("c")
            .declare("p");
        let errs = validate(&p).unwrap_err();
        assert!(errs
            .iter()
            .any(|d| d.message == "a group cannot be negated"));

        let mut p = Pattern::begin("a").followed_by_group(Pattern::begin("b"));
        if let StepNode::Group(g) = &mut p.steps[1].node {
            g.steps.clear();
        }
        let errs = validate(&p.declare("p")).unwrap_err();
        assert!(errs
            .iter()
            .any(|d| d.message == "a pattern needs at least one step"));
    }

    #[test]
    fn a_pattern_unrolls_to_a_bounded_size() {
        assert_errors("pattern p = begin(\"a\").times(10000);", &[]);
        assert_errors(
            "pattern p = begin(\"a\").times(4294967295);",
            &[
                "1:24: `times(4294967295)` on \"a\" makes the pattern too large: it unrolls to \
               4294967295 steps, at most 10000 are allowed",
            ],
        );
        assert_errors(
            "pattern p = begin(\"a\").timesOrMore(10000);",
            &[
                "1:24: `timesOrMore(10000)` on \"a\" makes the pattern too large: it unrolls to \
               10001 steps, at most 10000 are allowed",
            ],
        );
        assert_errors(
            "pattern p = begin(\"a\").times(2, 4294967295).followedBy(\"b\").times(3);",
            &[
                "1:24: `times(2, 4294967295)` on \"a\" makes the pattern too large: it unrolls \
               to 4294967298 steps, at most 10000 are allowed",
            ],
        );
        // A group's size is its steps times its count.
        assert_errors(
            "pattern p = begin(begin(\"x\").times(100).followedBy(\"y\")).times(100);",
            &[
                "1:58: `times(100)` on (a group) makes the pattern too large: it unrolls to 10100 \
               steps, at most 10000 are allowed",
            ],
        );
        // Built in Rust: the same rule, no span.
        let p = Pattern::begin("a").times(1_000_000).declare("p");
        let errs = validate(&p).unwrap_err();
        assert!(
            errs[0].message.contains("`times(1000000)` on \"a\""),
            "{errs:?}"
        );
    }

    /// The compiled NFA stays within a few states per unrolled step, so the cap on unrolled
    /// steps caps the compiled size: every conformance case and the largest allowed shapes.
    #[test]
    fn compiled_states_are_bounded_by_the_unrolled_steps() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases");
        let mut sources: Vec<String> = std::fs::read_dir(&dir)
            .expect("conformance cases")
            .map(|e| {
                std::fs::read_to_string(e.expect("entry").path().join("case.motif")).expect("case")
            })
            .collect();
        sources.push("pattern p = begin(\"a\").where(x > 1).times(10000);".into());
        sources.push(
            "pattern p = begin(\"s\").notFollowedBy(\"n\").followedBy(\"a\").times(1, 4999).optional().greedy()\n\
             .followedBy(\"b\").notFollowedBy(\"m\").within(5s);"
                .into(),
        );
        sources.push(
            "pattern p = begin(begin(\"x\").times(99).followedBy(\"y\").optional()).timesOrMore(99).until(z);"
                .into(),
        );
        let mut worst = 0.0f64;
        for src in &sources {
            for decl in load_str("t.motif", src).expect("loads") {
                let (steps, _) = unrolled_steps(&decl.pattern);
                let nfa =
                    crate::nfa::compile(&decl, &mut crate::event::Schema::new()).expect("compiles");
                let ratio = nfa.states.len() as f64 / steps as f64;
                worst = worst.max(ratio);
                assert!(
                    nfa.states.len() as u64 <= 4 * steps + 8,
                    "{} states for {steps} unrolled steps:\n{src}",
                    nfa.states.len()
                );
            }
        }
        eprintln!("worst states per unrolled step: {worst:.2}");
    }
}

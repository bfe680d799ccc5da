//! Text to model: the pest parser of `grammar/motif.pest` and the lowering of its parse tree
//! into [`PatternDecl`]s and [`Expr`]s, one `parse_*` function per grammar rule.
//!
//! Lowering follows the builder semantics of [`crate::pattern`]: several `where` are AND-ed,
//! `or` ORs with what came before, `times(0, m)` is `optional` plus `Times { 1, m }`, and the
//! first step's contiguity is `Relaxed`. What the model cannot hold is checked here and
//! reported with its span: a quantifier or modifier applied twice, a quantifier after a
//! modifier (Flink resets the modifiers then), `times(0)`, `consecutive` together with
//! `allowCombinations`, a second `until`, and a header clause given twice. Everything the
//! model can hold is checked by [`crate::validate`].

mod aggregate;

use std::sync::LazyLock;

use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;

use super::diagnostics::from_pest;
use crate::aggregate::AggregateDecl;
use crate::error::line_col;
use crate::error::Diagnostic;
use crate::expr::ast::{BinaryOp, Expr, ExprKind, Span, UnaryOp};
use crate::pattern::{Contiguity, Pattern, PatternDecl, SkipStrategy, StepNode};
use crate::value::Value;

/// The pest parser generated from `grammar/motif.pest`.
#[derive(pest_derive::Parser)]
#[grammar = "grammar/motif.pest"]
pub(crate) struct MotifParser;

/// Deepest nesting of `(` and `[` accepted, so that no recursion (pest's, ours, or later
/// passes over the tree) can exhaust the stack.
pub(crate) const MAX_NESTING: usize = 64;

/// Deepest expression tree accepted (long operator chains build deep trees without any
/// parentheses).
pub(crate) const MAX_EXPR_DEPTH: usize = 256;

/// The declarations that parsed, and every problem found on the way.
pub(crate) struct Parsed {
    /// Declarations whose syntax is correct (lowering problems may still be in `diags`).
    pub decls: Vec<PatternDecl>,
    /// Aggregate declarations whose syntax is correct.
    pub aggregates: Vec<AggregateDecl>,
    /// Syntax and lowering errors (the callers sort them by place).
    pub diags: Vec<Diagnostic>,
}

/// Parses a whole file. Never panics; after a syntax error it resumes at the next
/// declaration so that several errors are reported at once.
pub(crate) fn parse_file(src: &str) -> Parsed {
    if let Some(d) = check_nesting(src) {
        return Parsed {
            decls: Vec::new(),
            aggregates: Vec::new(),
            diags: vec![d],
        };
    }
    match MotifParser::parse(Rule::file, src) {
        Ok(mut pairs) => {
            let mut lower = Lowerer::new(src, 0);
            let mut decls = Vec::new();
            let mut aggregates = Vec::new();
            if let Some(file) = pairs.next() {
                for p in file.into_inner() {
                    match p.as_rule() {
                        Rule::decl => decls.push(lower.parse_decl(p)),
                        Rule::agg_decl => aggregates.push(lower.parse_agg_decl(p)),
                        _ => {}
                    }
                }
            }
            Parsed {
                decls,
                aggregates,
                diags: lower.diags,
            }
        }
        Err(first) => recover(src, from_pest(&first, src, 0)),
    }
}

/// Parses declaration after declaration, skipping to the next `pattern` or `aggregate`
/// after each error.
fn recover(src: &str, file_error: Diagnostic) -> Parsed {
    let mut decls = Vec::new();
    let mut aggregates = Vec::new();
    let mut diags = Vec::new();
    let mut pos = 0;
    while pos < src.len() {
        let rest = &src[pos..];
        if MotifParser::parse(Rule::rest_empty, rest).is_ok() {
            break;
        }
        match MotifParser::parse(Rule::decl_at, rest) {
            Ok(mut pairs) => {
                let decl = pairs.next().and_then(|at| {
                    at.into_inner()
                        .find(|p| matches!(p.as_rule(), Rule::decl | Rule::agg_decl))
                });
                let Some(decl) = decl else { break };
                let end = pos + decl.as_span().end();
                let mut lower = Lowerer::new(src, pos);
                if decl.as_rule() == Rule::agg_decl {
                    aggregates.push(lower.parse_agg_decl(decl));
                } else {
                    decls.push(lower.parse_decl(decl));
                }
                diags.extend(lower.diags);
                if end <= pos {
                    break;
                }
                pos = end;
            }
            Err(e) => {
                let d = from_pest(&e, src, pos);
                let at = d.span.start.max(pos);
                diags.push(d);
                match next_decl_start(src, at + 1) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
        }
    }
    if diags.is_empty() {
        diags.push(file_error);
    }
    Parsed {
        decls,
        aggregates,
        diags,
    }
}

/// The next `pattern` or `aggregate` keyword at or after `from` that begins a line or
/// follows a `;`.
fn next_decl_start(src: &str, from: usize) -> Option<usize> {
    let a = next_word_start(src, from, "pattern");
    let b = next_word_start(src, from, "aggregate");
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The next `word` at or after `from` that begins a line or follows a `;`.
fn next_word_start(src: &str, from: usize, word: &str) -> Option<usize> {
    let mut search = from;
    while search < src.len() && !src.is_char_boundary(search) {
        search += 1;
    }
    while search < src.len() {
        let rel = src.get(search..)?.find(word)?;
        let at = search + rel;
        let end = at + word.len();
        let word_end = src[end..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let before = src[..at].rsplit('\n').next().unwrap_or("").trim_end();
        if word_end && (before.is_empty() || before.ends_with(';')) {
            return Some(at);
        }
        search = end;
    }
    None
}

/// Finds the first place where `(`/`[` nest deeper than [`MAX_NESTING`], outside strings and
/// comments.
fn check_nesting(src: &str) -> Option<Diagnostic> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::new(
                            format!(
                                "nested too deeply (more than {MAX_NESTING} levels of brackets)"
                            ),
                            Span::new(i, i + 1),
                        )
                        .with_help("split the expression or the pattern into simpler parts"),
                    );
                }
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses one expression (the whole input).
pub(crate) fn parse_expression(src: &str) -> Result<Expr, Vec<Diagnostic>> {
    if let Some(d) = check_nesting(src) {
        return Err(vec![d]);
    }
    let mut pairs =
        MotifParser::parse(Rule::expr_input, src).map_err(|e| vec![from_pest(&e, src, 0)])?;
    let lower = Lowerer::new(src, 0);
    let expr = pairs
        .next()
        .and_then(|input| input.into_inner().find(|p| p.as_rule() == Rule::expr));
    match expr {
        Some(e) => lower.parse_expr(e).map(|n| n.expr).map_err(|d| vec![d]),
        None => Err(vec![Diagnostic::new(
            "expected an expression",
            Span::new(0, 0),
        )]),
    }
}

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::op_or, Assoc::Left))
        .op(Op::infix(Rule::op_and, Assoc::Left))
        .op(Op::prefix(Rule::op_not))
        .op(Op::infix(Rule::op_eq, Assoc::Left)
            | Op::infix(Rule::op_ne, Assoc::Left)
            | Op::infix(Rule::op_lt, Assoc::Left)
            | Op::infix(Rule::op_le, Assoc::Left)
            | Op::infix(Rule::op_gt, Assoc::Left)
            | Op::infix(Rule::op_ge, Assoc::Left)
            | Op::postfix(Rule::in_list))
        .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
        .op(Op::infix(Rule::op_mul, Assoc::Left)
            | Op::infix(Rule::op_div, Assoc::Left)
            | Op::infix(Rule::op_rem, Assoc::Left))
        .op(Op::prefix(Rule::op_neg))
});

/// An expression under construction with the depth of its tree.
struct Node {
    expr: Expr,
    depth: usize,
}

/// Which chain calls were already applied to the step being built, and where.
#[derive(Default)]
struct Applied {
    quantifier: Option<(Span, &'static str)>,
    optional: Option<(Span, &'static str)>,
    greedy: Option<Span>,
    inner: Option<(Span, &'static str)>,
    until: Option<Span>,
    within: Option<Span>,
    within_previous: Option<Span>,
}

/// Lowers parse trees; positions in pest pairs are relative to `&src[base..]`.
struct Lowerer<'s> {
    src: &'s str,
    base: usize,
    diags: Vec<Diagnostic>,
}

impl<'s> Lowerer<'s> {
    fn new(src: &'s str, base: usize) -> Self {
        Lowerer {
            src,
            base,
            diags: Vec::new(),
        }
    }

    fn span(&self, p: &Pair<'_, Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.base + s.start(), self.base + s.end())
    }

    /// `line:col` of a span, for messages that point at a second place.
    fn at(&self, span: Span) -> String {
        let (l, c) = line_col(self.src, span.start);
        format!("{l}:{c}")
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    // ---------------------------------------------------------------------------------
    // Declarations

    /// `decl = { kw_pattern ~ ident ~ header* ~ assign ~ chain ~ semi }`
    fn parse_decl(&mut self, pair: Pair<'_, Rule>) -> PatternDecl {
        let mut name = String::new();
        let mut name_span = Span::default();
        let mut key: Option<(Vec<Vec<String>>, Span)> = None;
        let mut time: Option<(Vec<String>, Span)> = None;
        let mut lateness: Option<(u64, Span)> = None;
        let mut pattern: Option<Pattern> = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => {
                    name = p.as_str().to_string();
                    name_span = self.span(&p);
                }
                Rule::key_clause => {
                    let span = self.span(&p);
                    let fields = self.parse_key_clause(p);
                    self.set_once(&mut key, fields, span, "key");
                }
                Rule::time_clause => {
                    let span = self.span(&p);
                    let field = self.parse_time_clause(p);
                    self.set_once(&mut time, field, span, "time");
                }
                Rule::lateness_clause => {
                    let span = self.span(&p);
                    let ms = self.parse_lateness_clause(p);
                    self.set_once(&mut lateness, ms, span, "lateness");
                }
                Rule::chain => pattern = Some(self.parse_chain(p)),
                _ => {}
            }
        }
        let pattern = pattern.unwrap_or_else(|| Pattern::begin(""));
        PatternDecl {
            name,
            key: key.map(|(k, _)| k).unwrap_or_default(),
            time: time.map(|(t, _)| t),
            lateness_ms: lateness.map_or(0, |(l, _)| l),
            pattern,
            span: name_span,
            output_fields: Vec::new(),
        }
    }

    /// Stores a declaration clause, or reports it as given twice.
    fn set_once<T>(&mut self, slot: &mut Option<(T, Span)>, value: T, span: Span, clause: &str) {
        match slot {
            Some((_, first)) => {
                let first = *first;
                self.clause_twice(clause, span, first);
            }
            None => *slot = Some((value, span)),
        }
    }

    fn clause_twice(&mut self, clause: &str, span: Span, first: Span) {
        let at = self.at(first);
        self.error(
            Diagnostic::new(format!("`{clause}` is given twice"), span)
                .with_help(format!("the first `{clause}` is at {at}; give it once")),
        );
    }

    /// `key_clause = { kw_key ~ field_path ~ (comma ~ field_path)* }`
    fn parse_key_clause(&mut self, pair: Pair<'_, Rule>) -> Vec<Vec<String>> {
        pair.into_inner()
            .filter(|p| p.as_rule() == Rule::field_path)
            .map(|p| self.parse_field_path(p))
            .collect()
    }

    /// `time_clause = { kw_time ~ field_path }`
    fn parse_time_clause(&mut self, pair: Pair<'_, Rule>) -> Vec<String> {
        pair.into_inner()
            .find(|p| p.as_rule() == Rule::field_path)
            .map(|p| self.parse_field_path(p))
            .unwrap_or_default()
    }

    /// `lateness_clause = { kw_lateness ~ duration }`
    fn parse_lateness_clause(&mut self, pair: Pair<'_, Rule>) -> u64 {
        pair.into_inner()
            .find(|p| p.as_rule() == Rule::duration)
            .map_or(0, |p| self.parse_duration(p))
    }

    /// `field_path = ${ name ~ ("." ~ name)* }`
    fn parse_field_path(&mut self, pair: Pair<'_, Rule>) -> Vec<String> {
        names(pair)
    }

    /// `duration = ${ duration_value ~ duration_unit }`, in milliseconds.
    fn parse_duration(&mut self, pair: Pair<'_, Rule>) -> u64 {
        let span = self.span(&pair);
        let mut value: Option<u64> = None;
        let mut unit_ms = 1u64;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::duration_value => value = p.as_str().parse().ok(),
                Rule::duration_unit => {
                    unit_ms = match p.as_str() {
                        "ms" => 1,
                        "s" => 1_000,
                        "m" | "min" => 60_000,
                        "h" => 3_600_000,
                        _ => 86_400_000,
                    }
                }
                _ => {}
            }
        }
        let max = crate::validate::MAX_DURATION_MS;
        match value.and_then(|v| v.checked_mul(unit_ms)) {
            Some(ms) if ms <= max => ms,
            _ => {
                self.error(
                    Diagnostic::new(
                        format!(
                            "this duration is too long (at most {max}ms, about {} days)",
                            max / 86_400_000
                        ),
                        span,
                    )
                    .with_help("event times are i64 milliseconds; no span is longer than that"),
                );
                // Reported once: a stand-in that no other rule finds fault with.
                1
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // The chain

    /// `chain = { begin_call ~ (dot ~ chain_call)* }`
    fn parse_chain(&mut self, pair: Pair<'_, Rule>) -> Pattern {
        let chain_span = self.span(&pair);
        let mut pattern: Option<Pattern> = None;
        let mut applied = Applied::default();
        for call in pair.into_inner() {
            let rule = call.as_rule();
            if rule == Rule::dot {
                continue;
            }
            if rule == Rule::begin_call {
                pattern = Some(self.parse_begin_call(call));
                continue;
            }
            let Some(p) = pattern.take() else { continue };
            pattern = Some(self.parse_chain_call(p, call, &mut applied));
        }
        let mut pattern = pattern.unwrap_or_else(|| Pattern::begin(""));
        pattern.span = chain_span;
        pattern
    }

    /// `begin_call = { m_begin ~ lparen ~ (chain | var_name) ~ (comma ~ skip_strategy)? ~ rparen }`
    fn parse_begin_call(&mut self, pair: Pair<'_, Rule>) -> Pattern {
        let mut pattern: Option<Pattern> = None;
        let mut skip = SkipStrategy::NoSkip;
        let mut skip_span: Option<(&'static str, Span)> = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::var_name => {
                    let span = self.span(&p);
                    let name = self.parse_var_name(p);
                    let mut begun = Pattern::begin(&name);
                    if let Some(step) = begun.steps.first_mut() {
                        step.span = span;
                    }
                    pattern = Some(begun);
                }
                Rule::chain => {
                    let group = self.parse_chain(p);
                    let span = group.span;
                    let mut begun = Pattern::begin_group(group);
                    if let Some(step) = begun.steps.first_mut() {
                        step.span = span;
                    }
                    pattern = Some(begun);
                }
                Rule::no_skip
                | Rule::skip_to_next
                | Rule::skip_past_last_event
                | Rule::skip_to_first
                | Rule::skip_to_last => {
                    let span = self.span(&p);
                    let (s, call) = self.parse_skip_strategy(p);
                    skip = s;
                    skip_span = Some((call, span));
                }
                _ => {}
            }
        }
        let mut pattern = pattern.unwrap_or_else(|| Pattern::begin(""));
        pattern.skip = skip;
        if let (Some((call, span)), Some(step)) = (skip_span, pattern.steps.first_mut()) {
            // Validation points at the skip strategy (an unknown target, a strategy inside a
            // group), so its place is kept with the first step's calls.
            step.call_spans.push((call, span));
        }
        pattern
    }

    /// `no_skip | skip_to_next | skip_past_last_event | skip_to_first | skip_to_last`, with
    /// the call's name.
    fn parse_skip_strategy(&mut self, pair: Pair<'_, Rule>) -> (SkipStrategy, &'static str) {
        let rule = pair.as_rule();
        let target = pair
            .into_inner()
            .find(|p| p.as_rule() == Rule::var_name)
            .map(|p| self.parse_var_name(p))
            .unwrap_or_default();
        match rule {
            Rule::skip_to_next => (SkipStrategy::SkipToNext, "skipToNext"),
            Rule::skip_past_last_event => (SkipStrategy::SkipPastLastEvent, "skipPastLastEvent"),
            Rule::skip_to_first => (SkipStrategy::SkipToFirst(target), "skipToFirst"),
            Rule::skip_to_last => (SkipStrategy::SkipToLast(target), "skipToLast"),
            _ => (SkipStrategy::NoSkip, "noSkip"),
        }
    }

    /// `var_name = { string }`
    fn parse_var_name(&mut self, pair: Pair<'_, Rule>) -> String {
        match pair.into_inner().find(|p| p.as_rule() == Rule::string) {
            Some(s) => match self.parse_string(s) {
                Ok(v) => v,
                Err(d) => {
                    self.error(d);
                    String::new()
                }
            },
            None => String::new(),
        }
    }

    /// One call after `begin(...)`: a new step, a condition, a quantifier, a modifier or a
    /// window.
    fn parse_chain_call(
        &mut self,
        p: Pattern,
        call: Pair<'_, Rule>,
        applied: &mut Applied,
    ) -> Pattern {
        let span = self.span(&call);
        match call.as_rule() {
            Rule::next_call
            | Rule::followed_by_call
            | Rule::followed_by_any_call
            | Rule::not_next_call
            | Rule::not_followed_by_call => {
                *applied = Applied::default();
                self.parse_step_call(p, call)
            }
            Rule::where_call | Rule::or_call | Rule::until_call => {
                self.parse_condition_call(p, call, span, applied)
            }
            Rule::one_or_more_call | Rule::times_or_more_call | Rule::times_call => {
                self.parse_quantifier_call(p, call, span, applied)
            }
            Rule::optional_call
            | Rule::greedy_call
            | Rule::consecutive_call
            | Rule::allow_combinations_call => {
                self.parse_modifier_call(p, call.as_rule(), span, applied)
            }
            Rule::within_call => self.parse_within_call(p, call, span, applied),
            _ => p,
        }
    }

    /// `next_call | followed_by_call | followed_by_any_call | not_next_call | not_followed_by_call`
    fn parse_step_call(&mut self, p: Pattern, call: Pair<'_, Rule>) -> Pattern {
        let contiguity = match call.as_rule() {
            Rule::next_call => Contiguity::Strict,
            Rule::followed_by_any_call => Contiguity::NonDeterministic,
            Rule::not_next_call => Contiguity::NotNext,
            Rule::not_followed_by_call => Contiguity::NotFollowedBy,
            _ => Contiguity::Relaxed,
        };
        let mut node = StepNode::Variable(String::new());
        let mut span = Span::default();
        for t in call.into_inner() {
            match t.as_rule() {
                Rule::var_name => {
                    span = self.span(&t);
                    node = StepNode::Variable(self.parse_var_name(t));
                }
                Rule::chain => {
                    let group = self.parse_chain(t);
                    span = group.span;
                    node = StepNode::Group(Box::new(group));
                }
                _ => {}
            }
        }
        let mut p = p.push(contiguity, node);
        if let Some(step) = p.steps.last_mut() {
            step.span = span;
        }
        p
    }

    /// `where_call | or_call | until_call`
    fn parse_condition_call(
        &mut self,
        p: Pattern,
        call: Pair<'_, Rule>,
        span: Span,
        applied: &mut Applied,
    ) -> Pattern {
        let rule = call.as_rule();
        let expr = match call.into_inner().find(|t| t.as_rule() == Rule::expr) {
            Some(e) => match self.parse_expr(e) {
                Ok(n) => n.expr,
                Err(d) => {
                    self.error(d);
                    Expr::spanned(ExprKind::Literal(Value::Bool(true)), span)
                }
            },
            None => Expr::spanned(ExprKind::Literal(Value::Bool(true)), span),
        };
        let (p, name) = match rule {
            Rule::where_call => (p.where_(expr), "where"),
            Rule::or_call => (p.or(expr), "or"),
            _ => {
                if let Some(first) = applied.until {
                    let at = self.at(first);
                    self.error(
                        Diagnostic::new("only one `until` can be applied to a step", span)
                            .with_help(format!(
                                "the first `until` is at {at}; combine the conditions with `or`"
                            )),
                    );
                    return p;
                }
                applied.until = Some(span);
                (p.until(expr), "until")
            }
        };
        record(p, name, span)
    }

    /// `one_or_more_call | times_or_more_call | times_call`
    fn parse_quantifier_call(
        &mut self,
        p: Pattern,
        call: Pair<'_, Rule>,
        span: Span,
        applied: &mut Applied,
    ) -> Pattern {
        let rule = call.as_rule();
        let mut counts: Vec<(u32, Span)> = Vec::new();
        let mut window: Option<(u64, Span)> = None;
        for t in call.into_inner() {
            match t.as_rule() {
                Rule::count => counts.push((self.parse_count(&t), self.span(&t))),
                Rule::duration => {
                    let at = self.span(&t);
                    window = Some((self.parse_duration(t), at));
                }
                _ => {}
            }
        }
        let name = match rule {
            Rule::one_or_more_call => "oneOrMore",
            Rule::times_or_more_call => "timesOrMore",
            _ => "times",
        };
        let written = &self.src[span.start..span.end];
        if let Some((first, first_name)) = applied.quantifier {
            let at = self.at(first);
            self.error(
                Diagnostic::new("a quantifier is already applied to this step", span).with_help(
                    format!(
                        "`{first_name}` at {at} is its quantifier; a step takes one of \
                     oneOrMore(), timesOrMore(n), times(n), times(n, m)"
                    ),
                ),
            );
            return p;
        }
        let earlier = [
            applied.optional,
            applied.greedy.map(|s| (s, "greedy()")),
            applied.inner,
            applied.until.map(|s| (s, "until(...)")),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(s, _)| s.start);
        if let Some((s, modifier)) = earlier {
            let at = self.at(s);
            self.error(
                Diagnostic::new(
                    format!("the quantifier `{written}` must come before `{modifier}`"),
                    span,
                )
                .with_help(format!(
                    "`{modifier}` is at {at}; as in Flink, a quantifier resets the modifiers \
                     applied before it, so write the quantifier first"
                )),
            );
        }
        applied.quantifier = Some((span, name));
        let p = match (rule, counts.as_slice()) {
            (Rule::one_or_more_call, _) => p.one_or_more(),
            (Rule::times_or_more_call, [(n, _)]) => p.times_or_more(*n),
            (Rule::times_call, [(0, _)]) => {
                self.error(
                    Diagnostic::new("`times(0)`: a step must occur at least once", span)
                        .with_help("use `optional()` for a step that may not occur"),
                );
                p.times(1)
            }
            (Rule::times_call, [(n, _)]) => p.times(*n),
            (Rule::times_call, [(0, _), (0, _)]) => {
                self.error(
                    Diagnostic::new("`times(0, 0)` matches no event at all", span)
                        .with_help("the greatest number of events must be at least 1"),
                );
                p.times(1)
            }
            (Rule::times_call, [(from, _), (to, _)]) => {
                if *from == 0 {
                    applied.optional = Some((span, "times(0, m)"));
                }
                p.times_range(*from, *to)
            }
            _ => p,
        };
        let p = match window {
            Some((0, at)) => {
                self.error(
                    Diagnostic::new("a quantifier window of 0ms lets no event follow", at)
                        .with_help("give the window a positive duration, or leave it out"),
                );
                p
            }
            Some((ms, _)) => p.with_quantifier_window_ms(ms),
            None => p,
        };
        record(p, name, span)
    }

    /// `optional_call | greedy_call | consecutive_call | allow_combinations_call`
    fn parse_modifier_call(
        &mut self,
        p: Pattern,
        rule: Rule,
        span: Span,
        applied: &mut Applied,
    ) -> Pattern {
        match rule {
            Rule::optional_call => {
                if let Some((first, how)) = applied.optional {
                    let at = self.at(first);
                    self.error(
                        Diagnostic::new("this step is already optional", span)
                            .with_help(format!("`{how}` at {at} already makes it optional")),
                    );
                    return p;
                }
                applied.optional = Some((span, "optional()"));
                record(p.optional(), "optional", span)
            }
            Rule::greedy_call => {
                if let Some(first) = applied.greedy {
                    let at = self.at(first);
                    self.error(
                        Diagnostic::new("`greedy()` is already applied to this step", span)
                            .with_help(format!("the first `greedy()` is at {at}")),
                    );
                    return p;
                }
                applied.greedy = Some(span);
                record(p.greedy(), "greedy", span)
            }
            _ => {
                let (name, written) = if rule == Rule::consecutive_call {
                    ("consecutive", "consecutive()")
                } else {
                    ("allowCombinations", "allowCombinations()")
                };
                if let Some((first, first_written)) = applied.inner {
                    let at = self.at(first);
                    let message = if first_written == written {
                        format!("`{written}` is already applied to this step")
                    } else {
                        "apply either `consecutive()` or `allowCombinations()`, not both"
                            .to_string()
                    };
                    self.error(
                        Diagnostic::new(message, span)
                            .with_help(format!("`{first_written}` is at {at}")),
                    );
                    return p;
                }
                applied.inner = Some((span, written));
                let p = if rule == Rule::consecutive_call {
                    p.consecutive()
                } else {
                    p.allow_combinations()
                };
                record(p, name, span)
            }
        }
    }

    /// `within_call = { m_within ~ lparen ~ duration ~ (comma ~ within_kind)? ~ rparen }`
    fn parse_within_call(
        &mut self,
        p: Pattern,
        call: Pair<'_, Rule>,
        span: Span,
        applied: &mut Applied,
    ) -> Pattern {
        let mut ms = 0;
        let mut previous = false;
        for t in call.into_inner() {
            match t.as_rule() {
                Rule::duration => ms = self.parse_duration(t),
                Rule::previous_and_current => previous = true,
                _ => {}
            }
        }
        let slot = if previous {
            &mut applied.within_previous
        } else {
            &mut applied.within
        };
        if let Some(first) = *slot {
            let at = self.at(first);
            let kind = if previous {
                "PREVIOUS_AND_CURRENT"
            } else {
                "FIRST_AND_LAST"
            };
            self.error(
                Diagnostic::new(
                    format!("a {kind} window is already given for this step"),
                    span,
                )
                .with_help(format!(
                    "the first is at {at}; give one window of each kind"
                )),
            );
            return p;
        }
        *slot = Some(span);
        let p = if previous {
            p.within_previous_ms(ms)
        } else {
            p.within_ms(ms)
        };
        record(p, "within", span)
    }

    /// `count = @{ ASCII_DIGIT+ }`
    fn parse_count(&mut self, pair: &Pair<'_, Rule>) -> u32 {
        match pair.as_str().parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let span = self.span(pair);
                self.error(Diagnostic::new(
                    format!("this number is too large (at most {})", u32::MAX),
                    span,
                ));
                1
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Expressions

    /// `expr = { prefix* ~ operand ~ postfix* ~ (infix ~ prefix* ~ operand ~ postfix*)* }`,
    /// with precedence applied by [`PRATT`].
    fn parse_expr(&self, pair: Pair<'_, Rule>) -> Result<Node, Diagnostic> {
        // A long run of prefix operators would make the Pratt parser recurse deeply.
        let mut run = 0usize;
        for p in pair.clone().into_inner() {
            if matches!(p.as_rule(), Rule::op_not | Rule::op_neg) {
                run += 1;
                if run > MAX_EXPR_DEPTH {
                    return Err(self.too_deep(self.span(&p)));
                }
            } else {
                run = 0;
            }
        }
        PRATT
            .map_primary(|p| self.parse_operand(p))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let o = if op.as_rule() == Rule::op_not {
                    UnaryOp::Not
                } else {
                    UnaryOp::Neg
                };
                let span = Span::new(self.span(&op).start, rhs.expr.span.end);
                self.node(ExprKind::Unary(o, Box::new(rhs.expr)), span, rhs.depth + 1)
            })
            .map_postfix(|lhs, op| {
                let lhs = lhs?;
                let span = Span::new(lhs.expr.span.start, self.span(&op).end);
                let (items, depth) = self.parse_in_list(op)?;
                let depth = depth.max(lhs.depth) + 1;
                self.node(ExprKind::In(Box::new(lhs.expr), items), span, depth)
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let o = match op.as_rule() {
                    Rule::op_or => BinaryOp::Or,
                    Rule::op_and => BinaryOp::And,
                    Rule::op_eq => BinaryOp::Eq,
                    Rule::op_ne => BinaryOp::Ne,
                    Rule::op_lt => BinaryOp::Lt,
                    Rule::op_le => BinaryOp::Le,
                    Rule::op_gt => BinaryOp::Gt,
                    Rule::op_ge => BinaryOp::Ge,
                    Rule::op_add => BinaryOp::Add,
                    Rule::op_sub => BinaryOp::Sub,
                    Rule::op_mul => BinaryOp::Mul,
                    Rule::op_div => BinaryOp::Div,
                    _ => BinaryOp::Rem,
                };
                let span = Span::new(lhs.expr.span.start, rhs.expr.span.end);
                let depth = lhs.depth.max(rhs.depth) + 1;
                self.node(
                    ExprKind::Binary(o, Box::new(lhs.expr), Box::new(rhs.expr)),
                    span,
                    depth,
                )
            })
            .parse(pair.into_inner())
    }

    fn node(&self, kind: ExprKind, span: Span, depth: usize) -> Result<Node, Diagnostic> {
        if depth > MAX_EXPR_DEPTH {
            let d = self.too_deep(span);
            return Err(match kind {
                // Splitting into `where` calls would AND the terms of an `or` chain.
                ExprKind::Binary(BinaryOp::Or, ..) => d.with_help(
                    "for a chain of `==` on one field write `field in [a, b, ...]`; else \
                     split it into `.where(...)` followed by `.or(...)` calls, which are OR-ed",
                ),
                _ => d,
            });
        }
        Ok(Node {
            expr: Expr::spanned(kind, span),
            depth,
        })
    }

    fn too_deep(&self, span: Span) -> Diagnostic {
        Diagnostic::new(
            format!("this expression is too deeply nested (more than {MAX_EXPR_DEPTH} levels)"),
            span,
        )
        .with_help("split it into several `where` calls")
    }

    /// `in_list = { kw_in ~ lbracket ~ (expr ~ (comma ~ expr)* ~ comma?)? ~ rbracket }`
    fn parse_in_list(&self, pair: Pair<'_, Rule>) -> Result<(Vec<Expr>, usize), Diagnostic> {
        let mut items = Vec::new();
        let mut depth = 0;
        for p in pair.into_inner() {
            if p.as_rule() == Rule::expr {
                let n = self.parse_expr(p)?;
                depth = depth.max(n.depth);
                items.push(n.expr);
            }
        }
        Ok((items, depth))
    }

    /// `operand = _{ literal | call | path | paren }`
    fn parse_operand(&self, pair: Pair<'_, Rule>) -> Result<Node, Diagnostic> {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::float => self.parse_float(&pair),
            Rule::int => self.parse_int(&pair),
            Rule::string => {
                let s = self.parse_string(pair)?;
                self.node(ExprKind::Literal(Value::from(s.as_str())), span, 1)
            }
            Rule::kw_true => self.node(ExprKind::Literal(Value::Bool(true)), span, 1),
            Rule::kw_false => self.node(ExprKind::Literal(Value::Bool(false)), span, 1),
            Rule::kw_null => self.node(ExprKind::Literal(Value::Null), span, 1),
            Rule::call => self.parse_call(pair),
            Rule::path => self.node(ExprKind::Path(self.parse_path(pair)), span, 1),
            Rule::paren => self.parse_paren(pair),
            _ => Err(Diagnostic::new("expected an expression", span)),
        }
    }

    /// `float = @{ ASCII_DIGIT+ ~ ("." ~ ASCII_DIGIT+ ~ exponent? | exponent) }`
    fn parse_float(&self, pair: &Pair<'_, Rule>) -> Result<Node, Diagnostic> {
        let span = self.span(pair);
        match pair.as_str().parse::<f64>() {
            Ok(x) if x.is_finite() => self.node(ExprKind::Literal(Value::Float(x)), span, 1),
            _ => Err(Diagnostic::new("this number is too large", span)),
        }
    }

    /// `int = @{ ASCII_DIGIT+ }`: a 64-bit integer, or a float when it does not fit (as a
    /// JSON number would).
    fn parse_int(&self, pair: &Pair<'_, Rule>) -> Result<Node, Diagnostic> {
        let span = self.span(pair);
        let text = pair.as_str();
        if let Ok(i) = text.parse::<i64>() {
            return self.node(ExprKind::Literal(Value::Int(i)), span, 1);
        }
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => self.node(ExprKind::Literal(Value::Float(x)), span, 1),
            _ => Err(Diagnostic::new("this number is too large", span)),
        }
    }

    /// `string = ${ "\"" ~ str_inner ~ "\"" }`: the decoded text.
    fn parse_string(&self, pair: Pair<'_, Rule>) -> Result<String, Diagnostic> {
        let Some(inner) = pair.into_inner().find(|p| p.as_rule() == Rule::str_inner) else {
            return Ok(String::new());
        };
        let start = self.span(&inner).start;
        let raw = inner.as_str();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                '0' => out.push('\0'),
                'u' => {
                    let braced = chars.peek().is_some_and(|&(_, c)| c == '{');
                    let mut hex = String::new();
                    if braced {
                        chars.next();
                        for (_, h) in chars.by_ref() {
                            if h == '}' {
                                break;
                            }
                            hex.push(h);
                        }
                    } else {
                        for _ in 0..4 {
                            if let Some((_, h)) = chars.next() {
                                hex.push(h);
                            }
                        }
                    }
                    let end = chars.peek().map_or(raw.len(), |&(j, _)| j);
                    let esc_span = Span::new(start + i, start + end);
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) => out.push(ch),
                        None => return Err(Diagnostic::new(
                            format!("`{}` is not a Unicode character", &raw[i..end]),
                            esc_span,
                        )
                        .with_help(
                            "use a scalar value: at most 10FFFF and not a surrogate (D800 to DFFF)",
                        )),
                    }
                }
                // `"`, `\`, `/`: the character itself (the grammar admits no other escape).
                other => out.push(other),
            }
        }
        Ok(out)
    }

    /// `call = { ident ~ lparen ~ (expr ~ (comma ~ expr)*)? ~ rparen ~ member? }`
    fn parse_call(&self, pair: Pair<'_, Rule>) -> Result<Node, Diagnostic> {
        let span = self.span(&pair);
        let mut name = String::new();
        let mut args = Vec::new();
        let mut depth = 0;
        let mut member: Option<(Vec<String>, Span)> = None;
        let mut call_end = span.end;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = p.as_str().to_string(),
                Rule::expr => {
                    let n = self.parse_expr(p)?;
                    depth = depth.max(n.depth);
                    args.push(n.expr);
                }
                Rule::rparen => call_end = self.span(&p).end,
                Rule::member => {
                    let mspan = self.span(&p);
                    member = Some((self.parse_path(p), mspan));
                }
                _ => {}
            }
        }
        let call = self.node(
            ExprKind::Call { name, args },
            Span::new(span.start, call_end),
            depth + 1,
        )?;
        match member {
            None => Ok(call),
            Some((path, _)) => self.node(
                ExprKind::Member {
                    base: Box::new(call.expr),
                    path,
                },
                span,
                call.depth + 1,
            ),
        }
    }

    /// `path = ${ ident ~ ("." ~ ident)* }` (also `member`, which starts with a dot).
    fn parse_path(&self, pair: Pair<'_, Rule>) -> Vec<String> {
        names(pair)
    }

    /// `paren = { lparen ~ expr ~ rparen }`: the inner expression, spanning the parentheses.
    fn parse_paren(&self, pair: Pair<'_, Rule>) -> Result<Node, Diagnostic> {
        let span = self.span(&pair);
        let inner = pair
            .into_inner()
            .find(|p| p.as_rule() == Rule::expr)
            .ok_or_else(|| Diagnostic::new("expected an expression", span))?;
        let mut n = self.parse_expr(inner)?;
        n.expr.span = span;
        Ok(n)
    }
}

/// The names of a path (`name = _{ ident | quoted_name }`), a quoted one without its
/// backticks and with each doubled backtick single.
fn names(pair: Pair<'_, Rule>) -> Vec<String> {
    pair.into_inner()
        .filter_map(|p| match p.as_rule() {
            Rule::ident => Some(p.as_str().to_string()),
            Rule::quoted_name => {
                let s = p.as_str();
                let inner = s.get(1..s.len().saturating_sub(1)).unwrap_or("");
                Some(inner.replace("``", "`"))
            }
            _ => None,
        })
        .collect()
}

/// Records where a call was written on the last step.
fn record(mut p: Pattern, name: &'static str, span: Span) -> Pattern {
    if let Some(step) = p.steps.last_mut() {
        step.call_spans.push((name, span));
    }
    p
}

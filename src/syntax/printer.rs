//! The canonical pretty printer: declarations back in the language's own syntax.
//!
//! The output parses to the same model, and printing is a fixpoint: for any text that parses,
//! `print(parse(print(parse(text)))) == print(parse(text))`.
//!
//! Canonical form:
//!
//! ```text
//! pattern small_then_large
//!     key card_id
//!     time ts
//!     lateness 5s
//! = begin("small", skipPastLastEvent()).where(amount < 10).times(3).consecutive()
//!   .followedBy("large").where(amount > (10 * sum(small.amount)))
//!   .within(10m);
//! ```
//!
//! - One step per line, and one line per `within`; a group (nested chain) is printed inline.
//! - The calls of a step come in a fixed order: conditions (`where`/`or`), quantifier,
//!   `optional`, `consecutive`/`allowCombinations`, `greedy`, `until`, `within`.
//! - `timesOrMore(1)` prints as `oneOrMore()`, `times(n, n)` as `times(n)`, and `times(0, m)`
//!   as `times(1, m).optional()` (what the model holds, as in Flink).
//! - Expressions are printed with parentheses only where the operators' binding needs them,
//!   so a printed pattern is never nested deeper than the text it was parsed from.
//! - Durations use the largest unit that divides them: `90s` stays `90s`, `120s` becomes
//!   `2m`; a lateness of 0 and `noSkip()` are left out.
//! - A condition written as a Rust closure cannot be printed: it appears as
//!   `true /* rust closure */`, which parses back as `true`.

use std::fmt::Write as _;

use crate::expr::ast::{path_text, Expr, ExprKind, UnaryOp};
use crate::pattern::{
    format_duration, Condition, Contiguity, InnerContiguity, Pattern, PatternDecl, Repeat,
    SkipStrategy, Step, StepNode,
};
use crate::value::Value;

/// What a Rust closure condition prints as.
const NATIVE: &str = "true /* rust closure */";

/// Prints declarations in canonical form, separated by blank lines.
pub fn print_decls(decls: &[PatternDecl]) -> String {
    let mut out = String::new();
    for (i, d) in decls.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        print_decl(&mut out, d);
    }
    out
}

fn print_decl(out: &mut String, d: &PatternDecl) {
    let _ = writeln!(out, "pattern {}", d.name);
    if !d.key.is_empty() {
        let fields: Vec<String> = d.key.iter().map(|k| path_text(k)).collect();
        let _ = writeln!(out, "    key {}", fields.join(", "));
    }
    if let Some(t) = &d.time {
        let _ = writeln!(out, "    time {}", path_text(t));
    }
    if d.lateness_ms > 0 {
        let _ = writeln!(out, "    lateness {}", format_duration(d.lateness_ms));
    }
    out.push_str("= ");
    print_chain(out, &d.pattern, Some("\n  "));
    out.push_str(";\n");
}

/// Prints a chain; `step_sep` puts each step after the first on its own line (top level),
/// `None` keeps the chain on one line (groups).
fn print_chain(out: &mut String, p: &Pattern, step_sep: Option<&str>) {
    for (i, step) in p.steps.iter().enumerate() {
        if i == 0 {
            out.push_str("begin(");
            print_node(out, &step.node);
            match &p.skip {
                SkipStrategy::NoSkip => {}
                SkipStrategy::SkipToNext => out.push_str(", skipToNext()"),
                SkipStrategy::SkipPastLastEvent => out.push_str(", skipPastLastEvent()"),
                SkipStrategy::SkipToFirst(v) => {
                    let _ = write!(out, ", skipToFirst({})", quote(v));
                }
                SkipStrategy::SkipToLast(v) => {
                    let _ = write!(out, ", skipToLast({})", quote(v));
                }
            }
            out.push(')');
        } else {
            if let Some(sep) = step_sep {
                out.push_str(sep);
            }
            let call = match step.contiguity {
                Contiguity::Strict => "next",
                Contiguity::Relaxed => "followedBy",
                Contiguity::NonDeterministic => "followedByAny",
                Contiguity::NotNext => "notNext",
                Contiguity::NotFollowedBy => "notFollowedBy",
            };
            let _ = write!(out, ".{call}(");
            print_node(out, &step.node);
            out.push(')');
        }
        print_step_calls(out, step, step_sep);
    }
}

fn print_node(out: &mut String, node: &StepNode) {
    match node {
        StepNode::Variable(name) => out.push_str(&quote(name)),
        StepNode::Group(g) => print_chain(out, g, None),
    }
}

/// The calls on a step; at top level (`sep` given) windows go on their own lines.
fn print_step_calls(out: &mut String, step: &Step, sep: Option<&str>) {
    if let Some(c) = &step.condition {
        let mut calls = Vec::new();
        condition_calls(c, "where", &mut calls);
        for (call, text) in calls {
            let _ = write!(out, ".{call}({text})");
        }
    }
    let q = &step.quantifier;
    let window = q
        .window_ms
        .map(|ms| format!(", {}", format_duration(ms)))
        .unwrap_or_default();
    match q.repeat {
        Repeat::Once => {}
        Repeat::Looping { min: 1 } => {
            let _ = write!(out, ".oneOrMore({})", window.trim_start_matches(", "));
        }
        Repeat::Looping { min } => {
            let _ = write!(out, ".timesOrMore({min}{window})");
        }
        // An optional `times(1, m)` is `times(0, m)` (the same pattern, in Flink too), which
        // may follow a greedy step where an `optional()` call may not.
        Repeat::Times { from: 1, to } if q.optional => {
            let _ = write!(out, ".times(0, {to}{window})");
        }
        Repeat::Times { from, to } if from == to => {
            let _ = write!(out, ".times({from}{window})");
        }
        Repeat::Times { from, to } => {
            let _ = write!(out, ".times({from}, {to}{window})");
        }
    }
    let optional_by_times = q.optional && matches!(q.repeat, Repeat::Times { from: 1, .. });
    if q.optional && !optional_by_times {
        out.push_str(".optional()");
    }
    // `greedy()` before `allowCombinations()`: the other order is refused, as in Flink.
    let greedy_first = q.greedy && q.inner == InnerContiguity::AllowCombinations;
    if greedy_first {
        out.push_str(".greedy()");
    }
    match q.inner {
        InnerContiguity::Relaxed => {}
        InnerContiguity::Consecutive => out.push_str(".consecutive()"),
        InnerContiguity::AllowCombinations => out.push_str(".allowCombinations()"),
    }
    if q.greedy && !greedy_first {
        out.push_str(".greedy()");
    }
    if let Some(u) = &step.until {
        let _ = write!(out, ".until({})", top_condition(u));
    }
    let sep = sep.unwrap_or("");
    if let Some(ms) = step.within {
        let _ = write!(out, "{sep}.within({})", format_duration(ms));
    }
    if let Some(ms) = step.within_previous {
        let _ = write!(
            out,
            "{sep}.within({}, PREVIOUS_AND_CURRENT)",
            format_duration(ms)
        );
    }
}

/// Turns a condition into the `where`/`or` calls that build it again. The builder makes
/// left-deep trees (`where(a).where(b).or(c)` is `Or(And(a, b), c)`); a right operand that
/// is itself compound is printed as one parenthesised expression.
fn condition_calls(c: &Condition, call: &'static str, out: &mut Vec<(&'static str, String)>) {
    match c {
        Condition::And(a, b) if is_leaf(b) => {
            condition_calls(a, call, out);
            out.push(("where", top_condition(b)));
        }
        Condition::Or(a, b) if is_leaf(b) => {
            condition_calls(a, call, out);
            out.push(("or", top_condition(b)));
        }
        other => out.push((call, top_condition(other))),
    }
}

fn is_leaf(c: &Condition) -> bool {
    matches!(c, Condition::Expr(_) | Condition::Native(_))
}

/// A condition as the argument of a call: the top operator without parentheses.
fn top_condition(c: &Condition) -> String {
    match c {
        Condition::Expr(e) => expr_text(e),
        Condition::Native(_) => NATIVE.to_string(),
        Condition::And(a, b) => format!("{} and {}", nested_condition(a), nested_condition(b)),
        Condition::Or(a, b) => format!("{} or {}", nested_condition(a), nested_condition(b)),
    }
}

fn nested_condition(c: &Condition) -> String {
    match c {
        Condition::Expr(e) => expr_at(e, NOT),
        Condition::Native(_) => NATIVE.to_string(),
        Condition::And(a, b) => format!("({} and {})", nested_condition(a), nested_condition(b)),
        Condition::Or(a, b) => format!("({} or {})", nested_condition(a), nested_condition(b)),
    }
}

/// An expression in the language that parses back to the same tree, with parentheses only
/// where the operators' binding needs them (so the text is never nested deeper than the
/// text it was parsed from).
pub(crate) fn expr_text(e: &Expr) -> String {
    expr_at(e, 0)
}

// Binding levels as the Pratt parser in `parser.rs` has them, loosest first: `or` 1, `and` 2
// ([`BinaryOp::precedence`] gives the infix ones, which all associate to the left), then:
const NOT: u8 = 3;
const CMP: u8 = 4;
const NEG: u8 = 7;
const ATOM: u8 = 8;

/// `e` printed where an operand must bind at least as tightly as `min`.
fn expr_at(e: &Expr, min: u8) -> String {
    let mut out = String::new();
    write_expr(e, min, &mut out);
    out
}

fn write_expr(e: &Expr, min: u8, out: &mut String) {
    let level = match &e.kind {
        ExprKind::Binary(op, ..) => op.precedence(),
        ExprKind::In(..) => CMP,
        ExprKind::Unary(UnaryOp::Not, _) => NOT,
        ExprKind::Unary(UnaryOp::Neg, _) => NEG,
        // A negative number is written with a leading `-`.
        ExprKind::Literal(Value::Int(i)) if *i < 0 => NEG,
        ExprKind::Literal(Value::Float(f)) if f.is_sign_negative() => NEG,
        _ => ATOM,
    };
    let wrap = level < min;
    if wrap {
        out.push('(');
    }
    match &e.kind {
        ExprKind::Binary(op, a, b) => {
            write_expr(a, level, out);
            let _ = write!(out, " {} ", op.symbol());
            write_expr(b, level + 1, out);
        }
        ExprKind::In(x, list) => {
            write_expr(x, level, out);
            out.push_str(" in [");
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(item, 0, out);
            }
            out.push(']');
        }
        ExprKind::Unary(UnaryOp::Not, x) => {
            out.push_str("not ");
            write_expr(x, NOT, out);
        }
        ExprKind::Unary(UnaryOp::Neg, x) => {
            out.push('-');
            write_expr(x, NEG, out);
        }
        ExprKind::Call { name, args } => {
            let _ = write!(out, "{name}(");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(a, 0, out);
            }
            out.push(')');
        }
        ExprKind::Member { base, path } => {
            write_expr(base, ATOM, out);
            let _ = write!(out, ".{}", path_text(path));
        }
        ExprKind::Literal(_) | ExprKind::Path(_) => {
            let _ = write!(out, "{e}");
        }
    }
    if wrap {
        out.push(')');
    }
}

/// A variable name as a string literal.
fn quote(name: &str) -> String {
    Value::from(name).to_string()
}

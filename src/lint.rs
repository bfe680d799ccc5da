//! Warnings: patterns that load and run, but whose meaning may not be what was written.
//!
//! Validation ([`crate::validate`]) refuses what cannot run; these are given on top of it,
//! by `motif check` and when `motif run` loads its patterns, and never stop either.
//!
//! - A dotted path whose first segment is one edit away from a variable of the pattern
//!   (`strat.price` when `start` is a variable): by the language's rules it reads the nested
//!   field `price` of a field `strat` of the current event, which is most likely missing, so
//!   the condition silently never holds.
//! - A skip strategy given inside a group: Flink ignores it, and so does motif.
//! - A pattern whose every step is optional: Flink takes it, and a match still needs an
//!   event (`begin("a").optional()` matches as `begin("a")`).
//! - `within` inside a group, where Flink's compiler gives it a meaning of its own: on a
//!   group's last step it is ignored, on another step of a group it is the whole pattern's
//!   window; a `PREVIOUS_AND_CURRENT` window on a quantified step or a group is ignored.
//! - A `notFollowedBy` ending a group that ends the pattern, without a window: Flink drops it.
//! - A looping group whose every step is optional (later than the first step; there it is
//!   refused): it can repeat without taking an event, and Flink repeats it for ever on an
//!   event that reaches it with its conditions holding (it hangs, then runs out of heap).
//!   motif stops a repetition that took no event, which gives Flink's answer wherever Flink
//!   gives one.

use crate::error::Diagnostic;
use crate::expr::ast::{Expr, ExprKind};
use crate::pattern::{Condition, Pattern, PatternDecl, SkipStrategy, StepNode};

/// The warnings for one pattern declaration, in source order.
pub fn warnings(decl: &PatternDecl) -> Vec<Diagnostic> {
    let variables = decl.pattern.variables();
    let mut out = Vec::new();
    let p = &decl.pattern;
    let lone_loop = matches!(
        p.steps.as_slice(),
        [s] if matches!(s.node, StepNode::Variable(_)) && s.quantifier.is_looping()
    );
    if !p.steps.is_empty() && crate::validate::can_be_empty(p) && !lone_loop {
        out.push(
            Diagnostic::new(
                "every step of this pattern is optional: as in Flink, a match still takes at \
                 least one event (`begin(\"a\").optional()` matches as `begin(\"a\")`)",
                p.span,
            )
            .with_help("make one step non-optional to say which event a match needs"),
        );
    }
    chain(p, &variables, 0, &mut out);
    if p.steps.iter().all(|s| s.within.is_none()) {
        if let Some(last) = p.steps.last() {
            trailing_group_negation(last, &mut out);
        }
    }
    out.sort_by_key(|d| (d.span.start, d.span.end));
    out
}

fn chain(p: &Pattern, variables: &[&str], depth: usize, out: &mut Vec<Diagnostic>) {
    if depth > 0 && p.skip != SkipStrategy::NoSkip {
        let span = p.steps.first().map_or(p.span, |s| {
            s.call_spans
                .iter()
                .find(|(c, _)| crate::validate::SKIP_CALLS.contains(c))
                .map_or(s.span, |(_, at)| *at)
        });
        out.push(
            Diagnostic::new(
                "a skip strategy inside a group is ignored (as in Flink)",
                span,
            )
            .with_help("give the skip strategy on the outermost `begin(...)`"),
        );
    }
    for (i, step) in p.steps.iter().enumerate() {
        for c in [&step.condition, &step.until].into_iter().flatten() {
            condition(c, variables, out);
        }
        let within = step.call_span("within");
        if depth > 0 && step.within.is_some() {
            let (message, help) = if i + 1 == p.steps.len() {
                (
                    "`within(...)` on the last step of a group is ignored (as in Flink)",
                    "put the window on the outer pattern",
                )
            } else {
                (
                    "`within(...)` inside a group is the whole pattern's window (as in Flink)",
                    "put the window on the outer pattern to say so",
                )
            };
            out.push(Diagnostic::new(message, within).with_help(help));
        }
        if step.within_previous.is_some()
            && (step.quantifier.is_repeated() || matches!(step.node, StepNode::Group(_)))
        {
            out.push(
                Diagnostic::new(
                    "a PREVIOUS_AND_CURRENT window on a quantified step or a group is ignored \
                     (as in Flink)",
                    within,
                )
                .with_help("a quantifier takes a window of its own: `times(3, 10s)`, `oneOrMore(10s)`"),
            );
        }
        if let StepNode::Group(g) = &step.node {
            let head = depth == 0 && i == 0;
            if !head && step.quantifier.is_looping() && crate::validate::can_be_empty(g) {
                out.push(
                    Diagnostic::new(
                        "this looping group can repeat without taking an event (every step \
                         of it is optional): Flink repeats it for ever on an event that \
                         reaches it, and hangs",
                        step.span,
                    )
                    .with_help(
                        "make one step of the group non-optional; motif stops a repetition \
                         that takes no event",
                    ),
                );
            }
            chain(g, variables, depth + 1, out);
        }
    }
}

fn condition(c: &Condition, variables: &[&str], out: &mut Vec<Diagnostic>) {
    match c {
        Condition::Expr(e) => expr(e, variables, out),
        Condition::Native(_) => {}
        Condition::And(a, b) | Condition::Or(a, b) => {
            condition(a, variables, out);
            condition(b, variables, out);
        }
    }
}

fn expr(e: &Expr, variables: &[&str], out: &mut Vec<Diagnostic>) {
    match &e.kind {
        ExprKind::Literal(_) => {}
        ExprKind::Path(path) => {
            if let [first, rest @ ..] = path.as_slice() {
                if rest.is_empty() || variables.contains(&first.as_str()) {
                    return;
                }
                let near: Vec<&str> = variables
                    .iter()
                    .copied()
                    .filter(|v| one_edit_apart(first, v))
                    .collect();
                if let [v] = near.as_slice() {
                    let field = rest.join(".");
                    out.push(
                        Diagnostic::new(
                            format!(
                                "`{}` reads the field `{field}` nested in a field `{first}` of \
                                 the event, not variable `{v}`",
                                path.join(".")
                            ),
                            e.span,
                        )
                        .with_help(format!("did you mean `{v}.{field}`?")),
                    );
                }
            }
        }
        ExprKind::Call { args, .. } => {
            for a in args {
                expr(a, variables, out);
            }
        }
        ExprKind::Member { base, .. } => expr(base, variables, out),
        ExprKind::Unary(_, a) => expr(a, variables, out),
        ExprKind::Binary(_, a, b) => {
            expr(a, variables, out);
            expr(b, variables, out);
        }
        ExprKind::In(a, list) => {
            expr(a, variables, out);
            for x in list {
                expr(x, variables, out);
            }
        }
    }
}

/// A `notFollowedBy` ending the group (or groups) `step` ends the pattern with, with no
/// window on its way: Flink drops it (the match completes without waiting).
fn trailing_group_negation(step: &crate::pattern::Step, out: &mut Vec<Diagnostic>) {
    let StepNode::Group(g) = &step.node else {
        return;
    };
    if step.within_previous.is_some() || g.steps.iter().any(|s| s.within.is_some()) {
        return;
    }
    let Some(last) = g.steps.last() else { return };
    if last.contiguity == crate::pattern::Contiguity::NotFollowedBy
        && last.within_previous.is_none()
    {
        out.push(
            Diagnostic::new(
                "a notFollowedBy ending a group at the end of the pattern, without a window, \
                 is ignored (as in Flink)",
                last.span,
            )
            .with_help("add a `within(...)` to the pattern for the absence to be waited for"),
        );
    } else {
        trailing_group_negation(last, out);
    }
}

/// Whether `a` and `b` differ by exactly one insertion, deletion, substitution or swap of
/// two neighbouring characters (the optimal-string-alignment distance is 1).
fn one_edit_apart(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    match (ra.len(), rb.len()) {
        // One insertion or deletion.
        (x, y) if x != y => {
            let (long, short) = if x > y { (ra, rb) } else { (rb, ra) };
            long[1..] == *short
        }
        // One substitution, or two neighbours swapped.
        _ => {
            ra[1..] == rb[1..]
                || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(src: &str) -> Vec<String> {
        let decls = crate::syntax::load_str("t", src).expect("loads");
        warnings(&decls[0])
            .into_iter()
            .map(|d| format!("{} / {}", d.message, d.help.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn one_edit() {
        for (a, b) in [
            ("strat", "start"),
            ("stat", "start"),
            ("starts", "start"),
            ("stark", "start"),
        ] {
            assert!(one_edit_apart(a, b), "{a} {b}");
            assert!(one_edit_apart(b, a), "{b} {a}");
        }
        for (a, b) in [("start", "start"), ("sta", "start"), ("tsrat", "start"), ("x", "yz")] {
            assert!(!one_edit_apart(a, b), "{a} {b}");
        }
    }

    #[test]
    fn a_path_one_edit_from_a_variable_is_warned_with_a_did_you_mean() {
        let w = warned(
            r#"pattern p
= begin("start").where(price > 1).followedBy("end").where(price > strat.price and user.id == 1);"#,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("`strat.price` reads the field `price`"), "{w:?}");
        assert!(w[0].contains("did you mean `start.price`?"), "{w:?}");
        // A variable's own field, a plain field and a nested field far from any name: no
        // warning.
        assert!(warned(
            r#"pattern p
= begin("start").followedBy("end").where(price > start.price and user.id == 1 and prices > 2);"#
        )
        .is_empty());
    }

    #[test]
    fn a_pattern_of_optional_steps_is_warned_but_not_a_lone_optional_loop() {
        let w = warned("pattern p = begin(\"a\").optional().followedBy(\"b\").optional();");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("every step of this pattern is optional"), "{w:?}");
        assert!(warned("pattern p = begin(\"a\").oneOrMore().optional();").is_empty());
        assert!(warned("pattern p = begin(\"a\").optional().next(\"b\");").is_empty());
    }

    #[test]
    fn windows_inside_groups_and_a_dropped_negation_are_warned() {
        let w = warned(
            r#"pattern p
= begin("a").followedBy(begin("b").within(2ms).followedBy("c").within(5ms));"#,
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("is the whole pattern's window"), "{w:?}");
        assert!(w[1].contains("on the last step of a group is ignored"), "{w:?}");
        let w = warned(r#"pattern p = begin("a").followedBy(begin("b").notFollowedBy("c"));"#);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("notFollowedBy ending a group"), "{w:?}");
        assert!(warned(
            r#"pattern p = begin("a").followedBy(begin("b").notFollowedBy("c")).within(5s);"#
        )
        .is_empty());
        let w = warned(
            r#"pattern p = begin("a").followedBy("b").oneOrMore().within(5s, PREVIOUS_AND_CURRENT);"#,
        );
        assert!(w[0].contains("quantified step or a group is ignored"), "{w:?}");
    }

    #[test]
    fn a_skip_strategy_inside_a_group_is_warned() {
        let w = warned(
            r#"pattern p
= begin("a").followedByAny(begin("b", skipPastLastEvent()).where(name == "b"));"#,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("ignored (as in Flink)"), "{w:?}");
    }

    #[test]
    fn a_looping_group_that_can_take_no_event_is_warned() {
        let w = warned(r#"pattern p = begin("s").followedBy(begin("a").optional()).oneOrMore();"#);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("can repeat without taking an event"), "{w:?}");
        // One mandatory step: no warning; nor for a group that does not loop.
        assert!(warned(
            r#"pattern p = begin("s").followedBy(begin("a").optional().next("b")).oneOrMore();"#
        )
        .is_empty());
        assert!(warned(r#"pattern p = begin("s").followedBy(begin("a").optional()).times(2);"#)
            .is_empty());
    }
}

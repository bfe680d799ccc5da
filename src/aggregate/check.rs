//! Checks an `aggregate` declaration against the patterns it reads, collecting every
//! problem with where it was written.

use std::collections::HashSet;

use super::operator::lower_having;
use super::{AggFunc, AggregateDecl, GroupBy, OutputMode, TimeOf, Trigger, WindowSpec};
use crate::error::{did_you_mean, Diagnostic};
use crate::event::Schema;
use crate::expr::ast::Span;
use crate::pattern::PatternDecl;

/// Every problem of `agg`, given the patterns loaded with it (empty: none).
pub fn check(agg: &AggregateDecl, patterns: &[PatternDecl]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let at = agg.span;
    if patterns.iter().any(|p| p.name == agg.name) {
        out.push(
            Diagnostic::new(
                format!("`{}` names both a pattern and an aggregate", agg.name),
                agg.spans.name,
            )
            .with_help("sinks bind to outputs by name: give the aggregate a name of its own"),
        );
    }
    if agg.from.is_empty() {
        out.push(Diagnostic::new(
            "an aggregate reads at least one pattern (`from p`)",
            at,
        ));
    }
    let mut from = Vec::new();
    let mut seen = HashSet::new();
    for (i, name) in agg.from.iter().enumerate() {
        let span = agg.spans.from_name(i);
        if !seen.insert(name.as_str()) {
            out.push(Diagnostic::new(
                format!("pattern `{name}` is named twice in `from`"),
                span,
            ));
            continue;
        }
        match patterns.iter().find(|p| p.name == *name) {
            Some(p) => from.push(p),
            None => {
                let mut d = Diagnostic::new(format!("no pattern `{name}` is loaded"), span);
                if let Some(s) = did_you_mean(name, patterns.iter().map(|p| p.name.as_str())) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                out.push(d);
            }
        }
    }
    match agg.window {
        Some(WindowSpec::Tumbling { size: 0 }) | Some(WindowSpec::Session { gap: 0 }) => {
            out.push(Diagnostic::new(
                "a window cannot be empty",
                agg.spans.window,
            ));
        }
        Some(WindowSpec::Sliding { size, slide }) if size == 0 || slide == 0 => {
            out.push(Diagnostic::new(
                "a window cannot be empty",
                agg.spans.window,
            ));
        }
        Some(WindowSpec::Sliding { size, slide }) if slide > size => {
            out.push(
                Diagnostic::new(
                    "a sliding window's slide is longer than the window: some matches would be in no window",
                    agg.spans.window,
                )
                .with_help("write the window's length first: `sliding(10m, 1m)`"),
            );
        }
        _ => {}
    }
    if agg.mode == OutputMode::Append && agg.window.is_none() {
        out.push(
            Diagnostic::new(
                "`output append` needs a window: without one the table is never finished, so no row could ever be appended",
                agg.spans.mode,
            )
            .with_help("add `window tumbling(1m)` (or another window), or use `output update` / `output complete`"),
        );
    }
    match agg.trigger {
        Trigger::Records(0) | Trigger::Interval(0) => {
            out.push(Diagnostic::new("a trigger's interval cannot be 0", at));
        }
        _ => {}
    }
    // A `select` whose columns all had errors was reported already.
    if agg.select.is_empty() && agg.spans.select == Span::default() {
        out.push(
            Diagnostic::new("an aggregate selects at least one column", at)
                .with_help("e.g. `select count() as matches`"),
        );
    }
    let mut names = HashSet::new();
    for (name, span) in agg
        .group_by
        .iter()
        .map(|g| (&g.name, g.span))
        .chain(agg.select.iter().map(|s| (&s.name, s.span)))
    {
        if ["aggregate", "batch", "window_start", "window_end"].contains(&name.as_str()) {
            out.push(
                Diagnostic::new(format!("`{name}` is a column every row has already"), span)
                    .with_help(format!("name it otherwise with `as`, e.g. `as my_{name}`")),
            );
        } else if !names.insert(name.as_str()) {
            out.push(
                Diagnostic::new(format!("two columns are named `{name}`"), span)
                    .with_help("name one of them otherwise with `as`"),
            );
        }
    }
    for s in &agg.select {
        match (s.func, &s.arg) {
            (AggFunc::Count, Some(_)) => out.push(
                Diagnostic::new("`count()` takes no argument: it counts matches", s.span)
                    .with_help("to count distinct values use `count_distinct(v.field)`"),
            ),
            (f, None) if f != AggFunc::Count => out.push(Diagnostic::new(
                format!("`{f}` needs a field, e.g. `{f}(v.price)`"),
                s.span,
            )),
            _ => {}
        }
    }
    // Variables: every field reference names a variable of every pattern it reads.
    let refs = agg
        .group_by
        .iter()
        .filter_map(|g| match &g.by {
            GroupBy::Field(f) => Some((f, g.span)),
            _ => None,
        })
        .chain(
            agg.select
                .iter()
                .filter_map(|s| s.arg.as_ref().map(|f| (f, s.span))),
        );
    for (f, span) in refs {
        for p in &from {
            let vars = p.pattern.variables();
            if !vars.contains(&f.var.as_str()) {
                let mut d = Diagnostic::new(
                    format!("pattern `{}` has no variable `{}`", p.name, f.var),
                    span,
                );
                if let Some(s) = did_you_mean(&f.var, vars.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                } else {
                    d = d.with_help(format!("its variables: {}", vars.join(", ")));
                }
                out.push(d);
            }
        }
    }
    if agg.group_by.iter().any(|g| g.by == GroupBy::Key) {
        let keyed: Vec<&PatternDecl> = from.iter().copied().filter(|p| !p.key.is_empty()).collect();
        if keyed.len() < from.len() {
            if let Some(p) = from.iter().find(|p| p.key.is_empty()) {
                out.push(Diagnostic::new(
                    format!("`group by key`, but pattern `{}` has no key", p.name),
                    at,
                ));
            }
        }
    }
    if agg.on == TimeOf::Start {
        for p in &from {
            let mut schema = Schema::new();
            if let Ok(nfa) = crate::nfa::compile(p, &mut schema) {
                if nfa.max_span().is_none() {
                    out.push(
                        Diagnostic::new(
                            format!(
                                "`on start`, but pattern `{}` has no `within`: its matches could end any time after they start, so no window could ever be finished",
                                p.name
                            ),
                            agg.spans.window,
                        )
                        .with_help("give the pattern a `.within(...)`, or place matches by their end (the default)"),
                    );
                }
            }
        }
    }
    let mut lowered = agg.clone();
    if let Err((message, span)) = lower_having(&mut lowered) {
        out.push(Diagnostic::new(
            message,
            if span == Default::default() {
                agg.spans.having
            } else {
                span
            },
        ));
    }
    out
}

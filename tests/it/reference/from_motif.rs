//! Reads a motif pattern into the reference's [`PatternSpec`] when it lies in the
//! reference's subset, so that the reference can be checked against the conformance cases'
//! answers (Flink's own). Conditions become [`Cond::Ids`]: each is evaluated once per event
//! of the case here, which is possible for conditions on the event alone — a comparison of
//! a field with a literal, `in`, `contains`, `and`/`or`/`not`. [`spec_of`] reads patterns
//! without groups, [`tree_of`] patterns with groups (module `groups`). A condition on other
//! variables (`start.price`, `count(v)`), a quantifier window, a key or anything else
//! outside the subset gives `None`.

use std::collections::BTreeSet;

use super::groups::{Element, Group, Link, Node, TreeSpec};
use motif::expr::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use motif::pattern::{
    Condition, Contiguity as MContiguity, InnerContiguity, PatternDecl, Repeat, SkipStrategy,
    StepNode,
};
use motif::Value;
use serde_json::Value as Json;

use super::{
    AfterMatch, Cond, Contiguity, Inner, NegKind, Negation, PatternSpec, Quantifier, Step,
};

/// A value an expression gives on one event.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
}

/// `decl` as a reference pattern over `events` (each a JSON object with an `id`), or
/// `None` outside the subset.
pub fn spec_of(decl: &PatternDecl, events: &[Json]) -> Option<PatternSpec> {
    if !decl.key.is_empty() {
        return None;
    }
    let pattern = &decl.pattern;
    let vars: BTreeSet<&str> = pattern.steps.iter().filter_map(|s| s.name()).collect();
    let mut steps = Vec::new();
    let mut negation = None;
    let mut within_ms = pattern_window(pattern)?;
    let mut within_previous = None;
    let mut gap_windows = Vec::new();
    for (i, s) in pattern.steps.iter().enumerate() {
        let StepNode::Variable(name) = &s.node else {
            return None;
        };
        if s.quantifier.window_ms.is_some() {
            return None;
        }
        if s.contiguity.is_negation() {
            let cond = match &s.condition {
                None => Cond::Any,
                Some(c) => ids_where(c, events, &vars)?,
            };
            if negation.is_some() || s.until.is_some() || s.quantifier.is_repeated() {
                return None;
            }
            let kind = if s.contiguity == MContiguity::NotNext {
                NegKind::NotNext
            } else {
                NegKind::NotFollowedBy
            };
            let trailing = i + 1 == pattern.steps.len();
            if let Some(w) = s.within_previous {
                if !trailing {
                    return None;
                }
                within_previous = Some(i64::try_from(w).ok()?);
            }
            // A trailing `notFollowedBy` is one the reference models (rule T2) only with a
            // window of its own: Flink's compiler reads the window of the last step when it
            // builds the Pending state, and without one it drops the negation.
            if trailing && s.within.is_none() && s.within_previous.is_none() {
                return None;
            }
            negation = Some(Negation {
                before: steps.len(),
                kind,
                cond,
            });
            continue;
        }
        if let Some(w) = s.within_previous {
            // Rule R6 (validate checks the step takes one event).
            gap_windows.push((steps.len(), i64::try_from(w).ok()?));
        }
        steps.push(step_of(name, s, events, &vars)?);
    }
    if let Some(w) = within_previous {
        if within_ms.is_some() {
            return None;
        }
        within_ms = Some(w);
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let skip = skip_of(&pattern.skip, &names)?;
    let spec = PatternSpec {
        steps,
        within_ms,
        within_previous: within_previous.is_some(),
        gap_windows,
        negation,
        skip,
    };
    (spec.validate().is_ok() && !spec.can_match_empty()).then_some(spec)
}

/// `decl` as a reference pattern with groups (module `groups`), or `None` outside that
/// subset: no negation, windows only on top-level steps, no quantifier window.
pub fn tree_of(decl: &PatternDecl, events: &[Json]) -> Option<TreeSpec> {
    if !decl.key.is_empty() {
        return None;
    }
    let pattern = &decl.pattern;
    let mut vars = BTreeSet::new();
    collect_vars(pattern, &mut vars);
    let mut tree = TreeSpec {
        nodes: nodes_of(pattern, events, &vars)?,
        within_ms: pattern_window(pattern)?,
        skip: AfterMatch::NoSkip,
    };
    tree.skip = skip_of(&pattern.skip, &tree.variables())?;
    tree.validate().is_ok().then_some(tree)
}

fn collect_vars<'a>(p: &'a motif::pattern::Pattern, out: &mut BTreeSet<&'a str>) {
    for s in &p.steps {
        match &s.node {
            StepNode::Variable(v) => {
                out.insert(v);
            }
            StepNode::Group(g) => collect_vars(g, out),
        }
    }
}

fn nodes_of(
    p: &motif::pattern::Pattern,
    events: &[Json],
    vars: &BTreeSet<&str>,
) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    for (i, s) in p.steps.iter().enumerate() {
        if s.contiguity.is_negation()
            || s.within_previous.is_some()
            || s.quantifier.window_ms.is_some()
        {
            return None;
        }
        let link = if i == 0 {
            Link::Begin
        } else {
            match contiguity_of(s.contiguity) {
                Contiguity::Next => Link::Next,
                Contiguity::FollowedBy => Link::FollowedBy,
                Contiguity::FollowedByAny => Link::FollowedByAny,
            }
        };
        let q = &s.quantifier;
        let element = match &s.node {
            // The node's link, not the step's contiguity, is read (module `groups`).
            StepNode::Variable(name) => Element::Leaf(step_of(name, s, events, vars)?),
            StepNode::Group(g) => {
                if s.condition.is_some()
                    || s.until.is_some()
                    || s.within.is_some()
                    || q.optional
                    || q.greedy
                {
                    return None;
                }
                if g.steps.iter().any(|x| x.within.is_some()) {
                    return None;
                }
                let (quantifier, inner) = quantifier_of(q);
                Element::Group(Group {
                    nodes: nodes_of(g, events, vars)?,
                    quantifier,
                    inner,
                })
            }
        };
        nodes.push(Node { link, element });
    }
    Some(nodes)
}

/// The smallest first-and-last window of the pattern's top-level steps (Flink's rule).
fn pattern_window(p: &motif::pattern::Pattern) -> Option<Option<i64>> {
    let mut within_ms: Option<i64> = None;
    for s in &p.steps {
        if let Some(w) = s.within {
            let w = i64::try_from(w).ok()?;
            within_ms = Some(within_ms.map_or(w, |v| v.min(w)));
        }
    }
    Some(within_ms)
}

/// The skip strategy, naming a variable by its index in `names`.
fn skip_of(skip: &SkipStrategy, names: &[&str]) -> Option<AfterMatch> {
    let index = |v: &str| names.iter().position(|n| *n == v);
    Some(match skip {
        SkipStrategy::NoSkip => AfterMatch::NoSkip,
        SkipStrategy::SkipToNext => AfterMatch::ToNext,
        SkipStrategy::SkipPastLastEvent => AfterMatch::PastLastEvent,
        SkipStrategy::SkipToFirst(v) => AfterMatch::ToFirst(index(v)?),
        SkipStrategy::SkipToLast(v) => AfterMatch::ToLast(index(v)?),
    })
}

fn contiguity_of(c: MContiguity) -> Contiguity {
    match c {
        MContiguity::Strict => Contiguity::Next,
        MContiguity::Relaxed => Contiguity::FollowedBy,
        _ => Contiguity::FollowedByAny,
    }
}

fn quantifier_of(q: &motif::pattern::Quantifier) -> (Quantifier, Inner) {
    let quantifier = match q.repeat {
        Repeat::Once => Quantifier::One,
        Repeat::Times { from, to } => Quantifier::Times { from, to },
        Repeat::Looping { min: 1 } => Quantifier::OneOrMore,
        Repeat::Looping { min } => Quantifier::TimesOrMore(min),
    };
    let inner = match q.inner {
        InnerContiguity::Relaxed => Inner::Relaxed,
        InnerContiguity::Consecutive => Inner::Consecutive,
        InnerContiguity::AllowCombinations => Inner::Combinations,
    };
    (quantifier, inner)
}

/// Step `s` of the pattern, variable `name`, as a reference step.
fn step_of(
    name: &str,
    s: &motif::pattern::Step,
    events: &[Json],
    vars: &BTreeSet<&str>,
) -> Option<Step> {
    let (quantifier, inner) = quantifier_of(&s.quantifier);
    let cond_of = |c: &Option<Condition>| match c {
        None => Some(None),
        Some(c) => ids_where(c, events, vars).map(Some),
    };
    Some(Step {
        name: name.to_string(),
        contiguity: contiguity_of(s.contiguity),
        cond: cond_of(&s.condition)?.unwrap_or(Cond::Any),
        quantifier,
        optional: s.quantifier.optional,
        greedy: s.quantifier.greedy,
        inner,
        until: cond_of(&s.until)?,
    })
}

/// The events satisfying `c`, as [`Cond::Ids`], or `None` when `c` is outside the subset.
fn ids_where(c: &Condition, events: &[Json], vars: &BTreeSet<&str>) -> Option<Cond> {
    let mut ids = Vec::new();
    for ev in events {
        if holds(c, ev, vars)? {
            ids.push(ev.get("id")?.as_str()?.to_string());
        }
    }
    Some(Cond::Ids(ids))
}

fn holds(c: &Condition, ev: &Json, vars: &BTreeSet<&str>) -> Option<bool> {
    match c {
        Condition::Expr(e) => Some(eval(e, ev, vars)? == Val::Bool(true)),
        Condition::Native(_) => None,
        Condition::And(a, b) => Some(holds(a, ev, vars)? && holds(b, ev, vars)?),
        Condition::Or(a, b) => Some(holds(a, ev, vars)? || holds(b, ev, vars)?),
    }
}

/// The value of `e` on `ev`, for the forms the subset knows; `None` (the case is left out)
/// for anything else, comparisons involving `null` (a missing field) or values of two
/// types included, whose rules are not restated here. `contains` on a non-string is false.
fn eval(e: &Expr, ev: &Json, vars: &BTreeSet<&str>) -> Option<Val> {
    Some(match &e.kind {
        ExprKind::Literal(v) => match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Int(i) => Val::Num(*i as f64),
            Value::Float(f) => Val::Num(*f),
            Value::Str(s) => Val::Str(s.to_string()),
        },
        ExprKind::Path(path) => {
            let path: &[String] = match path.first().map(String::as_str) {
                Some("this") => &path[1..],
                Some(first) if vars.contains(first) => return None,
                _ => path,
            };
            let mut v = ev;
            for seg in path {
                match v.get(seg) {
                    Some(x) => v = x,
                    None => return Some(Val::Null),
                }
            }
            match v {
                Json::Null => Val::Null,
                Json::Bool(b) => Val::Bool(*b),
                Json::Number(n) => Val::Num(n.as_f64()?),
                Json::String(s) => Val::Str(s.clone()),
                _ => return None,
            }
        }
        ExprKind::Call { name, args } if name == "contains" && args.len() == 2 => {
            match (eval(&args[0], ev, vars)?, eval(&args[1], ev, vars)?) {
                (Val::Str(a), Val::Str(b)) => Val::Bool(a.contains(&b)),
                _ => Val::Bool(false),
            }
        }
        ExprKind::Unary(UnaryOp::Not, x) => match eval(x, ev, vars)? {
            Val::Bool(b) => Val::Bool(!b),
            _ => return None,
        },
        ExprKind::In(x, list) => {
            let x = eval(x, ev, vars)?;
            let mut found = false;
            for item in list {
                found |= eval(item, ev, vars)? == x;
            }
            Val::Bool(found)
        }
        ExprKind::Binary(op, a, b) => {
            let (a, b) = (eval(a, ev, vars)?, eval(b, ev, vars)?);
            let cmp = |ord: fn(std::cmp::Ordering) -> bool| -> Option<Val> {
                Some(Val::Bool(match (&a, &b) {
                    (Val::Num(x), Val::Num(y)) => x.partial_cmp(y).is_some_and(ord),
                    (Val::Str(x), Val::Str(y)) => ord(x.cmp(y)),
                    _ => return None,
                }))
            };
            match op {
                BinaryOp::And | BinaryOp::Or => match (&a, &b) {
                    (Val::Bool(x), Val::Bool(y)) => Val::Bool(if *op == BinaryOp::And {
                        *x && *y
                    } else {
                        *x || *y
                    }),
                    _ => return None,
                },
                // Only values of one type, null excluded: the language's rules for the
                // rest are not restated here.
                BinaryOp::Eq | BinaryOp::Ne => match (&a, &b) {
                    (Val::Num(_), Val::Num(_))
                    | (Val::Str(_), Val::Str(_))
                    | (Val::Bool(_), Val::Bool(_)) => Val::Bool((a == b) == (*op == BinaryOp::Eq)),
                    _ => return None,
                },
                BinaryOp::Lt => cmp(|o| o.is_lt())?,
                BinaryOp::Le => cmp(|o| o.is_le())?,
                BinaryOp::Gt => cmp(|o| o.is_gt())?,
                BinaryOp::Ge => cmp(|o| o.is_ge())?,
                _ => return None,
            }
        }
        _ => return None,
    })
}

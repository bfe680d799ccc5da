//! Lowering of `aggregate` declarations (`agg_decl` in the grammar) into
//! [`AggregateDecl`]s. The columns are expressions in the grammar; here each must be what
//! its clause allows (a group column: `key`, `pattern` or a field of a variable; an
//! aggregate column: an aggregate call), and each clause is given once.

use pest::iterators::Pair;

use super::{Lowerer, Rule};
use crate::aggregate::{
    default_group_name, default_select_name, field_ref, AggFunc, AggregateDecl, ClauseSpans,
    FieldRef, GroupBy, GroupColumn, OutputMode, SelectColumn, TimeOf, Trigger, WindowSpec,
};
use crate::error::Diagnostic;
use crate::expr::ast::{Expr, ExprKind, Span};

/// An expression as a field of a variable: `v.f`, `first(v).f`, `last(v).f`.
fn as_field(e: &Expr) -> Option<FieldRef> {
    match &e.kind {
        ExprKind::Path(p) if p.len() >= 2 => field_ref(&p.join(".")),
        ExprKind::Member { base, path } => match &base.kind {
            ExprKind::Call { name, args } if name == "first" || name == "last" => {
                match args.as_slice() {
                    [Expr {
                        kind: ExprKind::Path(v),
                        ..
                    }] if v.len() == 1 => {
                        field_ref(&format!("{name}({}).{}", v[0], path.join(".")))
                    }
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    }
}

impl Lowerer<'_> {
    /// `agg_decl = { kw_aggregate ~ ident ~ agg_from ~ agg_clause* ~ semi }`
    pub(super) fn parse_agg_decl(&mut self, pair: Pair<'_, Rule>) -> AggregateDecl {
        let mut decl = AggregateDecl::new("", &[]);
        let mut spans = ClauseSpans::default();
        let mut window: Option<((WindowSpec, TimeOf), Span)> = None;
        let mut group: Option<(Vec<GroupColumn>, Span)> = None;
        let mut select: Option<(Vec<SelectColumn>, Span)> = None;
        let mut having: Option<(Expr, Span)> = None;
        let mut mode: Option<(OutputMode, Span)> = None;
        let mut trigger: Option<(Trigger, Span)> = None;
        for p in pair.into_inner() {
            let span = self.span(&p);
            match p.as_rule() {
                Rule::ident => {
                    decl.name = p.as_str().to_string();
                    spans.name = span;
                    decl.span = span;
                }
                Rule::agg_from => {
                    for n in p.into_inner().filter(|n| n.as_rule() == Rule::ident) {
                        spans.from.push(self.span(&n));
                        decl.from.push(n.as_str().to_string());
                    }
                }
                Rule::agg_window => {
                    spans.window = span;
                    let w = self.parse_agg_window(p);
                    self.set_once(&mut window, w, span, "window");
                }
                Rule::agg_group => {
                    let cols: Vec<GroupColumn> = self
                        .parse_agg_items(p)
                        .into_iter()
                        .filter_map(|(e, name, span)| self.group_column(e, name, span))
                        .collect();
                    self.set_once(&mut group, cols, span, "group by");
                }
                Rule::agg_select => {
                    spans.select = span;
                    let cols: Vec<SelectColumn> = self
                        .parse_agg_items(p)
                        .into_iter()
                        .filter_map(|(e, name, span)| self.select_column(e, name, span))
                        .collect();
                    self.set_once(&mut select, cols, span, "select");
                }
                Rule::agg_having => {
                    spans.having = span;
                    if let Some(e) = p.into_inner().find(|x| x.as_rule() == Rule::expr) {
                        match self.parse_expr(e) {
                            Ok(n) => self.set_once(&mut having, n.expr, span, "having"),
                            Err(d) => self.error(d),
                        }
                    }
                }
                Rule::agg_output => {
                    spans.mode = span;
                    let m = match p.into_inner().last().map(|x| x.as_rule()) {
                        Some(Rule::kw_append) => OutputMode::Append,
                        Some(Rule::kw_complete) => OutputMode::Complete,
                        _ => OutputMode::Update,
                    };
                    self.set_once(&mut mode, m, span, "output");
                }
                Rule::agg_trigger => {
                    let t = self.parse_agg_trigger(p);
                    self.set_once(&mut trigger, t, span, "trigger");
                }
                _ => {}
            }
        }
        if let Some(((w, on), _)) = window {
            decl.window = Some(w);
            decl.on = on;
        }
        decl.group_by = group.map(|(g, _)| g).unwrap_or_default();
        decl.select = select.map(|(s, _)| s).unwrap_or_default();
        decl.having = having.map(|(h, _)| h);
        if let Some((m, _)) = mode {
            decl.mode = m;
        }
        if let Some((t, _)) = trigger {
            decl.trigger = t;
        }
        decl.spans = spans;
        decl
    }

    /// `agg_window = { kw_window ~ (w_tumbling | w_sliding | w_session) ~ agg_on? }`
    fn parse_agg_window(&mut self, pair: Pair<'_, Rule>) -> (WindowSpec, TimeOf) {
        let mut spec = WindowSpec::Tumbling { size: 0 };
        let mut on = TimeOf::End;
        for p in pair.into_inner() {
            let rule = p.as_rule();
            let durations: Vec<u64> = match rule {
                Rule::w_tumbling | Rule::w_sliding | Rule::w_session => p
                    .into_inner()
                    .filter(|d| d.as_rule() == Rule::duration)
                    .map(|d| self.parse_duration(d))
                    .collect(),
                Rule::agg_on => {
                    if p.into_inner().any(|x| x.as_rule() == Rule::kw_start) {
                        on = TimeOf::Start;
                    }
                    continue;
                }
                _ => continue,
            };
            let d = |i: usize| durations.get(i).copied().unwrap_or(0);
            spec = match rule {
                Rule::w_tumbling => WindowSpec::Tumbling { size: d(0) },
                Rule::w_sliding => WindowSpec::Sliding {
                    size: d(0),
                    slide: d(1),
                },
                _ => WindowSpec::Session { gap: d(0) },
            };
        }
        (spec, on)
    }

    /// `agg_trigger = { kw_trigger ~ (trigger_records | trigger_interval | trigger_watermark) }`
    fn parse_agg_trigger(&mut self, pair: Pair<'_, Rule>) -> Trigger {
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::trigger_records => {
                    let Some(c) = p.into_inner().find(|x| x.as_rule() == Rule::count) else {
                        return Trigger::Records(0);
                    };
                    let n = match c.as_str().parse::<u64>() {
                        Ok(n) => n,
                        Err(_) => {
                            let span = self.span(&c);
                            self.error(Diagnostic::new("this number is too large", span));
                            1
                        }
                    };
                    return Trigger::Records(n);
                }
                Rule::trigger_interval => {
                    let ms = p
                        .into_inner()
                        .find(|x| x.as_rule() == Rule::duration)
                        .map_or(0, |d| self.parse_duration(d));
                    return Trigger::Interval(ms);
                }
                Rule::trigger_watermark => return Trigger::Watermark,
                _ => {}
            }
        }
        Trigger::default()
    }

    /// The items of `group by` or `select`: each expression, its `as` name, and its span.
    fn parse_agg_items(&mut self, pair: Pair<'_, Rule>) -> Vec<(Expr, Option<String>, Span)> {
        let mut out = Vec::new();
        for item in pair.into_inner().filter(|p| p.as_rule() == Rule::agg_item) {
            let span = self.span(&item);
            let mut expr = None;
            let mut name = None;
            for p in item.into_inner() {
                match p.as_rule() {
                    Rule::expr => match self.parse_expr(p) {
                        Ok(n) => expr = Some(n.expr),
                        Err(d) => self.error(d),
                    },
                    Rule::ident => name = Some(p.as_str().to_string()),
                    _ => {}
                }
            }
            if let Some(e) = expr {
                out.push((e, name, span));
            }
        }
        out
    }

    fn group_column(&mut self, e: Expr, name: Option<String>, span: Span) -> Option<GroupColumn> {
        let by = match &e.kind {
            ExprKind::Path(p) if p.len() == 1 && p[0] == "key" => GroupBy::Key,
            ExprKind::Path(p) if p.len() == 1 && p[0] == "pattern" => GroupBy::Pattern,
            _ => match as_field(&e) {
                Some(f) => GroupBy::Field(f),
                None => {
                    self.error(
                        Diagnostic::new(format!("`{}` cannot be a group column", show(&e)), e.span)
                            .with_help(
                                "group by `key`, `pattern`, or a field of a variable: `v.field`, `first(v).field`",
                            ),
                    );
                    return None;
                }
            },
        };
        Some(GroupColumn {
            name: name.unwrap_or_else(|| default_group_name(&by)),
            by,
            span,
        })
    }

    fn select_column(&mut self, e: Expr, name: Option<String>, span: Span) -> Option<SelectColumn> {
        let hint = format!(
            "a column of `select` is an aggregate call: {} (e.g. `max(v.price) as peak`)",
            AggFunc::NAMES
        );
        let ExprKind::Call { name: fname, args } = &e.kind else {
            self.error(
                Diagnostic::new(format!("`{}` is not an aggregate call", show(&e)), e.span)
                    .with_help(hint),
            );
            return None;
        };
        let Some(func) = AggFunc::from_name(fname) else {
            self.error(
                Diagnostic::new(format!("`{fname}` is not an aggregate function"), e.span)
                    .with_help(hint),
            );
            return None;
        };
        let arg = match args.as_slice() {
            [] => None,
            [a] => match as_field(a) {
                Some(f) => Some(f),
                None => {
                    self.error(
                        Diagnostic::new(
                            format!("`{}` is not a field of a variable", show(a)),
                            a.span,
                        )
                        .with_help("an aggregate's argument is `v.field` or `first(v).field`"),
                    );
                    return None;
                }
            },
            _ => {
                self.error(
                    Diagnostic::new(format!("`{fname}` takes one argument"), e.span)
                        .with_help(hint),
                );
                return None;
            }
        };
        Some(SelectColumn {
            name: name.unwrap_or_else(|| default_select_name(func, arg.as_ref())),
            func,
            arg,
            span,
        })
    }
}

/// An expression as written, without the printer's parentheses around a single term.
fn show(e: &Expr) -> String {
    let s = e.to_string();
    match s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        Some(inner) if !inner.contains('(') => inner.to_string(),
        _ => s,
    }
}

//! Name resolution: turns an [`Expr`] as written into a [`Resolved`] tree where every name
//! is known to be a field of the current event, a field of a variable's last event, or an
//! aggregate over a variable's events; checks functions and their arities.

use crate::error::{did_you_mean, Diagnostic};
use crate::expr::ast::{BinaryOp, Expr, ExprKind, Span, UnaryOp};
use crate::pattern::Condition;
use crate::value::Value;

/// Aggregates over the events a variable has matched so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFunc {
    /// `count(v)`: number of events.
    Count,
    /// `sum(v.f)`: 0 over no events.
    Sum,
    /// `avg(v.f)`: null over no events.
    Avg,
    /// `min(v.f)`
    Min,
    /// `max(v.f)`
    Max,
    /// `first(v).f`
    First,
    /// `last(v).f`, also what `v.f` means.
    Last,
}

impl AggFunc {
    /// The function's name in the language.
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::First => "first",
            AggFunc::Last => "last",
        }
    }
}

/// Scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `abs(x)`
    Abs,
    /// `lower(s)`
    Lower,
    /// `upper(s)`
    Upper,
    /// `len(s)`: characters of a string.
    Len,
    /// `contains(s, sub)`
    Contains,
    /// `starts_with(s, prefix)`
    StartsWith,
    /// `ends_with(s, suffix)`
    EndsWith,
    /// `matches(s, "regex")`
    Matches,
}

const SCALAR_FUNCS: &[(&str, Func, usize)] = &[
    ("abs", Func::Abs, 1),
    ("lower", Func::Lower, 1),
    ("upper", Func::Upper, 1),
    ("len", Func::Len, 1),
    ("contains", Func::Contains, 2),
    ("starts_with", Func::StartsWith, 2),
    ("ends_with", Func::EndsWith, 2),
    ("matches", Func::Matches, 2),
];

const AGG_FUNCS: &[(&str, AggFunc)] = &[
    ("count", AggFunc::Count),
    ("sum", AggFunc::Sum),
    ("avg", AggFunc::Avg),
    ("min", AggFunc::Min),
    ("max", AggFunc::Max),
    ("first", AggFunc::First),
    ("last", AggFunc::Last),
];

/// All function names the language knows, for did-you-mean.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    SCALAR_FUNCS
        .iter()
        .map(|(n, _, _)| *n)
        .chain(AGG_FUNCS.iter().map(|(n, _)| *n))
}

/// A resolved expression.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A constant.
    Literal(Value),
    /// A field of the current event.
    Field(Vec<String>),
    /// An aggregate over a variable's events before the current one; `path` is `None` only
    /// for `count`.
    Agg {
        /// Which aggregate.
        func: AggFunc,
        /// The variable's index in pattern order.
        var: usize,
        /// The field aggregated.
        path: Option<Vec<String>>,
    },
    /// `not`, unary `-`.
    Unary(UnaryOp, Box<Resolved>),
    /// Binary operators.
    Binary(BinaryOp, Box<Resolved>, Box<Resolved>),
    /// `x in [..]`.
    In(Box<Resolved>, Vec<Resolved>),
    /// A scalar function call.
    Call(Func, Vec<Resolved>),
    /// `matches(s, "regex")` with the regex compiled once.
    Matches(Box<Resolved>, regex::Regex),
}

/// Resolves names in `expr` given the pattern's variables (in pattern order).
pub fn resolve(expr: &Expr, variables: &[&str]) -> Result<Resolved, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let r = Resolver {
        variables,
        errors: &mut errors,
    }
    .resolve(expr);
    if errors.is_empty() {
        Ok(r)
    } else {
        Err(errors)
    }
}

/// Checks every expression of a condition; returns all problems found.
pub fn check_condition(
    cond: &Condition,
    variables: &[&str],
    _current: Option<&str>,
) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    cond.for_each_expr(&mut |e| {
        if let Err(mut es) = resolve(e, variables) {
            errors.append(&mut es);
        }
    });
    errors
}

struct Resolver<'a> {
    variables: &'a [&'a str],
    errors: &'a mut Vec<Diagnostic>,
}

impl Resolver<'_> {
    fn var_index(&self, name: &str) -> Option<usize> {
        self.variables.iter().position(|v| *v == name)
    }

    fn error(&mut self, msg: String, span: Span) -> Resolved {
        self.errors.push(Diagnostic::new(msg, span));
        Resolved::Literal(Value::Null)
    }

    fn unknown_variable(&mut self, name: &str, span: Span) -> Resolved {
        let mut d = Diagnostic::new(format!("unknown variable `{name}`"), span);
        if let Some(s) = did_you_mean(name, self.variables.iter().copied()) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else if !self.variables.is_empty() {
            d = d.with_help(format!("the pattern's variables are {}", self.list_vars()));
        }
        self.errors.push(d);
        Resolved::Literal(Value::Null)
    }

    fn list_vars(&self) -> String {
        self.variables
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn resolve(&mut self, e: &Expr) -> Resolved {
        match &e.kind {
            ExprKind::Literal(v) => Resolved::Literal(v.clone()),
            ExprKind::Path(p) => self.path(p, e.span),
            ExprKind::Unary(op, x) => Resolved::Unary(*op, Box::new(self.resolve(x))),
            ExprKind::Binary(op, a, b) => {
                Resolved::Binary(*op, Box::new(self.resolve(a)), Box::new(self.resolve(b)))
            }
            ExprKind::In(x, list) => Resolved::In(
                Box::new(self.resolve(x)),
                list.iter().map(|i| self.resolve(i)).collect(),
            ),
            ExprKind::Call { name, args } => self.call(name, args, e.span),
            ExprKind::Member { base, path } => self.member(base, path, e.span),
        }
    }

    fn path(&mut self, p: &[String], span: Span) -> Resolved {
        let Some(first) = p.first() else {
            return self.error("empty field path".into(), span);
        };
        if first == "this" {
            if p.len() == 1 {
                return self.error(
                    "`this` is the whole event; name a field, e.g. `this.price`".into(),
                    span,
                );
            }
            return Resolved::Field(p[1..].to_vec());
        }
        if let Some(var) = self.var_index(first) {
            if p.len() == 1 {
                return self.error(
                    format!(
                        "`{first}` is a pattern variable, not a value; use a field of its last event (`{first}.price`), `count({first})`, or `this.{first}` for a field of the current event"
                    ),
                    span,
                );
            }
            return Resolved::Agg {
                func: AggFunc::Last,
                var,
                path: Some(p[1..].to_vec()),
            };
        }
        // A nested field whose head looks like a misspelt variable (`strat.price` with a
        // variable `start`) is most likely a typo; short heads are too ambiguous to judge.
        if p.len() > 1 && first.chars().count() >= 4 {
            if let Some(s) = did_you_mean(first, self.variables.iter().copied()) {
                self.errors.push(
                    Diagnostic::new(format!("unknown variable `{first}`"), span).with_help(
                        format!(
                            "did you mean `{s}`? (write `this.{}` for a nested field of the current event)",
                            p.join(".")
                        ),
                    ),
                );
                return Resolved::Literal(Value::Null);
            }
        }
        Resolved::Field(p.to_vec())
    }

    /// The variable an aggregate is over, from its argument `v` or `v.f`.
    fn agg_target(
        &mut self,
        func: AggFunc,
        args: &[Expr],
        span: Span,
    ) -> Option<(usize, Option<Vec<String>>)> {
        let name = func.name();
        let wants_field = matches!(
            func,
            AggFunc::Sum | AggFunc::Avg | AggFunc::Min | AggFunc::Max
        );
        let [arg] = args else {
            let example = if wants_field {
                format!("{name}(v.price)")
            } else {
                format!("{name}(v)")
            };
            self.error(
                format!(
                    "`{name}` takes one argument, got {}; e.g. `{example}`",
                    args.len()
                ),
                span,
            );
            return None;
        };
        let ExprKind::Path(p) = &arg.kind else {
            self.error(
                format!(
                    "the argument of `{name}` must be a pattern variable or a variable's field"
                ),
                arg.span,
            );
            return None;
        };
        let Some(var) = self.var_index(&p[0]) else {
            self.unknown_variable(&p[0], arg.span);
            return None;
        };
        let field = (p.len() > 1).then(|| p[1..].to_vec());
        match (wants_field, &field) {
            (true, None) => {
                self.error(
                    format!(
                        "`{name}` needs a field of the variable, e.g. `{name}({}.price)`",
                        p[0]
                    ),
                    arg.span,
                );
                None
            }
            (false, Some(_)) => {
                let hint = if func == AggFunc::Count {
                    format!("`count({})`", p[0])
                } else {
                    format!("`{name}({}).{}`", p[0], p[1..].join("."))
                };
                self.error(
                    format!("`{name}` takes the variable itself; write {hint}"),
                    arg.span,
                );
                None
            }
            _ => Some((var, field)),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], span: Span) -> Resolved {
        if let Some((_, func)) = AGG_FUNCS.iter().find(|(n, _)| *n == name) {
            if matches!(func, AggFunc::First | AggFunc::Last) {
                self.agg_target(*func, args, span);
                return self.error(
                    format!(
                        "`{name}(v)` is an event; read one of its fields, e.g. `{name}(v).price`"
                    ),
                    span,
                );
            }
            return match self.agg_target(*func, args, span) {
                Some((var, path)) => Resolved::Agg {
                    func: *func,
                    var,
                    path,
                },
                None => Resolved::Literal(Value::Null),
            };
        }
        let Some((_, func, arity)) = SCALAR_FUNCS.iter().find(|(n, _, _)| *n == name) else {
            let mut d = Diagnostic::new(format!("unknown function `{name}`"), span);
            if let Some(s) = did_you_mean(name, function_names()) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            self.errors.push(d);
            return Resolved::Literal(Value::Null);
        };
        if args.len() != *arity {
            return self.error(
                format!(
                    "`{name}` takes {arity} argument{}, got {}",
                    if *arity == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
            );
        }
        if *func == Func::Matches {
            let subject = self.resolve(&args[0]);
            return match &args[1].kind {
                ExprKind::Literal(Value::Str(re)) => match regex::Regex::new(re) {
                    Ok(r) => Resolved::Matches(Box::new(subject), r),
                    Err(e) => self.error(format!("invalid regular expression: {e}"), args[1].span),
                },
                _ => self.error(
                    "the pattern of `matches` must be a string literal".into(),
                    args[1].span,
                ),
            };
        }
        Resolved::Call(*func, args.iter().map(|a| self.resolve(a)).collect())
    }

    fn member(&mut self, base: &Expr, path: &[String], span: Span) -> Resolved {
        if let ExprKind::Call { name, args } = &base.kind {
            let func = match name.as_str() {
                "first" => Some(AggFunc::First),
                "last" => Some(AggFunc::Last),
                _ => None,
            };
            if let Some(func) = func {
                return match self.agg_target(func, args, base.span) {
                    Some((var, _)) => Resolved::Agg {
                        func,
                        var,
                        path: Some(path.to_vec()),
                    },
                    None => Resolved::Literal(Value::Null),
                };
            }
        }
        self.error(
            "only `first(v)` and `last(v)` have fields; write `first(v).price`".into(),
            span,
        )
    }
}

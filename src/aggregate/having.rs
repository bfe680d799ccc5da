//! `having`: a condition on an aggregation's row, over its group columns and aggregate
//! columns by name, and aggregate calls (`count() >= 3`), with the language's operators.

use crate::expr::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::expr::compile::{arith, ArithOp};
use crate::value::Value;

use super::cell::Cell;

/// A compiled `having` condition.
#[derive(Debug, Clone)]
pub(crate) enum Having {
    Lit(Value),
    Group(usize),
    Column(usize),
    Not(Box<Having>),
    Neg(Box<Having>),
    And(Box<Having>, Box<Having>),
    Or(Box<Having>, Box<Having>),
    Cmp(BinaryOp, Box<Having>, Box<Having>),
    Arith(ArithOp, Box<Having>, Box<Having>),
    In(Box<Having>, Vec<Having>),
}

/// What a name or call in `having` refers to.
pub(crate) enum Ref {
    /// The `i`th group column.
    Group(usize),
    /// The `i`th aggregate column.
    Column(usize),
}

/// Compiles `e`; `resolve` says what a name (`Path`) or an aggregate call (`Call`/`Member`,
/// given as the expression) refers to, or why it cannot be used.
pub(crate) fn compile(
    e: &Expr,
    resolve: &mut dyn FnMut(&Expr) -> Result<Ref, String>,
) -> Result<Having, (String, crate::expr::ast::Span)> {
    let sub =
        |e: &Expr, r: &mut dyn FnMut(&Expr) -> Result<Ref, String>| compile(e, r).map(Box::new);
    Ok(match &e.kind {
        ExprKind::Literal(v) => Having::Lit(v.clone()),
        ExprKind::Path(_) | ExprKind::Call { .. } | ExprKind::Member { .. } => {
            match resolve(e).map_err(|m| (m, e.span))? {
                Ref::Group(i) => Having::Group(i),
                Ref::Column(i) => Having::Column(i),
            }
        }
        ExprKind::Unary(UnaryOp::Not, x) => Having::Not(sub(x, resolve)?),
        ExprKind::Unary(UnaryOp::Neg, x) => Having::Neg(sub(x, resolve)?),
        ExprKind::Binary(op, a, b) => {
            let (a, b) = (sub(a, resolve)?, sub(b, resolve)?);
            match op {
                BinaryOp::And => Having::And(a, b),
                BinaryOp::Or => Having::Or(a, b),
                BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge => Having::Cmp(*op, a, b),
                BinaryOp::Add => Having::Arith(ArithOp::Add, a, b),
                BinaryOp::Sub => Having::Arith(ArithOp::Sub, a, b),
                BinaryOp::Mul => Having::Arith(ArithOp::Mul, a, b),
                BinaryOp::Div => Having::Arith(ArithOp::Div, a, b),
                BinaryOp::Rem => Having::Arith(ArithOp::Rem, a, b),
            }
        }
        ExprKind::In(x, list) => Having::In(
            sub(x, resolve)?,
            list.iter()
                .map(|i| compile(i, resolve))
                .collect::<Result<_, _>>()?,
        ),
    })
}

impl Having {
    /// The condition's value for a row (a row passes when it is `true`).
    pub(crate) fn eval(&self, group: &[Cell], columns: &[Cell]) -> Value {
        let at = |cells: &[Cell], i: usize| cells.get(i).map_or(Value::Null, Cell::to_value);
        match self {
            Having::Lit(v) => v.clone(),
            Having::Group(i) => at(group, *i),
            Having::Column(i) => at(columns, *i),
            Having::Not(x) => match x.eval(group, columns) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Null,
            },
            Having::Neg(x) => match x.eval(group, columns) {
                Value::Int(i) => i
                    .checked_neg()
                    .map_or(Value::Float(-(i as f64)), Value::Int),
                Value::Float(f) => Value::Float(-f),
                _ => Value::Null,
            },
            Having::And(a, b) => {
                Value::Bool(a.eval(group, columns).is_true() && b.eval(group, columns).is_true())
            }
            Having::Or(a, b) => {
                Value::Bool(a.eval(group, columns).is_true() || b.eval(group, columns).is_true())
            }
            Having::Cmp(op, a, b) => {
                let (x, y) = (a.eval(group, columns), b.eval(group, columns));
                let o = x.lang_cmp(&y);
                Value::Bool(match op {
                    BinaryOp::Eq => x.lang_eq(&y),
                    BinaryOp::Ne => !x.lang_eq(&y),
                    BinaryOp::Lt => o.is_some_and(|o| o.is_lt()),
                    BinaryOp::Le => o.is_some_and(|o| o.is_le()),
                    BinaryOp::Gt => o.is_some_and(|o| o.is_gt()),
                    _ => o.is_some_and(|o| o.is_ge()),
                })
            }
            Having::Arith(op, a, b) => arith(*op, &a.eval(group, columns), &b.eval(group, columns)),
            Having::In(x, list) => {
                let v = x.eval(group, columns);
                Value::Bool(list.iter().any(|i| v.lang_eq(&i.eval(group, columns))))
            }
        }
    }
}

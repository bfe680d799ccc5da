//! Compiled expressions: field names become schema slots, aggregates become indexes into a
//! run's accumulators, and evaluation is a walk over a small tree with no allocation for the
//! common shapes (`field op literal`).

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{shared_str_eq, Event, Schema};
use crate::expr::ast::{BinaryOp, UnaryOp};
use crate::expr::resolve::{AggFunc, Func, Resolved};
use crate::value::Value;

/// One aggregate a pattern's conditions read: which function of which variable's field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggSpec {
    /// The function.
    pub func: AggFunc,
    /// The variable (index in pattern order).
    pub var: usize,
    /// The field's slot (`None` for `count`).
    pub slot: Option<usize>,
}

/// The running state of one aggregate within one partial match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AggAcc {
    /// Number of events.
    Count(u64),
    /// Sum of the numeric values seen; stays an integer while every value is one.
    Sum {
        /// Integer sum while `float` is false.
        int: i64,
        /// Float sum (always maintained).
        float: f64,
        /// Whether a float (or an integer overflow) was seen.
        is_float: bool,
    },
    /// Sum and count of numeric values.
    Avg {
        /// Sum.
        sum: f64,
        /// Count.
        n: u64,
    },
    /// Least value seen (numbers or strings); null before any.
    Min(Value),
    /// Greatest value seen; null before any.
    Max(Value),
    /// Field of the first event; `None` before any event.
    First(Option<Value>),
    /// Field of the last event; null before any event.
    Last(Value),
}

impl AggAcc {
    /// The accumulator over no events.
    pub fn empty(func: AggFunc) -> AggAcc {
        match func {
            AggFunc::Count => AggAcc::Count(0),
            AggFunc::Sum => AggAcc::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
            },
            AggFunc::Avg => AggAcc::Avg { sum: 0.0, n: 0 },
            AggFunc::Min => AggAcc::Min(Value::Null),
            AggFunc::Max => AggAcc::Max(Value::Null),
            AggFunc::First => AggAcc::First(None),
            AggFunc::Last => AggAcc::Last(Value::Null),
        }
    }

    /// Adds one event's value of the aggregated field.
    pub fn add(&mut self, v: &Value) {
        match self {
            AggAcc::Count(n) => *n += 1,
            AggAcc::Sum {
                int,
                float,
                is_float,
            } => match v {
                Value::Int(i) => {
                    *float += *i as f64;
                    match int.checked_add(*i) {
                        Some(s) => *int = s,
                        None => *is_float = true,
                    }
                }
                Value::Float(f) => {
                    *float += f;
                    *is_float = true;
                }
                _ => {}
            },
            AggAcc::Avg { sum, n } => {
                if let Some(x) = v.as_f64() {
                    *sum += x;
                    *n += 1;
                }
            }
            AggAcc::Min(m) => {
                if !v.is_null() && (m.is_null() || v.lang_cmp(m) == Some(Ordering::Less)) {
                    *m = v.clone();
                }
            }
            AggAcc::Max(m) => {
                if !v.is_null() && (m.is_null() || v.lang_cmp(m) == Some(Ordering::Greater)) {
                    *m = v.clone();
                }
            }
            AggAcc::First(f) => {
                if f.is_none() {
                    *f = Some(v.clone());
                }
            }
            AggAcc::Last(l) => *l = v.clone(),
        }
    }

    /// The aggregate's value now.
    pub fn value(&self) -> Value {
        match self {
            AggAcc::Count(n) => Value::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
            AggAcc::Sum {
                int,
                float,
                is_float,
            } => {
                if *is_float {
                    Value::Float(*float)
                } else {
                    Value::Int(*int)
                }
            }
            AggAcc::Avg { sum, n } => {
                if *n == 0 {
                    Value::Null
                } else {
                    Value::Float(*sum / *n as f64)
                }
            }
            AggAcc::Min(v) | AggAcc::Max(v) | AggAcc::Last(v) => v.clone(),
            AggAcc::First(v) => v.clone().unwrap_or(Value::Null),
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    #[inline]
    fn apply(self, a: &Value, b: &Value) -> bool {
        match self {
            CmpOp::Eq => a.lang_eq(b),
            // `!=` with null is false, as every comparison with null other than `==`.
            CmpOp::Ne => !a.is_null() && !b.is_null() && !a.lang_eq(b),
            CmpOp::Lt => a.lang_cmp(b) == Some(Ordering::Less),
            CmpOp::Le => matches!(a.lang_cmp(b), Some(Ordering::Less | Ordering::Equal)),
            CmpOp::Gt => a.lang_cmp(b) == Some(Ordering::Greater),
            CmpOp::Ge => matches!(a.lang_cmp(b), Some(Ordering::Greater | Ordering::Equal)),
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+` (also string concatenation)
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum CExpr {
    /// A constant.
    Lit(Value),
    /// A field of the current event, by slot.
    Slot(usize),
    /// An aggregate of the partial match, by index into the pattern's [`AggSpec`]s.
    Agg(usize),
    /// Fast path: `field op literal`.
    CmpSlotLit(CmpOp, usize, Value),
    /// Fast path: `field == "literal"`.
    StrEq(usize, Arc<str>),
    /// Fast path: `field op aggregate` (such as `price > A.price`), compared in place.
    CmpSlotAgg(CmpOp, usize, usize),
    /// Comparison.
    Cmp(CmpOp, Box<CExpr>, Box<CExpr>),
    /// Arithmetic.
    Arith(ArithOp, Box<CExpr>, Box<CExpr>),
    /// Logical and (short-circuit).
    And(Box<CExpr>, Box<CExpr>),
    /// Logical or (short-circuit).
    Or(Box<CExpr>, Box<CExpr>),
    /// Logical not.
    Not(Box<CExpr>),
    /// Negation.
    Neg(Box<CExpr>),
    /// Membership.
    In(Box<CExpr>, Vec<CExpr>),
    /// Scalar function.
    Call(Func, Vec<CExpr>),
    /// Regex match.
    Matches(Box<CExpr>, regex::Regex),
}

/// Compiles resolved expressions, registering the fields they read in a [`Schema`] and the
/// aggregates in a list.
pub struct Compiler<'a> {
    /// Field slots shared by all patterns of a run.
    pub schema: &'a mut Schema,
    /// The aggregates of one pattern.
    pub aggs: &'a mut Vec<AggSpec>,
}

impl Compiler<'_> {
    fn agg_index(&mut self, spec: AggSpec) -> usize {
        if let Some(i) = self.aggs.iter().position(|a| *a == spec) {
            return i;
        }
        self.aggs.push(spec);
        self.aggs.len() - 1
    }

    /// Compiles one resolved expression.
    pub fn compile(&mut self, r: &Resolved) -> CExpr {
        match r {
            Resolved::Literal(v) => CExpr::Lit(v.clone()),
            Resolved::Field(p) => CExpr::Slot(self.schema.slot_of(p)),
            Resolved::Agg { func, var, path } => {
                let slot = path.as_ref().map(|p| self.schema.slot_of(p));
                CExpr::Agg(self.agg_index(AggSpec {
                    func: *func,
                    var: *var,
                    slot,
                }))
            }
            Resolved::Unary(UnaryOp::Not, x) => CExpr::Not(Box::new(self.compile(x))),
            Resolved::Unary(UnaryOp::Neg, x) => match self.compile(x) {
                CExpr::Lit(Value::Int(i)) => CExpr::Lit(
                    i.checked_neg()
                        .map(Value::Int)
                        .unwrap_or(Value::Float(-(i as f64))),
                ),
                CExpr::Lit(Value::Float(f)) => CExpr::Lit(Value::Float(-f)),
                other => CExpr::Neg(Box::new(other)),
            },
            Resolved::Binary(op, a, b) => {
                let (a, b) = (self.compile(a), self.compile(b));
                let cmp = match op {
                    BinaryOp::Eq => Some(CmpOp::Eq),
                    BinaryOp::Ne => Some(CmpOp::Ne),
                    BinaryOp::Lt => Some(CmpOp::Lt),
                    BinaryOp::Le => Some(CmpOp::Le),
                    BinaryOp::Gt => Some(CmpOp::Gt),
                    BinaryOp::Ge => Some(CmpOp::Ge),
                    _ => None,
                };
                if let Some(c) = cmp {
                    return match (a, b) {
                        (CExpr::Slot(s), CExpr::Lit(Value::Str(v)))
                        | (CExpr::Lit(Value::Str(v)), CExpr::Slot(s))
                            if c == CmpOp::Eq =>
                        {
                            CExpr::StrEq(s, v)
                        }
                        (CExpr::Slot(s), CExpr::Lit(v)) => CExpr::CmpSlotLit(c, s, v),
                        (CExpr::Lit(v), CExpr::Slot(s)) => CExpr::CmpSlotLit(flip(c), s, v),
                        (CExpr::Slot(s), CExpr::Agg(i)) => CExpr::CmpSlotAgg(c, s, i),
                        (CExpr::Agg(i), CExpr::Slot(s)) => CExpr::CmpSlotAgg(flip(c), s, i),
                        (a, b) => CExpr::Cmp(c, Box::new(a), Box::new(b)),
                    };
                }
                let (a, b) = (Box::new(a), Box::new(b));
                match op {
                    BinaryOp::And => CExpr::And(a, b),
                    BinaryOp::Or => CExpr::Or(a, b),
                    BinaryOp::Add => CExpr::Arith(ArithOp::Add, a, b),
                    BinaryOp::Sub => CExpr::Arith(ArithOp::Sub, a, b),
                    BinaryOp::Mul => CExpr::Arith(ArithOp::Mul, a, b),
                    BinaryOp::Div => CExpr::Arith(ArithOp::Div, a, b),
                    BinaryOp::Rem => CExpr::Arith(ArithOp::Rem, a, b),
                    // Comparisons returned above.
                    _ => CExpr::Lit(Value::Null),
                }
            }
            Resolved::In(x, list) => CExpr::In(
                Box::new(self.compile(x)),
                list.iter().map(|i| self.compile(i)).collect(),
            ),
            Resolved::Call(f, args) => {
                CExpr::Call(*f, args.iter().map(|a| self.compile(a)).collect())
            }
            Resolved::Matches(x, re) => CExpr::Matches(Box::new(self.compile(x)), re.clone()),
        }
    }
}

/// `value op aggregate`, reading the aggregate in place when it holds a value.
#[inline]
fn cmp_slot_agg(op: CmpOp, v: &Value, agg: Option<&AggAcc>) -> bool {
    match agg {
        Some(AggAcc::Min(a) | AggAcc::Max(a) | AggAcc::Last(a)) => op.apply(v, a),
        Some(AggAcc::First(Some(a))) => op.apply(v, a),
        Some(other) => op.apply(v, &other.value()),
        None => op.apply(v, &Value::Null),
    }
}

fn flip(c: CmpOp) -> CmpOp {
    match c {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

impl CExpr {
    /// Whether evaluation reads the partial match (so results depend on the run, not only on
    /// the event).
    pub fn is_iterative(&self) -> bool {
        match self {
            CExpr::Agg(_) | CExpr::CmpSlotAgg(..) => true,
            CExpr::Lit(_) | CExpr::Slot(_) | CExpr::CmpSlotLit(..) | CExpr::StrEq(..) => false,
            CExpr::Cmp(_, a, b) | CExpr::Arith(_, a, b) | CExpr::And(a, b) | CExpr::Or(a, b) => {
                a.is_iterative() || b.is_iterative()
            }
            CExpr::Not(a) | CExpr::Neg(a) | CExpr::Matches(a, _) => a.is_iterative(),
            CExpr::In(a, l) => a.is_iterative() || l.iter().any(CExpr::is_iterative),
            CExpr::Call(_, l) => l.iter().any(CExpr::is_iterative),
        }
    }

    /// Evaluates as a condition: true only if the value is `true`.
    #[inline]
    pub fn test(&self, ev: &Event, aggs: &[AggAcc]) -> bool {
        match self {
            CExpr::And(a, b) => a.test_leaf(ev, aggs) && b.test_leaf(ev, aggs),
            other => other.test_leaf(ev, aggs),
        }
    }

    /// [`CExpr::test`] with the commonest leaves inlined into the caller.
    #[inline]
    fn test_leaf(&self, ev: &Event, aggs: &[AggAcc]) -> bool {
        match self {
            CExpr::StrEq(s, lit) => match ev.slot(*s) {
                Value::Str(v) => shared_str_eq(v, lit),
                _ => false,
            },
            CExpr::CmpSlotAgg(op, s, i) => cmp_slot_agg(*op, ev.slot(*s), aggs.get(*i)),
            CExpr::CmpSlotLit(op, s, lit) => op.apply(ev.slot(*s), lit),
            other => other.test_general(ev, aggs),
        }
    }

    #[inline(never)]
    fn test_general(&self, ev: &Event, aggs: &[AggAcc]) -> bool {
        match self {
            CExpr::StrEq(s, lit) => match ev.slot(*s) {
                Value::Str(v) => shared_str_eq(v, lit),
                _ => false,
            },
            CExpr::CmpSlotLit(op, s, lit) => op.apply(ev.slot(*s), lit),
            CExpr::CmpSlotAgg(op, s, i) => cmp_slot_agg(*op, ev.slot(*s), aggs.get(*i)),
            CExpr::And(a, b) => a.test(ev, aggs) && b.test(ev, aggs),
            CExpr::Or(a, b) => a.test(ev, aggs) || b.test(ev, aggs),
            CExpr::Not(a) => !a.test(ev, aggs),
            CExpr::Cmp(op, a, b) => op.apply(&a.eval(ev, aggs), &b.eval(ev, aggs)),
            other => other.eval(ev, aggs).is_true(),
        }
    }

    /// Evaluates to a value.
    pub fn eval(&self, ev: &Event, aggs: &[AggAcc]) -> Value {
        match self {
            CExpr::Lit(v) => v.clone(),
            CExpr::Slot(s) => ev.slot(*s).clone(),
            CExpr::Agg(i) => aggs.get(*i).map(AggAcc::value).unwrap_or(Value::Null),
            CExpr::CmpSlotLit(..)
            | CExpr::StrEq(..)
            | CExpr::CmpSlotAgg(..)
            | CExpr::Cmp(..)
            | CExpr::And(..)
            | CExpr::Or(..) => Value::Bool(self.test(ev, aggs)),
            CExpr::Not(a) => Value::Bool(!a.test(ev, aggs)),
            CExpr::Neg(a) => match a.eval(ev, aggs) {
                Value::Int(i) => i
                    .checked_neg()
                    .map(Value::Int)
                    .unwrap_or(Value::Float(-(i as f64))),
                Value::Float(f) => Value::Float(-f),
                _ => Value::Null,
            },
            CExpr::Arith(op, a, b) => arith(*op, &a.eval(ev, aggs), &b.eval(ev, aggs)),
            CExpr::In(x, list) => {
                let v = x.eval(ev, aggs);
                Value::Bool(list.iter().any(|i| v.lang_eq(&i.eval(ev, aggs))))
            }
            CExpr::Call(f, args) => call(*f, args, ev, aggs),
            CExpr::Matches(x, re) => match x.eval(ev, aggs) {
                Value::Str(s) => Value::Bool(re.is_match(&s)),
                _ => Value::Bool(false),
            },
        }
    }
}

pub(crate) fn arith(op: ArithOp, a: &Value, b: &Value) -> Value {
    if let (ArithOp::Add, Value::Str(x), Value::Str(y)) = (op, a, b) {
        let mut s = String::with_capacity(x.len() + y.len());
        s.push_str(x);
        s.push_str(y);
        return Value::Str(Arc::from(s));
    }
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let r = match op {
            ArithOp::Add => x.checked_add(*y),
            ArithOp::Sub => x.checked_sub(*y),
            ArithOp::Mul => x.checked_mul(*y),
            ArithOp::Div => {
                if *y == 0 {
                    return Value::Null;
                }
                // `wrapping_rem` is exact for every pair but `i64::MIN % -1`, where it gives
                // the true remainder 0; the quotient then overflows (`checked_div` is `None`)
                // and the float below is the answer, as for the other overflows.
                if x.wrapping_rem(*y) == 0 {
                    x.checked_div(*y)
                } else {
                    return Value::Float(*x as f64 / *y as f64);
                }
            }
            ArithOp::Rem => {
                if *y == 0 {
                    return Value::Null;
                }
                // Exact, `i64::MIN % -1` included (0); `%` would panic there.
                Some(x.wrapping_rem(*y))
            }
        };
        if let Some(r) = r {
            return Value::Int(r);
        }
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => match op {
            ArithOp::Add => Value::Float(x + y),
            ArithOp::Sub => Value::Float(x - y),
            ArithOp::Mul => Value::Float(x * y),
            ArithOp::Div if y == 0.0 => Value::Null,
            ArithOp::Div => Value::Float(x / y),
            ArithOp::Rem if y == 0.0 => Value::Null,
            ArithOp::Rem => Value::Float(x % y),
        },
        _ => Value::Null,
    }
}

fn call(f: Func, args: &[CExpr], ev: &Event, aggs: &[AggAcc]) -> Value {
    let arg = |i: usize| args.get(i).map(|a| a.eval(ev, aggs)).unwrap_or_default();
    match f {
        Func::Abs => match arg(0) {
            Value::Int(i) => i
                .checked_abs()
                .map(Value::Int)
                .unwrap_or(Value::Float((i as f64).abs())),
            Value::Float(x) => Value::Float(x.abs()),
            _ => Value::Null,
        },
        Func::Lower => match arg(0) {
            Value::Str(s) => Value::Str(Arc::from(s.to_lowercase())),
            _ => Value::Null,
        },
        Func::Upper => match arg(0) {
            Value::Str(s) => Value::Str(Arc::from(s.to_uppercase())),
            _ => Value::Null,
        },
        Func::Len => match arg(0) {
            Value::Str(s) => Value::Int(s.chars().count() as i64),
            _ => Value::Null,
        },
        Func::Contains | Func::StartsWith | Func::EndsWith => match (arg(0), arg(1)) {
            (Value::Str(s), Value::Str(p)) => Value::Bool(match f {
                Func::Contains => s.contains(&*p),
                Func::StartsWith => s.starts_with(&*p),
                _ => s.ends_with(&*p),
            }),
            _ => Value::Bool(false),
        },
        Func::Matches => Value::Bool(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::ast::{Expr, ExprKind};
    use crate::expr::resolve::resolve;

    fn lit(v: Value) -> Expr {
        Expr::new(ExprKind::Literal(v))
    }
    fn path(s: &str) -> Expr {
        Expr::new(ExprKind::Path(s.split('.').map(str::to_string).collect()))
    }
    fn bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::new(ExprKind::Binary(op, Box::new(a), Box::new(b)))
    }

    fn eval_on(e: &Expr, json: &str) -> Value {
        let mut schema = Schema::new();
        let mut aggs = Vec::new();
        let r = resolve(e, &[]).unwrap();
        let c = Compiler {
            schema: &mut schema,
            aggs: &mut aggs,
        }
        .compile(&r);
        let row = schema.decode_row(json).unwrap();
        let ev = Event {
            time: 0,
            fields: row,
            raw: Arc::from(json),
        };
        c.eval(&ev, &[])
    }

    #[test]
    fn null_rules() {
        let missing_eq_null = bin(BinaryOp::Eq, path("x"), lit(Value::Null));
        assert_eq!(eval_on(&missing_eq_null, "{}"), Value::Bool(true));
        let gt = bin(BinaryOp::Gt, path("x"), lit(Value::Int(1)));
        assert_eq!(eval_on(&gt, "{}"), Value::Bool(false));
        let ne = bin(BinaryOp::Ne, path("x"), lit(Value::Int(1)));
        assert_eq!(eval_on(&ne, "{}"), Value::Bool(false));
        let add = bin(BinaryOp::Add, path("x"), lit(Value::Int(1)));
        assert_eq!(eval_on(&add, "{}"), Value::Null);
        let str_num = bin(BinaryOp::Lt, path("s"), lit(Value::Int(1)));
        assert_eq!(eval_on(&str_num, r#"{"s":"a"}"#), Value::Bool(false));
    }

    #[test]
    fn arithmetic_mixes_int_and_float() {
        let e = bin(
            BinaryOp::Mul,
            lit(Value::Int(10)),
            bin(BinaryOp::Add, path("a"), path("b")),
        );
        assert_eq!(eval_on(&e, r#"{"a":1,"b":2.5}"#), Value::Float(35.0));
        let d = bin(BinaryOp::Div, lit(Value::Int(7)), lit(Value::Int(2)));
        assert_eq!(eval_on(&d, "{}"), Value::Float(3.5));
        let z = bin(BinaryOp::Div, lit(Value::Int(7)), lit(Value::Int(0)));
        assert_eq!(eval_on(&z, "{}"), Value::Null);
    }

    #[test]
    fn integer_arithmetic_never_panics() {
        let extremes = [
            i64::MIN,
            i64::MIN + 1,
            -2,
            -1,
            0,
            1,
            2,
            i64::MAX - 1,
            i64::MAX,
        ];
        let ops = [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Rem,
        ];
        for x in extremes {
            for y in extremes {
                for op in ops {
                    let e = bin(op, path("x"), path("y"));
                    let r = eval_on(&e, &format!(r#"{{"x":{x},"y":{y}}}"#));
                    // Exact where an integer holds the answer, else a float or null.
                    let exact = match op {
                        BinaryOp::Add => x.checked_add(y),
                        BinaryOp::Sub => x.checked_sub(y),
                        BinaryOp::Mul => x.checked_mul(y),
                        BinaryOp::Div => x.checked_div(y).filter(|_| x.wrapping_rem(y) == 0),
                        _ => (y != 0).then(|| x.wrapping_rem(y)),
                    };
                    match exact {
                        Some(i) => assert_eq!(r, Value::Int(i), "{x} {op:?} {y}"),
                        None => assert!(
                            matches!(r, Value::Float(_) | Value::Null),
                            "{x} {op:?} {y} gave {r:?}"
                        ),
                    }
                }
            }
        }
        let div = bin(BinaryOp::Div, path("x"), path("y"));
        let min_by_minus_one = format!(r#"{{"x":{},"y":-1}}"#, i64::MIN);
        assert_eq!(
            eval_on(&div, &min_by_minus_one),
            Value::Float(-(i64::MIN as f64))
        );
        let rem = bin(BinaryOp::Rem, path("x"), path("y"));
        assert_eq!(eval_on(&rem, &min_by_minus_one), Value::Int(0));
        let neg = Expr::new(ExprKind::Unary(UnaryOp::Neg, Box::new(path("x"))));
        assert_eq!(
            eval_on(&neg, &min_by_minus_one),
            Value::Float(-(i64::MIN as f64))
        );
    }

    #[test]
    fn aggregates_over_no_events() {
        assert_eq!(AggAcc::empty(AggFunc::Count).value(), Value::Int(0));
        assert_eq!(AggAcc::empty(AggFunc::Sum).value(), Value::Int(0));
        assert_eq!(AggAcc::empty(AggFunc::Avg).value(), Value::Null);
        assert_eq!(AggAcc::empty(AggFunc::First).value(), Value::Null);
        let mut s = AggAcc::empty(AggFunc::Sum);
        s.add(&Value::Int(2));
        s.add(&Value::Float(0.5));
        assert_eq!(s.value(), Value::Float(2.5));
        let mut m = AggAcc::empty(AggFunc::Min);
        m.add(&Value::Int(3));
        m.add(&Value::Null);
        m.add(&Value::Float(1.5));
        assert_eq!(m.value(), Value::Float(1.5));
    }
}

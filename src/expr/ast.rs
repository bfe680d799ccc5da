//! The expression tree as written (by the parser or the builder API), before resolution.
//!
//! Names are not resolved here: `start.price` is a [`ExprKind::Path`] until the resolver
//! knows whether `start` is a pattern variable (then it is the last event `start` matched) or a
//! field of the current event (a nested object).

use std::fmt;

use crate::value::Value;

/// A byte range in a pattern file; `Span::default()` for items built in Rust code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

impl Span {
    /// A span over `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// Whether this span points at real source text.
    pub fn is_known(&self) -> bool {
        self.end > self.start
    }
}

/// An expression with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it was written (`Span::default()` if built in Rust).
    pub span: Span,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `not x`, `!x`
    Not,
    /// `-x`
    Neg,
}

/// Binary operators, loosest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `or`, `||`
    Or,
    /// `and`, `&&`
    And,
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
    /// `+`
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

impl BinaryOp {
    /// The operator as written in the language.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }

    /// Binding strength: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => 4,
            BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 6,
        }
    }
}

/// The forms an expression takes as written.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal: number, string, `true`, `false`, `null`.
    Literal(Value),
    /// A dotted name: `price`, `user.id`, `this.price`, `start.price`.
    Path(Vec<String>),
    /// A function call: `abs(x)`, `count(v)`, `sum(v.price)`, `first(v)`.
    Call {
        /// The function's name as written.
        name: String,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// A field of a call's result: `first(v).price`, `last(v).price`.
    Member {
        /// The expression whose field is read (a `first(..)`/`last(..)` call).
        base: Box<Expr>,
        /// The field path after the dot.
        path: Vec<String>,
    },
    /// `not x`, `-x`
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `x in [a, b, c]`
    In(Box<Expr>, Vec<Expr>),
}

impl Expr {
    /// An expression without a source position.
    pub fn new(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }

    /// An expression at a source position.
    pub fn spanned(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }
}

fn write_path(f: &mut fmt::Formatter<'_>, path: &[String]) -> fmt::Result {
    f.write_str(&path_text(path))
}

/// A field name as the language writes it: itself when it is an identifier that is not a
/// keyword, else in backticks (a backtick inside doubled): `price`, `` `@timestamp` ``.
pub fn name_text(name: &str) -> std::borrow::Cow<'_, str> {
    const KEYWORDS: [&str; 7] = ["and", "or", "not", "in", "true", "false", "null"];
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name);
    if ident {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(format!("`{}`", name.replace('`', "``")))
    }
}

/// A dotted field path as the language writes it (see [`name_text`]).
pub fn path_text(path: &[String]) -> String {
    path.iter()
        .map(|p| name_text(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// Pretty-prints in the language's own syntax with every operation in brackets, so the tree
/// shows at a glance (`explain` and error messages use it; the source printer in
/// `syntax::printer` writes only the brackets precedence needs).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(v) => write!(f, "{v}"),
            ExprKind::Path(p) => write_path(f, p),
            ExprKind::Call { name, args } => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            ExprKind::Member { base, path } => {
                write!(f, "{base}.")?;
                write_path(f, path)
            }
            ExprKind::Unary(UnaryOp::Not, e) => write!(f, "(not {e})"),
            ExprKind::Unary(UnaryOp::Neg, e) => write!(f, "(-{e})"),
            ExprKind::Binary(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            ExprKind::In(e, list) => {
                write!(f, "({e} in [")?;
                for (i, a) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str("])")
            }
        }
    }
}

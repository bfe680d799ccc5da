//! Expressions: the tree as written ([`ast`]), name resolution and checking ([`resolve`]),
//! and compilation to fast closures over event slots ([`compile`]).

pub mod ast;
pub mod compile;
pub mod resolve;

pub use crate::syntax::parse_expr;

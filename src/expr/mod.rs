//! Expressions: the tree as written ([`ast`]); name resolution, checking and compilation to
//! fast closures over event slots are internal.

pub mod ast;
pub(crate) mod compile;
pub(crate) mod resolve;

//! # motif — complex event processing with Flink CEP's semantics
//!
//! Two pipelines:
//!
//! ```text
//! compile:  pattern text ──pest──▶ AST (spans) ──validate──▶ Pattern ──compile──▶ NFA (immutable)
//!                              Rust builder API ──────────────┘
//! run:      JSON lines ─▶ decode (schema slots) ─▶ key ─▶ time order + watermark ─▶ matcher per key ─▶ matches
//! ```
//!
//! - [`syntax`] parses pattern files into [`pattern::PatternDecl`]s, reporting every error with
//!   its line, column and a caret.
//! - [`pattern`] is the model and the Rust builder API; [`validate`] checks it (Flink's rules and
//!   more).
//! - [`expr`] resolves and compiles `where` expressions to closures over event slots.
//! - [`nfa`] compiles a pattern into an immutable NFA, Flink's NFACompiler structure, and runs
//!   it per partition with a shared buffer of partial matches.
//! - [`runtime`] orders events by event time, applies watermarks and lateness, and drives the
//!   matchers; [`output`] writes matches as JSON lines.

pub mod cli;
pub mod decode;
pub mod error;
pub mod event;
pub mod expr;
pub mod gen;
pub mod nfa;
pub mod output;
pub mod pattern;
pub mod runtime;
pub mod source;
pub mod syntax;
pub mod validate;
pub mod value;

pub use error::Diagnostic;
pub use event::{Event, Schema};
pub use pattern::{Pattern, PatternDecl, SkipStrategy};
pub use value::Value;

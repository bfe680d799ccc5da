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
//!
//! # Embedding
//!
//! Patterns come from the language or from the builder API; either way an [`runtime::Engine`]
//! runs them over events: JSON text ([`runtime::Engine::push_json`]), a
//! [`serde_json::Value`] ([`runtime::Engine::push_value`]) or any [`serde::Serialize`] type
//! ([`runtime::Engine::push`]). Each match reads as a [`runtime::MatchView`]: the pattern's
//! name, the key as typed [`Value`]s, and the events by variable name, with typed field
//! access. The engine's whole state is [`runtime::Engine::snapshot`], restored with
//! [`runtime::Engine::restore`] (`examples/snapshot.rs` shows both).
//!
//! ```
//! use std::time::Duration;
//!
//! use motif::expr::parse_expr;
//! use motif::pattern::{Pattern, SkipStrategy};
//! use motif::runtime::{Engine, EngineOptions};
//! use motif::Value;
//!
//! #[derive(serde::Serialize)]
//! struct Login<'a> {
//!     user: &'a str,
//!     ts: i64,
//!     outcome: &'a str,
//! }
//!
//! // Three failed logins in a row, then a success, within 5 minutes, per user.
//! let failed_then_ok = Pattern::begin_with("fail", SkipStrategy::SkipPastLastEvent)
//!     .where_(parse_expr(r#"outcome == "fail""#).unwrap())
//!     .times(3)
//!     .consecutive()
//!     .next("ok")
//!     .where_fn(|event, partial| {
//!         // A Rust closure sees the event and the partial match so far.
//!         event.field("outcome").as_str() == Some("ok") && partial.events_of("fail").len() == 3
//!     })
//!     .within(Duration::from_secs(5 * 60))
//!     .declare("failed_then_ok")
//!     .key(&["user"])
//!     .time("ts");
//!
//! let mut engine = Engine::new(&[failed_then_ok], EngineOptions::default()).unwrap();
//! let mut out = Vec::new();
//! for (ts, outcome) in [(1, "fail"), (2, "fail"), (3, "fail"), (4, "ok"), (5, "fail")] {
//!     engine.push(&Login { user: "ann", ts, outcome }, &mut out).unwrap();
//! }
//! engine.finish(&mut out);
//!
//! let matches: Vec<_> = engine.matches(&out).collect();
//! assert_eq!(matches.len(), 1);
//! let m = &matches[0];
//! assert_eq!(m.pattern(), "failed_then_ok");
//! assert!(matches!(m.key().unwrap().fields(), [Value::Str(user)] if &**user == "ann"));
//! let fails: Vec<i64> = m.events("fail").iter().map(|e| e.time).collect();
//! assert_eq!(fails, [1, 2, 3]);
//! assert_eq!(m.events("ok")[0].field("outcome").as_str(), Some("ok"));
//! assert_eq!((m.start(), m.end()), (1, 4));
//! ```

mod bytes;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod decode;
pub mod error;
pub mod event;
pub mod expr;
pub mod gen;
pub mod key;
pub mod nfa;
pub mod output;
pub mod pattern;
pub mod pipeline;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod syntax;
pub mod validate;
pub mod value;

pub use error::Diagnostic;
pub use event::{Event, Schema};
pub use pattern::{Pattern, PatternDecl, SkipStrategy};
pub use value::Value;

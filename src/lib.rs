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
//! The public surface is small:
//!
//! - [`pattern`] is the model and the Rust builder API, [`syntax`] the pattern language
//!   (parsing files into [`PatternDecl`]s, every error with its line, column and a caret),
//!   [`expr`] the `where` expressions; [`validate()`] checks a pattern (Flink's rules and more).
//! - [`runtime`] is the engine ([`runtime::Engine`], [`runtime::ParallelEngine`], both behind
//!   [`runtime::Run`]): it orders events by event time, applies watermarks and lateness, and
//!   gives [`runtime::Output`]s — matches ([`runtime::MatchView`] reads one), timeouts, late
//!   events, rejects, watermark moves.
//! - [`key`] is a partition's typed key, [`value`] a field's value, [`checkpoint`] a whole
//!   pipeline's saved state, [`error`] the diagnostics.
//! - [`source`], [`sink`], [`output`] and [`pipeline`] are the pieces of a run from inputs to
//!   outputs with checkpoints, as the `motif` command runs them.
//!
//! The decoder, the NFA compiler and matcher, and the validator are internal.
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
//! use motif::syntax::parse_expr;
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

// The public surface: the engine and its outputs, matches, keys, snapshots and errors, the
// pattern model with its builder and its language, and the pipeline's sources and sinks.
pub mod aggregate;
pub mod checkpoint;
pub mod error;
pub mod expr;
pub mod key;
pub mod output;
pub mod pattern;
pub mod pipeline;
pub mod process;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod syntax;
pub mod value;

/// Declares internal modules: private to the crate, and public (hidden from the docs, not an
/// API) only with the `internals` feature, which this crate's own tests, benches and fuzz
/// targets turn on.
macro_rules! internal_modules {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$doc])*
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    )*};
}

internal_modules! {
    /// Word-at-a-time byte helpers.
    bytes;
    /// JSON text → a row of the fields patterns read.
    decode;
    /// Decoded events and their schema.
    event;
    /// The synthetic event generator (`motif gen`, `--input gen:`).
    gen;
    /// Pattern → NFA, and the matcher that runs it.
    nfa;
    /// Flink's rules (and more) checked on a pattern.
    validate;
    /// Warnings on patterns that load but may not mean what they say.
    lint;
}

/// The `motif` command line (the binary's `main` calls [`cli::main`]).
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

pub use error::Diagnostic;
pub use event::{DecodeError, Event, Schema, StrCache};
pub use nfa::CompileError;
pub use pattern::{Pattern, PatternDecl, SkipStrategy};
pub use validate::validate;
pub use value::Value;

//! The pattern language: parsing pattern files into [`PatternDecl`]s, loading them with
//! validation, and printing them back.
//!
//! The grammar is `grammar/motif.pest` (the single source of truth for the syntax) and the
//! user reference is `grammar/README.md`.
//!
//! ```
//! use motif::syntax::{load_str, print_decls};
//!
//! let decls = load_str(
//!     "example.motif",
//!     r#"pattern p key card_id time ts
//!        = begin("small").where(amount < 10).times(3).consecutive()
//!          .followedBy("large").where(amount > 500).within(10m);"#,
//! )
//! .unwrap();
//! assert_eq!(decls[0].name, "p");
//! assert!(print_decls(&decls).contains(".within(10m)"));
//!
//! let err = load_str("bad.motif", r#"pattern p = begin("a").where(x > 1;"#).unwrap_err();
//! assert!(err.to_string().starts_with("bad.motif:1:35: error: expected"));
//! ```
//!
//! - [`parse_source`] turns text into declarations (syntax errors only);
//! - [`load_str`] and [`load_file`] parse and then [validate](crate::validate::validate)
//!   every declaration, reporting every error of the file at once, rendered like rustc's;
//! - [`parse_expr`] parses one expression, for the Rust builder API;
//! - [`print_decls`] prints declarations back in canonical form.

mod diagnostics;
mod parser;
mod printer;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use hashbrown::HashMap;

use crate::aggregate::AggregateDecl;
use crate::error::Diagnostic;
use crate::expr::ast::{Expr, Span};
use crate::pattern::PatternDecl;

pub use crate::error::line_col;
pub use printer::print_decls;

/// Parses a pattern file into its declarations, without validating them.
///
/// Returns every syntax error found: after an error the parser resumes at the next
/// declaration. Also reported here, because the model cannot hold them: a quantifier or
/// modifier applied twice to one step, a quantifier written after a modifier, `times(0)`,
/// `consecutive()` together with `allowCombinations()`, a second `until`, and a `key`,
/// `time` or `lateness` clause given twice.
pub fn parse_source(source: &str) -> Result<Vec<PatternDecl>, Vec<Diagnostic>> {
    let parsed = parser::parse_file(source);
    if parsed.diags.is_empty() {
        Ok(parsed.decls)
    } else {
        Err(sorted(parsed.diags))
    }
}

/// Parses one expression, e.g. `parse_expr("amount > 10")`, for conditions built with the
/// Rust API. The errors render against the expression text, with origin `<expression>`.
pub fn parse_expr(source: &str) -> Result<Expr, SourceErrors> {
    parser::parse_expression(source).map_err(|diagnostics| SourceErrors {
        origin: "<expression>".to_string(),
        source: source.to_string(),
        diagnostics,
    })
}

/// Parses and validates a pattern file held in memory; `origin` names it in messages.
/// Aggregate declarations are parsed (their syntax errors are reported) but not returned:
/// [`load_program_str`] gives them.
///
/// Every declaration is validated, and every error of the file is returned (syntax errors,
/// lowering errors, validation errors of each declaration, and a pattern name declared
/// twice), in source order.
pub fn load_str(origin: &str, source: &str) -> Result<Vec<PatternDecl>, SourceErrors> {
    let parsed = parser::parse_file(source);
    let mut diags = parsed.diags;

    let mut seen: HashMap<&str, Span> = HashMap::new();
    for decl in parsed.decls.iter() {
        if let Some(first) = seen.get(decl.name.as_str()) {
            let (l, c) = line_col(source, first.start);
            diags.push(
                Diagnostic::new(
                    format!("pattern `{}` is declared twice in this file", decl.name),
                    decl.span,
                )
                .with_help(format!(
                    "the first `{}` is at {l}:{c}; pattern names must be unique",
                    decl.name
                )),
            );
        } else {
            seen.insert(&decl.name, decl.span);
        }
    }
    for decl in &parsed.decls {
        if let Err(errors) = crate::validate::validate_in_source(decl, Some(source)) {
            diags.extend(errors);
        }
    }

    drop(seen);
    if diags.is_empty() {
        Ok(parsed.decls)
    } else {
        Err(SourceErrors {
            origin: origin.to_string(),
            source: source.to_string(),
            diagnostics: sorted(diags),
        })
    }
}

/// The declarations of one or more pattern files: patterns and aggregates.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// The patterns.
    pub patterns: Vec<PatternDecl>,
    /// The aggregates over their matches.
    pub aggregates: Vec<AggregateDecl>,
    /// Warnings on the patterns ([`crate::lint`]), rendered as errors are
    /// (`file:line:col: warning: ...`): shown by `motif check` and at start-up, never fatal.
    pub warnings: Vec<String>,
}

/// The rendered warnings on `decls`, loaded from `source` (named `origin`).
pub fn warnings(origin: &str, source: &str, decls: &[PatternDecl]) -> Vec<String> {
    decls
        .iter()
        .flat_map(crate::lint::warnings)
        .map(|d| {
            let mut out = String::new();
            let _ = diagnostics::render_as(&mut out, "warning", origin, source, &d);
            out.trim_end().to_string()
        })
        .collect()
}

/// Parses and validates a file's patterns and aggregates, each aggregate checked against
/// the file's patterns and `others` (patterns loaded from other files); every error of the
/// file is returned, in source order.
pub fn load_program_str(
    origin: &str,
    source: &str,
    others: &[PatternDecl],
) -> Result<Program, SourceErrors> {
    let parsed = parser::parse_file(source);
    let (patterns, mut diags) = match load_str(origin, source) {
        Ok(p) => (p, Vec::new()),
        Err(e) => (parsed.decls.clone(), e.diagnostics),
    };
    let mut all: Vec<PatternDecl> = others.to_vec();
    all.extend(patterns.iter().cloned());
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for agg in &parsed.aggregates {
        if let Some(first) = seen.get(agg.name.as_str()) {
            let (l, c) = line_col(source, first.start);
            diags.push(
                Diagnostic::new(
                    format!("aggregate `{}` is declared twice in this file", agg.name),
                    agg.spans.name,
                )
                .with_help(format!("the first `{}` is at {l}:{c}", agg.name)),
            );
        } else {
            seen.insert(&agg.name, agg.spans.name);
        }
        diags.extend(crate::aggregate::check(agg, &all));
    }
    drop(seen);
    // A syntax error is reported once, by `load_str` and by the parse here alike.
    diags.sort_by_key(|d| (d.span.start, d.span.end, d.message.clone()));
    diags.dedup();
    if diags.is_empty() {
        Ok(Program {
            warnings: warnings(origin, source, &patterns),
            patterns,
            aggregates: parsed.aggregates,
        })
    } else {
        Err(SourceErrors {
            origin: origin.to_string(),
            source: source.to_string(),
            diagnostics: diags,
        })
    }
}

/// Loads several pattern files as one program: every file's patterns first, then each
/// aggregate checked against all of them (an aggregate may read patterns of other files).
/// Every error of every file is returned.
pub fn load_program_files(paths: &[PathBuf]) -> Result<Program, Vec<LoadError>> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(s) => sources.push((path.display().to_string(), s)),
            Err(source) => errors.push(LoadError::Io {
                path: path.clone(),
                source,
            }),
        }
    }
    let mut patterns = Vec::new();
    let mut warned = Vec::new();
    let mut declared: HashMap<String, String> = HashMap::new();
    for (origin, src) in &sources {
        match load_str(origin, src) {
            Ok(mut p) => {
                warned.extend(warnings(origin, src, &p));
                // Within a file a name twice is a diagnostic of the file; across files, here.
                for d in &p {
                    match declared.get(&d.name) {
                        Some(first) => errors.push(LoadError::Duplicate {
                            kind: "pattern",
                            name: d.name.clone(),
                            first: first.clone(),
                            second: origin.clone(),
                        }),
                        None => {
                            declared.insert(d.name.clone(), origin.clone());
                        }
                    }
                }
                patterns.append(&mut p)
            }
            Err(e) => errors.push(LoadError::Invalid(e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut program = Program {
        patterns: Vec::new(),
        aggregates: Vec::new(),
        warnings: warned,
    };
    // The file of each aggregate, for errors.
    let mut origins: Vec<String> = Vec::new();
    for (origin, src) in &sources {
        let parsed = parser::parse_file(src);
        let mut diags = Vec::new();
        for agg in &parsed.aggregates {
            diags.extend(crate::aggregate::check(agg, &patterns));
        }
        if diags.is_empty() {
            origins.extend(parsed.aggregates.iter().map(|_| origin.clone()));
            program.aggregates.extend(parsed.aggregates);
        } else {
            errors.push(LoadError::Invalid(SourceErrors::new(
                origin.clone(),
                src.clone(),
                sorted(diags),
            )));
        }
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, a) in program.aggregates.iter().enumerate() {
        if let Some(j) = names.insert(a.name.clone(), i) {
            errors.push(LoadError::Duplicate {
                kind: "aggregate",
                name: a.name.clone(),
                first: origins.get(j).cloned().unwrap_or_default(),
                second: origins.get(i).cloned().unwrap_or_default(),
            });
        }
    }
    if errors.is_empty() {
        program.patterns = patterns;
        Ok(program)
    } else {
        Err(errors)
    }
}

/// Reads, parses and validates a pattern file (see [`load_str`]).
pub fn load_file(path: &Path) -> Result<Vec<PatternDecl>, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(load_str(&path.display().to_string(), &source)?)
}

fn sorted(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    diags
}

/// Problems found in a piece of source text: every diagnostic, with the text they point into.
///
/// Its `Display` renders each diagnostic like rustc:
///
/// ```text
/// patterns.motif:3:21: error: expected an operator or `)`, found `amount`
///   |
/// 3 | = begin("a").where(x amount)
///   |                      ^^^^^^
///   = help: ...
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceErrors {
    /// Where the text came from (a file path, or `<expression>`).
    pub origin: String,
    /// The text itself.
    pub source: String,
    /// The problems, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl SourceErrors {
    /// Bundles diagnostics with the text they point into.
    pub fn new(
        origin: impl Into<String>,
        source: impl Into<String>,
        diagnostics: Vec<Diagnostic>,
    ) -> Self {
        SourceErrors {
            origin: origin.into(),
            source: source.into(),
            diagnostics,
        }
    }
}

impl fmt::Display for SourceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            diagnostics::render(&mut out, &self.origin, &self.source, d)?;
        }
        f.write_str(out.trim_end_matches('\n'))
    }
}

impl std::error::Error for SourceErrors {}

/// Why a pattern file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but holds errors.
    #[error(transparent)]
    Invalid(#[from] SourceErrors),
    /// Two files declare the same name (they would run together, indistinguishable).
    #[error("{kind} `{name}` is declared in {first} and in {second}: {kind} names must be unique")]
    Duplicate {
        /// `pattern` or `aggregate`.
        kind: &'static str,
        /// The name.
        name: String,
        /// The file that declares it first.
        first: String,
        /// The file that declares it again.
        second: String,
    },
}

//! TEMPORARY STUB until the parser lands.
use crate::error::Diagnostic;
use crate::expr::ast::Expr;
use crate::pattern::PatternDecl;

/// Errors with source.
#[derive(Debug)]
pub struct SourceErrors {
    pub origin: String,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}
impl std::fmt::Display for SourceErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{}: {d}", self.origin)?;
        }
        Ok(())
    }
}
impl std::error::Error for SourceErrors {}
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(SourceErrors),
}
pub fn parse_expr(_s: &str) -> Result<Expr, SourceErrors> {
    Err(SourceErrors { origin: String::new(), source: String::new(), diagnostics: vec![] })
}
pub fn load_str(origin: &str, source: &str) -> Result<Vec<PatternDecl>, SourceErrors> {
    Err(SourceErrors { origin: origin.into(), source: source.into(), diagnostics: vec![] })
}
pub fn load_file(path: &std::path::Path) -> Result<Vec<PatternDecl>, LoadError> {
    let s = std::fs::read_to_string(path).map_err(|e| LoadError::Io { path: path.into(), source: e })?;
    load_str(&path.display().to_string(), &s).map_err(LoadError::Invalid)
}

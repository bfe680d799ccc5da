//! TEMPORARY STUB
use crate::error::Diagnostic;
use crate::pattern::PatternDecl;
pub fn validate(_d: &PatternDecl) -> Result<(), Vec<Diagnostic>> { Ok(()) }

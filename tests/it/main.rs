//! motif's integration tests: one test binary, one module per area.

mod cli;
mod conformance;
mod differential;
mod examples;
mod parallel;
mod reference;
mod runtime;

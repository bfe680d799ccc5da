//! motif's integration tests: one test binary, one module per area.

mod aggregate;
mod any_as_next;
mod checkpoint;
mod cli;
mod compact;
mod conformance;
mod crash;
mod db;
mod differential;
mod differential_groups;
mod embed;
mod examples;
mod hostile;
#[cfg(feature = "kafka")]
mod kafka;
mod parallel;
mod records;
mod reference;
mod reference_cases;
mod runtime;

//! Checkpoints: the whole state of a run at one record boundary — the engine (every
//! worker's partitions, merged), the source's position, every sink's committed epoch —
//! with a fingerprint per pattern, a format version and a checksum, written atomically to
//! a directory that keeps the last few.
//!
//! Recovery restores the newest readable checkpoint, seeks the source back to its position
//! and truncates each file sink to what it had committed, so a run that is killed and
//! restarted writes exactly what an uninterrupted run writes.

pub mod format;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::runtime::{EngineState, Stats};
use crate::sink::SinkPosition;
use crate::source::SourcePosition;

/// One checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Its number, counting from 1; also the epoch its sinks committed.
    pub id: u64,
    /// Wall-clock time it was taken, in ms since the Unix epoch.
    pub taken_at_ms: u64,
    /// The input had been read to its end and the run finished.
    pub finished: bool,
    /// Records read from the source before it.
    pub records: u64,
    /// Where the source stands.
    pub source: Option<SourcePosition>,
    /// What each sink had committed.
    pub sinks: Vec<SinkPosition>,
    /// Counters of the run so far.
    pub stats: Stats,
    /// The engine's state (`None` once the run has finished: nothing is left open).
    pub engine: Option<EngineState>,
}

impl Checkpoint {
    /// The checkpoint file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, format::FormatError> {
        format::encode(self)
    }

    /// Reads a checkpoint file's bytes (header, checksum, payload).
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, format::FormatError> {
        format::decode(bytes)
    }
}

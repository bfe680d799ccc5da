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

use crate::aggregate::AggregateState;
use crate::runtime::{EngineState, Stats};
use crate::sink::SinkPosition;
use crate::source::SourcePosition;

/// One checkpoint. `E` is how the engine's state is held: owned when read back, or
/// borrowed from a single-threaded engine ([`crate::runtime::EngineStateRef`]) when written,
/// which serialises to the same bytes without copying the state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint<E = EngineState> {
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
    pub engine: Option<E>,
    /// The aggregations' state (`None`: the run has none, or has finished).
    pub aggregates: Option<AggregateState>,
    /// The match table's batches (`None`: matches do not go to a table).
    pub match_table: Option<crate::pipeline::MatchTableState>,
}

impl<E> Checkpoint<E> {
    /// The same checkpoint holding `engine` as its state.
    pub fn with_engine<F>(self, engine: Option<F>) -> Checkpoint<F> {
        Checkpoint {
            id: self.id,
            taken_at_ms: self.taken_at_ms,
            finished: self.finished,
            records: self.records,
            source: self.source,
            sinks: self.sinks,
            stats: self.stats,
            engine,
            aggregates: self.aggregates,
            match_table: self.match_table,
        }
    }
}

impl<E: Serialize> Checkpoint<E> {
    /// The checkpoint file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, format::FormatError> {
        format::encode(self)
    }

    /// [`Checkpoint::to_bytes`] into a buffer of `capacity` bytes to begin with (the previous
    /// checkpoint's size: a large state is written once, not copied as the buffer grows).
    pub fn to_bytes_sized(&self, capacity: usize) -> Result<Vec<u8>, format::FormatError> {
        format::encode_sized(self, capacity)
    }
}

impl Checkpoint {
    /// Reads a checkpoint file's bytes (header, checksum, payload).
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, format::FormatError> {
        format::decode(bytes)
    }
}

//! What the reading thread packs and the workers share: chunks of records, and per chunk the
//! timeline every worker walks and the decoded events each worker owns.

use std::sync::Arc;

use crate::event::Event;

/// Records per chunk.
pub(super) const CHUNK_RECORDS: usize = 1024;
/// Bytes of record text after which a chunk is sent even if it has fewer records.
pub(super) const CHUNK_BYTES: usize = 256 << 10;
/// One input record as the reading thread packed it.
pub(super) enum Entry {
    /// A JSON record: its text is `text[start..end]` of the chunk.
    Json {
        start: usize,
        end: usize,
        source: usize,
        now_ms: u64,
        /// Index into the chunk's `origins`.
        origin: usize,
        line_no: u64,
    },
    /// A step of the clocks without an event.
    Clock(ClockStep),
}

/// A step of every worker's clocks that carries no event.
#[derive(Debug, Clone, Copy)]
pub(super) enum ClockStep {
    /// A source partition ended.
    EndSource(usize),
    /// Processing time is now this.
    Tick(u64),
    /// Every watermark to at least this ([`crate::runtime::Engine::advance_watermark`]).
    Advance(i64),
    /// The input has been quiet this long ([`crate::runtime::Engine::advance_quiet`]).
    Quiet(u64),
}

impl ClockStep {
    /// Runs the step on `clocks`, each watermark it moves to `moved`.
    pub(super) fn run(
        self,
        clocks: &mut crate::runtime::front::Clocks,
        moved: &mut dyn FnMut(usize, i64),
    ) {
        match self {
            ClockStep::EndSource(source) => clocks.end_source(source, moved),
            ClockStep::Tick(now_ms) => clocks.tick(now_ms, moved),
            ClockStep::Advance(to) => clocks.advance(to, moved),
            ClockStep::Quiet(quiet_ms) => clocks.advance_quiet(quiet_ms, moved),
        }
    }
}

/// Consecutive records, numbered from `first_seq`.
pub(super) struct Chunk {
    pub(super) first_seq: u64,
    pub(super) text: String,
    pub(super) entries: Vec<Entry>,
    /// Names of the inputs the records came from (for reject reports).
    pub(super) origins: Vec<Arc<str>>,
}

impl Chunk {
    pub(super) fn starting_at(first_seq: u64) -> Chunk {
        Chunk {
            first_seq,
            text: String::with_capacity(CHUNK_BYTES + 4096),
            entries: Vec::with_capacity(CHUNK_RECORDS),
            origins: Vec::new(),
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.entries.len() >= CHUNK_RECORDS || self.text.len() >= CHUNK_BYTES
    }
}

/// One step of a chunk's timeline, in input order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    /// Record `seq` has an event of `pattern` at `time` (`None`: the pattern orders by
    /// arrival), owned by worker `owner`.
    Event {
        seq: u64,
        pattern: usize,
        owner: usize,
        source: usize,
        time: Option<i64>,
        now_ms: u64,
    },
    /// Step `seq` moves the clocks without an event.
    Clock { seq: u64, step: ClockStep },
}

/// A decoded event on its way to the worker that owns its key.
pub(super) struct Owned {
    pub(super) key: Option<crate::key::KeyBytes>,
    pub(super) hash: u64,
    pub(super) event: Event,
}

/// How many own events ahead of the one being matched a worker starts loading (they were
/// decoded on another core, or long enough ago to have left the nearest caches).
pub(super) const PREFETCH_AHEAD: usize = 8;

/// A worker's own events of a chunk, taken in timeline order.
pub(super) struct OwnEvents(pub(super) std::vec::IntoIter<Owned>);

impl OwnEvents {
    /// The next event, after asking the processor to load the rows of the ones soon after it
    /// and, a little closer, the strings those rows point to.
    pub(super) fn take(&mut self) -> Option<Owned> {
        let ahead = self.0.as_slice();
        if let Some(o) = ahead.get(PREFETCH_AHEAD) {
            o.event.prefetch();
        }
        if let Some(o) = ahead.get(PREFETCH_AHEAD / 2) {
            o.event.prefetch_strings();
        }
        self.0.next()
    }
}

/// What one worker gets of a decoded chunk: the shared timeline and its own events, in
/// timeline order.
pub(super) struct Share {
    pub(super) timeline: Arc<Vec<Step>>,
    pub(super) events: Vec<Owned>,
    /// The chunk's last record (progress is reported up to it even when no record of the
    /// chunk had an event, say because all were rejected).
    pub(super) last_seq: u64,
}

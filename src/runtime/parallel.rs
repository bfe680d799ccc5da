//! Parallel execution: the calling thread only reads and packs records into chunks; the
//! workers decode the chunks (each a share of them) and match (each its share of the keys).
//!
//! Chunk `k` goes to worker `k mod N`, which decodes it and reads every record's event time
//! and key: it keeps the chunk's *timeline* (per record and pattern: time, source, owning
//! worker) for everybody and hands each worker the decoded events of its own keys. Every
//! worker then walks every timeline in chunk order with its own copy of the [`Clocks`], so
//! all of them decide lateness and watermarks exactly as one thread would, and feeds its
//! shard its own events and every watermark. Each key therefore sees the same sequence of
//! events and watermarks whatever the number of workers, and there are no locks on the hot
//! path. Decoding, the dearest step before matching, is spread over the workers; only the
//! clock step (a comparison and a maximum per event) is done by all of them.
//!
//! Every output is tagged with the number of the input record that caused it (the record
//! whose arrival moved the watermark; `u64::MAX` for the end of input). With `ordered`, the
//! collector releases outputs sorted by (record, text), a deterministic order whatever the
//! number of workers.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::event::{DecodeError, Event};
use crate::nfa::{CompileError, Nfa};
use crate::output::{self, OutputFormat};
use crate::pattern::PatternDecl;
use crate::runtime::front::{shard_of, Admission, Clocks, Decoder, KeyedEvent, PatternClock};
use crate::runtime::shard::{PatternShardState, Shard, ShardOutput};
use crate::runtime::state::{self, EngineState, RestoreError, RestoreReport};
use crate::runtime::{compile_all, Compiled, EngineOptions, Output, Stats};

/// Records per chunk.
const CHUNK_RECORDS: usize = 1024;
/// Bytes of record text after which a chunk is sent even if it has fewer records.
const CHUNK_BYTES: usize = 256 << 10;
/// Chunks sent ahead of the slowest worker, per worker (bounds memory in flight).
const WINDOW_PER_WORKER: u64 = 4;

pub use crate::output::Stream;

/// One rendered output line with the input record that caused it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Line {
    /// Input record number (0-based), `u64::MAX` for the end of input.
    pub seq: u64,
    /// Which output it belongs to.
    pub stream: Stream,
    /// The JSON line, with its newline.
    pub text: String,
    /// Whether it is a timed-out partial match.
    pub timed_out: bool,
    /// For a rejected record: a one-line human message (for stderr).
    pub human: Option<String>,
}

/// One input record as the reading thread packed it.
enum Entry {
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
    /// A source partition ended.
    EndSource(usize),
    /// Processing time is now this.
    Tick(u64),
}

/// Consecutive records, numbered from `first_seq`.
struct Chunk {
    first_seq: u64,
    text: String,
    entries: Vec<Entry>,
    /// Names of the inputs the records came from (for reject reports).
    origins: Vec<String>,
}

impl Chunk {
    fn starting_at(first_seq: u64) -> Chunk {
        Chunk {
            first_seq,
            text: String::with_capacity(CHUNK_BYTES + 4096),
            entries: Vec::with_capacity(CHUNK_RECORDS),
            origins: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= CHUNK_RECORDS || self.text.len() >= CHUNK_BYTES
    }
}

/// One step of a chunk's timeline, in input order.
#[derive(Debug, Clone, Copy)]
enum Step {
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
    /// Record `seq`: source partition `source` ended.
    EndSource { seq: u64, source: usize },
    /// Record `seq`: processing time is `now_ms`.
    Tick { seq: u64, now_ms: u64 },
}

/// A decoded event on its way to the worker that owns its key.
struct Owned {
    key: Option<crate::key::KeyBytes>,
    hash: u64,
    event: Event,
}

/// How many own events ahead of the one being matched a worker starts loading (they were
/// decoded on another core, or long enough ago to have left the nearest caches).
const PREFETCH_AHEAD: usize = 8;

/// A worker's own events of a chunk, taken in timeline order.
struct OwnEvents(std::vec::IntoIter<Owned>);

impl OwnEvents {
    /// The next event, after asking the processor to load the rows of the ones soon after it
    /// and, a little closer, the strings those rows point to.
    fn take(&mut self) -> Option<Owned> {
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
struct Share {
    timeline: Arc<Vec<Step>>,
    events: Vec<Owned>,
    /// The chunk's last record (progress is reported up to it even when no record of the
    /// chunk had an event, say because all were rejected).
    last_seq: u64,
}

enum Inbox {
    /// Chunk number `k` to decode.
    Decode(u64, Chunk),
    /// This worker's share of chunk `k`.
    Share(u64, Share),
    /// The input has `k` chunks in all.
    End(u64),
    /// Report the state once chunks `0..k` are processed, before any later one.
    Snapshot(u64),
    /// Another worker failed: stop.
    Abort,
}

struct WorkerReport {
    lines: Vec<Line>,
    /// Chunks fully processed, and the last record of those.
    progress: Option<(u64, u64)>,
    dropped_runs: u64,
    watermark_lag: Option<i64>,
    finished: bool,
    failed: Option<String>,
    /// The worker's state, asked for by [`Inbox::Snapshot`].
    snapshot: Option<Box<WorkerState>>,
}

/// One worker's state at a snapshot: its clocks (the same in every worker) and its shard.
struct WorkerState {
    clocks: Vec<PatternClock>,
    shard: Vec<PatternShardState>,
}

impl WorkerReport {
    fn lines(lines: Vec<Line>) -> WorkerReport {
        WorkerReport {
            lines,
            progress: None,
            dropped_runs: 0,
            watermark_lag: None,
            finished: false,
            failed: None,
            snapshot: None,
        }
    }
}

/// Why a parallel engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// A pattern does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The operating system refused a worker thread.
    #[error("cannot start a worker thread: {0}")]
    Spawn(std::io::Error),
    /// A worker thread failed; the run stopped early.
    #[error("{0}")]
    Worker(String),
    /// The state to start from does not fit the patterns.
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// One worker: a decoder for the chunks it is given, clocks in step with every other
/// worker's, and the shard of its keys.
struct Worker {
    id: usize,
    workers: usize,
    decoder: Decoder,
    clocks: Clocks,
    shard: Shard,
    nfas: Vec<Arc<Nfa>>,
    /// How output lines are written (rendering happens here, on the worker).
    format: OutputFormat,
    inboxes: Vec<Sender<Inbox>>,
    reports: Sender<(usize, WorkerReport)>,
    out: Vec<ShardOutput>,
}

/// One output of record `seq` as a line; `origin`, `line_no` and `record` name the record in
/// a reject report.
fn render(
    (nfas, format): (&[Arc<Nfa>], OutputFormat),
    seq: u64,
    o: &Output,
    origin: &str,
    line_no: u64,
    record: &str,
) -> Line {
    let mut text = String::new();
    let r = output::write_output_as(format, &mut text, |p| &*nfas[p], o, origin, line_no, record);
    Line {
        seq,
        stream: r.stream,
        text,
        timed_out: r.timed_out,
        human: r.human,
    }
}

impl Worker {
    fn run(mut self, inbox: Receiver<Inbox>) {
        let mut next = 0u64;
        let mut shares: BTreeMap<u64, Share> = BTreeMap::new();
        let mut total = None;
        let mut snapshot_at = None;
        while let Ok(msg) = inbox.recv() {
            match msg {
                Inbox::Decode(k, chunk) => {
                    let mine = self.decode(k, chunk);
                    shares.insert(k, mine);
                }
                Inbox::Share(k, share) => {
                    shares.insert(k, share);
                }
                Inbox::End(k) => total = Some(k),
                Inbox::Snapshot(k) => snapshot_at = Some(k),
                Inbox::Abort => return,
            }
            loop {
                if snapshot_at == Some(next) {
                    snapshot_at = None;
                    let state = WorkerState {
                        clocks: self.clocks.snapshot(),
                        shard: self.shard.snapshot(),
                    };
                    let report = WorkerReport {
                        snapshot: Some(Box::new(state)),
                        ..WorkerReport::lines(Vec::new())
                    };
                    if self.reports.send((self.id, report)).is_err() {
                        return;
                    }
                }
                let Some(share) = shares.remove(&next) else {
                    break;
                };
                next += 1;
                let last = share.last_seq;
                let lines = self.process(share);
                let report = WorkerReport {
                    progress: Some((next, last)),
                    dropped_runs: self.shard.dropped_runs(),
                    watermark_lag: self.clocks.watermark_lag(),
                    ..WorkerReport::lines(lines)
                };
                if self.reports.send((self.id, report)).is_err() {
                    return;
                }
            }
            if total == Some(next) {
                self.finish();
                return;
            }
        }
    }

    fn reject(
        &self,
        seq: u64,
        pattern: Option<usize>,
        reason: DecodeError,
        chunk: &Chunk,
        e: &Entry,
    ) -> Line {
        let (origin, line_no, record) = match e {
            Entry::Json {
                start,
                end,
                origin,
                line_no,
                ..
            } => (
                chunk.origins.get(*origin).map_or("", String::as_str),
                *line_no,
                chunk.text.get(*start..*end).unwrap_or(""),
            ),
            _ => ("", 0, ""),
        };
        let o = Output::Reject { pattern, reason };
        render((&self.nfas, self.format), seq, &o, origin, line_no, record)
    }

    /// Decodes chunk `k`: sends every other worker its share, reports the rejected records,
    /// and returns this worker's own share.
    fn decode(&mut self, k: u64, chunk: Chunk) -> Share {
        let patterns = self.decoder.patterns();
        let mut timeline = Vec::with_capacity(chunk.entries.len() * patterns);
        let mut events: Vec<Vec<Owned>> = (0..self.workers)
            .map(|_| Vec::with_capacity(chunk.entries.len() * patterns / self.workers + 16))
            .collect();
        let mut rejects = Vec::new();
        for (j, e) in chunk.entries.iter().enumerate() {
            let seq = chunk.first_seq + j as u64;
            match *e {
                Entry::Json {
                    start,
                    end,
                    source,
                    now_ms,
                    ..
                } => {
                    let line = chunk.text.get(start..end).unwrap_or("");
                    let row = match self.decoder.decode(line) {
                        Ok(row) => row,
                        Err(reason) => {
                            rejects.push(self.reject(seq, None, reason, &chunk, e));
                            continue;
                        }
                    };
                    let workers = self.workers;
                    self.decoder
                        .for_each_pattern(row, Arc::from(line.trim()), |i, read| {
                            let pe = match read {
                                Ok(pe) => pe,
                                Err(reason) => {
                                    rejects.push(self.reject(seq, Some(i), reason, &chunk, e));
                                    return;
                                }
                            };
                            let owner = shard_of(pe.hash, workers);
                            timeline.push(Step::Event {
                                seq,
                                pattern: i,
                                owner,
                                source,
                                time: pe.time,
                                now_ms,
                            });
                            events[owner].push(Owned {
                                key: pe.key,
                                hash: pe.hash,
                                event: Event {
                                    // Set when the clocks admit it (arrival order without a
                                    // time field).
                                    time: pe.time.unwrap_or(0),
                                    fields: pe.fields,
                                    raw: pe.raw,
                                },
                            });
                        });
                }
                Entry::EndSource(source) => timeline.push(Step::EndSource { seq, source }),
                Entry::Tick(now_ms) => timeline.push(Step::Tick { seq, now_ms }),
            }
        }
        if !rejects.is_empty() {
            // Before any progress report that covers these records, so an ordered collector
            // holds them in time.
            let _ = self.reports.send((self.id, WorkerReport::lines(rejects)));
        }
        let timeline = Arc::new(timeline);
        let last_seq = (chunk.first_seq + chunk.entries.len() as u64).saturating_sub(1);
        let mut mine = None;
        for (w, events) in events.into_iter().enumerate() {
            let share = Share {
                timeline: Arc::clone(&timeline),
                events,
                last_seq,
            };
            if w == self.id {
                mine = Some(share);
            } else {
                // A worker that has gone has reported why; the engine is stopping.
                let _ = self.inboxes[w].send(Inbox::Share(k, share));
            }
        }
        mine.unwrap_or(Share {
            timeline,
            events: Vec::new(),
            last_seq,
        })
    }

    /// Walks a chunk's timeline: clocks for every event, the shard for this worker's own.
    /// Returns the output lines.
    fn process(&mut self, share: Share) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut events = OwnEvents(share.events.into_iter());
        for step in share.timeline.iter() {
            match *step {
                Step::Event {
                    seq,
                    pattern,
                    owner,
                    source,
                    time,
                    now_ms,
                } => {
                    let mine = owner == self.id;
                    match self.clocks.admit(pattern, time, source, now_ms) {
                        Admission::Late { time, watermark } => {
                            if let Some(o) = mine.then(|| events.take()).flatten() {
                                let late = Output::Late {
                                    pattern,
                                    raw: o.event.raw,
                                    time,
                                    watermark,
                                };
                                lines.push(render(
                                    (&self.nfas, self.format),
                                    seq,
                                    &late,
                                    "",
                                    0,
                                    "",
                                ));
                            }
                        }
                        Admission::OnTime {
                            time,
                            arrival,
                            watermark,
                            advanced,
                        } => {
                            if let Some(mut o) = mine.then(|| events.take()).flatten() {
                                o.event.time = time;
                                self.shard.on_event(
                                    KeyedEvent {
                                        pattern,
                                        key: o.key,
                                        hash: o.hash,
                                        arrival,
                                        watermark,
                                        event: o.event,
                                    },
                                    &mut self.out,
                                );
                            }
                            if let Some(wm) = advanced {
                                self.shard.on_watermark(pattern, wm, &mut self.out);
                            }
                        }
                    }
                    self.drain(seq, &mut lines);
                }
                Step::EndSource { seq, source } => {
                    self.advance_clocks(|c, moved| c.end_source(source, moved));
                    self.drain(seq, &mut lines);
                }
                Step::Tick { seq, now_ms } => {
                    self.advance_clocks(|c, moved| c.tick(now_ms, moved));
                    self.drain(seq, &mut lines);
                }
            }
        }
        lines
    }

    /// Runs a step of the clocks that is not an event (a source ended, a tick, the end of
    /// input) and gives the shard every watermark it moves.
    fn advance_clocks(&mut self, step: impl FnOnce(&mut Clocks, &mut dyn FnMut(usize, i64))) {
        let (shard, out) = (&mut self.shard, &mut self.out);
        step(&mut self.clocks, &mut |p, wm| {
            shard.on_watermark(p, wm, out)
        });
    }

    fn drain(&mut self, seq: u64, lines: &mut Vec<Line>) {
        if !self.out.is_empty() {
            let how = (&self.nfas[..], self.format);
            lines.extend(
                self.out
                    .drain(..)
                    .map(|o| render(how, seq, &Output::from(o), "", 0, "")),
            );
        }
    }

    /// End of input: watermarks to +∞, the last outputs, and the final report.
    fn finish(&mut self) {
        self.advance_clocks(|c, moved| c.finish(moved));
        let mut lines = Vec::new();
        self.drain(u64::MAX, &mut lines);
        let report = WorkerReport {
            progress: Some((u64::MAX, u64::MAX)),
            dropped_runs: self.shard.dropped_runs(),
            finished: true,
            ..WorkerReport::lines(lines)
        };
        let _ = self.reports.send((self.id, report));
    }
}

/// A multi-threaded engine.
pub struct ParallelEngine {
    nfas: Vec<Arc<Nfa>>,
    compiled: Compiled,
    /// Worker states received for the snapshot being taken.
    snapshots: Vec<Option<Box<WorkerState>>>,
    inboxes: Vec<Sender<Inbox>>,
    reports: Receiver<(usize, WorkerReport)>,
    handles: Vec<JoinHandle<()>>,
    chunk: Chunk,
    /// Chunks sent.
    sent: u64,
    /// Per worker: chunks processed, and the last record of those.
    done: Vec<(u64, u64)>,
    dropped: Vec<u64>,
    watermark_lag: Option<i64>,
    finished: usize,
    failed: Option<String>,
    seq: u64,
    ordered: bool,
    /// Stop at the first rejected record (see [`ParallelEngine::set_strict`]).
    strict: bool,
    /// The rejected record the engine stopped at, and its report.
    stopped: Option<(u64, String)>,
    /// Lines waiting for their turn, each with how many times it came (equal lines are
    /// distinct outputs: two matches of equal events).
    held: BTreeMap<Line, usize>,
    /// With `strict`: numbers of the records not yet final, so that a stop can say how many
    /// records came before it.
    in_flight: std::collections::VecDeque<u64>,
    /// With `strict`: records final before `in_flight`.
    records_final: u64,
    stats: Stats,
}

impl ParallelEngine {
    /// Compiles the patterns and starts `workers` worker threads.
    pub fn new(
        decls: &[PatternDecl],
        options: EngineOptions,
        workers: usize,
        ordered: bool,
    ) -> Result<ParallelEngine, ParallelError> {
        Self::resume(
            decls,
            options,
            workers,
            ordered,
            OutputFormat::JsonLines,
            None,
        )
        .map(|(e, _)| e)
    }

    /// [`ParallelEngine::new`] starting from a saved state (taken with any number of
    /// workers, or by a single-threaded [`Engine`]): see [`Engine::restore`] for how patterns
    /// are matched and what `fresh` does.
    ///
    /// [`Engine`]: crate::runtime::Engine
    /// [`Engine::restore`]: crate::runtime::Engine::restore
    pub fn resume(
        decls: &[PatternDecl],
        options: EngineOptions,
        workers: usize,
        ordered: bool,
        format: OutputFormat,
        state: Option<(EngineState, bool)>,
    ) -> Result<(ParallelEngine, RestoreReport), ParallelError> {
        let c = compile_all(decls)?;
        let workers = workers.max(1);
        let mut clocks = Clocks::new(
            &c.front,
            options.source_partitions.max(1),
            options.idle_timeout_ms,
        );
        let mut shard_states: Vec<Vec<(usize, PatternShardState)>> = vec![Vec::new(); workers];
        let mut report = RestoreReport::default();
        let mut stats = Stats::default();
        if let Some((saved, fresh)) = state {
            let prepared = state::prepare(saved, &c.targets(), &c.schema, fresh)?;
            for (i, p) in prepared.patterns.into_iter().enumerate() {
                let Some((clock, shard)) = p else { continue };
                clocks.restore_pattern(i, clock).map_err(|(saved, now)| {
                    RestoreError::Partitions {
                        name: c.patterns[i].0.name.clone(),
                        saved,
                        now,
                    }
                })?;
                for (w, part) in shard.split(workers).into_iter().enumerate() {
                    shard_states[w].push((i, part));
                }
            }
            report = prepared.report;
            stats = prepared.stats;
        }
        let nfas: Vec<Arc<Nfa>> = c.patterns.iter().map(|(n, _)| Arc::clone(n)).collect();
        let (report_tx, reports) = channel();
        let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| channel()).unzip();
        let mut engine = ParallelEngine {
            nfas: nfas.clone(),
            snapshots: Vec::new(),
            inboxes: inboxes.clone(),
            reports,
            handles: Vec::new(),
            chunk: Chunk::starting_at(0),
            sent: 0,
            done: vec![(0, 0); workers],
            dropped: vec![0; workers],
            watermark_lag: None,
            finished: 0,
            failed: None,
            seq: 0,
            ordered,
            strict: false,
            stopped: None,
            held: BTreeMap::new(),
            in_flight: std::collections::VecDeque::new(),
            records_final: 0,
            stats,
            compiled: c,
        };
        let c = &engine.compiled;
        let mut workers_made = Vec::with_capacity(workers);
        for (id, restored) in shard_states.into_iter().enumerate() {
            let mut shard = Shard::new(
                &c.patterns,
                options.timeouts,
                options.max_runs_per_key,
                options
                    .max_partial_matches_total
                    .map(|t| t.div_ceil(workers)),
            );
            for (i, part) in restored {
                shard.restore_pattern(i, part);
            }
            workers_made.push(Worker {
                id,
                workers,
                decoder: Decoder::new(c.schema.clone(), &c.front),
                clocks: clocks.clone(),
                shard,
                nfas: nfas.clone(),
                format,
                inboxes: inboxes.clone(),
                reports: report_tx.clone(),
                out: Vec::new(),
            });
        }
        for ((id, rx), worker) in receivers.into_iter().enumerate().zip(workers_made) {
            let report_tx = report_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("motif-worker-{id}"))
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| worker.run(rx));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".to_string());
                        let report = WorkerReport {
                            failed: Some(format!("worker {id} failed: {why}")),
                            ..WorkerReport::lines(Vec::new())
                        };
                        let _ = report_tx.send((id, report));
                    }
                })
                .map_err(ParallelError::Spawn);
            match handle {
                Ok(h) => engine.handles.push(h),
                Err(e) => {
                    engine.abort();
                    return Err(e);
                }
            }
        }
        Ok((engine, report))
    }

    /// The compiled patterns.
    pub fn nfa(&self, i: usize) -> &Nfa {
        &self.nfas[i]
    }

    /// How far the watermark trails the newest event time (ms), as of the last chunk the
    /// workers finished, if known.
    pub fn watermark_lag(&self) -> Option<i64> {
        self.watermark_lag
    }

    /// Counters so far (matches, late and rejected records counted as their lines reach
    /// the caller).
    pub fn stats(&self) -> Stats {
        Stats {
            dropped_runs: self.dropped.iter().sum(),
            ..self.stats
        }
    }

    /// Stop at the first rejected record: nothing caused by a later record is emitted (the
    /// workers run ahead, so lines wait until every worker is past them), and
    /// [`ParallelEngine::stopped_at`] says where it stopped.
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// With [`ParallelEngine::set_strict`]: the report of the rejected record the engine
    /// stopped at, once its line has been emitted.
    pub fn stopped_at(&self) -> Option<&str> {
        self.stopped.as_ref().map(|(_, why)| why.as_str())
    }

    /// Takes one JSON record; ready output lines go to `emit`. `origin` and `line_no` name
    /// the record in reject reports.
    pub fn push_json(
        &mut self,
        line: &str,
        origin: &str,
        line_no: u64,
        emit: &mut dyn FnMut(Line),
    ) {
        self.push_json_from(line, 0, 0, origin, line_no, emit);
    }

    /// [`ParallelEngine::push_json`] for a record of source partition `source` read at
    /// processing time `now_ms` (see [`EngineOptions::source_partitions`]).
    pub fn push_json_from(
        &mut self,
        line: &str,
        source: usize,
        now_ms: u64,
        origin: &str,
        line_no: u64,
        emit: &mut dyn FnMut(Line),
    ) {
        if self.stopped.is_some() || self.failed.is_some() {
            return;
        }
        self.stats.records += 1;
        if self.strict {
            self.in_flight.push_back(self.seq);
        }
        let c = &mut self.chunk;
        if c.origins.last().is_none_or(|o| o != origin) {
            c.origins.push(origin.to_string());
        }
        let start = c.text.len();
        c.text.push_str(line);
        c.entries.push(Entry::Json {
            start,
            end: c.text.len(),
            source,
            now_ms,
            origin: c.origins.len() - 1,
            line_no,
        });
        self.after_record(emit);
    }

    /// Source partition `source` has ended (see [`Engine::end_source`]).
    ///
    /// [`Engine::end_source`]: crate::runtime::Engine::end_source
    pub fn end_source(&mut self, source: usize, emit: &mut dyn FnMut(Line)) {
        self.chunk.entries.push(Entry::EndSource(source));
        self.after_record(emit);
    }

    /// Processing time is now `now_ms` (see [`Engine::tick`]).
    ///
    /// [`Engine::tick`]: crate::runtime::Engine::tick
    pub fn tick(&mut self, now_ms: u64, emit: &mut dyn FnMut(Line)) {
        self.chunk.entries.push(Entry::Tick(now_ms));
        self.after_record(emit);
    }

    /// Sends the records taken so far to the workers without waiting for a full chunk and
    /// waits until the workers have processed them, passing on every line they caused: for
    /// a live input that has paused, so its matches are not held back until more comes.
    pub fn flush(&mut self, emit: &mut dyn FnMut(Line)) {
        if !self.chunk.entries.is_empty() {
            self.send_chunk(emit);
        }
        self.take_reports_until(emit, |e| e.stopped.is_some() || e.slowest() >= e.sent);
        self.collect(false, emit);
    }

    fn after_record(&mut self, emit: &mut dyn FnMut(Line)) {
        self.seq += 1;
        if self.chunk.is_full() {
            self.send_chunk(emit);
            self.collect(false, emit);
        }
    }

    /// Sends the current chunk to the worker whose turn it is to decode, first waiting
    /// while the slowest worker is a full window behind.
    fn send_chunk(&mut self, emit: &mut dyn FnMut(Line)) {
        let workers = self.inboxes.len() as u64;
        self.take_reports_until(emit, |e| e.sent < e.slowest() + WINDOW_PER_WORKER * workers);
        let chunk = std::mem::replace(&mut self.chunk, Chunk::starting_at(self.seq));
        if self.failed.is_some() {
            return;
        }
        let k = self.sent;
        self.sent += 1;
        let _ = self.inboxes[(k % workers) as usize].send(Inbox::Decode(k, chunk));
    }

    /// Waits for reports, taking each, until `done` holds, a worker has failed or the
    /// workers are gone.
    fn take_reports_until(
        &mut self,
        emit: &mut dyn FnMut(Line),
        done: impl Fn(&ParallelEngine) -> bool,
    ) {
        while self.failed.is_none() && !done(self) {
            match self.reports.recv() {
                Ok(r) => self.take_report(r, emit),
                Err(_) => break,
            }
        }
    }

    /// Chunks every worker has processed.
    fn slowest(&self) -> u64 {
        self.done.iter().map(|d| d.0).min().unwrap_or(0)
    }

    fn take_report(&mut self, (id, report): (usize, WorkerReport), emit: &mut dyn FnMut(Line)) {
        if let Some(why) = report.failed {
            if self.failed.is_none() {
                self.failed = Some(why);
                self.abort();
            }
            self.finished += 1;
            return;
        }
        if let Some(p) = report.progress {
            self.dropped[id] = report.dropped_runs;
            self.done[id] = p;
        }
        if let Some(state) = report.snapshot {
            if let Some(slot) = self.snapshots.get_mut(id) {
                *slot = Some(state);
            }
        }
        if report.watermark_lag.is_some() {
            self.watermark_lag = report.watermark_lag;
        }
        if report.finished {
            self.finished += 1;
        }
        for l in report.lines {
            if self.stopped.as_ref().is_some_and(|(at, _)| l.seq > *at) {
                continue;
            }
            if self.ordered || self.strict {
                *self.held.entry(l).or_insert(0) += 1;
            } else {
                self.deliver(l, emit);
            }
        }
    }

    /// Counts a line and passes it on.
    fn deliver(&mut self, l: Line, emit: &mut dyn FnMut(Line)) {
        match l.stream {
            Stream::Match if l.timed_out => self.stats.timeouts += 1,
            Stream::Match => self.stats.matches += 1,
            Stream::Late => self.stats.late += 1,
            Stream::Reject => self.stats.rejected += 1,
        }
        emit(l);
    }

    /// Emits a held line, unless the engine stopped at an earlier rejected record; a
    /// rejected record stops a strict engine.
    fn release(&mut self, l: Line, emit: &mut dyn FnMut(Line)) {
        if let Some((at, _)) = &self.stopped {
            if l.seq > *at {
                return;
            }
        } else if self.strict && l.stream == Stream::Reject {
            let why = l
                .human
                .clone()
                .unwrap_or_else(|| l.text.trim_end().to_string());
            self.stopped = Some((l.seq, why));
            // The records read: those up to the rejected one.
            let upto = self.in_flight.iter().take_while(|s| **s <= l.seq).count() as u64;
            self.stats.records = self.records_final + upto;
            self.abort();
        }
        self.deliver(l, emit);
    }

    /// Tells every worker to stop.
    fn abort(&mut self) {
        for tx in &self.inboxes {
            let _ = tx.send(Inbox::Abort);
        }
    }

    fn collect(&mut self, until_finished: bool, emit: &mut dyn FnMut(Line)) {
        let workers = self.inboxes.len();
        loop {
            let r = if until_finished {
                if self.finished >= workers {
                    break;
                }
                match self.reports.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            } else {
                match self.reports.try_recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            self.take_report(r, emit);
        }
        // Everything caused by records up to the slowest worker's last one is final.
        let all = until_finished || self.finished >= workers;
        let safe = self.done.iter().map(|d| d.1).min().unwrap_or(0);
        while let Some((first, _)) = self.held.first_key_value() {
            if !all && (self.slowest() == 0 || first.seq > safe) {
                break;
            }
            if let Some((l, copies)) = self.held.pop_first() {
                for _ in 1..copies {
                    self.release(l.clone(), emit);
                }
                self.release(l, emit);
            }
        }
        // After the release: a line held until now has a later number than any record
        // counted final before.
        if self.slowest() > 0 && self.stopped.is_none() {
            while self.in_flight.front().is_some_and(|s| *s <= safe) {
                self.in_flight.pop_front();
                self.records_final += 1;
            }
        }
    }

    /// The whole state at the current record boundary, as a single-threaded engine would
    /// hold it: the records taken so far go to the workers, every line they cause is passed
    /// to `emit` (held lines too, with `ordered`), and each worker reports its state before
    /// it processes anything later.
    ///
    /// # Errors
    /// A worker failed, or the engine stopped at a rejected record (`strict`).
    pub fn snapshot(&mut self, emit: &mut dyn FnMut(Line)) -> Result<EngineState, ParallelError> {
        if let Some((_, why)) = &self.stopped {
            return Err(ParallelError::Worker(format!("stopped: {why}")));
        }
        if !self.chunk.entries.is_empty() {
            self.send_chunk(emit);
        }
        let workers = self.inboxes.len();
        self.snapshots = (0..workers).map(|_| None).collect();
        for tx in &self.inboxes {
            let _ = tx.send(Inbox::Snapshot(self.sent));
        }
        self.take_reports_until(emit, |e| e.snapshots.iter().all(Option::is_some));
        if let Some(why) = &self.failed {
            return Err(ParallelError::Worker(why.clone()));
        }
        // Every line caused by the records so far has arrived: pass on the held ones.
        self.collect(false, emit);
        let mut states: Vec<WorkerState> = self.snapshots.drain(..).flatten().map(|b| *b).collect();
        if states.len() != workers {
            return Err(ParallelError::Worker(
                "a worker stopped before reporting its state".into(),
            ));
        }
        let clocks = std::mem::take(&mut states[0].clocks);
        Ok(EngineState::assemble(
            &self.compiled,
            clocks,
            states.into_iter().map(|s| s.shard).collect(),
            self.stats(),
        ))
    }

    /// Ends the input: watermarks to +∞, workers drained and joined, every line emitted.
    ///
    /// # Errors
    /// A worker failed (its panic message): the run stopped early.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Line)) -> Result<Stats, ParallelError> {
        if self.stopped.is_none() && self.failed.is_none() {
            if !self.chunk.entries.is_empty() {
                self.send_chunk(emit);
            }
            for tx in &self.inboxes {
                let _ = tx.send(Inbox::End(self.sent));
            }
        }
        self.collect(true, emit);
        self.inboxes.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        match self.failed.take() {
            Some(why) => Err(ParallelError::Worker(why)),
            None => Ok(self.stats()),
        }
    }
}

impl Drop for ParallelEngine {
    /// An engine dropped before [`ParallelEngine::finish`] stops its workers.
    fn drop(&mut self) {
        self.abort();
    }
}

//! Parallel execution: the front (decode, time, watermarks, routing) on the calling thread,
//! shards on worker threads, keys spread by hash.
//!
//! Each worker owns its keys, so there are no locks on the hot path. The front sends every
//! worker the watermark advances in input order alongside its events (coalesced per batch),
//! so each key sees exactly the same sequence of events and watermarks as with one worker:
//! results do not depend on the number of workers. Bounded channels give back-pressure.
//!
//! Every output is tagged with the number of the input record that caused it (the record
//! whose arrival moved the watermark; `u64::MAX` for the end of input). With `ordered`, the
//! collector releases outputs sorted by (record, text), a deterministic order whatever the
//! number of workers.

use std::collections::BTreeSet;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::nfa::{CompileError, Nfa};
use crate::output;
use crate::pattern::PatternDecl;
use crate::runtime::front::{shard_of, Front, KeyedEvent, Routed};
use crate::runtime::shard::{Shard, ShardOutput};
use crate::runtime::{compile_all, EngineOptions, Output, Stats};
use crate::value::Value;

const BATCH: usize = 1024;
const CHANNEL_BATCHES: usize = 16;

/// Where an output line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    /// A match or a timed-out partial match.
    Match,
    /// A late event.
    Late,
    /// A rejected record.
    Reject,
}

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

enum Msg {
    Event { seq: u64, event: KeyedEvent },
    Watermark { pattern: usize, wm: i64, seq: u64 },
}

struct WorkerReport {
    lines: Vec<Line>,
    /// Every record up to this one has been fully processed by the worker.
    upto: Option<u64>,
    dropped_runs: u64,
    finished: bool,
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
}

/// A multi-threaded engine.
pub struct ParallelEngine {
    front: Front,
    nfas: Vec<Arc<Nfa>>,
    senders: Vec<SyncSender<(u64, Vec<Msg>)>>,
    buffers: Vec<Vec<Msg>>,
    reports: Receiver<(usize, WorkerReport)>,
    handles: Vec<JoinHandle<()>>,
    progress: Vec<u64>,
    dropped: Vec<u64>,
    seq: u64,
    ordered: bool,
    held: BTreeSet<Line>,
    routed: Vec<Routed>,
    notices: Vec<Output>,
    stats: Stats,
}

fn render(nfas: &[Arc<Nfa>], seq: u64, o: &ShardOutput) -> Line {
    let mut text = String::new();
    output::write_match(&mut text, &nfas[o.pattern], o.key.as_deref(), &o.m);
    Line {
        seq,
        stream: Stream::Match,
        text,
        timed_out: o.m.timed_out.is_some(),
        human: None,
    }
}

fn worker(
    id: usize,
    mut shard: Shard,
    nfas: Vec<Arc<Nfa>>,
    input: Receiver<(u64, Vec<Msg>)>,
    reports: Sender<(usize, WorkerReport)>,
) {
    let mut out = Vec::new();
    while let Ok((upto, batch)) = input.recv() {
        let mut lines = Vec::new();
        for m in batch {
            match m {
                Msg::Event { seq, event } => {
                    shard.on_event(event, &mut out);
                    lines.extend(out.drain(..).map(|o| render(&nfas, seq, &o)));
                }
                Msg::Watermark { pattern, wm, seq } => {
                    shard.on_watermark(pattern, wm, &mut out);
                    lines.extend(out.drain(..).map(|o| render(&nfas, seq, &o)));
                }
            }
        }
        let report = WorkerReport {
            lines,
            upto: Some(upto),
            dropped_runs: shard.dropped_runs(),
            finished: upto == u64::MAX,
        };
        if reports.send((id, report)).is_err() {
            return;
        }
    }
}

impl ParallelEngine {
    /// Compiles the patterns and starts `workers` worker threads.
    pub fn new(
        decls: &[PatternDecl],
        options: EngineOptions,
        workers: usize,
        ordered: bool,
    ) -> Result<ParallelEngine, ParallelError> {
        let c = compile_all(decls)?;
        let nfas: Vec<Arc<Nfa>> = c.patterns.iter().map(|(n, _)| Arc::clone(n)).collect();
        let workers = workers.max(1);
        let (report_tx, reports) = channel();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for id in 0..workers {
            let (tx, rx) = sync_channel(CHANNEL_BATCHES);
            let shard = Shard::new(
                &c.patterns,
                options.timeouts,
                options.max_runs_per_key,
                options
                    .max_partial_matches_total
                    .map(|t| t.div_ceil(workers)),
            );
            let nfas = nfas.clone();
            let report_tx = report_tx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("motif-worker-{id}"))
                    .spawn(move || worker(id, shard, nfas, rx, report_tx))
                    .map_err(ParallelError::Spawn)?,
            );
            senders.push(tx);
        }
        Ok(ParallelEngine {
            front: Front::new(
                c.schema,
                c.front,
                options.source_partitions.max(1),
                options.idle_timeout_ms,
            ),
            nfas,
            senders,
            buffers: (0..workers).map(|_| Vec::with_capacity(BATCH)).collect(),
            reports,
            handles,
            progress: vec![0; workers],
            dropped: vec![0; workers],
            seq: 0,
            ordered,
            held: BTreeSet::new(),
            routed: Vec::new(),
            notices: Vec::new(),
            stats: Stats::default(),
        })
    }

    /// The compiled patterns.
    pub fn nfa(&self, i: usize) -> &Nfa {
        &self.nfas[i]
    }

    /// How far the watermark trails the newest event time (ms), if known.
    pub fn watermark_lag(&self) -> Option<i64> {
        self.front.watermark_lag()
    }

    /// Counters so far (matches counted as they reach the caller).
    pub fn stats(&self) -> Stats {
        Stats {
            dropped_runs: self.dropped.iter().sum(),
            ..self.stats
        }
    }

    /// Decodes one JSON record and sends it on; ready output lines go to `emit`. `origin`
    /// and `line_no` name the record in reject reports.
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
        self.stats.records += 1;
        self.front
            .route_json(line, source, now_ms, &mut self.routed, &mut self.notices);
        self.after_record(origin, line_no, line, emit);
    }

    /// Source partition `source` has ended (see [`Engine::end_source`]).
    ///
    /// [`Engine::end_source`]: crate::runtime::Engine::end_source
    pub fn end_source(&mut self, source: usize, emit: &mut dyn FnMut(Line)) {
        self.front.end_source(source, &mut self.routed);
        self.after_record("", 0, "", emit);
    }

    /// Processing time is now `now_ms` (see [`Engine::tick`]).
    ///
    /// [`Engine::tick`]: crate::runtime::Engine::tick
    pub fn tick(&mut self, now_ms: u64, emit: &mut dyn FnMut(Line)) {
        self.front.tick(now_ms, &mut self.routed);
        self.after_record("", 0, "", emit);
    }

    /// Sends one decoded record on.
    pub fn push_row(&mut self, row: Box<[Value]>, raw: Arc<str>, emit: &mut dyn FnMut(Line)) {
        self.stats.records += 1;
        self.front
            .route_row(row, raw, 0, 0, &mut self.routed, &mut self.notices);
        self.after_record("", 0, "", emit);
    }

    fn after_record(
        &mut self,
        origin: &str,
        line_no: u64,
        record: &str,
        emit: &mut dyn FnMut(Line),
    ) {
        let seq = self.seq;
        self.seq += 1;
        for n in self.notices.drain(..) {
            let mut text = String::new();
            let mut human = None;
            let stream = match &n {
                Output::Late {
                    pattern,
                    raw,
                    time,
                    watermark,
                } => {
                    self.stats.late += 1;
                    output::write_late(
                        &mut text,
                        &self.nfas[*pattern].name,
                        raw,
                        *time,
                        *watermark,
                    );
                    Stream::Late
                }
                Output::Reject { pattern, reason } => {
                    self.stats.rejected += 1;
                    let pattern = pattern.map(|p| self.nfas[p].name.as_str());
                    human = Some(output::write_rejection(
                        &mut text, pattern, reason, origin, line_no, record,
                    ));
                    Stream::Reject
                }
                // The front reports only late and rejected records.
                Output::Match { .. } => continue,
            };
            let line = Line {
                seq,
                stream,
                text,
                timed_out: false,
                human,
            };
            if self.ordered {
                self.held.insert(line);
            } else {
                emit(line);
            }
        }
        let mut full = false;
        let n = self.senders.len();
        for r in self.routed.drain(..) {
            match r {
                Routed::Event(event) => {
                    let w = shard_of(event.hash, n);
                    self.buffers[w].push(Msg::Event { seq, event });
                    full |= self.buffers[w].len() >= BATCH;
                }
                Routed::Watermark { pattern, wm } => {
                    for b in &mut self.buffers {
                        // Coalesce: a later watermark of the same pattern replaces one that
                        // no event follows yet.
                        if let Some(Msg::Watermark {
                            pattern: p,
                            wm: w,
                            seq: s,
                        }) = b.last_mut()
                        {
                            if *p == pattern {
                                *w = wm;
                                *s = seq;
                                continue;
                            }
                        }
                        b.push(Msg::Watermark { pattern, wm, seq });
                    }
                }
            }
        }
        if full {
            self.flush(seq);
        }
        self.collect(false, emit);
    }

    fn flush(&mut self, upto: u64) {
        for (tx, b) in self.senders.iter().zip(&mut self.buffers) {
            let batch = std::mem::replace(b, Vec::with_capacity(BATCH));
            // A worker that died has reported why on stderr; keep the others going.
            let _ = tx.send((upto, batch));
        }
    }

    fn collect(&mut self, block_until_finished: bool, emit: &mut dyn FnMut(Line)) {
        let mut finished = 0;
        loop {
            let msg = if block_until_finished {
                match self.reports.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            } else {
                match self.reports.try_recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            };
            let (id, report) = msg;
            self.dropped[id] = report.dropped_runs;
            if let Some(u) = report.upto {
                self.progress[id] = u;
            }
            for l in report.lines {
                if l.timed_out {
                    self.stats.timeouts += 1;
                } else {
                    self.stats.matches += 1;
                }
                if self.ordered {
                    self.held.insert(l);
                } else {
                    emit(l);
                }
            }
            if report.finished {
                finished += 1;
                if block_until_finished && finished == self.senders.len() {
                    break;
                }
            }
        }
        if self.ordered {
            // Everything caused by records before the slowest worker's progress is final.
            let safe = self.progress.iter().copied().min().unwrap_or(0);
            while let Some(first) = self.held.first() {
                if first.seq > safe && !(block_until_finished && finished == self.senders.len()) {
                    break;
                }
                if let Some(l) = self.held.pop_first() {
                    emit(l);
                }
            }
        }
    }

    /// Ends the input: watermarks to +∞, workers drained and joined, every line emitted.
    pub fn finish(mut self, emit: &mut dyn FnMut(Line)) -> Stats {
        self.front.finish(&mut self.routed);
        let seq = u64::MAX;
        for r in self.routed.drain(..) {
            if let Routed::Watermark { pattern, wm } = r {
                for b in &mut self.buffers {
                    b.push(Msg::Watermark { pattern, wm, seq });
                }
            }
        }
        self.flush(u64::MAX);
        self.collect(true, emit);
        self.senders.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        self.stats()
    }
}

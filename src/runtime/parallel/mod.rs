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
//! whose arrival moved the watermark; `u64::MAX` for the end of input), prepared on its
//! worker (see [`Prepare`]: the command line renders its lines there) and given to the
//! caller's [`Collect`] as the reports come; the collector learns when every worker is past
//! a record ([`Collect::complete`]), which is what a deterministic order or a stop at the
//! first reject needs, and the watermark moves only then (worker 0 reports them; every
//! worker's clocks move alike).

mod chunk;
mod worker;

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::nfa::{CompileError, Nfa};
use crate::pattern::PatternDecl;
use crate::runtime::front::{Clocks, Decoder};
use crate::runtime::run::{AsIs, Collect, Prepare, Run, StateOf, END_OF_INPUT};
use crate::runtime::shard::{PatternShardState, Shard};
use crate::runtime::state::{self, EngineState, RestoreError, RestoreReport};
use crate::runtime::{compile_for, Compiled, EngineOptions, Input, Stats};
use chunk::{Chunk, ClockStep, Entry};
use worker::{Inbox, Worker, WorkerReport, WorkerState};

/// Chunks sent ahead of the slowest worker, per worker (bounds memory in flight).
const WINDOW_PER_WORKER: u64 = 4;

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

/// A multi-threaded engine: outputs prepared on the workers by `P` (by default given as they
/// are, [`AsIs`]).
pub struct ParallelEngine<P: Prepare = AsIs> {
    nfas: Vec<Arc<Nfa>>,
    compiled: Compiled,
    /// Worker states received for the snapshot being taken.
    snapshots: Vec<Option<Box<WorkerState>>>,
    inboxes: Vec<Sender<Inbox>>,
    reports: Receiver<(usize, WorkerReport<P::Item>)>,
    handles: Vec<JoinHandle<()>>,
    chunk: Chunk,
    /// Chunks sent.
    sent: u64,
    /// Per worker: chunks processed, and the last record of those.
    done: Vec<(u64, u64)>,
    dropped: Vec<u64>,
    watermark_lag: Option<i64>,
    /// Per source partition, its lead past the slowest as of the last chunk worker 0
    /// finished (event-time alignment).
    leads: Vec<i64>,
    finished: usize,
    failed: Option<String>,
    seq: u64,
    /// [`Run::stop`] was called: nothing more is sent to the workers.
    stopped: bool,
    /// Watermark moves waiting until every worker is past their step.
    watermarks: VecDeque<(u64, usize, i64)>,
    /// The last step the collector was told is complete.
    completed: Option<u64>,
    stats: Stats,
}

impl ParallelEngine<AsIs> {
    /// Compiles the patterns and starts `workers` worker threads; outputs come as they are.
    pub fn new(
        decls: &[PatternDecl],
        options: EngineOptions,
        workers: usize,
    ) -> Result<ParallelEngine<AsIs>, ParallelError> {
        Self::resume(decls, options, workers, AsIs, None).map(|(e, _)| e)
    }
}

impl<P: Prepare> ParallelEngine<P> {
    /// Compiles the patterns and starts `workers` worker threads that prepare their outputs
    /// with `prepare`, from a saved state if one is given (taken with any number of
    /// workers, or by a single-threaded [`Engine`]): see [`Engine::restore`] for how
    /// patterns are matched and what the flag (`fresh`) does.
    ///
    /// [`Engine`]: crate::runtime::Engine
    /// [`Engine::restore`]: crate::runtime::Engine::restore
    pub fn resume(
        decls: &[PatternDecl],
        options: EngineOptions,
        workers: usize,
        prepare: P,
        state: Option<(EngineState, bool)>,
    ) -> Result<(ParallelEngine<P>, RestoreReport), ParallelError> {
        let c = compile_for(decls, &options)?;
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
            leads: Vec::new(),
            finished: 0,
            failed: None,
            seq: 0,
            stopped: false,
            watermarks: VecDeque::new(),
            completed: None,
            stats,
            compiled: c,
        };
        let c = &engine.compiled;
        let prepare = Arc::new(prepare);
        let mut workers_made = Vec::with_capacity(workers);
        for (id, restored) in shard_states.into_iter().enumerate() {
            let mut shard = Shard::new(
                &c.patterns,
                options.timeouts,
                options.per_key_cap(),
                options.total_cap(workers),
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
                prepare: Arc::clone(&prepare),
                watermarks: options.watermarks && id == 0,
                moved: Vec::new(),
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

    /// Counters so far (matches, late and rejected records counted as they reach the
    /// collector).
    pub fn stats(&self) -> Stats {
        Stats {
            dropped_runs: self.dropped.iter().sum(),
            ..self.stats
        }
    }

    /// Takes one JSON record (see [`Input`]); returns its step number. Outputs ready by
    /// then go to `out`.
    pub fn push_input(&mut self, input: &Input<'_>, out: &mut dyn Collect<P::Item>) -> u64 {
        let seq = self.seq;
        if self.stopped || self.failed.is_some() {
            return seq;
        }
        self.stats.records += 1;
        let c = &mut self.chunk;
        if c.origins.last().is_none_or(|o| **o != *input.origin) {
            c.origins.push(Arc::from(input.origin));
        }
        let start = c.text.len();
        c.text.push_str(input.json);
        c.entries.push(Entry::Json {
            start,
            end: c.text.len(),
            source: input.partition,
            now_ms: input.now_ms,
            origin: c.origins.len() - 1,
            line_no: if input.line > 0 {
                input.line
            } else {
                self.stats.records
            },
        });
        self.after_record(out);
        seq
    }

    /// Takes one JSON record with no position (see [`ParallelEngine::push_input`]).
    pub fn push_json(&mut self, line: &str, out: &mut dyn Collect<P::Item>) -> u64 {
        self.push_input(
            &Input {
                json: line,
                ..Input::default()
            },
            out,
        )
    }

    /// Source partition `source` has ended (see [`Engine::end_source`]).
    ///
    /// [`Engine::end_source`]: crate::runtime::Engine::end_source
    pub fn end_source(&mut self, source: usize, out: &mut dyn Collect<P::Item>) {
        self.clock_step(ClockStep::EndSource(source), out);
    }

    /// Processing time is now `now_ms` (see [`Engine::tick`]).
    ///
    /// [`Engine::tick`]: crate::runtime::Engine::tick
    pub fn tick(&mut self, now_ms: u64, out: &mut dyn Collect<P::Item>) {
        self.clock_step(ClockStep::Tick(now_ms), out);
    }

    /// Every pattern's watermark moves to `to` if that is later (see
    /// [`Engine::advance_watermark`]).
    ///
    /// [`Engine::advance_watermark`]: crate::runtime::Engine::advance_watermark
    pub fn advance_watermark(&mut self, to: i64, out: &mut dyn Collect<P::Item>) {
        self.clock_step(ClockStep::Advance(to), out);
    }

    /// The input has been silent for `quiet_ms` of processing time (see
    /// [`Engine::advance_quiet`]).
    ///
    /// [`Engine::advance_quiet`]: crate::runtime::Engine::advance_quiet
    pub fn advance_quiet(&mut self, quiet_ms: u64, out: &mut dyn Collect<P::Item>) {
        self.clock_step(ClockStep::Quiet(quiet_ms), out);
    }

    /// A step of every worker's clocks, in input order with the records.
    fn clock_step(&mut self, step: ClockStep, out: &mut dyn Collect<P::Item>) {
        if !self.stopped {
            self.chunk.entries.push(Entry::Clock(step));
            self.after_record(out);
        }
    }

    /// Sends the records taken so far to the workers without waiting for a full chunk and
    /// waits until the workers have processed them, passing on every output they caused:
    /// for a live input that has paused, so its matches are not held back until more comes.
    pub fn flush(&mut self, out: &mut dyn Collect<P::Item>) {
        if self.stopped {
            return;
        }
        if !self.chunk.entries.is_empty() {
            self.send_chunk(out);
        }
        self.take_reports_until(out, |e| e.slowest() >= e.sent);
        self.collect(false, out);
    }

    /// Stops early: nothing taken after this is processed, and the workers stop.
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.abort();
        }
    }

    fn after_record(&mut self, out: &mut dyn Collect<P::Item>) {
        self.seq += 1;
        if self.chunk.is_full() {
            self.send_chunk(out);
            self.collect(false, out);
        }
    }

    /// Sends the current chunk to the worker whose turn it is to decode, first waiting
    /// while the slowest worker is a full window behind.
    fn send_chunk(&mut self, out: &mut dyn Collect<P::Item>) {
        let workers = self.inboxes.len() as u64;
        self.take_reports_until(out, |e| e.sent < e.slowest() + WINDOW_PER_WORKER * workers);
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
        out: &mut dyn Collect<P::Item>,
        done: impl Fn(&ParallelEngine<P>) -> bool,
    ) {
        while self.failed.is_none() && !done(self) {
            match self.reports.recv() {
                Ok(r) => self.take_report(r, out),
                Err(_) => break,
            }
        }
    }

    /// Chunks every worker has processed.
    fn slowest(&self) -> u64 {
        self.done.iter().map(|d| d.0).min().unwrap_or(0)
    }

    fn take_report(
        &mut self,
        (id, report): (usize, WorkerReport<P::Item>),
        out: &mut dyn Collect<P::Item>,
    ) {
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
        if let Some(leads) = report.leads {
            self.leads = leads;
        }
        if report.finished {
            self.finished += 1;
        }
        self.watermarks.extend(report.watermarks);
        for (seq, kind, item) in report.lines {
            self.stats.count_kind(kind);
            out.output(seq, kind, item);
        }
    }

    /// Tells every worker to stop.
    fn abort(&mut self) {
        for tx in &self.inboxes {
            let _ = tx.send(Inbox::Abort);
        }
    }

    /// Takes the reports that have come (all of them, until every worker has finished,
    /// with `until_finished`), then tells the collector which steps are complete, after
    /// the watermark moves of those steps.
    fn collect(&mut self, until_finished: bool, out: &mut dyn Collect<P::Item>) {
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
            self.take_report(r, out);
        }
        // Everything caused by records up to the slowest worker's last one has been given.
        let through = if self.finished >= workers && self.failed.is_none() && !self.stopped {
            END_OF_INPUT
        } else if self.slowest() == 0 {
            return;
        } else {
            self.done.iter().map(|d| d.1).min().unwrap_or(0)
        };
        while let Some(&(seq, pattern, wm)) = self.watermarks.front() {
            if seq > through {
                break;
            }
            self.watermarks.pop_front();
            out.watermark(seq, pattern, wm);
        }
        if self.completed.is_none_or(|c| c < through) {
            self.completed = Some(through);
            out.complete(through);
        }
    }

    /// The whole state at the current record boundary, as a single-threaded engine would
    /// hold it: the records taken so far go to the workers, every output they cause is
    /// given to `out` (and the steps completed), and each worker reports its state before
    /// it processes anything later.
    ///
    /// # Errors
    /// A worker failed, or the engine was stopped.
    pub fn snapshot(
        &mut self,
        out: &mut dyn Collect<P::Item>,
    ) -> Result<EngineState, ParallelError> {
        if self.stopped {
            return Err(ParallelError::Worker("the engine was stopped".into()));
        }
        if !self.chunk.entries.is_empty() {
            self.send_chunk(out);
        }
        let workers = self.inboxes.len();
        self.snapshots = (0..workers).map(|_| None).collect();
        for tx in &self.inboxes {
            let _ = tx.send(Inbox::Snapshot(self.sent));
        }
        self.take_reports_until(out, |e| e.snapshots.iter().all(Option::is_some));
        if let Some(why) = &self.failed {
            return Err(ParallelError::Worker(why.clone()));
        }
        // Every output caused by the records so far has arrived: complete them.
        self.collect(false, out);
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

    /// Ends the input (unless stopped): watermarks to +∞, workers drained and joined, every
    /// output given.
    ///
    /// # Errors
    /// A worker failed (its panic message): the run stopped early.
    pub fn finish(&mut self, out: &mut dyn Collect<P::Item>) -> Result<Stats, ParallelError> {
        if !self.stopped && self.failed.is_none() {
            if !self.chunk.entries.is_empty() {
                self.send_chunk(out);
            }
            for tx in &self.inboxes {
                let _ = tx.send(Inbox::End(self.sent));
            }
        }
        self.collect(true, out);
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

impl<P: Prepare> Run<P::Item> for ParallelEngine<P> {
    fn next_step(&self) -> u64 {
        self.seq
    }

    fn push(&mut self, input: &Input<'_>, out: &mut dyn Collect<P::Item>) -> u64 {
        self.push_input(input, out)
    }

    fn end_source(&mut self, partition: usize, out: &mut dyn Collect<P::Item>) {
        ParallelEngine::end_source(self, partition, out);
    }

    fn tick(&mut self, now_ms: u64, out: &mut dyn Collect<P::Item>) {
        ParallelEngine::tick(self, now_ms, out);
    }

    fn advance_watermark(&mut self, to: i64, out: &mut dyn Collect<P::Item>) {
        ParallelEngine::advance_watermark(self, to, out);
    }

    fn advance_quiet(&mut self, quiet_ms: u64, out: &mut dyn Collect<P::Item>) {
        ParallelEngine::advance_quiet(self, quiet_ms, out);
    }

    fn flush(&mut self, out: &mut dyn Collect<P::Item>) {
        ParallelEngine::flush(self, out);
    }

    fn stop(&mut self) {
        ParallelEngine::stop(self);
    }

    fn finish(&mut self, out: &mut dyn Collect<P::Item>) -> Result<Stats, ParallelError> {
        ParallelEngine::finish(self, out)
    }

    fn state(&mut self, out: &mut dyn Collect<P::Item>) -> Result<StateOf<'_>, ParallelError> {
        self.snapshot(out).map(StateOf::Owned)
    }

    fn stats(&self) -> Stats {
        ParallelEngine::stats(self)
    }

    fn open_partial_matches(&self) -> Option<usize> {
        None
    }

    fn watermark_lag(&self) -> Option<i64> {
        self.watermark_lag
    }

    fn leads(&self) -> Vec<i64> {
        self.leads.clone()
    }
}

impl<P: Prepare> Drop for ParallelEngine<P> {
    /// An engine dropped before [`ParallelEngine::finish`] stops its workers.
    fn drop(&mut self) {
        self.abort();
    }
}

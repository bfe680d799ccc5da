//! One run from source to sinks: records from a [`Source`] go through an engine (one
//! thread or several workers, the same loop) to the output sinks, with the `--strict` and
//! `--ordered` policies, the processing-time clock for idle sources, checkpoints at record
//! boundaries and recovery from the newest one.
//!
//! A checkpoint is taken between two records: the engine's state (every worker's, at the
//! same record), then every sink commits the epoch (the bytes written so far become
//! durable), then the checkpoint — the state, the source's position and each sink's
//! committed length — is written atomically. Restarting with the same checkpoint directory
//! restores the newest readable checkpoint, cuts file sinks back to their committed length
//! and seeks the source to its position, so the outputs end up byte-identical to an
//! uninterrupted run (with `ordered`, whose output order does not depend on timing).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checkpoint::format::FormatError;
use crate::checkpoint::store::{Store, StoreError};
use crate::checkpoint::Checkpoint;
use crate::nfa::CompileError;
use crate::output::{self, OutputFormat, Stream};
use crate::pattern::PatternDecl;
use crate::runtime::parallel::{Line, ParallelEngine, ParallelError};
use crate::runtime::{Engine, EngineOptions, Output, RestoreError, Stats};
use crate::sink::{FileSink, Sink, SinkError, SinkPosition, StdSink, StdStream};
use crate::source::{Source, SourceError};

/// Default time between two checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Where each output goes: a file, or (`None`) standard output for matches and standard
/// error for late events and rejects; timed-out partial matches go with the matches unless
/// they have a file of their own.
#[derive(Debug, Clone, Default)]
pub struct OutputSpec {
    /// Matches (and timed-out partial matches without a file of their own).
    pub matches: Option<PathBuf>,
    /// Timed-out partial matches.
    pub timeouts: Option<PathBuf>,
    /// Late events.
    pub late: Option<PathBuf>,
    /// Rejected records.
    pub rejects: Option<PathBuf>,
}

/// When and where checkpoints are taken.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// The directory holding them.
    pub dir: PathBuf,
    /// Time between two checkpoints.
    pub interval: Duration,
    /// Also after this many records since the last one.
    pub every_records: Option<u64>,
    /// Restore changed patterns without state, and drop the state of removed ones, instead
    /// of refusing to start.
    pub fresh_patterns: bool,
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The engine's options.
    pub engine: EngineOptions,
    /// Worker threads (1: everything on the calling thread).
    pub workers: usize,
    /// Deterministic output order: by input record, then by text.
    pub ordered: bool,
    /// Stop at the first rejected record.
    pub strict: bool,
    /// How output lines are written.
    pub format: OutputFormat,
    /// Checkpoints, if any.
    pub checkpoint: Option<CheckpointOptions>,
}

/// Why a run could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A pattern does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The parallel engine failed.
    #[error(transparent)]
    Engine(#[from] ParallelError),
    /// The checkpoint does not fit the patterns.
    #[error("cannot restore the checkpoint: {0}")]
    Restore(#[from] RestoreError),
    /// The checkpoint directory failed.
    #[error("checkpoint: {0}")]
    Store(#[from] StoreError),
    /// A checkpoint could not be written.
    #[error("checkpoint: {0}")]
    Format(#[from] FormatError),
    /// A sink failed.
    #[error("cannot write output: {0}")]
    Sink(#[from] SinkError),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An output goes elsewhere than when the checkpoint was taken.
    #[error("the checkpoint's {role} went to {saved}, this run writes them to {now}: use the same outputs, or a new checkpoint directory")]
    OutputMoved {
        /// Which output.
        role: String,
        /// Where it went.
        saved: String,
        /// Where it goes now.
        now: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Counters (over every run since the first checkpoint's, when resumed).
    pub stats: Stats,
    /// Why the run stopped early (`--strict`, a source or output error), if it did.
    pub failed: Option<String>,
    /// The checkpoint it resumed from.
    pub resumed_from: Option<u64>,
    /// Stopped by [`run`]'s `stop` flag (a signal) before the input's end.
    pub interrupted: bool,
    /// The input had already been processed to its end by an earlier run.
    pub already_finished: bool,
}

/// What the run reports as it goes (for a status line).
pub struct Progress<'a> {
    /// Counters so far.
    pub stats: &'a Stats,
    /// Open partial matches, when known without stopping the workers.
    pub partial_matches: Option<usize>,
    /// How far the watermark trails the newest event time (ms).
    pub watermark_lag: Option<i64>,
}

/// The sinks of a run, by output.
struct Outputs {
    matches: Box<dyn Sink>,
    timeouts: Option<Box<dyn Sink>>,
    late: Box<dyn Sink>,
    rejects: Box<dyn Sink>,
    /// Rejects go to standard error as one human line each (not JSON).
    rejects_human: bool,
    /// The first write error (the run stops at it).
    error: Option<SinkError>,
}

const ROLES: [&str; 4] = ["matches", "timeouts", "late", "rejects"];

fn open_sink(
    role: &str,
    path: Option<&Path>,
    std: StdStream,
    saved: Option<&[SinkPosition]>,
    header: Option<&str>,
) -> Result<Box<dyn Sink>, PipelineError> {
    let now = path.map_or_else(
        || match std {
            StdStream::Stdout => "<stdout>".to_string(),
            StdStream::Stderr => "<stderr>".to_string(),
        },
        |p| p.display().to_string(),
    );
    let pos = saved.and_then(|s| s.iter().find(|p| p.role == role));
    if let Some(pos) = pos {
        if pos.target != now {
            return Err(PipelineError::OutputMoved {
                role: role.to_string(),
                saved: pos.target.clone(),
                now,
            });
        }
    }
    let mut sink: Box<dyn Sink> = match (path, pos) {
        (Some(p), Some(pos)) => Box::new(FileSink::resume(role, p, pos)?),
        (Some(p), None) => Box::new(FileSink::create(role, p)?),
        (None, _) => Box::new(StdSink::new(role, std)),
    };
    // A header row (CSV) begins a new file, and standard output when not resuming; not
    // standard error, where rows mix with other messages.
    let begins = match (path, pos) {
        (Some(_), pos) => pos.is_none(),
        (None, _) => std == StdStream::Stdout && saved.is_none(),
    };
    if let (Some(h), true) = (header, begins) {
        sink.write(h.as_bytes())?;
    }
    Ok(sink)
}

impl Outputs {
    fn open(
        spec: &OutputSpec,
        saved: Option<&[SinkPosition]>,
        format: OutputFormat,
    ) -> Result<Outputs, PipelineError> {
        let (m, l, r) = (
            format.header(Stream::Match),
            format.header(Stream::Late),
            format.header(Stream::Reject),
        );
        let timeouts = match &spec.timeouts {
            Some(p) => Some(open_sink(ROLES[1], Some(p), StdStream::Stdout, saved, m)?),
            None => None,
        };
        let rejects = match &spec.rejects {
            Some(p) => open_sink(ROLES[3], Some(p), StdStream::Stderr, saved, r)?,
            // Rejects on stderr are one human line each, not rows.
            None => open_sink(ROLES[3], None, StdStream::Stderr, saved, None)?,
        };
        Ok(Outputs {
            matches: open_sink(
                ROLES[0],
                spec.matches.as_deref(),
                StdStream::Stdout,
                saved,
                m,
            )?,
            timeouts,
            late: open_sink(ROLES[2], spec.late.as_deref(), StdStream::Stderr, saved, l)?,
            rejects,
            rejects_human: spec.rejects.is_none(),
            error: None,
        })
    }

    fn put(&mut self, l: &Line) {
        let r = match l.stream {
            Stream::Match => match (&mut self.timeouts, l.timed_out) {
                (Some(s), true) => s.write(l.text.as_bytes()),
                _ => self.matches.write(l.text.as_bytes()),
            },
            Stream::Late => self.late.write(l.text.as_bytes()),
            Stream::Reject => match (&l.human, self.rejects_human) {
                (Some(h), true) => self.rejects.write(format!("{h}\n").as_bytes()),
                _ => self.rejects.write(l.text.as_bytes()),
            },
        };
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn sinks(&mut self) -> impl Iterator<Item = &mut Box<dyn Sink>> {
        [&mut self.matches, &mut self.late, &mut self.rejects]
            .into_iter()
            .chain(self.timeouts.as_mut())
    }

    /// Passes buffered bytes on (a live input paused).
    fn flush(&mut self) {
        let mut first = None;
        for s in self.sinks() {
            if let Err(e) = s.flush() {
                first.get_or_insert(e);
            }
        }
        if let Some(e) = first {
            self.error.get_or_insert(e);
        }
    }

    fn commit(&mut self, epoch: u64) -> Result<Vec<SinkPosition>, SinkError> {
        self.sinks().map(|s| s.commit(epoch)).collect()
    }
}

/// A single-threaded engine with the pipeline's policies: outputs rendered as lines,
/// numbered by input step, sorted within a step with `ordered` (the order the parallel
/// engine's `ordered` gives), and a stop at the first rejected record with `strict`.
struct Single {
    engine: Engine,
    outs: Vec<Output>,
    batch: Vec<Line>,
    seq: u64,
    ordered: bool,
    strict: bool,
    format: OutputFormat,
    stopped: Option<String>,
}

impl Single {
    fn emit(&mut self, origin: &str, line_no: u64, record: &str, emit: &mut dyn FnMut(Line)) {
        let Single { engine, outs, .. } = self;
        for o in outs.drain(..) {
            let mut text = String::new();
            let r = output::write_output_as(
                self.format,
                &mut text,
                |p| engine.nfa(p),
                &o,
                origin,
                line_no,
                record,
            );
            if self.strict && r.stream == Stream::Reject && self.stopped.is_none() {
                let why = r
                    .human
                    .clone()
                    .unwrap_or_else(|| text.trim_end().to_string());
                self.stopped = Some(format!("{why}; stopping (--strict)"));
            }
            let l = Line {
                seq: self.seq,
                stream: r.stream,
                text,
                timed_out: r.timed_out,
                human: r.human,
            };
            if self.ordered {
                self.batch.push(l);
            } else {
                emit(l);
            }
        }
        if self.ordered {
            self.batch.sort_unstable();
            for l in self.batch.drain(..) {
                emit(l);
            }
        }
        self.seq = self.seq.saturating_add(1);
    }
}

/// The engine of a run: one thread or several workers.
enum Driver {
    Single(Box<Single>),
    Parallel(Box<ParallelEngine>),
}

impl Driver {
    fn push(
        &mut self,
        json: &str,
        partition: usize,
        now_ms: u64,
        origin: &str,
        line: u64,
        emit: &mut dyn FnMut(Line),
    ) {
        match self {
            Driver::Single(s) => {
                s.engine
                    .push_json_from(json, partition, now_ms, &mut s.outs);
                s.emit(origin, line, json, emit);
            }
            Driver::Parallel(p) => p.push_json_from(json, partition, now_ms, origin, line, emit),
        }
    }

    fn end_source(&mut self, partition: usize, emit: &mut dyn FnMut(Line)) {
        match self {
            Driver::Single(s) => {
                s.engine.end_source(partition, &mut s.outs);
                s.emit("", 0, "", emit);
            }
            Driver::Parallel(p) => p.end_source(partition, emit),
        }
    }

    fn tick(&mut self, now_ms: u64, emit: &mut dyn FnMut(Line)) {
        match self {
            Driver::Single(s) => {
                s.engine.tick(now_ms, &mut s.outs);
                s.emit("", 0, "", emit);
            }
            Driver::Parallel(p) => p.tick(now_ms, emit),
        }
    }

    /// A live input paused: pass on what the workers hold.
    fn flush(&mut self, emit: &mut dyn FnMut(Line)) {
        if let Driver::Parallel(p) = self {
            p.flush(emit);
        }
    }

    fn stopped_at(&self) -> Option<String> {
        match self {
            Driver::Single(s) => s.stopped.clone(),
            Driver::Parallel(p) => p
                .stopped_at()
                .map(|why| format!("{why}; stopping (--strict)")),
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(Line)) -> Result<Stats, PipelineError> {
        match self {
            Driver::Single(s) => {
                s.seq = u64::MAX;
                s.engine.finish(&mut s.outs);
                s.emit("", 0, "", emit);
                Ok(s.engine.stats())
            }
            Driver::Parallel(p) => Ok(p.finish(emit)?),
        }
    }

    fn stats(&self) -> Stats {
        match self {
            Driver::Single(s) => s.engine.stats(),
            Driver::Parallel(p) => p.stats(),
        }
    }

    fn progress(&self, report: &mut dyn FnMut(&Progress<'_>)) {
        let stats = self.stats();
        let (partial_matches, watermark_lag) = match self {
            Driver::Single(s) => (
                Some(s.engine.open_partial_matches()),
                s.engine.watermark_lag(),
            ),
            Driver::Parallel(p) => (None, p.watermark_lag()),
        };
        report(&Progress {
            stats: &stats,
            partial_matches,
            watermark_lag,
        });
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Checkpoints of a run: where, how often, and the next one's number.
struct Checkpointer {
    store: Store,
    options: CheckpointOptions,
    next_id: u64,
    last: Instant,
    records_at_last: u64,
    /// Size of the last checkpoint written (the next one's buffer starts that large).
    last_size: usize,
}

impl Checkpointer {
    /// Whether a checkpoint is due after `records` records (the clock is read every 256).
    fn due(&mut self, records: u64) -> bool {
        let since = records - self.records_at_last.min(records);
        if self
            .options
            .every_records
            .is_some_and(|n| since >= n.max(1))
        {
            return true;
        }
        since > 0 && records.is_multiple_of(256) && self.last.elapsed() >= self.options.interval
    }
}

/// Processing time for idle source partitions: milliseconds since the run started, read
/// only when an idle timeout is set.
struct Clock {
    start: Instant,
    ticking: bool,
}

impl Clock {
    fn now_ms(&self) -> u64 {
        if self.ticking {
            u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        }
    }
}

/// Runs `decls` over `records` into the outputs of `spec`, resuming from the newest
/// checkpoint when checkpoints are on. `stop` (set by a signal handler, say) ends the run
/// at the next record boundary with a final checkpoint. Human notices (a checkpoint
/// skipped as corrupt, patterns restored fresh) go to `notice`; the status goes to
/// `progress` after every record (rate-limit it there).
pub fn run(
    decls: &[PatternDecl],
    options: &PipelineOptions,
    records: &mut dyn Source,
    spec: &OutputSpec,
    stop: &AtomicBool,
    notice: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<Summary, PipelineError> {
    let mut checkpointer = None;
    let mut resumed = None;
    if let Some(ck) = &options.checkpoint {
        let store = Store::open(&ck.dir)?;
        let (newest, skipped) = store.load_newest(Checkpoint::from_bytes)?;
        for s in &skipped {
            notice(&format!(
                "motif: checkpoint {} skipped ({}); using the one before it",
                s.path.display(),
                s.error
            ));
        }
        let next_id = newest.as_ref().map_or(1, |(id, _)| id + 1);
        resumed = newest.map(|(_, cp)| cp);
        checkpointer = Some(Checkpointer {
            store,
            options: ck.clone(),
            next_id,
            last: Instant::now(),
            records_at_last: 0,
            last_size: 0,
        });
    }
    if let Some(cp) = &resumed {
        if cp.finished {
            notice(&format!(
                "motif: checkpoint {} says this input was processed to its end; nothing to do (remove the checkpoint directory to run again)",
                cp.id
            ));
            return Ok(Summary {
                stats: cp.stats,
                resumed_from: Some(cp.id),
                already_finished: true,
                ..Summary::default()
            });
        }
    }
    let mut outputs = Outputs::open(
        spec,
        resumed.as_ref().map(|c| c.sinks.as_slice()),
        options.format,
    )?;
    if let Some(pos) = resumed.as_ref().and_then(|c| c.source.as_ref()) {
        records.seek(pos)?;
    }
    if let Some(cp) = &resumed {
        notice(&format!(
            "motif: resumed from checkpoint {} ({} records read before it)",
            cp.id, cp.records
        ));
    }
    let resumed_from = resumed.as_ref().map(|c| c.id);
    let fresh = options
        .checkpoint
        .as_ref()
        .is_some_and(|c| c.fresh_patterns);
    let state = resumed.and_then(|c| c.engine);
    let mut driver = if options.workers <= 1 {
        let mut engine = Engine::new(decls, options.engine)?;
        let report = match state {
            Some(s) => Some(engine.restore(s, fresh)?),
            None => None,
        };
        report_restore(report.as_ref(), notice);
        Driver::Single(Box::new(Single {
            engine,
            outs: Vec::new(),
            batch: Vec::new(),
            seq: 0,
            ordered: options.ordered,
            strict: options.strict,
            format: options.format,
            stopped: None,
        }))
    } else {
        let (mut engine, report) = ParallelEngine::resume(
            decls,
            options.engine,
            options.workers,
            options.ordered,
            options.format,
            state.map(|s| (s, fresh)),
        )?;
        if resumed_from.is_some() {
            report_restore(Some(&report), notice);
        }
        engine.set_strict(options.strict);
        Driver::Parallel(Box::new(engine))
    };
    if let Some(ck) = checkpointer.as_mut() {
        ck.records_at_last = driver.stats().records;
    }
    let clock = Clock {
        start: Instant::now(),
        ticking: options.engine.idle_timeout_ms.is_some(),
    };
    let mut failed = None;
    let mut interrupted = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let rec = match records.next_record() {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                failed = Some(format!("motif: {e}"));
                break;
            }
        };
        let mut emit = |l: Line| outputs.put(&l);
        driver.push(
            rec.json,
            rec.partition,
            clock.now_ms(),
            rec.origin,
            rec.line,
            &mut emit,
        );
        while let Some(p) = records.ended() {
            driver.end_source(p, &mut emit);
        }
        if clock.ticking {
            driver.tick(clock.now_ms(), &mut emit);
        }
        if let Some(why) = driver.stopped_at() {
            failed = Some(why);
            break;
        }
        if records.may_wait() {
            driver.flush(&mut emit);
            outputs.flush();
        }
        if let Some(e) = outputs.error.take() {
            failed = Some(format!("motif: cannot write output: {e}"));
            break;
        }
        if let Some(ck) = checkpointer.as_mut() {
            let records_now = driver.stats().records;
            if ck.due(records_now) {
                take_checkpoint(ck, &mut driver, &mut outputs, records, false)?;
            }
        }
        driver.progress(progress);
    }
    // A signal that came while the input ended (a closed pipe) still stops the run as one.
    interrupted |= stop.load(Ordering::Relaxed);
    if interrupted {
        if let Some(ck) = checkpointer.as_mut() {
            take_checkpoint(ck, &mut driver, &mut outputs, records, false)?;
        }
        outputs.flush();
        let stats = driver.stats();
        return Ok(Summary {
            stats,
            failed: outputs
                .error
                .take()
                .map(|e| format!("motif: cannot write output: {e}")),
            resumed_from,
            interrupted,
            already_finished: false,
        });
    }
    let stopped = driver.stopped_at().is_some();
    let mut emit = |l: Line| outputs.put(&l);
    let stats = if stopped {
        // Strict stop: nothing after the rejected record, no end of input.
        if let Driver::Parallel(p) = &mut driver {
            p.finish(&mut emit)?;
        }
        driver.stats()
    } else {
        driver.finish(&mut emit)?
    };
    if failed.is_none() {
        // The parallel engine may find the rejected record only as it drains.
        failed = driver.stopped_at();
    }
    if failed.is_none() {
        if let Some(ck) = checkpointer.as_mut() {
            take_checkpoint(ck, &mut driver, &mut outputs, records, true)?;
        }
    }
    outputs.flush();
    if let Some(e) = outputs.error.take() {
        failed.get_or_insert(format!("motif: cannot write output: {e}"));
    }
    Ok(Summary {
        stats,
        failed,
        resumed_from,
        interrupted,
        already_finished: false,
    })
}

fn report_restore(report: Option<&crate::runtime::RestoreReport>, notice: &mut dyn FnMut(&str)) {
    let Some(r) = report else { return };
    for name in &r.added {
        notice(&format!(
            "motif: pattern `{name}` is not in the checkpoint: it starts without state"
        ));
    }
    for name in &r.changed {
        notice(&format!(
            "motif: pattern `{name}` changed since the checkpoint: it starts without state (--fresh-patterns)"
        ));
    }
    for name in &r.removed {
        notice(&format!(
            "motif: pattern `{name}` of the checkpoint is not loaded: its state is dropped (--fresh-patterns)"
        ));
    }
}

/// Takes one checkpoint: the engine's state, the sinks' commit, then the checkpoint file.
/// A single-threaded engine's state is serialised where it lives; the workers of a parallel
/// engine send theirs at the same record boundary.
fn take_checkpoint(
    ck: &mut Checkpointer,
    driver: &mut Driver,
    outputs: &mut Outputs,
    records: &dyn Source,
    finished: bool,
) -> Result<(), PipelineError> {
    let owned = match (&mut *driver, finished) {
        (Driver::Parallel(p), false) => {
            let mut emit = |l: Line| outputs.put(&l);
            Some(p.snapshot(&mut emit)?)
        }
        _ => None,
    };
    if let Some(e) = outputs.error.take() {
        return Err(e.into());
    }
    let id = ck.next_id;
    let sinks = outputs.commit(id)?;
    let stats = driver.stats();
    let source = Some(records.position());
    let capacity = ck.last_size + ck.last_size / 8;
    let meta: Checkpoint<()> = Checkpoint {
        id,
        taken_at_ms: now_unix_ms(),
        finished,
        records: stats.records,
        source,
        sinks,
        stats,
        engine: None,
    };
    let bytes = match (&*driver, owned) {
        (Driver::Single(s), _) if !finished => meta
            .with_engine(Some(s.engine.state_ref()))
            .to_bytes_sized(capacity)?,
        (_, engine) => meta.with_engine(engine).to_bytes_sized(capacity)?,
    };
    ck.last_size = bytes.len();
    ck.store.write(id, &bytes)?;
    ck.next_id += 1;
    ck.last = Instant::now();
    ck.records_at_last = stats.records;
    Ok(())
}

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

#[cfg(feature = "kafka")]
mod changelog;
#[cfg(feature = "kafka")]
pub mod group;
#[cfg(feature = "kafka")]
pub mod repartition;
mod stage;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::aggregate::{AggregateDecl, AggregateError, ExtractError, Extractor};
use crate::checkpoint::format::FormatError;
use crate::checkpoint::store::{Store, StoreError};
use crate::checkpoint::Checkpoint;
use crate::nfa::CompileError;
use crate::output::{row_header, Line, OutputFormat, Render, Stream};
use crate::pattern::PatternDecl;
use crate::runtime::{
    compile_for, Collect, Engine, EngineOptions, Input, OutputKind, RestoreError, Run, Serial,
    Stats, END_OF_INPUT,
};
use crate::runtime::{ParallelEngine, ParallelError};
use crate::sink::table::{DbError, DbErrorPolicy, TableSink};
use crate::sink::writer::TableWriter;
use crate::sink::{FileSink, NullSink, Sink, SinkError, SinkPosition, StdSink, StdStream};
use crate::source::{Source, SourceError};
pub use stage::MatchTableState;
use stage::{Aggregation, StagePrepare, Staged};

/// How long one wait for a quiet live input lasts before the clock is advanced.
const QUIET_POLL: Duration = Duration::from_millis(100);

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
    /// Per aggregate (by name): where its rows go, a file or a database URL
    /// (`postgres://...?table=T`, `mysql://...?table=T`); an aggregate not named here writes
    /// to standard output.
    pub aggregates: Vec<(String, String)>,
}

impl OutputSpec {
    /// The table or Parquet directory matches go to, if `matches` names one rather than a
    /// file.
    pub fn match_table(&self) -> Option<&str> {
        let m = self.matches.as_ref()?.to_str()?;
        (crate::sink::url::is_db_url(m) || m.trim_end_matches('/').ends_with(".parquet"))
            .then_some(m)
    }
}

/// A target as messages and checkpoints show it: a URL without its password.
fn without_password(target: &str) -> String {
    match crate::sink::url::parse(target) {
        Ok(u) => u.shown,
        Err(_) => target.to_string(),
    }
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
    /// Aggregations of the patterns' matches (checked against the patterns).
    pub aggregates: Vec<AggregateDecl>,
    /// What a database sink does with a row it refuses.
    pub db_errors: DbErrorPolicy,
    /// With matches written to a table: a batch after every this many records (and at each
    /// checkpoint and the end).
    pub batch_records: u64,
    /// A live input silent for this many milliseconds of processing time: from then on,
    /// until the next record, event time is taken to pass with processing time
    /// ([`Engine::advance_quiet`] with the time since the last record). `None`: quiet time
    /// moves nothing (event time passes only with events).
    pub quiet_advance_ms: Option<u64>,
}

/// Default of [`PipelineOptions::batch_records`].
pub const DEFAULT_BATCH_RECORDS: u64 = 10_000;

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
    /// An aggregate does not fit the patterns, or the checkpoint's aggregation state.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// An aggregate reads what the patterns do not give.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// An aggregate's output is named but no aggregate has that name.
    #[error("--aggregate-output names `{0}`, but no aggregate is declared with that name")]
    NoSuchAggregate(String),
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
    /// What the aggregations wrote, if the run has any.
    pub aggregates: Option<AggregateProgress>,
    /// Scale-out: matches of records a process before this one may have delivered already
    /// (it stopped without handing its partition over), delivered again.
    pub possible_duplicates: u64,
}

/// What the aggregations of a run have written so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateProgress {
    /// Batches written (over every aggregate).
    pub batches: u64,
    /// Rows written.
    pub rows: u64,
    /// Batches a sink already held (replays), not written again.
    pub skipped: u64,
    /// Connection attempts to databases that failed and were retried.
    pub retries: u64,
}

/// What the run reports as it goes (for a status line).
pub struct Progress<'a> {
    /// Counters so far.
    pub stats: &'a Stats,
    /// Open partial matches, when known without stopping the workers.
    pub partial_matches: Option<usize>,
    /// How far the watermark trails the newest event time (ms).
    pub watermark_lag: Option<i64>,
    /// What the aggregations have written, if the run has any.
    pub aggregates: Option<AggregateProgress>,
    /// Per input partition, where the run knows them (a Kafka scale-out member's
    /// partitions; empty otherwise).
    pub partitions: &'a [PartitionProgress],
}

/// One input partition's figures in a progress report.
#[derive(Debug, Clone, Default)]
pub struct PartitionProgress {
    /// `topic/partition`.
    pub origin: String,
    /// Records processed (by this process).
    pub records: u64,
    /// Matches given (by this process).
    pub matches: u64,
    /// Partial matches open now.
    pub partial_matches: usize,
    /// The partition's watermark (the smallest over its patterns), once it has one.
    pub watermark: Option<i64>,
    /// Messages between the consumer's position and the partition's end, when the client
    /// has reported it.
    pub offset_lag: Option<i64>,
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
    /// The aggregations, with their sinks.
    stage: Option<Aggregation>,
}

const ROLES: [&str; 4] = ["matches", "timeouts", "late", "rejects"];

fn open_sink(
    role: &str,
    path: Option<&Path>,
    std: StdStream,
    saved: Option<&[SinkPosition]>,
    header: Option<&str>,
) -> Result<Box<dyn Sink>, PipelineError> {
    let kafka = path
        .and_then(Path::to_str)
        .filter(|p| p.starts_with("kafka://"));
    let now = path.map_or_else(
        || match std {
            StdStream::Stdout => "<stdout>".to_string(),
            StdStream::Stderr => "<stderr>".to_string(),
        },
        |p| match kafka {
            // Without its options (they may hold secrets).
            Some(url) => url.split('?').next().unwrap_or(url).to_string(),
            None => p.display().to_string(),
        },
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
    if let Some(url) = kafka {
        return open_kafka_sink(role, url, pos);
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
        let matches: Box<dyn Sink> = match spec.match_table() {
            // Matches go to a table through the aggregation stage.
            Some(t) => Box::new(NullSink::new(ROLES[0], &without_password(t))),
            None => open_sink(
                ROLES[0],
                spec.matches.as_deref(),
                StdStream::Stdout,
                saved,
                m,
            )?,
        };
        Ok(Outputs {
            matches,
            timeouts,
            late: open_sink(ROLES[2], spec.late.as_deref(), StdStream::Stderr, saved, l)?,
            rejects,
            rejects_human: spec.rejects.is_none(),
            error: None,
            stage: None,
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
            // No command-line output takes watermarks.
            Stream::Watermark => Ok(()),
        };
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn sinks(&mut self) -> impl Iterator<Item = &mut Box<dyn Sink>> {
        [&mut self.matches, &mut self.late, &mut self.rejects]
            .into_iter()
            .chain(self.timeouts.as_mut())
            .chain(
                self.stage
                    .iter_mut()
                    .flat_map(|s| s.sinks.iter_mut().flatten()),
            )
    }

    /// Steps up to `through` are complete: the aggregations fold them in and write the
    /// batches cut; their late matches go to the late output.
    fn complete(&mut self, through: u64) {
        if let Some(stage) = self.stage.as_mut() {
            stage.complete(through);
        }
        self.take_stage_output();
    }

    /// Waits for the aggregations' tables to write every batch given to them (before a
    /// checkpoint and at the end: nothing a checkpoint covers is still in a queue).
    fn settle(&mut self) {
        if let Some(stage) = self.stage.as_mut() {
            stage.settle();
        }
        self.take_stage_output();
    }

    /// The aggregations' first error, late matches and refused rows, to where they go.
    fn take_stage_output(&mut self) {
        let Some(stage) = self.stage.as_mut() else {
            return;
        };
        if let Some(e) = stage.error.take() {
            self.error.get_or_insert(e);
        }
        for l in std::mem::take(&mut stage.late_lines) {
            if let Err(e) = self.late.write(l.as_bytes()) {
                self.error.get_or_insert(e);
            }
        }
        for l in std::mem::take(&mut stage.refused_lines) {
            if let Err(e) = self.rejects.write(l.as_bytes()) {
                self.error.get_or_insert(e);
            }
        }
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

/// The `--ordered` and `--strict` policies, between the engine (either kind) and the sinks.
///
/// Without either, lines go to the sinks as the engine gives them. With `ordered`, lines
/// wait until their step is complete and go in (step, line) order, which does not depend on
/// the number of workers. With `strict`, lines wait until their step is complete and the
/// first rejected record stops the run: nothing caused by a later step is written. The
/// policy counts what it writes.
struct Policy {
    ordered: bool,
    strict: bool,
    /// With `ordered`: lines waiting for their step to complete, each with how many times
    /// it came (equal lines are distinct outputs: two matches of equal events).
    sorted: BTreeMap<(u64, Line), usize>,
    /// With `strict` only: lines waiting for their step to complete, in the order given.
    waiting: Vec<(u64, Line)>,
    /// Outputs written, by kind (the engine's counters count what it gave).
    written: Stats,
    /// The step of the rejected record a strict run stopped at, and its report.
    stopped: Option<(u64, String)>,
    /// With `strict`: steps of the records not yet complete, so that a stop can say how
    /// many records came before it.
    in_flight: VecDeque<u64>,
    /// With `strict`: records complete before `in_flight`.
    records_final: u64,
    /// Records read up to the stop.
    records_at_stop: Option<u64>,
}

impl Policy {
    fn new(options: &PipelineOptions, written: Stats) -> Policy {
        Policy {
            ordered: options.ordered,
            strict: options.strict,
            sorted: BTreeMap::new(),
            waiting: Vec::new(),
            written,
            stopped: None,
            in_flight: VecDeque::new(),
            records_final: written.records,
            records_at_stop: None,
        }
    }

    /// Record step `seq` was given to the engine.
    fn pushed(&mut self, seq: u64) {
        if self.strict && self.stopped.is_none() {
            self.in_flight.push_back(seq);
        }
    }

    /// The engine's counters with the outputs counted as written.
    fn stats(&self, engine: Stats) -> Stats {
        Stats {
            records: self.records_at_stop.unwrap_or(engine.records),
            matches: self.written.matches,
            timeouts: self.written.timeouts,
            late: self.written.late,
            rejected: self.written.rejected,
            dropped_runs: engine.dropped_runs,
        }
    }

    /// Why a strict run stopped, if it did.
    fn stopped_at(&self) -> Option<String> {
        self.stopped
            .as_ref()
            .map(|(_, why)| format!("{why}; stopping (--strict)"))
    }

    /// Writes a line whose step is complete, unless a strict run stopped before its step;
    /// a rejected record stops a strict run.
    fn release(&mut self, seq: u64, l: &Line, outputs: &mut Outputs) {
        if let Some((at, _)) = &self.stopped {
            if seq > *at {
                return;
            }
        } else if self.strict && l.stream == Stream::Reject {
            let why = l
                .human
                .clone()
                .unwrap_or_else(|| l.text.trim_end().to_string());
            self.stopped = Some((seq, why));
            let upto = self.in_flight.iter().take_while(|s| **s <= seq).count() as u64;
            self.records_at_stop = Some(self.records_final + upto);
        }
        self.write(l, outputs);
    }

    fn write(&mut self, l: &Line, outputs: &mut Outputs) {
        self.written.count_kind(match (l.stream, l.timed_out) {
            (Stream::Match, true) => OutputKind::Timeout,
            (Stream::Match, false) => OutputKind::Match,
            (Stream::Late, _) => OutputKind::Late,
            (Stream::Reject, _) => OutputKind::Reject,
            (Stream::Watermark, _) => OutputKind::Watermark,
        });
        outputs.put(l);
    }
}

/// The policy and the sinks, as the engine's collector.
struct Delivery<'a> {
    policy: &'a mut Policy,
    outputs: &'a mut Outputs,
}

impl Collect<Staged> for Delivery<'_> {
    fn output(&mut self, seq: u64, _kind: OutputKind, item: Staged) {
        let p = &mut *self.policy;
        if p.stopped.as_ref().is_some_and(|(at, _)| seq > *at) {
            return;
        }
        if let Some(stage) = self.outputs.stage.as_mut() {
            for a in item.aggs {
                stage.input(seq, a);
            }
            if let Some(row) = item.row {
                stage.match_row(seq, row);
            }
        }
        let l = item.line;
        if p.ordered {
            *p.sorted.entry((seq, l)).or_insert(0) += 1;
        } else if p.strict {
            p.waiting.push((seq, l));
        } else {
            p.write(&l, self.outputs);
        }
    }

    fn watermark(&mut self, seq: u64, pattern: usize, watermark: i64) {
        if let Some(stage) = self.outputs.stage.as_mut() {
            stage.watermark(seq, pattern, watermark);
        }
    }

    fn complete(&mut self, through: u64) {
        self.outputs.complete(through);
        let p = &mut *self.policy;
        if p.ordered {
            while p
                .sorted
                .first_key_value()
                .is_some_and(|((s, _), _)| *s <= through)
            {
                if let Some(((seq, l), copies)) = p.sorted.pop_first() {
                    for _ in 0..copies {
                        p.release(seq, &l, self.outputs);
                    }
                }
            }
        } else if p.strict && !p.waiting.is_empty() {
            // Steps in order, each step's lines in the order they came.
            p.waiting.sort_by_key(|(seq, _)| *seq);
            let ready = p.waiting.partition_point(|(seq, _)| *seq <= through);
            let lines: Vec<(u64, Line)> = p.waiting.drain(..ready).collect();
            for (seq, l) in &lines {
                p.release(*seq, l, self.outputs);
            }
        }
        if p.strict && p.stopped.is_none() {
            while p.in_flight.front().is_some_and(|s| *s <= through) {
                p.in_flight.pop_front();
                p.records_final += 1;
            }
        }
    }
}

/// Event-time alignment of a source with several partitions: every [`ALIGN_EVERY`] records
/// the engine says how far each partition runs ahead of the slowest ([`Run::leads`]), and
/// the source reads those more than the drift ahead last ([`Source::align`]).
struct Aligner {
    drift: i64,
    ahead: Vec<bool>,
    records: u32,
}

/// Records between two alignments.
const ALIGN_EVERY: u32 = 256;

impl Aligner {
    fn new(drift: i64, partitions: usize) -> Aligner {
        Aligner {
            drift,
            ahead: vec![false; partitions],
            records: 0,
        }
    }

    fn after_record<T>(&mut self, engine: &dyn Run<T>, source: &mut dyn Source) {
        self.records += 1;
        if self.records < ALIGN_EVERY {
            return;
        }
        self.records = 0;
        let leads = engine.leads();
        self.ahead.fill(false);
        for (ahead, lead) in self.ahead.iter_mut().zip(&leads) {
            *ahead = *lead > self.drift;
        }
        // With no leads (nothing to tell) nothing is ahead: the partitions take turns.
        source.align(&self.ahead);
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

    /// Whether a checkpoint is due while a live input is quiet (records came since the last
    /// one and its interval has passed).
    fn due_quiet(&self, records: u64) -> bool {
        records > self.records_at_last && self.last.elapsed() >= self.options.interval
    }
}

/// How often a run reports its progress: the figures (open partial matches above all) cost
/// a walk over every key's state, so they are gathered at most every [`PROGRESS_EVERY`],
/// the clock read every 256 calls; the first call reports at once.
#[derive(Default)]
pub(crate) struct ProgressGate {
    last: Option<Instant>,
    calls: u64,
}

/// The shortest time between two progress reports.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(100);

impl ProgressGate {
    /// Whether to report now.
    pub(crate) fn due(&mut self) -> bool {
        self.calls = self.calls.wrapping_add(1);
        match self.last {
            Some(t) if !self.calls.is_multiple_of(256) || t.elapsed() < PROGRESS_EVERY => false,
            _ => {
                self.last = Some(Instant::now());
                true
            }
        }
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
/// `progress` at most every [`PROGRESS_EVERY`] (and once at the first record).
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
    let saved_sinks = resumed.as_ref().map(|c| c.sinks.as_slice());
    let mut outputs = Outputs::open(spec, saved_sinks, options.format)?;
    // Aggregations need the matched events' fields and the watermark moves.
    let (decls, engine_options) = with_aggregate_fields(decls, options);
    let decls = decls.as_slice();
    let mut extractor = None;
    let match_table = spec.match_table();
    if !options.aggregates.is_empty() || match_table.is_some() {
        // Compiled as the engine compiles them, for their variables and field slots.
        let compiled = compile_for(decls, &engine_options)?;
        let nfas: Vec<Arc<crate::nfa::Nfa>> = compiled
            .patterns
            .iter()
            .map(|(n, _)| Arc::clone(n))
            .collect();
        if !options.aggregates.is_empty() {
            extractor = Some(Arc::new(Extractor::new(&options.aggregates, &nfas, |p| {
                compiled.schema.get(p)
            })?));
        }
        for (name, _) in &spec.aggregates {
            if !options.aggregates.iter().any(|a| a.name == *name) {
                return Err(PipelineError::NoSuchAggregate(name.clone()));
            }
        }
        let mut stage = Aggregation::new(&options.aggregates, &nfas, options.format)?;
        let (mut sinks, mut tables) = (Vec::new(), Vec::new());
        for (i, a) in stage.aggregator().decls().enumerate() {
            let visible = stage.aggregator().visible_columns(i);
            let target = spec
                .aggregates
                .iter()
                .find(|(n, _)| *n == a.name)
                .map(|(_, p)| p);
            if let Some(url) = target.filter(|t| crate::sink::url::is_db_url(t)) {
                let table = open_table(url, a, visible, options.db_errors)?;
                if resumed.is_none() {
                    warn_held_batches(table.as_ref(), &a.name, notice);
                }
                tables.push(Some(writer(table)?));
                sinks.push(None);
                continue;
            }
            if let Some(dir) = target.filter(|t| t.trim_end_matches('/').ends_with(".parquet")) {
                let parquet = open_parquet(dir, a, visible)?;
                if resumed.is_none() {
                    warn_held_batches(parquet.as_ref(), &a.name, notice);
                }
                tables.push(Some(writer(parquet)?));
                sinks.push(None);
                continue;
            }
            let header = row_header(options.format, a, visible);
            sinks.push(Some(open_sink(
                &format!("aggregate:{}", a.name),
                target.map(Path::new),
                StdStream::Stdout,
                saved_sinks,
                header.as_deref(),
            )?));
            tables.push(None);
        }
        stage.sinks = sinks;
        stage.tables = tables;
        if let Some(t) = match_table {
            let layout = crate::sink::table::Layout::matches();
            let sink = if crate::sink::url::is_db_url(t) {
                open_layout_table(t, layout, options.db_errors)?
            } else {
                open_parquet_layout(t, layout)?
            };
            if resumed.is_none() {
                warn_held_batches(sink.as_ref(), "matches", notice);
            }
            stage.matches = Some(stage::MatchTable::new(writer(sink)?, options.batch_records));
            if let Some(s) = resumed.as_ref().and_then(|c| c.match_table) {
                stage.restore_matches(s);
            }
        }
        if let Some(ck) = &options.checkpoint {
            stage.log_cuts(&ck.dir, resumed.as_ref().map(|c| c.records))?;
        }
        if let Some(state) = resumed.as_ref().and_then(|c| c.aggregates.clone()) {
            stage.restore(state)?;
        }
        outputs.stage = Some(stage);
    }
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
    let mut policy = Policy::new(
        options,
        resumed.as_ref().map(|c| c.stats).unwrap_or_default(),
    );
    let state = resumed.and_then(|c| c.engine);
    let render = StagePrepare {
        render: Render {
            format: options.format,
        },
        extractor,
        match_rows: match_table.is_some(),
    };
    let mut engine: Box<dyn Run<Staged>> = if options.workers <= 1 {
        let mut engine = Engine::new(decls, engine_options)?;
        let report = match state {
            Some(s) => Some(engine.restore(s, fresh)?),
            None => None,
        };
        report_restore(report.as_ref(), notice);
        Box::new(Serial::new(engine, render))
    } else {
        let (engine, report) = ParallelEngine::resume(
            decls,
            engine_options,
            options.workers,
            render,
            state.map(|s| (s, fresh)),
        )?;
        if resumed_from.is_some() {
            report_restore(Some(&report), notice);
        }
        Box::new(engine)
    };
    if let Some(ck) = checkpointer.as_mut() {
        ck.records_at_last = engine.stats().records;
    }
    let clock = Clock {
        start: Instant::now(),
        ticking: options.engine.idle_timeout_ms.is_some(),
    };
    let mut failed = None;
    let mut interrupted = false;
    // When the last record came, for quiet time standing in for event time.
    let mut last_record = Instant::now();
    let mut gate = ProgressGate::default();
    let mut aligner = records
        .alignment()
        .map(|drift| Aligner::new(drift, records.partitions()));
    'records: loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        // A quiet live input (Kafka): the clock goes on while it waits, so idle partitions
        // stop holding the watermark back and a stop signal is seen.
        while records.may_wait() && !records.wait_ready(QUIET_POLL) {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break 'records;
            }
            let mut out = Delivery {
                policy: &mut policy,
                outputs: &mut outputs,
            };
            if clock.ticking {
                engine.tick(clock.now_ms(), &mut out);
            }
            if let Some(after) = options.quiet_advance_ms {
                let quiet = u64::try_from(last_record.elapsed().as_millis()).unwrap_or(u64::MAX);
                if quiet >= after {
                    engine.advance_quiet(quiet, &mut out);
                }
            }
            engine.flush(&mut out);
            outputs.flush();
            if let Some(e) = outputs.error.take() {
                failed = Some(format!("motif: cannot write output: {e}"));
                break 'records;
            }
            if let Some(ck) = checkpointer.as_mut() {
                if ck.due_quiet(engine.stats().records) {
                    take_checkpoint(
                        ck,
                        &mut *engine,
                        &mut policy,
                        &mut outputs,
                        &mut *records,
                        false,
                    )?;
                }
            }
            show_progress(progress, &mut gate, &policy, &*engine, &outputs);
        }
        let rec = match records.next_record() {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                failed = Some(format!("motif: {e}"));
                break;
            }
        };
        if options.quiet_advance_ms.is_some() {
            last_record = Instant::now();
        }
        let input = Input {
            json: rec.json,
            origin: rec.origin,
            line: rec.line,
            partition: rec.partition,
            now_ms: clock.now_ms(),
        };
        let mut out = Delivery {
            policy: &mut policy,
            outputs: &mut outputs,
        };
        // Noted first: a single-threaded engine completes the step before it returns.
        let seq = engine.next_step();
        out.policy.pushed(seq);
        engine.push(&input, &mut out);
        if let Some(stage) = out.outputs.stage.as_mut() {
            let records = out.policy.stats(engine.stats()).records;
            stage.after_record(seq, records);
        }
        while let Some(p) = records.ended() {
            engine.end_source(p, &mut out);
        }
        if clock.ticking {
            engine.tick(clock.now_ms(), &mut out);
        }
        if records.may_wait() {
            engine.flush(&mut out);
            outputs.flush();
        }
        if let Some(a) = aligner.as_mut() {
            a.after_record(&*engine, &mut *records);
        }
        if let Some(why) = policy.stopped_at() {
            failed = Some(why);
            break;
        }
        if let Some(e) = outputs.error.take() {
            failed = Some(format!("motif: cannot write output: {e}"));
            break;
        }
        if let Some(ck) = checkpointer.as_mut() {
            let records_now = engine.stats().records;
            if ck.due(records_now) {
                take_checkpoint(
                    ck,
                    &mut *engine,
                    &mut policy,
                    &mut outputs,
                    &mut *records,
                    false,
                )?;
            }
        }
        show_progress(progress, &mut gate, &policy, &*engine, &outputs);
    }
    // A signal that came while the input ended (a closed pipe) still stops the run as one.
    interrupted |= stop.load(Ordering::Relaxed);
    if interrupted {
        if let Some(ck) = checkpointer.as_mut() {
            take_checkpoint(
                ck,
                &mut *engine,
                &mut policy,
                &mut outputs,
                &mut *records,
                false,
            )?;
        }
        outputs.settle();
        outputs.flush();
        return Ok(Summary {
            stats: policy.stats(engine.stats()),
            failed: outputs
                .error
                .take()
                .map(|e| format!("motif: cannot write output: {e}")),
            resumed_from,
            interrupted,
            already_finished: false,
            aggregates: outputs.stage.as_ref().map(Aggregation::progress),
            possible_duplicates: 0,
        });
    }
    if policy.stopped.is_some() {
        // Strict stop: nothing after the rejected record, no end of input.
        engine.stop();
    }
    if let Some(stage) = outputs.stage.as_mut() {
        stage.end(END_OF_INPUT);
    }
    let mut out = Delivery {
        policy: &mut policy,
        outputs: &mut outputs,
    };
    let engine_stats = engine.finish(&mut out)?;
    if failed.is_none() {
        // A parallel engine may find the rejected record only as it drains.
        failed = policy.stopped_at();
    }
    if failed.is_none() {
        if let Some(ck) = checkpointer.as_mut() {
            take_checkpoint(
                ck,
                &mut *engine,
                &mut policy,
                &mut outputs,
                &mut *records,
                true,
            )?;
        }
    }
    outputs.settle();
    outputs.flush();
    if let Some(e) = outputs.error.take() {
        failed.get_or_insert(format!("motif: cannot write output: {e}"));
    }
    Ok(Summary {
        stats: policy.stats(engine_stats),
        failed,
        resumed_from,
        interrupted,
        already_finished: false,
        aggregates: outputs.stage.as_ref().map(Aggregation::progress),
        possible_duplicates: 0,
    })
}

/// A run from the start into a table that already holds batches (an earlier run's) skips
/// its batches up to there as replays: said, so that a different input into the same table
/// does not go missing unnoticed.
fn warn_held_batches(sink: &dyn TableSink, what: &str, notice: &mut dyn FnMut(&str)) {
    if let Some(n) = sink.committed() {
        notice(&format!(
            "motif: {} already holds batches up to {n} of {what} (an earlier run): this run's batches up to {n} are taken as replays of them and not written; to write them, use another table or directory, or remove the earlier batches from it",
            sink.target()
        ));
    }
}

/// The records read so far, as checkpoints count them.
fn policy_records(policy: &Policy, engine: Stats) -> u64 {
    policy.stats(engine).records
}

/// Opens the table of a layout (raw matches).
fn open_layout_table(
    url: &str,
    layout: crate::sink::table::Layout,
    policy: DbErrorPolicy,
) -> Result<Box<dyn TableSink>, PipelineError> {
    let url = crate::sink::url::parse(url).map_err(SinkError::from)?;
    let _ = (&layout, policy);
    match url.scheme.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" => Ok(Box::new(
            crate::sink::postgres::PostgresSink::open_layout(url, "matches", layout, policy)
                .map_err(SinkError::from)?,
        )),
        #[cfg(feature = "mysql")]
        "mysql" => Ok(Box::new(
            crate::sink::mysql::MysqlSink::open_layout(url, "matches", layout, policy)
                .map_err(SinkError::from)?,
        )),
        other => Err(SinkError::from(DbError::Url {
            url: url.shown.clone(),
            why: format!("this motif was built without the `{other}` feature"),
        })
        .into()),
    }
}

/// Opens a Parquet directory of a layout's rows (raw matches).
fn open_parquet_layout(
    dir: &str,
    layout: crate::sink::table::Layout,
) -> Result<Box<dyn TableSink>, PipelineError> {
    let _ = &layout;
    #[cfg(feature = "parquet")]
    {
        Ok(Box::new(
            crate::sink::parquet::ParquetSink::open_layout(Path::new(dir), "matches", layout)
                .map_err(SinkError::from)?,
        ))
    }
    #[cfg(not(feature = "parquet"))]
    {
        Err(SinkError::from(DbError::Url {
            url: dir.to_string(),
            why: "this motif was built without the `parquet` feature".to_string(),
        })
        .into())
    }
}

/// Opens the Parquet directory of an aggregate's rows.
fn open_parquet(
    dir: &str,
    agg: &AggregateDecl,
    visible: usize,
) -> Result<Box<dyn TableSink>, PipelineError> {
    let _ = (agg, visible);
    #[cfg(feature = "parquet")]
    {
        Ok(Box::new(
            crate::sink::parquet::ParquetSink::open(Path::new(dir), agg, visible)
                .map_err(SinkError::from)?,
        ))
    }
    #[cfg(not(feature = "parquet"))]
    {
        Err(SinkError::from(DbError::Url {
            url: dir.to_string(),
            why: "this motif was built without the `parquet` feature".to_string(),
        })
        .into())
    }
}

/// A Kafka topic as the `role` output (no header row: each message is one output).
fn open_kafka_sink(
    role: &str,
    url: &str,
    pos: Option<&SinkPosition>,
) -> Result<Box<dyn Sink>, PipelineError> {
    #[cfg(feature = "kafka")]
    {
        Ok(Box::new(crate::sink::kafka::KafkaSink::open(
            role, url, pos,
        )?))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (role, pos);
        Err(SinkError::Kafka {
            target: url.to_string(),
            why: "this motif is built without Kafka (cargo feature `kafka`)".to_string(),
        }
        .into())
    }
}

/// A table sink's writer thread.
fn writer(sink: Box<dyn TableSink>) -> Result<TableWriter, PipelineError> {
    let target = sink.target().to_string();
    TableWriter::spawn(sink).map_err(|e| {
        PipelineError::Sink(SinkError::Database(DbError::Refused {
            target,
            what: "a writer thread".to_string(),
            why: e.to_string(),
        }))
    })
}

/// Opens the database table of an aggregate's rows.
fn open_table(
    url: &str,
    agg: &AggregateDecl,
    visible: usize,
    policy: DbErrorPolicy,
) -> Result<Box<dyn TableSink>, PipelineError> {
    let url = crate::sink::url::parse(url).map_err(SinkError::from)?;
    let _ = (agg, visible, policy);
    match url.scheme.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" => Ok(Box::new(
            crate::sink::postgres::PostgresSink::open(url, agg, visible, policy)
                .map_err(SinkError::from)?,
        )),
        #[cfg(feature = "mysql")]
        "mysql" => Ok(Box::new(
            crate::sink::mysql::MysqlSink::open(url, agg, visible, policy)
                .map_err(SinkError::from)?,
        )),
        other => Err(SinkError::from(DbError::Url {
            url: url.shown.clone(),
            why: format!("this motif was built without the `{other}` feature"),
        })
        .into()),
    }
}

/// The patterns as the run compiles them, and the engine's options: with aggregates, the
/// fields they read are carried in matched events and watermark moves are outputs.
fn with_aggregate_fields(
    decls: &[PatternDecl],
    options: &PipelineOptions,
) -> (Vec<PatternDecl>, EngineOptions) {
    let mut decls = decls.to_vec();
    let mut engine = options.engine;
    if options.aggregates.is_empty() {
        return (decls, engine);
    }
    engine.watermarks = true;
    engine.match_fields = true;
    for a in &options.aggregates {
        let paths = a.field_paths();
        for d in decls.iter_mut().filter(|d| a.from.contains(&d.name)) {
            for p in &paths {
                if !d.output_fields.contains(p) {
                    d.output_fields.push(p.clone());
                }
            }
        }
    }
    (decls, engine)
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

/// Hands the run's progress (counters, partial matches, lag, aggregates) to `progress`.
fn show_progress(
    progress: &mut dyn FnMut(&Progress<'_>),
    gate: &mut ProgressGate,
    policy: &Policy,
    engine: &dyn Run<Staged>,
    outputs: &Outputs,
) {
    if !gate.due() {
        return;
    }
    let stats = policy.stats(engine.stats());
    progress(&Progress {
        stats: &stats,
        partial_matches: engine.open_partial_matches(),
        watermark_lag: engine.watermark_lag(),
        aggregates: outputs.stage.as_ref().map(Aggregation::progress),
        partitions: &[],
    });
}

/// Takes one checkpoint: the engine's state, the sinks' commit, then the checkpoint file.
/// A single-threaded engine's state is serialised where it lives; the workers of a parallel
/// engine send theirs at the same record boundary (after every output before it is
/// written).
fn take_checkpoint(
    ck: &mut Checkpointer,
    engine: &mut dyn Run<Staged>,
    policy: &mut Policy,
    outputs: &mut Outputs,
    records: &mut dyn Source,
    finished: bool,
) -> Result<(), PipelineError> {
    let (state, engine_stats) = if finished {
        (None, engine.stats())
    } else {
        let mut out = Delivery {
            policy: &mut *policy,
            outputs: &mut *outputs,
        };
        let last = engine.next_step().checked_sub(1);
        let records = policy_records(out.policy, engine.stats());
        if let (Some(stage), Some(last)) = (out.outputs.stage.as_mut(), last) {
            stage.before_checkpoint(last, records);
        }
        let state = engine.state(&mut out)?;
        // Every step given so far is complete now: batches cut after the last one are
        // written before the checkpoint, so the checkpoint holds no cut still to make.
        if let Some(last) = last {
            outputs.complete(last);
        }
        let stats = state.stats();
        (Some(state), stats)
    };
    outputs.settle();
    if let Some(e) = outputs.error.take() {
        return Err(e.into());
    }
    let id = ck.next_id;
    let sinks = outputs.commit(id)?;
    let stats = policy.stats(engine_stats);
    let capacity = ck.last_size + ck.last_size / 8;
    let position = records.position();
    let bytes = Checkpoint {
        id,
        taken_at_ms: now_unix_ms(),
        finished,
        records: stats.records,
        source: Some(position.clone()),
        sinks,
        stats,
        engine: state,
        aggregates: match (finished, outputs.stage.as_ref()) {
            (false, Some(stage)) => Some(stage.state()),
            _ => None,
        },
        match_table: outputs
            .stage
            .as_ref()
            .and_then(stage::Aggregation::match_state),
    }
    .to_bytes_sized(capacity)?;
    ck.last_size = bytes.len();
    ck.store.write(id, &bytes)?;
    // Only now may the source's own record of its position (Kafka's group offsets) move.
    records.commit(&position);
    ck.next_id += 1;
    ck.last = Instant::now();
    ck.records_at_last = stats.records;
    Ok(())
}

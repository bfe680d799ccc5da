//! The event-time runtime: decode, key, order by event time, watermark, and drive one
//! matcher per partition.
//!
//! Per pattern, events are buffered per key by (time, arrival). The watermark is
//! `max time seen − lateness − 1 ms`; an event whose time is not after the watermark on
//! arrival is late and goes to the late output. When the watermark passes a time T, a
//! partition first times out its runs against T, then is fed the events at T in arrival order
//! (Flink's CepOperator). A partition with nothing pending keeps no state at all. At the end
//! of input the watermark moves to +∞ so every windowed run is decided.

mod front;
mod frontier;
mod parallel;
mod run;
mod shard;
mod state;
mod view;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{DecodeError, Schema};
use crate::key::KeyBytes;
use crate::nfa::{compile_with, CompileError, CompileOptions};
use crate::pattern::PatternDecl;
use crate::value::Value;

pub use crate::nfa::matcher::DEFAULT_MAX_RUNS;
pub use crate::nfa::{Match, MatchedEvent, Nfa};
use front::{Front, RouteSink};
pub use parallel::{ParallelEngine, ParallelError};
pub use run::{AsIs, Collect, Prepare, Run, Serial, StateOf, END_OF_INPUT};
pub use shard::StateError;
use shard::{Shard, ShardOutput};
pub use state::{EngineState, EngineStateRef, PatternState, RestoreError, RestoreReport};
pub use view::MatchView;

/// Where a rejected record came from: its input's name, its line there and its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOrigin {
    /// The input (a file's path as given, `<stdin>`, ...; empty when the caller named none).
    pub source: Arc<str>,
    /// 1-based line number in that input (for records pushed without a position: the
    /// record's number among those the engine was given).
    pub line: u64,
    /// The record as it arrived.
    pub text: Arc<str>,
}

/// What the engine produced for one input record or for the end of input: data, not
/// presentation (rendering them as JSON lines or CSV rows is [`crate::output`]'s work).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A match or a timed-out partial match of pattern `pattern` (index).
    Match {
        /// Index of the pattern in the engine.
        pattern: usize,
        /// The partition key as JSON (the field's value, or an array of the fields' values,
        /// with their JSON types), if the pattern is keyed; [`Engine::view`] gives it typed.
        key: Option<Arc<str>>,
        /// The match.
        m: Match,
    },
    /// An event that arrived after the watermark had passed its time.
    Late {
        /// Index of the pattern.
        pattern: usize,
        /// The event.
        raw: Arc<str>,
        /// Its time.
        time: i64,
        /// The watermark when it arrived.
        watermark: i64,
    },
    /// A record that could not be used.
    Reject {
        /// Index of the pattern that rejected it, or `None` when no pattern could use it.
        pattern: Option<usize>,
        /// Why.
        reason: DecodeError,
        /// The record and where it came from (boxed: rejects are rare, and every output
        /// moves as large as the largest kind).
        record: Box<RecordOrigin>,
    },
    /// Pattern `pattern`'s watermark moved to `watermark` (only with
    /// [`EngineOptions::watermarks`]): it comes after every output the move caused, and no
    /// later completed match of the pattern ends at or before it (timed-out partial
    /// matches, whose events are older, and late events excepted).
    Watermark {
        /// Index of the pattern.
        pattern: usize,
        /// The new watermark (`i64::MAX` at the end of input).
        watermark: i64,
    },
}

/// The kinds of [`Output`], as the policies and counters outside the engine tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputKind {
    /// A completed match.
    Match,
    /// A timed-out partial match.
    Timeout,
    /// A late event.
    Late,
    /// A rejected record.
    Reject,
    /// A watermark move.
    Watermark,
}

impl Output {
    /// What kind of output this is.
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::Match { m, .. } if m.timed_out.is_some() => OutputKind::Timeout,
            Output::Match { .. } => OutputKind::Match,
            Output::Late { .. } => OutputKind::Late,
            Output::Reject { .. } => OutputKind::Reject,
            Output::Watermark { .. } => OutputKind::Watermark,
        }
    }
}

impl Output {
    /// A shard's output as the engine's.
    pub(crate) fn from_shard(o: ShardOutput) -> Output {
        Output::Match {
            pattern: o.pattern,
            key: o.key,
            m: o.m,
        }
    }
}

/// Why [`Engine::push`] could not feed a value: it does not serialise to JSON (a map with
/// keys that are not strings, a `Serialize` impl that fails, ...). Nothing was fed and
/// nothing counted.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Serialising to JSON failed.
    #[error("event does not serialise to JSON: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// Counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Records offered.
    pub records: u64,
    /// Records rejected (malformed, or without a usable time for some pattern).
    pub rejected: u64,
    /// Late events (per pattern).
    pub late: u64,
    /// Matches emitted.
    pub matches: u64,
    /// Timed-out partial matches emitted.
    pub timeouts: u64,
    /// Partial matches dropped by the per-key cap or not started at the total cap.
    pub dropped_runs: u64,
}

impl Stats {
    /// Adds the outputs of one call to the counters.
    pub fn count(&mut self, new: &[Output]) {
        for o in new {
            self.count_kind(o.kind());
        }
    }

    /// Adds one output of kind `kind` to the counters (a watermark counts nowhere).
    #[inline]
    pub fn count_kind(&mut self, kind: OutputKind) {
        match kind {
            OutputKind::Match => self.matches += 1,
            OutputKind::Timeout => self.timeouts += 1,
            OutputKind::Late => self.late += 1,
            OutputKind::Reject => self.rejected += 1,
            OutputKind::Watermark => {}
        }
    }
}

impl EngineOptions {
    /// The per-partition cap a shard applies: 0 is no cap.
    pub(crate) fn per_key_cap(&self) -> Option<usize> {
        match self.max_runs_per_key {
            Some(0) => Some(usize::MAX - 1),
            cap => cap,
        }
    }

    /// The cap over all keys, split over `shards` shards: 0 is no cap.
    pub(crate) fn total_cap(&self, shards: usize) -> Option<usize> {
        self.max_partial_matches_total
            .filter(|t| *t > 0)
            .map(|t| t.div_ceil(shards.max(1)))
    }
}

/// Options of an engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Report timed-out partial matches.
    pub timeouts: bool,
    /// Cap on partial matches per partition (`None`: [`DEFAULT_MAX_RUNS`], 100,000;
    /// `Some(0)`: no cap). Beyond it the oldest are dropped, counted in [`Stats::dropped_runs`].
    /// For a pattern on the compact matcher ([`crate::nfa::Nfa::compact_matcher`]) it caps
    /// the events the partition holds over all steps; beyond it the oldest first events (and
    /// every partial match they start) are dropped, each counted.
    pub max_runs_per_key: Option<usize>,
    /// Number of shards keys are spread over (0 or 1: one). Results do not depend on it.
    pub shards: usize,
    /// Cap on open partial matches of each pattern over all keys (`None` or `Some(0)`: no
    /// cap, as for [`EngineOptions::max_runs_per_key`]). At the
    /// cap, keys without state start no new partial matches until some end; each refusal is
    /// counted in [`Stats::dropped_runs`]. With several shards each gets an equal share.
    pub max_partial_matches_total: Option<usize>,
    /// Number of source partitions (0 or 1: one), each with its own watermark; the pattern's
    /// watermark is the minimum over partitions that are neither idle nor ended. Records say
    /// their partition in [`Engine::push_json_from`].
    pub source_partitions: usize,
    /// A source partition that sends nothing for this long (processing time, as given to
    /// [`Engine::tick`]) stops holding the watermark back until it sends again.
    pub idle_timeout_ms: Option<u64>,
    /// Emit an [`Output::Watermark`] each time a pattern's watermark moves (for consumers
    /// that close windows, such as aggregations). Off by default: most callers only need
    /// the matches.
    pub watermarks: bool,
    /// Carry each matched event's decoded fields in its [`MatchedEvent::fields`] (off:
    /// only its time and text, the cheapest). The fields are those the patterns read and
    /// those their declarations ask for ([`PatternDecl::output_fields`]); read one with
    /// [`MatchedEvent::get`] at the slot [`Engine::field_slot`] gives its path.
    ///
    /// [`MatchedEvent::fields`]: crate::nfa::MatchedEvent::fields
    /// [`MatchedEvent::get`]: crate::nfa::MatchedEvent::get
    pub match_fields: bool,
    /// A partition of a pattern without a skip strategy keeps its partial matches grouped
    /// by the state they wait in once it has more than this many (`None`:
    /// [`crate::nfa::DEFAULT_GROUP_RUNS_AT`], 8; `Some(0)`: always): an event then costs
    /// time in the partial matches it concerns, not in all of them. Results do not depend
    /// on it (see [`crate::nfa::Grouping`]).
    pub group_runs_at: Option<usize>,
    /// Run every pattern on the list matcher, also those the compact matcher would run
    /// (see [`crate::nfa::CompileOptions::compact_matcher`]). Results are the same as
    /// multisets; only the order of matches one event completes with the same first event
    /// differs (the list keeps Flink's).
    pub list_matcher: bool,
}

/// The compiled patterns of a run and how the front reads their events.
pub(crate) struct Compiled {
    /// Field slots of every pattern.
    pub schema: Schema,
    /// Per pattern: the NFA and its key field slots.
    pub patterns: Vec<(Arc<Nfa>, Vec<usize>)>,
    /// Per pattern: how the front reads its events.
    pub front: Vec<front::PatternInput>,
    /// Per pattern: its [`state::fingerprint`].
    pub fingerprints: Vec<u64>,
}

impl Compiled {
    /// What restoring a state needs to know of each pattern.
    fn targets(&self) -> Vec<state::Target<'_>> {
        self.patterns
            .iter()
            .zip(&self.fingerprints)
            .map(|((nfa, key_slots), fp)| state::Target {
                nfa,
                fingerprint: *fp,
                key_fields: key_slots.len(),
            })
            .collect()
    }
}

/// [`compile_all`] as an engine run with `options` compiles its declarations.
pub(crate) fn compile_for(
    decls: &[PatternDecl],
    options: &EngineOptions,
) -> Result<Compiled, CompileError> {
    compile_all(
        decls,
        options.match_fields,
        options.group_runs_at,
        CompileOptions {
            reports_timeouts: options.timeouts,
            compact_matcher: !options.list_matcher,
        },
    )
}

/// Compiles declarations over one shared schema (which also holds each declaration's
/// [`PatternDecl::output_fields`]); with `match_fields` (see [`EngineOptions::match_fields`])
/// matched events keep their decoded fields; `group_runs_at` as
/// [`EngineOptions::group_runs_at`].
pub(crate) fn compile_all(
    decls: &[PatternDecl],
    match_fields: bool,
    group_runs_at: Option<usize>,
    compile_options: CompileOptions,
) -> Result<Compiled, CompileError> {
    let mut schema = Schema::new();
    let mut patterns = Vec::new();
    let mut front = Vec::new();
    let mut fingerprints = Vec::new();
    for d in decls {
        let mut nfa = compile_with(d, &mut schema, compile_options)?;
        nfa.keep_event_fields |= match_fields;
        if let Some(at) = group_runs_at {
            nfa.set_group_runs_at(at);
        }
        for path in &d.output_fields {
            schema.slot_of(path);
        }
        let nfa = Arc::new(nfa);
        let time = d.time.as_ref().map(|p| (schema.slot_of(p), p.join(".")));
        let key_slots: Vec<usize> = d.key.iter().map(|k| schema.slot_of(k)).collect();
        let lateness = i64::try_from(d.lateness_ms).unwrap_or(i64::MAX);
        fingerprints.push(state::fingerprint(
            &nfa,
            &d.key,
            time.as_ref().map(|t| t.1.as_str()),
            lateness,
        ));
        patterns.push((nfa, key_slots.clone()));
        front.push(front::PatternInput {
            time,
            key_slots,
            lateness,
        });
    }
    Ok(Compiled {
        schema,
        patterns,
        front,
        fingerprints,
    })
}

/// One input record as an engine takes it: its JSON text and where it came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<'a> {
    /// The record: one JSON object, without its newline.
    pub json: &'a str,
    /// The input it came from (a path, `<stdin>`, ...), as reject reports name it.
    pub origin: &'a str,
    /// Its 1-based line number in that input (0: unknown; then reports give the record's
    /// number among those the engine was given).
    pub line: u64,
    /// Its source partition ([`EngineOptions::source_partitions`]).
    pub partition: usize,
    /// Processing time when it was read, for idle sources ([`Engine::tick`]).
    pub now_ms: u64,
}

/// The shards of an engine in this thread, fed directly by the front.
struct ShardSink<'a> {
    shards: &'a mut [Shard],
    out: &'a mut Vec<ShardOutput>,
    /// Watermark moves, when the engine reports them.
    watermarks: Option<&'a mut Vec<(usize, i64)>>,
}

impl RouteSink for ShardSink<'_> {
    #[inline]
    fn event(&mut self, event: front::KeyedEvent) {
        let n = self.shards.len();
        self.shards[crate::key::shard_of(event.hash, n)].on_event(event, self.out);
    }

    fn watermark(&mut self, pattern: usize, wm: i64) {
        for s in self.shards.iter_mut() {
            s.on_watermark(pattern, wm, self.out);
        }
        if let Some(w) = self.watermarks.as_deref_mut() {
            w.push((pattern, wm));
        }
    }
}

/// Names the record in each reject among `outs` (rejects come only from the front, rarely):
/// its origin and line, and its text as it arrived (`None`: keep the front's).
#[cold]
fn name_rejects(outs: &mut [Output], origin: &str, line: u64, text: Option<&str>) {
    for o in outs {
        if let Output::Reject { record, .. } = o {
            record.source = Arc::from(origin);
            record.line = line;
            if let Some(t) = text {
                record.text = Arc::from(front::shown_text(t));
            }
        }
    }
}

/// All patterns of a run, single-threaded: the front and the shards in one thread.
pub struct Engine {
    front: Front,
    shards: Vec<Shard>,
    nfas: Vec<Arc<Nfa>>,
    compiled: Compiled,
    stats: Stats,
    shard_out: Vec<ShardOutput>,
    /// Watermark moves of the current step, with [`EngineOptions::watermarks`].
    watermarks: Option<Vec<(usize, i64)>>,
}

impl Engine {
    /// Compiles the declarations.
    pub fn new(decls: &[PatternDecl], options: EngineOptions) -> Result<Engine, CompileError> {
        let c = compile_for(decls, &options)?;
        let shards = (0..options.shards.max(1))
            .map(|_| {
                Shard::new(
                    &c.patterns,
                    options.timeouts,
                    options.per_key_cap(),
                    options.total_cap(options.shards),
                )
            })
            .collect();
        Ok(Engine {
            front: Front::new(
                c.schema.clone(),
                c.front.clone(),
                options.source_partitions.max(1),
                options.idle_timeout_ms,
            ),
            shards,
            nfas: c.patterns.iter().map(|(n, _)| Arc::clone(n)).collect(),
            compiled: c,
            stats: Stats::default(),
            shard_out: Vec::new(),
            watermarks: options.watermarks.then(Vec::new),
        })
    }

    /// The compiled patterns.
    pub fn nfas(&self) -> impl Iterator<Item = &Arc<Nfa>> {
        self.nfas.iter()
    }

    /// The NFA of pattern `i`.
    pub fn nfa(&self, i: usize) -> &Nfa {
        &self.nfas[i]
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            dropped_runs: self.shards.iter().map(Shard::dropped_runs).sum(),
            ..self.stats
        }
    }

    /// Open partial matches over all patterns and partitions.
    pub fn open_partial_matches(&self) -> usize {
        self.shards.iter().map(Shard::open_partial_matches).sum()
    }

    /// Event-time alignment: per source partition, how far (ms) its newest event time
    /// runs past the slowest partition's, the largest over the event-time patterns; empty
    /// when nothing can be said. A source that reads the partitions far ahead last keeps
    /// the events waiting for the watermark few.
    pub fn leads(&self) -> Vec<i64> {
        self.front.leads()
    }

    /// How far the watermark trails the newest event time (ms), if known.
    pub fn watermark_lag(&self) -> Option<i64> {
        self.front.watermark_lag()
    }

    /// The smallest watermark over the patterns (event time, ms), once every pattern has
    /// one and before the end of input.
    pub fn watermark(&self) -> Option<i64> {
        self.front.watermark()
    }

    /// Number of partitions holding state.
    pub fn live_partitions(&self) -> usize {
        self.shards.iter().map(Shard::live_partitions).sum()
    }

    /// The schema events are decoded with (to decode ahead of time, see
    /// [`Engine::push_row`]).
    pub fn schema(&self) -> &Schema {
        self.front.schema()
    }

    /// Decodes and processes one JSON record (one line, without its newline).
    pub fn push_json(&mut self, line: &str, out: &mut Vec<Output>) {
        self.push_json_from(line, 0, 0, out);
    }

    /// Processes one event given as a JSON value: the same as [`Engine::push_json`] with
    /// its text (which matches echo, the object's fields in the order its map keeps them).
    /// A value that is not an object is a record no pattern can use, an [`Output::Reject`]
    /// (as the same text would be).
    ///
    /// ```
    /// use motif::runtime::{Engine, EngineOptions, Output};
    ///
    /// let decls = motif::syntax::load_str("<doc>", r#"pattern p = begin("a").where(x > 1);"#).unwrap();
    /// let mut engine = Engine::new(&decls, EngineOptions::default()).unwrap();
    /// let mut out = Vec::new();
    /// engine.push_value(&serde_json::json!({ "x": 2 }), &mut out);
    /// engine.push_value(&serde_json::json!([1, 2]), &mut out);
    /// assert!(matches!(out[..], [Output::Match { .. }, Output::Reject { .. }]));
    /// ```
    pub fn push_value(&mut self, event: &serde_json::Value, out: &mut Vec<Output>) {
        self.push_json(&event.to_string(), out);
    }

    /// Processes one event of any [`Serialize`] type: it is serialised to JSON text, which
    /// then goes the way of [`Engine::push_json`] (and is the text matches echo). A value
    /// that serialises to something other than an object (a number, a sequence, a unit
    /// struct, ...) is a record no pattern can use: an [`Output::Reject`], counted in
    /// [`Stats::rejected`], as the same text would be. Only a value that does not serialise
    /// at all is an error ([`PushError`]); then nothing is fed or counted.
    ///
    /// ```
    /// use motif::runtime::{Engine, EngineOptions};
    ///
    /// #[derive(serde::Serialize)]
    /// struct Reading {
    ///     sensor: u32,
    ///     ts: i64,
    ///     temp: f64,
    /// }
    ///
    /// let decls = motif::syntax::load_str(
    ///     "<doc>",
    ///     r#"pattern hot key sensor time ts = begin("t").where(temp > 30);"#,
    /// )
    /// .unwrap();
    /// let mut engine = Engine::new(&decls, EngineOptions::default()).unwrap();
    /// let mut out = Vec::new();
    /// engine.push(&Reading { sensor: 1, ts: 10, temp: 31.5 }, &mut out).unwrap();
    /// engine.push(&42, &mut out).unwrap(); // not an object: rejected, not an error
    /// engine.finish(&mut out);
    /// assert_eq!(engine.matches(&out).count(), 1);
    /// assert_eq!(engine.stats().rejected, 1);
    /// ```
    pub fn push<T: Serialize + ?Sized>(
        &mut self,
        event: &T,
        out: &mut Vec<Output>,
    ) -> Result<(), PushError> {
        let text = serde_json::to_string(event)?;
        self.push_json(&text, out);
        Ok(())
    }

    /// The typed view of `output` if it is a match of one of this engine's patterns: its
    /// pattern's name, key as typed values, and events by variable name (see
    /// [`MatchView`]). `None` for late events and rejects, and for a match of another
    /// engine's pattern.
    ///
    /// ```
    /// use motif::runtime::{Engine, EngineOptions};
    ///
    /// let decls = motif::syntax::load_str(
    ///     "<doc>",
    ///     r#"pattern pair key user = begin("a").where(x == 1).next("b").where(x == 2);"#,
    /// )
    /// .unwrap();
    /// let mut engine = Engine::new(&decls, EngineOptions::default()).unwrap();
    /// let mut out = Vec::new();
    /// engine.push_json(r#"{"user":"ann","x":1}"#, &mut out);
    /// engine.push_json(r#"{"user":"ann","x":2}"#, &mut out);
    /// let m = engine.view(&out[0]).unwrap();
    /// assert_eq!(m.key().unwrap().to_json(), r#""ann""#);
    /// assert_eq!(m.events("b")[0].raw.as_ref(), r#"{"user":"ann","x":2}"#);
    /// ```
    pub fn view<'a>(&'a self, output: &'a Output) -> Option<MatchView<'a>> {
        let Output::Match { pattern, key, m } = output else {
            return None;
        };
        let (nfa, key_slots) = self.compiled.patterns.get(*pattern)?;
        MatchView::new(nfa, key_slots.len(), key.as_deref(), m)
    }

    /// The typed views of the matches among `outputs`, in order (see [`Engine::view`]).
    pub fn matches<'a>(&'a self, outputs: &'a [Output]) -> impl Iterator<Item = MatchView<'a>> {
        outputs.iter().filter_map(move |o| self.view(o))
    }

    /// [`Engine::push_json`] for a record of source partition `source` (see
    /// [`EngineOptions::source_partitions`]) read at processing time `now_ms`.
    pub fn push_json_from(
        &mut self,
        line: &str,
        source: usize,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        self.push_input(
            &Input {
                json: line,
                partition: source,
                now_ms,
                ..Input::default()
            },
            out,
        );
    }

    /// Decodes and processes one record that says where it came from (reject reports name
    /// its origin and line).
    pub fn push_input(&mut self, input: &Input<'_>, out: &mut Vec<Output>) {
        self.stats.records += 1;
        let before = out.len();
        self.drive(out, |front, shards, out| {
            front.route_json(input.json, input.partition, input.now_ms, shards, out)
        });
        if out.len() > before {
            let line = if input.line > 0 {
                input.line
            } else {
                self.stats.records
            };
            name_rejects(&mut out[before..], input.origin, line, Some(input.json));
        }
    }

    /// Source partition `source` has ended: it no longer holds the watermark back, so what
    /// waited for it may be decided now.
    pub fn end_source(&mut self, source: usize, out: &mut Vec<Output>) {
        self.drive(out, |front, shards, _| front.end_source(source, shards));
    }

    /// Source partition `source` (see [`EngineOptions::source_partitions`]) says it has
    /// sent every event up to `times[i]` for pattern `i` (a heartbeat: each event-time
    /// pattern's frontier counts it as an event of that time from that source, without
    /// one). What a repartitioning forwarder's heartbeat tells the partitions it writes to.
    pub fn source_progress(
        &mut self,
        source: usize,
        times: &[Option<i64>],
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        self.drive(out, |front, shards, _| {
            front.source_progress(source, times, now_ms, shards)
        });
    }

    /// The first pattern's routing key of a JSON record (the bytes
    /// [`crate::key::encode`] makes; `None` for an unkeyed pattern or a record without a
    /// readable key) and each pattern's time in it, without processing the record; `None`
    /// when it cannot be decoded at all. Counts nothing.
    pub fn key_and_times(
        &mut self,
        json: &str,
        times: &mut Vec<Option<i64>>,
    ) -> Option<Option<KeyBytes>> {
        self.front.key_and_times(json, times)
    }

    /// The hash of the first pattern's key of the last record processed, if it had one
    /// (to notice one key arriving from two inputs that should each hold their own keys).
    pub fn last_key_hash(&self) -> Option<u64> {
        self.front.last_key_hash()
    }

    /// Moves every pattern's watermark to `to` (event time, ms) without an event, if that
    /// is later: what a heartbeat says on a stream that went quiet, or what an embedder that
    /// knows its source is behind a point in time tells the engine. Timeouts and trailing
    /// `notFollowedBy` windows up to `to` are decided now, and events at or before `to` are
    /// late from now on; the watermark never goes back.
    ///
    /// ```
    /// use motif::runtime::{Engine, EngineOptions};
    ///
    /// let decls = motif::syntax::load_str("x", r#"pattern p key k time ts
    ///     = begin("a").where(t == "A").notFollowedBy("b").where(t == "B").within(10s);"#).unwrap();
    /// let mut engine = Engine::new(&decls, EngineOptions::default()).unwrap();
    /// let mut out = Vec::new();
    /// engine.push_json(r#"{"k":1,"t":"A","ts":1000}"#, &mut out);
    /// assert!(engine.matches(&out).next().is_none(), "the window is still open");
    /// engine.advance_watermark(20_000, &mut out);
    /// assert_eq!(engine.matches(&out).count(), 1, "decided without another event");
    /// ```
    pub fn advance_watermark(&mut self, to: i64, out: &mut Vec<Output>) {
        self.drive(out, |front, shards, _| front.advance_watermark(to, shards));
    }

    /// The input has been silent for `quiet_ms` of processing time since its last record,
    /// and the caller wants quiet time to count as event time (a live stream whose events
    /// carry the time they happen): every pattern with a time field moves its watermark as
    /// if an event `quiet_ms` after the newest one seen had come, so a trailing
    /// `notFollowedBy` or a `within` timeout is decided without waiting for the next event.
    /// Events at or before the new watermark are late from then on. Call it again with the
    /// total quiet time so far; less than before moves nothing.
    ///
    /// ```
    /// use motif::runtime::{Engine, EngineOptions};
    ///
    /// let decls = motif::syntax::load_str("x", r#"pattern p key k time ts
    ///     = begin("a").where(t == "A").notFollowedBy("b").where(t == "B").within(10s);"#).unwrap();
    /// let mut engine = Engine::new(&decls, EngineOptions::default()).unwrap();
    /// let mut out = Vec::new();
    /// engine.push_json(r#"{"k":1,"t":"A","ts":1000}"#, &mut out);
    /// engine.advance_quiet(5_000, &mut out);
    /// assert!(engine.matches(&out).next().is_none(), "5 s of quiet: the window is open");
    /// engine.advance_quiet(11_000, &mut out);
    /// assert_eq!(engine.matches(&out).count(), 1, "11 s of quiet: decided");
    /// ```
    pub fn advance_quiet(&mut self, quiet_ms: u64, out: &mut Vec<Output>) {
        self.drive(out, |front, shards, _| {
            front.advance_quiet(quiet_ms, shards)
        });
    }

    /// Processing time is now `now_ms`: source partitions silent for the idle timeout stop
    /// holding the watermark back.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        self.drive(out, |front, shards, _| front.tick(now_ms, shards));
    }

    /// Processes one already decoded record: `row` holds the schema's slots, `raw` is the
    /// JSON text matches echo.
    pub fn push_row(&mut self, row: Box<[Value]>, raw: Arc<str>, out: &mut Vec<Output>) {
        self.stats.records += 1;
        let before = out.len();
        self.drive(out, |front, shards, out| {
            front.route_row(row, raw, 0, 0, shards, out)
        });
        if out.len() > before {
            name_rejects(&mut out[before..], "", self.stats.records, None);
        }
    }

    /// Ends the input: the watermark moves to +∞ and every windowed run is decided.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.drive(out, |front, shards, _| front.finish(shards));
    }

    /// Runs one step of the front with the shards as its sink; the step's notices go to
    /// `out` first, then the shards' outputs, and both are counted.
    #[inline]
    fn drive(
        &mut self,
        out: &mut Vec<Output>,
        step: impl FnOnce(&mut Front, &mut ShardSink<'_>, &mut Vec<Output>),
    ) {
        let before = out.len();
        let mut shards = ShardSink {
            shards: &mut self.shards,
            out: &mut self.shard_out,
            watermarks: self.watermarks.as_mut(),
        };
        step(&mut self.front, &mut shards, out);
        self.flush(out);
        self.stats.count(&out[before..]);
    }

    /// Moves the shards' outputs of the last record to `out`, after the record's notices,
    /// and then the watermark moves.
    fn flush(&mut self, out: &mut Vec<Output>) {
        if !self.shard_out.is_empty() {
            out.extend(self.shard_out.drain(..).map(Output::from_shard));
        }
        if let Some(w) = self.watermarks.as_mut().filter(|w| !w.is_empty()) {
            out.extend(
                w.drain(..)
                    .map(|(pattern, watermark)| Output::Watermark { pattern, watermark }),
            );
        }
    }

    /// The schema slot of a dotted field path into the event (`"user.id"`), if the engine
    /// decodes it (a pattern reads it, or a declaration's output fields name it): the
    /// slot to read with [`crate::nfa::MatchedEvent::get`].
    pub fn field_slot(&self, path: &str) -> Option<usize> {
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        self.front.schema().get(&path)
    }

    /// The whole state as data (serialise it with serde; [`crate::checkpoint`] does).
    pub fn snapshot(&self) -> EngineState {
        EngineState::assemble(
            &self.compiled,
            self.front.clocks().snapshot(),
            self.shards.iter().map(Shard::snapshot).collect(),
            self.stats,
        )
    }

    /// The whole state borrowed where it lives: serialises to the same bytes as
    /// [`Engine::snapshot`] without copying the partitions (a checkpoint of a large state
    /// takes half the time).
    pub fn state_ref(&self) -> EngineStateRef<'_> {
        let clocks = self.front.clocks();
        EngineStateRef {
            schema: self.front.schema().paths(),
            patterns: self
                .nfas
                .iter()
                .enumerate()
                .filter_map(|(i, nfa)| {
                    Some(state::PatternStateRef {
                        name: &nfa.name,
                        fingerprint: self.compiled.fingerprints[i],
                        clock: clocks.clock(i)?,
                        shard: shard::PatternShardsView::of(&self.shards, i),
                    })
                })
                .collect(),
            stats: self.stats,
        }
    }

    /// Restores a state taken from an engine over the same patterns (any shard or worker
    /// count): patterns are matched by name and must have the same compiled form; a pattern
    /// not in the state starts fresh. With `fresh`, changed patterns start fresh and the
    /// state of patterns no longer loaded is dropped, instead of being errors. Nothing
    /// changes on an error.
    pub fn restore(
        &mut self,
        state: EngineState,
        fresh: bool,
    ) -> Result<RestoreReport, RestoreError> {
        let prepared = state::prepare(
            state,
            &self.compiled.targets(),
            &self.compiled.schema,
            fresh,
        )?;
        let shards = self.shards.len();
        let mut clocks = self.front.clocks().clone();
        let mut restored = Vec::new();
        for (i, p) in prepared.patterns.into_iter().enumerate() {
            let Some((clock, shard)) = p else { continue };
            clocks
                .restore_pattern(i, clock)
                .map_err(|(saved, now)| RestoreError::Partitions {
                    name: self.nfas[i].name.clone(),
                    saved,
                    now,
                })?;
            restored.push((i, shard));
        }
        *self.front.clocks_mut() = clocks;
        for (i, shard) in restored {
            for (s, part) in self.shards.iter_mut().zip(shard.split(shards)) {
                s.restore_pattern(i, part);
            }
        }
        self.stats = prepared.stats;
        Ok(prepared.report)
    }
}

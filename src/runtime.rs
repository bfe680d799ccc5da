//! The event-time runtime: decode, key, order by event time, watermark, and drive one
//! [`Matcher`] per partition.
//!
//! Per pattern, events are buffered per key by (time, arrival). The watermark is
//! `max time seen − lateness − 1 ms`; an event whose time is not after the watermark on
//! arrival is late and goes to the late output. When the watermark passes a time T, a
//! partition first times out its runs against T, then is fed the events at T in arrival order
//! (Flink's CepOperator). A partition with nothing pending keeps no state at all. At the end
//! of input the watermark moves to +∞ so every windowed run is decided.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::event::{time_from_value, DecodeError, Event, Schema};
use crate::nfa::{compile, CompileError, Match, Matcher, Nfa};
use crate::output;
use crate::pattern::PatternDecl;
use crate::value::Value;

/// What the engine produced for one input record or for the end of input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A match or a timed-out partial match of pattern `pattern` (index).
    Match {
        /// Index of the pattern in the engine.
        pattern: usize,
        /// The partition key as JSON, if the pattern is keyed.
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
    },
}

/// Counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// Partial matches dropped by the per-partition cap.
    pub dropped_runs: u64,
}

/// Options of an engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Report timed-out partial matches.
    pub timeouts: bool,
    /// Cap on partial matches per partition (`None`: [`crate::nfa::matcher::DEFAULT_MAX_RUNS`]).
    pub max_runs_per_key: Option<usize>,
}

/// All patterns of a run, over one shared schema.
pub struct Engine {
    schema: Schema,
    patterns: Vec<PatternRuntime>,
    stats: Stats,
    options: EngineOptions,
}

impl Engine {
    /// Compiles the declarations.
    pub fn new(decls: &[PatternDecl], options: EngineOptions) -> Result<Engine, CompileError> {
        let mut schema = Schema::new();
        let mut patterns = Vec::new();
        for d in decls {
            let nfa = Arc::new(compile(d, &mut schema)?);
            let time = d.time.as_ref().map(|p| (schema.slot_of(p), p.join(".")));
            let key_slots = d.key.iter().map(|k| schema.slot_of(k)).collect();
            let lateness = i64::try_from(d.lateness_ms).unwrap_or(i64::MAX);
            patterns.push(PatternRuntime::new(nfa, time, key_slots, lateness));
        }
        Ok(Engine {
            schema,
            patterns,
            stats: Stats::default(),
            options,
        })
    }

    /// The compiled patterns.
    pub fn nfas(&self) -> impl Iterator<Item = &Arc<Nfa>> {
        self.patterns.iter().map(|p| &p.nfa)
    }

    /// The NFA of pattern `i`.
    pub fn nfa(&self, i: usize) -> &Nfa {
        &self.patterns[i].nfa
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            dropped_runs: self.patterns.iter().map(|p| p.dropped_runs).sum(),
            ..self.stats
        }
    }

    /// Open partial matches over all patterns and partitions.
    pub fn open_partial_matches(&self) -> usize {
        self.patterns
            .iter()
            .flat_map(|p| p.partitions())
            .map(|p| p.matcher.partial_matches())
            .sum()
    }

    /// Number of partitions holding state.
    pub fn live_partitions(&self) -> usize {
        self.patterns.iter().map(|p| p.live).sum()
    }

    /// The schema events are decoded with (to decode ahead of time, see
    /// [`Engine::push_row`]).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Decodes and processes one JSON record (one line, without its newline).
    pub fn push_json(&mut self, line: &str, out: &mut Vec<Output>) {
        match self.schema.decode_row(line) {
            Ok(row) => self.push_row(row, Arc::from(line.trim()), out),
            Err(reason) => {
                self.stats.records += 1;
                self.stats.rejected += 1;
                out.push(Output::Reject {
                    pattern: None,
                    reason,
                });
            }
        }
    }

    /// Processes one already decoded record: `row` holds the schema's slots, `raw` is the
    /// JSON text matches echo.
    pub fn push_row(&mut self, row: Box<[Value]>, raw: Arc<str>, out: &mut Vec<Output>) {
        self.stats.records += 1;
        let before = out.len();
        let n = self.patterns.len();
        let mut row = Some(row);
        for i in 0..n {
            // The last pattern takes the row; the others get a copy.
            let fields = if i + 1 == n {
                row.take().unwrap_or_default()
            } else {
                row.clone().unwrap_or_default()
            };
            let p = &mut self.patterns[i];
            if let Err(reason) = p.push(i, fields, Arc::clone(&raw), self.options, out) {
                self.stats.rejected += 1;
                out.push(Output::Reject {
                    pattern: Some(i),
                    reason,
                });
            }
        }
        self.count(&out[before..]);
    }

    /// Ends the input: the watermark moves to +∞ and every windowed run is decided.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        let before = out.len();
        for (i, p) in self.patterns.iter_mut().enumerate() {
            p.advance_watermark(i, i64::MAX, self.options, out);
        }
        self.count(&out[before..]);
    }

    /// Adds the outputs of one call to the counters.
    fn count(&mut self, new: &[Output]) {
        for o in new {
            match o {
                Output::Match { m, .. } if m.timed_out.is_some() => self.stats.timeouts += 1,
                Output::Match { .. } => self.stats.matches += 1,
                Output::Late { .. } => self.stats.late += 1,
                Output::Reject { .. } => {}
            }
        }
    }
}

/// One key's state: its matcher and the events waiting for the watermark.
struct Partition {
    matcher: Matcher,
    /// Events not yet fed, by (time, arrival); almost always short and in order.
    pending: VecDeque<(i64, u64, Event)>,
    key_json: Option<Arc<str>>,
    key: Arc<str>,
    /// Earliest time a timer is registered for (`i64::MAX`: none).
    timer_at: i64,
}

/// Slot index and generation of a partition, for timers that may outlive it.
type Handle = (u32, u32);

struct Slot {
    generation: u32,
    partition: Option<Partition>,
}

/// Idle matchers kept for reuse, so a key that comes and goes does not allocate each time.
const MATCHER_POOL: usize = 256;

struct PatternRuntime {
    nfa: Arc<Nfa>,
    time: Option<(usize, String)>,
    key_slots: Vec<usize>,
    lateness: i64,
    index: HashMap<Arc<str>, u32>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    pool: Vec<Matcher>,
    timers: BinaryHeap<Reverse<(i64, Handle)>>,
    watermark: i64,
    max_time: i64,
    arrivals: u64,
    dropped_runs: u64,
    live: usize,
    matches: Vec<Match>,
    timeouts: Vec<Match>,
}

fn key_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

impl PatternRuntime {
    fn new(nfa: Arc<Nfa>, time: Option<(usize, String)>, key_slots: Vec<usize>, lateness: i64) -> Self {
        PatternRuntime {
            nfa,
            time,
            key_slots,
            lateness,
            index: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            pool: Vec::new(),
            timers: BinaryHeap::new(),
            watermark: i64::MIN,
            max_time: i64::MIN,
            arrivals: 0,
            dropped_runs: 0,
            live: 0,
            matches: Vec::new(),
            timeouts: Vec::new(),
        }
    }

    /// The partition key as a map key: the string itself for one string field (no copy).
    fn key_of(&self, fields: &[Value]) -> Arc<str> {
        let get = |s: usize| fields.get(s).unwrap_or(&Value::Null);
        match self.key_slots.as_slice() {
            [] => Arc::from(""),
            [one] => match get(*one) {
                Value::Str(s) => Arc::clone(s),
                v => Arc::from(key_text(v)),
            },
            many => {
                let texts: Vec<String> = many.iter().map(|s| key_text(get(*s))).collect();
                Arc::from(texts.join("\u{1f}"))
            }
        }
    }

    fn key_json(&self, fields: &[Value]) -> Option<Arc<str>> {
        let get = |s: usize| fields.get(s).unwrap_or(&Value::Null);
        match self.key_slots.as_slice() {
            [] => None,
            [one] => {
                let mut json = String::new();
                output::push_json_str(&mut json, &key_text(get(*one)));
                Some(Arc::from(json))
            }
            many => {
                let texts: Vec<String> = many.iter().map(|s| key_text(get(*s))).collect();
                Some(Arc::from(serde_json::to_string(&texts).unwrap_or_default()))
            }
        }
    }

    fn partition_slot(&mut self, fields: &[Value], options: EngineOptions) -> u32 {
        let key = self.key_of(fields);
        if let Some(&slot) = self.index.get(&*key) {
            return slot;
        }
        let mut matcher = match self.pool.pop() {
            Some(mut m) => {
                m.reset(&self.nfa);
                m
            }
            None => Matcher::new(&self.nfa),
        };
        if let Some(cap) = options.max_runs_per_key {
            matcher.set_max_runs(cap);
        }
        let part = Partition {
            matcher,
            pending: VecDeque::new(),
            key_json: self.key_json(fields),
            key: Arc::clone(&key),
            timer_at: i64::MAX,
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize].partition = Some(part);
                s
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    partition: Some(part),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        self.live += 1;
        slot
    }

    fn push(
        &mut self,
        index: usize,
        fields: Box<[Value]>,
        raw: Arc<str>,
        options: EngineOptions,
        out: &mut Vec<Output>,
    ) -> Result<(), DecodeError> {
        let arrival = self.arrivals;
        let time = match &self.time {
            Some((slot, name)) => time_from_value(fields.get(*slot).unwrap_or(&Value::Null), name)?,
            None => i64::try_from(arrival).unwrap_or(i64::MAX),
        };
        self.arrivals += 1;
        if time <= self.watermark {
            out.push(Output::Late {
                pattern: index,
                raw,
                time,
                watermark: self.watermark,
            });
            return Ok(());
        }
        let slot = self.partition_slot(&fields, options);
        let generation = self.slots[slot as usize].generation;
        if let Some(part) = self.slots[slot as usize].partition.as_mut() {
            let ev = Event { time, fields, raw };
            // Keep (time, arrival) order; in-order input appends.
            let at = match part.pending.back() {
                Some(&(t, _, _)) if t > time => part.pending.partition_point(|(t, _, _)| *t <= time),
                _ => part.pending.len(),
            };
            part.pending.insert(at, (time, arrival, ev));
            if time < part.timer_at {
                part.timer_at = time;
                self.timers.push(Reverse((time, (slot, generation))));
            }
        }
        self.max_time = self.max_time.max(time);
        let wm = self.max_time.saturating_sub(self.lateness).saturating_sub(1);
        if wm > self.watermark {
            self.advance_watermark(index, wm, options, out);
        }
        Ok(())
    }

    fn advance_watermark(&mut self, index: usize, wm: i64, options: EngineOptions, out: &mut Vec<Output>) {
        self.watermark = wm;
        while let Some(&Reverse((t, (slot, generation)))) = self.timers.peek() {
            if t > wm {
                break;
            }
            self.timers.pop();
            let s = &mut self.slots[slot as usize];
            if s.generation != generation {
                continue;
            }
            let Some(part) = s.partition.as_mut() else {
                continue;
            };
            if t > part.timer_at {
                // A later timer of a partition that has been fired since: nothing due.
                continue;
            }
            part.timer_at = i64::MAX;
            let nfa = &*self.nfa;
            let dropped_before = part.matcher.dropped_runs();
            // Feed every buffered event up to the watermark, one timestamp at a time: first
            // expire runs against that time, then the events at it in arrival order.
            while let Some(&(t, _, _)) = part.pending.front() {
                if t > wm {
                    break;
                }
                part.matcher
                    .advance_time(nfa, t, options.timeouts, &mut self.matches, &mut self.timeouts);
                while let Some((_, _, ev)) = part.pending.pop_front_if(|(et, _, _)| *et == t) {
                    part.matcher.process(nfa, ev, &mut self.matches);
                }
            }
            part.matcher
                .advance_time(nfa, wm, options.timeouts, &mut self.matches, &mut self.timeouts);
            self.dropped_runs += part.matcher.dropped_runs() - dropped_before;
            for m in self.matches.drain(..).chain(self.timeouts.drain(..)) {
                out.push(Output::Match {
                    pattern: index,
                    key: part.key_json.clone(),
                    m,
                });
            }
            if part.pending.is_empty() && part.matcher.is_idle() {
                // Nothing pending: the key keeps no state (its matcher goes back to the pool).
                if let Some(p) = s.partition.take() {
                    self.index.remove(&*p.key);
                    if self.pool.len() < MATCHER_POOL {
                        self.pool.push(p.matcher);
                    }
                }
                s.generation = s.generation.wrapping_add(1);
                self.free_slots.push(slot);
                self.live -= 1;
            } else {
                let next = part
                    .pending
                    .front()
                    .map(|(t, _, _)| *t)
                    .into_iter()
                    .chain(part.matcher.next_deadline(nfa))
                    .min();
                if let Some(n) = next {
                    part.timer_at = n;
                    self.timers.push(Reverse((n.max(wm.saturating_add(1)), (slot, generation))));
                }
            }
        }
    }

    fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.slots.iter().filter_map(|s| s.partition.as_ref())
    }
}

/// Runs the patterns of `source` over JSON lines and returns every match as the JSON object
/// the CLI prints (timed-out partial matches too when `with_timeouts`). Meant for tests and
/// embedding; errors are rendered as text.
pub fn match_lines(
    source: &str,
    lines: &[&str],
    with_timeouts: bool,
) -> Result<Vec<serde_json::Value>, String> {
    match_lines_with(
        source,
        lines,
        EngineOptions {
            timeouts: with_timeouts,
            ..EngineOptions::default()
        },
    )
}

/// [`match_lines`] with explicit engine options.
pub fn match_lines_with(
    source: &str,
    lines: &[&str],
    options: EngineOptions,
) -> Result<Vec<serde_json::Value>, String> {
    let decls = crate::syntax::load_str("<source>", source).map_err(|e| e.to_string())?;
    let mut engine = Engine::new(&decls, options).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for l in lines {
        if !l.trim().is_empty() {
            engine.push_json(l, &mut out);
        }
    }
    engine.finish(&mut out);
    let mut result = Vec::new();
    let mut text = String::new();
    for o in &out {
        if let Output::Match { pattern, key, m } = o {
            text.clear();
            output::write_match(&mut text, engine.nfa(*pattern), key.as_deref(), m);
            result.push(serde_json::from_str(&text).map_err(|e| e.to_string())?);
        }
    }
    Ok(result)
}

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
use std::collections::{BTreeMap, BinaryHeap};
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
            patterns.push(PatternRuntime {
                nfa,
                time,
                key_slots,
                lateness: i64::try_from(d.lateness_ms).unwrap_or(i64::MAX),
                partitions: HashMap::new(),
                timers: BinaryHeap::new(),
                watermark: i64::MIN,
                max_time: i64::MIN,
                arrivals: 0,
                dropped_runs: 0,
            });
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
            .flat_map(|p| p.partitions.values())
            .map(|p| p.matcher.partial_matches())
            .sum()
    }

    /// Number of partitions holding state.
    pub fn live_partitions(&self) -> usize {
        self.patterns.iter().map(|p| p.partitions.len()).sum()
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

struct Partition {
    matcher: Matcher,
    pending: BTreeMap<(i64, u64), Event>,
    key_json: Option<Arc<str>>,
}

struct PatternRuntime {
    nfa: Arc<Nfa>,
    time: Option<(usize, String)>,
    key_slots: Vec<usize>,
    lateness: i64,
    partitions: HashMap<Arc<str>, Partition>,
    timers: BinaryHeap<Reverse<(i64, Arc<str>)>>,
    watermark: i64,
    max_time: i64,
    arrivals: u64,
    dropped_runs: u64,
}

fn key_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

impl PatternRuntime {
    fn key_of(&self, fields: &[Value]) -> (Arc<str>, Option<Arc<str>>) {
        let get = |s: usize| fields.get(s).unwrap_or(&Value::Null);
        match self.key_slots.as_slice() {
            [] => (Arc::from(""), None),
            [one] => {
                let v = get(*one);
                let mut json = String::new();
                output::push_json_str(&mut json, &key_text(v));
                (Arc::from(key_text(v)), Some(Arc::from(json)))
            }
            many => {
                let texts: Vec<String> = many.iter().map(|s| key_text(get(*s))).collect();
                let json = serde_json::to_string(&texts).unwrap_or_default();
                (Arc::from(texts.join("\u{1f}")), Some(Arc::from(json)))
            }
        }
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
            Some((slot, name)) => {
                time_from_value(fields.get(*slot).unwrap_or(&Value::Null), name)?
            }
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
        let (key, key_json) = self.key_of(&fields);
        let nfa = &self.nfa;
        let part = self
            .partitions
            .entry(Arc::clone(&key))
            .or_insert_with(|| Partition {
                matcher: {
                    let mut m = Matcher::new(Arc::clone(nfa));
                    if let Some(cap) = options.max_runs_per_key {
                        m.set_max_runs(cap);
                    }
                    m
                },
                pending: BTreeMap::new(),
                key_json,
            });
        part.pending
            .insert((time, arrival), Event { time, fields, raw });
        self.timers.push(Reverse((time, key)));
        self.max_time = self.max_time.max(time);
        let wm = self.max_time.saturating_sub(self.lateness).saturating_sub(1);
        if wm > self.watermark {
            self.advance_watermark(index, wm, options, out);
        }
        Ok(())
    }

    fn advance_watermark(
        &mut self,
        index: usize,
        wm: i64,
        options: EngineOptions,
        out: &mut Vec<Output>,
    ) {
        self.watermark = wm;
        let mut matches = Vec::new();
        let mut timeouts = Vec::new();
        while let Some(Reverse((t, _))) = self.timers.peek() {
            if *t > wm {
                break;
            }
            let Some(Reverse((_, key))) = self.timers.pop() else {
                break;
            };
            let Some(part) = self.partitions.get_mut(&key) else {
                continue;
            };
            let dropped_before = part.matcher.dropped_runs();
            // Feed every buffered event up to the watermark, one timestamp at a time: first
            // expire runs against that time, then the events at it in arrival order.
            while let Some(entry) = part.pending.first_entry() {
                let (t, _) = *entry.key();
                if t > wm {
                    break;
                }
                let ev = entry.remove();
                part.matcher
                    .advance_time(t, options.timeouts, &mut matches, &mut timeouts);
                part.matcher.process(ev, &mut matches);
                while let Some(e) = part.pending.first_entry() {
                    if e.key().0 != t {
                        break;
                    }
                    let ev = e.remove();
                    part.matcher.process(ev, &mut matches);
                }
            }
            part.matcher
                .advance_time(wm, options.timeouts, &mut matches, &mut timeouts);
            self.dropped_runs += part.matcher.dropped_runs() - dropped_before;
            let key_json = part.key_json.clone();
            for m in matches.drain(..).chain(timeouts.drain(..)) {
                out.push(Output::Match {
                    pattern: index,
                    key: key_json.clone(),
                    m,
                });
            }
            if part.pending.is_empty() && part.matcher.is_idle() {
                self.partitions.remove(&key);
            } else if let Some(d) = part.matcher.next_deadline() {
                if d > wm {
                    self.timers.push(Reverse((d, key)));
                }
            }
        }
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

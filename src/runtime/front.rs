//! The front of the runtime, on the reading thread: decode, event time, lateness and the
//! watermark per pattern, and the key that routes an event to its shard.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{time_from_value, DecodeError, Event, Schema, StrCache};
use crate::key::{self, key_hash, KeyBytes};
use crate::runtime::frontier::Frontier;
use crate::runtime::{Output, RecordOrigin};
use crate::value::Value;

/// An on-time event on its way to its pattern's partition.
#[derive(Debug, Clone)]
pub struct KeyedEvent {
    /// Pattern index.
    pub pattern: usize,
    /// Partition key ([`crate::key`]) when the front built it (several key fields, or one
    /// that is not a string); `None` when it is the event's own single string key field, read
    /// there by the shard, or the pattern is unkeyed.
    pub key: Option<KeyBytes>,
    /// Stable hash of the key ([`key_hash`]; its shard is [`key::shard_of`]).
    pub hash: u64,
    /// Arrival number within the pattern (orders equal times).
    pub arrival: u64,
    /// The pattern's watermark once this event is counted: an event not after
    /// `watermark + 1` can be fed at once (no on-time event can come before it).
    pub watermark: i64,
    /// The event.
    pub event: Event,
}

/// Where the front sends what it routes, in order (the single-threaded engine's shards).
pub trait RouteSink {
    /// An on-time event.
    fn event(&mut self, event: KeyedEvent);

    /// `pattern`'s watermark advanced to `wm`.
    fn watermark(&mut self, pattern: usize, wm: i64);
}

/// How one pattern reads a decoded record: its time field and its key fields.
#[derive(Debug, Clone)]
struct PatternRead {
    time: Option<(usize, String)>,
    key_slots: Vec<usize>,
}

/// One pattern's event-time bookkeeping: arrivals so far and the watermark frontier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatternClock {
    frontier: Frontier,
    arrivals: u64,
}

impl PatternClock {
    /// The pattern's watermark.
    pub fn watermark(&self) -> i64 {
        self.frontier.watermark()
    }
}

/// How the front reads one pattern's events.
#[derive(Debug, Clone)]
pub struct PatternInput {
    /// The time field's slot and dotted name (`None`: arrival order is time).
    pub time: Option<(usize, String)>,
    /// The key fields' slots.
    pub key_slots: Vec<usize>,
    /// Bounded out-of-orderness in ms.
    pub lateness: i64,
}

/// The stateless half of the front: decodes a record and reads, per pattern, its event
/// time and routing key. A parallel engine runs one per worker, each on its own records.
pub struct Decoder {
    schema: Schema,
    strings: StrCache,
    patterns: Vec<PatternRead>,
}

/// The stateful half of the front: per pattern, the arrival count and the watermark. It
/// sees every record in input order; a parallel engine runs one copy per worker, all in
/// step, so each decides lateness and watermarks exactly as one thread would.
#[derive(Debug, Clone)]
pub struct Clocks {
    patterns: Vec<PatternClock>,
    /// Per pattern: it has a time field (else time is the arrival count, which quiet
    /// processing time does not move).
    event_time: Vec<bool>,
}

/// What [`Clocks::admit`] decided for one event of one pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not after the watermark: goes to the late output.
    Late {
        /// The event's time.
        time: i64,
        /// The watermark it arrived after.
        watermark: i64,
    },
    /// On time.
    OnTime {
        /// The event's time (its arrival number for a pattern without a time field).
        time: i64,
        /// Arrival number within the pattern (orders equal times).
        arrival: u64,
        /// The pattern's watermark once the event is counted.
        watermark: i64,
        /// The new watermark, if the event moved it.
        advanced: Option<i64>,
    },
}

/// Decoding, time and watermarks for all patterns.
pub struct Front {
    decoder: Decoder,
    clocks: Clocks,
    /// The first pattern's key hash of the last record routed (`None`: it had no usable
    /// key), for a caller that checks where keys come from.
    last_key_hash: Option<u64>,
}

/// The key of an event as it travels ([`KeyedEvent::key`]) and its hash: a single string key
/// field stays in the event (the shard reads it there), other keys are built here; an unkeyed
/// pattern has no key and hash 0.
#[inline(always)]
///
/// `Err` with the index (among the key fields) of a field that is missing or null: such a
/// record has no key (Flink's key selector fails on null).
fn route_key(key_slots: &[usize], fields: &[Value]) -> Result<(Option<KeyBytes>, u64), usize> {
    match key_slots {
        [] => return Ok((None, 0)),
        [one] => {
            if let Some(Value::Str(s)) = fields.get(*one) {
                return Ok((None, key_hash(s.as_bytes())));
            }
        }
        _ => {}
    }
    if let Some(i) = key_slots
        .iter()
        .position(|s| matches!(fields.get(*s), None | Some(Value::Null)))
    {
        return Err(i);
    }
    let key = key::encode(key_slots, fields);
    let hash = key_hash(&key);
    Ok((Some(key), hash))
}

impl Decoder {
    /// A decoder over `schema` for these patterns.
    pub fn new(schema: Schema, patterns: &[PatternInput]) -> Decoder {
        Decoder {
            schema,
            strings: StrCache::new(),
            patterns: patterns
                .iter()
                .map(|p| PatternRead {
                    time: p.time.clone(),
                    key_slots: p.key_slots.clone(),
                })
                .collect(),
        }
    }

    /// The schema records are decoded with.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Number of patterns.
    pub fn patterns(&self) -> usize {
        self.patterns.len()
    }

    /// Decodes one JSON record into the schema's slots.
    #[inline]
    pub fn decode(&mut self, line: &str) -> Result<Box<[Value]>, DecodeError> {
        self.schema
            .decode_row_with(line, &mut self.strings)
            .map_err(|e| unreadable_or(line, e))
    }

    /// Pattern `i`'s event time in `row`; `None` for a pattern without a time field (its
    /// events are ordered by arrival, see [`Clocks::admit`]).
    #[inline]
    fn time(&self, i: usize, row: &[Value]) -> Result<Option<i64>, DecodeError> {
        match &self.patterns[i].time {
            Some((slot, name)) => {
                time_from_value(row.get(*slot).unwrap_or(&Value::Null), name).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Pattern `i`'s routing key and its hash (see [`KeyedEvent::key`]).
    #[inline]
    fn route_key(&self, i: usize, row: &[Value]) -> Result<(Option<KeyBytes>, u64), DecodeError> {
        let slots = &self.patterns[i].key_slots;
        route_key(slots, row)
            .map_err(|k| self.missing_key(slots.get(k).copied().unwrap_or(usize::MAX)))
    }

    /// The reject of a record without key field `slot`.
    #[cold]
    fn missing_key(&self, slot: usize) -> DecodeError {
        let name = self.schema.paths().get(slot).map(|p| p.join("."));
        DecodeError::MissingKey(name.unwrap_or_default())
    }

    /// One decoded record as each pattern reads it, in pattern order: its time and key, or
    /// why the pattern cannot use it. The last pattern gets the row and the text, the others
    /// copies.
    #[inline(always)]
    pub fn for_each_pattern(
        &self,
        row: Box<[Value]>,
        raw: Arc<str>,
        mut each: impl FnMut(usize, Result<PatternEvent, (DecodeError, Arc<str>)>),
    ) {
        let n = self.patterns.len();
        let (mut row, mut raw) = (Some(row), Some(raw));
        for i in 0..n {
            let fields: &[Value] = row.as_deref().unwrap_or_default();
            let time = match self.time(i, fields) {
                Ok(t) => t,
                Err(reason) => {
                    // The record's text goes with its reject (rare: cloned only then).
                    each(i, Err((reason, raw.clone().unwrap_or_default())));
                    continue;
                }
            };
            let (key, hash) = match self.route_key(i, fields) {
                Ok(k) => k,
                Err(reason) => {
                    each(i, Err((reason, raw.clone().unwrap_or_default())));
                    continue;
                }
            };
            let (fields, raw) = if i + 1 == n {
                (row.take(), raw.take())
            } else {
                (row.clone(), raw.clone())
            };
            each(
                i,
                Ok(PatternEvent {
                    time,
                    key,
                    hash,
                    fields: fields.unwrap_or_default(),
                    raw: raw.unwrap_or_else(|| Arc::from("")),
                }),
            );
        }
    }
}

/// A decoded record as one pattern reads it (see [`Decoder::for_each_pattern`]).
pub struct PatternEvent {
    /// Its time (`None`: the pattern orders by arrival).
    pub time: Option<i64>,
    /// Its routing key, as [`KeyedEvent::key`].
    pub key: Option<KeyBytes>,
    /// The key's hash.
    pub hash: u64,
    /// The schema's slots.
    pub fields: Box<[Value]>,
    /// The record's text.
    pub raw: Arc<str>,
}

impl Clocks {
    /// Clocks for these patterns over `source_partitions` source partitions.
    pub fn new(
        patterns: &[PatternInput],
        source_partitions: usize,
        idle_timeout_ms: Option<u64>,
    ) -> Clocks {
        Clocks {
            patterns: patterns
                .iter()
                .map(|p| PatternClock {
                    frontier: Frontier::new(source_partitions, p.lateness, idle_timeout_ms),
                    arrivals: 0,
                })
                .collect(),
            event_time: patterns.iter().map(|p| p.time.is_some()).collect(),
        }
    }

    /// Per source partition, the largest lead past the slowest partition over the
    /// event-time patterns (see [`Frontier::leads`]); empty when no pattern can tell.
    pub fn leads(&self) -> Vec<i64> {
        let mut leads = Vec::new();
        for (p, timed) in self.patterns.iter().zip(&self.event_time) {
            if !*timed || p.frontier.partitions() < 2 {
                continue;
            }
            leads.resize(p.frontier.partitions(), i64::MIN);
            for (l, lead) in leads.iter_mut().zip(p.frontier.leads()) {
                *l = (*l).max(lead.unwrap_or(i64::MIN));
            }
        }
        if leads.iter().all(|l| *l == i64::MIN) {
            leads.clear();
        }
        leads
    }

    /// The largest watermark lag over the patterns (see [`Frontier::lag`]).
    pub fn watermark_lag(&self) -> Option<i64> {
        self.patterns.iter().filter_map(|p| p.frontier.lag()).max()
    }

    /// The smallest watermark over the patterns, once every pattern has one (and before the
    /// end of input).
    pub fn watermark(&self) -> Option<i64> {
        let w = self.patterns.iter().map(|p| p.frontier.watermark()).min()?;
        (w != i64::MIN && w != i64::MAX).then_some(w)
    }

    /// Each pattern's clock, as data.
    pub fn snapshot(&self) -> Vec<PatternClock> {
        self.patterns.clone()
    }

    /// Pattern `i`'s clock.
    pub fn clock(&self, i: usize) -> Option<&PatternClock> {
        self.patterns.get(i)
    }

    /// Pattern `i` continues from `clock` (saved by an earlier run of the same pattern):
    /// `Err` with the partition counts if the saved clock has another number of source
    /// partitions than this run.
    pub fn restore_pattern(&mut self, i: usize, clock: PatternClock) -> Result<(), (usize, usize)> {
        let Some(p) = self.patterns.get_mut(i) else {
            return Ok(());
        };
        let (saved, now) = (clock.frontier.partitions(), p.frontier.partitions());
        let idle = p.frontier.idle_timeout_ms();
        match clock.frontier.resumed(now, idle) {
            Some(frontier) => {
                *p = PatternClock {
                    frontier,
                    arrivals: clock.arrivals,
                };
                Ok(())
            }
            None => Err((saved, now)),
        }
    }

    /// Counts an event of pattern `i` at `time` (`None`: the pattern orders by arrival)
    /// from source partition `source`, read at processing time `now_ms`, and decides
    /// whether it is late.
    #[inline]
    pub fn admit(&mut self, i: usize, time: Option<i64>, source: usize, now_ms: u64) -> Admission {
        let p = &mut self.patterns[i];
        let arrival = p.arrivals;
        let time = time.unwrap_or_else(|| i64::try_from(arrival).unwrap_or(i64::MAX));
        p.arrivals += 1;
        if p.frontier.is_late(time) {
            return Admission::Late {
                time,
                watermark: p.frontier.watermark(),
            };
        }
        let advanced = p.frontier.observe(source, time, now_ms);
        Admission::OnTime {
            time,
            arrival,
            watermark: p.frontier.watermark(),
            advanced,
        }
    }

    /// Processing time passed: idle sources may stop holding watermarks back; each
    /// (pattern, new watermark) goes to `advanced`.
    pub fn tick(&mut self, now_ms: u64, advanced: &mut dyn FnMut(usize, i64)) {
        for (i, p) in self.patterns.iter_mut().enumerate() {
            if let Some(wm) = p.frontier.tick(now_ms) {
                advanced(i, wm);
            }
        }
    }

    /// Source partition `source` has ended: it no longer holds the watermarks back.
    pub fn end_source(&mut self, source: usize, advanced: &mut dyn FnMut(usize, i64)) {
        for (i, p) in self.patterns.iter_mut().enumerate() {
            if let Some(wm) = p.frontier.end(source) {
                advanced(i, wm);
            }
        }
    }

    /// Source partition `source` has sent everything up to `times[i]` for event-time
    /// pattern `i` (a heartbeat of a forwarder: as if an event of that time had come from
    /// it, without one); each (pattern, new watermark) goes to `advanced`.
    pub fn progress(
        &mut self,
        source: usize,
        times: &[Option<i64>],
        now_ms: u64,
        advanced: &mut dyn FnMut(usize, i64),
    ) {
        for (i, p) in self.patterns.iter_mut().enumerate() {
            if !self.event_time.get(i).copied().unwrap_or(false) {
                continue;
            }
            let Some(t) = times.get(i).copied().flatten() else {
                continue;
            };
            if let Some(wm) = p.frontier.observe(source, t, now_ms) {
                advanced(i, wm);
            }
        }
    }

    /// Every pattern's watermark moves to `to` if that is later (see [`Frontier::advance`]).
    pub fn advance(&mut self, to: i64, advanced: &mut dyn FnMut(usize, i64)) {
        for (i, p) in self.patterns.iter_mut().enumerate() {
            if let Some(wm) = p.frontier.advance(to) {
                advanced(i, wm);
            }
        }
    }

    /// The input has been silent for `quiet_ms` of processing time since its last record:
    /// every event-time pattern's watermark moves as [`Frontier::advance_quiet`] says.
    pub fn advance_quiet(&mut self, quiet_ms: u64, advanced: &mut dyn FnMut(usize, i64)) {
        for (i, p) in self.patterns.iter_mut().enumerate() {
            if !self.event_time.get(i).copied().unwrap_or(false) {
                continue;
            }
            if let Some(wm) = p.frontier.advance_quiet(quiet_ms) {
                advanced(i, wm);
            }
        }
    }

    /// End of input: every watermark moves to +∞.
    pub fn finish(&mut self, advanced: &mut dyn FnMut(usize, i64)) {
        for (i, p) in self.patterns.iter_mut().enumerate() {
            advanced(i, p.frontier.finish());
        }
    }
}

impl Front {
    /// A front over `schema` for these patterns, with `source_partitions` watermark
    /// partitions.
    pub fn new(
        schema: Schema,
        patterns: Vec<PatternInput>,
        source_partitions: usize,
        idle_timeout_ms: Option<u64>,
    ) -> Front {
        Front {
            clocks: Clocks::new(&patterns, source_partitions, idle_timeout_ms),
            decoder: Decoder::new(schema, &patterns),
            last_key_hash: None,
        }
    }

    /// Per source partition, its lead past the slowest (see [`Clocks::leads`]).
    pub fn leads(&self) -> Vec<i64> {
        self.clocks.leads()
    }

    /// The largest watermark lag over the patterns (see [`Frontier::lag`]).
    pub fn watermark_lag(&self) -> Option<i64> {
        self.clocks.watermark_lag()
    }

    /// The smallest watermark over the patterns (see [`Clocks::watermark`]).
    pub fn watermark(&self) -> Option<i64> {
        self.clocks.watermark()
    }

    /// The schema records are decoded with.
    pub fn schema(&self) -> &Schema {
        self.decoder.schema()
    }

    /// Decodes one JSON record and routes it.
    pub fn route_json(
        &mut self,
        line: &str,
        source: usize,
        now_ms: u64,
        routed: &mut impl RouteSink,
        notices: &mut Vec<Output>,
    ) {
        match self.decoder.decode(line) {
            Ok(row) => self.route_row(row, Arc::from(line.trim()), source, now_ms, routed, notices),
            Err(reason) => notices.push(Output::Reject {
                pattern: None,
                reason,
                record: Box::default(),
            }),
        }
    }

    /// Routes one decoded record to every pattern.
    pub fn route_row(
        &mut self,
        row: Box<[Value]>,
        raw: Arc<str>,
        source: usize,
        now_ms: u64,
        routed: &mut impl RouteSink,
        notices: &mut Vec<Output>,
    ) {
        let Front {
            decoder,
            clocks,
            last_key_hash,
        } = self;
        *last_key_hash = None;
        decoder.for_each_pattern(row, raw, |i, read| {
            let e = match read {
                Ok(e) => e,
                Err((reason, text)) => {
                    notices.push(Output::Reject {
                        pattern: Some(i),
                        reason,
                        record: Box::new(RecordOrigin {
                            text,
                            ..RecordOrigin::default()
                        }),
                    });
                    return;
                }
            };
            if i == 0 {
                *last_key_hash = Some(e.hash);
            }
            match clocks.admit(i, e.time, source, now_ms) {
                Admission::Late { time, watermark } => notices.push(Output::Late {
                    pattern: i,
                    raw: e.raw,
                    time,
                    watermark,
                }),
                Admission::OnTime {
                    time,
                    arrival,
                    watermark,
                    advanced,
                } => {
                    routed.event(KeyedEvent {
                        pattern: i,
                        key: e.key,
                        hash: e.hash,
                        arrival,
                        watermark,
                        event: Event {
                            time,
                            fields: e.fields,
                            raw: e.raw,
                        },
                    });
                    if let Some(wm) = advanced {
                        routed.watermark(i, wm);
                    }
                }
            }
        });
    }

    /// Processing time passed: idle sources may stop holding watermarks back.
    pub fn tick(&mut self, now_ms: u64, routed: &mut impl RouteSink) {
        self.clocks
            .tick(now_ms, &mut |i, wm| routed.watermark(i, wm));
    }

    /// Source partition `source` has ended: it no longer holds the watermarks back.
    pub fn end_source(&mut self, source: usize, routed: &mut impl RouteSink) {
        self.clocks
            .end_source(source, &mut |i, wm| routed.watermark(i, wm));
    }

    /// Source partition `source` says it has sent everything up to these times (per
    /// pattern; see [`Clocks::progress`]).
    pub fn source_progress(
        &mut self,
        source: usize,
        times: &[Option<i64>],
        now_ms: u64,
        routed: &mut impl RouteSink,
    ) {
        self.clocks
            .progress(source, times, now_ms, &mut |i, wm| routed.watermark(i, wm));
    }

    /// The first pattern's routing key of a record and each pattern's time in it, without
    /// processing it (what a repartitioning forwarder keys the record by, and how far it
    /// has come); `None` if the record cannot be decoded. A pattern that cannot read its
    /// time gets `None`, and so does the key when the first pattern cannot read it.
    pub fn key_and_times(
        &mut self,
        line: &str,
        times: &mut Vec<Option<i64>>,
    ) -> Option<Option<KeyBytes>> {
        let row = self.decoder.decode(line).ok()?;
        times.clear();
        for i in 0..self.decoder.patterns() {
            times.push(self.decoder.time(i, &row).ok().flatten());
        }
        if self.decoder.patterns() == 0 {
            return Some(None);
        }
        Some(self.decoder.route_key(0, &row).ok().and_then(|(k, _)| k))
    }

    /// The first pattern's key hash of the last record routed, if it had a usable key.
    pub fn last_key_hash(&self) -> Option<u64> {
        self.last_key_hash
    }

    /// Every watermark moves to `to` if that is later, without an event.
    pub fn advance_watermark(&mut self, to: i64, routed: &mut impl RouteSink) {
        self.clocks
            .advance(to, &mut |i, wm| routed.watermark(i, wm));
    }

    /// The input has been silent for `quiet_ms` of processing time (see
    /// [`Clocks::advance_quiet`]).
    pub fn advance_quiet(&mut self, quiet_ms: u64, routed: &mut impl RouteSink) {
        self.clocks
            .advance_quiet(quiet_ms, &mut |i, wm| routed.watermark(i, wm));
    }

    /// End of input: every watermark moves to +∞.
    pub fn finish(&mut self, routed: &mut impl RouteSink) {
        self.clocks.finish(&mut |i, wm| routed.watermark(i, wm));
    }

    /// The clocks (arrivals, watermarks) of every pattern.
    pub fn clocks(&self) -> &Clocks {
        &self.clocks
    }

    /// The clocks, to restore them.
    pub fn clocks_mut(&mut self) -> &mut Clocks {
        &mut self.clocks
    }
}

/// A record the source marked unreadable ([`crate::source::unreadable_reason`]) is rejected
/// for the source's reason; any other text for the decoder's.
#[cold]
fn unreadable_or(line: &str, e: DecodeError) -> DecodeError {
    match crate::source::unreadable_reason(line) {
        Some((reason, _)) => DecodeError::Unreadable(reason.to_string()),
        None => e,
    }
}

/// The text a reject shows of a record: for one the source could not read, the line as far
/// as it can be shown, without the mark.
pub(crate) fn shown_text(text: &str) -> &str {
    crate::source::unreadable_reason(text).map_or(text, |(_, shown)| shown)
}

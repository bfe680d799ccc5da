//! One worker of a parallel engine: it decodes the chunks it is given, walks every chunk's
//! timeline with its own clocks, matches its own keys, prepares its outputs and reports them.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use super::chunk::{Chunk, Entry, OwnEvents, Owned, Share, Step};
use crate::event::{DecodeError, Event};
use crate::key::shard_of;
use crate::nfa::Nfa;
use crate::runtime::front::{Admission, Clocks, Decoder, KeyedEvent, PatternClock};
use crate::runtime::run::{Prepare, END_OF_INPUT};
use crate::runtime::shard::{PatternShardState, Shard, ShardOutput};
use crate::runtime::{Output, OutputKind, RecordOrigin};

/// One prepared output: the input step that caused it, its kind, the item.
pub(super) type Tagged<T> = (u64, OutputKind, T);

pub(super) enum Inbox {
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

pub(super) struct WorkerReport<T> {
    pub(super) lines: Vec<Tagged<T>>,
    /// Watermark moves (worker 0 only): step, pattern, watermark.
    pub(super) watermarks: Vec<(u64, usize, i64)>,
    /// Chunks fully processed, and the last record of those.
    pub(super) progress: Option<(u64, u64)>,
    pub(super) dropped_runs: u64,
    pub(super) watermark_lag: Option<i64>,
    /// Per source partition, its lead past the slowest ([`Clocks::leads`]; worker 0 only,
    /// for event-time alignment).
    pub(super) leads: Option<Vec<i64>>,
    pub(super) finished: bool,
    pub(super) failed: Option<String>,
    /// The worker's state, asked for by [`Inbox::Snapshot`].
    pub(super) snapshot: Option<Box<WorkerState>>,
}

/// One worker's state at a snapshot: its clocks (the same in every worker) and its shard.
pub(super) struct WorkerState {
    pub(super) clocks: Vec<PatternClock>,
    pub(super) shard: Vec<PatternShardState>,
}

impl<T> WorkerReport<T> {
    pub(super) fn lines(lines: Vec<Tagged<T>>) -> WorkerReport<T> {
        WorkerReport {
            lines,
            watermarks: Vec::new(),
            progress: None,
            dropped_runs: 0,
            watermark_lag: None,
            leads: None,
            finished: false,
            failed: None,
            snapshot: None,
        }
    }
}

/// One worker: a decoder for the chunks it is given, clocks in step with every other
/// worker's, and the shard of its keys.
pub(super) struct Worker<P: Prepare> {
    pub(super) id: usize,
    pub(super) workers: usize,
    pub(super) decoder: Decoder,
    pub(super) clocks: Clocks,
    pub(super) shard: Shard,
    pub(super) nfas: Vec<Arc<Nfa>>,
    /// What outputs become (rendering happens here, on the worker).
    pub(super) prepare: Arc<P>,
    /// Report watermark moves (worker 0, with [`EngineOptions::watermarks`]).
    pub(super) watermarks: bool,
    pub(super) moved: Vec<(u64, usize, i64)>,
    pub(super) inboxes: Vec<Sender<Inbox>>,
    pub(super) reports: Sender<(usize, WorkerReport<P::Item>)>,
    pub(super) out: Vec<ShardOutput>,
}

impl<P: Prepare> Worker<P> {
    pub(super) fn run(mut self, inbox: Receiver<Inbox>) {
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
                    leads: (self.id == 0).then(|| self.clocks.leads()),
                    watermarks: std::mem::take(&mut self.moved),
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
    ) -> Tagged<P::Item> {
        let record = match e {
            Entry::Json {
                start,
                end,
                origin,
                line_no,
                ..
            } => RecordOrigin {
                source: chunk.origins.get(*origin).cloned().unwrap_or_default(),
                line: *line_no,
                text: Arc::from(crate::runtime::front::shown_text(
                    chunk.text.get(*start..*end).unwrap_or(""),
                )),
            },
            _ => RecordOrigin::default(),
        };
        let o = Output::Reject {
            pattern,
            reason,
            record: Box::new(record),
        };
        self.prepared(seq, o)
    }

    /// One output of step `seq`, prepared.
    #[inline]
    fn prepared(&self, seq: u64, o: Output) -> Tagged<P::Item> {
        (seq, o.kind(), self.prepare.prepare(&self.nfas, o))
    }

    /// Notes a watermark move for the report (worker 0 only: every worker's clocks move
    /// alike).
    #[inline]
    fn note_watermark(&mut self, seq: u64, pattern: usize, wm: i64) {
        if self.watermarks {
            self.moved.push((seq, pattern, wm));
        }
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
                                Err((reason, _)) => {
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
                Entry::Clock(step) => timeline.push(Step::Clock { seq, step }),
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
    fn process(&mut self, share: Share) -> Vec<Tagged<P::Item>> {
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
                                lines.push(self.prepared(seq, late));
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
                                self.note_watermark(seq, pattern, wm);
                            }
                        }
                    }
                    self.drain(seq, &mut lines);
                }
                Step::Clock { seq, step } => {
                    self.advance_clocks(seq, |c, moved| step.run(c, moved));
                    self.drain(seq, &mut lines);
                }
            }
        }
        lines
    }

    /// Runs a step of the clocks that is not an event (a source ended, a tick, the end of
    /// input) and gives the shard every watermark it moves.
    fn advance_clocks(
        &mut self,
        seq: u64,
        step: impl FnOnce(&mut Clocks, &mut dyn FnMut(usize, i64)),
    ) {
        let (shard, out, moved, report) = (
            &mut self.shard,
            &mut self.out,
            &mut self.moved,
            self.watermarks,
        );
        step(&mut self.clocks, &mut |p, wm| {
            shard.on_watermark(p, wm, out);
            if report {
                moved.push((seq, p, wm));
            }
        });
    }

    fn drain(&mut self, seq: u64, lines: &mut Vec<Tagged<P::Item>>) {
        if !self.out.is_empty() {
            let (nfas, prepare) = (&self.nfas[..], &*self.prepare);
            lines.extend(self.out.drain(..).map(|o| {
                let o = Output::from_shard(o);
                (seq, o.kind(), prepare.prepare(nfas, o))
            }));
        }
    }

    /// End of input: watermarks to +∞, the last outputs, and the final report.
    fn finish(&mut self) {
        self.advance_clocks(END_OF_INPUT, |c, moved| c.finish(moved));
        let mut lines = Vec::new();
        self.drain(END_OF_INPUT, &mut lines);
        let report = WorkerReport {
            progress: Some((u64::MAX, u64::MAX)),
            dropped_runs: self.shard.dropped_runs(),
            finished: true,
            watermarks: std::mem::take(&mut self.moved),
            ..WorkerReport::lines(lines)
        };
        let _ = self.reports.send((self.id, report));
    }
}

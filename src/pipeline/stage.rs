//! The aggregation stage of a run: what the engine's workers prepare for it, and the
//! operator with its triggers and sinks on the collecting side.
//!
//! A match reaches the pipeline as a [`Staged`] item: its rendered line (for the match
//! output) and the few values each aggregate reading its pattern needs, extracted on the
//! worker that found it. The [`Aggregation`] folds them in when their step is complete, cuts
//! batches on its triggers, and writes each batch's rows to the aggregate's sink.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::aggregate::{
    AggInput, AggregateDecl, AggregateError, AggregateState, Aggregator, Cell, Emitted, Extractor,
    Trigger,
};
use crate::nfa::Nfa;
use crate::output::{write_late_match, write_row, Line, OutputFormat, Render};
use crate::runtime::{Output, Prepare};
use crate::sink::table::DbError;
use crate::sink::writer::{TableWriter, Written};
use crate::sink::{Sink, SinkError};
use crate::value::push_json_str;

/// One output as the pipeline takes it: its line, and what aggregations take of it.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The output rendered for its sink.
    pub line: Line,
    /// The aggregates' inputs (completed matches of patterns some aggregate reads).
    pub aggs: SmallVec<[AggInput; 1]>,
    /// The match as a row of a match table, when matches go to one.
    pub row: Option<Box<MatchRow>>,
}

/// A match as a row of a raw match table (see [`crate::sink::table::Layout::matches`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MatchRow {
    pattern: Arc<str>,
    key: Option<Arc<str>>,
    start: i64,
    end: i64,
    timed_out: bool,
    /// The match as its JSON line (no newline).
    json: String,
}

/// Renders each output and extracts the aggregates' inputs from matches, on the thread
/// that produced them.
pub(crate) struct StagePrepare {
    /// How lines are rendered.
    pub render: Render,
    /// What the aggregates take of matches (`None`: no aggregates).
    pub extractor: Option<Arc<Extractor>>,
    /// Matches go to a match table: each one also as a row.
    pub match_rows: bool,
}

impl Prepare for StagePrepare {
    type Item = Staged;

    fn prepare(&self, nfas: &[Arc<Nfa>], o: Output) -> Staged {
        let mut aggs = SmallVec::new();
        if let (Some(x), Output::Match { pattern, key, m }) = (&self.extractor, &o) {
            x.extract(*pattern, key.as_deref(), m, &mut aggs);
        }
        let row = match (&o, self.match_rows) {
            (Output::Match { pattern, key, m }, true) => Some(Box::new(MatchRow {
                pattern: nfas
                    .get(*pattern)
                    .map_or_else(|| Arc::from(""), |n| Arc::from(n.name())),
                key: key.clone(),
                start: m.start(),
                end: m.end(),
                timed_out: m.timed_out.is_some(),
                json: String::new(),
            })),
            _ => None,
        };
        let line = self.render.prepare(nfas, o);
        let row = row.map(|mut r| {
            r.json = line.text.trim_end().to_string();
            r
        });
        Staged { line, aggs, row }
    }
}

/// The log of processing-time batch cuts: `AGGREGATE RECORDS` lines, fsynced before the
/// batch is written.
struct CutLog {
    path: PathBuf,
    file: File,
    /// Per aggregate: the cuts of a replay still to make (records counts, ascending).
    replay: Vec<VecDeque<u64>>,
    /// The cut just decided came from the log (so it is not logged again).
    replayed: bool,
}

impl CutLog {
    fn open(dir: &Path, aggs: usize, resumed: Option<u64>) -> Result<CutLog, SinkError> {
        let path = dir.join("batch-cuts.log");
        let io = |source| SinkError::Io {
            target: path.display().to_string(),
            source,
        };
        let mut replay = vec![VecDeque::new(); aggs];
        if let Some(after) = resumed {
            if let Ok(text) = std::fs::read_to_string(&path) {
                for line in text.lines() {
                    let mut it = line.split(' ').map(str::parse::<u64>);
                    if let (Some(Ok(a)), Some(Ok(r))) = (it.next(), it.next()) {
                        let a = usize::try_from(a).unwrap_or(usize::MAX);
                        if r > after {
                            if let Some(q) = replay.get_mut(a) {
                                q.push_back(r);
                            }
                        }
                    }
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if resumed.is_none() {
            // A run from the start: an earlier run's cuts are not this run's.
            file.set_len(0).map_err(io)?;
        }
        Ok(CutLog {
            path,
            file,
            replay,
            replayed: false,
        })
    }

    fn replaying(&self, agg: usize) -> bool {
        self.replay.get(agg).is_some_and(|q| !q.is_empty())
    }

    /// Whether a logged cut falls after record `records` (dropping the ones behind it).
    fn replay_due(&mut self, agg: usize, records: u64) -> bool {
        let Some(q) = self.replay.get_mut(agg) else {
            return false;
        };
        while q.front().is_some_and(|r| *r < records) {
            q.pop_front();
        }
        if q.front() == Some(&records) {
            q.pop_front();
            self.replayed = true;
            return true;
        }
        false
    }

    fn append(&mut self, agg: usize, records: u64) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            target: self.path.display().to_string(),
            source,
        };
        self.file
            .write_all(format!("{agg} {records}\n").as_bytes())
            .map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

/// Raw matches into a table or a Parquet directory, in batches: the matches of the steps
/// between two cuts (every so many records, at each checkpoint, at the end), numbered in
/// (step, text) order so that a replay numbers and batches them as the first run did.
pub(crate) struct MatchTable {
    sink: TableWriter,
    pending: Vec<(u64, Box<MatchRow>)>,
    /// Steps after which a batch is cut, in order.
    cuts: VecDeque<u64>,
    /// Cut a batch after every this many records.
    every: u64,
    state: MatchTableState,
    /// Rows written this run.
    pub rows: u64,
}

/// What a checkpoint keeps of a match table: the last batch id and the matches numbered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MatchTableState {
    /// The last batch id given.
    pub batch: u64,
    /// Matches numbered so far.
    pub numbered: u64,
}

impl MatchTable {
    pub(crate) fn new(sink: TableWriter, every: u64) -> MatchTable {
        MatchTable {
            sink,
            pending: Vec::new(),
            cuts: VecDeque::new(),
            every: every.max(1),
            state: MatchTableState::default(),
            rows: 0,
        }
    }

    /// Queues the batch of the matches of steps up to `upto` for the table.
    fn write(&mut self, upto: u64) -> Vec<Written> {
        let mut ready: Vec<(u64, Box<MatchRow>)> = Vec::new();
        let mut rest = Vec::new();
        for p in self.pending.drain(..) {
            if p.0 <= upto {
                ready.push(p);
            } else {
                rest.push(p);
            }
        }
        self.pending = rest;
        if ready.is_empty() {
            return Vec::new();
        }
        ready.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.json.cmp(&b.1.json)));
        let rows = ready
            .into_iter()
            .map(|(_, m)| {
                self.state.numbered += 1;
                let n = i64::try_from(self.state.numbered).unwrap_or(i64::MAX);
                crate::aggregate::Row {
                    window: None,
                    group: vec![Cell::Int(n)].into(),
                    values: vec![
                        Cell::Str(m.pattern),
                        m.key.map_or(Cell::Null, Cell::Json),
                        Cell::Int(m.start),
                        Cell::Int(m.end),
                        Cell::Bool(m.timed_out),
                        Cell::Str(Arc::from(m.json)),
                    ]
                    .into(),
                    retract: false,
                }
            })
            .collect();
        self.state.batch += 1;
        let batch = crate::aggregate::Batch {
            agg: 0,
            id: self.state.batch,
            mode: crate::aggregate::OutputMode::Append,
            rows,
            watermark: 0,
        };
        self.sink.submit(batch)
    }
}

/// One aggregate's trigger on the reading thread.
struct Due {
    trigger: Trigger,
    last: Instant,
}

/// The aggregation operator of a run, its triggers and its sinks.
pub(crate) struct Aggregation {
    aggregator: Aggregator,
    /// Per aggregate: its file or standard output (role `aggregate:NAME`), unless it
    /// writes to a database table.
    pub sinks: Vec<Option<Box<dyn Sink>>>,
    /// Per aggregate: its database table or Parquet directory, if it writes to one.
    pub tables: Vec<Option<TableWriter>>,
    dues: Vec<Due>,
    format: OutputFormat,
    emitted: Emitted,
    text: String,
    /// Rows written.
    pub rows: u64,
    /// Batches written.
    pub batches: u64,
    /// Late matches, as lines for the late output (taken by the pipeline).
    pub late_lines: Vec<String>,
    /// Rows a database refused, as lines for the rejects output (taken by the pipeline).
    pub refused_lines: Vec<String>,
    /// Batches a database had committed before (replays skipped).
    pub batches_skipped: u64,
    /// Connection attempts to databases that failed and were retried.
    pub db_retries: u64,
    /// The first write error.
    pub error: Option<SinkError>,
    /// Processing-time cuts, logged for replays (with checkpoints).
    log: Option<CutLog>,
    /// Raw matches into a table, if `-o` names one.
    pub matches: Option<MatchTable>,
}

impl Aggregation {
    /// The stage for `decls` over the patterns `nfas`, writing to `sinks` (one per aggregate).
    pub(crate) fn new(
        decls: &[AggregateDecl],
        nfas: &[Arc<Nfa>],
        format: OutputFormat,
    ) -> Result<Aggregation, AggregateError> {
        let aggregator = Aggregator::new(decls, nfas)?;
        let now = Instant::now();
        let dues = aggregator
            .triggers()
            .into_iter()
            .map(|trigger| Due { trigger, last: now })
            .collect();
        Ok(Aggregation {
            aggregator,
            sinks: Vec::new(),
            tables: Vec::new(),
            dues,
            format,
            emitted: Emitted::default(),
            text: String::new(),
            rows: 0,
            batches: 0,
            late_lines: Vec::new(),
            refused_lines: Vec::new(),
            batches_skipped: 0,
            db_retries: 0,
            error: None,
            log: None,
            matches: None,
        })
    }

    /// The operator (its declarations, with `having`'s hidden columns).
    pub(crate) fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// A match of step `seq` for the match table.
    pub(crate) fn match_row(&mut self, seq: u64, row: Box<MatchRow>) {
        if let Some(t) = self.matches.as_mut() {
            t.pending.push((seq, row));
        }
    }

    /// A checkpoint is taken after step `seq`, the `records`th record: the match table cuts
    /// a batch there (logged, so that a replay from an earlier checkpoint cuts there too).
    pub(crate) fn before_checkpoint(&mut self, seq: u64, records: u64) {
        let slot = self.dues.len();
        let Some(t) = self.matches.as_mut() else {
            return;
        };
        if let Some(log) = self.log.as_mut() {
            if !log.replay_due(slot, records) {
                if let Err(e) = log.append(slot, records) {
                    self.error.get_or_insert(e);
                }
            }
        }
        t.cuts.push_back(seq);
    }

    /// An input of step `seq`.
    pub(crate) fn input(&mut self, seq: u64, i: AggInput) {
        self.aggregator.input(seq, i);
    }

    /// A pattern's watermark moved at step `seq`.
    pub(crate) fn watermark(&mut self, seq: u64, pattern: usize, wm: i64) {
        self.aggregator.watermark(seq, pattern, wm);
    }

    /// Record step `seq` was read, the `records`th of the run: cuts the batches whose
    /// trigger is due.
    /// A processing-time cut is logged (with checkpoints) before its batch is written, and
    /// a run resumed from a checkpoint cuts where the log says until the log is behind it,
    /// so a replayed batch has the content it had (Spark's offset log).
    pub(crate) fn after_record(&mut self, seq: u64, records: u64) {
        for (i, d) in self.dues.iter_mut().enumerate() {
            let due = match d.trigger {
                Trigger::Records(n) => records.is_multiple_of(n.max(1)),
                Trigger::Interval(ms) => match self.log.as_mut() {
                    Some(log) if log.replaying(i) => log.replay_due(i, records),
                    _ => d.last.elapsed() >= Duration::from_millis(ms),
                },
                Trigger::Watermark => false,
            };
            if due {
                d.last = Instant::now();
                if let (Trigger::Interval(_), Some(log)) = (d.trigger, self.log.as_mut()) {
                    if !log.replayed {
                        if let Err(e) = log.append(i, records) {
                            self.error.get_or_insert(e);
                        }
                    }
                    log.replayed = false;
                }
                self.aggregator.cut(seq, Some(i));
            }
        }
        let slot = self.dues.len();
        if let Some(t) = self.matches.as_mut() {
            let logged = self
                .log
                .as_mut()
                .is_some_and(|l| l.replay_due(slot, records));
            if logged || records.is_multiple_of(t.every) {
                t.cuts.push_back(seq);
            }
        }
    }

    /// Logs processing-time cuts in `dir` (a checkpoint directory); a run resumed after
    /// `resumed_records` records replays the cuts logged after them.
    pub(crate) fn log_cuts(
        &mut self,
        dir: &Path,
        resumed_records: Option<u64>,
    ) -> Result<(), SinkError> {
        // One slot per aggregate, and one for the match table.
        self.log = Some(CutLog::open(dir, self.dues.len() + 1, resumed_records)?);
        Ok(())
    }

    /// The input ended: a final batch of every aggregate after its last step.
    pub(crate) fn end(&mut self, seq: u64) {
        self.aggregator.cut(seq, None);
        if let Some(t) = self.matches.as_mut() {
            t.cuts.push_back(seq);
        }
    }

    /// Steps up to `through` are complete: folds them in and writes the batches cut.
    pub(crate) fn complete(&mut self, through: u64) {
        self.aggregator.complete(through, &mut self.emitted);
        self.write();
        let mut written = Vec::new();
        if let Some(t) = self.matches.as_mut() {
            while t.cuts.front().is_some_and(|c| *c <= through) {
                if let Some(c) = t.cuts.pop_front() {
                    written.extend(t.write(c));
                }
            }
            written.extend(t.sink.ready());
        }
        self.matches_written(written);
        let ready: Vec<Written> = self
            .tables
            .iter_mut()
            .flatten()
            .flat_map(|t| t.ready())
            .collect();
        self.tables_written(ready);
    }

    /// Waits until the tables have written every batch given to them (before a checkpoint,
    /// and at the end of the run).
    pub(crate) fn settle(&mut self) {
        let written: Vec<Written> = self
            .tables
            .iter_mut()
            .flatten()
            .flat_map(|t| t.wait())
            .collect();
        self.tables_written(written);
        if let Some(t) = self.matches.as_mut() {
            let written = t.sink.wait();
            self.matches_written(written);
        }
    }

    /// Takes the reports of the match table's batches.
    fn matches_written(&mut self, written: Vec<Written>) {
        for w in written {
            match w.outcome {
                Some(Ok(report)) => {
                    if let Some(t) = self.matches.as_mut() {
                        t.rows += report.written;
                    }
                    self.db_retries += u64::from(report.retries);
                }
                Some(Err(e)) => self.failed(e),
                None => {}
            }
        }
    }

    /// Takes the reports of the aggregates' table batches.
    fn tables_written(&mut self, written: Vec<Written>) {
        for w in written {
            let report = match w.outcome {
                Some(Ok(report)) => report,
                Some(Err(e)) => {
                    self.failed(e);
                    continue;
                }
                None => continue,
            };
            self.rows += report.written;
            self.batches += u64::from(!report.skipped);
            self.db_retries += u64::from(report.retries);
            self.batches_skipped += u64::from(report.skipped);
            let name = self
                .aggregator
                .decls()
                .nth(w.agg)
                .map_or("", |d| d.name.as_str());
            for r in report.refused {
                let mut line = String::from("{\"aggregate\":");
                push_json_str(&mut line, name);
                line.push_str(&format!(",\"batch\":{},\"row\":", w.batch));
                push_json_str(&mut line, &r.row);
                line.push_str(",\"reason\":");
                push_json_str(&mut line, &r.reason);
                line.push_str("}\n");
                self.refused_lines.push(line);
            }
        }
    }

    fn failed(&mut self, e: DbError) {
        self.error.get_or_insert(SinkError::Database(e));
    }

    fn write(&mut self) {
        if self.emitted.batches.is_empty() && self.emitted.late.is_empty() {
            return;
        }
        let decls: Vec<&AggregateDecl> = self.aggregator.decls().collect();
        let mut written = Vec::new();
        for b in self.emitted.batches.drain(..) {
            let Some(decl) = decls.get(b.agg) else {
                continue;
            };
            if let Some(Some(table)) = self.tables.get_mut(b.agg) {
                written.extend(table.submit(b));
                continue;
            }
            let Some(Some(sink)) = self.sinks.get_mut(b.agg) else {
                continue;
            };
            let visible = self.aggregator.visible_columns(b.agg);
            self.text.clear();
            for r in &b.rows {
                write_row(self.format, &mut self.text, decl, visible, &b, r);
            }
            self.rows += b.rows.len() as u64;
            self.batches += 1;
            if let Err(e) = sink.write(self.text.as_bytes()) {
                self.error.get_or_insert(e);
            }
        }
        for l in self.emitted.late.drain(..) {
            if let Some(decl) = decls.get(l.agg) {
                let mut line = String::new();
                write_late_match(self.format, &mut line, decl, &l);
                self.late_lines.push(line);
            }
        }
        self.tables_written(written);
    }

    /// What it has written so far.
    pub(crate) fn progress(&self) -> super::AggregateProgress {
        super::AggregateProgress {
            batches: self.batches + self.matches.as_ref().map_or(0, |m| m.state.batch),
            rows: self.rows + self.matches.as_ref().map_or(0, |m| m.rows),
            skipped: self.batches_skipped,
            retries: self.db_retries,
        }
    }

    /// The match table's state, for a checkpoint.
    pub(crate) fn match_state(&self) -> Option<MatchTableState> {
        self.matches.as_ref().map(|m| m.state)
    }

    /// Restores the match table's state.
    pub(crate) fn restore_matches(&mut self, s: MatchTableState) {
        if let Some(m) = self.matches.as_mut() {
            m.state = s;
        }
    }

    /// The state, for a checkpoint.
    pub(crate) fn state(&self) -> AggregateState {
        self.aggregator.state()
    }

    /// Restores a checkpoint's state.
    pub(crate) fn restore(&mut self, s: AggregateState) -> Result<(), AggregateError> {
        self.aggregator.restore(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_replays_the_cuts_logged_after_its_checkpoint() {
        let dir = std::env::temp_dir().join(format!("motif-cutlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = CutLog::open(&dir, 2, None).unwrap();
        for (agg, records) in [(0, 10), (1, 12), (0, 25), (0, 40), (1, 41)] {
            log.append(agg, records).unwrap();
        }
        drop(log);
        // Resumed from a checkpoint after record 20: aggregate 0 cuts at 25 and 40, 1 at 41.
        let mut log = CutLog::open(&dir, 2, Some(20)).unwrap();
        assert!(log.replaying(0) && log.replaying(1));
        let cuts: Vec<u64> = (21..=45).filter(|r| log.replay_due(0, *r)).collect();
        assert_eq!(cuts, [25, 40]);
        assert!(!log.replaying(0));
        assert!(!log.replay_due(1, 40) && log.replay_due(1, 41));
        drop(log);
        // A run from the start forgets them.
        let log = CutLog::open(&dir, 2, None).unwrap();
        assert!(!log.replaying(0) && !log.replaying(1));
        drop(log);
        let log = CutLog::open(&dir, 2, Some(0)).unwrap();
        assert!(!log.replaying(0), "the fresh run truncated the log");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

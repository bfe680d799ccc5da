//! The aggregation operator: state per window and group, folded from matches in input-step
//! order, batches cut at record boundaries.
//!
//! Inputs ([`AggInput`]) and watermark moves come with the input step that caused them, in
//! any order across workers; [`Aggregator::complete`] says a step is complete (as
//! [`crate::runtime::Collect::complete`] does), and only then are that step's inputs folded
//! in, sorted by (step, aggregate, pattern), so the state after a step never depends on the
//! number of workers. A batch is cut after a step ([`Aggregator::cut`], from the reading
//! thread's trigger: a number of records or processing time) or when a watermark finishes
//! a window (the `watermark` trigger), and holds exactly what the steps up to the cut gave.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::acc::{Acc, AggFunc, Order};
use super::cell::Cell;
use super::having::{self, Having, Ref};
use super::window::{windows_of, Span};
use super::{AggInput, AggregateDecl, GroupBy, OutputMode, TimeOf, Trigger, WindowSpec};
use crate::expr::ast::{Expr, ExprKind};
use crate::nfa::Nfa;

/// One row of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The window (`None` for an aggregate without one).
    pub window: Option<(i64, i64)>,
    /// The group columns' values.
    pub group: Box<[Cell]>,
    /// The aggregate columns' values (the declaration's `select`, in order); empty for a
    /// retraction.
    pub values: Box<[Cell]>,
    /// In update mode: the row emitted before for this window and group is withdrawn (a
    /// session window merged into a larger one, or a row that no longer passes `having`).
    #[serde(default)]
    pub retract: bool,
}

/// A micro-batch of one aggregate's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The aggregate (index among the aggregator's).
    pub agg: usize,
    /// The batch id: 1, 2, ... per aggregate, the same on a replay.
    pub id: u64,
    /// The output mode (what the rows mean to a sink).
    pub mode: OutputMode,
    /// The rows, ordered by window and group.
    pub rows: Vec<Row>,
    /// The aggregate's watermark when the batch was cut.
    pub watermark: i64,
}

/// A match that came for a window whose state was already dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct LateMatch {
    /// The aggregate.
    pub agg: usize,
    /// The pattern (index into the aggregate's `from`).
    pub from: usize,
    /// The match's time.
    pub time: i64,
    /// How far the aggregate had finished windows.
    pub closed_through: i64,
}

/// What a batch cut gives.
#[derive(Debug, Default)]
pub struct Emitted {
    /// The batches, in the order they were cut.
    pub batches: Vec<Batch>,
    /// Late matches, in input order.
    pub late: Vec<LateMatch>,
}

/// A window and group's accumulators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    accs: Vec<Acc>,
    /// Changed since the last batch.
    dirty: bool,
    /// Its row was emitted (update mode), so replacing it needs a retraction.
    #[serde(default)]
    emitted: bool,
}

/// One aggregate's state (what a checkpoint keeps).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpState {
    /// The aggregate's name (a restore checks it).
    name: String,
    /// Window and group → accumulators.
    entries: BTreeMap<(Span, Box<[Cell]>), Entry>,
    /// Per group: its open sessions (session windows only).
    sessions: BTreeMap<Box<[Cell]>, BTreeSet<Span>>,
    /// Watermark per `from` pattern.
    watermarks: Vec<i64>,
    /// Windows whose last millisecond is at or before this were finished and dropped.
    closed_through: i64,
    /// The last batch id given.
    batch: u64,
    /// A change since the last batch (complete mode emits only then).
    changed: bool,
    /// Rows emitted before and withdrawn since the last batch (update mode).
    #[serde(default)]
    retracted: Vec<(Span, Box<[Cell]>)>,
}

/// The state of every aggregate, for a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregateState {
    ops: Vec<OpState>,
}

impl AggregateState {
    /// Names of the aggregates it holds state for.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(|o| o.name.as_str())
    }

    /// Windows and groups held per aggregate.
    pub fn entries(&self) -> impl Iterator<Item = (&str, usize)> {
        self.ops.iter().map(|o| (o.name.as_str(), o.entries.len()))
    }

    /// Last batch id per aggregate.
    pub fn batches(&self) -> impl Iterator<Item = (&str, u64)> {
        self.ops.iter().map(|o| (o.name.as_str(), o.batch))
    }
}

struct Op {
    decl: AggregateDecl,
    funcs: Vec<AggFunc>,
    /// Columns that `select` shows (hidden ones, added for `having`, follow them).
    visible: usize,
    having: Option<Having>,
    /// Engine pattern index per `from` pattern.
    patterns: Vec<usize>,
    /// Per `from` pattern: how far its watermark trails the matches it can still give.
    delays: Vec<i64>,
    state: OpState,
}

/// Why an aggregator could not be built or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// A pattern of `from` is not loaded.
    #[error("aggregate `{aggregate}` reads pattern `{pattern}`, which is not loaded")]
    NoPattern {
        /// The aggregate.
        aggregate: String,
        /// The pattern.
        pattern: String,
    },
    /// `having` uses something that is not a column.
    #[error("aggregate `{aggregate}`: {message}")]
    Having {
        /// The aggregate.
        aggregate: String,
        /// Why.
        message: String,
    },
    /// `on start` over a pattern without a whole-match window.
    #[error("aggregate `{aggregate}` places matches by their start (`on start`), but pattern `{pattern}` has no `within`: its matches could end any time after they start, and no window could ever be finished")]
    Unbounded {
        /// The aggregate.
        aggregate: String,
        /// The pattern.
        pattern: String,
    },
    /// A checkpoint's aggregation state does not fit the declarations.
    #[error("the checkpoint holds aggregates {saved:?}, this run declares {now:?}: use the same aggregates, or a new checkpoint directory")]
    Mismatch {
        /// The checkpoint's.
        saved: Vec<String>,
        /// This run's.
        now: Vec<String>,
    },
}

/// A name for an aggregate call in `having` or `select`: `count()`, `max(hot.temp)`.
fn call_of(e: &Expr) -> Option<(AggFunc, Option<String>)> {
    let ExprKind::Call { name, args } = &e.kind else {
        return None;
    };
    let func = AggFunc::from_name(name)?;
    match args.as_slice() {
        [] => Some((func, None)),
        [a] => Some((func, Some(a.to_string()))),
        _ => None,
    }
}

/// The aggregate call a select column makes, in the same words as [`call_of`].
fn column_call(func: AggFunc, arg: Option<&super::FieldRef>) -> (AggFunc, Option<String>) {
    (
        func,
        arg.map(|f| {
            let e = field_expr(f);
            e.to_string()
        }),
    )
}

/// A field reference as the expression it is written as (for comparing calls).
fn field_expr(f: &super::FieldRef) -> Expr {
    let path = |mut p: Vec<String>| {
        let mut v = vec![f.var.clone()];
        v.append(&mut p);
        v
    };
    match f.which {
        super::Which::Last => Expr::new(ExprKind::Path(path(f.path.clone()))),
        super::Which::First => Expr::new(ExprKind::Member {
            base: Box::new(Expr::new(ExprKind::Call {
                name: "first".to_string(),
                args: vec![Expr::new(ExprKind::Path(vec![f.var.clone()]))],
            })),
            path: f.path.clone(),
        }),
    }
}

/// Lowers `having`: its aggregate calls that are not select columns become hidden columns
/// (appended to `select`); returns the compiled condition and the number of visible columns.
pub(crate) fn lower_having(
    decl: &mut AggregateDecl,
) -> Result<(Option<Having>, usize), (String, crate::expr::ast::Span)> {
    let visible = decl.select.len();
    let Some(e) = decl.having.clone() else {
        return Ok((None, visible));
    };
    let mut hidden: Vec<(AggFunc, Option<super::FieldRef>)> = Vec::new();
    let group_names: Vec<String> = decl.group_by.iter().map(|g| g.name.clone()).collect();
    let select_names: Vec<String> = decl.select.iter().map(|s| s.name.clone()).collect();
    let select_calls: Vec<(AggFunc, Option<String>)> = decl
        .select
        .iter()
        .map(|s| column_call(s.func, s.arg.as_ref()))
        .collect();
    let mut resolve = |x: &Expr| -> Result<Ref, String> {
        if let ExprKind::Path(p) = &x.kind {
            let name = p.join(".");
            if let Some(i) = select_names.iter().position(|n| *n == name) {
                return Ok(Ref::Column(i));
            }
            if let Some(i) = group_names.iter().position(|n| *n == name) {
                return Ok(Ref::Group(i));
            }
            if name == "key" || name == "pattern" {
                return Err(format!(
                    "`having` can use `{name}` only as a group column: add `group by {name}`"
                ));
            }
            return Err(format!(
                "`having` uses `{name}`, which is neither a column of `select` ({}) nor of `group by` ({})",
                if select_names.is_empty() { "none".to_string() } else { select_names.join(", ") },
                if group_names.is_empty() { "none".to_string() } else { group_names.join(", ") },
            ));
        }
        let Some(call) = call_of(x) else {
            return Err(format!(
                "`having` can call only the aggregate functions ({}); `{x}` is not one",
                AggFunc::NAMES
            ));
        };
        if let Some(i) = select_calls.iter().position(|c| *c == call) {
            return Ok(Ref::Column(i));
        }
        let arg = match &call.1 {
            None if call.0 == AggFunc::Count => None,
            None => return Err(format!("`{}()` needs a field, e.g. `{}(v.price)`", call.0, call.0)),
            Some(text) => Some(super::field_ref(text).ok_or_else(|| {
                format!("`{x}`: an aggregate's argument is a field of a variable, `v.field` or `first(v).field`")
            })?),
        };
        if call.0 == AggFunc::Count && arg.is_some() {
            return Err("`count()` takes no argument (it counts matches)".to_string());
        }
        let i = match hidden.iter().position(|h| h.0 == call.0 && h.1 == arg) {
            Some(i) => i,
            None => {
                hidden.push((call.0, arg));
                hidden.len() - 1
            }
        };
        Ok(Ref::Column(visible + i))
    };
    let h = having::compile(&e, &mut resolve)?;
    for (i, (func, arg)) in hidden.into_iter().enumerate() {
        decl.select.push(super::SelectColumn {
            name: format!("having_{i}"),
            func,
            arg,
            span: e.span,
        });
    }
    Ok((Some(h), visible))
}

impl Op {
    fn new(mut decl: AggregateDecl, nfas: &[Arc<Nfa>]) -> Result<Op, AggregateError> {
        let (having, visible) =
            lower_having(&mut decl).map_err(|(message, _)| AggregateError::Having {
                aggregate: decl.name.clone(),
                message,
            })?;
        let mut patterns = Vec::new();
        let mut delays = Vec::new();
        for name in &decl.from {
            let Some(i) = nfas.iter().position(|n| n.name() == name) else {
                return Err(AggregateError::NoPattern {
                    aggregate: decl.name.clone(),
                    pattern: name.clone(),
                });
            };
            let nfa = &nfas[i];
            let mut delay = nfa.completion_delay();
            if decl.on == TimeOf::Start {
                match nfa.max_span() {
                    Some(span) => delay = delay.saturating_add(span),
                    None => {
                        return Err(AggregateError::Unbounded {
                            aggregate: decl.name.clone(),
                            pattern: name.clone(),
                        })
                    }
                }
            }
            patterns.push(i);
            delays.push(delay);
        }
        let funcs = decl.select.iter().map(|s| s.func).collect();
        let state = OpState {
            name: decl.name.clone(),
            watermarks: vec![i64::MIN; decl.from.len()],
            closed_through: i64::MIN,
            ..OpState::default()
        };
        Ok(Op {
            decl,
            funcs,
            visible,
            having,
            patterns,
            delays,
            state,
        })
    }

    fn windowed(&self) -> bool {
        self.decl.window.is_some()
    }

    /// Whether finished windows are dropped (and later matches for them are late).
    fn drops(&self) -> bool {
        self.windowed() && self.decl.mode != OutputMode::Complete
    }

    /// The watermark of the aggregate: every match at or before it has come.
    fn watermark(&self) -> i64 {
        self.state
            .watermarks
            .iter()
            .zip(&self.delays)
            .map(|(w, d)| {
                if *w == i64::MAX {
                    i64::MAX
                } else {
                    w.saturating_sub(*d)
                }
            })
            .min()
            .unwrap_or(i64::MIN)
    }

    fn add(
        &mut self,
        i: &AggInput,
        order: Order,
        spans: &mut Vec<Span>,
        late: &mut Vec<LateMatch>,
        agg: usize,
    ) {
        let drops = self.drops();
        let st = &mut self.state;
        match &self.decl.window {
            None => spans.clear(),
            Some(w) => windows_of(w, i.time, spans),
        }
        if self.decl.window.is_none() {
            spans.push(Span::ALL);
        }
        if drops {
            // Spark's rule: a match older than what was finished is late as a whole.
            let oldest_last = spans.first().map_or(i64::MAX, Span::last_ms);
            if oldest_last <= st.closed_through {
                late.push(LateMatch {
                    agg,
                    from: i.from as usize,
                    time: i.time,
                    closed_through: st.closed_through,
                });
                return;
            }
        }
        if let Some(WindowSpec::Session { .. }) = self.decl.window {
            let Some(mut span) = spans.first().copied() else {
                return;
            };
            let group: Box<[Cell]> = i.group.clone();
            let open = st.sessions.entry(group.clone()).or_default();
            let overlapping: Vec<Span> = open
                .iter()
                .filter(|s| s.start < span.end && span.start < s.end)
                .copied()
                .collect();
            let mut entry = Entry {
                accs: self.funcs.iter().map(AggFunc::start).collect(),
                dirty: true,
                emitted: false,
            };
            for s in &overlapping {
                open.remove(s);
                if let Some(old) = st.entries.remove(&(*s, group.clone())) {
                    if old.emitted {
                        st.retracted.push((*s, group.clone()));
                    }
                    for (a, b) in entry.accs.iter_mut().zip(&old.accs) {
                        a.merge(b);
                    }
                }
                span.start = span.start.min(s.start);
                span.end = span.end.max(s.end);
            }
            open.insert(span);
            for (a, c) in entry.accs.iter_mut().zip(i.args.iter()) {
                a.add(c, order);
            }
            st.entries.insert((span, group), entry);
            st.changed = true;
            return;
        }
        for span in spans.iter() {
            let key = (*span, i.group.clone());
            let fresh = !st.entries.contains_key(&key);
            if fresh {
                let e = Entry {
                    accs: self.funcs.iter().map(AggFunc::start).collect(),
                    dirty: true,
                    emitted: false,
                };
                st.entries.insert(key.clone(), e);
            }
            if let Some(e) = st.entries.get_mut(&key) {
                for (a, c) in e.accs.iter_mut().zip(i.args.iter()) {
                    a.add(c, order);
                }
                e.dirty = true;
            }
        }
        st.changed = true;
    }

    /// Whether the watermark has finished a window that is still held.
    fn finishes_a_window(&self) -> bool {
        let wm = self.watermark();
        match self.decl.window {
            None => false,
            // Windows of one length end in the order they start: the first one tells.
            Some(WindowSpec::Tumbling { .. } | WindowSpec::Sliding { .. }) => self
                .state
                .entries
                .keys()
                .next()
                .is_some_and(|(s, _)| s.last_ms() <= wm),
            Some(WindowSpec::Session { .. }) => {
                self.state.entries.keys().any(|(s, _)| s.last_ms() <= wm)
            }
        }
    }

    fn row(&self, span: &Span, group: &[Cell], e: &Entry) -> Option<Row> {
        let values: Vec<Cell> = e
            .accs
            .iter()
            .zip(&self.funcs)
            .map(|(a, f)| a.value(*f))
            .collect();
        if let Some(h) = &self.having {
            if !h.eval(group, &values).is_true() {
                return None;
            }
        }
        let mut values = values;
        values.truncate(self.visible);
        Some(Row {
            window: self.windowed().then_some((span.start, span.end)),
            group: group.into(),
            values: values.into(),
            retract: false,
        })
    }

    fn retraction(&self, span: &Span, group: &[Cell]) -> Row {
        Row {
            window: self.windowed().then_some((span.start, span.end)),
            group: group.into(),
            values: Box::default(),
            retract: true,
        }
    }

    /// Cuts a batch, if it has anything to say.
    fn batch(&mut self, agg: usize) -> Option<Batch> {
        let wm = self.watermark();
        let mut rows = Vec::new();
        match self.decl.mode {
            OutputMode::Append => {
                let done: Vec<(Span, Box<[Cell]>)> = self
                    .state
                    .entries
                    .keys()
                    .filter(|(s, _)| s.last_ms() <= wm)
                    .cloned()
                    .collect();
                for k in done {
                    if let Some(e) = self.state.entries.remove(&k) {
                        rows.extend(self.row(&k.0, &k.1, &e));
                    }
                }
            }
            OutputMode::Update => {
                for (s, g) in std::mem::take(&mut self.state.retracted) {
                    rows.push(self.retraction(&s, &g));
                }
                let mut emitted = Vec::new();
                for ((s, g), e) in &self.state.entries {
                    if !e.dirty {
                        continue;
                    }
                    match self.row(s, g, e) {
                        Some(r) => {
                            rows.push(r);
                            emitted.push(((*s, g.clone()), true));
                        }
                        // It passed `having` before and does not now.
                        None if e.emitted => {
                            rows.push(self.retraction(s, g));
                            emitted.push(((*s, g.clone()), false));
                        }
                        None => {}
                    }
                }
                for (k, now) in emitted {
                    if let Some(e) = self.state.entries.get_mut(&k) {
                        e.emitted = now;
                    }
                }
                for e in self.state.entries.values_mut() {
                    e.dirty = false;
                }
                if self.windowed() {
                    self.state.entries.retain(|(s, _), _| s.last_ms() > wm);
                }
            }
            OutputMode::Complete => {
                if !self.state.changed {
                    return None;
                }
                for ((s, g), e) in &self.state.entries {
                    rows.extend(self.row(s, g, e));
                }
            }
        }
        if self.drops() {
            self.state.closed_through = self.state.closed_through.max(wm);
            for open in self.state.sessions.values_mut() {
                open.retain(|s| s.last_ms() > wm);
            }
            self.state.sessions.retain(|_, open| !open.is_empty());
        }
        self.state.changed = false;
        if rows.is_empty() && self.decl.mode != OutputMode::Complete {
            return None;
        }
        self.state.batch += 1;
        Some(Batch {
            agg,
            id: self.state.batch,
            mode: self.decl.mode,
            rows,
            watermark: wm,
        })
    }
}

/// What waits for its step to complete.
#[derive(Debug)]
enum Pending {
    Input(AggInput),
    Watermark { pattern: usize, watermark: i64 },
}

/// The aggregation operator over every aggregate of a run.
pub struct Aggregator {
    ops: Vec<Op>,
    /// Inputs and watermark moves of steps not yet complete, with their step.
    pending: Vec<(u64, Pending)>,
    /// Batch cuts asked for, with their step (`None`: every aggregate).
    cuts: VecDeque<(u64, Option<usize>)>,
    /// Reused window lists.
    spans: Vec<Span>,
    /// Reused list of what a fold takes.
    ready: Vec<(u64, Pending)>,
}

impl Aggregator {
    /// An aggregator for `decls` over the engine's patterns `nfas` (declarations already
    /// [checked](super::check)).
    pub fn new(decls: &[AggregateDecl], nfas: &[Arc<Nfa>]) -> Result<Aggregator, AggregateError> {
        let ops = decls
            .iter()
            .map(|d| Op::new(d.clone(), nfas))
            .collect::<Result<_, _>>()?;
        Ok(Aggregator {
            ops,
            pending: Vec::new(),
            cuts: VecDeque::new(),
            spans: Vec::new(),
            ready: Vec::new(),
        })
    }

    /// The declarations, in order (with hidden columns for `having` appended to `select`).
    pub fn decls(&self) -> impl Iterator<Item = &AggregateDecl> {
        self.ops.iter().map(|o| &o.decl)
    }

    /// The number of columns of aggregate `agg`'s `select` that rows show.
    pub fn visible_columns(&self, agg: usize) -> usize {
        self.ops.get(agg).map_or(0, |o| o.visible)
    }

    /// The trigger of each aggregate.
    pub fn triggers(&self) -> Vec<Trigger> {
        self.ops.iter().map(|o| o.decl.trigger).collect()
    }

    /// An input of step `seq`.
    pub fn input(&mut self, seq: u64, i: AggInput) {
        self.pending.push((seq, Pending::Input(i)));
    }

    /// Pattern `pattern`'s (engine index) watermark moved at step `seq`.
    pub fn watermark(&mut self, seq: u64, pattern: usize, watermark: i64) {
        if self.ops.iter().any(|o| o.patterns.contains(&pattern)) {
            self.pending
                .push((seq, Pending::Watermark { pattern, watermark }));
        }
    }

    /// Asks for a batch of aggregate `agg` (`None`: of every aggregate) after step `seq`.
    pub fn cut(&mut self, seq: u64, agg: Option<usize>) {
        self.cuts.push_back((seq, agg));
    }

    /// Every input of the steps up to `through` has come: folds them in, and cuts the
    /// batches asked for up to there.
    pub fn complete(&mut self, through: u64, out: &mut Emitted) {
        while let Some(&(seq, agg)) = self.cuts.front() {
            if seq > through {
                break;
            }
            self.cuts.pop_front();
            self.fold(seq, out);
            for (i, op) in self.ops.iter_mut().enumerate() {
                if agg.is_none_or(|a| a == i) {
                    out.batches.extend(op.batch(i));
                }
            }
        }
        self.fold(through, out);
    }

    /// Folds in the pending inputs and watermarks of steps up to `upto`, in step order;
    /// the watermark trigger cuts as it goes.
    fn fold(&mut self, upto: u64, out: &mut Emitted) {
        if self.pending.is_empty() {
            return;
        }
        // Per record on one thread (a watermark move, most records): no allocation.
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        if self.pending.iter().all(|p| p.0 <= upto) {
            std::mem::swap(&mut ready, &mut self.pending);
        } else {
            let mut rest = Vec::with_capacity(self.pending.len());
            for p in self.pending.drain(..) {
                if p.0 <= upto {
                    ready.push(p);
                } else {
                    rest.push(p);
                }
            }
            self.pending = rest;
        }
        // A step's inputs before its watermark moves (which come after every output of
        // their step); the inputs of a step by aggregate, pattern, time and values, so that
        // the order they are added in (which floating-point sums and ties of `first` and
        // `last` depend on) is not the order the engine's keys happened to give them in,
        // which a restore or another number of workers changes.
        ready.sort_by(|(sa, a), (sb, b)| {
            sa.cmp(sb).then_with(|| match (a, b) {
                (Pending::Input(x), Pending::Input(y)) => (x.agg, x.from, x.time)
                    .cmp(&(y.agg, y.from, y.time))
                    .then_with(|| x.group.cmp(&y.group))
                    .then_with(|| x.args.cmp(&y.args)),
                (Pending::Input(_), Pending::Watermark { .. }) => std::cmp::Ordering::Less,
                (Pending::Watermark { .. }, Pending::Input(_)) => std::cmp::Ordering::Greater,
                (Pending::Watermark { .. }, Pending::Watermark { .. }) => std::cmp::Ordering::Equal,
            })
        });
        let mut sub = (u64::MAX, u32::MAX, u32::MAX, 0u32);
        for (seq, p) in ready.drain(..) {
            match p {
                Pending::Input(i) => {
                    if (sub.0, sub.1, sub.2) != (seq, i.agg, i.from) {
                        sub = (seq, i.agg, i.from, 0);
                    }
                    let order = (i.time, seq, sub.3);
                    sub.3 = sub.3.saturating_add(1);
                    let agg = i.agg as usize;
                    if let Some(op) = self.ops.get_mut(agg) {
                        op.add(&i, order, &mut self.spans, &mut out.late, agg);
                    }
                }
                Pending::Watermark { pattern, watermark } => {
                    for (ai, op) in self.ops.iter_mut().enumerate() {
                        let mut moved = false;
                        for (f, p) in op.patterns.iter().enumerate() {
                            if *p == pattern && op.state.watermarks[f] < watermark {
                                op.state.watermarks[f] = watermark;
                                moved = true;
                            }
                        }
                        if moved && op.decl.trigger == Trigger::Watermark && op.finishes_a_window()
                        {
                            out.batches.extend(op.batch(ai));
                        }
                    }
                }
            }
        }
        self.ready = ready;
    }

    /// Open windows and groups, over every aggregate.
    pub fn entries(&self) -> usize {
        self.ops.iter().map(|o| o.state.entries.len()).sum()
    }

    /// The state, for a checkpoint (taken when every step given so far is complete).
    pub fn state(&self) -> AggregateState {
        AggregateState {
            ops: self.ops.iter().map(|o| o.state.clone()).collect(),
        }
    }

    /// Restores a checkpoint's state (the same aggregates, by name and order).
    pub fn restore(&mut self, s: AggregateState) -> Result<(), AggregateError> {
        let saved: Vec<String> = s.ops.iter().map(|o| o.name.clone()).collect();
        let now: Vec<String> = self.ops.iter().map(|o| o.decl.name.clone()).collect();
        let fits = saved == now
            && s.ops
                .iter()
                .zip(&self.ops)
                .all(|(st, op)| st.watermarks.len() == op.patterns.len());
        if !fits {
            return Err(AggregateError::Mismatch { saved, now });
        }
        for (op, st) in self.ops.iter_mut().zip(s.ops) {
            op.state = st;
        }
        self.pending.clear();
        self.cuts.clear();
        Ok(())
    }
}

/// The default name of a group column: `key`, `pattern`, the field's path joined by `_`
/// (`site` for `hot.site`, `first_hot_site` for `first(hot).site`).
pub fn default_group_name(by: &GroupBy) -> String {
    match by {
        GroupBy::Key => "key".to_string(),
        GroupBy::Pattern => "pattern".to_string(),
        GroupBy::Field(f) => match f.which {
            super::Which::Last => f.path.join("_"),
            super::Which::First => format!("first_{}_{}", f.var, f.path.join("_")),
        },
    }
}

/// The default name of an aggregate column: `count`, `max_temp`, `count_distinct_sensor`.
pub fn default_select_name(func: AggFunc, arg: Option<&super::FieldRef>) -> String {
    match arg {
        None => func.name().to_string(),
        Some(f) => format!("{}_{}", func.name(), f.path.join("_")),
    }
}

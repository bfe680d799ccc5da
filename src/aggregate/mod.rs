//! Aggregation of matches, with Spark Structured Streaming's semantics: matches of one or
//! more patterns are grouped (by the key, the pattern, fields of their events) into windows
//! on the match's event time, aggregated (`count`, `count_distinct`, `sum`, `avg`, `min`,
//! `max`, `first`, `last`), filtered by `having`, and emitted in micro-batches with
//! increasing batch ids in one of three output modes:
//!
//! - `append`: a window's rows once, when the watermark has passed the window's end; they
//!   never change, and the window's state is dropped.
//! - `update`: the rows that changed since the previous batch; a window's state is dropped
//!   once the watermark has passed its end.
//! - `complete`: the whole table every batch; nothing is dropped.
//!
//! A match for a window whose state was already dropped is late: it is counted and sent to
//! the late output, never silently lost.
//!
//! The declaration ([`AggregateDecl`]) comes from the language (`aggregate NAME from ...;`,
//! see `grammar/README.md`) or is built in Rust; [`check`] validates it against the
//! patterns it reads. The operator itself is [`Aggregator`]: it takes the matches' values
//! ([`AggInput`], extracted by an [`Extractor`]) with their input step, the patterns'
//! watermarks, and batch cuts at record boundaries, and gives [`Batch`]es of [`Row`]s.
//! Everything it does depends only on the input steps, not on timing or the number of
//! workers, so a replay from a checkpoint gives the same batches.

mod acc;
mod cell;
mod check;
mod extract;
mod having;
mod operator;
mod window;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::expr::ast::{Expr, Span};

pub use acc::AggFunc;
pub use cell::Cell;
pub use check::check;
pub use extract::ExtractError;
pub use extract::{AggInput, Extractor};
pub use operator::{
    default_group_name, default_select_name, AggregateError, AggregateState, Aggregator, Batch,
    Emitted, LateMatch, Row,
};
pub use window::WindowSpec;

/// Spark's output modes (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputMode {
    /// Each finished window's rows once.
    Append,
    /// The rows changed since the previous batch.
    Update,
    /// The whole table every batch.
    Complete,
}

impl fmt::Display for OutputMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputMode::Append => "append",
            OutputMode::Update => "update",
            OutputMode::Complete => "complete",
        })
    }
}

/// Which time of a match places it in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TimeOf {
    /// Its last event's time (the default).
    #[default]
    End,
    /// Its first event's time (`on start`).
    Start,
}

/// When a micro-batch is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// After every this many input records (deterministic for files).
    Records(u64),
    /// After this much processing time (milliseconds); with checkpoints, each batch's cut is
    /// logged before the batch is written, so a replay cuts at the same record.
    Interval(u64),
    /// Whenever the watermark finishes a window (deterministic).
    Watermark,
}

impl Default for Trigger {
    /// One second of processing time.
    fn default() -> Trigger {
        Trigger::Interval(1000)
    }
}

/// Which event of a variable a field is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Which {
    /// The variable's first event (`first(v).f`).
    First,
    /// Its last event (`v.f`, `last(v).f`).
    Last,
}

/// A field of one event of a match: `hot.temp`, `first(hot).site`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRef {
    /// The pattern variable.
    pub var: String,
    /// Which of its events.
    pub which: Which,
    /// The field path in that event.
    pub path: Vec<String>,
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.which {
            Which::Last => write!(f, "{}.{}", self.var, self.path.join(".")),
            Which::First => write!(f, "first({}).{}", self.var, self.path.join(".")),
        }
    }
}

/// What a group column holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupBy {
    /// The partition key (the field's value, or an array of the fields' values).
    Key,
    /// The name of the pattern that matched.
    Pattern,
    /// A field of an event of the match.
    Field(FieldRef),
}

/// A group column: its name in the output and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupColumn {
    /// The column's name (`as NAME`, or one derived from the expression).
    pub name: String,
    /// What it holds.
    pub by: GroupBy,
    /// Where it was written.
    #[serde(skip)]
    pub span: Span,
}

/// An aggregate column: `max(hot.temp) as peak`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectColumn {
    /// The column's name (`as NAME`, or one derived from the call).
    pub name: String,
    /// The aggregate function.
    pub func: AggFunc,
    /// Its argument (`None` for `count()`).
    pub arg: Option<FieldRef>,
    /// Where it was written.
    #[serde(skip)]
    pub span: Span,
}

/// An `aggregate` declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateDecl {
    /// Its name (the rows' `aggregate` field, and what sinks bind to).
    pub name: String,
    /// The patterns whose matches it reads.
    pub from: Vec<String>,
    /// The window, or `None` for one window over all time.
    pub window: Option<WindowSpec>,
    /// Which time of a match places it in a window.
    pub on: TimeOf,
    /// The group columns.
    pub group_by: Vec<GroupColumn>,
    /// The aggregate columns.
    pub select: Vec<SelectColumn>,
    /// A condition on a row (over group columns, aggregate columns and aggregate calls).
    pub having: Option<Expr>,
    /// The output mode.
    pub mode: OutputMode,
    /// When batches are cut.
    pub trigger: Trigger,
    /// Where it was declared (`Span::default()` when built in Rust).
    pub span: Span,
    /// Where each clause was written, for messages.
    pub spans: ClauseSpans,
}

/// Where the clauses of an [`AggregateDecl`] were written (all `Span::default()` when it
/// was built in Rust).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClauseSpans {
    /// The name.
    pub name: Span,
    /// Each pattern name of `from`.
    pub from: Vec<Span>,
    /// The `window` clause.
    pub window: Span,
    /// The `select` clause (`Span::default()` when there is none).
    pub select: Span,
    /// The `having` clause.
    pub having: Span,
    /// The `output` clause.
    pub mode: Span,
}

impl ClauseSpans {
    /// The span of the `i`th pattern name of `from`.
    pub fn from_name(&self, i: usize) -> Span {
        self.from.get(i).copied().unwrap_or(self.name)
    }
}

impl AggregateDecl {
    /// An aggregate named `name` over the matches of `from`, with no window, no groups and
    /// no columns yet, in update mode.
    pub fn new(name: &str, from: &[&str]) -> AggregateDecl {
        AggregateDecl {
            name: name.to_string(),
            from: from.iter().map(|s| s.to_string()).collect(),
            window: None,
            on: TimeOf::End,
            group_by: Vec::new(),
            select: Vec::new(),
            having: None,
            mode: OutputMode::Update,
            trigger: Trigger::default(),
            span: Span::default(),
            spans: ClauseSpans::default(),
        }
    }

    /// Sets the window.
    pub fn window(mut self, w: WindowSpec) -> Self {
        self.window = Some(w);
        self
    }

    /// Places matches by their first event's time.
    pub fn on_start(mut self) -> Self {
        self.on = TimeOf::Start;
        self
    }

    /// Adds a group column.
    pub fn group_by(mut self, name: &str, by: GroupBy) -> Self {
        self.group_by.push(GroupColumn {
            name: name.to_string(),
            by,
            span: Span::default(),
        });
        self
    }

    /// Adds an aggregate column.
    pub fn select(mut self, name: &str, func: AggFunc, arg: Option<FieldRef>) -> Self {
        self.select.push(SelectColumn {
            name: name.to_string(),
            func,
            arg,
            span: Span::default(),
        });
        self
    }

    /// Sets the `having` condition.
    pub fn having(mut self, e: Expr) -> Self {
        self.having = Some(e);
        self
    }

    /// Sets the output mode.
    pub fn mode(mut self, m: OutputMode) -> Self {
        self.mode = m;
        self
    }

    /// Sets the trigger.
    pub fn trigger(mut self, t: Trigger) -> Self {
        self.trigger = t;
        self
    }

    /// The field paths the aggregate reads from matched events (the engine must carry
    /// them).
    pub fn field_paths(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        let refs = self
            .group_by
            .iter()
            .filter_map(|g| match &g.by {
                GroupBy::Field(f) => Some(f),
                _ => None,
            })
            .chain(self.select.iter().filter_map(|s| s.arg.as_ref()));
        for f in refs {
            if !out.contains(&f.path) {
                out.push(f.path.clone());
            }
        }
        out
    }
}

/// A field reference, parsed: `v.a.b` or `first(v).a.b` / `last(v).a.b`.
pub fn field_ref(text: &str) -> Option<FieldRef> {
    let (which, rest) = if let Some(r) = text.strip_prefix("first(") {
        (Which::First, r)
    } else if let Some(r) = text.strip_prefix("last(") {
        (Which::Last, r)
    } else {
        let mut parts = text.split('.');
        let var = parts.next()?.to_string();
        let path: Vec<String> = parts.map(str::to_string).collect();
        if var.is_empty() || path.is_empty() || path.iter().any(String::is_empty) {
            return None;
        }
        return Some(FieldRef {
            var,
            which: Which::Last,
            path,
        });
    };
    let (var, path) = rest.split_once(").")?;
    let path: Vec<String> = path.split('.').map(str::to_string).collect();
    if var.is_empty() || path.iter().any(String::is_empty) {
        return None;
    }
    Some(FieldRef {
        var: var.to_string(),
        which,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_refs_parse() {
        let f = field_ref("hot.temp").unwrap();
        assert_eq!(
            (f.var.as_str(), f.which, f.path.len()),
            ("hot", Which::Last, 1)
        );
        let f = field_ref("first(hot).site.name").unwrap();
        assert_eq!(f.which, Which::First);
        assert_eq!(f.path, ["site", "name"]);
        assert_eq!(f.to_string(), "first(hot).site.name");
        assert!(field_ref("hot").is_none());
        assert!(field_ref("first(hot)").is_none());
        assert!(field_ref("a..b").is_none());
    }

    #[test]
    fn field_paths_are_deduplicated() {
        let d = AggregateDecl::new("a", &["p"])
            .group_by("site", GroupBy::Field(field_ref("hot.site").unwrap()))
            .select("n", AggFunc::Count, None)
            .select("s", AggFunc::Max, field_ref("first(hot).site"))
            .select("t", AggFunc::Sum, field_ref("hot.temp"));
        assert_eq!(
            d.field_paths(),
            vec![vec!["site".to_string()], vec!["temp".to_string()]]
        );
    }
}

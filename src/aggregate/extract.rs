//! From a match to what aggregations need of it ([`AggInput`]): its time and the values of
//! its group and aggregate columns, read from the matched events' decoded fields. Runs where
//! the match is produced (a parallel engine's workers), so only these few values travel.

use std::sync::Arc;

use smallvec::SmallVec;

use super::cell::Cell;
use super::{AggregateDecl, FieldRef, GroupBy, TimeOf, Which};
use crate::nfa::{Match, Nfa};

/// What one aggregate takes of one match.
#[derive(Debug, Clone, PartialEq)]
pub struct AggInput {
    /// The aggregate (index among those the extractor was built for).
    pub agg: u32,
    /// Which of its `from` patterns matched (index into [`AggregateDecl::from`]).
    pub from: u32,
    /// The match's time (its last event's, or its first's with `on start`).
    pub time: i64,
    /// The group columns' values.
    pub group: Box<[Cell]>,
    /// The aggregate columns' arguments (`null` for `count()`).
    pub args: Box<[Cell]>,
}

#[derive(Debug, Clone)]
enum Source {
    Key,
    Pattern(Arc<str>),
    Field {
        var: usize,
        which: Which,
        slot: usize,
    },
    Nothing,
}

#[derive(Debug, Clone)]
struct Plan {
    agg: u32,
    from: u32,
    on: TimeOf,
    group: Vec<Source>,
    args: Vec<Source>,
}

/// Extracts [`AggInput`]s from matches, per engine pattern.
#[derive(Debug, Clone, Default)]
pub struct Extractor {
    /// Per engine pattern (by index): the aggregates that read it.
    plans: Vec<Vec<Plan>>,
}

/// Why an extractor could not be built (a declaration [`super::check`] would reject).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// A pattern in `from` is not loaded.
    #[error("aggregate `{aggregate}` reads pattern `{pattern}`, which is not loaded")]
    NoPattern {
        /// The aggregate.
        aggregate: String,
        /// The pattern.
        pattern: String,
    },
    /// A variable is not in a pattern of `from`.
    #[error("aggregate `{aggregate}`: pattern `{pattern}` has no variable `{var}`")]
    NoVariable {
        /// The aggregate.
        aggregate: String,
        /// The pattern.
        pattern: String,
        /// The variable.
        var: String,
    },
    /// A field the engine does not carry.
    #[error("aggregate `{aggregate}`: the engine carries no field `{field}` (add it to the pattern's output fields)")]
    NoField {
        /// The aggregate.
        aggregate: String,
        /// The field path.
        field: String,
    },
}

impl Extractor {
    /// An extractor for `aggs` over the engine's patterns `nfas`; `slot` gives the schema
    /// slot of a field path (the engine must carry matched events' fields).
    pub fn new(
        aggs: &[AggregateDecl],
        nfas: &[Arc<Nfa>],
        slot: impl Fn(&[String]) -> Option<usize>,
    ) -> Result<Extractor, ExtractError> {
        let mut plans = vec![Vec::new(); nfas.len()];
        for (ai, agg) in aggs.iter().enumerate() {
            for (fi, name) in agg.from.iter().enumerate() {
                let Some(pi) = nfas.iter().position(|n| n.name() == name) else {
                    return Err(ExtractError::NoPattern {
                        aggregate: agg.name.clone(),
                        pattern: name.clone(),
                    });
                };
                let nfa = &nfas[pi];
                let field = |f: &FieldRef| -> Result<Source, ExtractError> {
                    let var = nfa
                        .variables()
                        .iter()
                        .position(|v| *v == f.var)
                        .ok_or_else(|| ExtractError::NoVariable {
                            aggregate: agg.name.clone(),
                            pattern: name.clone(),
                            var: f.var.clone(),
                        })?;
                    let slot = slot(&f.path).ok_or_else(|| ExtractError::NoField {
                        aggregate: agg.name.clone(),
                        field: f.path.join("."),
                    })?;
                    Ok(Source::Field {
                        var,
                        which: f.which,
                        slot,
                    })
                };
                let group = agg
                    .group_by
                    .iter()
                    .map(|g| match &g.by {
                        GroupBy::Key => Ok(Source::Key),
                        GroupBy::Pattern => Ok(Source::Pattern(Arc::from(name.as_str()))),
                        GroupBy::Field(f) => field(f),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let args = agg
                    .select
                    .iter()
                    .map(|s| s.arg.as_ref().map_or(Ok(Source::Nothing), &field))
                    .collect::<Result<Vec<_>, _>>()?;
                plans[pi].push(Plan {
                    agg: ai as u32,
                    from: fi as u32,
                    on: agg.on,
                    group,
                    args,
                });
            }
        }
        Ok(Extractor { plans })
    }

    /// Whether any aggregate reads pattern `pattern`'s matches.
    pub fn reads(&self, pattern: usize) -> bool {
        self.plans.get(pattern).is_some_and(|p| !p.is_empty())
    }

    /// What each aggregate reading pattern `pattern` takes of match `m` (completed matches
    /// only: a timed-out partial match gives nothing).
    pub fn extract(
        &self,
        pattern: usize,
        key: Option<&str>,
        m: &Match,
        out: &mut SmallVec<[AggInput; 1]>,
    ) {
        if m.timed_out.is_some() {
            return;
        }
        let Some(plans) = self.plans.get(pattern) else {
            return;
        };
        for p in plans {
            let read = |s: &Source| -> Cell {
                match s {
                    Source::Key => key.map_or(Cell::Null, Cell::of_key_json),
                    Source::Pattern(name) => Cell::Str(Arc::clone(name)),
                    Source::Field { var, which, slot } => {
                        let mut of_var = m.events.iter().filter(|e| e.var == *var);
                        let e = match which {
                            Which::First => of_var.next(),
                            Which::Last => of_var.next_back(),
                        };
                        e.map_or(Cell::Null, |e| Cell::of(e.get(*slot)))
                    }
                    Source::Nothing => Cell::Null,
                }
            };
            out.push(AggInput {
                agg: p.agg,
                from: p.from,
                time: match p.on {
                    TimeOf::End => m.end(),
                    TimeOf::Start => m.start(),
                },
                group: p.group.iter().map(read).collect(),
                args: p.args.iter().map(read).collect(),
            });
        }
    }
}

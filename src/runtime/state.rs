//! The state of an engine as data, independent of how many shards or workers held it:
//! per pattern its name, a fingerprint of its compiled form, its clock (arrivals and
//! watermark per source partition) and every partition with state. Restoring matches
//! patterns by name, checks their fingerprints, moves events to the new schema's slots
//! and checks every partition against the NFA it will run with.

use serde::{Deserialize, Serialize};

use crate::event::{Event, Schema};
use crate::nfa::Nfa;
use crate::runtime::front::PatternClock;
use crate::runtime::shard::{PatternShardState, PatternShardsView, StateError};
use crate::runtime::{Compiled, Stats};
use crate::value::Value;

/// One pattern's saved state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatternState {
    /// The pattern's name.
    pub name: String,
    /// Fingerprint of the pattern when the state was taken (its compiled NFA, key and time
    /// fields and lateness): a pattern restores its state only into an equal one.
    pub fingerprint: u64,
    clock: PatternClock,
    shard: PatternShardState,
}

impl PatternState {
    /// The pattern's watermark (`i64::MIN` before any event, `i64::MAX` after the end).
    pub fn watermark(&self) -> i64 {
        self.clock.watermark()
    }

    /// Keys with state.
    pub fn keys(&self) -> usize {
        self.shard.keys()
    }

    /// Open partial matches over all keys.
    pub fn partial_matches(&self) -> usize {
        self.shard.partial_matches()
    }

    /// Events waiting for the watermark over all keys.
    pub fn waiting_events(&self) -> usize {
        self.shard.waiting_events()
    }
}

/// The whole state of an engine (one thread or several workers alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineState {
    /// Field paths of the schema's slots, which saved events are decoded into.
    schema: Vec<Vec<String>>,
    /// Per pattern, in the engine's order.
    pub patterns: Vec<PatternState>,
    /// Counters.
    pub stats: Stats,
}

impl EngineState {
    /// The state of the patterns `compiled` from their clocks (one per pattern) and the
    /// shards' states (per shard, one per pattern), each pattern's partitions merged.
    pub(crate) fn assemble(
        compiled: &Compiled,
        clocks: Vec<PatternClock>,
        shards: Vec<Vec<PatternShardState>>,
        stats: Stats,
    ) -> EngineState {
        let mut shards: Vec<std::vec::IntoIter<PatternShardState>> =
            shards.into_iter().map(Vec::into_iter).collect();
        let patterns = clocks
            .into_iter()
            .zip(&compiled.patterns)
            .zip(&compiled.fingerprints)
            .map(|((clock, (nfa, _)), fingerprint)| {
                let parts = shards.iter_mut().filter_map(Iterator::next).collect();
                PatternState {
                    name: nfa.name.clone(),
                    fingerprint: *fingerprint,
                    clock,
                    shard: PatternShardState::merge(parts),
                }
            })
            .collect();
        EngineState {
            schema: compiled.schema.paths().to_vec(),
            patterns,
            stats,
        }
    }
}

/// One pattern's state borrowed where it lives: serialises exactly as its [`PatternState`].
#[derive(Serialize)]
pub(crate) struct PatternStateRef<'a> {
    pub name: &'a str,
    pub fingerprint: u64,
    pub clock: &'a PatternClock,
    pub shard: PatternShardsView<'a>,
}

/// An engine's state borrowed where it lives: serialises exactly as the [`EngineState`]
/// its snapshot would be, without copying it (see [`crate::runtime::Engine::state_ref`]).
#[derive(Serialize)]
pub struct EngineStateRef<'a> {
    pub(crate) schema: &'a [Vec<String>],
    pub(crate) patterns: Vec<PatternStateRef<'a>>,
    pub(crate) stats: Stats,
}

/// Why a saved state cannot be restored into an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// A pattern's compiled form differs from the one the state was taken with.
    #[error("pattern `{name}` changed since the checkpoint (its compiled form differs); restore it fresh with --fresh-patterns, or run the version the checkpoint was taken with")]
    Changed {
        /// The pattern.
        name: String,
    },
    /// A pattern of the state is not among the engine's patterns.
    #[error("pattern `{name}` is in the checkpoint but not among the patterns loaded; drop its state with --fresh-patterns")]
    Removed {
        /// The pattern.
        name: String,
    },
    /// The saved clock has another number of source partitions.
    #[error("pattern `{name}`: the checkpoint has {saved} source partitions, this run {now}")]
    Partitions {
        /// The pattern.
        name: String,
        /// Partitions in the state.
        saved: usize,
        /// Partitions in this run.
        now: usize,
    },
    /// A partition of the state does not fit the pattern (a damaged or crafted state).
    #[error("pattern `{name}`: invalid state: {source}")]
    Invalid {
        /// The pattern.
        name: String,
        /// Why.
        source: StateError,
    },
}

/// What a restore did besides restoring: patterns started without state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Patterns not in the state (new since the checkpoint).
    pub added: Vec<String>,
    /// Patterns whose state was dropped because they changed (with `fresh`).
    pub changed: Vec<String>,
    /// Patterns of the state no longer loaded, whose state was dropped (with `fresh`).
    pub removed: Vec<String>,
}

/// A stable fingerprint of a pattern as it runs: its compiled NFA (states, edges,
/// conditions, window, skip strategy), its key fields and time field and its lateness.
/// Patterns whose fingerprints are equal read a saved state the same way.
pub fn fingerprint(nfa: &Nfa, key: &[Vec<String>], time: Option<&str>, lateness: i64) -> u64 {
    let mut text = crate::nfa::explain::to_text(nfa);
    text.push_str("\nkey:");
    for k in key {
        text.push_str(&k.join("."));
        text.push('\u{0}');
    }
    text.push_str("\ntime:");
    text.push_str(time.unwrap_or("<arrival>"));
    text.push_str(&format!("\nlateness:{lateness}"));
    crate::key::key_hash(text.as_bytes())
}

/// What the engine needs to know of its patterns to restore a state into them.
pub(crate) struct Target<'a> {
    pub nfa: &'a Nfa,
    pub fingerprint: u64,
    pub key_fields: usize,
}

/// A state matched to an engine's patterns: per pattern, its clock and partitions (or
/// `None`: starts fresh), events already in the engine's schema, every partition checked.
pub(crate) struct Prepared {
    pub patterns: Vec<Option<(PatternClock, PatternShardState)>>,
    pub stats: Stats,
    pub report: RestoreReport,
}

/// Matches `state` to the engine's patterns (`targets`, over `schema`). With `fresh`,
/// changed and removed patterns lose their state instead of being an error.
pub(crate) fn prepare(
    state: EngineState,
    targets: &[Target<'_>],
    schema: &Schema,
    fresh: bool,
) -> Result<Prepared, RestoreError> {
    let remap = slot_map(&state.schema, schema);
    let mut report = RestoreReport::default();
    let mut saved: Vec<Option<PatternState>> = state.patterns.into_iter().map(Some).collect();
    let mut patterns = Vec::with_capacity(targets.len());
    for t in targets {
        let name = &t.nfa.name;
        // The first saved pattern of that name not yet taken (names may repeat).
        let found = saved
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| &s.name == name))
            .and_then(Option::take);
        let Some(mut p) = found else {
            report.added.push(name.clone());
            patterns.push(None);
            continue;
        };
        if p.fingerprint != t.fingerprint {
            if !fresh {
                return Err(RestoreError::Changed { name: name.clone() });
            }
            report.changed.push(name.clone());
            patterns.push(None);
            continue;
        }
        if let Some(map) = &remap {
            p.shard
                .for_each_event_mut(&mut |e: &mut Event| move_fields(e, map, schema.len()));
        }
        p.shard
            .validate(t.nfa, t.key_fields)
            .map_err(|source| RestoreError::Invalid {
                name: name.clone(),
                source,
            })?;
        patterns.push(Some((p.clock, p.shard)));
    }
    for p in saved.into_iter().flatten() {
        if !fresh {
            return Err(RestoreError::Removed { name: p.name });
        }
        report.removed.push(p.name);
    }
    Ok(Prepared {
        patterns,
        stats: state.stats,
        report,
    })
}

/// For each slot of the saved schema, its slot in `now` (`None`: no pattern reads that
/// field now); `None` overall when the schemas are the same.
fn slot_map(saved: &[Vec<String>], now: &Schema) -> Option<Vec<Option<usize>>> {
    if saved == now.paths() {
        return None;
    }
    Some(saved.iter().map(|p| now.get(p)).collect())
}

/// Moves an event's fields from the saved schema's slots to the new schema's.
fn move_fields(e: &mut Event, map: &[Option<usize>], slots: usize) {
    let mut row: Vec<Value> = vec![Value::Null; slots];
    for (old, v) in e.fields.iter().enumerate() {
        if let Some(Some(new)) = map.get(old) {
            if let Some(dst) = row.get_mut(*new) {
                *dst = v.clone();
            }
        }
    }
    e.fields = row.into_boxed_slice();
}

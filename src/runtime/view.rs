//! Typed access to a match for code embedding motif: [`MatchView`], the match of an
//! [`Output::Match`](super::Output::Match) with its pattern's name, its key as typed values
//! and its events grouped by variable name, as Flink hands a match to a
//! `PatternProcessFunction` (`Map<String, List<E>>`).
//!
//! A view borrows the output and the engine and copies nothing but one reference per event
//! (to group them); the key is read from its text only when [`MatchView::key`] is called.
//! Nothing here runs while the engine matches.

use crate::key::Key;
use crate::nfa::{Match, MatchedEvent, Nfa};

/// A match (or timed-out partial match) as its pattern names it: see
/// [`Engine::view`](super::Engine::view) and [`Engine::matches`](super::Engine::matches).
///
/// ```
/// use motif::runtime::{Engine, EngineOptions};
/// use motif::Value;
///
/// let decls = motif::syntax::load_str(
///     "<doc>",
///     r#"pattern up key sensor time ts
///        = begin("low").where(temp < 20).oneOrMore().next("high").where(temp > 30);"#,
/// )
/// .unwrap();
/// let mut engine = Engine::new(&decls, EngineOptions::default()).unwrap();
/// let mut out = Vec::new();
/// for (ts, temp) in [(1, 15), (2, 18), (3, 35)] {
///     engine.push_value(&serde_json::json!({ "sensor": 4, "ts": ts, "temp": temp }), &mut out);
/// }
/// engine.finish(&mut out);
///
/// // The longest of the matches (`low` takes one or more events).
/// let m = engine.matches(&out).max_by_key(|m| m.events("low").len()).unwrap();
/// assert_eq!(m.pattern(), "up");
/// assert!(matches!(m.key().unwrap().fields(), [Value::Int(4)]));
/// assert_eq!((m.start(), m.end()), (1, 3));
/// let low: Vec<i64> = m.events("low").iter().map(|e| e.time).collect();
/// assert_eq!(low, [1, 2]);
/// assert!(matches!(m.events("high")[0].field("temp"), Value::Int(35)));
/// let names: Vec<&str> = m.variables().map(|(name, _)| name).collect();
/// assert_eq!(names, ["low", "high"]);
/// ```
#[derive(Debug, Clone)]
pub struct MatchView<'a> {
    nfa: &'a Nfa,
    key_fields: usize,
    key: Option<&'a str>,
    m: &'a Match,
    /// The events grouped by variable (in pattern order), each group in the order taken.
    grouped: Vec<&'a MatchedEvent>,
    /// Variable `v`'s events are `grouped[bounds[v]..bounds[v + 1]]`.
    bounds: Vec<usize>,
}

impl<'a> MatchView<'a> {
    /// The view of `m`, a match of `nfa` whose key has `key_fields` fields and shows as
    /// `key`; `None` if an event's variable is not one of `nfa`'s (the match is of another
    /// pattern).
    pub(crate) fn new(
        nfa: &'a Nfa,
        key_fields: usize,
        key: Option<&'a str>,
        m: &'a Match,
    ) -> Option<MatchView<'a>> {
        let vars = nfa.variables.len();
        let mut bounds = vec![0usize; vars + 1];
        for e in &m.events {
            *bounds.get_mut(e.var.checked_add(1)?)? += 1;
        }
        for v in 0..vars {
            bounds[v + 1] += bounds[v];
        }
        let mut grouped: Vec<&'a MatchedEvent> = m.events.iter().collect();
        // Stable: each variable's events stay in the order taken.
        grouped.sort_by_key(|e| e.var);
        Some(MatchView {
            nfa,
            key_fields,
            key,
            m,
            grouped,
            bounds,
        })
    }

    /// The pattern's name.
    pub fn pattern(&self) -> &'a str {
        &self.nfa.name
    }

    /// The compiled pattern (its variables in pattern order are
    /// [`Nfa::variables`](crate::nfa::Nfa::variables)).
    pub fn nfa(&self) -> &'a Nfa {
        self.nfa
    }

    /// The partition key as typed values, one per key field of the pattern (`None` for a
    /// pattern without `key`). Read from the key's text on each call; a field that was a
    /// float JSON cannot write (infinite or NaN), shown as `null`, reads as [`Value::Null`].
    ///
    /// [`Value::Null`]: crate::Value::Null
    pub fn key(&self) -> Option<Key> {
        Key::from_json(self.key_fields, self.key?)
    }

    /// The key as the JSON text matches show (`1`, `"c1"`, `["a",7]`), without reading it.
    pub fn key_json(&self) -> Option<&'a str> {
        self.key
    }

    /// The time of the first event (0 for a match without events).
    pub fn start(&self) -> i64 {
        self.m.events.first().map_or(0, |e| e.time)
    }

    /// The time of the last event (0 for a match without events).
    pub fn end(&self) -> i64 {
        self.m.events.last().map_or(0, |e| e.time)
    }

    /// Whether this is a timed-out partial match (reported with
    /// [`EngineOptions::timeouts`](super::EngineOptions::timeouts)).
    pub fn is_timed_out(&self) -> bool {
        self.m.timed_out.is_some()
    }

    /// For a timed-out partial match, the time it timed out.
    pub fn timed_out_at(&self) -> Option<i64> {
        self.m.timed_out
    }

    /// The events variable `var` took, in the order taken; empty if it took none in this
    /// match (an optional or negated variable) or the pattern has no variable `var`.
    pub fn events(&self, var: &str) -> &[&'a MatchedEvent] {
        match self.nfa.variables.iter().position(|v| v == var) {
            Some(v) => &self.grouped[self.bounds[v]..self.bounds[v + 1]],
            None => &[],
        }
    }

    /// Each variable that took events, in pattern order, with its events in the order
    /// taken: Flink's `Map<String, List<E>>` of a match.
    pub fn variables(&self) -> impl Iterator<Item = (&'a str, &[&'a MatchedEvent])> + '_ {
        self.nfa
            .variables
            .iter()
            .enumerate()
            .map(|(v, name)| {
                (
                    name.as_str(),
                    &self.grouped[self.bounds[v]..self.bounds[v + 1]],
                )
            })
            .filter(|(_, events)| !events.is_empty())
    }

    /// Every event in the order the match took them, with its variable's name.
    pub fn events_in_order(&self) -> impl Iterator<Item = (&'a str, &'a MatchedEvent)> + 'a {
        let nfa = self.nfa;
        self.m
            .events
            .iter()
            .map(move |e| (nfa.variables[e.var].as_str(), e))
    }

    /// The match itself.
    pub fn get(&self) -> &'a Match {
        self.m
    }
}

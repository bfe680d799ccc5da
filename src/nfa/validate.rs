//! Why a restored [`crate::nfa::Matcher`] cannot be run with an [`crate::nfa::Nfa`].
//!
//! A matcher's state is plain data (serde), so a checkpoint taken with another pattern, or
//! bytes corrupted or crafted so that they still deserialise, give a matcher whose indices
//! and counts the matching code trusts without checking: out-of-range indices panic, a cycle
//! in a path loops for ever, a reference count one too low frees a node still in use (and a
//! later reuse of the node corrupts another path). [`crate::nfa::Matcher::validate`] proves,
//! before such a matcher is used, that every invariant the code relies on holds; this module
//! holds the error it reports.

use std::fmt;

use crate::nfa::StateKind;

/// A run of a matcher: one of its partial matches or one of its completed runs waiting to be
/// emitted, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRef {
    /// Among the completed runs (otherwise among the partial matches).
    pub completed: bool,
    /// Position in its list.
    pub index: usize,
}

impl fmt::Display for RunRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.completed {
            write!(f, "completed run {}", self.index)
        } else {
            write!(f, "run {}", self.index)
        }
    }
}

/// The two tables of the shared buffer, each with its own free list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The nodes of the paths.
    Nodes,
    /// The slots of the stored events.
    EventSlots,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Nodes => "nodes",
            Table::EventSlots => "event slots",
        })
    }
}

impl Table {
    /// The name of one entry.
    fn entry(self) -> &'static str {
        match self {
            Table::Nodes => "node",
            Table::EventSlots => "event slot",
        }
    }
}

/// Largest `next_seq` and dropped-run count a valid matcher may have (2^63). Either counter
/// grows by one per event or per dropped run, so a real matcher is far below it, and from
/// below it neither can overflow (which would panic in debug builds).
pub const COUNTER_LIMIT: u64 = 1 << 63;

/// What is wrong with a matcher's state, as found by [`crate::nfa::Matcher::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidState {
    // ---- the matcher -----------------------------------------------------------------
    /// The cap on runs is 0 or so large that the cap check overflows.
    #[error("the cap on partial matches is {max}, it must be between 1 and usize::MAX - 1")]
    MaxRuns {
        /// The cap.
        max: usize,
    },
    /// A counter is beyond [`COUNTER_LIMIT`].
    #[error("the {counter} is {value}, beyond 2^63")]
    CounterTooLarge {
        /// Which counter ("next event sequence number", "dropped-run count").
        counter: &'static str,
        /// Its value.
        value: u64,
    },

    /// The compact matcher's state does not fit the pattern (see [`crate::nfa::compact`]).
    #[error("the compact matcher's state: {what}")]
    Compact {
        /// What is wrong.
        what: &'static str,
    },

    // ---- runs ------------------------------------------------------------------------
    /// A run is in a state the pattern does not have.
    #[error("{run} is in state {state}, the pattern has {states} states")]
    StateOutOfRange {
        /// The run.
        run: RunRef,
        /// Its state.
        state: usize,
        /// The pattern's number of states.
        states: usize,
    },
    /// A run is in a state of a kind its list never holds (a partial match in a Final or Stop
    /// state, a completed run in a Normal or Stop state).
    #[error(
        "{run} is in state {state}, a {kind:?} state, where {}",
        if run.completed { "no match completes" } else { "no partial match waits" }
    )]
    WrongStateKind {
        /// The run.
        run: RunRef,
        /// Its state.
        state: usize,
        /// The state's kind.
        kind: StateKind,
    },
    /// Two runs are in the start state (only one is ever made, and kept).
    #[error("run {first} and run {second} are both in the start state")]
    TwoStartRuns {
        /// The first.
        first: usize,
        /// The second.
        second: usize,
    },
    /// The runs are grouped by state where they may not be, or the groups are not what
    /// the grouped layout keeps (see [`crate::nfa::Grouping`]).
    #[error("runs grouped by state: {what}")]
    Groups {
        /// What is wrong.
        what: &'static str,
    },
    /// No run is in the start state: the matcher would never start a partial match.
    #[error("no run is in the start state")]
    NoStartRun,
    /// The run in the start state has taken events.
    #[error("{run} is in the start state but ends at node {node}")]
    StartRunWithPath {
        /// The run.
        run: RunRef,
        /// The node it ends at.
        node: u32,
    },
    /// The run in the start state has a start sequence number.
    #[error("{run} is in the start state but its start sequence number is {start_seq}")]
    StartRunStarted {
        /// The run.
        run: RunRef,
        /// Its start sequence number.
        start_seq: u64,
    },
    /// A run outside the start state has taken no event.
    #[error("{run} is in state {state} but has taken no event")]
    RunWithoutPath {
        /// The run.
        run: RunRef,
        /// Its state.
        state: usize,
    },
    /// A run ends at a node the buffer does not have.
    #[error("{run} ends at node {node} of {nodes}")]
    RunNodeOutOfRange {
        /// The run.
        run: RunRef,
        /// The node.
        node: u32,
        /// The number of nodes.
        nodes: usize,
    },
    /// A run ends at a free node.
    #[error("{run} ends at node {node}, which is free")]
    RunNodeFree {
        /// The run.
        run: RunRef,
        /// The node.
        node: u32,
    },
    /// A run's start sequence number is not that of the first event of its path.
    #[error(
        "{run} has start sequence number {start_seq}, the first event of its path {first_seq}"
    )]
    StartSeqMismatch {
        /// The run.
        run: RunRef,
        /// Its start sequence number.
        start_seq: u64,
        /// The first event's.
        first_seq: u64,
    },
    /// A run's start time is not that of the first event of its path.
    #[error("{run} started at time {start_ts}, the first event of its path is at {first_ts}")]
    StartTimeMismatch {
        /// The run.
        run: RunRef,
        /// Its start time.
        start_ts: i64,
        /// The first event's time.
        first_ts: i64,
    },
    /// A run's time of its previous event is not that of the last event of its path.
    #[error(
        "{run} took its last event at time {prev_ts}, the last event of its path is at {last_ts}"
    )]
    PrevTimeMismatch {
        /// The run.
        run: RunRef,
        /// Its previous-event time.
        prev_ts: i64,
        /// The last event's time.
        last_ts: i64,
    },
    /// A run does not have one aggregate per aggregate of the pattern.
    #[error("{run} has {found} aggregates, the pattern has {expected}")]
    AggCount {
        /// The run.
        run: RunRef,
        /// Its number of aggregates.
        found: usize,
        /// The pattern's.
        expected: usize,
    },
    /// A run's aggregate is of another function than the pattern's.
    #[error("aggregate {agg} of {run} is not a `{func}` accumulator")]
    AggKind {
        /// The run.
        run: RunRef,
        /// The aggregate's index.
        agg: usize,
        /// The function the pattern has there.
        func: &'static str,
    },
    /// A run's aggregate has seen events though its path has none of the variable.
    #[error("aggregate {agg} of {run} is not empty, its path has no event of variable {var}")]
    AggNotEmpty {
        /// The run.
        run: RunRef,
        /// The aggregate's index.
        agg: usize,
        /// The aggregated variable.
        var: usize,
    },
    /// A run's aggregate counts more events (or, for `count` and `first`, other) than its
    /// path has of the variable.
    #[error("aggregate {agg} of {run} counts {counted} events, its path has {on_path} of variable {var}")]
    AggEventsMismatch {
        /// The run.
        run: RunRef,
        /// The aggregate's index.
        agg: usize,
        /// The aggregated variable.
        var: usize,
        /// The events the accumulator counts.
        counted: u64,
        /// The events of the variable on the path.
        on_path: u64,
    },

    // ---- the shared buffer -----------------------------------------------------------
    /// A table has so many entries that an index could be [`crate::nfa::buffer::NIL`].
    #[error("the buffer has {len} {table}, more than 32-bit indices can address")]
    TooManyEntries {
        /// The table.
        table: Table,
        /// Its length.
        len: usize,
    },
    /// A free list points past the end of its table.
    #[error("free list of {table} points at entry {entry} of {len}")]
    FreeListOutOfRange {
        /// The table.
        table: Table,
        /// The entry pointed at.
        entry: u64,
        /// The table's length.
        len: usize,
    },
    /// A free list comes back to an entry it passed.
    #[error("free list of {table} has a cycle (through entry {entry})")]
    FreeListCycle {
        /// The table.
        table: Table,
        /// The entry reached twice.
        entry: usize,
    },
    /// A free entry has a reference count.
    #[error("{} {entry} is free but has reference count {refs}", table.entry())]
    FreeEntryReferenced {
        /// The table.
        table: Table,
        /// The entry.
        entry: usize,
        /// Its reference count.
        refs: u32,
    },
    /// A free event slot holds an event.
    #[error("event slot {slot} is free but holds an event")]
    FreeSlotHoldsEvent {
        /// The slot.
        slot: usize,
    },
    /// A live-entry counter differs from the number of entries not free.
    #[error("the buffer counts {counted} live {table}, {actual} are not free")]
    LiveCount {
        /// The table.
        table: Table,
        /// The counter.
        counted: u32,
        /// The entries not on the free list.
        actual: usize,
    },
    /// A node points at an event slot the buffer does not have.
    #[error("node {node} points at event slot {slot} of {slots}")]
    NodeEventOutOfRange {
        /// The node.
        node: usize,
        /// The slot.
        slot: u32,
        /// The number of slots.
        slots: usize,
    },
    /// A node points at a free event slot.
    #[error("node {node} points at event slot {slot}, which is free")]
    NodeEventFree {
        /// The node.
        node: usize,
        /// The slot.
        slot: u32,
    },
    /// A node is of a variable the pattern does not have.
    #[error("node {node} is of variable {var}, the pattern has {vars} variables")]
    NodeVarOutOfRange {
        /// The node.
        node: usize,
        /// Its variable.
        var: u32,
        /// The pattern's number of variables.
        vars: usize,
    },
    /// A node is of a variable no state of the pattern takes events for.
    #[error("node {node} is of variable {var}, which no step of the pattern takes events for")]
    NodeVarNotTaken {
        /// The node.
        node: usize,
        /// Its variable.
        var: u32,
    },
    /// A node follows a node the buffer does not have.
    #[error("node {node} follows node {prev} of {nodes}")]
    NodePrevOutOfRange {
        /// The node.
        node: usize,
        /// Its predecessor.
        prev: u32,
        /// The number of nodes.
        nodes: usize,
    },
    /// A node follows a free node.
    #[error("node {node} follows node {prev}, which is free")]
    NodePrevFree {
        /// The node.
        node: usize,
        /// Its predecessor.
        prev: u32,
    },
    /// Following predecessors from a node comes back to a node passed.
    #[error("the path through node {node} has a cycle")]
    PathCycle {
        /// A node on the cycle.
        node: usize,
    },
    /// A node's event is not later than its predecessor's.
    #[error("node {node} takes event {seq} after event {prev_seq} of the node it follows")]
    PathOrder {
        /// The node.
        node: usize,
        /// Its event's sequence number.
        seq: u64,
        /// Its predecessor's event's.
        prev_seq: u64,
    },
    /// A node is neither free nor on the path of any run.
    #[error("node {node} is neither free nor used by any path")]
    NodeUnused {
        /// The node.
        node: usize,
    },
    /// A node's reference count differs from its holders (runs ending there, nodes
    /// following it).
    #[error("reference count of node {node} is {refs}, {used} paths use it")]
    NodeRefs {
        /// The node.
        node: usize,
        /// Its reference count.
        refs: u32,
        /// Its holders.
        used: u64,
    },
    /// An event slot in use holds no event.
    #[error("event slot {slot} is not free but holds no event")]
    SlotWithoutEvent {
        /// The slot.
        slot: usize,
    },
    /// An event slot is neither free nor taken by any node.
    #[error("event slot {slot} is neither free nor used by any node")]
    SlotUnused {
        /// The slot.
        slot: usize,
    },
    /// An event slot's reference count differs from the nodes that took its event.
    #[error("reference count of event slot {slot} is {refs}, {used} nodes use it")]
    SlotRefs {
        /// The slot.
        slot: usize,
        /// Its reference count.
        refs: u32,
        /// The nodes pointing at it.
        used: u64,
    },
    /// A stored event's sequence number is not below the matcher's next one.
    #[error("event slot {slot} holds event {seq}, but the next event is to be {next_seq}")]
    SlotSeqTooLate {
        /// The slot.
        slot: usize,
        /// The event's sequence number.
        seq: u64,
        /// The matcher's next sequence number.
        next_seq: u64,
    },
    /// Two slots hold events of the same sequence number.
    #[error("event slots {first} and {second} both hold event {seq}")]
    DuplicateSeq {
        /// One slot.
        first: usize,
        /// The other.
        second: usize,
        /// The sequence number.
        seq: u64,
    },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::{json, Value as Json};

    use super::{InvalidState, RunRef, Table, COUNTER_LIMIT};
    use crate::event::{Event, Schema};
    use crate::nfa::matcher::Scratch;
    use crate::nfa::{Match, Matcher, Nfa};

    /// Patterns over events `{"name": "a"|"b"|"c", "price": 0..5}` covering what shapes a
    /// matcher's state: loops, optional steps, `followedByAny`, `notFollowedBy` and `notNext`
    /// (Stop states), a trailing `notFollowedBy` (a Pending state), both kinds of window,
    /// groups, `until`, greedy loops, aggregates of each function and every skip strategy.
    const PATTERNS: &[&str] = &[
        r#"pattern p = begin("a").where(name == "a")
            .followedBy("b").where(name == "b").oneOrMore()
            .followedBy("c").where(name == "c");"#,
        r#"pattern p = begin("a").where(name == "a")
            .followedByAny("b").where(name == "b" and price > a.price).optional()
            .followedByAny("c").where(name == "c" and count(b) < 3 and sum(b.price) < 9);"#,
        r#"pattern p = begin("a").where(name == "a")
            .notFollowedBy("x").where(name == "c")
            .followedBy("b").where(name == "b")
            .within(5ms);"#,
        r#"pattern p = begin("a").where(name == "a")
            .followedBy("b").where(name == "b")
            .notFollowedBy("x").where(name == "c")
            .within(4ms);"#,
        r#"pattern p = begin("a", skipPastLastEvent()).where(name == "a").oneOrMore()
            .notNext("x").where(name == "b")
            .followedBy("c").where(name == "c");"#,
        r#"pattern p = begin("a", skipToLast("b")).where(name == "a")
            .followedBy("b").where(name == "b").timesOrMore(2).greedy()
            .followedBy("c").where(name == "c" and avg(b.price) > 1 and max(b.price) >= first(b).price
                and min(b.price) <= last(b).price);"#,
        r#"pattern p = begin("s").where(name == "c")
            .followedBy(begin("m1").where(name == "a").followedBy("m2").where(name == "b"))
                .times(2).optional()
            .followedBy("e").where(name == "c")
            .within(20ms);"#,
        r#"pattern p = begin("a", skipToFirst("b")).where(name == "a")
            .followedByAny("b").where(name == "b").oneOrMore().allowCombinations().until(price > 3)
                .within(3ms, PREVIOUS_AND_CURRENT)
            .followedBy("c").where(name == "c");"#,
        r#"pattern p = begin("a", skipToNext()).where(name != "c").times(2, 3).consecutive()
            .next("b").where(price > last(a).price)
            .within(6ms);"#,
    ];

    fn compiled(source: &str) -> (Nfa, Schema) {
        let decls = crate::syntax::load_str("<test>", source).expect("pattern loads");
        let mut schema = Schema::new();
        let nfa = crate::nfa::compiler::compile_for_list(&decls[0], &mut schema).expect("pattern compiles");
        (nfa, schema)
    }

    /// A matcher with its pattern, fed events one by one.
    struct Feed {
        nfa: Nfa,
        schema: Schema,
        matcher: Matcher,
        scratch: Scratch,
        time: i64,
        matches: Vec<Match>,
    }

    impl Feed {
        fn new(source: &str) -> Feed {
            let (nfa, schema) = compiled(source);
            let matcher = Matcher::new(&nfa);
            Feed {
                nfa,
                schema,
                matcher,
                scratch: Scratch::default(),
                time: 0,
                matches: Vec::new(),
            }
        }

        fn advance(&mut self, gap: i64, handle_timeouts: bool) {
            self.time += gap;
            let mut timeouts = Vec::new();
            self.matcher.advance_time(
                &self.nfa,
                &mut self.scratch,
                self.time,
                handle_timeouts,
                &mut self.matches,
                &mut timeouts,
            );
        }

        /// Advances time by `gap` (as the runtime does before each event), then offers an
        /// event.
        fn event(&mut self, name: &str, price: i64, gap: i64, handle_timeouts: bool) {
            self.advance(gap, handle_timeouts);
            let raw = format!(r#"{{"name":"{name}","price":{price},"ts":{}}}"#, self.time);
            let ev = Event {
                time: self.time,
                fields: self.schema.decode_row(&raw).expect("test event decodes"),
                raw: Arc::from(raw.as_str()),
            };
            self.matcher
                .process(&self.nfa, &mut self.scratch, ev, &mut self.matches);
        }

        /// The events named by the letters of `names`, one millisecond apart, price 1.
        fn events(&mut self, names: &str) {
            for n in names.chars() {
                self.event(&n.to_string(), 1, 1, true);
            }
        }

        fn state(&self) -> Json {
            serde_json::to_value(&self.matcher).expect("matcher serialises")
        }
    }

    /// The matcher `state` stands for, checked against `nfa`.
    fn check(state: Json, nfa: &Nfa) -> Result<Matcher, InvalidState> {
        let m: Matcher = serde_json::from_value(state).expect("state deserialises");
        m.validate(nfa).map(|()| m)
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// An event `name` with `price`, `gap` ms after the previous time.
        Event(usize, i64, i64),
        /// Time passes by that much with no event.
        Advance(i64),
        /// The partition is reset.
        Reset,
        /// The matcher goes through a serde round trip and the copy goes on.
        RoundTrip,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => (0usize..3, 0i64..5, 0i64..3).prop_map(|(n, p, g)| Op::Event(n, p, g)),
            2 => (1i64..8).prop_map(Op::Advance),
            1 => Just(Op::Reset),
            3 => Just(Op::RoundTrip),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every state the matcher reaches validates, and so does its serde round trip.
        #[test]
        fn reached_states_validate(
            pattern in 0..PATTERNS.len(),
            ops in prop::collection::vec(op(), 0..40),
            cap in prop::option::of(1usize..4),
            handle_timeouts in any::<bool>(),
        ) {
            let mut f = Feed::new(PATTERNS[pattern]);
            if let Some(cap) = cap {
                f.matcher.set_max_runs(cap);
            }
            for op in ops {
                match op {
                    Op::Event(n, price, gap) => f.event(["a", "b", "c"][n], price, gap, handle_timeouts),
                    Op::Advance(gap) => f.advance(gap, handle_timeouts),
                    Op::Reset => f.matcher.reset(&f.nfa),
                    Op::RoundTrip => {}
                }
                if let Err(e) = f.matcher.validate(&f.nfa) {
                    panic!("{e} after {op:?}, in state {}", f.state());
                }
                let restored = check(f.state(), &f.nfa);
                prop_assert!(restored.is_ok(), "round trip: {:?}", restored.err());
                if let (Op::RoundTrip, Ok(m)) = (&op, restored) {
                    f.matcher = m;
                }
            }
        }
    }

    /// Run a, b, b, c, b, c through a pattern with `count(b)`: a completed match has freed
    /// a node and an event slot, and runs share the nodes of a and the b's.
    fn rich() -> Feed {
        let mut f = Feed::new(
            r#"pattern p = begin("a").where(name == "a")
                .followedByAny("b").where(name == "b").oneOrMore()
                .followedBy("c").where(name == "c" and count(b) >= 1);"#,
        );
        f.events("abbcbc");
        let s = f.state();
        assert!(!f.matches.is_empty(), "a match was emitted");
        assert_ne!(
            s["buffer"]["free_node"],
            json!(u32::MAX),
            "a node is free: {s}"
        );
        assert_ne!(
            s["buffer"]["free_event"],
            json!(u32::MAX),
            "a slot is free: {s}"
        );
        assert!(s["runs"].as_array().unwrap().len() >= 3, "{s}");
        f.matcher.validate(&f.nfa).expect("the state is valid");
        f
    }

    /// Index of the first live node `pred` accepts (a node is live when not on the free list).
    fn live_node(s: &Json, pred: impl Fn(&Json) -> bool) -> usize {
        let mut free = Vec::new();
        let mut at = s["buffer"]["free_node"].as_u64().unwrap();
        while at != u64::from(u32::MAX) {
            free.push(at as usize);
            at = s["buffer"]["nodes"][at as usize]["prev"].as_u64().unwrap();
        }
        let nodes = s["buffer"]["nodes"].as_array().unwrap();
        (0..nodes.len())
            .find(|i| !free.contains(i) && pred(&nodes[*i]))
            .expect("such a node")
    }

    fn rejected(f: &Feed, edit: impl FnOnce(&mut Json)) -> (InvalidState, String) {
        let mut s = f.state();
        edit(&mut s);
        let e = check(s, &f.nfa).expect_err("the corrupted state is rejected");
        let msg = e.to_string();
        (e, msg)
    }

    #[test]
    fn out_of_range_state_is_rejected() {
        let f = rich();
        let states = f.nfa.states.len();
        let (e, msg) = rejected(&f, |s| s["runs"][1]["state"] = json!(17));
        assert_eq!(
            e,
            InvalidState::StateOutOfRange {
                run: RunRef {
                    completed: false,
                    index: 1
                },
                state: 17,
                states
            }
        );
        assert_eq!(
            msg,
            format!("run 1 is in state 17, the pattern has {states} states")
        );
    }

    #[test]
    fn out_of_range_nodes_are_rejected() {
        let f = rich();
        let s = f.state();
        let nodes = s["buffer"]["nodes"].as_array().unwrap().len();
        let slots = s["buffer"]["events"].as_array().unwrap().len();
        let run = (0..)
            .find(|&i| s["runs"][i]["node"] != json!(u32::MAX))
            .unwrap();
        let (e, msg) = rejected(&f, |s| s["runs"][run]["node"] = json!(nodes + 2));
        assert!(matches!(e, InvalidState::RunNodeOutOfRange { .. }), "{e:?}");
        assert_eq!(
            msg,
            format!("run {run} ends at node {} of {nodes}", nodes + 2)
        );

        let n = live_node(&s, |_| true);
        let (e, msg) = rejected(&f, |s| s["buffer"]["nodes"][n]["event"] = json!(9));
        assert!(
            matches!(e, InvalidState::NodeEventOutOfRange { .. }),
            "{e:?}"
        );
        assert_eq!(msg, format!("node {n} points at event slot 9 of {slots}"));

        let (e, msg) = rejected(&f, |s| s["buffer"]["nodes"][n]["prev"] = json!(nodes));
        assert!(
            matches!(e, InvalidState::NodePrevOutOfRange { .. }),
            "{e:?}"
        );
        assert_eq!(msg, format!("node {n} follows node {nodes} of {nodes}"));
    }

    #[test]
    fn a_cycle_of_predecessors_is_rejected() {
        let f = rich();
        let s = f.state();
        let nil = json!(u32::MAX);
        let root = live_node(&s, |n| n["prev"] == nil);
        let child = live_node(&s, |n| n["prev"] == json!(root));
        let (e, msg) = rejected(&f, |s| s["buffer"]["nodes"][root]["prev"] = json!(child));
        assert!(matches!(e, InvalidState::PathCycle { .. }), "{e:?}");
        assert!(
            msg.starts_with("the path through node") && msg.ends_with("has a cycle"),
            "{msg}"
        );
        // A node following itself.
        let (e, _) = rejected(&f, |s| s["buffer"]["nodes"][root]["prev"] = json!(root));
        assert_eq!(e, InvalidState::PathCycle { node: root });
    }

    #[test]
    fn wrong_reference_counts_are_rejected() {
        let f = rich();
        let s = f.state();
        let n = live_node(&s, |_| true);
        let refs = s["buffer"]["nodes"][n]["refs"].as_u64().unwrap();
        let (e, msg) = rejected(&f, |s| s["buffer"]["nodes"][n]["refs"] = json!(refs - 1));
        assert_eq!(
            msg,
            format!(
                "reference count of node {n} is {}, {refs} paths use it",
                refs - 1
            )
        );
        assert!(matches!(e, InvalidState::NodeRefs { .. }));

        let slot = s["buffer"]["nodes"][n]["event"].as_u64().unwrap() as usize;
        let refs = s["buffer"]["events"][slot]["refs"].as_u64().unwrap();
        let (_, msg) = rejected(&f, |s| {
            s["buffer"]["events"][slot]["refs"] = json!(refs + 1)
        });
        assert_eq!(
            msg,
            format!(
                "reference count of event slot {slot} is {}, {refs} nodes use it",
                refs + 1
            )
        );
    }

    #[test]
    fn a_cycle_in_a_free_list_is_rejected() {
        let f = rich();
        let s = f.state();
        let free = s["buffer"]["free_node"].as_u64().unwrap() as usize;
        let (e, msg) = rejected(&f, |s| s["buffer"]["nodes"][free]["prev"] = json!(free));
        assert_eq!(
            e,
            InvalidState::FreeListCycle {
                table: Table::Nodes,
                entry: free
            }
        );
        assert_eq!(
            msg,
            format!("free list of nodes has a cycle (through entry {free})")
        );

        let free = s["buffer"]["free_event"].as_u64().unwrap() as usize;
        let (_, msg) = rejected(&f, |s| s["buffer"]["events"][free]["seq"] = json!(free));
        assert_eq!(
            msg,
            format!("free list of event slots has a cycle (through entry {free})")
        );
        // A free list leaving out a free entry leaves the live count wrong.
        let (e, _) = rejected(&f, |s| s["buffer"]["free_node"] = json!(u32::MAX));
        assert!(
            matches!(
                e,
                InvalidState::LiveCount {
                    table: Table::Nodes,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_wrong_variable_is_rejected() {
        let f = rich();
        let s = f.state();
        let n = live_node(&s, |_| true);
        let (e, msg) = rejected(&f, |s| s["buffer"]["nodes"][n]["var"] = json!(7));
        assert_eq!(
            e,
            InvalidState::NodeVarOutOfRange {
                node: n,
                var: 7,
                vars: 3
            }
        );
        assert_eq!(
            msg,
            format!("node {n} is of variable 7, the pattern has 3 variables")
        );
    }

    #[test]
    fn other_corruptions_are_rejected() {
        let f = rich();
        let s = f.state();
        let run = (0..)
            .find(|&i| s["runs"][i]["node"] != json!(u32::MAX))
            .unwrap();
        type Edit = Box<dyn Fn(&mut Json)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|s| s["max_runs"] = json!(0)),
                "the cap on partial matches is 0",
            ),
            (
                Box::new(|s| s["next_seq"] = json!(u64::MAX)),
                "the next event sequence number is 18446744073709551615, beyond 2^63",
            ),
            (
                Box::new(|s| s["next_seq"] = json!(2)),
                "holds event 2, but the next event is to be 2",
            ),
            (
                Box::new(move |s| s["runs"][run]["aggs"][0]["Count"] = json!(99)),
                "counts 99 events, its path has",
            ),
            (
                Box::new(move |s| s["runs"][run]["aggs"] = json!([])),
                "has 0 aggregates, the pattern has 1",
            ),
            (
                Box::new(move |s| s["runs"][run]["aggs"][0] = json!({"Last": "Null"})),
                "is not a `count` accumulator",
            ),
            (
                Box::new(move |s| s["runs"][run]["start_seq"] = json!(u64::MAX)),
                "has start sequence number 18446744073709551615, the first event of its path 0",
            ),
            (
                Box::new(move |s| s["runs"][run]["prev_ts"] = json!(-5)),
                "took its last event at time -5",
            ),
            (
                Box::new(move |s| s["runs"][run]["node"] = json!(u32::MAX)),
                "has taken no event",
            ),
            (
                Box::new(|s| {
                    let start = s["runs"].as_array().unwrap().last().unwrap().clone();
                    s["runs"].as_array_mut().unwrap().push(start);
                }),
                "are both in the start state",
            ),
            (
                Box::new(|s| {
                    s["runs"].as_array_mut().unwrap().pop();
                }),
                "no run is in the start state",
            ),
            (
                Box::new(|s| s["buffer"]["live_events"] = json!(0)),
                "the buffer counts 0 live event slots",
            ),
        ];
        for (edit, part) in cases {
            let mut bad = s.clone();
            edit(&mut bad);
            match check(bad, &f.nfa) {
                Ok(_) => panic!("accepted a state that should fail with `{part}`"),
                Err(e) => assert!(e.to_string().contains(part), "`{e}` lacks `{part}`"),
            }
        }
    }

    /// A matcher of a four-step pattern restored for a one-step pattern: without validation,
    /// its runs index states the NFA does not have (and processing panics).
    #[test]
    fn a_state_of_another_pattern_is_rejected() {
        let mut four = Feed::new(
            r#"pattern p = begin("a").where(name == "a")
                .followedBy("b").where(name == "b")
                .followedBy("c").where(name == "c")
                .followedBy("d").where(name == "d");"#,
        );
        four.events("abc");
        let state = four.state();
        check(state.clone(), &four.nfa).expect("valid for its own pattern");

        let mut one = Feed::new(r#"pattern p = begin("a").where(name == "a");"#);
        let e = check(state.clone(), &one.nfa).expect_err("rejected for another pattern");
        // The one-step pattern has two states, its start state 1 where the four-step
        // pattern has its last step: the run waiting for d is the first found wrong.
        assert_eq!(
            e.to_string(),
            "run 0 is in the start state but ends at node 2"
        );
        let mut later_runs = state.clone();
        later_runs["runs"].as_array_mut().unwrap().remove(0);
        let e = check(later_runs, &one.nfa).expect_err("rejected for another pattern");
        assert_eq!(
            e.to_string(),
            "run 0 is in state 4, the pattern has 2 states"
        );

        // What validation prevents.
        one.matcher = serde_json::from_value(state).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one.events("d")));
        assert!(outcome.is_err(), "the unvalidated state panics");
    }

    /// The paths (keys and indices) to every number in `v`.
    fn numbers(v: &Json, path: &mut Vec<Json>, out: &mut Vec<Vec<Json>>) {
        match v {
            Json::Number(_) => out.push(path.clone()),
            Json::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(json!(i));
                    numbers(x, path, out);
                    path.pop();
                }
            }
            Json::Object(o) => {
                for (k, x) in o {
                    path.push(json!(k));
                    numbers(x, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn at<'a>(mut v: &'a mut Json, path: &[Json]) -> &'a mut Json {
        for step in path {
            v = match step {
                Json::String(k) => &mut v[k.as_str()],
                i => &mut v[i.as_u64().expect("an index") as usize],
            };
        }
        v
    }

    proptest! {
        /// The guarantee validation gives: a state that passes, however it was made (here: a
        /// reached state with a few numbers changed to small values, limits of their types
        /// or neighbours of what they were), runs on without panicking and stays valid (the
        /// counters may reach their limit only).
        #[test]
        fn validated_corruptions_run_on_without_panicking(
            pattern in 0..PATTERNS.len(),
            before in prop::collection::vec(op(), 0..30),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..12, -3i64..4), 1..4),
            after in prop::collection::vec(op(), 0..30),
            handle_timeouts in any::<bool>(),
        ) {
            let mut f = Feed::new(PATTERNS[pattern]);
            let apply = |f: &mut Feed, op: &Op| match op {
                Op::Event(n, price, gap) => f.event(["a", "b", "c"][*n], *price, *gap, handle_timeouts),
                Op::Advance(gap) => f.advance(*gap, handle_timeouts),
                Op::Reset => f.matcher.reset(&f.nfa),
                Op::RoundTrip => {}
            };
            for op in &before {
                apply(&mut f, op);
            }
            let mut state = f.state();
            let mut paths = Vec::new();
            numbers(&state, &mut Vec::new(), &mut paths);
            for (which, to, delta) in edits {
                let n = at(&mut state, which.get::<Vec<Json>>(&paths));
                *n = match to {
                    0..=2 => json!(to),
                    3 => json!(u32::MAX),
                    4 => json!(u32::MAX - 1),
                    5 => json!(u64::MAX),
                    6 => json!(i64::MAX),
                    7 => json!(i64::MIN),
                    8 => json!(COUNTER_LIMIT),
                    _ => match (n.as_i64(), n.as_u64()) {
                        (Some(x), _) => json!(x.saturating_add(delta)),
                        (None, Some(x)) => json!(x.saturating_add_signed(delta)),
                        _ => n.clone(),
                    },
                };
            }
            // Numbers out of their field's range do not deserialise; states not valid are
            // what the other tests are about.
            let Ok(restored) = serde_json::from_value::<Matcher>(state.clone()) else {
                return Ok(());
            };
            if restored.validate(&f.nfa).is_err() {
                return Ok(());
            }
            f.matcher = restored;
            for op in &after {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&mut f, op)));
                prop_assert!(ran.is_ok(), "panic on {:?} from {}", op, state);
                let valid = f.matcher.validate(&f.nfa);
                prop_assert!(
                    matches!(valid, Ok(()) | Err(InvalidState::CounterTooLarge { .. })),
                    "{:?} after {:?} from {}", valid, op, state
                );
            }
        }
    }
}

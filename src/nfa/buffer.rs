//! The shared buffer of one partition's partial matches.
//!
//! Each event taken by some partial match is stored once, however many partial matches hold
//! it. A partial match is a path of nodes `(variable, event) → previous node`; branches share
//! their common prefix, so the nodes form a tree (a DAG over events). Nodes and events carry
//! reference counts: when the last run through a branch dies (completed, stopped by a
//! negation, pruned by a skip strategy or timed out), its nodes and the events only it held
//! are freed at once.
//!
//! This is the role of Flink's SharedBuffer with Dewey-numbered versioned edges. Here every
//! run points at its own last node and a node has exactly one predecessor, so the version of
//! a path is the node itself: extraction is a walk back with no version matching, and a run
//! yields exactly one path (the invariant Flink checks at extraction).

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::event::Event;
use crate::nfa::validate::{InvalidState, RunRef, Table};

/// "No node": the run has taken no event yet.
pub const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EventSlot {
    event: Option<Event>,
    seq: u64,
    refs: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Node {
    event: u32,
    var: u32,
    prev: u32,
    refs: u32,
}

/// One step of an extracted path: which variable took which event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStep {
    /// Variable index.
    pub var: usize,
    /// Event slot in the buffer.
    pub event: u32,
    /// The event's sequence number in its partition (order of processing).
    pub seq: u64,
}

/// Events and match nodes of one partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedBuffer {
    // Small inline capacities: a partition with a partial match or two keeps its events and
    // nodes next to its other state instead of in separate allocations.
    events: SmallVec<[EventSlot; 2]>,
    nodes: SmallVec<[Node; 4]>,
    /// The first free event slot (`NIL`: none); a free slot's `seq` holds the next one.
    free_event: u32,
    /// The first free node (`NIL`: none); a free node's `prev` holds the next one.
    free_node: u32,
    live_nodes: u32,
    live_events: u32,
}

impl Default for SharedBuffer {
    fn default() -> SharedBuffer {
        SharedBuffer {
            events: SmallVec::new(),
            nodes: SmallVec::new(),
            free_event: NIL,
            free_node: NIL,
            live_nodes: 0,
            live_events: 0,
        }
    }
}

impl SharedBuffer {
    /// An empty buffer.
    pub fn new() -> SharedBuffer {
        SharedBuffer::default()
    }

    /// Calls `f` on every event stored (to move restored events to another schema's slots).
    pub fn for_each_event_mut(&mut self, f: &mut dyn FnMut(&mut Event)) {
        for slot in self.events.iter_mut() {
            if let Some(e) = slot.event.as_mut() {
                f(e);
            }
        }
    }

    /// Number of nodes in use.
    pub fn live_nodes(&self) -> usize {
        self.live_nodes as usize
    }

    /// Number of events stored.
    #[cfg(any(test, feature = "internals"))]
    pub fn live_events(&self) -> usize {
        self.live_events as usize
    }

    /// Reserves a slot for the event being processed; nodes may refer to it before the event
    /// itself is stored by [`SharedBuffer::fill_event`].
    pub fn reserve_event(&mut self, seq: u64) -> u32 {
        let slot = EventSlot {
            event: None,
            seq,
            refs: 0,
        };
        self.live_events += 1;
        match self.events.get_mut(self.free_event as usize) {
            Some(free) => {
                let i = self.free_event;
                self.free_event = free.seq as u32;
                *free = slot;
                i
            }
            None => {
                self.events.push(slot);
                (self.events.len() - 1) as u32
            }
        }
    }

    /// Stores the event in its reserved slot if any node took it, or frees the slot.
    #[inline]
    pub fn fill_event(&mut self, id: u32, event: Event) {
        let slot = &mut self.events[id as usize];
        if slot.refs > 0 {
            slot.event = Some(event);
        } else {
            self.free_event(id);
        }
    }

    fn free_event(&mut self, id: u32) {
        let slot = &mut self.events[id as usize];
        slot.event = None;
        slot.seq = u64::from(self.free_event);
        self.free_event = id;
        self.live_events -= 1;
    }

    /// The stored event in slot `id`.
    pub fn event(&self, id: u32) -> Option<&Event> {
        self.events.get(id as usize).and_then(|s| s.event.as_ref())
    }

    /// Adds a node: `var` took event `event` after the path ending at `prev`. The new node
    /// starts with no holders; [`SharedBuffer::lock`] it for every run that ends there.
    pub fn put(&mut self, var: usize, event: u32, prev: u32) -> u32 {
        self.events[event as usize].refs += 1;
        if prev != NIL {
            self.nodes[prev as usize].refs += 1;
        }
        let node = Node {
            event,
            var: var as u32,
            prev,
            refs: 0,
        };
        self.live_nodes += 1;
        match self.nodes.get_mut(self.free_node as usize) {
            Some(free) => {
                let i = self.free_node;
                self.free_node = free.prev;
                *free = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Records one more holder of `node`.
    #[inline]
    pub fn lock(&mut self, node: u32) {
        if node != NIL {
            self.nodes[node as usize].refs += 1;
        }
    }

    /// Drops one holder of `node`; frees the node, and then its predecessors and events, as
    /// they lose their last holder.
    pub fn release(&mut self, mut node: u32) {
        while node != NIL {
            let n = &mut self.nodes[node as usize];
            n.refs = n.refs.saturating_sub(1);
            if n.refs > 0 {
                return;
            }
            let (event, prev) = (n.event, n.prev);
            n.prev = self.free_node;
            self.free_node = node;
            self.live_nodes -= 1;
            let e = &mut self.events[event as usize];
            e.refs = e.refs.saturating_sub(1);
            // A slot still reserved for the event being processed (event not yet filled) is
            // freed by `fill_event`.
            if e.refs == 0 && e.event.is_some() {
                self.free_event(event);
            }
            node = prev;
        }
    }

    /// The path ending at `node`, oldest first.
    pub fn extract(&self, mut node: u32) -> Vec<PathStep> {
        let mut out = Vec::new();
        while node != NIL {
            let n = &self.nodes[node as usize];
            out.push(PathStep {
                var: n.var as usize,
                event: n.event,
                seq: self.events[n.event as usize].seq,
            });
            node = n.prev;
        }
        out.reverse();
        out
    }

    /// The events `var` took on the path ending at `node`, oldest first.
    pub fn events_of(&self, mut node: u32, var: usize) -> Vec<&Event> {
        let mut out = Vec::new();
        while node != NIL {
            let n = &self.nodes[node as usize];
            if n.var as usize == var {
                if let Some(e) = self.event(n.event) {
                    out.push(e);
                }
            }
            node = n.prev;
        }
        out.reverse();
        out
    }
}

/// What [`SharedBuffer::validate`] checks the buffer against: the matcher around it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Per variable of the pattern: whether some state takes events for it (nodes can only
    /// be of those).
    pub taken_vars: &'a [bool],
    /// The sequence number the matcher gives its next event (every stored one is below it).
    pub next_seq: u64,
    /// Every run of the matcher with the node it ends at (`NIL`: none); each holds one
    /// reference to its node.
    pub holders: &'a [(RunRef, u32)],
    /// Per aggregate of the pattern, the variable it reads (see [`PathFacts::events_of`]).
    pub agg_vars: &'a [usize],
}

/// What a validated buffer tells about the path ending at each node, for checking the runs
/// that end there.
#[derive(Debug, Clone, Default)]
pub struct PathFacts {
    /// Per node: sequence number and time of the first event of its path, time of its own.
    nodes: Vec<NodeFacts>,
    /// Per node and aggregate: the nodes of the aggregate's variable on the path.
    counts: Vec<u32>,
    /// Aggregates per node in `counts`.
    width: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct NodeFacts {
    first_seq: u64,
    first_time: i64,
    time: i64,
}

impl PathFacts {
    /// Sequence number and time of the first event on the path ending at `node`.
    pub fn first_event(&self, node: u32) -> (u64, i64) {
        self.nodes
            .get(node as usize)
            .map_or((0, 0), |f| (f.first_seq, f.first_time))
    }

    /// Time of the event of `node`, the last of its path.
    pub fn last_time(&self, node: u32) -> i64 {
        self.nodes.get(node as usize).map_or(0, |f| f.time)
    }

    /// The events of the variable of aggregate `agg` on the path ending at `node` (0 for
    /// `NIL`).
    pub fn events_of(&self, node: u32, agg: usize) -> u32 {
        if node == NIL || agg >= self.width {
            return 0;
        }
        self.counts
            .get(node as usize * self.width + agg)
            .copied()
            .unwrap_or(0)
    }
}

/// Walks a free list from `head`, each entry's link given by `next`: the entries on it, or
/// why it is not a list of distinct entries of a table of `len`.
fn free_list(
    table: Table,
    head: u32,
    len: usize,
    next: impl Fn(usize) -> u64,
) -> Result<Vec<bool>, InvalidState> {
    let mut free = vec![false; len];
    let mut at = u64::from(head);
    while at != u64::from(NIL) {
        let i = usize::try_from(at).ok().filter(|&i| i < len).ok_or(
            InvalidState::FreeListOutOfRange {
                table,
                entry: at,
                len,
            },
        )?;
        if free[i] {
            return Err(InvalidState::FreeListCycle { table, entry: i });
        }
        free[i] = true;
        at = next(i);
    }
    Ok(free)
}

impl SharedBuffer {
    /// Checks that the buffer is what the matcher's operations can work on without panicking
    /// or looping, and that its counts are the true ones:
    ///
    /// - both tables are addressable by `u32` indices other than `NIL`;
    /// - the free lists are lists (in range, no cycle) of entries that hold nothing (no
    ///   reference count, no event), and the live counters count the entries not on them;
    /// - every node not free points at an event slot not free, is of a variable some state
    ///   takes events for, and follows `NIL` or a node not free; following predecessors
    ///   reaches `NIL` (no cycle), through events of strictly decreasing sequence numbers;
    /// - every run ends at `NIL` or at a node not free;
    /// - the reference count of every node not free is the number of runs ending there plus
    ///   the nodes following it, and is not 0; that of every event slot not free is the
    ///   number of nodes pointing at it, and is not 0;
    /// - every slot not free holds its event, numbered below `next_seq`, no two with the
    ///   same number.
    ///
    /// Returns, per node, what the runs ending there are checked against.
    pub fn validate(&self, expected: &Expected) -> Result<PathFacts, InvalidState> {
        let (n_slots, n_nodes) = (self.events.len(), self.nodes.len());
        for (table, len) in [(Table::EventSlots, n_slots), (Table::Nodes, n_nodes)] {
            if len >= NIL as usize {
                return Err(InvalidState::TooManyEntries { table, len });
            }
        }

        // Free lists and the entries on them.
        let free_slots = free_list(Table::EventSlots, self.free_event, n_slots, |i| {
            self.events[i].seq
        })?;
        let free_nodes = free_list(Table::Nodes, self.free_node, n_nodes, |i| {
            u64::from(self.nodes[i].prev)
        })?;
        for (i, slot) in self.events.iter().enumerate() {
            if free_slots[i] {
                if slot.refs != 0 {
                    return Err(InvalidState::FreeEntryReferenced {
                        table: Table::EventSlots,
                        entry: i,
                        refs: slot.refs,
                    });
                }
                if slot.event.is_some() {
                    return Err(InvalidState::FreeSlotHoldsEvent { slot: i });
                }
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if free_nodes[i] && node.refs != 0 {
                return Err(InvalidState::FreeEntryReferenced {
                    table: Table::Nodes,
                    entry: i,
                    refs: node.refs,
                });
            }
        }
        for (table, counted, free) in [
            (Table::EventSlots, self.live_events, &free_slots),
            (Table::Nodes, self.live_nodes, &free_nodes),
        ] {
            let actual = free.iter().filter(|f| !**f).count();
            if counted as usize != actual {
                return Err(InvalidState::LiveCount {
                    table,
                    counted,
                    actual,
                });
            }
        }

        // Live nodes point at live entries; count who uses what.
        let mut node_uses = vec![0u64; n_nodes];
        let mut slot_uses = vec![0u64; n_slots];
        for (i, node) in self.nodes.iter().enumerate() {
            if free_nodes[i] {
                continue;
            }
            let slot = node.event as usize;
            if slot >= n_slots {
                return Err(InvalidState::NodeEventOutOfRange {
                    node: i,
                    slot: node.event,
                    slots: n_slots,
                });
            }
            if free_slots[slot] {
                return Err(InvalidState::NodeEventFree {
                    node: i,
                    slot: node.event,
                });
            }
            match expected.taken_vars.get(node.var as usize) {
                None => {
                    return Err(InvalidState::NodeVarOutOfRange {
                        node: i,
                        var: node.var,
                        vars: expected.taken_vars.len(),
                    })
                }
                Some(false) => {
                    return Err(InvalidState::NodeVarNotTaken {
                        node: i,
                        var: node.var,
                    })
                }
                Some(true) => {}
            }
            if node.prev != NIL {
                let prev = node.prev as usize;
                if prev >= n_nodes {
                    return Err(InvalidState::NodePrevOutOfRange {
                        node: i,
                        prev: node.prev,
                        nodes: n_nodes,
                    });
                }
                if free_nodes[prev] {
                    return Err(InvalidState::NodePrevFree {
                        node: i,
                        prev: node.prev,
                    });
                }
                node_uses[prev] += 1;
            }
            slot_uses[slot] += 1;
        }
        for &(run, node) in expected.holders {
            if node == NIL {
                continue;
            }
            let i = node as usize;
            if i >= n_nodes {
                return Err(InvalidState::RunNodeOutOfRange {
                    run,
                    node,
                    nodes: n_nodes,
                });
            }
            if free_nodes[i] {
                return Err(InvalidState::RunNodeFree { run, node });
            }
            node_uses[i] += 1;
        }

        // Live event slots hold their events, numbered in the past, each number once.
        let mut seqs = Vec::with_capacity(self.live_events as usize);
        for (i, slot) in self.events.iter().enumerate() {
            if free_slots[i] {
                continue;
            }
            if slot.event.is_none() {
                return Err(InvalidState::SlotWithoutEvent { slot: i });
            }
            if slot.seq >= expected.next_seq {
                return Err(InvalidState::SlotSeqTooLate {
                    slot: i,
                    seq: slot.seq,
                    next_seq: expected.next_seq,
                });
            }
            seqs.push((slot.seq, i));
        }
        seqs.sort_unstable();
        if let Some(w) = seqs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(InvalidState::DuplicateSeq {
                first: w[0].1,
                second: w[1].1,
                seq: w[0].0,
            });
        }

        let facts = self.path_facts(&free_nodes, expected.agg_vars)?;

        // Reference counts are the uses just counted.
        for (i, node) in self.nodes.iter().enumerate() {
            if free_nodes[i] {
                continue;
            }
            match node_uses[i] {
                0 => return Err(InvalidState::NodeUnused { node: i }),
                used if used != u64::from(node.refs) => {
                    return Err(InvalidState::NodeRefs {
                        node: i,
                        refs: node.refs,
                        used,
                    })
                }
                _ => {}
            }
        }
        for (i, slot) in self.events.iter().enumerate() {
            if free_slots[i] {
                continue;
            }
            match slot_uses[i] {
                0 => return Err(InvalidState::SlotUnused { slot: i }),
                used if used != u64::from(slot.refs) => {
                    return Err(InvalidState::SlotRefs {
                        slot: i,
                        refs: slot.refs,
                        used,
                    })
                }
                _ => {}
            }
        }
        Ok(facts)
    }

    /// Follows every live node's predecessors to `NIL`, failing on a cycle or on events out of
    /// order, and gathers what [`PathFacts`] tells. Nodes and events must have been checked to
    /// point at live entries in range.
    fn path_facts(
        &self,
        free_nodes: &[bool],
        agg_vars: &[usize],
    ) -> Result<PathFacts, InvalidState> {
        const UNSEEN: u8 = 0;
        const ON_WALK: u8 = 1;
        const DONE: u8 = 2;
        let n_nodes = self.nodes.len();
        let width = agg_vars.len();
        let mut facts = PathFacts {
            nodes: vec![NodeFacts::default(); n_nodes],
            counts: vec![0; n_nodes * width],
            width,
        };
        let mut mark = vec![UNSEEN; n_nodes];
        let mut walk: Vec<usize> = Vec::new();
        let slot_of = |i: usize| &self.events[self.nodes[i].event as usize];
        for start in 0..n_nodes {
            if free_nodes[start] || mark[start] != UNSEEN {
                continue;
            }
            // Up to NIL or to a node already done, then back down, each node from its
            // predecessor.
            let mut at = start as u32;
            while at != NIL && mark[at as usize] != DONE {
                let i = at as usize;
                if mark[i] == ON_WALK {
                    return Err(InvalidState::PathCycle { node: i });
                }
                mark[i] = ON_WALK;
                walk.push(i);
                at = self.nodes[i].prev;
            }
            while let Some(i) = walk.pop() {
                let node = &self.nodes[i];
                let slot = slot_of(i);
                let time = slot.event.as_ref().map_or(0, |e| e.time);
                let (first_seq, first_time) = if node.prev == NIL {
                    (slot.seq, time)
                } else {
                    let p = node.prev as usize;
                    let prev_seq = slot_of(p).seq;
                    if slot.seq <= prev_seq {
                        return Err(InvalidState::PathOrder {
                            node: i,
                            seq: slot.seq,
                            prev_seq,
                        });
                    }
                    (facts.nodes[p].first_seq, facts.nodes[p].first_time)
                };
                facts.nodes[i] = NodeFacts {
                    first_seq,
                    first_time,
                    time,
                };
                for (k, &var) in agg_vars.iter().enumerate() {
                    let before = match node.prev {
                        NIL => 0,
                        p => facts.counts[p as usize * width + k],
                    };
                    facts.counts[i * width + k] = before + u32::from(node.var as usize == var);
                }
                mark[i] = DONE;
            }
        }
        Ok(facts)
    }
}

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

    /// Number of nodes in use.
    pub fn live_nodes(&self) -> usize {
        self.live_nodes as usize
    }

    /// Number of events stored.
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

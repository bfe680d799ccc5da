//! A pattern shard's index of partitions: per key an [`Entry`] (hash, slot and the
//! partition's [`Head`], one cache line), and the slots that hold the partitions.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::bytes::short_str_eq;
use crate::event::Event;
use crate::key::KeyBytes;
use crate::nfa::Matcher;

/// One key's state: its matcher (the slot's [`Head`] holds the rest).
#[derive(Debug, Clone)]
pub(super) struct Partition {
    pub(super) key: KeyBytes,
    /// [`key_hash`] of `key`.
    pub(super) hash: u64,
    /// `None` while the partition is idle: its matcher went back to the pool, so that only
    /// the matchers of partitions with state take memory and cache (the pool hands out the
    /// most recently returned one first).
    pub(super) matcher: Option<Box<Matcher>>,
    /// The key as matches show it, made when the first output needs it.
    pub(super) key_json: Option<Arc<str>>,
}

/// What an event that changes nothing reads of its partition, in the partition's index
/// [`Entry`] (one cache line with the hash and slot): the key (a short one, compared there), whether the partition is idle, its timer,
/// the events waiting for the watermark and the states its runs are in. The rest of the
/// partition is loaded only when the event is fed. With many keys, most events stop here.
#[derive(Debug, Clone)]
#[repr(C)]
pub(super) struct Head {
    /// Earliest time a timer is registered for (`i64::MAX`: none).
    pub(super) timer_at: i64,
    /// The matcher's [`Matcher::waiting_states`] after its last feed.
    pub(super) waiting_states: u64,
    pub(super) pending: Pending,
    /// `key`, when it is short.
    pub(super) inline_key: InlineKey,
    /// Nothing pending (see [`PatternShard::settle`]): kept for a while in case the key
    /// comes back, then swept. Snapshots leave idle partitions out.
    pub(super) idle: bool,
}

impl Head {
    pub(super) fn new(key: &[u8], waiting_states: u64) -> Head {
        Head {
            timer_at: i64::MAX,
            waiting_states,
            pending: Pending::default(),
            inline_key: InlineKey::of(key),
            idle: false,
        }
    }
}

/// Events of one key waiting for the watermark, by (time, arrival). In-order input never
/// buffers, so the queue is allocated only while something waits (one word otherwise).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
// The box is the point: one word in the partition instead of a `VecDeque`'s four.
#[allow(clippy::box_collection)]
pub(super) struct Pending(pub(super) Option<Box<VecDeque<(i64, u64, Event)>>>);

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    /// The time of the first waiting event.
    pub(super) fn first_time(&self) -> Option<i64> {
        self.0.as_ref()?.front().map(|(t, _, _)| *t)
    }

    /// Adds an event in (time, arrival) order; in-order input appends. An empty queue is
    /// taken from `spare` when it has one.
    pub(super) fn insert(
        &mut self,
        time: i64,
        arrival: u64,
        event: Event,
        spare: &mut SpareQueues,
    ) {
        let q = self
            .0
            .get_or_insert_with(|| spare.queues.pop().unwrap_or_default());
        let at = match q.back() {
            Some(&(t, _, _)) if t > time => q.partition_point(|(t, _, _)| *t <= time),
            _ => q.len(),
        };
        q.insert(at, (time, arrival, event));
    }

    /// Takes the first waiting event if its time is `t`; once empty, the queue goes to
    /// `spare`.
    pub(super) fn pop_at(&mut self, t: i64, spare: &mut SpareQueues) -> Option<Event> {
        let q = self.0.as_mut()?;
        let ev = q.pop_front_if(|(et, _, _)| *et == t).map(|(_, _, ev)| ev);
        if q.is_empty() {
            if let Some(q) = self.0.take() {
                spare.put(q);
            }
        }
        ev
    }
}

/// A waiting-event queue.
type Queue = VecDeque<(i64, u64, Event)>;

/// Emptied waiting-event queues kept for the next key that buffers, so that a key whose
/// events wait for the watermark now and then (every key, when several source partitions
/// take turns) does not allocate and free a queue each time.
#[derive(Debug, Default)]
pub(super) struct SpareQueues {
    // The box is the point: a queue moves between a partition and here as one pointer.
    #[allow(clippy::box_collection, clippy::vec_box)]
    queues: Vec<Box<Queue>>,
}

impl SpareQueues {
    /// Queues kept at most.
    const MOST: usize = 1024;
    /// A queue that grew beyond this many events is freed, not kept.
    const LARGEST: usize = 64;

    fn put(&mut self, q: Box<Queue>) {
        if self.queues.len() < Self::MOST && q.capacity() <= Self::LARGEST {
            self.queues.push(q);
        }
    }
}

/// Length of the longest key kept inline in a partition.
pub(super) const INLINE_KEY: usize = 16;

/// A short key's bytes, kept where the partition's lookup reads anyway.
#[derive(Debug, Clone, Copy)]
pub(super) struct InlineKey {
    /// Length, or `u8::MAX` when the key is longer than [`INLINE_KEY`].
    pub(super) len: u8,
    pub(super) bytes: [u8; INLINE_KEY],
}

impl Default for InlineKey {
    fn default() -> Self {
        InlineKey {
            len: u8::MAX,
            bytes: [0; INLINE_KEY],
        }
    }
}

impl InlineKey {
    pub(super) fn of(b: &[u8]) -> InlineKey {
        let mut k = InlineKey::default();
        if b.len() <= INLINE_KEY {
            k.len = b.len() as u8;
            k.bytes[..b.len()].copy_from_slice(b);
        }
        k
    }
}

/// A partition's entry in the shard's index: its key hash, its slot and its head, one cache
/// line, so that finding a key and deciding an event that changes nothing read one line.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub(super) struct Entry {
    pub(super) hash: u64,
    pub(super) slot: u32,
    pub(super) head: Head,
}

impl Entry {
    /// Whether this is the partition of `key` (a short key is compared in the head).
    #[inline]
    pub(super) fn has_key(&self, slots: &[Slot], b: &[u8]) -> bool {
        let inline = &self.head.inline_key;
        if inline.len != u8::MAX {
            let n = usize::from(inline.len);
            return n == b.len() && short_str_eq(&inline.bytes[..n], b);
        }
        slots
            .get(self.slot as usize)
            .and_then(|s| s.partition.as_ref())
            .is_some_and(|p| same_bytes(&p.key, b))
    }
}

/// A partition found by its key: [`PatternShard::find`].
pub(super) struct Found {
    pub(super) slot: u32,
    pub(super) idle: bool,
    /// Events before this time find nothing due and nothing waiting (`i64::MIN`: events are
    /// waiting).
    pub(super) quiet_before: i64,
    pub(super) waiting_states: u64,
}

/// The head of the partition in `slot` (whose key hash is `hash`).
#[inline]
pub(super) fn head_mut(index: &mut HashTable<Entry>, hash: u64, slot: u32) -> Option<&mut Head> {
    index
        .find_mut(hash, |e| e.slot == slot)
        .map(|e| &mut e.head)
}

/// Slot index and generation of a partition, for timers that may outlive it.
pub(super) type Handle = (u32, u32);

/// A partition's place (its head is in its [`Entry`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) partition: Option<Partition>,
}

/// Whether two keys are equal: the same bytes (long keys are often the same shared string).
#[inline]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || short_str_eq(a, b)
}

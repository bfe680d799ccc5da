//! The shard's timers: when each partition with buffered events or a deadline is next due.
//!
//! Events arrive nearly in time order, so nearly every timer is set later than the one set
//! before it: those go to the back of a queue (push and pop O(1), in memory order), the few
//! set earlier to a heap beside it. Timers come off in the order of `(time, handle)` either
//! way, exactly as from one heap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A timer: due time and what it is for.
type Timer<H> = (i64, H);

/// Timers in `(time, handle)` order (see the module's documentation).
#[derive(Debug, Clone)]
pub(crate) struct Timers<H: Ord + Copy> {
    /// Each not before the one before it.
    in_order: VecDeque<Timer<H>>,
    /// Those set before the queue's last when they were set.
    out_of_order: BinaryHeap<Reverse<Timer<H>>>,
}

impl<H: Ord + Copy> Default for Timers<H> {
    fn default() -> Self {
        Timers {
            in_order: VecDeque::new(),
            out_of_order: BinaryHeap::new(),
        }
    }
}

impl<H: Ord + Copy> Timers<H> {
    pub(crate) fn push(&mut self, time: i64, handle: H) {
        let timer = (time, handle);
        match self.in_order.back() {
            Some(last) if timer < *last => self.out_of_order.push(Reverse(timer)),
            _ => self.in_order.push_back(timer),
        }
    }

    /// The first timer due.
    #[inline]
    pub(crate) fn peek(&self) -> Option<Timer<H>> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (Some(a), None) => Some(*a),
            (None, Some(Reverse(b))) => Some(*b),
            (None, None) => None,
        }
    }

    /// Takes the first timer due.
    pub(crate) fn pop(&mut self) -> Option<Timer<H>> {
        let from_queue = match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => a <= b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_queue {
            self.in_order.pop_front()
        } else {
            self.out_of_order.pop().map(|Reverse(t)| t)
        }
    }

    pub(crate) fn clear(&mut self) {
        self.in_order.clear();
        self.out_of_order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the order timers are set in, and however pops interleave with pushes,
        /// they come off as from one heap.
        #[test]
        fn timers_come_off_as_from_one_heap(
            ops in proptest::collection::vec((any::<bool>(), 0i64..50, 0u32..4), 0..300)
        ) {
            let mut timers = Timers::default();
            let mut heap = BinaryHeap::new();
            for (pop, time, handle) in ops {
                if pop {
                    prop_assert_eq!(timers.peek(), heap.peek().map(|Reverse(t)| *t));
                    prop_assert_eq!(timers.pop(), heap.pop().map(|Reverse(t)| t));
                } else {
                    timers.push(time, handle);
                    heap.push(Reverse((time, handle)));
                }
            }
            while let Some(Reverse(t)) = heap.pop() {
                prop_assert_eq!(timers.pop(), Some(t));
            }
            prop_assert_eq!(timers.pop(), None);
        }
    }
}

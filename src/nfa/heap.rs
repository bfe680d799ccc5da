//! `java.util.PriorityQueue`'s binary heap, operation for operation.
//!
//! Flink keeps an NFA's partial matches and completed matches in `PriorityQueue`s ordered by
//! their start event (time, then id), and which of several matches with the same start event
//! comes out first — the one an after-match skip strategy keeps — is decided by where each
//! sits in the heap's array. To give the same matches, the matcher keeps its runs in arrays
//! that these functions arrange exactly as Java's `offer`, `poll`, `removeAll` (a bulk remove,
//! then `heapify`) and iteration (array order) would.
//!
//! Ordering is by a `u64` key (a run's start sequence number, which orders start events as
//! Flink's (timestamp, id) does); equal keys are never swapped, as in Java, where sifting
//! stops at the first element not greater than the one moved.

/// `offer`: appends `x` and sifts it up past every parent with a greater key.
#[inline]
pub(crate) fn push<T>(heap: &mut Vec<T>, x: T, key: impl Fn(&T) -> u64) {
    heap.push(x);
    let k = heap.len() - 1;
    sift_up(heap, k, key);
}

/// Sifts the element at `k` up past every parent with a greater key: [`push`] of an element
/// already appended. Appending several and then sifting each up in order leaves the array
/// [`push`]ing them one by one would (an element's sift never reaches past its own index).
#[inline]
pub(crate) fn sift_up<T>(heap: &mut [T], mut k: usize, key: impl Fn(&T) -> u64) {
    let kx = key(&heap[k]);
    while k > 0 {
        let parent = (k - 1) / 2;
        if kx >= key(&heap[parent]) {
            break;
        }
        heap.swap(k, parent);
        k = parent;
    }
}

/// `poll`: takes the head; the last element moves to the head and sifts down.
pub(crate) fn poll<T>(heap: &mut Vec<T>, key: impl Fn(&T) -> u64) -> Option<T> {
    if heap.is_empty() {
        return None;
    }
    let head = heap.swap_remove(0);
    sift_down(heap, 0, &key);
    Some(head)
}

/// `removeAll` / `removeIf` (Java's `bulkRemove`): the elements `remove` picks go, the others
/// keep their order, and the array is heapified again if anything went. `remove` sees every
/// element once, in array order. Whether anything was removed.
pub(crate) fn remove_where<T>(
    heap: &mut Vec<T>,
    mut remove: impl FnMut(&T) -> bool,
    key: impl Fn(&T) -> u64,
) -> bool {
    let before = heap.len();
    heap.retain(|x| !remove(x));
    if heap.len() == before {
        return false;
    }
    heapify(heap, &key);
    true
}

/// `heapify`: sifts down every parent, the last first.
pub(crate) fn heapify<T>(heap: &mut [T], key: &impl Fn(&T) -> u64) {
    for i in (0..heap.len() / 2).rev() {
        sift_down(heap, i, key);
    }
}

/// Java's `siftDown`: the element at `k` swaps with its smaller child (the left one of two
/// equal children) while that child's key is smaller than its own.
fn sift_down<T>(heap: &mut [T], mut k: usize, key: &impl Fn(&T) -> u64) {
    let n = heap.len();
    if k >= n {
        return;
    }
    let kx = key(&heap[k]);
    let half = n / 2;
    while k < half {
        let mut child = 2 * k + 1;
        let right = child + 1;
        let mut kc = key(&heap[child]);
        if right < n {
            let kr = key(&heap[right]);
            if kc > kr {
                child = right;
                kc = kr;
            }
        }
        if kx <= kc {
            break;
        }
        heap.swap(k, child);
        k = child;
    }
}

/// Whether `heap` is a heap (no element's key below its parent's).
pub(crate) fn is_heap<T>(heap: &[T], key: impl Fn(&T) -> u64) -> bool {
    (1..heap.len()).all(|i| key(&heap[(i - 1) / 2]) <= key(&heap[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Elements are (key, tag): the tag tells equal keys apart.
    type E = (u64, u32);
    fn key(e: &E) -> u64 {
        e.0
    }

    /// Java 17's `PriorityQueue`, as its source reads, for the operations used here, written
    /// with its hole-moving loops (not swaps) so the two codes are independent.
    #[derive(Default)]
    struct Java {
        es: Vec<E>,
    }

    impl Java {
        fn offer(&mut self, x: E) {
            self.es.push(x);
            let mut k = self.es.len() - 1;
            while k > 0 {
                let parent = (k - 1) >> 1;
                let e = self.es[parent];
                if x.0 >= e.0 {
                    break;
                }
                self.es[k] = e;
                k = parent;
            }
            self.es[k] = x;
        }

        fn sift_down(&mut self, mut k: usize, x: E, n: usize) {
            let half = n >> 1;
            while k < half {
                let mut child = (k << 1) + 1;
                let mut c = self.es[child];
                let right = child + 1;
                if right < n && c.0 > self.es[right].0 {
                    child = right;
                    c = self.es[child];
                }
                if x.0 <= c.0 {
                    break;
                }
                self.es[k] = c;
                k = child;
            }
            self.es[k] = x;
        }

        fn poll(&mut self) -> Option<E> {
            if self.es.is_empty() {
                return None;
            }
            let result = self.es[0];
            let x = self.es.pop().expect("not empty");
            let n = self.es.len();
            if n > 0 {
                self.sift_down(0, x, n);
            }
            Some(result)
        }

        fn remove_all(&mut self, dead: &[E]) {
            let end = self.es.len();
            let Some(beg) = (0..end).find(|&i| dead.contains(&self.es[i])) else {
                return;
            };
            let mut w = beg;
            for i in beg..end {
                if !dead.contains(&self.es[i]) {
                    self.es[w] = self.es[i];
                    w += 1;
                }
            }
            self.es.truncate(w);
            let n = self.es.len();
            for i in (0..(n >> 1)).rev() {
                let x = self.es[i];
                self.sift_down(i, x, n);
            }
        }
    }

    proptest::proptest! {
        /// Any sequence of offers, polls and bulk removes leaves the same array as Java's.
        #[test]
        fn the_same_array_as_javas(ops in proptest::collection::vec((0u8..4, 0u64..6), 0..200)) {
            let mut ours: Vec<E> = Vec::new();
            let mut java = Java::default();
            for (tag, (op, k)) in ops.into_iter().enumerate() {
                match op {
                    0 => {
                        push(&mut ours, (k, tag as u32), key);
                        java.offer((k, tag as u32));
                    }
                    1 => {
                        // Appended, then sifted up later (as the matcher adds a run's
                        // successors): the same as offering each.
                        ours.push((k, tag as u32));
                        ours.push((k / 2, tag as u32 + 1000));
                        let n = ours.len();
                        sift_up(&mut ours, n - 2, key);
                        sift_up(&mut ours, n - 1, key);
                        java.offer((k, tag as u32));
                        java.offer((k / 2, tag as u32 + 1000));
                    }
                    2 => proptest::prop_assert_eq!(poll(&mut ours, key), java.poll()),
                    _ => {
                        let dead: Vec<E> = java.es.iter().copied().filter(|e| e.0 == k).collect();
                        remove_where(&mut ours, |e| e.0 == k, key);
                        java.remove_all(&dead);
                    }
                }
                proptest::prop_assert_eq!(&ours, &java.es);
                proptest::prop_assert!(is_heap(&ours, key));
            }
        }
    }

    #[test]
    fn equal_keys_come_out_in_heap_order_not_insertion_order() {
        let mut h: Vec<E> = Vec::new();
        for (i, k) in [1u64, 1, 1, 0].into_iter().enumerate() {
            push(&mut h, (k, i as u32), key);
        }
        // (0, 3) rose to the head, moving (1, 1) and (1, 0) down a level each.
        assert_eq!(h, vec![(0, 3), (1, 0), (1, 2), (1, 1)]);
        // Each poll moves the last element to the head, where it stays among equals.
        let order: Vec<u32> = std::iter::from_fn(|| poll(&mut h, key)).map(|e| e.1).collect();
        assert_eq!(order, vec![3, 1, 2, 0]);
    }
}

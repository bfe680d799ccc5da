//! A shard's state as data: what a snapshot holds of each pattern's partitions, borrowed
//! views that serialise the same without copying, validation of a saved state, and the
//! split and merge that re-shard it for another number of shards or workers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::index::{Entry, Head, Partition, Pending, Slot};
use super::{PatternShard, Shard};
use crate::event::Event;
use crate::key::{self, key_hash, shard_of, KeyBytes};
use crate::nfa::{Matcher, Nfa};

/// A partition as a snapshot holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SavedPartition {
    pub(super) key: KeyBytes,
    pub(super) pending: Pending,
    pub(super) matcher: Matcher,
}

/// A partition borrowed where it lives: serialises exactly as its [`SavedPartition`].
#[derive(Serialize)]
pub(super) struct PartitionRef<'a> {
    pub(super) key: &'a KeyBytes,
    pub(super) pending: &'a Pending,
    pub(super) matcher: &'a Matcher,
}

/// One pattern's partitions over several shards, borrowed where they live: serialises
/// exactly as the [`PatternShardState`] that [`PatternShardState::merge`] makes of the
/// shards' snapshots, without copying any of it (a checkpoint of a single-threaded engine).
#[derive(Serialize)]
pub struct PatternShardsView<'a> {
    pub(super) watermark: i64,
    pub(super) dropped_runs: u64,
    pub(super) partitions: Vec<PartitionRef<'a>>,
}

impl<'a> PatternShardsView<'a> {
    /// Pattern `pattern`'s partitions in all of `shards`.
    pub fn of(shards: &'a [Shard], pattern: usize) -> PatternShardsView<'a> {
        let mut view = PatternShardsView {
            watermark: i64::MIN,
            dropped_runs: 0,
            partitions: Vec::new(),
        };
        for p in shards.iter().filter_map(|s| s.patterns.get(pattern)) {
            view.watermark = view.watermark.max(p.watermark);
            view.dropped_runs += p.dropped_runs;
            view.partitions.extend(p.saved_partitions());
        }
        view
    }
}

/// The serialisable state of one pattern in one shard, or (merged) in all of them: its
/// watermark and every partition with state. Idle partitions are left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PatternShardState {
    pub(super) watermark: i64,
    pub(super) dropped_runs: u64,
    pub(super) partitions: Vec<SavedPartition>,
}

/// Why a saved pattern state cannot be used with a pattern (a damaged or crafted
/// checkpoint: one written by motif for the same pattern always passes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A partition's key does not decode for the pattern's key fields.
    #[error("partition {index}: {source}")]
    Key {
        /// The partition's index in the state.
        index: usize,
        /// Why.
        source: crate::key::KeyError,
    },
    /// Two partitions have the same key.
    #[error("partitions {first} and {second} have the same key")]
    DuplicateKey {
        /// The first.
        first: usize,
        /// The second.
        second: usize,
    },
    /// A partition's matcher does not fit the pattern.
    #[error("partition {index}: {reason}")]
    Matcher {
        /// The partition's index in the state.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A partition's waiting events are not in (time, arrival) order.
    #[error("partition {index}: waiting events out of order")]
    Pending {
        /// The partition's index in the state.
        index: usize,
    },
}

impl PatternShardState {
    /// One state holding the partitions of all of `parts` (the shards of one pattern, which
    /// all have the same watermark).
    pub fn merge(parts: Vec<PatternShardState>) -> PatternShardState {
        let mut all = PatternShardState {
            watermark: i64::MIN,
            ..PatternShardState::default()
        };
        for p in parts {
            all.watermark = all.watermark.max(p.watermark);
            all.dropped_runs += p.dropped_runs;
            all.partitions.extend(p.partitions);
        }
        all
    }

    /// The state split over `shards` shards by key hash (as [`shard_of`] routes events);
    /// the count of dropped partial matches goes to the first.
    pub fn split(self, shards: usize) -> Vec<PatternShardState> {
        let shards = shards.max(1);
        let mut parts: Vec<PatternShardState> = (0..shards)
            .map(|_| PatternShardState {
                watermark: self.watermark,
                ..PatternShardState::default()
            })
            .collect();
        parts[0].dropped_runs = self.dropped_runs;
        for saved in self.partitions {
            let i = shard_of(key_hash(&saved.key), shards);
            parts[i].partitions.push(saved);
        }
        parts
    }

    /// Partitions (keys) with state.
    pub fn keys(&self) -> usize {
        self.partitions.len()
    }

    /// Open partial matches over all partitions.
    pub fn partial_matches(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.matcher.partial_matches())
            .sum()
    }

    /// Events buffered for the watermark over all partitions.
    pub fn waiting_events(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.pending.0.as_ref().map_or(0, |q| q.len()))
            .sum()
    }

    /// Calls `f` on every event the state holds (to move their fields to another schema's
    /// slots).
    pub fn for_each_event_mut(&mut self, f: &mut dyn FnMut(&mut Event)) {
        for p in &mut self.partitions {
            if let Some(q) = p.pending.0.as_mut() {
                for (_, _, e) in q.iter_mut() {
                    f(e);
                }
            }
            p.matcher.for_each_event_mut(f);
        }
    }

    /// Checks that the state can be run by `nfa` with `key_fields` key fields: keys decode
    /// and are unique, matchers fit the NFA, waiting events are in order.
    pub fn validate(&self, nfa: &Nfa, key_fields: usize) -> Result<(), StateError> {
        let mut seen: hashbrown::HashMap<&[u8], usize> = hashbrown::HashMap::new();
        for (index, p) in self.partitions.iter().enumerate() {
            if key_fields > 0 {
                key::decode(key_fields, &p.key)
                    .map_err(|source| StateError::Key { index, source })?;
            }
            if let Some(first) = seen.insert(&p.key, index) {
                return Err(StateError::DuplicateKey {
                    first,
                    second: index,
                });
            }
            p.matcher.validate(nfa).map_err(|e| StateError::Matcher {
                index,
                reason: e.to_string(),
            })?;
            if let Some(q) = p.pending.0.as_ref() {
                let ordered = q
                    .iter()
                    .zip(q.iter().skip(1))
                    .all(|(a, b)| (a.0, a.1) <= (b.0, b.1));
                if !ordered {
                    return Err(StateError::Pending { index });
                }
            }
        }
        Ok(())
    }
}

impl PatternShard {
    /// The partitions with state (idle ones are left out), borrowed.
    pub(super) fn saved_partitions(&self) -> impl Iterator<Item = PartitionRef<'_>> {
        self.slots.iter().enumerate().filter_map(|(slot, s)| {
            let part = s.partition.as_ref()?;
            let entry = self.index.find(part.hash, |e| e.slot as usize == slot)?;
            if entry.head.idle {
                return None;
            }
            Some(PartitionRef {
                key: &part.key,
                pending: &entry.head.pending,
                matcher: part.matcher.as_deref()?,
            })
        })
    }

    pub(super) fn snapshot(&self) -> PatternShardState {
        PatternShardState {
            watermark: self.watermark,
            dropped_runs: self.dropped_runs,
            partitions: self
                .saved_partitions()
                .map(|p| SavedPartition {
                    key: Arc::clone(p.key),
                    pending: p.pending.clone(),
                    matcher: p.matcher.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn restore(&mut self, state: PatternShardState) {
        self.index.clear();
        self.slots.clear();
        self.free_slots.clear();
        self.timers.clear();
        self.live = 0;
        self.idle = 0;
        self.open_runs = 0;
        self.watermark = state.watermark;
        self.dropped_runs = state.dropped_runs;
        for saved in state.partitions {
            let slot = self.slots.len() as u32;
            let hash = key_hash(&saved.key);
            let mut matcher = Box::new(saved.matcher);
            if let Some(cap) = self.max_runs {
                matcher.set_max_runs(cap);
            }
            self.open_runs += matcher.partial_matches();
            let mut head = Head::new(&saved.key, matcher.waiting_states());
            head.pending = saved.pending;
            self.index
                .insert_unique(hash, Entry { hash, slot, head }, |e| e.hash);
            self.slots.push(Slot {
                generation: 0,
                partition: Some(Partition {
                    key: saved.key,
                    hash,
                    matcher: Some(matcher),
                    key_json: None,
                }),
            });
            self.live += 1;
            self.schedule(slot);
        }
    }
}

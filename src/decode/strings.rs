//! The decoder's cache of short strings, so that values that repeat share one allocation.

use std::sync::Arc;

use crate::bytes::{short_str_eq, word4, word8};

/// A small direct-mapped cache of short strings seen in events (keys, types, names), so
/// that a value that repeats shares one allocation instead of allocating per event.
#[derive(Debug, Clone)]
pub struct StrCache {
    slots: Vec<Option<Arc<str>>>,
}

const STR_CACHE_SLOTS: usize = 4096;
const STR_CACHE_MAX_LEN: usize = 48;

impl StrCache {
    /// An empty cache.
    pub fn new() -> StrCache {
        StrCache {
            slots: vec![None; STR_CACHE_SLOTS],
        }
    }

    /// A cache that caches nothing.
    pub fn disabled() -> StrCache {
        StrCache { slots: Vec::new() }
    }
}

/// Whether two shared strings are equal: the same allocation (interned), or the same bytes.
#[inline]
pub fn shared_str_eq(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || short_str_eq(a.as_bytes(), b.as_bytes())
}

impl StrCache {
    /// The shared copy of `s`.
    #[inline]
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if self.slots.is_empty() || s.len() > STR_CACHE_MAX_LEN {
            return Arc::from(s);
        }
        let slot = &mut self.slots[str_hash(s.as_bytes()) & (STR_CACHE_SLOTS - 1)];
        match slot {
            Some(a) if short_str_eq(a.as_bytes(), s.as_bytes()) => Arc::clone(a),
            _ => {
                let a: Arc<str> = Arc::from(s);
                *slot = Some(Arc::clone(&a));
                a
            }
        }
    }
}

/// A hash of a short string read a word at a time (overlapping reads at the ends), its top
/// bits well mixed.
#[inline]
fn str_hash(s: &[u8]) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = s.len();
    let mut h = (n as u64).wrapping_mul(K);
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            h = (h ^ word8(s, i)).wrapping_mul(K).rotate_left(31);
            i += 8;
        }
        h ^= word8(s, n - 8);
    } else if n >= 4 {
        h ^= (word4(s, 0) << 32) | word4(s, n - 4);
    } else if n > 0 {
        h ^= (u64::from(s[0]) << 16) | (u64::from(s[n / 2]) << 8) | u64::from(s[n - 1]);
    }
    (h.wrapping_mul(K) >> 40) as usize
}

impl Default for StrCache {
    fn default() -> Self {
        StrCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_cache_returns_equal_strings_and_shares_repeats() {
        let mut cache = StrCache::new();
        let mut seen = Vec::new();
        for len in 0..60 {
            let base: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            for at in 0..len.max(1) {
                let mut v = base.clone().into_bytes();
                if let Some(b) = v.get_mut(at) {
                    *b = b'Z';
                }
                let s = String::from_utf8(v).unwrap();
                for t in [&base, &s] {
                    let got = cache.get(t);
                    assert_eq!(&*got, t.as_str());
                    seen.push(got);
                }
            }
        }
        let a = cache.get("k0042");
        let b = cache.get("k0042");
        assert!(Arc::ptr_eq(&a, &b));
        let long = "x".repeat(STR_CACHE_MAX_LEN + 1);
        assert_eq!(&*cache.get(&long), long.as_str());
        assert_eq!(&*StrCache::disabled().get("k"), "k");
    }
}

//! Partition keys: the tuple of an event's key fields with their types, as Flink keys a
//! stream by typed value.
//!
//! A key is kept as bytes that no two different tuples share:
//!
//! - one key field holding a string: the string's UTF-8 bytes themselves (the common case:
//!   no copy, the event's own string is the key);
//! - anything else (a number, a boolean, or several fields): the byte `0xFF`, which never
//!   occurs in UTF-8, then each field as a type tag and its value, strings length-prefixed.
//!
//! A record whose key field is missing or null has no key: the runtime rejects it (as
//! Flink's key selector fails on null); `null` is still encodable here, for callers that
//! key by the value as it is.
//!
//! So `1` and `"1"` are different keys, `null` and `"null"` are, and `("a\u{1f}b", "c")` and
//! `("a", "b\u{1f}c")` are. [`to_json`] turns a key back into the JSON value matches show:
//! the value itself for one field, an array for several, with the original types.

use std::sync::Arc;

use crate::bytes::padded_word;
use crate::value::Value;

/// The first byte of every key that is not a single string field (never in UTF-8 text).
const TYPED: u8 = 0xFF;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STR: u8 = 5;

/// A partition key as the shards keep it (see the module documentation).
pub type KeyBytes = Arc<[u8]>;

/// Why key bytes could not be read back (only bytes not made by [`encode`], such as a
/// damaged snapshot, fail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes end inside a field.
    #[error("partition key is cut short in field {field}")]
    Truncated {
        /// The field's index.
        field: usize,
    },
    /// A field's type tag is unknown.
    #[error("partition key field {field} has an unknown type tag {tag}")]
    BadTag {
        /// The field's index.
        field: usize,
        /// The tag.
        tag: u8,
    },
    /// A string in the key is not UTF-8.
    #[error("partition key field {field} is not UTF-8 text")]
    NotText {
        /// The field's index.
        field: usize,
    },
    /// More or fewer fields than the pattern's key has.
    #[error("partition key has {found} fields, the pattern's key {expected}")]
    FieldCount {
        /// Fields in the pattern's key.
        expected: usize,
        /// Fields in the bytes.
        found: usize,
    },
}

/// The key of an event whose key fields are `key_slots` of `fields` (a missing slot is
/// `null`). A single string field is its own bytes, shared with the event; callers that
/// have that case at hand use the string directly and never come here for it.
pub fn encode(key_slots: &[usize], fields: &[Value]) -> KeyBytes {
    let get = |s: usize| fields.get(s).unwrap_or(&Value::Null);
    if let [one] = key_slots {
        if let Value::Str(s) = get(*one) {
            return KeyBytes::from(Arc::clone(s));
        }
    }
    let mut b = Vec::with_capacity(1 + 9 * key_slots.len());
    b.push(TYPED);
    for s in key_slots {
        push_field(&mut b, get(*s));
    }
    KeyBytes::from(b)
}

fn push_field(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => b.push(TAG_NULL),
        Value::Bool(false) => b.push(TAG_FALSE),
        Value::Bool(true) => b.push(TAG_TRUE),
        Value::Int(i) => {
            b.push(TAG_INT);
            b.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(x) => {
            b.push(TAG_FLOAT);
            // One NaN (as Java's Double.equals): every NaN is the same key.
            let bits = if x.is_nan() {
                f64::NAN.to_bits()
            } else {
                x.to_bits()
            };
            b.extend_from_slice(&bits.to_le_bytes());
        }
        Value::Str(s) => {
            b.push(TAG_STR);
            // A string longer than 4 GiB cannot be a field of one record (records are
            // bounded far below that); the length saturates rather than wraps.
            let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
    }
}

/// The key's field values, for a pattern whose key has `key_fields` fields.
pub fn decode(key_fields: usize, bytes: &[u8]) -> Result<Vec<Value>, KeyError> {
    if key_fields == 0 {
        return Ok(Vec::new());
    }
    match bytes.split_first() {
        Some((&TYPED, mut rest)) => {
            let mut values = Vec::with_capacity(key_fields);
            while !rest.is_empty() {
                let field = values.len();
                let (v, tail) = read_field(field, rest)?;
                values.push(v);
                rest = tail;
            }
            if values.len() != key_fields {
                return Err(KeyError::FieldCount {
                    expected: key_fields,
                    found: values.len(),
                });
            }
            Ok(values)
        }
        _ if key_fields == 1 => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(vec![Value::Str(Arc::from(s))]),
            Err(_) => Err(KeyError::NotText { field: 0 }),
        },
        _ => Err(KeyError::FieldCount {
            expected: key_fields,
            found: 1,
        }),
    }
}

fn read_field(field: usize, b: &[u8]) -> Result<(Value, &[u8]), KeyError> {
    let cut = KeyError::Truncated { field };
    let (&tag, rest) = b.split_first().ok_or(cut.clone())?;
    let word = |rest: &[u8]| -> Result<(u64, usize), KeyError> {
        let w: [u8; 8] = rest
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .ok_or(cut.clone())?;
        Ok((u64::from_le_bytes(w), 8))
    };
    match tag {
        TAG_NULL => Ok((Value::Null, rest)),
        TAG_FALSE => Ok((Value::Bool(false), rest)),
        TAG_TRUE => Ok((Value::Bool(true), rest)),
        TAG_INT => {
            let (w, n) = word(rest)?;
            Ok((Value::Int(w as i64), &rest[n..]))
        }
        TAG_FLOAT => {
            let (w, n) = word(rest)?;
            Ok((Value::Float(f64::from_bits(w)), &rest[n..]))
        }
        TAG_STR => {
            let len: [u8; 4] = rest
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(cut.clone())?;
            let len = u32::from_le_bytes(len) as usize;
            let text = rest.get(4..4 + len).ok_or(cut)?;
            let s = std::str::from_utf8(text).map_err(|_| KeyError::NotText { field })?;
            Ok((Value::Str(Arc::from(s)), &rest[4 + len..]))
        }
        tag => Err(KeyError::BadTag { field, tag }),
    }
}

/// One value as JSON, with its type: a float that is not finite (which JSON cannot write)
/// becomes `null`.
fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(x) => serde_json::Number::from_f64(*x)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Str(s) => serde_json::Value::String(s.to_string()),
    }
}

/// The key as matches show it: `None` for an unkeyed pattern, the JSON value itself for one
/// key field, an array for several, with the fields' original types (`1` stays a number).
/// Bytes that do not decode (only a damaged snapshot has them) show as their lossy text.
pub fn to_json(key_fields: usize, bytes: &[u8]) -> Option<String> {
    if key_fields == 0 {
        return None;
    }
    if key_fields == 1 && bytes.first() != Some(&TYPED) {
        // The common case, a single string field: its JSON string, without decoding.
        if let Ok(s) = std::str::from_utf8(bytes) {
            return serde_json::to_string(s).ok();
        }
    }
    let json = match decode(key_fields, bytes) {
        Ok(values) => Key::new(values).json(),
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()),
    };
    Some(json.to_string())
}

/// The partition key of a match as typed values: one per key field of the pattern, in the
/// order the pattern's `key` lists them, each with the type it had in the event (`1` is
/// [`Value::Int`], `"1"` a [`Value::Str`], a missing field [`Value::Null`]).
///
/// Two keys are equal when they are the same partition: same fields of the same types
/// with the same values (unlike [`Value`]'s `==`, `1` and `1.0` are different keys, as
/// they are different partitions; every NaN is the same key). [`Key::to_json`] gives the
/// text matches show, which is also what the key's [`Display`](std::fmt::Display) writes.
///
/// ```
/// use motif::key::Key;
/// use motif::Value;
///
/// let key = Key::from_json(2, r#"["c1",7]"#).unwrap();
/// assert!(matches!(key.fields(), [Value::Str(card), Value::Int(7)] if &**card == "c1"));
/// assert_eq!(key.to_json(), r#"["c1",7]"#);
/// assert_ne!(Key::new(vec![Value::Int(1)]), Key::new(vec![Value::Float(1.0)]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Key {
    fields: Vec<Value>,
}

impl Key {
    /// A key of these field values.
    pub fn new(fields: Vec<Value>) -> Key {
        Key { fields }
    }

    /// Reads a key of `key_fields` fields from the JSON text matches show (what
    /// [`to_json`] and [`crate::runtime::Output::Match`]'s `key` hold): the value itself
    /// for one field, an array of `key_fields` values for several. `None` if the text is
    /// not that shape; a field that is an object or array (which no key field holds) reads
    /// as [`Value::Null`].
    pub fn from_json(key_fields: usize, json: &str) -> Option<Key> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let fields = match (key_fields, v) {
            (0, _) => return None,
            (1, one) => vec![Value::from_json(&one)],
            (n, serde_json::Value::Array(items)) if items.len() == n => {
                items.iter().map(Value::from_json).collect()
            }
            _ => return None,
        };
        Some(Key { fields })
    }

    /// The field values, in the order of the pattern's `key`.
    pub fn fields(&self) -> &[Value] {
        &self.fields
    }

    /// The field values, owned.
    pub fn into_fields(self) -> Vec<Value> {
        self.fields
    }

    /// The key as a JSON value: the value itself for one field, an array for several (a
    /// float that is not finite, which JSON cannot write, becomes `null`).
    pub fn json(&self) -> serde_json::Value {
        match &self.fields[..] {
            [one] => value_json(one),
            many => serde_json::Value::Array(many.iter().map(value_json).collect()),
        }
    }

    /// [`Key::json`] as text: exactly the key matches show (`1`, `"c1"`, `["a",7]`).
    pub fn to_json(&self) -> String {
        self.json().to_string()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// Whether two values are the same key field (see [`Key`]): same kind and value, floats by
/// their bits with every NaN one value, as [`encode`] keeps them.
fn same_field(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => float_bits(*x) == float_bits(*y),
        (Value::Str(x), Value::Str(y)) => x == y,
        _ => false,
    }
}

/// A float's bits as a key keeps them: every NaN the same.
fn float_bits(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else {
        x.to_bits()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| same_field(a, b))
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_usize(self.fields.len());
        for v in &self.fields {
            match v {
                Value::Null => h.write_u8(TAG_NULL),
                Value::Bool(b) => h.write_u8(if *b { TAG_TRUE } else { TAG_FALSE }),
                Value::Int(i) => {
                    h.write_u8(TAG_INT);
                    h.write_i64(*i);
                }
                Value::Float(x) => {
                    h.write_u8(TAG_FLOAT);
                    h.write_u64(float_bits(*x));
                }
                Value::Str(s) => {
                    h.write_u8(TAG_STR);
                    std::hash::Hash::hash(&**s, h);
                }
            }
        }
    }
}

/// A stable hash of a partition key, the same in every process and run: eight bytes at a
/// time with a multiply-fold, then a full avalanche (murmur3's finaliser), so every bit of
/// the result depends on every byte of the key.
pub fn key_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = (h ^ padded_word(rest)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The shard (of `shards`) a key hash belongs to. It reads bits 20..52 of the hash, which
/// the shards' own hash tables use neither for the bucket (low bits) nor for the tag (top
/// bits), so the keys of one shard still spread over its whole table.
pub fn shard_of(hash: u64, shards: usize) -> usize {
    let mid = (hash >> 20) & 0xFFFF_FFFF;
    ((mid * shards as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_stable() {
        // Pinned: the hash decides which worker owns a key, and must not change silently.
        assert_eq!(key_hash(b"k0001"), 0x67c7_05f0_4382_9108);
        assert_eq!(key_hash(b"customer-000123"), 0xa41c_d5c7_c645_47be);
        assert_ne!(key_hash(b"k0001"), key_hash(b"k0002"));
        assert_ne!(key_hash(b"ab"), key_hash(b"ab\0"));
    }

    fn key(values: &[Value]) -> KeyBytes {
        let slots: Vec<usize> = (0..values.len()).collect();
        encode(&slots, values)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn a_number_and_its_text_are_different_keys() {
        assert_ne!(key(&[Value::Int(1)]), key(&[s("1")]));
        assert_ne!(key(&[Value::Int(1)]), key(&[Value::Float(1.0)]));
        assert_ne!(key(&[Value::Bool(true)]), key(&[s("true")]));
    }

    #[test]
    fn null_missing_and_the_text_null() {
        assert_ne!(key(&[Value::Null]), key(&[s("null")]));
        // A missing slot is null.
        assert_eq!(encode(&[7], &[]), key(&[Value::Null]));
        assert_ne!(key(&[Value::Null]), key(&[s("")]));
    }

    #[test]
    fn several_fields_do_not_run_together() {
        let a = key(&[s("a\u{1f}b"), s("c")]);
        let b = key(&[s("a"), s("b\u{1f}c")]);
        assert_ne!(a, b);
        assert_ne!(key(&[s("ab"), s("")]), key(&[s("a"), s("b")]));
        // A string field can hold what looks like an encoded key: still not equal.
        assert_ne!(key(&[s("x")]), key(&[s("x"), Value::Null]));
    }

    #[test]
    fn a_single_string_is_its_own_bytes() {
        let k = key(&[s("card-17")]);
        assert_eq!(&*k, b"card-17");
    }

    #[test]
    fn keys_read_back_with_their_types() {
        assert_eq!(to_json(1, &key(&[Value::Int(1)])).unwrap(), "1");
        assert_eq!(to_json(1, &key(&[s("1")])).unwrap(), "\"1\"");
        assert_eq!(to_json(1, &key(&[Value::Null])).unwrap(), "null");
        assert_eq!(
            to_json(3, &key(&[s("a"), Value::Float(2.5), Value::Bool(false)])).unwrap(),
            r#"["a",2.5,false]"#
        );
        assert_eq!(to_json(0, b""), None);
        let values = decode(2, &key(&[Value::Int(-9), s("é\u{1f}")])).unwrap();
        assert_eq!(values, vec![Value::Int(-9), s("é\u{1f}")]);
    }

    #[test]
    fn a_key_reads_back_from_the_text_matches_show() {
        for values in [
            vec![Value::Int(1)],
            vec![s("1")],
            vec![Value::Null],
            vec![Value::Float(2.0)],
            vec![s("a"), Value::Int(7)],
            vec![Value::Bool(true), s("é\u{1f}\""), Value::Float(-0.5)],
        ] {
            let text = to_json(values.len(), &key(&values)).unwrap();
            let k = Key::from_json(values.len(), &text).unwrap();
            assert_eq!(k, Key::new(values.clone()), "{text}");
            assert_eq!(k.to_json(), text);
            assert_eq!(k.to_string(), text);
        }
        let one = Key::from_json(1, "1").unwrap();
        assert!(matches!(one.fields(), [Value::Int(1)]));
        let float = Key::from_json(1, "2.0").unwrap();
        assert!(matches!(float.fields(), [Value::Float(x)] if *x == 2.0));
    }

    #[test]
    fn a_key_of_the_wrong_shape_is_none() {
        assert_eq!(Key::from_json(0, "1"), None);
        assert_eq!(Key::from_json(2, "1"), None);
        assert_eq!(Key::from_json(2, "[1,2,3]"), None);
        assert_eq!(Key::from_json(1, "not json"), None);
        // One field whose JSON is an array is that (unusable) value, not two fields.
        assert_eq!(
            Key::from_json(1, "[1,2]"),
            Some(Key::new(vec![Value::Null]))
        );
    }

    #[test]
    fn keys_are_equal_when_they_are_the_same_partition() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let hash = |k: &Key| {
            let mut h = DefaultHasher::new();
            k.hash(&mut h);
            h.finish()
        };
        let k = |v: Vec<Value>| Key::new(v);
        // Different partitions, though `Value`'s `==` calls some of them equal.
        for (a, b) in [
            (vec![Value::Int(1)], vec![Value::Float(1.0)]),
            (vec![Value::Int(1)], vec![s("1")]),
            (vec![Value::Null], vec![s("null")]),
            (vec![Value::Float(0.0)], vec![Value::Float(-0.0)]),
            (vec![s("a")], vec![s("a"), Value::Null]),
        ] {
            assert_ne!(key(&a), key(&b));
            assert_ne!(k(a), k(b));
        }
        let nan = k(vec![Value::Float(f64::NAN)]);
        let other_nan = k(vec![Value::Float(-f64::NAN)]);
        assert_eq!(nan, other_nan);
        assert_eq!(hash(&nan), hash(&other_nan));
        let a = k(vec![s("c1"), Value::Int(7)]);
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_eq!(a.clone().into_fields().len(), 2);
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let good = key(&[Value::Int(5), s("abc")]);
        for cut in 1..good.len() {
            assert!(decode(2, &good[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            decode(2, &[TYPED, 9]),
            Err(KeyError::BadTag { field: 0, tag: 9 })
        );
        assert!(decode(1, &[0xC3]).is_err());
        assert!(decode(3, &good).is_err());
    }
}

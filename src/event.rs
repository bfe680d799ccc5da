//! Events and their decoding from JSON.
//!
//! An [`Event`] is a compact row: the values of only those fields some pattern reads, in
//! slots fixed at compile time by a [`Schema`], plus the original JSON text, which matches
//! echo unchanged. Decoding walks the JSON once and skips every field no pattern needs.

use std::sync::Arc;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::decode::FieldTrie;
pub use crate::decode::{shared_str_eq, DecodeError, StrCache};
use crate::value::Value;

/// One input event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Event time in milliseconds since the epoch (or the arrival index without a time field).
    pub time: i64,
    /// The values of the schema's fields, by slot.
    pub fields: Box<[Value]>,
    /// The event as it arrived (one JSON object), echoed in matches.
    pub raw: Arc<str>,
}

impl Event {
    /// The value in `slot`, `null` if the slot is out of range.
    #[inline]
    pub fn slot(&self, slot: usize) -> &Value {
        self.fields.get(slot).unwrap_or(&Value::Null)
    }

    /// Starts loading what matching reads first of this event, its row of fields, and what
    /// dropping it writes, its text's reference count. For an event decoded on another core,
    /// a few events before it is needed.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let row = self.fields.as_ptr().cast::<u8>();
        prefetch(row);
        prefetch(row.wrapping_add(64));
        prefetch(Arc::as_ptr(&self.raw).cast::<u8>());
    }

    /// Starts loading the text of this event's string fields. Reads the row: meant for a
    /// few events after [`Event::prefetch`] asked for it.
    #[inline]
    pub(crate) fn prefetch_strings(&self) {
        for v in self.fields.iter() {
            if let Value::Str(s) = v {
                prefetch(Arc::as_ptr(s).cast::<u8>());
            }
        }
    }

    /// Reads any field by dotted path from the original JSON (slower than a slot: it parses
    /// the event text). Meant for Rust closures, which may read fields the schema lacks.
    pub fn field(&self, path: &str) -> Value {
        field_of_json(&self.raw, path)
    }
}

/// The field at dotted `path` (`"user.id"`) of the JSON object `raw`, parsing the text:
/// `null` if the text is not JSON, a step of the path is missing or not an object, or the
/// field is an object or array (see [`Value::from_json`]). What [`Event::field`] and
/// [`crate::nfa::MatchedEvent::field`] read.
pub(crate) fn field_of_json(raw: &str, path: &str) -> Value {
    let Ok(root) = serde_json::from_str::<serde_json::Value>(raw) else {
        return Value::Null;
    };
    let mut cur = &root;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return Value::Null,
        }
    }
    Value::from_json(cur)
}

/// Asks the processor to start loading the cache line holding `p`. Only a hint: it never
/// faults, whatever the address, and changes no result.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` reads nothing architecturally and cannot fault on any address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The fields patterns read, each with a slot number, plus the time and key fields.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    paths: Vec<Vec<String>>,
    index: HashMap<Vec<String>, usize>,
    trie: FieldTrie,
}

impl Schema {
    /// An empty schema.
    pub fn new() -> Schema {
        Schema::default()
    }

    /// The slot of `path`, adding it if new.
    pub fn slot_of(&mut self, path: &[String]) -> usize {
        if let Some(&s) = self.index.get(path) {
            return s;
        }
        let slot = self.paths.len();
        self.paths.push(path.to_vec());
        self.index.insert(path.to_vec(), slot);
        self.trie.insert(path, slot);
        slot
    }

    /// The slot of `path` if the schema has it.
    pub fn get(&self, path: &[String]) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the schema has no fields.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The dotted paths by slot.
    pub fn paths(&self) -> &[Vec<String>] {
        &self.paths
    }

    /// Decodes one JSON object into a row of slot values.
    pub fn decode_row(&self, json: &str) -> Result<Box<[Value]>, DecodeError> {
        self.decode_row_with(json, &mut StrCache::disabled())
    }

    /// Decodes one JSON object, sharing repeated short strings through `cache`. The line must
    /// be exactly one object (whitespace around it allowed); values map to slots
    /// by the field paths the schema holds.
    pub fn decode_row_with(
        &self,
        json: &str,
        cache: &mut StrCache,
    ) -> Result<Box<[Value]>, DecodeError> {
        // (`repeat_with` writes each `Null` directly; `vec![Null; n]` clones through a match.)
        let mut row: Box<[Value]> = std::iter::repeat_with(|| Value::Null)
            .take(self.paths.len())
            .collect();
        self.trie.decode_into(json, &mut row, cache)?;
        Ok(row)
    }
}

/// Reads event time from a decoded value: an integer of epoch milliseconds, a float with no
/// fraction, or an RFC 3339 string. `i64::MAX` is not an event time: it is the end of input,
/// the watermark at which every window has passed.
#[inline]
pub fn time_from_value(v: &Value, field: &str) -> Result<i64, DecodeError> {
    match v {
        Value::Int(i) if *i != i64::MAX => Ok(*i),
        other => time_from_other(other, field),
    }
}

/// [`time_from_value`] for anything but an integer below `i64::MAX`.
#[inline(never)]
fn time_from_other(v: &Value, field: &str) -> Result<i64, DecodeError> {
    match v {
        Value::Int(i64::MAX) => Err(DecodeError::TimeOutOfRange(field.to_string())),
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
        Value::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|e| DecodeError::BadTime {
                field: field.to_string(),
                found: match chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
                    // The common near miss gets its own advice.
                    Ok(_) => format!(
                        "the string {:?}, which has no UTC offset (add `Z` or `+hh:mm`)",
                        &**s
                    ),
                    Err(_) => format!("the string {:?} ({e})", &**s),
                },
            }),
        Value::Null => Err(DecodeError::MissingTime(field.to_string())),
        other => Err(DecodeError::BadTime {
            field: field.to_string(),
            found: describe(other),
        }),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Int(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Str(s) => format!("the string {:?}", &**s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn decodes_only_schema_fields_including_nested() {
        let mut schema = Schema::new();
        let a = schema.slot_of(&path("amount"));
        let u = schema.slot_of(&path("user.id"));
        let row = schema
            .decode_row(r#"{"x":[1,{"y":2}],"amount":12.5,"user":{"id":"u1","n":3}}"#)
            .unwrap();
        assert_eq!(row[a], Value::Float(12.5));
        assert_eq!(row[u], Value::from("u1"));
    }

    #[test]
    fn malformed_json_is_an_error() {
        let schema = Schema::new();
        assert!(schema.decode_row("{\"a\":").is_err());
        assert!(schema.decode_row("[1,2]").is_err());
        assert!(schema.decode_row("{} trailing").is_err());
    }

    #[test]
    fn time_accepts_millis_and_rfc3339() {
        assert_eq!(time_from_value(&Value::Int(5), "ts"), Ok(5));
        assert_eq!(
            time_from_value(&Value::from("1970-01-01T00:00:01Z"), "ts"),
            Ok(1000)
        );
        assert!(matches!(
            time_from_value(&Value::Bool(true), "ts"),
            Err(DecodeError::BadTime { .. })
        ));
        assert_eq!(
            time_from_value(&Value::Null, "ts"),
            Err(DecodeError::MissingTime("ts".into()))
        );
        assert_eq!(
            time_from_value(&Value::Int(i64::MAX - 1), "ts"),
            Ok(i64::MAX - 1)
        );
        assert_eq!(
            time_from_value(&Value::Int(i64::MAX), "ts"),
            Err(DecodeError::TimeOutOfRange("ts".into()))
        );
        let no_offset = time_from_value(&Value::from("2024-03-01T12:00:00"), "ts")
            .unwrap_err()
            .to_string();
        assert!(no_offset.contains("no UTC offset (add `Z`"), "{no_offset}");
    }
}

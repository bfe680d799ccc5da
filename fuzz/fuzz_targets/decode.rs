//! The JSON line decoder never panics, accepts exactly the lines `serde_json` parses as an
//! object (except for numbers at the edge of the f64 range, where `serde_json`'s inexact
//! float parsing decides overflow differently), and then fills the row as walking
//! `serde_json`'s parse by path does. Input: one byte choosing the schema, then the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use motif::event::{DecodeError, Schema, StrCache};
use motif::Value;

/// Paths that hit the trie: leaf and prefix at once, nesting, a long key, keys that need
/// escaping, the empty key.
const PATHS: &[&[&str]] = &[
    &["a"],
    &["a", "b"],
    &["b"],
    &["id"],
    &["ts"],
    &["x", "y", "z"],
    &["é"],
    &["q\""],
    &["a_key_longer_than_eight"],
    &[""],
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(line) = std::str::from_utf8(rest) else {
        return;
    };
    let mut schema = Schema::new();
    for (i, p) in PATHS.iter().enumerate() {
        if choice & 1 == 0 || i % 2 == 0 {
            schema.slot_of(&p.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        }
    }
    if choice & 2 != 0 {
        // Enough root keys that lookups go through the hash index.
        for i in 0..12 {
            schema.slot_of(&[format!("k{i}")]);
        }
    }
    let mine = schema.decode_row(line);
    let cached = schema.decode_row_with(line, &mut StrCache::new());
    assert_eq!(mine.is_ok(), cached.is_ok());
    let theirs = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .filter(serde_json::Value::is_object);
    match (&mine, &theirs) {
        (Ok(row), Some(doc)) => {
            let cached = cached.as_ref().unwrap();
            for (slot, path) in schema.paths().iter().enumerate() {
                let mut cur = Some(doc);
                for k in path {
                    cur = cur.and_then(|v| v.get(k));
                }
                let want = cur.map_or(Value::Null, Value::from_json);
                assert!(
                    close(&row[slot], &want) && same(&row[slot], &cached[slot]),
                    "{line:?} {path:?}: got {:?}, serde_json {want:?}",
                    row[slot]
                );
            }
        }
        (Err(DecodeError::Json(_)), None) => {}
        _ => assert!(
            near_f64_limit(line),
            "disagree on {line:?}: {mine:?}, serde_json accepts: {}",
            theirs.is_some()
        ),
    }
});

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// As `same`, but floats may differ in the last few places (`serde_json` without its
/// `float_roundtrip` feature rounds some decimal texts a few ulps off; ours are exact).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x.to_bits() == y.to_bits()
                || (x.is_sign_negative() == y.is_sign_negative()
                    && x.to_bits().abs_diff(y.to_bits()) <= 8)
        }
        _ => same(a, b),
    }
}

/// Whether `line` has a number (outside strings) whose exact value rounds to `f64::MAX` or
/// beyond, where `serde_json` may decide overflow differently.
fn near_f64_limit(line: &str) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
        } else if c == b'"' {
            in_string = true;
            i += 1;
        } else if c == b'-' || c.is_ascii_digit() {
            let len = b[i..]
                .iter()
                .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .count();
            if line[i..i + len]
                .parse::<f64>()
                .is_ok_and(|x| x.abs() >= f64::MAX)
            {
                return true;
            }
            i += len;
        } else {
            i += 1;
        }
    }
    false
}

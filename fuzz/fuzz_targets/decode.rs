//! The JSON line decoder never panics, accepts exactly the lines `serde_json` parses as an
//! object (except for numbers at the edge of the f64 range, where `serde_json`'s inexact
//! float parsing decides overflow differently), and then fills the row as walking
//! `serde_json`'s parse by path does. Input: one byte choosing the schema, then the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use motif::decode::oracle::{close, near_f64_limit, reference, same};
use motif::event::{DecodeError, Schema, StrCache};

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
            let want = reference(doc, schema.paths());
            for (slot, path) in schema.paths().iter().enumerate() {
                assert!(
                    close(&row[slot], &want[slot]) && same(&row[slot], &cached[slot]),
                    "{line:?} {path:?}: got {:?}, serde_json {:?}",
                    row[slot],
                    want[slot]
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

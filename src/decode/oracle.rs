//! The reference the decoder is checked against (by its tests and the `decode` fuzz
//! target): `serde_json`'s parse walked by path, and comparisons that allow for the one
//! known difference in float rounding. Not part of the engine.

use crate::value::Value;

/// Same kind and same value; floats bit for bit.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// As [`same`], but floats may differ in the last few places: `serde_json` without its
/// `float_roundtrip` feature rounds some decimal texts a few ulps off the exact value that
/// `str::parse` gives (for example `-1.0090462521550349e-28`, two ulps off).
pub fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x.to_bits() == y.to_bits()
                || (x.is_sign_negative() == y.is_sign_negative()
                    && x.to_bits().abs_diff(y.to_bits()) <= 8)
        }
        _ => same(a, b),
    }
}

/// The row obtained by parsing with `serde_json` and walking each path.
pub fn reference(doc: &serde_json::Value, paths: &[Vec<String>]) -> Vec<Value> {
    paths
        .iter()
        .map(|p| {
            let mut cur = doc;
            for k in p {
                match cur.get(k) {
                    Some(v) => cur = v,
                    None => return Value::Null,
                }
            }
            Value::from_json(cur)
        })
        .collect()
}

/// Whether `line` has a number (outside strings) whose exact value rounds to `f64::MAX` or
/// beyond: there `serde_json`'s inexact float parsing may decide overflow differently (it
/// rejects `1.7976931348623158e308`, which is `f64::MAX`). The one documented difference in
/// what is accepted.
pub fn near_f64_limit(line: &str) -> bool {
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

//! [`Cell`]: a value an aggregation groups by, counts distinctly or emits, with total
//! equality, hashing and ordering (floats by their IEEE total order, so `NaN` is a value
//! like any other and a group is never lost to `NaN != NaN`).

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::value::{push_json_str, Value};

/// A value in an aggregation's row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum Cell {
    /// `null` (a missing field, or a variable with no event in the match).
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(Arc<str>),
    /// A JSON value kept as its text (a key of several fields is an array).
    Json(Arc<str>),
}

impl Cell {
    /// The cell of a field's value.
    pub fn of(v: &Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Int(i) => Cell::Int(*i),
            Value::Float(f) => Cell::Float(*f),
            Value::Str(s) => Cell::Str(Arc::clone(s)),
        }
    }

    /// The cell of a key rendered as JSON (a scalar for one field, an array for several).
    pub fn of_key_json(json: &str) -> Cell {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Array(_)) | Ok(serde_json::Value::Object(_)) | Err(_) => {
                Cell::Json(Arc::from(json))
            }
            Ok(v) => Cell::of(&Value::from_json(&v)),
        }
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// As a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// As a [`Value`] (a JSON cell becomes its text as a string).
    pub fn to_value(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::Int(*i),
            Cell::Float(f) => Value::Float(*f),
            Cell::Str(s) | Cell::Json(s) => Value::Str(Arc::clone(s)),
        }
    }

    /// Appends the cell as JSON (a non-finite float as `null`, as JSON has no `NaN`).
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Cell::Null => out.push_str("null"),
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Cell::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f:?}");
            }
            Cell::Float(_) => out.push_str("null"),
            Cell::Str(s) => push_json_str(out, s),
            Cell::Json(s) => out.push_str(s),
        }
    }

    /// The cell's kind, for ordering cells of different kinds.
    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Bool(_) => 1,
            Cell::Int(_) | Cell::Float(_) => 2,
            Cell::Str(_) => 3,
            Cell::Json(_) => 4,
        }
    }
}

impl PartialEq for Cell {
    fn eq(&self, other: &Cell) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Cell {}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Cell) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cell {
    /// `null` < booleans < numbers < strings < JSON texts; numbers by value across integers
    /// and floats (an integer before a float of equal value), floats by their total order.
    fn cmp(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Bool(a), Cell::Bool(b)) => a.cmp(b),
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Float(a), Cell::Float(b)) => a.total_cmp(b),
            (Cell::Int(a), Cell::Float(b)) => (*a as f64).total_cmp(b).then(Ordering::Less),
            (Cell::Float(a), Cell::Int(b)) => a.total_cmp(&(*b as f64)).then(Ordering::Greater),
            (Cell::Str(a), Cell::Str(b)) | (Cell::Json(a), Cell::Json(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl Hash for Cell {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Consistent with `Eq`: an integer and a float are never equal.
        match self {
            Cell::Null => 0u8.hash(h),
            Cell::Bool(b) => (1u8, b).hash(h),
            Cell::Int(i) => (2u8, i).hash(h),
            Cell::Float(f) => (3u8, f.to_bits()).hash(h),
            Cell::Str(s) => (4u8, &**s).hash(h),
            Cell::Json(s) => (5u8, &**s).hash(h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_typed_cells() {
        assert_eq!(Cell::of_key_json("\"a\""), Cell::Str(Arc::from("a")));
        assert_eq!(Cell::of_key_json("1"), Cell::Int(1));
        assert!(matches!(Cell::of_key_json("[1,\"a\"]"), Cell::Json(_)));
        assert_ne!(Cell::of_key_json("1"), Cell::of_key_json("\"1\""));
    }

    #[test]
    fn order_is_total_and_nan_is_a_value() {
        let nan = Cell::Float(f64::NAN);
        assert_eq!(nan, nan.clone());
        assert!(Cell::Int(1) < Cell::Float(1.5));
        assert!(Cell::Int(1) < Cell::Float(1.0));
        assert_ne!(Cell::Int(1), Cell::Float(1.0));
        assert!(Cell::Null < Cell::Bool(false));
        assert!(Cell::Int(i64::MAX) < Cell::Str(Arc::from("")));
        let mut s = String::new();
        nan.write_json(&mut s);
        Cell::Float(2.0).write_json(&mut s);
        assert_eq!(s, "null2.0");
    }
}

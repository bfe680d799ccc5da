//! Accumulators: one per aggregate column and window/group, mergeable (session windows
//! merge) and independent of the order matches come in, except where the order is the
//! point (`first`, `last`: by the match's time, then its input step).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::cell::Cell;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    /// Matches in the group (`count()`).
    Count,
    /// Distinct non-null values.
    CountDistinct,
    /// Sum of the numbers (`null` when there are none); integers stay integers until the
    /// sum leaves 64 bits.
    Sum,
    /// Mean of the numbers (`null` when there are none).
    Avg,
    /// Smallest non-null value (numbers by value, strings by bytes).
    Min,
    /// Largest non-null value.
    Max,
    /// The value of the earliest match (by time, then input order).
    First,
    /// The value of the latest match.
    Last,
}

impl AggFunc {
    /// The function of a name as written (`count`, `count_distinct`, ...).
    pub fn from_name(name: &str) -> Option<AggFunc> {
        Some(match name {
            "count" => AggFunc::Count,
            "count_distinct" => AggFunc::CountDistinct,
            "sum" => AggFunc::Sum,
            "avg" => AggFunc::Avg,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "first" => AggFunc::First,
            "last" => AggFunc::Last,
            _ => return None,
        })
    }

    /// Every name, for messages.
    pub const NAMES: &'static str = "count, count_distinct, sum, avg, min, max, first, last";

    /// Its name as written.
    pub fn name(&self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::CountDistinct => "count_distinct",
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::First => "first",
            AggFunc::Last => "last",
        }
    }

    /// A new accumulator.
    pub(crate) fn start(&self) -> Acc {
        match self {
            AggFunc::Count => Acc::Count(0),
            AggFunc::CountDistinct => Acc::Distinct(BTreeSet::new()),
            AggFunc::Sum | AggFunc::Avg => Acc::Sum(Sum::default()),
            AggFunc::Min => Acc::Min(None),
            AggFunc::Max => Acc::Max(None),
            AggFunc::First => Acc::First(None),
            AggFunc::Last => Acc::Last(None),
        }
    }
}

impl fmt::Display for AggFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A sum of numbers: exact while it is a sum of integers that fits in 64 bits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sum {
    /// Numbers added.
    n: u64,
    /// The integers' sum, exactly.
    ints: i128,
    /// The floats' sum.
    floats: f64,
    /// Whether a float was added.
    any_float: bool,
}

impl Sum {
    fn add(&mut self, c: &Cell) {
        match c {
            Cell::Int(i) => {
                self.n += 1;
                self.ints = self.ints.saturating_add(i128::from(*i));
            }
            Cell::Float(f) => {
                self.n += 1;
                self.floats += f;
                self.any_float = true;
            }
            _ => {}
        }
    }

    fn merge(&mut self, o: &Sum) {
        self.n += o.n;
        self.ints = self.ints.saturating_add(o.ints);
        self.floats += o.floats;
        self.any_float |= o.any_float;
    }

    fn sum(&self) -> Cell {
        if self.n == 0 {
            return Cell::Null;
        }
        match (self.any_float, i64::try_from(self.ints)) {
            (false, Ok(i)) => Cell::Int(i),
            _ => Cell::Float(self.ints as f64 + self.floats),
        }
    }

    fn avg(&self) -> Cell {
        if self.n == 0 {
            return Cell::Null;
        }
        Cell::Float((self.ints as f64 + self.floats) / self.n as f64)
    }
}

/// Where a match stands in the order `first` and `last` go by: its time, its input step,
/// and its place among the matches of that step.
pub(crate) type Order = (i64, u64, u32);

/// One aggregate's running value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Acc {
    Count(u64),
    Distinct(BTreeSet<Cell>),
    Sum(Sum),
    Min(Option<Cell>),
    Max(Option<Cell>),
    First(Option<(Order, Cell)>),
    Last(Option<(Order, Cell)>),
}

impl Acc {
    /// Takes one match's value (`count` ignores it).
    pub(crate) fn add(&mut self, c: &Cell, order: Order) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Distinct(set) => {
                if !c.is_null() && !set.contains(c) {
                    set.insert(c.clone());
                }
            }
            Acc::Sum(s) => s.add(c),
            Acc::Min(m) => {
                if !c.is_null() && m.as_ref().is_none_or(|m| c < m) {
                    *m = Some(c.clone());
                }
            }
            Acc::Max(m) => {
                if !c.is_null() && m.as_ref().is_none_or(|m| c > m) {
                    *m = Some(c.clone());
                }
            }
            Acc::First(f) => {
                if f.as_ref().is_none_or(|(o, _)| order < *o) {
                    *f = Some((order, c.clone()));
                }
            }
            Acc::Last(l) => {
                if l.as_ref().is_none_or(|(o, _)| order > *o) {
                    *l = Some((order, c.clone()));
                }
            }
        }
    }

    /// Takes another accumulator of the same function (sessions merging).
    pub(crate) fn merge(&mut self, o: &Acc) {
        match (self, o) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b.iter().cloned()),
            (Acc::Sum(a), Acc::Sum(b)) => a.merge(b),
            (Acc::Min(a), Acc::Min(Some(b))) if a.as_ref().is_none_or(|a| b < a) => {
                *a = Some(b.clone());
            }
            (Acc::Max(a), Acc::Max(Some(b))) if a.as_ref().is_none_or(|a| b > a) => {
                *a = Some(b.clone());
            }
            (Acc::First(a), Acc::First(Some(b))) if a.as_ref().is_none_or(|x| b.0 < x.0) => {
                *a = Some(b.clone());
            }
            (Acc::Last(a), Acc::Last(Some(b))) if a.as_ref().is_none_or(|x| b.0 > x.0) => {
                *a = Some(b.clone());
            }
            _ => {}
        }
    }

    /// The aggregate's value.
    pub(crate) fn value(&self, func: AggFunc) -> Cell {
        match self {
            Acc::Count(n) => Cell::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
            Acc::Distinct(s) => Cell::Int(i64::try_from(s.len()).unwrap_or(i64::MAX)),
            Acc::Sum(s) if func == AggFunc::Avg => s.avg(),
            Acc::Sum(s) => s.sum(),
            Acc::Min(m) | Acc::Max(m) => m.clone().unwrap_or_default(),
            Acc::First(f) | Acc::Last(f) => f.as_ref().map(|(_, c)| c.clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn run(func: AggFunc, cells: &[Cell]) -> Cell {
        let mut a = func.start();
        for (i, c) in cells.iter().enumerate() {
            a.add(c, (0, i as u64, 0));
        }
        a.value(func)
    }

    #[test]
    fn functions_compute_what_they_say() {
        let cells = [Cell::Int(3), Cell::Null, Cell::Int(1), Cell::Int(3)];
        assert_eq!(run(AggFunc::Count, &cells), Cell::Int(4));
        assert_eq!(run(AggFunc::CountDistinct, &cells), Cell::Int(2));
        assert_eq!(run(AggFunc::Sum, &cells), Cell::Int(7));
        assert_eq!(run(AggFunc::Avg, &cells), Cell::Float(7.0 / 3.0));
        assert_eq!(run(AggFunc::Min, &cells), Cell::Int(1));
        assert_eq!(run(AggFunc::Max, &cells), Cell::Int(3));
        assert_eq!(run(AggFunc::First, &cells), Cell::Int(3));
        assert_eq!(run(AggFunc::Last, &cells), Cell::Int(3));
        assert_eq!(run(AggFunc::Sum, &[Cell::Null]), Cell::Null);
        assert_eq!(run(AggFunc::Avg, &[]), Cell::Null);
        assert_eq!(run(AggFunc::Max, &[]), Cell::Null);
    }

    #[test]
    fn sums_leave_64_bits_as_floats_and_mix_kinds() {
        let big = [Cell::Int(i64::MAX), Cell::Int(1)];
        assert_eq!(run(AggFunc::Sum, &big), Cell::Float(i64::MAX as f64 + 1.0));
        let back = [Cell::Int(i64::MAX), Cell::Int(1), Cell::Int(-1)];
        assert_eq!(run(AggFunc::Sum, &back), Cell::Int(i64::MAX));
        let mixed = [Cell::Int(1), Cell::Float(0.5), Cell::Str(Arc::from("x"))];
        assert_eq!(run(AggFunc::Sum, &mixed), Cell::Float(1.5));
    }

    #[test]
    fn first_and_last_go_by_time_not_arrival() {
        let mut f = AggFunc::First.start();
        let mut l = AggFunc::Last.start();
        for (t, v) in [(5, 50), (1, 10), (9, 90), (3, 30)] {
            f.add(&Cell::Int(v), (t, 0, 0));
            l.add(&Cell::Int(v), (t, 0, 0));
        }
        assert_eq!(f.value(AggFunc::First), Cell::Int(10));
        assert_eq!(l.value(AggFunc::Last), Cell::Int(90));
    }

    #[test]
    fn merging_equals_adding_everything_to_one() {
        let a_cells = [Cell::Int(4), Cell::Float(2.5), Cell::Null];
        let b_cells = [Cell::Int(-1), Cell::Str(Arc::from("z"))];
        for func in [
            AggFunc::Count,
            AggFunc::CountDistinct,
            AggFunc::Sum,
            AggFunc::Avg,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::First,
            AggFunc::Last,
        ] {
            let (mut a, mut b, mut all) = (func.start(), func.start(), func.start());
            for (i, c) in a_cells.iter().enumerate() {
                a.add(c, (i as i64, 0, 0));
                all.add(c, (i as i64, 0, 0));
            }
            for (i, c) in b_cells.iter().enumerate() {
                b.add(c, (10 + i as i64, 0, 0));
                all.add(c, (10 + i as i64, 0, 0));
            }
            a.merge(&b);
            assert_eq!(a.value(func), all.value(func), "{func}");
        }
    }
}

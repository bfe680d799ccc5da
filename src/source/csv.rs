//! CSV with a header line (RFC 4180, read by the `csv` crate) turned into JSON objects:
//! numbers become numbers, `true`/`false` booleans, empty fields are absent (null), anything
//! else a string. A quoted field may span lines; the source joins a record's lines
//! ([`open_quote`]) before it comes here.

use crate::value::push_json_str;

/// The header of a CSV input, learnt from its first record.
#[derive(Debug, Clone, Default)]
pub struct Header {
    names: Option<Vec<String>>,
}

/// Why a CSV record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CsvError {
    /// A quoted field is still open at the end of the input.
    #[error("CSV: a quoted field is not closed by the end of the input")]
    UnclosedQuote,
    /// The record has another number of fields than the header.
    #[error("CSV: the row has {found} fields, the header {expected}")]
    FieldCount {
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// The `csv` reader's own error.
    #[error("CSV: {0}")]
    Reader(String),
}

/// Whether `text` (one or more lines of a record) ends inside a quoted field, so that the
/// record goes on on the next line. The states are RFC 4180's as the `csv` crate reads it: a
/// quote opens a quoted field only at a field's start, and `""` inside one is a quote.
pub fn open_quote(text: &[u8]) -> bool {
    #[derive(Clone, Copy)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut s = S::FieldStart;
    for &b in text {
        s = match (s, b) {
            (S::FieldStart, b'"') => S::Quoted,
            (S::FieldStart | S::Unquoted, b',' | b'\n') => S::FieldStart,
            (S::FieldStart | S::Unquoted, _) => S::Unquoted,
            (S::Quoted, b'"') => S::QuoteInQuoted,
            (S::Quoted, _) => S::Quoted,
            (S::QuoteInQuoted, b'"') => S::Quoted,
            (S::QuoteInQuoted, b',' | b'\n') => S::FieldStart,
            (S::QuoteInQuoted, _) => S::Unquoted,
        };
    }
    matches!(s, S::Quoted)
}

/// Splits one CSV record (its lines joined, without the final line end) into fields;
/// `None` if a quote is left open.
pub fn split(record: &str) -> Option<Vec<String>> {
    fields(record).ok()
}

/// The fields of one record, read by the `csv` crate.
fn fields(record: &str) -> Result<Vec<String>, CsvError> {
    if open_quote(record.as_bytes()) {
        return Err(CsvError::UnclosedQuote);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(record.len().clamp(64, 1 << 16))
        .from_reader(record.as_bytes());
    let mut row = csv::StringRecord::new();
    match reader.read_record(&mut row) {
        Ok(true) => Ok(row.iter().map(str::to_string).collect()),
        // An empty record (the source skips blank lines, so only `""`-less text).
        Ok(false) => Ok(vec![String::new()]),
        Err(e) => Err(CsvError::Reader(e.to_string())),
    }
}

/// A number as JSON: `-?(0|[1-9][0-9]*)` as written; other decimal forms (`2.`, `.5`,
/// `-.5`, `1e3`) as the float they denote; leading zeros (`007`, `-02`), a leading `+`,
/// `inf` and `nan` are not numbers (they stay text).
fn json_number(t: &str) -> Option<String> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let first = digits.bytes().next()?;
    if !(first.is_ascii_digit() || first == b'.') {
        return None;
    }
    let int_part = digits.split(['.', 'e', 'E']).next().unwrap_or("");
    if int_part.len() > 1 && int_part.starts_with('0') {
        return None;
    }
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        if t.parse::<i64>().is_ok() {
            return Some(t.to_string());
        }
    } else if !digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    let x: f64 = t.parse().ok()?;
    serde_json::Number::from_f64(x).map(|n| n.to_string())
}

fn push_typed(out: &mut String, v: &str) {
    let t = v.trim();
    if t == "true" || t == "false" {
        out.push_str(t);
    } else if let Some(n) = json_number(t) {
        out.push_str(&n);
    } else {
        push_json_str(out, v);
    }
}

impl Header {
    /// Turns a record into a JSON object; `None` for the header record itself. A record
    /// whose field count differs from the header's, or that the CSV reader cannot read,
    /// becomes a text that is not JSON, so the engine rejects it with its line number and
    /// the CSV reason.
    pub fn row_to_json(&mut self, record: &str) -> Option<String> {
        match self.row(record) {
            Ok(row) => row,
            Err(e) => Some(super::unreadable(&e.to_string(), record.as_bytes(), false)),
        }
    }

    /// [`Header::row_to_json`] with the error as a value.
    pub(crate) fn row(&mut self, record: &str) -> Result<Option<String>, CsvError> {
        let Some(names) = &self.names else {
            self.names = Some(
                fields(record)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.trim().to_string())
                    .collect(),
            );
            return Ok(None);
        };
        let fields = fields(record)?;
        if fields.len() != names.len() {
            return Err(CsvError::FieldCount {
                found: fields.len(),
                expected: names.len(),
            });
        }
        let mut out = String::with_capacity(record.len() + 16 * names.len());
        out.push('{');
        let mut first = true;
        for (n, v) in names.iter().zip(&fields) {
            if v.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            push_json_str(&mut out, n);
            out.push(':');
            push_typed(&mut out, v);
        }
        out.push('}');
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_typed_rows() {
        let mut h = Header::default();
        assert_eq!(h.row_to_json("key,ts,type,price,ok,zip"), None);
        let j = h.row_to_json(r#"k1,17,"A, b",2.50,true,007"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["key"], "k1");
        assert_eq!(v["ts"], 17);
        assert_eq!(v["type"], "A, b");
        assert_eq!(v["price"], 2.5);
        assert_eq!(v["ok"], true);
        assert_eq!(v["zip"], "007", "leading zeros stay text");
        assert_eq!(
            h.row("k1,17"),
            Err(CsvError::FieldCount {
                found: 2,
                expected: 6
            })
        );
        let bad = h.row_to_json("k1,17").unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&bad).is_err());
    }

    /// Every cell becomes valid JSON: the decimal forms JSON lacks are floats, the rest text.
    #[test]
    fn cells_are_valid_json() {
        let cases = [
            ("2.", "2.0"),
            (".5", "0.5"),
            ("-.5", "-0.5"),
            ("-02", "\"-02\""),
            ("007", "\"007\""),
            ("0", "0"),
            ("-0", "-0"),
            ("0.25", "0.25"),
            ("1e3", "1000.0"),
            ("+1", "\"+1\""),
            ("inf", "\"inf\""),
            ("NaN", "\"NaN\""),
            ("1.2.3", "\"1.2.3\""),
            ("12abc", "\"12abc\""),
            ("-", "\"-\""),
            ("99999999999999999999", "1e+20"),
            ("9223372036854775807", "9223372036854775807"),
        ];
        for (cell, want) in cases {
            let mut out = String::new();
            push_typed(&mut out, cell);
            assert_eq!(out, want, "{cell}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&out).is_ok(),
                "{cell}"
            );
        }
    }

    #[test]
    fn quotes() {
        assert_eq!(
            split(r#"a,"b ""q"" c",,d"#).unwrap(),
            vec!["a", "b \"q\" c", "", "d"]
        );
        assert!(split(r#"a,"open"#).is_none());
        assert_eq!(
            split("a,\"two\nlines\",c").unwrap(),
            vec!["a", "two\nlines", "c"]
        );
        assert!(open_quote(b"a,\"two\n"));
        assert!(!open_quote(b"a,\"two\nlines\",c"));
        assert!(
            !open_quote(b"a\"b,c"),
            "a quote inside an unquoted field is text"
        );
        assert!(open_quote(b"\"\"\""));
        assert!(!open_quote(b"\"\"\"\""));
    }
}

//! CSV with a header line (RFC 4180 quoting) turned into JSON objects: numbers become
//! numbers, `true`/`false` booleans, empty fields are absent (null), anything else a string.

use crate::value::push_json_str;

/// The header of a CSV input, learnt from its first line.
#[derive(Debug, Clone, Default)]
pub struct Header {
    names: Option<Vec<String>>,
}

/// Splits one CSV line into fields; `None` if a quote is left open.
pub fn split(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return None;
    }
    fields.push(cur);
    Some(fields)
}

fn push_typed(out: &mut String, v: &str) {
    let t = v.trim();
    let boolean = t == "true" || t == "false";
    let number = !t.is_empty()
        && (t.parse::<i64>().is_ok()
            || (t.parse::<f64>().is_ok_and(f64::is_finite)
                && t.chars().any(|c| c.is_ascii_digit())))
        && !t.starts_with('+')
        && !(t.len() > 1 && t.starts_with('0') && !t.starts_with("0."));
    if boolean || number {
        out.push_str(t);
    } else {
        push_json_str(out, v);
    }
}

impl Header {
    /// Turns a line into a JSON object; `None` for the header line itself. A row whose
    /// field count differs from the header's (or with an open quote) becomes a text that is
    /// not JSON, so the engine rejects it with its line number.
    pub fn row_to_json(&mut self, line: &str) -> Option<String> {
        let Some(names) = &self.names else {
            self.names = Some(
                split(line)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.trim().to_string())
                    .collect(),
            );
            return None;
        };
        let Some(fields) = split(line) else {
            return Some(format!("CSV row with an unclosed quote: {line}"));
        };
        if fields.len() != names.len() {
            return Some(format!(
                "CSV row has {} fields, the header {}: {line}",
                fields.len(),
                names.len()
            ));
        }
        let mut out = String::with_capacity(line.len() + 16 * names.len());
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
        Some(out)
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
        let bad = h.row_to_json("k1,17").unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&bad).is_err());
    }

    #[test]
    fn quotes() {
        assert_eq!(
            split(r#"a,"b ""q"" c",,d"#).unwrap(),
            vec!["a", "b \"q\" c", "", "d"]
        );
        assert!(split(r#"a,"open"#).is_none());
    }
}

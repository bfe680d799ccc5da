//! The event decoder: a hand-written, single-pass JSON scanner specialised for one object per
//! line, writing straight into a row only the fields some pattern reads.
//!
//! [`FieldTrie`] holds the schema's dotted paths as a trie; [`FieldTrie::decode_into`] walks
//! the line once, descends into the trie on matching keys, converts the values it needs and
//! skips the rest — still checking them, so that exactly the texts `serde_json` accepts as an
//! object are accepted (same grammar, same nesting limit, same rejection of numbers out of
//! `f64` range and of lone UTF-16 surrogates in `\u` escapes).
//!
//! Values: an integer that fits `i64` becomes [`Value::Int`]; a larger integer or a number with
//! a fraction or an exponent becomes [`Value::Float`] (parsed exactly with `str::parse`; `-0`
//! is the float `-0.0`, as in `serde_json`); strings go through the [`StrCache`] (no allocation
//! when a string has no escapes and hits the cache); `true`/`false`/`null` as such. An object
//! or an array at a path leaves that slot `null`; an object at a prefix path is descended into;
//! a scalar at a path that is also a prefix sets the slot. With duplicate keys the last one
//! wins, for whole subtrees too: the row is what walking the paths through the parsed document
//! (`serde_json::Value`) would give.

use hashbrown::HashMap;

use crate::event::{DecodeError, StrCache};
use crate::value::Value;

/// Deepest nesting of objects and arrays accepted, the outer object counting as one level:
/// a line nesting deeper is rejected. This is what `serde_json`'s default recursion limit
/// (128) allows, so both accept the same texts.
pub const MAX_DEPTH: usize = 127;

/// Children of a node looked up by a linear scan up to this many; a hash index beyond.
const LINEAR_MAX: usize = 8;

/// The schema's field paths as a trie from keys to row slots, arranged for the scanner.
#[derive(Debug, Clone)]
pub struct FieldTrie {
    /// Node 0 is the root (the event object itself).
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// The slot of the path ending here, if one does.
    slot: Option<usize>,
    /// Child keys and node numbers.
    children: Vec<(Box<[u8]>, u32)>,
    /// The same, hashed, once there are more than [`LINEAR_MAX`] children.
    index: Option<HashMap<Box<[u8]>, u32>>,
    /// Slots of all paths strictly below this node, cleared when a duplicate key replaces
    /// the subtree.
    below: Vec<usize>,
}

impl Default for FieldTrie {
    fn default() -> Self {
        FieldTrie {
            nodes: vec![Node::default()],
        }
    }
}

impl FieldTrie {
    /// An empty trie: decoding only checks the JSON.
    pub fn new() -> FieldTrie {
        FieldTrie::default()
    }

    /// Adds `path` (its keys from the outside in) with its row slot. The empty path names the
    /// event object itself, which is never a value: its slot stays `null`.
    pub fn insert(&mut self, path: &[String], slot: usize) {
        let mut id = 0usize;
        for key in path {
            self.nodes[id].below.push(slot);
            id = match self.child(id, key.as_bytes()) {
                Some(c) => c,
                None => {
                    let c = self.nodes.len();
                    let c32 = u32::try_from(c).expect("fewer than 2^32 schema paths");
                    self.nodes.push(Node::default());
                    let node = &mut self.nodes[id];
                    node.children.push((key.as_bytes().into(), c32));
                    if node.children.len() > LINEAR_MAX {
                        node.index = Some(node.children.iter().cloned().collect());
                    }
                    c
                }
            };
        }
        if id != 0 {
            self.nodes[id].slot = Some(slot);
        }
    }

    /// The child of node `id` under `key`.
    #[inline]
    fn child(&self, id: usize, key: &[u8]) -> Option<usize> {
        let node = &self.nodes[id];
        if let Some(index) = &node.index {
            return index.get(key).map(|&c| c as usize);
        }
        for (k, c) in &node.children {
            if k.len() == key.len() && short_eq(k, key) {
                return Some(*c as usize);
            }
        }
        None
    }

    /// Decodes `json`, which must be exactly one JSON object with optional whitespace around
    /// it, into `row` (indexed by slot; slots past its end are ignored). Slots the line does not
    /// set keep their values, so `row` normally starts all `null`. On error `row` may be
    /// partly written.
    pub fn decode_into(
        &self,
        json: &str,
        row: &mut [Value],
        cache: &mut StrCache,
    ) -> Result<(), DecodeError> {
        let mut s = Scanner {
            text: json,
            b: json.as_bytes(),
            pos: 0,
            depth: 0,
            trie: self,
            row,
            cache,
            scratch: String::new(),
        };
        s.skip_ws();
        match s.peek() {
            Some(b'{') => {
                s.pos += 1;
                s.enter()?;
                s.object(0)?;
            }
            None => return Err(s.eof("a JSON object")),
            Some(_) => return Err(s.err("expected a JSON object")),
        }
        s.skip_ws();
        if s.pos != s.b.len() {
            return Err(s.err("trailing characters after the object"));
        }
        Ok(())
    }
}

/// Byte equality for short keys without a call to `memcmp`.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Which bytes end the fast run of a string: `"`, `\` and the control characters.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Where a scanned string's text is.
enum Str {
    /// `text[start..end]`: no escapes.
    Raw(usize, usize),
    /// Unescaped into the scratch buffer.
    Scratch,
}

struct Scanner<'a, 'r> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: usize,
    trie: &'a FieldTrie,
    row: &'r mut [Value],
    cache: &'r mut StrCache,
    scratch: String,
}

type Res<T> = Result<T, DecodeError>;

impl Scanner<'_, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    /// An error at the current position.
    #[cold]
    #[inline(never)]
    fn err(&self, what: &str) -> DecodeError {
        self.err_at(what, self.pos)
    }

    #[cold]
    #[inline(never)]
    fn err_at(&self, what: &str, at: usize) -> DecodeError {
        let found = match self.text.get(at..).and_then(|t| t.chars().next()) {
            Some(c) => format!(", found {c:?}"),
            None => String::new(),
        };
        DecodeError::Json(format!("{what} at byte {at}{found}"))
    }

    /// The line ended while `what` was expected.
    #[cold]
    #[inline(never)]
    fn eof(&self, what: &str) -> DecodeError {
        DecodeError::Json(format!(
            "unexpected end of line at byte {}, expected {what}",
            self.b.len()
        ))
    }

    /// Errs with "expected `c`" unless the next byte is `c`, which it consumes.
    #[inline]
    fn expect(&mut self, c: u8, what: &str) -> Res<()> {
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            None => Err(self.eof(what)),
            Some(_) => Err(self.err(&format!("expected {what}"))),
        }
    }

    /// One level deeper (an object or array was just opened).
    #[inline]
    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH + 1 {
            return Err(self.err_at(
                &format!("nesting deeper than {MAX_DEPTH} levels"),
                self.pos - 1,
            ));
        }
        Ok(())
    }

    #[inline]
    fn put(&mut self, slot: Option<usize>, v: Value) {
        if let Some(s) = slot {
            if let Some(cell) = self.row.get_mut(s) {
                *cell = v;
            }
        }
    }

    /// The members of an object whose `{` was just consumed, matched against trie node `id`.
    fn object(&mut self, id: usize) -> Res<()> {
        let trie = self.trie;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.expect(b'"', "`\"` starting a key")?;
            let key = self.string()?;
            let child = match key {
                Str::Raw(a, b) => trie.child(id, &self.b[a..b]),
                Str::Scratch => trie.child(id, self.scratch.as_bytes()),
            };
            self.skip_ws();
            self.expect(b':', "`:` after a key")?;
            self.skip_ws();
            match child {
                Some(c) => self.value(c)?,
                None => self.skip_value()?,
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                None => return Err(self.eof("`,` or `}`")),
                Some(_) => return Err(self.err("expected `,` or `}` after an object member")),
            }
        }
    }

    /// The value of a key that is in the trie, at node `id`.
    fn value(&mut self, id: usize) -> Res<()> {
        let trie = self.trie;
        let node = &trie.nodes[id];
        // A duplicate key replaces the earlier value's whole subtree.
        for &s in &node.below {
            self.put(Some(s), Value::Null);
        }
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let s = self.string()?;
                if node.slot.is_some() {
                    let text = match s {
                        Str::Raw(a, b) => &self.text[a..b],
                        Str::Scratch => self.scratch.as_str(),
                    };
                    let v = Value::Str(self.cache.get(text));
                    self.put(node.slot, v);
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let v = self.number(node.slot.is_some())?;
                self.put(node.slot, v);
            }
            Some(b'{') => {
                self.pos += 1;
                self.put(node.slot, Value::Null);
                self.enter()?;
                if node.children.is_empty() {
                    self.skip_object()?;
                } else {
                    self.object(id)?;
                }
            }
            Some(b'[') => {
                self.put(node.slot, Value::Null);
                self.skip_value()?;
            }
            Some(b't') => {
                self.literal(b"true")?;
                self.put(node.slot, Value::Bool(true));
            }
            Some(b'f') => {
                self.literal(b"false")?;
                self.put(node.slot, Value::Bool(false));
            }
            Some(b'n') => {
                self.literal(b"null")?;
                self.put(node.slot, Value::Null);
            }
            None => return Err(self.eof("a value")),
            Some(_) => return Err(self.err("expected a value")),
        }
        Ok(())
    }

    /// Checks and skips any value.
    fn skip_value(&mut self) -> Res<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string()?;
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number(false)?;
            }
            Some(b'{') => {
                self.pos += 1;
                self.enter()?;
                self.skip_object()?;
            }
            Some(b'[') => {
                self.pos += 1;
                self.enter()?;
                self.skip_array()?;
            }
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            None => return Err(self.eof("a value")),
            Some(_) => return Err(self.err("expected a value")),
        }
        Ok(())
    }

    /// Checks and skips the members of an object whose `{` was just consumed.
    fn skip_object(&mut self) -> Res<()> {
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.expect(b'"', "`\"` starting a key")?;
            self.string()?;
            self.skip_ws();
            self.expect(b':', "`:` after a key")?;
            self.skip_ws();
            self.skip_value()?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                None => return Err(self.eof("`,` or `}`")),
                Some(_) => return Err(self.err("expected `,` or `}` after an object member")),
            }
        }
    }

    /// Checks and skips the elements of an array whose `[` was just consumed.
    fn skip_array(&mut self) -> Res<()> {
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.skip_value()?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                None => return Err(self.eof("`,` or `]`")),
                Some(_) => return Err(self.err("expected `,` or `]` after an array element")),
            }
        }
    }

    /// `true`, `false` or `null`, exactly.
    #[inline]
    fn literal(&mut self, word: &'static [u8]) -> Res<()> {
        let end = self.pos + word.len();
        if self.b.get(self.pos..end) == Some(word) {
            self.pos = end;
            return Ok(());
        }
        Err(self.bad_literal(word))
    }

    #[cold]
    #[inline(never)]
    fn bad_literal(&self, word: &'static [u8]) -> DecodeError {
        let word = std::str::from_utf8(word).unwrap_or("?");
        let rest = &self.b[self.pos..];
        if rest.len() < word.len() && word.as_bytes().starts_with(rest) {
            return self.eof(&format!("`{word}`"));
        }
        self.err(&format!("expected `{word}`"))
    }

    /// A string whose opening `"` was just consumed, through its closing `"`.
    #[inline]
    fn string(&mut self) -> Res<Str> {
        let b = self.b;
        let start = self.pos;
        let mut p = start;
        while let Some(&c) = b.get(p) {
            if STRING_STOP[c as usize] {
                if c == b'"' {
                    self.pos = p + 1;
                    return Ok(Str::Raw(start, p));
                }
                self.pos = p;
                return self.string_slow(start);
            }
            p += 1;
        }
        self.pos = p;
        Err(self.eof("`\"` closing a string"))
    }

    /// The rest of a string from an escape or control character at `pos`, unescaped into
    /// the scratch buffer together with `text[start..pos]`.
    #[cold]
    #[inline(never)]
    fn string_slow(&mut self, start: usize) -> Res<Str> {
        self.scratch.clear();
        let mut run = start;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.eof("`\"` closing a string"));
            };
            match c {
                b'"' => {
                    self.scratch.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(Str::Scratch);
                }
                b'\\' => {
                    self.scratch.push_str(&self.text[run..self.pos]);
                    let at = self.pos;
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.eof("an escape character"));
                    };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape(at)?,
                        _ => return Err(self.err_at("invalid escape", at)),
                    };
                    self.scratch.push(ch);
                    run = self.pos;
                }
                0..=0x1f => {
                    return Err(self.err("control character (U+0000 to U+001F) in a string"));
                }
                _ => self.pos += 1,
            }
        }
    }

    /// The character of a `\u` escape (and of the low-surrogate escape that must follow a
    /// high surrogate) whose `\u` started at `at`.
    fn unicode_escape(&mut self, at: usize) -> Res<char> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => {
                return Err(self.err_at("lone low surrogate in a \\u escape", at));
            }
            0xD800..=0xDBFF => {
                if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    if self.pos + 2 > self.b.len() && b"\\u".starts_with(&self.b[self.pos..]) {
                        return Err(self.eof("a \\u escape of a low surrogate"));
                    }
                    return Err(self.err_at("lone high surrogate in a \\u escape", at));
                }
                self.pos += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.err_at("lone high surrogate in a \\u escape", at));
                }
                0x1_0000 + ((u32::from(n) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
            }
            _ => u32::from(n),
        };
        char::from_u32(code).ok_or_else(|| self.err_at("invalid \\u escape", at))
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Res<u16> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let Some(c) = self.peek() else {
                return Err(self.eof("four hex digits after \\u"));
            };
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.err("expected a hex digit in a \\u escape")),
            };
            n = (n << 4) | u16::from(d);
            self.pos += 1;
        }
        Ok(n)
    }

    /// A number starting at `pos`. Its value is computed only if `want` (`Null` otherwise),
    /// but it is always checked, range included.
    #[inline]
    fn number(&mut self, want: bool) -> Res<Value> {
        let b = self.b;
        let start = self.pos;
        let mut p = start;
        let neg = b.get(p) == Some(&b'-');
        if neg {
            p += 1;
        }
        let mut v: u64 = 0;
        let int_start = p;
        match b.get(p) {
            Some(b'0') => {
                p += 1;
                if matches!(b.get(p), Some(b'0'..=b'9')) {
                    return Err(self.err_at("leading zero in a number", p - 1));
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(&c) = b.get(p) {
                    let d = c.wrapping_sub(b'0');
                    if d > 9 {
                        break;
                    }
                    v = v.wrapping_mul(10).wrapping_add(u64::from(d));
                    p += 1;
                }
            }
            None => {
                self.pos = p;
                return Err(self.eof("a digit"));
            }
            Some(_) => return Err(self.err_at("expected a digit in a number", p)),
        }
        let int_digits = p - int_start;
        let mut fraction = false;
        let mut exponent = false;
        if b.get(p) == Some(&b'.') {
            p += 1;
            p = self.digits(p, "a digit after the decimal point")?;
            fraction = true;
        }
        if matches!(b.get(p), Some(b'e' | b'E')) {
            p += 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            p = self.digits(p, "a digit in the exponent")?;
            exponent = true;
        }
        self.pos = p;
        // At most 19 digits cannot overflow u64, so `v` is exact.
        if !fraction && !exponent && int_digits <= 19 {
            if !want {
                return Ok(Value::Null);
            }
            return Ok(if !neg {
                match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Float(v as f64),
                }
            } else if v == 0 {
                Value::Float(-0.0)
            } else if v <= 1 << 63 {
                Value::Int((v as i64).wrapping_neg())
            } else {
                Value::Float(-(v as f64))
            });
        }
        // Without an exponent, fewer than 309 integer digits keep it below f64::MAX.
        if !want && !exponent && int_digits < 309 {
            return Ok(Value::Null);
        }
        match self.text[start..p].parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(self.err_at("number out of range", start)),
        }
    }

    /// One or more digits from `p`; the position after them.
    #[inline]
    fn digits(&mut self, mut p: usize, what: &str) -> Res<usize> {
        let b = self.b;
        if !matches!(b.get(p), Some(b'0'..=b'9')) {
            self.pos = p;
            return Err(if p == b.len() {
                self.eof(what)
            } else {
                self.err(&format!("expected {what}"))
            });
        }
        while matches!(b.get(p), Some(b'0'..=b'9')) {
            p += 1;
        }
        Ok(p)
    }
}

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
//! a fraction or an exponent becomes [`Value::Float`], parsed exactly (by `str::parse`, or by
//! the exact fast path that is its own first step); `-0` is the float `-0.0`, as in
//! `serde_json`. Strings go through the [`StrCache`] (no allocation when a string has no
//! escapes and hits the cache); `true`/`false`/`null` as such. An object or an array at a path
//! leaves that slot `null`; an object at a prefix path is descended into; a scalar at a path
//! that is also a prefix sets the slot. With duplicate keys the last one wins, for whole
//! subtrees too: the row is what walking the paths through the parsed document
//! (`serde_json::Value`) would give.
//!
//! Speed comes from doing little per byte and per token, without `unsafe`: strings and digit
//! runs are scanned eight bytes at a time in a `u64`; a key the trie knows is usually matched,
//! closing quote included, by one masked compare of the next eight input bytes, before any
//! scanning (other keys of up to eight bytes are looked up as one word); plain numbers (up to
//! 15 digits, no exponent) are converted straight from those words with exact arithmetic, the
//! rest through `str::parse`; and errors are only described (formatted) once the scan has
//! stopped, so the hot path carries a one-word error type.

use hashbrown::HashMap;

use crate::bytes::padded_word;
use crate::value::Value;

mod strings;
pub use strings::{shared_str_eq, StrCache};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not a JSON object, or malformed JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The time field is absent or null.
    #[error("missing time field `{0}`")]
    MissingTime(String),
    /// The time field is neither epoch milliseconds nor an RFC 3339 string.
    #[error("time field `{field}` is {found}, expected integer epoch milliseconds or an RFC 3339 string")]
    BadTime {
        /// The time field's path.
        field: String,
        /// What was found.
        found: String,
    },
    /// A key field is absent or null (or an object or an array, which read as null): as
    /// Flink's key selector fails on a null key, the record has no partition to go to.
    #[error("missing key field `{0}` (absent, null, or an object or array)")]
    MissingKey(String),
    /// The source could not read the record as text: a line that is not UTF-8, or longer
    /// than the line limit (the reason says which, and where).
    #[error("{0}")]
    Unreadable(String),
    /// The time is `i64::MAX` milliseconds, which stands for the end of input (the
    /// watermark that decides every window), so no event can have it.
    #[error("time field `{0}` is {max}, the end of time (the latest event time is {latest})", max = i64::MAX, latest = i64::MAX - 1)]
    TimeOutOfRange(String),
}

#[cfg(any(test, feature = "internals"))]
pub mod oracle;

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
    /// Children whose key has at most 7 bytes and needs no escaping, matched together with
    /// the closing quote straight from the input, before any scanning.
    fused: Vec<FusedKey>,
    /// Children whose key has at most 8 bytes, matched as one word.
    short: Vec<ShortKey>,
    /// Children with longer keys.
    long: Vec<(Box<[u8]>, u32)>,
    /// All children, hashed, once there are more than [`LINEAR_MAX`].
    index: Option<HashMap<Box<[u8]>, u32>>,
    /// Slots of all paths strictly below this node, cleared when a duplicate key replaces
    /// the subtree.
    below: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct ShortKey {
    /// The key's bytes as a little-endian word, zero-padded.
    word: u64,
    len: u32,
    node: u32,
}

#[derive(Debug, Clone, Copy)]
struct FusedKey {
    /// The key's bytes and the closing `"` as a little-endian word, zero-padded.
    word: u64,
    /// The low bytes that `word` covers.
    mask: u64,
    len: u32,
    node: u32,
}

impl Default for FieldTrie {
    fn default() -> Self {
        FieldTrie {
            nodes: vec![Node::default()],
        }
    }
}

impl Node {
    /// The child under `key`; `word` is [`padded_word`]`(key)` when the key has at most 8 bytes.
    #[inline]
    fn child(&self, key: &[u8], word: u64) -> Option<usize> {
        if self.index.is_none() && key.len() <= 8 {
            let len = key.len() as u32;
            for k in &self.short {
                if k.word == word && k.len == len {
                    return Some(k.node as usize);
                }
            }
            return None;
        }
        self.child_slow(key)
    }

    #[inline(never)]
    fn child_slow(&self, key: &[u8]) -> Option<usize> {
        if let Some(index) = &self.index {
            return index.get(key).map(|&c| c as usize);
        }
        if key.len() <= 8 {
            return self.child(key, padded_word(key));
        }
        self.long
            .iter()
            .find(|(k, _)| **k == *key)
            .map(|&(_, c)| c as usize)
    }
}

impl FieldTrie {
    /// An empty trie: decoding only checks the JSON.
    #[cfg(any(test, feature = "internals"))]
    pub fn new() -> FieldTrie {
        FieldTrie::default()
    }

    /// Adds `path` (its keys from the outside in) with its row slot. The empty path names the
    /// event object itself, which is never a value: its slot stays `null`.
    pub fn insert(&mut self, path: &[String], slot: usize) {
        let mut id = 0usize;
        for key in path {
            let key = key.as_bytes();
            self.nodes[id].below.push(slot);
            id = match self.nodes[id].child_slow(key) {
                Some(c) => c,
                None => {
                    let c = self.nodes.len();
                    let c32 = u32::try_from(c).expect("fewer than 2^32 schema paths");
                    self.nodes.push(Node::default());
                    let node = &mut self.nodes[id];
                    if key.len() <= 7 && !key.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20) {
                        let mut quoted = key.to_vec();
                        quoted.push(b'"');
                        node.fused.push(FusedKey {
                            word: padded_word(&quoted),
                            mask: LOW_BYTES[quoted.len()],
                            len: key.len() as u32,
                            node: c32,
                        });
                    }
                    if key.len() <= 8 {
                        node.short.push(ShortKey {
                            word: padded_word(key),
                            len: key.len() as u32,
                            node: c32,
                        });
                    } else {
                        node.long.push((key.into(), c32));
                    }
                    if node.short.len() + node.long.len() > LINEAR_MAX {
                        node.fused.clear();
                        let mut index = HashMap::new();
                        for k in &node.short {
                            let bytes = k.word.to_le_bytes();
                            index.insert(bytes[..k.len as usize].into(), k.node);
                        }
                        for (k, n) in &node.long {
                            index.insert(k.clone(), *n);
                        }
                        node.index = Some(index);
                    }
                    c
                }
            };
        }
        if id != 0 {
            self.nodes[id].slot = Some(slot);
        }
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
            error: None,
        };
        match s.top() {
            Ok(()) => Ok(()),
            Err(Stop) => Err(s
                .error
                .take()
                .unwrap_or_else(|| DecodeError::Json("malformed JSON".into()))),
        }
    }
}

/// The low `n` bytes of a word, for `n` in 0..=8.
const LOW_BYTES: [u64; 9] = [
    0,
    0xff,
    0xffff,
    0xff_ffff,
    0xffff_ffff,
    0xff_ffff_ffff,
    0xffff_ffff_ffff,
    0xff_ffff_ffff_ffff,
    u64::MAX,
];

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `p`, little-endian, if there are eight.
#[inline]
fn load8(b: &[u8], p: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(p..p.wrapping_add(8))?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// The eight bytes at `p`, little-endian, with zero bytes past the end of `b`.
#[inline]
fn word_at(b: &[u8], p: usize) -> u64 {
    match load8(b, p) {
        Some(w) => w,
        None => word_at_end(b, p),
    }
}

/// [`word_at`] within eight bytes of the end: the last eight bytes shifted down, so one load
/// still does. The zero bytes shifted in end a digit run and a string's plain run just as the
/// end of the line does.
#[inline(never)]
fn word_at_end(b: &[u8], p: usize) -> u64 {
    let left = b.len().saturating_sub(p);
    if left == 0 {
        return 0;
    }
    match load8(b, b.len().wrapping_sub(8)) {
        Some(w) => w >> (8 * (8 - left) as u32),
        None => padded_word(&b[p..]),
    }
}

/// A mask whose lowest set bit is in the first byte of `w` that ends a string's plain run:
/// `"`, `\` or a control character (zero if there is none). Bits above the lowest may be
/// spurious (borrows only travel upwards), so only the lowest is meaningful.
#[inline]
fn string_stops(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(ONES) & !quote;
    let zero_backslash = backslash.wrapping_sub(ONES) & !backslash;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (zero_quote | zero_backslash | control) & HIGHS
}

/// How many of the bytes of `w`, from the first, are ASCII digits (0 to 8).
#[inline]
fn digit_count(w: u64) -> usize {
    const HIGH_NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let threes = ONES * 0x30;
    // A digit has high nibble 3, and still has after adding 6 (no carry leaves a digit byte,
    // so bytes before the first non-digit are judged exactly).
    let bad = ((w & HIGH_NIBBLES) ^ threes) | ((w.wrapping_add(ONES * 6) & HIGH_NIBBLES) ^ threes);
    (bad.trailing_zeros() / 8) as usize
}

/// The value of eight ASCII digits (or NUL bytes, read as zeros), the first byte the most
/// significant.
#[inline]
fn eight_digits(w: u64) -> u64 {
    let w = (w & (ONES * 0x0f)).wrapping_mul(10 * 256 + 1) >> 8;
    let w = (w & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 * 65536 + 1) >> 16;
    (w & 0x0000_ffff_0000_ffff).wrapping_mul(10000 * (1 << 32) + 1) >> 32
}

/// The run of ASCII digits from `p`: where it ends, and `acc` with those digits appended
/// (wrapping: exact while `acc` and the run have at most 19 digits together).
#[inline]
fn digit_run(b: &[u8], mut p: usize, mut acc: u64) -> (usize, u64) {
    while let Some(w) = load8(b, p) {
        let n = digit_count(w);
        if n == 0 {
            return (p, acc);
        }
        // Move the n digits to the top of the word; the zero bytes below read as zeros.
        let v = eight_digits(w << (64 - 8 * n as u32));
        acc = acc.wrapping_mul(POW10_U64[n]).wrapping_add(v);
        p += n;
        if n < 8 {
            return (p, acc);
        }
    }
    // Within eight bytes of the end: one at a time.
    while let Some(&c) = b.get(p) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
        p += 1;
    }
    (p, acc)
}

const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Exact powers of ten, for the fast path of float parsing.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Where a scanned string's text is.
enum Str {
    /// `text[start..end]`: no escapes.
    Raw(usize, usize),
    /// Unescaped into the scratch buffer.
    Scratch,
}

/// The scan stopped at an error, described in [`Scanner::error`].
#[derive(Debug)]
struct Stop;

type Res<T> = Result<T, Stop>;

struct Scanner<'a, 'r> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: usize,
    trie: &'a FieldTrie,
    row: &'r mut [Value],
    cache: &'r mut StrCache,
    scratch: String,
    error: Option<DecodeError>,
}

impl Scanner<'_, '_> {
    /// The whole line: one object with optional whitespace around it.
    fn top(&mut self) -> Res<()> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.enter()?;
                self.object(0)?;
            }
            None => return Err(self.eof("a JSON object")),
            Some(_) => return Err(self.fail("expected a JSON object")),
        }
        self.skip_ws();
        if self.pos != self.b.len() {
            return Err(self.fail("trailing characters after the object"));
        }
        Ok(())
    }

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

    /// Stops with an error at the current position.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, what: &str) -> Stop {
        self.fail_at(what, self.pos)
    }

    #[cold]
    #[inline(never)]
    fn fail_at(&mut self, what: &str, at: usize) -> Stop {
        let found = match self.text.get(at..).and_then(|t| t.chars().next()) {
            Some(c) => format!(", found {c:?}"),
            None => String::new(),
        };
        self.error = Some(DecodeError::Json(format!("{what} at byte {at}{found}")));
        Stop
    }

    /// Stops because the line ended while `what` was expected.
    #[cold]
    #[inline(never)]
    fn eof(&mut self, what: &str) -> Stop {
        self.error = Some(DecodeError::Json(format!(
            "unexpected end of line at byte {}, expected {what}",
            self.b.len()
        )));
        Stop
    }

    /// Stops with "expected `what`" (or the end of the line) at the current position.
    #[cold]
    #[inline(never)]
    fn expected(&mut self, what: &str) -> Stop {
        if self.pos >= self.b.len() {
            self.eof(what)
        } else {
            self.fail(&format!("expected {what}"))
        }
    }

    /// Consumes the next byte if it is `c`, else stops with "expected `what`".
    #[inline]
    fn expect(&mut self, c: u8, what: &str) -> Res<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            return Ok(());
        }
        Err(self.expected(what))
    }

    /// One level deeper (an object or array was just opened).
    #[inline]
    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.pos - 1;
            return Err(self.fail_at(&format!("nesting deeper than {MAX_DEPTH} levels"), at));
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

    /// After a member's value: `,` (then whitespace) or the closing `close`. Returns whether
    /// the container closed.
    #[inline]
    fn next_or_close(&mut self, close: u8) -> Res<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(true)
            }
            _ => Err(self.expected(if close == b'}' {
                "`,` or `}` after an object member"
            } else {
                "`,` or `]` after an array element"
            })),
        }
    }

    /// The members of an object whose `{` was just consumed, matched against trie node `id`.
    fn object(&mut self, id: usize) -> Res<()> {
        let node = &self.trie.nodes[id];
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.expect(b'"', "`\"` starting a key")?;
            let child = 'key: {
                // Most keys the trie knows come plain: match them, closing quote included,
                // without scanning.
                if !node.fused.is_empty() {
                    let w = word_at(self.b, self.pos);
                    for k in &node.fused {
                        if w & k.mask == k.word {
                            self.pos += k.len as usize + 1;
                            break 'key Some(k.node as usize);
                        }
                    }
                }
                match self.string()? {
                    Str::Raw(a, e) => {
                        let key = &self.b[a..e];
                        match LOW_BYTES.get(key.len()) {
                            Some(&mask) => node.child(key, word_at(self.b, a) & mask),
                            None => node.child_slow(key),
                        }
                    }
                    Str::Scratch => node.child_slow(self.scratch.as_bytes()),
                }
            };
            self.skip_ws();
            self.expect(b':', "`:` after a key")?;
            self.skip_ws();
            match child {
                Some(c) => self.value(c)?,
                None => self.skip_value()?,
            }
            if self.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    /// The value of a key that is in the trie, at node `id`.
    fn value(&mut self, id: usize) -> Res<()> {
        let node = &self.trie.nodes[id];
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
                        Str::Raw(a, e) => &self.text[a..e],
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
                if node.short.is_empty() && node.long.is_empty() {
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
            _ => return Err(self.expected("a value")),
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
            _ => return Err(self.expected("a value")),
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
            if self.next_or_close(b'}')? {
                return Ok(());
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
            if self.next_or_close(b']')? {
                return Ok(());
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
    fn bad_literal(&mut self, word: &'static [u8]) -> Stop {
        let word = std::str::from_utf8(word).unwrap_or("?");
        let rest = &self.b[self.pos..];
        if rest.len() < word.len() && word.as_bytes().starts_with(rest) {
            return self.eof(&format!("`{word}`"));
        }
        self.fail(&format!("expected `{word}`"))
    }

    /// A string whose opening `"` was just consumed, through its closing `"`.
    #[inline]
    fn string(&mut self) -> Res<Str> {
        let b = self.b;
        let start = self.pos;
        let mut p = start;
        loop {
            // Past the end the word has zero bytes, which stop the run like control characters.
            let stops = string_stops(word_at(b, p));
            if stops != 0 {
                p += (stops.trailing_zeros() / 8) as usize;
                break;
            }
            p += 8;
        }
        if b.get(p) == Some(&b'"') {
            self.pos = p + 1;
            return Ok(Str::Raw(start, p));
        }
        self.pos = p;
        self.string_slow(start)
    }

    /// The rest of a string from an escape, a control character or the end of the line at
    /// `pos`, unescaped into the scratch buffer together with `text[start..pos]`.
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
                        _ => return Err(self.fail_at("invalid escape", at)),
                    };
                    self.scratch.push(ch);
                    run = self.pos;
                }
                0..=0x1f => {
                    return Err(self.fail("control character (U+0000 to U+001F) in a string"));
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
                return Err(self.fail_at("lone low surrogate in a \\u escape", at));
            }
            0xD800..=0xDBFF => {
                if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    if self.pos + 2 > self.b.len() && b"\\u".starts_with(&self.b[self.pos..]) {
                        return Err(self.eof("a \\u escape of a low surrogate"));
                    }
                    return Err(self.fail_at("lone high surrogate in a \\u escape", at));
                }
                self.pos += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.fail_at("lone high surrogate in a \\u escape", at));
                }
                0x1_0000 + ((u32::from(n) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
            }
            _ => u32::from(n),
        };
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => Err(self.fail_at("invalid \\u escape", at)),
        }
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Res<u16> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.expected("a hex digit in a \\u escape")),
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
        match self.plain_number(want) {
            Some(v) => Ok(v),
            None => self.any_number(want),
        }
    }

    /// The common numbers, straight through: up to 15 integer digits and up to 7 fraction
    /// digits (15 in all for a float), no exponent. `None`, having consumed nothing, for
    /// anything else, valid or not: the full parser takes those.
    #[inline(always)]
    fn plain_number(&mut self, want: bool) -> Option<Value> {
        let b = self.b;
        let mut p = self.pos;
        let neg = b.get(p) == Some(&b'-');
        if neg {
            p += 1;
        }
        // Past the end the words have zero bytes, which end a digit run.
        let w = word_at(b, p);
        let mut n = digit_count(w);
        // No digit, or a leading zero before another digit.
        if n == 0 || (w & 0xff == u64::from(b'0') && n > 1) {
            return None;
        }
        let mut mant;
        let mut next;
        if n < 8 {
            mant = eight_digits(w << (64 - 8 * n as u32));
            next = (w >> (8 * n as u32)) as u8;
        } else {
            let w2 = word_at(b, p + 8);
            let n2 = digit_count(w2);
            if n2 == 8 {
                return None;
            }
            let low = eight_digits(w2.checked_shl(64 - 8 * n2 as u32).unwrap_or(0));
            mant = eight_digits(w) * POW10_U64[n2] + low;
            next = w2.checked_shr(8 * n2 as u32).unwrap_or(0) as u8;
            n = 8 + n2;
        }
        p += n;
        let mut frac = 0;
        if next == b'.' {
            let w = word_at(b, p + 1);
            frac = digit_count(w);
            if frac == 0 || frac == 8 {
                return None;
            }
            mant = mant
                .wrapping_mul(POW10_U64[frac])
                .wrapping_add(eight_digits(w << (64 - 8 * frac as u32)));
            next = (w >> (8 * frac as u32)) as u8;
            p += 1 + frac;
        }
        if next | 0x20 == b'e' {
            return None;
        }
        let v = if !want {
            Value::Null
        } else if frac == 0 {
            // At most 15 digits: an i64.
            match (neg, mant) {
                (false, m) => Value::Int(m as i64),
                (true, 0) => Value::Float(-0.0),
                (true, m) => Value::Int(-(m as i64)),
            }
        } else if n + frac <= 15 {
            // Exact: the mantissa is below 10^15 < 2^53 and 10^frac is an exact double, so
            // the one division rounds correctly.
            let f = mant as f64 / POW10[frac];
            Value::Float(if neg { -f } else { f })
        } else {
            return None;
        };
        self.pos = p;
        Some(v)
    }

    /// Any number, checked in full (the general path behind [`Scanner::plain_number`]).
    #[inline(never)]
    fn any_number(&mut self, want: bool) -> Res<Value> {
        let b = self.b;
        let start = self.pos;
        let mut p = start;
        let neg = b.get(p) == Some(&b'-');
        if neg {
            p += 1;
        }
        // The digits, integer part and fraction, as one integer (exact while at most 19).
        let mut mant: u64 = 0;
        let int_start = p;
        match b.get(p) {
            Some(b'0') => {
                p += 1;
                if matches!(b.get(p), Some(b'0'..=b'9')) {
                    return Err(self.fail_at("leading zero in a number", p - 1));
                }
            }
            Some(b'1'..=b'9') => (p, mant) = digit_run(b, p, 0),
            _ => {
                self.pos = p;
                return Err(self.expected("a digit in a number"));
            }
        }
        let int_digits = p - int_start;
        let next = b.get(p).copied();
        if next != Some(b'.') && next != Some(b'e') && next != Some(b'E') {
            self.pos = p;
            // At most 19 digits cannot overflow u64, so `mant` is exact.
            if int_digits <= 19 {
                if !want {
                    return Ok(Value::Null);
                }
                return Ok(if !neg {
                    match i64::try_from(mant) {
                        Ok(i) => Value::Int(i),
                        Err(_) => Value::Float(mant as f64),
                    }
                } else if mant == 0 {
                    Value::Float(-0.0)
                } else if mant <= 1 << 63 {
                    Value::Int((mant as i64).wrapping_neg())
                } else {
                    Value::Float(-(mant as f64))
                });
            }
            // Fewer than 309 digits keep it below f64::MAX.
            if !want && int_digits < 309 {
                return Ok(Value::Null);
            }
            return self.float_text(start, p);
        }
        let mut frac_digits = 0;
        if next == Some(b'.') {
            let (q, m) = digit_run(b, p + 1, mant);
            frac_digits = q - (p + 1);
            p = q;
            mant = m;
            if frac_digits == 0 {
                self.pos = p;
                return Err(self.expected("a digit after the decimal point"));
            }
        }
        let mut exp: i64 = 0;
        let mut has_exp = false;
        if matches!(b.get(p), Some(b'e' | b'E')) {
            has_exp = true;
            p += 1;
            let exp_neg = b.get(p) == Some(&b'-');
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            let exp_start = p;
            while let Some(&c) = b.get(p) {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                exp = (exp * 10 + i64::from(d)).min(1 << 40);
                p += 1;
            }
            if p == exp_start {
                self.pos = p;
                return Err(self.expected("a digit in the exponent"));
            }
            if exp_neg {
                exp = -exp;
            }
        }
        self.pos = p;
        if !want {
            // Without an exponent, fewer than 309 integer digits keep it below f64::MAX.
            if !has_exp && int_digits < 309 {
                return Ok(Value::Null);
            }
            return self.float_text(start, p);
        }
        // Clinger's fast path, exact: a mantissa up to 2^53 and a power of ten up to 10^22
        // are both exact doubles, and one IEEE multiplication or division rounds correctly.
        // (It is the first step of `str::parse::<f64>` too, without its re-scan of the text.)
        let digits = int_digits + frac_digits;
        let e10 = exp - frac_digits as i64;
        if digits <= 19 && mant <= 1 << 53 && (-22..=22).contains(&e10) {
            let m = mant as f64;
            let f = if e10 >= 0 {
                m * POW10[e10 as usize]
            } else {
                m / POW10[(-e10) as usize]
            };
            return Ok(Value::Float(if neg { -f } else { f }));
        }
        self.float_text(start, p)
    }

    /// The number `text[start..end]`, already checked against the grammar, as a float; out of
    /// `f64` range is an error.
    #[cold]
    #[inline(never)]
    fn float_text(&mut self, start: usize, end: usize) -> Res<Value> {
        match self.text[start..end].parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(self.fail_at("number out of range", start)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::oracle::{close, near_f64_limit, reference, same};
    use super::*;
    use crate::event::Schema;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn schema(paths: &[&str]) -> Schema {
        let mut s = Schema::new();
        for p in paths {
            let parts: Vec<String> = if p.is_empty() {
                Vec::new()
            } else {
                p.split('.').map(str::to_string).collect()
            };
            s.slot_of(&parts);
        }
        s
    }

    fn decode(paths: &[&str], json: &str) -> Result<Vec<Value>, DecodeError> {
        schema(paths).decode_row(json).map(Vec::from)
    }

    fn assert_row(got: &[Value], want: &[Value]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(same(g, w), "slot {i}: got {g:?}, want {w:?}");
        }
    }

    fn serde_accepts(json: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(json).is_ok_and(|v| v.is_object())
    }

    fn s(x: &str) -> Value {
        Value::Str(Arc::from(x))
    }

    #[test]
    fn every_value_type() {
        let paths = [
            "i", "n", "z", "nz", "max", "min", "over", "under", "huge", "f", "e", "E", "s", "t",
            "fa", "nu", "o", "a", "absent",
        ];
        let row = decode(
            &paths,
            r#"{"i":123,"n":-5,"z":0,"nz":-0,"max":9223372036854775807,
                "min":-9223372036854775808,"over":9223372036854775808,
                "under":-9223372036854775809,"huge":123456789012345678901234567890,
                "f":12.34,"e":1e3,"E":-2.5E-3,"s":"k0042","t":true,"fa":false,"nu":null,
                "o":{"x":1},"a":[1,2]}"#,
        )
        .unwrap();
        assert_row(
            &row,
            &[
                Value::Int(123),
                Value::Int(-5),
                Value::Int(0),
                Value::Float(-0.0),
                Value::Int(i64::MAX),
                Value::Int(i64::MIN),
                Value::Float(9223372036854775808.0),
                Value::Float(-9223372036854775809.0),
                Value::Float(123456789012345678901234567890.0),
                Value::Float(12.34),
                Value::Float(1000.0),
                Value::Float(-0.0025),
                s("k0042"),
                Value::Bool(true),
                Value::Bool(false),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        );
    }

    #[test]
    fn floats_are_exact() {
        for t in [
            "0.1",
            "2.2250738585072011e-308",
            "4.9406564584124654e-324",
            "1.7976931348623157e308",
            "9007199254740993.0",
            "123456789012345678901234567890.5e-3",
            "1e-400",
            "-1e-400",
            "0e999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "-18446744073709551617",
        ] {
            let row = decode(&["x"], &format!(r#"{{"x":{t}}}"#)).unwrap();
            let want = t.parse::<f64>().unwrap();
            assert!(same(&row[0], &Value::Float(want)), "{t}: {:?}", row[0]);
        }
    }

    #[test]
    fn numbers_out_of_range_are_rejected_even_when_skipped() {
        let big = format!("1{}", "0".repeat(400));
        for t in ["1e400", "-1e400", "1.8e308", "1e99999999999999999999", &big] {
            for paths in [&["x"][..], &[][..]] {
                let json = format!(r#"{{"x":{t}}}"#);
                let err = decode(paths, &json).unwrap_err();
                assert!(format!("{err}").contains("out of range"), "{t}: {err}");
                assert!(!serde_accepts(&json), "{t}");
            }
        }
    }

    #[test]
    fn escapes() {
        let row = decode(
            &["s", "u", "k\"e\\y/", "a"],
            r#"{"s":"q\"b\\s\/b\bf\fn\nr\rt\t","u":"\u0041\u00e9\u20AC\ud83d\ude00 é😀",
                "k\"e\\y\/":1,"\u0061":"plain"}"#,
        )
        .unwrap();
        assert_row(
            &row,
            &[
                s("q\"b\\s/b\u{8}f\u{c}n\nr\rt\t"),
                s("Aé€😀 é😀"),
                Value::Int(1),
                s("plain"),
            ],
        );
    }

    #[test]
    fn bad_escapes_and_control_characters_are_rejected_even_when_skipped() {
        for bad in [
            r#""\x""#,
            r#""\u12""#,
            r#""\u12G4""#,
            r#""\ud800""#,
            r#""\ud800x""#,
            r#""\ud800\n""#,
            r#""\ud800\u0041""#,
            r#""\ud800\ud800""#,
            r#""\udc00""#,
            r#""\'""#,
            "\"a\u{0}b\"",
            "\"a\nb\"",
            "\"a\tb\"",
            "\"\u{1f}\"",
        ] {
            for paths in [&["x"][..], &[][..]] {
                let json = format!(r#"{{"x":{bad}}}"#);
                assert!(decode(paths, &json).is_err(), "{json}");
                assert!(!serde_accepts(&json), "{json}");
                let json = format!(r#"{{{bad}:1}}"#);
                assert!(decode(paths, &json).is_err(), "{json}");
            }
        }
    }

    #[test]
    fn nested_paths_and_skipped_containers() {
        let row = decode(
            &["user.id", "a.b.c", "amount", "user.tags"],
            r#"{"x":[1,{"y":[2,[]]},"s",null,true,false,-1.5e3],"amount":12.5,
                "a":{"z":{"c":0},"b":{"c":"deep","d":{}}},
                "user":{"id":"u1","n":{"id":5},"tags":["t"]}}"#,
        )
        .unwrap();
        assert_row(&row, &[s("u1"), s("deep"), Value::Float(12.5), Value::Null]);
    }

    #[test]
    fn a_path_may_be_both_a_leaf_and_a_prefix() {
        let p = ["a", "a.b"];
        assert_row(
            &decode(&p, r#"{"a":{"b":1}}"#).unwrap(),
            &[Value::Null, Value::Int(1)],
        );
        assert_row(
            &decode(&p, r#"{"a":5}"#).unwrap(),
            &[Value::Int(5), Value::Null],
        );
        assert_row(&decode(&p, r#"{"a":"s"}"#).unwrap(), &[s("s"), Value::Null]);
        assert_row(
            &decode(&p, r#"{"a":[{"b":1}]}"#).unwrap(),
            &[Value::Null, Value::Null],
        );
    }

    #[test]
    fn duplicate_keys_last_wins_for_whole_subtrees() {
        let p = ["a", "a.b", "a.c", "x"];
        let cases = [
            (
                r#"{"a":1,"a":2}"#,
                [Value::Int(2), Value::Null, Value::Null, Value::Null],
            ),
            (
                r#"{"a":{"b":1},"a":3}"#,
                [Value::Int(3), Value::Null, Value::Null, Value::Null],
            ),
            (
                r#"{"a":{"b":1},"a":{"c":2}}"#,
                [Value::Null, Value::Null, Value::Int(2), Value::Null],
            ),
            (
                r#"{"a":1,"a":{"b":2}}"#,
                [Value::Null, Value::Int(2), Value::Null, Value::Null],
            ),
            (
                r#"{"a":{"b":1,"b":true},"x":1,"x":null}"#,
                [Value::Null, Value::Bool(true), Value::Null, Value::Null],
            ),
        ];
        let sc = schema(&p);
        for (json, want) in cases {
            assert_row(&sc.decode_row(json).unwrap(), &want);
            let doc: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_row(&reference(&doc, sc.paths()), &want);
        }
    }

    #[test]
    fn whitespace_anywhere_between_tokens() {
        let row = decode(
            &["a", "b.c"],
            " \t\r\n{ \"a\" :\n1 , \"b\" : { \"c\" : [ 1 , { } , [ ] ] } , \"d\" : { } }\r\n ",
        )
        .unwrap();
        assert_row(&row, &[Value::Int(1), Value::Null]);
        assert_row(&decode(&["a"], "{}").unwrap(), &[Value::Null]);
        assert_row(&decode(&["a"], " { } ").unwrap(), &[Value::Null]);
    }

    #[test]
    fn many_children_use_the_hash_index() {
        let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        let paths: Vec<&str> = names.iter().map(String::as_str).collect();
        let json = format!(
            "{{{}}}",
            names
                .iter()
                .enumerate()
                .rev()
                .map(|(i, n)| format!("\"{n}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let row = decode(&paths, &json).unwrap();
        for (i, v) in row.iter().enumerate() {
            assert!(same(v, &Value::Int(i as i64)));
        }
    }

    #[test]
    fn the_empty_path_and_short_rows_are_harmless() {
        assert_row(
            &decode(&["", "a"], r#"{"a":1}"#).unwrap(),
            &[Value::Null, Value::Int(1)],
        );
        let sc = schema(&["a", "b", "c"]);
        let mut row = vec![Value::Null; 1];
        let mut trie = FieldTrie::new();
        for (slot, p) in sc.paths().iter().enumerate() {
            trie.insert(p, slot);
        }
        trie.decode_into(r#"{"c":3,"a":1}"#, &mut row, &mut StrCache::new())
            .unwrap();
        assert_row(&row, &[Value::Int(1)]);
    }

    #[test]
    fn repeated_strings_share_one_allocation() {
        let sc = schema(&["k", "e"]);
        let mut cache = StrCache::new();
        let r1 = sc
            .decode_row_with(r#"{"k":"k0042","e":"a\nb"}"#, &mut cache)
            .unwrap();
        let r2 = sc
            .decode_row_with(r#"{"k":"k0042","e":"a\u000ab"}"#, &mut cache)
            .unwrap();
        match (&r1[0], &r2[0], &r1[1], &r2[1]) {
            (Value::Str(a), Value::Str(b), Value::Str(c), Value::Str(d)) => {
                assert!(Arc::ptr_eq(a, b));
                assert!(Arc::ptr_eq(c, d));
                assert_eq!(&**c, "a\nb");
            }
            other => panic!("{other:?}"),
        }
    }

    const MALFORMED: &[&str] = &[
        "",
        "   ",
        "[1]",
        "[]",
        "1",
        "-1",
        "\"s\"",
        "true",
        "null",
        "{",
        "}",
        "{}}",
        "{}{}",
        "{} x",
        "{},",
        "{\"a\":1}x",
        "{\"a\":01}",
        "{\"a\":-01}",
        "{\"a\":00}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1.e3}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":+1}",
        "{\"a\":-}",
        "{\"a\":- 1}",
        "{\"a\":1 2}",
        "{\"a\":0x10}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\":1,,\"b\":2}",
        "{\"a\" 1}",
        "{\"a\"::1}",
        "{\"a\":}",
        "{\"a\"}",
        "{a:1}",
        "{'a':1}",
        "{1:1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{\"a\":[1 2]}",
        "{\"a\":[}",
        "{\"a\":{]}",
        "{\"a\":{\"b\":1]}",
        "{\"a\":tru}",
        "{\"a\":truee}",
        "{\"a\":True}",
        "{\"a\":nul}",
        "{\"a\":fals}",
        "{\"a\":\"x}",
        "{\"a\":\"x\\\"}",
        "{\"a\":'x'}",
        "{\"a\":1}\u{0}",
        "\u{feff}{}",
        "{\u{a0}}",
        "{\"a\":\u{b}1}",
    ];

    #[test]
    fn malformed_lines_are_rejected_like_serde_json_does() {
        for paths in [&["a", "b", "a.b"][..], &[][..]] {
            for &bad in MALFORMED {
                let r = decode(paths, bad);
                assert!(
                    matches!(r, Err(DecodeError::Json(_))),
                    "accepted {bad:?}: {r:?}"
                );
                assert!(!serde_accepts(bad), "serde_json accepts {bad:?}");
            }
        }
    }

    #[test]
    fn every_truncation_of_a_valid_line_is_rejected() {
        let line = r#" {"id":123,"key":"k\u00e9\"2","ts":1700000000123,"type":"A","price":-12.34e-1,"o":{"a":[true,false,null,{}],"b":"é😀"}} "#;
        let trimmed = line.trim_end();
        for paths in [&["key", "price", "o.a", "o.b"][..], &[][..]] {
            assert!(decode(paths, line).is_ok());
            for cut in (0..trimmed.len()).filter(|&i| trimmed.is_char_boundary(i)) {
                let t = &trimmed[..cut];
                assert!(decode(paths, t).is_err(), "accepted a truncation: {t:?}");
                assert!(!serde_accepts(t));
            }
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let msg = |json: &str| match decode(&["a"], json) {
            Err(DecodeError::Json(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            msg(r#"{"a" 1}"#),
            "expected `:` after a key at byte 5, found '1'"
        );
        assert_eq!(msg("[1]"), "expected a JSON object at byte 0, found '['");
        assert_eq!(
            msg(r#"{"a":1} x"#),
            "trailing characters after the object at byte 8, found 'x'"
        );
        assert_eq!(
            msg(r#"{"a":01}"#),
            "leading zero in a number at byte 5, found '0'"
        );
        assert_eq!(
            msg(r#"{"a":"\q"}"#),
            "invalid escape at byte 6, found '\\\\'"
        );
        assert_eq!(
            msg(r#"{"a":1"#),
            "unexpected end of line at byte 6, expected `,` or `}` after an object member"
        );
        assert!(msg("").contains("end of line at byte 0"));
        let e = decode(&["a"], "{\"a\":1,}").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("malformed JSON: expected `\"` starting a key at byte 7"));
    }

    fn nested(levels: usize, open: &str, close: &str) -> String {
        format!(
            "{{\"a\":{}1{}}}",
            open.repeat(levels - 1),
            close.repeat(levels - 1)
        )
    }

    #[test]
    fn nesting_depth_is_bounded_as_in_serde_json() {
        for (open, close) in [("[", "]"), ("{\"a\":", "}"), ("[{\"b\":", "}]")] {
            for levels in [1, 2, 60, 126, 127, 128, 129, 200] {
                let json = nested(levels, open, close);
                let depth = json.bytes().filter(|&c| c == b'{' || c == b'[').count();
                for paths in [&["a.a.a"][..], &[][..]] {
                    let ok = decode(paths, &json).is_ok();
                    assert_eq!(ok, depth <= MAX_DEPTH, "depth {depth}");
                    assert_eq!(ok, serde_accepts(&json), "depth {depth}");
                }
            }
        }
        // Very deep input errs quickly instead of overflowing the stack.
        let deep = format!("{{\"a\":{}", "[".repeat(1_000_000));
        assert!(decode(&["a"], &deep)
            .unwrap_err()
            .to_string()
            .contains("nesting deeper"));
    }

    // ---- property tests against serde_json ----

    const KEYS: &[&str] = &["a", "b", "id", "é", "", "q\"", "x\\y"];

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(KEYS).prop_map(str::to_string)
    }

    fn scalar() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<u64>().prop_map(J::from),
            (-1000i64..1000).prop_map(J::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(J::Null, J::Number)),
            (-1.0e6..1.0e6f64).prop_map(J::from),
            "\\PC{0,6}".prop_map(J::String),
            ".{0,4}".prop_map(J::String),
            prop::sample::select(vec!["k0042", "A", "", "\u{0}\u{1f}\"\\/", "é😀"])
                .prop_map(|s| J::String(s.to_string())),
        ]
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        scalar().prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
                prop::collection::vec((key(), inner), 0..5)
                    .prop_map(|kv| J::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = serde_json::Value> {
        prop::collection::vec((key(), json_value()), 0..7)
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect()))
    }

    fn schema_paths() -> impl Strategy<Value = Vec<Vec<String>>> {
        prop::collection::vec(prop::collection::vec(key(), 1..4), 0..4)
    }

    fn schema_of(paths: &[Vec<String>]) -> Schema {
        let mut s = Schema::new();
        for p in paths {
            s.slot_of(p);
        }
        s
    }

    /// Every key path of `d` (through objects only), so that schemas can pick paths that hit.
    fn doc_paths(d: &Doc, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Doc::Obj(members) = d {
            for (k, v) in members {
                prefix.push(k.clone());
                out.push(prefix.clone());
                doc_paths(v, prefix, out);
                prefix.pop();
            }
        }
    }

    fn value_paths(v: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let serde_json::Value::Object(members) = v {
            for (k, v) in members {
                prefix.push(k.clone());
                out.push(prefix.clone());
                value_paths(v, prefix, out);
                prefix.pop();
            }
        }
    }

    /// `random` plus the paths of `present` that `picks` choose.
    fn mix_paths(
        mut random: Vec<Vec<String>>,
        present: &[Vec<String>],
        picks: &[prop::sample::Index],
    ) -> Vec<Vec<String>> {
        if !present.is_empty() {
            random.extend(picks.iter().map(|ix| ix.get(present).clone()));
        }
        random
    }

    fn picks() -> impl Strategy<Value = Vec<prop::sample::Index>> {
        prop::collection::vec(any::<prop::sample::Index>(), 0..6)
    }

    /// A document whose objects may repeat keys, rendered with chosen spacing and escaping.
    #[derive(Debug, Clone)]
    enum Doc {
        Leaf(serde_json::Value),
        Arr(Vec<Doc>),
        Obj(Vec<(String, Doc)>),
    }

    fn doc() -> impl Strategy<Value = Doc> {
        scalar()
            .prop_map(Doc::Leaf)
            .prop_recursive(3, 24, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Doc::Arr),
                    prop::collection::vec((key(), inner), 0..5).prop_map(Doc::Obj),
                ]
            })
    }

    fn doc_object() -> impl Strategy<Value = Doc> {
        prop::collection::vec((key(), doc()), 0..7).prop_map(Doc::Obj)
    }

    /// The document as `serde_json` reads it: of repeated keys the last one wins.
    fn doc_value(d: &Doc) -> serde_json::Value {
        match d {
            Doc::Leaf(v) => v.clone(),
            Doc::Arr(items) => serde_json::Value::Array(items.iter().map(doc_value).collect()),
            Doc::Obj(members) => {
                let mut m = serde_json::Map::new();
                for (k, v) in members {
                    m.insert(k.clone(), doc_value(v));
                }
                serde_json::Value::Object(m)
            }
        }
    }

    /// A JSON string literal of `s`, every character `\u`-escaped if `escape_all`.
    fn quote(s: &str, escape_all: bool, out: &mut String) {
        if !escape_all {
            out.push_str(&serde_json::to_string(s).unwrap());
            return;
        }
        out.push('"');
        let mut units = [0u16; 2];
        for c in s.chars() {
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
        out.push('"');
    }

    fn render(d: &Doc, style: u8, out: &mut String) {
        let ws = if style & 1 != 0 { " \n\t" } else { "" };
        match d {
            Doc::Leaf(v) => match v {
                serde_json::Value::String(s) => quote(s, style & 2 != 0, out),
                v => out.push_str(&v.to_string()),
            },
            Doc::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    render(item, style, out);
                }
                out.push_str(ws);
                out.push(']');
            }
            Doc::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    quote(k, style & 4 != 0, out);
                    out.push_str(ws);
                    out.push(':');
                    out.push_str(ws);
                    render(v, style, out);
                }
                out.push_str(ws);
                out.push('}');
            }
        }
    }

    #[test]
    fn numbers_next_to_f64_max_are_exact() {
        // serde_json (without `float_roundtrip`) rejects this one; it is exactly f64::MAX.
        let json = r#"{"x":1.7976931348623158e308,"y":"1e999"}"#;
        assert!(near_f64_limit(json));
        assert!(!near_f64_limit(r#"{"x":"1e999","y":1.5e308}"#));
        let row = decode(&["x"], json).unwrap();
        assert!(same(&row[0], &Value::Float(f64::MAX)));
        assert!(decode(&["x"], r#"{"x":1.7976931348623159e308}"#).is_err());
    }

    /// Decodes with the scanner and with `serde_json` (walking the paths); checks that both
    /// accept or both reject (but see [`near_f64_limit`]), and that accepted rows agree.
    /// Returns whether it was accepted.
    fn check_against_serde(paths: &[Vec<String>], json: &str) -> Result<bool, TestCaseError> {
        let sc = schema_of(paths);
        let mine = sc.decode_row_with(json, &mut StrCache::new());
        let theirs = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .filter(serde_json::Value::is_object);
        match (&mine, &theirs) {
            (Ok(row), Some(doc)) => {
                let want = reference(doc, sc.paths());
                for (g, w) in row.iter().zip(&want) {
                    prop_assert!(close(g, w), "{json}: got {g:?}, serde_json {w:?}");
                }
                Ok(true)
            }
            (Err(DecodeError::Json(_)), None) => Ok(false),
            _ if near_f64_limit(json) => Ok(mine.is_ok()),
            _ => Err(TestCaseError::fail(format!(
                "disagree on {json:?}: {mine:?} vs serde_json {}",
                theirs.is_some()
            ))),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random objects as serde_json prints them: the row equals serde_json's parse walked
        /// by path, and, floats exactly, the generated document walked by path.
        #[test]
        fn rows_match_serde_json(
            obj in json_object(), paths in schema_paths(), picks in picks(), pretty: bool,
        ) {
            let mut present = Vec::new();
            value_paths(&obj, &mut Vec::new(), &mut present);
            let paths = mix_paths(paths, &present, &picks);
            let json = if pretty {
                serde_json::to_string_pretty(&obj).unwrap()
            } else {
                serde_json::to_string(&obj).unwrap()
            };
            prop_assert!(check_against_serde(&paths, &json)?);
            let sc = schema_of(&paths);
            let row = sc.decode_row(&json).unwrap();
            for (g, w) in row.iter().zip(&reference(&obj, sc.paths())) {
                prop_assert!(same(g, w), "{json}: got {g:?}, generated {w:?}");
            }
        }

        /// Objects with duplicate keys, escaped keys and strings, and whitespace: the row
        /// equals serde_json's and, floats exactly, the generated document's (last key wins).
        #[test]
        fn rows_match_serde_json_with_duplicates_and_escapes(
            d in doc_object(), paths in schema_paths(), picks in picks(), style in 0u8..8,
        ) {
            let mut present = Vec::new();
            doc_paths(&d, &mut Vec::new(), &mut present);
            let paths = mix_paths(paths, &present, &picks);
            let mut json = String::new();
            render(&d, style, &mut json);
            prop_assert!(check_against_serde(&paths, &json)?);
            let sc = schema_of(&paths);
            let row = sc.decode_row(&json).unwrap();
            for (g, w) in row.iter().zip(&reference(&doc_value(&d), sc.paths())) {
                prop_assert!(same(g, w), "{json}: got {g:?}, generated {w:?}");
            }
        }

        /// Any number text decodes exactly as `str::parse::<f64>` reads it (or as an integer
        /// when it is one that fits `i64`), whichever path it takes.
        #[test]
        fn numbers_decode_exactly(
            neg: bool,
            int in "0|[1-9][0-9]{0,3}|[1-9][0-9]{0,24}",
            frac in prop::option::of("[0-9]{1,3}|[0-9]{1,24}"),
            exp in prop::option::of(("[eE]", "[+-]?", prop_oneof![0u32..30, 0u32..400])),
        ) {
            let mut t = String::new();
            if neg {
                t.push('-');
            }
            t.push_str(&int);
            if let Some(f) = &frac {
                t.push('.');
                t.push_str(f);
            }
            if let Some((e, sign, n)) = &exp {
                t.push_str(&format!("{e}{sign}{n}"));
            }
            let json = format!(r#"{{"x":{t},"y":{t}}}"#);
            let got = decode(&["x"], &json);
            let want = t.parse::<f64>().unwrap();
            if !want.is_finite() {
                prop_assert!(got.is_err());
                prop_assert!(!serde_accepts(&json));
            } else if frac.is_none() && exp.is_none() && t.parse::<i64>().is_ok() && t != "-0" {
                prop_assert!(same(&got.unwrap()[0], &Value::Int(t.parse().unwrap())));
            } else {
                let row = got.unwrap();
                prop_assert!(same(&row[0], &Value::Float(want)), "{}: {:?} vs {}", t, row[0], want);
            }
        }

        /// Random byte edits of valid lines: accepted exactly when serde_json accepts an
        /// object (same nesting limit), with the same row then.
        #[test]
        fn mutations_are_accepted_exactly_when_serde_json_accepts(
            d in doc_object(),
            paths in schema_paths(),
            picks in picks(),
            style in 0u8..8,
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                    b"{}[]\":,\\ \n0123456789.eE-+tfnulrasx\x01\x7f".to_vec())),
                1..4,
            ),
        ) {
            let mut present = Vec::new();
            doc_paths(&d, &mut Vec::new(), &mut present);
            let paths = mix_paths(paths, &present, &picks);
            let mut json = String::new();
            render(&d, style, &mut json);
            let mut bytes = json.into_bytes();
            for (at, op, byte) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 => bytes.insert(i, byte),
                    1 if i < bytes.len() => { bytes.remove(i); }
                    _ if i < bytes.len() => bytes[i] = byte,
                    _ => bytes.push(byte),
                }
            }
            if let Ok(json) = String::from_utf8(bytes) {
                check_against_serde(&paths, &json)?;
            }
        }
    }
}

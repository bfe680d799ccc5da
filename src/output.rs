//! Matches, late events and rejects as JSON lines.

use std::fmt::Write;

use crate::event::DecodeError;
use crate::nfa::{Match, Nfa};
use crate::runtime::Output;

/// Where an output line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    /// A match or a timed-out partial match.
    Match,
    /// A late event.
    Late,
    /// A rejected record.
    Reject,
}

/// How one engine output was rendered (see [`write_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Where the line goes.
    pub stream: Stream,
    /// Whether it is a timed-out partial match.
    pub timed_out: bool,
    /// For a rejected record: a one-line human message (for stderr).
    pub human: Option<String>,
}

/// Appends one output of an engine as its JSON line; `nfa` gives a pattern by index, and
/// `origin`, `line_no` and `record` name the record in a reject report.
pub fn write_output<'a>(
    out: &mut String,
    nfa: impl Fn(usize) -> &'a Nfa,
    o: &Output,
    origin: &str,
    line_no: u64,
    record: &str,
) -> Rendered {
    let (stream, timed_out, human) = match o {
        Output::Match { pattern, key, m } => {
            write_match(out, nfa(*pattern), key.as_deref(), m);
            (Stream::Match, m.timed_out.is_some(), None)
        }
        Output::Late {
            pattern,
            raw,
            time,
            watermark,
        } => {
            write_late(out, &nfa(*pattern).name, raw, *time, *watermark);
            (Stream::Late, false, None)
        }
        Output::Reject { pattern, reason } => {
            let name = pattern.map(|p| nfa(p).name.as_str());
            let human = write_rejection(out, name, reason, origin, line_no, record);
            (Stream::Reject, false, Some(human))
        }
    };
    Rendered {
        stream,
        timed_out,
        human,
    }
}

/// Appends one match (or timed-out partial match) as a JSON line, without allocating a JSON
/// tree: input events are echoed as the text they arrived as.
pub fn write_match(out: &mut String, nfa: &Nfa, key_json: Option<&str>, m: &Match) {
    out.push_str("{\"pattern\":");
    push_json_str(out, &nfa.name);
    if let Some(k) = key_json {
        out.push_str(",\"key\":");
        out.push_str(k);
    }
    let start = m.events.first().map(|e| e.time).unwrap_or(0);
    let end = m.events.last().map(|e| e.time).unwrap_or(0);
    let _ = write!(out, ",\"start\":{start},\"end\":{end},\"events\":{{");
    let mut first_var = true;
    for (v, name) in nfa.variables.iter().enumerate() {
        let mut evs = m.events.iter().filter(|e| e.var == v).peekable();
        if evs.peek().is_none() {
            continue;
        }
        if !first_var {
            out.push(',');
        }
        first_var = false;
        push_json_str(out, name);
        out.push_str(":[");
        for (i, e) in evs.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&e.raw);
        }
        out.push(']');
    }
    out.push('}');
    if let Some(t) = m.timed_out {
        let _ = write!(out, ",\"timed_out\":true,\"timeout\":{t}");
    }
    out.push_str("}\n");
}

/// Appends a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// Appends one late event as a JSON line.
pub fn write_late(out: &mut String, pattern: &str, raw: &str, time: i64, watermark: i64) {
    out.push_str("{\"late\":true,\"pattern\":");
    push_json_str(out, pattern);
    let _ = writeln!(
        out,
        ",\"time\":{time},\"watermark\":{watermark},\"reason\":\"event time {time} is not after the watermark {watermark}\",\"event\":{raw}}}"
    );
}

/// Appends one rejected record as a JSON line.
pub fn write_reject(out: &mut String, origin: &str, line: u64, reason: &str, raw: &str) {
    out.push_str("{\"rejected\":true,\"source\":");
    push_json_str(out, origin);
    let _ = write!(out, ",\"line\":{line},\"reason\":");
    push_json_str(out, reason);
    out.push_str(",\"record\":");
    push_json_str(out, raw);
    out.push_str("}\n");
}

/// A record rejected for `reason` (by `pattern`, if the reason is that pattern's, such as a
/// missing time field): appends its JSON line to `out` and returns the one-line message for a
/// person (stderr).
pub fn write_rejection(
    out: &mut String,
    pattern: Option<&str>,
    reason: &DecodeError,
    origin: &str,
    line: u64,
    raw: &str,
) -> String {
    let reason = match pattern {
        Some(p) => format!("pattern {p}: {reason}"),
        None => reason.to_string(),
    };
    write_reject(out, origin, line, &reason, raw);
    format!("motif: {origin}:{line}: rejected: {reason}")
}
